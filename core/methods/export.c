/* ExportReferencePoint: the checks made before a job starts (each a clear
 * error with nothing written), then the job thread that assembles
 *   <dir>/.<system>.<job>.part/{config,referencepoint,disks/DISK.qcow2,SHA256SUMS}
 * and renames it to <dir>/<system> only when complete.  The directory is the
 * caller's, resolved once as the caller and used through descriptors
 * (outdir.h): rpfs never walks a path there as root. */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"
#include "args.h"
#include "proc.h"
#include "ratelimit.h"
#include "adapt.h"
#include "outdir.h"
#include "exportdig.h"
#include "export.h"
#include "arc.h"
#include "imagehash.h"


static void work_free (struct export_work *w);
static void seals_abort (struct export_work *w);
static void *export_thread (void *opaque);

struct export_req {
  const char *dir;              /* NULL: a stream */
  const char *base_arg, *disks_arg;
  bool keep_given, keep;
  int format;                   /* -1: ExportSettingData/Format */
};

/* The request's lines: the directory, then Key=Value overrides. */
static int
parse_request (struct rp_args *a, struct export_req *q, char **why)
{
  memset (q, 0, sizeof *q);
  q->format = -1;
  if (a->npos != 1) {
    *why = rp_asprintf ("expected the export directory on the first line, "
                        "then optional Key=Value lines");
    return RV_INVALID_PARAMETER;
  }
  q->dir = a->pos[0];
  for (size_t i = 0; i < a->nkv; i++) {
    const char *k = a->keys[i], *v = a->vals[i];
    if (!strcmp (k, "BaseReferencePoint"))
      q->base_arg = v;
    else if (!strcmp (k, "DisksToExport"))
      q->disks_arg = v;
    else if (!strcmp (k, "KeepAssociatedData")) {
      q->keep_given = true;
      if (rp_refpoint_parse_keep (v, &q->keep, why) != 0)
        return RV_INVALID_PARAMETER;
    }
    else if (!strcmp (k, "Format")) {
      if ((q->format = rp_format_parse (v)) < 0) {
        *why = rp_asprintf ("Format must be qcow2, tar, tar.gz, tar.xz or "
                            "tar.zst, not '%s'", v);
        return RV_INVALID_PARAMETER;
      }
    }
    else {
      *why = rp_asprintf ("unknown key '%s' (ExportReferencePoint takes "
                          "BaseReferencePoint, DisksToExport, "
                          "KeepAssociatedData and Format)", k);
      return RV_INVALID_PARAMETER;
    }
  }
  return RV_OK;
}

/* The state checks, core->lock held.  QEMU_ERR: why QEMU is not available,
 * NULL when it is. */
static int
check_state (struct rp_refpoint *rp, struct rp_refpoint *base,
             char *const *disks, const char *qemu_err, bool *digest,
             char **why)
{
  int rv;
  if (!rp->has_data) {
    *why = rp_asprintf ("reference point '%s' has no associated data (%s)",
                        rp->name, rp->type == 2
                        ? "it is RCT based: change tracking only"
                        : "it was removed, or lost when QEMU restarted");
    return RV_INVALID_STATE;
  }
  /* Bitmaps intact, or lost but the base has digest tables (exportdig.h). */
  if (base && (rv = rp_export_base_mode (rp, base, disks, digest,
                                         why)) != RV_OK)
    return rv;
  if (rp->destroyed) {
    *why = rp_asprintf ("reference point '%s' was destroyed", rp->name);
    return RV_INVALID_STATE;
  }
  if (rp->exporting) {
    *why = rp_asprintf ("an export of reference point '%s' is already "
                        "running", rp->name);
    return RV_IN_USE;
  }
  if (qemu_err) {
    *why = rp_asprintf ("QEMU is not available: %s", qemu_err);
    return RV_NOT_AVAILABLE;
  }
  return RV_OK;
}

