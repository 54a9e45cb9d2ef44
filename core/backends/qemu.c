/* The QEMU family's operations (qemu.h): the QMP side of create, destroy,
 * drop data, disk and differential endpoints, import's tracking check and
 * the guest's I/O statistics, shared by the storage daemon (qsd.c) and an
 * attached VM (vm.c): both serve the same graph (docs/design.md, "The QEMU
 * side of each operation"), with the disks' format nodes in
 * sys->disks[i].node.  All functions run with sys->op_lock held. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"

void
rp_export_name_cur (char *buf, size_t n, unsigned disk)
{
  snprintf (buf, n, "cur.%u", disk);
}

void
rp_export_name_rp (char *buf, size_t n, unsigned seq, unsigned disk)
{
  snprintf (buf, n, "rp.%u.%u", seq, disk);
}

int
rp_qemu_ping (struct rp_system *sys, char **err)
{
  if (!sys->qmp) {
    *err = rp_strdup ("no QMP connection");
    return -1;
  }
  return rp_qmp_cmd (sys->qmp, "query-version", NULL, NULL, err);
}

bool
rp_qemu_timed_out (struct rp_system *sys)
{
  if (!sys->qmp || rp_qmp_timeouts (sys->qmp) == 0)
    return false;
  rp_bitmaps_invalidate (sys);
  return true;
}

/* ---- create ---- */

/* Next sequence number: at least FLOOR (above every record), above every
 * rpfs bitmap the disks carry (some may belong to records we lost), and
 * above every link of the fleecing chain (a kept one has no record and no
 * bitmap left, but its nodes are named after its sequence). */
static unsigned
next_seq (unsigned floor, struct rp_system *sys, struct rp_bitmaps *bm)
{
  unsigned seq = floor ? floor - 1 : 0;
  for (size_t i = 0; i < sys->ndisks; i++)
    for (size_t j = 0; j < bm[i].n; j++)
      if (bm[i].v[j].seq > seq)
        seq = bm[i].v[j].seq;
  pthread_mutex_lock (&sys->core->lock);
  for (size_t i = 0; i < sys->nlinks; i++)
    if (sys->links[i]->seq > seq)
      seq = sys->links[i]->seq;
  pthread_mutex_unlock (&sys->core->lock);
  return seq + 1;
}

static int
query_all (struct rp_system *sys, struct rp_bitmaps *bm, char **why)
{
  char *e = NULL;
  if (rp_bitmaps_query_disks (sys, bm, &e) != 0) {
    *why = rp_asprintf ("cannot read the disks' bitmaps: %s", e);
    free (e);
    return -1;
  }
  return 0;
}

static void
free_all (struct rp_system *sys, struct rp_bitmaps *bm)
{
  for (size_t i = 0; i < sys->ndisks; i++)
    rp_bitmaps_free (&bm[i]);
  free (bm);
}

static json_t *
bm_args (const char *node, const char *name)
{
  return json_pack ("{s:s, s:s}", "node", node, "name", name);
}

/* Undo the bitmap part of a creation that succeeded in QEMU but could not
 * be completed: fold the new bitmap back into the ones it replaced. */
static void
rollback_bitmaps (struct rp_system *sys, struct rp_bitmaps *bm,
                  const char *newname)
{
  json_t *actions = json_array ();
  for (size_t i = 0; i < sys->ndisks; i++) {
    const char *node = sys->disks[i].node;
    for (size_t j = 0; j < bm[i].n; j++)
      if (bm[i].v[j].seq && bm[i].v[j].recording) {
        json_array_append_new (actions, rp_qmp_action (
          "block-dirty-bitmap-merge",
          json_pack ("{s:s, s:s, s:[s]}", "node", node,
                     "target", bm[i].v[j].name, "bitmaps", newname)));
        json_array_append_new (actions, rp_qmp_action (
          "block-dirty-bitmap-enable", bm_args (node, bm[i].v[j].name)));
      }
    json_array_append_new (actions, rp_qmp_action (
      "block-dirty-bitmap-remove", bm_args (node, newname)));
  }
  char *e = NULL;
  rp_bitmaps_invalidate (sys);
  if (rp_qmp_transaction (sys->qmp, actions, &e) != 0)
    fprintf (stderr, "rpfs: %s: rollback of bitmap %s failed: %s\n",
             sys->name, newname, e);
  free (e);
}

