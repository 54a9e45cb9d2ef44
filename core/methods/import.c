/* ImportReferencePointMetadata: register again a reference point from the
 * "config" and "referencepoint" files of one of its exports, as RCT based
 * without associated data, when the disks still carry its tracking. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"
#include "args.h"
#include "caller.h"
#include "arc.h"

/* The config and referencepoint members of the archive export PATH, read
 * as the caller: opened with WHO's identity, a regular file, no final
 * symlink followed, never blocking; libarchive reads the descriptor and
 * stops after the two small members (each at most RP_CALLER_FILE_MAX). */
static int
read_archive (const struct rp_caller *who, const char *path,
              const char *mount_real, char **cfg, size_t *cfglen, char **rec,
              size_t *reclen, char **why)
{
  if (path[0] != '/') {
    *why = rp_asprintf ("'%s' is not an absolute path", path);
    return RV_INVALID_PARAMETER;
  }
  int fd = rp_caller_open_file (who, path, mount_real);
  if (fd < 0) {
    *why = fd == -EINVAL ? rp_asprintf ("%s is not a regular file", path)
      : fd == -EXDEV ? rp_asprintf ("%s is inside the rpfs mount", path)
      : rp_asprintf ("cannot open %s: %s", path, strerror (-fd));
    return fd == -EACCES || fd == -EPERM ? RV_ACCESS_DENIED
      : RV_INVALID_PARAMETER;
  }
  int rv = RV_INVALID_PARAMETER;
  if (rp_arc_read_meta (fd, path, RP_CALLER_FILE_MAX, cfg, cfglen, rec,
                        reclen, why) == 0)
    rv = RV_OK;
  close (fd);
  return rv;
}

/* What a referencepoint file says, checked. */
struct import_rec {
  const char *name, *id, *bitmap;
  time_t created;
  const char **disks;           /* NULL-terminated; free() the array */
};

/* The config and referencepoint of the request in A, read as the caller
 * before any lock (caller.h). */
static int
read_inputs (struct rp_system *sys, const struct rp_args *a,
             const struct rp_caller *who, char **cfg, size_t *cfglen,
             char **rec, size_t *reclen, char **why)
{
  const char *mnt = sys->core->mount_real;
  int rv = RV_INVALID_PARAMETER;
  if ((a->npos != 2 && a->npos != 1) || a->nkv) {
    *why = rp_strdup ("expected two lines: the export's config file, then "
                      "its referencepoint file (or one: an archive export)");
    return rv;
  }
  if (a->npos == 1)
    return read_archive (who, a->pos[0], mnt, cfg, cfglen, rec, reclen, why);
  if (!(*cfg = rp_caller_read_file (who, a->pos[0], mnt, RP_CALLER_FILE_MAX,
                                    cfglen, &rv, why))
      || !(*rec = rp_caller_read_file (who, a->pos[1], mnt,
                                       RP_CALLER_FILE_MAX, reclen, &rv, why)))
    return rv;
  return RV_OK;
}

/* The record's required lines into *R.  RV_OK or RV_INVALID_PARAMETER. */
static int
parse_record (const struct rp_kv *kv, const char *path,
              struct import_rec *r, char **why)
{
  r->name = rp_kv_get (kv, "ElementName");
  r->id = rp_kv_get (kv, "InstanceID");
  r->bitmap = rp_kv_get (kv, "ResilientChangeTrackingIdentifier");
  const char *created = rp_kv_get (kv, "CreationTime");
  if (!r->name || !rp_name_valid (r->name) || !r->id
      || !rp_uuid_valid (r->id) || !r->bitmap
      || rp_bitmap_seq (r->bitmap) == 0 || !created
      || rp_time_parse (created, &r->created) != 0) {
    *why = rp_asprintf ("%s is not a reference point file of rpfs (a "
                        "required line is missing or wrong)", path);
    return RV_INVALID_PARAMETER;
  }
  r->disks = rp_kv_all (kv, "disk");
  if (!r->disks || !r->disks[0]) {
    *why = rp_asprintf ("%s names no disk", path);
    return RV_INVALID_PARAMETER;
  }
  return RV_OK;
}

/* Not registered yet, and every disk is this system's and still carries
 * the bitmap.  op_lock held. */
static int
check_system (struct rp_system *sys, const struct import_rec *r, char **why)
{
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint *same = rp_refpoint_find (sys, r->name);
  if (!same)
    same = rp_refpoint_find (sys, r->id);
  pthread_mutex_unlock (&sys->core->lock);
  if (same) {
    *why = rp_asprintf ("system %s already has reference point '%s'",
                        sys->name, same->name);
    return RV_INVALID_PARAMETER;
  }
  int rv = rp_backend_require (sys, why);
  for (size_t i = 0; rv == RV_OK && r->disks[i]; i++) {
    int di = rp_disk_index (sys, r->disks[i]);
    char *e = NULL;
    if (di < 0) {
      *why = rp_asprintf ("disk %s of the reference point is not a disk of "
                          "system %s", r->disks[i], sys->name);
      return RV_INVALID_PARAMETER;
    }
    int has = rp_backend_has_tracking (sys, (size_t) di, r->bitmap, &e);
    if (has < 0) {
      *why = e;
      return RV_NOT_AVAILABLE;
    }
    if (has == 0) {
      *why = rp_asprintf ("disk %s no longer carries the change tracking of "
                          "'%s' (bitmap %s is %s)", r->disks[i], r->name,
                          r->bitmap, e);
      free (e);
      return RV_INVALID_STATE;
    }
  }
  return rv;
}

