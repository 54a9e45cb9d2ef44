/* CreateReferencePoint, DestroyReferencePoint, RemoveAssociatedData and
 * ImportReferencePointMetadata: the QEMU side of each, run with
 * sys->op_lock held.  Each returns a ReturnValue and, on failure, a
 * description (*why, caller frees) for the job record. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"

/* Next sequence number: above every reference point we know and every
 * rpfs bitmap the disks carry (some may belong to records we lost). */
static unsigned
next_seq (struct rp_system *sys, struct rp_bitmaps *bm)
{
  unsigned seq = 0;
  for (size_t i = 0; i < sys->ndisks; i++)
    for (size_t j = 0; j < bm[i].n; j++)
      if (bm[i].v[j].seq > seq)
        seq = bm[i].v[j].seq;
  pthread_mutex_lock (&sys->core->lock);
  for (size_t k = 0; k < sys->nrps; k++)
    if (sys->rps[k]->seq > seq)
      seq = sys->rps[k]->seq;
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

#define VM_DEFINITION_MAX (16 << 20)

static int
save_config (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  const char *src = sys->conf->vm_definition;
  size_t len = strlen (sys->conf->text);
  struct stat st;
  const char *bad = NULL;       /* a file; not a device, FIFO or directory */
  if (src && stat (src, &st) != 0)
    bad = strerror (errno);
  else if (src && !S_ISREG (st.st_mode))
    bad = "not a regular file";
  else if (src && st.st_size > VM_DEFINITION_MAX)
    bad = "larger than 16 MiB";
  if (bad) {
    *why = rp_asprintf ("cannot copy the VM definition %s (vm-definition in "
                        "%s): %s", src, sys->conf_path, bad);
    return -1;
  }
  CLEANUP_FREE char *text = src ? rp_read_file (src, &len) : NULL;
  if (src && !text) {
    *why = rp_asprintf ("cannot read the VM definition %s (vm-definition in "
                        "%s): %s", src, sys->conf_path, strerror (errno));
    return -1;
  }
  CLEANUP_FREE char *cfg = rp_asprintf ("%s/config", rp->dir);
  if (rp_write_file_atomic (cfg, text ? text : sys->conf->text, len,
                            0644) != 0) {
    *why = rp_asprintf ("%s: %s", cfg, strerror (errno));
    return -1;
  }
  return 0;
}

static int
create (struct rp_system *sys, const char *name, int type, int level,
        struct rp_job *job, struct rp_refpoint **out, char **why)
{
  CLEANUP_FREE char *note = NULL;
  int rv = RV_FAILED;
  *out = NULL;
  if (!rp_name_valid (name)) {
    *why = rp_asprintf ("'%s' is not a valid reference point name (1 to 64 "
                        "letters, digits, '_', '.', '-'; not '.' or '..')",
                        name);
    return RV_INVALID_PARAMETER;
  }
  pthread_mutex_lock (&sys->core->lock);
  bool dup = rp_refpoint_find (sys, name) != NULL;
  pthread_mutex_unlock (&sys->core->lock);
  if (dup) {
    *why = rp_asprintf ("reference point '%s' already exists", name);
    return RV_INVALID_PARAMETER;
  }
  int qrv = rp_qsd_require (sys, why);
  if (qrv != RV_OK)
    return qrv;
  char *e = NULL;
  struct rp_bitmaps *bm = rp_calloc (sys->ndisks + 1, sizeof *bm);
  if (rp_bitmaps_cached (sys, bm, &e) != 0) {
    *why = rp_asprintf ("cannot read the disks' bitmaps: %s", e);
    free (e);
    free_all (sys, bm);
    return RV_NOT_AVAILABLE;
  }

  struct rp_refpoint *rp = rp_calloc (1, sizeof *rp);
  rp->sys = sys;
  rp->refs = 1;
  rp->name = rp_strdup (name);
  rp_uuid_new (rp->instance_id);
  rp->seq = next_seq (sys, bm);
  rp->bitmap = rp_bitmap_name (rp->seq, rp->instance_id);
  rp->type = type;
  rp->consistency = level;
  rp->created = time (NULL);
  rp->disk_ids = rp_calloc (1, sizeof (char *));
  for (size_t i = 0; i < sys->ndisks; i++)
    rp->disk_ids = rp_strv_push (rp->disk_ids, sys->disks[i].id);
  if (sys->qemu_version)
    rp->qemu_version = rp_strdup (sys->qemu_version);
  for (size_t i = 0; sys->conf->qmp && i < sys->ndisks; i++) {
    CLEANUP_FREE char *dn = rp_asprintf ("%s=%s", sys->disks[i].id,
                                         sys->disks[i].node);
    rp->qemu_nodes = rp_strv_push (rp->qemu_nodes, dn);
  }
  rp->dir = rp_asprintf ("%s/rp/%s", sys->statedir, name);
  rp->job_id = rp_strdup (job->id);
  rp_rm_rf (rp->dir);           /* leftovers of a creation that died */
  if (rp_mkdir_p (rp->dir, 0755) != 0) {
    *why = rp_asprintf ("%s: %s", rp->dir, strerror (errno));
    goto fail_free;
  }
  /* The exported "config": the VM's own definition when the system names
   * one, as it is now; else the system definition. */
  if (save_config (sys, rp, why) != 0)
    goto fail_dir;
  if (type == 1 && rp_fleece_nodes (rp, true, why) != 0)
    goto fail_dir;
  /* Application consistent: the guest's file systems are frozen for the
   * transaction only (agent.c); thawed right after it, whatever happened. */
  struct rp_agent *agent = NULL;
  if (level == 1 && sys->conf->qmp) {
    CLEANUP_FREE char *fw = NULL;
    int frv = rp_agent_freeze (sys, &agent, &fw);
    if (frv == RV_NOT_SUPPORTED && sys->conf->fallback_crash) {
      note = rp_asprintf ("crash consistent, not application consistent "
                           "(consistency-fallback = crash): %s", fw);
      rp->consistency = 2;
    }
    else if (frv != RV_OK) {
      *why = fw;
      fw = NULL;
      rv = frv;
      if (type == 1)
        rp_fleece_abort (rp);
      goto fail_dir;
    }
  }

  /* The one transaction: on every disk the recording bitmap stops, the new
   * one starts, and (log based) the fleecing copy starts — at one instant.
   * Built from the cached bitmaps; if QEMU refuses it, once more from a
   * fresh look (someone else may have changed the bitmaps). */
  int trv = -1;
  for (int attempt = 0; attempt < 2 && trv != 0; attempt++) {
    if (attempt == 1) {
      free (e);
      e = NULL;
      rp_bitmaps_invalidate (sys);
      for (size_t i = 0; i < sys->ndisks; i++)
        rp_bitmaps_free (&bm[i]);
      if (rp_bitmaps_cached (sys, bm, &e) != 0 || !rp_qsd_alive (sys))
        break;
      if (next_seq (sys, bm) != rp->seq) {
        e = rp_strdup ("the disks carry an rpfs bitmap this creation did "
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
    if (type == 1)
      rp_fleece_actions (rp, actions);
    trv = rp_qmp_transaction (sys->qmp, actions, &e);
  }
  rp_agent_thaw (sys, agent);
  if (trv == 0)
    rp_bitmaps_note_created (sys, rp->bitmap);
  else
    rp_bitmaps_invalidate (sys);
  if (trv != 0) {
    *why = rp_asprintf ("QEMU refused the reference point transaction: %s", e);
    free (e);
    if (type == 1)
      rp_fleece_abort (rp);
    goto fail_dir;
  }
  if (type == 1 && rp_fleece_exports (rp, why) != 0) {
    rp_fleece_abort (rp);
    rollback_bitmaps (sys, bm, rp->bitmap);
    goto fail_dir;
  }
  rp->has_data = type == 1;

  if (rp_refpoint_save (rp) != 0) {
    *why = rp_asprintf ("cannot write the record in %s: %s", rp->dir,
                        strerror (errno));
    if (type == 1)
      rp_fleece_abort (rp);
    rollback_bitmaps (sys, bm, rp->bitmap);
    goto fail_dir;
  }
  free_all (sys, bm);

  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint **nv = realloc (sys->rps, (sys->nrps + 1) * sizeof *nv);
  if (!nv)
    abort ();
  sys->rps = nv;
  sys->rps[sys->nrps++] = rp;
  rp->refs++;
  pthread_mutex_unlock (&sys->core->lock);
  *out = rp;
  *why = note;                  /* with RV_OK: how the request was met */
  note = NULL;
  return RV_OK;

 fail_dir:
  rp_rm_rf (rp->dir);
 fail_free:
  free_all (sys, bm);
  rp_refpoint_free (rp);
  return rv;
}

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

static int
destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  pthread_mutex_lock (&sys->core->lock);
  bool busy = rp->busy > 0 || rp->exporting;
  pthread_mutex_unlock (&sys->core->lock);
  if (busy) {
    *why = rp_asprintf ("reference point '%s' is in use (a running job or an "
                        "open disk file)", rp->name);
    return RV_IN_USE;
  }
  int qrv = rp_qsd_require (sys, why);
  if (qrv != RV_OK)
    return qrv;
  char *e = NULL;
  if (rp_refpoint_has_data (rp) && rp_fleece_detach (rp) != 0) {
    *why = rp_asprintf ("QEMU did not answer while the point-in-time data "
                        "of '%s' was being removed; the reference point is "
                        "kept", rp->name);
    return RV_FAILED;
  }

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

  pthread_mutex_lock (&sys->core->lock);
  for (size_t k = 0; k < sys->nrps; k++)
    if (sys->rps[k] == rp) {
      memmove (&sys->rps[k], &sys->rps[k + 1],
               (sys->nrps - k - 1) * sizeof *sys->rps);
      sys->nrps--;
      break;
    }
  rp->destroyed = true;
  pthread_mutex_unlock (&sys->core->lock);
  rp_rm_rf (rp->dir);
  rp_refpoint_put (rp);          /* the list's reference */
  return RV_OK;
}

static int
remove_data (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  pthread_mutex_lock (&sys->core->lock);
  bool has = rp->has_data, busy = rp->busy > 0 || rp->exporting;
  pthread_mutex_unlock (&sys->core->lock);
  if (!has) {
    *why = rp_asprintf ("reference point '%s' has no associated data",
                        rp->name);
    return RV_INVALID_STATE;
  }
  if (busy) {
    *why = rp_asprintf ("reference point '%s' is in use (a running job or an "
                        "open disk file)", rp->name);
    return RV_IN_USE;
  }
  int qrv = rp_qsd_require (sys, why);
  if (qrv != RV_OK)
    return qrv;
  if (rp_fleece_detach (rp) != 0) {
    *why = rp_asprintf ("QEMU did not answer while the point-in-time data "
                        "of '%s' was being removed; it is kept", rp->name);
    return RV_FAILED;
  }
  return RV_OK;
}

/* The methods: a failure that came from a QMP timeout is 32772. */
int
rp_create (struct rp_system *sys, const char *name, int type, int level,
           struct rp_job *job, struct rp_refpoint **out, char **why)
{
  return rp_qsd_timeout_rv (sys, create (sys, name, type, level, job, out,
                                         why), why);
}

int
rp_destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  return rp_qsd_timeout_rv (sys, destroy (sys, rp, why), why);
}

int
rp_remove_data (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  return rp_qsd_timeout_rv (sys, remove_data (sys, rp, why), why);
}
