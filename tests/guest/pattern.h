/* pattern.h — the write pattern of the test guest, shared by the guest's
 * writer (writer.c) and the host's checker (check-pattern.c) so that both
 * agree by construction.
 *
 * Disks are arrays of 4096-byte blocks.  Block 0 of disk 0 is the header;
 * blocks 1..nslots of every disk are data slots.  The writer issues writes
 * seq = 1, 2, 3, ... one at a time; write seq goes to
 *     disk pat_disk (seq) = seq % ndisks,
 *     slot pat_slot (seq) = 1 + (seq / ndisks) % nslots,
 * i.e. round-robin over the disks, wrapping over the slots, so the same
 * blocks are written again and again.
 *
 * Data block:    0  magic "RPFSPAT1"
 *                8  u32 disk index        12  u32 slot
 *               16  u64 seq
 *               24  fill: a xorshift64 stream seeded from (seq, disk, slot)
 * Header block:  0  magic "RPFSHDR1"
 *                8  u32 state (1 dirty, 2 clean)   12  u32 zero
 *               16  u64 last_seq; the rest is zero
 * All integers are little-endian.
 */
#ifndef RPFS_TEST_PATTERN_H
#define RPFS_TEST_PATTERN_H

#include <stdint.h>
#include <string.h>

#define PAT_BLOCK 4096
#define PAT_MAGIC "RPFSPAT1"
#define PAT_HDR_MAGIC "RPFSHDR1"
#define PAT_MAGIC_LEN 8
#define PAT_FILL_OFF 24
#define PAT_STATE_DIRTY 1u
#define PAT_STATE_CLEAN 2u
#define PAT_MAX_DISKS 26 /* vda..vdz */

static inline void
pat_put32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static inline void
pat_put64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static inline uint32_t
pat_get32 (const unsigned char *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline uint64_t
pat_get64 (const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* Where write number seq goes. */
static inline uint32_t
pat_disk (uint64_t seq, uint32_t ndisks)
{
  return (uint32_t) (seq % ndisks);
}

static inline uint32_t
pat_slot (uint64_t seq, uint32_t ndisks, uint32_t nslots)
{
  return 1 + (uint32_t) ((seq / ndisks) % nslots);
}

/* The last seq <= n that the writer sends to (disk, slot), or 0 when none
 * does (0 is never a write).  The writes to disk d are seq = q * ndisks + d
 * for the rounds q = 0, 1, ...; round q lands in slot 1 + q % nslots. */
static inline uint64_t
pat_expected_seq (uint32_t disk, uint32_t slot, uint64_t n, uint32_t ndisks,
                  uint32_t nslots)
{
  if (n < disk)
    return 0;
  uint64_t q = (n - disk) / ndisks;   /* the last round that reached disk */
  uint64_t want = slot - 1;           /* the rounds with q % nslots == want */
  uint64_t back = (q % nslots + nslots - want) % nslots;
  if (back > q)
    return 0;
  return (q - back) * ndisks + disk;  /* 0 for round 0 of disk 0: none */
}

/* splitmix64's finaliser: spreads (seq, disk, slot) over a 64-bit seed. */
static inline uint64_t
pat_mix (uint64_t x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The whole content of the data block of write seq to (disk, slot). */
static inline void
pat_make_block (unsigned char *b, uint64_t seq, uint32_t disk, uint32_t slot)
{
  memcpy (b, PAT_MAGIC, PAT_MAGIC_LEN);
  pat_put32 (b + 8, disk);
  pat_put32 (b + 12, slot);
  pat_put64 (b + 16, seq);
  uint64_t x = pat_mix (seq ^ pat_mix (((uint64_t) disk << 32) | slot));
  if (x == 0)
    x = 1;                      /* xorshift would stay at 0 */
  for (int off = PAT_FILL_OFF; off < PAT_BLOCK; off += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pat_put64 (b + off, x);
  }
}

/* The header block. */
static inline void
pat_make_header (unsigned char *b, uint32_t state, uint64_t last_seq)
{
  memset (b, 0, PAT_BLOCK);
  memcpy (b, PAT_HDR_MAGIC, PAT_MAGIC_LEN);
  pat_put32 (b + 8, state);
  pat_put64 (b + 16, last_seq);
}

#endif
