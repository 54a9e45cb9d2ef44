/* libFuzzer target: system definitions (systems/NAME.conf, core/objects/conf.c).
 * The input is the whole file; a parsed definition must name at least one
 * disk with an absolute path (or a libvirt domain, whose XML names them),
 * and its own text must parse again.  The first byte's low bit parses it
 * as in a store that says "libvirt = URI" (rp_conf_parse_in): a file with
 * no disk, qmp or libvirt-domain line is then the domain of its name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *err = NULL;
  const char *lv = size && (data[0] & 1) ? "qemu:///system" : NULL;
  struct rp_conf *c = rp_conf_parse_in ("fuzz.conf", "vm1",
                                        (const char *) data, size, lv, &err);
  if (c) {
    if ((c->ndisks == 0 && !c->libvirt_domain)
        || (c->ndisks && c->disks[0].path[0] != '/') || err)
      abort ();
    struct rp_conf *again = rp_conf_parse_in ("fuzz.conf", "vm1", c->text,
                                              strlen (c->text), lv, &err);
    if (!again && memchr (data, '\0', size) == NULL)
      abort ();
    rp_conf_free (again);
    rp_conf_free (c);
  }
  else if (!err)
    abort ();                   /* a refusal always says why */
  free (err);
  return 0;
}
