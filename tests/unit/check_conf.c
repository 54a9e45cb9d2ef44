/* Unit tests for core/objects/conf.c: system definitions and key = value records. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "util.h"
#include "runner.h"

#define FILE_ "systems/web01.conf"

static struct rp_conf *
parse (const char *text)
{
  char *err = NULL;
  struct rp_conf *c = rp_conf_parse (FILE_, "web01", text, strlen (text),
                                     &err);
  ck_assert_msg (c != NULL, "unexpected error: %s", err);
  ck_assert_ptr_null (err);
  return c;
}

/* Parsing TEXT must fail with exactly WANT. */
static void
expect_err (const char *text, const char *want)
{
  char *err = NULL;
  struct rp_conf *c = rp_conf_parse (FILE_, "web01", text, strlen (text),
                                     &err);
  ck_assert_msg (c == NULL, "parsed, but expected: %s", want);
  ck_assert_ptr_nonnull (err);
  ck_assert_str_eq (err, want);
  free (err);
}

START_TEST (test_spec_example)
{
  const char *text =
    "# web server\n"
    "VirtualSystemIdentifier = 5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10\n"
    "\n"
    "disk sda = /var/lib/images/web01-sda.qcow2\n"
    "   disk sdb=/var/lib/images/web01-sdb.qcow2   # data disk\n"
    "description = Web server, rack 4\n";
  struct rp_conf *c = parse (text);

  ck_assert_str_eq (c->name, "web01");
  ck_assert_str_eq (c->uuid, "5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10");
  ck_assert_uint_eq (c->ndisks, 2);
  ck_assert_str_eq (c->disks[0].id, "sda");
  ck_assert_str_eq (c->disks[0].path, "/var/lib/images/web01-sda.qcow2");
  ck_assert_ptr_null (c->disks[0].node);
  ck_assert_int_eq (c->disks[0].line, 4);
  ck_assert_str_eq (c->disks[1].id, "sdb");
  ck_assert_str_eq (c->disks[1].path, "/var/lib/images/web01-sdb.qcow2");
  ck_assert_int_eq (c->disks[1].line, 5);
  ck_assert_ptr_null (c->qmp);
  ck_assert_str_eq (c->description, "Web server, rack 4");
  ck_assert_str_eq (c->text, text);
  rp_conf_free (c);
}
END_TEST

START_TEST (test_minimal)
{
  /* No UUID, no final newline, CRLF line ends, '#' inside a word kept. */
  struct rp_conf *c = parse ("disk a.b-c_1 = /img/my disk #1.qcow2\r\n"
                             "disk x=/img/a=b#c.qcow2");
  ck_assert_ptr_null (c->uuid);
  ck_assert_ptr_null (c->description);
  ck_assert_uint_eq (c->ndisks, 2);
  ck_assert_str_eq (c->disks[0].id, "a.b-c_1");
  ck_assert_str_eq (c->disks[0].path, "/img/my disk");
  ck_assert_str_eq (c->disks[1].path, "/img/a=b#c.qcow2");
  rp_conf_free (c);

  /* An upper-case GUID is accepted and stored in lower case. */
  c = parse ("VirtualSystemIdentifier=5F0C7E52-3C1D-4C4E-9A36-0E4F3C2B9D10\n"
             "disk sda = /a\n");
  ck_assert_str_eq (c->uuid, "5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10");
  rp_conf_free (c);

  /* The text is kept even when it holds a NUL in a comment. */
  char *err = NULL;
  const char nul[] = "disk sda = /a\n# x\0y\n";
  c = rp_conf_parse (FILE_, "web01", nul, sizeof nul - 1, &err);
  ck_assert_ptr_nonnull (c);
  ck_assert_int_eq (memcmp (c->text, nul, sizeof nul), 0);
  rp_conf_free (c);
}
END_TEST

