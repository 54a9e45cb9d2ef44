/* A disk as rpfs reads it: one NBD export, or a chain of them.
 *
 * The point-in-time disk of an older log based reference point is not one
 * QEMU node (docs/design.md, "The fleecing chain"): its scratch layers hold
 * what was overwritten before the next reference point with data was
 * created, and everything else is that newer reference point's content, and
 * so on down to the newest one, whose backup job still runs and whose
 * export reads through to the live disk.  An endpoint names these exports,
 * newest last, with each one's own depth (qemu:allocation-depth 1..DEPTH is
 * its own data).  A source connects to each and answers block status and
 * reads for the composed disk: a range belongs to the first layer that has
 * it.  With one export (the common case) it is a plain NBD connection.
 *
 * Block status extents carry their layer in the flags (RP_EXT_LAYER);
 * rp_src_pread reads through that map.  Ops built from the extents
 * (extent.h) may span layers, so a chain is read op by op with
 * rp_src_pread, never straight from one connection. */
#ifndef RPFS_SOURCE_H
#define RPFS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libnbd.h>

#include "backend.h"
#include "extent.h"

struct rp_src {
  size_t n;                     /* exports: 0 the one named, n-1 the live */
  struct nbd_handle *h[RP_EP_MAX_LAYERS];
  uint32_t depth[RP_EP_MAX_LAYERS];  /* own allocation depths of each */
  char *dirty;                  /* h[0]'s bitmap context, or NULL */
};

/* Connect to every export of EP (its bitmap's context too when WITH_BITMAP
 * and EP has one).  0, or -1 with *err (nothing left open). */
int rp_src_open (struct rp_src *s, const struct rp_endpoint *ep,
                 bool with_bitmap, char **err);
/* A source of one connection already made (it takes H). */
void rp_src_wrap (struct rp_src *s, struct nbd_handle *h);
void rp_src_close (struct rp_src *s);
int64_t rp_src_size (struct rp_src *s);

/* Block status of [OFF, OFF + LEN): appends to ALLOC (base:allocation flags
 * | layer << RP_EXT_LAYER_SHIFT) and, if DIRTY and the source has a bitmap,
 * to DIRTY, both covering the whole range.  0, or -errno with *err. */
int rp_src_status (struct rp_src *s, uint64_t off, uint64_t len,
                   struct rp_extents *alloc, struct rp_extents *dirty,
                   char **err);

/* Read LEN bytes at OFF of the composed disk.  0, or -errno (*err if ERR). */
int rp_src_pread (struct rp_src *s, void *buf, size_t len, uint64_t off,
                  char **err);

#endif
