/* Unit tests for core/dataplane/imgmap.c: one line of qemu-img map's JSON.
 * One test runs the real qemu-img on a real image with data, a zeroed
 * cluster, a partly written cluster and holes; the other feeds lines that
 * are not what it prints. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgmap.h"
#include "runner.h"

START_TEST (test_real_image)
{
  char dir[] = "/tmp/rpfs-imgmap-XXXXXX";
  ck_assert_ptr_nonnull (mkdtemp (dir));
  char cmd[512];
  snprintf (cmd, sizeof cmd,
            "cd %s && qemu-img create -q -f qcow2 a.qcow2 16M"
            " && qemu-io -f qcow2 -c 'write -P 1 1M 192k' -c 'write -z 4M 64k'"
            " -c 'write -P 3 8M 4k' a.qcow2 >/dev/null"
            " && qemu-img map --output=json -f qcow2 a.qcow2", dir);
  FILE *f = popen (cmd, "r");
  ck_assert_ptr_nonnull (f);
  char line[512];
  uint64_t next = 0, data = 0, zero_present = 0;
  size_t n = 0;
  while (fgets (line, sizeof line, f)) {
    struct rp_imgmap_ext e;
    ck_assert_int_eq (rp_imgmap_line (line, strlen (line), &e), 1);
    ck_assert_uint_eq (e.start, next);      /* in order, no gap */
    ck_assert_uint_eq (e.depth, 0);
    ck_assert (e.data == e.has_offset);     /* stored as is: an offset */
    if (e.data) {
      ck_assert (!e.zero);
      ck_assert_uint_eq (e.offset % 65536, 0);
      data += e.length;
    }
    if (e.zero && e.start == 4u << 20)
      zero_present += e.length;
    next = e.start + e.length;
    n++;
  }
  ck_assert_int_eq (pclose (f), 0);
  ck_assert_uint_eq (next, 16u << 20);
  ck_assert_uint_eq (data, 192u * 1024 + 65536);   /* 4k: one cluster */
  ck_assert_uint_eq (zero_present, 65536);
  ck_assert_uint_ge (n, 5);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq (system (cmd), 0);
}
END_TEST

START_TEST (test_lines)
{
  struct rp_imgmap_ext e;
  const char *ok = "{ \"start\": 65536, \"length\": 131072, \"depth\": 0,"
    " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 5},";
  ck_assert_int_eq (rp_imgmap_line (ok, strlen (ok), &e), 1);
  ck_assert_uint_eq (e.start, 65536);
  ck_assert_uint_eq (e.length, 131072);
  ck_assert (e.data && !e.zero && e.has_offset && e.offset == 5);
  const char *none[] = { "", "[", "]", "  [] ", "\n" };
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
    ck_assert_int_eq (rp_imgmap_line (none[i], strlen (none[i]), &e), 0);
  const char *bad[] = {
    "not json", "[1]", "{}", "{\"start\": 0}",
    "{\"start\": -1, \"length\": 1, \"depth\": 0, \"zero\": true, \"data\": false}",
    "{\"start\": 0, \"length\": 0, \"depth\": 0, \"zero\": true, \"data\": false}",
    "{\"start\": 0, \"length\": 1, \"depth\": 0, \"zero\": 1, \"data\": false}",
    "{\"start\": 0, \"length\": 1, \"depth\": 0, \"zero\": false, \"data\": true,"
    " \"offset\": \"5\"}",
    "{\"start\": 18446744073709551615, \"length\": 2, \"depth\": 0,"
    " \"zero\": true, \"data\": false}",
    "{\"start\": 0, \"start\": 1, \"length\": 1, \"depth\": 0, \"zero\": true,"
    " \"data\": false}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ck_assert_msg (rp_imgmap_line (bad[i], strlen (bad[i]), &e) == -1,
                   "accepted: %s", bad[i]);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("imgmap");
  TCase *tc = tcase_create ("imgmap");
  tcase_add_test (tc, test_real_image);
  tcase_add_test (tc, test_lines);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
