/* The persistent dirty bitmaps that carry rpfs's change tracking.
 *
 * Arrangement (the "chain"): reference point number SEQ owns bitmap
 * "rpfs-SEQ-UUID" on every disk.  It records the changes from its reference
 * point until the next one is created, when it is disabled in the same QMP
 * transaction that adds the next one; the newest is the only one recording.
 * The changes between an older B and a newer R are therefore the union of the
 * bitmaps whose SEQ lies in [B.seq, R.seq), merged at export time into a
 * transient bitmap.  The sequence number is part of the name so the order can
 * be read back from the disks alone (ImportReferencePointMetadata, a lost
 * store). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu.h"

char *
rp_bitmap_name (unsigned seq, const char *uuid)
{
  return rp_asprintf (RP_BITMAP_PREFIX "%08u-%s", seq, uuid);
}

unsigned
rp_bitmap_seq (const char *name)
{
  size_t plen = strlen (RP_BITMAP_PREFIX);
  if (strncmp (name, RP_BITMAP_PREFIX, plen) != 0)
    return 0;
  const char *p = name + plen;
  unsigned seq = 0;
  for (int i = 0; i < 8; i++) {
    if (p[i] < '0' || p[i] > '9')
      return 0;
    seq = seq * 10 + (unsigned) (p[i] - '0');
  }
  if (p[8] != '-' || !rp_uuid_valid (p + 9))
    return 0;
  return seq;
}

static int
cmp_seq (const void *a, const void *b)
{
  const struct rp_bitmap *x = a, *y = b;
  return (x->seq > y->seq) - (x->seq < y->seq);
}

static bool
jbool (json_t *o, const char *key)
{
  return json_is_true (json_object_get (o, key));
}

static void
parse_bitmaps (json_t *bitmaps, struct rp_bitmaps *out)
{
  out->v = rp_calloc (json_array_size (bitmaps) + 1, sizeof *out->v);
  size_t i;
  json_t *b;
  json_array_foreach (bitmaps, i, b) {
    struct rp_bitmap *m = &out->v[out->n++];
    m->name = rp_strdup (json_string_value (json_object_get (b, "name")) ?: "");
    m->seq = rp_bitmap_seq (m->name);
    m->recording = jbool (b, "recording");
    m->inconsistent = jbool (b, "inconsistent");
    m->busy = jbool (b, "busy");
    m->persistent = jbool (b, "persistent");
    m->count = json_integer_value (json_object_get (b, "count"));
  }
  qsort (out->v, out->n, sizeof *out->v, cmp_seq);
}

/* One query-named-block-nodes for all N nodes: QEMU's answer grows with
 * every node in the graph (fleecing layers too), so it is asked once. */
int
rp_bitmaps_query_nodes (struct rp_qmp *q, const char *const *nodes, size_t n,
                        struct rp_bitmaps *out, char **err)
{
  json_t *ret = NULL;
  for (size_t k = 0; k < n; k++)
    out[k] = (struct rp_bitmaps) { NULL, 0 };
  if (rp_qmp_cmd (q, "query-named-block-nodes", json_pack ("{s:b}", "flat", 1),
                  &ret, err) != 0)
    return -1;
  for (size_t k = 0; k < n; k++) {
    size_t i;
    json_t *node = NULL, *found = NULL;
    json_array_foreach (ret, i, node)
      if (!strcmp (json_string_value (json_object_get (node, "node-name"))
                   ?: "", nodes[k]))
        found = node;
    if (!found) {
      *err = rp_asprintf ("block node %s is not present in QEMU", nodes[k]);
      for (size_t j = 0; j < k; j++)
        rp_bitmaps_free (&out[j]);
      json_decref (ret);
      return -1;
    }
    parse_bitmaps (json_object_get (found, "dirty-bitmaps"), &out[k]);
  }
  json_decref (ret);
  return 0;
}

int
rp_bitmaps_query (struct rp_qmp *q, const char *node, struct rp_bitmaps *out,
                  char **err)
{
  return rp_bitmaps_query_nodes (q, &node, 1, out, err);
}

int
rp_bitmaps_query_disks (struct rp_system *sys, struct rp_bitmaps *out,
                        char **err)
{
  const char **nodes = rp_calloc (sys->ndisks + 1, sizeof *nodes);
  for (size_t i = 0; i < sys->ndisks; i++)
    nodes[i] = sys->disks[i].node;
  int r = rp_bitmaps_query_nodes (sys->qmp, nodes, sys->ndisks, out, err);
  free (nodes);
  return r;
}

const struct rp_bitmap *
rp_bitmaps_find (const struct rp_bitmaps *b, const char *name)
{
  for (size_t i = 0; i < b->n; i++)
    if (strcmp (b->v[i].name, name) == 0)
      return &b->v[i];
  return NULL;
}

void
rp_bitmaps_free (struct rp_bitmaps *b)
{
  for (size_t i = 0; i < b->n; i++)
    free (b->v[i].name);
  free (b->v);
  b->v = NULL;
  b->n = 0;
}

static void
copy_bitmaps (struct rp_bitmaps *dst, const struct rp_bitmaps *src)
{
  dst->n = src->n;
  dst->v = rp_calloc (src->n + 1, sizeof *dst->v);
  for (size_t j = 0; j < src->n; j++) {
    dst->v[j] = src->v[j];
    dst->v[j].name = rp_strdup (src->v[j].name);
  }
}

void
rp_bitmaps_invalidate (struct rp_system *sys)
{
  if (!sys->bmcache)
    return;
  for (size_t i = 0; i < sys->ndisks; i++)
    rp_bitmaps_free (&sys->bmcache[i]);
  free (sys->bmcache);
  sys->bmcache = NULL;
}

int
rp_bitmaps_cached (struct rp_system *sys, struct rp_bitmaps *out, char **err)
{
  if (!sys->bmcache) {
    struct rp_bitmaps *fresh = rp_calloc (sys->ndisks + 1, sizeof *fresh);
    if (rp_bitmaps_query_disks (sys, fresh, err) != 0) {
      free (fresh);
      return -1;
    }
    sys->bmcache = fresh;
  }
  for (size_t i = 0; i < sys->ndisks; i++)
    copy_bitmaps (&out[i], &sys->bmcache[i]);
  return 0;
}

int
rp_bitmaps_cached_disk (struct rp_system *sys, size_t di,
                        struct rp_bitmaps *out, char **err)
{
  struct rp_bitmaps *all = rp_calloc (sys->ndisks + 1, sizeof *all);
  int r = rp_bitmaps_cached (sys, all, err);
  for (size_t i = 0; r == 0 && i < sys->ndisks; i++)
    if (i == di)
      *out = all[i];
    else
      rp_bitmaps_free (&all[i]);
  free (all);
  return r;
}

void
rp_bitmaps_note_created (struct rp_system *sys, const char *name)
{
  if (!sys->bmcache)
    return;
  for (size_t i = 0; i < sys->ndisks; i++) {
    struct rp_bitmaps *b = &sys->bmcache[i];
    for (size_t j = 0; j < b->n; j++)
      if (b->v[j].seq)
        b->v[j].recording = false;
    struct rp_bitmap *v = realloc (b->v, (b->n + 2) * sizeof *v);
    if (!v)
      abort ();
    b->v = v;
    b->v[b->n++] = (struct rp_bitmap) {
      .name = rp_strdup (name), .seq = rp_bitmap_seq (name),
      .recording = true, .persistent = true,
    };
  }
}
