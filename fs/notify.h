/* rpfs FUSE frontend: inotify emulation (see the thread model note at the
 * top of notify.c). */
#ifndef RPFS_FS_NOTIFY_H
#define RPFS_FS_NOTIFY_H

#include <stdbool.h>
#include <sys/types.h>

#include "rpfs.h"

struct fs_notifier;

/* MOUNTPOINT must be absolute.  DEBUG: report failed emulations on stderr.
 * Returns NULL on out of memory. */
struct fs_notifier *fs_notifier_new (const char *mountpoint, bool debug);
/* Start the thread.  0 or -errno. */
int fs_notifier_start (struct fs_notifier *n);
/* The rp_notify_fn to register with rp_core_set_notify (opaque = N).
 * Never blocks: it only queues. */
void fs_notifier_event (void *opaque, enum rp_event ev, const char *path);
/* Accept no more events and start no more VFS operations (an operation in
 * flight finishes).  Call before unmounting. */
void fs_notifier_quiesce (struct fs_notifier *n);
/* Quiesce and join the thread.  Call after unmounting: an operation the
 * thread has in flight on the mount returns only once the connection is
 * gone or served. */
void fs_notifier_stop (struct fs_notifier *n);
/* Free (after rp_core_close, so no late callback can find it gone). */
void fs_notifier_free (struct fs_notifier *n);

/* For the FUSE callbacks: is this request one the notifier thread made,
 * and what must the callback pretend about PATH for it to raise the event? */
enum fs_self {
  FS_SELF_NO = 0,       /* an ordinary request */
  FS_SELF_PLAIN,        /* the notifier's own request: accept, change nothing */
  FS_SELF_HIDE,         /* ... and PATH must look absent (it is about to
                           mkdir / symlink it) */
  FS_SELF_GHOST,        /* ... and PATH must look present with *MODE (it is
                           about to rmdir / unlink it) */
};
enum fs_self fs_notifier_check (struct fs_notifier *n, pid_t pid,
                                const char *path, mode_t *mode);
/* The notifier's mkdir / rmdir / symlink / unlink of PATH arrived: stop
 * pretending, so the lookup that follows a mkdir finds the real node. */
void fs_notifier_done (struct fs_notifier *n, const char *path);

/* A mkdir / rmdir through the mount is about to change PATH: the kernel
 * raises that event itself, so drop the core's matching notification if it
 * comes while the call runs.  Withdraw the expectation when the call
 * returns (it expires after a few seconds anyway). */
void fs_notifier_expect (struct fs_notifier *n, enum rp_event ev,
                         const char *path);
void fs_notifier_unexpect (struct fs_notifier *n, enum rp_event ev,
                           const char *path);

#endif
