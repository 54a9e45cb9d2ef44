/* Reference point objects: their records in the store, their properties and
 * their ExportSettingData settings. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "arc.h"
#include "args.h"
#include "digests.h"

const char *const rp_refpoint_props[] = {
  "InstanceID", "ElementName", "ReferencePointType", "ConsistencyLevel",
  "VirtualSystemIdentifier", "HasAssociatedData", "VirtualDiskIdentifiers",
  "ResilientChangeTrackingIdentifiers", "CreationTime", "ChangeTracking",
  NULL
};
const char *const rp_refpoint_settings[] = {
  "BaseReferencePoint", "DisksToExport", "KeepAssociatedData", "Format",
  NULL
};
const char *const rp_refpoint_methods[] = {
  "ExportReferencePoint", "RemoveAssociatedData", "VerifyExport", NULL
};

void
rp_refpoint_free (struct rp_refpoint *rp)
{
  free (rp->name);
  free (rp->bitmap);
  rp_strv_free (rp->disk_ids);
  free (rp->qemu_version);
  rp_strv_free (rp->qemu_nodes);
  free (rp->dir);
  free (rp->broken);
  free (rp->dig_bad);
  free (rp->base_setting);
  rp_strv_free (rp->disks_setting);
  free (rp->export_archive);
  free (rp->job_id);
  rp_strv_free (rp->exports);
  rp_results_free (rp->results);
  free (rp);
}

/* The record: what rpfs needs to know of a reference point across mounts.
 * The exported "referencepoint" file is the same format (see export.c). */
struct rp_kv *
rp_refpoint_record (struct rp_refpoint *rp, bool local)
{
  struct rp_kv *kv = rp_kv_new ();
  char t[21], buf[32];
  rp_kv_add (kv, "ElementName", rp->name);
  rp_kv_add (kv, "InstanceID", rp->instance_id);
  rp_kv_add (kv, "VirtualSystemIdentifier", rp->sys->uuid);
  rp_kv_add (kv, "VirtualSystemName", rp->sys->name);
  snprintf (buf, sizeof buf, "%u", rp->seq);
  rp_kv_add (kv, "Sequence", buf);
  rp_kv_add (kv, "ResilientChangeTrackingIdentifier", rp->bitmap);
  snprintf (buf, sizeof buf, "%d", rp->type);
  rp_kv_add (kv, "ReferencePointType", buf);
  snprintf (buf, sizeof buf, "%d", rp->consistency);
  rp_kv_add (kv, "ConsistencyLevel", buf);
  rp_time_iso (rp->created, t);
  rp_kv_add (kv, "CreationTime", t);
  for (size_t i = 0; rp->disk_ids[i]; i++)
    rp_kv_add (kv, "disk", rp->disk_ids[i]);
  if (rp->qemu_version)
    rp_kv_add (kv, "QemuVersion", rp->qemu_version);
  for (size_t i = 0; rp->qemu_nodes && rp->qemu_nodes[i]; i++)
    rp_kv_add (kv, "QemuNode", rp->qemu_nodes[i]);
  if (!local)
    return kv;
  rp_kv_add (kv, "HasAssociatedData", rp->has_data ? "true" : "false");
  if (rp->has_data && rp->layers) {     /* the fleecing chain's (chain.c) */
    char n[16];
    snprintf (n, sizeof n, "%u", rp->layers);
    rp_kv_add (kv, "FleeceLayers", n);
  }
  if (rp->broken)
    rp_kv_add (kv, "Broken", rp->broken);
  if (rp->broken && rp->broken_at) {
    rp_time_iso (rp->broken_at, t);
    rp_kv_add (kv, "BrokenAt", t);
  }
  if (rp->base_setting && *rp->base_setting)
    rp_kv_add (kv, "BaseReferencePoint", rp->base_setting);
  for (size_t i = 0; rp->disks_setting && rp->disks_setting[i]; i++)
    rp_kv_add (kv, "DisksToExport", rp->disks_setting[i]);
  if (rp->drop_setting)
    rp_kv_add (kv, "KeepAssociatedData", "false");
  if (rp->format != RP_FMT_QCOW2)
    rp_kv_add (kv, "Format", rp_format_name (rp->format));
  for (size_t i = 0; rp->exports && rp->exports[i]; i++)
    rp_kv_add (kv, "export", rp->exports[i]);
  if (rp->export_archive)
    rp_kv_add (kv, "exportarchive", rp->export_archive);
  return kv;
}

