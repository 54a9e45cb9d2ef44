/* The backend interface: what the core needs from whatever serves a
 * system's disks.  One struct of operations per kind of server, in the
 * spirit of QEMU's BlockDriver and nbdkit's plugin struct:
 *
 *   rp_backend_qsd   qsd.c   rpfs's own qemu-storage-daemon (offline disks)
 *   rp_backend_vm    vm.c    a running VM's QEMU ("qmp = SOCKET")
 *   rp_backend_libvirt  libvirt.c  a libvirt domain ("libvirt-domain =
 *                    NAME"): checkpoints and pull-mode backup jobs
 *
 * Both are QEMU and share their block graph code (qemu.c, tracking.c,
 * bitmaps.c: the "QEMU family", qemu.h), which fills most of their slots.
 * backend.c is the one place that picks a backend for a system
 * (rp_backend_for) and holds the generic wrappers the rest of the core
 * calls; nothing outside core/backends/ asks which backend a system has.
 * An operation a backend lacks is NULL: the wrapper turns that into
 * RV_NOT_SUPPORTED with one clear description (or the documented default).
 *
 * Conventions: every operation runs with sys->op_lock held (except `what`
 * and disk_endpoint).  Operations that are steps of a method return a ReturnValue
 * (enum rp_rv) and, on failure, a malloc'd description in *why; the others
 * return 0 / -1 with *err, as said below.  docs/design.md, "Backends",
 * says what each must guarantee. */
#ifndef RPFS_BACKEND_H
#define RPFS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rp_system;
struct rp_refpoint;
struct rp_conf;

/* An NBD export to read: the Unix socket of the server, the export name and,
 * for the changes between two reference points, the dirty bitmap it carries
 * (read as the "qemu:dirty-bitmap:BITMAP" meta context), else NULL.  All
 * three malloc'd; rp_endpoint_clear frees them. */
#define RP_EP_MAX_LAYERS 128
struct rp_endpoint {
  char *sock;
  char *name;
  char *bitmap;
  uint32_t read_max;            /* bytes per read request (the backend's
                                   read_max; 0: the reader's default) */
  /* An older reference point's disk is a chain of exports on SOCK
   * (dataplane/source.h): NAME, then BELOW (NULL-terminated, the live one
   * last; NULL: NAME alone).  depth[0] is how deep NAME's own data goes in
   * qemu:allocation-depth, depth[i + 1] below[i]'s (the last one's is not
   * used: all of it is read through). */
  char **below;
  uint32_t depth[RP_EP_MAX_LAYERS];
  /* What the backend keeps alive for this endpoint's readers, released by
   * rp_endpoint_clear (NULL: nothing). */
  void (*unpin) (void *pin);
  void *pin;
};
void rp_endpoint_clear (struct rp_endpoint *ep);

struct rp_backend {
  const char *name;             /* "qemu-storage-daemon", "vm" */
  size_t state_size;            /* its private state (sys->bstate), zeroed */
  /* Bytes per NBD read request its server serves best (0: the copy's
   * default, 256 KiB).  A QEMU with glibc's default malloc maps and unmaps
   * a buffer for every large request (docs/performance.md, "The running
   * VM's floor"); rpfs's own daemon runs with tuned malloc (proc.c) and
   * serves 2 MiB requests with less CPU than 8 of 256 KiB. */
  uint32_t read_max;

