/* The QEMU family: the block graph code that the storage daemon (qsd.c)
 * and an attached VM (vm.c) share, over sys->qmp.  qemu.c (create,
 * destroy, differentials, import's check, pacing statistics), tracking.c
 * (fleecing, the start-up tracking check), bitmaps.c (the tracking chain,
 * internal.h), agent.c (guest freeze, the VM only).  Only core/backends/
 * includes this header.  Everything runs with sys->op_lock held. */
#ifndef RPFS_QEMU_H
#define RPFS_QEMU_H

#include "internal.h"

/* Slots of struct rp_backend that both QEMU backends fill alike. */
int rp_qemu_ping (struct rp_system *sys, char **err);
bool rp_qemu_timed_out (struct rp_system *sys);
int rp_qemu_create (struct rp_system *sys, struct rp_refpoint *rp,
                    char **note, char **why);
int rp_qemu_destroy (struct rp_system *sys, struct rp_refpoint *rp,
                     char **why);
int rp_qemu_drop_data (struct rp_system *sys, struct rp_refpoint *rp);
int rp_qemu_disk_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                           size_t di, struct rp_endpoint *ep, char **err);
int rp_qemu_changes_open (struct rp_system *sys, struct rp_refpoint *rp,
                          struct rp_refpoint *base, size_t di,
                          const char *tag, struct rp_endpoint *ep,
                          char **why);
void rp_qemu_changes_close (struct rp_system *sys, size_t di,
                            struct rp_endpoint *ep);
int rp_qemu_has_tracking (struct rp_system *sys, size_t di,
                          const char *tracking, char **why);
bool rp_qemu_io_stats (struct rp_system *sys, uint64_t *ops, uint64_t *ns);

/* tracking.c.  The start-up check (backend.h, check_tracking): point-in-time
 * data is re-attached under a new layer when the guard bitmaps prove that
 * nothing wrote the disks (ADOPT false: a storage daemon that stopped
 * cleanly), or adopted when its backup jobs still run (ADOPT true: a VM's
 * QEMU kept it while rpfs was away).  0, or -1 when the bitmaps cannot be
 * read. */
int rp_qemu_check_tracking (struct rp_system *sys, bool adopt);
int rp_fleece_nodes (struct rp_refpoint *rp, bool create, char **err);
void rp_fleece_actions (struct rp_refpoint *rp, json_t *actions);
int rp_fleece_exports (struct rp_refpoint *rp, char **err);
void rp_fleece_abort (struct rp_refpoint *rp);

/* QEMU's version, into sys->qemu_version. */
void rp_qemu_read_version (struct rp_system *sys);
/* NBD export names */
void rp_export_name_cur (char *buf, size_t n, unsigned disk);
void rp_export_name_rp (char *buf, size_t n, unsigned seq, unsigned disk);

/* agent.c: freeze / thaw the guest through qemu-guest-agent.  Freeze gives
 * RV_OK and *out, or RV_NOT_SUPPORTED / RV_FAILED with *why; thaw always
 * runs after a successful freeze. */
struct rp_agent;
int rp_agent_freeze (struct rp_system *sys, struct rp_agent **out,
                     char **why);
void rp_agent_thaw (struct rp_system *sys, struct rp_agent *a);
void rp_agent_recover (struct rp_system *sys);

#endif
