/* VerifyExport's reading and hashing (verifyio.h).  One connection, one
 * request of CHUNK bytes at a time: a verification is not on anyone's
 * path, and the hash (about 1.3 GB/s a core with SHA instructions) is
 * close to what one connection reads. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "verifyio.h"
#include "source.h"
#include "util.h"

#define CHUNK (2u << 20)        /* a multiple of RP_BH_BLOCK */

static struct nbd_handle *
fail (struct nbd_handle *h, char **err)
{
  *err = rp_strdup (nbd_get_error () ?: "cannot create an NBD handle");
  nbd_close (h);
  return NULL;
}

struct nbd_handle *
rp_verify_open_image (const char *json_spec, char **err)
{
  struct nbd_handle *h = nbd_create ();
  /* -r: read only.  The json: spec names the driver of every layer. */
  char *argv[] = { "qemu-nbd", "-r", (char *) json_spec, NULL };
  if (!h || nbd_set_pread_initialize (h, false) == -1
      || nbd_connect_systemd_socket_activation (h, argv) == -1)
    return fail (h, err);
  return h;
}

/* Compare the blocks of BUF (LEN bytes at OFF) with T: 0, or 1 with *BAD. */
static int
compare (const struct rp_digests *t, const char *buf, uint64_t off,
         uint64_t len, uint64_t *bad)
{
  unsigned char h[RP_BH_LEN];
  for (uint64_t at = 0; at < len;) {
    uint64_t b = (off + at) / t->block;
    uint64_t blen = rp_digests_block_len (t, b);
    rp_bh_hash (buf + at, blen, h);
    if (memcmp (h, rp_digests_at (t, b), RP_BH_LEN) != 0) {
      *bad = b;
      return 1;
    }
    at += blen;
  }
  return 0;
}

int
rp_verify_disk (struct rp_src *src, const struct rp_digests *t,
                atomic_bool *cancel,
                void (*progress) (void *, uint64_t, uint64_t),
                void *opaque, uint64_t *bad, char **err)
{
  int64_t size = rp_src_size (src);
  if (size < 0) {
    *err = rp_strdup (nbd_get_error ());
    return EIO;
  }
  if ((uint64_t) size != t->size) {
    *err = rp_asprintf ("its size is %" PRId64 " bytes, the digest table's "
                        "%" PRIu64, size, t->size);
    return EINVAL;
  }
  char *buf = malloc (CHUNK);
  if (!buf) {
    *err = rp_strdup ("out of memory");
    return ENOMEM;
  }
  int r = 0;
  char *e = NULL;
  for (uint64_t off = 0; off < t->size && r == 0; off += CHUNK) {
    uint64_t len = t->size - off < CHUNK ? t->size - off : CHUNK;
    if (atomic_load (cancel))
      r = ECANCELED;
    else if ((r = -rp_src_pread (src, buf, len, off, &e)) != 0) {
      *err = rp_asprintf ("reading at offset %" PRIu64 ": %s", off, e);
      free (e);
      e = NULL;
    }
    else
      r = compare (t, buf, off, len, bad);
    if (r == 0 && progress)
      progress (opaque, off + len, t->size);
  }
  free (buf);
  return r;
}
