/* Small helpers shared by the core.  No global state: every function here is
 * safe to call from any thread. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "rpfs.h"

void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

/* ---- names and identifiers ---- */

bool
rp_name_valid_n (const char *s, size_t len)
{
  if (len < 1 || len > 64)
    return false;
  /* "." and ".." would be directory entries of their own in the mount. */
  if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
    return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (!(isascii (c) && (isalnum (c) || c == '_' || c == '.' || c == '-')))
      return false;
  }
  return true;
}

bool
rp_name_valid (const char *s)
{
  /* strnlen: a 65-byte prefix is enough to know it is too long. */
  return s && rp_name_valid_n (s, strnlen (s, 65));
}

bool
rp_uuid_valid (const char *s)
{
  if (!s || strlen (s) != 36)
    return false;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return false;
    }
    else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return true;
}

int
rp_uuid_new (char out[37])
{
  unsigned char b[16];
  size_t got = 0;

  while (got < sizeof b) {
    ssize_t r = getrandom (b + got, sizeof b - got, 0);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    got += r;
  }
  b[6] = (b[6] & 0x0f) | 0x40;  /* version 4 (random) */
  b[8] = (b[8] & 0x3f) | 0x80;  /* variant 10 (RFC 4122) */
  snprintf (out, 37,
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

/* ---- times ---- */

void
rp_time_iso (time_t t, char out[21])
{
  struct tm tm;

  /* Years outside 0..9999 do not fit the fixed-width format: clamp to the
   * epoch rather than write a truncated or overlong string. */
  if (gmtime_r (&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 8099
      || strftime (out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
    memcpy (out, "1970-01-01T00:00:00Z", 21);
}

/* N decimal digits at S; -1 if any is not a digit. */
static int
parse_digits (const char *s, int n)
{
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int
rp_time_parse (const char *s, time_t *t)
{
  struct tm tm = { 0 }, back;
  time_t r;

  if (!s || strlen (s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T'
      || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
    return -1;
  int year = parse_digits (s, 4), mon = parse_digits (s + 5, 2),
    mday = parse_digits (s + 8, 2), hour = parse_digits (s + 11, 2),
    min = parse_digits (s + 14, 2), sec = parse_digits (s + 17, 2);
  if (year < 0 || mon < 1 || mon > 12 || mday < 1 || hour < 0 || min < 0
      || sec < 0)
    return -1;
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = mday;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  r = timegm (&tm);
  /* timegm normalises "02-30" or "25:00" silently; a round trip that does
   * not give back the same fields means the input was out of range. */
  if (gmtime_r (&r, &back) == NULL || back.tm_year != year - 1900
      || back.tm_mon != mon - 1 || back.tm_mday != mday
      || back.tm_hour != hour || back.tm_min != min || back.tm_sec != sec)
    return -1;
  *t = r;
  return 0;
}

void
rp_interval (double seconds, char out[26])
{
  /* The widest interval the format can hold: 99999999 days, 23:59:59.999999.
   * Clamp in integers: a double near that size is not exact to 1 us. */
  const uint64_t max_us = (99999999ull * 86400 + 86399) * 1000000 + 999999;
  uint64_t us;

  if (!(seconds > 0))           /* negative, zero or NaN */
    us = 0;
  else if (seconds >= 8.64e12)  /* 100000000 days */
    us = max_us;
  else
    us = (uint64_t) (seconds * 1e6 + 0.5);
  if (us > max_us)
    us = max_us;

  uint64_t s = us / 1000000;
  /* The modulo on the days is a no-op after clamping; it lets the compiler
   * see that the field fits. */
  snprintf (out, 26, "%08u%02u%02u%02u.%06u:000",
            (unsigned) (s / 86400 % 100000000), (unsigned) (s / 3600 % 24),
            (unsigned) (s / 60 % 60), (unsigned) (s % 60),
            (unsigned) (us % 1000000));
}

/* ---- memory ---- */

char *
rp_asprintf (const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    abort ();
  va_end (ap);
  return s;
}

char *
rp_strdup (const char *s)
{
  char *r = strdup (s);
  if (!r)
    abort ();
  return r;
}

void *
rp_calloc (size_t n, size_t size)
{
  void *p = calloc (n, size);
  /* calloc (0, x) may legitimately return NULL; callers expect non-NULL. */
  if (!p && (n == 0 || size == 0))
    p = calloc (1, 1);
  if (!p)
    abort ();
  return p;
}

void *
rp_bigbuf (size_t len)
{
  void *p = mmap (NULL, len ? len : 1, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    abort ();
  return p;
}

void
rp_bigbuf_free (void *p, size_t len)
{
  if (p)
    munmap (p, len ? len : 1);
}

/* ---- string vectors ---- */

size_t
rp_strv_len (char *const *v)
{
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

char **
rp_strv_push (char **v, const char *s)
{
  size_t n = rp_strv_len (v);
  char **r = realloc (v, (n + 2) * sizeof *r);
  if (!r)
    abort ();
  r[n] = rp_strdup (s);
  r[n + 1] = NULL;
  return r;
}

bool
rp_strv_contains (char *const *v, const char *s)
{
  for (size_t i = 0; v && v[i]; i++)
    if (strcmp (v[i], s) == 0)
      return true;
  return false;
}

char *
rp_strv_join (char *const *v, const char *sep)
{
  size_t seplen = strlen (sep), total = 1;
  for (size_t i = 0; v && v[i]; i++)
    total += strlen (v[i]) + seplen;

  char *r = malloc (total), *p = r;
  if (!r)
    abort ();
  for (size_t i = 0; v && v[i]; i++) {
    p = stpcpy (p, v[i]);
    p = stpcpy (p, sep);
  }
  *p = '\0';
  return r;
}

void
rp_strv_free (char **v)
{
  for (size_t i = 0; v && v[i]; i++)
    free (v[i]);
  free (v);
}

/* ---- files ---- */

static int
write_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = write (fd, buf, len);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    buf += r;
    len -= r;
  }
  return 0;
}

/* fsync the directory holding PATH, so that a rename into it is durable. */
static int
fsync_parent (const char *path)
{
  CLEANUP_FREE char *copy = rp_strdup (path);
  int fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    return -1;
  int r = fsync (fd);
  int saved = errno;
  close (fd);
  errno = saved;
  return r;
}

int
rp_write_file_atomic (const char *path, const void *buf, size_t len, int mode)
{
  CLEANUP_FREE char *tmp = rp_asprintf ("%s.tmp", path);
  int saved;

  /* O_TRUNC, not O_EXCL: a PATH.tmp left by a crash must not block us.
   * O_NOFOLLOW: never write through a symlink someone planted there. */
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                 mode);
  if (fd == -1)
    return -1;
  if (write_all (fd, buf, len) == -1 || fsync (fd) == -1) {
    saved = errno;
    close (fd);
    goto fail;
  }
  if (close (fd) == -1) {
    saved = errno;
    goto fail;
  }
  if (rename (tmp, path) == -1) {
    saved = errno;
    goto fail;
  }
  return fsync_parent (path);

 fail:
  unlink (tmp);
  errno = saved;
  return -1;
}

char *
rp_read_file (const char *path, size_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return NULL;

  /* Read to EOF rather than trust st_size (files may change or be special). */
  size_t n = 0, cap = 4096;
  char *buf = malloc (cap);
  if (!buf)
    abort ();
  for (;;) {
    if (cap - n < 2) {
      cap *= 2;
      char *b = realloc (buf, cap);
      if (!b)
        abort ();
      buf = b;
    }
    ssize_t r = read (fd, buf + n, cap - n - 1);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      int saved = errno;
      free (buf);
      close (fd);
      errno = saved;
      return NULL;
    }
    if (r == 0)
      break;
    n += r;
  }
  close (fd);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

/* mkdir that accepts an existing directory. */
static int
mkdir_one (const char *path, int mode)
{
  struct stat st;

  if (mkdir (path, mode) == 0)
    return 0;
  if (errno != EEXIST)
    return -1;
  if (stat (path, &st) == -1)
    return -1;
  if (!S_ISDIR (st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int
rp_mkdir_p (const char *path, int mode)
{
  CLEANUP_FREE char *p = rp_strdup (path);

  if (*p == '\0') {
    errno = ENOENT;
    return -1;
  }
  for (char *s = p + 1; *s; s++) {
    if (*s != '/' || s[-1] == '/')
      continue;
    *s = '\0';
    int r = mkdir_one (p, mode);
    *s = '/';
    if (r == -1)
      return -1;
  }
  return mkdir_one (p, mode);
}

/* Remove NAME in DIRFD and everything below it.  unlinkat first: that removes
 * files and symlinks (never followed) at once, and only a real directory is
 * opened, with O_NOFOLLOW so a swapped-in symlink is not entered. */
int
rp_rm_at (int dirfd, const char *name)
{
  if (unlinkat (dirfd, name, 0) == 0 || errno == ENOENT)
    return 0;
  if (errno != EISDIR && errno != EPERM)
    return -1;

  int fd = openat (dirfd, name,
                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1)
    return -1;
  DIR *d = fdopendir (fd);
  if (!d) {
    int saved = errno;
    close (fd);
    errno = saved;
    return -1;
  }
  int r = 0;
  for (;;) {
    errno = 0;                  /* readdir signals errors only via errno */
    struct dirent *de = readdir (d);
    if (!de) {
      r = errno ? -1 : 0;
      break;
    }
    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
      continue;
    if ((r = rp_rm_at (fd, de->d_name)) == -1)
      break;
  }
  int saved = errno;
  closedir (d);
  if (r == -1) {
    errno = saved;
    return -1;
  }
  if (unlinkat (dirfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
    return -1;
  return 0;
}

int
rp_rm_rf (const char *path)
{
  return rp_rm_at (AT_FDCWD, path);
}

bool
rp_same_file (const char *a, const char *b)
{
  char ra[PATH_MAX], rb[PATH_MAX];
  if (!realpath (a, ra) || !realpath (b, rb))
    return strcmp (a, b) == 0;
  return strcmp (ra, rb) == 0;
}

char *
rp_relpath (const char *target, const char *from)
{
  /* Length of the common leading directories, at a '/' boundary. */
  size_t common = 0;
  for (size_t i = 0; target[i] && target[i] == from[i]; i++)
    if (target[i] == '/')
      common = i;
  size_t tl = strlen (target), fl = strlen (from);
  if (fl <= tl && !strncmp (target, from, fl)
      && (target[fl] == '/' || fl == 1))
    common = fl == 1 ? 0 : fl;
  size_t ups = 0;
  for (const char *p = from + common; *p; p++)
    if (*p == '/')
      ups++;
  if (fl == 1)
    ups = 0;
  /* from + common is either "" (FROM is a prefix) or "/x/y" (ups = 2). */
  size_t n = ups * 3 + strlen (target + common) + 1;
  char *r = rp_calloc (1, n);
  for (size_t i = 0; i < ups; i++)
    strcat (r, "../");
  strcat (r, target + common + 1);
  return r;
}
