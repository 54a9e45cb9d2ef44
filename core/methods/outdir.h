/* An export's output directory, resolved as the caller.
 *
 * The ExportDirectory a caller names is opened once, by the FUSE thread
 * that serves the caller's write and under the caller's file system
 * identity (caller.h), into a descriptor that the job keeps to its end.
 * Every later step (the hidden assembly directory, each file, their modes,
 * the final rename, the removal after a failure, the clean-up after a
 * crash) acts relative to descriptors, as the caller: the files are the
 * caller's own, the kernel checks every step as for the caller, and a name
 * the caller swaps for a symlink in the meantime is never followed. */
#ifndef RPFS_OUTDIR_H
#define RPFS_OUTDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rpfs.h"

struct rp_outdir;

/* Resolve PATH as WHO and check it (spec 5.3): absolute, outside MOUNT_REAL,
 * its parent exists, WHO may create files there, no entry FINAL_NAME yet.
 * CREATE: make the directory if it is missing (as WHO, so WHO owns it) and
 * return it in *OUT; otherwise only check (*OUT may be NULL).  Returns
 * RV_OK, or a ReturnValue with *WHY. */
int rp_outdir_open (const char *path, const char *final_name,
                    const char *mount_real, const struct rp_caller *who,
                    bool create, struct rp_outdir **out, char **why);
void rp_outdir_free (struct rp_outdir *o);

/* The directory's canonical path (for messages and records). */
const char *rp_outdir_path (const struct rp_outdir *o);

/* Make the hidden assembly directory TMP_NAME with its disks/ inside.  0, or
 * -1 with *WHY. */
int rp_outdir_begin (struct rp_outdir *o, const char *tmp_name, char **why);
/* Text for the crash marker in the store: enough to find and remove the
 * assembly directory later, as the same caller, only if it is still the
 * same directory. */
char *rp_outdir_marker (const struct rp_outdir *o);
/* Remove what a marker names (rp_export_cleanup, at start).  Logs what it
 * does or refuses. */
void rp_outdir_cleanup (const char *marker_text);

/* Create REL ("config", "disks/sda.qcow2") in the assembly directory, new
 * (O_EXCL, no symlink followed), as the caller: a read-write descriptor, or
 * -errno. */
int rp_outdir_create (struct rp_outdir *o, const char *rel, mode_t mode);
/* A disk image of the export, unnamed (O_TMPFILE in disks/, as the
 * caller, 0644) until rp_outdir_link names it: nobody can open it by a
 * path while rpfs writes, hashes and seals it.  A descriptor or -errno. */
int rp_outdir_image (struct rp_outdir *o);
/* Name the unnamed FD as REL ("disks/sda.qcow2"), never over an existing
 * entry.  0 or -errno. */
int rp_outdir_link (struct rp_outdir *o, int fd, const char *rel);
/* Create REL with BUF/LEN written and synced.  0 or -errno. */
int rp_outdir_write (struct rp_outdir *o, const char *rel, const void *buf,
                     size_t len);

/* Make the assembly directory 0755, sync it, and rename it to FINAL_NAME
 * (never over an existing entry).  RV_OK, or a ReturnValue with *WHY. */
int rp_outdir_commit (struct rp_outdir *o, char **why);
/* Remove the assembly directory (and the ExportDirectory, if rpfs made it
 * and it is empty). */
void rp_outdir_abort (struct rp_outdir *o);

/* Archive exports.  begin_file: create the hidden file TMP_NAME (0600, as
 * the caller) that the archive is written to: its descriptor (owned by O),
 * or -1 with *WHY.  tmpfile: an unnamed file in the directory, as the
 * caller (a differential's staged image): a descriptor or -errno.
 * commit_file: sync it, write SIDECAR as FINAL_NAME.sha256, then rename the
 * archive to FINAL_NAME (never over an existing entry).  abort removes
 * both. */
int rp_outdir_begin_file (struct rp_outdir *o, const char *tmp_name,
                          char **why);
int rp_outdir_tmpfile (struct rp_outdir *o);
int rp_outdir_commit_file (struct rp_outdir *o, const char *sidecar,
                           char **why);

/* Path of the file REL of the final export, e.g. for the record of the
 * reference point's exports (caller frees). */
char *rp_outdir_final_path (const struct rp_outdir *o, const char *rel);
/* realpath of TARGET, resolved as the caller (NULL if it does not resolve
 * for them). */
char *rp_outdir_realpath (const struct rp_outdir *o, const char *target);

/* "/proc/<rpfs>/fd/<n>": a name for the open file FD that a helper process
 * (qemu-img, qemu-nbd) can open without walking any directory a caller
 * controls. */
char *rp_fd_path (int fd);

#endif
