/* Systems that are libvirt domains ("libvirt-domain = NAME"): served
 * through libvirt's own C API, never behind its back.  This file fills
 * struct rp_backend_libvirt (backend.h):
 *
 *   attach     open the connection (libvirt-uri, default qemu:///system),
 *              look the domain up, take its disks from the live XML
 *              (lvxml.c: qcow2 file or block disks; the target names are
 *              the disk ids), watch its lifecycle (lvevents.c)
 *   create     a libvirt checkpoint named like every rpfs tracking
 *              (rpfs-SEQ-UUID, so `virsh checkpoint-list` shows exactly the
 *              reference points); log based: created by the pull-mode backup
 *              job that keeps the point-in-time data (lvjob.c)
 *   destroy    virDomainCheckpointDelete (libvirt keeps the other
 *              checkpoints' bitmaps exact)
 *   freeze     virDomainFSFreeze / virDomainFSThaw (the guest agent)
 *
 * A shut-off domain is served from its disk images (lvoffline.c): its
 * checkpoints are made and removed on the images and redefined in libvirt,
 * so reference points stay valid bases across starts and stops.  The
 * lifecycle events (lvevents.c) make the next request attach again in the
 * other mode. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lvirt.h"
#include "proc.h"

#define DEFAULT_URI RP_LIBVIRT_DEFAULT_URI

static const char *
uri (struct rp_system *sys)
{
  return sys->conf->libvirt_uri ? sys->conf->libvirt_uri : DEFAULT_URI;
}

int
rp_lv_fail_rv (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  int active = s->dom ? virDomainIsActive (s->dom) : -1;
  return active == (rp_lv_offline (sys) ? 0 : 1) ? RV_FAILED
    : RV_NOT_AVAILABLE;
}

bool
rp_lv_offline (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init)
    return false;
  pthread_mutex_lock (&s->mu);
  bool off = s->offline;
  pthread_mutex_unlock (&s->mu);
  return off;
}

static char *
lv_what (struct rp_system *sys)
{
  return rp_asprintf ("the libvirt domain %s (%s)",
                      sys->conf->libvirt_domain, uri (sys));
}

static void
lv_detach (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  rp_lv_unwatch (sys);
  rp_lv_job_forget (sys);
  if (s->mu_init) {
    pthread_mutex_lock (&s->mu);
    s->offline = false;
    pthread_mutex_unlock (&s->mu);
    pthread_mutex_lock (&s->cmu);
  }
  if (s->dom)
    virDomainFree (s->dom);
  if (s->conn)
    virConnectClose (s->conn);
  s->dom = NULL;
  s->conn = NULL;
  free (s->sockdir);
  free (s->sock);
  s->sockdir = s->sock = NULL;
  if (s->mu_init)
    pthread_mutex_unlock (&s->cmu);
  rp_strv_free (s->others);
  s->others = NULL;
}

/* ---- disks ---- */

/* The disks rpfs tracks: the first attach takes them from the domain;
 * disk lines, and every later attach, must match them. */
