/* rpfs FUSE frontend: internal interface of the FUSE callbacks
 * (ops.c: tree and metadata, ops_files.c: file I/O, ops_node.c: resolving
 * a path to core objects). */
#ifndef RPFS_FS_OPS_H
#define RPFS_FS_OPS_H

#include <stdbool.h>
#include <sys/stat.h>

#include "fs.h"
#include "notify.h"

/* A path resolved to the core objects it names.  sys is borrowed (systems
 * live until rp_core_close); rp and job carry a reference that node_put
 * drops.  Declare as AUTO_NODE struct node n = NODE_INIT. */
struct node {
  struct fs_path p;
  struct rp_system *sys;
  struct rp_refpoint *rp;
  struct rp_job *job;
};
#define NODE_INIT { .sys = NULL, .rp = NULL, .job = NULL }
void node_put (struct node *n);
#define AUTO_NODE __attribute__ ((cleanup (node_put)))

/* Resolve PATH: 0, or -ENOENT when it or any object on the way does not
 * exist.  Property leaves are checked by name only (see node_value). */
int node_get (const char *path, struct node *n);
/* The rendered value of a property, setting or method file (a method gives
 * WHO's last result, "" when none).  NULL when a property has no value for
 * this object (e.g. ExportedDisks of a non-export job): it does not exist.
 * Caller frees. */
char *node_value (struct node *n, const struct rp_caller *who);
/* perm.c: st_mode (type and permissions) of an existing node, and the
 * owner and group ls -l shows; node_mode without them. */
mode_t node_attr (struct node *n, uid_t *uid, gid_t *gid);
mode_t node_mode (struct node *n);
/* May WHO do WANT (R_OK, W_OK, X_OK) to the node?  0 or -EACCES (-errno). */
int node_allows (struct node *n, const struct rp_caller *who, int want);
/* A current disk of a system no running VM owns. */
bool node_disk_writable (struct node *n);
/* Fill *ST for an existing node (renders values for st_size). */
int node_stat (struct node *n, struct stat *st);
/* Attributes common to every node. */
void fs_stat_base (struct stat *st, mode_t mode);
/* True when the line-per-element TEXT holds WORD as a whole line. */
bool fs_lines_contain (const char *text, const char *word);

/* The caller of the current FUSE request. */
struct rp_caller fs_caller (void);
/* What the notifier needs us to pretend for this request (notify.h). */
enum fs_self fs_self (const char *path, mode_t *mode);

/* ops_files.c */
int fs_open (const char *path, struct fuse_file_info *fi);
int fs_read (const char *path, char *buf, size_t size, off_t off,
             struct fuse_file_info *fi);
int fs_write (const char *path, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi);
int fs_truncate (const char *path, off_t size, struct fuse_file_info *fi);
int fs_flush (const char *path, struct fuse_file_info *fi);
int fs_fsync (const char *path, int datasync, struct fuse_file_info *fi);
int fs_release (const char *path, struct fuse_file_info *fi);
off_t fs_lseek (const char *path, off_t off, int whence,
                struct fuse_file_info *fi);

#endif
