/* QMP client against a real qemu-storage-daemon (spawned the way rpfs does:
 * QMP on a socketpair, NBD on a socket we bound), plus a fake QMP peer in a
 * thread for what QEMU will not do on demand: split and batched messages,
 * stale replies, silence. */
#include <check.h>
#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc.h"
#include "qmp.h"
#include "runner.h"

static char topdir[] = "/tmp/rpfs-check-qmp-XXXXXX";

/* Events seen, in order. */
struct evlog
{
  int n;
  char name[16][64];
};

static void
on_event (void *opaque, const char *event, json_t *data)
{
  struct evlog *l = opaque;

  ck_assert_ptr_nonnull (data);
  if (l->n < 16)
    snprintf (l->name[l->n++], 64, "%s", event);
}

static bool
seen (const struct evlog *l, const char *name)
{
  for (int i = 0; i < l->n; i++)
    if (strcmp (l->name[i], name) == 0)
      return true;
  return false;
}

struct qsd
{
  char dir[128], img[160], nbd[160], log[160];
  pid_t pid;
  struct rp_qmp *q;
  struct evlog ev;
};

static void
qsd_start (struct qsd *s)
{
  char chardev[64], nbdsrv[64], *err = NULL;
  int sv[2], lfd, keep[2];

  memset (s, 0, sizeof *s);
  snprintf (s->dir, sizeof s->dir, "%s/t-XXXXXX", topdir);
  ck_assert_ptr_nonnull (mkdtemp (s->dir));
  snprintf (s->img, sizeof s->img, "%s/a.qcow2", s->dir);
  snprintf (s->nbd, sizeof s->nbd, "%s/nbd.sock", s->dir);
  snprintf (s->log, sizeof s->log, "%s/qsd.log", s->dir);
  {
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", s->img,
                     "16M", NULL };
    ck_assert_int_eq (rp_proc_run (argv, NULL, NULL, NULL), 0);
  }
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    0);
  lfd = rp_unix_listen (s->nbd);
  ck_assert_int_ge (lfd, 0);
  snprintf (chardev, sizeof chardev, "socket,id=m,fd=%d", sv[1]);
  snprintf (nbdsrv, sizeof nbdsrv, "addr.type=fd,addr.str=%d", lfd);
  {
    char *argv[] = { "qemu-storage-daemon", "--chardev", chardev,
                     "--monitor", "chardev=m", "--nbd-server", nbdsrv, NULL };
    keep[0] = sv[1];
    keep[1] = lfd;
    s->pid = rp_proc_spawn (argv, keep, 2, -1, s->log);
  }
  ck_assert_int_gt (s->pid, 0);
  close (sv[1]);
  close (lfd);
  s->q = rp_qmp_open (sv[0], 10000, &err);
  ck_assert_msg (s->q != NULL, "rp_qmp_open: %s", err);
  rp_qmp_set_event (s->q, on_event, &s->ev);
}

static void
qsd_stop (struct qsd *s)
{
  rp_qmp_close (s->q);
  rp_proc_stop (s->pid, 0);
}

static void
add_disk (struct qsd *s)
{
  char *err = NULL;
  json_t *a = json_pack ("{s:s, s:s, s:{s:s, s:s}}", "driver", "qcow2",
                         "node-name", "d0", "file", "driver", "file",
                         "filename", s->img);

  ck_assert_msg (rp_qmp_cmd (s->q, "blockdev-add", a, NULL, &err) == 0,
                 "blockdev-add: %s", err);
}

static json_t *
bitmap_action (const char *name)
{
  return rp_qmp_action ("block-dirty-bitmap-add",
                        json_pack ("{s:s, s:s, s:b}", "node", "d0",
                                   "name", name, "persistent", 1));
}

/* Is bitmap NAME on node d0 (and persistent)? */
static bool
has_bitmap (struct qsd *s, const char *name)
{
  json_t *ret = NULL, *node, *bm;
  size_t i, j;
  char *err = NULL;
  bool found = false;

  ck_assert_msg (rp_qmp_cmd (s->q, "query-named-block-nodes", NULL, &ret,
                             &err) == 0, "query: %s", err);
  json_array_foreach (ret, i, node)
    {
      if (strcmp (json_string_value (json_object_get (node, "node-name")),
                  "d0") != 0)
        continue;
      json_array_foreach (json_object_get (node, "dirty-bitmaps"), j, bm)
        if (strcmp (json_string_value (json_object_get (bm, "name")),
                    name) == 0)
          found = json_is_true (json_object_get (bm, "persistent"));
    }
  json_decref (ret);
  return found;
}

