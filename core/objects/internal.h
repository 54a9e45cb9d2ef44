/* rpfs core internals: the object model shared by the orchestration modules
 * (core.c, system.c, refpoint.c, job.c, export.c, copy.c, diskio.c,
 * import.c, calls.c, and the backends: backend.h).
 *
 * Thread model: one mutex, core->lock, guards the object graph (the systems'
 * reference point lists, every reference point's and job's fields, the job
 * list, results).  It is held only for short, non-blocking sections: never
 * across QMP, process runs or NBD I/O.  Each system has op_lock, which
 * serialises changes to its QEMU block graph (create, destroy, fleecing,
 * export set-up and tear-down, QEMU restarts).  Lock order: op_lock, then
 * core->lock.  Objects handed out to the frontend are reference counted
 * (under core->lock); a destroyed reference point stays allocated until its
 * last reference is dropped. */
#ifndef RPFS_INTERNAL_H
#define RPFS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "rpfs.h"
#include "conf.h"
#include "qmp.h"
#include "backend.h"
#include <jansson.h>
#include "util.h"

#define RP_BITMAP_PREFIX "rpfs-"
#define RP_GUARD_BITMAP "rpfs-guard"
/* Bound on every QMP reply: 60 s, or the test-only environment variable
 * RPFS_QMP_TIMEOUT_MS (qsd.c).  A command without a reply in time fails its
 * operation with 32772; RP_QMP_STUCK such commands in a row make QEMU count
 * as stuck: it is asked to quit (SIGTERM, which writes the bitmaps) and
 * killed only if it does not, RP_QEMU_GRACE_MS later. */
int rp_qmp_timeout_ms (void);
#define RP_QMP_TIMEOUT_MS rp_qmp_timeout_ms ()
#define RP_QMP_STUCK 3
#define RP_QEMU_GRACE_MS 20000

struct rp_result {              /* a caller's last result of one method */
  struct rp_result *next;
  char *method;
  uid_t uid;
  char *line;                   /* "<rv> <job-id> <description>\n" */
};

struct rp_disk {
  char *id;
  char *path;
  int line;                     /* line in the definition, for messages */
  char node[32];                /* format node in QEMU: "d<i>" in the storage
                                   daemon, the VM's own name otherwise */
  uint64_t size;                /* virtual size */
};

struct rp_system {
  struct rp_core *core;
  unsigned index;
  char *name;
  bool auto_domain;             /* added for a domain of STORE/rpfs.conf's
                                   "libvirt = URI" (no definition file) */
  bool hidden;                  /* its domain was undefined (core->lock) */
  char *conf_path;
  struct rp_conf *conf;
  char *uuid;
  char *statedir;               /* STORE/state/NAME */
  char *nbd_path;               /* STORE/run/N.nbd */
  char *log_path;               /* STORE/log/NAME.log */
  struct rp_disk *disks;
  size_t ndisks;

  pthread_mutex_t op_lock;
  const struct rp_backend *backend;   /* what serves the disks (backend.c) */
  void *bstate;                 /* the backend's own state (state_size) */
  struct rp_qmp *qmp;           /* QEMU family: the monitor, once attached */
  char *qemu_version;           /* of the QEMU serving it, once attached */
  struct rp_bitmaps *bmcache;   /* the disks' bitmaps as rpfs last saw or
                                   made them, NULL: ask QEMU (op_lock) */
  unsigned generation;          /* bumped at every QEMU start */
  struct rp_link **links;       /* QEMU family: the fleecing chain (chain.c,
                                   core->lock), sorted by sequence */
  size_t nlinks;

  struct rp_refpoint **rps;     /* creation order (core->lock) */
  size_t nrps;
  struct rp_result *results;    /* core->lock */
};

struct rp_refpoint {
  int refs;                     /* core->lock */
  struct rp_system *sys;
  char *name;
  char instance_id[37];
  unsigned seq;                 /* order of creation, in the bitmap name */
  char *bitmap;                 /* persistent bitmap name on every disk */
  int type;                     /* 1 log based, 2 RCT based */
  int consistency;              /* 1 application, 2 crash */
  time_t created;
  char **disk_ids;              /* disks at creation */
  char *qemu_version;           /* QEMU that made it (NULL: unknown) */
  char **qemu_nodes;            /* "disk=node" in a running VM, else NULL */
  char *dir;                    /* STORE/state/NAME/rp/RPNAME */

