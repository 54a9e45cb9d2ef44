/* VerifyExport's inputs, resolved as the caller (verifychain.h). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "verifychain.h"
#include "caller.h"
#include "outdir.h"
#include "proc.h"
#include "util.h"

#define CHAIN_MAX 64            /* backing files followed at most */

void
rp_fds_close (struct rp_fds *f)
{
  for (size_t i = 0; i < f->n; i++)
    close (f->v[i]);
  free (f->v);
  f->v = NULL;
  f->n = 0;
}

static void
fds_push (struct rp_fds *f, int fd)
{
  int *v = realloc (f->v, (f->n + 1) * sizeof *v);
  if (!v)
    abort ();
  f->v = v;
  f->v[f->n++] = fd;
}


int
rp_verify_root (const struct rp_caller *who, const char *path,
                const char *system, const char *mount_real, int *root,
                char **why)
{
  if (path[0] != '/') {
    *why = rp_asprintf ("'%s' is not an absolute path", path);
    return RV_INVALID_PARAMETER;
  }
  int d = rp_caller_openat (who, AT_FDCWD, path, O_RDONLY | O_DIRECTORY, 0);
  if (d < 0) {
    *why = rp_asprintf ("%s: %s", path, strerror (-d));
    return d == -EACCES ? RV_ACCESS_DENIED : RV_INVALID_PARAMETER;
  }
  if (rp_fd_under (d, mount_real)) {
    close (d);
    *why = rp_asprintf ("%s is inside the rpfs mount", path);
    return RV_INVALID_PARAMETER;
  }
  int s = rp_caller_openat (who, d, system, O_RDONLY | O_DIRECTORY
                            | O_NOFOLLOW, 0);
  struct stat st;
  if (s < 0 && fstatat (d, "referencepoint", &st, AT_SYMLINK_NOFOLLOW) == 0)
    s = dup (d);                /* PATH is the SYSTEM/ directory itself */
  close (d);
  if (s < 0) {
    *why = rp_asprintf ("%s holds no export of system %s (no %s/ in it, "
                        "and it is not one)", path, system, system);
    return RV_INVALID_PARAMETER;
  }
  *root = s;
  return RV_OK;
}

int
rp_verify_open_archive (const struct rp_caller *who, const char *path,
                        const char *mount_real, int *fd, char **why)
{
  *fd = -1;
  if (path[0] != '/') {
    *why = rp_asprintf ("'%s' is not an absolute path", path);
    return RV_INVALID_PARAMETER;
  }
  int f = rp_caller_open_file (who, path, mount_real);
  if (f == -EXDEV) {
    *why = rp_asprintf ("%s is inside the rpfs mount", path);
    return RV_INVALID_PARAMETER;
  }
  if (f == -EACCES || f == -EPERM) {   /* a file the caller may not read */
    *why = rp_asprintf ("%s: %s", path, strerror (-f));
    return RV_ACCESS_DENIED;
  }
  if (f < 0)
    return RV_OK;               /* not a file: a directory, or an error
                                   rp_verify_root will name */
  *fd = f;
  return RV_OK;
}

char *
rp_verify_read (const struct rp_caller *who, int root, const char *rel,
                size_t cap, size_t *len, char **why)
{
  int fd = rp_caller_openat (who, root, rel, O_RDONLY | O_NOFOLLOW
                             | O_NONBLOCK | O_NOCTTY, 0);
  struct stat st;
  if (fd < 0) {
    *why = rp_asprintf ("the export has no readable %s: %s", rel,
                        strerror (-fd));
    return NULL;
  }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)
      || (uint64_t) st.st_size > cap) {
    *why = rp_asprintf ("the export's %s is not a regular file of at most "
                        "%zu bytes", rel, cap);
    close (fd);
    return NULL;
  }
  char *buf = rp_calloc (1, (size_t) st.st_size + 1);
  ssize_t n = pread (fd, buf, (size_t) st.st_size, 0);
  close (fd);
  if (n != st.st_size) {
    *why = rp_asprintf ("cannot read the export's %s", rel);
    free (buf);
    return NULL;
  }
  *len = (size_t) n;
  return buf;
}

/* qemu-img info of the open layer FD: its backing file name as written
 * (*BACKING, NULL if none), after checking it is a qcow2 image without an
 * external data file.  0, or -1 with *WHY. */
static int
layer_info (int fd, const char *name, char **backing, bool *braw, char **why)
{
  CLEANUP_FREE char *path = rp_fd_path (fd);
  CLEANUP_FREE char *out = NULL, *errs = NULL;
  /* -f qcow2: never probed (a probe may follow what a file names). */
  char *argv[] = { "qemu-img", "info", "-U", "-f", "qcow2", "--output=json",
                   path, NULL };
  *backing = NULL;
  if (rp_proc_run (argv, NULL, &out, &errs) != 0 || !out) {
    if (errs)
      errs[strcspn (errs, "\n")] = 0;
    *why = rp_asprintf ("%s: %s", name, errs && *errs ? errs
                        : "qemu-img info failed");
    return -1;
  }
  json_t *j = json_loads (out, 0, NULL);
  const char *fmt = json_string_value (json_object_get (j, "format"));
  json_t *spec = json_object_get (json_object_get (j, "format-specific"),
                                  "data");
  int r = 0;
  if (!fmt || strcmp (fmt, "qcow2") != 0) {
    *why = rp_asprintf ("%s is not a qcow2 image", name);
    r = -1;
  }
  else if (json_object_get (spec, "data-file")) {
    *why = rp_asprintf ("%s has an external data file: not an rpfs export",
                        name);
    r = -1;
  }
  else if (json_object_get (j, "backing-filename")) {
    *backing = rp_strdup (json_string_value (json_object_get
                                             (j, "backing-filename")) ?: "");
    /* The full image of an unpacked archive export (reference.md 9). */
    const char *bf = json_string_value (json_object_get
                                        (j, "backing-filename-format"));
    *braw = bf && !strcmp (bf, "raw");
  }
  json_decref (j);
  return r;
}

