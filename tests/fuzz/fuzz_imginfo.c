/* libFuzzer target: `qemu-img info --output=json` of a shut-off libvirt
 * domain's image, as core/backends/imginfo.c reads it (the virtual size
 * and the state of a bitmap).  Whatever the text, a bitmap is either
 * usable (NULL) or comes with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imginfo.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  uint64_t vsize;
  char *err = NULL;
  if (rp_imginfo_size (text, size, &vsize, &err) != 0) {
    if (!err)
      abort ();
    free (err);
  }
  static const char *names[] = { "", "rpfs-00000001-x", "cpA", "auto" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *s = rp_imginfo_bitmap (text, size, names[i]);
    if (s && !*s)
      abort ();
  }
  return 0;
}
