/* Adaptive pacing of an export of a running VM: see adapt.h. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "adapt.h"
#include "internal.h"
#include "qmp.h"
#include "ratelimit.h"

void
rp_adapt_init (struct rp_adapt *a)
{
  a->rate = RP_ADAPT_START;
  a->base_ns = 0;
}

uint64_t
rp_adapt_step (struct rp_adapt *a, uint64_t ops, uint64_t total_ns)
{
  uint64_t r = a->rate;
  if (ops < RP_ADAPT_MIN_OPS)
    r = r * 2;
  else {
    uint64_t lat = total_ns / ops;
    if (a->base_ns == 0 || lat < a->base_ns)
      a->base_ns = lat;
    if (lat > a->base_ns + a->base_ns / 4 + RP_ADAPT_SLACK_NS)
      r = r / 2;
    else
      r = r + r / 8;
  }
  if (r < RP_ADAPT_FLOOR)
    r = RP_ADAPT_FLOOR;
  if (r > RP_ADAPT_MAX)
    r = RP_ADAPT_MAX;
  return a->rate = r;
}

struct rp_pacer {
  struct rp_system *sys;
  struct rp_rate *rate;
  struct rp_adapt adapt;
  uint64_t ops, ns;             /* the guest's totals at the last sample */
  uint64_t lo, hi;              /* the rates it set, for the log */
  char *job_id;                 /* of the export, for the log */
  bool stop;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t thread;
};

/* The guest's requests and their summed latency, over all its devices. */
static bool
sample (struct rp_system *sys, uint64_t *ops, uint64_t *ns)
{
  pthread_mutex_lock (&sys->op_lock);
  bool ok = rp_backend_io_stats (sys, ops, ns);
  pthread_mutex_unlock (&sys->op_lock);
  return ok;
}

static void
interval (struct rp_pacer *p)
{
  uint64_t ops, ns;
  if (!sample (p->sys, &ops, &ns))
    return;                     /* QEMU gone: the export fails by itself */
  if (ops >= p->ops && ns >= p->ns) {
    uint64_t r = rp_adapt_step (&p->adapt, ops - p->ops, ns - p->ns);
    rp_rate_set (p->rate, r);
    if (r < p->lo)
      p->lo = r;
    if (r > p->hi)
      p->hi = r;
  }
  p->ops = ops;
  p->ns = ns;
}

static bool
sleep_interval (struct rp_pacer *p)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_nsec += RP_ADAPT_INTERVAL_MS * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_mutex_lock (&p->lock);
  while (!p->stop
         && pthread_cond_timedwait (&p->cond, &p->lock, &ts) != ETIMEDOUT)
    ;
  bool stop = p->stop;
  pthread_mutex_unlock (&p->lock);
  return !stop;
}

static void *
pacer_thread (void *opaque)
{
  struct rp_pacer *p = opaque;
  while (sleep_interval (p))
    interval (p);
  return NULL;
}

struct rp_pacer *
rp_pacer_start (struct rp_system *sys, struct rp_rate *rate,
                const char *job_id)
{
  struct rp_pacer *p = calloc (1, sizeof *p);
  if (!p || !(p->job_id = strdup (job_id))) {
    free (p);
    return NULL;
  }
  p->sys = sys;
  p->rate = rate;
  p->lo = p->hi = RP_ADAPT_START;
  rp_adapt_init (&p->adapt);
  pthread_mutex_init (&p->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &ca);
  pthread_condattr_destroy (&ca);
  /* The guest's own latency, before the export loads it: one interval
   * with the copy not started yet. */
  rp_rate_set (rate, RP_ADAPT_START);
  if (sample (sys, &p->ops, &p->ns) && sleep_interval (p))
    interval (p);
  if (pthread_create (&p->thread, NULL, pacer_thread, p) != 0) {
    pthread_cond_destroy (&p->cond);
    pthread_mutex_destroy (&p->lock);
    free (p->job_id);
    free (p);
    return NULL;
  }
  return p;
}

void
rp_pacer_stop (struct rp_pacer *p)
{
  if (!p)
    return;
  pthread_mutex_lock (&p->lock);
  p->stop = true;
  pthread_cond_signal (&p->cond);
  pthread_mutex_unlock (&p->lock);
  pthread_join (p->thread, NULL);
  /* What it did, so that a slow export explains itself in the log. */
  if (p->adapt.base_ns)
    fprintf (stderr, "rpfs: %s: export job %s was paced by the guest's disk "
             "latency (%" PRIu64 " us per request at best): %" PRIu64 " to %"
             PRIu64 " MiB/s\n", p->sys->name, p->job_id,
             p->adapt.base_ns / 1000, p->lo >> 20, p->hi >> 20);
  else
    fprintf (stderr, "rpfs: %s: export job %s: the guest made too few disk "
             "requests to pace by; up to %" PRIu64 " MiB/s\n", p->sys->name,
             p->job_id, p->hi >> 20);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->lock);
  free (p->job_id);
  free (p);
}
