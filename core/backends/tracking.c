/* Change tracking in QEMU for reference points: the start-up check that
 * decides which reference points can still serve as a base and hands the
 * point-in-time data to the fleecing chain (chain.c).  All functions here
 * run with sys->op_lock held. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"
#include "digests.h"
#include "proc.h"

/* The backends' drop_data: the record is the generic layer's. */
int
rp_qemu_drop_data (struct rp_system *sys, struct rp_refpoint *rp)
{
  return rp_chain_drop (sys, rp);
}

/* After QEMU started: compare every reference point with the bitmaps the
 * disks really carry.  A bitmap that is missing (added at run time and never
 * written: QEMU was killed) or inconsistent (QEMU was killed while it was in
 * use) means the changes since that reference point are unknown: the
 * reference point stays listed but is refused as a base, with the reason.
 * Inconsistent bitmaps are then removed (QEMU allows nothing else on them).
 * Fleecing data survives a clean stop when nothing wrote the disks while
 * rpfs was away: the guard bitmap, added to every disk just before QEMU is
 * stopped, must come back present, consistent and empty.  The chain is
 * then re-attached (fleece.c: the newest link under a new bottom layer).
 * Otherwise (a crash, or a writer in between) the data is dropped and the
 * reference point stays usable as a base if its tracking is intact.
 * A running VM has no guard: its fleecing lives on in the VM while rpfs is
 * away and is adopted if the newest backup jobs still run (the VM backend
 * asks for it with ADOPT_RUNNING). */

/* Reference point RP after a (re)start: its bitmaps BM say whether its
 * tracking survived (else it is marked broken). */
static void
check_one (struct rp_system *sys, struct rp_refpoint *rp,
           const struct rp_bitmaps *bm)
{
  for (size_t j = 0; rp->disk_ids[j]; j++) {
    int di = rp_disk_index (sys, rp->disk_ids[j]);
    const struct rp_bitmap *b = di < 0 ? NULL
      : rp_bitmaps_find (&bm[di], rp->bitmap);
    CLEANUP_FREE char *why = NULL;
    if (di < 0)
      why = rp_asprintf ("disk %s is no longer part of the system",
                         rp->disk_ids[j]);
    else if (!b)
      why = rp_asprintf ("the change tracking bitmap on disk %s is missing "
                         "(QEMU was stopped without writing it)",
                         rp->disk_ids[j]);
    else if (b->inconsistent)
      why = rp_asprintf ("the change tracking bitmap on disk %s is "
                         "inconsistent (QEMU was killed while it was in "
                         "use)", rp->disk_ids[j]);
    if (why) {
      rp_refpoint_set_broken (rp, why);
      break;
    }
  }
}

int
rp_qemu_check_tracking (struct rp_system *sys, bool adopt_running)
{
  struct rp_bitmaps *bm = rp_calloc (sys->ndisks + 1, sizeof *bm);
  char *e = NULL;
  int r = 0;
  bool guard_ok = true;

  rp_bitmaps_invalidate (sys);  /* a new or re-attached QEMU */

  if (rp_bitmaps_query_disks (sys, bm, &e) != 0) {
    fprintf (stderr, "rpfs: %s: %s\n", sys->name, e);
    free (e);
    r = -1;
    goto out;
  }
  for (size_t i = 0; i < sys->ndisks; i++) {
    const struct rp_bitmap *g = rp_bitmaps_find (&bm[i], RP_GUARD_BITMAP);
    if (!g || g->inconsistent || g->count != 0)
      guard_ok = false;
  }

  size_t nrps;
  struct rp_refpoint **rps = rp_system_hold_rps (sys, &nrps);

  for (size_t k = 0; k < nrps; k++)
    check_one (sys, rps[k], bm);
  rp_release_rps (rps, nrps);
  rp_chain_rebuild (sys, guard_ok, adopt_running);
  rp_digests_check_system (sys);      /* tables of the lost ones */

  /* Inconsistent bitmaps of ours, and the guard, are of no further use. */
  for (size_t i = 0; i < sys->ndisks; i++)
    for (size_t j = 0; j < bm[i].n; j++) {
      const struct rp_bitmap *b = &bm[i].v[j];
      if ((b->seq && b->inconsistent) || !strcmp (b->name, RP_GUARD_BITMAP)) {
        rp_qmp_cmd (sys->qmp, "block-dirty-bitmap-remove",
                    json_pack ("{s:s, s:s}", "node", sys->disks[i].node,
                               "name", b->name), NULL, &e);
        free (e);
        e = NULL;
      }
    }
 out:
  for (size_t i = 0; i < sys->ndisks; i++)
    rp_bitmaps_free (&bm[i]);
  free (bm);
  return r;
}
