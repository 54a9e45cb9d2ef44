/* Child processes.  rpfs is multi-threaded (FUSE workers), so between fork()
 * and exec() the child only calls async-signal-safe functions: everything
 * that allocates (the environment) is prepared in the parent, and exec
 * failures travel back over a close-on-exec pipe.
 *
 * fds 0, 1 and 2 of the parent must be open (rpfs points them at /dev/null
 * when daemonised), else the pipes and sockets land on them. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* What the child sets up before exec. */
struct child
{
  char *const *argv;
  char **envp;
  char *pidslot;                /* "LISTEN_PID=" + room for digits, or NULL */
  int fd0, fd1, fd2;            /* become 0, 1, 2; -1 for 1/2: inherit */
  int listen_fd;                /* becomes 3, or -1 */
  const int *keep;
  int nkeep;
  int hi;                       /* every target fd number is <= hi */
  int ep;                       /* exec-error pipe, write end */
  const char *cwd;
  pid_t parent;                 /* != 0: own group, die with the parent */
  int nice;                     /* the nice value of the thread that asked */
};

/* The environment minus sd_listen_fds's variables (never pass on our own
 * activation, if any), plus LISTEN_FDS=1 and a LISTEN_PID slot the child
 * fills in if LISTEN, and malloc tunables unless the caller has some. */
static char **
build_env (int listen, char **pidslot)
{
  size_t n = 0, i, j = 0;
  char **env;
  int tunables = 0;

  *pidslot = NULL;
  while (environ && environ[n])
    n++;
  if (!(env = calloc (n + 4, sizeof *env)))
    return NULL;
  for (i = 0; i < n; i++)
    {
      tunables |= strncmp (environ[i], "GLIBC_TUNABLES=", 15) == 0;
      if (strncmp (environ[i], "LISTEN_PID=", 11) != 0
          && strncmp (environ[i], "LISTEN_FDS=", 11) != 0
          && strncmp (environ[i], "LISTEN_FDNAMES=", 15) != 0)
        env[j++] = environ[i];
    }
  /* QEMU allocates a buffer for every NBD request (1 to 2 MiB here) and
   * frees it after; glibc's defaults map and unmap each one, so every
   * request faults its pages in again.  Keep them on the heap (about half
   * of qemu-storage-daemon's CPU time during a cp from the mount:
   * docs/performance.md).  A GLIBC_TUNABLES of the user's own wins. */
  if (!tunables)
    env[j++] = (char *) "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304"
      ":glibc.malloc.trim_threshold=33554432";
  if (listen)
    {
      if (!(*pidslot = calloc (1, 32)))
        {
          free (env);
          return NULL;
        }
      strcpy (*pidslot, "LISTEN_PID=");
      env[j++] = *pidslot;
      env[j++] = (char *) "LISTEN_FDS=1";
    }
  return env;
}

static void __attribute__ ((noreturn))
child_fail (int ep, int e)
{
  ssize_t r = write (ep, &e, sizeof e);

  (void) r;
  _exit (127);
}