/* The one transaction of a creation: on every disk the recording bitmap
 * stops, the new one starts, and (LINK, log based) the fleecing copy
 * starts — at one instant.  Built from the cached bitmaps BM; if QEMU
 * refuses it, once more from a fresh look (someone else may have changed
 * the bitmaps).  0, or -1 with *e. */
static int
create_transaction (struct rp_system *sys, struct rp_refpoint *rp,
                    struct rp_link *link, unsigned floor,
                    struct rp_bitmaps *bm, char **e)
{
  int trv = -1;
  for (int attempt = 0; attempt < 2 && trv != 0; attempt++) {
    if (attempt == 1) {
      free (*e);
      *e = NULL;
      rp_bitmaps_invalidate (sys);
      for (size_t i = 0; i < sys->ndisks; i++)
        rp_bitmaps_free (&bm[i]);
      if (rp_bitmaps_cached (sys, bm, e) != 0 || !rp_backend_alive (sys))
        break;
      if (next_seq (floor, sys, bm) != rp->seq) {
        *e = rp_strdup ("the disks carry an rpfs bitmap this creation did "
                        "not expect; try again");
        break;
      }
    }
    json_t *actions = json_array ();
    for (size_t i = 0; i < sys->ndisks; i++) {
      const char *node = sys->disks[i].node;
      for (size_t j = 0; j < bm[i].n; j++)
        if (bm[i].v[j].seq && bm[i].v[j].recording)
          json_array_append_new (actions, rp_qmp_action (
            "block-dirty-bitmap-disable", bm_args (node, bm[i].v[j].name)));
      json_array_append_new (actions, rp_qmp_action (
        "block-dirty-bitmap-add",
        json_pack ("{s:s, s:s, s:b}", "node", node, "name", rp->bitmap,
                   "persistent", 1)));
    }
    if (link)
      rp_link_actions (link, actions);
    trv = rp_qmp_transaction (sys->qmp, actions, e);
  }
  return trv;
}

int
rp_qemu_create (struct rp_system *sys, struct rp_refpoint *rp, char **note,
                char **why)
{
  char *e = NULL;
  int rv = RV_FAILED;
  unsigned floor = rp->seq;
  struct rp_bitmaps *bm = rp_calloc (sys->ndisks + 1, sizeof *bm);
  if (rp_bitmaps_cached (sys, bm, &e) != 0) {
    *why = rp_asprintf ("cannot read the disks' bitmaps: %s", e);
    free (e);
    free_all (sys, bm);
    return RV_NOT_AVAILABLE;
  }
  rp->seq = next_seq (floor, sys, bm);
  rp->bitmap = rp_bitmap_name (rp->seq, rp->instance_id);
  int type = rp->type;
  struct rp_link *link = NULL;
  if (type == 1 && !(link = rp_chain_prepare (rp, why)))
    goto fail;
  /* Application consistent: the guest's file systems are frozen for the
   * transaction only; thawed right after it, whatever happened. */
  void *frozen = NULL;
  int frv = rp_backend_freeze (sys, rp, &frozen, note, why);
  if (frv != RV_OK) {
    rv = frv;
    if (link)
      rp_chain_abort (link);
    goto fail;
  }

  int trv = create_transaction (sys, rp, link, floor, bm, &e);
  rp_backend_thaw (sys, frozen);
  if (trv == 0)
    rp_bitmaps_note_created (sys, rp->bitmap);
  else
    rp_bitmaps_invalidate (sys);
  if (trv != 0) {
    *why = rp_asprintf ("QEMU refused the reference point transaction: %s", e);
    free (e);
    if (link)
      rp_chain_abort (link);
    goto fail;
  }
  if (link && rp_chain_commit (link, why) != 0) {
    rp_chain_abort (link);
    rollback_bitmaps (sys, bm, rp->bitmap);
    goto fail;
  }
  free_all (sys, bm);
  return RV_OK;

 fail:
  free_all (sys, bm);
  return rv;
}

