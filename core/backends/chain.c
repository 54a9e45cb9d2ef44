/* The fleecing chain: the point-in-time data of every log based reference
 * point of a QEMU-family system, with one backup job (docs/design.md, "The
 * fleecing chain").
 *
 * Each reference point with data is a link (fleece.c): scratch nodes that
 * its backup job filled with what the guest overwrote.  When a newer log
 * based reference point is created, the older link's job is cancelled (it
 * is "reaped"): from then on its scratch holds exactly what was overwritten
 * between its creation and the newer one's, and the newer link holds the
 * rest.  So the disk at an older reference point is its own scratch, over
 * the next link's, ... over the newest link's export, which reads through
 * to the live disk; rpfs's readers compose it (dataplane/source.h).  One
 * copy-before-write filter in the graph, whatever the number of points.
 *
 * A link whose reference point loses its data (RemoveAssociatedData, rmdir)
 * while an older one still needs it is kept: its files move to
 * STATE/kept/SEQ with a small record, until no older link is left.
 * A link stays live (its job runs) while readers rely on it (pins), and is
 * reaped at the next operation after they let go.
 *
 * sys->links is sorted by sequence; changed with op_lock and core->lock
 * held, read under core->lock. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qemu.h"

static struct rp_link *
link_new (struct rp_system *sys, unsigned seq, unsigned layers,
          const char *dir, char *const *disk_ids, struct rp_refpoint *rp)
{
  struct rp_link *l = rp_calloc (1, sizeof *l);
  l->sys = sys;
  l->seq = seq;
  l->layers = layers;
  l->dir = rp_strdup (dir);
  l->disk_ids = rp_calloc (1, sizeof (char *));
  for (size_t i = 0; disk_ids[i]; i++)
    l->disk_ids = rp_strv_push (l->disk_ids, disk_ids[i]);
  l->rp = rp;
  return l;
}

static void
link_free (struct rp_link *l)
{
  free (l->dir);
  rp_strv_free (l->disk_ids);
  free (l);
}

/* Take L out of the list (core->lock): freed now, or by its last reader. */
static void
link_remove (struct rp_system *sys, struct rp_link *l)
{
  pthread_mutex_lock (&sys->core->lock);
  for (size_t i = 0; i < sys->nlinks; i++)
    if (sys->links[i] == l) {
      memmove (&sys->links[i], &sys->links[i + 1],
               (sys->nlinks - i - 1) * sizeof *sys->links);
      sys->nlinks--;
      break;
    }
  bool now = l->pins == 0;
  l->gone = true;
  pthread_mutex_unlock (&sys->core->lock);
  if (now)
    link_free (l);
}

static void
link_insert (struct rp_system *sys, struct rp_link *l)
{
  pthread_mutex_lock (&sys->core->lock);
  struct rp_link **nv = realloc (sys->links,
                                 (sys->nlinks + 1) * sizeof *nv);
  if (!nv)
    abort ();
  sys->links = nv;
  size_t at = sys->nlinks;
  while (at > 0 && sys->links[at - 1]->seq > l->seq)
    at--;
  memmove (&sys->links[at + 1], &sys->links[at],
           (sys->nlinks - at) * sizeof *sys->links);
  sys->links[at] = l;
  sys->nlinks++;
  pthread_mutex_unlock (&sys->core->lock);
}

static void
unpin (void *pin)
{
  struct rp_link *l = pin;
  struct rp_core *core = l->sys->core;
  pthread_mutex_lock (&core->lock);
  bool last = --l->pins == 0 && l->gone;
  pthread_mutex_unlock (&core->lock);
  if (last)
    link_free (l);
}

/* ---- reaping: one live job ---- */

/* Every link newer than links[I] covers all of its disks (else its job
 * must go on for the disks a newer one does not fleece). */
static bool
covered (struct rp_system *sys, size_t i)
{
  for (size_t j = i + 1; j < sys->nlinks; j++)
    for (size_t k = 0; sys->links[i]->disk_ids[k]; k++)
      if (!rp_strv_contains (sys->links[j]->disk_ids,
                             sys->links[i]->disk_ids[k]))
        return false;
  return true;
}

