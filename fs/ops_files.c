/* rpfs FUSE frontend: open files.
 *
 * Control files (properties, settings, methods) are rendered once at open
 * into a per-open handle, so every read(2) of one open file sees one
 * consistent value; they are opened direct_io so results reach the caller
 * unchanged.  A setting or method acts in write(2), never in release
 * (whose result nobody sees).
 *
 * A method request may also arrive in several consecutive writes, for the
 * same reason: the spec's own `printf '/dir\nBaseReferencePoint=rp1\n' >
 * ExportReferencePoint` is two writes from bash.  So every write appends to
 * the request and runs all of the method's checks on it at once
 * (rp_*_check, no side effect): a bad request fails in that write(2), with
 * its errno and a job record saying why.  The call itself runs in flush,
 * i.e. at close(2), whose result also reaches the caller; its result line is
 * then readable from the method file.  A write at any other offset than the
 * end of the request so far is a partial write and fails with EINVAL.
 *
 * A setting also accepts its value in consecutive writes, because bash's
 * echo and printf builtins write line by line: `printf 'sda\nsdb\n' >
 * DisksToExport` arrives as "sda\n" then "sdb\n".  Each write sets the
 * value to everything written so far (setting is idempotent), and a write
 * that makes it invalid fails and puts back the value the file had at open.
 *
 * Disk files are opened in the core (rp_disk_open) and read and written
 * through it, direct_io like everything else (so mmap is MAP_PRIVATE only).  Their size is fixed (they are disks): O_TRUNC or a truncate
 * that would change it fails with EINVAL rather than leave stale data behind
 * a cp that believed the file was emptied. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

enum hkind {
  H_VALUE,              /* property: read only */
  H_CONTROL,            /* setting or method: read the value, write it */
  H_DISK,
  H_IGNORE,             /* the notifier's own open: writes are dropped */
  H_STREAM,             /* a streamed export (core/methods/stream.c) */
};

/* Longest value a setting file takes over several writes. */
#define SETTING_MAX (64 * 1024)

struct handle {
  enum hkind kind;
  enum fs_kind node;            /* what was opened */
  char *value;                  /* H_VALUE, H_CONTROL */
  size_t len;
  bool written;                 /* H_CONTROL: a write happened */
  bool failed;                  /* H_CONTROL: a write failed: no more */
  bool pending;                 /* method: checked request awaits flush */
  char *orig;                   /* setting: the value at open, for undo */
  char *acc;                    /* setting: everything written so far */
  size_t acc_len;
  struct rp_disk_io *io;        /* H_DISK */
  struct rp_refpoint *rp;       /* H_DISK at a reference point: reference */
  bool write;                   /* H_DISK opened for writing */
  bool dirty;                   /* H_DISK written since the last flush */
  struct rp_stream *stream;     /* H_STREAM */
};

static struct handle *
handle_of (struct fuse_file_info *fi)
{
  return (struct handle *) (uintptr_t) fi->fh;
}

static void
handle_free (struct handle *h)
{
  if (h == NULL)
    return;
  if (h->io)
    rp_disk_close (h->io);
  if (h->stream)
    rp_stream_close (h->stream);
  if (h->rp)
    rp_refpoint_put (h->rp);
  free (h->value);
  free (h->orig);
  free (h->acc);
  free (h);
}

static int
open_disk (struct node *n, struct handle *h, int flags)
{
  bool wr = (flags & O_ACCMODE) != O_RDONLY;
  struct rp_caller who = fs_caller ();
  int rv = RV_OK;

  if (wr && !node_disk_writable (n))
    return -EACCES;
  if (wr && (flags & O_TRUNC)) {
    uint64_t size, allocated;
    int r = rp_disk_stat (n->sys, n->rp, n->p.name, &size, &allocated);

    if (r < 0)
      return r;
    if (size != 0)
      return -EINVAL;
  }
  h->io = rp_disk_open (n->sys, n->rp, n->p.name, wr, &who, &rv);
  if (h->io == NULL)
    return fs_rv_errno (rv) ?: -EIO;
  h->kind = H_DISK;
  h->write = wr;
  /* Keep the reference point alive while its content is open. */
  h->rp = n->rp;
  n->rp = NULL;
  return 0;
}

/* A streamed export: each open is its own export job, refused at open(2)
 * with the errno of ExportReferencePoint's checks. */
