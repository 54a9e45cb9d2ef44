/* The qemu-nbd that writes an export's image (target.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libnbd.h>

#include "internal.h"
#include "proc.h"
#include "target.h"

/* Set once a qemu-nbd could not use io_uring and one without it could. */
static atomic_bool no_uring;

static struct nbd_handle *
connect_sock (const char *sock, char **err)
{
  struct nbd_handle *h = nbd_create ();
  if (h && nbd_connect_unix (h, sock) != -1)
    return h;
  *err = rp_strdup (nbd_get_error () ?: "cannot create an NBD handle");
  nbd_close (h);
  return NULL;
}

struct nbd_handle *
rp_target_connect (const struct rp_target *t, char **err)
{
  return connect_sock (t->sock, err);
}

/* qemu-nbd serving PATH on T's socket, started by socket activation on a
 * socket we bound.  backing=null: the target's backing file (the base's
 * export) is only named, never opened or read.  cache=unsafe: a flush and
 * the close write qcow2's metadata to the page cache but do not fsync; the
 * export's seal (digest.c) makes the image durable while it hashes it. */
static int
spawn (struct rp_target *t, const char *path, const char *log, int conns,
       bool uring, char **err)
{
  json_t *spec = json_pack ("{s:s, s:n, s:{s:s, s:s}}", "driver", "qcow2",
                            "backing", "file", "driver", "file",
                            "filename", path);
  char *js = json_dumps (spec, JSON_COMPACT);
  json_decref (spec);
  CLEANUP_FREE char *img = rp_asprintf ("json:%s", js);
  free (js);
  CLEANUP_FREE char *shared = rp_asprintf ("--shared=%d", conns);
  char *argv[] = { "qemu-nbd", shared, "--discard=unmap", "--cache=unsafe",
                   uring ? "--aio=io_uring" : "--aio=threads", img, NULL };
  int lfd = rp_unix_listen (t->sock);
  if (lfd < 0) {
    *err = rp_asprintf ("%s: %s", t->sock, strerror (errno));
    return -1;
  }
  t->pid = rp_proc_spawn (argv, NULL, 0, lfd, log);
  int e = errno;
  close (lfd);
  if (t->pid < 0) {
    *err = rp_asprintf ("cannot start qemu-nbd: %s", strerror (e));
    return -1;
  }
  /* qemu-nbd exits when its last client leaves: one connection is held
   * for the whole copy, so a worker that finishes early cannot end it
   * before a slower one has connected. */
  t->keeper = connect_sock (t->sock, err);
  if (t->keeper)
    return 0;
  /* libnbd only saw the connection drop: why is in qemu-nbd's log. */
  char *why = *err;
  *err = rp_asprintf ("qemu-nbd did not serve the image (its messages are "
                      "in %s): %s", log, why);
  free (why);
  return -1;
}

int
rp_target_start (struct rp_target *t, const char *path, const char *run_dir,
                 int conns, char **err)
{
  static atomic_uint counter;
  t->pid = -1;
  t->keeper = NULL;
  t->sock = rp_asprintf ("%s/copy-%d-%u.sock", run_dir, (int) getpid (),
                         atomic_fetch_add (&counter, 1));
  CLEANUP_FREE char *log = rp_asprintf ("%s/qemu-nbd.log", run_dir);
  bool uring = !atomic_load (&no_uring);
  if (spawn (t, path, log, conns, uring, err) == 0)
    return 0;
  if (!uring || t->pid < 0)
    return EIO;
  /* Perhaps io_uring: once more without it. */
  rp_proc_stop (t->pid, 3000);
  char *first = *err;
  *err = NULL;
  int r = spawn (t, path, log, conns, false, err) == 0 ? 0 : EIO;
  if (r == 0 && !atomic_exchange (&no_uring, true))
    fprintf (stderr, "rpfs: qemu-nbd could not write with io_uring (%s); "
             "exports write with its thread pool from now on\n", first);
  free (first);
  return r;
}

int
rp_target_stop (struct rp_target *t)
{
  int r = 0;
  if (t->keeper) {
    nbd_shutdown (t->keeper, 0);
    nbd_close (t->keeper);
    t->keeper = NULL;
  }
  if (t->pid > 0 && rp_proc_stop (t->pid, 3000) > 1)
    r = -1;
  t->pid = -1;
  if (t->sock)
    unlink (t->sock);
  free (t->sock);
  t->sock = NULL;
  return r;
}
