/* The data mover of an export: reads the point-in-time disk from QEMU's NBD
 * export with libnbd and writes the target qcow2 through qemu-nbd (QEMU's
 * own qcow2 writer, target.h) with libnbd, so rpfs never formats qcow2
 * itself.
 *
 * 1. Plan: block status over the whole disk, base:allocation and, for a
 *    differential export, qemu:dirty-bitmap:<transient bitmap>, turned into
 *    a list of copy / zero operations (extent.c).  Holes and zero ranges are
 *    never read or written in a full export; in a differential one a changed
 *    range that now reads as zero becomes a zero write (metadata only in
 *    qcow2), so it shadows the backing file.
 * 2. Copy: WORKERS threads, each with its own source and target connection
 *    (both servers advertise multi-conn), take operations in order from a
 *    shared index.  An operation is read as requests of at most READ_MAX
 *    bytes, all in flight at once on the worker's source connection, then
 *    written to the target as requests of RP_WRITE_MAX bytes, one at a
 *    time (nbdpieces.h: RP_WRITE_DEPTH).  With a bandwidth cap
 *    (ratelimit.h), a worker waits for its slot before each read; zero
 *    writes read nothing and never wait.
 * Thread model: the operation index, byte counters and the first error are
 * atomics or under ctx->lock; libnbd handles are private to a worker. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "internal.h"
#include "extent.h"
#include "ratelimit.h"
#include "blockhash.h"
#include "nbdpieces.h"
#include "source.h"
#include "target.h"

#define WORKERS 4
#define OP_MAX (2u << 20)          /* bytes per operation */
/* Bytes per read request.  The source server allocates a buffer for each
 * request: a VM's QEMU runs with glibc's default malloc settings, which map
 * and unmap a 2 MiB buffer for every request, so every read faulted 512
 * fresh pages in and its main loop (the guest's too) spent 3.7 s of CPU
 * per GiB exported; 256 KiB pieces (nbdcopy's size) cost it 0.9 s
 * (docs/performance.md, "The running VM's floor"). */
#define READ_MAX (256u << 10)
#define STATUS_CHUNK (1ull << 30)  /* block status per request (< 4 GiB) */

struct copy_ctx {
  const struct rp_endpoint *src;
  const struct rp_target *target;
  const char *dst_name;
  bool full;
  uint64_t read_max;            /* bytes per read request */
  struct rp_ops ops;
  atomic_size_t next;
  atomic_uint_fast64_t done;
  atomic_bool *cancel;
  struct rp_rate *rate;         /* NULL: no cap */
  struct rp_bh *bh;             /* NULL: no digest table (blockhash.h) */
  rp_progress_fn progress;
  void *opaque;
  pthread_mutex_t lock;
  int err;                      /* first errno */
  char *msg;                    /* first error message */
  atomic_uint_fast64_t copied, zeroed;
};

static void
set_error (struct copy_ctx *c, int err, char *msg)
{
  pthread_mutex_lock (&c->lock);
  if (!c->err) {
    c->err = err ? err : EIO;
    c->msg = msg;
    msg = NULL;
  }
  pthread_mutex_unlock (&c->lock);
  free (msg);
}

/* Fill c->ops from the source's block status (source.h), window by
 * window. */
static int
plan (struct copy_ctx *c, struct rp_src *src, uint64_t size, char **err)
{
  bool diff = !c->full;
  for (uint64_t off = 0; off < size; off += STATUS_CHUNK) {
    uint64_t len = size - off < STATUS_CHUNK ? size - off : STATUS_CHUNK;
    struct rp_extents alloc = { 0 }, dirty = { 0 };
    int r = rp_src_status (src, off, len, &alloc, diff ? &dirty : NULL, err);
    if (r == 0)
      rp_ops_build (&c->ops, &alloc, diff ? &dirty : NULL, off, off + len,
                    OP_MAX);
    rp_extents_free (&alloc);
    rp_extents_free (&dirty);
    if (r)
      return -r;
  }
  return 0;
}

/* Read OP into BUF from SRC: a chain (source.h) through its map, one
 * export as requests of at most PIECE bytes, all in flight at once.  0, or
 * -1 with *ERR the errno and *MSG the message. */