static int
open_stream (struct node *n, struct handle *h, struct fuse_file_info *fi)
{
  struct rp_caller who = fs_caller ();
  int rv = RV_OK;
  int r = (fi->flags & O_ACCMODE) != O_RDONLY ? -EACCES
    : node_allows (n, &who, R_OK);

  if (r < 0)
    return r;
  h->stream = rp_stream_open (n->rp, n->p.name + strlen ("export."), &who,
                              &rv);
  if (h->stream == NULL)
    return fs_rv_errno (rv) ?: -EIO;
  h->kind = H_STREAM;
  /* A pipe, not a file: no seeking, no page cache, no size. */
  fi->nonseekable = 1;
  return 0;
}

/* A property, setting or method file: its text as of now into H. */
static int
open_text (struct node *n, struct handle *h, bool wr)
{
  int r;

  switch (n->p.kind) {
  case FS_SYS_PROP: case FS_RP_PROP: case FS_JOB_PROP:
    if (wr)
      return -EACCES;
    h->kind = H_VALUE;
    break;
  case FS_RP_SETTING:
  case FS_SYS_METHOD: case FS_RP_METHOD: case FS_JOB_METHOD: {
    /* Refuse a caller who may not write here at open, as the kernel would
     * by the mode (perm.c); the core refuses again at the write. */
    struct rp_caller who = fs_caller ();

    r = wr ? node_allows (n, &who, W_OK) : 0;
    if (r < 0)
      return r;
    /* O_TRUNC is a no-op: the value changes only by a whole write. */
    h->kind = H_CONTROL;
    break;
  }
  default:
    return -EISDIR;
  }

  struct rp_caller who = fs_caller ();

  h->value = node_value (n, &who);
  if (h->value == NULL)
    return h->kind == H_VALUE ? -ENOENT : -ENOMEM;
  h->len = strlen (h->value);
  if (h->node == FS_RP_SETTING && (h->orig = strdup (h->value)) == NULL)
    return -ENOMEM;
  return 0;
}

int
fs_open (const char *path, struct fuse_file_info *fi)
{
  AUTO_NODE struct node n = NODE_INIT;
  struct handle *h;
  bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
  int r;

  h = calloc (1, sizeof *h);
  if (h == NULL)
    return -ENOMEM;
  if (fs_self (path, NULL) != FS_SELF_NO) {
    h->kind = H_IGNORE;
    goto ok;
  }
  r = node_get (path, &n);
  if (r < 0)
    goto err;
  h->node = n.p.kind;

  switch (n.p.kind) {
  case FS_SYS_DISK: case FS_RP_DISK:
    r = open_disk (&n, h, fi->flags);
    break;
  case FS_RP_JOBLINK:
    r = -ELOOP;                 /* the kernel follows it; never opened */
    break;
  case FS_RP_STREAM:
    r = open_stream (&n, h, fi);
    break;
  default:
    r = open_text (&n, h, wr);
    break;
  }
  if (r < 0)
    goto err;

 ok:
  fi->fh = (uintptr_t) h;
  /* Everything is direct: each read(2) reaches fs_read.  A point-in-time
   * disk is read ahead in the core (prefetch.c) instead of the page cache,
   * which costs a page allocation and a copy more per byte. */
  fi->direct_io = 1;
  fi->keep_cache = 0;
  return 0;

 err:
  handle_free (h);
  return r;
}

int
fs_read (const char *path, char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  size_t done = 0;

  (void) path;
  if (off < 0)
    return -EINVAL;
  switch (h->kind) {
  case H_VALUE: case H_CONTROL:
    if ((uint64_t) off >= h->len)
      return 0;
    if (size > h->len - off)
      size = h->len - off;
    memcpy (buf, h->value + off, size);
    return size;
  case H_DISK:
    /* FUSE read must return the whole count except at end of file. */
    while (done < size) {
      ssize_t r = rp_disk_pread (h->io, buf + done, size - done, off + done);

      if (r < 0)
        return done ? (int) done : (int) r;
      if (r == 0)
        break;
      done += r;
    }
    return done;
  case H_STREAM:
    /* Whatever is there (at least one byte); 0 only at the end of a
     * complete archive. */
    return (int) rp_stream_read (h->stream, buf, size);
  case H_IGNORE:
  default:
    return 0;
  }
}

