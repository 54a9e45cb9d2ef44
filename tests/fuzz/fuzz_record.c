/* libFuzzer target: reference point records read back from the store at
 * mount (core/objects/refpoint.c: rp_refpoint_load_all, load_one).  The input is
 * the record file of one reference point "rp1"; a record that loads must
 * render (rp_refpoint_record) into a record that loads again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char statedir[] = "/tmp/rpfs-fuzz-record.XXXXXX";
static char *recpath;

static void
cleanup (void)
{
  rp_rm_rf (statedir);
}

static void
drop_all (struct rp_system *sys)
{
  for (size_t i = 0; i < sys->nrps; i++)
    rp_refpoint_free (sys->rps[i]);
  free (sys->rps);
  sys->rps = NULL;
  sys->nrps = 0;
}

static int
load (struct rp_system *sys, const char *text, size_t len)
{
  char *err = NULL;
  /* Not rp_write_file_atomic: its fsyncs would cost most of the time. */
  FILE *f = fopen (recpath, "w");
  if (!f || fwrite (text, 1, len, f) != len || fclose (f) != 0)
    abort ();
  int r = rp_refpoint_load_all (sys, &err);
  if ((r != 0) != (err != NULL))
    abort ();
  free (err);
  return r;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (!recpath) {
    if (!mkdtemp (statedir))
      abort ();
    atexit (cleanup);
    char *dir = rp_asprintf ("%s/rp/rp1", statedir);
    if (rp_mkdir_p (dir, 0755) != 0)
      abort ();
    recpath = rp_asprintf ("%s/record", dir);
    free (dir);
  }
  struct rp_system sys;
  memset (&sys, 0, sizeof sys);
  sys.name = (char *) "vm1";
  sys.statedir = statedir;
  sys.uuid = (char *) "5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10";

  if (load (&sys, (const char *) data, size) == 0 && sys.nrps == 1) {
    struct rp_kv *kv = rp_refpoint_record (sys.rps[0], true);
    char *text = rp_kv_render (kv);
    rp_kv_free (kv);
    drop_all (&sys);
    if (load (&sys, text, strlen (text)) != 0 || sys.nrps != 1)
      abort ();
    free (text);
  }
  drop_all (&sys);
  return 0;
}
