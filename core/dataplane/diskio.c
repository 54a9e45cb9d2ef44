/* Disk contents for the mount: disks/<id> (the current disk, over the
 * writable NBD export cur.<i>) and referencepoints/<rp>/disks/<id> (the
 * point-in-time disk, over rp.<seq>.<i>).  Each open file has its own NBD
 * connections: one for a current disk (writable exports do not advertise
 * multi-conn), POOL for a point-in-time disk, which its read-ahead threads
 * (prefetch.c) and direct reads share. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libnbd.h>

#include "internal.h"
#include "extent.h"
#include "prefetch.h"
#include "source.h"

#define STATUS_CHUNK (1ull << 30)
#define POOL 4

struct rp_disk_io {
  struct rp_system *sys;
  struct rp_refpoint *rp;       /* holds a reference and a busy count */
  struct rp_endpoint ep;        /* kept: the backend's pin (backend.h) */
  struct nbd_handle *h;         /* = pool[0].h[0]: writes, flushes */
  struct rp_src pool[POOL];     /* an export, or a chain (source.h) */
  pthread_mutex_t locks[POOL];
  unsigned n;
  atomic_uint next;
  uint64_t size;
  struct rp_prefetch *pf;       /* point-in-time disks: read-ahead */
};

/* Take a free connection of the pool (or wait for one); returns its index. */
static unsigned
take (struct rp_disk_io *io)
{
  unsigned start = atomic_fetch_add (&io->next, 1);
  for (unsigned k = 0; k < io->n; k++) {
    unsigned i = (start + k) % io->n;
    if (pthread_mutex_trylock (&io->locks[i]) == 0)
      return i;
  }
  unsigned i = start % io->n;
  pthread_mutex_lock (&io->locks[i]);
  return i;
}

static int
nbd_errno (void)
{
  int e = nbd_get_errno ();
  return e ? e : EIO;
}

/* Which export serves (SYS, RP, ID), into *EP; -errno if none. */
static int
export_for (struct rp_system *sys, struct rp_refpoint *rp, const char *id,
            struct rp_endpoint *ep)
{
  int di = rp_disk_index (sys, id);
  if (di < 0)
    return -ENOENT;
  if (rp) {
    pthread_mutex_lock (&sys->core->lock);
    bool ok = rp->has_data && rp_strv_contains (rp->disk_ids, id);
    pthread_mutex_unlock (&sys->core->lock);
    if (!ok)
      return -ENOENT;
  }
  char *e = NULL;
  int r = rp_backend_disk_endpoint (sys, rp, (size_t) di, ep, &e);
  free (e);
  return r == 0 ? 0 : -ENOENT;
}

/* The server went away (a QEMU that died, a libvirt domain that stopped or
 * started): start or attach to it again.  true if that was done. */
static bool
revived (struct rp_system *sys)
{
  char *e = NULL;
  pthread_mutex_lock (&sys->op_lock);
  bool again = !rp_backend_alive (sys) && rp_backend_ensure (sys, &e) == 0;
  pthread_mutex_unlock (&sys->op_lock);
  free (e);
  return again;
}

/* Connect SRC to EP, which export_for (SYS, RP, ID) gave.  If QEMU was
 * gone, it is started and EP asked for again (a new QEMU: a new chain,
 * whose pin is the one that counts). */
static int
connect_export (struct rp_system *sys, struct rp_refpoint *rp, const char *id,
                struct rp_endpoint *ep, struct rp_src *src)
{
  int err = EIO;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (attempt == 1) {
      rp_endpoint_clear (ep);
      if (export_for (sys, rp, id, ep) != 0)
        break;
    }
    char *e = NULL;
    if (rp_src_open (src, ep, false, &e) == 0)
      return 0;
    free (e);
    err = nbd_errno ();
    /* QEMU may have died: the next request restarts it. */
    if (!revived (sys))
      break;
  }
  return err;
}

/* One NBD read on a free connection of the pool: 0 or -errno. */
static int
pool_read (void *opaque, void *buf, size_t len, uint64_t off)
{
  struct rp_disk_io *io = opaque;
  unsigned i = take (io);
  int r = rp_src_pread (&io->pool[i], buf, len, off, NULL);
  pthread_mutex_unlock (&io->locks[i]);
  return r;
}

struct rp_disk_io *
rp_disk_open (struct rp_system *sys, struct rp_refpoint *rp, const char *id,
              bool write, const struct rp_caller *who, int *rv)
{
  struct rp_endpoint ep = { 0 };
  *rv = rp_disk_access (sys, id, who, write ? R_OK | W_OK : R_OK);
  if (*rv != RV_OK)
    return NULL;
  if (export_for (sys, rp, id, &ep) != 0
      && (!revived (sys) || export_for (sys, rp, id, &ep) != 0)) {
    *rv = RV_INVALID_STATE;
    return NULL;
  }
  if (write && (rp || !rp_system_disks_writable (sys))) {
    rp_endpoint_clear (&ep);
    *rv = RV_ACCESS_DENIED;
    return NULL;
  }
  struct rp_disk_io *io = rp_calloc (1, sizeof *io);
  if (connect_export (sys, rp, id, &ep, &io->pool[0]) != 0) {
    rp_endpoint_clear (&ep);
    free (io);
    *rv = RV_NOT_AVAILABLE;
    return NULL;
  }
  io->sys = sys;
  io->ep = ep;
  io->h = io->pool[0].h[0];
  io->n = 1;
  for (unsigned i = 1; rp && i < POOL; i++) {
    char *e = NULL;
    if (rp_src_open (&io->pool[i], &io->ep, false, &e) != 0) {
      free (e);
      break;
    }
    io->n++;
  }
  for (unsigned i = 0; i < io->n; i++)
    pthread_mutex_init (&io->locks[i], NULL);
  atomic_init (&io->next, 0);
  io->size = (uint64_t) nbd_get_size (io->h);
  if (rp) {
    pthread_mutex_lock (&sys->core->lock);
    rp->refs++;
    rp->busy++;
    pthread_mutex_unlock (&sys->core->lock);
    io->rp = rp;
    io->pf = rp_prefetch_new (io->size, io->n, pool_read, io);
  }
  return io;
}

