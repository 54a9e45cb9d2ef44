/* One line of `qemu-img map --output=json`, which prints one extent per
 * line ("[{...},", "{...},", ..., "{...}]"): so a map of any size is read
 * as it comes, in constant memory (imagehash.c).  Parsed with jansson,
 * every field checked for its type. */
#ifndef RPFS_IMGMAP_H
#define RPFS_IMGMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rp_imgmap_ext {
  uint64_t start, length;       /* guest bytes [start, start + length) */
  uint64_t depth;               /* 0: this image, 1: its backing file, ... */
  bool data, zero;              /* reads as stored data / as zeros */
  bool has_offset;              /* the data is stored as is in the image */
  uint64_t offset;              /*   at this byte offset of its file */
};

/* 1 and *E for an extent, 0 for a line without one ("[" or "]"), -1 for a
 * line that is not qemu-img's. */
int rp_imgmap_line (const char *line, size_t len, struct rp_imgmap_ext *e);

#endif
