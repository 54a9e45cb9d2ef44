/* Unit tests for core/lib/util.c. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpfs.h"
#include "util.h"
#include "runner.h"

START_TEST (test_name_valid)
{
  ck_assert (rp_name_valid ("sda"));
  ck_assert (rp_name_valid ("web-01_a.b"));
  ck_assert (rp_name_valid ("..."));
  ck_assert (rp_name_valid (".hidden"));
  ck_assert (!rp_name_valid (""));
  ck_assert (!rp_name_valid ("."));
  ck_assert (!rp_name_valid (".."));
  ck_assert (!rp_name_valid ("a/b"));
  ck_assert (!rp_name_valid ("a b"));
  ck_assert (!rp_name_valid ("caf\xc3\xa9"));
  ck_assert (!rp_name_valid (NULL));

  char s[70];
  memset (s, 'x', sizeof s);
  s[64] = '\0';
  ck_assert (rp_name_valid (s));
  s[64] = 'x';
  s[65] = '\0';
  ck_assert (!rp_name_valid (s));

  /* The _n variant looks only at the range given. */
  ck_assert (rp_name_valid_n ("sda/garbage", 3));
  ck_assert (!rp_name_valid_n ("sda/garbage", 4));
  ck_assert (!rp_name_valid_n ("..x", 2));
  ck_assert (!rp_name_valid_n ("a\0b", 3));
  ck_assert (!rp_name_valid_n ("abc", 0));
}
END_TEST

START_TEST (test_uuid)
{
  char u[37], v[37];

  ck_assert (rp_uuid_valid ("5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10"));
  ck_assert (!rp_uuid_valid ("5F0C7E52-3C1D-4C4E-9A36-0E4F3C2B9D10"));
  ck_assert (!rp_uuid_valid ("5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d1"));
  ck_assert (!rp_uuid_valid ("5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d100"));
  ck_assert (!rp_uuid_valid ("5f0c7e523c1d-4c4e-9a36-0e4f3c2b9d10-"));
  ck_assert (!rp_uuid_valid ("5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9g10"));
  ck_assert (!rp_uuid_valid (""));
  ck_assert (!rp_uuid_valid (NULL));

  ck_assert_int_eq (rp_uuid_new (u), 0);
  ck_assert_int_eq (rp_uuid_new (v), 0);
  ck_assert_uint_eq (strlen (u), 36);
  ck_assert (rp_uuid_valid (u));
  ck_assert (rp_uuid_valid (v));
  ck_assert_str_ne (u, v);
  ck_assert_int_eq (u[14], '4');                  /* version 4 */
  ck_assert (strchr ("89ab", u[19]) != NULL);     /* RFC 4122 variant */
}
END_TEST

