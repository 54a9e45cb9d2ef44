/* One buffer read from or written to an NBD server as requests of a
 * bounded size, several in flight at once on one connection. */
#ifndef RPFS_NBDPIECES_H
#define RPFS_NBDPIECES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nbd_handle;

/* qemu-nbd takes a buffer of each write request's size (posix_memalign).
 * With rpfs's malloc tunables (proc.c) they come from its heap, and 2 MiB
 * requests from four connections fragmented it to 75 to 100 MiB of RSS;
 * requests of 256 KiB keep it at 16 MiB, at the same speed
 * (docs/performance.md, "The export's qemu-nbd"). */
#define RP_WRITE_MAX (256u << 10)

/* Up to this many requests are in flight at once. */
#define RP_PIECES_MAX 16

/* Write requests to qemu-nbd in flight at once, per connection.  Eight
 * (a whole 2 MiB op) raised qemu-nbd's RSS from 15-22 to 25-37 MiB, a
 * buffer per request in flight, and did not make the copy measurably
 * faster (docs/performance.md, "Seventh run"). */
#define RP_WRITE_DEPTH 1

/* Read (WRITE false) or write LEN bytes at OFF from or into BUF, as
 * requests of at most PIECE bytes, up to DEPTH (at most RP_PIECES_MAX) of
 * them in flight on H at once: a server that serves requests concurrently
 * (QEMU's coroutines) then works on them together instead of one round
 * trip after the other.  Waits for every request it issued before it
 * returns, failed or not (they use BUF).  0, or -1 with libnbd's error
 * (nbd_get_error, nbd_get_errno) of a failed request. */
int rp_nbd_pieces (struct nbd_handle *h, bool write, void *buf, uint64_t len,
                   uint64_t off, uint64_t piece, unsigned depth);

/* rp_nbd_pieces writing LEN bytes of BUF at OFF in RP_WRITE_MAX pieces,
 * RP_WRITE_DEPTH at a time. */
int rp_nbd_write (struct nbd_handle *h, const void *buf, size_t len,
                  uint64_t off);

#endif