START_TEST (test_version)
{
  struct qsd s;
  json_t *ret = NULL;
  char *err = NULL;

  qsd_start (&s);
  ck_assert_int_eq (rp_qmp_cmd (s.q, "query-version", NULL, &ret, &err), 0);
  ck_assert_int_ge (json_integer_value (json_object_get
                                        (json_object_get (ret, "qemu"),
                                         "major")), 7);
  json_decref (ret);
  ck_assert (rp_qmp_alive (s.q));
  qsd_stop (&s);
}
END_TEST

START_TEST (test_bad_command)
{
  struct qsd s;
  json_t *ret = (json_t *) 1;
  char *err = NULL;

  qsd_start (&s);
  ck_assert_int_eq (rp_qmp_cmd (s.q, "no-such-command", NULL, &ret, &err),
                    -1);
  ck_assert_ptr_null (ret);
  ck_assert_msg (strstr (err, "no-such-command") != NULL, "err: %s", err);
  free (err);
  /* A QMP error leaves the connection usable. */
  ck_assert_int_eq (rp_qmp_cmd (s.q, "query-version", NULL, NULL, &err), 0);
  qsd_stop (&s);
}
END_TEST

/* blockdev-add, bitmap by transaction, atomicity of a failing transaction,
 * then a clean quit writes the persistent bitmap into the image. */
START_TEST (test_bitmap_quit)
{
  struct qsd s;
  char *err = NULL, *out = NULL;
  json_t *info, *bms, *ret = NULL;

  qsd_start (&s);
  add_disk (&s);
  ck_assert_msg (rp_qmp_transaction (s.q, json_pack ("[o]",
                                                     bitmap_action ("b0")),
                                     &err) == 0, "transaction: %s", err);
  ck_assert (has_bitmap (&s, "b0"));
  /* b1 is valid but b0 already exists: nothing may be applied. */
  ck_assert_int_eq (rp_qmp_transaction (s.q, json_pack ("[o,o]",
                                                        bitmap_action ("b1"),
                                                        bitmap_action ("b0")),
                                        &err), -1);
  ck_assert_msg (strstr (err, "b0") != NULL, "err: %s", err);
  free (err);
  ck_assert (!has_bitmap (&s, "b1"));

  ck_assert_int_eq (rp_qmp_cmd (s.q, "quit", NULL, &ret, &err), 0);
  json_decref (ret);
  ck_assert_int_eq (rp_proc_stop (s.pid, 5000), 0);
  ck_assert_int_eq (rp_qmp_cmd (s.q, "query-version", NULL, NULL, &err), -2);
  free (err);
  ck_assert (!rp_qmp_alive (s.q));
  rp_qmp_close (s.q);
  {
    char *argv[] = { "qemu-img", "info", "--output=json", s.img, NULL };
    ck_assert_int_eq (rp_proc_run (argv, NULL, &out, NULL), 0);
  }
  info = json_loads (out, 0, NULL);
  bms = json_object_get (json_object_get (json_object_get (info,
                                                           "format-specific"),
                                          "data"), "bitmaps");
  ck_assert_int_eq (json_array_size (bms), 1);
  ck_assert_str_eq (json_string_value (json_object_get (json_array_get (bms, 0),
                                                        "name")), "b0");
  json_decref (info);
  free (out);
}
END_TEST

static void
export (struct qsd *s, const char *id)
{
  char *err = NULL;
  json_t *a = json_pack ("{s:s, s:s, s:s, s:b}", "type", "nbd", "id", id,
                         "node-name", "d0", "writable", 0);

  ck_assert_msg (rp_qmp_cmd (s->q, "block-export-add", a, NULL, &err) == 0,
                 "block-export-add: %s", err);
}

