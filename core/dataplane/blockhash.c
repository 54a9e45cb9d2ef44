/* Digest tables in memory and the hashing an export does as it copies
 * (blockhash.h).  Thread model: the copy workers call rp_bh_apply at the
 * same time, each on its own ops; rp_bh_align made every block belong to
 * one op, so each table entry has a single writer and no lock is needed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>
#include <openssl/evp.h>

#include "blockhash.h"
#include "nbdpieces.h"
#include "extent.h"
#include "util.h"

static unsigned char zero_hash[RP_BH_LEN];      /* of RP_BH_BLOCK zeros */
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

void
rp_bh_hash (const void *buf, size_t len, unsigned char *out)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest (buf, len, md, &n, EVP_sha256 (), NULL) != 1 || n < RP_BH_LEN)
    abort ();                   /* libcrypto without SHA-256: unusable */
  memcpy (out, md, RP_BH_LEN);
}

static void
init_zero (void)
{
  void *z = rp_calloc (1, RP_BH_BLOCK);
  rp_bh_hash (z, RP_BH_BLOCK, zero_hash);
  free (z);
}

uint64_t
rp_digests_block_len (const struct rp_digests *t, uint64_t b)
{
  uint64_t off = b * t->block;
  return t->size - off < t->block ? t->size - off : t->block;
}

/* The hash of zeros for block B (the last block may be short). */
static void
zero_of (const struct rp_digests *t, uint64_t b, unsigned char *out)
{
  uint64_t len = rp_digests_block_len (t, b);
  if (len == RP_BH_BLOCK) {
    pthread_once (&zero_once, init_zero);
    memcpy (out, zero_hash, RP_BH_LEN);
    return;
  }
  void *z = rp_calloc (1, len ? len : 1);
  rp_bh_hash (z, len, out);
  free (z);
}

bool
rp_digests_is_zero (const struct rp_digests *t, uint64_t b)
{
  unsigned char z[RP_BH_LEN];
  zero_of (t, b, z);
  return memcmp (z, rp_digests_at (t, b), RP_BH_LEN) == 0;
}

struct rp_digests *
rp_digests_new (uint64_t size)
{
  struct rp_digests *t = rp_calloc (1, sizeof *t);
  t->size = size;
  t->block = RP_BH_BLOCK;
  t->count = (size + RP_BH_BLOCK - 1) / RP_BH_BLOCK;
  t->v = rp_calloc (t->count ? t->count : 1, RP_BH_LEN);
  for (uint64_t b = 0; b < t->count; b++)
    zero_of (t, b, rp_digests_at (t, b));
  return t;
}

void
rp_digests_free (struct rp_digests *t)
{
  if (t) {
    free (t->v);
    free (t);
  }
}

struct rp_bh *
rp_bh_new (enum rp_bh_mode mode, uint64_t size, struct rp_digests *base)
{
  if (mode != RP_BH_FULL
      && (!base || base->size != size || base->block != RP_BH_BLOCK)) {
    rp_digests_free (base);
    return NULL;
  }
  struct rp_bh *bh = rp_calloc (1, sizeof *bh);
  bh->mode = mode;
  if (mode == RP_BH_DIFF) {     /* the base is the starting point */
    bh->tab = base;
    base = NULL;
  }
  else
    bh->tab = rp_digests_new (size);
  bh->base = base;
  atomic_init (&bh->skipped, 0);
  return bh;
}

bool
rp_bh_defer (struct rp_bh *bh)
{
  return bh && bh->mode == RP_BH_FULL && (bh->defer = true);
}

struct rp_digests *
rp_bh_end (struct rp_bh *bh, bool keep)
{
  if (!bh)
    return NULL;
  struct rp_digests *t = bh->tab;
  rp_digests_free (bh->base);
  free (bh);
  if (keep)
    return t;
  rp_digests_free (t);
  return NULL;
}

/* ---- aligning the work list ---- */

/* Block-aligned segments in order; flags RP_EXT_ZERO for a zero segment,
 * 0 for a copy.  Consecutive segments may share their edge block only. */
struct segs {
  struct rp_extents v;
};

static uint64_t
seg_end (const struct rp_extent *e)
{
  return e->off + e->len;
}

/* Add [S, E) of kind ZERO (or copy), resolving a shared edge block: a
 * block that is copied anywhere is copied. */
static void
seg_add (struct segs *s, uint64_t st, uint64_t e, bool zero)
{
  struct rp_extent *last = s->v.n ? &s->v.v[s->v.n - 1] : NULL;
  if (last && seg_end (last) > st) {
    if (!(last->flags & RP_EXT_ZERO) || zero)
      st = seg_end (last);      /* the shared block is already covered */
    else if (last->off >= st)
      s->v.n--;                 /* a zero block that the copy takes over */
    else
      last->len = st - last->off;
  }
  if (st < e)
    rp_extents_append (&s->v, st, e - st, zero ? RP_EXT_ZERO : 0);
}

