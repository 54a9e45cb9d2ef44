/* ExportReferencePoint: the checks made before a job starts (each a clear
 * error with nothing written), then the job thread that assembles
 *   <dir>/.<system>.<job>.part/{config,referencepoint,disks/DISK.qcow2,SHA256SUMS}
 * and renames it to <dir>/<system> only when complete.  The directory is the
 * caller's, resolved once as the caller and used through descriptors
 * (outdir.h): rpfs never walks a path there as root. */
#include <dirent.h>
#include <errno.h>
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


struct export_work {
  struct rp_job *job;
  struct rp_refpoint *rp;
  struct rp_refpoint *base;     /* NULL: full export */
  bool digest;                  /* base's bitmaps lost: compare digests */
  struct rp_digests **tabs;     /* per disk: its digest table, or NULL */
  char (*dig_hex)[65];          /* per disk: SHA-256 of DISK.digests, or "" */
  struct rp_outdir *od;         /* ExportDirectory, as the caller */
  char *tmp_name;               /* hidden assembly directory in it */
  char meta_hex[2][65];         /* SHA-256 of config, referencepoint */
  char **disks;
  bool drop;                    /* KeepAssociatedData false */
  bool released;                /* rp no longer busy with this job */
  size_t cur;                   /* disk being copied, for progress */
  struct rp_seal **seals;       /* per disk: hash + fdatasync, once copied */
  struct rp_rate rate;          /* export-rate-limit, over all its disks */
};

static void work_free (struct export_work *w);
static void seals_abort (struct export_work *w);
static void *export_thread (void *opaque);