static int
set_disks (struct rp_system *sys, const struct lv_domxml *x, char **err)
{
  struct rp_disk *v = rp_calloc (x->ndisks + 1, sizeof *v);
  size_t n = 0;
  CLEANUP_FREE char *skipped = rp_strdup ("");
  for (size_t i = 0; i < x->ndisks; i++) {
    const struct lv_disk *d = &x->disks[i];
    if (d->skip) {
      char *t = rp_asprintf ("%s%s%s (%s)", skipped, *skipped ? ", " : "",
                             d->target ? d->target : "?", d->skip);
      free (skipped);
      skipped = t;
      continue;
    }
    v[n].id = rp_strdup (d->target);
    v[n].path = rp_strdup (d->path);
    v[n].line = 0;
    n++;
  }
  int r = 0;
  if (n == 0) {
    *err = rp_asprintf ("%s: libvirt domain %s has no qcow2 disk rpfs can "
                        "track%s%s", sys->conf_path, sys->conf->libvirt_domain,
                        *skipped ? "; skipped: " : "", skipped);
    r = -1;
  }
  else if (*skipped)
    fprintf (stderr, "rpfs: %s: disks of domain %s left out: %s\n",
             sys->name, sys->conf->libvirt_domain, skipped);
  /* Disk lines (or the disks of an earlier attach) must be these. */
  for (size_t i = 0; r == 0 && i < sys->ndisks; i++) {
    struct rp_disk *d = &sys->disks[i];
    bool ok = i < n && !strcmp (d->id, v[i].id)
      && rp_same_file (d->path, v[i].path);
    if (!ok || sys->ndisks != n) {
      *err = rp_asprintf ("%s:%d: disk %s (%s) is not the domain's %s disk: "
                          "libvirt domain %s has %s%s%s", sys->conf_path,
                          d->line, d->id, d->path, i < n ? "matching" : "next",
                          sys->conf->libvirt_domain, i < n ? v[i].id : "no",
                          i < n ? " = " : " more disks", i < n ? v[i].path : "");
      r = d->line ? -1 : -2;
    }
  }
  if (r == 0 && sys->ndisks == 0) {
    free (sys->disks);          /* the empty list of system.c */
    sys->disks = v;             /* first attach: before the mount serves */
    sys->ndisks = n;
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    free (v[i].id);
    free (v[i].path);
  }
  free (v);
  return r;
}

/* The disks' sizes, and the writable disks rpfs leaves out of its
 * checkpoints and backup jobs. */
static int
disk_facts (struct rp_system *sys, const struct lv_domxml *x, char **err)
{
  struct lv_state *s = lv_st (sys);
  for (size_t i = 0; i < sys->ndisks; i++) {
    virDomainBlockInfo info;
    if (s->offline) {
      if (rp_lv_off_size (sys, i, &sys->disks[i].size, err) != 0)
        return -1;
      continue;
    }
    if (virDomainGetBlockInfo (s->dom, sys->disks[i].id, &info, 0) < 0) {
      CLEANUP_FREE char *e = rp_lv_error ();
      *err = rp_asprintf ("disk %s of domain %s: %s", sys->disks[i].id,
                          sys->conf->libvirt_domain, e);
      return -1;
    }
    sys->disks[i].size = info.capacity;
  }
  rp_strv_free (s->others);
  s->others = rp_calloc (1, sizeof *s->others);
  for (size_t i = 0; i < x->ndisks; i++)
    if (x->disks[i].skip && x->disks[i].writable && x->disks[i].target)
      s->others = rp_strv_push (s->others, x->disks[i].target);
  s->agent = x->agent;
  return 0;
}

/* The directory of the backup job's NBD socket: libvirt's QEMU creates the
 * socket, so the directory belongs to the user QEMU runs as (the DAC label
 * of the live XML: "+64055:+64055" or "libvirt-qemu:libvirt-qemu"). */
static int
socket_dir (struct rp_system *sys, const char *label, char **err)
{
  struct lv_state *s = lv_st (sys);
  if (!s->sockdir) {
    s->sockdir = rp_asprintf ("%s/run/lv%u", sys->core->store, sys->index);
    s->sock = rp_asprintf ("%s/nbd.sock", s->sockdir);
  }
  if (mkdir (s->sockdir, 0700) != 0 && errno != EEXIST) {
    *err = rp_asprintf ("%s: %s", s->sockdir, strerror (errno));
    return -1;
  }
  uid_t uid = 0;
  gid_t gid = 0;
  if (label) {
    CLEANUP_FREE char *u = rp_strdup (label);
    char *g = strchr (u, ':');
    if (g)
      *g++ = 0;
    struct passwd *pw = u[0] == '+' ? NULL : getpwnam (u);
    struct group *gr = !g || g[0] == '+' ? NULL : getgrnam (g);
    uid = u[0] == '+' ? (uid_t) strtoul (u + 1, NULL, 10)
      : pw ? pw->pw_uid : 0;
    gid = g && g[0] == '+' ? (gid_t) strtoul (g + 1, NULL, 10)
      : gr ? gr->gr_gid : 0;
  }
  if (chown (s->sockdir, uid, gid) != 0) {
    *err = rp_asprintf ("%s: chown: %s", s->sockdir, strerror (errno));
    return -1;
  }
  return 0;
}