START_TEST (test_running_vm)
{
  /* node lines may come before or after their disk. */
  struct rp_conf *c = parse ("qmp = /run/vm/web01.qmp\n"
                             "node sdb = drive-virtio1\n"
                             "disk sda = /img/a.qcow2\n"
                             "disk sdb = /img/b.qcow2\n"
                             "node sda = libvirt-1-format\n");
  ck_assert_str_eq (c->qmp, "/run/vm/web01.qmp");
  ck_assert_str_eq (c->disks[0].node, "libvirt-1-format");
  ck_assert_str_eq (c->disks[1].node, "drive-virtio1");
  ck_assert_ptr_null (c->agent);
  ck_assert_int_eq (c->agent_timeout, 10);
  ck_assert_int_eq (c->fallback_crash, 0);
  ck_assert_ptr_null (c->vm_definition);
  ck_assert_uint_eq (c->export_rate, 0);
  ck_assert_int_eq (c->export_nice, 19);
  ck_assert_int_eq (c->export_rate_auto, 1);   /* the default with qmp */
  rp_conf_free (c);

  c = parse ("qmp = /run/vm/web01.qmp\n"
             "guest-agent = /run/vm/web01.qga  # qemu-guest-agent\n"
             "guest-agent-timeout = 30\n"
             "consistency-fallback = crash\n"
             "export-rate-limit = 200M/s  # MiB per second\n"
             "export-nice = 0\n"
             "vm-definition = /etc/libvirt/qemu/web01.xml\n"
             "disk sda = /img/a.qcow2\n"
             "node sda = sda\n");
  ck_assert_str_eq (c->agent, "/run/vm/web01.qga");
  ck_assert_int_eq (c->agent_timeout, 30);
  ck_assert_int_eq (c->fallback_crash, 1);
  ck_assert_uint_eq (c->export_rate, 200ull << 20);
  ck_assert_int_eq (c->export_nice, 0);
  ck_assert_int_eq (c->export_rate_auto, 0);   /* a fixed cap */
  ck_assert_str_eq (c->vm_definition, "/etc/libvirt/qemu/web01.xml");
  rp_conf_free (c);
}
END_TEST

START_TEST (test_line_errors)
{
  expect_err ("disk sda = /a\n\ndisk a/b = /b\n",
              FILE_ ":3: disk id 'a/b' is not valid (allowed: letters, "
              "digits, '_', '.', '-'; 1 to 64 characters)");
  expect_err ("disk .. = /b\n",
              FILE_ ":1: disk id '..' is not valid (allowed: letters, "
              "digits, '_', '.', '-'; 1 to 64 characters)");
  expect_err ("disk sda = /a\nthis line has no equals sign\n",
              FILE_ ":2: missing '=' (expected 'Key = Value')");
  expect_err ("disk sda = /a\n = /x\n",
              FILE_ ":2: missing key before '=' (expected 'Key = Value')");
  expect_err ("disk sda = /a\nmemory = 4G\n",
              FILE_ ":2: unknown key 'memory' (known keys: "
              "VirtualSystemIdentifier, disk, node, qmp, guest-agent, "
              "guest-agent-timeout, consistency-fallback, vm-definition, "
              "description, export-rate-limit, export-nice, "
              "export-compression-level, owner, group, libvirt-domain, "
              "libvirt-uri)");
  expect_err ("Disk sda = /a\n",
              FILE_ ":1: unknown key 'Disk sda' (known keys: "
              "VirtualSystemIdentifier, disk, node, qmp, guest-agent, "
              "guest-agent-timeout, consistency-fallback, vm-definition, "
              "description, export-rate-limit, export-nice, "
              "export-compression-level, owner, group, libvirt-domain, "
              "libvirt-uri)");
  expect_err ("disk sda = /a\n# c\ndisk sda = /b\n",
              FILE_ ":3: disk 'sda' is defined twice (first on line 1)");
  expect_err ("disk sda = images/a.qcow2\n",
              FILE_ ":1: the image path of disk 'sda' must be absolute "
              "(start with '/'), not 'images/a.qcow2'");
  expect_err ("disk sda =\n",
              FILE_ ":1: 'disk sda' has no value after '='");
  expect_err ("disk = /a\n",
              FILE_ ":1: 'disk' needs a disk id before '=' "
              "(expected 'disk ID = PATH')");
  expect_err ("disk sda = /a\nnode = n\n",
              FILE_ ":2: 'node' needs a disk id before '=' "
              "(expected 'node ID = NODENAME')");
  expect_err ("disk sda sdb = /a\n",
              FILE_ ":1: disk id 'sda sdb' is not valid (allowed: letters, "
              "digits, '_', '.', '-'; 1 to 64 characters)");
  expect_err ("qmp x = /s\ndisk sda = /a\n",
              FILE_ ":1: 'qmp' takes nothing between the key and '=' "
              "(found 'x')");
  expect_err ("VirtualSystemIdentifier = 5f0c7e52-3c1d-4c4e-9a36\n"
              "disk sda = /a\n",
              FILE_ ":1: VirtualSystemIdentifier '5f0c7e52-3c1d-4c4e-9a36' "
              "is not a UUID (expected 8-4-4-4-12 hexadecimal digits, e.g. "
              "5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10)");
  expect_err ("VirtualSystemIdentifier = 5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10\n"
              "disk sda = /a\n"
              "VirtualSystemIdentifier = 5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10\n",
              FILE_ ":3: 'VirtualSystemIdentifier' is given twice "
              "(first on line 1)");
  expect_err ("description = a\ndisk sda = /a\ndescription = b\n",
              FILE_ ":3: 'description' is given twice (first on line 1)");
}
END_TEST

