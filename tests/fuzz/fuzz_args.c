/* libFuzzer target: method and setting payloads (core/lib/args.c), as written to
 * the method files (CreateReferencePoint, ExportReferencePoint,
 * ImportReferencePointMetadata, ...) and settings (BaseReferencePoint,
 * DisksToExport) and a job's RequestStateChange.  Each value of a parsed
 * request also goes through the disk-list parser, as DisksToExport= does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
disk_list (const char *s)
{
  char *err = NULL;
  char **v = rp_args_disk_list (s, &err);
  if (!v == !err)
    abort ();                   /* exactly one of a list and a reason */
  for (size_t i = 0; v && v[i]; i++)
    if (!rp_name_valid (v[i]))
      abort ();
  rp_strv_free (v);
  free (err);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *buf = (const char *) data;
  char *err = NULL;
  struct rp_args *a = rp_args_parse (buf, size, &err);
  if (a) {
    if (err)
      abort ();
    for (size_t i = 0; i < a->nkv; i++) {
      if (rp_args_get (a, a->keys[i]) == NULL)
        abort ();
      disk_list (a->vals[i]);
    }
    rp_args_get (a, "DisksToExport");
    rp_args_free (a);
  }
  else if (!err)
    abort ();
  free (err);
  err = NULL;

  for (int multiline = 0; multiline < 2; multiline++) {
    char *v = rp_args_value (buf, size, multiline, &err);
    if (!v == !err)
      abort ();
    if (v)
      disk_list (v);
    free (v);
    free (err);
    err = NULL;
  }
  return 0;
}
