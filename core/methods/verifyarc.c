/* VerifyExport of an archive file (verify.h): a full archive export is
 * hashed in one pass as libarchive unpacks it in memory (archash.h), and
 * each disk's table compared with the reference point's (the store's, else
 * the archive's own disks/<disk>.digests).  A differential archive holds
 * qcow2 overlays that restore only on top of their base: it is verified
 * once unpacked with its base, as a directory (docs/reference.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "verify.h"
#include "archash.h"
#include "arc.h"
#include "caller.h"
#include "digests.h"

int
rp_verify_archive_prepare (struct verify_work *w, bool job, char **why)
{
  CLEANUP_FREE char *cfg = NULL, *rec = NULL;
  size_t cl, rl;
  bool diff = false;
  if (rp_arc_read_meta (w->arcfd, w->path, RP_CALLER_FILE_MAX, &cfg, &cl,
                        &rec, &rl, why) != 0)
    return RV_INVALID_PARAMETER;
  int rv = rp_verify_record (w->rp, rec, rl, &w->disks, &diff, why);
  if (rv == RV_OK && diff) {
    *why = rp_asprintf ("%s is a differential archive: its disks are qcow2 "
                        "overlays that restore only on top of the base's; "
                        "unpack it next to its base (reference.md, section "
                        "9) and verify the unpacked directory", w->path);
    rv = RV_INVALID_PARAMETER;
  }
  if (rv != RV_OK || !job)
    return rv;
  if (lseek (w->arcfd, 0, SEEK_SET) != 0) {
    *why = rp_asprintf ("%s: cannot read it again from the start (%s)",
                        w->path, strerror (errno));
    return RV_INVALID_PARAMETER;
  }
  size_t n = rp_strv_len (w->disks);
  w->tabs = rp_calloc (n + 1, sizeof *w->tabs);
  w->specs = rp_calloc (n + 1, sizeof *w->specs);
  for (size_t i = 0; i < n; i++) {
    /* rpfs's own table first; else the archive's, read in the pass. */
    CLEANUP_FREE char *path = rp_digests_path (w->rp, w->disks[i]);
    struct stat st;
    if (stat (path, &st) == 0
        && !(w->tabs[i] = rp_digests_load (w->rp, w->disks[i], why)))
      return RV_INVALID_STATE;
  }
  w->steps = 2 * n;
  return RV_OK;
}

/* The pass is the first half of the job (the live disks the second). */
static void
arc_progress (void *opaque, uint64_t done, uint64_t total)
{
  struct verify_work *w = opaque;
  uint64_t part = total ? done * 100 / total : 100;
  int pct = (int) (part * rp_strv_len (w->disks) / w->steps);
  rp_job_set_percent (w->job, pct > 99 ? 99 : pct);
}

/* Compare disk I's content table GOT with the table it must match. */
static int
compare (struct verify_work *w, size_t i, const struct rp_arc_disks *d,
         char **why)
{
  const struct rp_digests *t = w->tabs[i] ? w->tabs[i] : d->own[i];
  const struct rp_digests *got = d->got[i];
  if (!got) {
    *why = d->odd[i]
      ? rp_asprintf ("disk %s: %s holds %s, not a full image of the disk",
                     w->disks[i], w->path, d->odd[i])
      : rp_asprintf ("disk %s: %s holds no image of the disk", w->disks[i],
                     w->path);
    return RV_FAILED;
  }
  if (!t) {
    *why = rp_asprintf ("no digest table for disk %s: the reference point "
                        "has none in the store, and %s holds none",
                        w->disks[i], w->path);
    return RV_INVALID_STATE;
  }
  if (t->size != got->size) {
    *why = rp_asprintf ("disk %s: the archived image has %" PRIu64 " bytes, "
                        "the digest table %" PRIu64, w->disks[i], got->size,
                        t->size);
    return RV_FAILED;
  }
  for (uint64_t b = 0; b < t->count; b++)
    if (memcmp (rp_digests_at (t, b), rp_digests_at (got, b), RP_BH_LEN))
      return rp_verify_bad (w, i, t, b, "the archived image", why);
  return RV_OK;
}

int
rp_verify_archive (struct verify_work *w, char **why)
{
  struct rp_system *sys = w->rp->sys;
  uint64_t total = 0;
  for (size_t i = 0; w->disks[i]; i++) {
    int di = rp_disk_index (sys, w->disks[i]);
    total += di < 0 ? 0 : sys->disks[di].size;
  }
  rp_job_set_activity (w->job, rp_asprintf ("hashing the disks in %s",
                                            w->path));
  struct rp_arc_disks d = { 0 };
  char *e = NULL;
  size_t n = rp_strv_len (w->disks);
  int r = rp_arc_hash_disks (w->arcfd, w->path, sys->name, w->disks, total,
                             &w->job->cancel, arc_progress, w, &d, &e);
  if (r == ECANCELED)
    return -1;
  if (r != 0) {
    *why = e;
    return RV_FAILED;
  }
  int rv = RV_OK;
  for (size_t i = 0; rv == RV_OK && i < n; i++) {
    rv = compare (w, i, &d, why);
    if (!w->tabs[i]) {          /* the archive's table, for the live disk */
      w->tabs[i] = d.own[i];
      d.own[i] = NULL;
    }
  }
  rp_arc_disks_free (&d, n);
  w->step = n;                  /* the live disks are the other half */
  return rv;
}