/* Call with core->lock held (it reads the fields); writes the file. */
int
rp_refpoint_save (struct rp_refpoint *rp)
{
  struct rp_kv *kv = rp_refpoint_record (rp, true);
  CLEANUP_FREE char *text = rp_kv_render (kv);
  rp_kv_free (kv);
  CLEANUP_FREE char *path = rp_asprintf ("%s/record", rp->dir);
  if (rp_write_file_atomic (path, text, strlen (text), 0644) != 0) {
    fprintf (stderr, "rpfs: %s: %s\n", path, strerror (errno));
    return -1;
  }
  return 0;
}

void
rp_refpoint_set_broken (struct rp_refpoint *rp, const char *why)
{
  pthread_mutex_lock (&rp->sys->core->lock);
  if (!rp->broken) {
    rp->broken = rp_strdup (why);
    rp->broken_at = time (NULL);
    rp_refpoint_save (rp);
  }
  pthread_mutex_unlock (&rp->sys->core->lock);
}

static int
cmp_rp (const void *a, const void *b)
{
  const struct rp_refpoint *x = *(struct rp_refpoint *const *) a;
  const struct rp_refpoint *y = *(struct rp_refpoint *const *) b;
  return (x->seq > y->seq) - (x->seq < y->seq);
}

static int
load_one (struct rp_system *sys, const char *name, char **err)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/rp/%s", sys->statedir, name);
  CLEANUP_FREE char *path = rp_asprintf ("%s/record", dir);
  size_t len;
  CLEANUP_FREE char *text = rp_read_file (path, &len);
  if (!text) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  struct rp_kv *kv = rp_kv_parse (path, text, len, err);
  if (!kv)
    return -1;
  struct rp_refpoint *rp = rp_calloc (1, sizeof *rp);
  rp->sys = sys;
  rp->refs = 1;
  rp->dir = rp_strdup (dir);
  const char *v;
  if (!(v = rp_kv_get (kv, "ElementName")) || strcmp (v, name) != 0
      || !(v = rp_kv_get (kv, "InstanceID")) || !rp_uuid_valid (v)
      || !(v = rp_kv_get (kv, "Sequence"))
      || (rp->seq = strtoul (v, NULL, 10)) == 0
      || !(v = rp_kv_get (kv, "ResilientChangeTrackingIdentifier"))
      || rp_bitmap_seq (v) != rp->seq
      || !(v = rp_kv_get (kv, "CreationTime"))
      || rp_time_parse (v, &rp->created) != 0) {
    *err = rp_asprintf ("%s: the record is damaged (a required line is "
                        "missing or wrong)", path);
    rp_kv_free (kv);
    rp_refpoint_free (rp);
    return -1;
  }
  rp->name = rp_strdup (name);
  memcpy (rp->instance_id, rp_kv_get (kv, "InstanceID"), 37);
  rp->bitmap = rp_strdup (rp_kv_get (kv, "ResilientChangeTrackingIdentifier"));
  rp->type = atoi (rp_kv_get (kv, "ReferencePointType") ?: "2");
  rp->consistency = atoi (rp_kv_get (kv, "ConsistencyLevel") ?: "2");
  rp->has_data = strcmp (rp_kv_get (kv, "HasAssociatedData") ?: "", "true") == 0;
  rp->layers = (unsigned) atoi (rp_kv_get (kv, "FleeceLayers") ?: "1");
  if (rp->layers == 0 || rp->layers > 1000)
    rp->has_data = false;
  if ((v = rp_kv_get (kv, "Broken")))
    rp->broken = rp_strdup (v);
  if ((v = rp_kv_get (kv, "BrokenAt")) && rp_time_parse (v, &rp->broken_at))
    rp->broken_at = 0;
  if ((v = rp_kv_get (kv, "BaseReferencePoint")))
    rp->base_setting = rp_strdup (v);
  rp->drop_setting = !strcmp (rp_kv_get (kv, "KeepAssociatedData") ?: "",
                              "false");
  if ((v = rp_kv_get (kv, "Format")) && rp_format_parse (v) > 0)
    rp->format = rp_format_parse (v);
  if ((v = rp_kv_get (kv, "exportarchive")))
    rp->export_archive = rp_strdup (v);
  rp->disk_ids = rp_calloc (1, sizeof (char *));
  const char **all = rp_kv_all (kv, "disk");
  for (size_t i = 0; all && all[i]; i++)
    rp->disk_ids = rp_strv_push (rp->disk_ids, all[i]);
  free (all);
  if ((v = rp_kv_get (kv, "QemuVersion")))
    rp->qemu_version = rp_strdup (v);
  all = rp_kv_all (kv, "QemuNode");
  for (size_t i = 0; all && all[i]; i++)
    rp->qemu_nodes = rp_strv_push (rp->qemu_nodes, all[i]);
  free (all);
  all = rp_kv_all (kv, "DisksToExport");
  for (size_t i = 0; all && all[i]; i++)
    rp->disks_setting = rp_strv_push (rp->disks_setting, all[i]);
  free (all);
  all = rp_kv_all (kv, "export");
  for (size_t i = 0; all && all[i]; i++)
    rp->exports = rp_strv_push (rp->exports, all[i]);
  free (all);
  rp_kv_free (kv);

  struct rp_refpoint **nv = realloc (sys->rps, (sys->nrps + 1) * sizeof *nv);
  if (!nv)
    abort ();
  sys->rps = nv;
  sys->rps[sys->nrps++] = rp;
  return 0;
}

