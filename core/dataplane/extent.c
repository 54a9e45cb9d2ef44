/* Extent arithmetic for exports.  Pure functions over sorted extent lists as
 * NBD block status returns them.
 *
 * Whether a range may be skipped follows the NBD flags' meaning: only
 * NBD_STATE_ZERO promises that a range reads as zeroes; NBD_STATE_HOLE alone
 * says nothing about the content (NBD spec), so such a range is copied, as
 * nbdcopy does.  For SEEK_DATA/SEEK_HOLE, on the other hand, a hole is
 * exactly what the server calls a hole. */
#include <stdbool.h>
#include <stdlib.h>

#include "extent.h"

static void *
grow (void *v, size_t *cap, size_t n, size_t size)
{
  if (n < *cap)
    return v;
  size_t c = *cap ? *cap * 2 : 16;
  void *r = reallocarray (v, c, size);
  if (!r)
    abort ();
  *cap = c;
  return r;
}

void
rp_extents_append (struct rp_extents *e, uint64_t off, uint64_t len,
                   uint32_t flags)
{
  if (len == 0)
    return;
  if (e->n > 0) {
    struct rp_extent *last = &e->v[e->n - 1];
    if (last->flags == flags && last->off + last->len == off) {
      last->len += len;
      return;
    }
  }
  e->v = grow (e->v, &e->cap, e->n, sizeof *e->v);
  e->v[e->n++] = (struct rp_extent) { off, len, flags };
}

void
rp_extents_take (struct rp_extents *list, uint64_t *end, uint64_t off,
                 const uint32_t *e, size_t n)
{
  if (off != *end)
    return;
  for (size_t i = 0; i + 1 < n; i += 2) {
    rp_extents_append (list, off, e[i], e[i + 1]);
    off += e[i];
  }
  *end = off;
}

void
rp_extents_free (struct rp_extents *e)
{
  free (e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}

void
rp_ops_free (struct rp_ops *ops)
{
  free (ops->v);
  ops->v = NULL;
  ops->n = ops->cap = 0;
  ops->copy_bytes = ops->zero_bytes = 0;
}

/* First offset after X where an op must be cut: the next multiple of MAXLEN,
 * so that every op lies inside one MAXLEN-aligned window (requests stay
 * aligned to the cluster size whenever MAXLEN is a multiple of it). */
static uint64_t
window_end (uint64_t x, uint64_t maxlen)
{
  if (maxlen == 0)
    return UINT64_MAX;
  uint64_t w = x - x % maxlen;
  return w > UINT64_MAX - maxlen ? UINT64_MAX : w + maxlen;
}

/* Add [OFF, OFF+LEN) of KIND, merging with the previous op when contiguous
 * and of the same kind, and cutting at MAXLEN windows. */
static void
emit (struct rp_ops *ops, uint64_t off, uint64_t len, enum rp_op_kind kind,
      uint64_t maxlen)
{
  while (len > 0) {
    struct rp_op *last = ops->n ? &ops->v[ops->n - 1] : NULL;
    uint64_t take;

    if (last && last->kind == kind && last->off + last->len == off
        && window_end (last->off, maxlen) > off) {
      take = window_end (last->off, maxlen) - off;
      if (take > len)
        take = len;
      last->len += take;
    }
    else {
      take = window_end (off, maxlen) - off;
      if (take > len)
        take = len;
      ops->v = grow (ops->v, &ops->cap, ops->n, sizeof *ops->v);
      ops->v[ops->n++] = (struct rp_op) { off, take, kind };
    }
    if (kind == RP_OP_COPY)
      ops->copy_bytes += take;
    else
      ops->zero_bytes += take;
    off += take;
    len -= take;
  }
}

/* The extent of E covering POS, starting the search at *I (lists are sorted,
 * and POS only grows).  Returns its flags and sets *END to where it stops.
 * Where E has a gap (it should not), *DEFAULT_FLAGS is used up to the next
 * extent so the caller errs on the side of copying. */
static uint32_t
flags_at (const struct rp_extents *e, size_t *i, uint64_t pos,
          uint32_t default_flags, uint64_t *end)
{
  while (*i < e->n && e->v[*i].off + e->v[*i].len <= pos)
    (*i)++;
  if (*i < e->n && e->v[*i].off <= pos) {
    *end = e->v[*i].off + e->v[*i].len;
    return e->v[*i].flags;
  }
  *end = *i < e->n ? e->v[*i].off : UINT64_MAX;
  return default_flags;
}

void
rp_ops_build (struct rp_ops *ops, const struct rp_extents *alloc,
              const struct rp_extents *dirty, uint64_t start, uint64_t end,
              uint64_t maxlen)
{
  size_t ia = 0, id = 0;
  uint64_t pos = start;

  while (pos < end) {
    uint64_t aend, dend = UINT64_MAX, next;
    /* Uncovered: treat as data (copy) and as dirty. */
    uint32_t af = flags_at (alloc, &ia, pos, 0, &aend);
    bool is_dirty = true;
    if (dirty)
      is_dirty = flags_at (dirty, &id, pos, RP_EXT_DIRTY, &dend)
        & RP_EXT_DIRTY;

    next = end;
    if (aend < next)
      next = aend;
    if (dend < next)
      next = dend;

    bool zero = af & RP_EXT_ZERO;
    if (is_dirty && !(zero && !dirty))
      emit (ops, pos, next - pos, zero ? RP_OP_ZERO : RP_OP_COPY, maxlen);
    pos = next;
  }
}

uint64_t
rp_extents_allocated (const struct rp_extents *alloc)
{
  uint64_t sum = 0;
  for (size_t i = 0; i < alloc->n; i++)
    if (!(alloc->v[i].flags & RP_EXT_HOLE))
      sum += alloc->v[i].len;
  return sum;
}

/* First byte >= OFF in an extent whose HOLE flag equals WANT_HOLE. */
static uint64_t
next_with (const struct rp_extents *e, uint64_t off, bool want_hole)
{
  for (size_t i = 0; i < e->n; i++) {
    const struct rp_extent *x = &e->v[i];
    if (x->off + x->len <= off)
      continue;
    if (((x->flags & RP_EXT_HOLE) != 0) == want_hole)
      return x->off > off ? x->off : off;
  }
  return UINT64_MAX;
}

uint64_t
rp_extents_next_data (const struct rp_extents *e, uint64_t off)
{
  return next_with (e, off, false);
}

uint64_t
rp_extents_next_hole (const struct rp_extents *e, uint64_t off)
{
  return next_with (e, off, true);
}
