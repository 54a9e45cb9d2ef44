/* Unit tests for core/dataplane/ratelimit.c: the export bandwidth cap's virtual clock
 * and the parser of export-rate-limit values. */
#include <check.h>
#include <stdlib.h>
#include <time.h>

#include "ratelimit.h"
#include "runner.h"

#define MS 1000000ull
#define MIB (1024ull * 1024)

START_TEST (test_no_cap)
{
  struct rp_rate r;
  rp_rate_init (&r, 0);
  for (int i = 0; i < 100; i++)
    ck_assert_uint_eq (rp_rate_reserve (&r, 5 * MS, 2 * MIB), 0);
  atomic_bool cancel = false;
  ck_assert (rp_rate_wait (&r, 2 * MIB, &cancel));
  ck_assert (rp_rate_wait (NULL, 2 * MIB, &cancel));
  cancel = true;
  ck_assert (!rp_rate_wait (NULL, 2 * MIB, &cancel));
  rp_rate_destroy (&r);
}
END_TEST

/* 100 MiB/s: 2 MiB reads get 20 ms slots, one after another. */
START_TEST (test_paced)
{
  struct rp_rate r;
  rp_rate_init (&r, 100 * MIB);
  uint64_t t = 1000 * MS;
  ck_assert_uint_eq (rp_rate_reserve (&r, t, 2 * MIB), 0);
  ck_assert_uint_eq (rp_rate_reserve (&r, t, 2 * MIB), 20 * MS);
  ck_assert_uint_eq (rp_rate_reserve (&r, t, 2 * MIB), 40 * MS);
  /* A worker arriving 30 ms later waits for the slot after the others. */
  ck_assert_uint_eq (rp_rate_reserve (&r, t + 30 * MS, 1 * MIB), 30 * MS);
  /* Over a long run the average is exactly the cap. */
  rp_rate_init (&r, 100 * MIB);
  uint64_t waited = 0;
  for (int i = 0; i < 500; i++)
    waited = rp_rate_reserve (&r, t, 2 * MIB);
  ck_assert_uint_eq (waited, 499 * 20 * MS);     /* 1000 MiB: 10 s */
  rp_rate_destroy (&r);
}
END_TEST

/* An idle period earns no credit: after a pause the next read starts at
 * once, the one after it waits its slot again. */
START_TEST (test_no_credit_after_idle)
{
  struct rp_rate r;
  rp_rate_init (&r, 100 * MIB);
  ck_assert_uint_eq (rp_rate_reserve (&r, 0, 2 * MIB), 0);
  uint64_t t = 5000 * MS;
  ck_assert_uint_eq (rp_rate_reserve (&r, t, 2 * MIB), 0);
  ck_assert_uint_eq (rp_rate_reserve (&r, t, 2 * MIB), 20 * MS);
  rp_rate_destroy (&r);
}
END_TEST

/* Odd rates and sizes: slots add up without drift or overflow. */
START_TEST (test_odd_sizes)
{
  struct rp_rate r;
  rp_rate_init (&r, 3 * MIB);                 /* 3 MiB/s */
  ck_assert_uint_eq (rp_rate_reserve (&r, 0, 1 * MIB), 0);
  ck_assert_uint_eq (rp_rate_reserve (&r, 0, 1 * MIB), 333333333);
  rp_rate_init (&r, 1 * MIB);
  /* 64 GiB at 1 MiB/s: 65536 s, no overflow */
  ck_assert_uint_eq (rp_rate_reserve (&r, 0, 64ull << 30), 0);
  ck_assert_uint_eq (rp_rate_reserve (&r, 0, 1), 65536ull * 1000 * MS);
  rp_rate_destroy (&r);
}
END_TEST

/* rp_rate_wait really waits: 4 reads of 1 MiB at 20 MiB/s take >= 150 ms,
 * and a cancel ends the wait at once with false. */
START_TEST (test_wait)
{
  struct rp_rate r;
  rp_rate_init (&r, 20 * MIB);
  atomic_bool cancel = false;
  struct timespec a, b;
  clock_gettime (CLOCK_MONOTONIC, &a);
  for (int i = 0; i < 4; i++)
    ck_assert (rp_rate_wait (&r, 1 * MIB, &cancel));
  clock_gettime (CLOCK_MONOTONIC, &b);
  uint64_t ns = (uint64_t) (b.tv_sec - a.tv_sec) * 1000 * MS
    + (uint64_t) b.tv_nsec - (uint64_t) a.tv_nsec;
  ck_assert_uint_ge (ns, 150 * MS);
  /* queue 10 s worth, then cancel: the next wait returns false */
  rp_rate_reserve (&r, 0, 200 * MIB);
  cancel = true;
  clock_gettime (CLOCK_MONOTONIC, &a);
  ck_assert (!rp_rate_wait (&r, 1 * MIB, &cancel));
  clock_gettime (CLOCK_MONOTONIC, &b);
  ck_assert_int_lt (b.tv_sec - a.tv_sec, 2);
  rp_rate_destroy (&r);
}
END_TEST

START_TEST (test_parse)
{
  static const struct { const char *s; uint64_t v; } good[] = {
    { "0", 0 }, { "1M", MIB }, { "200M", 200 * MIB }, { "200m", 200 * MIB },
    { "1G/s", 1024 * MIB }, { "2048K", 2 * MIB }, { "1048576", MIB },
    { "3T", 3ull << 40 }, { "0M", 0 },
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint64_t v = 1;
    ck_assert_msg (rp_rate_parse (good[i].s, &v), "%s", good[i].s);
    ck_assert_uint_eq (v, good[i].v);
  }
  static const char *bad[] = {
    "", "M", "-1M", " 1M", "1M ", "1.5M", "1MB", "1M/h", "1Q", "100K",
    "1048575", "99999999999999999999", "17179869184G", "0x10M", "1/s/s",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 7;
    ck_assert_msg (!rp_rate_parse (bad[i], &v), "'%s' accepted", bad[i]);
    ck_assert_uint_eq (v, 7);
  }
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("ratelimit");
  TCase *tc = tcase_create ("ratelimit");
  tcase_add_test (tc, test_no_cap);
  tcase_add_test (tc, test_paced);
  tcase_add_test (tc, test_no_credit_after_idle);
  tcase_add_test (tc, test_odd_sizes);
  tcase_add_test (tc, test_wait);
  tcase_add_test (tc, test_parse);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
