/* Digest tables: one strong hash per fixed-size block of a disk's content
 * at a reference point (docs/design.md, "Digest tables").  This half is
 * the data plane: the table in memory, and the hashing an export's copy
 * workers do on the data they read anyway (copy.c calls the hooks).  The
 * file format and the store are core/objects/digests.c. */
#ifndef RPFS_BLOCKHASH_H
#define RPFS_BLOCKHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

struct nbd_handle;
struct rp_ops;

/* 64 KiB: qcow2's default cluster and QEMU's default bitmap granularity,
 * so a digest-based differential holds the same clusters as a bitmap-based
 * one.  Entries are SHA-256 truncated to 192 bits (24 bytes): a guest that
 * controls the data would need ~2^96 hashes for a colliding pair; a 1 TiB
 * disk needs 16 Mi entries = 384 MiB. */
#define RP_BH_BLOCK (64u << 10)
#define RP_BH_LEN 24

struct rp_digests {
  uint64_t size;                /* disk size in bytes */
  uint32_t block;               /* RP_BH_BLOCK */
  uint64_t count;               /* ceil (size / block) */
  unsigned char *v;             /* count * RP_BH_LEN */
};

/* A table for a disk of SIZE bytes, every entry the hash of zeros (the
 * content of a block nothing was written to).  Aborts on OOM. */
struct rp_digests *rp_digests_new (uint64_t size);
void rp_digests_free (struct rp_digests *t);
/* Hash of the LEN bytes at BUF into OUT (RP_BH_LEN bytes). */
void rp_bh_hash (const void *buf, size_t len, unsigned char *out);
/* Entry of block B (B < count) and the length of that block. */
static inline unsigned char *
rp_digests_at (const struct rp_digests *t, uint64_t b)
{
  return t->v + b * RP_BH_LEN;
}
uint64_t rp_digests_block_len (const struct rp_digests *t, uint64_t b);
/* Does entry B hold the hash of an all-zero block? */
bool rp_digests_is_zero (const struct rp_digests *t, uint64_t b);

/* How an export uses its table. */
enum rp_bh_mode {
  RP_BH_FULL,      /* full export: hash what is copied; the rest is zero */
  RP_BH_DIFF,      /* bitmap-based differential: start from the base's
                      table, replace the dirty blocks */
  RP_BH_DIGEST,    /* digest-based differential: hash every block, write
                      only those whose hash differs from the base's table */
};

/* One disk's hashing, shared by the copy workers: after rp_bh_align each
 * block lies in exactly one op, so each entry has one writer. */
struct rp_bh {
  enum rp_bh_mode mode;
  struct rp_digests *tab;        /* result: the table at the reference point */
  struct rp_digests *base;       /* RP_BH_DIGEST: the base's table (DIFF:
                                    it became TAB) */
  atomic_uint_fast64_t skipped;  /* RP_BH_DIGEST: bytes found unchanged */
  bool defer;                    /* RP_BH_FULL: data blocks hashed later */
};

/* Start hashing a disk of SIZE bytes.  BASE: the base's table (DIFF: the
 * starting point, DIGEST: the comparison; unused for FULL), which BH owns
 * from now on (freed even on failure).  NULL when BASE does not fit SIZE
 * (a resized disk): no table can be derived. */
struct rp_bh *rp_bh_new (enum rp_bh_mode mode, uint64_t size,
                         struct rp_digests *base);
/* A full export into a qcow2 image: the copy only tells zero blocks (not
 * written) from data, whose entries imagehash.c fills from the image.
 * false (nothing changed) for another mode. */
bool rp_bh_defer (struct rp_bh *bh);
/* Frees BH; returns its table (the caller's) if KEEP, else frees it too. */
struct rp_digests *rp_bh_end (struct rp_bh *bh, bool keep);

/* Rewrite OPS (sorted, each within one MAXLEN window; RP_BH_BLOCK divides
 * MAXLEN) so that every op starts and ends on a block boundary (or the end
 * of the disk): a block touched by a copy becomes a copy (the whole block is
 * read, so it can be hashed), a block only partly zeroed becomes a copy,
 * and in DIGEST mode the gaps become zero ops (a block that is zero now may
 * not have been at the base). */
void rp_bh_align (const struct rp_bh *bh, struct rp_ops *ops, uint64_t size,
                  uint64_t maxlen);

/* A copy worker's hook for one op [OFF, OFF+LEN): BUF holds the data read
 * (a copy op) or is NULL (a zero op).  Hashes the blocks into the table and
 * writes to DST what the mode requires (data, zeroes, or nothing for a block
 * that reads as zero in a full export or is unchanged in a digest-based
 * one), adding to *COPIED and *ZEROED.  DST NULL: only hash (the data goes
 * elsewhere, e.g. into an archive).  0, or -1 after a failed NBD write
 * (nbd_get_error says why). */
int rp_bh_apply (struct rp_bh *bh, struct nbd_handle *dst, const char *buf,
                 uint64_t off, uint64_t len, uint64_t *copied,
                 uint64_t *zeroed);

#endif
