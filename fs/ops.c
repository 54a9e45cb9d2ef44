/* rpfs FUSE frontend: the tree and its metadata (getattr, readdir,
 * readlink, mkdir / rmdir in referencepoints/), and the fuse_operations
 * table.  File I/O is in ops_files.c.
 *
 * Errors for what the tree does not allow:
 * - EPERM for changes to the structure itself: creating, removing,
 *   renaming or linking anything (mkdir / rmdir outside referencepoints/),
 *   chmod, chown.  The tree is fixed (an ABI, like sysfs); EROFS would
 *   wrongly say that nothing can be written.
 * - EACCES for writing a read-only file (its mode says 0444): open for
 *   writing, truncate; and for whatever the permission model refuses the
 *   caller (perm.c, core/methods/access.c).
 * - Method failures: the errno of interface.md section 6, through
 *   fs_rv_errno only.
 * - ENAMETOOLONG for a name longer than statfs's f_namemax (255), as any
 *   local file system says, before a shorter invalid name's EINVAL.
 * - ENOTSUP for every extended attribute request (there are none).  The
 *   kernel itself refuses user.* attributes on a symlink (the job link)
 *   with EPERM before asking us, as on every Linux file system.
 *
 * Requests made by the notifier thread (notify.c) are accepted without
 * changing anything; see fs_self. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ops.h"

#define FS_NAME_MAX 255       /* statfs's f_namemax */

/* A component of PATH is longer than FS_NAME_MAX. */
static bool
name_too_long (const char *path)
{
  while (*path) {
    size_t n = strcspn (path, "/");

    if (n > FS_NAME_MAX)
      return true;
    path += n + (path[n] == '/');
  }
  return false;
}

static int
fs_getattr (const char *path, struct stat *st, struct fuse_file_info *fi)
{
  AUTO_NODE struct node n = NODE_INIT;
  mode_t mode;
  int r;

  (void) fi;
  if (name_too_long (path))
    return -ENAMETOOLONG;
  switch (fs_self (path, &mode)) {
  case FS_SELF_HIDE:
    return -ENOENT;
  case FS_SELF_GHOST:
    fs_stat_base (st, mode);
    return 0;
  default:
    break;
  }
  r = node_get (path, &n);
  if (r < 0)
    return r;
  return node_stat (&n, st);
}

/* ---- readdir ---- */

struct lister {
  void *buf;
  fuse_fill_dir_t filler;
};

static void
add (struct lister *l, const char *name, mode_t mode)
{
  struct stat st = { .st_mode = mode };   /* gives readdir its d_type */

  l->filler (l->buf, name, &st, 0, 0);
}

static void
add_strv (struct lister *l, char **v, mode_t mode)
{
  for (; v && *v; v++)
    add (l, *v, mode);
}

static void
add_list (struct lister *l, const char *const *v, mode_t mode)
{
  for (; v && *v; v++)
    add (l, *v, mode);
}

/* Properties that have a value for this object (see node_value). */
static void
add_props (struct lister *l, struct node *n, enum fs_kind kind,
           const char *const *names)
{
  /* A borrowed view of N (no references of its own) naming each property. */
  struct node t = *n;

  for (; names && *names; names++) {
    AUTO_FREE char *v = NULL;

    t.p.kind = kind;
    t.p.name = *names;
    v = node_value (&t, NULL);
    if (v)
      add (l, *names, S_IFREG);
  }
}

/* One entry a line of TEXT (VirtualDiskIdentifiers). */
static void
add_lines (struct lister *l, const char *text, mode_t mode)
{
  while (text && *text) {
    const char *nl = strchrnul (text, '\n');
    AUTO_FREE char *name = strndup (text, nl - text);

    if (name && *name)
      add (l, name, mode);
    text = *nl ? nl + 1 : nl;
  }
}

