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
 * A system with "qmp = SOCKET" has no daemon: the rp_qsd_* functions hand
 * it to vm.c, and the same graph (with the VM's own node names for the
 * disks) lives in the VM's QEMU. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"
#include "proc.h"


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
  if (sys->qsd_pid <= 0)
    return;
  if (kill (-sys->qsd_pid, SIGTERM) < 0)
    kill (sys->qsd_pid, SIGTERM);
  int r = rp_proc_stop (sys->qsd_pid, RP_QEMU_GRACE_MS / 2);
  if (r == 2)
    report_killed (sys, why);
  else
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon (%s) stopped cleanly "
             "on SIGTERM; change tracking kept\n", sys->name, why);
  sys->qsd_pid = 0;
}

char *
rp_qemu_what (struct rp_system *sys)
{
  return sys->conf->qmp ? rp_asprintf ("the VM of %s", sys->name)
    : rp_asprintf ("the qemu-storage-daemon of %s", sys->name);
}

bool
rp_qsd_alive (struct rp_system *sys)
{
  if (sys->conf->qmp)
    return sys->qmp && rp_qmp_alive (sys->qmp);
  return sys->qmp && rp_qmp_alive (sys->qmp) && sys->qsd_pid > 0
    && rp_proc_alive (sys->qsd_pid);
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
    *err = rp_asprintf ("%s:%d: disk %s (%s): %s", sys->conf_path, d->line,
                        d->id, d->path, e);
    free (e);
    return -1;
  }
  char name[32];
  rp_export_name_cur (name, sizeof name, i);
  args = json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", name,
                    "node-name", d->node, "name", name,
                    "writable", rp_system_disks_writable (sys));
  if (rp_qmp_cmd (sys->qmp, "block-export-add", args, NULL, &e) != 0) {
    *err = rp_asprintf ("disk %s: cannot export it over NBD: %s", d->id, e);
    free (e);
    return -1;
  }
  return 0;
}

int
rp_qsd_start (struct rp_system *sys, char **err)
{
  if (sys->conf->qmp)
    return rp_vm_attach (sys, err);
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
  sys->qsd_pid = pid;
  char *e = NULL;
  sys->qmp = rp_qmp_open (sv[0], RP_QMP_TIMEOUT_MS, &e);
  sv[0] = -1;                   /* owned by rp_qmp now, or closed */
  if (!sys->qmp) {
    *err = rp_asprintf ("qemu-storage-daemon did not answer on QMP: %s "
                        "(see %s)", e, sys->log_path);
    free (e);
    rp_qsd_stop (sys);
    return -1;
  }
  rp_qemu_read_version (sys);
  for (unsigned i = 0; i < sys->ndisks; i++)
    if (add_disk (sys, i, err) != 0) {
      rp_qsd_stop (sys);
      return -1;
    }
  sys->generation++;
  if (rp_refpoint_check_tracking (sys) != 0) {
    *err = rp_asprintf ("cannot check change tracking of system %s",
                        sys->name);
    rp_qsd_stop (sys);
    return -1;
  }
  return 0;

 fail:
  if (sv[0] >= 0) close (sv[0]);
  if (sv[1] >= 0) close (sv[1]);
  if (lfd >= 0) close (lfd);
  return -1;
}

/* The guard bitmap proves at the next start that nothing wrote the disks
 * while rpfs was away, so the fleecing data kept in the scratch images is
 * still the point-in-time content (rp_refpoint_check_tracking). */
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

void
rp_qsd_stop (struct rp_system *sys)
{
  if (sys->conf->qmp) {
    rp_vm_detach (sys);         /* the VM is the user's: it keeps running */
    return;
  }
  if (sys->qmp && rp_qmp_alive (sys->qmp)
      && rp_qmp_timeouts (sys->qmp) < RP_QMP_STUCK) {
    char *e = NULL;
    add_guards (sys);
    /* "quit" closes every image, which writes persistent bitmaps. */
    rp_qmp_cmd (sys->qmp, "quit", NULL, NULL, &e);
    free (e);
  }
  if (sys->qsd_pid > 0) {
    /* quit asked (or not possible): RP_QEMU_GRACE_MS to exit, then SIGTERM
     * (a clean shutdown too), then SIGKILL. */
    if (rp_proc_stop (sys->qsd_pid, RP_QEMU_GRACE_MS / 2) == 2)
      report_killed (sys, "it ignored quit and SIGTERM");
    sys->qsd_pid = 0;
  }
  if (sys->qmp) {
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
  }
}

