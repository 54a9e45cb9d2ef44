/* A system's qemu-storage-daemon: start, supervise, stop.
 *
 * The block graph of a system with disks d0..dN:
 *   d<i>          qcow2 format node of disk i (read-write)
 *   cur.<i>       NBD export of d<i> (the mount's disks/<id>), created first
 *                 so that fleecing filters appended later sit above it and
 *                 see its writes
 *   f<seq>_<i>    fleecing scratch of reference point SEQ, backing d<i>,
 *                 filled by backup job fj<seq>_<i> (sync=none)
 *   rp.<seq>.<i>  NBD export of f<seq>_<i> (the point-in-time disk)
 * QMP runs on one end of a socketpair and the NBD server on a listening
 * socket that rpfs binds itself, so nothing waits for a socket file.
 * This file fills struct rp_backend_qsd (backend.h): start, stop, liveness
 * and the image check are its own; the graph operations are the QEMU
 * family's (qemu.c, tracking.c), shared with a running VM (vm.c).  There
 * is no guest, so no freeze: the disks are at rest. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"
#include "proc.h"

/* sys->bstate */
struct qsd_state {
  pid_t pid;                    /* 0: not running */
};

static struct qsd_state *
st (struct rp_system *sys)
{
  return sys->bstate;
}

static void qsd_stop (struct rp_system *sys);
static void stop_daemon (struct rp_system *sys, bool guards);

int
rp_qmp_timeout_ms (void)
{
  static int ms;                /* 0: not read yet */
  if (ms == 0) {
    const char *v = getenv ("RPFS_QMP_TIMEOUT_MS");
    char *end;
    long l = v ? strtol (v, &end, 10) : 0;
    ms = v && *v && !*end && l >= 100 && l <= 3600000 ? (int) l : 60000;
  }
  return ms;
}

/* After QEMU had to be killed: say which tracking it takes with it.  The
 * tracking check at the next start marks the reference points (missing or
 * in-use bitmaps: ChangeTracking lost, with the reason) and drops their
 * point-in-time data. */
static void
report_killed (struct rp_system *sys, const char *why)
{
  pthread_mutex_lock (&sys->core->lock);
  size_t n = 0, nd = 0;
  for (size_t k = 0; k < sys->nrps; k++) {
    n += !sys->rps[k]->broken;
    nd += sys->rps[k]->has_data;
  }
  fprintf (stderr, "rpfs: %s: qemu-storage-daemon had to be killed (%s): "
           "its persistent bitmaps were not written, so the change tracking "
           "of %zu reference point(s) is lost and the point-in-time data of "
           "%zu is dropped at the next start%s", sys->name, why, n, nd,
           n ? ":" : "\n");
  for (size_t k = 0; k < sys->nrps; k++)
    if (!sys->rps[k]->broken)
      fprintf (stderr, " %s", sys->rps[k]->name);
  if (n)
    fputc ('\n', stderr);
  pthread_mutex_unlock (&sys->core->lock);
}

/* Stop a daemon whose monitor cannot be used (dead connection, or stuck):
 * SIGTERM, which qemu-storage-daemon handles as a clean shutdown (images
 * closed, bitmaps written), then SIGKILL only if it has not exited within
 * the grace period. */
static void
stop_unanswering (struct rp_system *sys, const char *why)
{
  if (st (sys)->pid <= 0)
    return;
  if (kill (-st (sys)->pid, SIGTERM) < 0)
    kill (st (sys)->pid, SIGTERM);
  int r = rp_proc_stop (st (sys)->pid, RP_QEMU_GRACE_MS / 2);
  if (r == 2)
    report_killed (sys, why);
  else
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon (%s) stopped cleanly "
             "on SIGTERM; change tracking kept\n", sys->name, why);
  st (sys)->pid = 0;
}

static char *
qsd_what (struct rp_system *sys)
{
  return rp_asprintf ("the qemu-storage-daemon of %s", sys->name);
}

