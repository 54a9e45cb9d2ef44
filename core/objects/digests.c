/* Digest tables in the store and in exports (digests.h): the file format
 * with its own checksum, atomic saving, loading with every check, and what
 * the tables mean for a reference point's ChangeTracking. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "internal.h"
#include "digests.h"

#define MAGIC "RPFSDIG1"
#define HDR 48
#define SUM 32
#define VERSION 1
#define ALG_SHA256_192 1        /* SHA-256, first RP_BH_LEN bytes */

static void
put32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static void
put64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static uint32_t
get32 (const unsigned char *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static uint64_t
get64 (const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static void
sha256 (const void *buf, size_t len, unsigned char out[SUM])
{
  unsigned int n;
  if (EVP_Digest (buf, len, out, &n, EVP_sha256 (), NULL) != 1)
    abort ();
}

void *
rp_digests_render (const struct rp_digests *t, size_t *len)
{
  size_t body = (size_t) t->count * RP_BH_LEN;
  *len = HDR + body + SUM;
  unsigned char *p = rp_calloc (1, *len);
  memcpy (p, MAGIC, 8);
  put32 (p + 8, VERSION);
  put32 (p + 12, t->block);
  put32 (p + 16, RP_BH_LEN);
  put32 (p + 20, ALG_SHA256_192);
  put64 (p + 24, t->size);
  put64 (p + 32, t->count);
  memcpy (p + HDR, t->v, body);
  sha256 (p, HDR + body, p + HDR + body);
  return p;
}

struct rp_digests *
rp_digests_parse (const void *buf, size_t len, char **err)
{
  const unsigned char *p = buf;
  unsigned char sum[SUM];
  if (len < HDR + SUM || memcmp (p, MAGIC, 8) != 0) {
    *err = rp_strdup ("not a digest table (no RPFSDIG1 header)");
    return NULL;
  }
  uint64_t size = get64 (p + 24), count = get64 (p + 32);
  if (get32 (p + 8) != VERSION || get32 (p + 12) != RP_BH_BLOCK
      || get32 (p + 16) != RP_BH_LEN || get32 (p + 20) != ALG_SHA256_192
      || get64 (p + 40) != 0) {
    *err = rp_strdup ("unknown version, block size or hash in the header");
    return NULL;
  }
  if (count != (size + RP_BH_BLOCK - 1) / RP_BH_BLOCK
      || count > (len - HDR - SUM) / RP_BH_LEN
      || len != HDR + count * RP_BH_LEN + SUM) {
    *err = rp_asprintf ("the header (disk size %llu, %llu entries) does not "
                        "match the file's %zu bytes",
                        (unsigned long long) size,
                        (unsigned long long) count, len);
    return NULL;
  }
  sha256 (p, len - SUM, sum);
  if (memcmp (sum, p + len - SUM, SUM) != 0) {
    *err = rp_strdup ("its checksum does not match: the table is damaged");
    return NULL;
  }
  struct rp_digests *t = rp_calloc (1, sizeof *t);
  t->size = size;
  t->block = RP_BH_BLOCK;
  t->count = count;
  t->v = rp_calloc (count ? count : 1, RP_BH_LEN);
  memcpy (t->v, p + HDR, count * RP_BH_LEN);
  return t;
}

char *
rp_digests_path (const struct rp_refpoint *rp, const char *disk)
{
  return rp_asprintf ("%s/%s.digests", rp->dir, disk);
}

struct rp_digests *
rp_digests_load (const struct rp_refpoint *rp, const char *disk, char **err)
{
  CLEANUP_FREE char *path = rp_digests_path (rp, disk);
  size_t len;
  CLEANUP_FREE char *buf = rp_read_file (path, &len);
  if (!buf) {
    *err = errno == ENOENT
      ? rp_asprintf ("no digest table for disk %s", disk)
      : rp_asprintf ("%s: %s", path, strerror (errno));
    return NULL;
  }
  char *e = NULL;
  struct rp_digests *t = rp_digests_parse (buf, len, &e);
  if (!t) {
    *err = rp_asprintf ("the digest table of disk %s (%s): %s", disk, path,
                        e);
    free (e);
  }
  return t;
}

int
rp_digests_save (const struct rp_refpoint *rp, const char *disk,
                 const struct rp_digests *t, char **err)
{
  size_t len;
  CLEANUP_FREE void *buf = rp_digests_render (t, &len);
  CLEANUP_FREE char *path = rp_digests_path (rp, disk);
  if (rp_write_file_atomic (path, buf, len, 0600) != 0) {
    *err = rp_asprintf ("cannot write %s: %s", path, strerror (errno));
    return -1;
  }
  return 0;
}

bool
rp_digests_usable (const struct rp_refpoint *rp, char *const *disks)
{
  if (rp->dig_bad)
    return false;
  char *const *v = disks ? disks : rp->disk_ids;
  for (size_t i = 0; v[i]; i++) {
    CLEANUP_FREE char *path = rp_digests_path (rp, v[i]);
    struct stat st;
    if (stat (path, &st) != 0 || !S_ISREG (st.st_mode))
      return false;
  }
  return true;
}

char *
rp_digests_tracking (const struct rp_refpoint *rp)
{
  if (!rp->broken)
    return rp_strdup ("intact\n");
  if (!rp_digests_usable (rp, NULL))
    return rp->dig_bad
      ? rp_asprintf ("lost: %s; %s\n", rp->broken, rp->dig_bad)
      : rp_asprintf ("lost: %s\n", rp->broken);
  char t[21] = "an unknown time";
  if (rp->broken_at)
    rp_time_iso (rp->broken_at, t);
  return rp_asprintf ("digests: bitmap lost at %s: %s\n", t, rp->broken);
}

void
rp_digests_check_system (struct rp_system *sys)
{
  size_t n;
  struct rp_refpoint **rps = rp_system_hold_rps (sys, &n);
  for (size_t k = 0; k < n; k++) {
    struct rp_refpoint *rp = rps[k];
    pthread_mutex_lock (&sys->core->lock);
    bool check = rp->broken && !rp->dig_bad;
    pthread_mutex_unlock (&sys->core->lock);
    for (size_t j = 0; check && rp->disk_ids[j]; j++) {
      CLEANUP_FREE char *path = rp_digests_path (rp, rp->disk_ids[j]);
      struct stat st;
      if (stat (path, &st) != 0)
        continue;               /* none: `lost` anyway, nothing to check */
      char *e = NULL;
      struct rp_digests *t = rp_digests_load (rp, rp->disk_ids[j], &e);
      rp_digests_free (t);
      if (!t) {
        fprintf (stderr, "rpfs: %s/%s: %s; it cannot serve as a base\n",
                 sys->name, rp->name, e);
        pthread_mutex_lock (&sys->core->lock);
        rp->dig_bad = e;
        pthread_mutex_unlock (&sys->core->lock);
        break;
      }
    }
  }
  rp_release_rps (rps, n);
}
