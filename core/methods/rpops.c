/* CreateReferencePoint, DestroyReferencePoint and RemoveAssociatedData:
 * the generic part of each (name checks, the reference point object, its
 * record, the system's list), run with sys->op_lock held; what the server
 * of the disks does is the backend's (backend.h).  Each returns a
 * ReturnValue and, on failure, a description (*why, caller frees) for the
 * job record. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Above every reference point we know; the backend raises it above every
 * tracking the disks carry (some may belong to records we lost). */
static unsigned
seq_floor (struct rp_system *sys)
{
  unsigned seq = 0;
  pthread_mutex_lock (&sys->core->lock);
  for (size_t k = 0; k < sys->nrps; k++)
    if (sys->rps[k]->seq > seq)
      seq = sys->rps[k]->seq;
  pthread_mutex_unlock (&sys->core->lock);
  return seq + 1;
}

#define VM_DEFINITION_MAX (16 << 20)

static int
save_config (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  const char *src = sys->conf->vm_definition;
  size_t len = strlen (sys->conf->text);
  struct stat st;
  const char *bad = NULL;       /* a file; not a device, FIFO or directory */
  if (src && stat (src, &st) != 0)
    bad = strerror (errno);
  else if (src && !S_ISREG (st.st_mode))
    bad = "not a regular file";
  else if (src && st.st_size > VM_DEFINITION_MAX)
    bad = "larger than 16 MiB";
  if (bad) {
    *why = rp_asprintf ("cannot copy the VM definition %s (vm-definition in "
                        "%s): %s", src, sys->conf_path, bad);
    return -1;
  }
  CLEANUP_FREE char *text = src ? rp_read_file (src, &len) : NULL;
  if (src && !text) {
    *why = rp_asprintf ("cannot read the VM definition %s (vm-definition in "
                        "%s): %s", src, sys->conf_path, strerror (errno));
    return -1;
  }
  CLEANUP_FREE char *cfg = rp_asprintf ("%s/config", rp->dir);
  if (rp_write_file_atomic (cfg, text ? text : sys->conf->text, len,
                            0644) != 0) {
    *why = rp_asprintf ("%s: %s", cfg, strerror (errno));
    return -1;
  }
  return 0;
}

static int
create (struct rp_system *sys, const char *name, int type, int level,
        struct rp_job *job, struct rp_refpoint **out, char **why)
{
  CLEANUP_FREE char *note = NULL;
  int rv = RV_FAILED;
  *out = NULL;
  if (!rp_name_valid (name)) {
    *why = rp_asprintf ("'%s' is not a valid reference point name (1 to 64 "
                        "letters, digits, '_', '.', '-'; not '.' or '..')",
                        name);
    return RV_INVALID_PARAMETER;
  }
  pthread_mutex_lock (&sys->core->lock);
  bool dup = rp_refpoint_find (sys, name) != NULL;
  pthread_mutex_unlock (&sys->core->lock);
  if (dup) {
    *why = rp_asprintf ("reference point '%s' already exists", name);
    return RV_INVALID_PARAMETER;
  }
  int qrv = rp_backend_require (sys, why);
  if (qrv != RV_OK)
    return qrv;

  struct rp_refpoint *rp = rp_calloc (1, sizeof *rp);
  rp->sys = sys;
  rp->refs = 1;
  rp->name = rp_strdup (name);
  rp_uuid_new (rp->instance_id);
  rp->seq = seq_floor (sys);    /* the backend's create sets it */
  rp->type = type;
  rp->consistency = level;
  rp->created = time (NULL);
  rp->disk_ids = rp_calloc (1, sizeof (char *));
  for (size_t i = 0; i < sys->ndisks; i++)
    rp->disk_ids = rp_strv_push (rp->disk_ids, sys->disks[i].id);
  if (sys->qemu_version)
    rp->qemu_version = rp_strdup (sys->qemu_version);
  rp->dir = rp_asprintf ("%s/rp/%s", sys->statedir, name);
  rp->job_id = rp_strdup (job->id);
  rp_rm_rf (rp->dir);           /* leftovers of a creation that died */
  if (rp_mkdir_p (rp->dir, 0755) != 0) {
    *why = rp_asprintf ("%s: %s", rp->dir, strerror (errno));
    goto fail_free;
  }
  /* The exported "config": the VM's own definition when the system names
   * one, as it is now; else the system definition. */
  if (save_config (sys, rp, why) != 0)
    goto fail_dir;
  /* The one atomic step over all disks (and the freeze, if asked). */
  rv = rp_backend_create (sys, rp, &note, why);
  if (rv != RV_OK)
    goto fail_dir;
  rp->has_data = type == 1;

