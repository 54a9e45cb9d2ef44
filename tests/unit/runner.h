/* The end of every check program's main: run suite S, free it, and turn
 * the number of failures into the exit status. */
#ifndef RPFS_CHECK_RUNNER_H
#define RPFS_CHECK_RUNNER_H

#include <check.h>
#include <stdlib.h>

static inline int
rp_check_run (Suite *s)
{
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
