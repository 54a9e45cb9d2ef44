/* Archive exports (docs/reference.md section 9, "Archive exports"): the
 * formats, the libarchive writer that turns an export's files into one
 * tar stream (optionally compressed by libarchive's filters), and the
 * reader that takes the two small metadata members out of such an archive
 * for ImportReferencePointMetadata.  rpfs writes no tar or compression code
 * of its own.
 *
 * The writer hands every block of the finished (compressed) stream to a
 * sink: a file in the caller's ExportDirectory, or the queue a FUSE reader
 * drains (stream.c).  It hashes each member (SHA256SUMS inside) on the
 * way.  One thread uses a writer. */
#ifndef RPFS_ARC_H
#define RPFS_ARC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum rp_format { RP_FMT_QCOW2 = 0, RP_FMT_TAR, RP_FMT_TGZ, RP_FMT_TXZ,
                 RP_FMT_TZST };

/* "qcow2", "tar", "tar.gz", "tar.xz", "tar.zst" -> enum, or -1. */
int rp_format_parse (const char *v);
const char *rp_format_name (int fmt);

/* Where the archive's bytes go: 0, or -errno (which fails the export). */
typedef int (*rp_arc_sink) (void *opaque, const void *buf, size_t len);

struct rp_arc;
/* A pax (POSIX.1-2001) tar stream in FMT, compressed at LEVEL (0: the
 * format's default, see rp_arc_default_level), with the host's cores where
 * the filter can use them (xz, zstd).  NULL with *why. */
struct rp_arc *rp_arc_new (int fmt, int level, rp_arc_sink sink, void *opaque,
                           char **why);
int rp_arc_default_level (int fmt);
/* Begin member NAME of SIZE bytes (mode 0644, mtime MTIME).  DATA (may be
 * NULL): for a sparse member, the data ranges as OFF,LEN pairs (NDATA of
 * them, sorted); everything else reads as zeros and takes no room.  Then
 * rp_arc_data for all SIZE bytes in order (holes included: the writer skips
 * them), then rp_arc_end.  0, or -1 with *why. */
int rp_arc_begin (struct rp_arc *c, const char *name, uint64_t size,
                  time_t mtime, const uint64_t *data, size_t ndata,
                  char **why);
int rp_arc_data (struct rp_arc *c, const void *buf, size_t len, char **why);
/* LEN zero bytes (a hole of a sparse member). */
int rp_arc_zeros (struct rp_arc *c, uint64_t len, char **why);
/* The member being written is hashed by the caller (memberhash.h):
 * rp_arc_data skips its SHA-256, and rp_arc_end's HEX means nothing. */
void rp_arc_unhashed (struct rp_arc *c);
/* End the member; HEX gets its SHA-256. */
int rp_arc_end (struct rp_arc *c, char hex[65], char **why);
/* A whole small member. */
int rp_arc_add (struct rp_arc *c, const char *name, const void *buf,
                size_t len, time_t mtime, char hex[65], char **why);
/* Finish the stream (end of archive, compressor flushed).  0, or -1 with
 * *why.  (The archive's own SHA-256, for the sidecar, is the sink's to
 * compute: the writer thread of an archive file does; a stream has no
 * sidecar.) */
int rp_arc_close (struct rp_arc *c, char **why);
/* Lower-case hex of a finished SHA-256 context. */
struct evp_md_ctx_st;
void rp_arc_hex (struct evp_md_ctx_st *ctx, char hex[65]);
/* The errno a sink returned, if that is what failed (0 otherwise). */
int rp_arc_sink_error (const struct rp_arc *c);
void rp_arc_free (struct rp_arc *c);

/* Read members ending in "/config" and "/referencepoint" (one directory
 * deep) from the archive open on FD, each at most CAP bytes.  0 with both
 * (caller frees), or -1 with *why. */
int rp_arc_read_meta (int fd, const char *path, size_t cap, char **cfg,
                      size_t *cfglen, char **rec, size_t *reclen, char **why);

/* Walking every member of the archive open on FD (PATH in messages):
 * MEMBER says whether to read a member's data (1), skip it (0) or stop
 * (-1, *why set); DATA gets the data in order, as OFF,LEN pieces (the holes
 * of a sparse member are not passed: they read as zeros); END follows the
 * last piece of a read member.  Both return 0, or -1 with *why. */
struct rp_arc_walker {
  int (*member) (void *opaque, const char *name, uint64_t size, char **why);
  int (*data) (void *opaque, uint64_t off, const void *buf, size_t len,
               char **why);
  int (*end) (void *opaque, char **why);
};
/* 0 once the whole archive was read, ECANCELED when CANCEL was set, or -1
 * with *why (a callback's, or the archive is damaged or cut short). */
int rp_arc_walk (int fd, const char *path, const struct rp_arc_walker *wk,
                 void *opaque, atomic_bool *cancel, char **why);

#endif
