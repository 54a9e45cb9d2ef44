/* VerifyExport (docs/reference.md): re-hash what an export of this
 * reference point restores to, read through qemu-nbd with its whole
 * backing chain (never the bytes of the image files), and compare each
 * block with the reference point's digest table; then, while the
 * reference point has associated data, the live point-in-time disk too.
 * The export is resolved as the caller in the FUSE thread (verifychain.h);
 * the job thread reads and hashes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#include "internal.h"
#include "backend.h"
#include "args.h"
#include "caller.h"
#include "digests.h"
#include "verify.h"
#include "verifychain.h"
#include "verifyio.h"
#include "source.h"

#define TABLE_CAP (1ull << 30)  /* an export's table: 1 GiB at most */

static void
work_free (struct verify_work *w)
{
  for (size_t i = 0; w->tabs && w->disks[i]; i++) {   /* prepare ran */
    rp_digests_free (w->tabs[i]);
    free (w->specs[i]);
  }
  free (w->tabs);
  free (w->specs);
  for (size_t i = 0; w->stage && w->disks[i]; i++) {
    if (w->stage[i] >= 0)
      close (w->stage[i]);
    rp_digests_free (w->btabs[i]);
  }
  free (w->stage);
  free (w->stage_max);
  free (w->sizes);
  free (w->btabs);
  rp_strv_free (w->disks);
  rp_fds_close (&w->fds);
  if (w->arcfd >= 0)
    close (w->arcfd);
  free (w->path);
  free (w);
}

int
rp_verify_record (struct rp_refpoint *rp, const char *text, size_t len,
                  char ***disks, bool *differential, char **why)
{
  char *e = NULL;
  struct rp_kv *kv = rp_kv_parse ("referencepoint", text, len, &e);
  if (!kv) {
    *why = rp_asprintf ("the export's referencepoint file: %s", e);
    free (e);
    return RV_INVALID_PARAMETER;
  }
  const char *id = rp_kv_get (kv, "InstanceID");
  const char **all = rp_kv_all (kv, "exported");
  const char *type = rp_kv_get (kv, "ExportType");
  *differential = type && !strcmp (type, "differential");
  int rv = RV_OK;
  if (!id || strcasecmp (id, rp->instance_id) != 0) {
    *why = rp_asprintf ("the export is of reference point '%s' (%s), not of "
                        "'%s'", rp_kv_get (kv, "ElementName") ?: "?",
                        id ?: "no InstanceID", rp->name);
    rv = RV_INVALID_PARAMETER;
  }
  for (size_t i = 0; rv == RV_OK && all && all[i]; i++) {
    if (!rp_name_valid (all[i]) || !rp_strv_contains (rp->disk_ids, all[i])) {
      *why = rp_asprintf ("the export names disk '%s', which is not a disk "
                          "of '%s'", all[i], rp->name);
      rv = RV_INVALID_PARAMETER;
    }
    *disks = rp_strv_push (*disks, all[i]);
  }
  if (rv == RV_OK && rp_strv_len (*disks) == 0) {
    *why = rp_strdup ("the export's referencepoint file lists no disk");
    rv = RV_INVALID_PARAMETER;
  }
  free (all);
  rp_kv_free (kv);
  return rv;
}

/* The export's record must be of RP; the disks it holds into *DISKS. */
static int
check_record (struct rp_refpoint *rp, const struct rp_caller *who, int root,
              char ***disks, char **why)
{
  size_t len;
  bool diff;
  CLEANUP_FREE char *text = rp_verify_read (who, root, "referencepoint",
                                            RP_CALLER_FILE_MAX, &len, why);
  if (!text)
    return RV_INVALID_PARAMETER;
  return rp_verify_record (rp, text, len, disks, &diff, why);
}

/* The table to compare DISK with: the store's (rpfs's own), else the
 * export's disks/DISK.digests (its checksum checked).  NULL with *WHY. */
static struct rp_digests *
table_of (struct rp_refpoint *rp, const struct rp_caller *who, int root,
          const char *disk, char **why)
{
  CLEANUP_FREE char *path = rp_digests_path (rp, disk);
  struct stat st;
  if (stat (path, &st) == 0)
    return rp_digests_load (rp, disk, why);
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.digests", disk);
  size_t len;
  char *e = NULL;
  CLEANUP_FREE char *buf = rp_verify_read (who, root, rel, TABLE_CAP, &len,
                                           &e);
  struct rp_digests *t = buf ? rp_digests_parse (buf, len, &e) : NULL;
  if (!t)
    *why = rp_asprintf ("no digest table for disk %s: the reference point "
                        "has none in the store, and %s", disk, e);
  free (e);
  return t;
}

