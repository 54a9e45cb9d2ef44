/* Hashing the disks inside a full archive export (archash.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archash.h"
#include "arc.h"
#include "digests.h"
#include "util.h"

#define TABLE_CAP (1ull << 30)  /* an archive's table member: 1 GiB at most */
#define RAW_CAP (1ull << 40)    /* a raw member, when no disk size is given */
#define PROGRESS_STEP (64ull << 20)

enum kind { NONE, RAW, TABLE, STAGE };

struct walk {
  const char *path, *system;
  char *const *disks;
  struct rp_arc_disks *d;
  enum kind kind;
  size_t cur;                   /* disk of the member being read */
  /* RAW: the block being assembled (holes stay zero) */
  unsigned char *blk;
  uint64_t cb;                  /* its number, or UINT64_MAX: none */
  /* TABLE: the member's bytes */
  char *tab;
  uint64_t tab_len;
  /* STAGE: the member's size */
  uint64_t stage_len;
  uint64_t done, total, next_report;
  void (*progress) (void *, uint64_t, uint64_t);
  void *opaque;
};

void
rp_arc_disks_free (struct rp_arc_disks *d, size_t n)
{
  for (size_t i = 0; i < n && d->got; i++) {
    rp_digests_free (d->got[i]);
    rp_digests_free (d->own[i]);
    free (d->odd[i]);
  }
  free (d->got);
  free (d->own);
  free (d->odd);
  free (d->staged);
  memset (d, 0, sizeof *d);
}

/* NAME is SYSTEM/disks/<disk><ext> (maybe after "./"): the disk's index,
 * with *EXT pointing at its extension; -1 otherwise. */
static int
disk_of (const struct walk *k, const char *name, const char **ext)
{
  if (!strncmp (name, "./", 2))
    name += 2;
  size_t sl = strlen (k->system);
  if (strncmp (name, k->system, sl) || strncmp (name + sl, "/disks/", 7))
    return -1;
  const char *leaf = name + sl + 7;
  for (size_t i = 0; k->disks[i]; i++) {
    size_t n = strlen (k->disks[i]);
    if (!strncmp (leaf, k->disks[i], n) && leaf[n] == '.'
        && !strchr (leaf + n, '/')) {
      *ext = leaf + n;
      return (int) i;
    }
  }
  return -1;
}

static int
on_member (void *opaque, const char *name, uint64_t size, char **why)
{
  struct walk *k = opaque;
  const char *ext = NULL;
  int i = disk_of (k, name, &ext);
  k->kind = NONE;
  if (i < 0)
    return 0;
  k->cur = (size_t) i;
  if (!strcmp (ext, ".raw")) {
    if (k->d->got[i]) {
      *why = rp_asprintf ("%s: disk %s appears twice", k->path, k->disks[i]);
      return -1;
    }
    if (k->d->size ? size != k->d->size[i] : size > RAW_CAP) {
      *why = rp_asprintf ("%s: the image of disk %s has %llu bytes, not the "
                          "disk's size", k->path, k->disks[i],
                          (unsigned long long) size);
      return -1;
    }
    k->d->got[i] = rp_digests_new (size);
    k->kind = RAW;
    k->cb = UINT64_MAX;
    return 1;
  }
  if (!strcmp (ext, ".digests")) {
    if (size > TABLE_CAP || k->d->own[i]) {
      *why = rp_asprintf ("%s: member %s is larger than %llu bytes or "
                          "appears twice", k->path, name, TABLE_CAP);
      return -1;
    }
    free (k->tab);
    k->tab = rp_calloc (1, size + 1);
    k->tab_len = size;
    k->kind = TABLE;
    return 1;
  }
  if (!strcmp (ext, ".qcow2") && k->d->stage && k->d->stage[i] >= 0) {
    if (k->d->staged[i] || size > k->d->stage_max[i]) {
      *why = rp_asprintf ("%s: the overlay of disk %s appears twice, or is "
                          "larger (%llu bytes) than an overlay of the disk "
                          "can be", k->path, k->disks[i],
                          (unsigned long long) size);
      return -1;
    }
    k->stage_len = size;
    k->kind = STAGE;
    return 1;
  }
  if (!k->d->odd[i])
    k->d->odd[i] = rp_strdup (name);
  return 0;
}

