/* Digest tables of reference points in the store and in exports
 * (docs/design.md, "Digest tables").  STORE/state/SYS/rp/RP/DISK.digests,
 * written atomically, removed with the reference point's directory. */
#ifndef RPFS_DIGESTS_H
#define RPFS_DIGESTS_H

#include <stdbool.h>
#include <stddef.h>

#include "blockhash.h"

struct rp_refpoint;
struct rp_system;

/* The file: a 48-byte header ("RPFSDIG1", version, block size, entry
 * length, algorithm, disk size, entry count, all little endian), the
 * entries, and the SHA-256 of all that.  Caller frees; *LEN its length. */
void *rp_digests_render (const struct rp_digests *t, size_t *len);
/* Parse and check a file's bytes (every field, the size, the checksum).
 * NULL with *ERR (caller frees) saying what is wrong. */
struct rp_digests *rp_digests_parse (const void *buf, size_t len,
                                     char **err);

/* Path of RP's table for DISK (caller frees). */
char *rp_digests_path (const struct rp_refpoint *rp, const char *disk);
/* Load and check RP's table for DISK: NULL with *ERR if missing or bad. */
struct rp_digests *rp_digests_load (const struct rp_refpoint *rp,
                                    const char *disk, char **err);
/* Store T as RP's table for DISK, atomically.  0, or -1 with *ERR. */
int rp_digests_save (const struct rp_refpoint *rp, const char *disk,
                     const struct rp_digests *t, char **err);

/* Does RP have a table for every disk of DISKS (NULL: all its disks) that
 * was not found damaged?  core->lock held (reads rp fields; stats files). */
bool rp_digests_usable (const struct rp_refpoint *rp, char *const *disks);
/* ChangeTracking's value (core->lock held): "intact", "digests: ...",
 * or "lost: ...", with a newline. */
char *rp_digests_tracking (const struct rp_refpoint *rp);
/* After the tracking check (tracking.c): load and check the tables of
 * every reference point whose bitmap is lost, so that a damaged table is
 * found now and the reference point says `lost`. */
void rp_digests_check_system (struct rp_system *sys);

#endif