/* After a successful write: a read on this open file shows the new value
 * or result. */
static void
refresh (struct handle *h, struct node *n, const struct rp_caller *who)
{
  char *v;

  if (n->p.kind == FS_JOB_METHOD || (v = node_value (n, who)) == NULL)
    return;
  free (h->value);
  h->value = v;
  h->len = strlen (v);
}

/* A setting: the value so far plus this write (see the top of the file). */
static int
write_setting (struct node *n, struct handle *h, const char *buf,
               size_t size, off_t off, const struct rp_caller *who)
{
  char *acc;
  int r = -EINVAL;

  if ((uint64_t) off != h->acc_len || size > SETTING_MAX - h->acc_len)
    goto undo;
  r = -ENOMEM;
  acc = realloc (h->acc, h->acc_len + size);
  if (acc == NULL)
    goto undo;
  h->acc = acc;
  memcpy (h->acc + h->acc_len, buf, size);

  r = fs_rv_errno (rp_refpoint_set (n->rp, n->p.name, h->acc,
                                    h->acc_len + size, who));
  if (r < 0)
    goto undo;
  h->acc_len += size;
  return size;

 undo:
  /* Nothing changes: put back what the file held at open, if earlier
   * writes of this open changed it. */
  if (h->acc_len > 0)
    rp_refpoint_set (n->rp, n->p.name, h->orig, strlen (h->orig), who);
  return r;
}

/* Append BUF to the request accumulated in H (settings and methods). */
static int
accumulate (struct handle *h, const char *buf, size_t size, off_t off)
{
  if ((uint64_t) off != h->acc_len || size > SETTING_MAX - h->acc_len)
    return -EINVAL;
  char *acc = realloc (h->acc, h->acc_len + size + 1);
  if (acc == NULL)
    return -ENOMEM;
  h->acc = acc;
  memcpy (h->acc + h->acc_len, buf, size);
  h->acc_len += size;
  return 0;
}

/* Run the method with the accumulated request: the one place a method is
 * called. */
static int
call_method (struct node *n, struct handle *h, const struct rp_caller *who)
{
  int rv;
  h->pending = false;
  if (n->p.kind == FS_SYS_METHOD)
    rv = rp_system_call (n->sys, n->p.name, h->acc, h->acc_len, who);
  else
    rv = rp_refpoint_call (n->rp, n->p.name, h->acc, h->acc_len, who);
  refresh (h, n, who);
  return fs_rv_errno (rv);
}

/* A method write: check now, call at flush (see the top of the file). */
static int
write_method (struct node *n, struct handle *h, const char *buf, size_t size,
              off_t off, const struct rp_caller *who)
{
  if ((uint64_t) off == h->acc_len && size > SETTING_MAX - h->acc_len) {
    /* Over the size limit: the method refuses the whole request as it
     * refuses any bad one, with a job record and a result line
     * (reference.md 7).  Bounded: the handle fails after this. */
    char *acc = realloc (h->acc, h->acc_len + size);
    if (acc == NULL)
      return -ENOMEM;
    h->acc = acc;
    memcpy (h->acc + h->acc_len, buf, size);
    h->acc_len += size;
    return call_method (n, h, who);
  }
  int r = accumulate (h, buf, size, off);
  if (r < 0)
    return r;
  int rv = n->p.kind == FS_SYS_METHOD
    ? rp_system_check (n->sys, n->p.name, h->acc, h->acc_len, who)
    : rp_refpoint_check (n->rp, n->p.name, h->acc, h->acc_len, who);
  if (rv != RV_OK)
    return call_method (n, h, who);   /* fails again, with a job record */
  h->pending = true;
  return size;
}