int
rp_export_start (struct rp_refpoint *rp, const char *buf, size_t len,
                 const struct rp_caller *who, struct rp_job *job, char **why)
{
  struct rp_system *sys = rp->sys;
  struct rp_args *a = rp_args_parse (buf, len, why);
  if (!a)
    return RV_INVALID_PARAMETER;
  int rv = RV_INVALID_PARAMETER;
  const char *base_arg = NULL, *disks_arg = NULL, *keep_arg = NULL;
  char **disks = NULL;
  struct export_work *w = NULL;
  bool locked = false;

  if (a->npos != 1) {
    *why = rp_asprintf ("expected the export directory on the first line, "
                        "then optional Key=Value lines");
    goto out;
  }
  for (size_t i = 0; i < a->nkv; i++) {
    if (!strcmp (a->keys[i], "BaseReferencePoint"))
      base_arg = a->vals[i];
    else if (!strcmp (a->keys[i], "DisksToExport"))
      disks_arg = a->vals[i];
    else if (!strcmp (a->keys[i], "KeepAssociatedData"))
      keep_arg = a->vals[i];
    else {
      *why = rp_asprintf ("unknown key '%s' (ExportReferencePoint takes "
                          "BaseReferencePoint, DisksToExport and "
                          "KeepAssociatedData)", a->keys[i]);
      goto out;
    }
  }
  bool keep = true;
  if (keep_arg && rp_refpoint_parse_keep (keep_arg, &keep, why) != 0)
    goto out;
  const char *dir = a->pos[0];
  if ((rv = rp_outdir_open (dir, sys->name, sys->core->mount_real, who,
                            false, NULL, why)) != RV_OK)
    goto out;
  if (disks_arg && !(disks = rp_args_disk_list (disks_arg, why))) {
    rv = RV_INVALID_PARAMETER;
    goto out;
  }

  pthread_mutex_lock (&sys->op_lock);
  locked = true;
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint *base = NULL;
  rv = rp_refpoint_check_base (rp, base_arg ? base_arg : rp->base_setting,
                               &base, why);
  /* Only checking a request that may still be arriving line by line: a
   * later BaseReferencePoint= line may override a setting gone stale. */
  if (rv != RV_OK && !job && !base_arg) {
    free (*why);
    *why = NULL;
    rv = RV_OK;
    base = NULL;
  }
  for (size_t i = 0; !disks_arg && rp->disks_setting && rp->disks_setting[i];
       i++)
    disks = rp_strv_push (disks, rp->disks_setting[i]);
  pthread_mutex_unlock (&sys->core->lock);
  if (rv != RV_OK)
    goto out;
  if ((rv = rp_refpoint_check_disks (rp, disks, why)) != RV_OK)
    goto out;
  if (rp_strv_len (disks) == 0) {
    rp_strv_free (disks);
    disks = NULL;
    for (size_t i = 0; rp->disk_ids[i]; i++)
      disks = rp_strv_push (disks, rp->disk_ids[i]);
  }

  char *e = NULL;
  bool qemu_ok = rp_qsd_ensure (sys, &e) == 0;
  pthread_mutex_lock (&sys->core->lock);
  if (!rp->has_data) {
    *why = rp_asprintf ("reference point '%s' has no associated data (%s)",
                        rp->name, rp->type == 2
                        ? "it is RCT based: change tracking only"
                        : "it was removed, or lost when QEMU restarted");
    rv = RV_INVALID_STATE;
  }
  bool digest = false;
  if (rv == RV_OK && base)
    rv = rp_export_base_mode (rp, base, disks, &digest, why);
  if (rv == RV_OK && rp->destroyed) {
    *why = rp_asprintf ("reference point '%s' was destroyed", rp->name);
    rv = RV_INVALID_STATE;
  }
  if (rv == RV_OK && rp->exporting) {
    *why = rp_asprintf ("an export of reference point '%s' is already "
                        "running", rp->name);
    rv = RV_IN_USE;
  }
  if (rv == RV_OK && !qemu_ok) {
    *why = rp_asprintf ("QEMU is not available: %s", e);
    rv = RV_NOT_AVAILABLE;
  }
  if (rv == RV_OK && !job) {     /* only checking */
    pthread_mutex_unlock (&sys->core->lock);
    free (e);
    goto out;
  }
  if (rv == RV_OK) {
    rp->exporting = true;
    rp->busy++;
    rp->refs++;
    if (base) {
      base->busy++;
      base->refs++;
    }
    job->cancellable = true;
    job->export_dir = rp_strdup (dir);
    job->base_id = base ? rp_strdup (base->instance_id) : NULL;
    job->exported_disks = disks;
    job->refs++;                /* the thread's */
    w = rp_calloc (1, sizeof *w);
    w->job = job;
    w->rp = rp;
    w->base = base;
    w->digest = digest;
    w->tmp_name = rp_asprintf (".%s.%s.part", sys->name, job->id);
    w->drop = keep_arg ? !keep : rp->drop_setting;
    for (size_t i = 0; disks[i]; i++)
      w->disks = rp_strv_push (w->disks, disks[i]);
    w->seals = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->seals);
    w->tabs = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->tabs);
    w->dig_hex = rp_calloc (rp_strv_len (w->disks) + 1, sizeof *w->dig_hex);
    disks = NULL;
    rp_rate_init (&w->rate, sys->conf->export_rate);
  }
  pthread_mutex_unlock (&sys->core->lock);
  free (e);
  if (rv != RV_OK)
    goto out;
  /* Every check passed: resolve the directory once more, now to keep it
   * (and make it, as the caller, if it is missing). */
  if ((rv = rp_outdir_open (dir, sys->name, sys->core->mount_real, who,
                            true, &w->od, why)) != RV_OK) {
    work_free (w);
    goto out;
  }
  rp_job_set_state (job, JS_STARTING);
  if (pthread_create (&job->thread, NULL, export_thread, w) != 0) {
    *why = rp_strdup ("cannot start the export thread");
    rv = RV_NO_MEMORY;
    rp_outdir_abort (w->od);
    work_free (w);
    goto out;
  }
  job->has_thread = true;
  rv = RV_JOB_STARTED;
 out:
  if (locked)
    pthread_mutex_unlock (&sys->op_lock);
  rp_strv_free (disks);
  rp_args_free (a);
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
  for (size_t i = 0; w->disks && w->disks[i]; i++)
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
  free (w);
}

/* ---- the job thread ---- */

