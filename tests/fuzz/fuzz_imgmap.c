/* libFuzzer target: one line of `qemu-img map --output=json`, as
 * core/dataplane/imgmap.c reads it for a full export's digest table
 * (imagehash.c).  Whatever the text, an extent it accepts is one the walk
 * can trust: a length, no wrap-around, an offset when it says data. */
#include <stdint.h>
#include <stdlib.h>

#include "imgmap.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct rp_imgmap_ext e;
  int r = rp_imgmap_line ((const char *) data, size, &e);
  if (r < -1 || r > 1)
    abort ();
  if (r == 1 && (e.length == 0 || e.start + e.length < e.start
                 || (e.has_offset && e.offset + e.length < e.offset)))
    abort ();
  return 0;
}