  /* "the qemu-storage-daemon of web01", for messages (caller frees). */
  char *(*what) (struct rp_system *sys);
  /* Checks that need nothing running (the image formats), before the first
   * start: 0, or -1 with *err naming file and line.  NULL: none. */
  int (*check) (struct rp_system *sys, char **err);
  /* Start (or attach to) the server and publish the current disks.  0; -1
   * the definition does not match (*err names file and line; the mount
   * fails); -2 not reachable now (the system is listed and answers 32777
   * until a later call gets through). */
  int (*start) (struct rp_system *sys, char **err);
  /* After a successful start: compare every reference point with the
   * tracking the disks carry (mark lost ones broken), and keep or drop each
   * one's point-in-time data.  0, or the start result to report (-1 / -2);
   * the generic start then stops the backend.  NULL: nothing to check. */
  int (*check_tracking) (struct rp_system *sys);
  /* Stop or detach.  Tracking must be written back (persistent), so that
   * the next start finds it.  Never fails; the server may be gone. */
  void (*stop) (struct rp_system *sys);
  /* The server is there and its control connection usable. */
  bool (*alive) (struct rp_system *sys);
  /* Before an operation: 0 if the server can be used as it is; 1 if it
   * went away (or must be replaced) and what was left of it was cleaned up,
   * so that the generic layer starts it again.  NULL: !alive. */
  int (*revive) (struct rp_system *sys);
  /* One round trip: 0, -1 failed (*err), -3 no answer in time (*err). */
  int (*ping) (struct rp_system *sys, char **err);
  /* The operation that just failed was cut short by a timeout (the server
   * is slow, not gone); any cached view of the disks is forgotten. */
  bool (*timed_out) (struct rp_system *sys);
  /* The mount's disks/<id> may be written (offline disks), or only read
   * (a running guest owns them).  NULL: false. */
  bool (*disks_writable) (struct rp_system *sys);

  /* Application consistency.  freezable: a freeze can be tried at all
   * (the system names a way to reach the guest); freeze: quiesce the
   * guest's file systems, RV_OK with *token, RV_NOT_SUPPORTED (not possible
   * now: the caller may fall back to crash consistency) or RV_FAILED with
   * *why; thaw: always called after a successful freeze, on every path.
   * freeze NULL: nothing runs on the disks (offline), a creation is
   * application consistent as it is. */
  bool (*freezable) (struct rp_system *sys);
  int (*freeze) (struct rp_system *sys, void **token, char **why);
  void (*thaw) (struct rp_system *sys, void *token);

  /* Create reference point RP (prepared by rpops.c: name, instance id,
   * type, consistency, disk_ids, dir with its config; rp->seq is a floor
   * above every known record).  In ONE atomic step over all disks: stop the
   * previous tracking and start RP's, and with rp->type == 1 start keeping
   * the point-in-time data; for rp->consistency == 1 the guest is frozen
   * around that step only (rp_backend_freeze, which may lower
   * rp->consistency and leave a *note).  Sets rp->seq (above every tracking
   * the disks carry) and rp->bitmap (the tracking's name, recorded as
   * ResilientChangeTrackingIdentifier), may set rp->qemu_nodes.  RV_OK (the
   * data, if asked, published at disk_endpoint), or an RV with *why and
   * nothing left behind. */
  int (*create) (struct rp_system *sys, struct rp_refpoint *rp, char **note,
                 char **why);
  /* Remove RP's tracking, folding its changes into its predecessor's so
   * every older base still sees every change (docs/design.md, "The
   * tracking invariant").  RP's data is already dropped.  Also undoes a
   * create whose record could not be written. */
  int (*destroy) (struct rp_system *sys, struct rp_refpoint *rp, char **why);
  /* Drop RP's point-in-time data (and its scratch files), keep its
   * tracking.  0, or -1 when the server did not answer in time: the data
   * and its files stay (running it again finishes it). */
  int (*drop_data) (struct rp_system *sys, struct rp_refpoint *rp);
  /* The current disk DI (RP NULL) or disk DI at RP (which has data).
   * 0, or -1 with *err.  Called WITHOUT op_lock (opening a disk file must
   * not wait for a creation): it must not talk to the server. */
  int (*disk_endpoint) (struct rp_system *sys, struct rp_refpoint *rp,
                        size_t di, struct rp_endpoint *ep, char **err);
  /* A differential's source for disk DI: RP's point-in-time disk with a
   * dirty bitmap that holds every cluster changed between BASE and RP (and
   * may hold more, never less).  TAG names it (the job id) so exports of
   * one system do not collide.  RV_OK with *ep, RV_INVALID_STATE when the
   * tracking between them is missing or inconsistent, RV_FAILED /
   * RV_NOT_AVAILABLE.  changes_close releases it (the server may be gone). */
  int (*changes_open) (struct rp_system *sys, struct rp_refpoint *rp,
                       struct rp_refpoint *base, size_t di, const char *tag,
                       struct rp_endpoint *ep, char **why);
  void (*changes_close) (struct rp_system *sys, size_t di,
                         struct rp_endpoint *ep);
  /* Import: disk DI still carries tracking TRACKING (consistent).  1 yes;
   * 0 no, *why its state ("missing", "inconsistent", ...); -1 cannot tell,
   * *why. */
  int (*has_tracking) (struct rp_system *sys, size_t di,
                       const char *tracking, char **why);
  /* Import registered RP (RCT based, its record not yet written) after
   * has_tracking found it on every disk: a server that keeps its own
   * record of the tracking learns it again (libvirt: the checkpoint is
   * redefined).  RV_OK, or an RV with *why (the import fails).  NULL:
   * nothing to do. */
  int (*imported) (struct rp_system *sys, struct rp_refpoint *rp,
                   char **why);
  /* The guest's I/O so far, over all its devices: requests and their summed
   * latency (export pacing, adapt.c).  false: not available. */
  bool (*io_stats) (struct rp_system *sys, uint64_t *ops, uint64_t *ns);
};

