/* VerifyExport's job (verify.c), shared with the archive half
 * (verifyarc.c): a directory export is read through qemu-nbd layer by
 * layer, a full archive export in one pass with libarchive. */
#ifndef RPFS_VERIFY_H
#define RPFS_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "blockhash.h"
#include "verifychain.h"

struct verify_work {
  struct rp_job *job;
  struct rp_refpoint *rp;
  char **disks;
  char **specs;                 /* per disk: json: spec of its image */
  struct rp_digests **tabs;     /* per disk: the table to compare with
                                   (archive: NULL = the archive's own) */
  struct rp_fds fds;            /* every layer, opened as the caller */
  int arcfd;                    /* an archive export, opened as the caller;
                                   -1 for a directory */
  char *path;                   /* what the caller named */
  bool diff;                    /* a differential archive: */
  int *stage;                   /*   per disk, its overlay's staging file */
  uint64_t *stage_max;          /*   and the most it may hold */
  uint64_t *sizes;              /* archive: per disk, the disk's size */
  struct rp_digests **btabs;    /*   per disk, the base's table */
  size_t step, steps;           /* for PercentComplete */
};

/* verify.c */
/* Check an export's referencepoint TEXT: of RP, its disks into *DISKS,
 * *DIFFERENTIAL its ExportType.  RV_OK or RV_INVALID_PARAMETER, *WHY. */
int rp_verify_record (struct rp_refpoint *rp, const char *text, size_t len,
                      char ***disks, bool *differential, char **why);
/* The message and ReturnValue of disk I's first bad block BAD in WHAT. */
int rp_verify_bad (struct verify_work *w, size_t i, const struct rp_digests *t,
                   uint64_t bad, const char *what, char **why);
void rp_verify_progress (void *opaque, uint64_t done, uint64_t total);

/* verifyarc.c */
/* W->arcfd is an archive: check its record (an export of W->rp), and with
 * JOB find the tables to compare with (and, for a differential, the base's
 * tables and the staging files, made as WHO next to the archive).  RV_OK,
 * or a ReturnValue. */
int rp_verify_archive_prepare (struct verify_work *w,
                               const struct rp_caller *who, bool job,
                               char **why);
/* The job's pass through the archive: RV_OK, -1 (cancelled), or a
 * ReturnValue with *WHY naming the disk and the first bad block. */
int rp_verify_archive (struct verify_work *w, char **why);

#endif
