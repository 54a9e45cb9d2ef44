/* A full disk as an archive member (arcjob.c): disks/<disk>.raw, a sparse
 * member holding the disk's data ranges only (GNU sparse 1.0 in pax), read
 * straight from QEMU's NBD export of the point-in-time disk.  Block status
 * gives the data ranges (the sparse map, which precedes the data); then up
 * to DEPTH ops of 2 MiB are in flight on one connection, each as requests
 * of the backend's read_max (a VM's QEMU: 256 KiB), and are added in
 * order.  Nothing is staged.
 *
 * Two hashes come with the member, each in a hasher thread of its own
 * (memberhash.c): its SHA256SUMS line, over the unpacked raw file (so the
 * holes hash as the zeros they unpack to), and the disk's digest table.
 * The first is one sequential SHA-256 over the whole disk: for a disk that
 * is mostly holes it is the export's critical path (6 GiB of zeros after
 * 2 GiB of data take 3.5 s here, and can only start once the data before
 * them is hashed).  Fed from the archive's reads, it waits for the archive
 * writer, the slowest stage while there is data.  So when the holes are
 * at least as large as the data, a second reader on a connection of its
 * own reads the disk again for the hashers alone, in a thread of its own,
 * and runs ahead of the archive: the zeros are hashed while the archive
 * is still being written.  Both read the same point-in-time disk.  Not
 * under a bandwidth cap (export-rate-limit, `auto` by default for a
 * running VM): both reads would share it, and the archive would take
 * twice as long to spare the hash of the zeros.  Otherwise (mostly data,
 * a cap, or no second connection) the hashers are fed from the archive's
 * own reads. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <libnbd.h>

#include "internal.h"
#include "arc.h"
#include "export.h"
#include "extent.h"
#include "memberhash.h"
#include "blockhash.h"
#include "source.h"

/* Reads in flight: 4 x 2 MiB keep a local NBD server busy; each more
 * costs 2 MiB of rpfs's memory, whose budget libzstd mostly takes.  The
 * hashers' own reader has 2: it waits for nothing but the hashers. */
#define DEPTH 4
#define AHEAD_DEPTH 2
#define PIECES 8                /* reads per 2 MiB op, at the smallest size */

struct reader {
  struct rp_src src;            /* one export, or a chain (source.h) */
  struct nbd_handle *h;         /* src.h[0] */
  uint32_t piece;               /* bytes per read request (read_max) */
  unsigned depth;               /* ops in flight, at most DEPTH */
  char *buf[DEPTH];
  int64_t cookie[DEPTH][PIECES];  /* 0: done at issue */
  unsigned ncookie[DEPTH];
  bool to_arc;                  /* the archive's reader */
  atomic_bool *stop;            /* set: the other reader has failed */
  struct rp_mhash *mh;          /* the member's SHA-256, or NULL */
  struct rp_mhash *mt;          /* the disk's digest table, or NULL */
  uint64_t tick[DEPTH], ttick[DEPTH];  /* their tickets for each buffer */
};

/* The data ranges of OPS, merged, as OFF,LEN pairs (*N of them). */
static uint64_t *
sparse_map (const struct rp_ops *ops, size_t *n)
{
  uint64_t *v = rp_calloc (2 * ops->n + 2, sizeof *v);
  *n = 0;
  for (size_t i = 0; i < ops->n; i++) {
    if (*n && v[2 * *n - 2] + v[2 * *n - 1] == ops->v[i].off)
      v[2 * *n - 1] += ops->v[i].len;
    else {
      v[2 * *n] = ops->v[i].off;
      v[2 * *n + 1] = ops->v[i].len;
      (*n)++;
    }
  }
  return v;
}

