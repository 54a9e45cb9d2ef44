/* The libvirt backend's point-in-time data: libvirt's one pull-mode backup
 * job per domain (virDomainBackupBegin), started together with the
 * reference point's checkpoint, read by rpfs over its NBD socket.  The job
 * starts as an incremental backup from the newest older checkpoint rpfs
 * made, so its NBD exports carry libvirt's export bitmap ("backup-vda"):
 * the changes between that reference point and this one, frozen at the
 * job's start.  That is the only differential the job can serve; and only
 * one reference point of a domain can hold data at a time
 * (docs/reference.md, "Where rpfs differs"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lvirt.h"

static void
clear_exports (struct lv_state *s, size_t n)
{
  for (size_t i = 0; s->exp_name && i < n; i++) {
    free (s->exp_name[i]);
    free (s->exp_bitmap[i]);
  }
  free (s->exp_name);
  free (s->exp_bitmap);
  s->exp_name = s->exp_bitmap = NULL;
}

/* Take over the job described by libvirt's XML as the data of checkpoint
 * CP (mu held by the caller). */
static int
take_job (struct rp_system *sys, const struct lv_backupxml *b, const char *cp,
          char **why)
{
  struct lv_state *s = lv_st (sys);
  char **names = rp_calloc (sys->ndisks + 1, sizeof *names);
  char **bitmaps = rp_calloc (sys->ndisks + 1, sizeof *bitmaps);
  for (size_t i = 0; i < sys->ndisks; i++) {
    for (size_t j = 0; j < b->ndisks; j++)
      if (!strcmp (b->disks[j].name, sys->disks[i].id)) {
        names[i] = rp_strdup (b->disks[j].exportname
                              ? b->disks[j].exportname : b->disks[j].name);
        if (b->disks[j].exportbitmap)
          bitmaps[i] = rp_strdup (b->disks[j].exportbitmap);
      }
    if (!names[i]) {
      *why = rp_asprintf ("libvirt's backup job does not export disk %s",
                          sys->disks[i].id);
      s->exp_name = names;
      s->exp_bitmap = bitmaps;
      clear_exports (s, sys->ndisks);
      return -1;
    }
  }
  clear_exports (s, sys->ndisks);
  s->exp_name = names;
  s->exp_bitmap = bitmaps;
  free (s->job_cp);
  free (s->job_base);
  s->job_cp = rp_strdup (cp);
  s->job_base = b->incremental ? rp_strdup (b->incremental) : NULL;
  return 0;
}

/* The running job's XML, if the domain has one: 1 and *B; 0 none; -1. */
static int
job_xml (struct rp_system *sys, struct lv_backupxml *b, char **why)
{
  struct lv_state *s = lv_st (sys);
  char *xml = virDomainBackupGetXMLDesc (s->dom, 0);
  if (!xml) {
    virErrorPtr e = virGetLastError ();
    if (e && e->code == VIR_ERR_NO_DOMAIN_BACKUP)
      return 0;
    *why = rp_lv_error ();
    return -1;
  }
  int r = rp_lvxml_backup (xml, strlen (xml), b, why) == 0 ? 1 : -1;
  free (xml);
  return r;
}

int
rp_lv_job_begin (struct rp_system *sys, struct rp_refpoint *rp,
                 const char *cpxml, const char *incremental,
                 char **base_broken, char **why)
{
  struct lv_state *s = lv_st (sys);
  /* The scratch images live next to the socket, in the directory that
   * belongs to the user libvirt runs QEMU as. */
  char **ids = rp_system_disks (sys);
  char **scratch = rp_calloc (1, sizeof *scratch);
  for (size_t i = 0; i < sys->ndisks; i++) {
    char *p = rp_asprintf ("%s/%s.scratch.qcow2", s->sockdir, ids[i]);
    unlink (p);                 /* an earlier job's, if it left one */
    scratch = rp_strv_push (scratch, p);
    free (p);
  }
  int r = -1;
  for (int attempt = 0; attempt < 2 && r < 0; attempt++) {
    CLEANUP_FREE char *bxml = rp_lvxml_backup_pull (incremental, s->sock, ids,
                                                    scratch, s->others);
    unlink (s->sock);           /* a socket an earlier job left */
    r = virDomainBackupBegin (s->dom, bxml, cpxml, 0);
    virErrorPtr e = r < 0 ? virGetLastError () : NULL;
    if (r < 0 && incremental
        && e && e->code == VIR_ERR_CHECKPOINT_INCONSISTENT) {
      /* The base's bitmap did not survive (a QEMU that was killed): the
       * job begins as a full one; the base is marked broken. */
      *base_broken = rp_lv_error ();
      incremental = NULL;
    }
    else if (r < 0)
      break;
  }
  rp_strv_free (ids);
  rp_strv_free (scratch);
  if (r < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("libvirt refused the backup job that keeps the "
                        "point-in-time data: %s", e);
    return rp_lv_fail_rv (sys);
  }
  struct lv_backupxml b;
  r = job_xml (sys, &b, why);
  if (r == 1) {
    pthread_mutex_lock (&s->mu);
    r = take_job (sys, &b, rp->bitmap, why) == 0 ? 1 : -1;
    pthread_mutex_unlock (&s->mu);
    rp_lvxml_backup_free (&b);
  }
  else if (r == 0)
    *why = rp_strdup ("libvirt's backup job ended as soon as it began");
  if (r != 1) {
    virDomainAbortJob (s->dom);
    return RV_FAILED;
  }
  return RV_OK;
}