static void
progress (void *opaque, uint64_t done, uint64_t total)
{
  struct export_work *w = opaque;
  size_t n = rp_strv_len (w->disks);
  uint64_t part = total ? done * 100 / total : 100;
  int pct = (int) ((w->cur * 100 + part) / n);
  rp_job_set_percent (w->job, pct > 99 ? 99 : pct);
}

/* Path of the base's exported image of DISK, relative to the directory the
 * new image will have, if that export still exists. */
static char *
backing_of (struct export_work *w, const char *disk)
{
  struct rp_core *core = w->rp->sys->core;
  CLEANUP_FREE char *abs = NULL;
  pthread_mutex_lock (&core->lock);
  size_t n = strlen (disk);
  for (size_t i = 0; w->base->exports && w->base->exports[i]; i++)
    if (!strncmp (w->base->exports[i], disk, n)
        && w->base->exports[i][n] == '=')
      abs = rp_strdup (w->base->exports[i] + n + 1);
  pthread_mutex_unlock (&core->lock);
  /* Resolved as the caller: the base export is a path they named. */
  CLEANUP_FREE char *real = abs ? rp_outdir_realpath (w->od, abs) : NULL;
  if (!real)
    return NULL;
  /* The new image will live in <dir>/<system>/disks/: a path relative to
   * it survives moving the whole backup tree. */
  CLEANUP_FREE char *to = rp_outdir_final_path (w->od, "disks");
  return rp_relpath (real, to);
}

/* Merge the bitmaps of [base, rp) on disk DI into transient bitmap XNAME
 * and export the point-in-time node with it.  op_lock held. */
static int
prepare_diff (struct export_work *w, int di, const char *xname,
              const char *ename, char **why)
{
  struct rp_system *sys = w->rp->sys;
  const char *node = sys->disks[di].node;
  struct rp_bitmaps bm;
  char *e = NULL;
  if (rp_bitmaps_query (sys->qmp, node, &bm, &e) != 0)
    goto qmp_fail;
  json_t *sources = json_array ();
  bool found_base = false;
  for (size_t j = 0; j < bm.n; j++)
    if (bm.v[j].seq >= w->base->seq && bm.v[j].seq < w->rp->seq) {
      if (bm.v[j].inconsistent) {
        *why = rp_asprintf ("bitmap %s on disk %s is inconsistent",
                            bm.v[j].name, sys->disks[di].id);
        json_decref (sources);
        rp_bitmaps_free (&bm);
        return RV_INVALID_STATE;
      }
      found_base |= bm.v[j].seq == w->base->seq;
      json_array_append_new (sources, json_string (bm.v[j].name));
    }
  rp_bitmaps_free (&bm);
  if (!found_base) {
    *why = rp_asprintf ("the change tracking of base '%s' on disk %s is "
                        "missing", w->base->name, sys->disks[di].id);
    json_decref (sources);
    return RV_INVALID_STATE;
  }
  json_t *actions = json_array ();
  json_array_append_new (actions, rp_qmp_action (
    "block-dirty-bitmap-add",
    json_pack ("{s:s, s:s, s:b, s:b}", "node", node, "name", xname,
               "persistent", 0, "disabled", 1)));
  json_array_append_new (actions, rp_qmp_action (
    "block-dirty-bitmap-merge",
    json_pack ("{s:s, s:s, s:o}", "node", node, "target", xname,
               "bitmaps", sources)));
  if (rp_qmp_transaction (sys->qmp, actions, &e) != 0)
    goto qmp_fail;
  char fnode[32];
  snprintf (fnode, sizeof fnode, "f%u_%d", w->rp->seq, di);
  if (rp_qmp_cmd (sys->qmp, "block-export-add",
                  json_pack ("{s:s, s:s, s:s, s:s, s:b, s:[{s:s, s:s}]}",
                             "type", "nbd", "id", ename, "node-name", fnode,
                             "name", ename, "writable", 0, "bitmaps",
                             "node", node, "name", xname), NULL, &e) != 0)
    goto qmp_fail;
  return RV_OK;
 qmp_fail:
  *why = rp_asprintf ("QEMU: %s", e);
  free (e);
  return rp_qsd_answers (sys) ? RV_FAILED : RV_NOT_AVAILABLE;
}

