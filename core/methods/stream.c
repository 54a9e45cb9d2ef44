/* Streamed exports: referencepoints/<rp>/export.tar, export.tar.gz,
 * export.tar.xz, export.tar.zst.  Each open(2) is one export job (JobType
 * 203) of the reference point's current ExportSettingData in that format,
 * with every check of ExportReferencePoint; the job thread (arcjob.c)
 * writes the archive into a bounded queue and read(2) takes it out.
 *
 *   reader                          job thread
 *   read: wait for bytes, or the    push: wait for room (woken by the
 *   end: 0 once the job is          reader, a cancel, or the reader's
 *   Completed, else an error        close), copy in
 *   close: the job is cancelled     end: wakes the reader
 *   (Terminated) unless it ended
 *
 * The queue holds at most QUEUE bytes: memory stays bounded whatever the
 * reader's pace, and a reader that stops reading stops the export.  A
 * reader never sees end of file for an export that did not complete: a
 * cut-short stream fails its last read(2), so `tar -t` of it fails too.
 * The queue lives until both sides let go (reference counted). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "arc.h"
#include "export.h"

#define QUEUE (4u << 20)

struct rp_stream {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int refs;
  char *buf;                    /* ring of QUEUE bytes */
  size_t head, len;
  bool ended;                   /* the job is over ... */
  int rv;                       /* ... with this outcome */
  bool gone;                    /* the reader closed */
  struct rp_job *job;           /* +1 ref */
};

void
rp_stream_hold (struct rp_stream *s)
{
  pthread_mutex_lock (&s->lock);
  s->refs++;
  pthread_mutex_unlock (&s->lock);
}

void
rp_stream_put (struct rp_stream *s)
{
  if (!s)
    return;
  pthread_mutex_lock (&s->lock);
  bool last = --s->refs == 0;
  pthread_mutex_unlock (&s->lock);
  if (!last)
    return;
  rp_job_put (s->job);
  pthread_mutex_destroy (&s->lock);
  pthread_cond_destroy (&s->cond);
  free (s->buf);
  free (s);
}

static void
wait_a_bit (struct rp_stream *s)
{
  struct timespec t;
  clock_gettime (CLOCK_REALTIME, &t);
  t.tv_nsec += 200 * 1000 * 1000;
  if (t.tv_nsec >= 1000000000) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000;
  }
  pthread_cond_timedwait (&s->cond, &s->lock, &t);
}

int
rp_stream_push (void *opaque, const void *buf, size_t len)
{
  struct rp_stream *s = opaque;
  const char *p = buf;
  pthread_mutex_lock (&s->lock);
  while (len > 0) {
    /* The cancel flag is polled: RequestStateChange does not know us. */
    while (s->len == QUEUE && !s->gone && !atomic_load (&s->job->cancel))
      wait_a_bit (s);
    if (s->gone || atomic_load (&s->job->cancel)) {
      pthread_mutex_unlock (&s->lock);
      return -ECANCELED;
    }
    size_t tail = (s->head + s->len) % QUEUE;
    size_t n = QUEUE - s->len;
    if (n > QUEUE - tail)
      n = QUEUE - tail;
    if (n > len)
      n = len;
    memcpy (s->buf + tail, p, n);
    s->len += n;
    p += n;
    len -= n;
    pthread_cond_broadcast (&s->cond);
  }
  pthread_mutex_unlock (&s->lock);
  return 0;
}

void
rp_stream_end (struct rp_stream *s, int rv)
{
  pthread_mutex_lock (&s->lock);
  s->ended = true;
  s->rv = rv;
  pthread_cond_broadcast (&s->cond);
  pthread_mutex_unlock (&s->lock);
}

struct rp_stream *
rp_stream_new (struct rp_job *job)
{
  struct rp_stream *s = rp_calloc (1, sizeof *s);
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->cond, NULL);
  s->refs = 1;
  s->buf = rp_calloc (1, QUEUE);
  pthread_mutex_lock (&job->core->lock);
  job->refs++;
  pthread_mutex_unlock (&job->core->lock);
  s->job = job;
  return s;
}

void
rp_stream_detach (struct rp_stream *s)
{
  pthread_mutex_lock (&s->lock);
  s->gone = true;
  pthread_cond_broadcast (&s->cond);
  pthread_mutex_unlock (&s->lock);
  rp_stream_put (s);
}

struct rp_stream *
rp_stream_open (struct rp_refpoint *rp, const char *format,
                const struct rp_caller *who, int *rv)
{
  struct rp_system *sys = rp->sys;
  int fmt = rp_format_parse (format);
  if (fmt <= RP_FMT_QCOW2) {
    *rv = RV_INVALID_PARAMETER;
    return NULL;
  }
  if (!rp_system_may_operate (sys, who)) {
    *rv = RV_ACCESS_DENIED;     /* no job record, as for methods */
    return NULL;
  }
  struct rp_job *job = rp_job_new (sys, JOB_EXPORT, who);
  struct rp_stream *s = rp_stream_new (job);
  rp_job_put (job);             /* the stream holds it */
  pthread_mutex_lock (&sys->core->lock);
  s->job->rp_id = rp_strdup (rp->instance_id);
  free (rp->job_id);
  rp->job_id = rp_strdup (s->job->id);
  pthread_mutex_unlock (&sys->core->lock);
  CLEANUP_FREE char *why = NULL;
  *rv = rp_export_stream (rp, fmt, who, s->job, s, &why);
  if (*rv == RV_JOB_STARTED) {
    s->job->rv = RV_JOB_STARTED;
    return s;
  }
  s->job->rv = *rv;
  rp_job_finish (s->job, *rv, why);
  rp_stream_put (s);
  return NULL;
}

ssize_t
rp_stream_read (struct rp_stream *s, void *buf, size_t len)
{
  pthread_mutex_lock (&s->lock);
  while (s->len == 0 && !s->ended)
    pthread_cond_wait (&s->cond, &s->lock);
  ssize_t r;
  if (s->len > 0) {
    size_t n = s->len < len ? s->len : len;
    if (n > QUEUE - s->head)
      n = QUEUE - s->head;
    memcpy (buf, s->buf + s->head, n);
    s->head = (s->head + n) % QUEUE;
    s->len -= n;
    r = (ssize_t) n;
    pthread_cond_broadcast (&s->cond);
  }
  else if (s->rv == RV_OK)
    r = 0;
  else
    r = s->rv == -1 ? -ECANCELED : -(rp_rv_errno (s->rv) ?: EIO);
  pthread_mutex_unlock (&s->lock);
  return r;
}

void
rp_stream_close (struct rp_stream *s)
{
  pthread_mutex_lock (&s->lock);
  s->gone = true;
  /* Closed before the end: the job ends Terminated. */
  if (!s->ended)
    atomic_store (&s->job->cancel, true);
  pthread_cond_broadcast (&s->cond);
  pthread_mutex_unlock (&s->lock);
  rp_stream_put (s);
}

const char *const rp_refpoint_streams[] = {
  "export.tar", "export.tar.gz", "export.tar.xz", "export.tar.zst", NULL
};
