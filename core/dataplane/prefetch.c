/* Read-ahead for point-in-time disks (prefetch.h).
 *
 * Slots hold one chunk each: QUEUED (wanted, no thread on it yet), LOADING,
 * READY or FAILED (the fetch's errno kept for the reader who needs it).  A
 * reader that needs a chunk being fetched waits on `done`; fetch threads
 * wait on `work`.  A reader copies out of a slot without the lock, so it
 * pins the slot first; pinned, queued and loading slots are never reused.
 * Everything else is under `lock`. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "prefetch.h"

#define MAX_THREADS 8

enum slot_state { S_FREE, S_QUEUED, S_LOADING, S_READY, S_FAILED };

struct slot {
  enum slot_state st;
  uint64_t chunk;               /* index: offset / RP_PF_CHUNK */
  char *buf;                    /* RP_PF_CHUNK bytes, allocated on first use */
  int err;                      /* S_FAILED: the fetch's errno */
  unsigned pins;                /* readers copying out of buf */
  uint64_t used;                /* last use, for choosing a slot to reuse */
};

struct rp_prefetch {
  uint64_t size, nchunks;
  rp_fetch_fn fetch;
  void *opaque;
  pthread_mutex_t lock;
  pthread_cond_t work, done;
  struct slot slots[RP_PF_SLOTS];
  pthread_t th[MAX_THREADS];
  unsigned want_threads, nth;
  bool stop;
  uint64_t next_off;            /* where a sequential read would start */
  uint64_t limit;               /* no read-ahead at or past this offset */
  uint64_t tick;
  atomic_uint_fast64_t fetched;
};

static uint64_t
chunk_len (const struct rp_prefetch *p, uint64_t chunk)
{
  uint64_t off = chunk * RP_PF_CHUNK;
  return p->size - off < RP_PF_CHUNK ? p->size - off : RP_PF_CHUNK;
}

static struct slot *
find (struct rp_prefetch *p, uint64_t chunk)
{
  for (unsigned i = 0; i < RP_PF_SLOTS; i++)
    if (p->slots[i].st != S_FREE && p->slots[i].chunk == chunk)
      return &p->slots[i];
  return NULL;
}