static void
cleanup_diff (struct export_work *w, int di, const char *xname,
              const char *ename)
{
  struct rp_system *sys = w->rp->sys;
  char *e = NULL;
  if (!rp_qsd_alive (sys))
    return;
  rp_qmp_cmd (sys->qmp, "block-export-del",
              json_pack ("{s:s, s:s}", "id", ename, "mode", "hard"), NULL, &e);
  free (e);
  e = NULL;
  /* The export lets go of the bitmap asynchronously. */
  for (int t = 0; t < 400; t++) {
    if (rp_qmp_cmd (sys->qmp, "block-dirty-bitmap-remove",
                    json_pack ("{s:s, s:s}", "node", sys->disks[di].node,
                               "name", xname), NULL, &e) == 0
        || (e && !strstr (e, "in use")))
      break;
    free (e);
    e = NULL;
    usleep (5000);
  }
  free (e);
}

/* Create the qcow2 image in FD (already made, empty) and copy disk DI
 * into it.  The QEMU tools open it as /proc/<rpfs>/fd/<n>: never by a path
 * through the caller's directories. */
static int
write_image (struct export_work *w, int di, int fd, const char *name,
             const char *bitmap, const char *ename, struct rp_bh *bh,
             char **why)
{
  struct rp_system *sys = w->rp->sys;
  const char *disk = sys->disks[di].id;
  CLEANUP_FREE char *target = rp_fd_path (fd);
  CLEANUP_FREE char *backing = w->base ? backing_of (w, disk) : NULL;
  CLEANUP_FREE char *size = rp_asprintf ("%" PRIu64, sys->disks[di].size);
  CLEANUP_FREE char *errs = NULL;
  /* -u: the backing file is only named, never opened (and so never looked
   * up relative to /proc). */
  char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", target, size,
                     NULL, NULL, NULL, NULL, NULL, NULL };
  if (backing) {
    char *with[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b",
                     backing, "-F", "qcow2", target, size, NULL };
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
  int r = rp_copy_disk (sys->nbd_path, ename, bitmap, target, name, run,
                        &w->job->cancel, &w->rate, progress, w, bh, NULL, &e);
  if (r == ECANCELED)
    rv = -1;
  else if (r) {
    bool alive = rp_qsd_answers (sys);
    CLEANUP_FREE char *what = rp_qemu_what (sys);
    *why = alive ? rp_strdup (e ? e : strerror (r))
      : rp_asprintf ("QEMU (%s) stopped during the export: %s", what,
                     e ? e : strerror (r));
    rv = alive ? RV_FAILED : RV_NOT_AVAILABLE;
  }
  free (e);
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

static int
export_disk (struct export_work *w, const char *disk, char **why)
{
  struct rp_system *sys = w->rp->sys;
  int di = rp_disk_index (sys, disk);
  char ename[64], xname[64];
  int rv = RV_OK;
  if (di < 0) {
    *why = rp_asprintf ("disk %s is no longer in the definition", disk);
    return RV_INVALID_PARAMETER;
  }
  bool diff = w->base != NULL && !w->digest;   /* by bitmap */
  snprintf (xname, sizeof xname, "rpfs-x%s-%d", w->job->id, di);
  if (diff)
    snprintf (ename, sizeof ename, "job.%s.%d", w->job->id, di);
  else
    rp_export_name_rp (ename, sizeof ename, w->rp->seq, (unsigned) di);

  pthread_mutex_lock (&sys->op_lock);
  if (!rp_qsd_alive (sys)) {
    CLEANUP_FREE char *what = rp_qemu_what (sys);
    *why = rp_asprintf ("QEMU (%s) is not running", what);
    rv = RV_NOT_AVAILABLE;
  }
  else if (!rp_refpoint_has_data (w->rp)) {
    *why = rp_asprintf ("reference point '%s' lost its associated data",
                        w->rp->name);
    rv = RV_INVALID_STATE;
  }
  else if (diff)
    rv = prepare_diff (w, di, xname, ename, why);
  pthread_mutex_unlock (&sys->op_lock);
  if (rv != RV_OK)
    return rv;
  struct rp_bh *bh = rp_export_bh (w->base, w->digest, disk,
                                   sys->disks[di].size, &rv, why);
  if (rv != RV_OK)
    return rv;
  if (w->digest)
    rp_job_set_activity (w->job, rp_asprintf ("comparing digests with base "
                                              "'%s'", w->base->name));

  CLEANUP_FREE char *name = rp_asprintf ("disks/%s.qcow2", disk);
  int fd = rp_outdir_create (w->od, name, 0644);
  if (fd < 0) {
    *why = rp_asprintf ("cannot create %s: %s", name, strerror (-fd));
    rv = RV_FAILED;
  }
  else {
    rv = write_image (w, di, fd, name, diff ? xname : NULL, ename, bh, why);
    close (fd);
  }
  if (rv == RV_OK && bh)
    rv = rp_export_bh_done (w->od, disk, bh, &w->tabs[w->cur],
                            w->dig_hex[w->cur], why);
  else
    rp_bh_end (bh, false);
  if (diff) {
    pthread_mutex_lock (&sys->op_lock);
    cleanup_diff (w, di, xname, ename);
    pthread_mutex_unlock (&sys->op_lock);
  }
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

static int
write_meta (struct export_work *w, char **why)
{
  struct rp_refpoint *rp = w->rp;
  CLEANUP_FREE char *src = rp_asprintf ("%s/config", rp->dir);
  size_t len;
  CLEANUP_FREE char *cfg = rp_read_file (src, &len);
  if (!cfg) {
    *why = rp_asprintf ("cannot read %s: %s", src, strerror (errno));
    return RV_FAILED;
  }
  int rv = write_small (w, "config", cfg, len, w->meta_hex[0], why);
  if (rv != RV_OK)
    return rv;
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
  CLEANUP_FREE char *text = rp_kv_render (kv);
  rp_kv_free (kv);
  return write_small (w, "referencepoint", text, strlen (text),
                      w->meta_hex[1], why);
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
    else {
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
static void
background (struct rp_system *sys)
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
    CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.qcow2", w->disks[i]);
    CLEANUP_FREE char *path = rp_outdir_final_path (w->od, rel);
    CLEANUP_FREE char *e = rp_asprintf ("%s=%s", w->disks[i], path);
    v = rp_strv_push (v, e);
    rp_strv_free (w->rp->exports);
    w->rp->exports = v;
  }
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

/* The assembly directory, and a marker in the store that names it, so
 * that a start after a crash removes what this job leaves half done. */
static int
begin (struct export_work *w, char **marker, char **why)
{
  if (rp_outdir_begin (w->od, w->tmp_name, why) != 0)
    return RV_FAILED;
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

static void *
export_thread (void *opaque)
{
  struct export_work *w = opaque;
  struct rp_job *job = w->job;
  CLEANUP_FREE char *why = NULL, *marker = NULL;
  struct rp_pacer *pacer = NULL;

  rp_job_set_state (job, JS_RUNNING);
  background (w->rp->sys);
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
      rv = export_disk (w, w->disks[w->cur], &why);
  }
  rp_pacer_stop (pacer);
  if (rv == RV_OK && atomic_load (&job->cancel))
    rv = -1;
  if (rv == RV_OK)
    rv = write_sums (w, &why);
  if (rv == RV_OK)
    rv = rp_outdir_commit (w->od, &why);
  if (rv == RV_OK) {
    struct rp_core *core = w->rp->sys->core;
    pthread_mutex_lock (&core->lock);
    record_exports (w);
    pthread_mutex_unlock (&core->lock);
    rp_export_tables_save (w->rp, w->disks, w->tabs);
    if (w->drop)
      drop_data (w);
  }
  else {
    seals_abort (w);
    rp_outdir_abort (w->od);
  }
  if (marker)
    unlink (marker);
  rp_job_finish (job, rv, rv == -1 ? NULL : why);
  work_free (w);
  return NULL;
}