static int
open_domain (struct rp_system *sys, char **err)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init) {
    pthread_mutex_init (&s->mu, NULL);
    pthread_mutex_init (&s->cmu, NULL);
    s->mu_init = true;
  }
  if (rp_lv_init (err) != 0)
    return -2;
  s->conn = virConnectOpen (uri (sys));
  if (!s->conn) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("cannot connect to libvirt at %s: %s", uri (sys), e);
    return -2;
  }
  s->dom = virDomainLookupByName (s->conn, sys->conf->libvirt_domain);
  if (!s->dom) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("libvirt domain %s (%s): %s",
                        sys->conf->libvirt_domain, uri (sys), e);
    return -2;
  }
  int active = virDomainIsActive (s->dom);
  if (active < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("libvirt domain %s: %s", sys->conf->libvirt_domain,
                        e);
    return -2;
  }
  pthread_mutex_lock (&s->mu);
  s->offline = active == 0;
  pthread_mutex_unlock (&s->mu);
  s->domid = active ? virDomainGetID (s->dom) : 0;
  return 0;
}

static int
lv_attach (struct rp_system *sys, char **err)
{
  struct lv_state *s = lv_st (sys);
  int r = open_domain (sys, err);
  char *xml = r == 0 ? virDomainGetXMLDesc (s->dom, 0) : NULL;
  if (r == 0 && !xml) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("domain %s: %s", sys->conf->libvirt_domain, e);
    r = -2;
  }
  struct lv_domxml x = { 0 };
  if (r == 0 && rp_lvxml_domain (xml, strlen (xml), &x, err) != 0)
    r = -2;
  free (xml);
  if (r == 0)
    r = set_disks (sys, &x, err);
  if (r == 0 && (disk_facts (sys, &x, err) != 0
                 || (!s->offline && socket_dir (sys, x.dac_label, err) != 0)
                 || rp_lv_watch (sys, err) != 0))
    r = -2;
  rp_lvxml_domain_free (&x);
  if (r != 0) {
    lv_detach (sys);
    return r;
  }
  free (sys->qemu_version);
  unsigned long v = 0;
  sys->qemu_version = virConnectGetVersion (s->conn, &v) == 0
    ? rp_asprintf ("%lu.%lu.%lu (libvirt)", v / 1000000, v / 1000 % 1000,
                   v % 1000) : NULL;
  sys->generation++;
  if (s->offline)
    fprintf (stderr, "rpfs: %s: domain %s is shut off: served from its disk "
             "images until it starts\n", sys->name,
             sys->conf->libvirt_domain);
  return 0;
}

/* ---- the tracking check ---- */

/* The names of the domain's checkpoints (NULL-terminated), or NULL. */
static char **
checkpoints (struct rp_system *sys, char **err)
{
  virDomainCheckpointPtr *cps = NULL;
  int n = virDomainListAllCheckpoints (lv_st (sys)->dom, &cps, 0);
  if (n < 0) {
    *err = rp_lv_error ();
    return NULL;
  }
  char **v = rp_calloc (1, sizeof *v);
  for (int i = 0; i < n; i++) {
    v = rp_strv_push (v, virDomainCheckpointGetName (cps[i]));
    virDomainCheckpointFree (cps[i]);
  }
  free (cps);
  return v;
}

static bool
in (char *const *v, const char *s)
{
  for (size_t i = 0; v && v[i]; i++)
    if (!strcmp (v[i], s))
      return true;
  return false;
}

/* Every record against libvirt's checkpoints: a missing one is lost
 * tracking.  Point-in-time data is the domain's backup job: adopted if it
 * is rpfs's (the domain ran on while rpfs was away), else dropped; while
 * the domain is off, it is the images, kept if nothing has written them
 * since the reference point (its bitmap says so, lvatrest.c). */
