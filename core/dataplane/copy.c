/* The data mover of an export: reads the point-in-time disk from QEMU's NBD
 * export with libnbd and writes the target qcow2 through qemu-nbd (QEMU's
 * own qcow2 writer) with libnbd, so rpfs never formats qcow2 itself.
 *
 * 1. Plan: block status over the whole disk, base:allocation and, for a
 *    differential export, qemu:dirty-bitmap:<transient bitmap>, turned into
 *    a list of copy / zero operations (extent.c).  Holes and zero ranges are
 *    never read or written in a full export; in a differential one a changed
 *    range that now reads as zero becomes a zero write (metadata only in
 *    qcow2), so it shadows the backing file.
 * 2. Copy: WORKERS threads, each with its own source and target connection
 *    (both servers advertise multi-conn), take operations in order from a
 *    shared index.  An operation is read as requests of at most READ_MAX
 *    bytes, all in flight at once on the worker's source connection, then
 *    written as one request.  With a bandwidth cap (ratelimit.h), a worker
 *    waits for its slot before each read; zero writes read nothing and
 *    never wait.
 * Thread model: the operation index, byte counters and the first error are
 * atomics or under ctx->lock; libnbd handles are private to a worker. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libnbd.h>

#include "internal.h"
#include "extent.h"
#include "proc.h"
#include "ratelimit.h"
#include "blockhash.h"

#define WORKERS 4
#define OP_MAX (2u << 20)          /* bytes per operation and write request */
/* Bytes per read request.  The source server allocates a buffer for each
 * request: a VM's QEMU runs with glibc's default malloc settings, which map
 * and unmap a 2 MiB buffer for every request, so every read faulted 512
 * fresh pages in and its main loop (the guest's too) spent 3.7 s of CPU
 * per GiB exported; 256 KiB pieces (nbdcopy's size) cost it 0.9 s
 * (docs/performance.md, "The running VM's floor"). */
#define READ_MAX (256u << 10)
#define READ_PIECES ((OP_MAX + READ_MAX - 1) / READ_MAX)
#define STATUS_CHUNK (1ull << 30)  /* block status per request (< 4 GiB) */

struct copy_ctx {
  const char *src_sock, *src_export, *dst_sock, *dst_name;
  bool full;
  uint64_t read_max;            /* bytes per read request */
  struct rp_ops ops;
  atomic_size_t next;
  atomic_uint_fast64_t done;
  atomic_bool *cancel;
  struct rp_rate *rate;         /* NULL: no cap */
  struct rp_bh *bh;             /* NULL: no digest table (blockhash.h) */
  rp_progress_fn progress;
  void *opaque;
  pthread_mutex_t lock;
  int err;                      /* first errno */
  char *msg;                    /* first error message */
  atomic_uint_fast64_t copied, zeroed;
};

static void
set_error (struct copy_ctx *c, int err, char *msg)
{
  pthread_mutex_lock (&c->lock);
  if (!c->err) {
    c->err = err ? err : EIO;
    c->msg = msg;
    msg = NULL;
  }
  pthread_mutex_unlock (&c->lock);
  free (msg);
}

static struct nbd_handle *
connect_to (const char *sock, const char *export, const char *bitmap,
            char **err)
{
  struct nbd_handle *h = nbd_create ();
  if (!h)
    goto fail;
  if (export && nbd_set_export_name (h, export) == -1)
    goto fail;
  /* Reads are checked before their buffer is used: no need to zero it. */
  if (nbd_set_pread_initialize (h, false) == -1)
    goto fail;
  if (bitmap) {
    CLEANUP_FREE char *ctx = rp_asprintf ("qemu:dirty-bitmap:%s", bitmap);
    if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1
        || nbd_add_meta_context (h, ctx) == -1)
      goto fail;
  }
  else if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
    goto fail;
  if (nbd_connect_unix (h, sock) == -1)
    goto fail;
  return h;
 fail:
  *err = rp_strdup (nbd_get_error () ?: "cannot create an NBD handle");
  nbd_close (h);
  return NULL;
}

struct status_acc {
  struct rp_extents alloc, dirty;
  uint64_t alloc_end, dirty_end;
};

static int
extent_cb (void *opaque, const char *meta, uint64_t off, uint32_t *e,
           size_t n, int *error)
{
  (void) error;
  struct status_acc *a = opaque;
  bool is_alloc = !strcmp (meta, LIBNBD_CONTEXT_BASE_ALLOCATION);
  struct rp_extents *list = is_alloc ? &a->alloc : &a->dirty;
  uint64_t *end = is_alloc ? &a->alloc_end : &a->dirty_end;
  if (off != *end)
    return 0;                   /* not contiguous: ignore, asked again */
  for (size_t i = 0; i + 1 < n; i += 2) {
    rp_extents_append (list, off, e[i], e[i + 1]);
    off += e[i];
  }
  *end = off;
  return 0;
}

