/* Unit test of the FUSE frontend's path parser (fs/path.c).
 *
 * The parser is pure, so it is compiled into this test directly: the
 * Makefile's rule for tests/unit/check_* links only core/librpfscore.a. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../fs/path.c"
#include "runner.h"

static const char *const sys_methods[] = {
  "CreateReferencePoint", "ImportReferencePointMetadata", NULL,
};
static const char *const rp_methods[] = {
  "ExportReferencePoint", "RemoveAssociatedData", NULL,
};
static const char *const job_methods[] = { "RequestStateChange", NULL };
static const struct fs_names names = {
  .sys_methods = sys_methods,
  .rp_methods = rp_methods,
  .job_methods = job_methods,
};

/* Parse PATH and check kind and components (NULL: must be absent). */
static void
check (const char *path, enum fs_kind kind, const char *sys, const char *rp,
       const char *job, const char *name)
{
  struct fs_path p;
  enum fs_kind k = fs_path_parse (path, &names, &p);

#define CHECK_STR(field, want)                                          \
  do {                                                                  \
    if ((want) == NULL)                                                 \
      ck_assert_msg (p.field == NULL, "%s: " #field " is \"%s\"",       \
                     path, p.field);                                    \
    else                                                                \
      ck_assert_msg (p.field && strcmp (p.field, (want)) == 0,          \
                     "%s: " #field " is \"%s\", want \"%s\"",           \
                     path, p.field ? p.field : "(null)", (want));       \
  } while (0)

  ck_assert_msg (k == kind, "%s: got %s, want %s", path,
                 fs_kind_name (k), fs_kind_name (kind));
  ck_assert_int_eq (p.kind, k);
  CHECK_STR (sys, sys);
  CHECK_STR (rp, rp);
  CHECK_STR (job, job);
  CHECK_STR (name, name);
#undef CHECK_STR
}

START_TEST (test_top)
{
  check ("/", FS_ROOT, NULL, NULL, NULL, NULL);
  check ("", FS_ROOT, NULL, NULL, NULL, NULL);
  check ("/web01", FS_SYSTEM, "web01", NULL, NULL, NULL);
  check ("web01", FS_SYSTEM, "web01", NULL, NULL, NULL);
  check ("/jobs", FS_JOBS, NULL, NULL, NULL, NULL);
}
END_TEST