static int
reader_open (struct reader *r, const struct rp_endpoint *ep, unsigned depth,
             char **err)
{
  if (rp_src_open (&r->src, ep, false, err) != 0)
    return -1;
  r->h = r->src.h[0];
  /* At most 2 MiB (the buffers), at least 256 KiB (PIECES of them). */
  r->piece = ep->read_max >= (2u << 20) / PIECES && ep->read_max < (2u << 20)
    ? ep->read_max : 2u << 20;
  r->depth = depth;
  for (unsigned i = 0; i < depth; i++)
    r->buf[i] = rp_bigbuf (2u << 20);
  return 0;
}

/* After its hashers are finished (they may still hold its buffers). */
static void
reader_close (struct reader *r)
{
  rp_src_close (&r->src);
  for (unsigned i = 0; i < DEPTH; i++)
    rp_bigbuf_free (r->buf[i], 2u << 20);   /* NULL past r->depth */
}

/* Start the reads of OP into buffer slot K: requests of at most r->piece
 * bytes (the backend's read_max: a VM's QEMU serves small ones best), all
 * in flight; a chain (source.h) is read through its map at once.  0, or
 * -1 (reads already issued are left to the connection's close). */
static int
issue (struct reader *r, size_t k, const struct rp_op *op, char **err)
{
  r->ncookie[k] = 0;
  if (r->src.n > 1) {
    r->cookie[k][r->ncookie[k]++] =
      rp_src_pread (&r->src, r->buf[k], op->len, op->off, err) == 0 ? 0 : -1;
    return r->cookie[k][0] == 0 ? 0 : -1;
  }
  for (uint64_t at = 0; at < op->len;) {
    uint64_t l = op->len - at < r->piece ? op->len - at : r->piece;
    if (r->ncookie[k] == PIECES) {
      *err = rp_strdup ("an op larger than 2 MiB");  /* never */
      return -1;
    }
    int64_t c = nbd_aio_pread (r->h, r->buf[k] + at, l, op->off + at,
                               NBD_NULL_COMPLETION, 0);
    if (c == -1) {
      *err = rp_strdup (nbd_get_error () ?: "cannot issue a read");
      return -1;
    }
    r->cookie[k][r->ncookie[k]++] = c;
    at += l;
  }
  return 0;
}

/* Wait for every read of op I of R and hand back its buffer, or NULL. */
static char *
collect (struct reader *r, size_t i)
{
  size_t k = i % r->depth;
  bool ok = true;
  for (unsigned j = 0; j < r->ncookie[k]; j++) {
    int64_t c = r->cookie[k][j];
    int d = c == 0 ? 1 : 0;
    while (d == 0 && (d = nbd_aio_command_completed (r->h, c)) == 0)
      if (nbd_poll (r->h, -1) == -1)
        return NULL;
    ok &= d == 1;
  }
  return ok ? r->buf[k] : NULL;
}

static bool
halted (struct export_work *w, const struct reader *r)
{
  return atomic_load (&w->job->cancel) || (r->stop && atomic_load (r->stop));
}

/* Issue the reads of op I (its buffer once its hashers are done with it). */
static int
issue_next (struct export_work *w, struct reader *r, const struct rp_op *op,
            size_t i, char **why)
{
  if (!rp_rate_wait (&w->rate, op->len, &w->job->cancel) || halted (w, r))
    return -1;
  size_t k = i % r->depth;
  /* The buffer, once hashed: behind a long hole that takes a while. */
  if (r->mh && !rp_mhash_wait (r->mh, r->tick[k], &w->job->cancel))
    return -1;
  if (r->mt && !rp_mhash_wait (r->mt, r->ttick[k], &w->job->cancel))
    return -1;
  CLEANUP_FREE char *msg = NULL;
  if (issue (r, k, op, &msg) != 0)
    return rp_arcjob_nbd_rv (w, msg ? msg : "cannot read", why);
  return RV_OK;
}

/* LEN bytes at OFF: BUF, or zeros (BUF NULL), to R's hashers and, if R is
 * the archive's reader, to the member.  K: BUF's slot. */