/* ---- destroy ---- */

/* The bitmap of the reference point just before SEQ on a disk, whoever it
 * belongs to (an imported or unknown reference point's bitmap counts). */
static const struct rp_bitmap *
predecessor (const struct rp_bitmaps *b, unsigned seq)
{
  const struct rp_bitmap *p = NULL;
  for (size_t j = 0; j < b->n; j++)
    if (b->v[j].seq && b->v[j].seq < seq)
      p = &b->v[j];
  return p;
}

static void
mark_owner_broken (struct rp_system *sys, const char *bitmap, const char *why)
{
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint *owner = NULL;
  for (size_t k = 0; k < sys->nrps; k++)
    if (!strcmp (sys->rps[k]->bitmap, bitmap))
      owner = sys->rps[k];
  pthread_mutex_unlock (&sys->core->lock);
  if (owner)
    rp_refpoint_set_broken (owner, why);
}

/* The disks' bitmaps as the cache has them, minus the destroyed BITMAP
 * (its predecessor records on if it did). */
static void
note_destroyed (struct rp_system *sys, const char *bitmap)
{
  for (size_t i = 0; sys->bmcache && i < sys->ndisks; i++) {
    struct rp_bitmaps *b = &sys->bmcache[i];
    for (size_t j = 0; j < b->n; j++)
      if (!strcmp (b->v[j].name, bitmap)) {
        bool rec = b->v[j].recording;
        const struct rp_bitmap *p = predecessor (b, b->v[j].seq);
        if (rec && p)
          b->v[p - b->v].recording = true;
        free (b->v[j].name);
        memmove (&b->v[j], &b->v[j + 1], (b->n - j - 1) * sizeof *b->v);
        b->n--;
        break;
      }
  }
}

int
rp_qemu_destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  char *e = NULL;
  /* From the cache when it is valid: query-named-block-nodes takes long
   * on a graph with many fleecing nodes.  A transaction QEMU refuses is
   * tried once more from a fresh look, before anything was changed. */
  struct rp_bitmaps *bm = rp_calloc (sys->ndisks + 1, sizeof *bm);
  if (rp_bitmaps_cached (sys, bm, &e) != 0) {
    *why = rp_asprintf ("cannot read the disks' bitmaps: %s", e);
    free (e);
    free_all (sys, bm);
    return RV_NOT_AVAILABLE;
  }
  bool fresh = false;
 again:
  /* Fold this reference point's changes into its predecessor's bitmap so
   * that every older base still sees every change. */
  for (size_t i = 0; i < sys->ndisks; i++) {
    const char *node = sys->disks[i].node;
    const struct rp_bitmap *x = rp_bitmaps_find (&bm[i], rp->bitmap);
    const struct rp_bitmap *p = predecessor (&bm[i], rp->seq);
    json_t *actions = json_array ();
    if ((!x || x->inconsistent) && p) {
      CLEANUP_FREE char *m = rp_asprintf (
        "the changes recorded by destroyed reference point '%s' on disk %s "
        "were lost", rp->name, sys->disks[i].id);
      mark_owner_broken (sys, p->name, m);
    }
    else if (x && p && !p->inconsistent) {
      json_array_append_new (actions, rp_qmp_action (
        "block-dirty-bitmap-merge",
        json_pack ("{s:s, s:s, s:[s]}", "node", node, "target", p->name,
                   "bitmaps", x->name)));
      if (x->recording)
        json_array_append_new (actions, rp_qmp_action (
          "block-dirty-bitmap-enable", bm_args (node, p->name)));
    }
    if (x)
      json_array_append_new (actions, rp_qmp_action (
        "block-dirty-bitmap-remove", bm_args (node, x->name)));
    if (json_array_size (actions) == 0) {
      json_decref (actions);
      continue;
    }
    int tr = rp_qmp_transaction (sys->qmp, actions, &e);
    if (tr == -1 && i == 0 && !fresh) {
      free (e);
      e = NULL;
      fresh = true;
      rp_bitmaps_invalidate (sys);
      for (size_t k = 0; k < sys->ndisks; k++)
        rp_bitmaps_free (&bm[k]);
      if (query_all (sys, bm, why) != 0) {
        free_all (sys, bm);
        return RV_NOT_AVAILABLE;
      }
      goto again;
    }
    if (tr != 0) {
      rp_bitmaps_invalidate (sys);
      *why = rp_asprintf ("QEMU refused to fold the tracking of disk %s "
                          "into the previous reference point: %s",
                          sys->disks[i].id, e);
      free (e);
      free_all (sys, bm);
      return RV_FAILED;
    }
  }
  free_all (sys, bm);
  note_destroyed (sys, rp->bitmap);
  return RV_OK;
}

