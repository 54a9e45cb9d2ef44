/* writer.c — the test guest's disk writer (runs inside the guest, linked
 * statically: gcc -static -O2).
 *
 *   writer NSLOTS DEV0 DEV1 [...]
 *
 * Writes the pattern of pattern.h to the devices, forever, one synchronous
 * O_DIRECT write at a time, so the writes are totally ordered: write seq
 * completes before write seq + 1 starts.  Block 0 of DEV0 is the header:
 * DIRTY (last_seq 0) before the first data write.
 *
 * Quiesce protocol (driven by the qemu-ga fsfreeze hook):
 *   SIGUSR1  finish the write in progress, write the header CLEAN with
 *            last_seq = the last completed seq, fdatasync every device,
 *            print "rpfs-writer: quiesced seq=N", create WRITER_QUIESCED,
 *            then wait for SIGUSR2;
 *   SIGUSR2  remove WRITER_QUIESCED, write the header DIRTY (last_seq = N),
 *            print "rpfs-writer: resumed seq=N" and go on.
 * Progress on stdout (the guest's serial console): "rpfs-writer: running"
 * after the first data write, creating WRITER_RUNNING, then every ~0.5 s
 * "rpfs-writer: seq=N bytes=B rate_kib=R" (R: KiB/s since the last line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

#define WRITER_QUIESCED "/run/writer.quiesced"
#define WRITER_RUNNING "/run/writer.running"
#define PROGRESS_NS 500000000LL

static volatile sig_atomic_t want_quiesce, want_resume;

static int ndisks;
static uint32_t nslots;
static int fds[PAT_MAX_DISKS];
static const char *names[PAT_MAX_DISKS];
static unsigned char *hdr;      /* aligned header block buffer */

static void
on_usr1 (int sig)
{
  (void) sig;
  want_quiesce = 1;
}

static void
on_usr2 (int sig)
{
  (void) sig;
  want_resume = 1;
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  printf ("rpfs-writer: error: ");
  vprintf (fmt, ap);
  printf ("\n");
  va_end (ap);
  fflush (stdout);
  exit (1);
}

static void
write_block (int d, uint64_t block, const unsigned char *buf)
{
  ssize_t n;
  do
    n = pwrite (fds[d], buf, PAT_BLOCK, (off_t) (block * PAT_BLOCK));
  while (n < 0 && errno == EINTR);
  if (n != PAT_BLOCK)
    die ("write of block %" PRIu64 " to %s failed: %s", block, names[d],
         n < 0 ? strerror (errno) : "short write");
}

static void
write_header (uint32_t state, uint64_t last_seq)
{
  pat_make_header (hdr, state, last_seq);
  write_block (0, 0, hdr);
}

static void
sync_all (void)
{
  for (int d = 0; d < ndisks; d++)
    if (fdatasync (fds[d]) < 0)
      die ("fdatasync %s: %s", names[d], strerror (errno));
}

static void
touch (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    die ("create %s: %s", path, strerror (errno));
  close (fd);
}

static int64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* SIGUSR1 arrived: make the disks consistent and clean, then hold still
 * until SIGUSR2.  SIGUSR2 is blocked from before want_resume is cleared
 * until sigsuspend, so a thaw sent after WRITER_QUIESCED appears is never
 * lost; a SIGUSR1 arriving while quiesced quiesces again after the resume. */
static void
quiesce (uint64_t last_seq)
{
  sigset_t usr2, old, waitset;

  want_quiesce = 0;
  sigemptyset (&usr2);
  sigaddset (&usr2, SIGUSR2);
  sigprocmask (SIG_BLOCK, &usr2, &old);
  want_resume = 0;

  write_header (PAT_STATE_CLEAN, last_seq);
  sync_all ();
  printf ("rpfs-writer: quiesced seq=%" PRIu64 "\n", last_seq);
  fflush (stdout);
  touch (WRITER_QUIESCED);

  waitset = old;
  sigdelset (&waitset, SIGUSR2);
  while (!want_resume)
    sigsuspend (&waitset);
  sigprocmask (SIG_SETMASK, &old, NULL);

  if (unlink (WRITER_QUIESCED) < 0)
    die ("remove %s: %s", WRITER_QUIESCED, strerror (errno));
  write_header (PAT_STATE_DIRTY, last_seq);
  printf ("rpfs-writer: resumed seq=%" PRIu64 "\n", last_seq);
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  setvbuf (stdout, NULL, _IOLBF, 0);

  /* Handlers first: the freeze hook may signal as soon as we run. */
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = on_usr1;
  sigaction (SIGUSR1, &sa, NULL);
  sa.sa_handler = on_usr2;
  sigaction (SIGUSR2, &sa, NULL);

  if (argc < 3 || argc - 2 > PAT_MAX_DISKS) {
    fprintf (stderr, "usage: writer NSLOTS DEV0 [DEV1 ...] (at most %d devices)\n",
             PAT_MAX_DISKS);
    return 2;
  }
  char *end;
  errno = 0;
  unsigned long ns = strtoul (argv[1], &end, 10);
  if (errno || *end || ns < 1 || ns > UINT32_MAX - 1)
    die ("bad NSLOTS '%s'", argv[1]);
  nslots = (uint32_t) ns;
  ndisks = argc - 2;

  /* Open every device and check it holds the header and all the slots. */
  for (int d = 0; d < ndisks; d++) {
    names[d] = argv[2 + d];
    fds[d] = open (names[d], O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fds[d] < 0)
      die ("open %s: %s", names[d], strerror (errno));
    off_t size = lseek (fds[d], 0, SEEK_END);
    if (size < 0)
      die ("size of %s: %s", names[d], strerror (errno));
    if ((uint64_t) size < ((uint64_t) nslots + 1) * PAT_BLOCK)
      die ("%s holds %lld bytes, too small for %" PRIu32 " slots",
           names[d], (long long) size, nslots);
  }

  unsigned char *buf;
  if (posix_memalign ((void **) &buf, PAT_BLOCK, PAT_BLOCK)
      || posix_memalign ((void **) &hdr, PAT_BLOCK, PAT_BLOCK))
    die ("out of memory");

  write_header (PAT_STATE_DIRTY, 0);

  int64_t last_ns = now_ns ();
  uint64_t last_bytes = 0;
  for (uint64_t seq = 1;; seq++) {
    uint32_t d = pat_disk (seq, (uint32_t) ndisks);
    uint32_t s = pat_slot (seq, (uint32_t) ndisks, nslots);
    pat_make_block (buf, seq, d, s);
    write_block ((int) d, s, buf);

    if (seq == 1) {
      printf ("rpfs-writer: running\n");
      fflush (stdout);
      touch (WRITER_RUNNING);
    }
    int64_t t = now_ns ();
    if (t - last_ns >= PROGRESS_NS) {
      uint64_t bytes = seq * PAT_BLOCK;
      uint64_t rate = (bytes - last_bytes) * 1000000000ull / 1024
                      / (uint64_t) (t - last_ns);
      printf ("rpfs-writer: seq=%" PRIu64 " bytes=%" PRIu64 " rate_kib=%"
              PRIu64 "\n", seq, bytes, rate);
      fflush (stdout);
      last_ns = t;
      last_bytes = bytes;
    }
    if (want_quiesce) {
      quiesce (seq);
      /* Time spent quiesced does not count in the rate. */
      last_ns = now_ns ();
      last_bytes = seq * PAT_BLOCK;
    }
  }
}