/* Cancel the jobs of every link but the newest that no reader relies on. */
static void
reap (struct rp_system *sys)
{
  for (;;) {
    struct rp_link *go = NULL;
    pthread_mutex_lock (&sys->core->lock);
    for (size_t i = 0; !go && i + 1 < sys->nlinks; i++) {
      struct rp_link *l = sys->links[i];
      if (l->job && l->pins == 0 && covered (sys, i)) {
        l->job = false;         /* no new reader relies on it from now */
        go = l;
      }
    }
    pthread_mutex_unlock (&sys->core->lock);
    if (!go)
      return;
    /* A job that cannot be cancelled now only copies more of what its
     * reference point holds anyway: harmless. */
    rp_link_cancel_jobs (go);
  }
}

/* ---- creation ---- */

struct rp_link *
rp_chain_prepare (struct rp_refpoint *rp, char **why)
{
  struct rp_link *l = link_new (rp->sys, rp->seq, 0, rp->dir, rp->disk_ids,
                                rp);
  if (rp_link_nodes (l, true, why) != 0) {
    link_free (l);
    return NULL;
  }
  return l;
}

void
rp_chain_abort (struct rp_link *l)
{
  rp_link_teardown (l, rp_strv_len (l->disk_ids), true);
  link_free (l);
}

int
rp_chain_commit (struct rp_link *l, char **why)
{
  if (rp_link_exports (l, why) != 0)
    return -1;
  l->job = true;
  l->rp->layers = l->layers;
  link_insert (l->sys, l);
  reap (l->sys);
  return 0;
}

/* ---- losing data ---- */

/* A kept link's record, in DIR: what a restart needs to open it again. */
static int
kept_record (struct rp_link *l, const char *dir, char **err)
{
  struct rp_kv *kv = rp_kv_new ();
  char n[16];
  snprintf (n, sizeof n, "%u", l->seq);
  rp_kv_add (kv, "Sequence", n);
  snprintf (n, sizeof n, "%u", l->layers);
  rp_kv_add (kv, "FleeceLayers", n);
  for (size_t i = 0; l->disk_ids[i]; i++)
    rp_kv_add (kv, "disk", l->disk_ids[i]);
  CLEANUP_FREE char *text = rp_kv_render (kv);
  rp_kv_free (kv);
  CLEANUP_FREE char *path = rp_asprintf ("%s/record", dir);
  if (rp_write_file_atomic (path, text, strlen (text), 0600) != 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  return 0;
}

/* L's directory is STATE/kept/SEQ (never a reference point's own). */
static bool
in_kept (struct rp_system *sys, const struct rp_link *l)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/kept/%u", sys->statedir,
                                        l->seq);
  return !strcmp (l->dir, dir);
}

/* Tear link L down for good: its nodes, its files, a kept link's
 * directory.  0, or -3 (QEMU did not answer; nothing is removed). */
static int
drop_link (struct rp_system *sys, struct rp_link *l)
{
  if (rp_link_teardown (l, rp_strv_len (l->disk_ids), !l->orphan) == -3)
    return -3;
  if (!l->rp && in_kept (sys, l))
    rp_rm_rf (l->dir);
  link_remove (sys, l);
  return 0;
}

/* The chain is broken at L (its scratch could not be kept): the links
 * up to L go, and the reference points among them lose their data. */
static void
drop_upto (struct rp_system *sys, unsigned seq, const char *why)
{
  for (;;) {
    pthread_mutex_lock (&sys->core->lock);
    struct rp_link *l = sys->nlinks && sys->links[0]->seq <= seq
      ? sys->links[0] : NULL;
    struct rp_refpoint *rp = l ? l->rp : NULL;
    pthread_mutex_unlock (&sys->core->lock);
    if (!l)
      return;
    if (rp) {
      fprintf (stderr, "rpfs: %s/%s: point-in-time data dropped: %s\n",
               sys->name, rp->name, why);
      pthread_mutex_lock (&sys->core->lock);
      rp->has_data = false;
      rp->layers = 0;
      rp_refpoint_save (rp);
      pthread_mutex_unlock (&sys->core->lock);
    }
    if (drop_link (sys, l) == -3) {
      l->orphan = true;         /* its files are gone; QEMU's nodes wait */
      link_remove (sys, l);
    }
  }
}

