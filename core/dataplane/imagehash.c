/* A full export's digest table from the finished image (imagehash.h).
 *
 * `qemu-img map --output=json` lists the image's extents in guest order,
 * one per line, read as they come (rp_proc_run_lines).  Each block of the
 * table (RP_BH_BLOCK) is either inside one extent, or (at an odd extent
 * edge, or the disk's short last block) put together from several: data
 * read at the extent's file offset, zeros elsewhere.  A block with no data
 * keeps the hash of zeros the table starts with.  The image is a full
 * export's: no backing file, nothing compressed (rpfs made it); anything
 * else in the map fails the export rather than making a wrong table. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imagehash.h"
#include "imgmap.h"
#include "proc.h"
#include "util.h"

#define CHUNK (1u << 20)        /* bytes per pread of whole blocks */

struct rp_imagehash {
  int fd;
  char *fdpath, *name;
  struct rp_bh *bh;
  atomic_bool stop, *cancel;
  pthread_t thread;
  bool threaded;
  char *err;                    /* the walk's, or NULL */
  uint64_t expect;              /* where the next extent must start */
  unsigned char *blk;           /* the block being put together */
  bool blk_data;                /* it holds some stored data */
  char *buf;                    /* CHUNK bytes */
};

static bool
stopped (struct rp_imagehash *h)
{
  return atomic_load (&h->stop) || (h->cancel && atomic_load (h->cancel));
}

