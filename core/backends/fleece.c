/* One link of the fleecing chain in QEMU (chain.c): a reference point's
 * scratch nodes on each disk, the backup jobs that fill them while the link
 * is live, and their NBD exports.  All functions run with sys->op_lock.
 *
 * A link's data on disk i is a stack of scratch layers: layer 0 (exported)
 * backed by layer 1 ... backed by the bottom layer, backed by the disk.  A
 * backup job copies into the bottom layer only.  Creation makes one layer;
 * a re-attach after a clean restart gives the newest link a new, empty
 * bottom layer, so that its new job never writes over clusters an older
 * layer already preserved. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"
#include "proc.h"

static char *
layer_path (const struct rp_link *l, const char *disk, unsigned k)
{
  return k == 0 ? rp_asprintf ("%s/%s.fleece.qcow2", l->dir, disk)
                : rp_asprintf ("%s/%s.fleece.%u.qcow2", l->dir, disk, k);
}

static void
layer_node (const struct rp_link *l, unsigned di, unsigned k, char node[32])
{
  if (k == 0)
    snprintf (node, 32, "f%u_%u", l->seq, di);
  else
    snprintf (node, 32, "f%u_%u_%u", l->seq, di, k);
}

static void
job_name (const struct rp_link *l, unsigned di, char job[32])
{
  snprintf (job, 32, "fj%u_%u", l->seq, di);
}

static int
qmp_simple (struct rp_system *sys, const char *cmd, json_t *args, char **err)
{
  return rp_qmp_cmd (sys->qmp, cmd, args, NULL, err);
}

static void
pause_5ms (void)
{
  struct timespec ts = { 0, 5000000 };
  nanosleep (&ts, NULL);
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
    pause_5ms ();
  }
}

/* Cancel the backup job of disk DI: 0, or -3 (QEMU did not answer). */
static int
cancel_job (struct rp_link *l, unsigned di)
{
  char job[32];
  char *e = NULL;
  job_name (l, di, job);
  int r = qmp_simple (l->sys, "block-job-cancel",
                      json_pack ("{s:s, s:b}", "device", job, "force", 1), &e);
  free (e);
  if (r == 0)
    wait_job_gone (l->sys, job);
  return r == -3 ? -3 : 0;
}

int
rp_link_cancel_jobs (struct rp_link *l)
{
  for (size_t i = 0; l->disk_ids[i]; i++) {
    int di = rp_disk_index (l->sys, l->disk_ids[i]);
    if (di >= 0 && rp_backend_alive (l->sys) && cancel_job (l, (unsigned) di))
      return -3;
  }
  return 0;
}

/* Delete node NODE, retrying while an export lets go of it. */
static int
del_node (struct rp_system *sys, const char *node)
{
  char *e = NULL;
  int r = 0;
  for (int t = 0; t < 200; t++) {
    r = qmp_simple (sys, "blockdev-del",
                    json_pack ("{s:s}", "node-name", node), &e);
    if (r == 0 || r == -2 || (e && strstr (e, "Failed to find node")))
      break;
    free (e);
    e = NULL;
    if (r == -3)
      break;
    pause_5ms ();
  }
  free (e);
  return r == -3 ? -3 : 0;
}

static void
delete_files (struct rp_link *l, const char *disk)
{
  for (unsigned k = 0; k < l->layers + 1; k++) {
    CLEANUP_FREE char *p = layer_path (l, disk, k);
    unlink (p);
  }
}

