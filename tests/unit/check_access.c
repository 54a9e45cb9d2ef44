/* Unit tests for core/methods/access.c: who is an operator, what a file's owner,
 * group and mode give a caller. */
#include <check.h>
#include <unistd.h>

#include "access.h"
#include "runner.h"

/* Ids no test host is likely to run as (rp_is_operator counts the user
 * rpfs runs as, passed here as SELF). */
#define OWNER 4200
#define GROUP 4300
#define SELF 4400

static struct rp_caller
caller (uid_t uid, gid_t gid, int ngroups, const gid_t *groups)
{
  struct rp_caller c = { .uid = uid, .gid = gid, .ngroups = ngroups };
  for (int i = 0; i < ngroups; i++)
    c.groups[i] = groups[i];
  return c;
}

START_TEST (test_operator)
{
  const gid_t in[] = { 10, GROUP };
  const gid_t out[] = { 10, 20 };
  struct rp_caller root = caller (0, 0, 0, NULL);
  struct rp_caller owner = caller (OWNER, 99, 0, NULL);
  struct rp_caller self = caller (SELF, 99, 0, NULL);
  struct rp_caller primary = caller (4501, GROUP, 0, NULL);
  struct rp_caller supplementary = caller (4502, 99, 2, in);
  struct rp_caller other = caller (4503, 99, 2, out);

  ck_assert (rp_is_operator (OWNER, GROUP, SELF, &root));
  ck_assert (rp_is_operator (OWNER, GROUP, SELF, &owner));
  ck_assert (rp_is_operator (OWNER, GROUP, SELF, &self));
  ck_assert (rp_is_operator (OWNER, GROUP, SELF, &primary));
  ck_assert (rp_is_operator (OWNER, GROUP, SELF, &supplementary));
  ck_assert (!rp_is_operator (OWNER, GROUP, SELF, &other));
  /* The defaults, root and root: nobody else. */
  ck_assert (!rp_is_operator (0, 0, 0, &owner));
  ck_assert (rp_is_operator (0, 0, 0, &root));
}
END_TEST

START_TEST (test_mode)
{
  const gid_t in[] = { GROUP };
  struct rp_caller root = caller (0, 0, 0, NULL);
  struct rp_caller owner = caller (OWNER, 99, 0, NULL);
  struct rp_caller member = caller (4501, 99, 1, in);
  struct rp_caller other = caller (4503, 99, 0, NULL);

  /* 0640: owner rw, group r, others nothing. */
  ck_assert (rp_mode_allows (OWNER, GROUP, 0640, &owner, R_OK | W_OK));
  ck_assert (rp_mode_allows (OWNER, GROUP, 0640, &member, R_OK));
  ck_assert (!rp_mode_allows (OWNER, GROUP, 0640, &member, W_OK));
  ck_assert (!rp_mode_allows (OWNER, GROUP, 0640, &other, R_OK));
  ck_assert (rp_mode_allows (OWNER, GROUP, 0, &root, R_OK | W_OK));
  /* The owner's class decides alone, as in the kernel: 0044 gives the
   * owner nothing even though group and others may read. */
  ck_assert (!rp_mode_allows (OWNER, GROUP, 0044, &owner, R_OK));
  ck_assert (!rp_mode_allows (OWNER, GROUP, 0404, &member, R_OK));
  ck_assert (rp_mode_allows (OWNER, GROUP, 0604, &other, R_OK));
  ck_assert (!rp_mode_allows (OWNER, GROUP, 0604, &other, W_OK));
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("access");
  TCase *tc = tcase_create ("access");
  tcase_add_test (tc, test_operator);
  tcase_add_test (tc, test_mode);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
