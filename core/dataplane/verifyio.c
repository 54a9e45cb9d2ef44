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

/* ---- a differential archive's overlay ---- */

#define DEPTH_CTX "qemu:allocation-depth"
#define STATUS_MAX (1u << 30)

struct depths {
  uint64_t end;
  struct rp_extents list;
};

static int
depth_cb (void *opaque, const char *meta, uint64_t off, uint32_t *e,
          size_t n, int *error)
{
  (void) error;
  struct depths *d = opaque;
  if (strcmp (meta, DEPTH_CTX) == 0)
    rp_extents_take (&d->list, &d->end, off, e, n);
  return 0;
}

/* Extent X (depth 1: the overlay's own) against the tables. */
static int
ovl_extent (struct nbd_handle *h, const struct rp_extent *x,
            const struct rp_digests *tr, const struct rp_digests *tb,
            char *buf, uint64_t *bad, bool *absent, char **err)
{
  uint64_t end = x->off + x->len;
  if (x->off % tr->block || (end % tr->block && end != tr->size)) {
    *err = rp_asprintf ("the overlay's clusters at %" PRIu64 " are not the "
                        "digest table's %u-byte blocks: not an rpfs export",
                        x->off, tr->block);
    return EINVAL;
  }
  if (x->flags != 1) {          /* not in the overlay: unchanged? */
    for (uint64_t b = x->off / tr->block; b * tr->block < end; b++)
      if (memcmp (rp_digests_at (tr, b), rp_digests_at (tb, b), RP_BH_LEN)) {
        *bad = b;
        *absent = true;
        return 1;
      }
    return 0;
  }
  for (uint64_t at = x->off; at < end; at += CHUNK) {
    uint64_t len = end - at < CHUNK ? end - at : CHUNK;
    if (nbd_pread (h, buf, len, at, 0) == -1) {
      *err = rp_asprintf ("reading at offset %" PRIu64 ": %s", at,
                          nbd_get_error ());
      return EIO;
    }
    if (compare (tr, buf, at, len, bad))
      return 1;
  }
  return 0;
}

/* The overlay's extents from POS on, checked: 0 with *POS moved on. */
static int
ovl_window (struct nbd_handle *h, uint64_t *pos, const struct rp_digests *tr,
            const struct rp_digests *tb, char *buf, uint64_t *bad,
            bool *absent, char **err)
{
  struct depths d = { .end = *pos };
  uint64_t len = tr->size - *pos < STATUS_MAX ? tr->size - *pos : STATUS_MAX;
  int r = 0;
  if (nbd_block_status (h, len, *pos, (nbd_extent_callback) {
        .callback = depth_cb, .user_data = &d }, 0) == -1 || d.end == *pos) {
    *err = rp_asprintf ("block status at %" PRIu64 ": %s", *pos,
                        nbd_get_error () ?: "no answer");
    r = EIO;
  }
  for (size_t i = 0; r == 0 && i < d.list.n; i++) {
    struct rp_extent x = d.list.v[i];
    if (x.off + x.len > tr->size)
      x.len = tr->size - x.off;
    r = ovl_extent (h, &x, tr, tb, buf, bad, absent, err);
  }
  rp_extents_free (&d.list);
  *pos = d.end < tr->size ? d.end : tr->size;
  return r;
}

int
rp_verify_overlay (const char *json_spec, const struct rp_digests *tr,
                   const struct rp_digests *tb, atomic_bool *cancel,
                   uint64_t *bad, bool *absent, char **err)
{
  *absent = false;
  char *argv[] = { "qemu-nbd", "-r", "--allocation-depth",
                   (char *) json_spec, NULL };
  struct nbd_handle *h = nbd_create ();
  if (!h || nbd_set_pread_initialize (h, false) == -1
      || nbd_add_meta_context (h, DEPTH_CTX) == -1
      || nbd_connect_systemd_socket_activation (h, argv) == -1) {
    fail (h, err);
    return EIO;
  }
  int64_t size = nbd_get_size (h);
  int r = 0;
  if (nbd_can_meta_context (h, DEPTH_CTX) != 1 || size < 0
      || (uint64_t) size != tr->size || tb->size != tr->size) {
    *err = rp_asprintf ("the overlay's size (%" PRId64 " bytes) or its "
                        "allocation is not the digest tables' (%" PRIu64
                        " bytes)", size, tr->size);
    r = EINVAL;
  }
  char *buf = r ? NULL : malloc (CHUNK);
  if (!r && !buf) {
    *err = rp_strdup ("out of memory");
    r = ENOMEM;
  }
  for (uint64_t pos = 0; r == 0 && pos < tr->size;)
    r = atomic_load (cancel) ? ECANCELED
      : ovl_window (h, &pos, tr, tb, buf, bad, absent, err);
  free (buf);
  nbd_shutdown (h, 0);
  nbd_close (h);
  return r;
}
