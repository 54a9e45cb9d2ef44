/* The job of an archive export and of a streamed export: one tar stream
 * (archive.c) of
 *   <system>/config, <system>/referencepoint,
 *   <system>/disks/<disk>.raw     full: a sparse member, the disk's data
 *                                 ranges only (GNU sparse 1.0 in pax)
 *   <system>/disks/<disk>.qcow2   differential: a qcow2 overlay of the
 *                                 changed clusters, naming the base's
 *                                 image as backing file when rpfs knows
 *                                 where that is (export.c, backing_of)
 *   <system>/SHA256SUMS
 * written to a hidden file in the caller's ExportDirectory, renamed when
 * complete (outdir.h), or to the queue a FUSE reader drains (stream.c).
 *
 * A full disk is read straight from QEMU's NBD export of the point-in-time
 * disk into the archive: block status gives the data ranges (the sparse
 * map, which precedes the data), then up to DEPTH ops of 2 MiB are in
 * flight on one connection, each as requests of the backend's read_max
 * (a VM's QEMU: 256 KiB), and are added in order.  Nothing is staged.  A
 * differential disk is first written by qemu-nbd (copy.c) into an unnamed
 * file (O_TMPFILE: in the ExportDirectory as the caller, or in STORE/run
 * for a stream), then added: the staging is at most that image, one disk
 * at a time.
 *
 * Thread model: the job thread reads and builds the archive; two hasher
 * threads (memberhash.c) compute a full disk's SHA256SUMS line and its
 * digest table from the same buffers; the copy workers of a differential (copy.c)
 * and libarchive's compression threads (xz, zstd) are its other helpers.  An archive file is written by a
 * writer thread that drains a queue (stream.c's, the one a FUSE reader
 * drains for a stream): copying into the page cache is the costliest step
 * of an uncompressed export on a slow VM, and it then overlaps with the
 * reading and hashing. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>
#include <openssl/evp.h>

#include "internal.h"
#include "adapt.h"
#include "arc.h"
#include "export.h"
#include "extent.h"
#include "memberhash.h"
#include "digests.h"
#include "outdir.h"
#include "source.h"

/* Reads in flight: 4 x 2 MiB keep a local NBD server busy; each more
 * costs 2 MiB of rpfs's memory, whose budget libzstd mostly takes. */
#define DEPTH 4

#define WRITEBACK (32u << 20)  /* start writing back every 32 MiB */

struct fd_sink {
  int fd;
  uint64_t off, flushed;
  struct rp_stream *q;          /* what the writer thread drains */
  pthread_t thread;
  bool running;
  atomic_int *error;            /* its errno, when a write fails */
  char hex[65];                 /* SHA-256 of all it wrote (the sidecar) */
};

/* Write to the archive file, and have the kernel write each 32 MiB to disk
 * as soon as it is complete (without waiting for it): the fsync before the
 * rename then finds little left, instead of the whole archive. */
static int
file_sink (void *opaque, const void *buf, size_t len)
{
  struct fd_sink *s = opaque;
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write (s->fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t) n;
    s->off += (uint64_t) n;
  }
  if (s->off - s->flushed >= WRITEBACK) {
    sync_file_range (s->fd, (off64_t) s->flushed,
                     (off64_t) (s->off - s->flushed), SYNC_FILE_RANGE_WRITE);
    s->flushed = s->off;
  }
  return 0;
}

/* The writer thread of an archive file. */
static void *
writer_main (void *opaque)
{
  struct fd_sink *s = opaque;
  char *buf = rp_calloc (1, 1u << 20);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  ssize_t n;
  if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1)
    atomic_store (s->error, ENOMEM);
  while (ctx && (n = rp_stream_read (s->q, buf, 1u << 20)) > 0) {
    int r = file_sink (s, buf, (size_t) n);
    if (r < 0) {
      atomic_store (s->error, -r);
      break;
    }
    EVP_DigestUpdate (ctx, buf, (size_t) n);
  }
  if (ctx && !atomic_load (s->error))
    rp_arc_hex (ctx, s->hex);
  EVP_MD_CTX_free (ctx);
  free (buf);
  rp_stream_detach (s->q);      /* a failed write stops the pushes */
  return NULL;
}