START_TEST (test_events)
{
  struct qsd s;
  struct nbd_handle *h;
  char *err = NULL;

  qsd_start (&s);
  add_disk (&s);

  /* No client: QEMU sends the event BEFORE the command's return. */
  export (&s, "e0");
  ck_assert_int_eq (rp_qmp_cmd (s.q, "block-export-del",
                                json_pack ("{s:s}", "id", "e0"), NULL, &err),
                    0);
  ck_assert_int_eq (s.ev.n, 1);
  ck_assert_str_eq (s.ev.name[0], "BLOCK_EXPORT_DELETED");

  /* A connected client: "hard" removal, the event may come later. */
  export (&s, "e1");
  h = nbd_create ();
  ck_assert_ptr_nonnull (h);
  nbd_set_export_name (h, "d0");
  ck_assert_msg (nbd_connect_unix (h, s.nbd) == 0, "%s", nbd_get_error ());
  ck_assert_int_eq (nbd_get_size (h), 16 << 20);
  ck_assert_int_eq (rp_qmp_cmd (s.q, "block-export-del",
                                json_pack ("{s:s, s:s}", "id", "e1",
                                           "mode", "hard"), NULL, &err), 0);
  while (s.ev.n < 2)
    ck_assert_int_gt (rp_qmp_poll_events (s.q, 5000, &err), 0);
  ck_assert_str_eq (s.ev.name[1], "BLOCK_EXPORT_DELETED");
  nbd_close (h);
  /* Nothing else pending. */
  ck_assert_int_eq (rp_qmp_poll_events (s.q, 0, &err), 0);

  /* qemu-storage-daemon sends no SHUTDOWN event on quit (the system
   * emulator does): the return, then the connection closes. */
  ck_assert_int_eq (rp_qmp_cmd (s.q, "quit", NULL, NULL, &err), 0);
  ck_assert_int_eq (rp_qmp_poll_events (s.q, 5000, &err), -2);
  free (err);
  ck_assert (!seen (&s.ev, "SHUTDOWN"));
  ck_assert_int_eq (rp_proc_stop (s.pid, 5000), 0);
  rp_qmp_close (s.q);
}
END_TEST

START_TEST (test_kill)
{
  struct qsd s;
  char *err = NULL;

  qsd_start (&s);
  ck_assert_int_eq (kill (s.pid, SIGKILL), 0);
  ck_assert_int_eq (rp_proc_stop (s.pid, 5000), 0);
  /* Visible without a command (peer hung up)... */
  ck_assert (!rp_qmp_alive (s.q));
  /* ...and a command says so. */
  ck_assert_int_eq (rp_qmp_cmd (s.q, "query-version", NULL, NULL, &err), -2);
  ck_assert_msg (strstr (err, "not answering") != NULL, "err: %s", err);
  free (err);
  ck_assert (!rp_qmp_alive (s.q));
  /* Args are still consumed (ASan would see a leak otherwise). */
  ck_assert_int_eq (rp_qmp_cmd (s.q, "query-version", json_object (), NULL,
                                &err), -2);
  ck_assert_msg (strstr (err, "connection closed") != NULL, "err: %s", err);
  free (err);
  rp_qmp_close (s.q);
}
END_TEST

/* --- a fake QMP peer ------------------------------------------------- */

struct fake
{
  int fd;
  bool greet;
  bool agent;                   /* a guest agent: no greeting, and output
                                   an earlier client left in the channel */
};

static void
put (int fd, const char *s, size_t chunk)
{
  size_t n = strlen (s);

  while (n > 0)
    {
      size_t k = n < chunk ? n : chunk;

      ck_assert_int_eq (write (fd, s, k), (ssize_t) k);
      s += k;
      n -= k;
      if (chunk < 100)
        usleep (300);           /* make the client see partial lines */
    }
}

