/* Child processes: output capture, exit status, stopping, fd hygiene and
 * systemd socket activation (proved with a real qemu-nbd and libnbd). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proc.h"
#include "runner.h"

static char topdir[] = "/tmp/rpfs-check-proc-XXXXXX";
static char dir[128];

static void
setup (void)
{
  snprintf (dir, sizeof dir, "%s/t-XXXXXX", topdir);
  ck_assert_ptr_nonnull (mkdtemp (dir));
}

/* Whole small file as a string (test helper, aborts on error). */
static char *
slurp (const char *path)
{
  static char buf[4096];
  FILE *f = fopen (path, "r");
  size_t n;

  ck_assert_ptr_nonnull (f);
  n = fread (buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose (f);
  return buf;
}

/* PID exists and is not a zombie. */
static bool
running (long pid)
{
  char path[64], buf[512], *st;
  FILE *f;
  size_t n;

  snprintf (path, sizeof path, "/proc/%ld/stat", pid);
  if (!(f = fopen (path, "r")))
    return false;
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  st = strrchr (buf, ')');
  return st && st[1] && st[2] != 'Z';
}

START_TEST (test_run_capture)
{
  char *argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
  char *out, *err;

  ck_assert_int_eq (rp_proc_run (argv, NULL, &out, &err), 3);
  ck_assert_str_eq (out, "out\n");
  ck_assert_str_eq (err, "err\n");
  free (out);
  free (err);
}
END_TEST

/* 1 MB on stderr first: reading stdout alone to EOF would deadlock. */
START_TEST (test_run_no_deadlock)
{
  char *argv[] = { "sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' e >&2;"
                   "head -c 1000000 /dev/zero | tr '\\0' o", NULL };
  char *out, *err;

  ck_assert_int_eq (rp_proc_run (argv, NULL, &out, &err), 0);
  ck_assert_uint_eq (strlen (out), 1000000);
  ck_assert_uint_eq (strlen (err), 1000000);
  ck_assert (out[0] == 'o' && err[999999] == 'e');
  free (out);
  free (err);
}
END_TEST

START_TEST (test_run_cwd_empty_signal)
{
  char *pwd[] = { "pwd", NULL }, *t[] = { "true", NULL };
  char *die[] = { "sh", "-c", "echo partial; kill -9 $$", NULL };
  char *out, *err;

  ck_assert_int_eq (rp_proc_run (pwd, dir, &out, NULL), 0);
  ck_assert (strncmp (out, dir, strlen (dir)) == 0);
  free (out);
  /* No output is "", not NULL. */
  ck_assert_int_eq (rp_proc_run (t, NULL, &out, &err), 0);
  ck_assert_str_eq (out, "");
  ck_assert_str_eq (err, "");
  free (out);
  free (err);
  /* Killed by a signal: -1, but what it wrote is kept for diagnostics. */
  ck_assert_int_eq (rp_proc_run (die, NULL, &out, NULL), -1);
  ck_assert_str_eq (out, "partial\n");
  free (out);
  /* A cwd that does not exist: could not run. */
  ck_assert_int_eq (rp_proc_run (pwd, "/nonexistent-rpfs", &out, NULL), -1);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_ptr_null (out);
}
END_TEST

/* rp_proc_run_lines: every line, in order, the last one without its
 * newline too; 200 000 lines through a pipe buffer of 64 KiB; a callback
 * that says stop makes a clean exit -2. */
struct seen {
  size_t n, bytes;
  char first[16], last[16];
  size_t stop_at;
};

static int
count_line (void *opaque, char *line, size_t len)
{
  struct seen *s = opaque;
  ck_assert_uint_eq (strlen (line), len);
  if (s->n == 0)
    snprintf (s->first, sizeof s->first, "%s", line);
  snprintf (s->last, sizeof s->last, "%s", line);
  s->n++;
  s->bytes += len;
  return s->stop_at && s->n == s->stop_at;
}

START_TEST (test_run_lines)
{
  char *many[] = { "sh", "-c", "seq 1 200000; printf tail", NULL };
  char *fail[] = { "sh", "-c", "echo a; echo oops >&2; exit 4", NULL };
  struct seen s = { 0 };
  char *err = NULL;

  ck_assert_int_eq (rp_proc_run_lines (many, count_line, &s, &err), 0);
  ck_assert_uint_eq (s.n, 200001);
  ck_assert_str_eq (s.first, "1");
  ck_assert_str_eq (s.last, "tail");
  ck_assert_str_eq (err, "");
  free (err);
  memset (&s, 0, sizeof s);
  s.stop_at = 10;
  ck_assert_int_eq (rp_proc_run_lines (many, count_line, &s, NULL), -2);
  ck_assert_uint_eq (s.n, 10);
  ck_assert_str_eq (s.last, "10");
  memset (&s, 0, sizeof s);
  ck_assert_int_eq (rp_proc_run_lines (fail, count_line, &s, &err), 4);
  ck_assert_uint_eq (s.n, 1);
  ck_assert_str_eq (err, "oops\n");
  free (err);
}
END_TEST

/* Documented choice: a program that cannot be executed is -1 with errno
 * (never 127, which stays the program's own status), for both calls. */
START_TEST (test_nonexistent)
{
  char *a[] = { "rpfs-no-such-program", NULL };
  char *b[] = { "/nonexistent/prog", NULL };
  char *c[] = { "sh", "-c", "exit 127", NULL };
  char *out = (char *) 1;

  errno = 0;
  ck_assert_int_eq (rp_proc_run (a, NULL, &out, NULL), -1);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_ptr_null (out);
  ck_assert_int_eq (rp_proc_run (b, NULL, NULL, NULL), -1);
  ck_assert_int_eq (errno, ENOENT);
  errno = 0;
  ck_assert_int_eq (rp_proc_spawn (a, NULL, 0, -1, NULL), -1);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_int_eq (rp_proc_run (c, NULL, NULL, NULL), 127);
}
END_TEST

START_TEST (test_stop)
{
  char *sleep100[] = { "sleep", "100", NULL };
  char script[600], *stubborn[] = { "sh", "-c", script, NULL };
  char *quick[] = { "true", NULL };
  char pidfile[160];
  long child;
  pid_t pid;

  snprintf (pidfile, sizeof pidfile, "%s/sleep.pid", dir);
  snprintf (script, sizeof script,
            "trap '' TERM; sleep 100 & echo $! > %s.tmp; mv %s.tmp %s; wait",
            pidfile, pidfile, pidfile);
  pid = rp_proc_spawn (sleep100, NULL, 0, -1, NULL);
  ck_assert_int_gt (pid, 0);
  ck_assert (rp_proc_alive (pid));
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);
  ck_assert (!rp_proc_alive (pid));

  /* TERM ignored by sh and its sleep: KILL goes to the whole group. */
  pid = rp_proc_spawn (stubborn, NULL, 0, -1, NULL);
  ck_assert_int_gt (pid, 0);
  while (access (pidfile, F_OK) != 0)
    usleep (10000);             /* trap set, sleep started */
  ck_assert_int_eq (sscanf (slurp (pidfile), "%ld", &child), 1);
  ck_assert_int_eq (rp_proc_stop (pid, 100), 2);
  /* The sleep died too (reparented, it may stay a zombie for a while). */
  for (int i = 0; i < 100 && running (child); i++)
    usleep (10000);
  ck_assert (!running (child));

  pid = rp_proc_spawn (quick, NULL, 0, -1, NULL);
  ck_assert_int_gt (pid, 0);
  ck_assert_int_eq (rp_proc_stop (pid, 5000), 0);
}
END_TEST

