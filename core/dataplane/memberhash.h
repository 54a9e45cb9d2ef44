/* Hashing an archive member off the job thread (core/methods/arcjob.c):
 * the SHA-256 of the member's content for SHA256SUMS (holes hashed as the
 * zeros they unpack to) and, for a disk, its digest table (blockhash.h).
 * The job thread posts pieces in order and goes on building the archive;
 * one hasher thread works through them.  A posted buffer belongs to the
 * hasher until rp_mhash_wait says its ticket is done. */
#ifndef RPFS_MEMBERHASH_H
#define RPFS_MEMBERHASH_H

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
/* Wait until the piece of TICKET (and every one before it) is hashed. */
void rp_mhash_wait (struct rp_mhash *h, uint64_t ticket);
/* Wait for everything; the member's SHA-256 into HEX (if SUM; HEX may
 * be NULL otherwise).  Frees H. */
void rp_mhash_finish (struct rp_mhash *h, char hex[65]);

#endif
