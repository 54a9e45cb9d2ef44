/* The generic backend layer: the one place that picks a system's backend,
 * and the wrappers through which the rest of the core reaches it
 * (backend.h).  A backend that lacks an operation leaves it NULL; the
 * wrapper gives the documented default or one clear RV_NOT_SUPPORTED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void
rp_endpoint_clear (struct rp_endpoint *ep)
{
  free (ep->sock);
  free (ep->name);
  free (ep->bitmap);
  ep->sock = ep->name = ep->bitmap = NULL;
  rp_strv_free (ep->below);
  ep->below = NULL;
  if (ep->unpin)
    ep->unpin (ep->pin);
  ep->unpin = NULL;
  ep->pin = NULL;
}

const struct rp_backend *
rp_backend_for (const struct rp_conf *conf)
{
  /* "libvirt-domain = NAME": libvirt's API; "qmp = SOCKET": a running
   * VM owns the disks; else rpfs's own storage daemon. */
  if (conf->libvirt_domain)
    return &rp_backend_libvirt;
  return conf->qmp ? &rp_backend_vm : &rp_backend_qsd;
}

void
rp_backend_bind (struct rp_system *sys)
{
  sys->backend = rp_backend_for (sys->conf);
  sys->bstate = sys->backend->state_size
    ? rp_calloc (1, sys->backend->state_size) : NULL;
}

void
rp_backend_release (struct rp_system *sys)
{
  rp_bitmaps_invalidate (sys);
  free (sys->bstate);
  sys->bstate = NULL;
}

static char *
unsupported (struct rp_system *sys, const char *what)
{
  CLEANUP_FREE char *who = rp_backend_what (sys);
  return rp_asprintf ("%s cannot %s (the %s backend does not support it)",
                      who, what, sys->backend->name);
}

char *
rp_backend_what (struct rp_system *sys)
{
  if (sys->backend->what)
    return sys->backend->what (sys);
  return rp_asprintf ("the %s of %s", sys->backend->name, sys->name);
}

int
rp_backend_check (struct rp_system *sys, char **err)
{
  return sys->backend->check ? sys->backend->check (sys, err) : 0;
}

int
rp_backend_start (struct rp_system *sys, char **err)
{
  const struct rp_backend *b = sys->backend;
  int r = b->start (sys, err);
  if (r == 0 && b->check_tracking && (r = b->check_tracking (sys)) != 0) {
    *err = rp_asprintf ("cannot check change tracking of system %s",
                        sys->name);
    b->stop (sys);
  }
  return r;
}

void
rp_backend_stop (struct rp_system *sys)
{
  sys->backend->stop (sys);
}

bool
rp_backend_alive (struct rp_system *sys)
{
  return sys->backend->alive (sys);
}

int
rp_backend_ensure (struct rp_system *sys, char **err)
{
  const struct rp_backend *b = sys->backend;
  int r = b->revive ? b->revive (sys) : !b->alive (sys);
  return r == 0 ? 0 : rp_backend_start (sys, err);
}

bool
rp_backend_answers (struct rp_system *sys)
{
  if (!rp_backend_alive (sys))
    return false;
  if (sys->backend->ping) {
    char *e = NULL;
    int r = sys->backend->ping (sys, &e);
    free (e);
    if (r != 0)
      return false;
  }
  return rp_backend_alive (sys);
}

int
rp_backend_require (struct rp_system *sys, char **why)
{
  char *e = NULL;
  if (rp_backend_ensure (sys, &e) != 0) {
    *why = rp_asprintf ("QEMU is not available: %s", e);
    free (e);
    return RV_NOT_AVAILABLE;
  }
  /* A round trip before the operation changes anything: a server that is
   * slow (QEMU's main loop busy) fails the operation with 32772 and leaves
   * everything as it was. */
  if (sys->backend->ping && sys->backend->ping (sys, &e) == -3) {
    *why = rp_asprintf ("Timeout: %s; nothing was changed", e);
    free (e);
    return RV_TIMEOUT;
  }
  free (e);
  return RV_OK;
}

int
rp_backend_timeout_rv (struct rp_system *sys, int rv, char **why)
{
  if (rv == RV_OK || rv == RV_TIMEOUT || !sys->backend->timed_out
      || !sys->backend->timed_out (sys))
    return rv;
  char *d = rp_asprintf ("Timeout: QEMU did not answer in time (%s); the "
                         "operation stopped there", *why ? *why : "");
  free (*why);
  *why = d;
  return RV_TIMEOUT;
}

