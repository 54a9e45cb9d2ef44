/* Writing to the target's qemu-nbd in pieces (nbdwrite.h). */
#include <libnbd.h>

#include "nbdwrite.h"

int
rp_nbd_write (struct nbd_handle *h, const void *buf, size_t len,
              uint64_t off)
{
  const char *p = buf;
  for (size_t at = 0; at < len;) {
    size_t n = len - at < RP_WRITE_MAX ? len - at : RP_WRITE_MAX;
    if (nbd_pwrite (h, p + at, n, off + at, 0) == -1)
      return -1;
    at += n;
  }
  return 0;
}
