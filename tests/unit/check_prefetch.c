/* Unit tests for core/dataplane/prefetch.c, the read-ahead of point-in-time disks,
 * on a fake disk whose every 8-byte word holds its own offset. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prefetch.h"
#include "runner.h"

#define MIB (1024ull * 1024)
#define CH RP_PF_CHUNK

struct fake {
  atomic_uint calls;            /* every fetch */
  atomic_uint_fast64_t max_end; /* end of the furthest fetch */
  atomic_long fail_at;          /* fetches covering this offset fail */
  atomic_int fail_errno;
  unsigned delay_us;
};

static unsigned char
byte_at (uint64_t o)
{
  uint64_t w = o & ~7ull;
  return (unsigned char) (w >> (8 * (o & 7)));
}

static int
fake_fetch (void *opaque, void *buf, size_t len, uint64_t off)
{
  struct fake *f = opaque;
  ck_assert_uint_le (len, CH);
  atomic_fetch_add (&f->calls, 1);
  uint64_t end = off + len, m = atomic_load (&f->max_end);
  while (end > m && !atomic_compare_exchange_weak (&f->max_end, &m, end))
    ;
  if (f->delay_us) {
    struct timespec ts = { 0, (long) f->delay_us * 1000 };
    nanosleep (&ts, NULL);
  }
  long fa = atomic_load (&f->fail_at);
  if (fa >= 0 && (uint64_t) fa >= off && (uint64_t) fa < end)
    return -atomic_load (&f->fail_errno);
  for (size_t i = 0; i < len; i++)
    ((unsigned char *) buf)[i] = byte_at (off + i);
  return 0;
}

static void
fake_init (struct fake *f)
{
  memset (f, 0, sizeof *f);
  atomic_init (&f->fail_at, -1);
  atomic_init (&f->fail_errno, EIO);
}

static void
assert_content (const unsigned char *buf, size_t len, uint64_t off)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != byte_at (off + i))
      ck_abort_msg ("byte %zu of a read at %llu is wrong", i,
                    (unsigned long long) off);
}

/* A sequential reader in 128 KiB reads gets the right data, each chunk is
 * fetched once, and the threads fetched ahead. */
START_TEST (test_sequential)
{
  struct fake f;
  fake_init (&f);
  uint64_t size = 37 * MIB + 12345;
  struct rp_prefetch *p = rp_prefetch_new (size, 4, fake_fetch, &f);
  unsigned char *buf = malloc (128 * 1024);
  uint64_t off = 0;
  for (;;) {
    ssize_t r = rp_prefetch_read (p, buf, 128 * 1024, off);
    ck_assert_int_ge (r, 0);
    if (r == 0)
      break;
    assert_content (buf, (size_t) r, off);
    off += (uint64_t) r;
  }
  ck_assert_uint_eq (off, size);
  uint64_t nchunks = (size + CH - 1) / CH;
  ck_assert_uint_eq (atomic_load (&f.calls), nchunks);
  ck_assert_uint_ge (rp_prefetch_fetched (p), nchunks - 1);
  rp_prefetch_free (p);
  free (buf);
}
END_TEST

/* Reads that jump around go straight to the disk: no read-ahead. */
START_TEST (test_random)
{
  struct fake f;
  fake_init (&f);
  struct rp_prefetch *p = rp_prefetch_new (64 * MIB, 4, fake_fetch, &f);
  unsigned char buf[8192];
  uint64_t offs[] = { 5 * MIB + 3, 60 * MIB, 17, 33 * MIB - 100, 1 * MIB };
  for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
    ck_assert_int_eq (rp_prefetch_read (p, buf, sizeof buf, offs[i]),
                      sizeof buf);
    assert_content (buf, sizeof buf, offs[i]);
  }
  ck_assert_uint_eq (rp_prefetch_fetched (p), 0);
  /* a read across a chunk boundary is two fetches, still exact */
  ck_assert_int_eq (rp_prefetch_read (p, buf, sizeof buf, 2 * MIB - 100),
                    sizeof buf);
  assert_content (buf, sizeof buf, 2 * MIB - 100);
  rp_prefetch_free (p);
}
END_TEST

/* The end of the disk: a read is clipped, a read past it reads nothing. */
START_TEST (test_end)
{
  struct fake f;
  fake_init (&f);
  uint64_t size = 3 * MIB + 1000;
  struct rp_prefetch *p = rp_prefetch_new (size, 2, fake_fetch, &f);
  unsigned char *buf = malloc (CH);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, 0), CH);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, CH), CH);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, 2 * CH), CH);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, 3 * CH), 1000);
  assert_content (buf, 1000, 3 * CH);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, size), 0);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, size + 5 * MIB), 0);
  ck_assert_uint_le (atomic_load (&f.max_end), size);
  rp_prefetch_free (p);
  free (buf);
}
END_TEST

/* A hint (SEEK_HOLE) bounds the read-ahead at the hole, and makes the
 * read at its start sequential. */