/* Claim RP (and BASE) for JOB and make its work.  core->lock held. */
static struct export_work *
claim (struct rp_refpoint *rp, struct rp_refpoint *base, bool digest,
       const struct export_req *q, struct rp_job *job, char **disks)
{
  struct rp_system *sys = rp->sys;
  rp->exporting = true;
  rp->busy++;
  rp->refs++;
  if (base) {
    base->busy++;
    base->refs++;
  }
  job->cancellable = true;
  job->export_dir = q->dir ? rp_strdup (q->dir) : NULL;
  job->base_id = base ? rp_strdup (base->instance_id) : NULL;
  job->exported_disks = disks;
  job->refs++;                  /* the thread's */
  struct export_work *w = rp_calloc (1, sizeof *w);
  w->job = job;
  w->rp = rp;
  w->base = base;
  w->digest = digest;
  w->format = q->format;
  w->tmp_name = q->format == RP_FMT_QCOW2
    ? rp_asprintf (".%s.%s.part", sys->name, job->id)
    : rp_asprintf (".%s.%s.%s.part", sys->name, job->id,
                   rp_format_name (q->format));
  w->drop = q->keep_given ? !q->keep : rp->drop_setting;
  for (size_t i = 0; disks[i]; i++)
    w->disks = rp_strv_push (w->disks, disks[i]);
  w->seals = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->seals);
  w->ihs = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->ihs);
  w->imgfds = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->imgfds);
  for (size_t i = 0; i <= rp_strv_len (w->disks); i++)
    w->imgfds[i] = -1;
  w->tabs = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->tabs);
  w->dig_hex = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->dig_hex);
  rp_rate_init (&w->rate, sys->conf->export_rate);
  return w;
}

/* Every check of ExportReferencePoint but the directory's; with JOB, the
 * work that the job thread will do in *OUT.  op_lock held. */
static int
admit (struct rp_refpoint *rp, const struct export_req *q, struct rp_job *job,
       struct export_work **out, char **why)
{
  struct rp_system *sys = rp->sys;
  struct rp_refpoint *base = NULL;
  char **disks = NULL;
  if (q->disks_arg && !(disks = rp_args_disk_list (q->disks_arg, why)))
    return RV_INVALID_PARAMETER;
  pthread_mutex_lock (&sys->core->lock);
  int rv = rp_refpoint_check_base (rp, q->base_arg ? q->base_arg
                                   : rp->base_setting, &base, why);
  /* Only checking a request that may still be arriving line by line: a
   * later BaseReferencePoint= line may override a setting gone stale. */
  if (rv != RV_OK && !job && !q->base_arg && q->dir) {
    free (*why);
    *why = NULL;
    rv = RV_OK;
    base = NULL;
  }
  for (size_t i = 0; !q->disks_arg && rp->disks_setting
       && rp->disks_setting[i]; i++)
    disks = rp_strv_push (disks, rp->disks_setting[i]);
  pthread_mutex_unlock (&sys->core->lock);
  if (rv == RV_OK)
    rv = rp_refpoint_check_disks (rp, disks, why);
  if (rv == RV_OK && rp_strv_len (disks) == 0)
    for (size_t i = 0; rp->disk_ids[i]; i++)
      disks = rp_strv_push (disks, rp->disk_ids[i]);
  if (rv != RV_OK) {
    rp_strv_free (disks);
    return rv;
  }
  char *e = NULL;
  bool qemu_ok = rp_backend_ensure (sys, &e) == 0;
  bool digest = false;
  pthread_mutex_lock (&sys->core->lock);
  rv = check_state (rp, base, disks, qemu_ok ? NULL : e ? e : "unknown",
                    &digest, why);
  if (rv == RV_OK && job) {
    *out = claim (rp, base, digest, q, job, disks);
    disks = NULL;
  }
  pthread_mutex_unlock (&sys->core->lock);
  free (e);
  rp_strv_free (disks);
  return rv;
}

/* Open the directory to keep (as the caller, made if missing) and start
 * the job thread.  W is freed on failure.  op_lock held. */
static int
launch (struct export_work *w, const char *dir, const char *final,
        const struct rp_caller *who, char **why)
{
  struct rp_system *sys = w->rp->sys;
  struct rp_job *job = w->job;
  int rv;
  if (dir && (rv = rp_outdir_open (dir, final, sys->core->mount_real, who,
                                   true, &w->od, why)) != RV_OK) {
    work_free (w);
    return rv;
  }
  rp_job_set_state (job, JS_STARTING);
  if (pthread_create (&job->thread, NULL, w->format == RP_FMT_QCOW2
                      ? export_thread : rp_arcjob_thread, w) != 0) {
    *why = rp_strdup ("cannot start the export thread");
    if (w->od)
      rp_outdir_abort (w->od);
    work_free (w);
    return RV_NO_MEMORY;
  }
  job->has_thread = true;
  return RV_JOB_STARTED;
}