int
rp_refpoint_load_all (struct rp_system *sys, char **err)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/rp", sys->statedir);
  if (rp_mkdir_p (dir, 0755) != 0) {
    *err = rp_asprintf ("%s: %s", dir, strerror (errno));
    return -1;
  }
  DIR *d = opendir (dir);
  if (!d) {
    *err = rp_asprintf ("%s: %s", dir, strerror (errno));
    return -1;
  }
  struct dirent *e;
  int r = 0;
  while (r == 0 && (e = readdir (d)) != NULL) {
    if (!rp_name_valid (e->d_name))
      continue;                 /* ".", "..", temporary names */
    CLEANUP_FREE char *rec = rp_asprintf ("%s/%s/record", dir, e->d_name);
    if (access (rec, F_OK) != 0) {
      /* A reference point whose creation did not finish: nothing refers to
       * it, its bitmaps (if any) are removed by the tracking check. */
      CLEANUP_FREE char *junk = rp_asprintf ("%s/%s", dir, e->d_name);
      rp_rm_rf (junk);
      continue;
    }
    r = load_one (sys, e->d_name, err);
  }
  closedir (d);
  if (sys->nrps)
    qsort (sys->rps, sys->nrps, sizeof *sys->rps, cmp_rp);
  return r;
}

/* core->lock held */
struct rp_refpoint *
rp_refpoint_find (struct rp_system *sys, const char *name_or_id)
{
  for (size_t i = 0; i < sys->nrps; i++)
    if (strcmp (sys->rps[i]->name, name_or_id) == 0
        || strcasecmp (sys->rps[i]->instance_id, name_or_id) == 0)
      return sys->rps[i];
  return NULL;
}

char **
rp_system_refpoints (struct rp_system *sys)
{
  char **v = rp_calloc (1, sizeof *v);
  pthread_mutex_lock (&sys->core->lock);
  for (size_t i = 0; i < sys->nrps; i++)
    v = rp_strv_push (v, sys->rps[i]->name);
  pthread_mutex_unlock (&sys->core->lock);
  return v;
}

struct rp_refpoint *
rp_refpoint_get (struct rp_system *sys, const char *name)
{
  pthread_mutex_lock (&sys->core->lock);
  struct rp_refpoint *rp = NULL;
  for (size_t i = 0; i < sys->nrps; i++)
    if (strcmp (sys->rps[i]->name, name) == 0) {
      rp = sys->rps[i];
      rp->refs++;
      break;
    }
  pthread_mutex_unlock (&sys->core->lock);
  return rp;
}

struct rp_refpoint **
rp_system_hold_rps (struct rp_system *sys, size_t *n)
{
  pthread_mutex_lock (&sys->core->lock);
  *n = sys->nrps;
  struct rp_refpoint **rps = rp_calloc (*n + 1, sizeof *rps);
  for (size_t k = 0; k < *n; k++) {
    rps[k] = sys->rps[k];
    rps[k]->refs++;
  }
  pthread_mutex_unlock (&sys->core->lock);
  return rps;
}

