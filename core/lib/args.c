/* Method and setting write payloads.  Every error is a sentence that ends up
 * in a job's ErrorDescription, so it says what is wrong in the user's terms
 * (line numbers count from 1, as an editor does). */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "args.h"
#include "rpfs.h"
#include "util.h"

#define NAME_RULE "allowed: letters, digits, '_', '.', '-'; 1 to 64 characters"

/* Checks common to every payload; strips one trailing newline from *LEN. */
static bool
check_payload (const char *buf, size_t *len, char **err)
{
  if (*len > RP_WRITE_MAX) {
    *err = rp_asprintf ("the request is larger than %d bytes", RP_WRITE_MAX);
    return false;
  }
  if (memchr (buf, '\0', *len)) {
    *err = rp_strdup ("a NUL byte is not allowed");
    return false;
  }
  if (*len && buf[*len - 1] == '\n')
    (*len)--;
  return true;
}

static bool
is_space (char c)
{
  return c == ' ' || c == '\t';
}

/* Trim spaces and tabs around [*P, *P + *N). */
static void
trim (const char **p, size_t *n)
{
  while (*n && is_space (**p))
    (*p)++, (*n)--;
  while (*n && is_space ((*p)[*n - 1]))
    (*n)--;
}

/* [A-Za-z][A-Za-z0-9]*: the shape of a CIM property name. */
static bool
is_identifier (const char *s, size_t n)
{
  if (n == 0 || !isascii (s[0]) || !isalpha (s[0]))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!isascii (s[i]) || !isalnum (s[i]))
      return false;
  return true;
}

static void
push (char ***v, size_t *n, const char *s, size_t len)
{
  char **r = realloc (*v, (*n + 2) * sizeof *r);
  if (!r)
    abort ();
  r[*n] = strndup (s, len);
  if (!r[*n])
    abort ();
  r[++*n] = NULL;
  *v = r;
}

/* Handle line LINENO (P/N) of a payload.  false with *err on an error. */
static bool
parse_line (struct rp_args *a, unsigned lineno, const char *p, size_t n,
            char **err)
{
  if (n == 0) {
    *err = rp_asprintf ("line %u is empty", lineno);
    return false;
  }
  if (memchr (p, '\r', n)) {
    *err = rp_asprintf ("line %u contains a carriage return (\\r): "
                        "end lines with \\n alone", lineno);
    return false;
  }

  /* The first line is always positional: a path may contain '=' too. */
  const char *eq = lineno > 1 ? memchr (p, '=', n) : NULL;
  const char *k = p, *v = eq ? eq + 1 : NULL;
  size_t kn = eq ? (size_t) (eq - p) : 0, vn = eq ? n - kn - 1 : 0;
  if (eq) {
    trim (&k, &kn);
    trim (&v, &vn);
  }
  if (eq && kn == 0) {
    *err = rp_asprintf ("line %u has an empty key before '='", lineno);
    return false;
  }
  if (eq && is_identifier (k, kn)) {
    for (size_t i = 0; i < a->nkv; i++)
      if (strlen (a->keys[i]) == kn && memcmp (a->keys[i], k, kn) == 0) {
        *err = rp_asprintf ("key '%.*s' is given twice", (int) kn, k);
        return false;
      }
    size_t nkv = a->nkv;
    push (&a->keys, &nkv, k, kn);
    push (&a->vals, &a->nkv, v, vn);
    return true;
  }

  if (a->nkv > 0) {
    if (eq)
      *err = rp_asprintf ("line %u: '%.*s' is not a valid key (a letter, "
                          "then letters and digits)", lineno, (int) kn, k);
    else
      *err = rp_asprintf ("line %u is not a Key=Value line, but comes after "
                          "one (positional arguments come first)", lineno);
    return false;
  }
  push (&a->pos, &a->npos, p, n);
  return true;
}

struct rp_args *
rp_args_parse (const char *buf, size_t len, char **err)
{
  if (!check_payload (buf, &len, err))
    return NULL;

  struct rp_args *a = rp_calloc (1, sizeof *a);
  size_t pos = 0;
  unsigned lineno = 0;
  /* After the trailing newline is gone, an empty payload has no lines at all
   * (methods such as RemoveAssociatedData take any write). */
  while (len > 0 && pos <= len) {
    const char *p = buf + pos;
    const char *nl = memchr (p, '\n', len - pos);
    size_t n = nl ? (size_t) (nl - p) : len - pos;
    if (!parse_line (a, ++lineno, p, n, err)) {
      rp_args_free (a);
      return NULL;
    }
    pos += n + 1;
  }
  return a;
}

const char *
rp_args_get (const struct rp_args *a, const char *key)
{
  for (size_t i = 0; i < a->nkv; i++)
    if (strcmp (a->keys[i], key) == 0)
      return a->vals[i];
  return NULL;
}

void
rp_args_free (struct rp_args *a)
{
  if (!a)
    return;
  rp_strv_free (a->pos);
  rp_strv_free (a->keys);
  rp_strv_free (a->vals);
  free (a);
}

char *
rp_args_value (const char *buf, size_t len, int multiline, char **err)
{
  if (!check_payload (buf, &len, err))
    return NULL;
  if (memchr (buf, '\r', len)) {
    *err = rp_strdup ("a carriage return (\\r) is not allowed");
    return NULL;
  }
  if (!multiline && memchr (buf, '\n', len)) {
    *err = rp_strdup ("the value must be a single line");
    return NULL;
  }
  char *r = strndup (buf, len);
  if (!r)
    abort ();
  return r;
}

char **
rp_args_disk_list (const char *s, char **err)
{
  char **v = rp_calloc (1, sizeof *v);
  size_t n = 0;

  /* Items are separated by ',' or newlines; empty items (as in "sda,\nsdb"
   * or a trailing comma) are skipped. */
  while (s && *s) {
    size_t len = strcspn (s, ",\n");
    const char *p = s;
    size_t pn = len;
    trim (&p, &pn);
    s += len + (s[len] != '\0');
    if (pn == 0)
      continue;
    CLEANUP_FREE char *id = strndup (p, pn);
    if (!id)
      abort ();
    if (!rp_name_valid (id)) {
      *err = rp_asprintf ("'%s' is not a valid disk id (" NAME_RULE ")", id);
      goto fail;
    }
    if (rp_strv_contains (v, id)) {
      *err = rp_asprintf ("disk '%s' is listed twice", id);
      goto fail;
    }
    push (&v, &n, id, pn);
  }
  return v;

 fail:
  rp_strv_free (v);
  return NULL;
}
