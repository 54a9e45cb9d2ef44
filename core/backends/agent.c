/* Application-consistent reference points of a running VM: freeze the
 * guest's file systems through qemu-guest-agent around the reference point
 * transaction, and thaw them on every path.
 *
 * The agent channel is a QEMU chardev socket ("guest-agent = SOCKET" in the
 * definition); rpfs opens one connection per freeze and closes it after the
 * thaw.  Every exchange is bounded by guest-agent-timeout.  A marker file
 * (STORE/state/SYSTEM/frozen) exists from just before the freeze until a
 * thaw succeeded, so that a guest left frozen by an rpfs that died in
 * between is thawed at the next attach (rp_agent_recover).  All functions
 * run with sys->op_lock held. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu.h"
#include "proc.h"

struct rp_agent {
  struct rp_qmp *q;
};

static char *
marker_path (struct rp_system *sys)
{
  return rp_asprintf ("%s/frozen", sys->statedir);
}

static struct rp_qmp *
agent_open (struct rp_system *sys, char **why)
{
  const char *path = sys->conf->agent;
  int fd = rp_unix_connect (path);
  if (fd < 0) {
    *why = rp_asprintf ("cannot connect to the guest agent socket %s: %s",
                        path, strerror (errno));
    return NULL;
  }
  char *e = NULL;
  struct rp_qmp *q = rp_qmp_open_agent (fd, sys->conf->agent_timeout * 1000,
                                        &e);
  if (!q) {
    *why = rp_asprintf ("guest agent (%s): %s; is qemu-guest-agent running "
                        "in the guest, and no other client connected to the "
                        "socket?", path, e);
    free (e);
  }
  return q;
}

/* One thaw over Q; true when the guest reports it thawed. */
static bool
thaw_on (struct rp_system *sys, struct rp_qmp *q)
{
  char *e = NULL;
  if (rp_qmp_cmd (q, "guest-fsfreeze-thaw", NULL, NULL, &e) == 0)
    return true;
  fprintf (stderr, "rpfs: %s: guest agent: thaw failed: %s\n", sys->name, e);
  free (e);
  return false;
}

int
rp_agent_freeze (struct rp_system *sys, struct rp_agent **out, char **why)
{
  *out = NULL;
  if (!sys->conf->agent) {
    *why = rp_asprintf ("system %s names no guest agent ('guest-agent = "
                        "SOCKET' in %s): an application-consistent reference "
                        "point needs qemu-guest-agent in the guest",
                        sys->name, sys->conf_path);
    return RV_NOT_SUPPORTED;
  }
  struct rp_qmp *q = agent_open (sys, why);
  if (!q)
    return RV_NOT_SUPPORTED;
  CLEANUP_FREE char *marker = marker_path (sys);
  if (rp_write_file_atomic (marker, "", 0, 0644) != 0) {
    *why = rp_asprintf ("%s: %s", marker, strerror (errno));
    rp_qmp_close (q);
    return RV_FAILED;
  }
  char *e = NULL;
  int r = rp_qmp_cmd (q, "guest-fsfreeze-freeze", NULL, NULL, &e);
  if (r != 0) {
    *why = rp_asprintf ("the guest could not be frozen: %s", e);
    free (e);
    /* qemu-ga thaws what it froze when a freeze fails; a timed-out freeze
     * may still complete later, so ask for a thaw on a fresh connection
     * (the chardev serves one client at a time). */
    if (r == -1 && thaw_on (sys, q))
      unlink (marker);
    rp_qmp_close (q);
    if (r != -1)
      rp_agent_recover (sys);
    return RV_NOT_SUPPORTED;
  }
  struct rp_agent *a = rp_calloc (1, sizeof *a);
  a->q = q;
  *out = a;
  return RV_OK;
}

void
rp_agent_thaw (struct rp_system *sys, struct rp_agent *a)
{
  if (!a)
    return;
  bool ok = thaw_on (sys, a->q);
  rp_qmp_close (a->q);
  free (a);
  if (ok) {
    CLEANUP_FREE char *marker = marker_path (sys);
    unlink (marker);
  }
  else
    rp_agent_recover (sys);     /* once more, on a new connection */
}

void
rp_agent_recover (struct rp_system *sys)
{
  CLEANUP_FREE char *marker = marker_path (sys);
  if (!sys->conf->agent || access (marker, F_OK) != 0)
    return;
  CLEANUP_FREE char *why = NULL;
  struct rp_qmp *q = agent_open (sys, &why);
  if (q && thaw_on (sys, q)) {
    fprintf (stderr, "rpfs: %s: thawed the guest file systems left frozen "
             "by an earlier freeze\n", sys->name);
    unlink (marker);
  }
  else
    fprintf (stderr, "rpfs: %s: the guest may still be frozen (%s); rpfs "
             "retries at the next attach, or run guest-fsfreeze-thaw on "
             "the agent yourself\n", sys->name, why ? why : "thaw failed");
  rp_qmp_close (q);
}