/* The entries of directory node N, after "." and "..". */
static void
list_entries (struct lister *l, struct node *n)
{
  struct rp_core *core = fs_get ()->core;

  switch (n->p.kind) {
  case FS_ROOT: {
    AUTO_STRV char **systems = rp_core_systems (core);

    add_strv (l, systems, S_IFDIR);
    add (l, FS_JOBS_DIR, S_IFDIR);
    break;
  }
  case FS_SYSTEM:
    add_props (l, n, FS_SYS_PROP, rp_system_props);
    add_list (l, rp_system_methods, S_IFREG);
    add (l, FS_DISKS_DIR, S_IFDIR);
    add (l, FS_RPS_DIR, S_IFDIR);
    break;
  case FS_SYS_DISKS: {
    AUTO_STRV char **disks = rp_system_disks (n->sys);

    add_strv (l, disks, S_IFREG);
    break;
  }
  case FS_RPS: {
    AUTO_STRV char **rps = rp_system_refpoints (n->sys);

    add_strv (l, rps, S_IFDIR);
    break;
  }
  case FS_RP: {
    AUTO_FREE char *job = rp_refpoint_job (n->rp);

    add_props (l, n, FS_RP_PROP, rp_refpoint_props);
    add (l, FS_SETTINGS_DIR, S_IFDIR);
    add_list (l, rp_refpoint_methods, S_IFREG);
    add_list (l, rp_refpoint_streams, S_IFREG);
    add (l, FS_DISKS_DIR, S_IFDIR);
    if (job)
      add (l, FS_JOBLINK, S_IFLNK);
    break;
  }
  case FS_RP_SETTINGS_DIR:
    add_list (l, rp_refpoint_settings, S_IFREG);
    break;
  case FS_RP_DISKS:
    if (rp_refpoint_has_data (n->rp)) {
      AUTO_FREE char *ids = rp_refpoint_prop (n->rp, "VirtualDiskIdentifiers");

      add_lines (l, ids, S_IFREG);
    }
    break;
  case FS_JOBS: {
    AUTO_STRV char **jobs = rp_core_jobs (core);

    add_strv (l, jobs, S_IFDIR);
    break;
  }
  case FS_JOB:
    add_props (l, n, FS_JOB_PROP, rp_job_props);
    add_list (l, fs_job_methods, S_IFREG);
    break;
  default:
    break;
  }
}

static int
fs_readdir (const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
            struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  AUTO_NODE struct node n = NODE_INIT;
  struct lister l = { .buf = buf, .filler = filler };
  int r;

  (void) off;
  (void) fi;
  (void) flags;
  r = node_get (path, &n);
  if (r < 0)
    return r;
  if (!fs_kind_is_dir (n.p.kind))
    return -ENOTDIR;
  {
    struct rp_caller who = fs_caller ();

    r = node_allows (&n, &who, R_OK);
    if (r < 0)
      return r;
  }

  add (&l, ".", S_IFDIR);
  add (&l, "..", S_IFDIR);
  list_entries (&l, &n);
  return 0;
}

static int
fs_readlink (const char *path, char *buf, size_t size)
{
  AUTO_NODE struct node n = NODE_INIT;
  AUTO_FREE char *id = NULL;
  int r;

  r = node_get (path, &n);
  if (r < 0)
    return r;
  if (n.p.kind != FS_RP_JOBLINK)
    return -EINVAL;
  id = rp_refpoint_job (n.rp);
  if (id == NULL)
    return -ENOENT;
  /* FUSE wants it NUL-terminated, truncated if need be. */
  snprintf (buf, size, "../../../" FS_JOBS_DIR "/%s", id);
  return 0;
}

/* ---- structure: only referencepoints/ changes ---- */

/* mkdir / rmdir in referencepoints/: create or destroy a reference point.
 * The kernel reports the IN_CREATE / IN_DELETE itself, so the core's echo
 * is dropped if it comes during the call (only during: a later event of the
 * same name, e.g. through the method file, is a real one). */
static int
rp_dir_op (const char *path, enum rp_event ev,
           int (*op) (struct rp_system *, const char *,
                      const struct rp_caller *))
{
  struct fs_state *fs = fs_get ();
  struct fs_path p;
  struct rp_system *sys;
  struct rp_caller who = fs_caller ();
  int r;

  if (fs_self (path, NULL) != FS_SELF_NO) {
    fs_notifier_done (fs->notifier, path);
    return 0;
  }
  if (name_too_long (path))
    return -ENAMETOOLONG;
  if (fs_path_parse (path, &fs_names, &p) != FS_RP)
    return -EPERM;
  sys = rp_core_system (fs->core, p.sys);
  if (sys == NULL)
    return -ENOENT;
  fs_notifier_expect (fs->notifier, ev, path);
  r = fs_rv_errno (op (sys, p.rp, &who));
  fs_notifier_unexpect (fs->notifier, ev, path);
  return r;
}

static int
fs_mkdir (const char *path, mode_t mode)
{
  (void) mode;
  return rp_dir_op (path, RP_EV_CREATED, rp_system_mkdir_rp);
}

static int
fs_rmdir (const char *path)
{
  return rp_dir_op (path, RP_EV_DELETED, rp_system_rmdir_rp);
}

static int
fs_unlink (const char *path)
{
  if (fs_self (path, NULL) != FS_SELF_NO) {
    fs_notifier_done (fs_get ()->notifier, path);
    return 0;
  }
  return -EPERM;
}

static int
fs_symlink (const char *target, const char *path)
{
  (void) target;
  if (fs_self (path, NULL) != FS_SELF_NO) {
    fs_notifier_done (fs_get ()->notifier, path);
    return 0;
  }
  return -EPERM;
}

