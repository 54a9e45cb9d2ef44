/* Virtual systems: loading STORE/systems/NAME.conf, the persistent
 * VirtualSystemIdentifier, checking the disk images, properties. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <jansson.h>

#include "internal.h"
#include "proc.h"

const char *const rp_system_props[] = {
  "ElementName", "VirtualSystemIdentifier", NULL
};
const char *const rp_system_methods[] = {
  "CreateReferencePoint", "ImportReferencePointMetadata", NULL
};

int
rp_disk_index (struct rp_system *sys, const char *id)
{
  for (size_t i = 0; i < sys->ndisks; i++)
    if (!strcmp (sys->disks[i].id, id))
      return (int) i;
  return -1;
}

static int
load_uuid (struct rp_system *sys, char **err)
{
  if (sys->conf->uuid) {
    sys->uuid = rp_strdup (sys->conf->uuid);
    return 0;
  }
  /* Generated once and kept, so it never changes across mounts. */
  CLEANUP_FREE char *path = rp_asprintf ("%s/id", sys->statedir);
  CLEANUP_FREE char *text = rp_read_file (path, NULL);
  if (text) {
    text[strcspn (text, "\n")] = 0;
    if (!rp_uuid_valid (text)) {
      *err = rp_asprintf ("%s:1: not a UUID", path);
      return -1;
    }
    sys->uuid = rp_strdup (text);
    return 0;
  }
  char id[37];
  if (rp_uuid_new (id) != 0) {
    *err = rp_asprintf ("cannot generate a UUID: %s", strerror (errno));
    return -1;
  }
  CLEANUP_FREE char *line = rp_asprintf ("%s\n", id);
  if (rp_write_file_atomic (path, line, strlen (line), 0644) != 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  sys->uuid = rp_strdup (id);
  return 0;
}

/* A system NAME from definition TEXT (LABEL names it in messages),
 * appended to the core's list (its index: its place there). */
static struct rp_system *
system_new (struct rp_core *core, const char *label, const char *name,
            const char *text, size_t len, char **err)
{
  if (!rp_name_valid (name) || !strcmp (name, "jobs")) {
    *err = rp_asprintf ("%s: '%s' is not a valid system name (1 to 64 "
                        "letters, digits, '_', '.', '-'; 'jobs' is reserved)",
                        label, name);
    return NULL;
  }
  struct rp_conf *conf = rp_conf_parse_in (label, name, text, len,
                                           core->libvirt_uri, err);
  if (!conf)
    return NULL;
  struct rp_system *sys = rp_calloc (1, sizeof *sys);
  sys->core = core;
  sys->name = rp_strdup (name);
  sys->conf_path = rp_strdup (label);
  sys->conf = conf;
  rp_backend_bind (sys);
  pthread_mutex_init (&sys->op_lock, NULL);
  sys->ndisks = conf->ndisks;
  sys->disks = rp_calloc (conf->ndisks + 1, sizeof *sys->disks);
  for (size_t i = 0; i < conf->ndisks; i++) {
    sys->disks[i].id = rp_strdup (conf->disks[i].id);
    sys->disks[i].path = rp_strdup (conf->disks[i].path);
    sys->disks[i].line = conf->disks[i].line;
    snprintf (sys->disks[i].node, sizeof sys->disks[i].node, "d%u", (unsigned) (i & 0xffff));
  }
  pthread_mutex_lock (&core->lock);
  struct rp_system **v = realloc (core->systems,
                                  (core->nsystems + 1) * sizeof *v);
  if (!v)
    abort ();
  core->systems = v;
  sys->index = (unsigned) core->nsystems;
  core->systems[core->nsystems++] = sys;
  pthread_mutex_unlock (&core->lock);
  sys->statedir = rp_asprintf ("%s/state/%s", core->store, name);
  sys->nbd_path = rp_asprintf ("%s/run/%u.nbd", core->store, sys->index);
  sys->log_path = rp_asprintf ("%s/log/%s.log", core->store, name);
  return sys;
}

/* What a loaded system needs on disk: its state directory, its UUID, its
 * reference points. */
static int
system_state (struct rp_system *sys, char **err)
{
  struct rp_core *core = sys->core;
  if (strlen (sys->nbd_path) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
    *err = rp_asprintf ("%s: the store path is too long for a Unix socket "
                        "(%s); use a shorter --store path", core->store,
                        sys->nbd_path);
    return -1;
  }
  if (rp_mkdir_p (sys->statedir, 0755) != 0) {
    *err = rp_asprintf ("%s: %s", sys->statedir, strerror (errno));
    return -1;
  }
  if (load_uuid (sys, err) != 0)
    return -1;
  return rp_refpoint_load_all (sys, err);
}

int
rp_system_load (struct rp_core *core, const char *conf_path, const char *name,
                char **err)
{
  size_t len;
  CLEANUP_FREE char *text = rp_read_file (conf_path, &len);
  if (!text) {
    *err = rp_asprintf ("%s: %s", conf_path, strerror (errno));
    return -1;
  }
  struct rp_system *sys = system_new (core, conf_path, name, text, len, err);
  return sys ? system_state (sys, err) : -1;
}

/* SYS is libvirt domain NAME on the store's libvirt connection. */
static bool
names_domain (const struct rp_system *sys, const char *name)
{
  const struct rp_conf *c = sys->conf;
  const char *uri = c->libvirt_uri ? c->libvirt_uri : RP_LIBVIRT_DEFAULT_URI;
  return c->libvirt_domain && sys->core->libvirt_uri
    && !strcmp (c->libvirt_domain, name)
    && !strcmp (uri, sys->core->libvirt_uri);
}

