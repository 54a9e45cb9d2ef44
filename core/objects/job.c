/* CIM_ConcreteJob records: one per method call, listed under jobs/<id>/
 * until unmount.  Ids are decimal numbers that keep growing across mounts
 * (STORE/state/jobseq), so a log line naming a job is never ambiguous. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "args.h"

const char *const rp_job_props[] = {
  "InstanceID", "JobType", "JobState", "PercentComplete", "ReturnValue",
  "ErrorCode", "ErrorDescription", "Cancellable", "TimeSubmitted",
  "StartTime", "ElapsedTime", "TimeOfLastStateChange", "ExportDirectory",
  "ReferencePointId", "BaseReferencePointId", "ExportedDisks", "status",
  NULL
};

static void
save_seq (struct rp_core *core)
{
  CLEANUP_FREE char *path = rp_asprintf ("%s/state/jobseq", core->store);
  CLEANUP_FREE char *v = rp_asprintf ("%lu\n", core->jobseq);
  if (rp_write_file_atomic (path, v, strlen (v), 0644) != 0)
    fprintf (stderr, "rpfs: %s: %s\n", path, strerror (errno));
}

struct rp_job *
rp_job_new (struct rp_system *sys, int type, const struct rp_caller *who)
{
  struct rp_core *core = sys->core;
  struct rp_job *job = rp_calloc (1, sizeof *job);
  job->core = core;
  job->sys = sys;
  job->submitter = who->uid;
  job->refs = 2;                /* the list's and the caller's */
  job->type = type;
  job->state = JS_NEW;
  job->rv = RV_OK;
  rp_uuid_new (job->instance_id);
  job->submitted = job->changed = time (NULL);
  atomic_init (&job->cancel, false);

  pthread_mutex_lock (&core->lock);
  job->id = rp_asprintf ("%lu", ++core->jobseq);
  save_seq (core);
  struct rp_job **v = realloc (core->jobs, (core->njobs + 1) * sizeof *v);
  if (!v)
    abort ();
  core->jobs = v;
  core->jobs[core->njobs++] = job;
  pthread_mutex_unlock (&core->lock);
  rp_notify (core, RP_EV_CREATED, "jobs/%s", job->id);
  return job;
}

static void
notify_state (struct rp_job *job)
{
  rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/JobState", job->id);
  rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/status", job->id);
}

void
rp_job_set_state (struct rp_job *job, int state)
{
  pthread_mutex_lock (&job->core->lock);
  job->state = state;
  job->changed = time (NULL);
  if (state == JS_RUNNING) {
    job->started = job->changed;
    clock_gettime (CLOCK_MONOTONIC, &job->t0);
  }
  pthread_mutex_unlock (&job->core->lock);
  notify_state (job);
}

void
rp_job_set_percent (struct rp_job *job, int percent)
{
  bool moved;
  pthread_mutex_lock (&job->core->lock);
  moved = percent != job->percent;
  job->percent = percent;
  pthread_mutex_unlock (&job->core->lock);
  if (moved) {
    rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/PercentComplete", job->id);
    rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/status", job->id);
  }
}

void
rp_job_finish (struct rp_job *job, int rv, const char *desc)
{
  pthread_mutex_lock (&job->core->lock);
  if (!job->started) {
    job->started = time (NULL);
    clock_gettime (CLOCK_MONOTONIC, &job->t0);
  }
  clock_gettime (CLOCK_MONOTONIC, &job->t1);
  job->cancellable = false;
  if (rv == RV_OK) {
    job->state = JS_COMPLETED;
    job->percent = 100;
  }
  else if (rv == -1) {          /* cancelled */
    job->state = JS_TERMINATED;
    job->error_code = RV_OK;
  }
  else {
    job->state = JS_EXCEPTION;
    job->error_code = rv;
  }
  free (job->error_desc);
  free (job->activity);
  job->activity = NULL;
  job->error_desc = desc ? rp_strdup (desc) : NULL;
  job->changed = time (NULL);
  pthread_mutex_unlock (&job->core->lock);
  rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/PercentComplete", job->id);
  notify_state (job);
}

