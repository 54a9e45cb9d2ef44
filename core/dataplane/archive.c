/* Archive exports: formats, the libarchive writer, the metadata reader
 * (archive.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "arc.h"
#include "util.h"

static const char *const names[] = {
  [RP_FMT_QCOW2] = "qcow2", [RP_FMT_TAR] = "tar", [RP_FMT_TGZ] = "tar.gz",
  [RP_FMT_TXZ] = "tar.xz", [RP_FMT_TZST] = "tar.zst",
};

#define ZBUF (1u << 20)
static const char zeros[ZBUF];

int
rp_format_parse (const char *v)
{
  for (int i = 0; i < (int) (sizeof names / sizeof names[0]); i++)
    if (v && !strcmp (v, names[i]))
      return i;
  return -1;
}

const char *
rp_format_name (int fmt)
{
  return fmt >= 0 && fmt <= RP_FMT_TZST ? names[fmt] : "?";
}

struct rp_arc {
  struct archive *a;
  rp_arc_sink sink;
  void *opaque;
  int sink_err;
  EVP_MD_CTX *member;
  bool unhashed;                /* the caller hashes this member */
  struct archive_entry *e;
};

void
rp_arc_hex (EVP_MD_CTX *ctx, char hex[65])
{
  unsigned char md[32];
  unsigned n = 0;
  EVP_DigestFinal_ex (ctx, md, &n);
  for (unsigned i = 0; i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", md[i]);
}

static la_ssize_t
arc_write (struct archive *a, void *opaque, const void *buf, size_t len)
{
  struct rp_arc *c = opaque;
  if (!c->sink) {               /* being freed: the sink may be gone */
    archive_set_error (a, ECANCELED, "the archive was abandoned");
    return -1;
  }
  int r = c->sink (c->opaque, buf, len);
  if (r < 0) {
    c->sink_err = -r;
    archive_set_error (a, -r, "%s", strerror (-r));
    return -1;
  }
  return (la_ssize_t) len;
}

int
rp_arc_default_level (int fmt)
{
  /* gzip's and zstd's own defaults; xz at 3, not 6: -6 needs 94 MiB per
   * thread, more than rpfs's whole memory budget. */
  return fmt == RP_FMT_TGZ ? 6 : fmt == RP_FMT_TXZ ? 3
    : fmt == RP_FMT_TZST ? 3 : 0;
}

/* The filter of FMT with its level and threads. */
static int
add_filter (struct archive *a, int fmt, int level)
{
  char lv[24], th[24];
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  snprintf (lv, sizeof lv, "%d", level ? level : rp_arc_default_level (fmt));
  /* One compression thread per CPU but one: the job thread itself reads,
   * hashes and writes (and each zstd thread holds about 30 MiB). */
  snprintf (th, sizeof th, "%ld", n > 2 ? n - 1 : 1);
  switch (fmt) {
  case RP_FMT_TAR:
    return ARCHIVE_OK;
  case RP_FMT_TGZ:
    if (archive_write_add_filter_gzip (a) != ARCHIVE_OK)
      return ARCHIVE_FATAL;
    return archive_write_set_filter_option (a, "gzip", "compression-level",
                                            lv);
  case RP_FMT_TXZ:
    if (archive_write_add_filter_xz (a) != ARCHIVE_OK
        || archive_write_set_filter_option (a, "xz", "compression-level", lv)
        != ARCHIVE_OK)
      return ARCHIVE_FATAL;
    return archive_write_set_filter_option (a, "xz", "threads", th);
  case RP_FMT_TZST:
    if (archive_write_add_filter_zstd (a) != ARCHIVE_OK
        || archive_write_set_filter_option (a, "zstd", "compression-level",
                                            lv) != ARCHIVE_OK)
      return ARCHIVE_FATAL;
    return archive_write_set_filter_option (a, "zstd", "threads", th);
  default:
    return ARCHIVE_FATAL;
  }
}

struct rp_arc *
rp_arc_new (int fmt, int level, rp_arc_sink sink, void *opaque, char **why)
{
  struct rp_arc *c = rp_calloc (1, sizeof *c);
  c->sink = sink;
  c->opaque = opaque;
  c->a = archive_write_new ();
  c->member = EVP_MD_CTX_new ();
  if (!c->a || !c->member) {
    *why = rp_strdup ("cannot set up the archive writer");
    rp_arc_free (c);
    return NULL;
  }
  /* pax: sparse members (GNU sparse 1.0, which GNU tar and bsdtar unpack
   * sparse), long names, sizes beyond 8 GiB.  1 MiB blocks to the sink,
   * the last one not padded. */
  if (archive_write_set_format_pax_restricted (c->a) != ARCHIVE_OK
      || add_filter (c->a, fmt, level) != ARCHIVE_OK
      || archive_write_set_bytes_per_block (c->a, 1 << 20) != ARCHIVE_OK
      || archive_write_set_bytes_in_last_block (c->a, 1) != ARCHIVE_OK
      || archive_write_open (c->a, c, NULL, arc_write, NULL) != ARCHIVE_OK) {
    *why = rp_asprintf ("cannot start the %s archive: %s",
                        rp_format_name (fmt), archive_error_string (c->a));
    rp_arc_free (c);
    return NULL;
  }
  return c;
}

static int
arc_fail (struct rp_arc *c, const char *what, char **why)
{
  if (!*why)
    *why = rp_asprintf ("%s: %s", what, c->sink_err ? strerror (c->sink_err)
                        : archive_error_string (c->a) ?: "archive error");
  return -1;
}

int
rp_arc_begin (struct rp_arc *c, const char *name, uint64_t size, time_t mtime,
              const uint64_t *data, size_t ndata, char **why)
{
  archive_entry_free (c->e);
  c->e = archive_entry_new ();
  archive_entry_set_pathname (c->e, name);
  archive_entry_set_filetype (c->e, AE_IFREG);
  archive_entry_set_perm (c->e, 0644);
  archive_entry_set_size (c->e, (la_int64_t) size);
  archive_entry_set_mtime (c->e, mtime, 0);
  for (size_t i = 0; i < ndata; i++)
    archive_entry_sparse_add_entry (c->e, (la_int64_t) data[2 * i],
                                    (la_int64_t) data[2 * i + 1]);
  /* A member with no data at all would be written whole: give it one
   * (zero) block of data at its end instead. */
  if (data && ndata == 0 && size > 0) {
    uint64_t n = size < 512 ? size : 512;
    archive_entry_sparse_add_entry (c->e, (la_int64_t) (size - n),
                                    (la_int64_t) n);
  }
  EVP_DigestInit_ex (c->member, EVP_sha256 (), NULL);
  c->unhashed = false;
  if (archive_write_header (c->a, c->e) != ARCHIVE_OK)
    return arc_fail (c, name, why);
  return 0;
}

void
rp_arc_unhashed (struct rp_arc *c)
{
  c->unhashed = true;
}

int
rp_arc_data (struct rp_arc *c, const void *buf, size_t len, char **why)
{
  if (!c->unhashed)
    EVP_DigestUpdate (c->member, buf, len);
  const char *p = buf;
  while (len > 0) {
    la_ssize_t n = archive_write_data (c->a, p, len);
    if (n <= 0)
      return arc_fail (c, archive_entry_pathname (c->e), why);
    p += n;
    len -= (size_t) n;
  }
  return 0;
}

int
rp_arc_zeros (struct rp_arc *c, uint64_t len, char **why)
{
  while (len > 0) {
    size_t n = len < ZBUF ? (size_t) len : ZBUF;
    if (rp_arc_data (c, zeros, n, why) != 0)
      return -1;
    len -= n;
  }
  return 0;
}

int
rp_arc_end (struct rp_arc *c, char hex[65], char **why)
{
  if (archive_write_finish_entry (c->a) != ARCHIVE_OK)
    return arc_fail (c, archive_entry_pathname (c->e), why);
  rp_arc_hex (c->member, hex);
  return 0;
}

int
rp_arc_add (struct rp_arc *c, const char *name, const void *buf, size_t len,
            time_t mtime, char hex[65], char **why)
{
  if (rp_arc_begin (c, name, len, mtime, NULL, 0, why) != 0
      || rp_arc_data (c, buf, len, why) != 0)
    return -1;
  return rp_arc_end (c, hex, why);
}

int
rp_arc_close (struct rp_arc *c, char **why)
{
  if (archive_write_close (c->a) != ARCHIVE_OK)
    return arc_fail (c, "finishing the archive", why);
  return 0;
}

int
rp_arc_sink_error (const struct rp_arc *c)
{
  return c ? c->sink_err : 0;
}

void
rp_arc_free (struct rp_arc *c)
{
  if (!c)
    return;
  /* After a failure or cancel: archive_write_free would still close the
   * archive and flush it to the sink, which its owner may have freed. */
  c->sink = NULL;
  if (c->a)
    archive_write_free (c->a);
  archive_entry_free (c->e);
  EVP_MD_CTX_free (c->member);
  free (c);
}

/* ---- reading the metadata back (ImportReferencePointMetadata) ---- */

/* "<dir>/NAME" one directory deep (or NAME itself)? */
static bool
is_member (const char *path, const char *name)
{
  const char *s = strchr (path, '/');
  const char *leaf = s ? s + 1 : path;
  return !strcmp (leaf, name) && (!s || !strchr (leaf, '/'));
}

static int
read_member (struct archive *a, struct archive_entry *e, const char *path,
             size_t cap, char **out, size_t *len, char **why)
{
  la_int64_t size = archive_entry_size (e);
  if (size < 0 || (uint64_t) size > cap) {
    *why = rp_asprintf ("%s: member %s is larger than %zu bytes", path,
                        archive_entry_pathname (e), cap);
    return -1;
  }
  char *buf = rp_calloc (1, (size_t) size + 1);
  la_ssize_t n = archive_read_data (a, buf, (size_t) size);
  if (n != size) {
    *why = rp_asprintf ("%s: cannot read member %s: %s", path,
                        archive_entry_pathname (e),
                        n < 0 ? archive_error_string (a) : "short read");
    free (buf);
    return -1;
  }
  *out = buf;
  *len = (size_t) size;
  return 0;
}

int
rp_arc_read_meta (int fd, const char *path, size_t cap, char **cfg,
                  size_t *cfglen, char **rec, size_t *reclen, char **why)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  int r = -1, h;
  *cfg = *rec = NULL;
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  if (archive_read_open_fd (a, fd, 1 << 16) != ARCHIVE_OK) {
    *why = rp_asprintf ("%s is not an archive export (%s)", path,
                        archive_error_string (a));
    goto out;
  }
  /* config and referencepoint are the first members: stop as soon as both
   * are read, so a large archive is not decompressed to its end. */
  while (!(*cfg && *rec) && (h = archive_read_next_header (a, &e))
         == ARCHIVE_OK) {
    const char *name = archive_entry_pathname (e);
    if (!*cfg && is_member (name, "config")) {
      if (read_member (a, e, path, cap, cfg, cfglen, why) != 0)
        goto out;
    }
    else if (!*rec && is_member (name, "referencepoint")) {
      if (read_member (a, e, path, cap, rec, reclen, why) != 0)
        goto out;
    }
  }
  if (!*cfg || !*rec) {
    *why = rp_asprintf ("%s is not an archive export of rpfs (%s)", path,
                        archive_error_string (a)
                        ?: "no config and referencepoint members");
    goto out;
  }
  r = 0;
 out:
  if (r != 0) {
    free (*cfg);
    free (*rec);
    *cfg = *rec = NULL;
  }
  archive_read_free (a);
  return r;
}