void
rp_release_rps (struct rp_refpoint **rps, size_t n)
{
  for (size_t k = 0; k < n; k++)
    rp_refpoint_put (rps[k]);
  free (rps);
}

void
rp_refpoint_put (struct rp_refpoint *rp)
{
  if (!rp)
    return;
  pthread_mutex_lock (&rp->sys->core->lock);
  bool last = --rp->refs == 0;
  pthread_mutex_unlock (&rp->sys->core->lock);
  if (last)
    rp_refpoint_free (rp);
}

bool
rp_refpoint_has_data (struct rp_refpoint *rp)
{
  pthread_mutex_lock (&rp->sys->core->lock);
  bool r = rp->has_data;
  pthread_mutex_unlock (&rp->sys->core->lock);
  return r;
}

char *
rp_refpoint_job (struct rp_refpoint *rp)
{
  pthread_mutex_lock (&rp->sys->core->lock);
  char *r = rp->job_id ? rp_strdup (rp->job_id) : NULL;
  pthread_mutex_unlock (&rp->sys->core->lock);
  return r;
}

static char *
render_locked (struct rp_refpoint *rp, const char *name)
{
  if (!strcmp (name, "InstanceID")) return rp_asprintf ("%s\n", rp->instance_id);
  if (!strcmp (name, "ElementName")) return rp_asprintf ("%s\n", rp->name);
  if (!strcmp (name, "ReferencePointType")) return rp_asprintf ("%d\n", rp->type);
  if (!strcmp (name, "ConsistencyLevel")) return rp_asprintf ("%d\n", rp->consistency);
  if (!strcmp (name, "VirtualSystemIdentifier"))
    return rp_asprintf ("%s\n", rp->sys->uuid);
  if (!strcmp (name, "HasAssociatedData"))
    return rp_strdup (rp->has_data ? "true\n" : "false\n");
  if (!strcmp (name, "VirtualDiskIdentifiers"))
    return rp_strv_join (rp->disk_ids, "\n");
  if (!strcmp (name, "ResilientChangeTrackingIdentifiers")) {
    char *s = rp_strdup ("");
    for (size_t i = 0; rp->disk_ids[i]; i++) {
      char *n = rp_asprintf ("%s%s\n", s, rp->bitmap);
      free (s);
      s = n;
    }
    return s;
  }
  if (!strcmp (name, "CreationTime")) {
    char t[21];
    rp_time_iso (rp->created, t);
    return rp_asprintf ("%s\n", t);
  }
  if (!strcmp (name, "ChangeTracking"))
    return rp_digests_tracking (rp);
  return NULL;
}

char *
rp_refpoint_prop (struct rp_refpoint *rp, const char *name)
{
  pthread_mutex_lock (&rp->sys->core->lock);
  char *v = render_locked (rp, name);
  pthread_mutex_unlock (&rp->sys->core->lock);
  return v;
}

char *
rp_refpoint_setting (struct rp_refpoint *rp, const char *name)
{
  char *v = NULL;
  pthread_mutex_lock (&rp->sys->core->lock);
  if (!strcmp (name, "BaseReferencePoint"))
    v = rp->base_setting && *rp->base_setting
      ? rp_asprintf ("%s\n", rp->base_setting) : rp_strdup ("");
  else if (!strcmp (name, "DisksToExport"))
    v = rp_strv_join (rp->disks_setting, "\n");
  else if (!strcmp (name, "KeepAssociatedData"))
    v = rp_strdup (rp->drop_setting ? "false\n" : "true\n");
  else if (!strcmp (name, "Format"))
    v = rp_asprintf ("%s\n", rp_format_name (rp->format));
  pthread_mutex_unlock (&rp->sys->core->lock);
  return v;
}

/* Checks shared with ExportReferencePoint's override lines.  core->lock
 * held.  Returns RV_OK or RV_INVALID_PARAMETER with *why. */
int
rp_refpoint_check_base (struct rp_refpoint *rp, const char *base,
                        struct rp_refpoint **out, char **why)
{
  *out = NULL;
  if (!base || !*base)
    return RV_OK;
  struct rp_refpoint *b = rp_refpoint_find (rp->sys, base);
  if (!b) {
    *why = rp_asprintf ("BaseReferencePoint '%s' is not a reference point of "
                        "system %s", base, rp->sys->name);
    return RV_INVALID_PARAMETER;
  }
  if (b->seq >= rp->seq) {
    *why = rp_asprintf ("BaseReferencePoint '%s' is not older than '%s'",
                        base, rp->name);
    return RV_INVALID_PARAMETER;
  }
  *out = b;
  return RV_OK;
}

