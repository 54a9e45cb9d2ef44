/* A line of qemu-img map's JSON (imgmap.h). */
#include <ctype.h>

#include <jansson.h>

#include "imgmap.h"

/* A non-negative integer member; false if it is missing or is not one. */
static bool
get_u64 (json_t *o, const char *key, uint64_t *v)
{
  json_t *j = json_object_get (o, key);
  if (!json_is_integer (j) || json_integer_value (j) < 0)
    return false;
  *v = (uint64_t) json_integer_value (j);
  return true;
}

static bool
get_bool (json_t *o, const char *key, bool *v)
{
  json_t *j = json_object_get (o, key);
  if (!json_is_boolean (j))
    return false;
  *v = json_is_true (j);
  return true;
}

int
rp_imgmap_line (const char *line, size_t len, struct rp_imgmap_ext *e)
{
  while (len && isspace ((unsigned char) *line))
    line++, len--;
  while (len && isspace ((unsigned char) line[len - 1]))
    len--;
  if (len && *line == '[')
    line++, len--;
  if (len && line[len - 1] == ',')
    len--;
  else if (len && line[len - 1] == ']')
    len--;
  if (len == 0)
    return 0;
  json_t *o = json_loadb (line, len, JSON_REJECT_DUPLICATES, NULL);
  struct rp_imgmap_ext x = { 0 };
  bool ok = json_is_object (o)
    && get_u64 (o, "start", &x.start) && get_u64 (o, "length", &x.length)
    && get_u64 (o, "depth", &x.depth) && get_bool (o, "data", &x.data)
    && get_bool (o, "zero", &x.zero) && x.length > 0
    && x.start + x.length > x.start;
  if (ok && json_object_get (o, "offset")) {
    x.has_offset = get_u64 (o, "offset", &x.offset)
      && x.offset + x.length > x.offset;
    ok = x.has_offset;
  }
  json_decref (o);
  if (!ok)
    return -1;
  *e = x;
  return 1;
}
