/* The QEMU family: the block graph code that the storage daemon (qsd.c)
 * and an attached VM (vm.c) share, over sys->qmp.  qemu.c (create,
 * destroy, differentials, import's check, pacing statistics), tracking.c
 * (the start-up tracking check), chain.c and fleece.c (point-in-time data), bitmaps.c (the tracking chain,
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

/* The fleecing chain (chain.c): the point-in-time data of log based
 * reference points, one link each, with one backup job. */
struct rp_link {
  struct rp_system *sys;
  unsigned seq, layers;         /* its scratch layers per disk (fleece.c) */
  char *dir;                    /* their files */
  char **disk_ids;
  struct rp_refpoint *rp;       /* whose data it is; NULL: kept for older */
  bool job;                     /* its backup jobs run (core->lock) */
  int pins;                     /* readers relying on them (core->lock) */
  bool gone;                    /* out of the list, freed at the last unpin */
  bool orphan;                  /* its files are not its own any more: a
                                   teardown leaves them */
};
/* Creation: a new link's nodes (before the transaction), its backup jobs
 * (into the transaction: rp_link_actions), then commit (exports, into the
 * chain, older jobs reaped) or abort (nothing left). */
struct rp_link *rp_chain_prepare (struct rp_refpoint *rp, char **why);
int rp_chain_commit (struct rp_link *l, char **why);
void rp_chain_abort (struct rp_link *l);
/* RP's data goes: its link is dropped, or kept while older ones need it.
 * 0, or -1 (QEMU did not answer in time; running it again finishes it). */
int rp_chain_drop (struct rp_system *sys, struct rp_refpoint *rp);
/* The exports below EP's top one for RP's disk DI, their depths, and the
 * pin (backend.h).  0, or -1 with *err. */
int rp_chain_endpoint (struct rp_system *sys, struct rp_refpoint *rp,
                       size_t di, struct rp_endpoint *ep, char **err);
/* After a (re)start: the links of the reference points with data and the
 * kept ones, re-attached (GUARD_OK: a clean stop) or adopted (ADOPT: a
 * running VM kept them), else every reference point's data dropped. */
void rp_chain_rebuild (struct rp_system *sys, bool guard_ok, bool adopt);
void rp_chain_forget (struct rp_system *sys);

/* fleece.c: one link in QEMU.  rp_link_nodes opens its layers (NEW_LAYER:
 * under a new empty bottom layer; a link without layers gets its first);
 * on failure nothing of it stays open.  Teardown of its first N disks
 * (FILES: deletes them): 0, or -3 when QEMU did not answer in time. */
int rp_link_nodes (struct rp_link *l, bool new_layer, char **err);
void rp_link_actions (struct rp_link *l, json_t *actions);
int rp_link_exports (struct rp_link *l, char **err);
int rp_link_cancel_jobs (struct rp_link *l);
int rp_link_teardown (struct rp_link *l, size_t n, bool files);
/* Rename L's files into DIR (which exists) and make it L's directory. */
int rp_link_move_files (struct rp_link *l, const char *dir, char **err);
/* 1 if every disk's backup job is in JOBS (query-block-jobs) and running,
 * else 0 and (ERR) why. */
int rp_link_jobs_running (struct rp_link *l, json_t *jobs, char **err);

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
