/* Hashing an archive member off the job thread (memberhash.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>

#include "memberhash.h"
#include "blockhash.h"
#include "util.h"

#define QN 64                   /* pieces waiting at most */
#define ZLEN (1u << 20)

struct piece {
  const char *buf;              /* NULL: zeros */
  uint64_t off, len;
};

struct rp_mhash {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t thread;
  bool threaded, stop, sum;
  atomic_bool abandoned;        /* the hash is not wanted any more */
  struct piece q[QN];
  uint64_t posted, done;        /* tickets: pieces posted, pieces hashed */
  EVP_MD_CTX *ctx;
  struct rp_bh *bh;
  char *zeros;
};

static void
hash_piece (struct rp_mhash *h, const struct piece *p)
{
  if (atomic_load (&h->abandoned))
    return;
  if (p->buf) {
    if (h->sum)
      EVP_DigestUpdate (h->ctx, p->buf, p->len);
    uint64_t c = 0, z = 0;
    if (h->bh)                  /* no destination: only the table */
      rp_bh_apply (h->bh, NULL, p->buf, p->off, p->len, &c, &z);
    return;
  }
  for (uint64_t left = h->sum ? p->len : 0; left > 0;) {
    if (atomic_load (&h->abandoned))   /* a TiB of holes takes minutes */
      return;
    size_t n = left < ZLEN ? (size_t) left : ZLEN;
    EVP_DigestUpdate (h->ctx, h->zeros, n);
    left -= n;
  }
}

static void *
hasher (void *opaque)
{
  struct rp_mhash *h = opaque;
  pthread_mutex_lock (&h->lock);
  for (;;) {
    while (h->done == h->posted && !h->stop)
      pthread_cond_wait (&h->cond, &h->lock);
    if (h->done == h->posted)
      break;
    struct piece p = h->q[h->done % QN];
    pthread_mutex_unlock (&h->lock);
    hash_piece (h, &p);
    pthread_mutex_lock (&h->lock);
    h->done++;
    pthread_cond_broadcast (&h->cond);
  }
  pthread_mutex_unlock (&h->lock);
  return NULL;
}

struct rp_mhash *
rp_mhash_start (struct rp_bh *bh, bool sum)
{
  struct rp_mhash *h = rp_calloc (1, sizeof *h);
  h->sum = sum;
  h->ctx = EVP_MD_CTX_new ();
  if (!h->ctx || EVP_DigestInit_ex (h->ctx, EVP_sha256 (), NULL) != 1)
    abort ();
  h->bh = bh;
  /* Mapped and only ever read: the kernel's zero page, no RSS. */
  h->zeros = sum ? rp_bigbuf (ZLEN) : NULL;
  pthread_mutex_init (&h->lock, NULL);
  pthread_cond_init (&h->cond, NULL);
  h->threaded = pthread_create (&h->thread, NULL, hasher, h) == 0;
  return h;
}

uint64_t
rp_mhash_data (struct rp_mhash *h, const void *buf, uint64_t off,
               uint64_t len)
{
  struct piece p = { buf, off, len };
  if (!h->threaded) {
    hash_piece (h, &p);
    return ++h->posted;
  }
  pthread_mutex_lock (&h->lock);
  while (h->posted - h->done == QN)
    pthread_cond_wait (&h->cond, &h->lock);
  h->q[h->posted % QN] = p;
  uint64_t ticket = ++h->posted;
  pthread_cond_broadcast (&h->cond);
  pthread_mutex_unlock (&h->lock);
  return ticket;
}

/* Until the piece of TICKET is done (TICKET 0: all posted), or *CANCEL
 * (if CANCEL) is set: looked at every 100 ms.  h->lock held. */
static bool
wait_locked (struct rp_mhash *h, uint64_t ticket, atomic_bool *cancel)
{
  for (;;) {
    uint64_t want = ticket ? ticket : h->posted;
    if (h->done >= want)
      return true;
    if (cancel && atomic_load (cancel))
      return false;
    if (!cancel) {
      pthread_cond_wait (&h->cond, &h->lock);
      continue;
    }
    struct timespec t;
    clock_gettime (CLOCK_REALTIME, &t);
    t.tv_nsec += 100 * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    pthread_cond_timedwait (&h->cond, &h->lock, &t);
  }
}

bool
rp_mhash_wait (struct rp_mhash *h, uint64_t ticket, atomic_bool *cancel)
{
  if (!h->threaded)
    return true;
  pthread_mutex_lock (&h->lock);
  bool done = ticket == 0 || wait_locked (h, ticket, cancel);
  pthread_mutex_unlock (&h->lock);
  return done;
}

bool
rp_mhash_wait_all (struct rp_mhash *h, atomic_bool *cancel)
{
  if (!h->threaded)
    return !atomic_load (cancel);
  pthread_mutex_lock (&h->lock);
  bool all = wait_locked (h, 0, cancel);
  pthread_mutex_unlock (&h->lock);
  return all;
}

void
rp_mhash_abandon (struct rp_mhash *h)
{
  atomic_store (&h->abandoned, true);
}

void
rp_mhash_finish (struct rp_mhash *h, char hex[65])
{
  if (h->threaded) {
    pthread_mutex_lock (&h->lock);
    h->stop = true;
    pthread_cond_broadcast (&h->cond);
    pthread_mutex_unlock (&h->lock);
    pthread_join (h->thread, NULL);
  }
  unsigned char md[32];
  unsigned n = 0;
  EVP_DigestFinal_ex (h->ctx, md, &n);
  for (unsigned i = 0; hex && i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", md[i]);
  EVP_MD_CTX_free (h->ctx);
  pthread_cond_destroy (&h->cond);
  pthread_mutex_destroy (&h->lock);
  rp_bigbuf_free (h->zeros, ZLEN);
  free (h);
}
