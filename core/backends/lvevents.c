/* libvirt's event loop for rpfs: one thread for the whole process running
 * virEventRunDefaultImpl, registered before the first connection is opened
 * (libvirt's rule), and a lifecycle callback per domain that marks the
 * domain gone when it stops, crashes or starts.  The backend then finds it
 * not alive: a running export ends with 32777, and the next request
 * attaches again, to the shut-off domain's images or to the domain started
 * again, without a remount.
 *
 * Thread model: the callback runs in the event thread and only sets an
 * atomic flag in a struct lv_watch, which libvirt frees (free callback)
 * once the callback is deregistered and no call is in flight. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lvirt.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;
static char *init_err;

char *
rp_lv_error (void)
{
  const char *m = virGetLastErrorMessage ();
  return rp_strdup (m && *m ? m : "unknown libvirt error");
}

/* libvirt prints every error to stderr by default; rpfs reports them. */
static void
quiet (void *opaque, virErrorPtr e)
{
  (void) opaque;
  (void) e;
}

static void *
loop (void *arg)
{
  (void) arg;
  for (;;)
    if (virEventRunDefaultImpl () < 0)
      usleep (100000);
  return NULL;
}

static void
init_once (void)
{
  pthread_t t;
  if (virInitialize () < 0 || virEventRegisterDefaultImpl () < 0) {
    init_err = rp_lv_error ();
    init_rc = -1;
    return;
  }
  virSetErrorFunc (NULL, quiet);
  pthread_attr_t a;
  pthread_attr_init (&a);
  pthread_attr_setdetachstate (&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create (&t, &a, loop, NULL) != 0) {
    init_err = rp_strdup ("cannot start libvirt's event thread");
    init_rc = -1;
  }
  pthread_attr_destroy (&a);
}

int
rp_lv_init (char **err)
{
  pthread_once (&once, init_once);
  if (init_rc != 0)
    *err = rp_strdup (init_err);
  return init_rc;
}

static const char *
event_name (int event, int detail)
{
  switch (event) {
  case VIR_DOMAIN_EVENT_STOPPED:
    switch (detail) {
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: return "was destroyed";
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED: return "crashed";
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: return "shut down";
    case VIR_DOMAIN_EVENT_STOPPED_FAILED: return "failed";
    default: return "stopped";
    }
  case VIR_DOMAIN_EVENT_CRASHED: return "crashed";
  case VIR_DOMAIN_EVENT_STARTED: return "started";
  default: return NULL;
  }
}

static int
lifecycle (virConnectPtr conn, virDomainPtr dom, int event, int detail,
           void *opaque)
{
  struct lv_watch *w = opaque;
  (void) conn;
  const char *what = event_name (event, detail);
  /* Stopped: its jobs are gone.  Started: its disks are QEMU's now (a
   * shut-off domain was served from its images).  Either way the next
   * request attaches again. */
  if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED
      || event == VIR_DOMAIN_EVENT_STARTED)
    atomic_store (&w->gone, true);
  if (what)
    fprintf (stderr, "rpfs: %s: libvirt: domain %s %s%s\n", w->system,
             virDomainGetName (dom), what,
             event == VIR_DOMAIN_EVENT_STARTED
             ? " (attached again at the next request)" : "");
  return 0;
}

static void
watch_free (void *opaque)
{
  struct lv_watch *w = opaque;
  free (w->system);
  free (w);
}

int
rp_lv_watch (struct rp_system *sys, char **err)
{
  struct lv_state *s = lv_st (sys);
  struct lv_watch *w = rp_calloc (1, sizeof *w);
  w->system = rp_strdup (sys->name);
  int id = virConnectDomainEventRegisterAny (
    s->conn, s->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    VIR_DOMAIN_EVENT_CALLBACK (lifecycle), w, watch_free);
  if (id < 0) {
    *err = rp_lv_error ();
    watch_free (w);
    return -1;
  }
  s->watch = w;
  s->cb_id = id;
  /* A libvirt daemon that goes away is noticed within 15 s. */
  virConnectSetKeepAlive (s->conn, 5, 3);
  return 0;
}

void
rp_lv_unwatch (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init)
    return;
  pthread_mutex_lock (&s->cmu);   /* lv_alive reads the watch */
  if (s->watch && s->conn)
    virConnectDomainEventDeregisterAny (s->conn, s->cb_id);
  s->watch = NULL;              /* libvirt frees it */
  pthread_mutex_unlock (&s->cmu);
}
