/* rpfs export core: public API used by the FUSE frontend (fs/).
 * Nothing here knows about FUSE.  All strings returned as "char *" are
 * caller-frees; struct pointers returned by *_get() carry a reference that the
 * caller drops with the matching *_put(). */
#ifndef RPFS_H
#define RPFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CIM method return values (interface.md section 6). */
enum rp_rv {
  RV_OK = 0,
  RV_JOB_STARTED = 4096,
  RV_FAILED = 32768,
  RV_ACCESS_DENIED = 32769,
  RV_NOT_SUPPORTED = 32770,
  RV_STATUS_UNKNOWN = 32771,
  RV_TIMEOUT = 32772,
  RV_INVALID_PARAMETER = 32773,
  RV_IN_USE = 32774,
  RV_INVALID_STATE = 32775,
  RV_BAD_TYPE = 32776,
  RV_NOT_AVAILABLE = 32777,
  RV_NO_MEMORY = 32778,
};

/* errno for a failed method (0 for RV_OK and RV_JOB_STARTED); EIO for an
 * unknown value. */
int rp_rv_errno (int rv);
/* Short English name of a return value ("Invalid parameter"). */
const char *rp_rv_name (int rv);

struct rp_core;
struct rp_system;
struct rp_refpoint;
struct rp_job;
struct rp_disk_io;

/* Who makes a request (the FUSE request context).  GROUPS are the calling
 * process's supplementary groups (NGROUPS of them; 0 when the frontend could
 * not read them, and then only GID counts). */
#define RP_CALLER_GROUPS 64
struct rp_caller {
  uid_t uid;
  gid_t gid;
  pid_t pid;
  int ngroups;
  gid_t groups[RP_CALLER_GROUPS];
};

/* ---- lifecycle ---- */
/* Load the store: parse every systems/NAME.conf and reload reference point
 * records.  On failure returns NULL and *err (caller frees) names the file and
 * line.  Starts no process. */
struct rp_core *rp_core_open (const char *store, const char *mountpoint,
                              char **err);
/* Start the QEMU processes and check every reference point's tracking. 
 * Returns 0, or -1 with *err set. */
int rp_core_start (struct rp_core *core, char **err);
/* Terminate running jobs (they end as Terminated), stop every QEMU process
 * cleanly so persistent bitmaps are written, free everything. */
void rp_core_close (struct rp_core *core);

/* Change notifications, so the frontend can raise inotify events.  PATH is
 * relative to the mount point ("jobs/7/JobState", "web01/referencepoints/rp2").
 * Called from any thread, never with a core lock held. */
enum rp_event { RP_EV_CREATED, RP_EV_DELETED, RP_EV_MODIFIED };
typedef void (*rp_notify_fn) (void *opaque, enum rp_event ev, const char *path);
void rp_core_set_notify (struct rp_core *core, rp_notify_fn fn, void *opaque);

/* ---- virtual systems ---- */
/* NULL-terminated list of system names (caller frees with rp_strv_free). */
char **rp_core_systems (struct rp_core *core);
/* Borrowed pointer, valid until rp_core_close (systems never go away). */
struct rp_system *rp_core_system (struct rp_core *core, const char *name);

/* Property files: names, then the rendered value ("...\n"), NULL if no such
 * property. */
extern const char *const rp_system_props[];    /* ElementName, ... */
char *rp_system_prop (struct rp_system *sys, const char *name);
extern const char *const rp_system_methods[];  /* CreateReferencePoint, ... */

/* Call a method: BUF/LEN is the whole write(2).  Returns the ReturnValue.
 * Every call creates a job record.  Reading the method file afterwards gives
 * rp_system_result(). */
int rp_system_call (struct rp_system *sys, const char *method,
                    const char *buf, size_t len, const struct rp_caller *who);
/* Run every check of the call on BUF/LEN without acting and without a job
 * record: RV_OK when the call would go ahead, else the ReturnValue it would
 * fail with.  The frontend checks each write(2) of a request that arrives in
 * several writes (a shell writes line by line) and calls at close. */
int rp_system_check (struct rp_system *sys, const char *method,
                     const char *buf, size_t len,
                     const struct rp_caller *who);
/* "<ReturnValue> <job-id> <description>\n" of WHO's last call, or "" . */
char *rp_system_result (struct rp_system *sys, const char *method,
                        const struct rp_caller *who);

/* Disk ids of the system in definition order (caller frees). */
char **rp_system_disks (struct rp_system *sys);
/* true when no running VM owns the disks (disks/<id> is writable). */
bool rp_system_disks_writable (struct rp_system *sys);

/* mkdir / rmdir in referencepoints/. Return the ReturnValue. */
int rp_system_mkdir_rp (struct rp_system *sys, const char *name,
                        const struct rp_caller *who);
int rp_system_rmdir_rp (struct rp_system *sys, const char *name,
                        const struct rp_caller *who);

/* ---- reference points ---- */
char **rp_system_refpoints (struct rp_system *sys);  /* names, creation order */
struct rp_refpoint *rp_refpoint_get (struct rp_system *sys, const char *name);
void rp_refpoint_put (struct rp_refpoint *rp);