/* Keep L (an older link needs it) without its reference point: the record
 * first, then the files, into STATE/kept/SEQ.  If that fails, the older
 * links cannot be served any more. */
static void
keep (struct rp_system *sys, struct rp_link *l)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/kept/%u", sys->statedir,
                                        l->seq);
  char *e = NULL;
  if (rp_mkdir_p (dir, 0700) != 0)
    e = rp_asprintf ("%s: %s", dir, strerror (errno));
  if (!e && kept_record (l, dir, &e) == 0)
    rp_link_move_files (l, dir, &e);
  pthread_mutex_lock (&sys->core->lock);
  l->rp = NULL;
  pthread_mutex_unlock (&sys->core->lock);
  if (e) {
    CLEANUP_FREE char *why = rp_asprintf ("the scratch of a newer reference "
                                          "point could not be kept: %s", e);
    free (e);
    drop_upto (sys, l->seq, why);
    rp_rm_rf (dir);
  }
}

/* Kept links at the old end of the chain: no older link needs them. */
static int
sweep (struct rp_system *sys)
{
  for (;;) {
    pthread_mutex_lock (&sys->core->lock);
    struct rp_link *k = sys->nlinks && !sys->links[0]->rp ? sys->links[0]
      : NULL;
    pthread_mutex_unlock (&sys->core->lock);
    if (!k)
      return 0;
    if (drop_link (sys, k) == -3)
      return -1;
  }
}

int
rp_chain_drop (struct rp_system *sys, struct rp_refpoint *rp)
{
  struct rp_link *l = NULL;
  bool oldest = false;
  pthread_mutex_lock (&sys->core->lock);
  for (size_t i = 0; i < sys->nlinks; i++)
    if (sys->links[i]->rp == rp) {
      l = sys->links[i];
      oldest = i == 0;
    }
  pthread_mutex_unlock (&sys->core->lock);
  int r = 0;
  if (l && !oldest)
    keep (sys, l);
  else if (l && drop_link (sys, l) == -3) {
    /* QEMU is slow: the link stays (without RP, which may be freed now:
     * an undone creation), to be torn down by a later sweep; its files
     * stay with RP's directory. */
    pthread_mutex_lock (&sys->core->lock);
    l->rp = NULL;
    l->orphan = true;
    pthread_mutex_unlock (&sys->core->lock);
    r = -1;
  }
  if (sweep (sys) != 0)
    r = -1;
  reap (sys);
  return r;
}

/* ---- readers ---- */

int
rp_chain_endpoint (struct rp_system *sys, struct rp_refpoint *rp, size_t di,
                   struct rp_endpoint *ep, char **err)
{
  const char *id = sys->disks[di].id;
  int r = -1;
  pthread_mutex_lock (&sys->core->lock);
  size_t i = 0;
  while (i < sys->nlinks && sys->links[i]->rp != rp)
    i++;
  for (size_t j = i; j < sys->nlinks && j - i < RP_EP_MAX_LAYERS; j++) {
    struct rp_link *l = sys->links[j];
    if (!rp_strv_contains (l->disk_ids, id))
      break;
    if (j > i) {
      char name[32];
      rp_export_name_rp (name, sizeof name, l->seq, (unsigned) di);
      ep->below = rp_strv_push (ep->below, name);
    }
    ep->depth[j - i] = l->layers;
    if (l->job) {
      l->pins++;
      ep->pin = l;
      ep->unpin = unpin;
      r = 0;
      break;
    }
  }
  pthread_mutex_unlock (&sys->core->lock);
  if (r != 0) {
    rp_strv_free (ep->below);
    ep->below = NULL;
    *err = rp_asprintf ("no point-in-time data of reference point '%s' on "
                        "disk %s", rp->name, id);
  }
  return r;
}

/* ---- after a (re)start ---- */

/* Forget the links (QEMU is new: its nodes are gone, or are looked at
 * again). */