static void
truncate_to (struct rp_extents *l, uint64_t *end, uint64_t at)
{
  while (l->n && l->v[l->n - 1].off >= at)
    l->n--;
  if (l->n && l->v[l->n - 1].off + l->v[l->n - 1].len > at)
    l->v[l->n - 1].len = at - l->v[l->n - 1].off;
  *end = at;
}

/* Fill c->ops from block status. */
static int
plan (struct copy_ctx *c, struct nbd_handle *h, uint64_t size, char **err)
{
  struct status_acc a = { 0 };
  bool diff = !c->full;
  uint64_t off = 0;
  while (off < size) {
    uint64_t len = size - off < STATUS_CHUNK ? size - off : STATUS_CHUNK;
    nbd_extent_callback cb = { .callback = extent_cb, .user_data = &a };
    if (nbd_block_status (h, len, off, cb, 0) == -1) {
      *err = rp_asprintf ("block status at offset %" PRIu64 ": %s", off,
                          nbd_get_error ());
      rp_extents_free (&a.alloc);
      rp_extents_free (&a.dirty);
      return nbd_get_errno () ?: EIO;
    }
    uint64_t covered = a.alloc_end;
    if (diff && a.dirty_end < covered)
      covered = a.dirty_end;
    if (covered > size)
      covered = size;
    if (covered <= off) {
      *err = rp_asprintf ("the NBD server sent no block status at offset %"
                          PRIu64, off);
      rp_extents_free (&a.alloc);
      rp_extents_free (&a.dirty);
      return EPROTO;
    }
    truncate_to (&a.alloc, &a.alloc_end, covered);
    if (diff)
      truncate_to (&a.dirty, &a.dirty_end, covered);
    off = covered;
  }
  rp_ops_build (&c->ops, &a.alloc, diff ? &a.dirty : NULL, 0, size, OP_MAX);
  rp_extents_free (&a.alloc);
  rp_extents_free (&a.dirty);
  return 0;
}

/* Read LEN bytes at OFF into BUF: requests of at most READ_MAX bytes, up to
 * READ_PIECES of them in flight at once on H.  Waits for every request it
 * issued, failed or not, before it returns (they write into BUF).  On
 * failure: -1, *ERR the first error's errno and *MSG its message. */
static int
read_pieces (struct nbd_handle *h, char *buf, uint64_t len, uint64_t off,
             uint64_t piece, int *err, char **msg)
{
  int64_t cookie[READ_PIECES];
  uint64_t at = 0;
  int r = 0;
  while (at < len && r == 0) {
    size_t n = 0;
    for (; n < READ_PIECES && at < len; n++) {
      uint64_t l = len - at < piece ? len - at : piece;
      cookie[n] = nbd_aio_pread (h, buf + at, l, off + at,
                                 NBD_NULL_COMPLETION, 0);
      if (cookie[n] == -1)
        break;
      at += l;
    }
    if (n < READ_PIECES && at < len) {  /* could not issue one */
      *err = nbd_get_errno () ?: EIO;
      *msg = rp_strdup (nbd_get_error () ?: "cannot issue a read");
      r = -1;
    }
    for (size_t i = 0; i < n; i++) {
      int d;
      while ((d = nbd_aio_command_completed (h, cookie[i])) == 0)
        if (nbd_poll (h, -1) == -1) {
          d = -1;
          break;
        }
      if (d == -1 && r == 0) {
        *err = nbd_get_errno () ?: EIO;
        *msg = rp_strdup (nbd_get_error () ?: "read failed");
        r = -1;
      }
      if (d == -1 && nbd_aio_is_dead (h))
        return -1;              /* the others are retired with the handle */
    }
  }
  return r;
}

static bool
all_zero (const char *buf, size_t len)
{
  return len == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0);
}

/* The digest table's hook: hashes the op and writes what its mode wants. */
static int
bh_apply (struct copy_ctx *c, struct nbd_handle *dst, const char *buf,
          const struct rp_op *op)
{
  uint64_t copied = 0, zeroed = 0;
  int r = rp_bh_apply (c->bh, dst, buf, op->off, op->len, &copied, &zeroed);
  atomic_fetch_add (&c->copied, copied);
  atomic_fetch_add (&c->zeroed, zeroed);
  return r;
}

