/* rpfs FUSE frontend: path parser (see path.h).  Classification is purely
 * structural: depth plus the fixed directory names, and the method name
 * lists the caller passes in. */
#include <stddef.h>
#include <string.h>

#include "path.h"

/* The deepest node is /<sys>/referencepoints/<rp>/ExportSettingData/<name>. */
#define MAX_DEPTH 5

static bool
in_list (const char *const *list, const char *name)
{
  if (list == NULL)
    return false;
  for (; *list; list++)
    if (strcmp (*list, name) == 0)
      return true;
  return false;
}

/* Split buf in place at '/'.  Returns the number of components, or -1 for
 * an empty, "." or ".." component or more than MAX_DEPTH of them. */
static int
split (char *buf, char *comp[MAX_DEPTH])
{
  int n = 0;
  char *s = buf;

  if (*s == '\0')
    return 0;
  for (;;) {
    char *slash = strchr (s, '/');

    if (slash)
      *slash = '\0';
    if (*s == '\0' || strcmp (s, ".") == 0 || strcmp (s, "..") == 0)
      return -1;
    if (n == MAX_DEPTH)
      return -1;
    comp[n++] = s;
    if (!slash)
      return n;
    s = slash + 1;
  }
}

static enum fs_kind
parse_job (char *comp[], int n, const struct fs_names *names,
           struct fs_path *p)
{
  if (n == 1)
    return FS_JOBS;
  p->job = comp[1];
  if (n == 2)
    return FS_JOB;
  if (n > 3)
    return FS_NONE;
  p->name = comp[2];
  return in_list (names ? names->job_methods : NULL, p->name)
    ? FS_JOB_METHOD : FS_JOB_PROP;
}

/* comp[0] is the system, comp[1] "referencepoints", comp[2] the rp. */
static enum fs_kind
parse_rp (char *comp[], int n, const struct fs_names *names,
          struct fs_path *p)
{
  const char *c;

  p->rp = comp[2];
  if (n == 3)
    return FS_RP;
  c = comp[3];
  if (strcmp (c, FS_SETTINGS_DIR) == 0) {
    if (n == 4)
      return FS_RP_SETTINGS_DIR;
    p->name = comp[4];
    return FS_RP_SETTING;
  }
  if (strcmp (c, FS_DISKS_DIR) == 0) {
    if (n == 4)
      return FS_RP_DISKS;
    p->name = comp[4];
    return FS_RP_DISK;
  }
  if (n > 4)
    return FS_NONE;
  if (strcmp (c, FS_JOBLINK) == 0)
    return FS_RP_JOBLINK;
  p->name = c;
  if (in_list (names ? names->rp_streams : NULL, c))
    return FS_RP_STREAM;
  return in_list (names ? names->rp_methods : NULL, c)
    ? FS_RP_METHOD : FS_RP_PROP;
}

static enum fs_kind
classify (char *comp[], int n, const struct fs_names *names,
          struct fs_path *p)
{
  const char *c;

  if (n == 0)
    return FS_ROOT;
  /* "jobs" is reserved at the top: the core refuses a system of that name. */
  if (strcmp (comp[0], FS_JOBS_DIR) == 0)
    return parse_job (comp, n, names, p);

  p->sys = comp[0];
  if (n == 1)
    return FS_SYSTEM;
  c = comp[1];
  if (strcmp (c, FS_DISKS_DIR) == 0) {
    if (n == 2)
      return FS_SYS_DISKS;
    if (n > 3)
      return FS_NONE;
    p->name = comp[2];
    return FS_SYS_DISK;
  }
  if (strcmp (c, FS_RPS_DIR) == 0) {
    if (n == 2)
      return FS_RPS;
    return parse_rp (comp, n, names, p);
  }
  if (n > 2)
    return FS_NONE;
  p->name = c;
  return in_list (names ? names->sys_methods : NULL, c)
    ? FS_SYS_METHOD : FS_SYS_PROP;
}

enum fs_kind
fs_path_parse (const char *path, const struct fs_names *names,
               struct fs_path *p)
{
  char *comp[MAX_DEPTH];
  size_t len;
  int n;

  p->kind = FS_NONE;
  p->sys = p->rp = p->job = p->name = NULL;
  p->buf[0] = '\0';
  if (path == NULL)
    return FS_NONE;
  if (*path == '/')
    path++;
  len = strlen (path);
  if (len >= sizeof p->buf)
    return FS_NONE;
  memcpy (p->buf, path, len + 1);

  n = split (p->buf, comp);
  if (n >= 0)
    p->kind = classify (comp, n, names, p);
  if (p->kind == FS_NONE)
    p->sys = p->rp = p->job = p->name = NULL;
  return p->kind;
}

bool
fs_kind_is_dir (enum fs_kind kind)
{
  switch (kind) {
  case FS_ROOT: case FS_SYSTEM: case FS_SYS_DISKS: case FS_RPS: case FS_RP:
  case FS_RP_SETTINGS_DIR: case FS_RP_DISKS: case FS_JOBS: case FS_JOB:
    return true;
  default:
    return false;
  }
}

bool
fs_kind_is_value (enum fs_kind kind)
{
  switch (kind) {
  case FS_SYS_PROP: case FS_SYS_METHOD: case FS_RP_PROP: case FS_RP_SETTING:
  case FS_RP_METHOD: case FS_JOB_PROP: case FS_JOB_METHOD:
    return true;
  default:
    return false;
  }
}

const char *
fs_kind_name (enum fs_kind kind)
{
  static const char *const names[] = {
    [FS_NONE] = "NONE", [FS_ROOT] = "ROOT", [FS_SYSTEM] = "SYSTEM",
    [FS_SYS_PROP] = "SYS_PROP", [FS_SYS_METHOD] = "SYS_METHOD",
    [FS_SYS_DISKS] = "SYS_DISKS", [FS_SYS_DISK] = "SYS_DISK",
    [FS_RPS] = "RPS", [FS_RP] = "RP", [FS_RP_PROP] = "RP_PROP",
    [FS_RP_SETTINGS_DIR] = "RP_SETTINGS_DIR", [FS_RP_SETTING] = "RP_SETTING",
    [FS_RP_METHOD] = "RP_METHOD", [FS_RP_DISKS] = "RP_DISKS",
    [FS_RP_DISK] = "RP_DISK", [FS_RP_JOBLINK] = "RP_JOBLINK",
    [FS_RP_STREAM] = "RP_STREAM",
    [FS_JOBS] = "JOBS", [FS_JOB] = "JOB", [FS_JOB_PROP] = "JOB_PROP",
    [FS_JOB_METHOD] = "JOB_METHOD",
  };

  if ((unsigned) kind < sizeof names / sizeof names[0] && names[kind])
    return names[kind];
  return "?";
}