/* NUL needs an explicit length. */
START_TEST (test_nul)
{
  char *err = NULL;
  const char t[] = "disk sda = /a\ndisk b\0 = /b\n";
  ck_assert_ptr_null (rp_conf_parse (FILE_, "web01", t, sizeof t - 1, &err));
  ck_assert_str_eq (err, FILE_ ":2: a NUL byte is not allowed");
  free (err);
}
END_TEST

START_TEST (test_qmp_errors)
{
  expect_err ("disk sda = /a\nnode sda = n1\n",
              FILE_ ":2: 'node sda' needs a 'qmp = SOCKET' line: a node "
              "name only means something in a running VM");
  expect_err ("qmp = /s\ndisk sda = /a\nnode sda = n1\nnode sdb = n2\n",
              FILE_ ":4: 'node sdb' names no disk: there is no "
              "'disk sdb = PATH' line");
  expect_err ("qmp = /s\ndisk sda = /a\ndisk sdb = /b\nnode sda = n1\n",
              FILE_ ":3: disk 'sdb' needs a 'node sdb = NODENAME' line, "
              "since 'qmp' (line 1) says a running VM owns it");
  expect_err ("qmp = /s\ndisk sda = /a\nnode sda = n1\nnode sda = n2\n",
              FILE_ ":4: the node of disk 'sda' is given twice "
              "(first on line 3)");
  expect_err ("qmp = /s\ndisk sda = /a\nnode sda = 1node\n",
              FILE_ ":3: node name '1node' of disk 'sda' is not a valid QEMU "
              "node name (a letter, then letters, digits, '_', '.', '-'; "
              "at most 31 characters)");
  expect_err ("qmp = /s\ndisk sda = /a\n"
              "node sda = n0123456789012345678901234567890\n",
              FILE_ ":3: node name 'n0123456789012345678901234567890' of "
              "disk 'sda' is not a valid QEMU node name (a letter, then "
              "letters, digits, '_', '.', '-'; at most 31 characters)");
  expect_err ("qmp = run/s\ndisk sda = /a\n",
              FILE_ ":1: the path of 'qmp' must be absolute "
              "(start with '/'), not 'run/s'");
  expect_err ("qmp = /s\nguest-agent = qga.sock\ndisk sda = /a\nnode sda = n\n",
              FILE_ ":2: the path of 'guest-agent' must be absolute "
              "(start with '/'), not 'qga.sock'");
  expect_err ("vm-definition = vm.xml\ndisk sda = /a\n",
              FILE_ ":1: the path of 'vm-definition' must be absolute "
              "(start with '/'), not 'vm.xml'");
  expect_err ("guest-agent = /q\ndisk sda = /a\n",
              FILE_ ":1: 'guest-agent' needs a 'qmp = SOCKET' line: only a "
              "running VM has a guest agent");
  expect_err ("disk sda = /a\nguest-agent-timeout = 0\n",
              FILE_ ":2: guest-agent-timeout '0' is not a number of seconds "
              "from 1 to 600");
  expect_err ("disk sda = /a\nguest-agent-timeout = 10s\n",
              FILE_ ":2: guest-agent-timeout '10s' is not a number of "
              "seconds from 1 to 600");
  expect_err ("disk sda = /a\nexport-rate-limit = auto\n",
              FILE_ ":2: 'export-rate-limit = auto' needs a 'qmp = SOCKET' "
              "line: it follows a running guest's disk latency");
  expect_err ("disk sda = /a\nexport-nice = 20\n",
              FILE_ ":2: export-nice '20' is not a nice value from 0 to 19");
  expect_err ("disk sda = /a\nexport-nice = -5\n",
              FILE_ ":2: export-nice '-5' is not a nice value from 0 to 19");
  expect_err ("disk sda = /a\nexport-nice = low\n",
              FILE_ ":2: export-nice 'low' is not a nice value from 0 to 19");
  expect_err ("disk sda = /a\nexport-nice = 99999999999999999999\n",
              FILE_ ":2: export-nice '99999999999999999999' is not a nice "
              "value from 0 to 19");
  expect_err ("disk sda = /a\nexport-nice = 5\nexport-nice = 5\n",
              FILE_ ":3: 'export-nice' is given twice (first on line 2)");
  expect_err ("disk sda = /a\nconsistency-fallback = maybe\n",
              FILE_ ":2: consistency-fallback 'maybe' is neither 'crash' "
              "(make a crash-consistent reference point when the guest "
              "cannot be frozen) nor 'fail' (the default)");
  expect_err ("disk sda = /a\nconsistency-fallback = crash\n"
              "consistency-fallback = fail\n",
              FILE_ ":3: 'consistency-fallback' is given twice (first on "
              "line 2)");
  expect_err ("disk sda = /a\nexport-rate-limit = 10 MB/s\n",
              FILE_ ":2: export-rate-limit '10 MB/s' is not a rate: bytes "
              "per second, with K, M, G or T for KiB, MiB, GiB or TiB "
              "(e.g. '200M'), at least 1M; 0 for no cap; 'auto' for a "
              "running VM");
  expect_err ("disk sda = /a\nexport-rate-limit = 512K\n",
              FILE_ ":2: export-rate-limit '512K' is not a rate: bytes "
              "per second, with K, M, G or T for KiB, MiB, GiB or TiB "
              "(e.g. '200M'), at least 1M; 0 for no cap; 'auto' for a "
              "running VM");
  expect_err ("disk sda = /a\nexport-rate-limit = 1G\nexport-rate-limit = 0\n",
              FILE_ ":3: 'export-rate-limit' is given twice (first on "
              "line 2)");
  expect_err ("qmp = /s\nqmp = /t\ndisk sda = /a\n",
              FILE_ ":2: 'qmp' is given twice (first on line 1)");
}
END_TEST

