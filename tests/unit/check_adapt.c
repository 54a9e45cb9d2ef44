/* The adaptive pacing of exports of running VMs (adapt.c): how the rate
 * answers the guest's request latency, interval by interval. */
#include <check.h>
#include <stdlib.h>

#include "adapt.h"
#include "runner.h"

#define US 1000ull

/* One interval of N requests of LAT_US microseconds each. */
static uint64_t
step (struct rp_adapt *a, uint64_t n, uint64_t lat_us)
{
  return rp_adapt_step (a, n, n * lat_us * US);
}

START_TEST (test_quiet_guest_full_speed)
{
  struct rp_adapt a;
  rp_adapt_init (&a);
  ck_assert_uint_eq (a.rate, RP_ADAPT_START);
  /* Too few requests to judge: the rate doubles up to the maximum. */
  ck_assert_uint_eq (step (&a, 0, 0), 2 * RP_ADAPT_START);
  ck_assert_uint_eq (step (&a, RP_ADAPT_MIN_OPS - 1, 5000), 4 * RP_ADAPT_START);
  for (int i = 0; i < 20; i++)
    step (&a, 0, 0);
  ck_assert_uint_eq (a.rate, RP_ADAPT_MAX);
  ck_assert_uint_eq (a.base_ns, 0);
}
END_TEST

START_TEST (test_latency_halves_and_floor)
{
  struct rp_adapt a;
  rp_adapt_init (&a);
  /* The first busy interval is the guest's own latency: 40 us.  Within
   * 1.25 x 40 + 5 = 55 us the rate grows by an eighth. */
  ck_assert_uint_eq (step (&a, 3000, 40), RP_ADAPT_START + RP_ADAPT_START / 8);
  ck_assert_uint_eq (a.base_ns, 40 * US);
  uint64_t r = a.rate;
  ck_assert_uint_eq (step (&a, 3000, 55), r + r / 8);
  r = a.rate;
  /* Above it: halved, never below the floor. */
  ck_assert_uint_eq (step (&a, 1000, 56), r / 2);
  for (int i = 0; i < 20; i++)
    step (&a, 1000, 200);
  ck_assert_uint_eq (a.rate, RP_ADAPT_FLOOR);
  /* The guest recovers: the rate climbs again. */
  ck_assert_uint_eq (step (&a, 3000, 42), RP_ADAPT_FLOOR + RP_ADAPT_FLOOR / 8);
  ck_assert_uint_eq (a.base_ns, 40 * US);
}
END_TEST

START_TEST (test_base_is_lowest_seen)
{
  struct rp_adapt a;
  rp_adapt_init (&a);
  /* The first interval was already loaded (80 us); a lower one later
   * becomes the base, and 80 us is then too much. */
  step (&a, 2000, 80);
  ck_assert_uint_eq (a.base_ns, 80 * US);
  step (&a, 2000, 30);
  ck_assert_uint_eq (a.base_ns, 30 * US);
  uint64_t r = a.rate;
  ck_assert_uint_eq (step (&a, 2000, 80), r / 2);
  ck_assert_uint_eq (a.base_ns, 30 * US);
}
END_TEST

START_TEST (test_no_overflow_at_max)
{
  struct rp_adapt a;
  rp_adapt_init (&a);
  a.rate = RP_ADAPT_MAX;
  ck_assert_uint_eq (step (&a, 3000, 10), RP_ADAPT_MAX);
  ck_assert_uint_eq (step (&a, 0, 0), RP_ADAPT_MAX);
  /* Huge totals (an hour of summed latency) do not wrap: 3.6 ms per
   * request is far above the 10 us base, so the rate halves. */
  ck_assert_uint_eq (rp_adapt_step (&a, 1000000, 3600ull * 1000000000ull),
                     RP_ADAPT_MAX / 2);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("adapt");
  TCase *tc = tcase_create ("core");
  tcase_add_test (tc, test_quiet_guest_full_speed);
  tcase_add_test (tc, test_latency_halves_and_floor);
  tcase_add_test (tc, test_base_is_lowest_seen);
  tcase_add_test (tc, test_no_overflow_at_max);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
