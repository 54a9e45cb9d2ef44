/* rpfs FUSE frontend: raise the mount's readahead.
 *
 * Point-in-time disks are read through the page cache; a FUSE mount starts
 * with 128 KiB of readahead and the daemon can only lower it at INIT.  The
 * kernel's own knob is /sys/class/bdi/<major>:<minor>/read_ahead_kb; the
 * mount's device number comes from /proc/self/mountinfo, which needs no
 * request to our own (not yet serving) mount.  Best effort: a non-root rpfs
 * keeps the default. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs.h"

#define READAHEAD_KB "1024"

static void
raise_readahead (const char *mountpoint)
{
  FILE *f = fopen ("/proc/self/mountinfo", "re");
  char line[4096], dev[64] = "";
  if (f == NULL)
    return;
  /* "36 35 0:52 / /mnt/point rw,... - fuse.rpfs rpfs rw,..."; the last
   * matching line is the newest mount on that point. */
  while (fgets (line, sizeof line, f)) {
    char d[64], root[1024], mnt[1024];
    if (sscanf (line, "%*d %*d %63s %1023s %1023s", d, root, mnt) == 3
        && strcmp (mnt, mountpoint) == 0 && strstr (line, " fuse.rpfs "))
      snprintf (dev, sizeof dev, "%s", d);
  }
  fclose (f);
  if (!*dev)
    return;
  char path[128];
  snprintf (path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
  f = fopen (path, "we");
  if (f == NULL)
    return;
  fputs (READAHEAD_KB, f);
  fclose (f);
}

static void *
later (void *arg)
{
  /* The INIT reply is written right after the init callback returns. */
  struct timespec ts = { 0, 200 * 1000 * 1000 };
  nanosleep (&ts, NULL);
  raise_readahead (arg);
  free (arg);
  return NULL;
}

void
fs_raise_readahead_soon (const char *mountpoint)
{
  pthread_t t;
  char *m = strdup (mountpoint);
  if (m == NULL)
    return;
  if (pthread_create (&t, NULL, later, m) != 0) {
    free (m);
    return;
  }
  pthread_detach (t);
}