int
rp_refpoint_check_disks (struct rp_refpoint *rp, char **disks, char **why)
{
  for (size_t i = 0; disks && disks[i]; i++)
    if (!rp_strv_contains (rp->disk_ids, disks[i])) {
      *why = rp_asprintf ("disk '%s' is not a disk of reference point '%s'",
                          disks[i], rp->name);
      return RV_INVALID_PARAMETER;
    }
  return RV_OK;
}

int
rp_refpoint_parse_keep (const char *v, bool *keep, char **why)
{
  if (!strcmp (v, "true") || !strcmp (v, "false")) {
    *keep = v[0] == 't';
    return 0;
  }
  *why = rp_asprintf ("KeepAssociatedData must be true or false, not '%s'",
                      v);
  return -1;
}

/* KeepAssociatedData: whether an export keeps the point-in-time data. */
static int
set_keep (struct rp_refpoint *rp, const char *buf, size_t len)
{
  char *why = NULL;
  CLEANUP_FREE char *v = rp_args_value (buf, len, false, &why);
  bool keep;
  int rv = RV_INVALID_PARAMETER;
  if (v && rp_refpoint_parse_keep (v, &keep, &why) == 0) {
    pthread_mutex_lock (&rp->sys->core->lock);
    rv = rp->destroyed ? RV_INVALID_STATE : RV_OK;
    if (rv == RV_OK) {
      rp->drop_setting = !keep;
      rp_refpoint_save (rp);
    }
    pthread_mutex_unlock (&rp->sys->core->lock);
  }
  free (why);
  return rv;
}

/* Format: qcow2 (a directory) or an archive format. */
static int
set_format (struct rp_refpoint *rp, const char *buf, size_t len)
{
  char *why = NULL;
  CLEANUP_FREE char *v = rp_args_value (buf, len, false, &why);
  int fmt = v ? rp_format_parse (v) : -1;
  int rv = RV_INVALID_PARAMETER;
  if (fmt >= 0) {
    pthread_mutex_lock (&rp->sys->core->lock);
    rv = rp->destroyed ? RV_INVALID_STATE : RV_OK;
    if (rv == RV_OK) {
      rp->format = fmt;
      rp_refpoint_save (rp);
    }
    pthread_mutex_unlock (&rp->sys->core->lock);
  }
  free (why);
  return rv;
}

int
rp_refpoint_set (struct rp_refpoint *rp, const char *name, const char *buf,
                 size_t len, const struct rp_caller *who)
{
  if (!rp_system_may_operate (rp->sys, who))
    return RV_ACCESS_DENIED;
  if (!strcmp (name, "KeepAssociatedData"))
    return set_keep (rp, buf, len);
  if (!strcmp (name, "Format"))
    return set_format (rp, buf, len);
  bool is_base = !strcmp (name, "BaseReferencePoint");
  if (!is_base && strcmp (name, "DisksToExport") != 0)
    return RV_NOT_SUPPORTED;
  char *why = NULL;
  CLEANUP_FREE char *v = rp_args_value (buf, len, !is_base, &why);
  if (!v) {
    free (why);
    return RV_INVALID_PARAMETER;
  }
  int rv;
  pthread_mutex_lock (&rp->sys->core->lock);
  if (rp->destroyed)
    rv = RV_INVALID_STATE;
  else if (is_base) {
    struct rp_refpoint *b;
    rv = rp_refpoint_check_base (rp, v, &b, &why);
    if (rv == RV_OK) {
      free (rp->base_setting);
      rp->base_setting = rp_strdup (v);
    }
  }
  else {
    char **disks = rp_args_disk_list (v, &why);
    rv = disks ? rp_refpoint_check_disks (rp, disks, &why)
               : RV_INVALID_PARAMETER;
    if (rv == RV_OK) {
      rp_strv_free (rp->disks_setting);
      rp->disks_setting = disks;
    }
    else
      rp_strv_free (disks);
  }
  if (rv == RV_OK)
    rp_refpoint_save (rp);
  pthread_mutex_unlock (&rp->sys->core->lock);
  free (why);
  return rv;
}
