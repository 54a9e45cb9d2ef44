/* Small helpers shared by the core: names, UUIDs, times, string vectors,
 * scoped cleanup, atomic file writes. */
#ifndef RPFS_UTIL_H
#define RPFS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
void cleanup_free (void *ptr);

/* [A-Za-z0-9_.-]{1,64}, and not "." or "..". */
bool rp_name_valid (const char *s);
/* Same rule on a byte range that need not be NUL-terminated. */
bool rp_name_valid_n (const char *s, size_t len);
/* 8-4-4-4-12 lower-case hex. */
bool rp_uuid_valid (const char *s);
/* Random (v4) UUID into out[37].  Returns 0 or -1 (errno). */
int rp_uuid_new (char out[37]);
/* ISO 8601 UTC "2026-11-25T10:00:00Z" into out[21] (the epoch for a time
 * outside years 0..9999). */
void rp_time_iso (time_t t, char out[21]);
/* Parse the format above; -1 if malformed. */
int rp_time_parse (const char *s, time_t *t);
/* CIM interval "00000000000042.000000:000" for ElapsedTime: ddddddddhhmmss.mmmmmm:000
 * (rounded to microseconds; negative or NaN gives zero; clamped at 99999999
 * days). */
void rp_interval (double seconds, char out[26]);

/* printf into a new string; aborts on out of memory. */
char *rp_asprintf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
char *rp_strdup (const char *s);           /* aborts on OOM */
void *rp_calloc (size_t n, size_t size);   /* aborts on OOM */
/* A large buffer of a job (LEN bytes, zeroed), mapped rather than taken
 * from the heap: rpfs keeps freed heap memory for FUSE's read buffers
 * (fs/main.c), so megabytes freed at a job's end would stay in rpfs's
 * RSS, and the next job's peak would start from there.  Aborts on OOM. */
void *rp_bigbuf (size_t len);
void rp_bigbuf_free (void *p, size_t len);   /* P may be NULL */

/* NULL-terminated string vectors. */
size_t rp_strv_len (char *const *v);
char **rp_strv_push (char **v, const char *s);   /* copies s; v may be NULL */
bool rp_strv_contains (char *const *v, const char *s);
char *rp_strv_join (char *const *v, const char *sep); /* each element + sep */
/* rp_strv_free is declared in rpfs.h */

/* Write LEN bytes to PATH atomically: PATH.tmp, fsync, rename, fsync dir.
 * MODE for the new file (less the umask); a symlink at PATH.tmp is refused.
 * Returns 0 or -1 with errno (PATH.tmp removed). */
int rp_write_file_atomic (const char *path, const void *buf, size_t len,
                          int mode);
/* Read a whole small file; NULL with errno on failure.  *len may be NULL. */
char *rp_read_file (const char *path, size_t *len);
/* Path of TARGET relative to directory FROM; both absolute and normalised
 * (no ".", "..", or repeated '/').  "/a/b/c", "/a/x" -> "../b/c". */
char *rp_relpath (const char *target, const char *from);
/* Do paths A and B name the same file (after realpath; as strings when
 * either cannot be resolved)? */
bool rp_same_file (const char *a, const char *b);
/* mkdir -p; 0 or -1 with errno. */
int rp_mkdir_p (const char *path, int mode);
/* rm -rf of a directory tree (no symlink following; a missing PATH is not an
 * error); 0 or -1 with errno. */
int rp_rm_rf (const char *path);
/* The same for NAME in DIRFD: a symlink there is removed, never followed. */
int rp_rm_at (int dirfd, const char *name);

#endif