/* End the queue with RV and wait for the writer.  RV, or RV_FAILED with
 * *why when a write failed. */
static int
writer_join (struct export_work *w, struct fd_sink *s, int rv, char **why)
{
  if (!s->q)
    return rv;
  rp_stream_end (s->q, rv);
  if (s->running)
    pthread_join (s->thread, NULL);
  rp_stream_put (s->q);
  s->q = NULL;
  int e = atomic_load (&w->write_errno);
  if (e && rv != -1) {
    free (*why);
    *why = rp_asprintf ("%s while writing %s/%s.%s", strerror (e),
                        rp_outdir_path (w->od), w->rp->sys->name,
                        rp_format_name (w->format));
    return RV_FAILED;
  }
  return rv;
}

/* "<system>/REL" in the archive */
static char *
member (struct export_work *w, const char *rel)
{
  return rp_asprintf ("%s/%s", w->rp->sys->name, rel);
}

/* What a failed archive write means for the job. */
static int
arc_rv (struct export_work *w, char **why)
{
  int e = atomic_load (&w->write_errno) ?: rp_arc_sink_error (w->arc);
  if (atomic_load (&w->job->cancel)) {
    free (*why);
    *why = NULL;
    return -1;
  }
  if (e && w->od) {
    free (*why);
    *why = rp_asprintf ("%s while writing %s/%s.%s", strerror (e),
                        rp_outdir_path (w->od), w->rp->sys->name,
                        rp_format_name (w->format));
  }
  return RV_FAILED;
}

static void
add_sum (struct export_work *w, const char *rel, const char hex[65])
{
  CLEANUP_FREE char *line = rp_asprintf ("%s  %s\n", hex, rel);
  w->sums = rp_strv_push (w->sums, line);
}

/* An NBD failure: QEMU gone (32777) or anything else (32768). */
static int
nbd_rv (struct export_work *w, const char *msg, char **why)
{
  struct rp_system *sys = w->rp->sys;
  if (atomic_load (&w->job->cancel))
    return -1;
  bool alive = rp_backend_answers (sys);
  CLEANUP_FREE char *what = rp_backend_what (sys);
  *why = alive ? rp_strdup (msg)
    : rp_asprintf ("QEMU (%s) stopped during the export: %s", what, msg);
  return alive ? RV_FAILED : RV_NOT_AVAILABLE;
}

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

#define PIECES 8                /* reads per 2 MiB op, at the smallest size */

struct reader {
  struct rp_src src;            /* one export, or a chain (source.h) */
  struct nbd_handle *h;         /* src.h[0] */
  uint32_t piece;               /* bytes per read request (read_max) */
  char *buf[DEPTH];
  int64_t cookie[DEPTH][PIECES];  /* 0: done at issue */
  unsigned ncookie[DEPTH];
  struct rp_mhash *mh;          /* the member's SHA-256 (memberhash.h) */
  struct rp_mhash *mt;          /* the disk's digest table, or NULL */
  uint64_t tick[DEPTH], ttick[DEPTH];  /* their tickets for each buffer */
};

/* Start the reads of OP into buffer slot K: requests of at most r->piece
 * bytes (the backend's read_max: a VM's QEMU serves small ones best), all
 * in flight; a chain (source.h) is read through its map at once.  0, or
 * -1 (those issued are still collected). */
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
  size_t k = i % DEPTH;
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

/* Stream the data of OPS (reads pipelined, in order) and the holes
 * between them into the open member, SIZE bytes in all. */
