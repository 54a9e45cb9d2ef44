/* Unit tests for core/dataplane/extent.c: work lists for exports, SEEK_DATA/SEEK_HOLE
 * and allocation from NBD block status. */
#include <check.h>
#include <stdlib.h>

#include "extent.h"
#include "runner.h"

#define K 1024ull
#define M (1024ull * 1024)
#define H RP_EXT_HOLE
#define Z RP_EXT_ZERO
#define D RP_EXT_DIRTY

/* The invariants every work list keeps. */
static void
check_invariants (const struct rp_ops *ops, uint64_t maxlen)
{
  uint64_t copy = 0, zero = 0;
  for (size_t i = 0; i < ops->n; i++) {
    const struct rp_op *o = &ops->v[i];
    ck_assert_uint_gt (o->len, 0);
    if (maxlen) {
      ck_assert_uint_le (o->len, maxlen);
      /* never crosses a multiple of maxlen */
      ck_assert_uint_eq (o->off / maxlen, (o->off + o->len - 1) / maxlen);
    }
    if (i > 0) {
      const struct rp_op *p = &ops->v[i - 1];
      ck_assert_uint_le (p->off + p->len, o->off);
      /* mergeable neighbours were merged */
      if (p->off + p->len == o->off && p->kind == o->kind && maxlen)
        ck_assert_uint_eq (o->off % maxlen, 0);
    }
    if (o->kind == RP_OP_COPY)
      copy += o->len;
    else
      zero += o->len;
  }
  ck_assert_uint_eq (copy, ops->copy_bytes);
  ck_assert_uint_eq (zero, ops->zero_bytes);
}

static void
expect_op (const struct rp_ops *ops, size_t i, uint64_t off, uint64_t len,
           enum rp_op_kind kind)
{
  ck_assert_uint_lt (i, ops->n);
  ck_assert_msg (ops->v[i].off == off && ops->v[i].len == len
                 && ops->v[i].kind == kind,
                 "op %zu is {%llu, %llu, %d}, expected {%llu, %llu, %d}", i,
                 (unsigned long long) ops->v[i].off,
                 (unsigned long long) ops->v[i].len, ops->v[i].kind,
                 (unsigned long long) off, (unsigned long long) len, kind);
}

START_TEST (test_append_merge)
{
  struct rp_extents e = { 0 };
  rp_extents_append (&e, 0, 64 * K, 0);
  rp_extents_append (&e, 64 * K, 64 * K, 0);        /* merged */
  rp_extents_append (&e, 128 * K, 0, H | Z);        /* empty: ignored */
  rp_extents_append (&e, 128 * K, 64 * K, H | Z);
  rp_extents_append (&e, 192 * K, 64 * K, Z);       /* other flags */
  rp_extents_append (&e, 512 * K, 64 * K, Z);       /* not contiguous */
  ck_assert_uint_eq (e.n, 4);
  ck_assert_uint_eq (e.v[0].len, 128 * K);
  ck_assert_uint_eq (e.v[1].off, 128 * K);
  ck_assert_uint_eq (e.v[1].flags, H | Z);
  ck_assert_uint_eq (e.v[3].off, 512 * K);

  /* Growth past the initial capacity keeps everything. */
  for (uint64_t i = 0; i < 1000; i++)
    rp_extents_append (&e, M + i * 2 * K, K, (uint32_t) (i & 1));
  ck_assert_uint_eq (e.n, 1004);
  ck_assert_uint_eq (e.v[1003].off, M + 999 * 2 * K);
  rp_extents_free (&e);
  ck_assert_ptr_null (e.v);
  ck_assert_uint_eq (e.n, 0);
}
END_TEST

/* Block status replies as a callback gets them: (length, flags) pairs. */
START_TEST (test_take)
{
  struct rp_extents e = { 0 };
  uint64_t end = 64 * K;
  uint32_t r1[] = { 64 * K, 0, 128 * K, H | Z, 64 * K, H | Z };
  uint32_t r2[] = { 32 * K, 0 };
  uint32_t r3[] = { 32 * K, 0, 64 * K };             /* a length, no flags */
  rp_extents_take (&e, &end, 64 * K, r1, 6);
  ck_assert_uint_eq (end, 320 * K);
  ck_assert_uint_eq (e.n, 2);                        /* the holes merged */
  ck_assert_uint_eq (e.v[1].off, 128 * K);
  ck_assert_uint_eq (e.v[1].len, 192 * K);
  rp_extents_take (&e, &end, 0, r2, 2);              /* does not follow on */
  ck_assert_uint_eq (end, 320 * K);
  ck_assert_uint_eq (e.n, 2);
  rp_extents_take (&e, &end, 320 * K, r3, 3);        /* odd count: last left */
  ck_assert_uint_eq (end, 352 * K);
  ck_assert_uint_eq (e.n, 3);
  ck_assert_uint_eq (e.v[2].off, 320 * K);
  rp_extents_free (&e);
}
END_TEST

