/* Systems whose disks a running VM owns ("qmp = SOCKET" in the definition):
 * attach to that QEMU's monitor and use its block layer, instead of
 * starting a qemu-storage-daemon (qsd.c).
 *
 * What rpfs adds to the VM, and when:
 *   attach   an NBD server on STORE/run/N.nbd and read-only exports cur.<i>
 *            of the disks' format nodes (the mount's disks/<id>)
 *   create   bitmaps, fleecing nodes f<seq>_<i> and backup jobs fj<seq>_<i>
 *            (tracking.c), exports rp.<seq>.<i>
 *   detach   removes the exports and the NBD server; the bitmaps and the
 *            fleecing (the reference points' data) stay in the VM, and the
 *            next attach adopts the fleecing whose backup jobs still run.
 * rpfs never writes a disk of a running VM itself.  This file fills
 * struct rp_backend_vm (backend.h): attach and detach are its own, freeze
 * and thaw go to the guest agent (agent.c), the graph operations are the
 * QEMU family's (qemu.c, tracking.c).  All functions run with
 * sys->op_lock held. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"
#include "proc.h"

/* sys->bstate */
struct vm_state {
  bool nbd;                     /* rpfs started the VM's NBD server */
};

static struct vm_state *
st (struct rp_system *sys)
{
  return sys->bstate;
}

static void vm_detach (struct rp_system *sys);

#define GREETING_MS 5000

static bool
has_prefix (const char *s, const char *p)
{
  return s && strncmp (s, p, strlen (p)) == 0;
}

/* The node of QUERY-NAMED-BLOCK-NODES called NAME, else the node attached
 * to the device (query-block) whose drive id or qdev id ("-device ...,id=")
 * is NAME. */
static json_t *
find_node (json_t *nodes, json_t *blocks, const char *name)
{
  size_t i;
  json_t *n, *b;
  const char *want = name;
  json_array_foreach (blocks, i, b) {
    const char *dev = json_string_value (json_object_get (b, "device"));
    const char *qdev = json_string_value (json_object_get (b, "qdev"));
    CLEANUP_FREE char *path = rp_asprintf ("/machine/peripheral/%s/", name);
    if ((dev && !strcmp (dev, name)) || (qdev && !strcmp (qdev, name))
        || has_prefix (qdev, path))
      want = json_string_value (json_object_get (
               json_object_get (b, "inserted"), "node-name")) ?: name;
  }
  json_array_foreach (nodes, i, n)
    if (!strcmp (json_string_value (json_object_get (n, "node-name")) ?: "",
                 name))
      return n;
  json_t *top = NULL;
  json_array_foreach (nodes, i, n)
    if (!strcmp (json_string_value (json_object_get (n, "node-name")) ?: "",
                 want))
      top = n;
  /* A device may sit on a filter (throttle, or the copy-before-write of a
   * backup job): filters report their child's file name, so the qcow2 node
   * of the same file is the one under it. */
  const char *file = json_string_value (json_object_get (top, "file"));
  if (top && file
      && strcmp (json_string_value (json_object_get (top, "drv")) ?: "",
                 "qcow2"))
    json_array_foreach (nodes, i, n)
      if (!strcmp (json_string_value (json_object_get (n, "drv")) ?: "",
                   "qcow2")
          && !strcmp (json_string_value (json_object_get (n, "file")) ?: "",
                      file))
        return n;
  return top;
}

/* Check every disk's node in the VM and take its size.  -1 with *err
 * naming the definition's line. */
static int
resolve_disks (struct rp_system *sys, char **err)
{
  json_t *nodes = NULL, *blocks = NULL;
  char *e = NULL;
  int r = -1;
  if (rp_qmp_cmd (sys->qmp, "query-named-block-nodes",
                  json_pack ("{s:b}", "flat", 1), &nodes, &e) != 0
      || rp_qmp_cmd (sys->qmp, "query-block", NULL, &blocks, &e) != 0) {
    *err = rp_asprintf ("QEMU of system %s: %s", sys->name, e);
    free (e);
    goto out;
  }
  for (size_t i = 0; i < sys->ndisks; i++) {
    struct rp_disk *d = &sys->disks[i];
    const char *want = sys->conf->disks[i].node;
    json_t *n = find_node (nodes, blocks, want);
    const char *where = sys->conf_path;
    if (!n) {
      *err = rp_asprintf ("%s:%d: disk %s: the VM has no block node or "
                          "device '%s' (query-named-block-nodes lists the "
                          "node names)", where, d->line, d->id, want);
      goto out;
    }
    const char *name = json_string_value (json_object_get (n, "node-name"));
    const char *drv = json_string_value (json_object_get (n, "drv")) ?: "?";
    const char *file = json_string_value (json_object_get (n, "file")) ?: "";
    json_t *image = json_object_get (n, "image");
    const char *compat = json_string_value (json_object_get (json_object_get (
      json_object_get (image, "format-specific"), "data"), "compat"));
    if (strcmp (drv, "qcow2") != 0) {
      *err = rp_asprintf ("%s:%d: disk %s: node '%s' in the VM is a %s node; "
                          "change tracking needs the qcow2 format node of "
                          "the disk", where, d->line, d->id, name, drv);
      goto out;
    }
    if (compat && !strcmp (compat, "0.10")) {
      *err = rp_asprintf ("%s:%d: disk %s: %s is qcow2 version 2 (compat "
                          "0.10), which cannot hold persistent bitmaps",
                          where, d->line, d->id, file);
      goto out;
    }
    if (json_is_true (json_object_get (n, "ro"))) {
      *err = rp_asprintf ("%s:%d: disk %s: node '%s' is read-only in the VM; "
                          "change tracking needs a read-write disk", where,
                          d->line, d->id, name);
      goto out;
    }
    if (!has_prefix (file, "json:") && !rp_same_file (file, d->path)) {
      *err = rp_asprintf ("%s:%d: disk %s: node '%s' in the VM is the image "
                          "%s, not %s", where, d->line, d->id, name, file,
                          d->path);
      goto out;
    }
    snprintf (d->node, sizeof d->node, "%s", name);
    d->size = json_integer_value (json_object_get (image, "virtual-size"));
  }
  r = 0;
 out:
  json_decref (nodes);
  json_decref (blocks);
  return r;
}

