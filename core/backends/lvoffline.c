/* A shut-off libvirt domain, served from its disk images
 * (docs/design.md, "Shut-off domains").  libvirt 9 neither creates nor
 * deletes a checkpoint of an inactive domain ("Operation not supported"),
 * and a backup job needs a running QEMU, so while the domain is off rpfs
 * does what libvirt does at run time, the way libvirt's own documentation
 * says it may be done outside it (kbase "Internals of incremental backup
 * handling in qemu"), and keeps libvirt's metadata in step:
 *
 *   create     `qemu-img bitmap --add` of a recording bitmap named like the
 *              checkpoint on every tracked disk's top image, then the
 *              checkpoint is redefined in libvirt (virsh checkpoint-list
 *              shows it; a later backup job of the running domain takes it
 *              as its <incremental> base)
 *   destroy    `qemu-img bitmap --remove`, then the checkpoint's metadata
 *   data       the images themselves: nothing writes them while the domain
 *              is off; the domain starting again drops it (libvirt.c)
 *   exports    one read-only `qemu-nbd` per reader (socket activated in
 *              STORE/run/lv<N>-off/, root's own, with
 *              qemu:allocation-depth, and for a differential the base's
 *              bitmap, which has recorded every write since the base), ended
 *              when the reader lets go of the endpoint
 *
 * Nothing holds an image between requests: a `virsh start` succeeds unless
 * an export or an open disk file reads the disks at that moment (QEMU's
 * image locking then refuses the start, and says so). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imginfo.h"
#include "lvirt.h"
#include "proc.h"

#define GRANULARITY "65536"     /* libvirt's and QEMU's default */

/* The first line of a tool's message (E may be NULL). */
static const char *
first_line (char *e, const char *dflt)
{
  if (!e || !*e)
    return dflt;
  e[strcspn (e, "\n")] = 0;
  return e;
}

/* ---- the images ---- */

/* `qemu-img info` of disk DI's top image (imginfo.h reads it); NULL with
 * *err. */
static char *
image_info (struct rp_system *sys, size_t di, char **err)
{
  char *argv[] = { "qemu-img", "info", "--output=json", "-f", "qcow2",
                   sys->disks[di].path, NULL };
  char *out = NULL;
  CLEANUP_FREE char *e = NULL;
  if (rp_proc_run (argv, NULL, &out, &e) == 0 && out)
    return out;
  free (out);
  *err = rp_asprintf ("qemu-img info %s: %s", sys->disks[di].path,
                      first_line (e, "failed"));
  return NULL;
}

int
rp_lv_off_size (struct rp_system *sys, size_t di, uint64_t *size,
                char **err)
{
  CLEANUP_FREE char *text = image_info (sys, di, err);
  CLEANUP_FREE char *e = NULL;
  if (!text)
    return -1;
  if (rp_imginfo_size (text, strlen (text), size, &e) == 0)
    return 0;
  *err = rp_asprintf ("qemu-img info %s: %s", sys->disks[di].path, e);
  return -1;
}

/* Bitmap NAME on disk DI: 1 usable; 0 not, *why says why; -1 cannot
 * tell, *why. */
int
rp_lv_off_bitmap (struct rp_system *sys, size_t di, const char *name,
                  char **why)
{
  CLEANUP_FREE char *text = image_info (sys, di, why);
  if (!text)
    return -1;
  const char *state = rp_imginfo_bitmap (text, strlen (text), name);
  if (state)
    *why = rp_strdup (state);
  return state ? 0 : 1;
}

void
rp_lv_off_check_bitmaps (struct rp_system *sys, struct rp_refpoint **rps,
                         size_t n)
{
  for (size_t di = 0; di < sys->ndisks; di++) {
    CLEANUP_FREE char *e = NULL;
    CLEANUP_FREE char *text = image_info (sys, di, &e);
    if (!text) {
      fprintf (stderr, "rpfs: %s: cannot check the change tracking: %s\n",
               sys->name, e);
      continue;
    }
    for (size_t k = 0; k < n; k++) {
      const char *state = rp_strv_contains (rps[k]->disk_ids,
                                            sys->disks[di].id)
        ? rp_imginfo_bitmap (text, strlen (text), rps[k]->bitmap) : NULL;
      if (!state)
        continue;
      CLEANUP_FREE char *why = rp_asprintf (
        "the change tracking bitmap on disk %s is %s%s", sys->disks[di].id,
        state, strcmp (state, RP_IMGINFO_MISSING) ? ""
        : " (QEMU was stopped without writing it)");
      rp_refpoint_set_broken (rps[k], why);
    }
  }
}

