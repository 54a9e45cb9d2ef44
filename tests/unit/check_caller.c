/* Unit tests for core/lib/caller.c and core/methods/outdir.c: acting for a caller.
 * The identity cases need root (as CI runs); without it they are skipped
 * with a message, the rest still runs. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "outdir.h"
#include "util.h"
#include "runner.h"

#define NOBODY 65534

static char dir[64];
static const struct rp_caller root = { .uid = 0, .gid = 0 };
static const struct rp_caller nobody = { .uid = NOBODY, .gid = NOBODY };

static void
setup (void)
{
  strcpy (dir, "/tmp/rpfs-check-caller.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (dir));
  chmod (dir, 0755);
}

static void
teardown (void)
{
  rp_rm_rf (dir);
}

static char *
put (const char *name, const char *text, mode_t mode)
{
  char *p = rp_asprintf ("%s/%s", dir, name);
  int fd = open (p, O_WRONLY | O_CREAT | O_TRUNC, mode);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
  close (fd);
  chmod (p, mode);
  return p;
}

/* Read PATH for WHO with CAP; returns the ReturnValue (RV_OK on success). */
static int
read_as (const struct rp_caller *who, const char *path, size_t cap)
{
  size_t len;
  int rv;
  char *why = NULL;
  char *t = rp_caller_read_file (who, path, NULL, cap, &len, &rv, &why);
  if (t) {
    ck_assert_ptr_null (why);
    free (t);
    return RV_OK;
  }
  ck_assert_ptr_nonnull (why);
  free (why);
  return rv;
}

START_TEST (test_read_kinds)
{
  char *f = put ("f", "hello\n", 0644);
  size_t len;
  int rv;
  char *why = NULL;
  char *t = rp_caller_read_file (&root, f, NULL, 100, &len, &rv, &why);
  ck_assert_str_eq (t, "hello\n");
  ck_assert_uint_eq (len, 6);
  free (t);
  ck_assert_int_eq (read_as (&root, f, 5), RV_INVALID_PARAMETER);
  ck_assert_int_eq (read_as (&root, f, 6), RV_OK);
  ck_assert_int_eq (read_as (&root, "relative/f", 100), RV_INVALID_PARAMETER);
  ck_assert_int_eq (read_as (&root, "/dev/zero", 100), RV_INVALID_PARAMETER);
  ck_assert_int_eq (read_as (&root, dir, 100), RV_INVALID_PARAMETER);
  char *fifo = rp_asprintf ("%s/fifo", dir);
  ck_assert_int_eq (mkfifo (fifo, 0644), 0);
  /* A FIFO with no writer: refused at once, never a blocked read. */
  ck_assert_int_eq (read_as (&root, fifo, 100), RV_INVALID_PARAMETER);
  char *link = rp_asprintf ("%s/link", dir);
  ck_assert_int_eq (symlink (f, link), 0);
  ck_assert_int_eq (read_as (&root, link, 100), RV_INVALID_PARAMETER);
  free (f);
  free (fifo);
  free (link);
}
END_TEST

START_TEST (test_read_as_nobody)
{
  if (geteuid () != 0) {
    fprintf (stderr, "SKIP test_read_as_nobody: needs root\n");
    return;
  }
  char *mine = put ("root-only", "secret\n", 0600);
  char *open_ = put ("world", "public\n", 0644);
  ck_assert_int_eq (read_as (&nobody, mine, 100), RV_ACCESS_DENIED);
  ck_assert_int_eq (read_as (&root, mine, 100), RV_OK);
  ck_assert_int_eq (read_as (&nobody, open_, 100), RV_OK);
  /* A group the caller is in (supplementary) opens a 0640 file of it. */
  chown (mine, 0, 4242);
  chmod (mine, 0640);
  struct rp_caller member = nobody;
  member.groups[member.ngroups++] = 4242;
  ck_assert_int_eq (read_as (&member, mine, 100), RV_OK);
  ck_assert_int_eq (read_as (&nobody, mine, 100), RV_ACCESS_DENIED);
  ck_assert (rp_caller_in_group (&member, 4242));
  ck_assert (!rp_caller_in_group (&nobody, 4242));
  free (mine);
  free (open_);
}
END_TEST

/* The identity is the thread's own: another thread stays root.  (A thread
 * starts with a copy of its creator's identity, so this one is created
 * before the switch and opens the file only once it happened.) */
static pthread_barrier_t switched;

static void *
other_thread (void *arg)
{
  char *p = arg;
  pthread_barrier_wait (&switched);
  int fd = open (p, O_RDONLY);
  if (fd >= 0)
    close (fd);
  return (void *) (long) (fd >= 0);
}

START_TEST (test_per_thread)
{
  if (geteuid () != 0) {
    fprintf (stderr, "SKIP test_per_thread: needs root\n");
    return;
  }
  char *mine = put ("root-only", "secret\n", 0600);
  struct rp_as as;
  pthread_t t;
  void *ok;
  pthread_barrier_init (&switched, NULL, 2);
  pthread_create (&t, NULL, other_thread, mine);
  ck_assert_int_eq (rp_as_caller (&nobody, &as), 0);
  ck_assert_int_lt (open (mine, O_RDONLY), 0);
  ck_assert_int_eq (errno, EACCES);
  pthread_barrier_wait (&switched);
  pthread_join (t, &ok);
  pthread_barrier_destroy (&switched);
  ck_assert_msg (ok, "another thread lost root while this one acted as a "
                 "caller");
  rp_as_self (&as);
  int fd = open (mine, O_RDONLY);
  ck_assert_int_ge (fd, 0);
  close (fd);
  free (mine);
}
END_TEST

