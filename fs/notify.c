/* rpfs FUSE frontend: inotify emulation.
 *
 * Why: a FUSE daemon cannot raise inotify events itself; the kernel raises
 * them only for operations that go through the VFS.  Changes that happen
 * inside the core (a job's JobState moves, a reference point appears
 * through the CreateReferencePoint method file) never pass through the VFS,
 * so watchers would see nothing.  So we make them pass: a notifier thread
 * performs a real operation on the mount and the kernel emits the real event:
 *
 *   RP_EV_MODIFIED, file        open(O_WRONLY) + write("\n") + close
 *                               -> IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE
 *   RP_EV_MODIFIED, dir / link  utimensat(NULL)            -> IN_ATTRIB
 *   RP_EV_CREATED,  dir         mkdir                      -> IN_CREATE
 *   RP_EV_CREATED,  link        symlink                    -> IN_CREATE
 *   RP_EV_CREATED,  file        as MODIFIED
 *   RP_EV_DELETED,  dir         rmdir                      -> IN_DELETE
 *   RP_EV_DELETED,  file / link unlink                     -> IN_DELETE
 *
 * The operation itself is made by a small child process ("the hand"), not
 * by a thread of the daemon: a thread of a FUSE daemon blocked in a request
 * on its own mount keeps the daemon from ever exiting after SIGKILL (its
 * /dev/fuse fd closes only when every thread is gone, and that request waits
 * uninterruptibly for the dead daemon).  A separate process lets the daemon
 * die; the connection then aborts and the hand's call fails and it exits.
 * The hand makes only async-signal-safe system calls (it is forked from a
 * threaded process).
 *
 * The FUSE callbacks recognise these requests by the caller's pid
 * (fuse_get_context()->pid: the hand is single-threaded) and accept
 * them without changing anything.  mkdir of a node that already exists
 * would fail in the VFS (EEXIST) before reaching us, and rmdir of a node that
 * is already gone would fail its lookup, so while the notifier works on
 * PATH, getattr pretends to the notifier alone that PATH is absent (HIDE) or
 * still present (GHOST), until the mkdir / rmdir arrives (fs_notifier_done).
 *
 * Thread model:
 * - fs_notifier_event is the core's callback.  It runs on any thread, also
 *   on a FUSE worker in the middle of a request, so it must never wait for
 *   the mount: it only appends to a bounded queue under n->lock (dropping
 *   exact duplicates that are still queued, and dropping events when full)
 *   and signals n->cond.
 * - One notifier thread takes events one at a time and performs the VFS
 *   operation with no lock held.  The operation is served by the FUSE
 *   workers like any other request; nobody ever waits for the notifier, so
 *   there is no cycle.
 * - n->cur (the event in flight) is read by the FUSE callbacks under n->lock.
 * - Shutdown: quiesce (no new events or operations) before unmounting; join
 *   after unmounting, because once the FUSE loop has stopped, an operation
 *   in flight returns only when the connection is torn down.  Memory is
 *   freed after rp_core_close, as a core thread may still be inside the
 *   callback.
 * - After an unmount, MOUNT/path names the directory underneath.  All our
 *   paths are at least two levels deep (<sys>/referencepoints/<rp>,
 *   jobs/<id>/...), which do not exist in an (empty) mount point directory,
 *   so a late operation fails there harmlessly.
 * - The thread blocks all signals: SIGINT/SIGTERM are for the main thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "notify.h"

/* Queue bound: jobs report PercentComplete often; duplicates coalesce, so
 * only many distinct paths at once can fill it. */
#define QUEUE_MAX 512
/* Pending expectations (mkdir / rmdir in flight through the mount). */
#define EXPECT_MAX 64
/* How long an expectation waits for the core's echo. */
#define EXPECT_SECONDS 10

struct event {
  enum rp_event ev;
  char *path;                   /* relative to the mount point */
};

struct expect {
  enum rp_event ev;
  char *path;
  time_t deadline;              /* CLOCK_MONOTONIC seconds */
};

struct fs_notifier {
  char *mountpoint;
  bool debug;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t thread;
  bool started;
  bool stopping;
  pid_t tid;                    /* the hand's pid, 0 before it runs */
  int sock;                     /* SOCK_SEQPACKET to the hand */