/* qemu-img bitmap OP on disk DI: RV_OK, or an RV with *why.  RV_IN_USE
 * while one of rpfs's readers (an export, an open disks/<id>) holds the
 * image: its read-only qemu-nbd lets no one write. */
static int
bitmap_op (struct rp_system *sys, size_t di, const char *op,
           const char *name, char **why)
{
  char *argv[] = { "qemu-img", "bitmap", (char *) op, "-g", GRANULARITY,
                   "-f", "qcow2", sys->disks[di].path, (char *) name, NULL };
  if (strcmp (op, "--add") != 0)
    memmove (&argv[3], &argv[5], 5 * sizeof *argv);     /* no -g */
  CLEANUP_FREE char *e = NULL;
  if (rp_proc_run (argv, NULL, NULL, &e) == 0)
    return RV_OK;
  int rv = rp_lv_fail_rv (sys);
  bool locked = e && strstr (e, "lock");
  if (locked && rv == RV_FAILED) {
    *why = rp_asprintf ("disk %s of the shut-off domain is being read (an "
                        "export, or an open disks/%s): its image is locked "
                        "until that ends (qemu-img: %s)", sys->disks[di].id,
                        sys->disks[di].id, first_line (e, "locked"));
    return RV_IN_USE;
  }
  *why = rp_asprintf ("qemu-img bitmap %s %s on disk %s (%s): %s", op, name,
                      sys->disks[di].id, sys->disks[di].path,
                      first_line (e, "failed"));
  return rv;
}

/* ---- checkpoints ---- */

int
rp_lv_off_create (struct rp_system *sys, struct rp_refpoint *rp,
                  const char *desc, char **why)
{
  struct lv_state *s = lv_st (sys);
  size_t i;
  int rv = RV_OK;
  for (i = 0; i < sys->ndisks; i++)
    if ((rv = bitmap_op (sys, i, "--add", rp->bitmap, why)) != RV_OK)
      break;
  char **ids = rp_system_disks (sys);
  CLEANUP_FREE char *xml = i == sys->ndisks
    ? rp_lvxml_checkpoint_redefine (rp->bitmap, desc, (long long) rp->created,
                                    ids, s->others) : NULL;
  rp_strv_free (ids);
  virDomainCheckpointPtr cp = xml ? virDomainCheckpointCreateXML (
    s->dom, xml, VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE) : NULL;
  if (cp) {
    virDomainCheckpointFree (cp);
    return RV_OK;
  }
  if (xml) {
    rv = rp_lv_fail_rv (sys);
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("libvirt refused the checkpoint of the shut-off "
                        "domain: %s", e);
  }
  while (i-- > 0) {             /* nothing left behind */
    CLEANUP_FREE char *e = NULL;
    if (bitmap_op (sys, i, "--remove", rp->bitmap, &e) != RV_OK)
      fprintf (stderr, "rpfs: %s: %s\n", sys->name, e);
  }
  return rv;
}