int
rp_core_add_domain (struct rp_core *core, const char *name, char **err)
{
  pthread_mutex_lock (&core->lock);
  struct rp_system *old = NULL;
  for (size_t i = 0; i < core->nsystems; i++)
    if (!strcmp (core->systems[i]->name, name)
        || names_domain (core->systems[i], name))
      old = core->systems[i];
  bool shown = old && old->hidden;
  if (shown)
    old->hidden = false;
  bool taken = old && !names_domain (old, name);
  pthread_mutex_unlock (&core->lock);
  if (taken) {
    *err = rp_asprintf ("system %s is defined in %s", name, old->conf_path);
    return -1;
  }
  if (old) {
    if (shown)
      rp_notify (core, RP_EV_CREATED, "%s", name);
    return 0;
  }
  CLEANUP_FREE char *label = rp_asprintf ("libvirt domain %s (%s/rpfs.conf)",
                                          name, core->store);
  struct rp_system *sys = system_new (core, label, name, "", 0, err);
  if (!sys)
    return -1;
  sys->auto_domain = true;
  if (system_state (sys, err) != 0) {
    rp_core_hide_domain (core, name);
    return -1;
  }
  rp_notify (core, RP_EV_CREATED, "%s", name);
  return 0;
}

void
rp_core_hide_domain (struct rp_core *core, const char *name)
{
  pthread_mutex_lock (&core->lock);
  bool hid = false;
  for (size_t i = 0; i < core->nsystems; i++) {
    struct rp_system *sys = core->systems[i];
    if (names_domain (sys, name) && !sys->hidden)
      sys->hidden = hid = true;
  }
  pthread_mutex_unlock (&core->lock);
  if (hid)
    rp_notify (core, RP_EV_DELETED, "%s", name);
}

void
rp_system_free (struct rp_system *sys)
{
  for (size_t k = 0; k < sys->nrps; k++)
    rp_refpoint_put (sys->rps[k]);
  free (sys->rps);
  for (size_t i = 0; i < sys->ndisks; i++) {
    free (sys->disks[i].id);
    free (sys->disks[i].path);
  }
  free (sys->disks);
  rp_conf_free (sys->conf);
  rp_results_free (sys->results);
  pthread_mutex_destroy (&sys->op_lock);
  free (sys->name);
  free (sys->conf_path);
  free (sys->uuid);
  free (sys->links);            /* emptied by the backend's stop */
  free (sys->statedir);
  free (sys->nbd_path);
  free (sys->log_path);
  free (sys->qemu_version);
  rp_backend_release (sys);
  free (sys);
}

char **
rp_core_systems (struct rp_core *core)
{
  char **v = rp_calloc (1, sizeof *v);
  pthread_mutex_lock (&core->lock);
  for (size_t i = 0; i < core->nsystems; i++)
    if (!core->systems[i]->hidden)
      v = rp_strv_push (v, core->systems[i]->name);
  pthread_mutex_unlock (&core->lock);
  return v;
}

struct rp_system *
rp_core_system (struct rp_core *core, const char *name)
{
  struct rp_system *sys = NULL;
  pthread_mutex_lock (&core->lock);
  for (size_t i = 0; i < core->nsystems; i++)
    if (!core->systems[i]->hidden && !strcmp (core->systems[i]->name, name))
      sys = core->systems[i];
  pthread_mutex_unlock (&core->lock);
  return sys;
}

char *
rp_system_prop (struct rp_system *sys, const char *name)
{
  if (!strcmp (name, "ElementName"))
    return rp_asprintf ("%s\n", sys->name);
  if (!strcmp (name, "VirtualSystemIdentifier"))
    return rp_asprintf ("%s\n", sys->uuid);
  return NULL;
}

char **
rp_system_disks (struct rp_system *sys)
{
  char **v = rp_calloc (1, sizeof *v);
  for (size_t i = 0; i < sys->ndisks; i++)
    v = rp_strv_push (v, sys->disks[i].id);
  return v;
}

bool
rp_system_disks_writable (struct rp_system *sys)
{
  return rp_backend_disks_writable (sys);
}

/* Results: each caller (uid) sees its own last result of each method. */
void
rp_system_result_set (struct rp_result **list, const char *method, uid_t uid,
                      int rv, const char *job_id, const char *desc)
{
  struct rp_result *r;
  for (r = *list; r; r = r->next)
    if (r->uid == uid && !strcmp (r->method, method))
      break;
  if (!r) {
    r = rp_calloc (1, sizeof *r);
    r->method = rp_strdup (method);
    r->uid = uid;
    r->next = *list;
    *list = r;
  }
  free (r->line);
  r->line = rp_asprintf ("%d %s %s\n", rv, job_id,
                         desc && *desc ? desc : rp_rv_name (rv));
}

char *
rp_system_result_get (struct rp_result *list, const char *method, uid_t uid)
{
  for (struct rp_result *r = list; r; r = r->next)
    if (r->uid == uid && !strcmp (r->method, method))
      return rp_strdup (r->line);
  return rp_strdup ("");
}

void
rp_results_free (struct rp_result *list)
{
  while (list) {
    struct rp_result *n = list->next;
    free (list->method);
    free (list->line);
    free (list);
    list = n;
  }
}
