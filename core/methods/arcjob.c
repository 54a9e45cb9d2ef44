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
 * A full disk is read from QEMU's NBD export of the point-in-time disk
 * straight into the archive (arcraw.c); a differential disk is first
 * written by qemu-nbd (copy.c) into an unnamed file (O_TMPFILE: in the
 * ExportDirectory as the caller, or in STORE/run for a stream), then
 * added: the staging is at most that image, one disk at a time.
 *
 * Thread model: the job thread reads and builds the archive; arcraw.c
 * says who hashes a full disk; the copy workers of a differential
 * (copy.c) and libarchive's compression threads (xz, zstd) are its other
 * helpers.  An archive file is written by a writer thread that drains a
 * queue (stream.c's, the one a FUSE reader drains for a stream): copying
 * into the page cache is the costliest step of an uncompressed export on
 * a slow VM, and it then overlaps with the reading and hashing.  The
 * writer hands each buffer to a hasher thread of its own for the
 * archive's SHA-256 (the .sha256 sidecar), so that hash, 2 GiB for 2 GiB
 * written, is not on the writer's path either. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "adapt.h"
#include "arc.h"
#include "export.h"
#include "memberhash.h"
#include "digests.h"
#include "outdir.h"

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

#define WBUFS 2                 /* buffers between the writer and its hasher */
#define WBUF (1u << 20)

/* The writer thread of an archive file: writes what the queue holds, and
 * has each buffer hashed for the sidecar in a thread of its own. */
static void *
writer_main (void *opaque)
{
  struct fd_sink *s = opaque;
  char *buf[WBUFS];
  uint64_t tick[WBUFS] = { 0 };
  struct rp_mhash *h = rp_mhash_start (NULL, true);
  ssize_t n;
  for (int i = 0; i < WBUFS; i++)
    buf[i] = rp_bigbuf (WBUF);
  for (unsigned k = 0;; k = (k + 1) % WBUFS) {
    rp_mhash_wait (h, tick[k], NULL);
    if ((n = rp_stream_read (s->q, buf[k], WBUF)) <= 0)
      break;
    int r = file_sink (s, buf[k], (size_t) n);
    if (r < 0) {
      atomic_store (s->error, -r);
      rp_mhash_abandon (h);
      break;
    }
    tick[k] = rp_mhash_data (h, buf[k], 0, (uint64_t) n);
  }
  rp_mhash_finish (h, s->hex);  /* before the buffers go */
  for (int i = 0; i < WBUFS; i++)
    rp_bigbuf_free (buf[i], WBUF);
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
char *
rp_arcjob_member (struct export_work *w, const char *rel)
{
  return rp_asprintf ("%s/%s", w->rp->sys->name, rel);
}

/* What a failed archive write means for the job. */
int
rp_arcjob_arc_rv (struct export_work *w, char **why)
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

void
rp_arcjob_add_sum (struct export_work *w, const char *rel, const char hex[65])
{
  CLEANUP_FREE char *line = rp_asprintf ("%s  %s\n", hex, rel);
  w->sums = rp_strv_push (w->sums, line);
}

/* An NBD failure: QEMU gone (32777) or anything else (32768). */
int
rp_arcjob_nbd_rv (struct export_work *w, const char *msg, char **why)
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

/* Add the staged image FD as member REL. */
static int
add_file (struct export_work *w, int fd, const char *rel, char **why)
{
  struct stat st;
  if (fstat (fd, &st) != 0) {
    *why = rp_asprintf ("%s: %s", rel, strerror (errno));
    return RV_FAILED;
  }
  CLEANUP_FREE char *name = rp_arcjob_member (w, rel);
  CLEANUP_FREE char *buf = rp_calloc (1, 1u << 20);
  if (rp_arc_begin (w->arc, name, (uint64_t) st.st_size, w->rp->created,
                    NULL, 0, why) != 0)
    return rp_arcjob_arc_rv (w, why);
  for (off_t off = 0; off < st.st_size;) {
    ssize_t n = pread (fd, buf, 1u << 20, off);
    if (n <= 0) {
      *why = rp_asprintf ("reading the staged %s: %s", rel,
                          n < 0 ? strerror (errno) : "short file");
      return RV_FAILED;
    }
    if (rp_arc_data (w->arc, buf, (size_t) n, why) != 0)
      return rp_arcjob_arc_rv (w, why);
    off += n;
    if (atomic_load (&w->job->cancel))
      return -1;
  }
  char hex[65];
  if (rp_arc_end (w->arc, hex, why) != 0)
    return rp_arcjob_arc_rv (w, why);
  rp_arcjob_add_sum (w, rel, hex);
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
  CLEANUP_FREE char *name = rp_arcjob_member (w, rel);
  char hex[65];
  if (rp_arc_add (w->arc, name, buf, len, w->rp->created, hex, why) != 0)
    return rp_arcjob_arc_rv (w, why);
  rp_arcjob_add_sum (w, rel, hex);
  return RV_OK;
}

int
rp_arcjob_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
                struct rp_bh *bh, char **why)
{
  /* A differential (by bitmap or by digests) is an overlay of the base. */
  int rv = w->base ? overlay_disk (w, di, ep, bh, why)
    : rp_arcraw_disk (w, di, ep, bh, why);
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
  CLEANUP_FREE char *n1 = rp_arcjob_member (w, "config");
  if (rp_arc_add (w->arc, n1, cfg, len, w->rp->created, hex, why) != 0)
    return rp_arcjob_arc_rv (w, why);
  rp_arcjob_add_sum (w, "config", hex);
  CLEANUP_FREE char *rec = rp_export_record_text (w);
  CLEANUP_FREE char *n2 = rp_arcjob_member (w, "referencepoint");
  if (rp_arc_add (w->arc, n2, rec, strlen (rec), w->rp->created, hex,
                  why) != 0)
    return rp_arcjob_arc_rv (w, why);
  rp_arcjob_add_sum (w, "referencepoint", hex);
  return RV_OK;
}

/* SHA256SUMS, the last member; then the end of the archive. */
static int
finish_arc (struct export_work *w, char **why)
{
  CLEANUP_FREE char *sums = rp_strv_join (w->sums, "");
  CLEANUP_FREE char *name = rp_arcjob_member (w, "SHA256SUMS");
  char h[65];
  if (rp_arc_add (w->arc, name, sums, strlen (sums), w->rp->created, h,
                  why) != 0
      || rp_arc_close (w->arc, why) != 0)
    return rp_arcjob_arc_rv (w, why);
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
