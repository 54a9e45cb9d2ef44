/* rpfs FUSE frontend: shared declarations for fs/.
 *
 * The frontend is thin: it parses paths (path.c), asks the core (rpfs.h)
 * and turns ReturnValues into errno in one place (fs_rv_errno).  It never
 * includes the core's internal headers. */
#ifndef RPFS_FS_H
#define RPFS_FS_H

/* Pinned once for all of fs/. */
#define FUSE_USE_VERSION 31

#include <fuse.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#include "rpfs.h"
#include "path.h"

#define RPFS_VERSION "rpfs 1.0"

struct fs_notifier;

/* Everything the FUSE callbacks need; handed to fuse_new() as user data and
 * read back through fuse_get_context()->private_data. */
struct fs_state {
  struct rp_core *core;
  struct fs_notifier *notifier;   /* NULL until started */
  uid_t uid;                      /* the mount owner */
  gid_t gid;
  time_t start;                   /* times shown on every node */
  bool debug;                     /* -d: say why inotify emulation failed */
};

static inline struct fs_state *
fs_get (void)
{
  return fuse_get_context ()->private_data;
}

/* ops.c */
extern const struct fuse_operations fs_operations;
/* The one place a ReturnValue becomes a FUSE result: 0 for RV_OK and
 * RV_JOB_STARTED, else -errno (interface.md section 6). */
int fs_rv_errno (int rv);
/* Method file names of jobs (the core has no list for these). */
extern const char *const fs_job_methods[];
extern const struct fs_names fs_names;

/* Scoped cleanup.  Not named CLEANUP_FREE so fs/ never clashes with the
 * core's internal util.h. */
static inline void
fs_cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}
#define AUTO_FREE __attribute__ ((cleanup (fs_cleanup_free)))

static inline void
fs_cleanup_strv (void *ptr)
{
  char **v = *(char ***) ptr;

  if (v)
    rp_strv_free (v);
}
#define AUTO_STRV __attribute__ ((cleanup (fs_cleanup_strv)))

#endif