void
rp_verify_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct verify_work *w = opaque;
  uint64_t part = total ? done * 100 / total : 100;
  int pct = (int) ((w->step * 100 + part) / w->steps);
  rp_job_set_percent (w->job, pct > 99 ? 99 : pct);
}

/* Hash what H reads as disk I and compare.  RV_OK, -1 (cancelled), or a
 * ReturnValue with *WHY naming the disk and the first bad block. */
static int
verify_one (struct verify_work *w, size_t i, struct rp_src *src,
            const char *what, char **why)
{
  const struct rp_digests *t = w->tabs[i];
  uint64_t bad = 0;
  char *e = NULL;
  int r = rp_verify_disk (src, t, &w->job->cancel, rp_verify_progress, w,
                          &bad, &e);
  int rv = RV_OK;
  if (r == ECANCELED)
    rv = -1;
  else if (r == 1)
    rv = rp_verify_bad (w, i, t, bad, what, why);
  else if (r) {
    *why = rp_asprintf ("disk %s: %s: %s", w->disks[i], what, e);
    rv = RV_FAILED;
  }
  free (e);
  w->step++;
  return rv;
}

int
rp_verify_bad (struct verify_work *w, size_t i, const struct rp_digests *t,
               uint64_t bad, const char *what, char **why)
{
  uint64_t off = bad * t->block;
  *why = rp_asprintf ("disk %s: block %" PRIu64 " (bytes %" PRIu64 "-%"
                      PRIu64 ") of %s does not match the digest table "
                      "of reference point '%s'", w->disks[i], bad, off,
                      off + rp_digests_block_len (t, bad) - 1, what,
                      w->rp->name);
  return RV_FAILED;
}

/* The point-in-time disk I, while the reference point has its data. */
static int
verify_live (struct verify_work *w, size_t i, char **why)
{
  struct rp_system *sys = w->rp->sys;
  int di = rp_disk_index (sys, w->disks[i]);
  if (di < 0 || !rp_refpoint_has_data (w->rp)) {
    w->step++;
    return RV_OK;
  }
  struct rp_endpoint ep = { 0 };
  char *e = NULL;
  int r = rp_backend_disk_endpoint (sys, w->rp, (size_t) di, &ep, &e);
  rp_job_set_activity (w->job, rp_asprintf ("hashing the point-in-time "
                                            "disk %s", w->disks[i]));
  struct rp_src src;
  if (r != 0 || rp_src_open (&src, &ep, false, &e) != 0) {
    rp_endpoint_clear (&ep);
    *why = rp_asprintf ("disk %s: cannot read the point-in-time disk: %s",
                        w->disks[i], e);
    free (e);
    return RV_NOT_AVAILABLE;
  }
  int rv = verify_one (w, i, &src, "the point-in-time disk", why);
  rp_src_close (&src);
  rp_endpoint_clear (&ep);        /* after the reads: it pins the chain */
  return rv;
}

static int
verify_image (struct verify_work *w, size_t i, char **why)
{
  rp_job_set_activity (w->job, rp_asprintf ("hashing disk %s of the export",
                                            w->disks[i]));
  char *e = NULL;
  struct nbd_handle *h = rp_verify_open_image (w->specs[i], &e);
  if (!h) {
    *why = rp_asprintf ("disk %s: qemu-nbd cannot open the exported image: "
                        "%s", w->disks[i], e);
    free (e);
    return RV_FAILED;
  }
  struct rp_src src;
  rp_src_wrap (&src, h);
  int rv = verify_one (w, i, &src, "the exported image", why);
  nbd_shutdown (h, 0);
  rp_src_close (&src);
  return rv;
}