int
rp_export_start (struct rp_refpoint *rp, const char *buf, size_t len,
                 const struct rp_caller *who, struct rp_job *job, char **why)
{
  struct rp_system *sys = rp->sys;
  struct rp_args *a = rp_args_parse (buf, len, why);
  if (!a)
    return RV_INVALID_PARAMETER;
  struct export_req q;
  struct export_work *w = NULL;
  CLEANUP_FREE char *final = NULL;
  int rv = parse_request (a, &q, why);
  if (rv != RV_OK)
    goto out;
  if (q.format < 0) {
    pthread_mutex_lock (&sys->core->lock);
    q.format = rp->format;
    pthread_mutex_unlock (&sys->core->lock);
  }
  /* A directory <system>, or one file <system>.<format>. */
  final = q.format == RP_FMT_QCOW2 ? rp_strdup (sys->name)
    : rp_asprintf ("%s.%s", sys->name, rp_format_name (q.format));
  if ((rv = rp_outdir_open (q.dir, final, sys->core->mount_real, who,
                            false, NULL, why)) != RV_OK)
    goto out;
  pthread_mutex_lock (&sys->op_lock);
  rv = admit (rp, &q, job, &w, why);
  /* Every check passed: resolve the directory once more, now to keep it
   * (and make it, as the caller, if it is missing). */
  if (rv == RV_OK && job)
    rv = launch (w, q.dir, final, who, why);
  pthread_mutex_unlock (&sys->op_lock);
 out:
  rp_args_free (a);
  return rv;
}

int
rp_export_stream (struct rp_refpoint *rp, int format,
                  const struct rp_caller *who, struct rp_job *job,
                  struct rp_stream *s, char **why)
{
  struct export_req q = { .format = format };
  struct export_work *w = NULL;
  pthread_mutex_lock (&rp->sys->op_lock);
  int rv = admit (rp, &q, job, &w, why);
  if (rv == RV_OK && job) {
    w->stream = s;
    rp_stream_hold (s);
    rv = launch (w, NULL, NULL, who, why);
  }
  pthread_mutex_unlock (&rp->sys->op_lock);
  return rv;
}

static void
work_free (struct export_work *w)
{
  struct rp_core *core = w->rp->sys->core;
  pthread_mutex_lock (&core->lock);
  if (!w->released) {
    w->rp->busy--;
    w->rp->exporting = false;
  }
  if (w->base)
    w->base->busy--;
  pthread_mutex_unlock (&core->lock);
  seals_abort (w);              /* before the job: seals read its cancel */
  free (w->seals);
  free (w->ihs);
  for (size_t i = 0; w->imgfds && w->disks && w->disks[i]; i++)
    if (w->imgfds[i] >= 0)
      close (w->imgfds[i]);
  free (w->imgfds);
  for (size_t i = 0; w->tabs && w->disks && w->disks[i]; i++)
    rp_digests_free (w->tabs[i]);
  free (w->tabs);
  free (w->dig_hex);
  rp_refpoint_put (w->rp);
  rp_refpoint_put (w->base);
  rp_job_put (w->job);
  rp_outdir_free (w->od);
  free (w->tmp_name);
  rp_strv_free (w->disks);
  rp_rate_destroy (&w->rate);
  rp_strv_free (w->sums);
  if (w->stream)
    rp_stream_put (w->stream);
  free (w);
}

/* ---- the job thread ---- */

void
rp_export_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct export_work *w = opaque;
  size_t n = rp_strv_len (w->disks);
  uint64_t part = total ? done * 100 / total : 100;
  int pct = (int) ((w->cur * 100 + part) / n);
  rp_job_set_percent (w->job, pct > 99 ? 99 : pct);
}

/* Path of the base's exported image of DISK, relative to the directory the
 * new image will have, if that export still exists; *FMT its format.  The
 * image of an archive export is where unpacking the archive next to itself
 * puts it (<dir>/<system>/disks/<disk>.raw or .qcow2): it counts as long
 * as the archive is there.  A stream goes nobody knows where: none. */