START_TEST (test_libvirt)
{
  /* Disks come from the domain's XML: no disk line needed. */
  struct rp_conf *c = parse ("libvirt-domain = web01\n");
  ck_assert_str_eq (c->libvirt_domain, "web01");
  ck_assert_ptr_null (c->libvirt_uri);
  ck_assert_uint_eq (c->ndisks, 0);
  rp_conf_free (c);
  c = parse ("libvirt-domain = web01\nlibvirt-uri = qemu+ssh://h/system\n"
             "disk vda = /var/lib/libvirt/images/web01.qcow2\n");
  ck_assert_str_eq (c->libvirt_uri, "qemu+ssh://h/system");
  ck_assert_uint_eq (c->ndisks, 1);
  rp_conf_free (c);
  expect_err ("libvirt-uri = qemu:///system\ndisk sda = /a\n",
              FILE_ ":1: 'libvirt-uri' needs a 'libvirt-domain = NAME' "
              "line");
  expect_err ("libvirt-domain = a\nqmp = /s\n",
              FILE_ ":2: 'qmp' and 'libvirt-domain' (line 1) exclude each "
              "other: libvirt owns its domain's monitor");
  expect_err ("libvirt-domain = a\nlibvirt-domain = b\n",
              FILE_ ":2: 'libvirt-domain' is given twice (first on line 1)");
}
END_TEST