static void *
fetcher (void *opaque)
{
  struct rp_prefetch *p = opaque;
  pthread_mutex_lock (&p->lock);
  while (!p->stop) {
    struct slot *s = NULL;
    for (unsigned i = 0; i < RP_PF_SLOTS; i++)   /* lowest chunk first */
      if (p->slots[i].st == S_QUEUED
          && (!s || p->slots[i].chunk < s->chunk))
        s = &p->slots[i];
    if (!s) {
      pthread_cond_wait (&p->work, &p->lock);
      continue;
    }
    s->st = S_LOADING;
    uint64_t chunk = s->chunk;
    pthread_mutex_unlock (&p->lock);
    int r = p->fetch (p->opaque, s->buf, chunk_len (p, chunk),
                      chunk * RP_PF_CHUNK);
    atomic_fetch_add (&p->fetched, 1);
    pthread_mutex_lock (&p->lock);
    s->st = r == 0 ? S_READY : S_FAILED;
    s->err = r == 0 ? 0 : -r;
    pthread_cond_broadcast (&p->done);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

/* A slot for CHUNK: a free one, else the least recently used READY or
 * FAILED one outside [keep_lo, keep_hi]; NULL if none.  Under lock. */
static struct slot *
claim (struct rp_prefetch *p, uint64_t chunk, uint64_t keep_lo,
       uint64_t keep_hi)
{
  struct slot *best = NULL;
  for (unsigned i = 0; i < RP_PF_SLOTS; i++) {
    struct slot *s = &p->slots[i];
    if (s->st == S_FREE) {
      best = s;
      break;
    }
    if ((s->st == S_READY || s->st == S_FAILED) && !s->pins
        && (s->chunk < keep_lo || s->chunk > keep_hi)
        && (!best || s->used < best->used))
      best = s;
  }
  if (!best)
    return NULL;
  if (!best->buf && !(best->buf = malloc (RP_PF_CHUNK)))
    return NULL;
  best->st = S_QUEUED;
  best->chunk = chunk;
  best->err = 0;
  best->used = ++p->tick;
  return best;
}

/* Start the fetch threads, once.  Under lock. */
static void
start_threads (struct rp_prefetch *p)
{
  while (p->nth < p->want_threads
         && pthread_create (&p->th[p->nth], NULL, fetcher, p) == 0)
    p->nth++;
  p->want_threads = p->nth;     /* do not try again after a failure */
}

/* Queue chunks FIRST..LAST (those not already held) and the read-ahead
 * after them.  Under lock. */
static void
queue (struct rp_prefetch *p, uint64_t first, uint64_t last)
{
  uint64_t ahead_end = last + RP_PF_AHEAD;
  if (ahead_end >= p->nchunks)
    ahead_end = p->nchunks - 1;
  if (p->limit != UINT64_MAX) {
    uint64_t lim = (p->limit + RP_PF_CHUNK - 1) / RP_PF_CHUNK;  /* excl. */
    if (lim <= last)
      ahead_end = last;
    else if (ahead_end >= lim)
      ahead_end = lim - 1;
  }
  bool any = false;
  for (uint64_t c = first; c <= ahead_end; c++) {
    if (find (p, c))
      continue;
    if (!claim (p, c, first, ahead_end))
      break;                    /* all slots busy: the rest later */
    any = true;
  }
  if (any) {
    start_threads (p);
    pthread_cond_broadcast (&p->work);
  }
}

/* Copy [off, off + len) of CHUNK into BUF from its slot, waiting for the
 * fetch if need be.  1: copied; 0: not held (fetch it directly); -errno. */
static int
copy_out (struct rp_prefetch *p, uint64_t chunk, char *buf, uint64_t off,
          size_t len)
{
  struct slot *s = find (p, chunk);
  if (!s || !p->nth)
    return 0;
  while (s->st == S_QUEUED || s->st == S_LOADING) {
    pthread_cond_wait (&p->done, &p->lock);
    if (s->chunk != chunk || s->st == S_FREE)
      return 0;
  }
  if (s->st == S_FAILED) {
    int e = s->err;
    s->st = S_FREE;             /* the next read tries again */
    return -e;
  }
  s->pins++;
  s->used = ++p->tick;
  pthread_mutex_unlock (&p->lock);
  memcpy (buf, s->buf + (off - chunk * RP_PF_CHUNK), len);
  pthread_mutex_lock (&p->lock);
  s->pins--;
  return 1;
}

ssize_t
rp_prefetch_read (struct rp_prefetch *p, void *buf, size_t len, uint64_t off)
{
  if (off >= p->size || len == 0)
    return 0;
  if (len > p->size - off)
    len = (size_t) (p->size - off);
  uint64_t first = off / RP_PF_CHUNK, last = (off + len - 1) / RP_PF_CHUNK;

  pthread_mutex_lock (&p->lock);
  bool seq = off == p->next_off;
  p->next_off = off + len;
  if (p->limit != UINT64_MAX && off >= p->limit)
    p->limit = UINT64_MAX;      /* the reader went past the hint */
  if (seq && p->want_threads)
    queue (p, first, last);

  size_t done = 0;
  ssize_t r = (ssize_t) len;
  while (done < len) {
    uint64_t at = off + done, c = at / RP_PF_CHUNK;
    size_t n = (size_t) ((c + 1) * RP_PF_CHUNK - at);
    if (n > len - done)
      n = len - done;
    int k = copy_out (p, c, (char *) buf + done, at, n);
    if (k == 0) {
      pthread_mutex_unlock (&p->lock);
      k = p->fetch (p->opaque, (char *) buf + done, n, at);
      pthread_mutex_lock (&p->lock);
      k = k == 0 ? 1 : k;
    }
    if (k < 0) {
      r = done ? (ssize_t) done : k;
      break;
    }
    done += n;
  }
  pthread_mutex_unlock (&p->lock);
  return r;
}

void
rp_prefetch_hint (struct rp_prefetch *p, uint64_t off, uint64_t end)
{
  pthread_mutex_lock (&p->lock);
  p->next_off = off;
  p->limit = end > off ? end : UINT64_MAX;
  pthread_mutex_unlock (&p->lock);
}

uint64_t
rp_prefetch_fetched (struct rp_prefetch *p)
{
  return atomic_load (&p->fetched);
}

struct rp_prefetch *
rp_prefetch_new (uint64_t size, unsigned threads, rp_fetch_fn fetch,
                 void *opaque)
{
  struct rp_prefetch *p = calloc (1, sizeof *p);
  if (!p)
    return NULL;
  p->size = size;
  p->nchunks = (size + RP_PF_CHUNK - 1) / RP_PF_CHUNK;
  p->fetch = fetch;
  p->opaque = opaque;
  p->want_threads = threads < MAX_THREADS ? threads : MAX_THREADS;
  p->limit = UINT64_MAX;
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->work, NULL);
  pthread_cond_init (&p->done, NULL);
  atomic_init (&p->fetched, 0);
  return p;
}

void
rp_prefetch_free (struct rp_prefetch *p)
{
  if (!p)
    return;
  pthread_mutex_lock (&p->lock);
  p->stop = true;
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  for (unsigned i = 0; i < p->nth; i++)
    pthread_join (p->th[i], NULL);
  for (unsigned i = 0; i < RP_PF_SLOTS; i++)
    free (p->slots[i].buf);
  pthread_cond_destroy (&p->work);
  pthread_cond_destroy (&p->done);
  pthread_mutex_destroy (&p->lock);
  free (p);
}
