/* Unit tests for core/lib/rv.c: the whole table of interface.md section 6. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "rpfs.h"
#include "runner.h"

static const struct {
  int rv, err;
  const char *name;
} expect[] = {
  { 0, 0, "Completed with no error" },
  { 4096, 0, "Method parameters checked, job started" },
  { 32768, EIO, "Failed" },
  { 32769, EACCES, "Access denied" },
  { 32770, EOPNOTSUPP, "Not supported" },
  { 32771, EPROTO, "Status is unknown" },
  { 32772, ETIMEDOUT, "Timeout" },
  { 32773, EINVAL, "Invalid parameter" },
  { 32774, EBUSY, "System is in use" },
  { 32775, EPERM, "Invalid state for this operation" },
  { 32776, EINVAL, "Incorrect data type" },
  { 32777, ENODEV, "System is not available" },
  { 32778, ENOMEM, "Out of memory" },
};

START_TEST (test_table)
{
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    ck_assert_msg (rp_rv_errno (expect[i].rv) == expect[i].err,
                   "rv %d: errno %d, expected %d", expect[i].rv,
                   rp_rv_errno (expect[i].rv), expect[i].err);
    ck_assert_str_eq (rp_rv_name (expect[i].rv), expect[i].name);
  }
}
END_TEST

START_TEST (test_enum)
{
  /* The enum in rpfs.h agrees with the numbers of the contract. */
  ck_assert_int_eq (rp_rv_errno (RV_INVALID_PARAMETER), EINVAL);
  ck_assert_int_eq (rp_rv_errno (RV_ACCESS_DENIED), EACCES);
  ck_assert_int_eq (rp_rv_errno (RV_IN_USE), EBUSY);
  ck_assert_int_eq (rp_rv_errno (RV_INVALID_STATE), EPERM);
  ck_assert_int_eq (rp_rv_errno (RV_NOT_AVAILABLE), ENODEV);
  ck_assert_int_eq (rp_rv_errno (RV_JOB_STARTED), 0);
}
END_TEST

START_TEST (test_unknown)
{
  int unknown[] = { 1, -1, 4095, 4097, 32767, 32779, 65535, 0x7fffffff };
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    ck_assert_int_eq (rp_rv_errno (unknown[i]), EIO);
    ck_assert_ptr_nonnull (rp_rv_name (unknown[i]));
    ck_assert_str_eq (rp_rv_name (unknown[i]), "Unknown return value");
  }
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("rv");
  TCase *tc = tcase_create ("rv");
  tcase_add_test (tc, test_table);
  tcase_add_test (tc, test_enum);
  tcase_add_test (tc, test_unknown);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