static int
emit (struct export_work *w, struct reader *r, size_t k, const char *buf,
      uint64_t off, uint64_t len, char **why)
{
  if (r->mh) {
    uint64_t t = rp_mhash_data (r->mh, buf, off, len);
    if (buf)
      r->tick[k] = t;
  }
  if (r->mt && buf)
    r->ttick[k] = rp_mhash_data (r->mt, buf, off, len);
  if (!r->to_arc)
    return RV_OK;
  if ((buf ? rp_arc_data (w->arc, buf, len, why)
       : rp_arc_zeros (w->arc, len, why)) != 0)
    return rp_arcjob_arc_rv (w, why);
  return RV_OK;
}

/* Stream the data of OPS (reads pipelined, in order) and the holes
 * between them, SIZE bytes in all, to R's hashers and (the archive's
 * reader) into the open member.  A ReturnValue, or -1 when halted. */
static int
pump (struct export_work *w, struct reader *r, const struct rp_ops *ops,
      uint64_t size, char **why)
{
  size_t issued = 0;
  uint64_t pos = 0;
  int rv;
  for (size_t i = 0; i < ops->n; i++) {
    for (; issued < ops->n && issued < i + r->depth; issued++)
      if ((rv = issue_next (w, r, &ops->v[issued], issued, why)) != RV_OK)
        return rv;
    const struct rp_op *op = &ops->v[i];
    if (op->off > pos
        && (rv = emit (w, r, 0, NULL, pos, op->off - pos, why)) != RV_OK)
      return rv;
    char *buf = collect (r, i);
    if (!buf) {
      CLEANUP_FREE char *m = rp_asprintf ("reading the point-in-time disk at "
                                          "offset %" PRIu64 ": %s", op->off,
                                          nbd_get_error ());
      return rp_arcjob_nbd_rv (w, m, why);
    }
    if ((rv = emit (w, r, i % r->depth, buf, op->off, op->len, why))
        != RV_OK)
      return rv;
    pos = op->off + op->len;
    if (r->to_arc)
      rp_export_progress (w, pos, size);
    if (halted (w, r))
      return -1;
  }
  if (size > pos)
    return emit (w, r, 0, NULL, pos, size - pos, why);
  return RV_OK;
}

/* The hashers' own reader, ahead of the archive (see the top). */
struct ahead {
  struct export_work *w;
  const struct rp_ops *ops;
  uint64_t size;
  struct reader r;
  atomic_bool stop;             /* the archive's reader failed: stop */
  atomic_bool failed;           /* this one failed: the archive's stops */
  pthread_t thread;
  int rv;
  char *why;
};

static void *
ahead_main (void *opaque)
{
  struct ahead *a = opaque;     /* at the job thread's nice value */
  a->rv = pump (a->w, &a->r, a->ops, a->size, &a->why);
  if (a->rv != RV_OK)
    atomic_store (&a->failed, true);
  return NULL;
}

/* Worth a second read: the holes at least as large as the data, and no
 * bandwidth cap (export-rate-limit), which both reads would share: the
 * archive would take twice as long to spare the hash of the zeros. */
static bool
worth_reading_ahead (struct export_work *w, const struct rp_ops *ops,
                     uint64_t size)
{
  uint64_t data = 0;
  for (size_t i = 0; i < ops->n; i++)
    data += ops->v[i].len;
  return data > 0 && size - data >= data
    && atomic_load (&w->rate.bytes_per_sec) == 0
    && !w->rp->sys->conf->export_rate_auto;
}

/* Start A with R's hashers (R then feeds none); false: R keeps them. */
static bool
ahead_start (struct ahead *a, struct reader *r, const struct rp_endpoint *ep)
{
  CLEANUP_FREE char *e = NULL;
  if (!worth_reading_ahead (a->w, a->ops, a->size))
    return false;
  if (reader_open (&a->r, ep, AHEAD_DEPTH, &e) != 0) {
    fprintf (stderr, "rpfs: %s: job %s: no second connection to read the "
             "disk ahead for its hashes (%s); they follow the archive\n",
             a->w->rp->sys->name, a->w->job->id, e ? e : "?");
    return false;
  }
  a->r.stop = &a->stop;
  a->r.mh = r->mh;
  a->r.mt = r->mt;
  if (pthread_create (&a->thread, NULL, ahead_main, a) != 0) {
    reader_close (&a->r);
    return false;
  }
  r->mh = r->mt = NULL;
  r->stop = &a->failed;
  return true;
}

