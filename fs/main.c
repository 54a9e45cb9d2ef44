/* rpfs: command line, start-up, detaching, shutdown.
 *
 *   rpfs --store DIR [-f] [-d] [-o FUSE_OPTIONS] MOUNTPOINT
 *
 * Start-up order, and why:
 * 1. rp_core_open validates the store (no processes, no threads), so a bad
 *    definition file fails at once with its message and exit status 1.
 * 2. fuse_new parses the FUSE options (bad -o fails here).
 * 3. Without -f we fork now, before any thread exists (fork after threads
 *    is unsafe, and rp_core_start starts processes and threads), but keep
 *    the parent waiting on a pipe: the child mounts, starts the core and
 *    writes one status byte; the parent exits 0 or 1 with it.  So
 *    start-up errors still reach the terminal and the exit status, which
 *    fuse_daemonize (it reports success before we know) cannot give.
 * 4. fuse_mount, then rp_core_start (on failure: unmount, message, exit 1),
 *    then the notifier (inotify emulation), then the FUSE loop.
 *
 * Shutdown (signal or fusermount3 -u): the loop returns; the notifier stops
 * starting VFS operations; unmount (this also ends an operation the
 * notifier has in flight, which no FUSE worker will serve any more); join
 * the notifier; rp_core_close terminates jobs and stops QEMU; free. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include <fuse_lowlevel.h>      /* fuse_parse_cmdline, fuse_session_exit */

#include "notify.h"

enum { KEY_STORE, KEY_HELP, KEY_VERSION };

struct cmdline {
  char *store;
  bool help;
  bool version;
};

static const struct fuse_opt rpfs_opts[] = {
  /* Matches "--store DIR" (FUSE passes "--storeDIR") and "--store=DIR". */
  FUSE_OPT_KEY ("--store %s", KEY_STORE),
  FUSE_OPT_KEY ("-h", KEY_HELP),
  FUSE_OPT_KEY ("--help", KEY_HELP),
  FUSE_OPT_KEY ("-V", KEY_VERSION),
  FUSE_OPT_KEY ("--version", KEY_VERSION),
  FUSE_OPT_END
};

static int
opt_proc (void *data, const char *arg, int key, struct fuse_args *outargs)
{
  struct cmdline *cl = data;
  const char *v;

  (void) outargs;
  switch (key) {
  case KEY_STORE:
    v = arg + strlen ("--store");
    if (*v == '=')
      v++;
    free (cl->store);
    cl->store = strdup (v);
    return cl->store ? 0 : -1;
  case KEY_HELP:
    cl->help = true;
    return 0;
  case KEY_VERSION:
    cl->version = true;
    return 0;
  default:
    return 1;                   /* keep: for fuse_parse_cmdline / fuse_new */
  }
}

static void
usage (FILE *f, const char *prog)
{
  fprintf (f,
           "usage: %s --store DIR [-f] [-d] [-o FUSE_OPTIONS] MOUNTPOINT\n"
           "\n"
           "rpfs options:\n"
           "    --store DIR            virtual system definitions and state\n"
           "\n", prog);
}

/* ---- signals ----
 * Not fuse_set_signal_handlers: its handler only marks the session as
 * exiting, and the loop notices when the signal interrupts the thread
 * waiting in it.  A signal landing on a core thread would leave the mount
 * hanging until the next request.  Ours forwards such a signal to the main
 * thread.  No SA_RESTART while the loop runs, so its sem_wait returns;
 * with SA_RESTART afterwards, so a second ^C does not interrupt shutdown. */

static struct fuse_session *signal_se;
static pthread_t main_thread;

static void
on_signal (int sig)
{
  int saved = errno;

  if (signal_se)
    fuse_session_exit (signal_se);
  if (!pthread_equal (pthread_self (), main_thread))
    pthread_kill (main_thread, sig);
  errno = saved;
}

static void
set_signals (struct fuse_session *se, int flags)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa = { .sa_handler = on_signal, .sa_flags = flags };
  size_t i;

  signal_se = se;
  main_thread = pthread_self ();
  sigemptyset (&sa.sa_mask);
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction (sigs[i], &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, NULL);
}

/* ---- detaching ---- */

/* Fork; the parent waits for the child's status byte and exits with it.
 * Returns the pipe's write end in the child. */