void
rp_qemu_read_version (struct rp_system *sys)
{
  json_t *v = NULL;
  char *e = NULL;
  free (sys->qemu_version);
  sys->qemu_version = NULL;
  if (rp_qmp_cmd (sys->qmp, "query-version", NULL, &v, &e) == 0) {
    json_t *q = json_object_get (v, "qemu");
    const char *pkg = json_string_value (json_object_get (v, "package"));
    sys->qemu_version = rp_asprintf (
      "%lld.%lld.%lld%s%s",
      (long long) json_integer_value (json_object_get (q, "major")),
      (long long) json_integer_value (json_object_get (q, "minor")),
      (long long) json_integer_value (json_object_get (q, "micro")),
      pkg && *pkg ? " " : "", pkg ? pkg : "");
  }
  free (e);
  json_decref (v);
}

/* Exports an earlier rpfs left behind (it died without detaching). */
static void
drop_stale_exports (struct rp_system *sys)
{
  json_t *v = NULL;
  char *e = NULL;
  if (rp_qmp_cmd (sys->qmp, "query-block-exports", NULL, &v, &e) != 0) {
    free (e);
    return;
  }
  size_t i;
  json_t *x;
  json_array_foreach (v, i, x) {
    const char *id = json_string_value (json_object_get (x, "id"));
    if (has_prefix (id, "cur.") || has_prefix (id, "rp.")
        || has_prefix (id, "job.")) {
      rp_qmp_cmd (sys->qmp, "block-export-del",
                  json_pack ("{s:s, s:s}", "id", id, "mode", "hard"), NULL,
                  &e);
      free (e);
      e = NULL;
    }
  }
  json_decref (v);
}

static int
start_nbd (struct rp_system *sys, char **err)
{
  char *e = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (rp_qmp_cmd (sys->qmp, "nbd-server-start",
                    json_pack ("{s:{s:s, s:{s:s}}}", "addr", "type", "unix",
                               "data", "path", sys->nbd_path), NULL, &e) == 0) {
      st (sys)->nbd = true;
      return 0;
    }
    struct stat st;
    bool ours = lstat (sys->nbd_path, &st) == 0 && S_ISSOCK (st.st_mode);
    if (attempt == 0 && e && strstr (e, "already running") && ours) {
      free (e);                 /* ours, from an rpfs that died: restart it */
      e = NULL;
      rp_qmp_cmd (sys->qmp, "nbd-server-stop", NULL, NULL, &e);
      free (e);
      e = NULL;
      continue;
    }
    break;
  }
  *err = rp_asprintf ("QEMU of system %s cannot serve NBD on %s: %s%s",
                      sys->name, sys->nbd_path, e,
                      e && strstr (e, "already running")
                      ? " (the VM already runs an NBD server of another "
                        "tool; QEMU allows one)" : "");
  free (e);
  return -1;
}