/* What a child got, seen from outside (a shell would add fds of its own):
 * its fd numbers as " 0 1 2 ...", where fd 0 points, and its LISTEN_*. */
static void
inspect (pid_t pid, char *fds, char *fd0, char *env)
{
  char path[64], buf[8192];
  int n;
  FILE *f;

  fds[0] = env[0] = '\0';
  for (int fd = 0; fd < 64; fd++)
    {
      snprintf (path, sizeof path, "/proc/%d/fd/%d", (int) pid, fd);
      if (access (path, F_OK) == 0)
        sprintf (fds + strlen (fds), " %d", fd);
    }
  snprintf (path, sizeof path, "/proc/%d/fd/0", (int) pid);
  n = readlink (path, fd0, 63);
  fd0[n > 0 ? n : 0] = '\0';
  snprintf (path, sizeof path, "/proc/%d/environ", (int) pid);
  ck_assert_ptr_nonnull (f = fopen (path, "r"));
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  for (int i = 0; i < n; i += strlen (buf + i) + 1)
    if (strncmp (buf + i, "LISTEN_", 7) == 0)
      sprintf (env + strlen (env), " %s", buf + i);
}

/* Only 0-2, the keep fds and (with activation) 3 reach the child; stdin is
 * /dev/null; LISTEN_PID is the child's own pid.  rp_proc_spawn returns
 * after exec, so the child can be inspected at once. */
