/* Hashing the disks inside a full archive export (VerifyExport of an
 * archive file, core/methods/verify.c): one pass through the archive with
 * libarchive, nothing staged.  Each disks/<disk>.raw member is hashed block
 * by block as it streams by (a sparse member's holes are zeros), into a
 * table of its own; each disks/<disk>.digests member is read as the
 * archive's own table. */
#ifndef RPFS_ARCHASH_H
#define RPFS_ARCHASH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockhash.h"

/* What one pass found, per disk of DISKS (same order). */
struct rp_arc_disks {
  struct rp_digests **got;      /* the content's table (NULL: no member) */
  struct rp_digests **own;      /* the archive's disks/<d>.digests, or NULL */
  char **odd;                   /* a member that is not a full disk image
                                   (e.g. disks/<d>.qcow2), or NULL */
  /* Set by the caller: per disk, its size (a disks/<d>.raw member of
   * another size is refused before its table is made); NULL: any size up
   * to 1 TiB. */
  const uint64_t *size;
  /* Set by the caller for a differential archive: per disk, a file to
   * write its disks/<d>.qcow2 member (the overlay) into, or -1; NULL for
   * none; STAGE_MAX: the most bytes each may hold (a larger member is
   * refused before anything is written).  STAGED says which were. */
  const int *stage;
  const uint64_t *stage_max;
  bool *staged;
};
void rp_arc_disks_free (struct rp_arc_disks *d, size_t n);

/* Read the archive on FD (PATH in messages) whose members sit under
 * SYSTEM/.  PROGRESS(opaque, done, total) with bytes of disk data hashed
 * out of TOTAL.  0 with *D filled, ECANCELED, or -1 with *WHY. */
int rp_arc_hash_disks (int fd, const char *path, const char *system,
                       char *const *disks, uint64_t total,
                       atomic_bool *cancel,
                       void (*progress) (void *, uint64_t, uint64_t),
                       void *opaque, struct rp_arc_disks *d, char **why);

#endif
