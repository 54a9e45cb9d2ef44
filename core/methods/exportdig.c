/* ExportReferencePoint's digest tables (exportdig.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "digests.h"
#include "exportdig.h"
#include "outdir.h"

int
rp_export_base_mode (struct rp_refpoint *rp, struct rp_refpoint *base,
                     char *const *disks, bool *digest, char **why)
{
  struct rp_system *sys = rp->sys;
  struct rp_refpoint *lost = NULL;
  *digest = false;
  for (size_t k = 0; k < sys->nrps && !lost; k++) {
    struct rp_refpoint *x = sys->rps[k];
    if (x->seq >= base->seq && x->seq < rp->seq && x->broken)
      lost = x;
  }
  if (!lost)
    return RV_OK;
  if (rp_digests_usable (base, disks)) {
    *digest = true;
    return RV_OK;
  }
  const char *tables = base->dig_bad ? base->dig_bad
    : "and it has no digest table (it was never exported)";
  *why = lost == base
    ? rp_asprintf ("base '%s' cannot be used: %s; %s", base->name,
                   lost->broken, tables)
    : rp_asprintf ("base '%s' cannot be used: the tracking of '%s' in "
                   "between was lost: %s; for '%s': %s", base->name,
                   lost->name, lost->broken, base->name, tables);
  return RV_INVALID_STATE;
}

struct rp_bh *
rp_export_bh (struct rp_refpoint *base, bool digest, const char *disk,
              uint64_t size, int *rv, char **why)
{
  *rv = RV_OK;
  if (!base)
    return rp_bh_new (RP_BH_FULL, size, NULL);
  char *e = NULL;
  CLEANUP_FREE char *path = rp_digests_path (base, disk);
  struct stat st;
  bool missing = stat (path, &st) != 0;   /* a base exported before tables */
  struct rp_digests *t = rp_digests_load (base, disk, &e);
  struct rp_bh *bh = t ? rp_bh_new (digest ? RP_BH_DIGEST : RP_BH_DIFF,
                                    size, t) : NULL;
  if (t && !bh)
    e = rp_asprintf ("the digest table of disk %s is for another disk size",
                     disk);
  if (!bh && digest) {
    *why = rp_asprintf ("base '%s' cannot be used: %s", base->name, e);
    *rv = RV_INVALID_STATE;
    pthread_mutex_lock (&base->sys->core->lock);
    if (!base->dig_bad)
      base->dig_bad = rp_strdup (e);
    pthread_mutex_unlock (&base->sys->core->lock);
  }
  else if (!bh && !missing)     /* a table that does not serve: say so */
    fprintf (stderr, "rpfs: %s: this export of disk %s makes no digest "
             "table: %s\n", base->sys->name, disk, e);
  free (e);
  return bh;
}

int
rp_export_bh_done (struct rp_outdir *od, const char *disk, struct rp_bh *bh,
                   struct rp_digests **tab, char hex[65], char **why)
{
  *tab = rp_bh_end (bh, true);
  size_t len;
  CLEANUP_FREE void *buf = rp_digests_render (*tab, &len);
  CLEANUP_FREE char *rel = rp_asprintf ("disks/%s.digests", disk);
  int r = rp_outdir_write (od, rel, buf, len);
  if (r != 0) {
    *why = rp_asprintf ("%s while writing the export's %s in %s",
                        strerror (-r), rel, rp_outdir_path (od));
    rp_digests_free (*tab);
    *tab = NULL;
    return RV_FAILED;
  }
  rp_sha256_buf (buf, len, hex);
  return RV_OK;
}

void
rp_export_tables_save (struct rp_refpoint *rp, char *const *disks,
                       struct rp_digests **tabs)
{
  bool all = true;
  for (size_t i = 0; disks[i]; i++) {
    char *e = NULL;
    if (tabs[i] && rp_digests_save (rp, disks[i], tabs[i], &e) != 0) {
      fprintf (stderr, "rpfs: %s/%s: %s\n", rp->sys->name, rp->name, e);
      all = false;
    }
    free (e);
    rp_digests_free (tabs[i]);
    tabs[i] = NULL;
  }
  pthread_mutex_lock (&rp->sys->core->lock);
  if (all && rp->dig_bad) {     /* new tables replace the damaged ones */
    free (rp->dig_bad);
    rp->dig_bad = NULL;
  }
  pthread_mutex_unlock (&rp->sys->core->lock);
}