static int
fs_create (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  (void) path; (void) mode; (void) fi;
  return -EPERM;
}

static int
fs_mknod (const char *path, mode_t mode, dev_t dev)
{
  (void) path; (void) mode; (void) dev;
  return -EPERM;
}

static int
fs_rename (const char *from, const char *to, unsigned int flags)
{
  (void) from; (void) to; (void) flags;
  return -EPERM;
}

static int
fs_link (const char *from, const char *to)
{
  (void) from; (void) to;
  return -EPERM;
}

static int
fs_chmod (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  (void) path; (void) mode; (void) fi;
  return -EPERM;
}

static int
fs_chown (const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
  (void) path; (void) uid; (void) gid; (void) fi;
  return -EPERM;
}

/* ---- metadata ---- */

/* Times are not stored; accepting the change lets `touch FILE` succeed
 * (and the notifier raise IN_ATTRIB on directories and the job link). */
static int
fs_utimens (const char *path, const struct timespec tv[2],
            struct fuse_file_info *fi)
{
  AUTO_NODE struct node n = NODE_INIT;

  (void) tv;
  if (fi || fs_self (path, NULL) != FS_SELF_NO)
    return 0;
  return node_get (path, &n);
}

/* Without default_permissions the kernel asks us for access(2) only; the
 * answer is the one open, mkdir and readdir give (perm.c). */
static int
fs_access (const char *path, int mask)
{
  AUTO_NODE struct node n = NODE_INIT;
  struct rp_caller who = fs_caller ();
  int r;

  if (fs_self (path, NULL) != FS_SELF_NO)
    return 0;
  r = node_get (path, &n);
  if (r < 0)
    return r;
  return node_allows (&n, &who, mask);
}

static int
fs_statfs (const char *path, struct statvfs *sv)
{
  (void) path;
  memset (sv, 0, sizeof *sv);
  sv->f_bsize = 4096;
  sv->f_frsize = 4096;
  sv->f_namemax = FS_NAME_MAX;
  return 0;
}

/* ---- extended attributes: none, on every node (see the top) ---- */

static int
fs_setxattr (const char *path, const char *name, const char *value,
             size_t size, int flags)
{
  (void) path; (void) name; (void) value; (void) size; (void) flags;
  return -ENOTSUP;
}

static int
fs_getxattr (const char *path, const char *name, char *value, size_t size)
{
  (void) path; (void) name; (void) value; (void) size;
  return -ENOTSUP;
}

static int
fs_listxattr (const char *path, char *list, size_t size)
{
  (void) path; (void) list; (void) size;
  return -ENOTSUP;
}

static int
fs_removexattr (const char *path, const char *name)
{
  (void) path; (void) name;
  return -ENOTSUP;
}

static void *
fs_init (struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  /* Nothing may be cached: values, results and the tree change under the
   * kernel's feet, and inotify emulation relies on fresh lookups. */
  cfg->attr_timeout = 0;
  cfg->entry_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->use_ino = 0;
  cfg->nullpath_ok = 0;
  /* direct_io is set per open file (fs_open): every file bypasses the page
   * cache; point-in-time disks are read ahead in the core instead. */
  cfg->direct_io = 0;
  cfg->kernel_cache = 0;
  /* No cached data to revalidate (a getattr of a disk asks QEMU for the
   * allocation of the whole disk). */
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  cfg->auto_cache = 0;
  /* The notifier's unlink must reach us even if the file is open, not be
   * turned into a rename to .fuse_hidden*. */
  cfg->hard_remove = 1;
  /* O_TRUNC arrives with open (and is a no-op on control files) instead of
   * as a separate truncate. */
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
    conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  return fuse_get_context ()->private_data;
}

const struct fuse_operations fs_operations = {
  .init = fs_init,
  .getattr = fs_getattr,
  .readdir = fs_readdir,
  .readlink = fs_readlink,
  .mkdir = fs_mkdir,
  .rmdir = fs_rmdir,
  .unlink = fs_unlink,
  .symlink = fs_symlink,
  .create = fs_create,
  .mknod = fs_mknod,
  .rename = fs_rename,
  .link = fs_link,
  .chmod = fs_chmod,
  .chown = fs_chown,
  .utimens = fs_utimens,
  .access = fs_access,
  .statfs = fs_statfs,
  .setxattr = fs_setxattr,
  .getxattr = fs_getxattr,
  .listxattr = fs_listxattr,
  .removexattr = fs_removexattr,
  .open = fs_open,
  .read = fs_read,
  .write = fs_write,
  .truncate = fs_truncate,
  .flush = fs_flush,
  .fsync = fs_fsync,
  .release = fs_release,
  .lseek = fs_lseek,
};