static void *
fake_main (void *arg)
{
  struct fake *f = arg;
  char buf[65536], reply[4096], *nl;
  size_t len = 0;
  ssize_t r;

  if (f->agent)
    put (f->fd, "\xff{\"return\": 5, \"id\": 7}\n\xff{\"retu", 4096);
  else
    put (f->fd, f->greet ? "{\"QMP\": {\"version\": {}}}\r\n"
         : "{\"x\": 1}\n", 4096);
  while ((r = read (f->fd, buf + len, sizeof buf - 1 - len)) > 0)
    {
      len += r;
      while ((nl = memchr (buf, '\n', len)))
        {
          json_t *m = json_loadb (buf, nl - buf, 0, NULL), *a;
          const char *cmd = json_string_value (json_object_get (m, "execute"));
          json_int_t id = json_integer_value (json_object_get (m, "id"));
          const char *ev = "{\"event\": \"E%d\", \"data\": {}}\r\n";
          char e1[64], e2[64], *s;

          snprintf (e1, sizeof e1, ev, 1);
          snprintf (e2, sizeof e2, ev, 2);
          if (strcmp (cmd, "split") == 0 || strcmp (cmd, "batch") == 0)
            {
              /* Event, stale reply, blank line, our reply, event. */
              snprintf (reply, sizeof reply, "%s{\"return\": {\"x\": 0}, "
                        "\"id\": 999}\n\r\n{\"return\": {\"x\": 1}, "
                        "\"id\": %lld}\r\n%s", e1, (long long) id, e2);
              put (f->fd, reply, cmd[0] == 's' ? 3 : 4096);
            }
          else if (strcmp (cmd, "guest-sync-delimited") == 0)
            {
              snprintf (reply, sizeof reply, "\xff{\"return\": %lld, "
                        "\"id\": %lld}\n", (long long) json_integer_value (
                          json_object_get (json_object_get (m, "arguments"),
                                           "id")), (long long) id);
              put (f->fd, reply, 4096);
            }
          else if (strcmp (cmd, "echo") == 0)
            {
              a = json_pack ("{s:O, s:I}", "return",
                             json_object_get (m, "arguments"), "id", id);
              s = json_dumps (a, JSON_COMPACT);
              snprintf (reply, sizeof reply, "%s\n", s);
              put (f->fd, reply, 4096);
              free (s);
              json_decref (a);
            }
          else if (strcmp (cmd, "hang") != 0)
            {
              snprintf (reply, sizeof reply, "{\"return\": {}, \"id\": %lld}\n",
                        (long long) id);
              put (f->fd, reply, 4096);
            }
          json_decref (m);
          len -= nl + 1 - buf;
          memmove (buf, nl + 1, len);
        }
    }
  close (f->fd);
  return NULL;
}

static struct rp_qmp *
fake_open (struct fake *f, pthread_t *t, bool greet, int timeout_ms,
           char **err)
{
  int sv[2];

  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    0);
  f->fd = sv[1];
  f->greet = greet;
  f->agent = false;
  ck_assert_int_eq (pthread_create (t, NULL, fake_main, f), 0);
  return rp_qmp_open (sv[0], timeout_ms, err);
}

START_TEST (test_fake_framing)
{
  struct fake f;
  pthread_t t;
  struct evlog ev = { 0 };
  struct rp_qmp *q;
  json_t *ret = NULL;
  char *err = NULL;

  q = fake_open (&f, &t, true, 5000, &err);
  ck_assert_ptr_nonnull (q);
  rp_qmp_set_event (q, on_event, &ev);
  /* Byte dribbles: the stale id-999 reply must be skipped, E2 (after our
   * reply, possibly in the same read) must stay buffered for later. */
  for (int i = 0; i < 2; i++)
    {
      ck_assert_int_eq (rp_qmp_cmd (q, i ? "batch" : "split", NULL, &ret,
                                    &err), 0);
      ck_assert_int_eq (json_integer_value (json_object_get (ret, "x")), 1);
      json_decref (ret);
      ck_assert_int_eq (ev.n, 2 * i + 1);
      ck_assert_str_eq (ev.name[2 * i], "E1");
      ck_assert_int_eq (rp_qmp_poll_events (q, 2000, &err), 1);
      ck_assert_str_eq (ev.name[2 * i + 1], "E2");
    }
  ck_assert (rp_qmp_alive (q));
  rp_qmp_close (q);
  pthread_join (t, NULL);
}
END_TEST

struct hammer
{
  struct rp_qmp *q;
  int t;
};

static void *
hammer_main (void *arg)
{
  struct hammer *h = arg;

  for (int k = 0; k < 200; k++)
    {
      json_t *ret = NULL;
      char *err = NULL;

      ck_assert_int_eq (rp_qmp_cmd (h->q, "echo",
                                    json_pack ("{s:i, s:i}", "t", h->t,
                                               "k", k), &ret, &err), 0);
      ck_assert_int_eq (json_integer_value (json_object_get (ret, "t")),
                        h->t);
      ck_assert_int_eq (json_integer_value (json_object_get (ret, "k")), k);
      json_decref (ret);
    }
  return NULL;
}

