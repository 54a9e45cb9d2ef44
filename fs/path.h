/* rpfs FUSE frontend: path parser.
 *
 * Pure: it knows the shape of the tree (interface.md section 3) and its
 * fixed names, nothing about the core.  Whether a system, reference point,
 * job, property or disk of that name exists is for the caller (ops) to ask
 * the core.  Which file names are methods is passed in, so this file links
 * on its own (tests/unit/check_path.c includes it). */
#ifndef RPFS_FS_PATH_H
#define RPFS_FS_PATH_H

#include <stdbool.h>

/* Longest path we accept; FUSE paths are at most PATH_MAX too. */
#define FS_PATH_MAX 4096

enum fs_kind {
  FS_NONE = 0,          /* not a node of the tree */
  FS_ROOT,              /* /                                    */
  FS_SYSTEM,            /* /<sys>                               */
  FS_SYS_PROP,          /* /<sys>/<prop>                        */
  FS_SYS_METHOD,        /* /<sys>/<method>                      */
  FS_SYS_DISKS,         /* /<sys>/disks                         */
  FS_SYS_DISK,          /* /<sys>/disks/<id>                    */
  FS_RPS,               /* /<sys>/referencepoints               */
  FS_RP,                /* /<sys>/referencepoints/<rp>          */
  FS_RP_PROP,           /*   .../<rp>/<prop>                    */
  FS_RP_SETTINGS_DIR,   /*   .../<rp>/ExportSettingData         */
  FS_RP_SETTING,        /*   .../<rp>/ExportSettingData/<name>  */
  FS_RP_METHOD,         /*   .../<rp>/<method>                  */
  FS_RP_DISKS,          /*   .../<rp>/disks                     */
  FS_RP_DISK,           /*   .../<rp>/disks/<id>                */
  FS_RP_JOBLINK,        /*   .../<rp>/job                       */
  FS_RP_STREAM,         /*   .../<rp>/export.tar...  (streams)  */
  FS_JOBS,              /* /jobs                                */
  FS_JOB,               /* /jobs/<id>                           */
  FS_JOB_PROP,          /* /jobs/<id>/<prop>                    */
  FS_JOB_METHOD,        /* /jobs/<id>/<method>                  */
};

/* Fixed names of the tree. */
#define FS_JOBS_DIR "jobs"
#define FS_DISKS_DIR "disks"
#define FS_RPS_DIR "referencepoints"
#define FS_SETTINGS_DIR "ExportSettingData"
#define FS_JOBLINK "job"

/* NULL-terminated lists of the file names that are methods at each level.
 * Any list (or NAMES itself) may be NULL: no methods there. */
struct fs_names {
  const char *const *sys_methods;
  const char *const *rp_methods;
  const char *const *job_methods;
  const char *const *rp_streams;  /* streamed exports of a reference point */
};

/* The parsed path.  The string members point into buf and are NULL where
 * the kind has no such component.  name is the last component of a file
 * (property, method, setting or disk id). */
struct fs_path {
  enum fs_kind kind;
  const char *sys;
  const char *rp;
  const char *job;
  const char *name;
  char buf[FS_PATH_MAX];
};

/* Classify PATH ("/web01/disks/sda" from FUSE, or relative
 * "jobs/7/JobState" from a core notification).  Fills *P and returns its
 * kind; FS_NONE for anything outside the tree (empty, "." or ".."
 * components, too deep, too long). */
enum fs_kind fs_path_parse (const char *path, const struct fs_names *names,
                            struct fs_path *p);

/* Directory kinds (everything that is neither a file nor the job link). */
bool fs_kind_is_dir (enum fs_kind kind);
/* Files that have a per-open rendered value (properties, settings, methods). */
bool fs_kind_is_value (enum fs_kind kind);
/* "SYS_PROP" etc., for debug output and tests. */
const char *fs_kind_name (enum fs_kind kind);

#endif
