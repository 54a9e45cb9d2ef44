/* Method calls from the frontend.  Every call, successful or not, makes a
 * job record and leaves the caller's result line on the method file:
 * "<ReturnValue> <job-id> <description>".
 *
 * Except a caller who is no operator of the system (access.c): refused
 * with RV_ACCESS_DENIED before anything else, with no job record and no
 * result line, as the kernel refuses to open a file whose mode does not let
 * the caller write (which is also where the frontend refuses it first), so
 * that everyone else cannot fill jobs/ either. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "args.h"


/* Finish a job whose method completed (or failed) synchronously. */
static void
finish (struct rp_job *job, int rv, const char *why)
{
  job->rv = rv;
  rp_job_finish (job, rv, why);
}

static void
set_result (struct rp_core *core, struct rp_result **list, const char *method,
            const struct rp_caller *who, int rv, struct rp_job *job,
            const char *why)
{
  pthread_mutex_lock (&core->lock);
  rp_system_result_set (list, method, who->uid, rv, job->id, why);
  pthread_mutex_unlock (&core->lock);
}

static int
parse_level (const char *v, int *out)
{
  if (v && (!strcmp (v, "1") || !strcmp (v, "2"))) {
    *out = v[0] - '0';
    return 0;
  }
  return -1;
}

/* CreateReferencePoint's arguments: NAME, then optional
 * ReferencePointType=1|2 and ConsistencyLevel=1|2. */
static int
create_args (const char *buf, size_t len, char **name, int *type, int *level,
             char **why)
{
  struct rp_args *a = rp_args_parse (buf, len, why);
  if (!a)
    return RV_INVALID_PARAMETER;
  int rv = RV_INVALID_PARAMETER;
  *type = 1;
  *level = 2;
  if (a->npos != 1) {
    *why = rp_asprintf ("expected one reference point name, then optional "
                        "Key=Value lines; got %zu lines before the keys",
                        a->npos);
    goto out;
  }
  for (size_t i = 0; i < a->nkv; i++) {
    if (!strcmp (a->keys[i], "ReferencePointType")) {
      if (parse_level (a->vals[i], type) != 0) {
        *why = rp_asprintf ("ReferencePointType must be 1 (log based) or 2 "
                            "(RCT based), not '%s'", a->vals[i]);
        goto out;
      }
    }
    else if (!strcmp (a->keys[i], "ConsistencyLevel")) {
      if (parse_level (a->vals[i], level) != 0) {
        *why = rp_asprintf ("ConsistencyLevel must be 1 (application) or 2 "
                            "(crash consistent), not '%s'", a->vals[i]);
        goto out;
      }
    }
    else {
      *why = rp_asprintf ("unknown key '%s' (CreateReferencePoint takes "
                          "ReferencePointType and ConsistencyLevel)",
                          a->keys[i]);
      goto out;
    }
  }
  *name = rp_strdup (a->pos[0]);
  rv = RV_OK;
 out:
  rp_args_free (a);
  return rv;
}

static int
do_create (struct rp_system *sys, const char *name, int type, int level,
           struct rp_job *job, char **why)
{
  struct rp_refpoint *rp = NULL;
  pthread_mutex_lock (&sys->op_lock);
  int rv = rp_create (sys, name, type, level, job, &rp, why);
  pthread_mutex_unlock (&sys->op_lock);
  if (rp) {
    pthread_mutex_lock (&sys->core->lock);
    job->rp_id = rp_strdup (rp->instance_id);
    pthread_mutex_unlock (&sys->core->lock);
    rp_refpoint_put (rp);
  }
  return rv;
}