static void *
worker (void *opaque)
{
  struct copy_ctx *c = opaque;
  char *e = NULL;
  struct nbd_handle *src = NULL, *dst = NULL;
  char *buf = malloc (OP_MAX);
  if (!buf) {
    set_error (c, ENOMEM, rp_strdup ("out of memory"));
    return NULL;
  }
  src = connect_to (c->src_sock, c->src_export, NULL, &e);
  if (!src) {
    set_error (c, EIO, rp_asprintf ("reading the point-in-time disk: %s", e));
    free (e);
    goto out;
  }
  dst = connect_to (c->dst_sock, NULL, NULL, &e);
  if (!dst) {
    set_error (c, EIO, rp_asprintf ("writing %s: %s", c->dst_name, e));
    free (e);
    goto out;
  }
  for (;;) {
    size_t i = atomic_fetch_add (&c->next, 1);
    if (i >= c->ops.n || atomic_load (c->cancel) || c->err)
      break;
    const struct rp_op *op = &c->ops.v[i];
    if (op->kind == RP_OP_COPY) {
      if (!rp_rate_wait (c->rate, op->len, c->cancel))
        break;
      int rerr = 0;
      char *rmsg = NULL;
      if (read_pieces (src, buf, op->len, op->off, c->read_max, &rerr,
                       &rmsg) == -1) {
        set_error (c, rerr, rp_asprintf ("reading the point-in-time disk at "
                                         "offset %" PRIu64 ": %s", op->off,
                                         rmsg));
        free (rmsg);
        break;
      }
      int r;
      if (c->bh)
        r = bh_apply (c, dst, buf, op);
      else if (all_zero (buf, op->len)) {
        /* Data that reads as zero: nothing to store in a full export; a
         * differential one must still shadow its backing file. */
        r = c->full ? 0 : nbd_zero (dst, op->len, op->off, 0);
        atomic_fetch_add (&c->zeroed, c->full ? 0 : op->len);
      }
      else {
        r = nbd_pwrite (dst, buf, op->len, op->off, 0);
        atomic_fetch_add (&c->copied, op->len);
      }
      if (r == -1)
        goto write_error;
    }
    else {
      if (c->bh ? bh_apply (c, dst, NULL, op) == -1
          : nbd_zero (dst, op->len, op->off, 0) == -1)
        goto write_error;
      atomic_fetch_add (&c->zeroed, c->bh ? 0 : op->len);
    }
    uint64_t done = atomic_fetch_add (&c->done, op->len) + op->len;
    if (c->progress)
      c->progress (c->opaque, done, c->ops.copy_bytes + c->ops.zero_bytes);
    continue;
  write_error:
    {
      int err = nbd_get_errno () ?: EIO;
      set_error (c, err, rp_asprintf ("%s while writing %s",
                                      err == ENOSPC ? strerror (err)
                                      : nbd_get_error (), c->dst_name));
    }
    break;
  }
  if (dst && !c->err && nbd_flush (dst, 0) == -1) {
    int err = nbd_get_errno () ?: EIO;
    set_error (c, err, rp_asprintf ("%s while writing %s",
                                    err == ENOSPC ? strerror (err)
                                    : nbd_get_error (), c->dst_name));
  }
 out:
  if (dst) {
    nbd_shutdown (dst, 0);
    nbd_close (dst);
  }
  nbd_close (src);
  free (buf);
  return NULL;
}

/* qemu-nbd serving the target image, started by socket activation on a
 * socket we bound.  backing=null: the target's backing file (the base's
 * export) is only named, never opened or read.  cache=unsafe: a flush and
 * the close write qcow2's metadata to the page cache but do not fsync; the
 * export's seal (digest.c) makes the image durable while it hashes it. */
static pid_t
start_target (const char *dst_path, const char *sock, const char *log,
              char **err)
{
  json_t *spec = json_pack ("{s:s, s:n, s:{s:s, s:s}}", "driver", "qcow2",
                            "backing", "file", "driver", "file",
                            "filename", dst_path);
  char *js = json_dumps (spec, JSON_COMPACT);
  json_decref (spec);
  CLEANUP_FREE char *img = rp_asprintf ("json:%s", js);
  free (js);
  CLEANUP_FREE char *shared = rp_asprintf ("--shared=%d", WORKERS + 1);
  char *argv[] = { "qemu-nbd", shared, "--discard=unmap",
                   "--cache=unsafe", img, NULL };
  int lfd = rp_unix_listen (sock);
  if (lfd < 0) {
    *err = rp_asprintf ("%s: %s", sock, strerror (errno));
    return -1;
  }
  pid_t pid = rp_proc_spawn (argv, NULL, 0, lfd, log);
  int e = errno;
  close (lfd);
  if (pid < 0)
    *err = rp_asprintf ("cannot start qemu-nbd: %s", strerror (e));
  return pid;
}

