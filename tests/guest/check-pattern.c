/* check-pattern.c — proves that a set of raw disk images holds a
 * point-in-time cut of the test guest's write sequence (see pattern.h).
 *
 *   check-pattern [--expect-clean] [--min-seq M] NSLOTS IMG0 IMG1 [...]
 *
 * 1. Every data slot of every image is either all zero (never written) or a
 *    well-formed block of pattern.h for exactly that disk and slot, with the
 *    fill of its seq (so a torn, stale-but-patched or misplaced block is
 *    caught).
 * 2. N = the highest seq found anywhere.  Since the writer completes write
 *    seq before starting seq + 1, a consistent cut at N means: every slot
 *    holds the last seq <= N that maps to it, or zeros if none does.  Any
 *    other content is a newer, older or missing write.  This proves every
 *    image is a point-in-time image and that all were taken at one instant.
 * 3. The header (block 0 of IMG0) agrees: present once anything was
 *    written, CLEAN only with last_seq == N, DIRTY with last_seq <= N.
 *    --expect-clean also requires CLEAN (an application-consistent cut).
 * 4. --min-seq M: the cut is at seq M or later (all zero images are a valid
 *    cut too, the one before the first write; this rules it out).
 *
 * Prints "cut seq=N header=CLEAN|DIRTY|NONE last_seq=M" and one line per
 * problem; exits 0 when everything holds, 1 otherwise, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pattern.h"

#define MAX_REPORTS 20

static unsigned problems;

static void __attribute__ ((format (printf, 1, 2)))
problem (const char *fmt, ...)
{
  problems++;
  if (problems > MAX_REPORTS)
    return;
  va_list ap;
  va_start (ap, fmt);
  fputs ("check-pattern: ", stdout);
  vprintf (fmt, ap);
  fputc ('\n', stdout);
  va_end (ap);
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fputs ("check-pattern: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  exit (2);
}

static bool
all_zero (const unsigned char *b)
{
  for (int i = 0; i < PAT_BLOCK; i++)
    if (b[i])
      return false;
  return true;
}

static void
read_block (int fd, const char *name, uint64_t block, unsigned char *b)
{
  ssize_t n = pread (fd, b, PAT_BLOCK, (off_t) (block * PAT_BLOCK));
  if (n != PAT_BLOCK)
    die ("%s: cannot read block %" PRIu64 ": %s", name, block,
         n < 0 ? strerror (errno) : "short read");
}

/* The seq held by block b of (disk, slot): 0 if all zero, UINT64_MAX (and a
 * reported problem) if malformed. */
static uint64_t
decode_slot (const unsigned char *b, uint32_t disk, uint32_t slot,
             uint32_t ndisks, uint32_t nslots)
{
  static unsigned char want[PAT_BLOCK];

  if (all_zero (b))
    return 0;
  if (memcmp (b, PAT_MAGIC, PAT_MAGIC_LEN) != 0) {
    problem ("disk %" PRIu32 " slot %" PRIu32 ": bad magic (not a pattern block)",
             disk, slot);
    return UINT64_MAX;
  }
  uint32_t bdisk = pat_get32 (b + 8), bslot = pat_get32 (b + 12);
  uint64_t seq = pat_get64 (b + 16);
  if (bdisk != disk || bslot != slot) {
    problem ("disk %" PRIu32 " slot %" PRIu32 ": holds the block of disk %"
             PRIu32 " slot %" PRIu32 " (seq %" PRIu64 ")",
             disk, slot, bdisk, bslot, seq);
    return UINT64_MAX;
  }
  if (seq == 0 || pat_disk (seq, ndisks) != disk
      || pat_slot (seq, ndisks, nslots) != slot) {
    problem ("disk %" PRIu32 " slot %" PRIu32 ": seq %" PRIu64
             " does not belong here (wrong NSLOTS or disk order?)",
             disk, slot, seq);
    return UINT64_MAX;
  }
  pat_make_block (want, seq, disk, slot);
  for (int i = PAT_FILL_OFF; i < PAT_BLOCK; i++)
    if (b[i] != want[i]) {
      problem ("disk %" PRIu32 " slot %" PRIu32 ": seq %" PRIu64
               ": fill differs from byte %d on (torn or corrupted block)",
               disk, slot, seq, i);
      return UINT64_MAX;
    }
  return seq;
}