  bool has_data;                /* fleecing attached in QEMU now */
  unsigned layers;              /* scratch layers per disk (tracking.c) */
  char *broken;                 /* why tracking cannot serve as a base */
  time_t broken_at;             /* when rpfs found it so (0: unknown) */
  char *dig_bad;                /* why its digest tables cannot serve */
  bool destroyed;
  int busy;                     /* running jobs and open disk files */
  bool exporting;
  char *base_setting;           /* ExportSettingData/BaseReferencePoint */
  char **disks_setting;         /* ExportSettingData/DisksToExport */
  bool drop_setting;            /* ExportSettingData/KeepAssociatedData false */
  char *job_id;                 /* newest method call */
  char **exports;               /* "disk=/abs/path.qcow2" of the last export */
  char *export_archive;         /* that export's archive file, if it was one */
  int format;                   /* ExportSettingData/Format (archive.h) */
  struct rp_result *results;
};

enum rp_job_type {
  JOB_CREATE = 201, JOB_DESTROY = 202, JOB_EXPORT = 203,
  JOB_REMOVE_DATA = 204, JOB_IMPORT = 209,
  JOB_VERIFY = 210,             /* VerifyExport (rpfs's own) */
};
enum rp_job_state {
  JS_NEW = 2, JS_STARTING = 3, JS_RUNNING = 4, JS_COMPLETED = 7,
  JS_TERMINATED = 8, JS_EXCEPTION = 10,
};

struct rp_job {
  int refs;                     /* core->lock */
  struct rp_core *core;
  struct rp_system *sys;        /* whose operators control it (access.c) */
  uid_t submitter;              /* the caller that made it */
  char *id;                     /* directory name under jobs/ */
  char instance_id[37];
  int type;
  int state;
  int percent;
  int rv;                       /* the method's ReturnValue */
  int error_code;
  char *error_desc;
  char *activity;               /* what a running job does, for status */
  bool cancellable;
  atomic_bool cancel;
  time_t submitted, started, changed;
  struct timespec t0, t1;       /* monotonic start / end */
  char *export_dir;
  char *rp_id, *base_id;
  char **exported_disks;
  pthread_t thread;
  bool has_thread;
  void *work;                   /* the running operation's state */
};

struct rp_core {
  char *store;
  char *mountpoint;             /* absolute, as given */
  char *mount_real;             /* realpath of the mount point */
  pthread_mutex_t lock;
  struct rp_system **systems;
  size_t nsystems;
  struct rp_job **jobs;
  size_t njobs;
  unsigned long jobseq;
  rp_notify_fn notify;
  void *notify_opaque;
  bool closing;
  int lock_fd;                  /* flock on STORE/state/lock */
  char *libvirt_uri;            /* STORE/rpfs.conf "libvirt = URI", or NULL */
  void *lvstore;                /* that connection's watcher (lvstore.c) */
};

/* storeconf.c: STORE/rpfs.conf into core (0, or -1 with *err). */
int rp_store_conf_load (struct rp_core *core, char **err);
/* system.c: a system for libvirt domain NAME on core->libvirt_uri, unless
 * one of that name exists (a hidden one is shown again).  Called at load
 * and when libvirt says a domain was defined; 0, or -1 with *err. */
int rp_core_add_domain (struct rp_core *core, const char *name, char **err);
/* A domain was undefined: its system (added for it) is hidden from the
 * tree; the object stays until unmount (jobs may refer to it). */
void rp_core_hide_domain (struct rp_core *core, const char *name);
/* lvstore.c: list the domains of core->libvirt_uri, add them, and follow
 * definitions and undefinitions (0, or -1 with *err); stop following. */
int rp_lvstore_start (struct rp_core *core, char **err);
void rp_lvstore_stop (struct rp_core *core);

