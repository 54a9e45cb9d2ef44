/* Acting for a caller.  rpfs runs as root for unprivileged callers; a path a
 * caller names is resolved once, by this thread under the caller's file
 * system identity (fsuid, fsgid and supplementary groups), into a
 * descriptor, and everything after works relative to descriptors.  Files a
 * caller names are read as the caller: regular files only, size-capped,
 * without following a final symlink, never blocking on a FIFO or device.
 *
 * Linux keeps the file system identity per thread (setfsuid, setfsgid and
 * the raw setgroups system call), so one thread acting for a caller leaves
 * every other thread of rpfs as root.  A thread or process started while
 * acting for a caller inherits that identity: start none in between.
 * docs/design.md, "Acting for a caller". */
#ifndef RPFS_CALLER_H
#define RPFS_CALLER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rpfs.h"

/* The identity this thread had before rp_as_caller. */
struct rp_as {
  uid_t fsuid;
  gid_t fsgid;
  int ngroups;
  gid_t *groups;
  bool switched;
};

/* This thread takes WHO's file system identity until rp_as_self.  Returns 0,
 * or -errno (EPERM: rpfs is not root and WHO is another user).  SAVED is
 * always safe to pass to rp_as_self. */
int rp_as_caller (const struct rp_caller *who, struct rp_as *saved);
void rp_as_self (struct rp_as *saved);

/* Is GID WHO's primary or one of its supplementary groups? */
bool rp_caller_in_group (const struct rp_caller *who, gid_t gid);

/* openat(DIRFD, PATH, FLAGS | O_CLOEXEC, MODE) as WHO: a descriptor, or
 * -errno. */
int rp_caller_openat (const struct rp_caller *who, int dirfd,
                      const char *path, int flags, mode_t mode);

/* Open PATH (absolute or relative to the working directory) for reading as
 * WHO, only if it is a regular file, not a symlink (O_NOFOLLOW), and not
 * under the directory OUTSIDE (NULL: anywhere): first with O_PATH, which
 * opens nothing (a FIFO does not block, a file of the rpfs mount does not
 * start a streamed export), then that same inode with O_RDONLY |
 * O_NONBLOCK | O_NOCTTY.  A descriptor, or -errno: -ELOOP a symlink,
 * -EINVAL not a regular file, -EXDEV under OUTSIDE, else open's. */
int rp_caller_open_file (const struct rp_caller *who, const char *path,
                         const char *outside);
/* Is the file open on FD under directory DIR (a real path)? */
bool rp_fd_under (int fd, const char *dir);

/* Read the whole file PATH for WHO: an absolute path, opened as WHO by
 * rp_caller_open_file (not under OUTSIDE), of at most CAP bytes.
 * Returns the contents (NUL-terminated, caller frees) with *LEN, or NULL with
 * *WHY (caller frees) and the ReturnValue in *RV: RV_ACCESS_DENIED when WHO
 * may not read it, RV_INVALID_PARAMETER otherwise. */
char *rp_caller_read_file (const struct rp_caller *who, const char *path,
                           const char *outside, size_t cap, size_t *len,
                           int *rv, char **why);

/* Largest file a caller may hand to a method (import metadata, ...). */
#define RP_CALLER_FILE_MAX (1u << 20)

#endif
