/* `qemu-img info --output=json` of one image, as the libvirt backend reads
 * it for a shut-off domain (lvoffline.c): the virtual size, and the state
 * of a persistent dirty bitmap.  The text is the tool's output on an image
 * a guest has written to; it is parsed with jansson and every field is
 * checked for its type. */
#ifndef RPFS_IMGINFO_H
#define RPFS_IMGINFO_H

#include <stddef.h>
#include <stdint.h>

/* The image's virtual size: 0, or -1 with *ERR (malloc'd). */
int rp_imginfo_size (const char *text, size_t len, uint64_t *size,
                     char **err);

/* Bitmap NAME: NULL if it can serve as change tracking (recording, not
 * in-use), else why not: "missing", "inconsistent (...)", "not recording",
 * or "unreadable" if TEXT is not qemu-img's JSON (static strings). */
const char *rp_imginfo_bitmap (const char *text, size_t len,
                               const char *name);
#define RP_IMGINFO_MISSING "missing"

#endif