static int
detach (void)
{
  int fds[2];
  pid_t pid;
  ssize_t r;
  char c = 1;

  if (pipe2 (fds, O_CLOEXEC) == -1) {
    perror ("rpfs: pipe");
    exit (EXIT_FAILURE);
  }
  fflush (NULL);
  pid = fork ();
  if (pid == -1) {
    perror ("rpfs: fork");
    exit (EXIT_FAILURE);
  }
  if (pid > 0) {
    close (fds[1]);
    do
      r = read (fds[0], &c, 1);
    while (r == -1 && errno == EINTR);
    /* No byte: the child died before reporting. */
    _exit (r == 1 && c == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
  }
  close (fds[0]);
  setsid ();
  return fds[1];
}

/* Tell the waiting parent (if any) how start-up went; on success let go of
 * the terminal first, so nothing is written there once the parent exits. */
static void
report (int *fd, int status)
{
  char c = status;
  int null;

  if (*fd == -1)
    return;
  if (status == 0) {
    if (chdir ("/") == -1) {
      /* Harmless: all our paths are absolute. */
    }
    null = open ("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2 (null, STDIN_FILENO);
      dup2 (null, STDOUT_FILENO);
      dup2 (null, STDERR_FILENO);
      if (null > STDERR_FILENO)
        close (null);
    }
  }
  if (write (*fd, &c, 1) != 1) {
    /* The parent is gone: nobody to tell. */
  }
  close (*fd);
  *fd = -1;
}

/* ---- main ---- */

static int
run (struct fuse *fuse, struct fs_state *fs, const char *mountpoint,
     const struct fuse_cmdline_opts *cmd, int *status_fd)
{
  struct fuse_session *se = fuse_get_session (fuse);
  char *err = NULL;
  int r;

  set_signals (se, 0);
  if (fuse_mount (fuse, mountpoint) != 0)
    return -1;                  /* libfuse said why */
  if (rp_core_start (fs->core, &err) == -1) {
    fuse_unmount (fuse);
    fprintf (stderr, "rpfs: %s\n", err ? err : "cannot start");
    free (err);
    return -1;
  }

  fs->notifier = fs_notifier_new (mountpoint, fs->debug);
  if (fs->notifier == NULL || fs_notifier_start (fs->notifier) < 0) {
    fprintf (stderr, "rpfs: cannot start the notifier thread\n");
    fuse_unmount (fuse);
    return -1;
  }
  rp_core_set_notify (fs->core, fs_notifier_event, fs->notifier);

  report (status_fd, 0);
  if (cmd->singlethread)
    r = fuse_loop (fuse);
  else
    r = fuse_loop_mt (fuse, cmd->clone_fd);
  set_signals (se, SA_RESTART);

  fs_notifier_quiesce (fs->notifier);
  fuse_unmount (fuse);
  fs_notifier_stop (fs->notifier);
  return r < 0 ? -1 : 0;
}

/* libfuse allocates and frees a reply buffer of up to 1 MiB for every read
 * of a disk.  glibc's defaults would serve it by mmap, or return it to the
 * kernel at free (the trim threshold follows the mmap threshold), and fault
 * in fresh pages for the next read: on the VM measured that made rpfs use
 * 25 % more CPU for the same cp (docs/performance.md).  Keep such buffers
 * on the heap and reuse them. */
static void
tune_malloc (void)
{
  mallopt (M_MMAP_THRESHOLD, 4 << 20);
  mallopt (M_TRIM_THRESHOLD, 32 << 20);
}

int
main (int argc, char *argv[])
{
  struct fuse_args args = FUSE_ARGS_INIT (argc, argv);
  struct fuse_cmdline_opts cmd = { 0 };
  struct cmdline cl = { 0 };
  struct fs_state fs = { 0 };
  struct fuse *fuse = NULL;
  char *store = NULL, *err = NULL;
  int status_fd = -1, ret = EXIT_FAILURE;

  tune_malloc ();
  if (fuse_opt_parse (&args, &cl, rpfs_opts, opt_proc) == -1)
    goto out;
  if (cl.help) {
    usage (stdout, argv[0]);
    fuse_cmdline_help ();
    fuse_lib_help (&args);
    ret = EXIT_SUCCESS;
    goto out;
  }
  if (cl.version) {
    printf ("%s\n", RPFS_VERSION);
    ret = EXIT_SUCCESS;
    goto out;
  }

  /* Defaults first, so the user's -o fsname=/subtype= win. */
  if (fuse_opt_insert_arg (&args, 1, "-ofsname=rpfs,subtype=rpfs") == -1 ||
      fuse_parse_cmdline (&args, &cmd) == -1)
    goto out;
  if (cmd.mountpoint == NULL || cl.store == NULL) {
    fprintf (stderr, "rpfs: %s\n",
             cl.store ? "no mount point given" : "--store DIR is required");
    usage (stderr, argv[0]);
    goto out;
  }
  /* Absolute, because the detached daemon runs in /. */
  store = realpath (cl.store, NULL);
  if (store == NULL) {
    fprintf (stderr, "rpfs: %s: %m\n", cl.store);
    goto out;
  }

  fs.core = rp_core_open (store, cmd.mountpoint, &err);
  if (fs.core == NULL) {
    fprintf (stderr, "rpfs: %s\n", err ? err : "cannot open the store");
    goto out;
  }
  fs.uid = getuid ();
  fs.gid = getgid ();
  fs.start = time (NULL);
  fs.debug = cmd.debug;

  fuse = fuse_new (&args, &fs_operations, sizeof fs_operations, &fs);
  if (fuse == NULL)
    goto out;
  if (!cmd.foreground)
    status_fd = detach ();

  if (run (fuse, &fs, cmd.mountpoint, &cmd, &status_fd) == 0)
    ret = EXIT_SUCCESS;

 out:
  report (&status_fd, ret == EXIT_SUCCESS ? 0 : 1);  /* if not done yet */
  if (fs.core)
    rp_core_close (fs.core);
  fs_notifier_free (fs.notifier);
  if (fuse)
    fuse_destroy (fuse);
  free (err);
  free (store);
  free (cl.store);
  free (cmd.mountpoint);
  fuse_opt_free_args (&args);
  return ret;
}