START_TEST (test_fake_threads)
{
  struct fake f;
  pthread_t t, th[4];
  struct hammer h[4];
  struct rp_qmp *q;
  char *err = NULL;

  q = fake_open (&f, &t, true, 5000, &err);
  ck_assert_ptr_nonnull (q);
  for (int i = 0; i < 4; i++)
    {
      h[i] = (struct hammer) { q, i };
      ck_assert_int_eq (pthread_create (&th[i], NULL, hammer_main, &h[i]), 0);
    }
  for (int i = 0; i < 4; i++)
    pthread_join (th[i], NULL);
  rp_qmp_close (q);
  pthread_join (t, NULL);
}
END_TEST

START_TEST (test_fake_timeout)
{
  struct fake f;
  pthread_t t;
  struct rp_qmp *q;
  char *err = NULL;

  q = fake_open (&f, &t, true, 300, &err);
  ck_assert_ptr_nonnull (q);
  /* No reply in time fails that command only (-3): the connection stays
   * usable, and the next command gets its own reply. */
  ck_assert_int_eq (rp_qmp_cmd (q, "hang", NULL, NULL, &err), -3);
  ck_assert_msg (strstr (err, "hang within 300 ms") != NULL, "err: %s", err);
  ck_assert_msg (strstr (err, "not answering") != NULL, "err: %s", err);
  free (err);
  err = NULL;
  ck_assert (rp_qmp_alive (q));
  ck_assert_int_eq (rp_qmp_cmd (q, "ping", NULL, NULL, &err), 0);
  free (err);
  rp_qmp_close (q);
  pthread_join (t, NULL);
}
END_TEST

START_TEST (test_fake_no_greeting)
{
  struct fake f;
  pthread_t t;
  char *err = NULL;

  ck_assert_ptr_null (fake_open (&f, &t, false, 2000, &err));
  ck_assert_msg (strstr (err, "greeting") != NULL, "err: %s", err);
  free (err);
  pthread_join (t, NULL);       /* open closed our end on failure */
}
END_TEST

/* The agent's channel may hold a stale reply and a partial line from an
 * earlier client: opening syncs past them, then commands work. */
START_TEST (test_fake_agent)
{
  struct fake f = { .agent = true };
  pthread_t t;
  int sv[2];
  char *err = NULL;
  json_t *ret = NULL;

  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    0);
  f.fd = sv[1];
  ck_assert_int_eq (pthread_create (&t, NULL, fake_main, &f), 0);
  struct rp_qmp *q = rp_qmp_open_agent (sv[0], 2000, &err);
  ck_assert_msg (q != NULL, "err: %s", err);
  ck_assert_int_eq (rp_qmp_cmd (q, "echo", json_pack ("{s:i}", "k", 42),
                                &ret, &err), 0);
  ck_assert_int_eq (json_integer_value (json_object_get (ret, "k")), 42);
  json_decref (ret);
  ck_assert_int_eq (rp_qmp_cmd (q, "hang", NULL, NULL, &err), -3);
  ck_assert_msg (strstr (err, "the guest agent is not answering (no reply to "
                         "hang within 2000 ms)") != NULL, "err: %s", err);
  free (err);
  rp_qmp_close (q);
  pthread_join (t, NULL);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("qmp");
  TCase *tc = tcase_create ("qmp");
  if (!mkdtemp (topdir))
    {
      perror ("mkdtemp");
      return 1;
    }
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_version);
  tcase_add_test (tc, test_fake_agent);
  tcase_add_test (tc, test_bad_command);
  tcase_add_test (tc, test_bitmap_quit);
  tcase_add_test (tc, test_events);
  tcase_add_test (tc, test_kill);
  tcase_add_test (tc, test_fake_framing);
  tcase_add_test (tc, test_fake_threads);
  tcase_add_test (tc, test_fake_timeout);
  tcase_add_test (tc, test_fake_no_greeting);
  suite_add_tcase (s, tc);
  int failed = rp_check_run (s);
  {
    char *argv[] = { "rm", "-rf", topdir, NULL };
    rp_proc_run (argv, NULL, NULL, NULL);
  }
  return failed;
}