int
rp_system_call (struct rp_system *sys, const char *method, const char *buf,
                size_t len, const struct rp_caller *who)
{
  struct rp_core *core = sys->core;
  CLEANUP_FREE char *why = NULL;
  struct rp_job *job;
  int rv;

  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  if (!strcmp (method, "CreateReferencePoint")) {
    job = rp_job_new (sys, JOB_CREATE, who);
    CLEANUP_FREE char *name = NULL;
    int type, level;
    rv = create_args (buf, len, &name, &type, &level, &why);
    if (rv == RV_OK)
      rv = do_create (sys, name, type, level, job, &why);
    if (rv == RV_OK)
      rp_notify (core, RP_EV_CREATED, "%s/referencepoints/%s", sys->name,
                 name);
  }
  else if (!strcmp (method, "ImportReferencePointMetadata")) {
    job = rp_job_new (sys, JOB_IMPORT, who);
    struct rp_refpoint *rp = NULL;
    rv = rp_import (sys, buf, len, who, job, &rp, &why);
    if (rp) {
      rp_notify (core, RP_EV_CREATED, "%s/referencepoints/%s", sys->name,
                 rp->name);
      rp_refpoint_put (rp);
    }
  }
  else
    return RV_NOT_SUPPORTED;
  finish (job, rv, why);
  set_result (core, &sys->results, method, who, rv, job, why);
  rp_job_put (job);
  return rv;
}

char *
rp_system_result (struct rp_system *sys, const char *method,
                  const struct rp_caller *who)
{
  pthread_mutex_lock (&sys->core->lock);
  char *r = rp_system_result_get (sys->results, method, who->uid);
  pthread_mutex_unlock (&sys->core->lock);
  return r;
}

int
rp_system_mkdir_rp (struct rp_system *sys, const char *name,
                    const struct rp_caller *who)
{
  CLEANUP_FREE char *why = NULL;
  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  struct rp_job *job = rp_job_new (sys, JOB_CREATE, who);
  int rv = do_create (sys, name, 1, 2, job, &why);
  finish (job, rv, why);
  set_result (sys->core, &sys->results, "CreateReferencePoint", who, rv, job,
              why);
  rp_job_put (job);
  return rv;
}

int
rp_system_rmdir_rp (struct rp_system *sys, const char *name,
                    const struct rp_caller *who)
{
  CLEANUP_FREE char *why = NULL;
  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  struct rp_job *job = rp_job_new (sys, JOB_DESTROY, who);
  struct rp_refpoint *rp = rp_refpoint_get (sys, name);
  int rv;
  if (!rp) {
    why = rp_asprintf ("no reference point '%s'", name);
    rv = RV_INVALID_PARAMETER;
  }
  else {
    pthread_mutex_lock (&sys->core->lock);
    job->rp_id = rp_strdup (rp->instance_id);
    pthread_mutex_unlock (&sys->core->lock);
    pthread_mutex_lock (&sys->op_lock);
    rv = rp_destroy (sys, rp, &why);
    pthread_mutex_unlock (&sys->op_lock);
    if (rv != RV_OK) {
      pthread_mutex_lock (&sys->core->lock);
      free (rp->job_id);
      rp->job_id = rp_strdup (job->id);
      pthread_mutex_unlock (&sys->core->lock);
    }
    rp_refpoint_put (rp);
  }
  finish (job, rv, why);
  rp_job_put (job);
  return rv;
}

int
rp_refpoint_call (struct rp_refpoint *rp, const char *method, const char *buf,
                  size_t len, const struct rp_caller *who)
{
  struct rp_system *sys = rp->sys;
  CLEANUP_FREE char *why = NULL;
  struct rp_job *job;
  int rv;

  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  if (!strcmp (method, "ExportReferencePoint"))
    job = rp_job_new (sys, JOB_EXPORT, who);
  else if (!strcmp (method, "RemoveAssociatedData"))
    job = rp_job_new (sys, JOB_REMOVE_DATA, who);
  else if (!strcmp (method, "VerifyExport"))
    job = rp_job_new (sys, JOB_VERIFY, who);
  else
    return RV_NOT_SUPPORTED;

  pthread_mutex_lock (&sys->core->lock);
  job->rp_id = rp_strdup (rp->instance_id);
  free (rp->job_id);
  rp->job_id = rp_strdup (job->id);
  pthread_mutex_unlock (&sys->core->lock);

  if (job->type == JOB_EXPORT || job->type == JOB_VERIFY) {
    rv = job->type == JOB_EXPORT
      ? rp_export_start (rp, buf, len, who, job, &why)
      : rp_verify_start (rp, buf, len, who, job, &why);
    if (rv == RV_JOB_STARTED) {   /* the job thread finishes it */
      pthread_mutex_lock (&sys->core->lock);
      job->rv = rv;
      pthread_mutex_unlock (&sys->core->lock);
    }
    else
      finish (job, rv, why);
  }
  else if (len > RP_WRITE_MAX) {     /* takes any write, but not any size */
    why = rp_asprintf ("the request is larger than %d bytes", RP_WRITE_MAX);
    rv = RV_INVALID_PARAMETER;
    finish (job, rv, why);
  }
  else {
    pthread_mutex_lock (&sys->op_lock);
    rv = rp_remove_data (sys, rp, &why);
    pthread_mutex_unlock (&sys->op_lock);
    finish (job, rv, why);
  }
  pthread_mutex_lock (&sys->core->lock);
  rp_system_result_set (&rp->results, method, who->uid, rv, job->id, why);
  pthread_mutex_unlock (&sys->core->lock);
  rp_job_put (job);
  return rv;
}