static void *
spawn_sleep (void *arg)
{
  char *argv[] = { "sleep", "100", NULL };

  *(pid_t *) arg = rp_proc_spawn (argv, NULL, 0, -1, NULL);
  return NULL;
}

/* PR_SET_PDEATHSIG: the child must survive the exit of the thread that
 * asked for it (FUSE workers come and go)... */
START_TEST (test_spawn_thread_exit)
{
  pthread_t t;
  pid_t pid = -1;

  ck_assert_int_eq (pthread_create (&t, NULL, spawn_sleep, &pid), 0);
  pthread_join (t, NULL);
  ck_assert_int_gt (pid, 0);
  usleep (200000);
  ck_assert (rp_proc_alive (pid));
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);
}
END_TEST

/* A child gets the nice value of the thread that asked for it, whichever
 * thread forks it (daemons: the spawner; rp_proc_run: the caller). */
static int
nice_of (pid_t pid)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  char *p = strrchr (slurp (path), ')');  /* after "pid (comm)": state is field 3 */
  int field = 2, n = -100;
  for (; p && *p; p++)
    if (*p == ' ' && ++field == 19) {
      n = atoi (p + 1);
      break;
    }
  return n;
}

static void *
spawn_at_nice (void *arg)
{
  char *sleep100[] = { "sleep", "100", NULL };
  char *own[] = { "sh", "-c", "cut -d' ' -f19 /proc/self/stat", NULL };
  char **out = arg;

  ck_assert_int_eq (setpriority (PRIO_PROCESS, (id_t) gettid (), 7), 0);
  pid_t pid = rp_proc_spawn (sleep100, NULL, 0, -1, NULL);
  ck_assert_int_gt (pid, 0);
  ck_assert_int_eq (nice_of (pid), 7);
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);
  ck_assert_int_eq (rp_proc_run (own, NULL, out, NULL), 0);
  return NULL;
}

START_TEST (test_nice_of_caller)
{
  pthread_t t;
  char *out = NULL;
  char *sleep100[] = { "sleep", "100", NULL };

  ck_assert_int_eq (pthread_create (&t, NULL, spawn_at_nice, &out), 0);
  pthread_join (t, NULL);
  ck_assert_str_eq (out, "7\n");
  free (out);
  /* This thread kept its own value, and so do its children. */
  pid_t pid = rp_proc_spawn (sleep100, NULL, 0, -1, NULL);
  ck_assert_int_eq (nice_of (pid), nice_of (getpid ()));
  ck_assert_int_ne (nice_of (pid), 7);
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);
}
END_TEST

