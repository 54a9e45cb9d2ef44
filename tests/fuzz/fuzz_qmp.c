/* libFuzzer target: what QEMU or the guest agent sends on a QMP socket
 * (core/backends/qmp.c: line splitting, JSON, greeting, replies, errors, events).
 * The first byte picks QEMU (even) or the guest agent (odd); the rest is
 * the whole stream from the peer, which then closes it. */
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The peer's stream must fit in the socket buffer: we write it all first. */
#define MAX_STREAM (100 * 1024)

static unsigned events;

static void
on_event (void *opaque, const char *event, json_t *data)
{
  (void) opaque;
  if (!event || !json_is_object (data))
    abort ();
  events++;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static bool init;
  int sv[2];

  if (!init) {
    signal (SIGPIPE, SIG_IGN);
    init = true;
  }
  if (size < 1 || size > MAX_STREAM)
    return 0;
  bool agent = data[0] & 1;
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    abort ();
  int sndbuf = 4 * MAX_STREAM;
  setsockopt (sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (size > 1 && write (sv[1], data + 1, size - 1) != (ssize_t) (size - 1))
    abort ();
  shutdown (sv[1], SHUT_WR);

  char *err = NULL;
  struct rp_qmp *q = agent ? rp_qmp_open_agent (sv[0], 1000, &err)
                           : rp_qmp_open (sv[0], 1000, &err);
  if (q) {
    json_t *ret = NULL;
    rp_qmp_set_event (q, on_event, NULL);
    if (rp_qmp_cmd (q, "query-status", NULL, &ret, &err) == 0)
      json_decref (ret);
    free (err);
    err = NULL;
    if (rp_qmp_cmd (q, "block-dirty-bitmap-add",
                    json_pack ("{s:s, s:s}", "node", "n0", "name", "b"),
                    NULL, &err) != 0) {
      free (err);
      err = NULL;
    }
    rp_qmp_poll_events (q, 0, &err);
    rp_qmp_alive (q);
    rp_qmp_close (q);
  }
  else if (!err)
    abort ();
  free (err);
  close (sv[1]);
  return 0;
}
