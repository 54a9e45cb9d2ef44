/* Writing to the qemu-nbd that serves an export's target image. */
#ifndef RPFS_NBDWRITE_H
#define RPFS_NBDWRITE_H

#include <stddef.h>
#include <stdint.h>

struct nbd_handle;

/* qemu-nbd takes a buffer of each write request's size (posix_memalign).
 * With rpfs's malloc tunables (proc.c) they come from its heap, and 2 MiB
 * requests from four connections fragmented it to 75 to 100 MiB of RSS;
 * requests of 256 KiB keep it at 16 MiB, at the same speed
 * (docs/performance.md, "The export's qemu-nbd"). */
#define RP_WRITE_MAX (256u << 10)

/* nbd_pwrite of LEN bytes at OFF in requests of at most RP_WRITE_MAX, one
 * after the other: 0, or -1 with libnbd's error. */
int rp_nbd_write (struct nbd_handle *h, const void *buf, size_t len,
                  uint64_t off);

#endif