static bool
qsd_alive (struct rp_system *sys)
{
  return sys->qmp && rp_qmp_alive (sys->qmp) && st (sys)->pid > 0
    && rp_proc_alive (st (sys)->pid);
}

static int
add_disk (struct rp_system *sys, unsigned i, char **err)
{
  struct rp_disk *d = &sys->disks[i];
  char *e = NULL;
  json_t *args = json_pack ("{s:s, s:s, s:s, s:{s:s, s:s}}",
                            "driver", "qcow2", "node-name", d->node,
                            "discard", "unmap",
                            "file", "driver", "file", "filename", d->path);
  if (rp_qmp_cmd (sys->qmp, "blockdev-add", args, NULL, &e) != 0) {
    /* Another process has the image open for writing (a VM running on
     * it, qemu-img): not the definition's fault, and it may pass.  The
     * system is listed and each call tries again (32777 until then). */
    bool locked = e && strstr (e, "Failed to get") && strstr (e, "lock");
    *err = locked
      ? rp_asprintf ("disk %s (%s) is in use by another process (%s); "
                     "trying again at the next request", d->id, d->path, e)
      : rp_asprintf ("%s:%d: disk %s (%s): %s", sys->conf_path, d->line,
                     d->id, d->path, e);
    free (e);
    return locked ? -2 : -1;
  }
  char name[32];
  rp_export_name_cur (name, sizeof name, i);
  args = json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", name,
                    "node-name", d->node, "name", name,
                    "writable", 1);
  if (rp_qmp_cmd (sys->qmp, "block-export-add", args, NULL, &e) != 0) {
    *err = rp_asprintf ("disk %s: cannot export it over NBD: %s", d->id, e);
    free (e);
    return -1;
  }
  return 0;
}

static int
qsd_start (struct rp_system *sys, char **err)
{
  int sv[2] = { -1, -1 };
  int lfd = -1;
  CLEANUP_FREE char *chardev = NULL, *nbd = NULL;

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    *err = rp_asprintf ("socketpair: %s", strerror (errno));
    return -1;
  }
  lfd = rp_unix_listen (sys->nbd_path);
  if (lfd < 0) {
    *err = rp_asprintf ("%s: cannot listen: %s", sys->nbd_path,
                        strerror (errno));
    goto fail;
  }
  chardev = rp_asprintf ("socket,id=qmp,fd=%d", sv[1]);
  nbd = rp_asprintf ("addr.type=fd,addr.str=%d", lfd);
  char *argv[] = { "qemu-storage-daemon", "--chardev", chardev,
                   "--monitor", "chardev=qmp", "--nbd-server", nbd, NULL };
  int keep[] = { sv[1], lfd };
  pid_t pid = rp_proc_spawn (argv, keep, 2, -1, sys->log_path);
  if (pid < 0) {
    *err = rp_asprintf ("cannot start qemu-storage-daemon: %s",
                        strerror (errno));
    goto fail;
  }
  close (sv[1]);
  sv[1] = -1;
  close (lfd);
  lfd = -1;
  st (sys)->pid = pid;
  char *e = NULL;
  sys->qmp = rp_qmp_open (sv[0], RP_QMP_TIMEOUT_MS, &e);
  sv[0] = -1;                   /* owned by rp_qmp now, or closed */
  if (!sys->qmp) {
    *err = rp_asprintf ("qemu-storage-daemon did not answer on QMP: %s "
                        "(see %s)", e, sys->log_path);
    free (e);
    stop_daemon (sys, false);
    return -1;
  }
  rp_qemu_read_version (sys);
  for (unsigned i = 0; i < sys->ndisks; i++) {
    int r = add_disk (sys, i, err);
    if (r != 0) {
      stop_daemon (sys, false);   /* nothing was tracked yet */
      return r;
    }
  }
  sys->generation++;
  return 0;       /* then the tracking check (qsd_check_tracking) */

 fail:
  if (sv[0] >= 0) close (sv[0]);
  if (sv[1] >= 0) close (sv[1]);
  if (lfd >= 0) close (lfd);
  return -1;
}