static void
seg_op (struct segs *s, const struct rp_op *op, uint64_t size)
{
  const uint64_t B = RP_BH_BLOCK;
  uint64_t end = op->off + op->len;
  uint64_t bs = op->off - op->off % B;
  uint64_t be = end % B ? end - end % B + B : end;
  if (be > size)
    be = size;
  if (op->kind == RP_OP_COPY) {
    seg_add (s, bs, be, false);
    return;
  }
  uint64_t zs = op->off % B ? bs + B : bs;   /* whole blocks zeroed */
  uint64_t ze = end % B && end < size ? end - end % B : end;
  if (zs >= ze) {
    seg_add (s, bs, be, false);
    return;
  }
  if (zs > bs)
    seg_add (s, bs, zs, false);
  seg_add (s, zs, ze, true);
  if (be > ze)
    seg_add (s, ze, be, false);
}

void
rp_bh_align (const struct rp_bh *bh, struct rp_ops *ops, uint64_t size,
             uint64_t maxlen)
{
  struct segs s = { { 0 } };
  bool fill = bh->mode == RP_BH_DIGEST;
  for (size_t i = 0; i < ops->n; i++) {
    uint64_t at = s.v.n ? seg_end (&s.v.v[s.v.n - 1]) : 0;
    uint64_t bs = ops->v[i].off - ops->v[i].off % RP_BH_BLOCK;
    if (fill && at < bs)
      seg_add (&s, at, bs, true);
    seg_op (&s, &ops->v[i], size);
  }
  uint64_t at = s.v.n ? seg_end (&s.v.v[s.v.n - 1]) : 0;
  if (fill && at < size)
    seg_add (&s, at, size, true);
  /* Back to ops: ALLOC says zero or data, DIRTY says which ranges count. */
  struct rp_extents alloc = { 0 }, dirty = { 0 };
  at = 0;
  for (size_t i = 0; i < s.v.n; i++) {
    const struct rp_extent *e = &s.v.v[i];
    if (e->off > at) {
      rp_extents_append (&alloc, at, e->off - at, 0);
      rp_extents_append (&dirty, at, e->off - at, 0);
    }
    rp_extents_append (&alloc, e->off, e->len, e->flags);
    rp_extents_append (&dirty, e->off, e->len, RP_EXT_DIRTY);
    at = seg_end (e);
  }
  if (at < size) {
    rp_extents_append (&alloc, at, size - at, 0);
    rp_extents_append (&dirty, at, size - at, 0);
  }
  rp_ops_free (ops);
  memset (ops, 0, sizeof *ops);
  rp_ops_build (ops, &alloc, &dirty, 0, size, maxlen);
  rp_extents_free (&alloc);
  rp_extents_free (&dirty);
  rp_extents_free (&s.v);
}

/* ---- the copy workers' hook ---- */

enum what { SKIP, DATA, ZERO };

static bool
all_zero (const char *buf, size_t len)
{
  return len == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0);
}

/* Hash block B (data at P, or zeros when P is NULL) into the table and
 * say what to write for it. */
static enum what
block (struct rp_bh *bh, uint64_t b, const char *p)
{
  struct rp_digests *t = bh->tab;
  size_t len = (size_t) rp_digests_block_len (t, b);
  unsigned char *ent = rp_digests_at (t, b);
  bool zero = !p || all_zero (p, len);
  if (zero)
    zero_of (t, b, ent);
  else if (!bh->defer)
    rp_bh_hash (p, len, ent);
  switch (bh->mode) {
  case RP_BH_FULL:
    return zero ? SKIP : DATA;
  case RP_BH_DIFF:
    return zero ? ZERO : DATA;
  case RP_BH_DIGEST:
  default:
    if (!memcmp (ent, rp_digests_at (bh->base, b), RP_BH_LEN)) {
      atomic_fetch_add (&bh->skipped, len);
      return SKIP;
    }
    return zero ? ZERO : DATA;
  }
}

static int
flush_run (struct nbd_handle *dst, enum what w, const char *buf,
           uint64_t off, uint64_t len, uint64_t *copied, uint64_t *zeroed)
{
  if (!dst)                     /* only hashing (an archive member) */
    return 0;
  if (w == DATA) {
    *copied += len;
    return rp_nbd_write (dst, buf, len, off);
  }
  if (w == ZERO) {
    *zeroed += len;
    return nbd_zero (dst, len, off, 0) == -1 ? -1 : 0;
  }
  return 0;
}

int
rp_bh_apply (struct rp_bh *bh, struct nbd_handle *dst, const char *buf,
             uint64_t off, uint64_t len, uint64_t *copied, uint64_t *zeroed)
{
  const struct rp_digests *t = bh->tab;
  uint64_t b = off / t->block, end = off + len;
  enum what run = SKIP;
  uint64_t run_off = off;
  for (uint64_t at = off; at < end; b++) {
    uint64_t blen = rp_digests_block_len (t, b);
    enum what w = block (bh, b, buf ? buf + (at - off) : NULL);
    if (w != run) {
      if (flush_run (dst, run, buf ? buf + (run_off - off) : NULL, run_off,
                     at - run_off, copied, zeroed) != 0)
        return -1;
      run = w;
      run_off = at;
    }
    at += blen;
  }
  return flush_run (dst, run, buf ? buf + (run_off - off) : NULL, run_off,
                    end - run_off, copied, zeroed);
}