void
rp_chain_forget (struct rp_system *sys)
{
  while (sys->nlinks)
    link_remove (sys, sys->links[sys->nlinks - 1]);
}

/* Links being rebuilt, not yet published in sys->links. */
struct linkv {
  struct rp_link **v;
  size_t n;
};

static void
linkv_insert (struct linkv *c, struct rp_link *l)
{
  c->v = realloc (c->v, (c->n + 1) * sizeof *c->v);
  if (!c->v)
    abort ();
  size_t at = c->n;
  while (at > 0 && c->v[at - 1]->seq > l->seq)
    at--;
  memmove (&c->v[at + 1], &c->v[at], (c->n - at) * sizeof *c->v);
  c->v[at] = l;
  c->n++;
}

/* One kept link from directory SUB, or NULL if its record is unreadable. */
static struct rp_link *
load_one_kept (struct rp_system *sys, const char *sub)
{
  CLEANUP_FREE char *rec = rp_asprintf ("%s/record", sub);
  size_t len;
  CLEANUP_FREE char *text = rp_read_file (rec, &len);
  char *err = NULL;
  struct rp_kv *kv = text ? rp_kv_parse (rec, text, len, &err) : NULL;
  free (err);
  if (!kv)
    return NULL;
  unsigned seq = (unsigned) atoi (rp_kv_get (kv, "Sequence") ?: "0");
  unsigned layers = (unsigned) atoi (rp_kv_get (kv, "FleeceLayers") ?: "0");
  const char **disks = rp_kv_all (kv, "disk");
  struct rp_link *l = NULL;
  if (seq && layers && layers < 1000 && disks && disks[0])
    l = link_new (sys, seq, layers, sub, (char *const *) disks, NULL);
  free (disks);
  rp_kv_free (kv);
  return l;
}

/* The kept links of STATE/kept, into C.  false if one cannot be read: the
 * chain would have a gap. */