  if (rp_refpoint_save (rp) != 0) {
    *why = rp_asprintf ("cannot write the record in %s: %s", rp->dir,
                        strerror (errno));
    rp_backend_undo_create (sys, rp);
    rv = RV_FAILED;
    goto fail_dir;
  }

  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint **nv = realloc (sys->rps, (sys->nrps + 1) * sizeof *nv);
  if (!nv)
    abort ();
  sys->rps = nv;
  sys->rps[sys->nrps++] = rp;
  rp->refs++;
  pthread_mutex_unlock (&sys->core->lock);
  *out = rp;
  *why = note;                  /* with RV_OK: how the request was met */
  note = NULL;
  return RV_OK;

 fail_dir:
  rp_rm_rf (rp->dir);
 fail_free:
  rp_refpoint_free (rp);
  return rv;
}

static int
destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  pthread_mutex_lock (&sys->core->lock);
  bool busy = rp->busy > 0 || rp->exporting;
  pthread_mutex_unlock (&sys->core->lock);
  if (busy) {
    *why = rp_asprintf ("reference point '%s' is in use (a running job or an "
                        "open disk file)", rp->name);
    return RV_IN_USE;
  }
  int qrv = rp_backend_require (sys, why);
  if (qrv != RV_OK)
    return qrv;
  if (rp_refpoint_has_data (rp) && rp_backend_drop_data (sys, rp) != 0) {
    *why = rp_asprintf ("QEMU did not answer while the point-in-time data "
                        "of '%s' was being removed; the reference point is "
                        "kept", rp->name);
    return RV_FAILED;
  }
  int rv = rp_backend_destroy (sys, rp, why);
  if (rv != RV_OK)
    return rv;

  pthread_mutex_lock (&sys->core->lock);
  for (size_t k = 0; k < sys->nrps; k++)
    if (sys->rps[k] == rp) {
      memmove (&sys->rps[k], &sys->rps[k + 1],
               (sys->nrps - k - 1) * sizeof *sys->rps);
      sys->nrps--;
      break;
    }
  rp->destroyed = true;
  pthread_mutex_unlock (&sys->core->lock);
  rp_rm_rf (rp->dir);
  rp_refpoint_put (rp);          /* the list's reference */
  return RV_OK;
}

static int
remove_data (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  pthread_mutex_lock (&sys->core->lock);
  bool has = rp->has_data, busy = rp->busy > 0 || rp->exporting;
  pthread_mutex_unlock (&sys->core->lock);
  if (!has) {
    *why = rp_asprintf ("reference point '%s' has no associated data",
                        rp->name);
    return RV_INVALID_STATE;
  }
  if (busy) {
    *why = rp_asprintf ("reference point '%s' is in use (a running job or an "
                        "open disk file)", rp->name);
    return RV_IN_USE;
  }
  int qrv = rp_backend_require (sys, why);
  if (qrv != RV_OK)
    return qrv;
  if (rp_backend_drop_data (sys, rp) != 0) {
    *why = rp_asprintf ("QEMU did not answer while the point-in-time data "
                        "of '%s' was being removed; it is kept", rp->name);
    return RV_FAILED;
  }
  return RV_OK;
}

/* The methods: a failure that came from a QMP timeout is 32772. */
int
rp_create (struct rp_system *sys, const char *name, int type, int level,
           struct rp_job *job, struct rp_refpoint **out, char **why)
{
  return rp_backend_timeout_rv (sys, create (sys, name, type, level, job,
                                             out, why), why);
}

int
rp_destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  return rp_backend_timeout_rv (sys, destroy (sys, rp, why), why);
}

int
rp_remove_data (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  return rp_backend_timeout_rv (sys, remove_data (sys, rp, why), why);
}