int
rp_lv_off_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                   char **why)
{
  for (size_t i = 0; i < sys->ndisks; i++) {
    CLEANUP_FREE char *state = NULL;
    int has = rp_lv_off_bitmap (sys, i, rp->bitmap, &state);
    if (has < 0) {
      *why = state;
      state = NULL;
      return rp_lv_fail_rv (sys);
    }
    int rv = has || strcmp (state, RP_IMGINFO_MISSING)
      ? bitmap_op (sys, i, "--remove", rp->bitmap, why) : RV_OK;
    if (rv != RV_OK)
      return rv;
  }
  virDomainCheckpointPtr cp =
    virDomainCheckpointLookupByName (lv_st (sys)->dom, rp->bitmap, 0);
  if (!cp)
    return RV_OK;               /* libvirt had none (any more) */
  int r = virDomainCheckpointDelete (
    cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
  virDomainCheckpointFree (cp);
  if (r < 0) {
    CLEANUP_FREE char *m = rp_lv_error ();
    *why = rp_asprintf ("libvirt refused to forget checkpoint %s: %s",
                        rp->bitmap, m);
    return RV_FAILED;
  }
  return RV_OK;
}

/* Import: the checkpoint libvirt lost is redefined.  Every disk's bitmap
 * was found usable before (has_tracking, lvpoints.c: libvirt validates
 * only for a running domain). */
int
rp_lv_off_imported (struct rp_system *sys, struct rp_refpoint *rp,
                    const char *desc, char **why)
{
  CLEANUP_FREE char *xml = rp_lvxml_checkpoint_redefine (
    rp->bitmap, desc, (long long) rp->created, rp->disk_ids,
    lv_st (sys)->others);
  virDomainCheckpointPtr cp = virDomainCheckpointCreateXML (
    lv_st (sys)->dom, xml, VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE);
  if (!cp) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *why = rp_asprintf ("libvirt cannot redefine checkpoint %s: %s",
                        rp->bitmap, e);
    return RV_FAILED;
  }
  virDomainCheckpointFree (cp);
  fprintf (stderr, "rpfs: %s/%s: checkpoint %s redefined in libvirt (the "
           "domain is shut off)\n", sys->name, rp->name, rp->bitmap);
  return RV_OK;
}

/* ---- readers ---- */

struct off_server {
  pid_t pid;
  char *sock;
};

static void
server_stop (void *pin)
{
  struct off_server *o = pin;
  if (o->pid > 0) {
    kill (o->pid, SIGTERM);
    rp_proc_stop (o->pid, 2000);
  }
  unlink (o->sock);
  free (o->sock);
  free (o);
}

/* A read-only qemu-nbd of disk DI for one reader, released with the
 * endpoint.  It exposes BITMAP as the endpoint's changes and CHECK, the
 * bitmap that says whether the images are still at a reference point
 * (either may be NULL). */
static int
serve (struct rp_system *sys, size_t di, const char *bitmap,
       const char *check, struct rp_endpoint *ep, char **err)
{
  static atomic_uint counter;
  /* Not the backup job's directory, which belongs to the user libvirt
   * runs QEMU as: these sockets are rpfs's own. */
  CLEANUP_FREE char *dir = rp_asprintf ("%s/run/lv%u-off", sys->core->store,
                                        sys->index);
  if (mkdir (dir, 0700) != 0 && errno != EEXIST) {
    *err = rp_asprintf ("%s: %s", dir, strerror (errno));
    return -1;
  }
  struct off_server *o = rp_calloc (1, sizeof *o);
  o->sock = rp_asprintf ("%s/off%u.sock", dir, atomic_fetch_add (&counter, 1));
  CLEANUP_FREE char *bm = bitmap ? rp_asprintf ("--bitmap=%s", bitmap) : NULL;
  CLEANUP_FREE char *ck = check ? rp_asprintf ("--bitmap=%s", check) : NULL;
  char *argv[10] = { "qemu-nbd", "--read-only", "--persistent", "--shared=0",
                     "--allocation-depth", "--format=qcow2" };
  size_t n = 6;
  if (bm)
    argv[n++] = bm;
  if (ck)
    argv[n++] = ck;
  argv[n] = sys->disks[di].path;
  int lfd = rp_unix_listen (o->sock);
  o->pid = lfd < 0 ? -1 : rp_proc_spawn (argv, NULL, 0, lfd, NULL);
  int e = errno;
  if (lfd >= 0)
    close (lfd);
  if (o->pid < 0) {
    *err = rp_asprintf ("cannot serve disk %s (%s) with qemu-nbd: %s",
                        sys->disks[di].id, sys->disks[di].path, strerror (e));
    server_stop (o);
    return -1;
  }
  ep->sock = rp_strdup (o->sock);
  ep->name = rp_strdup ("");
  ep->bitmap = bitmap ? rp_strdup (bitmap) : NULL;
  ep->unpin = server_stop;
  ep->pin = o;
  return 0;
}

/* ---- whether the images are still at a reference point (lvatrest.c) ---- */

static void
lose_data (struct rp_system *sys, struct rp_refpoint *rp, const char *why)
{
  fprintf (stderr, "rpfs: %s/%s: point-in-time data dropped: %s\n",
           sys->name, rp->name, why);
  pthread_mutex_lock (&sys->core->lock);
  rp->has_data = false;
  rp_refpoint_save (rp);
  pthread_mutex_unlock (&sys->core->lock);
}