START_TEST (test_file_errors)
{
  expect_err ("", FILE_ ": no 'disk ID = PATH' line");
  expect_err ("# nothing\n\n  \n", FILE_ ": no 'disk ID = PATH' line");
  expect_err ("description = empty\n", FILE_ ": no 'disk ID = PATH' line");

  char *err = NULL;
  ck_assert_ptr_null (rp_conf_parse ("systems/a b.conf", "a b",
                                     "disk sda = /a\n", 14, &err));
  ck_assert_str_eq (err, "systems/a b.conf: the system name 'a b' (from the "
                    "file name) is not valid (allowed: letters, digits, '_', "
                    "'.', '-'; 1 to 64 characters)");
  free (err);
  rp_conf_free (NULL);
}
END_TEST

/* ---- key = value records ---- */

START_TEST (test_kv_parse)
{
  const char *text =
    "# reference point record\n"
    "InstanceID = 1234\n"
    "\n"
    "  disk=sda  \n"
    "disk = sdb\n"
    "ExportDirectory = /backup/a=b # not a comment\n"
    "Empty =\n";
  char *err = NULL;
  struct rp_kv *kv = rp_kv_parse ("state/web01/rp/rp1/record", text,
                                  strlen (text), &err);
  ck_assert_ptr_nonnull (kv);
  ck_assert_uint_eq (kv->n, 5);
  ck_assert_str_eq (rp_kv_get (kv, "InstanceID"), "1234");
  ck_assert_str_eq (rp_kv_get (kv, "disk"), "sda");
  ck_assert_str_eq (rp_kv_get (kv, "ExportDirectory"),
                    "/backup/a=b # not a comment");
  ck_assert_str_eq (rp_kv_get (kv, "Empty"), "");
  ck_assert_ptr_null (rp_kv_get (kv, "missing"));
  ck_assert_ptr_null (rp_kv_get (kv, "instanceid"));

  const char **all = rp_kv_all (kv, "disk");
  ck_assert_str_eq (all[0], "sda");
  ck_assert_str_eq (all[1], "sdb");
  ck_assert_ptr_null (all[2]);
  free (all);
  all = rp_kv_all (kv, "nothing");
  ck_assert_ptr_null (all[0]);
  free (all);

  char *r = rp_kv_render (kv);
  ck_assert_str_eq (r, "InstanceID = 1234\ndisk = sda\ndisk = sdb\n"
                    "ExportDirectory = /backup/a=b # not a comment\n"
                    "Empty = \n");
  /* Round trip. */
  struct rp_kv *kv2 = rp_kv_parse ("x", r, strlen (r), &err);
  ck_assert_ptr_nonnull (kv2);
  ck_assert_uint_eq (kv2->n, kv->n);
  for (size_t i = 0; i < kv->n; i++) {
    ck_assert_str_eq (kv2->keys[i], kv->keys[i]);
    ck_assert_str_eq (kv2->vals[i], kv->vals[i]);
  }
  free (r);
  rp_kv_free (kv2);
  rp_kv_free (kv);
}
END_TEST

START_TEST (test_kv_build)
{
  struct rp_kv *kv = rp_kv_new ();
  char *r = rp_kv_render (kv);
  ck_assert_str_eq (r, "");
  free (r);
  rp_kv_add (kv, "A", "1");
  rp_kv_add (kv, "B", "two\nInjected = yes");
  rp_kv_add (kv, "A", "3");
  ck_assert_str_eq (rp_kv_get (kv, "B"), "two Injected = yes");
  r = rp_kv_render (kv);
  ck_assert_str_eq (r, "A = 1\nB = two Injected = yes\nA = 3\n");
  free (r);
  rp_kv_free (kv);
  rp_kv_free (NULL);
}
END_TEST

