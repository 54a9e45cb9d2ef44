/* An export's output directory, resolved as the caller (outdir.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outdir.h"
#include "caller.h"
#include "conf.h"
#include "util.h"

struct rp_outdir {
  struct rp_caller who;
  char *path;                   /* canonical, from the descriptor */
  char *final_name;             /* <system> */
  int dirfd;
  struct stat st;               /* of dirfd */
  int parentfd;                 /* when rpfs made the directory: its parent */
  char *made_name;              /* and its name there; NULL: not made */
  char *tmp_name;               /* the hidden assembly directory */
  int tmpfd, disksfd;
  struct stat tmp_st;
  bool file;                    /* an archive: tmp_name is a file */
  char *side_name;              /* its hidden sidecar, while written */
};

/* The path the kernel has for an open directory. */
static char *
fd_realpath (int fd)
{
  char link[64], buf[PATH_MAX];
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink (link, buf, sizeof buf - 1);
  if (n < 0)
    return NULL;
  buf[n] = 0;
  return rp_strdup (buf);
}

char *
rp_fd_path (int fd)
{
  return rp_asprintf ("/proc/%d/fd/%d", (int) getpid (), fd);
}

static bool
inside (const char *path, const char *dir)
{
  size_t n = strlen (dir);
  return !strncmp (path, dir, n) && (path[n] == '/' || path[n] == 0);
}

/* Run STMT as the caller of O (or WHO); R is -errno of the switch, or of
 * STMT when it sets errno and returns -1. */
#define AS_CALLER(who, r, stmt)                 \
  do {                                          \
    struct rp_as as_;                           \
    (r) = rp_as_caller ((who), &as_);           \
    if ((r) == 0 && (stmt) < 0)                 \
      (r) = -errno;                             \
    rp_as_self (&as_);                          \
  } while (0)

static int
errno_rv (int e)
{
  return e == EACCES || e == EPERM ? RV_ACCESS_DENIED : RV_INVALID_PARAMETER;
}

/* Open PATH as WHO: the directory itself (*FD), or when it does not exist
 * its parent (*PFD) and the last component (*BASE). */
