/* race: what a hostile local user runs against rpfs while it works in a
 * directory the user owns (tests/test-caller-paths.sh).
 *
 *   race exchange DIR A B SECONDS
 *       swap the entries A and B of DIR (renameat2 RENAME_EXCHANGE) as fast
 *       as possible, e.g. a real directory and a symlink to /etc
 *   race hijack DIR PREFIX TARGET SECONDS
 *       whenever an entry of DIR starts with PREFIX (rpfs's hidden assembly
 *       directory), move it aside and put a symlink to TARGET in its place
 *
 * Prints how many swaps it made; exits 0. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
exchange (int dfd, const char *a, const char *b, double secs)
{
  long n = 0;
  for (double end = now () + secs; now () < end;)
    if (renameat2 (dfd, a, dfd, b, RENAME_EXCHANGE) == 0)
      n++;
  return n;
}

static long
hijack (int dfd, const char *prefix, const char *target, double secs)
{
  long n = 0;
  size_t plen = strlen (prefix);
  for (double end = now () + secs; now () < end;) {
    int fd = dup (dfd);
    DIR *d = fdopendir (fd);
    struct dirent *e;
    lseek (fd, 0, SEEK_SET);
    while (d && (e = readdir (d)) != NULL) {
      if (strncmp (e->d_name, prefix, plen) || e->d_type != DT_DIR)
        continue;
      char moved[512];
      snprintf (moved, sizeof moved, "moved.%ld", n);
      if (renameat (dfd, e->d_name, dfd, moved) == 0
          && symlinkat (target, dfd, e->d_name) == 0)
        n++;
    }
    if (d)
      closedir (d);
    usleep (200);
  }
  return n;
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    goto usage;
  int dfd = argc > 2 ? open (argv[2], O_RDONLY | O_DIRECTORY) : -1;
  if (argc > 2 && dfd < 0) {
    perror (argv[2]);
    return 2;
  }
  long n;
  if (!strcmp (argv[1], "exchange") && argc == 6)
    n = exchange (dfd, argv[3], argv[4], atof (argv[5]));
  else if (!strcmp (argv[1], "hijack") && argc == 6)
    n = hijack (dfd, argv[3], argv[4], atof (argv[5]));
  else
    goto usage;
  printf ("%ld\n", n);
  return 0;
 usage:
  fprintf (stderr, "usage: race exchange DIR A B SECONDS | "
           "race hijack DIR PREFIX TARGET SECONDS\n");
  return 2;
}
