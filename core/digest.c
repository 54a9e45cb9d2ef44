/* SHA-256 of export files, with libcrypto (it uses the CPU's SHA
 * instructions where there are some: about 4 times coreutils' sha256sum),
 * and the sealing of a finished disk image: its hash and its fdatasync run
 * at the same time, in the background, while the export goes on with the
 * next disk.  The hash reads the image from the page cache while the kernel
 * writes the same pages to disk, so the export pays for the longer of the
 * two, not their sum. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

#define CHUNK (4u << 20)

/* Hash FD from its start; STOP (may be NULL) ends it early.  read(2), not
 * mmap: mapping would save a copy (about 10 % of the hash's time here) but
 * would turn a read error into SIGBUS for the whole file system. */
static int
sha256_fd (int fd, const char *path, atomic_bool *stop, char hex[65],
           char **err)
{
  posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned char *buf = malloc (CHUNK);
  int r = -1;
  if (!ctx || !buf || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    *err = rp_strdup ("cannot set up SHA-256");
    goto out;
  }
  for (off_t off = 0;;) {
    if (stop && atomic_load (stop)) {
      *err = rp_strdup (strerror (ECANCELED));
      goto out;
    }
    ssize_t n = pread (fd, buf, CHUNK, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      *err = rp_asprintf ("%s: %s", path, strerror (errno));
      goto out;
    }
    if (n == 0)
      break;
    EVP_DigestUpdate (ctx, buf, (size_t) n);
    off += n;
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
  return r;
}

int
rp_sha256_file (const char *path, char hex[65], char **err)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  int r = sha256_fd (fd, path, NULL, hex, err);
  close (fd);
  return r;
}

struct rp_seal {
  char *path;
  int fd;
  atomic_bool stop;
  pthread_t hasher, syncer;
  bool has_hasher, has_syncer;
  char hex[65];
  char *hash_err;               /* set by the hasher */
  int sync_errno;               /* set by the syncer */
};

static void *
hasher (void *opaque)
{
  struct rp_seal *s = opaque;
  if (sha256_fd (s->fd, s->path, &s->stop, s->hex, &s->hash_err) != 0
      && !s->hash_err)
    s->hash_err = rp_strdup ("SHA-256 failed");
  return NULL;
}

static void *
syncer (void *opaque)
{
  struct rp_seal *s = opaque;
  if (fdatasync (s->fd) != 0)
    s->sync_errno = errno;
  return NULL;
}

struct rp_seal *
rp_seal_start (const char *path, char **err)
{
  struct rp_seal *s = calloc (1, sizeof *s);
  if (!s) {
    *err = rp_strdup (strerror (ENOMEM));
    return NULL;
  }
  atomic_init (&s->stop, false);
  s->path = rp_strdup (path);
  s->fd = open (path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    free (s->path);
    free (s);
    return NULL;
  }
  s->has_hasher = pthread_create (&s->hasher, NULL, hasher, s) == 0;
  s->has_syncer = pthread_create (&s->syncer, NULL, syncer, s) == 0;
  return s;
}

static void
seal_join (struct rp_seal *s)
{
  /* A thread that could not be started does its part here. */
  if (s->has_hasher)
    pthread_join (s->hasher, NULL);
  else
    hasher (s);
  if (s->has_syncer)
    pthread_join (s->syncer, NULL);
  else
    syncer (s);
}

int
rp_seal_finish (struct rp_seal *s, char hex[65], char **err)
{
  seal_join (s);
  int r = 0;
  if (s->hash_err) {
    *err = s->hash_err;
    s->hash_err = NULL;
    r = EIO;
  }
  else if (s->sync_errno) {
    *err = rp_asprintf ("%s while writing it to disk",
                        strerror (s->sync_errno));
    r = s->sync_errno;
  }
  else
    memcpy (hex, s->hex, sizeof s->hex);
  close (s->fd);
  free (s->hash_err);
  free (s->path);
  free (s);
  return r;
}

void
rp_seal_abort (struct rp_seal *s)
{
  if (!s)
    return;
  atomic_store (&s->stop, true);
  char hex[65], *e = NULL;
  rp_seal_finish (s, hex, &e);
  free (e);
}