/* A differential's overlay into its staging file, holes left as holes. */
static int
stage_data (struct walk *k, uint64_t off, const char *buf, size_t len,
            char **why)
{
  int fd = k->d->stage[k->cur];
  if (off > k->stage_len || len > k->stage_len - off) {
    *why = rp_asprintf ("%s: the member of disk %s is longer than its header "
                        "says", k->path, k->disks[k->cur]);
    return -1;
  }
  for (size_t done = 0; done < len;) {
    ssize_t n = pwrite (fd, buf + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      *why = rp_asprintf ("staging the overlay of disk %s: %s",
                          k->disks[k->cur], n < 0 ? strerror (errno)
                          : "nothing written");
      return -1;
    }
    done += (size_t) n;
  }
  k->done += len;
  if (k->progress && k->done >= k->next_report) {
    k->progress (k->opaque, k->done, k->total);
    k->next_report = k->done + PROGRESS_STEP;
  }
  return 0;
}

/* Hash the block being assembled into the disk's table. */
static void
flush_block (struct walk *k)
{
  struct rp_digests *t = k->d->got[k->cur];
  if (k->cb == UINT64_MAX)
    return;
  rp_bh_hash (k->blk, rp_digests_block_len (t, k->cb),
              rp_digests_at (t, k->cb));
  k->cb = UINT64_MAX;
}

static int
raw_data (struct walk *k, uint64_t off, const char *buf, size_t len,
          char **why)
{
  struct rp_digests *t = k->d->got[k->cur];
  if (off > t->size || len > t->size - off) {
    *why = rp_asprintf ("%s: disk %s has data beyond its size", k->path,
                        k->disks[k->cur]);
    return -1;
  }
  while (len > 0) {
    uint64_t b = off / t->block, in = off % t->block;
    if (b != k->cb) {
      flush_block (k);
      memset (k->blk, 0, t->block);
      k->cb = b;
    }
    size_t n = (size_t) (t->block - in) < len ? (size_t) (t->block - in)
      : len;
    memcpy (k->blk + in, buf, n);
    off += n;
    buf += n;
    len -= n;
    k->done += n;
  }
  if (k->progress && k->done >= k->next_report) {
    k->progress (k->opaque, k->done, k->total);
    k->next_report = k->done + PROGRESS_STEP;
  }
  return 0;
}

static int
on_data (void *opaque, uint64_t off, const void *buf, size_t len, char **why)
{
  struct walk *k = opaque;
  if (k->kind == RAW)
    return raw_data (k, off, buf, len, why);
  if (k->kind == STAGE)
    return stage_data (k, off, buf, len, why);
  if (off > k->tab_len || len > k->tab_len - off) {
    *why = rp_asprintf ("%s: the table of disk %s is longer than its header "
                        "says", k->path, k->disks[k->cur]);
    return -1;
  }
  memcpy (k->tab + off, buf, len);
  return 0;
}

static int
on_end (void *opaque, char **why)
{
  struct walk *k = opaque;
  if (k->kind == RAW) {
    flush_block (k);
    return 0;
  }
  if (k->kind == STAGE) {
    if (ftruncate (k->d->stage[k->cur], (off_t) k->stage_len) != 0) {
      *why = rp_asprintf ("staging the overlay of disk %s: %s",
                          k->disks[k->cur], strerror (errno));
      return -1;
    }
    k->d->staged[k->cur] = true;
    return 0;
  }
  char *e = NULL;
  k->d->own[k->cur] = rp_digests_parse (k->tab, k->tab_len, &e);
  if (!k->d->own[k->cur]) {
    *why = rp_asprintf ("%s: disks/%s.digests: %s", k->path,
                        k->disks[k->cur], e);
    free (e);
    return -1;
  }
  return 0;
}

int
rp_arc_hash_disks (int fd, const char *path, const char *system,
                   char *const *disks, uint64_t total, atomic_bool *cancel,
                   void (*progress) (void *, uint64_t, uint64_t),
                   void *opaque, struct rp_arc_disks *d, char **why)
{
  size_t n = rp_strv_len ((char **) disks);
  d->got = rp_calloc (n + 1, sizeof *d->got);
  d->own = rp_calloc (n + 1, sizeof *d->own);
  d->odd = rp_calloc (n + 1, sizeof *d->odd);
  d->staged = rp_calloc (n + 1, sizeof *d->staged);
  struct walk k = { .path = path, .system = system, .disks = disks, .d = d,
                    .blk = rp_calloc (1, RP_BH_BLOCK), .cb = UINT64_MAX,
                    .total = total, .progress = progress, .opaque = opaque };
  static const struct rp_arc_walker wk = { on_member, on_data, on_end };
  int r = rp_arc_walk (fd, path, &wk, &k, cancel, why);
  free (k.blk);
  free (k.tab);
  if (r != 0)
    rp_arc_disks_free (d, n);
  return r;
}