static int
lv_check_tracking (struct rp_system *sys)
{
  CLEANUP_FREE char *e = NULL;
  char **cps = checkpoints (sys, &e);
  if (!cps) {
    fprintf (stderr, "rpfs: %s: cannot list the checkpoints: %s\n",
             sys->name, e);
    return -2;
  }
  size_t n;
  struct rp_refpoint **rps = rp_system_hold_rps (sys, &n);
  bool adopted = false;
  if (rp_lv_offline (sys))      /* a QEMU killed leaves them in-use */
    rp_lv_off_check_bitmaps (sys, rps, n);
  for (size_t k = 0; k < n; k++) {
    struct rp_refpoint *rp = rps[k];
    if (!in (cps, rp->bitmap)) {
      CLEANUP_FREE char *why = rp_asprintf ("libvirt has no checkpoint %s "
                                            "any more", rp->bitmap);
      rp_refpoint_set_broken (rp, why);
    }
    pthread_mutex_lock (&sys->core->lock);
    bool had = rp->has_data;
    pthread_mutex_unlock (&sys->core->lock);
    if (!had)
      continue;
    bool off = rp_lv_offline (sys);
    CLEANUP_FREE char *why = NULL;
    int keep = off ? rp_lv_off_keeps_data (sys, rp, &why) : 0;
    bool ok = off ? keep != 0
      : !adopted && rp_lv_job_adopt (sys, rp->bitmap) == 0;
    adopted |= ok && !off;
    if (!ok)
      fprintf (stderr, "rpfs: %s/%s: point-in-time data dropped: %s\n",
               sys->name, rp->name, off ? why : "no backup job of rpfs's "
               "holds it (the domain stopped, or started after it was kept "
               "on the shut-off domain's images)");
    else if (keep < 0)
      fprintf (stderr, "rpfs: %s/%s: point-in-time data kept unchecked: "
               "%s; every read checks the images again\n", sys->name,
               rp->name, why);
    else
      fprintf (stderr, "rpfs: %s/%s: point-in-time data kept: %s\n",
               sys->name, rp->name, off ? "the shut-off domain's images are "
               "as they were at the reference point" : "the backup job an "
               "earlier rpfs began still runs, and is taken over");
    pthread_mutex_lock (&sys->core->lock);
    rp->has_data = ok;
    rp_refpoint_save (rp);
    pthread_mutex_unlock (&sys->core->lock);
  }
  if (!adopted && !rp_lv_offline (sys))
    rp_lv_job_adopt (sys, NULL);     /* ends a job of rpfs's no one holds */
  rp_release_rps (rps, n);
  rp_strv_free (cps);
  return 0;
}

/* ---- liveness ---- */

static bool
lv_alive (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init)
    return false;
  pthread_mutex_lock (&s->cmu);
  bool r = s->conn && s->dom && virConnectIsAlive (s->conn) == 1
    && !(s->watch && atomic_load (&s->watch->gone));
  pthread_mutex_unlock (&s->cmu);
  return r;
}

/* Still the same running domain (not stopped, not started again), or still
 * shut off? */
static bool
same_domain (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init)
    return false;
  bool off = rp_lv_offline (sys);
  pthread_mutex_lock (&s->cmu);
  virDomainPtr d = s->conn ? virDomainLookupByName (
    s->conn, sys->conf->libvirt_domain) : NULL;
  int active = d ? virDomainIsActive (d) : -1;
  bool same = off ? active == 0
    : active == 1 && virDomainGetID (d) == s->domid;
  pthread_mutex_unlock (&s->cmu);
  if (d)
    virDomainFree (d);
  return same;
}

static int
lv_revive (struct rp_system *sys)
{
  if (lv_alive (sys) && same_domain (sys))
    return 0;
  if (lv_st (sys)->conn)
    fprintf (stderr, "rpfs: %s: domain %s %s; attaching again\n", sys->name,
             sys->conf->libvirt_domain, rp_lv_offline (sys) ? "started"
             : "stopped or restarted");
  lv_detach (sys);
  return 1;
}

