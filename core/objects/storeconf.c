/* STORE/rpfs.conf: settings of the whole store, "Key = Value" lines.
 *
 *   libvirt = URI    every domain of that libvirt connection is a system
 *                    (backends/lvstore.c), named after the domain
 *
 * The file is optional; an unknown key or a repeated one fails the mount
 * with the file and line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define STORE_CONF_MAX (64u << 10)

int
rp_store_conf_load (struct rp_core *core, char **err)
{
  CLEANUP_FREE char *path = rp_asprintf ("%s/rpfs.conf", core->store);
  size_t len;
  CLEANUP_FREE char *text = rp_read_file (path, &len);
  if (!text && errno == ENOENT)
    return 0;                   /* the file is optional */
  if (!text) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  if (len > STORE_CONF_MAX) {
    *err = rp_asprintf ("%s: larger than 64 KiB", path);
    return -1;
  }
  struct rp_kv *kv = rp_kv_parse (path, text, len, err);
  if (!kv)
    return -1;
  int r = 0;
  for (size_t i = 0; r == 0 && i < kv->n; i++) {
    if (strcmp (kv->keys[i], "libvirt") != 0) {
      *err = rp_asprintf ("%s: unknown key '%s' (known keys: libvirt)", path,
                          kv->keys[i]);
      r = -1;
    }
    else if (core->libvirt_uri) {
      *err = rp_asprintf ("%s: 'libvirt' is given twice", path);
      r = -1;
    }
    else if (!*kv->vals[i]) {
      *err = rp_asprintf ("%s: 'libvirt' needs a connection URI "
                          "(e.g. qemu:///system)", path);
      r = -1;
    }
    else
      core->libvirt_uri = rp_strdup (kv->vals[i]);
  }
  rp_kv_free (kv);
  return r;
}