struct rp_job *
rp_job_get (struct rp_core *core, const char *id)
{
  struct rp_job *job = NULL;
  pthread_mutex_lock (&core->lock);
  for (size_t i = 0; i < core->njobs; i++)
    if (strcmp (core->jobs[i]->id, id) == 0) {
      job = core->jobs[i];
      job->refs++;
      break;
    }
  pthread_mutex_unlock (&core->lock);
  return job;
}

void
rp_job_free (struct rp_job *job)
{
  free (job->id);
  free (job->error_desc);
  free (job->activity);
  free (job->export_dir);
  free (job->rp_id);
  free (job->base_id);
  rp_strv_free (job->exported_disks);
  free (job);
}

void
rp_job_put (struct rp_job *job)
{
  if (!job)
    return;
  pthread_mutex_lock (&job->core->lock);
  bool last = --job->refs == 0;
  pthread_mutex_unlock (&job->core->lock);
  if (last)
    rp_job_free (job);
}

char **
rp_core_jobs (struct rp_core *core)
{
  char **v = rp_calloc (1, sizeof *v);
  pthread_mutex_lock (&core->lock);
  for (size_t i = 0; i < core->njobs; i++)
    v = rp_strv_push (v, core->jobs[i]->id);
  pthread_mutex_unlock (&core->lock);
  return v;
}

static double
elapsed (const struct rp_job *job)
{
  struct timespec now;
  if (!job->started)
    return 0;
  if (job->t1.tv_sec || job->t1.tv_nsec)
    now = job->t1;
  else
    clock_gettime (CLOCK_MONOTONIC, &now);
  return (now.tv_sec - job->t0.tv_sec) + (now.tv_nsec - job->t0.tv_nsec) / 1e9;
}

static const char *
state_name (int state)
{
  switch (state) {
  case JS_NEW: return "New";
  case JS_STARTING: return "Starting";
  case JS_RUNNING: return "Running";
  case JS_COMPLETED: return "Completed";
  case JS_TERMINATED: return "Terminated";
  case JS_EXCEPTION: return "Exception";
  default: return "Unknown";
  }
}

static char *
render_time (time_t t)
{
  char buf[21];
  if (!t)
    return rp_strdup ("\n");
  rp_time_iso (t, buf);
  return rp_asprintf ("%s\n", buf);
}

/* What a caller who may not control the job sees (access.c): no paths and
 * no descriptions, which may name other users' files; the states and
 * numbers stay, so everyone can see what runs. */
static char *
render_hidden (struct rp_job *job, const char *name)
{
  if (!strcmp (name, "ExportDirectory") || !strcmp (name, "ErrorDescription"))
    return rp_strdup ("\n");
  if (!strcmp (name, "status")) {
    if (job->state == JS_RUNNING)
      return rp_asprintf ("Running %d%%\n", job->percent);
    return rp_asprintf ("%s\n", state_name (job->state));
  }
  return NULL;
}