static int
pump (struct export_work *w, struct reader *r, const struct rp_ops *ops,
      uint64_t size, char **why)
{
  size_t issued = 0;
  uint64_t pos = 0;
  for (size_t i = 0; i < ops->n; i++) {
    for (; issued < ops->n && issued < i + DEPTH; issued++) {
      const struct rp_op *op = &ops->v[issued];
      if (!rp_rate_wait (&w->rate, op->len, &w->job->cancel))
        return -1;
      rp_mhash_wait (r->mh, r->tick[issued % DEPTH]);   /* buffer free */
      if (r->mt)
        rp_mhash_wait (r->mt, r->ttick[issued % DEPTH]);
      CLEANUP_FREE char *msg = NULL;
      if (issue (r, issued % DEPTH, op, &msg) != 0)
        return nbd_rv (w, msg ? msg : "cannot read", why);
    }
    const struct rp_op *op = &ops->v[i];
    if (op->off > pos) {
      rp_mhash_data (r->mh, NULL, pos, op->off - pos);
      if (rp_arc_zeros (w->arc, op->off - pos, why) != 0)
        return arc_rv (w, why);
    }
    char *buf = collect (r, i);
    if (!buf) {
      CLEANUP_FREE char *m = rp_asprintf ("reading the point-in-time disk at "
                                          "offset %" PRIu64 ": %s", op->off,
                                          nbd_get_error ());
      return nbd_rv (w, m, why);
    }
    r->tick[i % DEPTH] = rp_mhash_data (r->mh, buf, op->off, op->len);
    if (r->mt)
      r->ttick[i % DEPTH] = rp_mhash_data (r->mt, buf, op->off, op->len);
    if (rp_arc_data (w->arc, buf, op->len, why) != 0)
      return arc_rv (w, why);
    pos = op->off + op->len;
    rp_export_progress (w, pos, size);
    if (atomic_load (&w->job->cancel))
      return -1;
  }
  if (size > pos) {
    rp_mhash_data (r->mh, NULL, pos, size - pos);
    if (rp_arc_zeros (w->arc, size - pos, why) != 0)
      return arc_rv (w, why);
  }
  return RV_OK;
}

static int
raw_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
          struct rp_bh *bh, char **why)
{
  struct rp_system *sys = w->rp->sys;
  struct rp_ops ops = { 0 };
  struct reader r = { 0 };
  uint64_t size = 0;
  size_t nmap = 0;
  uint64_t *map = NULL;
  char *e = NULL;
  int rv = RV_OK;
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.raw", sys->disks[di].id);
  CLEANUP_FREE char *name = member (w, rel);
  if (rp_copy_plan (ep, &ops, &size, &e) != 0) {
    rv = nbd_rv (w, e ? e : "block status failed", why);
    goto out;
  }
  /* Whole blocks, so that each can be hashed (2 MiB: the reads' size). */
  if (bh)
    rp_bh_align (bh, &ops, size, 2u << 20);
  if (rp_src_open (&r.src, ep, false, &e) != 0) {
    rv = nbd_rv (w, e, why);
    goto out;
  }
  r.h = r.src.h[0];
  /* At most 2 MiB (the buffers), at least 256 KiB (PIECES of them). */
  r.piece = ep->read_max >= (2u << 20) / PIECES && ep->read_max < (2u << 20)
    ? ep->read_max : 2u << 20;
  for (int i = 0; i < DEPTH; i++)
    r.buf[i] = rp_calloc (1, 2u << 20);
  map = sparse_map (&ops, &nmap);
  if (rp_arc_begin (w->arc, name, size, w->rp->created, map, nmap, why) != 0)
    rv = arc_rv (w, why);
  /* SHA256SUMS's hash (8 GiB of a mostly empty 8 GiB disk: the holes are
   * hashed as zeros) and the table, each in a thread of its own. */
  rp_arc_unhashed (w->arc);
  r.mh = rp_mhash_start (NULL, true);
  r.mt = bh ? rp_mhash_start (bh, false) : NULL;
  if (rv == RV_OK)
    rv = pump (w, &r, &ops, size, why);
  char hex[65], unused[65];
  rp_mhash_finish (r.mh, hex);  /* before the buffers go */
  if (r.mt)
    rp_mhash_finish (r.mt, NULL);
  if (rv == RV_OK && rp_arc_end (w->arc, unused, why) != 0)
    rv = arc_rv (w, why);
  if (rv == RV_OK)
    add_sum (w, rel, hex);
 out:
  rp_src_close (&r.src);
  for (int i = 0; i < DEPTH; i++)
    free (r.buf[i]);
  rp_ops_free (&ops);
  free (map);
  free (e);
  return rv;
}

