/* The core's lifecycle: open a store, start its QEMU processes, close. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"


void
rp_notify (struct rp_core *core, enum rp_event ev, const char *fmt, ...)
{
  if (!core->notify)
    return;
  va_list ap;
  va_start (ap, fmt);
  char *path = NULL;
  if (vasprintf (&path, fmt, ap) < 0)
    abort ();
  va_end (ap);
  core->notify (core->notify_opaque, ev, path);
  free (path);
}

void
rp_core_set_notify (struct rp_core *core, rp_notify_fn fn, void *opaque)
{
  core->notify_opaque = opaque;
  core->notify = fn;
}

static int
conf_filter (const struct dirent *e)
{
  size_t n = strlen (e->d_name);
  return n > 5 && !strcmp (e->d_name + n - 5, ".conf");
}

static void
core_free (struct rp_core *core)
{
  for (size_t i = 0; i < core->nsystems; i++)
    rp_system_free (core->systems[i]);
  free (core->systems);
  for (size_t i = 0; i < core->njobs; i++)
    rp_job_put (core->jobs[i]);
  free (core->jobs);
  if (core->lock_fd >= 0)
    close (core->lock_fd);
  pthread_mutex_destroy (&core->lock);
  free (core->store);
  free (core->mountpoint);
  free (core->mount_real);
  free (core->libvirt_uri);
  free (core);
}

struct rp_core *
rp_core_open (const char *store, const char *mountpoint, char **err)
{
  struct stat st;
  if (stat (store, &st) != 0 || !S_ISDIR (st.st_mode)) {
    *err = rp_asprintf ("%s: the store is not a directory%s%s", store,
                        errno ? ": " : "", errno ? strerror (errno) : "");
    return NULL;
  }
  CLEANUP_FREE char *lockp = NULL, *seqp = NULL, *seq = NULL, *sysdir = NULL;
  struct rp_core *core = rp_calloc (1, sizeof *core);
  pthread_mutex_init (&core->lock, NULL);
  core->lock_fd = -1;
  char real[PATH_MAX];
  core->store = rp_strdup (realpath (store, real) ? real : store);
  core->mountpoint = rp_strdup (mountpoint);
  core->mount_real = rp_strdup (realpath (mountpoint, real) ? real
                                : mountpoint);

  const char *dirs[] = { "state", "run", "log" };
  for (size_t i = 0; i < 3; i++) {
    CLEANUP_FREE char *d = rp_asprintf ("%s/%s", core->store, dirs[i]);
    if (rp_mkdir_p (d, 0755) != 0) {
      *err = rp_asprintf ("%s: %s", d, strerror (errno));
      goto fail;
    }
  }
  /* One rpfs per store: two would fight over the same images. */
  lockp = rp_asprintf ("%s/state/lock", core->store);
  core->lock_fd = open (lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (core->lock_fd < 0 || flock (core->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    *err = rp_asprintf ("%s: the store is in use by another rpfs (%s)",
                        core->store, strerror (errno));
    goto fail;
  }
  seqp = rp_asprintf ("%s/state/jobseq", core->store);
  seq = rp_read_file (seqp, NULL);
  if (seq)
    core->jobseq = strtoul (seq, NULL, 10);

  rp_export_cleanup (core);
  if (rp_store_conf_load (core, err) != 0)
    goto fail;
  sysdir = rp_asprintf ("%s/systems", core->store);
  struct dirent **list;
  int n = scandir (sysdir, &list, conf_filter, alphasort);
  if (n < 0) {
    *err = rp_asprintf ("%s: %s", sysdir, strerror (errno));
    goto fail;
  }
  int r = 0;
  for (int i = 0; i < n; i++) {
    if (r == 0) {
      CLEANUP_FREE char *path = rp_asprintf ("%s/%s", sysdir,
                                             list[i]->d_name);
      list[i]->d_name[strlen (list[i]->d_name) - 5] = 0;
      r = rp_system_load (core, path, list[i]->d_name, err);
    }
    free (list[i]);
  }
  free (list);
  if (r != 0)
    goto fail;
  return core;

 fail:
  core_free (core);
  return NULL;
}

static struct rp_system *
nth_system (struct rp_core *core, size_t i)
{
  pthread_mutex_lock (&core->lock);
  struct rp_system *sys = i < core->nsystems ? core->systems[i] : NULL;
  pthread_mutex_unlock (&core->lock);
  return sys;
}

/* Start system SYS.  A definition that does not match what it names fails
 * the mount, except for a domain rpfs.conf's "libvirt = URI" brought in
 * (it is listed and answers 32777 with the reason, as a system that cannot
 * be reached now does). */
static int
start_one (struct rp_system *sys, char **err)
{
  if (rp_backend_check (sys, err) != 0)
    return -1;
  pthread_mutex_lock (&sys->op_lock);
  int r = rp_backend_start (sys, err);
  pthread_mutex_unlock (&sys->op_lock);
  if (r == -2 || (r == -1 && sys->auto_domain)) {
    /* A VM that is not running now: listed all the same; its methods
     * answer 32777 until it is back (each call tries to attach). */
    fprintf (stderr, "rpfs: %s: %s\n", sys->name, *err);
    free (*err);
    *err = NULL;
    r = 0;
  }
  return r;
}

int
rp_core_start (struct rp_core *core, char **err)
{
  struct rp_system *sys;
  for (size_t i = 0; (sys = nth_system (core, i)) != NULL; i++)
    if (start_one (sys, err) != 0)
      return -1;
  /* The domains of "libvirt = URI": added now, started like the others;
   * later ones are added when libvirt defines them and start at first
   * use. */
  size_t from = core->nsystems;
  if (core->libvirt_uri && rp_lvstore_start (core, err) != 0)
    return -1;
  for (size_t i = from; (sys = nth_system (core, i)) != NULL; i++)
    if (start_one (sys, err) != 0)
      return -1;
  return 0;
}

void
rp_core_close (struct rp_core *core)
{
  core->closing = true;
  core->notify = NULL;
  rp_lvstore_stop (core);
  rp_jobs_terminate_all (core);
  for (size_t i = 0; i < core->nsystems; i++) {
    struct rp_system *sys = core->systems[i];
    pthread_mutex_lock (&sys->op_lock);
    rp_backend_stop (sys);
    pthread_mutex_unlock (&sys->op_lock);
  }
  core_free (core);
}
