/* libFuzzer target: "Key = Value" records (rp_kv_parse in core/objects/conf.c): the
 * "referencepoint" file ImportReferencePointMetadata reads from an export,
 * and the values it checks (UUID, bitmap name, ISO 8601 time).  A parsed
 * record must render and parse back to the same keys and values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *err = NULL;
  struct rp_kv *kv = rp_kv_parse ("referencepoint", (const char *) data, size,
                                  &err);
  if (!kv) {
    if (!err)
      abort ();
    free (err);
    return 0;
  }
  for (size_t i = 0; i < kv->n; i++) {
    time_t t;
    rp_uuid_valid (kv->vals[i]);
    rp_bitmap_seq (kv->vals[i]);
    rp_time_parse (kv->vals[i], &t);
    rp_name_valid (kv->vals[i]);
    if (rp_kv_get (kv, kv->keys[i]) == NULL)
      abort ();
  }
  const char **disks = rp_kv_all (kv, "disk");
  free (disks);

  /* Round trip, as a record written by rpfs and read back at the next
   * mount: what rp_kv_add keeps must come back unchanged. */
  struct rp_kv *copy = rp_kv_new ();
  for (size_t i = 0; i < kv->n; i++)
    rp_kv_add (copy, kv->keys[i], kv->vals[i]);
  char *text = rp_kv_render (copy);
  struct rp_kv *back = rp_kv_parse ("record", text, strlen (text), &err);
  if (!back || back->n != copy->n)
    abort ();
  for (size_t i = 0; i < back->n; i++)
    if (strcmp (back->keys[i], copy->keys[i])
        || strcmp (back->vals[i], copy->vals[i]))
      abort ();
  rp_kv_free (back);
  free (text);
  rp_kv_free (copy);
  rp_kv_free (kv);
  return 0;
}
