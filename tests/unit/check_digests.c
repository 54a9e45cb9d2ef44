/* Unit tests for digest tables: core/dataplane/blockhash.c (aligning an
 * export's work list to whole blocks, the hash of zeros) and
 * core/objects/digests.c (the file: round trip, every changed byte found). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "digests.h"
#include "extent.h"
#include "runner.h"

#define K 1024ull
#define M (1024ull * 1024)

static void
add (struct rp_ops *o, uint64_t off, uint64_t len, enum rp_op_kind k)
{
  o->v = realloc (o->v, (o->n + 1) * sizeof *o->v);
  o->v[o->n++] = (struct rp_op) { off, len, k };
}

static void
expect (const struct rp_ops *o, size_t i, uint64_t off, uint64_t len,
        enum rp_op_kind k)
{
  ck_assert_uint_gt (o->n, i);
  ck_assert_uint_eq (o->v[i].off, off);
  ck_assert_uint_eq (o->v[i].len, len);
  ck_assert_int_eq (o->v[i].kind, k);
}

START_TEST (test_align)
{
  for (int mode = RP_BH_FULL; mode <= RP_BH_DIGEST; mode += 2) {
    struct rp_bh bh = { .mode = mode };
    struct rp_ops o = { 0 };
    add (&o, 10 * K, 60 * K, RP_OP_COPY);    /* inside block 0, into 1 */
    add (&o, 100 * K, 200 * K, RP_OP_ZERO);  /* partial first and last */
    add (&o, 320 * K, 10 * K, RP_OP_COPY);
    rp_bh_align (&bh, &o, 1 * M, 2 * M);
    expect (&o, 0, 0, 128 * K, RP_OP_COPY);
    expect (&o, 1, 128 * K, 128 * K, RP_OP_ZERO);
    expect (&o, 2, 256 * K, 128 * K, RP_OP_COPY);
    if (mode == RP_BH_DIGEST) {       /* the rest is compared as zeros */
      expect (&o, 3, 384 * K, 640 * K, RP_OP_ZERO);
      ck_assert_uint_eq (o.n, 4);
    }
    else
      ck_assert_uint_eq (o.n, 3);
    rp_ops_free (&o);
  }
}
END_TEST

START_TEST (test_align_edges)
{
  struct rp_bh bh = { .mode = RP_BH_DIFF };
  struct rp_ops o = { 0 };
  add (&o, 0, 100 * K, RP_OP_ZERO);          /* shares block 1 with a copy */
  add (&o, 100 * K, 100 * K, RP_OP_COPY);
  add (&o, 2 * M - 64 * K, 64 * K + 10, RP_OP_COPY);  /* crosses 2 MiB */
  add (&o, 3 * M, 5, RP_OP_ZERO);            /* a short last block */
  rp_bh_align (&bh, &o, 3 * M + 5, 2 * M);
  expect (&o, 0, 0, 64 * K, RP_OP_ZERO);
  expect (&o, 1, 64 * K, 192 * K, RP_OP_COPY);
  expect (&o, 2, 2 * M - 64 * K, 64 * K, RP_OP_COPY);
  expect (&o, 3, 2 * M, 64 * K, RP_OP_COPY);
  expect (&o, 4, 3 * M, 5, RP_OP_ZERO);
  ck_assert_uint_eq (o.n, 5);
  for (size_t i = 0; i < o.n; i++)      /* every op on block boundaries */
    ck_assert_uint_eq (o.v[i].off % RP_BH_BLOCK, 0);
  rp_ops_free (&o);
}
END_TEST

START_TEST (test_zero_hash)
{
  struct rp_digests *t = rp_digests_new (3 * RP_BH_BLOCK + 7);
  ck_assert_uint_eq (t->count, 4);
  ck_assert_uint_eq (rp_digests_block_len (t, 3), 7);
  for (uint64_t b = 0; b < t->count; b++)
    ck_assert (rp_digests_is_zero (t, b));
  char z[7] = { 0 };
  unsigned char h[RP_BH_LEN];
  rp_bh_hash (z, 7, h);
  ck_assert (memcmp (h, rp_digests_at (t, 3), RP_BH_LEN) == 0);
  rp_digests_free (t);
}
END_TEST

START_TEST (test_file)
{
  struct rp_digests *t = rp_digests_new (5 * RP_BH_BLOCK);
  memset (rp_digests_at (t, 2), 0xab, RP_BH_LEN);
  size_t len;
  unsigned char *buf = rp_digests_render (t, &len);
  ck_assert_uint_eq (len, 48 + 5 * RP_BH_LEN + 32);
  char *err = NULL;
  struct rp_digests *u = rp_digests_parse (buf, len, &err);
  ck_assert_ptr_nonnull (u);
  ck_assert_uint_eq (u->size, t->size);
  ck_assert (memcmp (u->v, t->v, t->count * RP_BH_LEN) == 0);
  rp_digests_free (u);
  for (size_t i = 0; i < len; i++) {      /* any one byte changed */
    buf[i] ^= 0x01;
    u = rp_digests_parse (buf, len, &err);
    ck_assert_ptr_null (u);
    ck_assert_ptr_nonnull (err);
    free (err);
    err = NULL;
    buf[i] ^= 0x01;
  }
  ck_assert_ptr_null (rp_digests_parse (buf, len - 1, &err));
  free (err);
  free (buf);
  rp_digests_free (t);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("digests");
  TCase *tc = tcase_create ("digests");
  tcase_add_test (tc, test_align);
  tcase_add_test (tc, test_align_edges);
  tcase_add_test (tc, test_zero_hash);
  tcase_add_test (tc, test_file);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