static char *
backing_of (struct export_work *w, const char *disk, const char **fmt)
{
  struct rp_core *core = w->rp->sys->core;
  CLEANUP_FREE char *abs = NULL, *archive = NULL;
  if (!w->od)
    return NULL;
  pthread_mutex_lock (&core->lock);
  size_t n = strlen (disk);
  for (size_t i = 0; w->base->exports && w->base->exports[i]; i++)
    if (!strncmp (w->base->exports[i], disk, n)
        && w->base->exports[i][n] == '=')
      abs = rp_strdup (w->base->exports[i] + n + 1);
  if (w->base->export_archive)
    archive = rp_strdup (w->base->export_archive);
  pthread_mutex_unlock (&core->lock);
  /* Resolved as the caller: the base export is a path they named. */
  CLEANUP_FREE char *real = NULL;
  if (abs && archive) {
    CLEANUP_FREE char *ra = rp_outdir_realpath (w->od, archive);
    real = ra ? rp_strdup (abs) : NULL;
  }
  else if (abs)
    real = rp_outdir_realpath (w->od, abs);
  if (!real)
    return NULL;
  size_t l = strlen (real);
  *fmt = l > 4 && !strcmp (real + l - 4, ".raw") ? "raw" : "qcow2";
  /* The new image will live in <dir>/<system>/disks/: a path relative to
   * it survives moving the whole backup tree. */
  CLEANUP_FREE char *to = rp_asprintf ("%s/%s/disks", rp_outdir_path (w->od),
                                       w->rp->sys->name);
  return rp_relpath (real, to);
}

/* Create the qcow2 image in FD (already made, empty) and copy disk DI
 * into it.  The QEMU tools open it as /proc/<rpfs>/fd/<n>: never by a path
 * through the caller's directories. */
int
rp_export_image (struct export_work *w, int di, int fd, const char *name,
                 const struct rp_endpoint *ep, struct rp_bh *bh, char **why)
{
  struct rp_system *sys = w->rp->sys;
  const char *disk = sys->disks[di].id;
  const char *bfmt = "qcow2";
  CLEANUP_FREE char *target = rp_fd_path (fd);
  CLEANUP_FREE char *backing = w->base ? backing_of (w, disk, &bfmt) : NULL;
  CLEANUP_FREE char *size = rp_asprintf ("%" PRIu64, sys->disks[di].size);
  CLEANUP_FREE char *errs = NULL;
  /* -u: the backing file is only named, never opened (and so never looked
   * up relative to /proc). */
  char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", target, size,
                     NULL, NULL, NULL, NULL, NULL, NULL };
  if (backing) {
    char *with[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b",
                     backing, "-F", (char *) bfmt, target, size, NULL };
    memcpy (create, with, sizeof with);
  }
  if (rp_proc_run (create, NULL, NULL, &errs) != 0) {
    if (errs)
      errs[strcspn (errs, "\n")] = 0;
    *why = rp_asprintf ("cannot create %s: %s", name,
                        errs && *errs ? errs : "qemu-img failed");
    return RV_FAILED;
  }
  CLEANUP_FREE char *run = rp_asprintf ("%s/run", sys->core->store);
  char *e = NULL;
  int rv = RV_OK;
  int r = rp_copy_disk (ep, target, name, run, &w->job->cancel, &w->rate,
                        rp_export_progress, w, bh, NULL, &e);
  if (r == ECANCELED)
    rv = -1;
  else if (r) {
    bool alive = rp_backend_answers (sys);
    CLEANUP_FREE char *what = rp_backend_what (sys);
    *why = alive ? rp_strdup (e ? e : strerror (r))
      : rp_asprintf ("QEMU (%s) stopped during the export: %s", what,
                     e ? e : strerror (r));
    rv = alive ? RV_FAILED : RV_NOT_AVAILABLE;
  }
  free (e);
  return rv;
}

/* rp_export_image, then seal the image: hash and flush it while the next
 * disk copies. */
static int
write_image (struct export_work *w, int di, int fd, const char *name,
             const struct rp_endpoint *ep, struct rp_bh *bh, char **why)
{
  int rv = rp_export_image (w, di, fd, name, ep, bh, why);
  char *e = NULL;
  if (rv == RV_OK) {
    /* Hash and flush this image while the next disk copies. */
    w->seals[w->cur] = rp_seal_start (fd, name, &w->job->cancel, &e);
    if (!w->seals[w->cur]) {
      *why = rp_asprintf ("SHA-256 of %s: %s", name, e);
      rv = RV_FAILED;
    }
    free (e);
  }
  return rv;
}