extern const char *const rp_refpoint_props[];    /* InstanceID, ... */
extern const char *const rp_refpoint_settings[]; /* BaseReferencePoint, DisksToExport */
extern const char *const rp_refpoint_methods[];  /* ExportReferencePoint, RemoveAssociatedData */
char *rp_refpoint_prop (struct rp_refpoint *rp, const char *name);
char *rp_refpoint_setting (struct rp_refpoint *rp, const char *name);
/* Returns a ReturnValue; nothing changes unless RV_OK. */
int rp_refpoint_set (struct rp_refpoint *rp, const char *name,
                     const char *buf, size_t len, const struct rp_caller *who);
int rp_refpoint_call (struct rp_refpoint *rp, const char *method,
                      const char *buf, size_t len, const struct rp_caller *who);
int rp_refpoint_check (struct rp_refpoint *rp, const char *method,
                       const char *buf, size_t len,
                       const struct rp_caller *who);
char *rp_refpoint_result (struct rp_refpoint *rp, const char *method,
                          const struct rp_caller *who);
/* Job id of the newest method call on this reference point, or NULL. */
char *rp_refpoint_job (struct rp_refpoint *rp);
bool rp_refpoint_has_data (struct rp_refpoint *rp);

/* ---- streamed exports (stream.c) ---- */
/* "export.tar", "export.tar.gz", "export.tar.xz", "export.tar.zst" */
extern const char *const rp_refpoint_streams[];
struct rp_stream;
/* Open a streamed export of RP in FORMAT ("tar", "tar.gz", ...): a job,
 * after every check of ExportReferencePoint.  NULL with the ReturnValue in
 * *RV (a job record says why, except for RV_ACCESS_DENIED). */
struct rp_stream *rp_stream_open (struct rp_refpoint *rp, const char *format,
                                  const struct rp_caller *who, int *rv);
/* The next bytes (at most LEN; waits for some), 0 at the end of a
 * complete archive, or -errno when the export failed or was cancelled. */
ssize_t rp_stream_read (struct rp_stream *s, void *buf, size_t len);
/* The reader is done; an export still running is cancelled. */
void rp_stream_close (struct rp_stream *s);

/* ---- jobs ---- */
char **rp_core_jobs (struct rp_core *core);         /* ids, oldest first */
struct rp_job *rp_job_get (struct rp_core *core, const char *id);
void rp_job_put (struct rp_job *job);
extern const char *const rp_job_props[];  /* InstanceID, JobType, ... status */
/* For a WHO that may not control the job (rp_job_may_control; NULL: no
 * one in particular), ExportDirectory and ErrorDescription read as empty and
 * status without the description. */
char *rp_job_prop (struct rp_job *job, const char *name,
                   const struct rp_caller *who);
/* RequestStateChange: "4" or "Terminate".  Returns a ReturnValue. */
int rp_job_request_state (struct rp_job *job, const char *buf, size_t len,
                          const struct rp_caller *who);

/* ---- disk contents ---- */
/* Open the current content of disk ID (RP NULL) or its content at RP.  Returns
 * NULL and sets *rv on failure. */
struct rp_disk_io *rp_disk_open (struct rp_system *sys, struct rp_refpoint *rp,
                                 const char *id, bool write,
                                 const struct rp_caller *who, int *rv);
void rp_disk_close (struct rp_disk_io *io);
/* Sizes without opening: virtual size and allocated bytes.  Returns 0 or -errno. */
int rp_disk_stat (struct rp_system *sys, struct rp_refpoint *rp,
                  const char *id, uint64_t *size, uint64_t *allocated);
/* pread/pwrite: bytes done or -errno. */
ssize_t rp_disk_pread (struct rp_disk_io *io, void *buf, size_t len,
                       uint64_t off);
ssize_t rp_disk_pwrite (struct rp_disk_io *io, const void *buf, size_t len,
                        uint64_t off);
int rp_disk_flush (struct rp_disk_io *io);
/* SEEK_DATA / SEEK_HOLE: new offset or -errno (-ENXIO past the end). */
int64_t rp_disk_seek (struct rp_disk_io *io, uint64_t off, int whence);

/* ---- who may do what (access.c; docs/reference.md "Who may do what") ----
 * Every call above that acts for a caller refuses a caller these deny with
 * RV_ACCESS_DENIED, before it makes a job record; the frontend asks the
 * same functions to refuse at open(2) and to show the rules in ls -l. */
/* Root, the user rpfs runs as, the system's owner, members of its group. */
bool rp_system_may_operate (struct rp_system *sys,
                            const struct rp_caller *who);
/* The definition's owner and group (root and root by default). */
void rp_system_owner (struct rp_system *sys, uid_t *uid, gid_t *gid);
/* May WHO open disk ID (current or at a reference point) for WANT (R_OK,
 * W_OK)?  An operator, to whom the image file's owner, group and mode give
 * WANT.  RV_OK or RV_ACCESS_DENIED. */
int rp_disk_access (struct rp_system *sys, const char *id,
                    const struct rp_caller *who, int want);
/* Owner, group and permission bits of disk ID's image file: 0 or -errno. */
int rp_disk_owner (struct rp_system *sys, const char *id, uid_t *uid,
                   gid_t *gid, mode_t *mode);
/* The job's submitter, an operator of its system, or root: may cancel it
 * and read its paths and descriptions. */
bool rp_job_may_control (struct rp_job *job, const struct rp_caller *who);
/* Its submitter and its system's group. */
void rp_job_owner (struct rp_job *job, uid_t *uid, gid_t *gid);

void rp_strv_free (char **v);

#endif
