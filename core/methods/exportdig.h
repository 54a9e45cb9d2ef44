/* ExportReferencePoint's digest tables (docs/design.md, "Digest tables"):
 * the hooks export.c calls.  A full export computes each disk's table from
 * the data it copies; a bitmap-based differential derives it from the
 * base's table; when the bitmaps between base and reference point are lost
 * but the base has tables, the export compares digests instead. */
#ifndef RPFS_EXPORTDIG_H
#define RPFS_EXPORTDIG_H

#include <stdbool.h>
#include <stdint.h>

#include "blockhash.h"

struct rp_refpoint;
struct rp_outdir;

/* May BASE serve for an export of RP's DISKS, and how?  core->lock held.
 * RV_OK with *DIGEST false (the bitmaps of [BASE, RP) are intact) or true
 * (one is lost, BASE has usable tables for DISKS), or RV_INVALID_STATE
 * with *WHY. */
int rp_export_base_mode (struct rp_refpoint *rp, struct rp_refpoint *base,
                         char *const *disks, bool *digest, char **why);

/* The hashing of one disk of SIZE bytes (BASE NULL: a full export).  NULL
 * with *RV RV_OK when no table can be made (a bitmap-based differential
 * whose base has no table: the export goes on without one); NULL with *RV
 * a ReturnValue and *WHY when DIGEST and the base's table cannot be used. */
struct rp_bh *rp_export_bh (struct rp_refpoint *base, bool digest,
                            const char *disk, uint64_t size, int *rv,
                            char **why);

/* After the disk's image is complete: write disks/DISK.digests into the
 * export (its SHA-256 into HEX) and hand back the table in *TAB (for the
 * store, once the export is committed).  Frees BH.  RV_OK or RV_FAILED. */
int rp_export_bh_done (struct rp_outdir *od, const char *disk,
                       struct rp_bh *bh, struct rp_digests **tab,
                       char hex[65], char **why);

/* The export is committed: keep RP's tables (NULL entries skipped) in the
 * store, atomically.  Frees TABS' entries. */
void rp_export_tables_save (struct rp_refpoint *rp, char *const *disks,
                            struct rp_digests **tabs);

#endif
