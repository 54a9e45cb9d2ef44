/* VerifyExport's inputs, resolved as the caller (docs/design.md, "Acting
 * for a caller"): the export's directory, its record, its tables, and each
 * image with its backing chain, opened as the caller into descriptors that
 * the QEMU tools reach as /proc/<rpfs>/fd/<n> (rp_fd_path). */
#ifndef RPFS_VERIFYCHAIN_H
#define RPFS_VERIFYCHAIN_H

#include <stddef.h>

#include "rpfs.h"
#include "blockhash.h"

/* Descriptors a job keeps open until it ends. */
struct rp_fds {
  int *v;
  size_t n;
};
void rp_fds_close (struct rp_fds *f);

/* Open the export at PATH (an ExportDirectory holding SYSTEM/, or that
 * SYSTEM/ directory itself) as WHO, refusing anything under MOUNT_REAL.
 * RV_OK with *ROOT (the SYSTEM/ directory), or a ReturnValue with *WHY. */
int rp_verify_root (const struct rp_caller *who, const char *path,
                    const char *system, const char *mount_real, int *root,
                    char **why);
/* PATH as WHO: if it is a regular file outside MOUNT_REAL (an archive
 * export), RV_OK with *FD open on it (blocking reads: it is a regular
 * file); if it is anything else, RV_OK with *FD -1; or a ReturnValue with
 * *WHY (a relative path, a file inside the mount). */
int rp_verify_open_archive (const struct rp_caller *who, const char *path,
                            const char *mount_real, int *fd, char **why);
/* Read the file REL under ROOT as WHO: a regular file, no symlink, at most
 * CAP bytes.  NULL with *WHY. */
char *rp_verify_read (const struct rp_caller *who, int root, const char *rel,
                      size_t cap, size_t *len, char **why);
/* The json: spec that opens disks/DISK.qcow2 under ROOT with its whole
 * backing chain, each layer a descriptor opened as WHO (kept in FDS).
 * Refuses a layer that is not qcow2 or has an external data file.  NULL
 * with *WHY. */
char *rp_verify_image_spec (const struct rp_caller *who, int root,
                            const char *disk, struct rp_fds *fds,
                            char **why);
/* The json: spec that opens the qcow2 overlay in FD (a differential
 * archive's, staged) alone: its own clusters, nothing of a backing file.
 * Refuses what layer checks refuse.  NULL with *WHY (NAME in it). */
char *rp_verify_overlay_spec (int fd, const char *name, char **why);

#endif