/* Async-signal-safe from here to exec. */
static void __attribute__ ((noreturn))
child_exec (struct child *c)
{
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  sigset_t none;
  int ep, fd, lo, i;

  /* Move every fd we still need above all target numbers, so the dup2
   * calls below cannot overwrite one another (the caller's log file may sit
   * on 3, the listening socket on a number that one keep fd wants...). */
  if ((ep = fcntl (c->ep, F_DUPFD_CLOEXEC, c->hi + 1)) < 0)
    child_fail (c->ep, errno);
  if ((c->fd0 = fcntl (c->fd0, F_DUPFD_CLOEXEC, c->hi + 1)) < 0
      || (c->fd1 >= 0 && (c->fd1 = fcntl (c->fd1, F_DUPFD_CLOEXEC, c->hi + 1)) < 0)
      || (c->fd2 >= 0 && (c->fd2 = fcntl (c->fd2, F_DUPFD_CLOEXEC, c->hi + 1)) < 0)
      || (c->listen_fd >= 0
          && (c->listen_fd = fcntl (c->listen_fd, F_DUPFD_CLOEXEC,
                                    c->hi + 1)) < 0))
    child_fail (ep, errno);
  if (dup2 (c->fd0, 0) < 0
      || (c->fd1 >= 0 && dup2 (c->fd1, 1) < 0)
      || (c->fd2 >= 0 && dup2 (c->fd2, 2) < 0)
      || (c->listen_fd >= 0 && dup2 (c->listen_fd, 3) < 0))
    child_fail (ep, errno);
  for (fd = 1; fd <= 2; fd++)
    fcntl (fd, F_SETFD, 0);     /* inherited stdout/stderr stay open */
  /* Everything else closes at exec; the error pipe must live until then. */
  lo = c->listen_fd >= 0 ? 4 : 3;
  if (close_range (lo, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    {
      struct rlimit rl;
      int max = getrlimit (RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_cur < 65536 ? (int) rl.rlim_cur : 65536;

      for (fd = lo; fd < max; fd++)
        fcntl (fd, F_SETFD, FD_CLOEXEC);
    }
  for (i = 0; i < c->nkeep; i++)
    if (fcntl (c->keep[i], F_SETFD, 0) < 0)
      child_fail (ep, errno);

  /* A blocked or ignored signal survives exec: QEMU must see SIGTERM even if
   * the spawning thread blocks it (FUSE threads do). */
  for (i = 1; i < NSIG; i++)
    sigaction (i, &dfl, NULL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);

  if (c->cwd && chdir (c->cwd) < 0)
    child_fail (ep, errno);
  /* A daemon may be forked by the spawner thread: give it the priority of
   * the thread that asked, as a fork from that thread would (an export's
   * qemu-nbd runs at export-nice).  Best effort, as in that thread. */
  setpriority (PRIO_PROCESS, 0, c->nice);
  if (c->parent)
    {
      setpgid (0, 0);           /* so rp_proc_stop can signal the group */
      prctl (PR_SET_PDEATHSIG, SIGTERM);
      if (getppid () != c->parent)
        _exit (127);            /* parent died before prctl */
    }
  if (c->pidslot)
    {
      /* LISTEN_PID must be our own pid, known only now. */
      char digits[24];
      pid_t p = getpid ();
      int n = 0;
      char *s = c->pidslot + strlen (c->pidslot);

      do
        digits[n++] = '0' + p % 10;
      while ((p /= 10) > 0);
      while (n > 0)
        *s++ = digits[--n];
      *s = '\0';
    }
  execvpe (c->argv[0], c->argv, c->envp);
  child_fail (ep, errno);
}

/* Fork and run C in the child.  Returns the pid, or -1 with errno if fork or
 * exec failed (the child is then reaped).  Closes C->ep's pair. */
static pid_t
start (struct child *c, int ep[2])
{
  pid_t pid;
  int e = 0, saved;
  ssize_t r;

  c->ep = ep[1];
  pid = fork ();
  if (pid == 0)
    child_exec (c);
  saved = errno;
  close (ep[1]);
  if (pid < 0)
    {
      close (ep[0]);
      errno = saved;
      return -1;
    }
  do
    r = read (ep[0], &e, sizeof e);
  while (r < 0 && errno == EINTR);
  close (ep[0]);
  if (r == sizeof e)
    {
      while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
        ;
      errno = e;
      return -1;
    }
  return pid;
}

/* PR_SET_PDEATHSIG follows the forking THREAD, not the process: a daemon
 * forked by a FUSE worker would get SIGTERM when libfuse retires that idle
 * worker.  So daemons are forked by one helper thread that lives as long as
 * the process (made on first use, again in a forked child). */
static pthread_mutex_t sp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_cond = PTHREAD_COND_INITIALIZER;
static pid_t sp_owner;          /* process the helper runs in */
static bool sp_busy, sp_done;   /* a request is in progress / answered */
static struct child *sp_req;
static int *sp_ep, sp_errno;
static pid_t sp_pid;

static void *
spawner (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&sp_lock);
  for (;;)
    {
      struct child *c;

      while (!sp_req)
        pthread_cond_wait (&sp_cond, &sp_lock);
      c = sp_req;
      sp_req = NULL;
      pthread_mutex_unlock (&sp_lock);
      sp_pid = start (c, sp_ep);
      sp_errno = errno;
      pthread_mutex_lock (&sp_lock);
      sp_done = true;
      pthread_cond_broadcast (&sp_cond);
    }
  return NULL;
}

static pid_t
start_in_spawner (struct child *c, int ep[2])
{
  pid_t pid;
  int e;

  pthread_mutex_lock (&sp_lock);
  if (sp_owner != getpid ())
    {
      pthread_t t;
      pthread_attr_t a;
      sigset_t all, old;

      /* Signals are for the application's threads, not this one. */
      sigfillset (&all);
      pthread_sigmask (SIG_SETMASK, &all, &old);
      pthread_attr_init (&a);
      pthread_attr_setdetachstate (&a, PTHREAD_CREATE_DETACHED);
      e = pthread_create (&t, &a, spawner, NULL);
      pthread_attr_destroy (&a);
      pthread_sigmask (SIG_SETMASK, &old, NULL);
      if (e != 0)
        {
          pthread_mutex_unlock (&sp_lock);
          return start (c, ep);   /* better than not starting at all */
        }
      sp_owner = getpid ();
      sp_busy = false;
      sp_req = NULL;
    }
  while (sp_busy)
    pthread_cond_wait (&sp_cond, &sp_lock);
  sp_busy = true;
  sp_done = false;
  sp_req = c;
  sp_ep = ep;
  pthread_cond_broadcast (&sp_cond);
  while (!sp_done)
    pthread_cond_wait (&sp_cond, &sp_lock);
  pid = sp_pid;
  e = sp_errno;
  sp_busy = false;
  pthread_cond_broadcast (&sp_cond);
  pthread_mutex_unlock (&sp_lock);
  errno = e;
  return pid;
}

/* Linux keeps a nice value per thread. */
static int
thread_nice (void)
{
  errno = 0;
  int n = getpriority (PRIO_PROCESS, (id_t) gettid ());
  return errno ? 0 : n;
}

pid_t
rp_proc_spawn (char *const argv[], const int *keep_fds, int nkeep,
               int listen_fd, const char *logfile)
{
  struct child c = { .argv = argv, .fd1 = -1, .fd2 = -1,
                     .listen_fd = listen_fd, .keep = keep_fds,
                     .nkeep = nkeep, .hi = 10, .parent = getpid (),
                     .nice = thread_nice () };
  int ep[2], logfd = -1, i, saved;
  pid_t pid = -1;

  /* Keep fds stay at their numbers, so they cannot also be 0-2 or, with
   * socket activation, 3. */
  for (i = 0; i < nkeep; i++)
    {
      if (keep_fds[i] <= 2 || (listen_fd >= 0 && keep_fds[i] == 3))
        {
          errno = EINVAL;
          return -1;
        }
      if (keep_fds[i] > c.hi)
        c.hi = keep_fds[i];
    }
  c.fd0 = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (logfile)
    logfd = open (logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  c.fd1 = c.fd2 = logfd;
  c.envp = build_env (listen_fd >= 0, &c.pidslot);
  if (c.fd0 >= 0 && (!logfile || logfd >= 0) && c.envp
      && pipe2 (ep, O_CLOEXEC) == 0)
    pid = start_in_spawner (&c, ep);
  else if (!c.envp)
    errno = ENOMEM;
  saved = errno;
  if (c.fd0 >= 0)
    close (c.fd0);
  if (logfd >= 0)
    close (logfd);
  free (c.envp);
  free (c.pidslot);
  errno = saved;
  return pid;
}

struct buf
{
  char *p;
  size_t len, cap;
};

/* Read what is there on FD into B; false at EOF (or error). */
static int
buf_read (int fd, struct buf *b)
{
  ssize_t r;

  if (b->cap - b->len < 65536)
    {
      char *np = realloc (b->p, b->cap + 65536 + 1);

      if (!np)
        return 0;
      b->p = np;
      b->cap += 65536;
    }
  r = read (fd, b->p + b->len, b->cap - b->len);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return 1;
  if (r <= 0)
    return 0;
  b->len += r;
  return 1;
}

/* Hand B to *DST as a string (always non-NULL when DST), or drop it. */
static void
buf_give (struct buf *b, char **dst)
{
  if (!dst)
    {
      free (b->p);
      return;
    }
  if (!b->p)
    b->p = malloc (1);
  if (b->p)
    b->p[b->len] = '\0';
  *dst = b->p;
}

/* rp_proc_run_lines's consumer of stdout. */
struct lines
{
  int (*line) (void *opaque, char *line, size_t len);
  void *opaque;
  bool stopped;                 /* LINE said stop: the rest is dropped */
};

/* Hand the complete lines of B to L (all of it at EOF), keeping the rest. */
static void
lines_feed (struct buf *b, struct lines *l, bool eof)
{
  size_t at = 0;

  while (!l->stopped && at < b->len)
    {
      char *nl = memchr (b->p + at, '\n', b->len - at);
      size_t n = nl ? (size_t) (nl - (b->p + at)) : b->len - at;

      if (!nl && !eof)
        break;
      b->p[at + n] = '\0';     /* buf_read keeps a byte spare */
      if (l->line (l->opaque, b->p + at, n) != 0)
        l->stopped = true;
      at += n + (nl ? 1 : 0);
    }
  if (l->stopped)
    at = b->len;
  memmove (b->p, b->p + at, b->len - at);
  b->len -= at;
}

static int run_child (char *const argv[], const char *cwd, char **out,
                      struct lines *lines, char **err);

int
rp_proc_run (char *const argv[], const char *cwd, char **out, char **err)
{
  return run_child (argv, cwd, out, NULL, err);
}

int
rp_proc_run_lines (char *const argv[], int (*line) (void *, char *, size_t),
                   void *opaque, char **err)
{
  struct lines l = { .line = line, .opaque = opaque };
  int r = run_child (argv, NULL, NULL, &l, err);

  return r == 0 && l.stopped ? -2 : r;
}

static int
run_child (char *const argv[], const char *cwd, char **out,
           struct lines *lines, char **err)
{
  struct child c = { .argv = argv, .fd1 = -1, .fd2 = -1, .listen_fd = -1,
                     .hi = 2, .cwd = cwd, .nice = thread_nice () };
  struct buf b[2] = { { 0 }, { 0 } };
  struct pollfd p[2] = { { .fd = -1 }, { .fd = -1 } };
  int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, ep[2], status, saved, i;
  pid_t pid = -1;

  if (out)
    *out = NULL;
  if (err)
    *err = NULL;
  c.fd0 = open ("/dev/null", O_RDWR | O_CLOEXEC);
  c.envp = build_env (0, &c.pidslot);
  /* Uncaptured streams go to /dev/null: rpfs's own stdout is no place. */
  if (c.fd0 >= 0 && c.envp
      && (!(out || lines) || pipe2 (po, O_CLOEXEC) == 0)
      && (!err || pipe2 (pe, O_CLOEXEC) == 0)
      && pipe2 (ep, O_CLOEXEC) == 0)
    {
      c.fd1 = out || lines ? po[1] : c.fd0;
      c.fd2 = err ? pe[1] : c.fd0;
      pid = start (&c, ep);
    }
  else if (!c.envp)
    errno = ENOMEM;
  saved = errno;
  if (c.fd0 >= 0)
    close (c.fd0);
  free (c.envp);
  for (i = 0; i < 2; i++)
    {
      int *pp = i ? pe : po;

      if (pp[1] >= 0)
        close (pp[1]);
      if (pid < 0 && pp[0] >= 0)
        close (pp[0]);
    }
  if (pid < 0)
    {
      errno = saved;
      return -1;
    }

  /* Drain both pipes together: a child filling stderr while we block on
   * stdout would never finish. */
  p[0].fd = po[0];
  p[1].fd = pe[0];
  p[0].events = p[1].events = POLLIN;
  while (p[0].fd >= 0 || p[1].fd >= 0)
    {
      if (poll (p, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      for (i = 0; i < 2; i++)
        if (p[i].fd >= 0 && p[i].revents && !buf_read (p[i].fd, &b[i]))
          {
            close (p[i].fd);
            p[i].fd = -1;       /* poll ignores negative fds */
          }
      if (lines && b[0].len)
        lines_feed (&b[0], lines, p[0].fd < 0);
    }
  for (i = 0; i < 2; i++)
    if (p[i].fd >= 0)
      close (p[i].fd);
  while (waitpid (pid, &status, 0) < 0)
    if (errno != EINTR)
      {
        status = -1;
        break;
      }
  buf_give (&b[0], out);
  buf_give (&b[1], err);
  return status != -1 && WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

bool
rp_proc_alive (pid_t pid)
{
  pid_t r;

  if (pid <= 0)
    return false;
  while ((r = waitpid (pid, NULL, WNOHANG)) < 0 && errno == EINTR)
    ;
  return r == 0;                /* pid: just reaped; -1 ECHILD: long gone */
}

/* Wait up to TIMEOUT_MS for PID to exit, checking every 10 ms. */
static bool
wait_exit (pid_t pid, int timeout_ms)
{
  struct timespec tick = { 0, 10 * 1000 * 1000 };
  int waited = 0;

  for (;;)
    {
      if (!rp_proc_alive (pid))
        return true;
      if (waited >= timeout_ms)
        return false;
      nanosleep (&tick, NULL);
      waited += 10;
    }
}

int
rp_proc_stop (pid_t pid, int timeout_ms)
{
  if (wait_exit (pid, timeout_ms))
    return 0;
  /* Spawned children lead their own group; others get a direct signal. */
  if (kill (-pid, SIGTERM) < 0)
    kill (pid, SIGTERM);
  if (wait_exit (pid, timeout_ms))
    return 1;
  if (kill (-pid, SIGKILL) < 0)
    kill (pid, SIGKILL);
  while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
    ;
  return 2;
}

int
rp_unix_listen (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  struct stat st;
  int fd, saved;

  if (strlen (path) >= sizeof sa.sun_path)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  strcpy (sa.sun_path, path);
  /* Remove only a stale socket: a live one means another daemon (say a
   * QEMU left over from a crashed rpfs) still serves it, and any other kind
   * of file is not ours to delete. */
  if (lstat (path, &st) == 0)
    {
      int probe;

      if (!S_ISSOCK (st.st_mode))
        {
          errno = EEXIST;
          return -1;
        }
      probe = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (probe < 0)
        return -1;
      if (connect (probe, (struct sockaddr *) &sa, sizeof sa) == 0
          || errno == EAGAIN)
        {
          close (probe);
          errno = EADDRINUSE;
          return -1;
        }
      close (probe);
      if (unlink (path) < 0 && errno != ENOENT)
        return -1;
    }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0
      || listen (fd, SOMAXCONN) < 0)
    {
      saved = errno;
      close (fd);
      errno = saved;
      return -1;
    }
  return fd;
}

int
rp_unix_connect (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd, saved;

  if (strlen (path) >= sizeof sa.sun_path)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  strcpy (sa.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0)
    {
      saved = errno;
      close (fd);
      errno = saved;
      return -1;
    }
  return fd;
}
