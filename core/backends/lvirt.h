/* The libvirt backend's private header (libvirt.c, lvpoints.c, lvjob.c,
 * lvoffline.c, lvevents.c):
 * its state in sys->bstate and what the files share.  Only core/backends/
 * includes it.  Everything but the event callbacks runs with
 * sys->op_lock held. */
#ifndef RPFS_LVIRT_H
#define RPFS_LVIRT_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "internal.h"
#include "lvxml.h"

/* What the event thread tells the backend about one domain (lvevents.c).
 * Shared with libvirt's callback until libvirt frees it. */
struct lv_watch {
  atomic_bool gone;             /* the domain stopped since the attach */
  char *system;                 /* for the log */
};

struct lv_state {
  virConnectPtr conn;
  virDomainPtr dom;
  unsigned domid;               /* the running domain's id at the attach */
  bool offline;                 /* attached while shut off: served from
                                   its images (lvoffline.c; mu) */
  struct lv_watch *watch;       /* NULL: no lifecycle callback */
  int cb_id;
  bool agent;                   /* the domain has a guest agent channel */
  char **others;                /* its other writable disks (not tracked) */
  char *sockdir, *sock;         /* the backup job's NBD socket */
  /* The domain's one backup job, when rpfs's (mu: disk_endpoint runs
   * without op_lock). */
  pthread_mutex_t mu;
  /* cmu: the connection and domain handles; rp_backend_answers may ask
   * (alive, ping) without op_lock while a revive closes them. */
  pthread_mutex_t cmu;
  bool mu_init;
  char *job_cp;                 /* the checkpoint created with it (the
                                   reference point holding data) */
  char *job_base;               /* its <incremental> checkpoint, or NULL */
  char **exp_name, **exp_bitmap;    /* per disk index */
};

static inline struct lv_state *
lv_st (struct rp_system *sys)
{
  return sys->bstate;
}

/* libvirt's message for the last failure of this thread (caller frees). */
char *rp_lv_error (void);
/* A failure of a call on a domain: RV_FAILED if the domain is still in the
 * state the backend attached to (running, or shut off), else
 * RV_NOT_AVAILABLE (it stopped, or started). */
int rp_lv_fail_rv (struct rp_system *sys);

/* lvevents.c: one event loop thread for the process, started before the
 * first connection; lifecycle callbacks per domain. */
int rp_lv_init (char **err);
int rp_lv_watch (struct rp_system *sys, char **err);
void rp_lv_unwatch (struct rp_system *sys);

/* lvpoints.c: checkpoints. */
int rp_lv_create (struct rp_system *sys, struct rp_refpoint *rp, char **note,
                  char **why);
int rp_lv_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                   char **why);
int rp_lv_has_tracking (struct rp_system *sys, size_t di,
                        const char *tracking, char **why);
int rp_lv_imported (struct rp_system *sys, struct rp_refpoint *rp,
                    char **why);

/* lvjob.c: the backup job (point-in-time data). */
/* Begin the job that keeps RP's data, with checkpoint CPXML, as an
 * incremental backup from INCREMENTAL (NULL: none).  If libvirt finds that
 * checkpoint's bitmap broken, the job begins as a full one and
 * *BASE_BROKEN says libvirt's words. */
int rp_lv_job_begin (struct rp_system *sys, struct rp_refpoint *rp,
                     const char *cpxml, const char *incremental,
                     char **base_broken, char **why);
int rp_lv_job_adopt (struct rp_system *sys, const char *cp);
void rp_lv_job_forget (struct rp_system *sys);
int rp_lv_drop_data (struct rp_system *sys, struct rp_refpoint *rp);
int rp_lv_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                         size_t di, struct rp_endpoint *ep, char **err);
int rp_lv_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                        struct rp_refpoint *base, size_t di, const char *tag,
                        struct rp_endpoint *ep, char **why);

/* lvoffline.c: a shut-off domain, served from its images. */
int rp_lv_off_size (struct rp_system *sys, size_t di, uint64_t *size,
                    char **err);
int rp_lv_off_bitmap (struct rp_system *sys, size_t di, const char *name,
                      char **why);
/* At an attach to the shut-off domain: the reference points (of N) whose
 * bitmap is missing or inconsistent on a disk are marked broken. */
void rp_lv_off_check_bitmaps (struct rp_system *sys, struct rp_refpoint **rps,
                              size_t n);
int rp_lv_off_create (struct rp_system *sys, struct rp_refpoint *rp,
                      const char *desc, char **why);
int rp_lv_off_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                       char **why);
int rp_lv_off_imported (struct rp_system *sys, struct rp_refpoint *rp,
                        const char *desc, char **why);
/* The disk (RP NULL) or RP's point-in-time disk DI, once the images are
 * proved still at RP (else RP's data is dropped, and -1 with *err). */
int rp_lv_off_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                             size_t di, struct rp_endpoint *ep, char **err);
int rp_lv_off_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                            struct rp_refpoint *base, size_t di,
                            struct rp_endpoint *ep, char **why);
/* At an attach to the shut-off domain: may RP, which held point-in-time
 * data, keep it?  1: its bitmaps show no write since RP; 0: one shows a
 * write or cannot tell any more (*why); -1: a check could not run (*why):
 * the data is kept, every read checks again. */
int rp_lv_off_keeps_data (struct rp_system *sys, struct rp_refpoint *rp,
                          char **why);

/* lvatrest.c: bytes that BITMAP marks on the export at SOCK (a qemu-nbd of
 * lvoffline.c's that exposes it): >= 0, or -1 with *err. */
int64_t rp_lv_off_marked (const char *sock, const char *bitmap, char **err);
/* Attached to the domain while it was shut off (takes mu). */
bool rp_lv_offline (struct rp_system *sys);

#endif