int
rp_copy_plan (const char *sock, const char *export, struct rp_ops *ops,
              uint64_t *size, char **err)
{
  struct copy_ctx c = { .full = true };
  struct nbd_handle *h = connect_to (sock, export, NULL, err);
  if (!h)
    return EIO;
  int64_t sz = nbd_get_size (h);
  if (sz < 0) {
    *err = rp_strdup (nbd_get_error ());
    nbd_close (h);
    return EIO;
  }
  int r = plan (&c, h, (uint64_t) sz, err);
  nbd_close (h);
  *size = (uint64_t) sz;
  *ops = c.ops;
  return r;
}

/* The workers, against the qemu-nbd serving SOCK: 0, or EIO with *ERR. */
static int
run_workers (struct copy_ctx *c, const char *sock, char **err)
{
  /* qemu-nbd exits when its last client leaves: hold one connection for
   * the whole copy, so a worker that finishes early cannot end it before a
   * slower one has connected. */
  struct nbd_handle *keeper = connect_to (sock, NULL, NULL, err);
  if (!keeper)
    return EIO;
  pthread_t t[WORKERS];
  int nt = 0;
  for (; nt < WORKERS; nt++)
    if (pthread_create (&t[nt], NULL, worker, c) != 0)
      break;
  if (nt == 0)
    worker (c);
  for (int i = 0; i < nt; i++)
    pthread_join (t[i], NULL);
  nbd_shutdown (keeper, 0);
  nbd_close (keeper);
  return 0;
}

int
rp_copy_disk (const char *src_sock, const char *src_export,
              uint32_t read_max, const char *bitmap, const char *dst_path,
              const char *dst_name,
              const char *run_dir, atomic_bool *cancel, struct rp_rate *rate,
              rp_progress_fn progress, void *opaque, struct rp_bh *bh,
              struct rp_copy_stats *stats, char **err)
{
  struct copy_ctx c = {
    .src_sock = src_sock, .src_export = src_export, .full = bitmap == NULL,
    .read_max = read_max && read_max <= OP_MAX && read_max >= READ_MAX
      ? read_max : READ_MAX,
    .bh = bh,
    .cancel = cancel, .rate = rate, .progress = progress, .opaque = opaque,
    .dst_name = dst_name,
  };
  pthread_mutex_init (&c.lock, NULL);
  atomic_init (&c.next, 0);
  atomic_init (&c.done, 0);
  atomic_init (&c.copied, 0);
  atomic_init (&c.zeroed, 0);
  int r = 0;
  pid_t pid = -1;
  CLEANUP_FREE char *sock = NULL, *log = NULL;

  struct nbd_handle *h = connect_to (src_sock, src_export, bitmap, err);
  if (!h) {
    r = EIO;
    goto out;
  }
  int64_t size = nbd_get_size (h);
  if (size < 0) {
    *err = rp_strdup (nbd_get_error ());
    r = EIO;
    nbd_close (h);
    goto out;
  }
  r = plan (&c, h, (uint64_t) size, err);
  nbd_close (h);
  if (r)
    goto out;
  if (bh)                       /* whole blocks, so each can be hashed */
    rp_bh_align (bh, &c.ops, (uint64_t) size, OP_MAX);
  if (stats)
    stats->total = c.ops.copy_bytes + c.ops.zero_bytes;

  static atomic_uint counter;
  sock = rp_asprintf ("%s/copy-%d-%u.sock", run_dir, (int) getpid (),
                      atomic_fetch_add (&counter, 1));
  log = rp_asprintf ("%s/qemu-nbd.log", run_dir);
  c.dst_sock = sock;
  pid = start_target (dst_path, sock, log, err);
  if (pid < 0) {
    r = EIO;
    goto out;
  }
  if ((r = run_workers (&c, sock, err)) != 0)
    goto out;
  if (c.err) {
    r = c.err;
    *err = c.msg;
    c.msg = NULL;
  }
  else if (atomic_load (cancel))
    r = ECANCELED;
  if (stats) {
    stats->copied = atomic_load (&c.copied);
    stats->zeroed = atomic_load (&c.zeroed);
  }
 out:
  /* qemu-nbd exits by itself once the last worker disconnected; SIGTERM
   * (also a clean close of the image) covers the paths where none did. */
  if (pid > 0 && rp_proc_stop (pid, 3000) > 1 && !r) {
    *err = rp_asprintf ("qemu-nbd did not exit after writing %s", dst_name);
    r = EIO;
  }
  if (sock)
    unlink (sock);
  rp_ops_free (&c.ops);
  free (c.msg);
  pthread_mutex_destroy (&c.lock);
  return r;
}