char *
rp_refpoint_result (struct rp_refpoint *rp, const char *method,
                    const struct rp_caller *who)
{
  pthread_mutex_lock (&rp->sys->core->lock);
  char *r = rp_system_result_get (rp->results, method, who->uid);
  pthread_mutex_unlock (&rp->sys->core->lock);
  return r;
}

int
rp_system_check (struct rp_system *sys, const char *method, const char *buf,
                 size_t len, const struct rp_caller *who)
{
  CLEANUP_FREE char *why = NULL;
  int rv;
  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  if (!strcmp (method, "CreateReferencePoint")) {
    CLEANUP_FREE char *name = NULL;
    int type, level;
    rv = create_args (buf, len, &name, &type, &level, &why);
    if (rv == RV_OK && !rp_name_valid (name))
      rv = RV_INVALID_PARAMETER;
    /* Application consistency in a running guest needs a way to freeze
     * it (a VM's guest agent). */
    if (rv == RV_OK && level == 1 && !rp_backend_app_consistency (sys))
      rv = RV_NOT_SUPPORTED;
    /* QEMU gone (a VM not running): say so in the write, not at close. */
    if (rv == RV_OK) {
      char *e = NULL;
      pthread_mutex_lock (&sys->op_lock);
      if (rp_backend_ensure (sys, &e) != 0)
        rv = RV_NOT_AVAILABLE;
      pthread_mutex_unlock (&sys->op_lock);
      free (e);
    }
    if (rv == RV_OK) {
      pthread_mutex_lock (&sys->core->lock);
      if (rp_refpoint_find (sys, name))
        rv = RV_INVALID_PARAMETER;
      pthread_mutex_unlock (&sys->core->lock);
    }
    return rv;
  }
  if (!strcmp (method, "ImportReferencePointMetadata")) {
    /* Its first line alone is a request still coming (two writes from a
     * shell): nothing to refuse yet; the call at close says if it stays
     * incomplete. */
    struct rp_args *a = rp_args_parse (buf, len, &why);
    bool partial = a && a->npos == 1 && a->nkv == 0;
    rp_args_free (a);
    /* rp_import parses again and says why itself. */
    free (why);
    why = NULL;
    if (partial)
      return RV_OK;
    rv = rp_import (sys, buf, len, who, NULL, NULL, &why);
    return rv;
  }
  return RV_NOT_SUPPORTED;
}

int
rp_refpoint_check (struct rp_refpoint *rp, const char *method,
                   const char *buf, size_t len, const struct rp_caller *who)
{
  CLEANUP_FREE char *why = NULL;
  if (!rp_system_may_operate (rp->sys, who))
    return RV_ACCESS_DENIED;
  if (!strcmp (method, "ExportReferencePoint"))
    return rp_export_start (rp, buf, len, who, NULL, &why);
  if (!strcmp (method, "VerifyExport"))
    return rp_verify_start (rp, buf, len, who, NULL, &why);
  if (!strcmp (method, "RemoveAssociatedData")) {
    pthread_mutex_lock (&rp->sys->core->lock);
    int rv = !rp->has_data ? RV_INVALID_STATE
      : rp->busy > 0 || rp->exporting ? RV_IN_USE : RV_OK;
    pthread_mutex_unlock (&rp->sys->core->lock);
    return rv;
  }
  return RV_NOT_SUPPORTED;
}
