/* libFuzzer target: digest table files (rp_digests_parse in
 * core/objects/digests.c), which VerifyExport reads from an export a caller
 * names.  Each input is tried as it is and once more with its correct
 * SHA-256 appended, so that inputs get past the checksum to the header and
 * size checks; a table that parses must render to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"
#include "digests.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
try (const uint8_t *buf, size_t len)
{
  char *err = NULL;
  struct rp_digests *t = rp_digests_parse (buf, len, &err);
  if (!t) {
    if (!err)
      abort ();
    free (err);
    return;
  }
  size_t n;
  void *out = rp_digests_render (t, &n);
  if (n != len || memcmp (out, buf, len) != 0)
    abort ();
  free (out);
  rp_digests_free (t);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size > (1u << 20))
    return 0;
  try (data, size);
  uint8_t *sealed = malloc (size + 32);
  if (!sealed)
    return 0;
  memcpy (sealed, data, size);
  unsigned int n;
  EVP_Digest (data, size, sealed + size, &n, EVP_sha256 (), NULL);
  try (sealed, size + 32);
  free (sealed);
  return 0;
}
