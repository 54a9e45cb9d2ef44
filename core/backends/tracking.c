/* Change tracking and fleecing in QEMU for reference points: the start-up
 * check that decides which reference points can still serve as a base, and
 * attaching / detaching the fleecing (point-in-time) nodes of log based
 * reference points.  All functions here run with sys->op_lock held. */
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

/* A reference point's point-in-time data on disk i is a chain of scratch
 * layers: layer 0 (read through, exported) backed by layer 1 ... backed by
 * the newest layer, backed by the disk.  The backup job copies into the
 * newest layer only.  A creation makes one layer; every re-attach after a
 * clean restart adds a new, empty newest layer, so that the new job never
 * writes over clusters an older layer already preserved. */
static char *
layer_path (struct rp_refpoint *rp, const char *disk, unsigned l)
{
  return l == 0 ? rp_asprintf ("%s/%s.fleece.qcow2", rp->dir, disk)
                : rp_asprintf ("%s/%s.fleece.%u.qcow2", rp->dir, disk, l);
}

static void
layer_node (struct rp_refpoint *rp, unsigned i, unsigned l, char node[32])
{
  if (l == 0)
    snprintf (node, 32, "f%u_%u", rp->seq, i);
  else
    snprintf (node, 32, "f%u_%u_%u", rp->seq, i, l);
}

static void
fleece_names (struct rp_refpoint *rp, unsigned i, char node[32],
              char job[32], char exp[32])
{
  layer_node (rp, i, 0, node);
  snprintf (job, 32, "fj%u_%u", rp->seq, i);
  rp_export_name_rp (exp, 32, rp->seq, i);
}

static void
delete_layers (struct rp_refpoint *rp, const char *disk)
{
  for (unsigned l = 0; l < rp->layers + 1; l++) {
    CLEANUP_FREE char *p = layer_path (rp, disk, l);
    unlink (p);
  }
}

static int fleece_teardown (struct rp_refpoint *rp, size_t n,
                            bool delete_files);

static int
qmp_simple (struct rp_system *sys, const char *cmd, json_t *args, char **err)
{
  return rp_qmp_cmd (sys->qmp, cmd, args, NULL, err);
}

/* Wait until block job JOB is gone (cancelled jobs finish asynchronously). */
static void
wait_job_gone (struct rp_system *sys, const char *job)
{
  for (int tries = 0; tries < 2000; tries++) {
    json_t *ret = NULL;
    char *e = NULL;
    if (rp_qmp_cmd (sys->qmp, "query-block-jobs", NULL, &ret, &e) != 0) {
      free (e);
      return;
    }
    bool found = false;
    size_t i;
    json_t *j;
    json_array_foreach (ret, i, j)
      if (!strcmp (json_string_value (json_object_get (j, "device")) ?: "", job))
        found = true;
    json_decref (ret);
    if (!found)
      return;
    struct timespec ts = { 0, 5000000 };
    nanosleep (&ts, NULL);
  }
}

/* Tear down what exists of RP's fleecing for disks 0..N-1 (errors ignored:
 * parts may not exist).  Deletes the scratch images when DELETE_FILES.
 * Returns -3 if QEMU did not answer a command in time (the tear-down stops
 * there and keeps the files; running it again finishes it), else 0. */
