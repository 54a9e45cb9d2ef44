/* Extent arithmetic for exports: which byte ranges to copy, to zero, or to
 * skip, from NBD block status (base:allocation and a dirty bitmap). Pure. */
#ifndef RPFS_EXTENT_H
#define RPFS_EXTENT_H

#include <stddef.h>
#include <stdint.h>

/* NBD base:allocation flags */
#define RP_EXT_HOLE 1u
#define RP_EXT_ZERO 2u
/* Which export of a chain holds the range (source.h), above the flags */
#define RP_EXT_LAYER_SHIFT 8
#define RP_EXT_LAYER(f) ((f) >> RP_EXT_LAYER_SHIFT)
/* NBD qemu:dirty-bitmap flag */
#define RP_EXT_DIRTY 1u

struct rp_extent {
  uint64_t off, len;
  uint32_t flags;
};

/* A growable list of extents. */
struct rp_extents {
  struct rp_extent *v;
  size_t n, cap;
};
void rp_extents_append (struct rp_extents *e, uint64_t off, uint64_t len,
                        uint32_t flags);  /* merges with the last if same flags
                                             and contiguous */
void rp_extents_free (struct rp_extents *e);
/* The body of a block status callback for one meta context: the N/2
 * (length, flags) pairs of E, which start at OFF, go into LIST if OFF
 * is where what it holds ends (*END), and *END moves past them; a reply
 * that does not follow on (a server may send more than asked) is left. */
void rp_extents_take (struct rp_extents *list, uint64_t *end, uint64_t off,
                      const uint32_t *e, size_t n);

enum rp_op_kind { RP_OP_COPY, RP_OP_ZERO };
struct rp_op {
  uint64_t off, len;
  enum rp_op_kind kind;
};
struct rp_ops {
  struct rp_op *v;
  size_t n, cap;
  uint64_t copy_bytes, zero_bytes;
};

/* Build the work list for [START, END), appending to OPS (zero it first; ops
 * and byte totals accumulate over calls, and an op contiguous with the last
 * one of the same kind is extended, so the list can be built window by
 * window):
 *  full export (DIRTY == NULL): COPY every range of ALLOC that does not read
 *    as zero (RP_EXT_ZERO); zero ranges are skipped.  A range with HOLE but
 *    not ZERO is copied: NBD promises nothing about its content;
 *  differential (DIRTY != NULL): only ranges where DIRTY has RP_EXT_DIRTY;
 *    within them, ZERO the ranges with RP_EXT_ZERO and COPY the rest.
 * Ops are sorted, adjacent ranges of one kind are merged, and cut so that no
 * op crosses a multiple of MAXLEN (e.g. 4 MiB; 0: no limit): every op is at
 * most MAXLEN long and MAXLEN-aligned cuts keep requests cluster-aligned.
 * ALLOC and DIRTY must each cover [START, END) contiguously, sorted; a gap is
 * treated as data in ALLOC and as dirty in DIRTY (copying too much is safe). */
void rp_ops_build (struct rp_ops *ops, const struct rp_extents *alloc,
                   const struct rp_extents *dirty, uint64_t start,
                   uint64_t end, uint64_t maxlen);
void rp_ops_free (struct rp_ops *ops);

/* Sum of ALLOC ranges that are not holes (allocated bytes, for st_blocks). */
uint64_t rp_extents_allocated (const struct rp_extents *alloc);
/* For SEEK_DATA/SEEK_HOLE over extents starting at their first offset:
 * offset of the first data byte (in an extent without RP_EXT_HOLE; ZERO does
 * not matter) >= OFF, or UINT64_MAX if none in the list. */
uint64_t rp_extents_next_data (const struct rp_extents *e, uint64_t off);
/* Same for the first byte in an RP_EXT_HOLE extent.  UINT64_MAX if none: the
 * caller answers with the end of the disk (the implicit hole at EOF). */
uint64_t rp_extents_next_hole (const struct rp_extents *e, uint64_t off);

#endif
