/* Child processes (qemu-storage-daemon, qemu-nbd, qemu-img, sha256sum). */
#ifndef RPFS_PROC_H
#define RPFS_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* Start ARGV[0] (searched in PATH) with the given fds kept open at the same
 * numbers (all other fds closed, stdin /dev/null, stdout and stderr to
 * LOGFILE appended, or inherited if NULL), in its own process group, with
 * PR_SET_PDEATHSIG SIGTERM, at the nice value of the calling thread (whichever
 * thread forks it).  If LISTEN_FD >= 0 it is passed by systemd socket
 * activation (dup'd to fd 3, LISTEN_PID/LISTEN_FDS set).  Returns the pid or
 * -1 with errno (exec failures included; EINVAL if a keep fd is 0-2, or 3
 * together with LISTEN_FD).  Returns after the exec. */
pid_t rp_proc_spawn (char *const argv[], const int *keep_fds, int nkeep,
                     int listen_fd, const char *logfile);
/* Run a command to completion; stdout into *OUT if OUT (caller frees), stderr
 * into *ERR if ERR (caller frees).  Returns the exit status (0..255), or -1
 * if it could not run or was killed by a signal.  CWD may be NULL.
 * Could not run (e.g. no such program): -1 with errno, *OUT and *ERR NULL.
 * Killed: -1, *OUT and *ERR hold what it wrote.  Streams not captured go to
 * /dev/null. */
int rp_proc_run (char *const argv[], const char *cwd, char **out, char **err);
/* rp_proc_run, handing each line of stdout (without its newline, NUL
 * terminated, writable) to LINE as it comes, with constant memory.  LINE
 * returns non-zero to stop: the rest of the output is dropped (the command
 * still runs to its end) and an exit status of 0 becomes -2. */
int rp_proc_run_lines (char *const argv[],
                       int (*line) (void *opaque, char *line, size_t len),
                       void *opaque, char **err);
/* true while PID has not exited (reaps it if it has). */
bool rp_proc_alive (pid_t pid);
/* Wait up to TIMEOUT_MS for PID to exit; then SIGTERM and wait TIMEOUT_MS,
 * then SIGKILL.  Returns 0 if it exited by itself, 1 if it needed TERM, 2 if
 * it needed KILL. */
int rp_proc_stop (pid_t pid, int timeout_ms);

/* Create a listening Unix socket at PATH (removing a stale one).  Returns the
 * fd or -1 with errno.  PATH longer than sun_path: -1, ENAMETOOLONG.  A
 * socket someone still listens on: EADDRINUSE; a non-socket: EEXIST. */
int rp_unix_listen (const char *path);
/* Connect to the Unix socket at PATH.  Returns the fd (close-on-exec) or -1
 * with errno. */
int rp_unix_connect (const char *path);

#endif
