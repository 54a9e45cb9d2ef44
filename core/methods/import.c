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
read_archive (const struct rp_caller *who, const char *path, char **cfg,
              size_t *cfglen, char **rec, size_t *reclen, char **why)
{
  if (path[0] != '/') {
    *why = rp_asprintf ("'%s' is not an absolute path", path);
    return RV_INVALID_PARAMETER;
  }
  int fd = rp_caller_openat (who, AT_FDCWD, path, O_RDONLY | O_NOFOLLOW
                             | O_NONBLOCK | O_NOCTTY, 0);
  if (fd < 0) {
    *why = rp_asprintf ("cannot open %s: %s", path, strerror (-fd));
    return fd == -EACCES || fd == -EPERM ? RV_ACCESS_DENIED
      : RV_INVALID_PARAMETER;
  }
  struct stat st;
  int rv = RV_INVALID_PARAMETER;
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    *why = rp_asprintf ("%s is not a regular file", path);
  else if (rp_arc_read_meta (fd, path, RP_CALLER_FILE_MAX, cfg, cfglen, rec,
                             reclen, why) == 0)
    rv = RV_OK;
  close (fd);
  return rv;
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
  int rv = RV_INVALID_PARAMETER;
  struct rp_kv *kv = NULL;
  struct rp_refpoint *rp = NULL;
  CLEANUP_FREE char *cfg = NULL, *rec = NULL, *cfgpath = NULL;
  size_t cfglen = 0, reclen = 0;
  bool locked = false;
  if ((a->npos != 2 && a->npos != 1) || a->nkv) {
    *why = rp_strdup ("expected two lines: the export's config file, then "
                      "its referencepoint file (or one: an archive export)");
    goto out;
  }
  /* Read as the caller, capped, before taking any lock: a slow or hostile
   * file never holds up the system (caller.h). */
  if (a->npos == 1) {
    if ((rv = read_archive (who, a->pos[0], &cfg, &cfglen, &rec, &reclen,
                            why)) != RV_OK)
      goto out;
  }
  else if (!(cfg = rp_caller_read_file (who, a->pos[0], RP_CALLER_FILE_MAX,
                                        &cfglen, &rv, why))
           || !(rec = rp_caller_read_file (who, a->pos[1],
                                           RP_CALLER_FILE_MAX, &reclen, &rv,
                                           why)))
    goto out;
  rv = RV_INVALID_PARAMETER;
  pthread_mutex_lock (&sys->op_lock);
  locked = true;
  if (!(kv = rp_kv_parse (a->pos[1], rec, reclen, why)))
    goto out;
  const char *name = rp_kv_get (kv, "ElementName");
  const char *id = rp_kv_get (kv, "InstanceID");
  const char *bitmap = rp_kv_get (kv, "ResilientChangeTrackingIdentifier");
  const char *created = rp_kv_get (kv, "CreationTime");
  time_t t;
  if (!name || !rp_name_valid (name) || !id || !rp_uuid_valid (id) || !bitmap
      || rp_bitmap_seq (bitmap) == 0 || !created
      || rp_time_parse (created, &t) != 0) {
    *why = rp_asprintf ("%s is not a reference point file of rpfs (a "
                        "required line is missing or wrong)", a->pos[1]);
    goto out;
  }
  const char **disks = rp_kv_all (kv, "disk");
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint *same = rp_refpoint_find (sys, name);
  if (!same)
    same = rp_refpoint_find (sys, id);
  pthread_mutex_unlock (&sys->core->lock);
  if (same) {
    *why = rp_asprintf ("system %s already has reference point '%s'",
                        sys->name, same->name);
    free (disks);
    goto out;
  }
  if ((rv = rp_backend_require (sys, why)) != RV_OK) {
    free (disks);
    goto out;
  }
  rv = RV_INVALID_PARAMETER;    /* for the refusals below */
  char *e = NULL;
  for (size_t i = 0; disks && disks[i]; i++) {
    int di = rp_disk_index (sys, disks[i]);
    if (di < 0) {
      *why = rp_asprintf ("disk %s of the reference point is not a disk of "
                          "system %s", disks[i], sys->name);
      break;
    }
    int has = rp_backend_has_tracking (sys, (size_t) di, bitmap, &e);
    if (has < 0) {
      *why = e;
      rv = RV_NOT_AVAILABLE;
      break;
    }
    if (has == 0) {
      *why = rp_asprintf ("disk %s no longer carries the change tracking of "
                          "'%s' (bitmap %s is %s)", disks[i], name, bitmap,
                          e);
      free (e);
      rv = RV_INVALID_STATE;
      break;
    }
  }
  if (*why || !disks || !disks[0]) {
    if (!*why)
      *why = rp_asprintf ("%s names no disk", a->pos[1]);
    free (disks);
    goto out;
  }

  if (!job) {                   /* only checking */
    free (disks);
    rv = RV_OK;
    goto out;
  }
  rp = rp_calloc (1, sizeof *rp);
  rp->sys = sys;
  rp->refs = 1;
  rp->name = rp_strdup (name);
  memcpy (rp->instance_id, id, 37);
  rp->bitmap = rp_strdup (bitmap);
  rp->seq = rp_bitmap_seq (bitmap);
  rp->type = 2;                 /* RCT based: no data comes back */
  rp->consistency = atoi (rp_kv_get (kv, "ConsistencyLevel") ?: "2") == 1
                    ? 1 : 2;
  rp->created = t;
  rp->disk_ids = rp_calloc (1, sizeof (char *));
  for (size_t i = 0; disks[i]; i++)
    rp->disk_ids = rp_strv_push (rp->disk_ids, disks[i]);
  free (disks);
  rp->dir = rp_asprintf ("%s/rp/%s", sys->statedir, name);
  rp->job_id = rp_strdup (job->id);
  if ((rv = rp_backend_imported (sys, rp, why)) != RV_OK)
    goto out;
  cfgpath = rp_asprintf ("%s/config", rp->dir);
  if (rp_mkdir_p (rp->dir, 0755) != 0
      || rp_write_file_atomic (cfgpath, cfg, cfglen, 0644) != 0
      || rp_refpoint_save (rp) != 0) {
    *why = rp_asprintf ("cannot write the record in %s: %s", rp->dir,
                        strerror (errno));
    rp_rm_rf (rp->dir);
    rv = RV_FAILED;
    goto out;
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
  *out = rp;
  rp = NULL;
  rv = RV_OK;
 out:
  if (locked)
    pthread_mutex_unlock (&sys->op_lock);
  if (rp)
    rp_refpoint_free (rp);
  rp_kv_free (kv);
  rp_args_free (a);
  return rv;
}
