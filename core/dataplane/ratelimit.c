/* The export bandwidth cap (ratelimit.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"

#define NS 1000000000ull
#define POLL_NS (100 * 1000000ull)

uint64_t
rp_rate_reserve (struct rp_rate *r, uint64_t now_ns, uint64_t len)
{
  uint64_t bps = r->bytes_per_sec;
  if (!bps)
    return 0;
  uint64_t start = r->next_ns > now_ns ? r->next_ns : now_ns;
  /* len * NS overflows only past 18 GB per request; split the product. */
  uint64_t slot = len / bps * NS + len % bps * NS / bps;
  r->next_ns = start + slot;
  return start - now_ns;
}

void
rp_rate_init (struct rp_rate *r, uint64_t bytes_per_sec)
{
  r->bytes_per_sec = bytes_per_sec;
  r->next_ns = 0;
  pthread_mutex_init (&r->lock, NULL);
}

void
rp_rate_set (struct rp_rate *r, uint64_t bytes_per_sec)
{
  pthread_mutex_lock (&r->lock);
  r->bytes_per_sec = bytes_per_sec;
  pthread_mutex_unlock (&r->lock);
}

void
rp_rate_destroy (struct rp_rate *r)
{
  pthread_mutex_destroy (&r->lock);
}

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * NS + (uint64_t) ts.tv_nsec;
}

bool
rp_rate_wait (struct rp_rate *r, uint64_t len, atomic_bool *cancel)
{
  if (!r || !r->bytes_per_sec)
    return !atomic_load (cancel);
  pthread_mutex_lock (&r->lock);
  uint64_t now = now_ns ();
  uint64_t until = now + rp_rate_reserve (r, now, len);
  pthread_mutex_unlock (&r->lock);
  while (!atomic_load (cancel) && (now = now_ns ()) < until) {
    uint64_t d = until - now < POLL_NS ? until - now : POLL_NS;
    struct timespec ts = { (time_t) (d / NS), (long) (d % NS) };
    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }
  return !atomic_load (cancel);
}

bool
rp_rate_parse (const char *s, uint64_t *bytes_per_sec)
{
  if (!isdigit ((unsigned char) s[0]))
    return false;
  errno = 0;
  char *end;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno)
    return false;
  unsigned shift = 0;
  const char *units = "KMGT";
  const char *u = *end ? strchr (units, toupper ((unsigned char) *end)) : NULL;
  if (u) {
    shift = 10 * (unsigned) (u - units + 1);
    end++;
  }
  if (strcmp (end, "") && strcmp (end, "/s"))
    return false;
  if (shift && v > (~0ull >> shift))
    return false;
  v <<= shift;
  if (v && v < (1ull << 20))
    return false;
  *bytes_per_sec = v;
  return true;
}
