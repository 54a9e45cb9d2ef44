/* libFuzzer target: libvirt's XML as the libvirt backend reads it
 * (core/backends/lvxml.c): a domain XML (virDomainGetXMLDesc) or a backup
 * job's XML (virDomainBackupGetXMLDesc); the first byte picks which.  A
 * parse either succeeds or says why; a disk rpfs would track has a target
 * and a path; the requests rpfs builds from what it parsed (any names,
 * escaped by libxml2) parse back with the same disks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lvxml.h"
#include "rpfs.h"
#include "util.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
domain (const char *xml, size_t len)
{
  struct lv_domxml d;
  char *err = NULL;
  if (rp_lvxml_domain (xml, len, &d, &err) != 0) {
    if (!err)
      abort ();
    free (err);
    return;
  }
  char **ids = rp_calloc (1, sizeof *ids);
  for (size_t i = 0; i < d.ndisks; i++) {
    if (!d.disks[i].skip && (!d.disks[i].target || !d.disks[i].path))
      abort ();
    if (d.disks[i].target)
      ids = rp_strv_push (ids, d.disks[i].target);
  }
  /* The request built from those names must read back the same disks. */
  char *b = rp_lvxml_backup_pull ("base", "/run/x.sock", ids, ids, NULL);
  struct lv_backupxml back;
  if (rp_lvxml_backup (b, strlen (b), &back, &err) != 0
      || back.ndisks != rp_strv_len (ids) || !back.pull
      || strcmp (back.socket, "/run/x.sock"))
    abort ();
  for (size_t i = 0; i < back.ndisks; i++)
    if (strcmp (back.disks[i].name, ids[i]))
      abort ();
  rp_lvxml_backup_free (&back);
  free (b);
  free (rp_lvxml_checkpoint ("cp", "desc", ids, ids));
  rp_strv_free (ids);
  rp_lvxml_domain_free (&d);
}

static void
backup (const char *xml, size_t len)
{
  struct lv_backupxml b;
  char *err = NULL;
  if (rp_lvxml_backup (xml, len, &b, &err) != 0) {
    if (!err)
      abort ();
    free (err);
    return;
  }
  for (size_t i = 0; i < b.ndisks; i++)
    if (!b.disks[i].name)
      abort ();
  rp_lvxml_backup_free (&b);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  if (data[0] & 1)
    backup ((const char *) data + 1, size - 1);
  else
    domain ((const char *) data + 1, size - 1);
  return 0;
}