START_TEST (test_kv_errors)
{
  char *err = NULL;
  const char *t = "A = 1\n# ok\nno equals here\n";
  ck_assert_ptr_null (rp_kv_parse ("state/rec", t, strlen (t), &err));
  ck_assert_str_eq (err, "state/rec:3: missing '=' (expected 'Key = Value')");
  free (err);

  err = NULL;
  t = "A = 1\n = 2\n";
  ck_assert_ptr_null (rp_kv_parse ("state/rec", t, strlen (t), &err));
  ck_assert_str_eq (err, "state/rec:2: missing key before '=' "
                    "(expected 'Key = Value')");
  free (err);

  err = NULL;
  const char nul[] = "A = 1\0\n";
  ck_assert_ptr_null (rp_kv_parse ("state/rec", nul, sizeof nul - 1, &err));
  ck_assert_str_eq (err, "state/rec:1: a NUL byte is not allowed");
  free (err);

  /* Empty input is an empty record. */
  struct rp_kv *kv = rp_kv_parse ("state/rec", "", 0, &err);
  ck_assert_ptr_nonnull (kv);
  ck_assert_uint_eq (kv->n, 0);
  rp_kv_free (kv);
}
END_TEST

/* owner / group: names through NSS (daemon is in every Debian base
 * system's passwd and group), numeric ids as they are, root by default. */
START_TEST (test_owner_group)
{
  struct rp_conf *c = parse ("disk sda = /a\n");
  ck_assert_uint_eq (c->owner, 0);
  ck_assert_uint_eq (c->group, 0);
  rp_conf_free (c);

  c = parse ("owner = daemon\ngroup = daemon\ndisk sda = /a\n");
  ck_assert_uint_eq (c->owner, 1);
  ck_assert_uint_eq (c->group, 1);
  rp_conf_free (c);

  c = parse ("disk sda = /a\nowner = 4242\ngroup = 4343  # operators\n");
  ck_assert_uint_eq (c->owner, 4242);
  ck_assert_uint_eq (c->group, 4343);
  rp_conf_free (c);

  expect_err ("disk sda = /a\nowner = no-such-user-rpfs\n",
              FILE_ ":2: owner 'no-such-user-rpfs' is not known on this "
              "host (expected a user name or a numeric uid)");
  expect_err ("disk sda = /a\ngroup = no-such-group-rpfs\n",
              FILE_ ":2: group 'no-such-group-rpfs' is not known on this "
              "host (expected a group name or a numeric gid)");
  expect_err ("disk sda = /a\ngroup = 4294967295\n",
              FILE_ ":2: group '4294967295' is not known on this "
              "host (expected a group name or a numeric gid)");
  expect_err ("owner = 1\ndisk sda = /a\nowner = 2\n",
              FILE_ ":3: 'owner' is given twice (first on line 1)");
  expect_err ("disk sda = /a\ngroup =\n",
              FILE_ ":2: 'group' has no value after '='");
  expect_err ("disk sda = /a\nowner x = root\n",
              FILE_ ":2: 'owner' takes nothing between the key and '=' "
              "(found 'x')");
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("conf");
  TCase *tc = tcase_create ("conf");
  tcase_add_test (tc, test_spec_example);
  tcase_add_test (tc, test_minimal);
  tcase_add_test (tc, test_running_vm);
  tcase_add_test (tc, test_line_errors);
  tcase_add_test (tc, test_nul);
  tcase_add_test (tc, test_qmp_errors);
  tcase_add_test (tc, test_file_errors);
  tcase_add_test (tc, test_libvirt);
  tcase_add_test (tc, test_owner_group);
  suite_add_tcase (s, tc);
  tc = tcase_create ("kv");
  tcase_add_test (tc, test_kv_parse);
  tcase_add_test (tc, test_kv_build);
  tcase_add_test (tc, test_kv_errors);
  suite_add_tcase (s, tc);
  return rp_check_run (s);
}
