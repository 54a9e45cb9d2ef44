/* rpfs FUSE frontend: who may do what, as the tree shows it (modes and
 * owners for ls -l) and as requests are refused (access, open, readdir).
 * The rules themselves are the core's (core/methods/access.c); this file only maps
 * each kind of node to them.
 *
 * rpfs is mounted without default_permissions, so the kernel checks no
 * mode: every refusal happens here or in the core.  The modes are a static
 * picture of the rules (the kernel may cache attributes, so they do not
 * change with the caller):
 *   a system and everything in it   the definition's owner:group
 *     methods 0220, settings 0664, properties 0444, directories 0755,
 *     referencepoints/ 0775 (operators mkdir and rmdir there),
 *     disks/ 0750 (only operators reach disks), streamed exports
 *     (export.tar...) 0440 (only operators read them)
 *   a disk file                     the image file's owner:group and its
 *     read and write bits (write bits only while disks are writable)
 *   a job and its files             its submitter:the system's group
 *   the root and jobs/              the mount owner
 * What they cannot say: the user rpfs runs as is an operator too, and a
 * disk gives nothing to someone who is no operator, whatever its bits. */
#include <errno.h>
#include <unistd.h>

#include "ops.h"

bool
node_disk_writable (struct node *n)
{
  return n->p.kind == FS_SYS_DISK && rp_system_disks_writable (n->sys);
}

/* Permission bits of a disk file: the image's read and write bits. */
static mode_t
disk_bits (struct node *n, uid_t *uid, gid_t *gid)
{
  mode_t mode;

  if (rp_disk_owner (n->sys, n->p.name, uid, gid, &mode) != 0)
    return 0;                   /* image gone: only root gets in */
  return mode & (node_disk_writable (n) ? 0666 : 0444);
}

/* Mode bits and owner of a node other than the tree's own directories. */
static mode_t
node_bits (struct node *n, uid_t *uid, gid_t *gid)
{
  switch (n->p.kind) {
  case FS_SYS_DISK: case FS_RP_DISK:
    return disk_bits (n, uid, gid);
  case FS_JOB: case FS_JOB_PROP: case FS_JOB_METHOD:
    rp_job_owner (n->job, uid, gid);
    return n->p.kind == FS_JOB_METHOD ? 0220
      : n->p.kind == FS_JOB ? 0755 : 0444;
  default:
    break;
  }
  rp_system_owner (n->sys, uid, gid);
  switch (n->p.kind) {
  case FS_RPS:
    return 0775;
  case FS_SYS_DISKS: case FS_RP_DISKS:
    return 0750;
  case FS_RP_JOBLINK:
    return 0777;
  case FS_RP_SETTING:
    return 0664;
  case FS_RP_STREAM:
    return 0440;
  case FS_SYS_METHOD: case FS_RP_METHOD:
    return 0220;
  default:
    return fs_kind_is_dir (n->p.kind) ? 0755 : 0444;
  }
}

mode_t
node_attr (struct node *n, uid_t *uid, gid_t *gid)
{
  enum fs_kind k = n->p.kind;
  struct fs_state *fs = fs_get ();
  mode_t type = fs_kind_is_dir (k) ? S_IFDIR
    : k == FS_RP_JOBLINK ? S_IFLNK : S_IFREG;

  *uid = fs->uid;
  *gid = fs->gid;
  if (k == FS_ROOT || k == FS_JOBS)
    return type | 0755;
  return type | node_bits (n, uid, gid);
}

mode_t
node_mode (struct node *n)
{
  uid_t uid;
  gid_t gid;

  return node_attr (n, &uid, &gid);
}

/* WANT (R_OK, W_OK, X_OK) on a file.  Reads of methods are always served
 * (each caller reads only its own result), as are reads of properties and
 * settings. */
static int
file_allows (struct node *n, const struct rp_caller *who, int want)
{
  switch (n->p.kind) {
  case FS_SYS_DISK: case FS_RP_DISK:
    if ((want & W_OK) && !node_disk_writable (n))
      return -EACCES;
    return fs_rv_errno (rp_disk_access (n->sys, n->p.name, who,
                                        want & (R_OK | W_OK)));
  case FS_RP_SETTING: case FS_SYS_METHOD: case FS_RP_METHOD:
    if ((want & W_OK) && !rp_system_may_operate (n->sys, who))
      return -EACCES;
    return 0;
  case FS_RP_STREAM:
    /* An export, like a method call: operators only, read only. */
    if (want & W_OK)
      return -EACCES;
    return rp_system_may_operate (n->sys, who) ? 0 : -EACCES;
  case FS_JOB_METHOD:
    if ((want & W_OK) && !rp_job_may_control (n->job, who))
      return -EACCES;
    return 0;
  default:
    return (want & W_OK) ? -EACCES : 0;   /* properties: read-only */
  }
}

int
node_allows (struct node *n, const struct rp_caller *who, int want)
{
  enum fs_kind k = n->p.kind;

  if ((want & X_OK) && !fs_kind_is_dir (k))
    return -EACCES;
  if (!fs_kind_is_dir (k))
    return file_allows (n, who, want);
  switch (k) {
  case FS_SYS_DISKS: case FS_RP_DISKS:
    /* Listing and entering disks/ are for operators (mode 0750). */
    return rp_system_may_operate (n->sys, who) ? 0 : -EACCES;
  case FS_RPS:
    if ((want & W_OK) && !rp_system_may_operate (n->sys, who))
      return -EACCES;
    return 0;
  default:
    /* The tree's structure does not change (mkdir elsewhere is EPERM);
     * a W_OK test is answered as before, by the mode alone. */
    return 0;
  }
}
