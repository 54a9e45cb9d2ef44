/* The qemu-nbd that writes an export's qcow2 image (QEMU's own qcow2
 * writer: rpfs never formats qcow2 itself). */
#ifndef RPFS_TARGET_H
#define RPFS_TARGET_H

#include <sys/types.h>

struct nbd_handle;

struct rp_target {
  pid_t pid;                    /* -1: not running */
  char *sock;                   /* its socket, in the store's run/ */
  struct nbd_handle *keeper;    /* held open for the whole copy */
};

/* Start qemu-nbd on the empty qcow2 image at PATH (a /proc/<rpfs>/fd/<n>
 * path), serving CONNS connections on a socket in RUN_DIR, and connect
 * once: 0, or EIO with *ERR.  qemu-nbd writes with io_uring where it can
 * (the kernel allows it and QEMU was built with it): over five paired
 * rounds on two CPUs, copying a libvirt domain's 2 GiB, it used a fifth
 * less CPU than its thread pool (2.1 s against 2.7 s, less in every round)
 * and the copy took 3.41 s against 3.84 s (medians)
 * (docs/performance.md).  Where qemu-nbd cannot, it exits at once: it is
 * started again with its thread pool, and rpfs does not try io_uring
 * again until it restarts (the log says so, once). */
int rp_target_start (struct rp_target *t, const char *path,
                     const char *run_dir, int conns, char **err);

/* One more connection to T's qemu-nbd: a handle, or NULL with *ERR. */
struct nbd_handle *rp_target_connect (const struct rp_target *t, char **err);

/* Let go of the kept connection, wait for qemu-nbd to exit (it exits when
 * its last client leaves; SIGTERM, also a clean close of the image, after
 * 3 s, SIGKILL 3 s later) and remove the socket: 0, or -1 when it had to
 * be killed. */
int rp_target_stop (struct rp_target *t);

#endif
