/* Method and setting write payloads (interface.md sections 4 and 5). */
#ifndef RPFS_ARGS_H
#define RPFS_ARGS_H

#include <stddef.h>

#define RP_WRITE_MAX 65536   /* larger writes are refused (EINVAL) */

struct rp_args {
  char **pos;       /* positional lines (before the first Key=Value) */
  size_t npos;
  char **keys;      /* Key=Value lines, in order */
  char **vals;
  size_t nkv;
};

/* Split a method payload into lines: one trailing "\n" is ignored; "\r\n" is
 * not accepted; a NUL byte, an empty line in the middle, a positional line
 * after a Key=Value line, an empty key, or a key given twice is an error.
 * The first line is always positional (a path may contain '='); a later line
 * is Key=Value when the text before its first '=' is [A-Za-z][A-Za-z0-9]*
 * (spaces and tabs around key and value are dropped).  An empty payload gives
 * no lines at all.
 * Returns NULL with *err (caller frees, a sentence for ErrorDescription). */
struct rp_args *rp_args_parse (const char *buf, size_t len, char **err);
const char *rp_args_get (const struct rp_args *a, const char *key);
void rp_args_free (struct rp_args *a);

/* A single-valued setting: strip one trailing "\n"; refuse NUL bytes and
 * inner newlines unless MULTILINE.  Returns a new string or NULL with *err. */
char *rp_args_value (const char *buf, size_t len, int multiline, char **err);

/* Split a disk list ("sda,sdb" or one per line; spaces around items and empty
 * items ignored) into a vector (caller frees with rp_strv_free).  Empty input
 * (or NULL) gives an empty vector.  NULL with *err on an invalid name or a
 * duplicate. */
char **rp_args_disk_list (const char *s, char **err);

#endif
