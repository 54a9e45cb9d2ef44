/* Whether a shut-off domain's images are still as they were at a reference
 * point (lvoffline.c).  While the domain is off, a log based reference
 * point's point-in-time data is the images themselves; that holds only as
 * long as nothing has written them since.  The reference point's own bitmap
 * proves it: it is a recording bitmap (made at the reference point, by
 * libvirt while the domain ran or by rpfs on the images), so every write
 * since, by the guest or by any QEMU tool that opened the image, marked it.
 * No mark on any disk: the images are the reference point's disks.  The
 * bitmap is read as QEMU exposes it, over NBD (qemu:dirty-bitmap), from the
 * read-only qemu-nbd that then serves the reader: it locks out writers, so
 * what was checked is what is read. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "lvirt.h"

#define STATUS_MAX (1u << 30)   /* bytes per block status request */
#define NBD_DIRTY 1u            /* qemu:dirty-bitmap's one flag */

struct count {
  const char *ctx;
  uint64_t end;                 /* where the extents so far end */
  uint64_t dirty;               /* bytes marked */
};

static int
count_cb (void *opaque, const char *meta, uint64_t off, uint32_t *e,
          size_t n, int *error)
{
  (void) error;
  struct count *c = opaque;
  if (strcmp (meta, c->ctx) != 0 || off != c->end)
    return 0;
  for (size_t i = 0; i + 1 < n; i += 2) {
    if (e[i + 1] & NBD_DIRTY)
      c->dirty += e[i];
    c->end += e[i];
  }
  return 0;
}

/* Bytes that bitmap CTX marks on the export of H (SIZE bytes): >= 0, or -1
 * if the server answers nothing. */
static int64_t
count_marks (struct nbd_handle *h, const char *ctx, uint64_t size)
{
  struct count c = { .ctx = ctx };
  while (c.end < size) {
    uint64_t at = c.end;
    uint64_t len = size - at < STATUS_MAX ? size - at : STATUS_MAX;
    if (nbd_block_status (h, len, at, (nbd_extent_callback) {
          .callback = count_cb, .user_data = &c }, 0) == -1
        || c.end == at)
      return -1;
  }
  return (int64_t) c.dirty;
}

int64_t
rp_lv_off_marked (const char *sock, const char *bitmap, char **err)
{
  CLEANUP_FREE char *ctx = rp_asprintf ("qemu:dirty-bitmap:%s", bitmap);
  struct nbd_handle *h = nbd_create ();
  int64_t size = -1, n = -1;
  if (h && nbd_add_meta_context (h, ctx) != -1
      && nbd_connect_unix (h, sock) != -1
      && (size = nbd_get_size (h)) >= 0) {
    if (nbd_can_meta_context (h, ctx) != 1)
      *err = rp_asprintf ("qemu-nbd does not offer bitmap %s", bitmap);
    else if ((n = count_marks (h, ctx, (uint64_t) size)) < 0)
      *err = rp_asprintf ("block status of bitmap %s: %s", bitmap,
                          nbd_get_error () ?: "no answer");
  }
  else
    *err = rp_asprintf ("cannot read bitmap %s over NBD: %s", bitmap,
                        nbd_get_error () ?: "no NBD handle");
  if (h) {
    nbd_shutdown (h, 0);
    nbd_close (h);
  }
  return n;
}