static int
fleece_teardown (struct rp_refpoint *rp, size_t n, bool delete_files)
{
  struct rp_system *sys = rp->sys;
  for (size_t i = 0; i < n; i++) {
    int di = rp_disk_index (sys, rp->disk_ids[i]);
    char node[32], job[32], exp[32];
    char *e = NULL;
    fleece_names (rp, (unsigned) di, node, job, exp);
    if (rp_backend_alive (sys)) {
      int r = qmp_simple (sys, "block-export-del",
                          json_pack ("{s:s, s:s}", "id", exp, "mode", "hard"),
                          &e);
      free (e); e = NULL;
      if (r == -3)
        return -3;
      r = qmp_simple (sys, "block-job-cancel",
                      json_pack ("{s:s, s:b}", "device", job, "force", 1),
                      &e);
      free (e); e = NULL;
      if (r == -3)
        return -3;
      if (r == 0)
        wait_job_gone (sys, job);
      /* The export goes away asynchronously too; retry blockdev-del.
       * Top layer first: a node still backing another cannot go. */
      for (unsigned l = 0; l < rp->layers; l++) {
        layer_node (rp, (unsigned) di, l, node);
        for (int t = 0; t < 200; t++) {
          r = qmp_simple (sys, "blockdev-del",
                          json_pack ("{s:s}", "node-name", node), &e);
          if (r == 0 || r == -2 || (e && strstr (e, "Failed to find node")))
            break;
          free (e); e = NULL;
          if (r == -3)
            return -3;
          struct timespec ts = { 0, 5000000 };
          nanosleep (&ts, NULL);
        }
        free (e); e = NULL;
      }
    }
    if (delete_files)
      delete_layers (rp, rp->disk_ids[i]);
  }
  return 0;
}

/* The backends' drop_data: the record is the generic layer's. */
int
rp_qemu_drop_data (struct rp_system *sys, struct rp_refpoint *rp)
{
  (void) sys;
  return fleece_teardown (rp, rp_strv_len (rp->disk_ids), true) != 0 ? -1 : 0;
}

/* An empty qcow2 of SIZE at PATH: a copy of a template qemu-img made once
 * per size (STORE/state/templates), so that creating a reference point
 * runs no process.  0, or -1 with *err. */
static int
new_scratch (struct rp_system *sys, uint64_t size, const char *path,
             char **err)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/state/templates",
                                        sys->core->store);
  CLEANUP_FREE char *tpl = rp_asprintf ("%s/%" PRIu64 ".qcow2", dir, size);
  size_t len;
  CLEANUP_FREE char *data = rp_read_file (tpl, &len);
  if (!data) {
    CLEANUP_FREE char *tmp = rp_asprintf ("%s.%d.tmp", tpl, (int) getpid ());
    CLEANUP_FREE char *sz = rp_asprintf ("%" PRIu64, size);
    CLEANUP_FREE char *out = NULL;
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", tmp, sz,
                     NULL };
    if (rp_mkdir_p (dir, 0755) != 0
        || rp_proc_run (argv, NULL, NULL, &out) != 0
        || rename (tmp, tpl) != 0 || !(data = rp_read_file (tpl, &len))) {
      *err = rp_asprintf ("cannot create the fleecing image template %s: %s",
                          tpl, out && *out ? out : strerror (errno));
      unlink (tmp);
      return -1;
    }
  }
  if (rp_write_file_atomic (path, data, len, 0600) != 0) {
    *err = rp_asprintf ("cannot create the fleecing image %s: %s", path,
                        strerror (errno));
    return -1;
  }
  return 0;
}

/* Add the scratch layers of every disk to QEMU: on creation (CREATE) one
 * new layer, on a re-attach the existing layers under a new, empty newest
 * one.  The backup jobs that fill the newest are added by the caller, in its
 * transaction (rp_fleece_actions).  On failure everything is undone. */