static int
read_op (struct rp_src *src, char *buf, const struct rp_op *op,
         uint64_t piece, int *err, char **msg)
{
  if (src->n > 1)
    return (*err = -rp_src_pread (src, buf, op->len, op->off, msg)) ? -1 : 0;
  if (rp_nbd_pieces (src->h[0], false, buf, op->len, op->off, piece,
                     RP_PIECES_MAX) == 0)
    return 0;
  *err = nbd_get_errno () ?: EIO;
  *msg = rp_strdup (nbd_get_error () ?: "read failed");
  return -1;
}

static bool
all_zero (const char *buf, size_t len)
{
  return len == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0);
}

/* The digest table's hook: hashes the op and writes what its mode wants. */
static int
bh_apply (struct copy_ctx *c, struct nbd_handle *dst, const char *buf,
          const struct rp_op *op)
{
  uint64_t copied = 0, zeroed = 0;
  int r = rp_bh_apply (c->bh, dst, buf, op->off, op->len, &copied, &zeroed);
  atomic_fetch_add (&c->copied, copied);
  atomic_fetch_add (&c->zeroed, zeroed);
  return r;
}

static void
write_failed (struct copy_ctx *c)
{
  int err = nbd_get_errno () ?: EIO;
  set_error (c, err, rp_asprintf ("%s while writing %s",
                                  err == ENOSPC ? strerror (err)
                                  : nbd_get_error (), c->dst_name));
}

/* One op: read it from SRC (a copy) and write it to DST.  0, or -1 with
 * the error set (or the job cancelled while it waited for its slot). */
static int
copy_op (struct copy_ctx *c, struct rp_src *src, struct nbd_handle *dst,
         char *buf, const struct rp_op *op)
{
  if (op->kind != RP_OP_COPY) {
    if (c->bh ? bh_apply (c, dst, NULL, op) == -1
        : nbd_zero (dst, op->len, op->off, 0) == -1) {
      write_failed (c);
      return -1;
    }
    atomic_fetch_add (&c->zeroed, c->bh ? 0 : op->len);
    return 0;
  }
  if (!rp_rate_wait (c->rate, op->len, c->cancel))
    return -1;
  int rerr = 0;
  char *rmsg = NULL;
  if (read_op (src, buf, op, c->read_max, &rerr, &rmsg) == -1) {
    set_error (c, rerr, rp_asprintf ("reading the point-in-time disk at "
                                     "offset %" PRIu64 ": %s", op->off,
                                     rmsg));
    free (rmsg);
    return -1;
  }
  int r;
  if (c->bh)
    r = bh_apply (c, dst, buf, op);
  else if (all_zero (buf, op->len)) {
    /* Data that reads as zero: nothing to store in a full export; a
     * differential one must still shadow its backing file. */
    r = c->full ? 0 : nbd_zero (dst, op->len, op->off, 0);
    atomic_fetch_add (&c->zeroed, c->full ? 0 : op->len);
  }
  else {
    r = rp_nbd_write (dst, buf, op->len, op->off);
    atomic_fetch_add (&c->copied, op->len);
  }
  if (r == -1)
    write_failed (c);
  return r == -1 ? -1 : 0;
}

static void *
worker (void *opaque)
{
  struct copy_ctx *c = opaque;
  char *e = NULL;
  struct rp_src src = { 0 };
  struct nbd_handle *dst = NULL;
  char *buf = malloc (OP_MAX);
  if (!buf) {
    set_error (c, ENOMEM, rp_strdup ("out of memory"));
    return NULL;
  }
  if (rp_src_open (&src, c->src, false, &e) != 0) {
    set_error (c, EIO, rp_asprintf ("reading the point-in-time disk: %s", e));
    free (e);
    goto out;
  }
  dst = rp_target_connect (c->target, &e);
  if (!dst) {
    set_error (c, EIO, rp_asprintf ("writing %s: %s", c->dst_name, e));
    free (e);
    goto out;
  }
  for (;;) {
    size_t i = atomic_fetch_add (&c->next, 1);
    if (i >= c->ops.n || atomic_load (c->cancel) || c->err)
      break;
    const struct rp_op *op = &c->ops.v[i];
    if (copy_op (c, &src, dst, buf, op) != 0)
      break;
    uint64_t done = atomic_fetch_add (&c->done, op->len) + op->len;
    if (c->progress)
      c->progress (c->opaque, done, c->ops.copy_bytes + c->ops.zero_bytes);
  }
  if (dst && !c->err && nbd_flush (dst, 0) == -1)
    write_failed (c);
 out:
  if (dst) {
    nbd_shutdown (dst, 0);
    nbd_close (dst);
  }
  rp_src_close (&src);
  free (buf);
  return NULL;
}