START_TEST (test_system)
{
  check ("/web01/ElementName", FS_SYS_PROP, "web01", NULL, NULL,
         "ElementName");
  check ("/web01/VirtualSystemIdentifier", FS_SYS_PROP, "web01", NULL, NULL,
         "VirtualSystemIdentifier");
  /* Existence of a property is the core's business. */
  check ("/web01/NoSuchThing", FS_SYS_PROP, "web01", NULL, NULL,
         "NoSuchThing");
  check ("/web01/CreateReferencePoint", FS_SYS_METHOD, "web01", NULL, NULL,
         "CreateReferencePoint");
  check ("/web01/ImportReferencePointMetadata", FS_SYS_METHOD, "web01",
         NULL, NULL, "ImportReferencePointMetadata");
  check ("/web01/disks", FS_SYS_DISKS, "web01", NULL, NULL, NULL);
  check ("/web01/disks/sda", FS_SYS_DISK, "web01", NULL, NULL, "sda");
  check ("/web01/disks/sda/x", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/referencepoints", FS_RPS, "web01", NULL, NULL, NULL);
  check ("/web01/ElementName/x", FS_NONE, NULL, NULL, NULL, NULL);
}
END_TEST

START_TEST (test_refpoint)
{
  const char *rp = "/web01/referencepoints/rp1";

  check (rp, FS_RP, "web01", "rp1", NULL, NULL);
  check ("/web01/referencepoints/rp1/InstanceID", FS_RP_PROP, "web01", "rp1",
         NULL, "InstanceID");
  check ("/web01/referencepoints/rp1/VirtualSystemIdentifier", FS_RP_PROP,
         "web01", "rp1", NULL, "VirtualSystemIdentifier");
  check ("/web01/referencepoints/rp1/ExportReferencePoint", FS_RP_METHOD,
         "web01", "rp1", NULL, "ExportReferencePoint");
  check ("/web01/referencepoints/rp1/RemoveAssociatedData", FS_RP_METHOD,
         "web01", "rp1", NULL, "RemoveAssociatedData");
  check ("/web01/referencepoints/rp1/ExportSettingData", FS_RP_SETTINGS_DIR,
         "web01", "rp1", NULL, NULL);
  check ("/web01/referencepoints/rp1/ExportSettingData/BaseReferencePoint",
         FS_RP_SETTING, "web01", "rp1", NULL, "BaseReferencePoint");
  check ("/web01/referencepoints/rp1/ExportSettingData/DisksToExport",
         FS_RP_SETTING, "web01", "rp1", NULL, "DisksToExport");
  check ("/web01/referencepoints/rp1/ExportSettingData/DisksToExport/x",
         FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/referencepoints/rp1/disks", FS_RP_DISKS, "web01", "rp1",
         NULL, NULL);
  check ("/web01/referencepoints/rp1/disks/sdb", FS_RP_DISK, "web01", "rp1",
         NULL, "sdb");
  check ("/web01/referencepoints/rp1/disks/sdb/x", FS_NONE,
         NULL, NULL, NULL, NULL);
  check ("/web01/referencepoints/rp1/job", FS_RP_JOBLINK, "web01", "rp1",
         NULL, NULL);
  check ("/web01/referencepoints/rp1/job/JobState", FS_NONE,
         NULL, NULL, NULL, NULL);
  check ("/web01/referencepoints/rp1/InstanceID/x", FS_NONE,
         NULL, NULL, NULL, NULL);
  /* A reference point may be named like a fixed name elsewhere. */
  check ("/web01/referencepoints/disks", FS_RP, "web01", "disks", NULL, NULL);
  check ("/web01/referencepoints/jobs/job", FS_RP_JOBLINK, "web01", "jobs",
         NULL, NULL);
}
END_TEST

START_TEST (test_jobs)
{
  check ("/jobs/7", FS_JOB, NULL, NULL, "7", NULL);
  check ("/jobs/7/JobState", FS_JOB_PROP, NULL, NULL, "7", "JobState");
  check ("/jobs/7/status", FS_JOB_PROP, NULL, NULL, "7", "status");
  check ("/jobs/7/RequestStateChange", FS_JOB_METHOD, NULL, NULL, "7",
         "RequestStateChange");
  check ("/jobs/7/JobState/x", FS_NONE, NULL, NULL, NULL, NULL);
  /* Relative paths, as in core notifications. */
  check ("jobs/7/PercentComplete", FS_JOB_PROP, NULL, NULL, "7",
         "PercentComplete");
  /* "jobs" is never a system, even with system-like children. */
  check ("/jobs/disks", FS_JOB, NULL, NULL, "disks", NULL);
  check ("/jobs/referencepoints/x", FS_JOB_PROP, NULL, NULL,
         "referencepoints", "x");
}
END_TEST

START_TEST (test_bad)
{
  struct fs_path p;
  char *big;

  check ("//", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01//disks", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/.", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/..", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/../jobs", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/referencepoints/./ElementName", FS_NONE,
         NULL, NULL, NULL, NULL);
  check ("/a/b/c/d/e/f", FS_NONE, NULL, NULL, NULL, NULL);
  check ("/web01/x/y", FS_NONE, NULL, NULL, NULL, NULL);
  ck_assert_int_eq (fs_path_parse (NULL, &names, &p), FS_NONE);

  big = malloc (FS_PATH_MAX + 2);
  ck_assert_ptr_nonnull (big);
  big[0] = '/';
  memset (big + 1, 'a', FS_PATH_MAX);
  big[FS_PATH_MAX + 1] = '\0';
  ck_assert_int_eq (fs_path_parse (big, &names, &p), FS_NONE);
  /* Just fits (FS_PATH_MAX - 1 characters after the slash). */
  big[FS_PATH_MAX] = '\0';
  ck_assert_int_eq (fs_path_parse (big, &names, &p), FS_SYSTEM);
  free (big);
}
END_TEST

START_TEST (test_no_names)
{
  struct fs_path p;

  /* Without method lists every file is a property (the notifier only
   * needs to know files from directories). */
  ck_assert_int_eq (fs_path_parse ("/web01/CreateReferencePoint", NULL, &p),
                    FS_SYS_PROP);
  ck_assert_int_eq (fs_path_parse ("/jobs/1/RequestStateChange", NULL, &p),
                    FS_JOB_PROP);
  ck_assert_int_eq (fs_path_parse ("web01/referencepoints/r/job", NULL, &p),
                    FS_RP_JOBLINK);
}
END_TEST

START_TEST (test_kind_predicates)
{
  ck_assert (fs_kind_is_dir (FS_ROOT));
  ck_assert (fs_kind_is_dir (FS_RP_SETTINGS_DIR));
  ck_assert (fs_kind_is_dir (FS_JOB));
  ck_assert (!fs_kind_is_dir (FS_RP_JOBLINK));
  ck_assert (!fs_kind_is_dir (FS_SYS_DISK));
  ck_assert (!fs_kind_is_dir (FS_NONE));
  ck_assert (fs_kind_is_value (FS_RP_SETTING));
  ck_assert (fs_kind_is_value (FS_JOB_METHOD));
  ck_assert (!fs_kind_is_value (FS_RP_DISK));
  ck_assert (!fs_kind_is_value (FS_RP_JOBLINK));
  ck_assert_str_eq (fs_kind_name (FS_RP_JOBLINK), "RP_JOBLINK");
  ck_assert_str_eq (fs_kind_name ((enum fs_kind) 999), "?");
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("path");
  TCase *tc = tcase_create ("parse");
  tcase_add_test (tc, test_top);
  tcase_add_test (tc, test_system);
  tcase_add_test (tc, test_refpoint);
  tcase_add_test (tc, test_jobs);
  tcase_add_test (tc, test_bad);
  tcase_add_test (tc, test_no_names);
  tcase_add_test (tc, test_kind_predicates);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
