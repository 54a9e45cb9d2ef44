/* rpfs core internals: the object model shared by the orchestration modules
 * (core.c, system.c, qsd.c, bitmaps.c, refpoint.c, job.c, export.c, copy.c,
 * diskio.c, import.c, calls.c).
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
#include <jansson.h>
#include "util.h"

#define RP_BITMAP_PREFIX "rpfs-"
#define RP_GUARD_BITMAP "rpfs-guard"
#define RP_QMP_TIMEOUT_MS 60000     /* bound on every QMP reply */

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
  char *conf_path;
  struct rp_conf *conf;
  char *uuid;
  char *statedir;               /* STORE/state/NAME */
  char *nbd_path;               /* STORE/run/N.nbd */
  char *log_path;               /* STORE/log/NAME.log */
  struct rp_disk *disks;
  size_t ndisks;

  pthread_mutex_t op_lock;
  pid_t qsd_pid;                /* 0: not running (always 0 for a VM) */
  struct rp_qmp *qmp;
  char *qemu_version;           /* of the QEMU serving it, once attached */
  bool vm_nbd;                  /* rpfs started the VM's NBD server */
  struct rp_bitmaps *bmcache;   /* the disks' bitmaps as rpfs last saw or
                                   made them, NULL: ask QEMU (op_lock) */
  unsigned generation;          /* bumped at every QEMU start */

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
};

/* core.c */
void rp_notify (struct rp_core *core, enum rp_event ev, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* system.c */
int rp_system_load (struct rp_core *core, const char *conf_path,
                    const char *name, unsigned index, char **err);
void rp_system_free (struct rp_system *sys);
void rp_system_result_set (struct rp_result **list, const char *method,
                           uid_t uid, int rv, const char *job_id,
                           const char *desc);
char *rp_system_result_get (struct rp_result *list, const char *method,
                            uid_t uid);
void rp_results_free (struct rp_result *list);
int rp_disk_index (struct rp_system *sys, const char *id);

/* The QEMU serving a system: its own qemu-storage-daemon (qsd.c), or the
 * running VM named by "qmp = SOCKET" (vm.c); rp_qsd_* handle both.
 * qsd.c (call with sys->op_lock held) */
/* 0, or -1 with *err; for a VM also -2: not reachable now (rp_vm_attach). */
int rp_qsd_start (struct rp_system *sys, char **err);
void rp_qsd_stop (struct rp_system *sys);
/* Restart QEMU if it died.  0, or -1 with *err. */
int rp_qsd_ensure (struct rp_system *sys, char **err);
bool rp_qsd_alive (struct rp_system *sys);
/* rp_qsd_alive, confirmed by a QMP round trip (after an I/O error). */
bool rp_qsd_answers (struct rp_system *sys);
int rp_qsd_require (struct rp_system *sys, char **why);
/* "the qemu-storage-daemon of NAME" / "the VM NAME", for messages */
char *rp_qemu_what (struct rp_system *sys);
/* vm.c: attach to / detach from a running VM.  Attach returns 0, -1 when the
 * definition does not match the VM (*err names file and line), -2 when the
 * VM cannot be reached or refuses (*err says why). */
int rp_vm_attach (struct rp_system *sys, char **err);
void rp_vm_detach (struct rp_system *sys);
void rp_qemu_read_version (struct rp_system *sys);   /* sys->qemu_version */
/* agent.c: freeze / thaw the guest through qemu-guest-agent.  Freeze gives
 * RV_OK and *out, or RV_NOT_SUPPORTED / RV_FAILED with *why; thaw always
 * runs after a successful freeze. */
struct rp_agent;
int rp_agent_freeze (struct rp_system *sys, struct rp_agent **out,
                     char **why);
void rp_agent_thaw (struct rp_system *sys, struct rp_agent *a);
void rp_agent_recover (struct rp_system *sys);
/* NBD export names */
void rp_export_name_cur (char *buf, size_t n, unsigned disk);
void rp_export_name_rp (char *buf, size_t n, unsigned seq, unsigned disk);

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
int rp_refpoint_check_tracking (struct rp_system *sys);   /* op_lock held */
struct rp_kv *rp_refpoint_record (struct rp_refpoint *rp, bool local);
int rp_refpoint_check_base (struct rp_refpoint *rp, const char *base,
                            struct rp_refpoint **out, char **why);
int rp_refpoint_check_disks (struct rp_refpoint *rp, char **disks,
                             char **why);
/* "true" / "false" of KeepAssociatedData: 0 with *KEEP, or -1 with *why. */
int rp_refpoint_parse_keep (const char *v, bool *keep, char **why);
/* tracking.c (op_lock held) */
int rp_fleece_nodes (struct rp_refpoint *rp, bool create, char **err);
void rp_fleece_actions (struct rp_refpoint *rp, json_t *actions);
int rp_fleece_exports (struct rp_refpoint *rp, char **err);
void rp_fleece_abort (struct rp_refpoint *rp);
void rp_fleece_detach (struct rp_refpoint *rp);
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
int rp_system_check_images (struct rp_system *sys, char **err);

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

/* verify.c: VerifyExport.  JOB NULL: only check (RV_OK if it would start). */
int rp_verify_start (struct rp_refpoint *rp, const char *buf, size_t len,
                     const struct rp_caller *who, struct rp_job *job,
                     char **desc);

/* copy.c: copy one disk.  SRC_SOCK/SRC_EXPORT: the point-in-time export;
 * BITMAP: dirty bitmap context name or NULL for a full copy; DST: target
 * qcow2 (already created).  RATE: the job's bandwidth cap, or NULL.
 * PROGRESS(opaque, done, total) may be called from worker threads.  BH: the
 * disk's digest table being computed (blockhash.h), or NULL.  Returns
 * 0, or an errno with *err. */
struct rp_rate;
struct rp_bh;
typedef void (*rp_progress_fn) (void *opaque, uint64_t done, uint64_t total);
struct rp_copy_stats { uint64_t copied, zeroed, total; };
int rp_copy_disk (const char *src_sock, const char *src_export,
                  const char *bitmap, const char *dst_path,
                  const char *dst_name, const char *run_dir, atomic_bool *cancel,
                  struct rp_rate *rate, rp_progress_fn progress, void *opaque,
                  struct rp_bh *bh, struct rp_copy_stats *stats, char **err);
#endif