/* Add the staged image FD as member REL. */
static int
add_file (struct export_work *w, int fd, const char *rel, char **why)
{
  struct stat st;
  if (fstat (fd, &st) != 0) {
    *why = rp_asprintf ("%s: %s", rel, strerror (errno));
    return RV_FAILED;
  }
  CLEANUP_FREE char *name = member (w, rel);
  CLEANUP_FREE char *buf = rp_calloc (1, 1u << 20);
  if (rp_arc_begin (w->arc, name, (uint64_t) st.st_size, w->rp->created,
                    NULL, 0, why) != 0)
    return arc_rv (w, why);
  for (off_t off = 0; off < st.st_size;) {
    ssize_t n = pread (fd, buf, 1u << 20, off);
    if (n <= 0) {
      *why = rp_asprintf ("reading the staged %s: %s", rel,
                          n < 0 ? strerror (errno) : "short file");
      return RV_FAILED;
    }
    if (rp_arc_data (w->arc, buf, (size_t) n, why) != 0)
      return arc_rv (w, why);
    off += n;
    if (atomic_load (&w->job->cancel))
      return -1;
  }
  char hex[65];
  if (rp_arc_end (w->arc, hex, why) != 0)
    return arc_rv (w, why);
  add_sum (w, rel, hex);
  return RV_OK;
}

static int
overlay_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
              struct rp_bh *bh, char **why)
{
  struct rp_system *sys = w->rp->sys;
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.qcow2", sys->disks[di].id);
  CLEANUP_FREE char *run = rp_asprintf ("%s/run", sys->core->store);
  int fd = w->od ? rp_outdir_tmpfile (w->od)
    : open (run, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = w->od ? -fd : errno;
    *why = rp_asprintf ("cannot stage %s in %s: %s", rel,
                        w->od ? rp_outdir_path (w->od) : run, strerror (e));
    return RV_FAILED;
  }
  int rv = rp_export_image (w, di, fd, rel, ep, bh, why);
  if (rv == RV_OK)
    rv = add_file (w, fd, rel, why);
  close (fd);
  return rv;
}

/* The disk's digest table as member disks/<disk>.digests (in SHA256SUMS
 * too), kept for the store in W->tabs[W->cur].  Frees BH. */
static int
add_table (struct export_work *w, int di, struct rp_bh *bh, char **why)
{
  struct rp_digests *t = w->tabs[w->cur] = rp_bh_end (bh, true);
  size_t len;
  CLEANUP_FREE void *buf = rp_digests_render (t, &len);
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.digests",
                                        w->rp->sys->disks[di].id);
  CLEANUP_FREE char *name = member (w, rel);
  char hex[65];
  if (rp_arc_add (w->arc, name, buf, len, w->rp->created, hex, why) != 0)
    return arc_rv (w, why);
  add_sum (w, rel, hex);
  return RV_OK;
}

int
rp_arcjob_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
                struct rp_bh *bh, char **why)
{
  /* A differential (by bitmap or by digests) is an overlay of the base. */
  int rv = w->base ? overlay_disk (w, di, ep, bh, why)
    : raw_disk (w, di, ep, bh, why);
  if (rv == RV_OK && bh)
    return add_table (w, di, bh, why);
  rp_bh_end (bh, false);
  return rv;
}

