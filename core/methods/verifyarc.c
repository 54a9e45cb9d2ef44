/* VerifyExport of an archive file (verify.h): a full archive export is
 * hashed in one pass as libarchive unpacks it in memory (archash.h), and
 * each disk's table compared with the reference point's (the store's, else
 * the archive's own disks/<disk>.digests).  A differential archive holds
 * qcow2 overlays that restore only on top of their base, which the archive
 * does not hold: each overlay is staged (an unnamed file next to the
 * archive, made as the caller, at most the overlay's size) and read alone
 * by qemu-nbd; a block it holds must hash to the reference point's table,
 * a block it does not hold must be one that the tables say did not change
 * since the base (the base's own export is verified by its own call). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "verify.h"
#include "archash.h"
#include "arc.h"
#include "caller.h"
#include "conf.h"
#include "digests.h"
#include "verifyio.h"

/* The base's table of each disk, from the store: a differential archive
 * says which reference point it is based on (BaseInstanceID). */
static int
base_tables (struct verify_work *w, const char *rec, size_t rl, char **why)
{
  struct rp_kv *kv = rp_kv_parse ("referencepoint", rec, rl, NULL);
  const char *id = kv ? rp_kv_get (kv, "BaseInstanceID") : NULL;
  struct rp_core *core = w->rp->sys->core;
  pthread_mutex_lock (&core->lock);
  struct rp_refpoint *b = id ? rp_refpoint_find (w->rp->sys, id) : NULL;
  if (b && (b == w->rp || b->created > w->rp->created))
    b = NULL;                   /* a base is older than what it is base of */
  if (b)
    b->refs++;
  pthread_mutex_unlock (&core->lock);
  int rv = RV_OK;
  if (!b) {
    *why = rp_asprintf ("%s is a differential archive whose base (%s) is "
                        "not an older reference point here: its unchanged "
                        "blocks cannot be checked; verify it unpacked on "
                        "its base (reference.md, section 9)", w->path,
                        id ? id : "not named");
    rv = RV_INVALID_STATE;
  }
  for (size_t i = 0; rv == RV_OK && w->disks[i]; i++) {
    char *e = NULL;
    if (!(w->btabs[i] = rp_digests_load (b, w->disks[i], &e))) {
      *why = rp_asprintf ("the base '%s' of %s has no usable digest table of "
                          "disk %s (%s): the overlay's unchanged blocks "
                          "cannot be checked", b->name, w->path, w->disks[i],
                          e);
      free (e);
      rv = RV_INVALID_STATE;
    }
  }
  rp_refpoint_put (b);
  rp_kv_free (kv);
  return rv;
}

/* An unnamed file per disk for its overlay, as WHO in the archive's
 * directory (the caller's space, as an archive export's staging). */
static int
staging (struct verify_work *w, const struct rp_caller *who, char **why)
{
  CLEANUP_FREE char *copy = rp_strdup (w->path);
  char *slash = strrchr (copy, '/');
  *slash = 0;
  int dfd = rp_caller_openat (who, AT_FDCWD, *copy ? copy : "/",
                              O_RDONLY | O_DIRECTORY, 0);
  int r = dfd;
  for (size_t i = 0; r >= 0 && w->disks[i]; i++)
    r = w->stage[i] = rp_caller_openat (who, dfd, ".", O_TMPFILE | O_RDWR,
                                        0600);
  if (dfd >= 0)
    close (dfd);
  if (r >= 0)
    return RV_OK;
  *why = rp_asprintf ("cannot stage the overlays of the differential archive "
                      "in %s (%s): verify it unpacked on its base", *copy
                      ? copy : "/", strerror (-r));
  return r == -EACCES || r == -EPERM ? RV_ACCESS_DENIED : RV_FAILED;
}