int
rp_link_teardown (struct rp_link *l, size_t n, bool files)
{
  struct rp_system *sys = l->sys;
  for (size_t i = 0; i < n; i++) {
    int di = rp_disk_index (sys, l->disk_ids[i]);
    if (di >= 0 && rp_backend_alive (sys)) {
      char node[32], exp[32];
      char *e = NULL;
      rp_export_name_rp (exp, sizeof exp, l->seq, (unsigned) di);
      int r = qmp_simple (sys, "block-export-del",
                          json_pack ("{s:s, s:s}", "id", exp, "mode", "hard"),
                          &e);
      free (e);
      if (r == -3 || cancel_job (l, (unsigned) di) == -3)
        return -3;
      /* Top layer first: a node still backing another cannot go. */
      for (unsigned k = 0; k < l->layers; k++) {
        layer_node (l, (unsigned) di, k, node);
        if (del_node (sys, node) == -3)
          return -3;
      }
    }
    if (files)
      delete_files (l, l->disk_ids[i]);
  }
  return 0;
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

/* Open layer K of disk DI (file PATH) over BELOW. */
static int
add_layer (struct rp_link *l, unsigned di, unsigned k, const char *path,
           char **err)
{
  struct rp_system *sys = l->sys;
  char node[32], below[32];
  layer_node (l, di, k, node);
  if (k + 1 == l->layers)
    snprintf (below, sizeof below, "%s", sys->disks[di].node);
  else
    layer_node (l, di, k + 1, below);
  char *e = NULL;
  json_t *args = json_pack ("{s:s, s:s, s:s, s:{s:s, s:s}}",
                            "driver", "qcow2", "node-name", node,
                            "backing", below,
                            "file", "driver", "file", "filename", path);
  if (qmp_simple (sys, "blockdev-add", args, &e) != 0) {
    *err = rp_asprintf ("cannot open fleecing image %s: %s", path, e);
    free (e);
    return -1;
  }
  return 0;
}

int
rp_link_nodes (struct rp_link *l, bool new_layer, char **err)
{
  struct rp_system *sys = l->sys;
  size_t n = rp_strv_len (l->disk_ids);
  bool fresh = l->layers == 0;
  if (new_layer)
    l->layers++;
  unsigned bottom = l->layers - 1;
  for (size_t i = 0; i < n; i++) {
    int di = rp_disk_index (sys, l->disk_ids[i]);
    int r = di < 0 ? -1 : 0;
    if (di < 0)
      *err = rp_asprintf ("disk %s is no longer in the definition of %s",
                          l->disk_ids[i], sys->name);
    for (unsigned k = bottom + 1; r == 0 && k-- > 0;) {
      CLEANUP_FREE char *path = layer_path (l, l->disk_ids[i], k);
      if (new_layer && k == bottom && access (path, F_OK) == 0) {
        /* A layer count on disk one short: never write over a layer. */
        *err = rp_asprintf ("fleecing image %s exists already", path);
        r = -1;
      }
      else if (new_layer && k == bottom)
        r = new_scratch (sys, sys->disks[di].size, path, err);
      else if (access (path, R_OK | W_OK) != 0) {
        *err = rp_asprintf ("fleecing image %s: %s", path, strerror (errno));
        r = -1;
      }
      if (r == 0)
        r = add_layer (l, (unsigned) di, k, path, err);
    }
    if (r != 0) {
      rp_link_teardown (l, i + 1, fresh);
      return -1;
    }
  }
  return 0;
}

void
rp_link_actions (struct rp_link *l, json_t *actions)
{
  for (size_t i = 0; l->disk_ids[i]; i++) {
    int di = rp_disk_index (l->sys, l->disk_ids[i]);
    char node[32], job[32];
    layer_node (l, (unsigned) di, l->layers - 1, node);
    job_name (l, (unsigned) di, job);
    json_array_append_new (actions, rp_qmp_action (
      "blockdev-backup",
      json_pack ("{s:s, s:s, s:s, s:s}", "device", l->sys->disks[di].node,
                 "target", node, "sync", "none", "job-id", job)));
  }
}

int
rp_link_exports (struct rp_link *l, char **err)
{
  for (size_t i = 0; l->disk_ids[i]; i++) {
    int di = rp_disk_index (l->sys, l->disk_ids[i]);
    char node[32], exp[32];
    layer_node (l, (unsigned) di, 0, node);
    rp_export_name_rp (exp, sizeof exp, l->seq, (unsigned) di);
    char *e = NULL;
    /* allocation-depth: what an older reference point reads of this one
     * is only what it holds itself (dataplane/source.h). */
    if (qmp_simple (l->sys, "block-export-add",
                    json_pack ("{s:s, s:s, s:s, s:s, s:b, s:b}", "type",
                               "nbd", "id", exp, "node-name", node, "name",
                               exp, "writable", 0, "allocation-depth", 1),
                    &e) != 0) {
      *err = rp_asprintf ("cannot export the point-in-time disk %s: %s",
                          l->disk_ids[i], e);
      free (e);
      return -1;
    }
  }
  return 0;
}

int
rp_link_jobs_running (struct rp_link *l, json_t *jobs, char **err)
{
  for (size_t i = 0; l->disk_ids[i]; i++) {
    int di = rp_disk_index (l->sys, l->disk_ids[i]);
    char job[32];
    bool running = false;
    if (di >= 0) {
      job_name (l, (unsigned) di, job);
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
      if (err)
        *err = rp_asprintf ("the VM no longer runs the fleecing job of disk "
                            "%s (it was restarted)", l->disk_ids[i]);
      return 0;
    }
  }
  return 1;
}

int
rp_link_move_files (struct rp_link *l, const char *dir, char **err)
{
  struct rp_link to = *l;
  to.dir = (char *) dir;
  for (size_t i = 0; l->disk_ids[i]; i++)
    for (unsigned k = 0; k < l->layers; k++) {
      CLEANUP_FREE char *a = layer_path (l, l->disk_ids[i], k);
      CLEANUP_FREE char *b = layer_path (&to, l->disk_ids[i], k);
      if (rename (a, b) != 0 && errno != ENOENT) {
        *err = rp_asprintf ("cannot move %s to %s: %s", a, b,
                            strerror (errno));
        return -1;
      }
    }
  free (l->dir);
  l->dir = rp_strdup (dir);
  return 0;
}