static int
read_at (struct rp_imagehash *h, void *buf, size_t len, uint64_t off)
{
  for (size_t got = 0; got < len;) {
    ssize_t n = pread (h->fd, (char *) buf + got, len - got,
                       (off_t) (off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      h->err = rp_asprintf ("reading %s at %" PRIu64 ": %s", h->name,
                            off + got, n < 0 ? strerror (errno)
                            : "the file is shorter than its map");
      return -1;
    }
    got += (size_t) n;
  }
  return 0;
}

/* Whole blocks from A up to END (block-aligned, or the disk's end) of a
 * data extent whose byte A is at file offset HOST. */
static int
whole_blocks (struct rp_imagehash *h, uint64_t a, uint64_t end,
              uint64_t host)
{
  struct rp_digests *t = h->bh->tab;
  while (a < end) {
    size_t len = end - a < CHUNK ? (size_t) (end - a) : CHUNK;
    if (stopped (h) || read_at (h, h->buf, len, host) != 0)
      return -1;
    for (size_t at = 0; at < len;) {
      uint64_t b = (a + at) / t->block;
      uint64_t bl = rp_digests_block_len (t, b);
      rp_bh_hash (h->buf + at, (size_t) bl, rp_digests_at (t, b));
      at += (size_t) bl;
    }
    a += len;
    host += len;
  }
  return 0;
}

/* [A, END) of extent E, inside one block: into the block being put
 * together, hashed once it is whole. */
static int
part_block (struct rp_imagehash *h, const struct rp_imgmap_ext *e,
            uint64_t a, uint64_t end)
{
  struct rp_digests *t = h->bh->tab;
  uint64_t b = a / t->block, bs = b * t->block;
  unsigned char *at = h->blk + (a - bs);
  if (e->data && read_at (h, at, (size_t) (end - a),
                          e->offset + (a - e->start)) != 0)
    return -1;
  if (!e->data)
    memset (at, 0, (size_t) (end - a));
  h->blk_data |= e->data;
  if (end == bs + rp_digests_block_len (t, b)) {
    if (h->blk_data)
      rp_bh_hash (h->blk, (size_t) (end - bs), rp_digests_at (t, b));
    h->blk_data = false;
  }
  return 0;
}

static int
walk (struct rp_imagehash *h, const struct rp_imgmap_ext *e)
{
  struct rp_digests *t = h->bh->tab;
  uint64_t end = e->start + e->length;
  if (e->start != h->expect || end > t->size || e->depth != 0
      || (e->data && !e->has_offset)) {
    h->err = rp_asprintf ("qemu-img map of %s: an extent at %" PRIu64
                          " that a full export's image cannot have",
                          h->name, e->start);
    return -1;
  }
  h->expect = end;
  for (uint64_t a = e->start; a < end;) {
    uint64_t b = a / t->block, bs = b * t->block;
    uint64_t be = bs + rp_digests_block_len (t, b);
    if (a == bs && be <= end) {         /* whole blocks */
      uint64_t n = (end - a) / t->block;
      uint64_t stop = n ? a + n * t->block : be;   /* be: the short last */
      if (stop > t->size)
        stop = t->size;
      if (e->data && whole_blocks (h, a, stop, e->offset + (a - e->start)))
        return -1;
      a = stop;
      continue;
    }
    uint64_t pe = be < end ? be : end;
    if (part_block (h, e, a, pe) != 0)
      return -1;
    a = pe;
  }
  return 0;
}

static int
on_line (void *opaque, char *line, size_t len)
{
  struct rp_imagehash *h = opaque;
  struct rp_imgmap_ext e;
  int r = rp_imgmap_line (line, len, &e);
  if (r < 0)
    h->err = rp_asprintf ("qemu-img map of %s: a line that is not an "
                          "extent", h->name);
  return r < 0 || (r == 1 && walk (h, &e) != 0) || stopped (h) ? -1 : 0;
}

static void *
run (void *opaque)
{
  struct rp_imagehash *h = opaque;
  /* The image alone: QEMU opens no backing file, whatever the header says
   * (rpfs made this image, unnamed until the export names it). */
  CLEANUP_FREE char *spec = rp_asprintf (
    "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": "
    "{\"driver\": \"file\", \"filename\": \"%s\"}}", h->fdpath);
  char *argv[] = { "qemu-img", "map", "--output=json", spec, NULL };
  CLEANUP_FREE char *e = NULL;
  int r = rp_proc_run_lines (argv, on_line, h, &e);
  if (h->err || stopped (h))
    return NULL;
  if (r != 0) {
    if (e)
      e[strcspn (e, "\n")] = 0;
    h->err = rp_asprintf ("qemu-img map of %s: %s", h->name,
                          e && *e ? e : "failed");
  }
  else if (h->expect != h->bh->tab->size)
    h->err = rp_asprintf ("qemu-img map of %s ends at %" PRIu64 ", not at "
                          "the disk's end", h->name, h->expect);
  return NULL;
}

static void
ih_free (struct rp_imagehash *h)
{
  if (h->fd >= 0)
    close (h->fd);
  free (h->fdpath);
  free (h->name);
  free (h->err);
  free (h->blk);
  free (h->buf);
  free (h);
}

struct rp_imagehash *
rp_imagehash_start (int fd, const char *name, struct rp_bh *bh,
                    atomic_bool *cancel, char **err)
{
  struct rp_imagehash *h = rp_calloc (1, sizeof *h);
  h->bh = bh;
  h->cancel = cancel;
  atomic_init (&h->stop, false);
  h->name = rp_strdup (name);
  h->blk = rp_calloc (1, RP_BH_BLOCK);
  h->buf = rp_calloc (1, CHUNK);
  /* Its own descriptor, and a path through it: the export's may close. */
  h->fd = fcntl (fd, F_DUPFD_CLOEXEC, 3);
  if (h->fd < 0) {
    *err = rp_asprintf ("%s: %s", name, strerror (errno));
    rp_bh_end (bh, false);
    ih_free (h);
    return NULL;
  }
  h->fdpath = rp_asprintf ("/proc/%d/fd/%d", (int) getpid (), h->fd);
  h->threaded = pthread_create (&h->thread, NULL, run, h) == 0;
  return h;
}

struct rp_bh *
rp_imagehash_finish (struct rp_imagehash *h, char **err)
{
  if (h->threaded)
    pthread_join (h->thread, NULL);
  else
    run (h);                    /* no thread: here, then */
  struct rp_bh *bh = h->bh;
  if (h->err || stopped (h)) {
    *err = h->err ? h->err : rp_strdup (strerror (ECANCELED));
    h->err = NULL;
    rp_bh_end (bh, false);
    bh = NULL;
  }
  ih_free (h);
  return bh;
}

void
rp_imagehash_abort (struct rp_imagehash *h)
{
  if (!h)
    return;
  atomic_store (&h->stop, true);
  char *e = NULL;
  rp_imagehash_finish (h, &e);
  free (e);
}
