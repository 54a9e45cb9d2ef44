/* rpfs FUSE frontend: from a path to the core objects it names, their
 * values, modes and attributes. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "ops.h"

const char *const fs_job_methods[] = { "RequestStateChange", NULL };

const struct fs_names fs_names = {
  .sys_methods = rp_system_methods,
  .rp_methods = rp_refpoint_methods,
  .job_methods = fs_job_methods,
  .rp_streams = rp_refpoint_streams,
};

/* Block size reported for disk files, so cp and dd use large requests
 * (FUSE splits at max_read / max_write anyway). */
#define DISK_BLKSIZE (1024 * 1024)

int
fs_rv_errno (int rv)
{
  int e;

  if (rv == RV_OK || rv == RV_JOB_STARTED)
    return 0;
  e = rp_rv_errno (rv);
  return -(e > 0 ? e : EIO);
}

struct rp_caller
fs_caller (void)
{
  struct fuse_context *c = fuse_get_context ();
  struct rp_caller who = { .uid = c->uid, .gid = c->gid, .pid = c->pid };
  /* The calling process's supplementary groups (libfuse reads them from
   * /proc); more than fit are dropped, which can only deny, never grant. */
  int n = fuse_getgroups (RP_CALLER_GROUPS, who.groups);
  who.ngroups = n < 0 ? 0 : n > RP_CALLER_GROUPS ? RP_CALLER_GROUPS : n;
  return who;
}

enum fs_self
fs_self (const char *path, mode_t *mode)
{
  return fs_notifier_check (fs_get ()->notifier, fuse_get_context ()->pid,
                            path, mode);
}

static bool
in_list (const char *const *list, const char *name)
{
  for (; list && *list; list++)
    if (strcmp (*list, name) == 0)
      return true;
  return false;
}

bool
fs_lines_contain (const char *text, const char *word)
{
  size_t len = strlen (word);

  while (text && *text) {
    const char *nl = strchrnul (text, '\n');

    if ((size_t) (nl - text) == len && memcmp (text, word, len) == 0)
      return true;
    text = *nl ? nl + 1 : nl;
  }
  return false;
}

static bool
strv_contains (char **v, const char *s)
{
  for (; v && *v; v++)
    if (strcmp (*v, s) == 0)
      return true;
  return false;
}

void
node_put (struct node *n)
{
  if (n->rp)
    rp_refpoint_put (n->rp);
  if (n->job)
    rp_job_put (n->job);
  n->rp = NULL;
  n->job = NULL;
}

/* Does the leaf named by n->p exist, now that its parents do? */
static bool
leaf_exists (struct node *n)
{
  const char *name = n->p.name;

  switch (n->p.kind) {
  case FS_SYS_PROP:
    return in_list (rp_system_props, name);
  case FS_SYS_DISK: {
    AUTO_STRV char **disks = rp_system_disks (n->sys);
    return strv_contains (disks, name);
  }
  case FS_RP_PROP:
    return in_list (rp_refpoint_props, name);
  case FS_RP_SETTING:
    return in_list (rp_refpoint_settings, name);
  case FS_RP_DISK: {
    AUTO_FREE char *ids = NULL;

    /* The content at the reference point exists while it keeps its data. */
    if (!rp_refpoint_has_data (n->rp))
      return false;
    ids = rp_refpoint_prop (n->rp, "VirtualDiskIdentifiers");
    return fs_lines_contain (ids, name);
  }
  case FS_RP_JOBLINK: {
    AUTO_FREE char *id = rp_refpoint_job (n->rp);
    return id != NULL;
  }
  case FS_JOB_PROP:
    return in_list (rp_job_props, name);
  default:
    return true;        /* directories and methods: the parser checked */
  }
}

int
node_get (const char *path, struct node *n)
{
  struct rp_core *core = fs_get ()->core;

  n->sys = NULL;
  n->rp = NULL;
  n->job = NULL;
  if (fs_path_parse (path, &fs_names, &n->p) == FS_NONE)
    return -ENOENT;
  if (n->p.sys && (n->sys = rp_core_system (core, n->p.sys)) == NULL)
    return -ENOENT;
  if (n->p.rp && (n->rp = rp_refpoint_get (n->sys, n->p.rp)) == NULL)
    return -ENOENT;
  if (n->p.job && (n->job = rp_job_get (core, n->p.job)) == NULL)
    return -ENOENT;
  return leaf_exists (n) ? 0 : -ENOENT;
}

char *
node_value (struct node *n, const struct rp_caller *who)
{
  const char *name = n->p.name;
  char *v = NULL;

  switch (n->p.kind) {
  case FS_SYS_PROP:
    return rp_system_prop (n->sys, name);
  case FS_RP_PROP:
    return rp_refpoint_prop (n->rp, name);
  case FS_JOB_PROP:
    return rp_job_prop (n->job, name, who);
  case FS_RP_SETTING:
    v = rp_refpoint_setting (n->rp, name);
    break;
  case FS_SYS_METHOD:
    v = rp_system_result (n->sys, name, who);
    break;
  case FS_RP_METHOD:
    v = rp_refpoint_result (n->rp, name, who);
    break;
  case FS_JOB_METHOD:
    /* RequestStateChange creates no job record: nothing to report. */
  default:
    break;
  }
  /* Settings and methods always exist; no value reads as empty. */
  return v ? v : strdup ("");
}

void
fs_stat_base (struct stat *st, mode_t mode)
{
  struct fs_state *fs = fs_get ();

  memset (st, 0, sizeof *st);
  st->st_mode = mode;
  st->st_nlink = S_ISDIR (mode) ? 2 : 1;
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  st->st_blksize = 4096;
  st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = fs->start;
}

int
node_stat (struct node *n, struct stat *st)
{
  enum fs_kind k = n->p.kind;

  uid_t uid;
  gid_t gid;

  fs_stat_base (st, node_attr (n, &uid, &gid));
  st->st_uid = uid;
  st->st_gid = gid;
  if (k == FS_SYS_DISK || k == FS_RP_DISK) {
    uint64_t size, allocated;
    int r = rp_disk_stat (n->sys, n->rp, n->p.name, &size, &allocated);

    if (r < 0)
      return r;
    st->st_size = size;
    st->st_blocks = (allocated + 511) / 512;
    st->st_blksize = DISK_BLKSIZE;
  }
  else if (k == FS_RP_JOBLINK) {
    AUTO_FREE char *id = rp_refpoint_job (n->rp);

    if (id == NULL)
      return -ENOENT;
    st->st_size = strlen ("../../../jobs/") + strlen (id);
  }
  else if (fs_kind_is_value (k)) {
    /* interface.md 4: st_size is the size of the current value, so tools
     * that trust stat read it whole. */
    struct rp_caller who = fs_caller ();
    AUTO_FREE char *v = node_value (n, &who);

    if (v == NULL)
      return -ENOENT;
    st->st_size = strlen (v);
    st->st_blocks = (st->st_size + 511) / 512;
  }
  return 0;
}
