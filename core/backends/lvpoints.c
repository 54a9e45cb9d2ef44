/* The libvirt backend's reference points: each is one libvirt checkpoint
 * named after its tracking (rpfs-SEQ-UUID, the name qsd.c's and vm.c's
 * bitmaps have too), with the reference point's name as description.  A
 * log based one is created by the backup job that keeps its data
 * (lvjob.c), in the same libvirt call: one atomic step over all disks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvirt.h"

/* The newest rpfs checkpoint of the domain (its seq in *SEQ, 0 if none);
 * NULL with *why when libvirt cannot list them. */
static char *
newest (struct rp_system *sys, unsigned *seq, char **why)
{
  virDomainCheckpointPtr *cps = NULL;
  int n = virDomainListAllCheckpoints (lv_st (sys)->dom, &cps, 0);
  if (n < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("cannot list the domain's checkpoints: %s", e);
    return NULL;
  }
  char *best = rp_strdup ("");
  *seq = 0;
  for (int i = 0; i < n; i++) {
    const char *name = virDomainCheckpointGetName (cps[i]);
    unsigned q = rp_bitmap_seq (name);
    if (q > *seq) {
      *seq = q;
      free (best);
      best = rp_strdup (name);
    }
    virDomainCheckpointFree (cps[i]);
  }
  free (cps);
  return best;
}

/* libvirt found checkpoint CP's bitmap broken (MSG): its reference point's
 * tracking is lost (its digest tables may serve instead). */
static void
mark_broken (struct rp_system *sys, const char *cp, const char *msg)
{
  size_t n;
  struct rp_refpoint **rps = rp_system_hold_rps (sys, &n);
  for (size_t k = 0; k < n; k++)
    if (!strcmp (rps[k]->bitmap, cp)) {
      CLEANUP_FREE char *why = rp_asprintf ("libvirt: %s", msg);
      rp_refpoint_set_broken (rps[k], why);
      fprintf (stderr, "rpfs: %s/%s: change tracking lost: %s\n",
               sys->name, rps[k]->name, why);
    }
  rp_release_rps (rps, n);
}

static int
create_checkpoint (struct rp_system *sys, const char *xml, char **why)
{
  virDomainCheckpointPtr cp =
    virDomainCheckpointCreateXML (lv_st (sys)->dom, xml, 0);
  if (!cp) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("libvirt refused the checkpoint: %s", e);
    return rp_lv_fail_rv (sys);
  }
  virDomainCheckpointFree (cp);
  return RV_OK;
}

int
rp_lv_create (struct rp_system *sys, struct rp_refpoint *rp, char **note,
              char **why)
{
  struct lv_state *s = lv_st (sys);
  pthread_mutex_lock (&s->mu);
  CLEANUP_FREE char *busy = s->job_cp ? rp_strdup (s->job_cp) : NULL;
  pthread_mutex_unlock (&s->mu);
  if (rp->type == 1 && busy) {
    *why = rp_asprintf ("libvirt runs one backup job per domain, and it "
                        "keeps the point-in-time data of the reference "
                        "point with tracking %s: remove that data first "
                        "(RemoveAssociatedData), or create an RCT based "
                        "reference point (ReferencePointType=2)", busy);
    return RV_INVALID_STATE;
  }
  unsigned top;
  CLEANUP_FREE char *prev = newest (sys, &top, why);
  if (!prev)
    return rp_lv_fail_rv (sys);
  if (top >= rp->seq)
    rp->seq = top + 1;
  rp->bitmap = rp_bitmap_name (rp->seq, rp->instance_id);
  CLEANUP_FREE char *desc = rp_asprintf ("rpfs reference point %s",
                                         rp->name);
  if (rp_lv_offline (sys))
    return rp_lv_off_create (sys, rp, desc, why);   /* at rest: no freeze */
  char **ids = rp_system_disks (sys);
  CLEANUP_FREE char *xml = rp_lvxml_checkpoint (rp->bitmap, desc, ids,
                                                s->others);
  rp_strv_free (ids);
  void *frozen = NULL;
  int rv = rp_backend_freeze (sys, rp, &frozen, note, why);
  if (rv != RV_OK)
    return rv;
  CLEANUP_FREE char *broken = NULL;
  if (rp->type == 1)
    rv = rp_lv_job_begin (sys, rp, xml, *prev ? prev : NULL, &broken, why);
  else
    rv = create_checkpoint (sys, xml, why);
  rp_backend_thaw (sys, frozen);
  if (broken)
    mark_broken (sys, prev, broken);
  return rv;
}