/* At attach: the domain's running backup job is the data of checkpoint CP
 * if it serves rpfs's socket.  0 adopted, -1 not (no job, another tool's,
 * or unusable: an unusable one of rpfs's is ended). */
int
rp_lv_job_adopt (struct rp_system *sys, const char *cp)
{
  struct lv_state *s = lv_st (sys);
  struct lv_backupxml b;
  CLEANUP_FREE char *why = NULL;
  int r = job_xml (sys, &b, &why);
  if (r != 1)
    return -1;
  bool ours = b.pull && b.socket && !strcmp (b.socket, s->sock);
  if (ours && cp) {
    pthread_mutex_lock (&s->mu);
    r = take_job (sys, &b, cp, &why);
    pthread_mutex_unlock (&s->mu);
  }
  else
    r = -1;
  if (ours && r != 0) {
    fprintf (stderr, "rpfs: %s: ending the backup job an earlier rpfs left "
             "(%s)\n", sys->name, why ? why : "no reference point holds "
             "its data");
    virDomainAbortJob (s->dom);
  }
  rp_lvxml_backup_free (&b);
  return r == 0 ? 0 : -1;
}

void
rp_lv_job_forget (struct rp_system *sys)
{
  struct lv_state *s = lv_st (sys);
  if (!s->mu_init)
    return;
  pthread_mutex_lock (&s->mu);
  clear_exports (s, sys->ndisks);
  free (s->job_cp);
  free (s->job_base);
  s->job_cp = s->job_base = NULL;
  pthread_mutex_unlock (&s->mu);
}

static bool
holds (struct lv_state *s, struct rp_refpoint *rp)
{
  return s->job_cp && rp && !strcmp (s->job_cp, rp->bitmap);
}

int
rp_lv_drop_data (struct rp_system *sys, struct rp_refpoint *rp)
{
  struct lv_state *s = lv_st (sys);
  pthread_mutex_lock (&s->mu);
  bool mine = holds (s, rp);
  pthread_mutex_unlock (&s->mu);
  if (mine && s->dom && virDomainAbortJob (s->dom) < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    /* A domain that stopped took the job with it. */
    if (virDomainIsActive (s->dom) == 1) {
      fprintf (stderr, "rpfs: %s/%s: libvirt did not end the backup job: "
               "%s\n", sys->name, rp->name, e);
      return -1;
    }
  }
  if (mine)
    rp_lv_job_forget (sys);
  return 0;
}

int
rp_lv_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                     size_t di, struct rp_endpoint *ep, char **err)
{
  struct lv_state *s = lv_st (sys);
  if (rp_lv_offline (sys))
    return rp_lv_off_disk_endpoint (sys, rp, di, ep, err);
  if (!rp) {
    *err = rp_asprintf ("libvirt serves no export of the running disk %s of "
                        "domain %s; read a reference point's disks/%s",
                        sys->disks[di].id, sys->conf->libvirt_domain,
                        sys->disks[di].id);
    return -1;
  }
  int r = 0;
  pthread_mutex_lock (&s->mu);
  if (!holds (s, rp) || !s->exp_name || di >= sys->ndisks) {
    *err = rp_asprintf ("reference point '%s' has no backup job in libvirt",
                        rp->name);
    r = -1;
  }
  else {
    ep->sock = rp_strdup (s->sock);
    ep->name = rp_strdup (s->exp_name[di]);
    ep->bitmap = NULL;
  }
  pthread_mutex_unlock (&s->mu);
  return r;
}

int
rp_lv_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                    struct rp_refpoint *base, size_t di, const char *tag,
                    struct rp_endpoint *ep, char **why)
{
  struct lv_state *s = lv_st (sys);
  (void) tag;
  if (rp_lv_offline (sys))
    return rp_lv_off_changes_open (sys, rp, base, di, ep, why);
  int rv = RV_INVALID_STATE;
  pthread_mutex_lock (&s->mu);
  if (!holds (s, rp) || !s->exp_name || di >= sys->ndisks)
    *why = rp_asprintf ("reference point '%s' has no backup job in libvirt",
                        rp->name);
  else if (!s->job_base || strcmp (s->job_base, base->bitmap)
           || !s->exp_bitmap[di])
    *why = rp_asprintf ("libvirt's backup job of '%s' (one per domain, "
                        "begun with the reference point) holds the changes "
                        "since %s only; a differential from '%s' is not "
                        "possible: export '%s' in full%s", rp->name,
                        s->job_base ? "the reference point before it"
                        : "nothing (there was none before it)", base->name,
                        rp->name, s->job_base ? ", or from the reference "
                        "point just before it" : "");
  else {
    ep->sock = rp_strdup (s->sock);
    ep->name = rp_strdup (s->exp_name[di]);
    ep->bitmap = rp_strdup (s->exp_bitmap[di]);
    rv = RV_OK;
  }
  pthread_mutex_unlock (&s->mu);
  return rv;
}