static char *
render_locked (struct rp_job *job, const char *name)
{
  if (!strcmp (name, "InstanceID")) return rp_asprintf ("%s\n", job->instance_id);
  if (!strcmp (name, "JobType")) return rp_asprintf ("%d\n", job->type);
  if (!strcmp (name, "JobState")) return rp_asprintf ("%d\n", job->state);
  if (!strcmp (name, "PercentComplete")) return rp_asprintf ("%d\n", job->percent);
  if (!strcmp (name, "ReturnValue")) return rp_asprintf ("%d\n", job->rv);
  if (!strcmp (name, "ErrorCode")) return rp_asprintf ("%d\n", job->error_code);
  if (!strcmp (name, "ErrorDescription"))
    return rp_asprintf ("%s\n", job->error_desc ?: "");
  if (!strcmp (name, "Cancellable"))
    return rp_strdup (job->cancellable ? "true\n" : "false\n");
  if (!strcmp (name, "TimeSubmitted")) return render_time (job->submitted);
  if (!strcmp (name, "StartTime")) return render_time (job->started);
  if (!strcmp (name, "TimeOfLastStateChange")) return render_time (job->changed);
  if (!strcmp (name, "ElapsedTime")) {
    char buf[26];
    rp_interval (elapsed (job), buf);
    return rp_asprintf ("%s\n", buf);
  }
  if (!strcmp (name, "ExportDirectory"))
    return rp_asprintf ("%s\n", job->export_dir ?: "");
  if (!strcmp (name, "ReferencePointId"))
    return rp_asprintf ("%s\n", job->rp_id ?: "");
  if (!strcmp (name, "BaseReferencePointId"))
    return rp_asprintf ("%s\n", job->base_id ?: "");
  if (!strcmp (name, "ExportedDisks"))
    return rp_strv_join (job->exported_disks, "\n");
  if (!strcmp (name, "status")) {
    if (job->state == JS_RUNNING && job->activity)
      return rp_asprintf ("Running %d%% (%s)\n", job->percent, job->activity);
    if (job->state == JS_RUNNING)
      return rp_asprintf ("Running %d%%\n", job->percent);
    if (job->state == JS_EXCEPTION)
      return rp_asprintf ("Exception: %s\n", job->error_desc ?: "");
    return rp_asprintf ("%s\n", state_name (job->state));
  }
  return NULL;
}

char *
rp_job_prop (struct rp_job *job, const char *name,
             const struct rp_caller *who)
{
  bool hide = !rp_job_may_control (job, who);
  pthread_mutex_lock (&job->core->lock);
  char *v = hide ? render_hidden (job, name) : NULL;
  if (!v)
    v = render_locked (job, name);
  pthread_mutex_unlock (&job->core->lock);
  return v;
}

int
rp_job_request_state (struct rp_job *job, const char *buf, size_t len,
                      const struct rp_caller *who)
{
  if (!rp_job_may_control (job, who))
    return RV_ACCESS_DENIED;
  char *err = NULL;
  CLEANUP_FREE char *v = rp_args_value (buf, len, 0, &err);
  if (!v) {
    free (err);
    return RV_INVALID_PARAMETER;
  }
  if (strcmp (v, "4") != 0 && strcmp (v, "Terminate") != 0) {
    /* Other CIM RequestedState values exist but jobs here only stop. */
    if (!strcmp (v, "2") || !strcmp (v, "3") || !strcmp (v, "5")
        || !strcmp (v, "6") || !strcmp (v, "7"))
      return RV_NOT_SUPPORTED;
    return RV_INVALID_PARAMETER;
  }
  int rv;
  pthread_mutex_lock (&job->core->lock);
  if (job->cancellable && (job->state == JS_RUNNING || job->state == JS_STARTING
                           || job->state == JS_NEW)) {
    atomic_store (&job->cancel, true);
    rv = RV_JOB_STARTED;
  }
  else
    rv = RV_INVALID_STATE;
  pthread_mutex_unlock (&job->core->lock);
  return rv;
}

void
rp_jobs_terminate_all (struct rp_core *core)
{
  pthread_mutex_lock (&core->lock);
  size_t n = core->njobs;
  struct rp_job **v = rp_calloc (n + 1, sizeof *v);
  for (size_t i = 0; i < n; i++) {
    v[i] = core->jobs[i];
    atomic_store (&v[i]->cancel, true);
  }
  pthread_mutex_unlock (&core->lock);
  for (size_t i = 0; i < n; i++)
    if (v[i]->has_thread) {
      pthread_join (v[i]->thread, NULL);
      v[i]->has_thread = false;
    }
  free (v);
}

/* What the running JOB does, shown in its status ("Running 42% (WHAT)");
 * takes WHAT (malloc'd). */
void
rp_job_set_activity (struct rp_job *job, char *what)
{
  pthread_mutex_lock (&job->core->lock);
  free (job->activity);
  job->activity = what;
  pthread_mutex_unlock (&job->core->lock);
  rp_notify (job->core, RP_EV_MODIFIED, "jobs/%s/status", job->id);
}