int
rp_lv_destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  if (rp_lv_offline (sys))
    return rp_lv_off_destroy (sys, rp, why);
  virDomainCheckpointPtr cp =
    virDomainCheckpointLookupByName (lv_st (sys)->dom, rp->bitmap, 0);
  if (!cp) {
    virErrorPtr e = virGetLastError ();
    if (e && e->code == VIR_ERR_NO_DOMAIN_CHECKPOINT) {
      fprintf (stderr, "rpfs: %s/%s: libvirt had no checkpoint %s any "
               "more\n", sys->name, rp->name, rp->bitmap);
      return RV_OK;
    }
    CLEANUP_FREE char *m = rp_lv_error ();
    *why = rp_asprintf ("libvirt: %s", m);
    return rp_lv_fail_rv (sys);
  }
  /* libvirt folds the bitmap into the others' as its model needs. */
  int r = virDomainCheckpointDelete (cp, 0);
  virDomainCheckpointFree (cp);
  if (r < 0) {
    CLEANUP_FREE char *m = rp_lv_error ();
    *why = rp_asprintf ("libvirt refused to delete checkpoint %s: %s",
                        rp->bitmap, m);
    return rp_lv_fail_rv (sys);
  }
  return RV_OK;
}

/* Import, per disk: the tracking is there if libvirt still has the
 * checkpoint; if libvirt lost it (its metadata deleted, the domain defined
 * anew), whether the disk still carries the bitmap is for libvirt to
 * validate when the checkpoint is redefined (rp_lv_imported), or, while
 * the domain is shut off, for the image to say. */
int
rp_lv_has_tracking (struct rp_system *sys, size_t di, const char *tracking,
                    char **why)
{
  virDomainCheckpointPtr cp =
    virDomainCheckpointLookupByName (lv_st (sys)->dom, tracking, 0);
  if (cp) {
    virDomainCheckpointFree (cp);
    return 1;
  }
  virErrorPtr e = virGetLastError ();
  if (e && e->code == VIR_ERR_NO_DOMAIN_CHECKPOINT)
    return rp_lv_offline (sys) ? rp_lv_off_bitmap (sys, di, tracking, why)
      : 1;
  *why = rp_lv_error ();
  return -1;
}

/* Redefine the checkpoint libvirt lost, validated: libvirt checks that
 * every disk still carries its bitmap. */
int
rp_lv_imported (struct rp_system *sys, struct rp_refpoint *rp, char **why)
{
  struct lv_state *s = lv_st (sys);
  virDomainCheckpointPtr cp =
    virDomainCheckpointLookupByName (s->dom, rp->bitmap, 0);
  if (cp) {
    virDomainCheckpointFree (cp);
    return RV_OK;
  }
  CLEANUP_FREE char *desc = rp_asprintf ("rpfs reference point %s",
                                         rp->name);
  if (rp_lv_offline (sys))
    return rp_lv_off_imported (sys, rp, desc, why);
  CLEANUP_FREE char *xml = rp_lvxml_checkpoint_redefine (
    rp->bitmap, desc, (long long) rp->created, rp->disk_ids, s->others);
  cp = virDomainCheckpointCreateXML (
    s->dom, xml, VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE
    | VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE);
  if (!cp) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("the disks no longer carry the change tracking of "
                        "'%s': libvirt cannot redefine checkpoint %s: %s",
                        rp->name, rp->bitmap, e);
    return virDomainIsActive (s->dom) == 1 ? RV_INVALID_STATE
      : RV_NOT_AVAILABLE;
  }
  virDomainCheckpointFree (cp);
  fprintf (stderr, "rpfs: %s/%s: checkpoint %s redefined in libvirt\n",
           sys->name, rp->name, rp->bitmap);
  return RV_OK;
}
