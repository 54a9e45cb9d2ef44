/* Read-ahead for point-in-time disks read through the mount.
 *
 * A point-in-time disk never changes, so data fetched early stays right.
 * When a reader goes sequentially (each read starts where the last ended,
 * or where a SEEK_HOLE said data runs), the next RP_PF_AHEAD chunks of
 * RP_PF_CHUNK bytes are fetched by a few threads, each read with its own
 * NBD connection, while the reader consumes the ones before: the NBD round
 * trips overlap, and a read(2) is answered from memory.  Random reads go
 * straight to the fetch function.  Knows nothing of NBD or FUSE: FETCH does
 * the reading (diskio.c), so the unit tests drive it with a fake disk. */
#ifndef RPFS_PREFETCH_H
#define RPFS_PREFETCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RP_PF_CHUNK (1u << 20)  /* bytes per fetch, aligned */
#define RP_PF_AHEAD 8           /* chunks ahead of a sequential reader */
#define RP_PF_SLOTS 16          /* chunks kept in memory at most */

/* Read LEN bytes at OFF into BUF (LEN <= RP_PF_CHUNK, never past the end):
 * 0, or -errno.  Called from several threads at once. */
typedef int (*rp_fetch_fn) (void *opaque, void *buf, size_t len,
                            uint64_t off);

struct rp_prefetch;

/* A disk of SIZE bytes, fetched ahead by up to THREADS threads (started on
 * the first sequential read). */
struct rp_prefetch *rp_prefetch_new (uint64_t size, unsigned threads,
                                     rp_fetch_fn fetch, void *opaque);
/* Stops the threads (each finishes the fetch it is in) and frees it all. */
void rp_prefetch_free (struct rp_prefetch *p);

/* Read [OFF, OFF + LEN) (clipped at the end): bytes read, or -errno. */
ssize_t rp_prefetch_read (struct rp_prefetch *p, void *buf, size_t len,
                          uint64_t off);

/* The caller learnt that [OFF, END) holds data and a hole follows (a
 * SEEK_HOLE from OFF answered END): a read at OFF counts as sequential, and
 * nothing at or past END is fetched ahead until a read goes there. */
void rp_prefetch_hint (struct rp_prefetch *p, uint64_t off, uint64_t end);

/* Chunks fetched ahead so far (for tests and benchmarks). */
uint64_t rp_prefetch_fetched (struct rp_prefetch *p);

#endif