/* ---- walking an archive's members (VerifyExport) ---- */

int
rp_arc_walk (int fd, const char *path, const struct rp_arc_walker *wk,
             void *opaque, atomic_bool *cancel, char **why)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  int r = 0, h;
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  if (archive_read_open_fd (a, fd, 1 << 20) != ARCHIVE_OK) {
    *why = rp_asprintf ("%s is not an archive export (%s)", path,
                        archive_error_string (a));
    archive_read_free (a);
    return -1;
  }
  while (r == 0 && (h = archive_read_next_header (a, &e)) == ARCHIVE_OK) {
    la_int64_t size = archive_entry_size (e);
    r = wk->member (opaque, archive_entry_pathname (e),
                    size < 0 ? 0 : (uint64_t) size, why);
    if (r <= 0) {
      r = r < 0 ? -1 : 0;
      continue;                 /* skipped: the next header skips its data */
    }
    r = 0;
    const void *buf;
    size_t len;
    la_int64_t off;
    while (r == 0 && (h = archive_read_data_block (a, &buf, &len, &off))
           == ARCHIVE_OK) {
      if (atomic_load (cancel))
        r = ECANCELED;
      else
        r = wk->data (opaque, (uint64_t) off, buf, len, why);
    }
    if (r == 0 && h != ARCHIVE_EOF) {
      *why = rp_asprintf ("%s: member %s: %s", path,
                          archive_entry_pathname (e),
                          archive_error_string (a) ?: "read error");
      r = -1;
    }
    if (r == 0)
      r = wk->end (opaque, why);
  }
  if (r == 0 && h != ARCHIVE_EOF) {
    *why = rp_asprintf ("%s: %s", path, archive_error_string (a)
                        ?: "not a complete archive");
    r = -1;
  }
  archive_read_free (a);
  return r;
}
