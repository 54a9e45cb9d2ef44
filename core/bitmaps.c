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

#include "internal.h"

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

int
rp_bitmaps_query (struct rp_qmp *q, const char *node, struct rp_bitmaps *out,
                  char **err)
{
  json_t *ret = NULL;
  out->v = NULL;
  out->n = 0;
  if (rp_qmp_cmd (q, "query-named-block-nodes", json_pack ("{s:b}", "flat", 1),
                  &ret, err) != 0)
    return -1;
  size_t i;
  json_t *n = NULL;
  json_t *bitmaps = NULL;
  bool found = false;
  json_array_foreach (ret, i, n) {
    if (strcmp (json_string_value (json_object_get (n, "node-name")) ?: "",
                node) == 0) {
      bitmaps = json_object_get (n, "dirty-bitmaps");
      found = true;
      break;
    }
  }
  if (!bitmaps) {
    json_decref (ret);
    if (!found) {
      *err = rp_asprintf ("block node %s is not present in QEMU", node);
      return -1;
    }
    return 0;
  }
  out->v = rp_calloc (json_array_size (bitmaps) + 1, sizeof *out->v);
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
  json_decref (ret);
  return 0;
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