/* ...but not the exit of the process. */
START_TEST (test_parent_death)
{
  int p[2];
  pid_t mid, child = -1;

  ck_assert_int_eq (pipe (p), 0);
  mid = fork ();
  ck_assert_int_ge (mid, 0);
  if (mid == 0)
    {
      spawn_sleep (&child);
      _exit (write (p[1], &child, sizeof child) == sizeof child ? 0 : 1);
    }
  ck_assert_int_eq (read (p[0], &child, sizeof child), sizeof child);
  ck_assert_int_gt (child, 0);
  ck_assert_int_eq (rp_proc_stop (mid, 5000), 0);
  for (int i = 0; i < 200 && running (child); i++)
    usleep (10000);
  ck_assert (!running (child));
  close (p[0]);
  close (p[1]);
}
END_TEST

START_TEST (test_spawn_fds_env)
{
  char *sleep5[] = { "sleep", "5", NULL };
  char sock[160], log[160], fds[256], fd0[64], env[256], want[128];
  int leak, keep, lfd, bad = 3;
  pid_t pid;

  snprintf (sock, sizeof sock, "%s/s", dir);
  snprintf (log, sizeof log, "%s/log", dir);
  leak = open ("/dev/null", O_RDONLY);            /* no O_CLOEXEC */
  keep = fcntl (leak, F_DUPFD_CLOEXEC, 20);       /* kept despite CLOEXEC */
  lfd = rp_unix_listen (sock);
  ck_assert_int_ge (lfd, 0);
  ck_assert_int_lt (leak, 20);

  pid = rp_proc_spawn (sleep5, &keep, 1, lfd, log);
  ck_assert_int_gt (pid, 0);
  /* sleep's own start-up (ld.so, locale) opens and closes files: wait for
   * that; a leaked fd would stay. */
  for (int i = 0; i < 100 && (inspect (pid, fds, fd0, env),
                              strcmp (fds, " 0 1 2 3 20") != 0); i++)
    usleep (10000);
  ck_assert_str_eq (fds, " 0 1 2 3 20");
  ck_assert_str_eq (fd0, "/dev/null");
  snprintf (want, sizeof want, " LISTEN_PID=%d LISTEN_FDS=1", (int) pid);
  ck_assert_str_eq (env, want);
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);

  /* Without activation no LISTEN_* leaks through, even if we have some. */
  setenv ("LISTEN_FDS", "7", 1);
  pid = rp_proc_spawn (sleep5, NULL, 0, -1, NULL);
  ck_assert_int_gt (pid, 0);
  for (int i = 0; i < 100 && (inspect (pid, fds, fd0, env),
                              strcmp (fds, " 0 1 2") != 0); i++)
    usleep (10000);
  ck_assert_str_eq (fds, " 0 1 2");
  ck_assert_str_eq (env, "");
  ck_assert_int_eq (rp_proc_stop (pid, 100), 1);

  /* A keep fd on 3 cannot coexist with the listening socket there. */
  ck_assert_int_eq (rp_proc_spawn (sleep5, &bad, 1, lfd, NULL), -1);
  ck_assert_int_eq (errno, EINVAL);
  close (leak);
  close (keep);
  close (lfd);
}
END_TEST

/* Children get malloc tunables that keep QEMU's per-request buffers on the
 * heap, unless the environment already has GLIBC_TUNABLES: the user's own
 * are passed on untouched.  (printenv, not /proc/PID/environ: glibc cuts
 * the original string at each ':' while it parses it.) */
START_TEST (test_spawn_malloc_tunables)
{
  char *printenv[] = { "printenv", "GLIBC_TUNABLES", NULL };
  char *out = NULL;

  unsetenv ("GLIBC_TUNABLES");
  ck_assert_int_eq (rp_proc_run (printenv, NULL, &out, NULL), 0);
  ck_assert_str_eq (out, "glibc.malloc.mmap_threshold=4194304"
                    ":glibc.malloc.trim_threshold=33554432\n");
  free (out);

  setenv ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2", 1);
  ck_assert_int_eq (rp_proc_run (printenv, NULL, &out, NULL), 0);
  ck_assert_str_eq (out, "glibc.malloc.arena_max=2\n");
  free (out);
  unsetenv ("GLIBC_TUNABLES");
}
END_TEST