START_TEST (test_time)
{
  char s[21];
  time_t t;

  rp_time_iso (0, s);
  ck_assert_str_eq (s, "1970-01-01T00:00:00Z");
  rp_time_iso (1795600800, s);
  ck_assert_str_eq (s, "2026-11-25T10:00:00Z");

  ck_assert_int_eq (rp_time_parse ("2026-11-25T10:00:00Z", &t), 0);
  ck_assert_int_eq (t, 1795600800);
  ck_assert_int_eq (rp_time_parse ("2024-02-29T23:59:59Z", &t), 0);

  /* round trip over a spread of times */
  for (time_t x = 0; x < 4102444800; x += 86400 * 37 + 3671) {
    rp_time_iso (x, s);
    ck_assert_int_eq (rp_time_parse (s, &t), 0);
    ck_assert_int_eq (t, x);
  }

  t = 42;
  ck_assert_int_eq (rp_time_parse ("2026-11-25T10:00:00", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-11-25 10:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-02-30T10:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2025-02-29T10:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-13-01T10:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-11-25T24:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-11-25T10:60:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-1a-25T10:00:00Z", &t), -1);
  ck_assert_int_eq (rp_time_parse ("2026-11-25T10:00:00Z ", &t), -1);
  ck_assert_int_eq (rp_time_parse ("", &t), -1);
  ck_assert_int_eq (t, 42);     /* untouched on error */
}
END_TEST

START_TEST (test_interval)
{
  char s[26];

  rp_interval (42, s);
  ck_assert_str_eq (s, "00000000000042.000000:000");
  rp_interval (0, s);
  ck_assert_str_eq (s, "00000000000000.000000:000");
  rp_interval (-5, s);
  ck_assert_str_eq (s, "00000000000000.000000:000");
  rp_interval (NAN, s);
  ck_assert_str_eq (s, "00000000000000.000000:000");
  /* 1 day 2 h 3 min 4.5 s */
  rp_interval (86400 + 2 * 3600 + 3 * 60 + 4.5, s);
  ck_assert_str_eq (s, "00000001020304.500000:000");
  rp_interval (0.0000015, s);
  ck_assert_str_eq (s, "00000000000000.000002:000");
  rp_interval (59.9999996, s);                     /* rounds up a minute */
  ck_assert_str_eq (s, "00000000000100.000000:000");
  rp_interval (1e300, s);
  ck_assert_str_eq (s, "99999999235959.999999:000");
  ck_assert_uint_eq (strlen (s), 25);
}
END_TEST

START_TEST (test_strv)
{
  char **v = NULL;

  ck_assert_uint_eq (rp_strv_len (NULL), 0);
  ck_assert (!rp_strv_contains (NULL, "a"));
  char *j = rp_strv_join (NULL, "\n");
  ck_assert_str_eq (j, "");
  free (j);

  const char *s = "sda";
  v = rp_strv_push (v, s);
  v = rp_strv_push (v, "sdb");
  v = rp_strv_push (v, "");
  ck_assert_uint_eq (rp_strv_len (v), 3);
  ck_assert_ptr_ne (v[0], s);   /* copied */
  ck_assert_str_eq (v[0], "sda");
  ck_assert_ptr_null (v[3]);
  ck_assert (rp_strv_contains (v, "sdb"));
  ck_assert (rp_strv_contains (v, ""));
  ck_assert (!rp_strv_contains (v, "sd"));

  j = rp_strv_join (v, "\n");
  ck_assert_str_eq (j, "sda\nsdb\n\n");
  free (j);
  j = rp_strv_join (v, "");
  ck_assert_str_eq (j, "sdasdb");
  free (j);
  rp_strv_free (v);
  rp_strv_free (NULL);
}
END_TEST

START_TEST (test_alloc)
{
  char *s = rp_asprintf ("%s-%d", "x", 7);
  ck_assert_str_eq (s, "x-7");
  free (s);
  s = rp_strdup ("abc");
  ck_assert_str_eq (s, "abc");
  free (s);
  int *p = rp_calloc (4, sizeof *p);
  ck_assert_int_eq (p[0] | p[1] | p[2] | p[3], 0);
  free (p);
  p = rp_calloc (0, 8);
  ck_assert_ptr_nonnull (p);
  free (p);
  {
    CLEANUP_FREE char *c = rp_strdup ("freed at scope end (ASan checks)");
    ck_assert_ptr_nonnull (c);
  }
}
END_TEST

static char *
tmpdir (void)
{
  char *t = rp_strdup ("/tmp/check_util.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (t));
  return t;
}

START_TEST (test_files)
{
  CLEANUP_FREE char *dir = tmpdir ();
  CLEANUP_FREE char *f = rp_asprintf ("%s/record", dir);
  CLEANUP_FREE char *tmp = rp_asprintf ("%s/record.tmp", dir);
  size_t len = 99;
  struct stat st;

  ck_assert_int_eq (rp_write_file_atomic (f, "hello\n", 6, 0600), 0);
  char *got = rp_read_file (f, &len);
  ck_assert_ptr_nonnull (got);
  ck_assert_uint_eq (len, 6);
  ck_assert_str_eq (got, "hello\n");
  free (got);
  ck_assert_int_eq (stat (f, &st), 0);
  ck_assert_int_eq (st.st_mode & 0777, 0600);
  ck_assert_int_eq (access (tmp, F_OK), -1);   /* no leftover */

  /* Replacing: a stale PATH.tmp from a crash does not get in the way. */
  FILE *fp = fopen (tmp, "w");
  fputs ("stale garbage that is longer", fp);
  fclose (fp);
  ck_assert_int_eq (rp_write_file_atomic (f, "bye", 3, 0644), 0);
  got = rp_read_file (f, NULL);
  ck_assert_str_eq (got, "bye");
  free (got);
  ck_assert_int_eq (access (tmp, F_OK), -1);

  /* Empty and larger-than-a-buffer contents. */
  ck_assert_int_eq (rp_write_file_atomic (f, "", 0, 0644), 0);
  got = rp_read_file (f, &len);
  ck_assert_uint_eq (len, 0);
  ck_assert_str_eq (got, "");
  free (got);
  size_t big = 100000;
  char *b = malloc (big);
  for (size_t i = 0; i < big; i++)
    b[i] = 'a' + i % 26;
  ck_assert_int_eq (rp_write_file_atomic (f, b, big, 0644), 0);
  got = rp_read_file (f, &len);
  ck_assert_uint_eq (len, big);
  ck_assert_int_eq (memcmp (got, b, big), 0);
  free (got);
  free (b);

  /* A symlink planted at PATH.tmp is not written through. */
  CLEANUP_FREE char *victim = rp_asprintf ("%s/victim", dir);
  ck_assert_int_eq (symlink (victim, tmp), 0);
  errno = 0;
  ck_assert_int_eq (rp_write_file_atomic (f, "x", 1, 0644), -1);
  ck_assert_int_eq (errno, ELOOP);
  ck_assert_int_eq (access (victim, F_OK), -1);
  unlink (tmp);

  /* Errors keep errno. */
  CLEANUP_FREE char *nodir = rp_asprintf ("%s/missing/record", dir);
  errno = 0;
  ck_assert_int_eq (rp_write_file_atomic (nodir, "x", 1, 0644), -1);
  ck_assert_int_eq (errno, ENOENT);
  errno = 0;
  ck_assert_ptr_null (rp_read_file (nodir, &len));
  ck_assert_int_eq (errno, ENOENT);

  ck_assert_int_eq (rp_rm_rf (dir), 0);
  ck_assert_int_eq (access (dir, F_OK), -1);
}
END_TEST

START_TEST (test_mkdir_rm)
{
  CLEANUP_FREE char *dir = tmpdir ();
  CLEANUP_FREE char *deep = rp_asprintf ("%s/a/b//c/", dir);
  CLEANUP_FREE char *file = rp_asprintf ("%s/a/b/c/f", dir);
  CLEANUP_FREE char *outside = rp_asprintf ("%s.outside", dir);
  CLEANUP_FREE char *keep = rp_asprintf ("%s.outside/keep", dir);
  CLEANUP_FREE char *link = rp_asprintf ("%s/a/link", dir);
  struct stat st;

  ck_assert_int_eq (rp_mkdir_p (deep, 0755), 0);
  ck_assert_int_eq (rp_mkdir_p (deep, 0755), 0);    /* exists: fine */
  ck_assert_int_eq (stat (deep, &st), 0);
  ck_assert (S_ISDIR (st.st_mode));
  ck_assert_int_eq (rp_write_file_atomic (file, "x", 1, 0644), 0);

  /* A file in the way is ENOTDIR. */
  CLEANUP_FREE char *through = rp_asprintf ("%s/f/g", deep);
  errno = 0;
  ck_assert_int_eq (rp_mkdir_p (through, 0755), -1);
  ck_assert_int_eq (errno, ENOTDIR);
  errno = 0;
  ck_assert_int_eq (rp_mkdir_p (file, 0755), -1);
  ck_assert_int_eq (errno, ENOTDIR);

  /* rm -rf does not follow a symlink to a directory outside the tree. */
  ck_assert_int_eq (rp_mkdir_p (outside, 0755), 0);
  ck_assert_int_eq (rp_write_file_atomic (keep, "k", 1, 0644), 0);
  ck_assert_int_eq (symlink (outside, link), 0);

  ck_assert_int_eq (rp_rm_rf (dir), 0);
  ck_assert_int_eq (lstat (dir, &st), -1);
  ck_assert_int_eq (access (keep, F_OK), 0);
  ck_assert_int_eq (rp_rm_rf (dir), 0);              /* missing: fine */

  /* A single file or symlink is removed as rm -rf would. */
  ck_assert_int_eq (symlink (outside, dir), 0);
  ck_assert_int_eq (rp_rm_rf (dir), 0);
  ck_assert_int_eq (lstat (dir, &st), -1);
  ck_assert_int_eq (access (keep, F_OK), 0);
  ck_assert_int_eq (rp_rm_rf (outside), 0);
  ck_assert_int_eq (access (outside, F_OK), -1);
}
END_TEST

/* Backing file names in differential exports are relative to the new
 * image's directory, so the backup tree can move as a whole. */
START_TEST (test_relpath)
{
  const struct { const char *target, *from, *want; } cases[] = {
    { "/backup/day1/web/disks/sda.qcow2", "/backup/day2/web/disks",
      "../../../day1/web/disks/sda.qcow2" },
    { "/a/x/y", "/a/x", "y" },
    { "/a/b/c", "/a/x", "../b/c" },
    { "/ab/c", "/a", "../ab/c" },
    { "/a/b", "/", "a/b" },
    { "/m/n", "/x/y/z", "../../../m/n" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *r = rp_relpath (cases[i].target, cases[i].from);
    ck_assert_str_eq (r, cases[i].want);
    free (r);
  }
}
END_TEST

static Suite *
util_suite (void)
{
  Suite *s = suite_create ("util");
  TCase *tc = tcase_create ("util");
  tcase_add_test (tc, test_name_valid);
  tcase_add_test (tc, test_uuid);
  tcase_add_test (tc, test_time);
  tcase_add_test (tc, test_interval);
  tcase_add_test (tc, test_strv);
  tcase_add_test (tc, test_alloc);
  tcase_add_test (tc, test_files);
  tcase_add_test (tc, test_mkdir_rm);
  tcase_add_test (tc, test_relpath);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  return rp_check_run (util_suite ());
}