static int
resolve (const char *path, const struct rp_caller *who, int *fd, int *pfd,
         char **base, char **why)
{
  int r;
  *fd = *pfd = -1;
  AS_CALLER (who, r, (*fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  if (r == 0)
    return RV_OK;
  if (r == -ENOTDIR) {
    *why = rp_asprintf ("ExportDirectory %s exists and is not a directory "
                        "(or a component of it is not)", path);
    return RV_INVALID_PARAMETER;
  }
  if (r != -ENOENT) {
    *why = r == -EACCES || r == -EPERM
      ? rp_asprintf ("user %u may not reach %s", (unsigned) who->uid, path)
      : rp_asprintf ("ExportDirectory %s: %s", path, strerror (-r));
    return errno_rv (-r);
  }
  CLEANUP_FREE char *c1 = rp_strdup (path), *c2 = rp_strdup (path);
  const char *parent = dirname (c1), *b = basename (c2);
  if (!strcmp (b, ".") || !strcmp (b, "..") || !strcmp (b, "/")) {
    *why = rp_asprintf ("ExportDirectory %s does not name a directory to "
                        "create", path);
    return RV_INVALID_PARAMETER;
  }
  AS_CALLER (who, r, (*pfd = open (parent, O_RDONLY | O_DIRECTORY
                                   | O_CLOEXEC)));
  if (r != 0) {
    *why = r == -EACCES || r == -EPERM
      ? rp_asprintf ("user %u may not reach %s", (unsigned) who->uid, parent)
      : rp_asprintf ("the parent directory of ExportDirectory, %s, does not "
                     "exist", parent);
    return errno_rv (-r);
  }
  *base = rp_strdup (b);
  return RV_OK;
}

/* The checks on the resolved directory (or its parent, FD). */
static int
check (const char *path, int fd, bool exists, const char *final_name,
       const char *mount_real, const struct rp_caller *who, char **why)
{
  CLEANUP_FREE char *real = fd_realpath (fd);
  int r;
  if (!real || inside (real, mount_real)) {
    *why = rp_asprintf ("ExportDirectory %s is inside the rpfs mount", path);
    return RV_INVALID_PARAMETER;
  }
  /* AT_EACCESS: the thread's file system identity, i.e. the caller's. */
  AS_CALLER (who, r, faccessat (fd, ".", W_OK | X_OK, AT_EACCESS));
  if (r != 0) {
    *why = rp_asprintf ("user %u may not create files in %s",
                        (unsigned) who->uid, real);
    return RV_ACCESS_DENIED;
  }
  struct stat st;
  AS_CALLER (who, r, fstatat (fd, final_name, &st, AT_SYMLINK_NOFOLLOW));
  if (exists && r == 0) {
    *why = rp_asprintf ("%s already holds an export of system %s", path,
                        final_name);
    return RV_INVALID_PARAMETER;
  }
  return RV_OK;
}

/* Make BASE in PFD as the caller and open it. */
static int
make_dir (struct rp_outdir *o, int pfd, const char *base, char **why)
{
  int r, fd = -1;
  AS_CALLER (&o->who, r, mkdirat (pfd, base, 0755));
  if (r == 0)
    AS_CALLER (&o->who, r, (fd = openat (pfd, base, O_RDONLY | O_DIRECTORY
                                          | O_NOFOLLOW | O_CLOEXEC)));
  if (r != 0) {
    *why = rp_asprintf ("cannot create %s: %s", o->path, strerror (-r));
    return errno_rv (-r);
  }
  o->dirfd = fd;
  o->parentfd = pfd;
  o->made_name = rp_strdup (base);
  return RV_OK;
}

int
rp_outdir_open (const char *path, const char *final_name,
                const char *mount_real, const struct rp_caller *who,
                bool create, struct rp_outdir **out, char **why)
{
  if (out)
    *out = NULL;
  if (path[0] != '/') {
    *why = rp_asprintf ("ExportDirectory '%s' is not an absolute path", path);
    return RV_INVALID_PARAMETER;
  }
  int fd, pfd;
  CLEANUP_FREE char *base = NULL;
  int rv = resolve (path, who, &fd, &pfd, &base, why);
  if (rv == RV_OK)
    rv = check (path, fd >= 0 ? fd : pfd, fd >= 0, final_name, mount_real,
                who, why);
  if (rv != RV_OK || !create) {
    if (fd >= 0)
      close (fd);
    if (pfd >= 0)
      close (pfd);
    return rv;
  }
  struct rp_outdir *o = rp_calloc (1, sizeof *o);
  o->who = *who;
  o->final_name = rp_strdup (final_name);
  o->dirfd = fd;
  o->parentfd = o->tmpfd = o->disksfd = -1;
  o->path = rp_strdup (path);
  if (fd < 0 && (rv = make_dir (o, pfd, base, why)) != RV_OK) {
    close (pfd);
    rp_outdir_free (o);
    return rv;
  }
  free (o->path);
  o->path = fd_realpath (o->dirfd);
  if (!o->path || fstat (o->dirfd, &o->st) != 0) {
    *why = rp_asprintf ("ExportDirectory %s: %s", path, strerror (errno));
    rp_outdir_abort (o);
    rp_outdir_free (o);
    return RV_FAILED;
  }
  *out = o;
  return RV_OK;
}

void
rp_outdir_free (struct rp_outdir *o)
{
  if (!o)
    return;
  int fds[] = { o->dirfd, o->parentfd, o->tmpfd, o->disksfd };
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0)
      close (fds[i]);
  free (o->path);
  free (o->final_name);
  free (o->made_name);
  free (o->tmp_name);
  free (o->side_name);
  free (o);
}

const char *
rp_outdir_path (const struct rp_outdir *o)
{
  return o->path;
}

int
rp_outdir_begin (struct rp_outdir *o, const char *tmp_name, char **why)
{
  int r;
  o->tmp_name = rp_strdup (tmp_name);
  AS_CALLER (&o->who, r, mkdirat (o->dirfd, tmp_name, 0700));
  if (r == 0)
    AS_CALLER (&o->who, r, (o->tmpfd = openat (o->dirfd, tmp_name,
                                               O_RDONLY | O_DIRECTORY
                                               | O_NOFOLLOW | O_CLOEXEC)));
  if (r == -ENOTDIR || r == -ELOOP || r == -ENOENT) {
    /* Made a moment ago, and now gone or a symlink: someone else works
     * in the directory. */
    *why = rp_asprintf ("the assembly directory %s/%s was moved or replaced "
                        "while it was being made", o->path, tmp_name);
    return -1;
  }
  if (r == 0 && fstat (o->tmpfd, &o->tmp_st) != 0)
    r = -errno;
  if (r == 0)
    AS_CALLER (&o->who, r, mkdirat (o->tmpfd, "disks", 0755));
  if (r == 0)
    AS_CALLER (&o->who, r, (o->disksfd = openat (o->tmpfd, "disks",
                                                 O_RDONLY | O_DIRECTORY
                                                 | O_NOFOLLOW | O_CLOEXEC)));
  if (r != 0) {
    *why = rp_asprintf ("cannot create %s/%s: %s", o->path, tmp_name,
                        strerror (-r));
    return -1;
  }
  return 0;
}

int
rp_outdir_create (struct rp_outdir *o, const char *rel, mode_t mode)
{
  int dfd = o->tmpfd;
  if (!strncmp (rel, "disks/", 6)) {
    dfd = o->disksfd;
    rel += 6;
  }
  if (strchr (rel, '/'))
    return -EINVAL;
  return rp_caller_openat (&o->who, dfd, rel,
                           O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
}

int
rp_outdir_image (struct rp_outdir *o)
{
  return rp_caller_openat (&o->who, o->disksfd, ".", O_TMPFILE | O_RDWR,
                           0644);
}

int
rp_outdir_link (struct rp_outdir *o, int fd, const char *rel)
{
  if (strncmp (rel, "disks/", 6) || strchr (rel + 6, '/'))
    return -EINVAL;
  /* As rpfs (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH), into the caller's
   * disks/ by its descriptor, under a fixed leaf name: linkat neither
   * follows nor replaces what is there.  The inode stays the caller's. */
  return linkat (fd, "", o->disksfd, rel + 6, AT_EMPTY_PATH) == 0 ? 0
    : -errno;
}

int
rp_outdir_write (struct rp_outdir *o, const char *rel, const void *buf,
                 size_t len)
{
  int fd = rp_outdir_create (o, rel, 0644);
  if (fd < 0)
    return fd;
  const char *p = buf;
  int r = 0;
  while (len > 0 && r == 0) {
    ssize_t n = write (fd, p, len);
    if (n < 0 && errno != EINTR)
      r = -errno;
    else if (n > 0) {
      p += n;
      len -= (size_t) n;
    }
  }
  if (r == 0 && fsync (fd) != 0)
    r = -errno;
  close (fd);
  return r;
}

/* Is NAME in DIRFD still the directory (or, with FILE, the regular file)
 * ST describes? */
static bool
still_as (const struct rp_caller *who, int dirfd, const char *name,
          const struct stat *st, bool file)
{
  struct stat now;
  int r;
  AS_CALLER (who, r, fstatat (dirfd, name, &now, AT_SYMLINK_NOFOLLOW));
  return r == 0 && (file ? S_ISREG (now.st_mode) : S_ISDIR (now.st_mode))
    && now.st_dev == st->st_dev && now.st_ino == st->st_ino;
}

static bool
still (const struct rp_caller *who, int dirfd, const char *name,
       const struct stat *st)
{
  return still_as (who, dirfd, name, st, false);
}

int
rp_outdir_commit (struct rp_outdir *o, char **why)
{
  int r;
  /* The images were synced by their seals, the small files when written:
   * what remains are directory entries. */
  fsync (o->disksfd);
  AS_CALLER (&o->who, r, fchmod (o->tmpfd, 0755));
  if (r == 0 && fsync (o->tmpfd) != 0)
    r = -errno;
  if (r != 0) {
    *why = rp_asprintf ("cannot finish %s/%s: %s", o->path, o->tmp_name,
                        strerror (-r));
    return RV_FAILED;
  }
  if (!still (&o->who, o->dirfd, o->tmp_name, &o->tmp_st)) {
    *why = rp_asprintf ("the assembly directory %s/%s was moved or replaced "
                        "during the export", o->path, o->tmp_name);
    return RV_FAILED;
  }
  AS_CALLER (&o->who, r, renameat2 (o->dirfd, o->tmp_name, o->dirfd,
                                    o->final_name, RENAME_NOREPLACE));
  if (r != 0) {
    *why = rp_asprintf ("cannot rename the finished export to %s/%s: %s",
                        o->path, o->final_name, strerror (-r));
    return r == -EEXIST ? RV_INVALID_PARAMETER : RV_FAILED;
  }
  fsync (o->dirfd);             /* the rename itself */
  return RV_OK;
}

void
rp_outdir_abort (struct rp_outdir *o)
{
  int r;
  if (o->tmp_name && o->tmpfd >= 0
      && still_as (&o->who, o->dirfd, o->tmp_name, &o->tmp_st, o->file))
    AS_CALLER (&o->who, r, rp_rm_at (o->dirfd, o->tmp_name));
  if (o->side_name)
    AS_CALLER (&o->who, r, unlinkat (o->dirfd, o->side_name, 0));
  if (o->made_name && still (&o->who, o->parentfd, o->made_name, &o->st))
    AS_CALLER (&o->who, r, unlinkat (o->parentfd, o->made_name,
                                     AT_REMOVEDIR));  /* only if empty */
  (void) r;
}

char *
rp_outdir_final_path (const struct rp_outdir *o, const char *rel)
{
  return rp_asprintf ("%s/%s/%s", o->path, o->final_name, rel);
}

char *
rp_outdir_realpath (const struct rp_outdir *o, const char *target)
{
  char buf[PATH_MAX];
  char *p = NULL;
  int r;
  AS_CALLER (&o->who, r, ((p = realpath (target, buf)) ? 0 : -1));
  return r == 0 && p ? rp_strdup (buf) : NULL;
}

/* ---- the crash marker ---- */

char *
rp_outdir_marker (const struct rp_outdir *o)
{
  struct rp_kv *kv = rp_kv_new ();
  char n[64];
  rp_kv_add (kv, "path", o->path);
  rp_kv_add (kv, "part", o->tmp_name);
#define ADD_NUM(key, val)                                 \
  snprintf (n, sizeof n, "%" PRIuMAX, (uintmax_t) (val)); \
  rp_kv_add (kv, key, n)
  ADD_NUM ("uid", o->who.uid);
  ADD_NUM ("gid", o->who.gid);
  for (int i = 0; i < o->who.ngroups; i++) {
    ADD_NUM ("group", o->who.groups[i]);
  }
  ADD_NUM ("dev", o->st.st_dev);
  ADD_NUM ("ino", o->st.st_ino);
  ADD_NUM ("partino", o->tmp_st.st_ino);
#undef ADD_NUM
  if (o->made_name)
    rp_kv_add (kv, "made", o->made_name);
  if (o->file)
    rp_kv_add (kv, "kind", "file");
  char *text = rp_kv_render (kv);
  rp_kv_free (kv);
  return text;
}

static bool
num (const struct rp_kv *kv, const char *key, uintmax_t *out)
{
  const char *v = rp_kv_get (kv, key);
  char *end;
  if (!v || !*v)
    return false;
  errno = 0;
  *out = strtoumax (v, &end, 10);
  return !errno && !*end;
}

/* The marker's caller and directory identity; false if it is not one. */
static bool
marker_parse (const struct rp_kv *kv, struct rp_caller *who,
              struct stat *dir, struct stat *part)
{
  uintmax_t uid, gid, dev, ino, pino, g;
  if (!num (kv, "uid", &uid) || !num (kv, "gid", &gid)
      || !num (kv, "dev", &dev) || !num (kv, "ino", &ino)
      || !num (kv, "partino", &pino) || !rp_kv_get (kv, "path")
      || !rp_kv_get (kv, "part"))
    return false;
  memset (who, 0, sizeof *who);
  who->uid = (uid_t) uid;
  who->gid = (gid_t) gid;
  const char **gv = rp_kv_all (kv, "group");
  for (size_t i = 0; gv && gv[i] && who->ngroups < RP_CALLER_GROUPS; i++) {
    char *end;
    g = strtoumax (gv[i], &end, 10);
    if (!*end)
      who->groups[who->ngroups++] = (gid_t) g;
  }
  free (gv);
  dir->st_dev = (dev_t) dev;
  dir->st_ino = (ino_t) ino;
  part->st_dev = (dev_t) dev;
  part->st_ino = (ino_t) pino;
  const char *name = rp_kv_get (kv, "part");
  return name[0] == '.' && !strchr (name, '/');
}

void
rp_outdir_cleanup (const char *text)
{
  CLEANUP_FREE char *why = NULL;
  struct rp_kv *kv = rp_kv_parse ("export marker", text, strlen (text), &why);
  struct rp_caller who;
  struct stat dir, part, st;
  if (!kv || !marker_parse (kv, &who, &dir, &part)) {
    fprintf (stderr, "rpfs: an export marker in the store is not of this "
             "version; nothing removed for it\n");
    rp_kv_free (kv);
    return;
  }
  const char *path = rp_kv_get (kv, "path"), *name = rp_kv_get (kv, "part");
  const char *made = rp_kv_get (kv, "made");
  int fd = -1, r;
  AS_CALLER (&who, r, (fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  if (r == 0 && (fstat (fd, &st) != 0 || st.st_dev != dir.st_dev
                 || st.st_ino != dir.st_ino))
    r = -ESTALE;
  if (r != 0)
    fprintf (stderr, "rpfs: %s is gone or another directory now; the "
             "unfinished export %s in it is not removed\n", path, name);
  else if (still_as (&who, fd, name, &part,
                     !strcmp (rp_kv_get (kv, "kind") ?: "", "file"))) {
    fprintf (stderr, "rpfs: removing %s/%s, left by an export that did not "
             "finish\n", path, name);
    AS_CALLER (&who, r, rp_rm_at (fd, name));
  }
  if (fd >= 0)
    close (fd);
  if (made && r == 0) {         /* the directory rpfs made, if empty */
    CLEANUP_FREE char *c = rp_strdup (path);
    int pfd = -1;
    AS_CALLER (&who, r, (pfd = open (dirname (c), O_RDONLY | O_DIRECTORY
                                     | O_CLOEXEC)));
    if (r == 0 && still (&who, pfd, made, &dir))
      AS_CALLER (&who, r, unlinkat (pfd, made, AT_REMOVEDIR));
    if (pfd >= 0)
      close (pfd);
  }
  rp_kv_free (kv);
}

/* ---- archive exports: one file and its sidecar ---- */

int
rp_outdir_begin_file (struct rp_outdir *o, const char *tmp_name, char **why)
{
  int r;
  o->tmp_name = rp_strdup (tmp_name);
  o->file = true;
  AS_CALLER (&o->who, r, (o->tmpfd = openat (o->dirfd, tmp_name,
                                             O_WRONLY | O_CREAT | O_EXCL
                                             | O_NOFOLLOW | O_CLOEXEC,
                                             0600)));
  if (r == 0 && fstat (o->tmpfd, &o->tmp_st) != 0)
    r = -errno;
  if (r != 0) {
    *why = rp_asprintf ("cannot create %s/%s: %s", o->path, tmp_name,
                        strerror (-r));
    return -1;
  }
  return o->tmpfd;
}

int
rp_outdir_tmpfile (struct rp_outdir *o)
{
  int fd = -1, r;
  AS_CALLER (&o->who, r, (fd = openat (o->dirfd, ".", O_TMPFILE | O_RDWR
                                       | O_CLOEXEC, 0600)));
  return r == 0 ? fd : r;
}

/* The sidecar TEXT under a hidden name, synced, renamed to FINAL.sha256. */
static int
put_sidecar (struct rp_outdir *o, const char *text, char **why)
{
  CLEANUP_FREE char *final = rp_asprintf ("%s.sha256", o->final_name);
  int fd = -1, r;
  o->side_name = rp_asprintf ("%s.sha256", o->tmp_name);
  AS_CALLER (&o->who, r, (fd = openat (o->dirfd, o->side_name,
                                       O_WRONLY | O_CREAT | O_EXCL
                                       | O_NOFOLLOW | O_CLOEXEC, 0644)));
  size_t len = strlen (text);
  if (r == 0 && (write (fd, text, len) != (ssize_t) len || fsync (fd) != 0))
    r = -errno;
  if (fd >= 0)
    close (fd);
  if (r == 0)
    AS_CALLER (&o->who, r, renameat2 (o->dirfd, o->side_name, o->dirfd,
                                      final, RENAME_NOREPLACE));
  if (r != 0) {
    *why = rp_asprintf ("cannot write %s/%s: %s", o->path, final,
                        strerror (-r));
    return -1;
  }
  free (o->side_name);
  o->side_name = NULL;
  return 0;
}

int
rp_outdir_commit_file (struct rp_outdir *o, const char *sidecar, char **why)
{
  int r;
  AS_CALLER (&o->who, r, fchmod (o->tmpfd, 0644));
  if (r == 0 && fsync (o->tmpfd) != 0)
    r = -errno;
  if (r != 0) {
    *why = rp_asprintf ("%s while finishing %s/%s", strerror (-r), o->path,
                        o->tmp_name);
    return RV_FAILED;
  }
  if (!still_as (&o->who, o->dirfd, o->tmp_name, &o->tmp_st, true)) {
    *why = rp_asprintf ("the archive %s/%s was moved or replaced during the "
                        "export", o->path, o->tmp_name);
    return RV_FAILED;
  }
  /* The sidecar first: whoever sees the archive appear finds it. */
  if (put_sidecar (o, sidecar, why) != 0)
    return RV_FAILED;
  AS_CALLER (&o->who, r, renameat2 (o->dirfd, o->tmp_name, o->dirfd,
                                    o->final_name, RENAME_NOREPLACE));
  if (r != 0) {
    *why = rp_asprintf ("cannot rename the finished archive to %s/%s: %s",
                        o->path, o->final_name, strerror (-r));
    CLEANUP_FREE char *side = rp_asprintf ("%s.sha256", o->final_name);
    int r2;
    AS_CALLER (&o->who, r2, unlinkat (o->dirfd, side, 0));
    (void) r2;
    return r == -EEXIST ? RV_INVALID_PARAMETER : RV_FAILED;
  }
  fsync (o->dirfd);
  return RV_OK;
}
