/* Hashing a disk's content over NBD and comparing it with a digest table:
 * VerifyExport's data plane (core/methods/verify.c). */
#ifndef RPFS_VERIFYIO_H
#define RPFS_VERIFYIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blockhash.h"

struct nbd_handle;

/* A read-only NBD connection to the image JSON_SPEC ("json:{...}") served
 * by a qemu-nbd that libnbd starts by socket activation and that exits
 * with the connection.  NULL with *ERR. */
struct nbd_handle *rp_verify_open_image (const char *json_spec, char **err);

/* Read the whole disk from SRC (source.h), hash each block and compare with T.
 * PROGRESS(opaque, done, total) after each chunk.  Returns 0 (all match),
 * 1 (block *BAD differs), ECANCELED, or an errno with *ERR (a read failed,
 * the size differs from the table's). */
struct rp_src;
int rp_verify_disk (struct rp_src *src, const struct rp_digests *t,
                    atomic_bool *cancel,
                    void (*progress) (void *, uint64_t, uint64_t),
                    void *opaque, uint64_t *bad, char **err);

/* A differential archive's overlay, served alone from JSON_SPEC (no
 * backing file): a block it holds must hash to TR's entry (the reference
 * point's table), a block it does not hold must be one the tables say did
 * not change since the base (TR's entry equals TB's, the base's).  Returns
 * 0, 1 with *BAD (and *ABSENT: the block is not in the overlay), ECANCELED,
 * or an errno with *ERR (an overlay whose clusters are not the tables'
 * blocks, a read that failed). */
int rp_verify_overlay (const char *json_spec, const struct rp_digests *tr,
                       const struct rp_digests *tb, atomic_bool *cancel,
                       uint64_t *bad, bool *absent, char **err);

#endif