int
main (int argc, char **argv)
{
  bool expect_clean = false;
  uint64_t min_seq = 0;
  char *end;
  int a = 1;
  for (; a < argc && strncmp (argv[a], "--", 2) == 0; a++) {
    if (strcmp (argv[a], "--expect-clean") == 0)
      expect_clean = true;
    else if (strcmp (argv[a], "--min-seq") == 0 && a + 1 < argc) {
      errno = 0;
      min_seq = strtoull (argv[++a], &end, 10);
      if (errno || *end || !*argv[a])
        die ("bad --min-seq '%s'", argv[a]);
    } else
      die ("unknown option '%s'", argv[a]);
  }
  if (argc - a < 2 || argc - a - 1 > PAT_MAX_DISKS)
    die ("usage: check-pattern [--expect-clean] [--min-seq M] NSLOTS IMG0 [IMG1 ...]");
  errno = 0;
  unsigned long ns = strtoul (argv[a], &end, 10);
  if (errno || *end || ns < 1 || ns > UINT32_MAX - 1)
    die ("bad NSLOTS '%s'", argv[a]);
  uint32_t nslots = (uint32_t) ns;
  char **imgs = argv + a + 1;
  uint32_t ndisks = (uint32_t) (argc - a - 1);

  uint64_t *found = calloc ((size_t) ndisks * nslots, sizeof *found);
  if (!found)
    die ("out of memory");
  unsigned char b[PAT_BLOCK], hdr[PAT_BLOCK];
  uint64_t n = 0;

  /* Pass 1: decode every slot, find the newest seq. */
  for (uint32_t d = 0; d < ndisks; d++) {
    int fd = open (imgs[d], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      die ("%s: %s", imgs[d], strerror (errno));
    struct stat st;
    if (fstat (fd, &st) < 0)
      die ("%s: %s", imgs[d], strerror (errno));
    if ((uint64_t) st.st_size < ((uint64_t) nslots + 1) * PAT_BLOCK)
      die ("%s: %lld bytes, too small for %" PRIu32 " slots (a raw image?)",
           imgs[d], (long long) st.st_size, nslots);
    if (d == 0)
      read_block (fd, imgs[d], 0, hdr);
    for (uint32_t s = 1; s <= nslots; s++) {
      read_block (fd, imgs[d], s, b);
      uint64_t seq = decode_slot (b, d, s, ndisks, nslots);
      found[(size_t) d * nslots + (s - 1)] = seq;
      if (seq != UINT64_MAX && seq > n)
        n = seq;
    }
    close (fd);
  }

  /* Pass 2: every slot must hold exactly the cut at n. */
  for (uint32_t d = 0; d < ndisks; d++)
    for (uint32_t s = 1; s <= nslots; s++) {
      uint64_t got = found[(size_t) d * nslots + (s - 1)];
      if (got == UINT64_MAX)
        continue;               /* already reported */
      uint64_t want = pat_expected_seq (d, s, n, ndisks, nslots);
      if (got == want)
        continue;
      problem ("disk %" PRIu32 " slot %" PRIu32 ": expected seq %" PRIu64
               ", found %s%" PRIu64 " (%s write for a cut at seq %" PRIu64 ")",
               d, s, want, got ? "seq " : "nothing: ", got,
               got == 0 ? "a missing" : got < want ? "an older" : "a newer", n);
    }

  /* The header. */
  const char *state = "NONE";
  uint64_t last = 0;
  if (all_zero (hdr)) {
    if (n > 0)
      problem ("header: missing, but data slots hold writes up to seq %"
               PRIu64, n);
  } else if (memcmp (hdr, PAT_HDR_MAGIC, PAT_MAGIC_LEN) != 0) {
    problem ("header: bad magic in block 0 of %s", imgs[0]);
    state = "BAD";
  } else {
    uint32_t st = pat_get32 (hdr + 8);
    last = pat_get64 (hdr + 16);
    if (st == PAT_STATE_CLEAN) {
      state = "CLEAN";
      if (last != n)
        problem ("header: CLEAN with last_seq %" PRIu64
                 " but the data holds a cut at seq %" PRIu64, last, n);
    } else if (st == PAT_STATE_DIRTY) {
      state = "DIRTY";
      if (last > n)
        problem ("header: DIRTY with last_seq %" PRIu64
                 " newer than the data's cut at seq %" PRIu64, last, n);
    } else {
      problem ("header: unknown state %" PRIu32, st);
      state = "BAD";
    }
  }
  printf ("cut seq=%" PRIu64 " header=%s last_seq=%" PRIu64 "\n", n, state, last);
  if (expect_clean && strcmp (state, "CLEAN") != 0)
    problem ("header: %s, expected CLEAN (application-consistent cut)", state);
  if (n < min_seq)
    problem ("the cut is at seq %" PRIu64 ", expected seq %" PRIu64 " or later",
             n, min_seq);

  if (problems > MAX_REPORTS)
    printf ("check-pattern: ... and %u more problems\n", problems - MAX_REPORTS);
  if (problems) {
    printf ("check-pattern: FAIL: %u problem%s in %" PRIu32 " disks x %" PRIu32
            " slots\n", problems, problems == 1 ? "" : "s", ndisks, nslots);
    return 1;
  }
  printf ("check-pattern: ok: %" PRIu32 " disks x %" PRIu32
          " slots hold the cut at seq %" PRIu64 "\n", ndisks, nslots, n);
  return 0;
}