extern const struct rp_backend rp_backend_qsd;
extern const struct rp_backend rp_backend_vm;
extern const struct rp_backend rp_backend_libvirt;

/* backend.c: the generic layer. */
/* The backend that serves systems defined by CONF. */
const struct rp_backend *rp_backend_for (const struct rp_conf *conf);
/* Bind SYS to its backend (system load) / release its state (free). */
void rp_backend_bind (struct rp_system *sys);
void rp_backend_release (struct rp_system *sys);

char *rp_backend_what (struct rp_system *sys);
int rp_backend_check (struct rp_system *sys, char **err);
/* start + check_tracking: 0, -1 or -2 as for `start`. */
int rp_backend_start (struct rp_system *sys, char **err);
void rp_backend_stop (struct rp_system *sys);
bool rp_backend_alive (struct rp_system *sys);
/* Start it again if it went away: 0, or -1 / -2 with *err. */
int rp_backend_ensure (struct rp_system *sys, char **err);
/* After an I/O error: alive, confirmed by a round trip. */
bool rp_backend_answers (struct rp_system *sys);
/* rp_backend_ensure plus a round trip, for a method: RV_OK,
 * RV_NOT_AVAILABLE or RV_TIMEOUT (nothing changed) with *why. */
int rp_backend_require (struct rp_system *sys, char **why);
/* A method's failure RV caused by a timeout becomes RV_TIMEOUT (and *why
 * says so). */
int rp_backend_timeout_rv (struct rp_system *sys, int rv, char **why);
bool rp_backend_disks_writable (struct rp_system *sys);
/* A ConsistencyLevel=1 request can be met, or fall back (checks only). */
bool rp_backend_app_consistency (struct rp_system *sys);
/* For backends' create: freeze the guest for RP when rp->consistency is 1
 * and the backend freezes; with consistency-fallback = crash a freeze that
 * is not possible lowers rp->consistency to 2 and says so in *note.  RV_OK
 * with *token (NULL: nothing frozen), else an RV with *why. */
int rp_backend_freeze (struct rp_system *sys, struct rp_refpoint *rp,
                       void **token, char **note, char **why);
void rp_backend_thaw (struct rp_system *sys, void *token);
int rp_backend_create (struct rp_system *sys, struct rp_refpoint *rp,
                       char **note, char **why);
int rp_backend_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                        char **why);
/* A create succeeded but its record could not be written: drop the data
 * (no record) and destroy the tracking again; failures are logged. */
void rp_backend_undo_create (struct rp_system *sys, struct rp_refpoint *rp);
/* drop_data, then RP's record says it has none.  0 or -1 (timeout). */
int rp_backend_drop_data (struct rp_system *sys, struct rp_refpoint *rp);
int rp_backend_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                              size_t di, struct rp_endpoint *ep, char **err);
int rp_backend_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                             struct rp_refpoint *base, size_t di,
                             const char *tag, struct rp_endpoint *ep,
                             char **why);
void rp_backend_changes_close (struct rp_system *sys, size_t di,
                               struct rp_endpoint *ep);
int rp_backend_has_tracking (struct rp_system *sys, size_t di,
                             const char *tracking, char **why);
int rp_backend_imported (struct rp_system *sys, struct rp_refpoint *rp,
                         char **why);
bool rp_backend_io_stats (struct rp_system *sys, uint64_t *ops,
                          uint64_t *ns);

#endif