START_TEST (test_hint)
{
  struct fake f;
  fake_init (&f);
  f.delay_us = 200;
  struct rp_prefetch *p = rp_prefetch_new (256 * MIB, 4, fake_fetch, &f);
  unsigned char *buf = malloc (CH);
  rp_prefetch_hint (p, 100 * MIB, 103 * MIB);
  for (uint64_t off = 100 * MIB; off < 103 * MIB; off += CH) {
    ck_assert_int_eq (rp_prefetch_read (p, buf, CH, off), CH);
    assert_content (buf, CH, off);
  }
  ck_assert_uint_ge (rp_prefetch_fetched (p), 2);
  ck_assert_uint_eq (atomic_load (&f.max_end), 103 * MIB);
  /* reading on past the hole lifts the bound */
  for (uint64_t off = 103 * MIB; off < 105 * MIB; off += CH)
    ck_assert_int_eq (rp_prefetch_read (p, buf, CH, off), CH);
  ck_assert_uint_gt (atomic_load (&f.max_end), 105 * MIB);
  rp_prefetch_free (p);
  free (buf);
}
END_TEST

/* A failed fetch reaches the reader that needs it, as its errno; data read
 * before it in the same call is returned; a later read tries again. */
START_TEST (test_error)
{
  struct fake f;
  fake_init (&f);
  atomic_store (&f.fail_at, (long) (5 * MIB + 7));
  atomic_store (&f.fail_errno, EIO);
  struct rp_prefetch *p = rp_prefetch_new (16 * MIB, 3, fake_fetch, &f);
  unsigned char *buf = malloc (2 * CH);
  uint64_t off = 0;
  ssize_t r;
  while ((r = rp_prefetch_read (p, buf, CH, off)) == CH)
    off += CH;
  ck_assert_int_eq (r, -EIO);
  ck_assert_uint_eq (off, 5 * MIB);
  /* part of a read before the bad chunk comes back as a short read */
  ck_assert_int_eq (rp_prefetch_read (p, buf, 2 * CH, 4 * MIB), CH);
  assert_content (buf, CH, 4 * MIB);
  atomic_store (&f.fail_at, -1);
  ck_assert_int_eq (rp_prefetch_read (p, buf, CH, 5 * MIB), CH);
  assert_content (buf, CH, 5 * MIB);
  rp_prefetch_free (p);
  free (buf);
}
END_TEST

/* Several readers on one disk at once, each sequential in its own region,
 * with slow fetches: every byte right, no deadlock. */
struct reader { struct rp_prefetch *p; uint64_t from, to; size_t step; };

static void *
read_region (void *opaque)
{
  struct reader *rd = opaque;
  unsigned char *buf = malloc (rd->step);
  for (uint64_t off = rd->from; off < rd->to; off += rd->step) {
    size_t n = rd->to - off < rd->step ? rd->to - off : rd->step;
    ck_assert_int_eq (rp_prefetch_read (rd->p, buf, n, off), (ssize_t) n);
    assert_content (buf, n, off);
  }
  free (buf);
  return NULL;
}

START_TEST (test_concurrent)
{
  struct fake f;
  fake_init (&f);
  f.delay_us = 100;
  struct rp_prefetch *p = rp_prefetch_new (64 * MIB, 4, fake_fetch, &f);
  struct reader rd[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    rd[i] = (struct reader) { p, (uint64_t) i * 16 * MIB + (uint64_t) i * 777,
                              (uint64_t) (i + 1) * 16 * MIB,
                              (size_t) (64 * 1024 + i * 4096) };
    ck_assert_int_eq (pthread_create (&t[i], NULL, read_region, &rd[i]), 0);
  }
  for (int i = 0; i < 4; i++)
    pthread_join (t[i], NULL);
  rp_prefetch_free (p);
}
END_TEST

/* Freeing while fetches are in flight waits for them. */
START_TEST (test_free_in_flight)
{
  struct fake f;
  fake_init (&f);
  f.delay_us = 20000;
  struct rp_prefetch *p = rp_prefetch_new (64 * MIB, 4, fake_fetch, &f);
  unsigned char buf[4096];
  ck_assert_int_eq (rp_prefetch_read (p, buf, sizeof buf, 0), sizeof buf);
  rp_prefetch_free (p);
  unsigned calls = atomic_load (&f.calls);
  struct timespec ts = { 0, 50 * 1000 * 1000 };
  nanosleep (&ts, NULL);
  ck_assert_uint_eq (atomic_load (&f.calls), calls);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("prefetch");
  TCase *tc = tcase_create ("prefetch");
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_sequential);
  tcase_add_test (tc, test_random);
  tcase_add_test (tc, test_end);
  tcase_add_test (tc, test_hint);
  tcase_add_test (tc, test_error);
  tcase_add_test (tc, test_concurrent);
  tcase_add_test (tc, test_free_in_flight);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
