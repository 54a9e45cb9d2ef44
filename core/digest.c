/* SHA-256 of export files, with libcrypto (it uses the CPU's SHA
 * instructions where there are some: about 4 times coreutils' sha256sum). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

#define CHUNK (4u << 20)

int
rp_sha256_file (const char *path, char hex[65], char **err)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned char *buf = malloc (CHUNK);
  int r = -1;
  if (!ctx || !buf || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    *err = rp_strdup ("cannot set up SHA-256");
    goto out;
  }
  for (;;) {
    ssize_t n = read (fd, buf, CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      *err = rp_asprintf ("%s: %s", path, strerror (errno));
      goto out;
    }
    if (n == 0)
      break;
    EVP_DigestUpdate (ctx, buf, (size_t) n);
  }
  unsigned char md[32];
  unsigned len = 0;
  EVP_DigestFinal_ex (ctx, md, &len);
  for (unsigned i = 0; i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", md[i]);
  r = 0;
 out:
  free (buf);
  EVP_MD_CTX_free (ctx);
  close (fd);
  return r;
}
