/* A disk as rpfs reads it: one NBD export, or a chain of them (source.h).
 *
 * Composition: block status of export i over a range, with its
 * qemu:allocation-depth, says which parts are its own (depth 1..depth[i]);
 * the rest is asked of export i + 1 over that part only, down to the last
 * (live) export, which answers for all it is asked.  Reads follow the same
 * map.  Nothing here knows qcow2: QEMU reports the depths. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"
#include "util.h"

#define DEPTH_CTX "qemu:allocation-depth"
#define STATUS_MAX (1ull << 30)    /* bytes per block status request */

static struct nbd_handle *
connect_one (const char *sock, const char *name, const char *ctx1,
             const char *ctx2, char **err)
{
  struct nbd_handle *h = nbd_create ();
  /* Reads are checked before their buffer is used: no need to zero it. */
  if (h && nbd_set_export_name (h, name) != -1
      && nbd_set_pread_initialize (h, false) != -1
      && nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) != -1
      && (!ctx1 || nbd_add_meta_context (h, ctx1) != -1)
      && (!ctx2 || nbd_add_meta_context (h, ctx2) != -1)
      && nbd_connect_unix (h, sock) != -1)
    return h;
  *err = rp_asprintf ("export %s: %s", name,
                      nbd_get_error () ?: "cannot create an NBD handle");
  nbd_close (h);
  return NULL;
}

int
rp_src_open (struct rp_src *s, const struct rp_endpoint *ep,
             bool with_bitmap, char **err)
{
  size_t below = rp_strv_len (ep->below);
  memset (s, 0, sizeof *s);
  if (below + 1 > RP_EP_MAX_LAYERS) {
    *err = rp_strdup ("the reference point's chain is too long");
    return -1;
  }
  s->dirty = with_bitmap && ep->bitmap
    ? rp_asprintf ("qemu:dirty-bitmap:%s", ep->bitmap) : NULL;
  for (size_t i = 0; i <= below; i++) {
    const char *name = i == 0 ? ep->name : ep->below[i - 1];
    s->h[i] = connect_one (ep->sock, name, i < below ? DEPTH_CTX : NULL,
                           i == 0 ? s->dirty : NULL, err);
    if (!s->h[i]) {
      rp_src_close (s);
      return -1;
    }
    s->depth[i] = ep->depth[i];
    s->n = i + 1;
  }
  return 0;
}

void
rp_src_wrap (struct rp_src *s, struct nbd_handle *h)
{
  memset (s, 0, sizeof *s);
  s->h[0] = h;
  s->n = 1;
}

void
rp_src_close (struct rp_src *s)
{
  for (size_t i = 0; i < s->n; i++)
    nbd_close (s->h[i]);
  s->n = 0;
  free (s->dirty);
  s->dirty = NULL;
}

int64_t
rp_src_size (struct rp_src *s)
{
  return nbd_get_size (s->h[0]);
}

/* Extents of one meta context, gathered contiguously from where they
 * start (a reply that does not continue the list is ignored: asked
 * again). */
struct gather {
  const char *ctx;
  struct rp_extents list;
  uint64_t end;
};

struct reply {
  struct gather g[3];
  size_t n;
};

static int
gather_cb (void *opaque, const char *meta, uint64_t off, uint32_t *e,
           size_t n, int *error)
{
  (void) error;
  struct reply *r = opaque;
  for (size_t k = 0; k < r->n; k++) {
    struct gather *g = &r->g[k];
    if (strcmp (meta, g->ctx) == 0)
      rp_extents_take (&g->list, &g->end, off, e, n);
  }
  return 0;
}

/* One block status request on export I from OFF: R's lists, all cut to
 * the end every context covers (*END).  0, or -errno with *err. */
static int
status_once (struct rp_src *s, size_t i, uint64_t off, uint64_t len,
             struct reply *r, uint64_t *end, char **err)
{
  nbd_extent_callback cb = { .callback = gather_cb, .user_data = r };
  for (size_t k = 0; k < r->n; k++) {
    r->g[k].list.n = 0;
    r->g[k].end = off;
  }
  if (nbd_block_status (s->h[i], len < STATUS_MAX ? len : STATUS_MAX, off,
                        cb, 0) == -1) {
    *err = rp_asprintf ("block status at offset %" PRIu64 ": %s", off,
                        nbd_get_error ());
    return -(nbd_get_errno () ?: EIO);
  }
  uint64_t e = off + len;
  for (size_t k = 0; k < r->n; k++)
    if (r->g[k].end < e)
      e = r->g[k].end;
  if (e <= off) {
    *err = rp_asprintf ("the NBD server sent no block status at offset %"
                        PRIu64, off);
    return -EPROTO;
  }
  *end = e;
  return 0;
}