int
rp_fleece_nodes (struct rp_refpoint *rp, bool create, char **err)
{
  struct rp_system *sys = rp->sys;
  size_t n = rp_strv_len (rp->disk_ids);
  rp->layers = create ? 1 : rp->layers + 1;
  unsigned newest = rp->layers - 1;
  for (size_t i = 0; i < n; i++) {
    int di = rp_disk_index (sys, rp->disk_ids[i]);
    if (di < 0) {
      *err = rp_asprintf ("disk %s is no longer in the definition of %s",
                          rp->disk_ids[i], sys->name);
      fleece_teardown (rp, i, create);
      return -1;
    }
    for (unsigned l = newest + 1; l-- > 0;) {
      CLEANUP_FREE char *path = layer_path (rp, rp->disk_ids[i], l);
      if (l == newest && new_scratch (sys, sys->disks[di].size, path,
                                      err) != 0) {
        fleece_teardown (rp, i + 1, create);
        return -1;
      }
      else if (access (path, R_OK | W_OK) != 0) {
        *err = rp_asprintf ("fleecing image %s: %s", path, strerror (errno));
        fleece_teardown (rp, i + 1, create);
        return -1;
      }
      char node[32], below[32];
      layer_node (rp, (unsigned) di, l, node);
      if (l == newest)
        snprintf (below, sizeof below, "%s", sys->disks[di].node);
      else
        layer_node (rp, (unsigned) di, l + 1, below);
      char *e = NULL;
      json_t *args = json_pack ("{s:s, s:s, s:s, s:{s:s, s:s}}",
                                "driver", "qcow2", "node-name", node,
                                "backing", below,
                                "file", "driver", "file", "filename", path);
      if (qmp_simple (sys, "blockdev-add", args, &e) != 0) {
        *err = rp_asprintf ("cannot open fleecing image %s: %s", path, e);
        free (e);
        fleece_teardown (rp, i + 1, create);
        return -1;
      }
    }
  }
  return 0;
}

/* Append to ACTIONS the backup jobs (sync=none) that make RP's scratch
 * nodes keep the point-in-time content. */
void
rp_fleece_actions (struct rp_refpoint *rp, json_t *actions)
{
  for (size_t i = 0; rp->disk_ids[i]; i++) {
    int di = rp_disk_index (rp->sys, rp->disk_ids[i]);
    char node[32], job[32], exp[32];
    fleece_names (rp, (unsigned) di, node, job, exp);
    layer_node (rp, (unsigned) di, rp->layers - 1, node);
    json_array_append_new (actions, rp_qmp_action (
      "blockdev-backup",
      json_pack ("{s:s, s:s, s:s, s:s}", "device", rp->sys->disks[di].node,
                 "target", node, "sync", "none", "job-id", job)));
  }
}

/* Publish the scratch nodes read-only over NBD (referencepoints/RP/disks). */
int
rp_fleece_exports (struct rp_refpoint *rp, char **err)
{
  for (size_t i = 0; rp->disk_ids[i]; i++) {
    int di = rp_disk_index (rp->sys, rp->disk_ids[i]);
    char node[32], job[32], exp[32];
    fleece_names (rp, (unsigned) di, node, job, exp);
    char *e = NULL;
    if (qmp_simple (rp->sys, "block-export-add",
                    json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd",
                               "id", exp, "node-name", node, "name", exp,
                               "writable", 0), &e) != 0) {
      *err = rp_asprintf ("cannot export the point-in-time disk %s: %s",
                          rp->disk_ids[i], e);
      free (e);
      return -1;
    }
  }
  return 0;
}

/* Undo rp_fleece_nodes after a failed transaction. */
void
rp_fleece_abort (struct rp_refpoint *rp)
{
  fleece_teardown (rp, rp_strv_len (rp->disk_ids), true);
}

/* After QEMU started: compare every reference point with the bitmaps the
 * disks really carry.  A bitmap that is missing (added at run time and never
 * written: QEMU was killed) or inconsistent (QEMU was killed while it was in
 * use) means the changes since that reference point are unknown: the
 * reference point stays listed but is refused as a base, with the reason.
 * Inconsistent bitmaps are then removed (QEMU allows nothing else on them).
 * Fleecing data survives a clean stop when nothing wrote the disks while
 * rpfs was away: the guard bitmap, added to every disk just before QEMU is
 * stopped, must come back present, consistent and empty.  The scratch
 * layers are then re-attached under a new newest layer (see layer_path).
 * Otherwise (a crash, or a writer in between) the data is dropped and the
 * reference point stays usable as a base if its tracking is intact.
 * A running VM has no guard: its fleecing lives on in the VM while rpfs is
 * away and is adopted if its backup jobs still run (adopt; the VM backend
 * asks for it with ADOPT_RUNNING). */