START_TEST (test_outdir_checks)
{
  char *why = NULL;
  ck_assert_int_eq (rp_outdir_open ("rel/dir", "sys", "/nonexistent-mnt",
                                    &root, false, NULL, &why),
                    RV_INVALID_PARAMETER);
  free (why);
  why = NULL;
  char *missing = rp_asprintf ("%s/no/such", dir);
  ck_assert_int_eq (rp_outdir_open (missing, "sys", "/nonexistent-mnt",
                                    &root, false, NULL, &why),
                    RV_INVALID_PARAMETER);
  free (why);
  why = NULL;
  /* Inside the mount: refused. */
  ck_assert_int_eq (rp_outdir_open (dir, "sys", dir, &root, false, NULL,
                                    &why), RV_INVALID_PARAMETER);
  free (why);
  why = NULL;
  /* Holds an export of the system already. */
  char *held = rp_asprintf ("%s/sys", dir);
  mkdir (held, 0755);
  ck_assert_int_eq (rp_outdir_open (dir, "sys", "/nonexistent-mnt", &root,
                                    false, NULL, &why), RV_INVALID_PARAMETER);
  free (why);
  why = NULL;
  if (geteuid () == 0)
    ck_assert_int_eq (rp_outdir_open (dir, "other", "/nonexistent-mnt",
                                      &nobody, false, NULL, &why),
                      RV_ACCESS_DENIED);
  free (why);
  free (missing);
  free (held);
}
END_TEST

START_TEST (test_outdir_as_caller)
{
  if (geteuid () != 0) {
    fprintf (stderr, "SKIP test_outdir_as_caller: needs root\n");
    return;
  }
  chown (dir, NOBODY, NOBODY);
  char *target = rp_asprintf ("%s/new", dir);
  struct rp_outdir *o = NULL;
  char *why = NULL;
  ck_assert_int_eq (rp_outdir_open (target, "sys", "/nonexistent-mnt",
                                    &nobody, true, &o, &why), RV_OK);
  ck_assert_int_eq (rp_outdir_begin (o, ".sys.1.part", &why), 0);
  ck_assert_int_eq (rp_outdir_write (o, "config", "x\n", 2), 0);
  int fd = rp_outdir_create (o, "disks/a.qcow2", 0644);
  ck_assert_int_ge (fd, 0);
  close (fd);
  ck_assert_int_eq (rp_outdir_create (o, "disks/a.qcow2", 0644), -EEXIST);
  ck_assert_int_eq (rp_outdir_commit (o, &why), RV_OK);
  struct stat st;
  char *f = rp_asprintf ("%s/sys/disks/a.qcow2", target);
  ck_assert_int_eq (stat (target, &st), 0);
  ck_assert_uint_eq (st.st_uid, NOBODY);
  ck_assert_int_eq (stat (f, &st), 0);
  ck_assert_uint_eq (st.st_uid, NOBODY);
  free (f);
  f = rp_asprintf ("%s/sys", target);
  ck_assert_int_eq (stat (f, &st), 0);
  ck_assert_uint_eq (st.st_mode & 07777, 0755);
  rp_outdir_free (o);
  free (f);
  free (target);
}
END_TEST

START_TEST (test_outdir_swapped)
{
  char *target = rp_asprintf ("%s/e", dir);
  mkdir (target, 0755);
  struct rp_outdir *o = NULL;
  char *why = NULL;
  ck_assert_int_eq (rp_outdir_open (target, "sys", "/nonexistent-mnt",
                                    &root, true, &o, &why), RV_OK);
  ck_assert_int_eq (rp_outdir_begin (o, ".sys.2.part", &why), 0);
  /* Someone moves the assembly directory and plants a symlink. */
  char *tmp = rp_asprintf ("%s/.sys.2.part", target);
  char *moved = rp_asprintf ("%s/moved", target);
  ck_assert_int_eq (rename (tmp, moved), 0);
  ck_assert_int_eq (symlink ("/etc", tmp), 0);
  ck_assert_int_eq (rp_outdir_commit (o, &why), RV_FAILED);
  ck_assert_ptr_nonnull (strstr (why, "moved or replaced"));
  free (why);
  rp_outdir_abort (o);
  struct stat st;
  ck_assert_int_eq (lstat (tmp, &st), 0);        /* the symlink: untouched */
  ck_assert (S_ISLNK (st.st_mode));
  char *sys = rp_asprintf ("%s/sys", target);
  ck_assert_int_ne (lstat (sys, &st), 0);
  rp_outdir_free (o);
  free (sys);
  free (tmp);
  free (moved);
  free (target);
}
END_TEST

static Suite *
caller_suite (void)
{
  Suite *s = suite_create ("caller");
  TCase *tc = tcase_create ("core");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_read_kinds);
  tcase_add_test (tc, test_read_as_nobody);
  tcase_add_test (tc, test_per_thread);
  tcase_add_test (tc, test_outdir_checks);
  tcase_add_test (tc, test_outdir_as_caller);
  tcase_add_test (tc, test_outdir_swapped);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  return rp_check_run (caller_suite ());
}