int
rp_copy_plan (const struct rp_endpoint *ep, struct rp_ops *ops,
              uint64_t *size, char **err)
{
  struct copy_ctx c = { .full = true };
  struct rp_src src;
  if (rp_src_open (&src, ep, false, err) != 0)
    return EIO;
  int64_t sz = rp_src_size (&src);
  if (sz < 0) {
    *err = rp_strdup (nbd_get_error ());
    rp_src_close (&src);
    return EIO;
  }
  int r = plan (&c, &src, (uint64_t) sz, err);
  rp_src_close (&src);
  *size = (uint64_t) sz;
  *ops = c.ops;
  return r;
}

/* The workers, against the target's qemu-nbd. */
static void
run_workers (struct copy_ctx *c)
{
  pthread_t t[WORKERS];
  int nt = 0;
  for (; nt < WORKERS; nt++)
    if (pthread_create (&t[nt], NULL, worker, c) != 0)
      break;
  if (nt == 0)
    worker (c);
  for (int i = 0; i < nt; i++)
    pthread_join (t[i], NULL);
}

int
rp_copy_disk (const struct rp_endpoint *ep, const char *dst_path,
              const char *dst_name,
              const char *run_dir, atomic_bool *cancel, struct rp_rate *rate,
              rp_progress_fn progress, void *opaque, struct rp_bh *bh,
              struct rp_copy_stats *stats, char **err)
{
  struct copy_ctx c = {
    .src = ep, .full = ep->bitmap == NULL,
    .read_max = ep->read_max && ep->read_max <= OP_MAX
      && ep->read_max >= READ_MAX ? ep->read_max : READ_MAX,
    .bh = bh,
    .cancel = cancel, .rate = rate, .progress = progress, .opaque = opaque,
    .dst_name = dst_name,
  };
  pthread_mutex_init (&c.lock, NULL);
  atomic_init (&c.next, 0);
  atomic_init (&c.done, 0);
  atomic_init (&c.copied, 0);
  atomic_init (&c.zeroed, 0);
  int r = 0;
  struct rp_target tgt = { .pid = -1 };

  struct rp_src src;
  if (rp_src_open (&src, ep, true, err) != 0) {
    r = EIO;
    goto out;
  }
  int64_t size = rp_src_size (&src);
  if (size < 0) {
    *err = rp_strdup (nbd_get_error ());
    r = EIO;
    rp_src_close (&src);
    goto out;
  }
  r = plan (&c, &src, (uint64_t) size, err);
  rp_src_close (&src);
  if (r)
    goto out;
  if (bh)                       /* whole blocks, so each can be hashed */
    rp_bh_align (bh, &c.ops, (uint64_t) size, OP_MAX);
  if (stats)
    stats->total = c.ops.copy_bytes + c.ops.zero_bytes;

  if ((r = rp_target_start (&tgt, dst_path, run_dir, WORKERS + 1, err)))
    goto out;
  c.target = &tgt;
  run_workers (&c);
  if (c.err) {
    r = c.err;
    *err = c.msg;
    c.msg = NULL;
  }
  else if (atomic_load (cancel))
    r = ECANCELED;
  if (stats) {
    stats->copied = atomic_load (&c.copied);
    stats->zeroed = atomic_load (&c.zeroed);
  }
 out:
  if (rp_target_stop (&tgt) != 0 && !r) {
    *err = rp_asprintf ("qemu-nbd did not exit after writing %s", dst_name);
    r = EIO;
  }
  rp_ops_free (&c.ops);
  free (c.msg);
  pthread_mutex_destroy (&c.lock);
  return r;
}
