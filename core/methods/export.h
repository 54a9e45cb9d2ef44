/* An export job's state, shared by the directory export (export.c) and
 * archive exports and streams (arcjob.c, stream.c). */
#ifndef RPFS_EXPORT_H
#define RPFS_EXPORT_H

#include "internal.h"
#include "backend.h"
#include "ratelimit.h"

struct rp_outdir;
struct rp_stream;
struct rp_arc;
struct rp_bh;

struct export_work {
  struct rp_job *job;
  struct rp_refpoint *rp;
  struct rp_refpoint *base;     /* NULL: full export */
  bool digest;                  /* base's bitmaps lost: compare digests */
  struct rp_digests **tabs;     /* per disk: its digest table, or NULL */
  char (*dig_hex)[65];          /* per disk: SHA-256 of DISK.digests, or "" */
  struct rp_outdir *od;         /* ExportDirectory, as the caller; NULL for
                                   a stream */
  char *tmp_name;               /* hidden assembly directory (or file) */
  char meta_hex[2][65];         /* SHA-256 of config, referencepoint */
  char **disks;
  bool drop;                    /* KeepAssociatedData false */
  bool released;                /* rp no longer busy with this job */
  size_t cur;                   /* disk being copied, for progress */
  struct rp_seal **seals;       /* per disk: hash + fdatasync, once copied */
  struct rp_imagehash **ihs;    /* per disk: its table, hashed from the
                                   image once copied (full exports) */
  int *imgfds;                  /* per disk: its image, unnamed until the
                                   seal and the table are done, or -1 */
  struct rp_rate rate;          /* export-rate-limit, over all its disks */
  int format;                   /* enum rp_format (archive.h) */
  struct rp_stream *stream;     /* a streamed export: its reader's queue */
  struct rp_arc *arc;           /* an archive being written */
  char **sums;                  /* archive: "HASH  NAME" of each member */
  atomic_int write_errno;       /* archive file: the writer thread's error */
};

/* export.c */
/* Copy disk DISK the way W's format needs (prepare and clean up a
 * differential's bitmap around it).  A ReturnValue, -1 when cancelled. */
int rp_export_disk (struct export_work *w, const char *disk, char **why);
/* Make the qcow2 image in FD (empty, NAME in messages; backing file per
 * W's base) and copy disk DI into it from EP (the backend's NBD endpoint;
 * EP->bitmap: the differential's dirty bitmap, or NULL). */
int rp_export_image (struct export_work *w, int di, int fd, const char *name,
                     const struct rp_endpoint *ep, struct rp_bh *bh,
                     char **why);
/* A marker in the store naming W's hidden file or directory (made), so
 * that a start after a crash removes what the job leaves half done.
 * RV_OK with *MARKER (its path), or RV_FAILED with *WHY. */
int rp_export_marker (struct export_work *w, char **marker, char **why);
/* The export's config text (*LEN) and referencepoint text. */
char *rp_export_config (struct export_work *w, size_t *len, char **why);
char *rp_export_record_text (struct export_work *w);
void rp_export_progress (void *opaque, uint64_t done, uint64_t total);
void rp_export_background (struct rp_system *sys);
/* The job is over: records (an archive export's location), data drop,
 * job state, and W freed. */
void rp_export_done (struct export_work *w, int rv, const char *why);
/* Start a streamed export of RP (stream.c): every check of
 * ExportReferencePoint, then the job thread.  RV_JOB_STARTED or a
 * ReturnValue with *why. */
int rp_export_stream (struct rp_refpoint *rp, int format,
                      const struct rp_caller *who, struct rp_job *job,
                      struct rp_stream *s, char **why);

/* arcjob.c */
void *rp_arcjob_thread (void *opaque);
/* "<system>/REL", the name of a member */
char *rp_arcjob_member (struct export_work *w, const char *rel);
/* A failed archive write: RV_FAILED with *WHY, or -1 when cancelled. */
int rp_arcjob_arc_rv (struct export_work *w, char **why);
/* An NBD failure: QEMU gone (32777) or anything else (32768), with *WHY;
 * -1 when cancelled. */
int rp_arcjob_nbd_rv (struct export_work *w, const char *msg, char **why);
/* SHA256SUMS's line "HEX  REL" */
void rp_arcjob_add_sum (struct export_work *w, const char *rel,
                        const char hex[65]);
/* Add disk DI to W's archive from EP: sparse raw (full) or a staged qcow2
 * overlay (W->base set: differential), then its digest table from BH (if
 * not NULL; freed) as disks/<disk>.digests, kept in W->tabs[W->cur]. */
int rp_arcjob_disk (struct export_work *w, int di,
                    const struct rp_endpoint *ep, struct rp_bh *bh,
                    char **why);

/* arcraw.c */
/* Add disk DI of a full export as a sparse raw member read from EP, with
 * its SHA256SUMS line, and its digest table into BH (if not NULL). */
int rp_arcraw_disk (struct export_work *w, int di,
                    const struct rp_endpoint *ep, struct rp_bh *bh,
                    char **why);

/* stream.c: the job's side of a stream.  Push: 0 or -errno (ECANCELED once
 * the reader has gone or the job was cancelled).  End: the job's
 * outcome (RV_OK, -1 cancelled, a ReturnValue) for the reader. */
int rp_stream_push (void *stream, const void *buf, size_t len);
void rp_stream_end (struct rp_stream *s, int rv);
void rp_stream_hold (struct rp_stream *s);
/* A queue for JOB with no FUSE reader (an archive file's writer thread
 * reads it); +1 ref.  detach: that reader gives up (without cancelling the
 * job) and drops its ref. */
struct rp_stream *rp_stream_new (struct rp_job *job);
void rp_stream_detach (struct rp_stream *s);
void rp_stream_put (struct rp_stream *s);

#endif