/* Append the part of LIST inside [A, B) to OUT, with FLAGS_OR added. */
static void
append_part (struct rp_extents *out, const struct rp_extents *list,
             uint64_t a, uint64_t b, uint32_t flags_or)
{
  for (size_t j = 0; j < list->n; j++) {
    const struct rp_extent *x = &list->v[j];
    uint64_t lo = x->off > a ? x->off : a;
    uint64_t hi = x->off + x->len < b ? x->off + x->len : b;
    if (lo < hi)
      rp_extents_append (out, lo, hi - lo, x->flags | flags_or);
  }
}

static int status_layer (struct rp_src *s, size_t i, uint64_t a, uint64_t b,
                         struct rp_extents *alloc, struct rp_extents *dirty,
                         char **err);

/* Within [A, B) of export I (its reply R): own ranges into ALLOC, the
 * others asked of export I + 1. */
static int
split_own (struct rp_src *s, size_t i, const struct reply *r, uint64_t a,
           uint64_t b, struct rp_extents *alloc, char **err)
{
  const struct rp_extents *depth = &r->g[1].list;
  uint32_t layer = (uint32_t) i << RP_EXT_LAYER_SHIFT;
  for (size_t j = 0; j < depth->n; j++) {
    const struct rp_extent *x = &depth->v[j];
    uint64_t lo = x->off > a ? x->off : a;
    uint64_t hi = x->off + x->len < b ? x->off + x->len : b;
    if (lo >= hi)
      continue;
    if (x->flags >= 1 && x->flags <= s->depth[i])
      append_part (alloc, &r->g[0].list, lo, hi, layer);
    else {
      int e = status_layer (s, i + 1, lo, hi, alloc, NULL, err);
      if (e)
        return e;
    }
  }
  return 0;
}

static int
status_layer (struct rp_src *s, size_t i, uint64_t a, uint64_t b,
              struct rp_extents *alloc, struct rp_extents *dirty, char **err)
{
  bool last = i + 1 == s->n;
  struct reply r = { .g = { { .ctx = LIBNBD_CONTEXT_BASE_ALLOCATION } },
                     .n = 1 };
  if (!last)
    r.g[r.n++].ctx = DEPTH_CTX;
  size_t dk = r.n;
  if (dirty && i == 0 && s->dirty)
    r.g[r.n++].ctx = s->dirty;
  int ret = 0;
  for (uint64_t pos = a; pos < b && ret == 0;) {
    uint64_t end;
    ret = status_once (s, i, pos, b - pos, &r, &end, err);
    if (ret)
      break;
    if (last)
      append_part (alloc, &r.g[0].list, pos, end,
                   (uint32_t) i << RP_EXT_LAYER_SHIFT);
    else
      ret = split_own (s, i, &r, pos, end, alloc, err);
    if (dk < r.n)
      append_part (dirty, &r.g[dk].list, pos, end, 0);
    pos = end;
  }
  for (size_t k = 0; k < r.n; k++)
    rp_extents_free (&r.g[k].list);
  return ret;
}

int
rp_src_status (struct rp_src *s, uint64_t off, uint64_t len,
               struct rp_extents *alloc, struct rp_extents *dirty,
               char **err)
{
  return status_layer (s, 0, off, off + len, alloc, dirty, err);
}

int
rp_src_pread (struct rp_src *s, void *buf, size_t len, uint64_t off,
              char **err)
{
  if (s->n == 1) {
    if (nbd_pread (s->h[0], buf, len, off, 0) != -1)
      return 0;
    if (err)
      *err = rp_strdup (nbd_get_error ());
    return -(nbd_get_errno () ?: EIO);
  }
  struct rp_extents map = { 0 };
  char *e = NULL;
  int r = rp_src_status (s, off, len, &map, NULL, &e);
  for (size_t j = 0; r == 0 && j < map.n; j++) {
    const struct rp_extent *x = &map.v[j];
    char *at = (char *) buf + (x->off - off);
    if (x->flags & RP_EXT_ZERO)
      memset (at, 0, x->len);
    else if (nbd_pread (s->h[RP_EXT_LAYER (x->flags)], at, x->len, x->off,
                        0) == -1) {
      e = rp_strdup (nbd_get_error ());
      r = -(nbd_get_errno () ?: EIO);
    }
  }
  rp_extents_free (&map);
  if (err)
    *err = e;
  else
    free (e);
  return r;
}