START_TEST (test_full)
{
  struct rp_extents a = { 0 };
  struct rp_ops ops = { 0 };
  rp_extents_append (&a, 0, 1 * M, 0);           /* data */
  rp_extents_append (&a, 1 * M, 1 * M, H | Z);   /* hole */
  rp_extents_append (&a, 2 * M, 1 * M, Z);       /* allocated zeroes */
  rp_extents_append (&a, 3 * M, 2 * M, 0);       /* data */
  rp_extents_append (&a, 5 * M, 1 * M, H);       /* hole, content unknown */
  rp_extents_append (&a, 6 * M, 2 * M, 0);

  rp_ops_build (&ops, &a, NULL, 0, 8 * M, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 2);
  expect_op (&ops, 0, 0, 1 * M, RP_OP_COPY);
  /* data, HOLE-without-ZERO and data merge into one copy */
  expect_op (&ops, 1, 3 * M, 5 * M, RP_OP_COPY);
  ck_assert_uint_eq (ops.copy_bytes, 6 * M);
  ck_assert_uint_eq (ops.zero_bytes, 0);
  rp_ops_free (&ops);

  /* A window in the middle clips extents. */
  rp_ops_build (&ops, &a, NULL, 512 * K, 3 * M + 4 * K, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 2);
  expect_op (&ops, 0, 512 * K, 512 * K, RP_OP_COPY);
  expect_op (&ops, 1, 3 * M, 4 * K, RP_OP_COPY);
  rp_ops_free (&ops);

  /* All zero: nothing to do. */
  struct rp_extents z = { 0 };
  rp_extents_append (&z, 0, 8 * M, H | Z);
  rp_ops_build (&ops, &z, NULL, 0, 8 * M, 4 * M);
  ck_assert_uint_eq (ops.n, 0);
  ck_assert_uint_eq (ops.copy_bytes + ops.zero_bytes, 0);
  rp_ops_free (&ops);
  rp_extents_free (&z);
  rp_extents_free (&a);
}
END_TEST

START_TEST (test_maxlen)
{
  struct rp_extents a = { 0 };
  struct rp_ops ops = { 0 };
  /* 64 KiB .. 10 MiB + 64 KiB of data, maxlen 4 MiB: cut at multiples. */
  rp_extents_append (&a, 0, 64 * K, H | Z);
  rp_extents_append (&a, 64 * K, 10 * M, 0);
  rp_extents_append (&a, 10 * M + 64 * K, 2 * M, H | Z);
  rp_ops_build (&ops, &a, NULL, 0, 12 * M + 64 * K, 4 * M);
  check_invariants (&ops, 4 * M);
  ck_assert_uint_eq (ops.n, 3);
  expect_op (&ops, 0, 64 * K, 4 * M - 64 * K, RP_OP_COPY);
  expect_op (&ops, 1, 4 * M, 4 * M, RP_OP_COPY);
  expect_op (&ops, 2, 8 * M, 2 * M + 64 * K, RP_OP_COPY);
  ck_assert_uint_eq (ops.copy_bytes, 10 * M);
  rp_ops_free (&ops);

  /* Many small data extents with other flags between them merge, up to
   * maxlen, into few ops. */
  struct rp_extents b = { 0 };
  for (uint64_t i = 0; i < 256; i++)
    rp_extents_append (&b, i * 64 * K, 64 * K, (i % 3 == 0) ? H : 0);
  rp_ops_build (&ops, &b, NULL, 0, 16 * M, 1 * M);
  check_invariants (&ops, 1 * M);
  ck_assert_uint_eq (ops.n, 16);
  for (size_t i = 0; i < 16; i++)
    expect_op (&ops, i, i * M, M, RP_OP_COPY);
  rp_ops_free (&ops);

  /* A maxlen that is not a power of two. */
  rp_ops_build (&ops, &a, NULL, 0, 12 * M + 64 * K, 3 * M);
  check_invariants (&ops, 3 * M);
  ck_assert_uint_eq (ops.copy_bytes, 10 * M);
  ck_assert_uint_eq (ops.n, 4);
  expect_op (&ops, 3, 9 * M, M + 64 * K, RP_OP_COPY);
  rp_ops_free (&ops);

  rp_extents_free (&b);
  rp_extents_free (&a);
}
END_TEST