void
rp_disk_close (struct rp_disk_io *io)
{
  if (!io)
    return;
  rp_prefetch_free (io->pf);    /* its threads read with the pool */
  for (unsigned i = 0; i < io->n; i++) {
    for (size_t k = 0; k < io->pool[i].n; k++)
      nbd_shutdown (io->pool[i].h[k], 0);
    rp_src_close (&io->pool[i]);
    pthread_mutex_destroy (&io->locks[i]);
  }
  rp_endpoint_clear (&io->ep);
  if (io->rp) {
    pthread_mutex_lock (&io->sys->core->lock);
    io->rp->busy--;
    pthread_mutex_unlock (&io->sys->core->lock);
    rp_refpoint_put (io->rp);
  }
  free (io);
}

ssize_t
rp_disk_pread (struct rp_disk_io *io, void *buf, size_t len, uint64_t off)
{
  if (off >= io->size)
    return 0;
  if (len > io->size - off)
    len = io->size - off;
  if (io->pf)
    return rp_prefetch_read (io->pf, buf, len, off);
  int r = pool_read (io, buf, len, off);
  return r < 0 ? r : (ssize_t) len;
}

ssize_t
rp_disk_pwrite (struct rp_disk_io *io, const void *buf, size_t len,
                uint64_t off)
{
  if (off >= io->size || len > io->size - off)
    return -ENOSPC;             /* the disk does not grow */
  if (nbd_pwrite (io->h, buf, len, off, 0) == -1)
    return -nbd_errno ();
  return (ssize_t) len;
}

int
rp_disk_flush (struct rp_disk_io *io)
{
  return nbd_flush (io->h, 0) == -1 ? -nbd_errno () : 0;
}

/* Extents of [off, off + up to STATUS_CHUNK) of the disk SRC reads. */
static int
status_from (struct rp_src *src, uint64_t size, uint64_t off,
             struct rp_extents *list)
{
  uint64_t len = size - off < STATUS_CHUNK ? size - off : STATUS_CHUNK;
  char *e = NULL;
  list->n = 0;
  int r = rp_src_status (src, off, len, list, NULL, &e);
  free (e);
  return r ? r : list->n ? 0 : -EPROTO;
}

int64_t
rp_disk_seek (struct rp_disk_io *io, uint64_t off, int whence)
{
  bool data = whence == SEEK_DATA;
  uint64_t from = off;
  if (off >= io->size)
    return -ENXIO;
  struct rp_extents list = { 0 };
  int64_t r = data ? -ENXIO : (int64_t) io->size;
  while (off < io->size) {
    unsigned i = take (io);
    int e = status_from (&io->pool[i], io->size, off, &list);
    pthread_mutex_unlock (&io->locks[i]);
    if (e) {
      r = e;
      break;
    }
    uint64_t at = data ? rp_extents_next_data (&list, off)
                       : rp_extents_next_hole (&list, off);
    if (at != UINT64_MAX) {
      r = (int64_t) (at < io->size ? at : io->size);
      if (data && at >= io->size)
        r = -ENXIO;
      else if (!data && io->pf && (uint64_t) r > from)
        rp_prefetch_hint (io->pf, from, (uint64_t) r);  /* data: [from, r) */
      break;
    }
    const struct rp_extent *last = &list.v[list.n - 1];
    off = last->off + last->len;
  }
  rp_extents_free (&list);
  return r;
}

int
rp_disk_stat (struct rp_system *sys, struct rp_refpoint *rp, const char *id,
              uint64_t *size, uint64_t *allocated)
{
  struct rp_endpoint ep = { 0 };
  int err = export_for (sys, rp, id, &ep);
  if (err && revived (sys))
    err = export_for (sys, rp, id, &ep);
  if (err)
    return err;
  struct rp_src src;
  err = connect_export (sys, rp, id, &ep, &src);
  if (err) {
    rp_endpoint_clear (&ep);
    return -err;
  }
  int64_t sz = rp_src_size (&src);
  int r = 0;
  *size = sz < 0 ? 0 : (uint64_t) sz;
  *allocated = 0;
  struct rp_extents list = { 0 };
  for (uint64_t off = 0; off < *size && r == 0;) {
    r = status_from (&src, *size, off, &list);
    if (r == 0) {
      *allocated += rp_extents_allocated (&list);
      const struct rp_extent *last = &list.v[list.n - 1];
      off = last->off + last->len;
    }
  }
  rp_extents_free (&list);
  for (size_t k = 0; k < src.n; k++)
    nbd_shutdown (src.h[k], 0);
  rp_src_close (&src);
  rp_endpoint_clear (&ep);
  if (*allocated > *size)
    *allocated = *size;
  return r;
}
