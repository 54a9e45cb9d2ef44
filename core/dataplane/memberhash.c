/* Hashing an archive member off the job thread (memberhash.h). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

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
  struct piece q[QN];
  uint64_t posted, done;        /* tickets: pieces posted, pieces hashed */
  EVP_MD_CTX *ctx;
  struct rp_bh *bh;
  char *zeros;
};

static void
hash_piece (struct rp_mhash *h, const struct piece *p)
{
  if (p->buf) {
    if (h->sum)
      EVP_DigestUpdate (h->ctx, p->buf, p->len);
    uint64_t c = 0, z = 0;
    if (h->bh)                  /* no destination: only the table */
      rp_bh_apply (h->bh, NULL, p->buf, p->off, p->len, &c, &z);
    return;
  }
  for (uint64_t left = h->sum ? p->len : 0; left > 0;) {
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
  h->zeros = sum ? rp_calloc (1, ZLEN) : NULL;
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

void
rp_mhash_wait (struct rp_mhash *h, uint64_t ticket)
{
  if (!h->threaded)
    return;
  pthread_mutex_lock (&h->lock);
  while (h->done < ticket)
    pthread_cond_wait (&h->cond, &h->lock);
  pthread_mutex_unlock (&h->lock);
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
  free (h->zeros);
  free (h);
}