/* The guard bitmap proves at the next start that nothing wrote the disks
 * while rpfs was away, so the fleecing data kept in the scratch images is
 * still the point-in-time content (rp_qemu_check_tracking). */
static void
add_guards (struct rp_system *sys)
{
  for (unsigned i = 0; i < sys->ndisks; i++) {
    char *e = NULL;
    rp_qmp_cmd (sys->qmp, "block-dirty-bitmap-remove",
                json_pack ("{s:s, s:s}", "node", sys->disks[i].node,
                           "name", RP_GUARD_BITMAP), NULL, &e);
    free (e);
    e = NULL;
    if (rp_qmp_cmd (sys->qmp, "block-dirty-bitmap-add",
                    json_pack ("{s:s, s:s, s:b}", "node", sys->disks[i].node,
                               "name", RP_GUARD_BITMAP, "persistent", 1),
                    NULL, &e) != 0)
      fprintf (stderr, "rpfs: %s: disk %s: cannot add the guard bitmap (%s); "
               "point-in-time data will not survive this stop\n", sys->name,
               sys->disks[i].id, e);
    free (e);
  }
}

/* A clean stop keeps the tracking: the guards (GUARDS: the disks were
 * all added), then "quit". */
static void
stop_daemon (struct rp_system *sys, bool guards)
{
  if (sys->qmp && rp_qmp_alive (sys->qmp)
      && rp_qmp_timeouts (sys->qmp) < RP_QMP_STUCK) {
    char *e = NULL;
    if (guards)
      add_guards (sys);
    /* "quit" closes every image, which writes persistent bitmaps. */
    rp_qmp_cmd (sys->qmp, "quit", NULL, NULL, &e);
    free (e);
  }
  if (st (sys)->pid > 0) {
    /* quit asked (or not possible): RP_QEMU_GRACE_MS to exit, then SIGTERM
     * (a clean shutdown too), then SIGKILL. */
    if (rp_proc_stop (st (sys)->pid, RP_QEMU_GRACE_MS / 2) == 2)
      report_killed (sys, "it ignored quit and SIGTERM");
    st (sys)->pid = 0;
  }
  if (sys->qmp) {
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
  }
  rp_chain_forget (sys);        /* its nodes are gone with it */
}

static void
qsd_stop (struct rp_system *sys)
{
  stop_daemon (sys, true);
}

/* Before an operation: a daemon that died is reaped, one that answered
 * none of several commands in a row is stopped (SIGTERM first); either way
 * the generic layer starts a new one (1). */
static int
qsd_revive (struct rp_system *sys)
{
  bool stuck = sys->qmp && rp_qmp_alive (sys->qmp)
    && rp_qmp_timeouts (sys->qmp) >= RP_QMP_STUCK;
  if (!stuck && qsd_alive (sys))
    return 0;
  if (stuck) {
    /* Slow is not dead: each command that timed out failed its operation
     * alone.  Only a QEMU that answered none of several commands in a row
     * is replaced, and it is asked to shut down cleanly first. */
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon answered none of the "
             "last %d commands within %d ms; stopping it (SIGTERM first)\n",
             sys->name, rp_qmp_timeouts (sys->qmp), RP_QMP_TIMEOUT_MS);
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
    stop_unanswering (sys, "it did not answer QMP");
    return 1;
  }
  if (st (sys)->pid > 0 || sys->qmp) {
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon died; restarting it\n",
             sys->name);
    if (sys->qmp) {
      rp_qmp_close (sys->qmp);
      sys->qmp = NULL;
    }
    if (st (sys)->pid > 0 && rp_proc_alive (st (sys)->pid))
      stop_unanswering (sys, "its monitor connection broke");
    else if (st (sys)->pid > 0)
      rp_proc_stop (st (sys)->pid, 0);   /* reap it */
    st (sys)->pid = 0;
  }
  return 1;
}