/* Copy disk DI from EP into W's archive or into disks/DISK.qcow2, with its
 * digest table when BH (which this frees). */
static int
copy_disk (struct export_work *w, int di, const struct rp_endpoint *ep,
           struct rp_bh *bh, char **why)
{
  const char *disk = w->rp->sys->disks[di].id;
  int rv;
  if (w->digest)
    rp_job_set_activity (w->job, rp_asprintf ("comparing digests with base "
                                              "'%s'", w->base->name));
  if (w->format != RP_FMT_QCOW2)
    return rp_arcjob_disk (w, di, ep, bh, why);
  CLEANUP_FREE char *name = rp_asprintf ("disks/%s.qcow2", disk);
  bool later = rp_bh_defer (bh);        /* a full export's table */
  int fd = rp_outdir_image (w->od);     /* named once sealed (write_sums) */
  if (fd < 0) {
    *why = rp_asprintf ("cannot create %s: %s", name, strerror (-fd));
    rv = RV_FAILED;
  }
  else {
    rv = write_image (w, di, fd, name, ep, bh, why);
    if (rv == RV_OK && later) {         /* hashed next to the seal */
      char *e = NULL;
      w->ihs[w->cur] = rp_imagehash_start (fd, name, bh, &w->job->cancel,
                                           &e);
      bh = NULL;                        /* taken */
      if (!w->ihs[w->cur]) {
        *why = rp_asprintf ("the digest table of %s: %s", name, e);
        rv = RV_FAILED;
      }
      free (e);
    }
    if (rv == RV_OK)
      w->imgfds[w->cur] = fd;
    else
      close (fd);
  }
  if (rv == RV_OK && bh)             /* not deferred */
    return rp_export_bh_done (w->od, disk, bh, &w->tabs[w->cur],
                              w->dig_hex[w->cur], why);
  rp_bh_end (bh, false);
  return rv;
}

int
rp_export_disk (struct export_work *w, const char *disk, char **why)
{
  struct rp_system *sys = w->rp->sys;
  int di = rp_disk_index (sys, disk);
  struct rp_endpoint ep = { 0 };    /* what the copy reads (backend.h) */
  int rv = RV_OK;
  if (di < 0) {
    *why = rp_asprintf ("disk %s is no longer in the definition", disk);
    return RV_INVALID_PARAMETER;
  }
  bool diff = w->base != NULL && !w->digest;   /* by bitmap */

  pthread_mutex_lock (&sys->op_lock);
  if (!rp_backend_alive (sys)) {
    CLEANUP_FREE char *what = rp_backend_what (sys);
    *why = rp_asprintf ("QEMU (%s) is not running", what);
    rv = RV_NOT_AVAILABLE;
  }
  else if (!rp_refpoint_has_data (w->rp)) {
    *why = rp_asprintf ("reference point '%s' lost its associated data",
                        w->rp->name);
    rv = RV_INVALID_STATE;
  }
  else if (diff)
    rv = rp_backend_changes_open (sys, w->rp, w->base, (size_t) di,
                                  w->job->id, &ep, why);
  else if (rp_backend_disk_endpoint (sys, w->rp, (size_t) di, &ep,
                                     why) != 0)     /* data found gone? */
    rv = rp_refpoint_has_data (w->rp) ? RV_FAILED : RV_INVALID_STATE;
  pthread_mutex_unlock (&sys->op_lock);
  if (rv != RV_OK)
    return rv;
  /* The disk's digest table, made on the way (exportdig.h). */
  struct rp_bh *bh = rp_export_bh (w->base, w->digest, disk,
                                   sys->disks[di].size, &rv, why);
  if (rv == RV_OK)
    rv = copy_disk (w, di, &ep, bh, why);
  else
    rp_bh_end (bh, false);
  if (diff) {
    pthread_mutex_lock (&sys->op_lock);
    rp_backend_changes_close (sys, (size_t) di, &ep);
    pthread_mutex_unlock (&sys->op_lock);
  }
  rp_endpoint_clear (&ep);
  return rv;
}

