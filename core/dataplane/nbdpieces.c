/* Reads and writes in pieces, in flight together (nbdpieces.h). */
#include <libnbd.h>

#include "nbdpieces.h"

/* Wait for request COOKIE on H: 1 done, -1 failed (libnbd's error set). */
static int
wait_one (struct nbd_handle *h, int64_t cookie)
{
  int d;
  while ((d = nbd_aio_command_completed (h, cookie)) == 0)
    if (nbd_poll (h, -1) == -1)
      return -1;
  return d;
}

int
rp_nbd_pieces (struct nbd_handle *h, bool write, void *buf, uint64_t len,
               uint64_t off, uint64_t piece, unsigned depth)
{
  char *p = buf;
  int64_t cookie[RP_PIECES_MAX];
  uint64_t at = 0;
  int r = 0;
  if (depth < 1 || depth > RP_PIECES_MAX)
    depth = RP_PIECES_MAX;
  while (at < len && r == 0) {
    size_t n = 0;
    for (; n < depth && at < len; n++) {
      uint64_t l = len - at < piece ? len - at : piece;
      cookie[n] = write
        ? nbd_aio_pwrite (h, p + at, l, off + at, NBD_NULL_COMPLETION, 0)
        : nbd_aio_pread (h, p + at, l, off + at, NBD_NULL_COMPLETION, 0);
      if (cookie[n] == -1) {
        r = -1;                 /* could not issue it: libnbd's error */
        break;
      }
      at += l;
    }
    for (size_t i = 0; i < n; i++)
      if (wait_one (h, cookie[i]) == -1) {
        r = -1;
        if (nbd_aio_is_dead (h))
          return -1;            /* the others are retired with the handle */
      }
  }
  return r;
}

int
rp_nbd_write (struct nbd_handle *h, const void *buf, size_t len,
              uint64_t off)
{
  /* libnbd only reads BUF for a write. */
  return rp_nbd_pieces (h, true, (void *) buf, len, off, RP_WRITE_MAX,
                        RP_WRITE_DEPTH);
}
