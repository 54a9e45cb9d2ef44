/* A bandwidth cap for exports ("export-rate-limit" in a system definition):
 * a virtual clock shared by the copy workers of one export job.  Each read
 * reserves the next slot of LEN / rate seconds; the worker waits until its
 * slot starts.  So the average rate never exceeds the cap, and a worker
 * never waits longer than the reads queued ahead of it take at that rate.
 * rp_rate_reserve is pure (no clock, no lock) for the unit tests. */
#ifndef RPFS_RATELIMIT_H
#define RPFS_RATELIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct rp_rate {
  _Atomic uint64_t bytes_per_sec;  /* 0: no cap; rp_rate_set changes it */
  uint64_t next_ns;             /* when the next slot starts */
  pthread_mutex_t lock;
};

/* Reserve LEN bytes at time NOW_NS (any monotonic clock): returns how many
 * nanoseconds the caller waits before it may start, and moves the virtual
 * clock past its slot.  An idle period earns no credit: a slot never starts
 * before NOW_NS, so a burst after a pause is still paced. */
uint64_t rp_rate_reserve (struct rp_rate *r, uint64_t now_ns, uint64_t len);

void rp_rate_init (struct rp_rate *r, uint64_t bytes_per_sec);
void rp_rate_destroy (struct rp_rate *r);
/* A new rate for the reads that reserve from now on (adapt.c). */
void rp_rate_set (struct rp_rate *r, uint64_t bytes_per_sec);
/* Wait for the slot of LEN bytes (R NULL or without a cap: at once).  Wakes
 * at least every 100 ms to look at *CANCEL; false if it was set. */
bool rp_rate_wait (struct rp_rate *r, uint64_t len, atomic_bool *cancel);

/* Parse a rate: a whole number of bytes per second with an optional
 * binary suffix K, M, G or T (KiB, MiB...) and an optional "/s": "200M",
 * "1G/s", "0" (no cap).  Returns false on anything else, on overflow, and
 * on a non-zero rate below 1 MiB/s (a 2 MiB read would wait seconds). */
bool rp_rate_parse (const char *s, uint64_t *bytes_per_sec);

#endif