/* Join A after the archive's pump ended with RV: A's failure if RV was
 * fine, or if the archive's pump stopped because of it (-1 without a
 * cancel).  Its hashers are still to be finished. */
static int
ahead_join (struct ahead *a, int rv, char **why)
{
  if (rv != RV_OK) {           /* it may wait for a hasher in a hole */
    atomic_store (&a->stop, true);
    rp_mhash_abandon (a->r.mh);
    if (a->r.mt)
      rp_mhash_abandon (a->r.mt);
  }
  pthread_join (a->thread, NULL);
  bool cancelled = atomic_load (&a->w->job->cancel);
  if (!cancelled && a->rv != RV_OK && a->rv != -1
      && (rv == RV_OK || rv == -1)) {
    rv = a->rv;
    free (*why);
    *why = a->why;
    a->why = NULL;
  }
  free (a->why);
  return rv;
}

int
rp_arcraw_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
                struct rp_bh *bh, char **why)
{
  struct rp_system *sys = w->rp->sys;
  struct rp_ops ops = { 0 };
  struct reader r = { .to_arc = true };
  struct ahead a = { .w = w, .ops = &ops };
  bool ahead = false;
  size_t nmap = 0;
  uint64_t *map = NULL;
  char *e = NULL;
  int rv = RV_OK;
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.raw", sys->disks[di].id);
  CLEANUP_FREE char *name = rp_arcjob_member (w, rel);
  if (rp_copy_plan (ep, &ops, &a.size, &e) != 0) {
    rv = rp_arcjob_nbd_rv (w, e ? e : "block status failed", why);
    goto out;
  }
  /* Whole blocks, so that each can be hashed (2 MiB: the reads' size). */
  if (bh)
    rp_bh_align (bh, &ops, a.size, 2u << 20);
  if (reader_open (&r, ep, DEPTH, &e) != 0) {
    rv = rp_arcjob_nbd_rv (w, e, why);
    goto out;
  }
  map = sparse_map (&ops, &nmap);
  if (rp_arc_begin (w->arc, name, a.size, w->rp->created, map, nmap,
                    why) != 0)
    rv = rp_arcjob_arc_rv (w, why);
  rp_arc_unhashed (w->arc);
  r.mh = rp_mhash_start (NULL, true);
  r.mt = bh ? rp_mhash_start (bh, false) : NULL;
  struct rp_mhash *mh = r.mh, *mt = r.mt;
  if (rv == RV_OK)
    ahead = ahead_start (&a, &r, ep);
  if (rv == RV_OK)
    rv = pump (w, &r, &ops, a.size, why);
  if (ahead)
    rv = ahead_join (&a, rv, why);
  char hex[65], unused[65];
  if (rv == RV_OK && !rp_mhash_wait_all (mh, &w->job->cancel))
    rv = -1;
  if (rv != RV_OK) {
    rp_mhash_abandon (mh);
    if (mt)
      rp_mhash_abandon (mt);
  }
  rp_mhash_finish (mh, hex);    /* before the buffers go */
  if (mt)
    rp_mhash_finish (mt, NULL);
  if (ahead)
    reader_close (&a.r);
  if (rv == RV_OK && rp_arc_end (w->arc, unused, why) != 0)
    rv = rp_arcjob_arc_rv (w, why);
  if (rv == RV_OK)
    rp_arcjob_add_sum (w, rel, hex);
 out:
  reader_close (&r);
  rp_ops_free (&ops);
  free (map);
  free (e);
  return rv;
}