/* 1 if nothing has written disk DI since RP (RP's bitmap, which the
 * qemu-nbd at SOCK exposes, marks nothing); 0 if something has, or RP's
 * bitmap cannot tell any more; -1 if it could not be read (*why each
 * time). */
static int
still_at (struct rp_system *sys, struct rp_refpoint *rp, size_t di,
          const char *sock, char **why)
{
  CLEANUP_FREE char *e = NULL;
  int64_t n = rp_lv_off_marked (sock, rp->bitmap, &e);
  if (n == 0)
    return 1;
  if (n > 0) {
    *why = rp_asprintf ("disk %s was written after the reference point was "
                        "made (its bitmap %s marks %" PRId64 " bytes): the "
                        "images no longer hold its point in time",
                        sys->disks[di].id, rp->bitmap, n);
    return 0;
  }
  CLEANUP_FREE char *state = NULL;
  if (rp_lv_off_bitmap (sys, di, rp->bitmap, &state) == 0) {
    *why = rp_asprintf ("the change tracking of disk %s since the reference "
                        "point is %s: the images cannot be shown to hold its "
                        "point in time", sys->disks[di].id, state);
    return 0;
  }
  *why = rp_asprintf ("disk %s: %s", sys->disks[di].id, e);
  return -1;
}

/* Checked on the reader's own qemu-nbd, which exposes RP's bitmap and keeps
 * writers out until it ends: what was checked is what is read.  A disk
 * that changed drops RP's data. */
static bool
at_rest (struct rp_system *sys, struct rp_refpoint *rp, size_t di,
         const char *sock, char **why)
{
  int r = still_at (sys, rp, di, sock, why);
  if (r == 0)
    lose_data (sys, rp, *why);
  return r == 1;
}

int
rp_lv_off_keeps_data (struct rp_system *sys, struct rp_refpoint *rp,
                      char **why)
{
  int kept = 1;
  for (size_t di = 0; di < sys->ndisks; di++) {
    if (!rp_strv_contains (rp->disk_ids, sys->disks[di].id))
      continue;
    struct rp_endpoint ep = { 0 };
    CLEANUP_FREE char *e = NULL;
    int r = serve (sys, di, NULL, rp->bitmap, &ep, &e) == 0
      ? still_at (sys, rp, di, ep.sock, &e) : -1;
    rp_endpoint_clear (&ep);
    if (r <= 0 && (r == 0 || kept == 1)) {   /* the first reason */
      free (*why);
      *why = e;
      e = NULL;
    }
    if (r == 0)                 /* written, or the bitmap cannot tell */
      return 0;
    if (r < 0)                  /* could not look: every reader checks */
      kept = -1;
  }
  return kept;
}

/* ---- exports ---- */

int
rp_lv_off_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                         size_t di, struct rp_endpoint *ep, char **err)
{
  if (serve (sys, di, NULL, rp ? rp->bitmap : NULL, ep, err) != 0)
    return -1;
  if (!rp || at_rest (sys, rp, di, ep->sock, err))
    return 0;
  rp_endpoint_clear (ep);
  return -1;
}

/* The base's bitmap has recorded every write since the base, and nothing
 * has written the images since RP (checked: RP's bitmap marks nothing): a
 * superset of the changes between them, as changes_open asks. */
int
rp_lv_off_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                        struct rp_refpoint *base, size_t di,
                        struct rp_endpoint *ep, char **why)
{
  CLEANUP_FREE char *state = NULL;
  int has = rp_lv_off_bitmap (sys, di, base->bitmap, &state);
  if (has != 1) {
    *why = has < 0 ? state
      : rp_asprintf ("disk %s: the change tracking since '%s' (bitmap %s) "
                     "is %s", sys->disks[di].id, base->name, base->bitmap,
                     state);
    if (has < 0)
      state = NULL;             /* *why took it */
    return has < 0 ? rp_lv_fail_rv (sys) : RV_INVALID_STATE;
  }
  if (serve (sys, di, base->bitmap, rp->bitmap, ep, why) != 0)
    return RV_FAILED;
  if (at_rest (sys, rp, di, ep->sock, why))
    return RV_OK;
  rp_endpoint_clear (ep);
  return rp_refpoint_has_data (rp) ? RV_FAILED : RV_INVALID_STATE;
}