/* Write REL in the assembly directory and keep its SHA-256 in HEX. */
static int
write_small (struct export_work *w, const char *rel, const char *text,
             size_t len, char hex[65], char **why)
{
  int r = rp_outdir_write (w->od, rel, text, len);
  if (r != 0) {
    *why = rp_asprintf ("%s while writing the export's %s in %s",
                        strerror (-r), rel, rp_outdir_path (w->od));
    return RV_FAILED;
  }
  rp_sha256_buf (text, len, hex);
  return RV_OK;
}

char *
rp_export_config (struct export_work *w, size_t *len, char **why)
{
  CLEANUP_FREE char *src = rp_asprintf ("%s/config", w->rp->dir);
  char *cfg = rp_read_file (src, len);
  if (!cfg)
    *why = rp_asprintf ("cannot read %s: %s", src, strerror (errno));
  return cfg;
}

char *
rp_export_record_text (struct export_work *w)
{
  struct rp_refpoint *rp = w->rp;
  pthread_mutex_lock (&rp->sys->core->lock);
  struct rp_kv *kv = rp_refpoint_record (rp, false);
  pthread_mutex_unlock (&rp->sys->core->lock);
  rp_kv_add (kv, "ExportType", w->base ? "differential" : "full");
  if (w->base) {
    rp_kv_add (kv, "DifferentialBy", w->digest ? "digests" : "bitmaps");
    rp_kv_add (kv, "BaseReferencePoint", w->base->name);
    rp_kv_add (kv, "BaseInstanceID", w->base->instance_id);
  }
  for (size_t i = 0; w->disks[i]; i++)
    rp_kv_add (kv, "exported", w->disks[i]);
  char *text = rp_kv_render (kv);
  rp_kv_free (kv);
  return text;
}

static int
write_meta (struct export_work *w, char **why)
{
  size_t len;
  CLEANUP_FREE char *cfg = rp_export_config (w, &len, why);
  if (!cfg)
    return RV_FAILED;
  int rv = write_small (w, "config", cfg, len, w->meta_hex[0], why);
  if (rv != RV_OK)
    return rv;
  CLEANUP_FREE char *text = rp_export_record_text (w);
  return write_small (w, "referencepoint", text, strlen (text),
                      w->meta_hex[1], why);
}

/* Disk I's digest table, hashed from its image next to its seal
 * (imagehash.h), written as disks/DISK.digests. */
static int
table_done (struct export_work *w, size_t i, char **why)
{
  if (!w->ihs[i])
    return RV_OK;
  char *e = NULL;
  struct rp_bh *bh = rp_imagehash_finish (w->ihs[i], &e);
  w->ihs[i] = NULL;
  if (!bh) {
    int rv = atomic_load (&w->job->cancel) ? -1 : RV_FAILED;
    if (rv == RV_FAILED)
      *why = rp_asprintf ("the digest table of disk %s: %s", w->disks[i], e);
    free (e);
    return rv;
  }
  return rp_export_bh_done (w->od, w->disks[i], bh, &w->tabs[i],
                            w->dig_hex[i], why);
}

/* Disk I's image gets its name NAME once hashed and sealed: until then
 * nobody could open it to change what the hashes describe. */
static int
name_image (struct export_work *w, size_t i, const char *name, char **why)
{
  int r = rp_outdir_link (w->od, w->imgfds[i], name);
  close (w->imgfds[i]);
  w->imgfds[i] = -1;
  if (r == 0)
    return RV_OK;
  *why = rp_asprintf ("cannot name %s in %s: %s", name,
                      rp_outdir_path (w->od), strerror (-r));
  return RV_FAILED;
}

/* SHA256SUMS in sha256sum's own format ("HASH  NAME"), so that
 * `sha256sum -c SHA256SUMS` checks every other file of the export. */
