/* Unit tests for core/backends/imginfo.c: qemu-img info's JSON as the
 * libvirt backend reads it for a shut-off domain.  One test runs the real
 * qemu-img on a real image; the others feed text qemu-img 7.2 printed (the
 * in-use flag needs a QEMU killed while the image was open) and text that
 * is not what it prints. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imginfo.h"
#include "runner.h"

static const char *
state (const char *text, const char *name)
{
  return rp_imginfo_bitmap (text, strlen (text), name);
}

static char *
run (const char *cmd)
{
  FILE *f = popen (cmd, "r");
  ck_assert_ptr_nonnull (f);
  static char buf[65536];
  size_t n = fread (buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  ck_assert_int_eq (pclose (f), 0);
  return buf;
}

START_TEST (test_real_image)
{
  char dir[] = "/tmp/rpfs-imginfo-XXXXXX";
  ck_assert_ptr_nonnull (mkdtemp (dir));
  char cmd[512];
  snprintf (cmd, sizeof cmd,
            "cd %s && qemu-img create -q -f qcow2 a.qcow2 64M"
            " && qemu-img bitmap --add -g 65536 a.qcow2 rec"
            " && qemu-img bitmap --add --disable a.qcow2 off"
            " && qemu-img info --output=json a.qcow2", dir);
  const char *text = run (cmd);
  uint64_t size = 0;
  char *err = NULL;
  ck_assert_int_eq (rp_imginfo_size (text, strlen (text), &size, &err), 0);
  ck_assert_uint_eq (size, 64u << 20);
  ck_assert_ptr_null (state (text, "rec"));
  ck_assert_str_eq (state (text, "off"), "not recording");
  ck_assert_str_eq (state (text, "other"), RP_IMGINFO_MISSING);
  ck_assert_str_eq (state (text, "re"), RP_IMGINFO_MISSING);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq (system (cmd), 0);
}
END_TEST

START_TEST (test_in_use)
{
  const char *text =
    "{\"virtual-size\": 67108864, \"format\": \"qcow2\","
    " \"format-specific\": {\"type\": \"qcow2\", \"data\": {"
    "\"compat\": \"1.1\", \"bitmaps\": ["
    "{\"flags\": [\"in-use\", \"auto\"], \"name\": \"cpA\","
    " \"granularity\": 65536},"
    "{\"flags\": [\"auto\"], \"name\": \"cpB\", \"granularity\": 65536}]}}}";
  ck_assert_str_eq (state (text, "cpA"),
                    "inconsistent (QEMU was killed while it was in use)");
  ck_assert_ptr_null (state (text, "cpB"));
}
END_TEST

START_TEST (test_not_qemu_img)
{
  uint64_t size = 7;
  char *err = NULL;
  const char *bad[] = {
    "", "not json", "[]", "{\"virtual-size\": -1}",
    "{\"virtual-size\": \"64M\"}", "{}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq (rp_imginfo_size (bad[i], strlen (bad[i]), &size,
                                       &err), -1);
    ck_assert_ptr_nonnull (err);
    free (err);
    err = NULL;
  }
  ck_assert_uint_eq (size, 7);
  ck_assert_str_eq (state ("not json", "x"), "unreadable");
  ck_assert_str_eq (state ("[1]", "x"), "unreadable");
  /* Wrong types where qemu-img has arrays and strings: never usable. */
  ck_assert_str_eq (state ("{\"format-specific\": {\"data\": {\"bitmaps\":"
                           " {\"name\": \"x\"}}}}", "x"), RP_IMGINFO_MISSING);
  ck_assert_str_eq (state ("{\"format-specific\": {\"data\": {\"bitmaps\":"
                           " [{\"name\": 5}, {\"name\": \"x\", \"flags\":"
                           " \"auto\"}]}}}", "x"), "not recording");
  ck_assert_str_eq (state ("{\"format-specific\": {\"data\": {\"bitmaps\":"
                           " [{\"name\": \"x\", \"flags\": [1, null]}]}}}",
                           "x"), "not recording");
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("imginfo");
  TCase *tc = tcase_create ("imginfo");
  tcase_add_test (tc, test_real_image);
  tcase_add_test (tc, test_in_use);
  tcase_add_test (tc, test_not_qemu_img);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
