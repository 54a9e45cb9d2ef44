/* libFuzzer target: archive files a caller names (core/dataplane/archive.c
 * rp_arc_read_meta for ImportReferencePointMetadata, archash.c
 * rp_arc_hash_disks for VerifyExport).  libarchive parses the container;
 * this checks rpfs's side: member names matched to disks, sizes and data
 * offsets of sparse members, table members, and every error path freeing
 * what it made.  The input goes through a memfd, as a file would. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arc.h"
#include "archash.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
memfd_of (const uint8_t *data, size_t size)
{
  int fd = memfd_create ("fuzz", MFD_CLOEXEC);
  if (fd < 0 || write (fd, data, size) != (ssize_t) size)
    abort ();
  lseek (fd, 0, SEEK_SET);
  return fd;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size > (4u << 20))
    return 0;
  int fd = memfd_of (data, size);
  char *cfg, *rec, *why = NULL;
  size_t cl, rl;
  if (rp_arc_read_meta (fd, "fuzz", 1 << 16, &cfg, &cl, &rec, &rl, &why)
      == 0) {
    free (cfg);
    free (rec);
  }
  else if (!why)
    abort ();
  free (why);
  why = NULL;
  lseek (fd, 0, SEEK_SET);
  char *disks[] = { "sda", "sdb", NULL };
  struct rp_arc_disks d = { 0 };
  atomic_bool cancel = false;
  int r = rp_arc_hash_disks (fd, "fuzz", "vm1", disks, 1, &cancel, NULL,
                             NULL, &d, &why);
  if (r == 0)
    rp_arc_disks_free (&d, 2);
  else if (!why)
    abort ();
  free (why);
  close (fd);
  return 0;
}