static int
write_sums (struct export_work *w, char **why)
{
  char *sums = rp_asprintf ("%s  config\n%s  referencepoint\n",
                            w->meta_hex[0], w->meta_hex[1]);
  int rv = RV_OK;
  for (size_t i = 0; w->disks[i] && rv == RV_OK; i++) {
    CLEANUP_FREE char *name = rp_asprintf ("disks/%s.qcow2", w->disks[i]);
    char hex[65];
    char *e = NULL;
    int r = rp_seal_finish (w->seals[i], hex, &e);
    w->seals[i] = NULL;
    if (r != 0 && atomic_load (&w->job->cancel))
      rv = -1;                  /* the cancel stopped the hash */
    else if (r != 0) {
      /* A seal's message names its step (SHA-256 or fdatasync). */
      *why = rp_asprintf ("%s: %s", name, e);
      rv = RV_FAILED;
    }
    else if ((rv = table_done (w, i, why)) == RV_OK
             && (rv = name_image (w, i, name, why)) == RV_OK) {
      char *n = rp_asprintf ("%s%s  %s\n", sums, hex, name);
      free (sums);
      sums = n;
      if (w->dig_hex[i][0]) {   /* the disk's digest table */
        n = rp_asprintf ("%s%s  disks/%s.digests\n", sums, w->dig_hex[i],
                         w->disks[i]);
        free (sums);
        sums = n;
      }
      if (atomic_load (&w->job->cancel))
        rv = -1;
    }
    free (e);
  }
  char hex[65];
  if (rv == RV_OK)
    rv = write_small (w, "SHA256SUMS", sums, strlen (sums), hex, why);
  free (sums);
  return rv;
}

static void
seals_abort (struct export_work *w)
{
  for (size_t i = 0; w->seals && w->disks && w->disks[i]; i++) {
    rp_seal_abort (w->seals[i]);
    w->seals[i] = NULL;
    rp_imagehash_abort (w->ihs[i]);
    w->ihs[i] = NULL;
  }
}

/* At start: remove the assembly directories of exports a crash cut short,
 * as described by their markers (outdir.c: as the same caller, and only
 * while the directory is still the one the export made). */