static bool
load_kept (struct rp_system *sys, struct linkv *c)
{
  CLEANUP_FREE char *dir = rp_asprintf ("%s/kept", sys->statedir);
  DIR *d = opendir (dir);
  struct dirent *e;
  bool ok = true;
  while (d && (e = readdir (d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    CLEANUP_FREE char *sub = rp_asprintf ("%s/%s", dir, e->d_name);
    struct rp_link *l = load_one_kept (sys, sub);
    if (l)
      linkv_insert (c, l);
    else {
      fprintf (stderr, "rpfs: %s: %s: unreadable record\n", sys->name, sub);
      rp_rm_rf (sub);
      ok = false;
    }
  }
  if (d)
    closedir (d);
  return ok;
}

/* Every link's layer count where a restart finds it, before a job writes
 * into a new layer (a stale count would make the next restart open one
 * layer too few). */
static int
save_layers (struct linkv *c, char **why)
{
  for (size_t i = 0; i < c->n; i++) {
    struct rp_link *l = c->v[i];
    int r;
    if (l->rp) {
      pthread_mutex_lock (&l->sys->core->lock);
      l->rp->layers = l->layers;
      r = rp_refpoint_save (l->rp);
      pthread_mutex_unlock (&l->sys->core->lock);
      if (r != 0)
        *why = rp_asprintf ("cannot write the record in %s: %s", l->rp->dir,
                            strerror (errno));
    }
    else
      r = kept_record (l, l->dir, why);
    if (r != 0)
      return -1;
  }
  return 0;
}

/* Re-open every link under the newest one's new bottom layer, and start
 * the newest one's jobs. */
static int
reattach_all (struct rp_system *sys, struct linkv *c, char **why)
{
  size_t n = c->n;
  for (size_t i = 0; i < n; i++)
    if (rp_link_nodes (c->v[i], i + 1 == n, why) != 0)
      return -1;
  if (save_layers (c, why) != 0)
    return -1;
  json_t *actions = json_array ();
  rp_link_actions (c->v[n - 1], actions);
  char *e = NULL;
  if (rp_qmp_transaction (sys->qmp, actions, &e) != 0) {
    *why = rp_asprintf ("cannot restart fleecing: %s", e);
    free (e);
    return -1;
  }
  c->v[n - 1]->job = true;
  for (size_t i = 0; i < n; i++)
    if (rp_link_exports (c->v[i], why) != 0)
      return -1;
  return 0;
}

/* A running VM kept the chain while rpfs was away: the newest link's jobs
 * must still run (older ones may, if readers pinned them). */
static int
adopt_all (struct rp_system *sys, struct linkv *c, char **why)
{
  json_t *jobs = NULL;
  char *e = NULL;
  if (rp_qmp_cmd (sys->qmp, "query-block-jobs", NULL, &jobs, &e) != 0) {
    *why = rp_asprintf ("QEMU: %s", e);
    free (e);
    return -1;
  }
  size_t n = c->n;
  int r = 0;
  for (size_t i = 0; i < n; i++)
    c->v[i]->job = rp_link_jobs_running (c->v[i], jobs,
                                         i + 1 == n ? why : NULL);
  json_decref (jobs);
  if (!c->v[n - 1]->job)
    return -1;
  for (size_t i = 0; r == 0 && i < n; i++)
    r = rp_link_exports (c->v[i], why);
  return r;
}

/* Everything failed: no reference point keeps data. */
static void
drop_all (struct rp_system *sys, struct linkv *c, const char *why)
{
  for (size_t i = 0; i < c->n; i++) {
    struct rp_link *l = c->v[i];
    rp_link_teardown (l, rp_strv_len (l->disk_ids), true);
    if (l->rp) {
      fprintf (stderr, "rpfs: %s/%s: point-in-time data dropped: %s\n",
               sys->name, l->rp->name, why);
      pthread_mutex_lock (&sys->core->lock);
      l->rp->has_data = false;
      l->rp->layers = 0;
      rp_refpoint_save (l->rp);
      pthread_mutex_unlock (&sys->core->lock);
    }
    else if (in_kept (sys, l))
      rp_rm_rf (l->dir);
    link_free (l);
  }
  c->n = 0;
}

/* The links of the reference points with data and the kept ones; the kept
 * ones at the old end (needed by none) torn down.  false: a gap. */
static bool
collect (struct rp_system *sys, struct linkv *c)
{
  size_t nrps;
  struct rp_refpoint **rps = rp_system_hold_rps (sys, &nrps);
  for (size_t k = 0; k < nrps; k++)
    if (rp_refpoint_has_data (rps[k]))
      linkv_insert (c, link_new (sys, rps[k]->seq, rps[k]->layers,
                                 rps[k]->dir, rps[k]->disk_ids, rps[k]));
  rp_release_rps (rps, nrps);
  bool ok = load_kept (sys, c);
  size_t skip = 0;
  while (skip < c->n && !c->v[skip]->rp) {
    struct rp_link *l = c->v[skip++];
    rp_link_teardown (l, rp_strv_len (l->disk_ids), true);  /* a VM's */
    rp_rm_rf (l->dir);
    link_free (l);
  }
  if (skip) {
    memmove (c->v, c->v + skip, (c->n - skip) * sizeof *c->v);
    c->n -= skip;
  }
  return ok;
}

void
rp_chain_rebuild (struct rp_system *sys, bool guard_ok, bool adopt)
{
  rp_chain_forget (sys);
  struct linkv c = { 0 };
  CLEANUP_FREE char *why = NULL;
  bool whole = collect (sys, &c);
  if (c.n == 0) {
    free (c.v);
    return;
  }
  bool ok = !whole ? (why = rp_strdup ("the record of a kept scratch was "
                                       "unreadable"), false)
    : adopt ? adopt_all (sys, &c, &why) == 0
    : guard_ok && reattach_all (sys, &c, &why) == 0;
  if (!ok)
    drop_all (sys, &c, why ? why : "QEMU did not stop cleanly, or "
              "something wrote the disks while rpfs was not running");
  pthread_mutex_lock (&sys->core->lock);
  free (sys->links);
  sys->links = c.v;
  sys->nlinks = c.n;
  pthread_mutex_unlock (&sys->core->lock);
  /* After a VM's adopt, readers from before the detach may still rely on
   * an older job: its cancel waits for the next creation or removal. */
  if (!adopt)
    reap (sys);
}
