/* Adaptive pacing of an export of a running VM ("export-rate-limit = auto",
 * the default for a system with "qmp"): the export slows down when the
 * guest's disk I/O slows down, and speeds up when it does not.
 *
 * The VM's QEMU serves the export's reads next to the guest's I/O, so the
 * guest feels an export as longer request latencies.  QEMU counts them for
 * every guest device (query-blockstats: operations and their summed time).
 * Every half second the latency of that interval is compared with the
 * lowest one seen (the first interval is taken before the copy starts, so
 * it is the guest's own): above 1.25 times that (plus 5 us for noise)
 * halves the rate, below raises it by an eighth; an interval with too few
 * guest requests to judge doubles it (a quiet guest loses nothing).  The
 * rate stays between RP_ADAPT_FLOOR, so an export always ends, and
 * RP_ADAPT_MAX, in effect no cap. */
#ifndef RPFS_ADAPT_H
#define RPFS_ADAPT_H

#include <stdbool.h>
#include <stdint.h>

#define RP_ADAPT_FLOOR (16ull << 20)
#define RP_ADAPT_START (64ull << 20)
#define RP_ADAPT_MAX (4ull << 30)
#define RP_ADAPT_INTERVAL_MS 500
#define RP_ADAPT_MIN_OPS 32     /* fewer requests in an interval: quiet */
#define RP_ADAPT_SLACK_NS 5000

struct rp_adapt {
  uint64_t rate;                /* bytes per second */
  uint64_t base_ns;             /* lowest latency per request seen; 0: none */
};

void rp_adapt_init (struct rp_adapt *a);
/* One interval: the guest made OPS requests whose latencies sum to
 * TOTAL_NS.  Returns the new rate (also in A->rate).  Pure. */
uint64_t rp_adapt_step (struct rp_adapt *a, uint64_t ops, uint64_t total_ns);

struct rp_system;
struct rp_rate;
struct rp_pacer;
/* Start a thread that samples SYS's guest devices and sets RATE; it takes
 * its first sample before returning (half a second).  NULL if it could not
 * start (the export then runs at RATE's current setting).  JOB_ID names
 * the export in the line that rp_pacer_stop writes to stderr (the log). */
struct rp_pacer *rp_pacer_start (struct rp_system *sys, struct rp_rate *rate,
                                 const char *job_id);
void rp_pacer_stop (struct rp_pacer *p);

#endif
