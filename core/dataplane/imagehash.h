/* A full export's digest table, hashed from the finished image rather than
 * by the copy workers (docs/design.md, "Digest tables").  The copy of a
 * full export keeps both CPUs of a small host busy; the seal that follows
 * (the image's SHA-256, digest.c) keeps one.  So the copy only finds the
 * zero blocks (rp_bh_defer), and this hashes the data blocks next to the
 * seal, reading them where `qemu-img map` says the image stores them as
 * is: QEMU reads the image's layout, rpfs only the bytes it points at. */
#ifndef RPFS_IMAGEHASH_H
#define RPFS_IMAGEHASH_H

#include <stdatomic.h>

#include "blockhash.h"

struct rp_imagehash;

/* Start filling BH's table (a full export's, deferred) from the qcow2 image
 * open as FD (qemu-img reaches it through /proc/<rpfs>/fd/, never by a
 * path); NAME for messages.  Takes BH, even on failure (NULL with *err).
 * CANCEL (may be NULL) stops it. */
struct rp_imagehash *rp_imagehash_start (int fd, const char *name,
                                         struct rp_bh *bh,
                                         atomic_bool *cancel, char **err);
/* Wait for it: BH back with its table complete, or NULL with *err (BH
 * freed; *err names the image and the reason). */
struct rp_bh *rp_imagehash_finish (struct rp_imagehash *ih, char **err);
/* Stop it and free everything (NULL: nothing). */
void rp_imagehash_abort (struct rp_imagehash *ih);

#endif
