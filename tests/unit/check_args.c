/* Unit tests for core/lib/args.c: method and setting payloads. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "rpfs.h"
#include "util.h"
#include "runner.h"

static struct rp_args *
parse (const char *buf)
{
  char *err = NULL;
  struct rp_args *a = rp_args_parse (buf, strlen (buf), &err);
  ck_assert_msg (a != NULL, "unexpected error: %s", err);
  return a;
}

static void
expect_err_n (const char *buf, size_t len, const char *want)
{
  char *err = NULL;
  struct rp_args *a = rp_args_parse (buf, len, &err);
  ck_assert_msg (a == NULL, "parsed, but expected: %s", want);
  ck_assert_ptr_nonnull (err);
  ck_assert_str_eq (err, want);
  free (err);
}

static void
expect_err (const char *buf, const char *want)
{
  expect_err_n (buf, strlen (buf), want);
}

START_TEST (test_positional_only)
{
  struct rp_args *a = parse ("/backup/nightly\n");
  ck_assert_uint_eq (a->npos, 1);
  ck_assert_str_eq (a->pos[0], "/backup/nightly");
  ck_assert_ptr_null (a->pos[1]);
  ck_assert_uint_eq (a->nkv, 0);
  ck_assert_ptr_null (rp_args_get (a, "BaseReferencePoint"));
  rp_args_free (a);

  /* Without the newline; and a first line that looks like Key=Value. */
  a = parse ("/backup/a=b");
  ck_assert_uint_eq (a->npos, 1);
  ck_assert_str_eq (a->pos[0], "/backup/a=b");
  rp_args_free (a);
  a = parse ("Name=x\n");
  ck_assert_uint_eq (a->npos, 1);
  ck_assert_str_eq (a->pos[0], "Name=x");
  ck_assert_uint_eq (a->nkv, 0);
  rp_args_free (a);

  /* Two positionals (ImportReferencePointMetadata); '=' in the second one
   * that is not an identifier key keeps it positional. */
  a = parse ("/exp/web01/config\n/exp/web01/a=b/referencepoint\n");
  ck_assert_uint_eq (a->npos, 2);
  ck_assert_str_eq (a->pos[1], "/exp/web01/a=b/referencepoint");
  rp_args_free (a);
}
END_TEST

START_TEST (test_key_value)
{
  struct rp_args *a =
    parse ("/abs/dir\nBaseReferencePoint=rp1\nDisksToExport=sda,sdb\n");
  ck_assert_uint_eq (a->npos, 1);
  ck_assert_str_eq (a->pos[0], "/abs/dir");
  ck_assert_uint_eq (a->nkv, 2);
  ck_assert_str_eq (a->keys[0], "BaseReferencePoint");
  ck_assert_str_eq (a->vals[0], "rp1");
  ck_assert_str_eq (a->keys[1], "DisksToExport");
  ck_assert_str_eq (rp_args_get (a, "DisksToExport"), "sda,sdb");
  ck_assert_ptr_null (rp_args_get (a, "disksToExport"));
  rp_args_free (a);

  /* Spaces around key and value; empty value; '=' inside the value. */
  a = parse ("rp2\nReferencePointType = 2\nX=\nY=a=b\n");
  ck_assert_str_eq (rp_args_get (a, "ReferencePointType"), "2");
  ck_assert_str_eq (rp_args_get (a, "X"), "");
  ck_assert_str_eq (rp_args_get (a, "Y"), "a=b");
  rp_args_free (a);
}
END_TEST

START_TEST (test_empty)
{
  struct rp_args *a = parse ("");
  ck_assert_uint_eq (a->npos, 0);
  ck_assert_uint_eq (a->nkv, 0);
  rp_args_free (a);
  a = parse ("\n");
  ck_assert_uint_eq (a->npos, 0);
  ck_assert_uint_eq (a->nkv, 0);
  rp_args_free (a);
  rp_args_free (NULL);
}
END_TEST

START_TEST (test_errors)
{
  expect_err ("\n\n", "line 1 is empty");
  expect_err ("/a\n\nX=1\n", "line 2 is empty");
  expect_err ("/a\nX=1\n\n", "line 3 is empty");
  expect_err ("/a\r\n", "line 1 contains a carriage return (\\r): "
              "end lines with \\n alone");
  expect_err ("/a\nX=1\r\n", "line 2 contains a carriage return (\\r): "
              "end lines with \\n alone");
  expect_err ("/a\nFoo=1\nBar=2\nFoo=3\n", "key 'Foo' is given twice");
  expect_err ("/a\n=1\n", "line 2 has an empty key before '='");
  expect_err ("/a\n  =1\n", "line 2 has an empty key before '='");
  expect_err ("/a\nX=1\n/b\n", "line 3 is not a Key=Value line, but comes "
              "after one (positional arguments come first)");
  expect_err ("/a\nX=1\nbad-key=2\n", "line 3: 'bad-key' is not a valid key "
              "(a letter, then letters and digits)");
  expect_err_n ("/a\0b\n", 5, "a NUL byte is not allowed");
}
END_TEST