/* A setting, method or job method write. */
static int
write_control (const char *path, struct handle *h, const char *buf,
               size_t size, off_t off)
{
  AUTO_NODE struct node n = NODE_INIT;
  struct rp_caller who = fs_caller ();
  int rv, r;

  if (h->failed)
    return -EINVAL;
  if (h->node == FS_JOB_METHOD && (off != 0 || h->written))
    return -EINVAL;
  h->written = true;
  /* Resolve again: the handle holds no reference, so an open method file
   * does not keep its reference point busy. */
  r = node_get (path, &n);
  if (r < 0)
    return r;

  switch (n.p.kind) {
  case FS_RP_SETTING:
    r = write_setting (&n, h, buf, size, off, &who);
    break;
  case FS_SYS_METHOD:
  case FS_RP_METHOD:
    r = write_method (&n, h, buf, size, off, &who);
    break;
  case FS_JOB_METHOD:
    rv = rp_job_request_state (n.job, buf, size, &who);
    r = fs_rv_errno (rv);
    refresh (h, &n, &who);
    break;
  default:
    return -EBADF;
  }
  if (r < 0) {
    h->failed = true;
    h->pending = false;
    return r;
  }
  return size;
}

int
fs_write (const char *path, const char *buf, size_t size, off_t off,
          struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  size_t done = 0;

  if (off < 0)
    return -EINVAL;
  switch (h->kind) {
  case H_IGNORE:
    return size;
  case H_CONTROL:
    return write_control (path, h, buf, size, off);
  case H_DISK:
    if (!h->write)
      return -EBADF;
    while (done < size) {
      ssize_t r = rp_disk_pwrite (h->io, buf + done, size - done, off + done);

      if (r <= 0) {
        if (done)
          break;
        return r < 0 ? (int) r : -EIO;
      }
      done += r;
      h->dirty = true;
    }
    return done;
  case H_VALUE:
  default:
    return -EBADF;
  }
}

int
fs_truncate (const char *path, off_t size, struct fuse_file_info *fi)
{
  AUTO_NODE struct node n = NODE_INIT;
  uint64_t cur, allocated;
  int r;

  if ((fi && handle_of (fi)->kind == H_IGNORE) ||
      fs_self (path, NULL) != FS_SELF_NO)
    return 0;
  r = node_get (path, &n);
  if (r < 0)
    return r;
  switch (n.p.kind) {
  case FS_RP_SETTING:
  case FS_SYS_METHOD: case FS_RP_METHOD: case FS_JOB_METHOD:
    return 0;                   /* O_TRUNC before a write: no-op */
  case FS_SYS_DISK: case FS_RP_DISK:
    r = rp_disk_stat (n.sys, n.rp, n.p.name, &cur, &allocated);
    if (r < 0)
      return r;
    if ((uint64_t) size == cur)
      return 0;
    {
      struct rp_caller who = fs_caller ();

      r = node_allows (&n, &who, W_OK);
    }
    return r < 0 ? r : -EINVAL;
  default:
    return fs_kind_is_dir (n.p.kind) ? -EISDIR : -EACCES;
  }
}

/* Flush a disk's writes to QEMU; the handle is clean once that worked. */
static int
flush_disk (struct handle *h)
{
  int r = rp_disk_flush (h->io);
  if (r == 0)
    h->dirty = false;
  return r < 0 ? r : 0;
}

int
fs_flush (const char *path, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);
  int r;

  if (h->kind == H_CONTROL && h->pending) {
    AUTO_NODE struct node n = NODE_INIT;
    struct rp_caller who = fs_caller ();
    r = node_get (path, &n);
    if (r < 0)
      return r;
    return call_method (&n, h, &who);
  }
  if (h->kind != H_DISK || !h->dirty)
    return 0;
  return flush_disk (h);
}

int
fs_fsync (const char *path, int datasync, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);

  (void) path;
  (void) datasync;
  if (h->kind != H_DISK || !h->write)
    return 0;
  return flush_disk (h);
}

int
fs_release (const char *path, struct fuse_file_info *fi)
{
  (void) path;
  handle_free (handle_of (fi));
  fi->fh = 0;
  return 0;
}

/* The kernel forwards only SEEK_DATA and SEEK_HOLE (it handles the others
 * itself).  Never answer ENOSYS: the kernel would then stop asking for
 * every file of the mount, disks included. */
off_t
fs_lseek (const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
  struct handle *h = handle_of (fi);

  (void) path;
  if (whence != SEEK_DATA && whence != SEEK_HOLE)
    return -EINVAL;
  if (off < 0)
    return -ENXIO;
  if (h->kind == H_DISK)
    return rp_disk_seek (h->io, off, whence);
  /* A value is all data, with the implicit hole at its end. */
  if ((uint64_t) off >= h->len)
    return -ENXIO;
  return whence == SEEK_DATA ? off : (off_t) h->len;
}
