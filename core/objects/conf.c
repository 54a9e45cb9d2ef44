/* Parsers for system definitions (systems/NAME.conf) and key = value records.
 * Both work on a byte buffer that need not be NUL-terminated, and every error
 * names the file and line so that start-up failures point at the fix. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "ids.h"
#include "ratelimit.h"
#include "util.h"

#define NAME_RULE "allowed: letters, digits, '_', '.', '-'; 1 to 64 characters"
#define KNOWN_KEYS "VirtualSystemIdentifier, disk, node, qmp, guest-agent, " \
  "guest-agent-timeout, consistency-fallback, vm-definition, description, " \
  "export-rate-limit, export-nice, export-compression-level, owner, group, " \
  "libvirt-domain, libvirt-uri"

/* A byte range of the input. */
struct span {
  const char *p;
  size_t len;
};

/* *err = "FILE:LINE: message" ("FILE: message" when LINE is 0). */
static void __attribute__ ((format (printf, 4, 5)))
set_err (char **err, const char *file, unsigned line, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    abort ();
  va_end (ap);
  if (line)
    *err = rp_asprintf ("%s:%u: %s", file, line, msg);
  else
    *err = rp_asprintf ("%s: %s", file, msg);
  free (msg);
}

static bool
is_blank (char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static struct span
trim (struct span s)
{
  while (s.len && is_blank (s.p[0]))
    s.p++, s.len--;
  while (s.len && is_blank (s.p[s.len - 1]))
    s.len--;
  return s;
}

static char *
span_dup (struct span s)
{
  char *r = strndup (s.p, s.len);
  if (!r)
    abort ();
  return r;
}

static bool
span_is (struct span s, const char *word)
{
  return s.len == strlen (word) && memcmp (s.p, word, s.len) == 0;
}

/* Next line of TEXT/LEN from *POS (without its '\n').  false at the end. */
static bool
next_line (const char *text, size_t len, size_t *pos, struct span *line)
{
  if (*pos >= len)
    return false;
  const char *start = text + *pos;
  const char *nl = memchr (start, '\n', len - *pos);
  line->p = start;
  line->len = nl ? (size_t) (nl - start) : len - *pos;
  *pos += line->len + 1;
  return true;
}

/* Split one non-comment line at its first '=' into trimmed key and value.
 * Returns false with *err set if there is no '=' or no key. */
static bool
split_kv (const char *file, unsigned lineno, struct span line,
          struct span *key, struct span *val, char **err)
{
  if (memchr (line.p, '\0', line.len)) {
    set_err (err, file, lineno, "a NUL byte is not allowed");
    return false;
  }
  const char *eq = memchr (line.p, '=', line.len);
  if (!eq) {
    set_err (err, file, lineno, "missing '=' (expected 'Key = Value')");
    return false;
  }
  *key = trim ((struct span) { line.p, eq - line.p });
  *val = trim ((struct span) { eq + 1, line.len - (eq + 1 - line.p) });
  if (key->len == 0) {
    set_err (err, file, lineno, "missing key before '=' "
             "(expected 'Key = Value')");
    return false;
  }
  return true;
}

/* ---- system definitions ---- */

/* A "node ID = NODENAME" line, kept until every disk has been seen, since a
 * node line may come before its disk line. */
struct node_line {
  char *id;
  char *node;
  unsigned line;
};

struct parser {
  const char *file;
  const char *name;             /* the system's */
  const char *lv_uri;           /* the store's "libvirt = URI", or NULL */
  struct rp_conf *c;
  char **err;
  unsigned uuid_line, qmp_line, desc_line, agent_line, timeout_line;
  unsigned fallback_line, vmdef_line, rate_line, nice_line, level_line;
  unsigned owner_line, group_line, lvdom_line, lvuri_line;
  struct node_line *nodes;
  size_t nnodes;
};

/* Drop a trailing comment: a '#' at the start or after a space or tab.  A '#'
 * inside a word ("disk a = /img/#1.qcow2") is kept. */
static struct span
strip_comment (struct span s)
{
  for (size_t i = 0; i < s.len; i++)
    if (s.p[i] == '#' && (i == 0 || s.p[i - 1] == ' ' || s.p[i - 1] == '\t')) {
      s.len = i;
      break;
    }
  return trim (s);
}

/* QEMU's rule for node names (id_wellformed) and its 31-byte limit. */
static bool
node_name_valid (const char *s)
{
  size_t n = strlen (s);
  if (n < 1 || n > 31 || !isascii (s[0]) || !isalpha (s[0]))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!isascii (s[i])
        || !(isalnum (s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
      return false;
  return true;
}

static struct rp_conf_disk *
find_disk (struct rp_conf *c, const char *id)
{
  for (size_t i = 0; i < c->ndisks; i++)
    if (strcmp (c->disks[i].id, id) == 0)
      return &c->disks[i];
  return NULL;
}

/* A key that takes no argument (VirtualSystemIdentifier, qmp, description)
 * given at most once: store VAL in *DST.  false with *err on a repeat. */
static bool
set_once (struct parser *ps, unsigned lineno, const char *key,
          unsigned *seen, char **dst, struct span val)
{
  if (*seen) {
    set_err (ps->err, ps->file, lineno,
             "'%s' is given twice (first on line %u)", key, *seen);
    return false;
  }
  *seen = lineno;
  *dst = span_dup (val);
  return true;
}

/* qmp, guest-agent, vm-definition: an absolute path, given once. */
static bool
set_path (struct parser *ps, unsigned lineno, const char *key,
          unsigned *seen, char **dst, struct span val)
{
  if (val.p[0] != '/') {
    set_err (ps->err, ps->file, lineno, "the path of '%s' must be absolute "
             "(start with '/'), not '%.*s'", key, (int) val.len, val.p);
    return false;
  }
  return set_once (ps, lineno, key, seen, dst, val);
}

/* KEY = a whole number from LO to HI ("... is not WHAT from LO to HI"). */
static bool
parse_int (struct parser *ps, unsigned lineno, const char *key,
           unsigned *seen, struct span val, long lo, long hi,
           const char *what, int *out)
{
  CLEANUP_FREE char *s = NULL;
  if (!set_once (ps, lineno, key, seen, &s, val))
    return false;
  char *end;
  errno = 0;
  long v = strtol (s, &end, 10);
  if (*end || end == s || errno || v < lo || v > hi) {
    set_err (ps->err, ps->file, lineno, "%s '%s' is not %s from %ld to %ld",
             key, s, what, lo, hi);
    return false;
  }
  *out = (int) v;
  return true;
}

static bool
parse_rate (struct parser *ps, unsigned lineno, struct span val)
{
  CLEANUP_FREE char *s = NULL;
  if (!set_once (ps, lineno, "export-rate-limit", &ps->rate_line, &s, val))
    return false;
  if (!strcmp (s, "auto")) {
    ps->c->export_rate_auto = 1;
    return true;
  }
  ps->c->export_rate_auto = 0;
  if (!rp_rate_parse (s, &ps->c->export_rate)) {
    set_err (ps->err, ps->file, lineno, "export-rate-limit '%s' is not a "
             "rate: bytes per second, with K, M, G or T for KiB, MiB, GiB "
             "or TiB (e.g. '200M'), at least 1M; 0 for no cap; 'auto' for a "
             "running VM", s);
    return false;
  }
  return true;
}

static bool
parse_fallback (struct parser *ps, unsigned lineno, struct span val)
{
  CLEANUP_FREE char *s = NULL;
  if (!set_once (ps, lineno, "consistency-fallback", &ps->fallback_line, &s,
                 val))
    return false;
  if (strcmp (s, "crash") && strcmp (s, "fail")) {
    set_err (ps->err, ps->file, lineno, "consistency-fallback '%s' is "
             "neither 'crash' (make a crash-consistent reference point when "
             "the guest cannot be frozen) nor 'fail' (the default)", s);
    return false;
  }
  ps->c->fallback_crash = !strcmp (s, "crash");
  return true;
}

/* owner = USER / group = GROUP: a numeric id is taken as it is (the user
 * need not exist, as with chown); a name must exist now, so that a typo
 * stops start-up instead of silently leaving the system to root. */
static bool
parse_ident (struct parser *ps, unsigned lineno, bool owner, struct span val)
{
  const char *key = owner ? "owner" : "group";
  CLEANUP_FREE char *s = NULL;
  if (!set_once (ps, lineno, key, owner ? &ps->owner_line : &ps->group_line,
                 &s, val))
    return false;
  unsigned long id;
  if (rp_id_parse (s, &id)) {
    if (owner)
      ps->c->owner = (uid_t) id;
    else
      ps->c->group = (gid_t) id;
    return true;
  }
  int r = owner ? rp_user_id (s, &ps->c->owner)
                : rp_group_id (s, &ps->c->group);
  if (r != 0) {
    set_err (ps->err, ps->file, lineno, "%s '%s' %s (expected a %s name "
             "or a numeric %s)", key, s,
             r > 0 ? "is not known on this host" : "could not be looked up",
             owner ? "user" : "group", owner ? "uid" : "gid");
    return false;
  }
  return true;
}

static bool
parse_uuid (struct parser *ps, unsigned lineno, struct span val)
{
  if (!set_once (ps, lineno, "VirtualSystemIdentifier", &ps->uuid_line,
                 &ps->c->uuid, val))
    return false;
  /* Windows tools print GUIDs in upper case; accept them, store lower. */
  for (char *p = ps->c->uuid; *p; p++)
    *p = tolower ((unsigned char) *p);
  if (!rp_uuid_valid (ps->c->uuid)) {
    set_err (ps->err, ps->file, lineno,
             "VirtualSystemIdentifier '%.*s' is not a UUID (expected "
             "8-4-4-4-12 hexadecimal digits, e.g. "
             "5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10)", (int) val.len, val.p);
    return false;
  }
  return true;
}

static bool
parse_disk (struct parser *ps, unsigned lineno, const char *id,
            struct span val)
{
  struct rp_conf *c = ps->c;
  struct rp_conf_disk *other = find_disk (c, id);

  if (other) {
    set_err (ps->err, ps->file, lineno,
             "disk '%s' is defined twice (first on line %d)", id,
             other->line);
    return false;
  }
  if (val.len == 0 || val.p[0] != '/') {
    set_err (ps->err, ps->file, lineno,
             "the image path of disk '%s' must be absolute (start with '/'), "
             "not '%.*s'", id, (int) val.len, val.p);
    return false;
  }
  struct rp_conf_disk *d = realloc (c->disks, (c->ndisks + 1) * sizeof *d);
  if (!d)
    abort ();
  c->disks = d;
  d = &c->disks[c->ndisks++];
  d->id = rp_strdup (id);
  d->path = span_dup (val);
  d->node = NULL;
  d->line = lineno;
  return true;
}

static bool
parse_node (struct parser *ps, unsigned lineno, const char *id,
            struct span val)
{
  for (size_t i = 0; i < ps->nnodes; i++)
    if (strcmp (ps->nodes[i].id, id) == 0) {
      set_err (ps->err, ps->file, lineno,
               "the node of disk '%s' is given twice (first on line %u)",
               id, ps->nodes[i].line);
      return false;
    }
  CLEANUP_FREE char *node = span_dup (val);
  if (!node_name_valid (node)) {
    set_err (ps->err, ps->file, lineno,
             "node name '%s' of disk '%s' is not a valid QEMU node name "
             "(a letter, then letters, digits, '_', '.', '-'; "
             "at most 31 characters)", node, id);
    return false;
  }
  struct node_line *n = realloc (ps->nodes, (ps->nnodes + 1) * sizeof *n);
  if (!n)
    abort ();
  ps->nodes = n;
  ps->nodes[ps->nnodes++] = (struct node_line) {
    rp_strdup (id), node, lineno
  };
  node = NULL;
  return true;
}

/* The keys that take a value only ("word = value"). */
static const char *const scalar_keys[] = {
  "VirtualSystemIdentifier", "qmp", "description", "guest-agent",
  "vm-definition", "guest-agent-timeout", "consistency-fallback",
  "export-rate-limit", "export-nice", "export-compression-level", "owner",
  "group", "libvirt-domain", "libvirt-uri", NULL
};

/* "word = VAL" for a scalar WORD. */
static bool
parse_scalar (struct parser *ps, unsigned lineno, struct span word,
              struct span val)
{
  if (span_is (word, "VirtualSystemIdentifier"))
    return parse_uuid (ps, lineno, val);
  if (span_is (word, "description"))
    return set_once (ps, lineno, "description", &ps->desc_line,
                     &ps->c->description, val);
  if (span_is (word, "qmp"))
    return set_path (ps, lineno, "qmp", &ps->qmp_line, &ps->c->qmp, val);
  if (span_is (word, "guest-agent"))
    return set_path (ps, lineno, "guest-agent", &ps->agent_line,
                     &ps->c->agent, val);
  if (span_is (word, "vm-definition"))
    return set_path (ps, lineno, "vm-definition", &ps->vmdef_line,
                     &ps->c->vm_definition, val);
  if (span_is (word, "guest-agent-timeout"))
    return parse_int (ps, lineno, "guest-agent-timeout", &ps->timeout_line,
                      val, 1, 600, "a number of seconds",
                      &ps->c->agent_timeout);
  if (span_is (word, "export-nice"))
    return parse_int (ps, lineno, "export-nice", &ps->nice_line, val, 0, 19,
                      "a nice value", &ps->c->export_nice);
  if (span_is (word, "export-compression-level"))
    return parse_int (ps, lineno, "export-compression-level", &ps->level_line,
                      val, 1, 22, "a compression level",
                      &ps->c->export_level);
  if (span_is (word, "consistency-fallback"))
    return parse_fallback (ps, lineno, val);
  if (span_is (word, "owner") || span_is (word, "group"))
    return parse_ident (ps, lineno, span_is (word, "owner"), val);
  if (span_is (word, "export-rate-limit"))
    return parse_rate (ps, lineno, val);
  if (span_is (word, "libvirt-domain"))
    return set_once (ps, lineno, "libvirt-domain", &ps->lvdom_line,
                     &ps->c->libvirt_domain, val);
  return set_once (ps, lineno, "libvirt-uri", &ps->lvuri_line,
                   &ps->c->libvirt_uri, val);
}

/* "disk ID = PATH" or "node ID = NODENAME" (WORD, ARG the id). */
static bool
parse_with_id (struct parser *ps, unsigned lineno, struct span word,
               struct span arg, struct span val)
{
  const char *usage = span_is (word, "disk")
    ? "disk ID = PATH" : "node ID = NODENAME";
  if (arg.len == 0) {
    set_err (ps->err, ps->file, lineno, "'%.*s' needs a disk id before '=' "
             "(expected '%s')", (int) word.len, word.p, usage);
    return false;
  }
  CLEANUP_FREE char *id = span_dup (arg);
  if (!rp_name_valid (id)) {
    set_err (ps->err, ps->file, lineno,
             "disk id '%s' is not valid (" NAME_RULE ")", id);
    return false;
  }
  if (span_is (word, "disk"))
    return parse_disk (ps, lineno, id, val);
  return parse_node (ps, lineno, id, val);
}

/* One "Key = Value" line of a definition. */
static bool
parse_conf_line (struct parser *ps, unsigned lineno, struct span key,
                 struct span val)
{
  /* KEY is "word" or "word ID". */
  struct span word = key, arg = { key.p + key.len, 0 };
  for (size_t i = 0; i < key.len; i++)
    if (is_blank (key.p[i])) {
      word.len = i;
      arg = trim ((struct span) { key.p + i, key.len - i });
      break;
    }

  bool takes_id = span_is (word, "disk") || span_is (word, "node");
  bool scalar = false;
  for (size_t i = 0; scalar_keys[i]; i++)
    scalar |= span_is (word, scalar_keys[i]);
  if (!takes_id && !scalar) {
    set_err (ps->err, ps->file, lineno, "unknown key '%.*s' (known keys: "
             KNOWN_KEYS ")", (int) key.len, key.p);
    return false;
  }
  if (!takes_id && arg.len) {
    set_err (ps->err, ps->file, lineno, "'%.*s' takes nothing between the "
             "key and '=' (found '%.*s')", (int) word.len, word.p,
             (int) arg.len, arg.p);
    return false;
  }
  if (val.len == 0 && !span_is (word, "description")) {
    set_err (ps->err, ps->file, lineno, "'%.*s' has no value after '='",
             (int) key.len, key.p);
    return false;
  }
  return takes_id ? parse_with_id (ps, lineno, word, arg, val)
    : parse_scalar (ps, lineno, word, val);
}

/* Checks that need the whole file: nodes against disks and qmp. */
static bool
check_conf (struct parser *ps)
{
  struct rp_conf *c = ps->c;

  /* In a store that says "libvirt = URI" (storeconf.c), a definition with
   * no disk, qmp or libvirt-domain line is the domain of its name: it only
   * adds settings. */
  if (ps->lv_uri && !c->libvirt_domain && !c->qmp && c->ndisks == 0) {
    c->libvirt_domain = rp_strdup (ps->name);
    if (!c->libvirt_uri)
      c->libvirt_uri = rp_strdup (ps->lv_uri);
  }
  if (c->libvirt_domain && c->qmp) {
    set_err (ps->err, ps->file, ps->qmp_line, "'qmp' and 'libvirt-domain' "
             "(line %u) exclude each other: libvirt owns its domain's "
             "monitor", ps->lvdom_line);
    return false;
  }
  if (c->libvirt_uri && !c->libvirt_domain) {
    set_err (ps->err, ps->file, ps->lvuri_line, "'libvirt-uri' needs a "
             "'libvirt-domain = NAME' line");
    return false;
  }
  /* A libvirt domain's disks come from its XML; disk lines may repeat
   * them (checked against the domain at start). */
  if (c->ndisks == 0 && !c->libvirt_domain) {
    set_err (ps->err, ps->file, 0, "no 'disk ID = PATH' line");
    return false;
  }
  for (size_t i = 0; i < ps->nnodes; i++) {
    struct node_line *n = &ps->nodes[i];
    struct rp_conf_disk *d = find_disk (c, n->id);
    if (!c->qmp) {
      set_err (ps->err, ps->file, n->line, "'node %s' needs a 'qmp = SOCKET' "
               "line: a node name only means something in a running VM",
               n->id);
      return false;
    }
    if (!d) {
      set_err (ps->err, ps->file, n->line,
               "'node %s' names no disk: there is no 'disk %s = PATH' line",
               n->id, n->id);
      return false;
    }
    d->node = n->node;
    n->node = NULL;
  }
  if (c->export_rate_auto == 1 && !c->qmp) {
    set_err (ps->err, ps->file, ps->rate_line, "'export-rate-limit = auto' "
             "needs a 'qmp = SOCKET' line: it follows a running guest's "
             "disk latency");
    return false;
  }
  if (c->export_rate_auto < 0)
    c->export_rate_auto = c->qmp != NULL;
  if (c->agent && !c->qmp) {
    set_err (ps->err, ps->file, ps->agent_line, "'guest-agent' needs a "
             "'qmp = SOCKET' line: only a running VM has a guest agent");
    return false;
  }
  if (c->qmp)
    for (size_t i = 0; i < c->ndisks; i++)
      if (!c->disks[i].node) {
        set_err (ps->err, ps->file, c->disks[i].line, "disk '%s' needs a "
                 "'node %s = NODENAME' line, since 'qmp' (line %u) says a "
                 "running VM owns it", c->disks[i].id, c->disks[i].id,
                 ps->qmp_line);
        return false;
      }
  return true;
}

struct rp_conf *
rp_conf_parse (const char *file, const char *name, const char *text,
               size_t len, char **err)
{
  return rp_conf_parse_in (file, name, text, len, NULL, err);
}

struct rp_conf *
rp_conf_parse_in (const char *file, const char *name, const char *text,
                  size_t len, const char *lv_uri, char **err)
{
  struct rp_conf *c = rp_calloc (1, sizeof *c);
  struct parser ps = { .file = file, .name = name, .lv_uri = lv_uri, .c = c,
                       .err = err };
  struct span line, key, val;
  size_t pos = 0;
  unsigned lineno = 0;
  bool ok = true;

  c->name = rp_strdup (name);
  c->agent_timeout = 10;
  c->export_nice = 19;
  c->export_rate_auto = -1;
  c->text = rp_calloc (1, len + 1);
  memcpy (c->text, text, len);

  if (!rp_name_valid (name)) {
    set_err (err, file, 0, "the system name '%s' (from the file name) is not "
             "valid (" NAME_RULE ")", name);
    ok = false;
  }
  while (ok && next_line (text, len, &pos, &line)) {
    lineno++;
    line = strip_comment (line);
    if (line.len == 0)
      continue;
    ok = split_kv (file, lineno, line, &key, &val, err)
      && parse_conf_line (&ps, lineno, key, val);
  }
  ok = ok && check_conf (&ps);

  for (size_t i = 0; i < ps.nnodes; i++) {
    free (ps.nodes[i].id);
    free (ps.nodes[i].node);
  }
  free (ps.nodes);
  if (!ok) {
    rp_conf_free (c);
    return NULL;
  }
  return c;
}

void
rp_conf_free (struct rp_conf *c)
{
  if (!c)
    return;
  for (size_t i = 0; i < c->ndisks; i++) {
    free (c->disks[i].id);
    free (c->disks[i].path);
    free (c->disks[i].node);
  }
  free (c->disks);
  free (c->name);
  free (c->uuid);
  free (c->qmp);
  free (c->libvirt_domain);
  free (c->libvirt_uri);
  free (c->agent);
  free (c->vm_definition);
  free (c->description);
  free (c->text);
  free (c);
}

/* ---- key = value records ---- */

struct rp_kv *
rp_kv_new (void)
{
  return rp_calloc (1, sizeof (struct rp_kv));
}

/* A copy of S with line breaks turned into spaces: one record line each. */
static char *
one_line (const char *s)
{
  char *r = rp_strdup (s);
  for (char *p = r; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  return r;
}

void
rp_kv_add (struct rp_kv *kv, const char *key, const char *val)
{
  char **k = realloc (kv->keys, (kv->n + 1) * sizeof *k);
  if (!k)
    abort ();
  kv->keys = k;
  char **v = realloc (kv->vals, (kv->n + 1) * sizeof *v);
  if (!v)
    abort ();
  kv->vals = v;
  kv->keys[kv->n] = one_line (key);
  kv->vals[kv->n] = one_line (val);
  kv->n++;
}

/* Only whole-line comments here, unlike definitions: records are written by
 * rp_kv_render, and a value such as a path may contain " #", which must
 * survive the round trip. */
struct rp_kv *
rp_kv_parse (const char *file, const char *text, size_t len, char **err)
{
  struct rp_kv *kv = rp_kv_new ();
  struct span line, key, val;
  size_t pos = 0;
  unsigned lineno = 0;

  while (next_line (text, len, &pos, &line)) {
    lineno++;
    line = trim (line);
    if (line.len == 0 || line.p[0] == '#')
      continue;
    if (!split_kv (file, lineno, line, &key, &val, err)) {
      rp_kv_free (kv);
      return NULL;
    }
    CLEANUP_FREE char *k = span_dup (key);
    CLEANUP_FREE char *v = span_dup (val);
    rp_kv_add (kv, k, v);
  }
  return kv;
}

const char *
rp_kv_get (const struct rp_kv *kv, const char *key)
{
  for (size_t i = 0; i < kv->n; i++)
    if (strcmp (kv->keys[i], key) == 0)
      return kv->vals[i];
  return NULL;
}

const char **
rp_kv_all (const struct rp_kv *kv, const char *key)
{
  const char **r = rp_calloc (kv->n + 1, sizeof *r);
  size_t n = 0;
  for (size_t i = 0; i < kv->n; i++)
    if (strcmp (kv->keys[i], key) == 0)
      r[n++] = kv->vals[i];
  return r;
}

char *
rp_kv_render (const struct rp_kv *kv)
{
  char *buf = NULL;
  size_t size = 0;
  FILE *f = open_memstream (&buf, &size);
  if (!f)
    abort ();
  for (size_t i = 0; i < kv->n; i++)
    fprintf (f, "%s = %s\n", kv->keys[i], kv->vals[i]);
  if (fclose (f) != 0)
    abort ();
  return buf;
}

void
rp_kv_free (struct rp_kv *kv)
{
  if (!kv)
    return;
  for (size_t i = 0; i < kv->n; i++) {
    free (kv->keys[i]);
    free (kv->vals[i]);
  }
  free (kv->keys);
  free (kv->vals);
  free (kv);
}
