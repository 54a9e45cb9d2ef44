/* User and group ids from names (ids.h).  The reentrant NSS calls, since
 * definitions may be parsed while other threads run. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include "ids.h"

bool
rp_id_parse (const char *s, unsigned long *id)
{
  char *end;

  if (s[0] < '0' || s[0] > '9')
    return false;
  errno = 0;
  *id = strtoul (s, &end, 10);
  return *end == '\0' && errno == 0 && *id < (unsigned long) (uid_t) -1;
}

/* Room for one passwd or group entry: what sysconf suggests, grown on
 * ERANGE (large groups list every member). */
static long
initial_size (int which)
{
  long n = sysconf (which);
  return n > 0 ? n : 16384;
}

/* One entry of NAME: getgrnam_r (GROUP) or getpwnam_r, with a buffer
 * that grows while the answer does not fit.  0 found, 1 no such name, -1
 * error. */
static int
lookup (const char *name, bool group, unsigned *id)
{
  long size = initial_size (group ? _SC_GETGR_R_SIZE_MAX
                            : _SC_GETPW_R_SIZE_MAX);
  bool found = false;
  int r;

  for (;;) {
    char *buf = malloc (size);
    if (!buf)
      return -1;
    if (group) {
      struct group gr, *res = NULL;
      r = getgrnam_r (name, &gr, buf, size, &res);
      if (r == 0 && res) {
        *id = gr.gr_gid;
        found = true;
      }
    }
    else {
      struct passwd pw, *res = NULL;
      r = getpwnam_r (name, &pw, buf, size, &res);
      if (r == 0 && res) {
        *id = pw.pw_uid;
        found = true;
      }
    }
    free (buf);
    if (r != ERANGE || size >= (1L << 24))
      break;
    size *= 2;
  }
  if (r != 0)
    return -1;
  return found ? 0 : 1;
}

int
rp_user_id (const char *name, uid_t *id)
{
  unsigned v = 0;
  int r = lookup (name, false, &v);
  if (r == 0)
    *id = (uid_t) v;
  return r;
}

int
rp_group_id (const char *name, gid_t *id)
{
  unsigned v = 0;
  int r = lookup (name, true, &v);
  if (r == 0)
    *id = (gid_t) v;
  return r;
}