/* ---- endpoints ---- */

int
rp_qemu_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                       size_t di, struct rp_endpoint *ep, char **err)
{
  char name[64];
  if (rp && rp_chain_endpoint (sys, rp, di, ep, err) != 0)
    return -1;
  if (rp)
    rp_export_name_rp (name, sizeof name, rp->seq, (unsigned) di);
  else
    rp_export_name_cur (name, sizeof name, (unsigned) di);
  ep->sock = rp_strdup (sys->nbd_path);
  ep->name = rp_strdup (name);
  ep->bitmap = NULL;
  return 0;
}

/* Merge the bitmaps of [base, rp) on disk DI into a transient bitmap and
 * export the point-in-time node with it. */
int
rp_qemu_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                      struct rp_refpoint *base, size_t di, const char *tag,
                      struct rp_endpoint *ep, char **why)
{
  const char *node = sys->disks[di].node;
  char xname[64], ename[64];
  snprintf (xname, sizeof xname, "rpfs-x%s-%zu", tag, di);
  snprintf (ename, sizeof ename, "job.%s.%zu", tag, di);
  struct rp_bitmaps bm;
  char *e = NULL;
  /* From the cache (bitmaps.c): query-named-block-nodes grows with every
   * fleecing layer and would slow the export of a long chain. */
  if (rp_bitmaps_cached_disk (sys, di, &bm, &e) != 0)
    goto qmp_fail;
  json_t *sources = json_array ();
  bool found_base = false;
  for (size_t j = 0; j < bm.n; j++)
    if (bm.v[j].seq >= base->seq && bm.v[j].seq < rp->seq) {
      if (bm.v[j].inconsistent) {
        *why = rp_asprintf ("bitmap %s on disk %s is inconsistent",
                            bm.v[j].name, sys->disks[di].id);
        json_decref (sources);
        rp_bitmaps_free (&bm);
        return RV_INVALID_STATE;
      }
      found_base |= bm.v[j].seq == base->seq;
      json_array_append_new (sources, json_string (bm.v[j].name));
    }
  rp_bitmaps_free (&bm);
  if (!found_base) {
    *why = rp_asprintf ("the change tracking of base '%s' on disk %s is "
                        "missing", base->name, sys->disks[di].id);
    json_decref (sources);
    return RV_INVALID_STATE;
  }
  /* An older reference point reads through the chain (chain.c). */
  if (rp_chain_endpoint (sys, rp, di, ep, &e) != 0) {
    json_decref (sources);
    goto qmp_fail;
  }
  json_t *actions = json_array ();
  json_array_append_new (actions, rp_qmp_action (
    "block-dirty-bitmap-add",
    json_pack ("{s:s, s:s, s:b, s:b}", "node", node, "name", xname,
               "persistent", 0, "disabled", 1)));
  json_array_append_new (actions, rp_qmp_action (
    "block-dirty-bitmap-merge",
    json_pack ("{s:s, s:s, s:o}", "node", node, "target", xname,
               "bitmaps", sources)));
  if (rp_qmp_transaction (sys->qmp, actions, &e) != 0)
    goto qmp_fail;
  char fnode[32];
  snprintf (fnode, sizeof fnode, "f%u_%zu", rp->seq, di);
  if (rp_qmp_cmd (sys->qmp, "block-export-add",
                  json_pack ("{s:s, s:s, s:s, s:s, s:b, s:b, "
                             "s:[{s:s, s:s}]}",
                             "type", "nbd", "id", ename, "node-name", fnode,
                             "name", ename, "writable", 0,
                             "allocation-depth", 1, "bitmaps",
                             "node", node, "name", xname), NULL, &e) != 0)
    goto qmp_fail;
  ep->sock = rp_strdup (sys->nbd_path);
  ep->name = rp_strdup (ename);
  ep->bitmap = rp_strdup (xname);
  return RV_OK;
 qmp_fail:
  rp_endpoint_clear (ep);       /* the chain's pin */
  *why = rp_asprintf ("QEMU: %s", e);
  free (e);
  return rp_backend_answers (sys) ? RV_FAILED : RV_NOT_AVAILABLE;
}