static int
reattach (struct rp_refpoint *rp, char **err)
{
  if (rp_fleece_nodes (rp, false, err) != 0)
    return -1;
  json_t *actions = json_array ();
  rp_fleece_actions (rp, actions);
  char *e = NULL;
  if (rp_qmp_transaction (rp->sys->qmp, actions, &e) != 0) {
    *err = rp_asprintf ("cannot restart fleecing: %s", e);
    free (e);
    return -1;
  }
  return rp_fleece_exports (rp, err);
}

/* A running VM keeps a reference point's fleecing while rpfs is away (an
 * unmount, or rpfs died): the data is still exact if every disk's backup
 * job still runs.  Publish it again then. */
static int
adopt (struct rp_refpoint *rp, char **err)
{
  struct rp_system *sys = rp->sys;
  json_t *jobs = NULL;
  char *e = NULL;
  if (rp_qmp_cmd (sys->qmp, "query-block-jobs", NULL, &jobs, &e) != 0) {
    *err = rp_asprintf ("QEMU: %s", e);
    free (e);
    return -1;
  }
  int r = 0;
  for (size_t i = 0; r == 0 && rp->disk_ids[i]; i++) {
    int di = rp_disk_index (sys, rp->disk_ids[i]);
    char node[32], job[32], exp[32];
    bool running = false;
    if (di >= 0) {
      fleece_names (rp, (unsigned) di, node, job, exp);
      size_t k;
      json_t *j;
      json_array_foreach (jobs, k, j) {
        const char *id = json_string_value (json_object_get (j, "device"));
        const char *st = json_string_value (json_object_get (j, "status"));
        if (id && !strcmp (id, job) && st && !strcmp (st, "running"))
          running = true;
      }
    }
    if (!running) {
      *err = rp_asprintf ("the VM no longer runs its fleecing job for disk "
                          "%s (it was restarted)", rp->disk_ids[i]);
      r = -1;
    }
  }
  json_decref (jobs);
  return r == 0 ? rp_fleece_exports (rp, err) : r;
}

/* Reference point RP after a (re)start: its bitmaps BM say whether its
 * tracking survived (else it is marked broken); its point-in-time data is
 * adopted (a running VM kept it) or re-attached (GUARD_OK: nothing wrote
 * the disks meanwhile), else dropped. */
static void
check_one (struct rp_system *sys, struct rp_refpoint *rp,
           const struct rp_bitmaps *bm, bool guard_ok, bool adopt_running)
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
  pthread_mutex_lock (&sys->core->lock);
  bool had = rp->has_data;
  pthread_mutex_unlock (&sys->core->lock);
  if (!had)
    return;
  CLEANUP_FREE char *why = NULL;
  bool ok = adopt_running ? adopt (rp, &why) == 0
    : guard_ok && reattach (rp, &why) == 0;
  if (!ok) {
    fprintf (stderr, "rpfs: %s/%s: point-in-time data dropped: %s\n",
             sys->name, rp->name,
             why ? why : "QEMU did not stop cleanly, or something wrote "
             "the disks while rpfs was not running");
    fleece_teardown (rp, rp_strv_len (rp->disk_ids), true);
  }
  pthread_mutex_lock (&sys->core->lock);
  rp->has_data = ok;
  if (!ok)
    rp->layers = 0;
  rp_refpoint_save (rp);
  pthread_mutex_unlock (&sys->core->lock);
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
    check_one (sys, rps[k], bm, guard_ok, adopt_running);
  rp_release_rps (rps, nrps);
  rp_digests_check_system (sys);      /* tables of the lost ones */

  /* Inconsistent bitmaps of ours, and the guard, are of no further use. */
  for (size_t i = 0; i < sys->ndisks; i++)
    for (size_t j = 0; j < bm[i].n; j++) {
      const struct rp_bitmap *b = &bm[i].v[j];
      if ((b->seq && b->inconsistent) || !strcmp (b->name, RP_GUARD_BITMAP)) {
        qmp_simple (sys, "block-dirty-bitmap-remove",
                    json_pack ("{s:s, s:s}", "node", sys->disks[i].node,
                               "name", b->name), &e);
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
