/* STORE/rpfs.conf's "libvirt = URI": every domain of that connection is a
 * system of its own, named after the domain (objects/system.c,
 * rp_core_add_domain), whether or not a definition file names it.  At the
 * mount the domains are listed; afterwards libvirt's lifecycle events add
 * a domain when it is defined and hide it when it is undefined (the
 * system object stays until unmount: jobs may refer to it).  A domain that
 * a definition file already names is not added twice.
 *
 * Thread model: the lifecycle callback runs in libvirt's event thread
 * (lvevents.c) and only calls the two core functions, which take
 * core->lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvirt.h"

struct lvstore {
  virConnectPtr conn;
  int cb_id;
};

static void
add (struct rp_core *core, const char *name)
{
  char *e = NULL;
  if (rp_core_add_domain (core, name, &e) != 0) {
    fprintf (stderr, "rpfs: libvirt domain %s is not a system: %s\n", name,
             e);
    free (e);
  }
}

static int
lifecycle (virConnectPtr conn, virDomainPtr dom, int event, int detail,
           void *opaque)
{
  struct rp_core *core = opaque;
  const char *name = virDomainGetName (dom);
  (void) conn;
  (void) detail;
  if (!name || core->closing)
    return 0;
  if (event == VIR_DOMAIN_EVENT_DEFINED) {
    fprintf (stderr, "rpfs: libvirt: domain %s defined\n", name);
    add (core, name);
  }
  else if (event == VIR_DOMAIN_EVENT_UNDEFINED) {
    fprintf (stderr, "rpfs: libvirt: domain %s undefined\n", name);
    rp_core_hide_domain (core, name);
  }
  return 0;
}

int
rp_lvstore_start (struct rp_core *core, char **err)
{
  if (rp_lv_init (err) != 0)
    return -1;
  struct lvstore *l = rp_calloc (1, sizeof *l);
  l->conn = virConnectOpen (core->libvirt_uri);
  if (!l->conn) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("%s/rpfs.conf: libvirt = %s: %s", core->store,
                        core->libvirt_uri, e);
    free (l);
    return -1;
  }
  l->cb_id = virConnectDomainEventRegisterAny (
    l->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    VIR_DOMAIN_EVENT_CALLBACK (lifecycle), core, NULL);
  if (l->cb_id < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("libvirt %s: cannot follow its domains: %s",
                        core->libvirt_uri, e);
    virConnectClose (l->conn);
    free (l);
    return -1;
  }
  virConnectSetKeepAlive (l->conn, 5, 3);
  core->lvstore = l;
  virDomainPtr *doms = NULL;
  int n = virConnectListAllDomains (l->conn, &doms, 0);
  if (n < 0) {
    CLEANUP_FREE char *e = rp_lv_error ();
    *err = rp_asprintf ("libvirt %s: cannot list its domains: %s",
                        core->libvirt_uri, e);
    return -1;                  /* rp_lvstore_stop closes it */
  }
  for (int i = 0; i < n; i++) {
    const char *name = virDomainGetName (doms[i]);
    if (name)
      add (core, name);
    virDomainFree (doms[i]);
  }
  free (doms);
  return 0;
}

void
rp_lvstore_stop (struct rp_core *core)
{
  struct lvstore *l = core->lvstore;
  if (!l)
    return;
  virConnectDomainEventDeregisterAny (l->conn, l->cb_id);
  virConnectClose (l->conn);
  free (l);
  core->lvstore = NULL;
}