/* Also after a failed read: the QEMU serving the backup job may be gone
 * before libvirt has noticed (its event comes a moment later). */
static int
lv_ping (struct rp_system *sys, char **err)
{
  struct lv_state *s = lv_st (sys);
  if (!lv_alive (sys) || !same_domain (sys)) {
    *err = rp_asprintf ("libvirt domain %s %s", sys->conf->libvirt_domain,
                        rp_lv_offline (sys) ? "started: its disks are "
                        "QEMU's now" : "is not running");
    return -1;
  }
  if (rp_lv_offline (sys))
    return 0;                   /* no job, no socket */
  pthread_mutex_lock (&s->mu);
  bool job = s->job_cp != NULL;
  pthread_mutex_unlock (&s->mu);
  pthread_mutex_lock (&s->cmu);
  CLEANUP_FREE char *sock = job && s->sock ? rp_strdup (s->sock) : NULL;
  pthread_mutex_unlock (&s->cmu);
  int fd = sock ? rp_unix_connect (sock) : -2;
  if (fd == -1) {
    *err = rp_asprintf ("the NBD server of domain %s's backup job is gone "
                        "(%s): the domain stopped", sys->conf->libvirt_domain,
                        strerror (errno));
    return -1;
  }
  if (fd >= 0)
    close (fd);
  return 0;
}

/* ---- application consistency ---- */

static bool
lv_freezable (struct rp_system *sys)
{
  return lv_st (sys)->agent || rp_lv_offline (sys);
}

/* As for a qmp system (agent.c): a guest that cannot be frozen now (no
 * agent answering, a hook that refuses) is 32770, which
 * consistency-fallback = crash may turn into a crash-consistent
 * reference point. */
static int
lv_freeze (struct rp_system *sys, void **token, char **why)
{
  static int frozen;
  struct lv_state *s = lv_st (sys);
  if (rp_lv_offline (sys))
    return RV_OK;               /* shut off: the disks are at rest */
  if (virDomainFSFreeze (s->dom, NULL, 0, 0) >= 0) {
    *token = &frozen;
    return RV_OK;
  }
  CLEANUP_FREE char *m = rp_lv_error ();
  *why = rp_asprintf ("the guest could not be frozen (libvirt: %s)", m);
  return virDomainIsActive (s->dom) == 1 ? RV_NOT_SUPPORTED
    : RV_NOT_AVAILABLE;
}

static void
lv_thaw (struct rp_system *sys, void *token)
{
  if (!token)
    return;
  for (int attempt = 0; attempt < 3; attempt++) {
    if (virDomainFSThaw (lv_st (sys)->dom, NULL, 0, 0) >= 0)
      return;
    CLEANUP_FREE char *e = rp_lv_error ();
    fprintf (stderr, "rpfs: %s: thaw failed (%s)%s\n", sys->name, e,
             attempt < 2 ? "; trying again" : "; the guest may stay frozen");
    usleep (200000);
  }
}

const struct rp_backend rp_backend_libvirt = {
  .name = "libvirt",
  .state_size = sizeof (struct lv_state),
  .what = lv_what,
  /* no check: the disks are libvirt's, checked at attach */
  .start = lv_attach,
  .check_tracking = lv_check_tracking,
  .stop = lv_detach,
  .alive = lv_alive,
  .revive = lv_revive,
  .ping = lv_ping,
  /* no timed_out: libvirt bounds its own calls */
  /* no disks_writable: the guest owns the disks */
  .freezable = lv_freezable,
  .freeze = lv_freeze,
  .thaw = lv_thaw,
  .create = rp_lv_create,
  .destroy = rp_lv_destroy,
  .drop_data = rp_lv_drop_data,
  .disk_endpoint = rp_lv_disk_endpoint,
  .changes_open = rp_lv_changes_open,
  /* no changes_close: the job's export stays until its data is dropped */
  .has_tracking = rp_lv_has_tracking,
  .imported = rp_lv_imported,
  /* no io_stats: export pacing by the guest is the qmp backend's */
};