static int
vm_attach (struct rp_system *sys, char **err)
{
  const char *path = sys->conf->qmp;
  int fd = rp_unix_connect (path);
  if (fd < 0) {
    *err = rp_asprintf ("the VM of system %s is not running or not "
                        "reachable: cannot connect to its QMP socket %s: %s",
                        sys->name, path, strerror (errno));
    return -2;
  }
  /* QEMU accepts a second client on a monitor but talks to one at a time. */
  struct pollfd p = { .fd = fd, .events = POLLIN };
  if (poll (&p, 1, GREETING_MS) != 1) {
    close (fd);
    *err = rp_asprintf ("QEMU of system %s accepted the connection on %s but "
                        "sent no QMP greeting within %d s: another client is "
                        "probably using that monitor (give rpfs a -qmp "
                        "socket of its own)", sys->name, path,
                        GREETING_MS / 1000);
    return -2;
  }
  char *e = NULL;
  sys->qmp = rp_qmp_open (fd, RP_QMP_TIMEOUT_MS, &e);
  if (!sys->qmp) {
    *err = rp_asprintf ("QMP socket %s of system %s: %s", path, sys->name, e);
    free (e);
    return -2;
  }
  rp_qemu_read_version (sys);
  int r = resolve_disks (sys, err);
  if (r == 0) {
    drop_stale_exports (sys);
    r = start_nbd (sys, err) == 0 ? 0 : -2;
  }
  for (size_t i = 0; r == 0 && i < sys->ndisks; i++) {
    char name[32];
    rp_export_name_cur (name, sizeof name, (unsigned) i);
    if (rp_qmp_cmd (sys->qmp, "block-export-add",
                    json_pack ("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd",
                               "id", name, "node-name", sys->disks[i].node,
                               "name", name, "writable", 0), NULL, &e) != 0) {
      *err = rp_asprintf ("disk %s: cannot export it over NBD: %s",
                          sys->disks[i].id, e);
      free (e);
      r = -2;
    }
  }
  if (r != 0) {
    vm_detach (sys);
    return r;
  }
  rp_agent_recover (sys);
  sys->generation++;
  return 0;       /* then the tracking check (vm_check_tracking) */
}

/* Leave the VM as it was but for the reference points' bitmaps and
 * fleecing: drop the exports and the NBD server, close the monitor. */
static void
vm_detach (struct rp_system *sys)
{
  if (sys->qmp && rp_qmp_alive (sys->qmp)) {
    drop_stale_exports (sys);
    char *e = NULL;
    if (st (sys)->nbd)            /* never another tool's server */
      rp_qmp_cmd (sys->qmp, "nbd-server-stop", NULL, NULL, &e);
    free (e);
  }
  st (sys)->nbd = false;
  if (sys->qmp) {
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
  }
  rp_chain_forget (sys);        /* looked at again when attached */
}

static char *
vm_what (struct rp_system *sys)
{
  return rp_asprintf ("the VM of %s", sys->name);
}

static bool
vm_alive (struct rp_system *sys)
{
  return sys->qmp && rp_qmp_alive (sys->qmp);
}

/* A VM is the user's: a slow one is never replaced (0); one whose monitor
 * went away is attached again (1). */
static int
vm_revive (struct rp_system *sys)
{
  bool stuck = sys->qmp && rp_qmp_alive (sys->qmp)
    && rp_qmp_timeouts (sys->qmp) >= RP_QMP_STUCK;
  if (stuck || vm_alive (sys))
    return 0;
  if (sys->qmp) {
    fprintf (stderr, "rpfs: %s: the VM's QEMU went away; attaching again\n",
             sys->name);
    rp_qmp_close (sys->qmp);
    sys->qmp = NULL;
  }
  return 1;
}

static int
vm_check_tracking (struct rp_system *sys)
{
  /* The VM kept the fleecing while rpfs was away: adopted if its backup
   * jobs still run.  A failure is "not reachable now", as for attach. */
  return rp_qemu_check_tracking (sys, true) == 0 ? 0 : -2;
}

static bool
vm_freezable (struct rp_system *sys)
{
  return sys->conf->agent != NULL;
}

static int
vm_freeze (struct rp_system *sys, void **token, char **why)
{
  struct rp_agent *a = NULL;
  int rv = rp_agent_freeze (sys, &a, why);
  *token = a;
  return rv;
}

static void
vm_thaw (struct rp_system *sys, void *token)
{
  rp_agent_thaw (sys, token);
}

/* The VM's own node names at creation go into the record (QemuNode). */
static int
vm_create (struct rp_system *sys, struct rp_refpoint *rp, char **note,
           char **why)
{
  for (size_t i = 0; i < sys->ndisks; i++) {
    CLEANUP_FREE char *dn = rp_asprintf ("%s=%s", sys->disks[i].id,
                                         sys->disks[i].node);
    rp->qemu_nodes = rp_strv_push (rp->qemu_nodes, dn);
  }
  return rp_qemu_create (sys, rp, note, why);
}

const struct rp_backend rp_backend_vm = {
  .name = "vm",
  .state_size = sizeof (struct vm_state),
  .what = vm_what,
  /* no check: the disks are checked in the VM at attach */
  .start = vm_attach,
  .check_tracking = vm_check_tracking,
  .stop = vm_detach,
  .alive = vm_alive,
  .revive = vm_revive,
  .ping = rp_qemu_ping,
  .timed_out = rp_qemu_timed_out,
  /* no disks_writable: the guest owns the disks, the mount reads them */
  .freezable = vm_freezable,
  .freeze = vm_freeze,
  .thaw = vm_thaw,
  .create = vm_create,
  .destroy = rp_qemu_destroy,
  .drop_data = rp_qemu_drop_data,
  .disk_endpoint = rp_qemu_disk_endpoint,
  .changes_open = rp_qemu_changes_open,
  .changes_close = rp_qemu_changes_close,
  .has_tracking = rp_qemu_has_tracking,
  .io_stats = rp_qemu_io_stats,
};