START_TEST (test_differential)
{
  struct rp_extents a = { 0 }, d = { 0 };
  struct rp_ops ops = { 0 };
  rp_extents_append (&a, 0, 2 * M, 0);
  rp_extents_append (&a, 2 * M, 2 * M, H | Z);
  rp_extents_append (&a, 4 * M, 1 * M, Z);
  rp_extents_append (&a, 5 * M, 3 * M, 0);

  rp_extents_append (&d, 0, 1 * M, 0);
  rp_extents_append (&d, 1 * M, 2 * M, D);       /* data then hole */
  rp_extents_append (&d, 3 * M, 3 * M, 0);
  rp_extents_append (&d, 6 * M, 1 * M, D);
  rp_extents_append (&d, 7 * M, 1 * M, 0);

  rp_ops_build (&ops, &a, &d, 0, 8 * M, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 3);
  expect_op (&ops, 0, 1 * M, 1 * M, RP_OP_COPY);
  expect_op (&ops, 1, 2 * M, 1 * M, RP_OP_ZERO);
  expect_op (&ops, 2, 6 * M, 1 * M, RP_OP_COPY);
  ck_assert_uint_eq (ops.copy_bytes, 2 * M);
  ck_assert_uint_eq (ops.zero_bytes, 1 * M);
  rp_ops_free (&ops);

  /* Everything dirty: zero ranges become ZERO ops, allocated-zero included,
   * and the two kinds do not merge with each other. */
  struct rp_extents all = { 0 };
  rp_extents_append (&all, 0, 8 * M, D);
  rp_ops_build (&ops, &a, &all, 0, 8 * M, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 3);
  expect_op (&ops, 0, 0, 2 * M, RP_OP_COPY);
  expect_op (&ops, 1, 2 * M, 3 * M, RP_OP_ZERO);
  expect_op (&ops, 2, 5 * M, 3 * M, RP_OP_COPY);
  ck_assert_uint_eq (ops.copy_bytes + ops.zero_bytes, 8 * M);
  rp_ops_free (&ops);

  /* Same with maxlen: the zero run is cut too. */
  rp_ops_build (&ops, &a, &all, 0, 8 * M, 2 * M);
  check_invariants (&ops, 2 * M);
  ck_assert_uint_eq (ops.n, 5);
  expect_op (&ops, 1, 2 * M, 2 * M, RP_OP_ZERO);
  expect_op (&ops, 2, 4 * M, 1 * M, RP_OP_ZERO);
  expect_op (&ops, 3, 5 * M, 1 * M, RP_OP_COPY);
  expect_op (&ops, 4, 6 * M, 2 * M, RP_OP_COPY);
  rp_ops_free (&ops);

  /* Nothing dirty: nothing to do. */
  struct rp_extents clean = { 0 };
  rp_extents_append (&clean, 0, 8 * M, 0);
  rp_ops_build (&ops, &a, &clean, 0, 8 * M, 4 * M);
  ck_assert_uint_eq (ops.n, 0);
  rp_ops_free (&ops);

  rp_extents_free (&clean);
  rp_extents_free (&all);
  rp_extents_free (&d);
  rp_extents_free (&a);
}
END_TEST

START_TEST (test_incremental)
{
  /* Built window by window (as block status comes in chunks), the list is
   * the same as built at once. */
  struct rp_extents a = { 0 };
  struct rp_ops once = { 0 }, parts = { 0 };
  rp_extents_append (&a, 0, 3 * M, 0);
  rp_extents_append (&a, 3 * M, 1 * M, H | Z);
  rp_extents_append (&a, 4 * M, 5 * M, 0);

  rp_ops_build (&once, &a, NULL, 0, 9 * M, 4 * M);
  for (uint64_t w = 0; w < 9 * M; w += 512 * K)
    rp_ops_build (&parts, &a, NULL, w, w + 512 * K, 4 * M);
  check_invariants (&parts, 4 * M);
  ck_assert_uint_eq (parts.n, once.n);
  for (size_t i = 0; i < once.n; i++)
    expect_op (&parts, i, once.v[i].off, once.v[i].len, once.v[i].kind);
  ck_assert_uint_eq (parts.copy_bytes, once.copy_bytes);
  ck_assert_uint_eq (once.n, 3);
  expect_op (&once, 0, 0, 3 * M, RP_OP_COPY);
  expect_op (&once, 1, 4 * M, 4 * M, RP_OP_COPY);
  expect_op (&once, 2, 8 * M, 1 * M, RP_OP_COPY);
  rp_ops_free (&once);
  rp_ops_free (&parts);
  rp_extents_free (&a);
}
END_TEST

