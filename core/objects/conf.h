/* Parsers for rpfs's line-oriented text files: system definitions
 * (systems/NAME.conf, interface.md section 2) and the key = value records that
 * rpfs keeps in the store and writes into exports ("referencepoint"). */
#ifndef RPFS_CONF_H
#define RPFS_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rp_conf_disk {
  char *id;        /* [A-Za-z0-9_.-]{1,64}, unique in the system */
  char *path;      /* absolute path of a qcow2 image */
  char *node;      /* running VM: block node name (issue 3), else NULL */
  int line;        /* line of the 'disk' key, for messages */
};

struct rp_conf {
  char *name;                 /* from the file name */
  char *uuid;                 /* VirtualSystemIdentifier, NULL if absent */
  struct rp_conf_disk *disks;
  size_t ndisks;
  char *qmp;                  /* "qmp = /path/to/sock" (running VM), or NULL */
  char *agent;                /* "guest-agent = /path/to/qga.sock", or NULL */
  int agent_timeout;          /* "guest-agent-timeout = S" (1..600, def. 10) */
  int fallback_crash;         /* "consistency-fallback = crash" (1) | fail */
  char *vm_definition;        /* "vm-definition = /path" (e.g. libvirt XML) */
  char *description;          /* "description = text", or NULL */
  uint64_t export_rate;       /* "export-rate-limit = 200M": bytes/s, 0
                                 (the default) for no cap */
  int export_rate_auto;       /* "export-rate-limit = auto" (adapt.h): 1;
                                 the default with "qmp", else 0 */
  int export_nice;            /* "export-nice = N" (0..19, default 19): the
                                 nice value of an export's threads and of
                                 the processes they start */
  int export_level;           /* "export-compression-level = N" (1..22;
                                 0, the default: each format's own; capped
                                 at 9 for gzip and xz) */
  uid_t owner;                /* "owner = USER" (name or uid, default 0) */
  gid_t group;                /* "group = GROUP" (name or gid, default 0):
                                 with root, the system's operators
                                 (access.c) */
  char *libvirt_domain;       /* "libvirt-domain = NAME": the system is that
                                 libvirt domain (disks from its XML) */
  char *libvirt_uri;          /* "libvirt-uri = URI", NULL: qemu:///system */
  char *text;                 /* the whole file, as read */
};

/* Parse system definition FILE (its contents TEXT/LEN) for system NAME.
 * Returns NULL and sets *err ("FILE:LINE: message", caller frees) on any
 * error: unknown key, bad or duplicate disk id, relative path, bad UUID,
 * missing '=', a "node" line without "qmp" or naming no disk, a disk without
 * "node" when there is "qmp", "guest-agent" without "qmp", a relative path
 * for qmp / guest-agent / vm-definition, a bad timeout, fallback, rate or nice value,
 * an owner or group that is neither a number nor a known name; no disk
 * at all or a bad NAME: "FILE: message".
 * A trailing comment starts at a '#' after a space or tab.  An upper-case
 * UUID is accepted and stored in lower case. */
struct rp_conf *rp_conf_parse (const char *file, const char *name,
                               const char *text, size_t len, char **err);
/* The same in a store that says "libvirt = LV_URI" (NULL: none): a
 * definition with no disk, qmp or libvirt-domain line is then the libvirt
 * domain NAME on that connection. */
struct rp_conf *rp_conf_parse_in (const char *file, const char *name,
                                  const char *text, size_t len,
                                  const char *lv_uri, char **err);
void rp_conf_free (struct rp_conf *c);
/* libvirt-uri when a definition gives none */
#define RP_LIBVIRT_DEFAULT_URI "qemu:///system"

/* Generic "Key = Value" record (one per line, '#' comments, blank lines
 * ignored; a key may repeat, values keep their order).  Used for reference
 * point records and the exported "referencepoint" file. */
struct rp_kv {
  char **keys;
  char **vals;
  size_t n;
};
/* Returns NULL with *err "FILE:LINE: message" on a line without '=' or
 * with an empty key.  Only whole-line comments: a '#' inside a value is kept
 * (records are machine-written and must round-trip). */
struct rp_kv *rp_kv_parse (const char *file, const char *text, size_t len,
                           char **err);
const char *rp_kv_get (const struct rp_kv *kv, const char *key); /* first */
/* All values of KEY, NULL-terminated (caller frees the vector only). */
const char **rp_kv_all (const struct rp_kv *kv, const char *key);
/* Newlines in KEY or VAL become spaces, so a value can never inject a line;
 * rp_kv_parse trims keys and values, so keep them free of edge blanks. */
void rp_kv_add (struct rp_kv *kv, const char *key, const char *val);
struct rp_kv *rp_kv_new (void);
/* Render "Key = Value\n" lines, in order (caller frees). */
char *rp_kv_render (const struct rp_kv *kv);
void rp_kv_free (struct rp_kv *kv);

#endif