  struct event queue[QUEUE_MAX];        /* ring */
  size_t head, count;
  unsigned long dropped;

  struct expect expect[EXPECT_MAX];
  size_t nexpect;

  /* The operation in flight. */
  struct {
    char *path;                 /* NULL: none */
    enum fs_self self;          /* FS_SELF_HIDE / GHOST until done */
    mode_t mode;                /* for GHOST */
  } cur;
};

static const char *
rel (const char *path)
{
  while (*path == '/')
    path++;
  return path;
}

static time_t
now_mono (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

struct fs_notifier *
fs_notifier_new (const char *mountpoint, bool debug)
{
  struct fs_notifier *n = calloc (1, sizeof *n);

  if (n == NULL)
    return NULL;
  n->mountpoint = strdup (mountpoint);
  if (n->mountpoint == NULL) {
    free (n);
    return NULL;
  }
  n->debug = debug;
  pthread_mutex_init (&n->lock, NULL);
  pthread_cond_init (&n->cond, NULL);
  return n;
}

/* ---- the core's side ---- */

static void
expect_remove (struct fs_notifier *n, size_t i)
{
  free (n->expect[i].path);
  n->expect[i] = n->expect[--n->nexpect];
}

/* Called with n->lock held.  True when EV on PATH is the echo of a change
 * made through the mount (the expectation is used up).  Also forgets
 * expired expectations, and those for PATH that this event makes stale (a
 * DELETED after an expected CREATED that never came, and vice versa). */
static bool
expect_consume (struct fs_notifier *n, enum rp_event ev, const char *path)
{
  time_t now = now_mono ();
  bool hit = false;
  size_t i = 0;

  while (i < n->nexpect) {
    struct expect *e = &n->expect[i];
    bool same = strcmp (e->path, path) == 0;

    if (e->deadline < now)
      expect_remove (n, i);
    else if (same && e->ev == ev && !hit) {
      hit = true;
      expect_remove (n, i);
    }
    else if (same && e->ev != ev && ev != RP_EV_MODIFIED)
      expect_remove (n, i);
    else
      i++;
  }
  return hit;
}

void
fs_notifier_event (void *opaque, enum rp_event ev, const char *path)
{
  struct fs_notifier *n = opaque;
  size_t i;
  char *copy;

  path = rel (path);
  pthread_mutex_lock (&n->lock);
  if (n->stopping || expect_consume (n, ev, path))
    goto out;
  for (i = 0; i < n->count; i++) {
    struct event *e = &n->queue[(n->head + i) % QUEUE_MAX];

    if (e->ev == ev && strcmp (e->path, path) == 0)
      goto out;                 /* still queued: one operation serves both */
  }
  if (n->count == QUEUE_MAX || (copy = strdup (path)) == NULL) {
    n->dropped++;
    goto out;
  }
  n->queue[(n->head + n->count) % QUEUE_MAX] =
    (struct event) { .ev = ev, .path = copy };
  n->count++;
  pthread_cond_signal (&n->cond);
 out:
  pthread_mutex_unlock (&n->lock);
}

void
fs_notifier_expect (struct fs_notifier *n, enum rp_event ev, const char *path)
{
  char *copy;

  if (n == NULL)
    return;
  path = rel (path);
  pthread_mutex_lock (&n->lock);
  expect_consume (n, (enum rp_event) -1, "");   /* expire old ones */
  if (n->nexpect < EXPECT_MAX && (copy = strdup (path)) != NULL)
    n->expect[n->nexpect++] = (struct expect) {
      .ev = ev, .path = copy, .deadline = now_mono () + EXPECT_SECONDS,
    };
  pthread_mutex_unlock (&n->lock);
}

void
fs_notifier_unexpect (struct fs_notifier *n, enum rp_event ev,
                      const char *path)
{
  size_t i;

  if (n == NULL)
    return;
  path = rel (path);
  pthread_mutex_lock (&n->lock);
  for (i = 0; i < n->nexpect; i++)
    if (n->expect[i].ev == ev && strcmp (n->expect[i].path, path) == 0) {
      expect_remove (n, i);
      break;
    }
  pthread_mutex_unlock (&n->lock);
}

/* ---- the FUSE callbacks' side ---- */

enum fs_self
fs_notifier_check (struct fs_notifier *n, pid_t pid, const char *path,
                   mode_t *mode)
{
  enum fs_self r = FS_SELF_NO;

  if (n == NULL || pid == 0)
    return FS_SELF_NO;
  pthread_mutex_lock (&n->lock);
  if (pid == n->tid) {
    r = FS_SELF_PLAIN;
    if (n->cur.path && path && strcmp (n->cur.path, rel (path)) == 0) {
      r = n->cur.self;
      if (mode)
        *mode = n->cur.mode;
    }
  }
  pthread_mutex_unlock (&n->lock);
  return r;
}

void
fs_notifier_done (struct fs_notifier *n, const char *path)
{
  if (n == NULL)
    return;
  pthread_mutex_lock (&n->lock);
  if (n->cur.path && strcmp (n->cur.path, rel (path)) == 0)
    n->cur.self = FS_SELF_PLAIN;
  pthread_mutex_unlock (&n->lock);
}

/* ---- the notifier thread ---- */

enum op { OP_WRITE, OP_TOUCH, OP_MKDIR, OP_SYMLINK, OP_RMDIR, OP_UNLINK };

static const char *const op_names[] = {
  "write", "utimensat", "mkdir", "symlink", "rmdir", "unlink",
};

/* Choose the operation for EV on PATH, and what getattr must pretend. */
static enum op
choose (enum rp_event ev, const char *path, enum fs_self *self, mode_t *mode)
{
  struct fs_path p;
  enum fs_kind kind = fs_path_parse (path, NULL, &p);
  bool dir = fs_kind_is_dir (kind), link = kind == FS_RP_JOBLINK;

  *self = FS_SELF_PLAIN;
  *mode = 0;
  switch (ev) {
  case RP_EV_CREATED:
    if (dir || link) {
      *self = FS_SELF_HIDE;
      return dir ? OP_MKDIR : OP_SYMLINK;
    }
    return OP_WRITE;
  case RP_EV_DELETED:
    *self = FS_SELF_GHOST;
    *mode = dir ? S_IFDIR | 0755 : link ? S_IFLNK | 0777 : S_IFREG | 0444;
    return dir ? OP_RMDIR : OP_UNLINK;
  case RP_EV_MODIFIED:
  default:
    return dir || link ? OP_TOUCH : OP_WRITE;
  }
}

static int
do_op (enum op op, const char *abs)
{
  int fd, r = 0;

  switch (op) {
  case OP_WRITE:
    fd = open (abs, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd == -1)
      return -1;
    if (write (fd, "\n", 1) != 1)
      r = -1;
    if (close (fd) == -1)
      r = -1;
    return r;
  case OP_TOUCH:
    return utimensat (AT_FDCWD, abs, NULL, AT_SYMLINK_NOFOLLOW);
  case OP_MKDIR:
    return mkdir (abs, 0755);
  case OP_SYMLINK:
    /* The target is not used: the symlink callback ignores it. */
    return symlink ("job", abs);
  case OP_RMDIR:
    return rmdir (abs);
  case OP_UNLINK:
    return unlink (abs);
  }
  return 0;
}

/* The hand: one request (op byte + absolute path) in, one reply
 * (result, errno) out, until the socket closes. */
static void __attribute__ ((noreturn))
hand_main (int sock)
{
  char req[4097];
  for (;;) {
    ssize_t len = recv (sock, req, sizeof req - 1, 0);
    if (len <= 1)
      _exit (0);
    req[len] = 0;
    int reply[2];
    reply[0] = do_op ((enum op) req[0], req + 1);
    reply[1] = reply[0] == -1 ? errno : 0;
    if (send (sock, reply, sizeof reply, MSG_NOSIGNAL) != sizeof reply)
      _exit (0);
  }
}

/* Ask the hand to perform OP on ABS; returns its result with errno set. */
static int
hand_op (struct fs_notifier *n, enum op op, const char *abs)
{
  char req[4097];
  size_t len = strlen (abs);
  int reply[2];
  if (len + 2 > sizeof req) {
    errno = ENAMETOOLONG;
    return -1;
  }
  req[0] = (char) op;
  memcpy (req + 1, abs, len + 1);
  if (send (n->sock, req, len + 1, MSG_NOSIGNAL) == -1
      || recv (n->sock, reply, sizeof reply, 0) != sizeof reply)
    return -1;
  errno = reply[1];
  return reply[0];
}

static void
perform (struct fs_notifier *n, const struct event *e)
{
  enum fs_self self;
  mode_t mode;
  enum op op = choose (e->ev, e->path, &self, &mode);
  AUTO_FREE char *abs = NULL;
  int r;

  if (asprintf (&abs, "%s/%s", n->mountpoint, e->path) == -1) {
    abs = NULL;
    return;
  }

  pthread_mutex_lock (&n->lock);
  if (n->stopping) {
    pthread_mutex_unlock (&n->lock);
    return;
  }
  n->cur.path = e->path;
  n->cur.self = self;
  n->cur.mode = mode;
  pthread_mutex_unlock (&n->lock);

  r = hand_op (n, op, abs);
  /* Without write permission (-o default_permissions as a user) the owner
   * may still set times: IN_ATTRIB is better than nothing. */
  if (r == -1 && op == OP_WRITE && errno == EACCES)
    r = hand_op (n, op = OP_TOUCH, abs);
  if (r == -1 && n->debug)
    fprintf (stderr, "rpfs: inotify emulation: %s %s: %m\n",
             op_names[op], abs);

  pthread_mutex_lock (&n->lock);
  n->cur.path = NULL;
  pthread_mutex_unlock (&n->lock);
}

static void *
notifier_thread (void *arg)
{
  struct fs_notifier *n = arg;
  struct event e;

  pthread_mutex_lock (&n->lock);
  for (;;) {
    while (!n->stopping && n->count == 0)
      pthread_cond_wait (&n->cond, &n->lock);
    if (n->stopping)
      break;
    e = n->queue[n->head];
    n->head = (n->head + 1) % QUEUE_MAX;
    n->count--;
    pthread_mutex_unlock (&n->lock);

    perform (n, &e);
    free (e.path);

    pthread_mutex_lock (&n->lock);
  }
  pthread_mutex_unlock (&n->lock);
  return NULL;
}

int
fs_notifier_start (struct fs_notifier *n)
{
  sigset_t all, old;
  int err;

  int sv[2];
  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
    return -errno;
  pid_t ppid = getpid ();
  pid_t pid = fork ();
  if (pid == -1) {
    err = errno;
    close (sv[0]);
    close (sv[1]);
    return -err;
  }
  if (pid == 0) {
    /* Keep nothing of the daemon's: holding its /dev/fuse fd would keep the
     * connection alive after the daemon died. */
    if (dup2 (sv[1], 3) == -1)
      _exit (1);
    close_range (4, ~0U, 0);
    sv[1] = 3;
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != ppid)
      _exit (0);
    hand_main (sv[1]);
  }
  close (sv[1]);
  n->sock = sv[0];
  n->tid = pid;

  /* The thread inherits the mask: create it with every signal blocked. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  err = pthread_create (&n->thread, NULL, notifier_thread, n);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (err)
    return -err;
  n->started = true;
  return 0;
}

void
fs_notifier_quiesce (struct fs_notifier *n)
{
  if (n == NULL)
    return;
  pthread_mutex_lock (&n->lock);
  n->stopping = true;
  pthread_cond_broadcast (&n->cond);
  pthread_mutex_unlock (&n->lock);
}

void
fs_notifier_stop (struct fs_notifier *n)
{
  if (n == NULL)
    return;
  fs_notifier_quiesce (n);
  if (n->started) {
    pthread_join (n->thread, NULL);
    n->started = false;
    close (n->sock);            /* the hand exits on EOF */
    while (waitpid (n->tid, NULL, 0) == -1 && errno == EINTR)
      ;
  }
}

void
fs_notifier_free (struct fs_notifier *n)
{
  if (n == NULL)
    return;
  fs_notifier_stop (n);
  while (n->count) {
    free (n->queue[n->head].path);
    n->head = (n->head + 1) % QUEUE_MAX;
    n->count--;
  }
  while (n->nexpect)
    expect_remove (n, 0);
  if (n->debug && n->dropped)
    fprintf (stderr, "rpfs: inotify emulation: %lu events dropped\n",
             n->dropped);
  pthread_cond_destroy (&n->cond);
  pthread_mutex_destroy (&n->lock);
  free (n->mountpoint);
  free (n);
}
