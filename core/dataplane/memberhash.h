/* Hashing off the thread that has the data (core/methods/arcraw.c,
 * arcjob.c): the SHA-256 of an archive member's content for SHA256SUMS
 * (holes hashed as the zeros they unpack to), a disk's digest table
 * (blockhash.h), or the SHA-256 of the archive file for its sidecar.  One
 * thread posts pieces in order and goes on; one hasher thread works
 * through them.  A posted buffer belongs to the hasher until rp_mhash_wait
 * says its ticket is done. */
#ifndef RPFS_MEMBERHASH_H
#define RPFS_MEMBERHASH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rp_bh;
struct rp_mhash;

/* BH: the disk's table to fill (its blocks are whole in the pieces), or
 * NULL; SUM: compute the member's SHA-256 (else only the table: a second
 * hasher, so that the two hashes run side by side).  Aborts on OOM;
 * without a thread it hashes in rp_mhash_data. */
struct rp_mhash *rp_mhash_start (struct rp_bh *bh, bool sum);
/* LEN bytes at OFF of the member: BUF, or zeros (BUF NULL).  Returns the
 * piece's ticket. */
uint64_t rp_mhash_data (struct rp_mhash *h, const void *buf, uint64_t off,
                        uint64_t len);
/* Wait until the piece of TICKET (and every one before it) is hashed
 * (TICKET 0: none to wait for).  With CANCEL, wake every 100 ms to look
 * at it: false if it was set first. */
bool rp_mhash_wait (struct rp_mhash *h, uint64_t ticket, atomic_bool *cancel);
/* Wait for everything posted, waking every 100 ms to look at *CANCEL:
 * false if it was set first (the hash of a TiB of holes takes minutes). */
bool rp_mhash_wait_all (struct rp_mhash *h, atomic_bool *cancel);
/* The result is not wanted (the job failed or was cancelled): what is
 * posted, and will be, is skipped, a long run of zeros within a MiB. */
void rp_mhash_abandon (struct rp_mhash *h);
/* Wait for everything; the member's SHA-256 into HEX (if SUM; HEX may
 * be NULL otherwise; meaningless after rp_mhash_abandon).  Frees H. */
void rp_mhash_finish (struct rp_mhash *h, char hex[65]);

#endif