/* core.c */
void rp_notify (struct rp_core *core, enum rp_event ev, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* system.c */
int rp_system_load (struct rp_core *core, const char *conf_path,
                    const char *name, char **err);
void rp_system_free (struct rp_system *sys);
void rp_system_result_set (struct rp_result **list, const char *method,
                           uid_t uid, int rv, const char *job_id,
                           const char *desc);
char *rp_system_result_get (struct rp_result *list, const char *method,
                            uid_t uid);
void rp_results_free (struct rp_result *list);
int rp_disk_index (struct rp_system *sys, const char *id);

/* The server of a system's disks is reached through its backend only
 * (backend.h: rp_backend_start, _stop, _ensure, _require, ...). */

/* bitmaps.c */
struct rp_bitmap {
  char *name;
  unsigned seq;                 /* 0 for a bitmap not made by rpfs */
  bool recording, inconsistent, busy, persistent;
  uint64_t count;
};
struct rp_bitmaps {
  struct rp_bitmap *v;
  size_t n;
};
char *rp_bitmap_name (unsigned seq, const char *uuid);
unsigned rp_bitmap_seq (const char *name);   /* 0 if not ours */
/* Query the bitmaps of format node NODE (sorted by seq). 0 or -1 with *err */
int rp_bitmaps_query (struct rp_qmp *q, const char *node,
                      struct rp_bitmaps *out, char **err);
/* The same for N nodes at once (OUT[N]); on failure nothing to free. */
int rp_bitmaps_query_nodes (struct rp_qmp *q, const char *const *nodes,
                            size_t n, struct rp_bitmaps *out, char **err);
/* Every disk of SYS, into OUT[sys->ndisks]. */
int rp_bitmaps_query_disks (struct rp_system *sys, struct rp_bitmaps *out,
                            char **err);
/* The disks' bitmaps for a creation, from the cache when it is valid (QEMU
 * takes long to list a graph with many fleecing layers): a copy in
 * OUT[sys->ndisks], or -1 with *err.  op_lock held. */
int rp_bitmaps_cached (struct rp_system *sys, struct rp_bitmaps *out,
                       char **err);
/* The same for disk DI alone (an export's differential). */
int rp_bitmaps_cached_disk (struct rp_system *sys, size_t di,
                            struct rp_bitmaps *out, char **err);
/* A creation added bitmap NAME (recording) and stopped the others. */
void rp_bitmaps_note_created (struct rp_system *sys, const char *name);
/* Anything else changed them (or may have): ask QEMU next time. */
void rp_bitmaps_invalidate (struct rp_system *sys);
const struct rp_bitmap *rp_bitmaps_find (const struct rp_bitmaps *b,
                                         const char *name);
void rp_bitmaps_free (struct rp_bitmaps *b);

/* refpoint.c */
struct rp_refpoint *rp_refpoint_find (struct rp_system *sys, const char *name_or_id);  /* core->lock held */
int rp_refpoint_load_all (struct rp_system *sys, char **err);
int rp_refpoint_save (struct rp_refpoint *rp);
void rp_refpoint_free (struct rp_refpoint *rp);
/* SYS's reference points now (*N of them), each held (+1 ref), to walk
 * without core->lock; rp_release_rps puts them and frees the array. */
struct rp_refpoint **rp_system_hold_rps (struct rp_system *sys, size_t *n);
void rp_release_rps (struct rp_refpoint **rps, size_t n);
struct rp_kv *rp_refpoint_record (struct rp_refpoint *rp, bool local);
int rp_refpoint_check_base (struct rp_refpoint *rp, const char *base,
                            struct rp_refpoint **out, char **why);
int rp_refpoint_check_disks (struct rp_refpoint *rp, char **disks,
                             char **why);
/* "true" / "false" of KeepAssociatedData: 0 with *KEEP, or -1 with *why. */
int rp_refpoint_parse_keep (const char *v, bool *keep, char **why);
void rp_refpoint_set_broken (struct rp_refpoint *rp, const char *why);
void rp_job_set_activity (struct rp_job *job, char *what);  /* takes WHAT */

/* job.c */
/* A job of SYS submitted by WHO; +1 ref. */
struct rp_job *rp_job_new (struct rp_system *sys, int type,
                           const struct rp_caller *who);
void rp_job_set_state (struct rp_job *job, int state);
void rp_job_set_percent (struct rp_job *job, int percent);
/* Finish: state 7 when RV_OK, else 10 with ErrorCode RV and DESC. */
void rp_job_finish (struct rp_job *job, int rv, const char *desc);
void rp_job_free (struct rp_job *job);
void rp_jobs_terminate_all (struct rp_core *core);

/* rpops.c (op_lock held); rp_import takes op_lock itself, once it has
 * read the caller's files */
int rp_create (struct rp_system *sys, const char *name, int type, int level,
               struct rp_job *job, struct rp_refpoint **out, char **why);
int rp_destroy (struct rp_system *sys, struct rp_refpoint *rp, char **why);
int rp_remove_data (struct rp_system *sys, struct rp_refpoint *rp,
                    char **why);
/* JOB NULL: check only. */
int rp_import (struct rp_system *sys, const char *buf, size_t len,
               const struct rp_caller *who, struct rp_job *job,
               struct rp_refpoint **out, char **why);

/* digest.c: lower-case hex SHA-256 of a buffer. */
void rp_sha256_buf (const void *buf, size_t len, char hex[65]);
/* Seal a finished file (FD, named PATH in messages; the seal keeps its own
 * descriptor) in the background: its SHA-256 and fdatasync run in
 * two threads at once; *CANCEL (may be NULL) going true stops the hash.
 * finish waits and returns 0 with HEX, or an errno with *err; abort stops
 * the hash, waits and discards.  Both free S. */
struct rp_seal;
struct rp_seal *rp_seal_start (int fd, const char *path,
                               atomic_bool *cancel, char **err);
int rp_seal_finish (struct rp_seal *s, char hex[65], char **err);
void rp_seal_abort (struct rp_seal *s);

/* export.c */
void rp_export_cleanup (struct rp_core *core);
/* JOB NULL: run every check, start nothing (RV_OK if it would start). */
int rp_export_start (struct rp_refpoint *rp, const char *buf, size_t len,
                     const struct rp_caller *who, struct rp_job *job,
                     char **desc);

/* copy.c: the full copy's plan of the disk at endpoint EP: COPY ops (at
 * most 2 MiB, sorted, each from one export of EP's chain) for every range
 * that does not read as zero, and the disk's *SIZE.  0, or an errno with
 * *err. */
struct rp_ops;
struct rp_endpoint;
int rp_copy_plan (const struct rp_endpoint *ep, struct rp_ops *ops,
                  uint64_t *size, char **err);

/* verify.c: VerifyExport.  JOB NULL: only check (RV_OK if it would start). */
int rp_verify_start (struct rp_refpoint *rp, const char *buf, size_t len,
                     const struct rp_caller *who, struct rp_job *job,
                     char **desc);
/* copy.c: copy one disk.  EP: the point-in-time disk (source.h), read in
 * requests of ep->read_max bytes (0: 256 KiB; at most 2 MiB); its bitmap,
 * if any, makes the copy a differential one; DST: target
 * qcow2 (already created).  RATE: the job's bandwidth cap, or NULL.
 * PROGRESS(opaque, done, total) may be called from worker threads.  BH: the
 * disk's digest table being computed (blockhash.h), or NULL.  Returns
 * 0, or an errno with *err. */
struct rp_rate;
struct rp_bh;
typedef void (*rp_progress_fn) (void *opaque, uint64_t done, uint64_t total);
struct rp_copy_stats { uint64_t copied, zeroed, total; };
int rp_copy_disk (const struct rp_endpoint *ep, const char *dst_path,
                  const char *dst_name, const char *run_dir, atomic_bool *cancel,
                  struct rp_rate *rate, rp_progress_fn progress, void *opaque,
                  struct rp_bh *bh, struct rp_copy_stats *stats, char **err);
#endif