bool
rp_backend_disks_writable (struct rp_system *sys)
{
  return sys->backend->disks_writable && sys->backend->disks_writable (sys);
}

bool
rp_backend_app_consistency (struct rp_system *sys)
{
  const struct rp_backend *b = sys->backend;
  if (!b->freeze || sys->conf->fallback_crash)
    return true;
  return !b->freezable || b->freezable (sys);
}

int
rp_backend_freeze (struct rp_system *sys, struct rp_refpoint *rp,
                   void **token, char **note, char **why)
{
  *token = NULL;
  if (rp->consistency != 1 || !sys->backend->freeze)
    return RV_OK;               /* offline disks: at rest already */
  CLEANUP_FREE char *fw = NULL;
  int frv = sys->backend->freeze (sys, token, &fw);
  if (frv == RV_NOT_SUPPORTED && sys->conf->fallback_crash) {
    *note = rp_asprintf ("crash consistent, not application consistent "
                         "(consistency-fallback = crash): %s", fw);
    rp->consistency = 2;
    return RV_OK;
  }
  if (frv != RV_OK) {
    *why = fw;
    fw = NULL;
  }
  return frv;
}

void
rp_backend_thaw (struct rp_system *sys, void *token)
{
  if (sys->backend->thaw)
    sys->backend->thaw (sys, token);
}

int
rp_backend_create (struct rp_system *sys, struct rp_refpoint *rp,
                   char **note, char **why)
{
  if (!sys->backend->create) {
    *why = unsupported (sys, "create reference points");
    return RV_NOT_SUPPORTED;
  }
  return sys->backend->create (sys, rp, note, why);
}

int
rp_backend_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                    char **why)
{
  if (!sys->backend->destroy) {
    *why = unsupported (sys, "destroy reference points");
    return RV_NOT_SUPPORTED;
  }
  return sys->backend->destroy (sys, rp, why);
}

void
rp_backend_undo_create (struct rp_system *sys, struct rp_refpoint *rp)
{
  CLEANUP_FREE char *e = NULL;
  if (rp->has_data && sys->backend->drop_data)
    sys->backend->drop_data (sys, rp);
  if (rp_backend_destroy (sys, rp, &e) != RV_OK)
    fprintf (stderr, "rpfs: %s: rollback of reference point %s failed: %s\n",
             sys->name, rp->name, e);
}

int
rp_backend_drop_data (struct rp_system *sys, struct rp_refpoint *rp)
{
  if (sys->backend->drop_data && sys->backend->drop_data (sys, rp) != 0)
    return -1;
  pthread_mutex_lock (&sys->core->lock);
  rp->has_data = false;
  rp_refpoint_save (rp);
  pthread_mutex_unlock (&sys->core->lock);
  return 0;
}

int
rp_backend_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                          size_t di, struct rp_endpoint *ep, char **err)
{
  if (!sys->backend->disk_endpoint) {
    *err = unsupported (sys, "serve disks");
    return -1;
  }
  int r = sys->backend->disk_endpoint (sys, rp, di, ep, err);
  ep->read_max = sys->backend->read_max;
  return r;
}

int
rp_backend_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                         struct rp_refpoint *base, size_t di,
                         const char *tag, struct rp_endpoint *ep, char **why)
{
  if (!sys->backend->changes_open) {
    *why = unsupported (sys, "serve the changes between reference points");
    return RV_NOT_SUPPORTED;
  }
  int rv = sys->backend->changes_open (sys, rp, base, di, tag, ep, why);
  ep->read_max = sys->backend->read_max;
  return rv;
}

void
rp_backend_changes_close (struct rp_system *sys, size_t di,
                          struct rp_endpoint *ep)
{
  if (sys->backend->changes_close)
    sys->backend->changes_close (sys, di, ep);
}

int
rp_backend_has_tracking (struct rp_system *sys, size_t di,
                         const char *tracking, char **why)
{
  if (!sys->backend->has_tracking) {
    *why = unsupported (sys, "read the disks' change tracking");
    return -1;
  }
  return sys->backend->has_tracking (sys, di, tracking, why);
}

int
rp_backend_imported (struct rp_system *sys, struct rp_refpoint *rp,
                     char **why)
{
  return sys->backend->imported ? sys->backend->imported (sys, rp, why)
    : RV_OK;
}

bool
rp_backend_io_stats (struct rp_system *sys, uint64_t *ops, uint64_t *ns)
{
  return sys->backend->io_stats && sys->backend->io_stats (sys, ops, ns);
}
