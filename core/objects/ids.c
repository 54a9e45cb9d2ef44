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

int
rp_user_id (const char *name, uid_t *id)
{
  struct passwd pw, *res = NULL;
  long size = initial_size (_SC_GETPW_R_SIZE_MAX);
  int r;

  for (;;) {
    char *buf = malloc (size);
    if (!buf)
      return -1;
    r = getpwnam_r (name, &pw, buf, size, &res);
    if (r == 0 && res)
      *id = pw.pw_uid;
    free (buf);
    if (r != ERANGE || size >= (1L << 24))
      break;
    size *= 2;
  }
  if (r != 0)
    return -1;
  return res ? 0 : 1;
}

int
rp_group_id (const char *name, gid_t *id)
{
  struct group gr, *res = NULL;
  long size = initial_size (_SC_GETGR_R_SIZE_MAX);
  int r;

  for (;;) {
    char *buf = malloc (size);
    if (!buf)
      return -1;
    r = getgrnam_r (name, &gr, buf, size, &res);
    if (r == 0 && res)
      *id = gr.gr_gid;
    free (buf);
    if (r != ERANGE || size >= (1L << 24))
      break;
    size *= 2;
  }
  if (r != 0)
    return -1;
  return res ? 0 : 1;
}