/* The reference point R describes, RCT based, for JOB. */
static struct rp_refpoint *
new_refpoint (struct rp_system *sys, const struct import_rec *r,
              const struct rp_kv *kv, struct rp_job *job)
{
  struct rp_refpoint *rp = rp_calloc (1, sizeof *rp);
  rp->sys = sys;
  rp->refs = 1;
  rp->name = rp_strdup (r->name);
  memcpy (rp->instance_id, r->id, 37);
  rp->bitmap = rp_strdup (r->bitmap);
  rp->seq = rp_bitmap_seq (r->bitmap);
  rp->type = 2;                 /* RCT based: no data comes back */
  rp->consistency = atoi (rp_kv_get (kv, "ConsistencyLevel") ?: "2") == 1
                    ? 1 : 2;
  rp->created = r->created;
  rp->disk_ids = rp_calloc (1, sizeof (char *));
  for (size_t i = 0; r->disks[i]; i++)
    rp->disk_ids = rp_strv_push (rp->disk_ids, r->disks[i]);
  rp->dir = rp_asprintf ("%s/rp/%s", sys->statedir, r->name);
  rp->job_id = rp_strdup (job->id);
  return rp;
}

/* Write RP's record (and the export's CFG) and list it in SYS, in the
 * order of its tracking.  op_lock held. */
static int
register_rp (struct rp_system *sys, struct rp_refpoint *rp, const char *cfg,
             size_t cfglen, struct rp_job *job, char **why)
{
  CLEANUP_FREE char *cfgpath = rp_asprintf ("%s/config", rp->dir);
  if (rp_mkdir_p (rp->dir, 0755) != 0
      || rp_write_file_atomic (cfgpath, cfg, cfglen, 0644) != 0
      || rp_refpoint_save (rp) != 0) {
    *why = rp_asprintf ("cannot write the record in %s: %s", rp->dir,
                        strerror (errno));
    rp_rm_rf (rp->dir);
    return RV_FAILED;
  }
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint **nv = realloc (sys->rps, (sys->nrps + 1) * sizeof *nv);
  if (!nv)
    abort ();
  sys->rps = nv;
  size_t k = sys->nrps;
  while (k > 0 && sys->rps[k - 1]->seq > rp->seq) {
    sys->rps[k] = sys->rps[k - 1];
    k--;
  }
  sys->rps[k] = rp;
  sys->nrps++;
  rp->refs++;
  job->rp_id = rp_strdup (rp->instance_id);
  pthread_mutex_unlock (&sys->core->lock);
  return RV_OK;
}

int
rp_import (struct rp_system *sys, const char *buf, size_t len,
           const struct rp_caller *who, struct rp_job *job,
           struct rp_refpoint **out, char **why)
{
  if (out)
    *out = NULL;
  struct rp_args *a = rp_args_parse (buf, len, why);
  if (!a)
    return RV_INVALID_PARAMETER;
  struct rp_kv *kv = NULL;
  struct rp_refpoint *rp = NULL;
  struct import_rec r = { 0 };
  CLEANUP_FREE char *cfg = NULL, *rec = NULL;
  size_t cfglen = 0, reclen = 0;
  int rv = read_inputs (sys, a, who, &cfg, &cfglen, &rec, &reclen, why);
  if (rv != RV_OK)
    goto out_unlocked;
  const char *path = a->pos[a->npos - 1];
  pthread_mutex_lock (&sys->op_lock);
  if (!(kv = rp_kv_parse (path, rec, reclen, why)))
    rv = RV_INVALID_PARAMETER;
  else if ((rv = parse_record (kv, path, &r, why)) == RV_OK)
    rv = check_system (sys, &r, why);
  if (rv == RV_OK && job) {
    rp = new_refpoint (sys, &r, kv, job);
    /* The backend's own records first (libvirt: redefine the checkpoint). */
    if ((rv = rp_backend_imported (sys, rp, why)) == RV_OK
        && (rv = register_rp (sys, rp, cfg, cfglen, job, why)) == RV_OK) {
      *out = rp;
      rp = NULL;
    }
  }
  pthread_mutex_unlock (&sys->op_lock);
 out_unlocked:
  if (rp)
    rp_refpoint_free (rp);
  free (r.disks);
  rp_kv_free (kv);
  rp_args_free (a);
  return rv;
}