START_TEST (test_size_limit)
{
  size_t n = RP_WRITE_MAX + 1;
  char *big = malloc (n);
  memset (big, 'a', n);
  expect_err_n (big, n, "the request is larger than 65536 bytes");

  /* Exactly the limit is fine. */
  char *err = NULL;
  struct rp_args *a = rp_args_parse (big, RP_WRITE_MAX, &err);
  ck_assert_ptr_nonnull (a);
  ck_assert_uint_eq (strlen (a->pos[0]), RP_WRITE_MAX);
  rp_args_free (a);

  char *v = rp_args_value (big, n, 0, &err);
  ck_assert_ptr_null (v);
  ck_assert_str_eq (err, "the request is larger than 65536 bytes");
  free (err);
  free (big);
}
END_TEST

START_TEST (test_value)
{
  char *err = NULL;
  char *v = rp_args_value ("rp1\n", 4, 0, &err);
  ck_assert_str_eq (v, "rp1");
  free (v);
  v = rp_args_value ("rp1", 3, 0, &err);
  ck_assert_str_eq (v, "rp1");
  free (v);
  v = rp_args_value ("", 0, 0, &err);
  ck_assert_str_eq (v, "");
  free (v);
  v = rp_args_value ("\n", 1, 0, &err);
  ck_assert_str_eq (v, "");
  free (v);
  v = rp_args_value ("sda\nsdb\n", 8, 1, &err);
  ck_assert_str_eq (v, "sda\nsdb");
  free (v);

  ck_assert_ptr_null (rp_args_value ("sda\nsdb\n", 8, 0, &err));
  ck_assert_str_eq (err, "the value must be a single line");
  free (err);
  ck_assert_ptr_null (rp_args_value ("rp1\n\n", 5, 0, &err));
  ck_assert_str_eq (err, "the value must be a single line");
  free (err);
  ck_assert_ptr_null (rp_args_value ("rp1\r\n", 5, 1, &err));
  ck_assert_str_eq (err, "a carriage return (\\r) is not allowed");
  free (err);
  ck_assert_ptr_null (rp_args_value ("r\0p", 3, 1, &err));
  ck_assert_str_eq (err, "a NUL byte is not allowed");
  free (err);
}
END_TEST

START_TEST (test_disk_list)
{
  char *err = NULL;
  char **v = rp_args_disk_list ("sda,sdb", &err);
  ck_assert_uint_eq (rp_strv_len (v), 2);
  ck_assert_str_eq (v[0], "sda");
  ck_assert_str_eq (v[1], "sdb");
  rp_strv_free (v);

  v = rp_args_disk_list (" sda \n\tsdb\nsdc , sdd,\n", &err);
  ck_assert_uint_eq (rp_strv_len (v), 4);
  ck_assert_str_eq (v[0], "sda");
  ck_assert_str_eq (v[1], "sdb");
  ck_assert_str_eq (v[2], "sdc");
  ck_assert_str_eq (v[3], "sdd");
  rp_strv_free (v);

  v = rp_args_disk_list ("", &err);
  ck_assert_ptr_nonnull (v);
  ck_assert_ptr_null (v[0]);
  rp_strv_free (v);
  v = rp_args_disk_list ("  \n", &err);
  ck_assert_ptr_nonnull (v);
  ck_assert_ptr_null (v[0]);
  rp_strv_free (v);
  v = rp_args_disk_list (NULL, &err);
  ck_assert_ptr_nonnull (v);
  ck_assert_ptr_null (v[0]);
  rp_strv_free (v);

  ck_assert_ptr_null (rp_args_disk_list ("sda,sd/b", &err));
  ck_assert_str_eq (err, "'sd/b' is not a valid disk id (allowed: letters, "
                    "digits, '_', '.', '-'; 1 to 64 characters)");
  free (err);
  ck_assert_ptr_null (rp_args_disk_list ("sda sdb", &err));
  ck_assert_str_eq (err, "'sda sdb' is not a valid disk id (allowed: "
                    "letters, digits, '_', '.', '-'; 1 to 64 characters)");
  free (err);
  ck_assert_ptr_null (rp_args_disk_list ("sda,..", &err));
  ck_assert_str_eq (err, "'..' is not a valid disk id (allowed: letters, "
                    "digits, '_', '.', '-'; 1 to 64 characters)");
  free (err);
  ck_assert_ptr_null (rp_args_disk_list ("sda\nsdb\nsda", &err));
  ck_assert_str_eq (err, "disk 'sda' is listed twice");
  free (err);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("args");
  TCase *tc = tcase_create ("args");
  tcase_add_test (tc, test_positional_only);
  tcase_add_test (tc, test_key_value);
  tcase_add_test (tc, test_empty);
  tcase_add_test (tc, test_errors);
  tcase_add_test (tc, test_size_limit);
  tcase_add_test (tc, test_value);
  tcase_add_test (tc, test_disk_list);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
