/* qemu-img info's JSON: size and bitmap states (imginfo.h). */
#include <string.h>

#include <jansson.h>

#include "imginfo.h"
#include "util.h"

int
rp_imginfo_size (const char *text, size_t len, uint64_t *size, char **err)
{
  json_error_t je;
  json_t *j = json_loadb (text, len, 0, &je);
  json_t *v = json_object_get (j, "virtual-size");
  int r = json_is_integer (v) && json_integer_value (v) >= 0 ? 0 : -1;
  if (r == 0)
    *size = (uint64_t) json_integer_value (v);
  else
    *err = j ? rp_strdup ("no virtual size") : rp_strdup (je.text);
  json_decref (j);
  return r;
}

/* The flags of one bitmap entry: NULL usable, else why not. */
static const char *
state_of (json_t *bm)
{
  bool recording = false, in_use = false;
  size_t k;
  json_t *f;
  json_array_foreach (json_object_get (bm, "flags"), k, f) {
    const char *fl = json_string_value (f);
    recording |= fl && !strcmp (fl, "auto");
    in_use |= fl && !strcmp (fl, "in-use");
  }
  return in_use ? "inconsistent (QEMU was killed while it was in use)"
    : !recording ? "not recording" : NULL;
}

const char *
rp_imginfo_bitmap (const char *text, size_t len, const char *name)
{
  json_t *j = json_loadb (text, len, 0, NULL);
  if (!json_is_object (j)) {
    json_decref (j);
    return "unreadable";
  }
  json_t *bms = json_object_get (json_object_get (json_object_get (
    j, "format-specific"), "data"), "bitmaps");
  const char *state = RP_IMGINFO_MISSING;
  size_t i;
  json_t *bm;
  json_array_foreach (bms, i, bm) {
    const char *n = json_string_value (json_object_get (bm, "name"));
    if (n && !strcmp (n, name)) {
      state = state_of (bm);
      break;
    }
  }
  json_decref (j);
  return state;
}