int
rp_verify_archive_prepare (struct verify_work *w, const struct rp_caller *who,
                           bool job, char **why)
{
  CLEANUP_FREE char *cfg = NULL, *rec = NULL;
  size_t cl, rl;
  if (rp_arc_read_meta (w->arcfd, w->path, RP_CALLER_FILE_MAX, &cfg, &cl,
                        &rec, &rl, why) != 0)
    return RV_INVALID_PARAMETER;
  int rv = rp_verify_record (w->rp, rec, rl, &w->disks, &w->diff, why);
  if (rv != RV_OK || !job)
    return rv;
  if (w->diff) {
    size_t nd = rp_strv_len (w->disks);
    w->stage = rp_calloc (nd + 1, sizeof *w->stage);
    memset (w->stage, -1, (nd + 1) * sizeof *w->stage);
    w->btabs = rp_calloc (nd + 1, sizeof *w->btabs);
    /* An overlay holds at most the disk and its metadata (qcow2: 8 bytes
     * of L2 and 2 of refcount per 64 KiB cluster, headers): no caller's
     * archive makes rpfs write more than an export of the disk would. */
    w->stage_max = rp_calloc (nd + 1, sizeof *w->stage_max);
    for (size_t i = 0; i < nd; i++) {
      int di = rp_disk_index (w->rp->sys, w->disks[i]);
      uint64_t s = di < 0 ? 0 : w->rp->sys->disks[di].size;
      w->stage_max[i] = s + s / 64 + (64u << 20);
    }
    if ((rv = base_tables (w, rec, rl, why)) != RV_OK
        || (rv = staging (w, who, why)) != RV_OK)
      return rv;
  }
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

/* Disk I of a differential archive: its overlay, staged by the pass, read
 * alone against the reference point's table and the base's. */
static int
overlay (struct verify_work *w, size_t i, const struct rp_arc_disks *d,
         char **why)
{
  const struct rp_digests *t = w->tabs[i] ? w->tabs[i] : d->own[i];
  if (!d->staged[i] || !t) {
    *why = rp_asprintf ("disk %s: %s holds %s", w->disks[i], w->path,
                        !d->staged[i] ? "no overlay of the disk"
                        : "no digest table of it, and the store has none");
    return !d->staged[i] ? RV_FAILED : RV_INVALID_STATE;
  }
  rp_job_set_activity (w->job, rp_asprintf ("checking the overlay of disk "
                                            "%s against the digest tables",
                                            w->disks[i]));
  CLEANUP_FREE char *name = rp_asprintf ("disks/%s.qcow2 of %s", w->disks[i],
                                         w->path);
  CLEANUP_FREE char *spec = rp_verify_overlay_spec (w->stage[i], name, why);
  if (!spec)
    return RV_FAILED;
  uint64_t bad = 0;
  bool absent = false;
  char *e = NULL;
  int r = rp_verify_overlay (spec, t, w->btabs[i], &w->job->cancel, &bad,
                             &absent, &e);
  if (r == 1)
    return rp_verify_bad (w, i, t, bad, absent ? "the differential archive "
                          "(it does not hold the block, but the block changed "
                          "since the base)" : "the archived overlay", why);
  if (r == ECANCELED)
    return -1;
  if (r != 0) {
    *why = rp_asprintf ("disk %s: %s", w->disks[i], e);
    free (e);
    return RV_FAILED;
  }
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
  size_t nd = rp_strv_len (w->disks);
  w->sizes = rp_calloc (nd + 1, sizeof *w->sizes);
  for (size_t i = 0; i < nd; i++) {
    int di = rp_disk_index (sys, w->disks[i]);
    w->sizes[i] = di < 0 ? 0 : sys->disks[di].size;
  }
  struct rp_arc_disks d = { .size = w->sizes, .stage = w->stage,
                            .stage_max = w->stage_max };
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
    rv = w->diff ? overlay (w, i, &d, why) : compare (w, i, &d, why);
    if (!w->tabs[i]) {          /* the archive's table, for the live disk */
      w->tabs[i] = d.own[i];
      d.own[i] = NULL;
    }
  }
  rp_arc_disks_free (&d, n);
  w->step = n;                  /* the live disks are the other half */
  return rv;
}