START_TEST (test_gaps)
{
  /* Lists that do not cover the range: gaps in ALLOC are copied, gaps in
   * DIRTY count as dirty (copying too much is safe, too little is not). */
  struct rp_extents a = { 0 }, d = { 0 };
  struct rp_ops ops = { 0 };
  rp_extents_append (&a, 1 * M, 1 * M, H | Z);
  rp_ops_build (&ops, &a, NULL, 0, 3 * M, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 2);
  expect_op (&ops, 0, 0, 1 * M, RP_OP_COPY);
  expect_op (&ops, 1, 2 * M, 1 * M, RP_OP_COPY);
  rp_ops_free (&ops);

  rp_extents_append (&d, 0, 1 * M, 0);
  rp_ops_build (&ops, &a, &d, 0, 3 * M, 0);
  check_invariants (&ops, 0);
  ck_assert_uint_eq (ops.n, 2);
  expect_op (&ops, 0, 1 * M, 1 * M, RP_OP_ZERO);
  expect_op (&ops, 1, 2 * M, 1 * M, RP_OP_COPY);
  rp_ops_free (&ops);

  /* Empty range. */
  rp_ops_build (&ops, &a, &d, 2 * M, 2 * M, 0);
  ck_assert_uint_eq (ops.n, 0);
  rp_ops_free (&ops);
  rp_extents_free (&d);
  rp_extents_free (&a);
}
END_TEST

START_TEST (test_seek_and_allocated)
{
  struct rp_extents e = { 0 };
  rp_extents_append (&e, 0, 1 * M, H | Z);
  rp_extents_append (&e, 1 * M, 1 * M, 0);
  rp_extents_append (&e, 2 * M, 1 * M, Z);       /* allocated zeroes: data */
  rp_extents_append (&e, 3 * M, 1 * M, H | Z);
  rp_extents_append (&e, 4 * M, 1 * M, 0);

  ck_assert_uint_eq (rp_extents_next_data (&e, 0), 1 * M);
  ck_assert_uint_eq (rp_extents_next_data (&e, 1 * M + 5), 1 * M + 5);
  ck_assert_uint_eq (rp_extents_next_data (&e, 2 * M + 7), 2 * M + 7);
  ck_assert_uint_eq (rp_extents_next_data (&e, 3 * M), 4 * M);
  ck_assert_uint_eq (rp_extents_next_data (&e, 5 * M), UINT64_MAX);

  ck_assert_uint_eq (rp_extents_next_hole (&e, 0), 0);
  ck_assert_uint_eq (rp_extents_next_hole (&e, 512 * K), 512 * K);
  ck_assert_uint_eq (rp_extents_next_hole (&e, 1 * M), 3 * M);
  ck_assert_uint_eq (rp_extents_next_hole (&e, 2 * M + 1), 3 * M);
  /* no hole after the last data extent: caller answers EOF */
  ck_assert_uint_eq (rp_extents_next_hole (&e, 4 * M), UINT64_MAX);
  ck_assert_uint_eq (rp_extents_next_hole (&e, 9 * M), UINT64_MAX);

  ck_assert_uint_eq (rp_extents_allocated (&e), 3 * M);

  struct rp_extents none = { 0 };
  ck_assert_uint_eq (rp_extents_allocated (&none), 0);
  ck_assert_uint_eq (rp_extents_next_data (&none, 0), UINT64_MAX);
  ck_assert_uint_eq (rp_extents_next_hole (&none, 0), UINT64_MAX);

  /* Extents starting at an offset (a block status window). */
  struct rp_extents w = { 0 };
  rp_extents_append (&w, 8 * M, 1 * M, H);
  rp_extents_append (&w, 9 * M, 1 * M, 0);
  ck_assert_uint_eq (rp_extents_next_data (&w, 8 * M), 9 * M);
  ck_assert_uint_eq (rp_extents_next_hole (&w, 8 * M + 3), 8 * M + 3);
  ck_assert_uint_eq (rp_extents_allocated (&w), 1 * M);
  rp_extents_free (&w);
  rp_extents_free (&e);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("extent");
  TCase *tc = tcase_create ("extent");
  tcase_add_test (tc, test_append_merge);
  tcase_add_test (tc, test_take);
  tcase_add_test (tc, test_full);
  tcase_add_test (tc, test_maxlen);
  tcase_add_test (tc, test_differential);
  tcase_add_test (tc, test_incremental);
  tcase_add_test (tc, test_gaps);
  tcase_add_test (tc, test_seek_and_allocated);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
