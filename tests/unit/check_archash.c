/* Unit tests for core/dataplane/archash.c: hashing the disks of an archive
 * export in one pass.  An archive written by rpfs's own writer (archive.c)
 * with a sparse member whose data ranges straddle blocks and whose last
 * block is short gives the same table as hashing the raw disk directly; the
 * archive's table member is read back; a qcow2 member is reported, not
 * hashed; a cut-short archive fails. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arc.h"
#include "archash.h"
#include "blockhash.h"
#include "digests.h"
#include "runner.h"

#define SIZE (1024 * 1024 + 100)   /* the last block is 100 bytes */

static int
sink (void *opaque, const void *buf, size_t len)
{
  return write (*(int *) opaque, buf, len) == (ssize_t) len ? 0 : -5;
}

/* The disk: zeros but for two ranges. */
static unsigned char *
disk (void)
{
  unsigned char *d = calloc (1, SIZE);
  memset (d + 70000, 0xa5, 5000);          /* inside block 1 */
  for (size_t i = 300000; i < SIZE; i++)    /* blocks 4.. to the end */
    d[i] = (unsigned char) (i * 7);
  return d;
}

static struct rp_digests *
direct (const unsigned char *d)
{
  struct rp_digests *t = rp_digests_new (SIZE);
  for (uint64_t b = 0; b < t->count; b++)
    rp_bh_hash (d + b * t->block, rp_digests_block_len (t, b),
                rp_digests_at (t, b));
  return t;
}

static void
add (struct rp_arc *c, const char *name, const void *buf, size_t len)
{
  char hex[65], *why = NULL;
  ck_assert_int_eq (rp_arc_add (c, name, buf, len, 0, hex, &why), 0);
}

/* The archive in a memfd, positioned at 0. */
static int
archive (const unsigned char *d, const struct rp_digests *t)
{
  int fd = memfd_create ("a", MFD_CLOEXEC);
  char *why = NULL, hex[65];
  struct rp_arc *c = rp_arc_new (RP_FMT_TGZ, 0, sink, &fd, &why);
  ck_assert_ptr_nonnull (c);
  add (c, "vm1/config", "x\n", 2);
  uint64_t map[] = { 70000, 5000, 300000, SIZE - 300000 };
  ck_assert_int_eq (rp_arc_begin (c, "vm1/disks/sda.raw", SIZE, 0, map, 2,
                                  &why), 0);
  ck_assert_int_eq (rp_arc_data (c, d, SIZE, &why), 0);
  ck_assert_int_eq (rp_arc_end (c, hex, &why), 0);
  size_t len;
  void *buf = rp_digests_render (t, &len);
  add (c, "vm1/disks/sda.digests", buf, len);
  free (buf);
  add (c, "vm1/disks/sdb.qcow2", "QFI\xfb", 4);
  add (c, "vm1/SHA256SUMS", "", 0);
  ck_assert_int_eq (rp_arc_close (c, &why), 0);
  rp_arc_free (c);
  lseek (fd, 0, SEEK_SET);
  return fd;
}

START_TEST (test_hash_disks)
{
  unsigned char *d = disk ();
  struct rp_digests *want = direct (d);
  int fd = archive (d, want);
  char *disks[] = { "sda", "sdb", NULL }, *why = NULL;
  struct rp_arc_disks r = { 0 };
  atomic_bool cancel = false;
  ck_assert_int_eq (rp_arc_hash_disks (fd, "t", "vm1", disks, SIZE, &cancel,
                                       NULL, NULL, &r, &why), 0);
  ck_assert_ptr_nonnull (r.got[0]);
  ck_assert_uint_eq (r.got[0]->count, want->count);
  ck_assert_mem_eq (r.got[0]->v, want->v, want->count * RP_BH_LEN);
  ck_assert_ptr_nonnull (r.own[0]);
  ck_assert_mem_eq (r.own[0]->v, want->v, want->count * RP_BH_LEN);
  ck_assert_ptr_null (r.got[1]);
  ck_assert_str_eq (r.odd[1], "vm1/disks/sdb.qcow2");
  rp_arc_disks_free (&r, 2);

  /* A disk image whose size is not the disk's: refused, no table made. */
  uint64_t sizes[] = { SIZE + 65536, SIZE };
  struct rp_arc_disks bad = { .size = sizes };
  lseek (fd, 0, SEEK_SET);
  ck_assert_int_eq (rp_arc_hash_disks (fd, "t", "vm1", disks, SIZE, &cancel,
                                       NULL, NULL, &bad, &why), -1);
  ck_assert_ptr_nonnull (strstr (why, "not the disk's size"));
  free (why);
  why = NULL;

  /* Cut short in the middle of the disk's data: an error, not a table. */
  off_t end = lseek (fd, 0, SEEK_END);
  ck_assert_int_eq (ftruncate (fd, end / 2), 0);
  lseek (fd, 0, SEEK_SET);
  ck_assert_int_eq (rp_arc_hash_disks (fd, "t", "vm1", disks, SIZE, &cancel,
                                       NULL, NULL, &r, &why), -1);
  ck_assert_ptr_nonnull (why);
  free (why);
  close (fd);
  rp_digests_free (want);
  free (d);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("archash");
  TCase *tc = tcase_create ("archash");
  tcase_add_test (tc, test_hash_disks);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
