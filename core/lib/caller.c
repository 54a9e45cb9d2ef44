/* Acting for a caller: a thread's file system identity, and opening and
 * reading the files a caller names (caller.h). */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caller.h"
#include "util.h"

/* glibc's setgroups changes every thread of the process; the system call
 * changes only the calling one, which is what acting for one caller in one
 * FUSE or job thread needs. */
static int
thread_setgroups (int n, const gid_t *groups)
{
  return (int) syscall (SYS_setgroups, (size_t) n, groups);
}

int
rp_as_caller (const struct rp_caller *who, struct rp_as *saved)
{
  memset (saved, 0, sizeof *saved);
  if (geteuid () != 0)
    /* Not root: only our own user reaches the mount (no allow_other), and
     * the kernel already answers for it. */
    return who->uid == geteuid () ? 0 : -EPERM;
  int n = getgroups (0, NULL);
  if (n < 0)
    return -errno;
  saved->groups = rp_calloc ((size_t) n + 1, sizeof (gid_t));
  if ((saved->ngroups = getgroups (n, saved->groups)) < 0) {
    int e = errno;
    free (saved->groups);
    saved->groups = NULL;
    return -e;
  }
  saved->fsuid = (uid_t) setfsuid ((uid_t) -1);
  saved->fsgid = (gid_t) setfsgid ((gid_t) -1);
  saved->switched = true;
  /* Groups first: once fsuid is not 0 the thread is still root for
   * setgroups (it checks the effective uid), but do the least first. */
  if (thread_setgroups (who->ngroups, who->groups) != 0) {
    int e = errno;
    rp_as_self (saved);
    return -e;
  }
  setfsgid (who->gid);
  setfsuid (who->uid);
  /* setfsuid reports no error: read both back. */
  if ((uid_t) setfsuid ((uid_t) -1) != who->uid
      || (gid_t) setfsgid ((gid_t) -1) != who->gid) {
    rp_as_self (saved);
    return -EPERM;
  }
  return 0;
}

void
rp_as_self (struct rp_as *saved)
{
  if (!saved->switched)
    return;
  setfsuid (saved->fsuid);
  setfsgid (saved->fsgid);
  if (thread_setgroups (saved->ngroups, saved->groups) != 0)
    /* Cannot happen as root; never go on with a caller's groups. */
    abort ();
  free (saved->groups);
  saved->groups = NULL;
  saved->switched = false;
}

bool
rp_caller_in_group (const struct rp_caller *who, gid_t gid)
{
  if (who->gid == gid)
    return true;
  for (int i = 0; i < who->ngroups && i < RP_CALLER_GROUPS; i++)
    if (who->groups[i] == gid)
      return true;
  return false;
}

int
rp_caller_openat (const struct rp_caller *who, int dirfd, const char *path,
                  int flags, mode_t mode)
{
  struct rp_as as;
  int r = rp_as_caller (who, &as);
  if (r == 0) {
    r = openat (dirfd, path, flags | O_CLOEXEC, mode);
    if (r < 0)
      r = -errno;
  }
  rp_as_self (&as);
  return r;
}

/* Read at most CAP + 1 bytes of FD (a file may grow after fstat). */
static char *
read_capped (int fd, size_t cap, size_t *len)
{
  char *buf = rp_calloc (cap + 2, 1);
  size_t n = 0;
  while (n <= cap) {
    ssize_t r = read (fd, buf + n, cap + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      free (buf);
      errno = e;
      return NULL;
    }
    if (r == 0)
      break;
    n += (size_t) r;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

int
rp_caller_open_file (const struct rp_caller *who, const char *path,
                     const char *outside)
{
  int p = rp_caller_openat (who, AT_FDCWD, path, O_PATH | O_NOFOLLOW, 0);
  if (p < 0)
    return p;
  struct stat st;
  int r = 0;
  if (fstat (p, &st) != 0)
    r = -errno;
  else if (S_ISLNK (st.st_mode))
    r = -ELOOP;
  else if (!S_ISREG (st.st_mode))
    r = -EINVAL;
  else if (outside && rp_fd_under (p, outside))
    r = -EXDEV;
  if (r == 0) {
    /* The same inode, opened for reading as WHO (the kernel lets a
     * process through its own /proc/self/fd whatever its fsuid). */
    char self[64];
    snprintf (self, sizeof self, "/proc/self/fd/%d", p);
    r = rp_caller_openat (who, AT_FDCWD, self, O_RDONLY | O_NONBLOCK
                          | O_NOCTTY, 0);
  }
  close (p);
  return r;
}

bool
rp_fd_under (int fd, const char *dir)
{
  char link[64], buf[PATH_MAX];
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink (link, buf, sizeof buf - 1);
  if (n < 0 || !dir)
    return false;
  buf[n] = 0;
  size_t k = strlen (dir);
  return !strncmp (buf, dir, k) && (buf[k] == '/' || buf[k] == 0);
}

char *
rp_caller_read_file (const struct rp_caller *who, const char *path,
                     const char *outside, size_t cap, size_t *len, int *rv,
                     char **why)
{
  *rv = RV_INVALID_PARAMETER;
  if (path[0] != '/') {
    *why = rp_asprintf ("'%s' is not an absolute path", path);
    return NULL;
  }
  int fd = rp_caller_open_file (who, path, outside);
  if (fd < 0) {
    if (fd == -EACCES || fd == -EPERM) {
      *rv = RV_ACCESS_DENIED;
      *why = rp_asprintf ("user %u may not read %s", (unsigned) who->uid,
                          path);
    }
    else if (fd == -ELOOP)
      *why = rp_asprintf ("%s is a symbolic link; name the file itself",
                          path);
    else if (fd == -EINVAL)
      *why = rp_asprintf ("%s is not a regular file", path);
    else if (fd == -EXDEV)
      *why = rp_asprintf ("%s is inside the rpfs mount", path);
    else
      *why = rp_asprintf ("%s: %s", path, strerror (-fd));
    return NULL;
  }
  struct stat st;
  char *text = NULL;
  if (fstat (fd, &st) != 0)
    *why = rp_asprintf ("%s: %s", path, strerror (errno));
  else if ((uint64_t) st.st_size > cap)
    *why = rp_asprintf ("%s is larger than %zu bytes, the most rpfs reads "
                        "from a file a caller names", path, cap);
  else if (!(text = read_capped (fd, cap, len)))
    *why = rp_asprintf ("%s: %s", path, strerror (errno));
  else if (*len > cap) {
    *why = rp_asprintf ("%s grew past %zu bytes while rpfs read it", path,
                        cap);
    free (text);
    text = NULL;
  }
  close (fd);
  return text;
}
