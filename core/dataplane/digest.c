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
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

#define CHUNK (1u << 20)       /* bytes per read(2) of the hash */

/* Feed FD's first SIZE bytes to CTX, read CHUNK bytes at a time into a
 * buffer; false if a read failed (*error its errno, EIO for a file cut
 * short under us), or STOP or CANCEL (*error 0).  Reading into a buffer
 * costs a copy of each byte, but mapping the image 8 MiB at a time and
 * faulting its pages in cost more on the machine measured: 2.8-4.4 s
 * against 1.5-2.6 s for 2 GiB (docs/performance.md, "The running VM's
 * floor"). */
static bool
digest_read (EVP_MD_CTX *ctx, int fd, size_t size, atomic_bool *stop,
             atomic_bool *cancel, int *error)
{
  *error = 0;
  char *buf = malloc (CHUNK);
  if (!buf) {
    *error = ENOMEM;
    return false;
  }
  bool ok = true;
  posix_fadvise (fd, 0, (off_t) size, POSIX_FADV_SEQUENTIAL);
  for (size_t off = 0; off < size && ok;) {
    if ((stop && atomic_load (stop)) || (cancel && atomic_load (cancel))) {
      ok = false;
      break;
    }
    size_t len = size - off < CHUNK ? size - off : CHUNK;
    ssize_t n = pread (fd, buf, len, (off_t) off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      *error = n < 0 ? errno : EIO;
      ok = false;
      break;
    }
    if (EVP_DigestUpdate (ctx, buf, (size_t) n) != 1) {
      *error = ENOMEM;
      ok = false;
      break;
    }
    off += (size_t) n;
  }
  free (buf);
  return ok;
}

/* Hash FD from its start; STOP or CANCEL (either may be NULL) ends it
 * early. */
static int
sha256_fd (int fd, const char *path, atomic_bool *stop, atomic_bool *cancel,
           char hex[65], char **err)
{
  struct stat st;
  if (fstat (fd, &st) != 0) {
    *err = rp_asprintf ("%s: %s", path, strerror (errno));
    return -1;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    *err = rp_strdup ("cannot set up SHA-256");
    EVP_MD_CTX_free (ctx);
    return -1;
  }
  size_t size = (size_t) st.st_size;
  int error;
  bool ok = digest_read (ctx, fd, size, stop, cancel, &error);
  if (!ok)
    *err = error ? rp_asprintf ("%s: %s", path, strerror (error))
      : rp_strdup (strerror (ECANCELED));
  if (ok) {
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex (ctx, md, &len);
    for (unsigned i = 0; i < 32; i++)
      snprintf (hex + 2 * i, 3, "%02x", md[i]);
  }
  EVP_MD_CTX_free (ctx);
  return ok ? 0 : -1;
}

void
rp_sha256_buf (const void *buf, size_t len, char hex[65])
{
  unsigned char md[32];
  unsigned n = 0;
  if (EVP_Digest (buf, len, md, &n, EVP_sha256 (), NULL) != 1)
    abort ();                   /* only out of memory */
  for (unsigned i = 0; i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", md[i]);
}

struct rp_seal {
  char *path;
  int fd;
  atomic_bool stop;             /* rp_seal_abort */
  atomic_bool *cancel;          /* the job's cancel request, or NULL */
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
  if (sha256_fd (s->fd, s->path, &s->stop, s->cancel, s->hex,
                 &s->hash_err) != 0
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
rp_seal_start (int fd, const char *path, atomic_bool *cancel, char **err)
{
  struct rp_seal *s = calloc (1, sizeof *s);
  if (!s) {
    *err = rp_strdup (strerror (ENOMEM));
    return NULL;
  }
  atomic_init (&s->stop, false);
  s->cancel = cancel;
  s->path = rp_strdup (path);
  s->fd = fcntl (fd, F_DUPFD_CLOEXEC, 3);
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
    *err = rp_asprintf ("SHA-256: %s", s->hash_err);
    r = EIO;
  }
  else if (s->sync_errno) {
    *err = rp_asprintf ("fdatasync: %s", strerror (s->sync_errno));
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