/* After an I/O error: is QEMU still there?  Its monitor closing can lag
 * behind the NBD connections by a moment when it is killed, so ask it. */
bool
rp_qsd_answers (struct rp_system *sys)
{
  if (!rp_qsd_alive (sys))
    return false;
  char *e = NULL;
  int r = rp_qmp_cmd (sys->qmp, "query-version", NULL, NULL, &e);
  free (e);
  return r == 0 && rp_qsd_alive (sys);
}

int
rp_qsd_ensure (struct rp_system *sys, char **err)
{
  bool stuck = sys->qmp && rp_qmp_alive (sys->qmp)
    && rp_qmp_timeouts (sys->qmp) >= RP_QMP_STUCK;
  if (!stuck && rp_qsd_alive (sys))
    return 0;
  if (stuck && !sys->conf->qmp) {
    /* Slow is not dead: each command that timed out failed its operation
     * alone.  Only a QEMU that answered none of several commands in a row
     * is replaced, and it is asked to shut down cleanly first. */
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon answered none of the "
             "last %d commands within %d ms; stopping it (SIGTERM first)\n",
             sys->name, rp_qmp_timeouts (sys->qmp), RP_QMP_TIMEOUT_MS);
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
    stop_unanswering (sys, "it did not answer QMP");
    return rp_qsd_start (sys, err);
  }
  if (stuck)                    /* a VM is the user's: never stopped */
    return 0;
  if (sys->conf->qmp && sys->qmp) {
    fprintf (stderr, "rpfs: %s: the VM's QEMU went away; attaching again\n",
             sys->name);
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
  }
  else if (sys->qsd_pid > 0 || sys->qmp) {
    fprintf (stderr, "rpfs: %s: qemu-storage-daemon died; restarting it\n",
             sys->name);
    if (sys->qmp) {
      rp_qmp_close (sys->qmp);
      sys->qmp = NULL;
    }
    if (sys->qsd_pid > 0 && rp_proc_alive (sys->qsd_pid))
      stop_unanswering (sys, "its monitor connection broke");
    else if (sys->qsd_pid > 0)
      rp_proc_stop (sys->qsd_pid, 0);   /* reap it */
    sys->qsd_pid = 0;
  }
  return rp_qsd_start (sys, err);
}

/* rp_qsd_ensure for a method: RV_OK, or RV_NOT_AVAILABLE with *WHY. */
int
rp_qsd_require (struct rp_system *sys, char **why)
{
  char *e = NULL;
  if (rp_qsd_ensure (sys, &e) != 0) {
    *why = rp_asprintf ("QEMU is not available: %s", e);
    free (e);
    return RV_NOT_AVAILABLE;
  }
  /* A round trip before the operation changes anything: a QEMU that is
   * slow (its main loop busy) fails the operation with 32772 and leaves
   * everything as it was. */
  if (rp_qmp_cmd (sys->qmp, "query-version", NULL, NULL, &e) == -3) {
    *why = rp_asprintf ("Timeout: %s; nothing was changed", e);
    free (e);
    return RV_TIMEOUT;
  }
  free (e);
  return RV_OK;
}

int
rp_qsd_timeout_rv (struct rp_system *sys, int rv, char **why)
{
  if (rv == RV_OK || rv == RV_TIMEOUT || !sys->qmp
      || rp_qmp_timeouts (sys->qmp) == 0)
    return rv;
  rp_bitmaps_invalidate (sys);
  char *d = rp_asprintf ("Timeout: QEMU did not answer in time (%s); the "
                         "operation stopped there", *why ? *why : "");
  free (*why);
  *why = d;
  return RV_TIMEOUT;
}