static json_t *layer (const struct rp_caller *who, int dirfd,
                      const char *name, bool raw, int depth,
                      struct rp_fds *fds, char **why);

/* The backing layer named B (as written in the layer, relative to DIRFD,
 * the directory holding that layer).  NULL with *WHY. */
static json_t *
backing_layer (const struct rp_caller *who, int dirfd, const char *b,
               bool raw, int depth, struct rp_fds *fds, char **why)
{
  CLEANUP_FREE char *d = rp_strdup (b), *f = rp_strdup (b);
  const char *dir = dirname (d), *base = basename (f);
  int nd = rp_caller_openat (who, b[0] == '/' ? AT_FDCWD : dirfd, dir,
                             O_RDONLY | O_DIRECTORY, 0);
  if (nd < 0) {
    *why = rp_asprintf ("backing file %s: %s", b, strerror (-nd));
    return NULL;
  }
  json_t *j = layer (who, nd, base, raw, depth, fds, why);
  close (nd);
  return j;
}

/* Layer NAME in DIRFD: a qcow2 image (its backing chain followed), or with
 * RAW a raw image (the bottom of a chain; its format is never probed). */
static json_t *
layer (const struct rp_caller *who, int dirfd, const char *name, bool raw,
       int depth, struct rp_fds *fds, char **why)
{
  if (depth > CHAIN_MAX) {
    *why = rp_asprintf ("more than %d backing files", CHAIN_MAX);
    return NULL;
  }
  int fd = rp_caller_openat (who, dirfd, name, O_RDONLY | O_NOFOLLOW
                             | O_NONBLOCK | O_NOCTTY, 0);
  struct stat st;
  if (fd < 0 || fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    *why = rp_asprintf ("%s: %s", name, fd < 0 ? strerror (-fd)
                        : "not a regular file");
    if (fd >= 0)
      close (fd);
    return NULL;
  }
  fds_push (fds, fd);
  CLEANUP_FREE char *path = rp_fd_path (fd);
  if (raw)
    return json_pack ("{s:s, s:{s:s, s:s}}", "driver", "raw", "file",
                      "driver", "file", "filename", path);
  CLEANUP_FREE char *b = NULL;
  bool braw = false;
  if (layer_info (fd, name, &b, &braw, why) != 0)
    return NULL;
  json_t *back = json_null ();
  if (b && *b && !(back = backing_layer (who, dirfd, b, braw, depth + 1, fds,
                                         why)))
    return NULL;
  return json_pack ("{s:s, s:{s:s, s:s}, s:o}", "driver", "qcow2", "file",
                    "driver", "file", "filename", path, "backing", back);
}

char *
rp_verify_overlay_spec (int fd, const char *name, char **why)
{
  CLEANUP_FREE char *b = NULL;
  bool braw = false;
  if (layer_info (fd, name, &b, &braw, why) != 0)
    return NULL;
  CLEANUP_FREE char *path = rp_fd_path (fd);
  json_t *j = json_pack ("{s:s, s:{s:s, s:s}, s:n}", "driver", "qcow2",
                         "file", "driver", "file", "filename", path,
                         "backing");
  char *s = json_dumps (j, JSON_COMPACT);
  json_decref (j);
  char *spec = rp_asprintf ("json:%s", s);
  free (s);
  return spec;
}

char *
rp_verify_image_spec (const struct rp_caller *who, int root,
                      const char *disk, struct rp_fds *fds, char **why)
{
  int disks = rp_caller_openat (who, root, "disks", O_RDONLY | O_DIRECTORY
                                | O_NOFOLLOW, 0);
  if (disks < 0) {
    *why = rp_asprintf ("the export has no disks/ directory: %s",
                        strerror (-disks));
    return NULL;
  }
  /* An export's qcow2 image, or the sparse raw image of an unpacked full
   * archive export. */
  CLEANUP_FREE char *name = rp_asprintf ("%s.qcow2", disk);
  CLEANUP_FREE char *rname = rp_asprintf ("%s.raw", disk);
  struct stat st;
  bool raw = fstatat (disks, name, &st, AT_SYMLINK_NOFOLLOW) != 0
    && fstatat (disks, rname, &st, AT_SYMLINK_NOFOLLOW) == 0;
  json_t *j = layer (who, disks, raw ? rname : name, raw, 0, fds, why);
  close (disks);
  if (!j)
    return NULL;
  char *s = json_dumps (j, JSON_COMPACT);
  json_decref (j);
  char *spec = rp_asprintf ("json:%s", s);
  free (s);
  return spec;
}