static int
qsd_check_tracking (struct rp_system *sys)
{
  /* Point-in-time data survives a clean stop: re-attached if the guards
   * say nothing wrote the disks meanwhile. */
  return rp_qemu_check_tracking (sys, false) == 0 ? 0 : -1;
}

static bool
qsd_disks_writable (struct rp_system *sys)
{
  (void) sys;
  return true;                  /* nothing else uses the disks */
}

/* Persistent tracking needs qcow2 v3: say so before QEMU is involved.
 * (The disks of a running VM are checked in that VM instead: vm.c.) */
static int
qsd_check_images (struct rp_system *sys, char **err)
{
  for (size_t i = 0; i < sys->ndisks; i++) {
    struct rp_disk *d = &sys->disks[i];
    CLEANUP_FREE char *out = NULL, *errs = NULL;
    char *argv[] = { "qemu-img", "info", "--output=json", "-U", d->path,
                     NULL };
    if (rp_proc_run (argv, NULL, &out, &errs) != 0) {
      if (errs)
        errs[strcspn (errs, "\n")] = 0;
      *err = rp_asprintf ("%s:%d: disk %s: %s", sys->conf_path, d->line,
                          d->id, errs && *errs ? errs : "qemu-img info failed");
      return -1;
    }
    json_error_t je;
    json_t *info = json_loads (out, 0, &je);
    const char *fmt = json_string_value (json_object_get (info, "format"));
    const char *compat = json_string_value (json_object_get (
      json_object_get (json_object_get (info, "format-specific"), "data"),
      "compat"));
    d->size = json_integer_value (json_object_get (info, "virtual-size"));
    int r = 0;
    if (!fmt || strcmp (fmt, "qcow2") != 0) {
      *err = rp_asprintf (
        "%s:%d: disk %s: %s is a %s image; change tracking needs qcow2: "
        "convert it (qemu-img convert -O qcow2), or keep the data raw "
        "behind a qcow2 metadata image with data_file (see 'Raw images' "
        "in docs/configuration.md: a plain qemu-img create -o data_file= "
        "of an existing raw file would zero it)",
        sys->conf_path, d->line, d->id, d->path, fmt ? fmt : "unknown");
      r = -1;
    }
    else if (compat && strcmp (compat, "0.10") == 0) {
      *err = rp_asprintf ("%s:%d: disk %s: %s is qcow2 version 2 (compat "
                          "0.10), which cannot hold persistent bitmaps; "
                          "upgrade it with qemu-img amend -o compat=1.1",
                          sys->conf_path, d->line, d->id, d->path);
      r = -1;
    }
    json_decref (info);
    if (r)
      return r;
  }
  return 0;
}

const struct rp_backend rp_backend_qsd = {
  .name = "qemu-storage-daemon",
  .state_size = sizeof (struct qsd_state),
  .read_max = 2u << 20,         /* its malloc is tuned (proc.c) */
  .what = qsd_what,
  .check = qsd_check_images,
  .start = qsd_start,
  .check_tracking = qsd_check_tracking,
  .stop = qsd_stop,
  .alive = qsd_alive,
  .revive = qsd_revive,
  .ping = rp_qemu_ping,
  .timed_out = rp_qemu_timed_out,
  .disks_writable = qsd_disks_writable,
  /* no freeze: offline disks are at rest */
  .create = rp_qemu_create,
  .destroy = rp_qemu_destroy,
  .drop_data = rp_qemu_drop_data,
  .disk_endpoint = rp_qemu_disk_endpoint,
  .changes_open = rp_qemu_changes_open,
  .changes_close = rp_qemu_changes_close,
  .has_tracking = rp_qemu_has_tracking,
  /* no io_stats: no guest to pace an export by */
};