static void *
verify_thread (void *opaque)
{
  struct verify_work *w = opaque;
  CLEANUP_FREE char *why = NULL;
  rp_job_set_state (w->job, JS_RUNNING);
  int rv = RV_OK;
  if (w->arcfd >= 0)            /* one pass through the archive */
    rv = rp_verify_archive (w, &why);
  for (size_t i = 0; rv == RV_OK && w->disks[i]; i++) {
    if (w->arcfd < 0)
      rv = verify_image (w, i, &why);
    if (rv == RV_OK)
      rv = verify_live (w, i, &why);
  }
  struct rp_core *core = w->rp->sys->core;
  pthread_mutex_lock (&core->lock);
  w->rp->busy--;
  pthread_mutex_unlock (&core->lock);
  rp_refpoint_put (w->rp);
  rp_job_finish (w->job, rv, rv == -1 ? NULL : why);
  rp_job_put (w->job);
  work_free (w);
  return NULL;
}

/* Everything the job needs, resolved now as the caller. */
static int
prepare (struct verify_work *w, const struct rp_caller *who, int root,
         char **why)
{
  size_t n = rp_strv_len (w->disks);
  w->tabs = rp_calloc (n + 1, sizeof *w->tabs);
  w->specs = rp_calloc (n + 1, sizeof *w->specs);
  for (size_t i = 0; i < n; i++) {
    if (!(w->tabs[i] = table_of (w->rp, who, root, w->disks[i], why)))
      return RV_INVALID_STATE;
    if (!(w->specs[i] = rp_verify_image_spec (who, root, w->disks[i],
                                              &w->fds, why)))
      return RV_INVALID_PARAMETER;
  }
  w->steps = 2 * n;
  return RV_OK;
}

/* Take the reference point for the job and start its thread. */
static int
launch (struct verify_work *w, const char *path, char **why)
{
  struct rp_refpoint *rp = w->rp;
  struct rp_core *core = rp->sys->core;
  pthread_mutex_lock (&core->lock);
  int rv = rp->destroyed ? RV_INVALID_STATE : RV_OK;
  if (rv == RV_OK) {
    rp->busy++;
    rp->refs++;
    w->job->refs++;             /* the thread's */
    w->job->cancellable = true;
    w->job->export_dir = rp_strdup (path);
  }
  pthread_mutex_unlock (&core->lock);
  if (rv != RV_OK) {
    *why = rp_asprintf ("reference point '%s' was destroyed", rp->name);
    return rv;
  }
  /* Once the thread runs, W is its own: it may end and free W at once. */
  struct rp_job *job = w->job;
  rp_job_set_state (job, JS_STARTING);
  if (pthread_create (&job->thread, NULL, verify_thread, w) != 0) {
    pthread_mutex_lock (&core->lock);
    rp->busy--;
    rp->refs--;
    w->job->refs--;
    pthread_mutex_unlock (&core->lock);
    *why = rp_strdup ("cannot start the verification thread");
    return RV_NO_MEMORY;
  }
  job->has_thread = true;
  return RV_JOB_STARTED;
}

int
rp_verify_start (struct rp_refpoint *rp, const char *buf, size_t len,
                 const struct rp_caller *who, struct rp_job *job, char **why)
{
  struct rp_args *a = rp_args_parse (buf, len, why);
  if (!a)
    return RV_INVALID_PARAMETER;
  int rv = RV_INVALID_PARAMETER, root = -1;
  struct verify_work *w = rp_calloc (1, sizeof *w);
  w->rp = rp;
  w->job = job;
  w->arcfd = -1;
  if (a->npos != 1 || a->nkv != 0)
    *why = rp_strdup ("expected one line: the directory or archive of an "
                      "export of this reference point");
  else if ((rv = rp_verify_open_archive (who, a->pos[0],
                                         rp->sys->core->mount_real,
                                         &w->arcfd, why)) == RV_OK
           && w->arcfd >= 0) {
    w->path = rp_strdup (a->pos[0]);
    rv = rp_verify_archive_prepare (w, who, job != NULL, why);
  }
  else if (rv == RV_OK) {
    rv = rp_verify_root (who, a->pos[0], rp->sys->name,
                         rp->sys->core->mount_real, &root, why);
    if (rv == RV_OK)
      rv = check_record (rp, who, root, &w->disks, why);
    if (rv == RV_OK && job)
      rv = prepare (w, who, root, why);
  }
  if (root >= 0)
    close (root);
  if (rv == RV_OK && job)
    rv = launch (w, a->pos[0], why);
  if (rv != RV_JOB_STARTED)
    work_free (w);
  rp_args_free (a);
  return rv;
}