/* qemu-nbd finds its listening socket through LISTEN_FDS/LISTEN_PID. */
START_TEST (test_socket_activation)
{
  char img[160], sock[160], log[160];
  char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", img, "3M",
                     NULL };
  char *nbd[] = { "qemu-nbd", "-f", "qcow2", img, NULL };
  struct nbd_handle *h;
  int lfd;
  pid_t pid;

  snprintf (img, sizeof img, "%s/a.qcow2", dir);
  snprintf (sock, sizeof sock, "%s/nbd.sock", dir);
  snprintf (log, sizeof log, "%s/qemu-nbd.log", dir);
  ck_assert_int_eq (rp_proc_run (create, NULL, NULL, NULL), 0);
  lfd = rp_unix_listen (sock);
  ck_assert_int_ge (lfd, 0);
  pid = rp_proc_spawn (nbd, NULL, 0, lfd, log);
  ck_assert_int_gt (pid, 0);
  close (lfd);
  h = nbd_create ();
  ck_assert_ptr_nonnull (h);
  ck_assert_msg (nbd_connect_unix (h, sock) == 0, "%s (log: %s)",
                 nbd_get_error (), slurp (log));
  ck_assert_int_eq (nbd_get_size (h), 3 << 20);
  nbd_shutdown (h, 0);
  nbd_close (h);
  /* Without --persistent qemu-nbd leaves after its last client. */
  ck_assert_int_eq (rp_proc_stop (pid, 5000), 0);
}
END_TEST

START_TEST (test_unix_listen)
{
  char path[200], file[160];
  struct sockaddr_un sa;
  int fd, fd2;

  memset (path, 'x', sizeof path - 1);
  path[sizeof path - 1] = '\0';
  path[0] = '/';
  ck_assert_int_eq (rp_unix_listen (path), -1);
  ck_assert_int_eq (errno, ENAMETOOLONG);
  ck_assert_uint_gt (sizeof path, sizeof sa.sun_path);

  snprintf (path, sizeof path, "%s/s", dir);
  fd = rp_unix_listen (path);
  ck_assert_int_ge (fd, 0);
  ck_assert (fcntl (fd, F_GETFD) & FD_CLOEXEC);
  /* Live: refused rather than stolen from its owner. */
  ck_assert_int_eq (rp_unix_listen (path), -1);
  ck_assert_int_eq (errno, EADDRINUSE);
  /* Stale (owner gone, file left): replaced. */
  close (fd);
  fd2 = rp_unix_listen (path);
  ck_assert_int_ge (fd2, 0);
  close (fd2);
  /* Not a socket: left alone. */
  snprintf (file, sizeof file, "%s/f", dir);
  close (open (file, O_WRONLY | O_CREAT, 0600));
  ck_assert_int_eq (rp_unix_listen (file), -1);
  ck_assert_int_eq (errno, EEXIST);
  ck_assert_int_eq (access (file, F_OK), 0);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("proc");
  TCase *tc = tcase_create ("proc");
  if (!mkdtemp (topdir))
    {
      perror ("mkdtemp");
      return 1;
    }
  tcase_set_timeout (tc, 60);
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_test (tc, test_run_capture);
  tcase_add_test (tc, test_run_no_deadlock);
  tcase_add_test (tc, test_run_cwd_empty_signal);
  tcase_add_test (tc, test_run_lines);
  tcase_add_test (tc, test_nonexistent);
  tcase_add_test (tc, test_stop);
  tcase_add_test (tc, test_spawn_thread_exit);
  tcase_add_test (tc, test_parent_death);
  tcase_add_test (tc, test_spawn_fds_env);
  tcase_add_test (tc, test_spawn_malloc_tunables);
  tcase_add_test (tc, test_socket_activation);
  tcase_add_test (tc, test_unix_listen);
  tcase_add_test (tc, test_nice_of_caller);
  suite_add_tcase (s, tc);
  int failed = rp_check_run (s);
  {
    char *argv[] = { "rm", "-rf", topdir, NULL };
    rp_proc_run (argv, NULL, NULL, NULL);
  }
  return failed;
}