void
rp_qemu_changes_close (struct rp_system *sys, size_t di,
                       struct rp_endpoint *ep)
{
  char *e = NULL;
  if (!ep->name || !rp_backend_alive (sys))
    return;
  rp_qmp_cmd (sys->qmp, "block-export-del",
              json_pack ("{s:s, s:s}", "id", ep->name, "mode", "hard"), NULL,
              &e);
  free (e);
  e = NULL;
  /* The export lets go of the bitmap asynchronously. */
  for (int t = 0; ep->bitmap && t < 400; t++) {
    if (rp_qmp_cmd (sys->qmp, "block-dirty-bitmap-remove",
                    json_pack ("{s:s, s:s}", "node", sys->disks[di].node,
                               "name", ep->bitmap), NULL, &e) == 0
        || (e && !strstr (e, "in use")))
      break;
    free (e);
    e = NULL;
    usleep (5000);
  }
  free (e);
}

/* ---- import, pacing ---- */

int
rp_qemu_has_tracking (struct rp_system *sys, size_t di, const char *tracking,
                      char **why)
{
  struct rp_bitmaps bm;
  char *e = NULL;
  rp_bitmaps_invalidate (sys);
  if (rp_bitmaps_query (sys->qmp, sys->disks[di].node, &bm, &e) != 0) {
    *why = rp_asprintf ("QEMU: %s", e);
    free (e);
    return -1;
  }
  const struct rp_bitmap *b = rp_bitmaps_find (&bm, tracking);
  int r = b && !b->inconsistent;
  if (!r)
    *why = rp_strdup (b ? "inconsistent" : "missing");
  rp_bitmaps_free (&bm);
  return r;
}

/* query-blockstats: the guest's devices (an NBD export's own block backend
 * is not among them). */
bool
rp_qemu_io_stats (struct rp_system *sys, uint64_t *ops, uint64_t *ns)
{
  json_t *ret = NULL;
  char *err = NULL;
  int r = sys->qmp ? rp_qmp_cmd (sys->qmp, "query-blockstats", NULL, &ret,
                                 &err) : -2;
  free (err);
  if (r != 0)
    return false;
  static const char *const keys[][2] = {
    { "rd_operations", "rd_total_time_ns" },
    { "wr_operations", "wr_total_time_ns" },
    { "flush_operations", "flush_total_time_ns" },
  };
  size_t i;
  json_t *dev;
  *ops = *ns = 0;
  json_array_foreach (ret, i, dev) {
    json_t *st = json_object_get (dev, "stats");
    for (size_t k = 0; k < 3; k++) {
      *ops += (uint64_t) json_integer_value (json_object_get (st, keys[k][0]));
      *ns += (uint64_t) json_integer_value (json_object_get (st, keys[k][1]));
    }
  }
  json_decref (ret);
  return true;
}