static int
add_meta (struct export_work *w, char **why)
{
  size_t len;
  char hex[65];
  CLEANUP_FREE char *cfg = rp_export_config (w, &len, why);
  if (!cfg)
    return RV_FAILED;
  CLEANUP_FREE char *n1 = member (w, "config");
  if (rp_arc_add (w->arc, n1, cfg, len, w->rp->created, hex, why) != 0)
    return arc_rv (w, why);
  add_sum (w, "config", hex);
  CLEANUP_FREE char *rec = rp_export_record_text (w);
  CLEANUP_FREE char *n2 = member (w, "referencepoint");
  if (rp_arc_add (w->arc, n2, rec, strlen (rec), w->rp->created, hex,
                  why) != 0)
    return arc_rv (w, why);
  add_sum (w, "referencepoint", hex);
  return RV_OK;
}

/* SHA256SUMS, the last member; then the end of the archive. */
static int
finish_arc (struct export_work *w, char **why)
{
  CLEANUP_FREE char *sums = rp_strv_join (w->sums, "");
  CLEANUP_FREE char *name = member (w, "SHA256SUMS");
  char h[65];
  if (rp_arc_add (w->arc, name, sums, strlen (sums), w->rp->created, h,
                  why) != 0
      || rp_arc_close (w->arc, why) != 0)
    return arc_rv (w, why);
  return RV_OK;
}

/* The hidden file in the ExportDirectory and the crash marker naming it;
 * or nothing, for a stream. */
static int
begin (struct export_work *w, struct fd_sink *fs, char **marker, char **why)
{
  int level = w->rp->sys->conf->export_level;
  if (level > 9 && w->format != RP_FMT_TZST)
    level = 9;
  if (w->od) {
    if ((fs->fd = rp_outdir_begin_file (w->od, w->tmp_name, why)) < 0)
      return RV_FAILED;
    int rv = rp_export_marker (w, marker, why);
    if (rv != RV_OK)
      return rv;
  }
  if (w->od) {
    fs->q = rp_stream_new (w->job);
    fs->error = &w->write_errno;
    rp_stream_hold (fs->q);     /* the writer's */
    fs->running = pthread_create (&fs->thread, NULL, writer_main, fs) == 0;
    if (!fs->running) {
      rp_stream_put (fs->q);
      *why = rp_strdup ("cannot start the writer thread");
      return RV_FAILED;
    }
  }
  w->arc = rp_arc_new (w->format, level, rp_stream_push,
                       w->od ? fs->q : w->stream, why);
  return w->arc ? RV_OK : RV_FAILED;
}

void *
rp_arcjob_thread (void *opaque)
{
  struct export_work *w = opaque;
  struct rp_job *job = w->job;
  CLEANUP_FREE char *why = NULL, *marker = NULL;
  struct fd_sink fs = { .fd = -1 };
  struct rp_pacer *pacer = NULL;

  rp_job_set_state (job, JS_RUNNING);
  rp_export_background (w->rp->sys);
  int rv = begin (w, &fs, &marker, &why);
  if (rv == RV_OK)
    rv = add_meta (w, &why);
  if (rv == RV_OK && w->rp->sys->conf->export_rate_auto)
    pacer = rp_pacer_start (w->rp->sys, &w->rate, job->id);
  for (w->cur = 0; rv == RV_OK && w->disks[w->cur]; w->cur++)
    rv = atomic_load (&job->cancel) ? -1
      : rp_export_disk (w, w->disks[w->cur], &why);
  rp_pacer_stop (pacer);
  if (rv == RV_OK && atomic_load (&job->cancel))
    rv = -1;
  if (rv == RV_OK)
    rv = finish_arc (w, &why);
  rv = writer_join (w, &fs, rv, &why);
  if (rv == RV_OK && w->od) {
    CLEANUP_FREE char *side = rp_asprintf ("%s  %s.%s\n", fs.hex,
                                           w->rp->sys->name,
                                           rp_format_name (w->format));
    rv = rp_outdir_commit_file (w->od, side, &why);
  }
  if (rv != RV_OK && w->od)
    rp_outdir_abort (w->od);
  rp_arc_free (w->arc);
  w->arc = NULL;
  if (marker)
    unlink (marker);
  rp_export_done (w, rv, why);
  return NULL;
}