void
rp_export_cleanup (struct rp_core *core)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/state/exports", core->store);
  rp_mkdir_p (dir, 0755);
  DIR *d = opendir (dir);
  struct dirent *e;
  while (d && (e = readdir (d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    CLEANUP_FREE char *m = rp_asprintf ("%s/%s", dir, e->d_name);
    CLEANUP_FREE char *text = rp_read_file (m, NULL);
    if (text)
      rp_outdir_cleanup (text);
    unlink (m);
  }
  if (d)
    closedir (d);
}

/* An export is background work: this thread takes the system's
 * export-nice value, and the copy workers it creates and the processes it
 * starts (qemu-nbd, qemu-img) inherit it, so the guest and everything else
 * on the host come first and an idle host still gives the export all it
 * can use.  Linux keeps a nice value per thread; FUSE threads keep theirs. */
void
rp_export_background (struct rp_system *sys)
{
  int nice = sys->conf->export_nice;
  if (setpriority (PRIO_PROCESS, (id_t) gettid (), nice) != 0)
    fprintf (stderr, "rpfs: %s: export at nice %d: %s; the export runs at "
             "rpfs's own priority\n", sys->name, nice, strerror (errno));
}

/* Record the finished export's images on the reference point (the next
 * differential names them as backing files).  core->lock held. */
static void
record_exports (struct export_work *w)
{
  for (size_t i = 0; w->disks[i]; i++) {
    size_t n = strlen (w->disks[i]);
    char **v = NULL;
    for (size_t k = 0; w->rp->exports && w->rp->exports[k]; k++)
      if (strncmp (w->rp->exports[k], w->disks[i], n)
          || w->rp->exports[k][n] != '=')
        v = rp_strv_push (v, w->rp->exports[k]);
    /* An archive's image: where unpacking it next to itself puts it. */
    const char *ext = w->format == RP_FMT_QCOW2 || w->base ? "qcow2" : "raw";
    CLEANUP_FREE char *path = rp_asprintf ("%s/%s/disks/%s.%s",
                                           rp_outdir_path (w->od),
                                           w->rp->sys->name, w->disks[i],
                                           ext);
    CLEANUP_FREE char *e = rp_asprintf ("%s=%s", w->disks[i], path);
    v = rp_strv_push (v, e);
    rp_strv_free (w->rp->exports);
    w->rp->exports = v;
  }
  free (w->rp->export_archive);
  w->rp->export_archive = w->format == RP_FMT_QCOW2 ? NULL
    : rp_asprintf ("%s/%s.%s", rp_outdir_path (w->od), w->rp->sys->name,
                   rp_format_name (w->format));
  rp_refpoint_save (w->rp);
}

/* KeepAssociatedData=false: the export is complete, so drop the
 * point-in-time data (the reference point stays as a base, RCT based in
 * effect), as Hyper-V backup tools do; the data no longer grows with every
 * guest overwrite.  The export stays Completed either way. */
static void
drop_data (struct export_work *w)
{
  struct rp_system *sys = w->rp->sys;
  pthread_mutex_lock (&sys->core->lock);
  w->rp->busy--;
  w->rp->exporting = false;
  w->released = true;
  pthread_mutex_unlock (&sys->core->lock);
  CLEANUP_FREE char *why = NULL;
  pthread_mutex_lock (&sys->op_lock);
  int rv = rp_remove_data (sys, w->rp, &why);
  pthread_mutex_unlock (&sys->op_lock);
  if (rv != RV_OK)
    fprintf (stderr, "rpfs: %s: export job %s kept the associated data of "
             "'%s': %s\n", sys->name, w->job->id, w->rp->name, why);
}

int
rp_export_marker (struct export_work *w, char **marker, char **why)
{
  *marker = rp_asprintf ("%s/state/exports/%s", w->rp->sys->core->store,
                         w->job->id);
  CLEANUP_FREE char *text = rp_outdir_marker (w->od);
  if (rp_write_file_atomic (*marker, text, strlen (text), 0600) != 0) {
    *why = rp_asprintf ("cannot write %s: %s", *marker, strerror (errno));
    free (*marker);
    *marker = NULL;
    return RV_FAILED;
  }
  return RV_OK;
}

/* The assembly directory, and its crash marker. */
static int
begin (struct export_work *w, char **marker, char **why)
{
  if (rp_outdir_begin (w->od, w->tmp_name, why) != 0)
    return RV_FAILED;
  return rp_export_marker (w, marker, why);
}

static void *
export_thread (void *opaque)
{
  struct export_work *w = opaque;
  struct rp_job *job = w->job;
  CLEANUP_FREE char *why = NULL, *marker = NULL;
  struct rp_pacer *pacer = NULL;

  rp_job_set_state (job, JS_RUNNING);
  rp_export_background (w->rp->sys);
  int rv = begin (w, &marker, &why);
  if (rv == RV_OK)
    rv = write_meta (w, &why);
  /* export-rate-limit = auto: pace the copies by the guest's latency. */
  if (rv == RV_OK && w->rp->sys->conf->export_rate_auto)
    pacer = rp_pacer_start (w->rp->sys, &w->rate, job->id);
  for (w->cur = 0; rv == RV_OK && w->disks[w->cur]; w->cur++) {
    if (atomic_load (&job->cancel))
      rv = -1;
    else
      rv = rp_export_disk (w, w->disks[w->cur], &why);
  }
  rp_pacer_stop (pacer);
  if (rv == RV_OK && atomic_load (&job->cancel))
    rv = -1;
  if (rv == RV_OK)
    rv = write_sums (w, &why);
  if (rv == RV_OK)
    rv = rp_outdir_commit (w->od, &why);
  if (rv != RV_OK) {
    seals_abort (w);
    rp_outdir_abort (w->od);
  }
  if (marker)
    unlink (marker);
  rp_export_done (w, rv, why);
  return NULL;
}

void
rp_export_done (struct export_work *w, int rv, const char *why)
{
  struct rp_stream *s = w->stream;
  if (rv == RV_OK && w->od) {
    struct rp_core *core = w->rp->sys->core;
    pthread_mutex_lock (&core->lock);
    record_exports (w);
    pthread_mutex_unlock (&core->lock);
  }
  /* The tables describe the disks at the reference point, whichever form
   * the export took (a stream included). */
  if (rv == RV_OK)
    rp_export_tables_save (w->rp, w->disks, w->tabs);
  if (rv == RV_OK && w->drop)
    drop_data (w);
  rp_job_finish (w->job, rv, rv == -1 ? NULL : why);
  /* The reader sees the end (or the error) once the job shows it. */
  if (s)
    rp_stream_end (s, rv);
  work_free (w);
  /* rpfs keeps freed memory on its heap (fs/main.c: the trim threshold is
   * 32 MiB, so that FUSE's read buffers are reused); what an export used
   * (copy buffers, digest tables, libzstd's context) goes back to the
   * kernel when it ends, not when the heap next grows. */
  malloc_trim (0);
}
