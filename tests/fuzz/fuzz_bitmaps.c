/* libFuzzer target: QEMU's reply to query-named-block-nodes, from which
 * core/backends/bitmaps.c reads the dirty bitmaps of the disks (names, sequence
 * numbers, flags, counts).  The input is the reply line(s) after a valid
 * greeting and qmp_capabilities reply. */
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAX_STREAM (100 * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char hello[] =
    "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"
    "{\"return\": {}, \"id\": 1}\r\n";
  static bool init;
  int sv[2];

  if (!init) {
    signal (SIGPIPE, SIG_IGN);
    init = true;
  }
  if (size > MAX_STREAM)
    return 0;
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    abort ();
  int sndbuf = 4 * MAX_STREAM;
  setsockopt (sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (write (sv[1], hello, sizeof hello - 1) != sizeof hello - 1
      || (size && write (sv[1], data, size) != (ssize_t) size))
    abort ();
  shutdown (sv[1], SHUT_WR);

  char *err = NULL;
  struct rp_qmp *q = rp_qmp_open (sv[0], 1000, &err);
  if (!q)
    abort ();                   /* the greeting is fixed and valid */
  static const char *const nodes[] = { "disk-sda", "disk-sdb" };
  struct rp_bitmaps bm[2];
  if (rp_bitmaps_query_nodes (q, nodes, 2, bm, &err) == 0) {
    for (int k = 0; k < 2; k++) {
      for (size_t i = 0; i < bm[k].n; i++) {
        const struct rp_bitmap *b = &bm[k].v[i];
        if (!b->name || (b->seq && rp_bitmaps_find (&bm[k], b->name) == NULL))
          abort ();
        if (i && bm[k].v[i - 1].seq > b->seq)
          abort ();             /* sorted by sequence */
      }
      rp_bitmaps_free (&bm[k]);
    }
  }
  else if (!err)
    abort ();
  free (err);
  rp_qmp_close (q);
  close (sv[1]);
  return 0;
}
