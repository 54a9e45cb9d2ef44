/* QMP client: newline-delimited JSON over a stream socket, parsed by jansson.
 *
 * Thread model: one mutex per connection serialises everything that touches
 * the socket, so at most one command is in flight and replies can be matched
 * simply (we still send an "id" and skip replies carrying another one, e.g.
 * a late reply after a timeout).  Asynchronous events are only read while a
 * thread holds the mutex (in rp_qmp_cmd or rp_qmp_poll_events); the event
 * callback runs in that thread WITH the mutex held, so it must not call
 * rp_qmp_cmd / rp_qmp_poll_events on the same connection (it would deadlock);
 * it should record the event and return.  rp_qmp_alive takes no lock, so a
 * monitor thread can ask while another thread waits for a reply.
 *
 * The socket is made non-blocking so that poll() bounds both directions:
 * a QEMU that stops reading cannot hang us in send() either.  Any EOF, I/O
 * error or garbage marks the connection dead for good: the stream could be
 * out of step afterwards and QEMU has no way to resync it.  A reply that
 * does not come in time is different: the command fails (-3), the
 * connection stays usable (every command carries an id, and a late reply to
 * an earlier one is skipped), and rp_qmp_timeouts counts such commands in a
 * row, so that the caller can tell a slow QEMU from a stuck one. */
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A reply bigger than this is taken as a broken peer, not buffered. */
#define QMP_MAX_LINE (64 * 1024 * 1024)

struct rp_qmp
{
  pthread_mutex_t lock;
  int fd;
  int timeout_ms;               /* <= 0: wait forever */
  atomic_bool dead;
  char *dead_msg;               /* why; set once, under lock */
  char *buf;                    /* received bytes not yet parsed */
  size_t len, cap;
  json_int_t next_id;
  atomic_int timeouts;          /* consecutive commands without a reply */
  rp_qmp_event_fn ev_fn;
  void *ev_opaque;
  const char *peer;             /* "QEMU" or "the guest agent", for messages */
  bool agent;                   /* qemu-guest-agent: no greeting, and lines
                                   that are not JSON are skipped */
};

static void
set_err (char **err, const char *fmt, ...)
{
  va_list ap;

  if (!err)
    return;
  va_start (ap, fmt);
  if (vasprintf (err, fmt, ap) < 0)
    *err = NULL;
  va_end (ap);
}

static void
mark_dead (struct rp_qmp *q, const char *fmt, ...)
{
  va_list ap;

  if (atomic_load (&q->dead))
    return;
  va_start (ap, fmt);
  if (vasprintf (&q->dead_msg, fmt, ap) < 0)
    q->dead_msg = NULL;
  va_end (ap);
  atomic_store (&q->dead, true);
}

static int
dead_err (struct rp_qmp *q, char **err)
{
  if (q->dead_msg)
    set_err (err, "%s", q->dead_msg);
  else
    set_err (err, "%s is not answering", q->peer);
  return -2;
}

static long long
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Milliseconds left until DEADLINE for poll(); -1 = no deadline. */
static int
left_ms (long long deadline)
{
  long long d;

  if (deadline < 0)
    return -1;
  d = deadline - now_ms ();
  return d < 0 ? 0 : d > 1000000 ? 1000000 : (int) d;
}

/* Take one complete line off the buffer and parse it.  1 with *MSG, 0 when
 * no complete line is buffered, -2 on garbage (connection marked dead). */
static int
take_line (struct rp_qmp *q, json_t **msg)
{
  for (;;)
    {
      char *nl = q->len ? memchr (q->buf, '\n', q->len) : NULL;
      size_t n, i;
      json_error_t jerr;

      if (!nl)
        return 0;
      n = nl - q->buf;
      i = 0;
      if (q->agent)             /* the agent's 0xff: a fresh message starts */
        for (size_t k = 0; k < n; k++)
          if ((unsigned char) q->buf[k] == 0xff)
            i = k + 1;
      for (; i < n && strchr (" \t\r", q->buf[i]); i++)
        ;
      /* QEMU ends lines with "\r\n"; jansson skips the '\r' as space. */
      *msg = i < n ? json_loadb (q->buf + i, n - i, JSON_ALLOW_NUL, &jerr)
        : NULL;
      q->len -= n + 1;
      memmove (q->buf, nl + 1, q->len);
      if (i == n)
        continue;               /* blank line */
      if ((!*msg || !json_is_object (*msg)) && q->agent)
        {
          /* What an earlier client left (a partial reply): skipped; the
           * sync's 0xff and the id check put us in step. */
          json_decref (*msg);
          continue;
        }
      if (!*msg || !json_is_object (*msg))
        {
          json_decref (*msg);
          mark_dead (q, "%s sent invalid JSON: %s", q->peer,
                     *msg ? "not an object" : jerr.text);
          return -2;
        }
      return 1;
    }
}

/* Next message, waiting until DEADLINE (-1: forever).  1 with *MSG, 0 on
 * timeout (not marked dead: the caller decides), -2 dead. */
static int
read_msg (struct rp_qmp *q, long long deadline, json_t **msg)
{
  for (;;)
    {
      struct pollfd p = { .fd = q->fd, .events = POLLIN };
      ssize_t r;
      int t;

      if (atomic_load (&q->dead))
        return -2;
      if ((t = take_line (q, msg)) != 0)
        return t;
      if (q->cap - q->len < 4096)
        {
          size_t ncap = q->cap ? q->cap * 2 : 8192;
          char *nb;

          if (ncap > QMP_MAX_LINE || !(nb = realloc (q->buf, ncap)))
            {
              mark_dead (q, "%s is not answering (reply too big)", q->peer);
              return -2;
            }
          q->buf = nb;
          q->cap = ncap;
        }
      r = recv (q->fd, q->buf + q->len, q->cap - q->len, 0);
      if (r > 0)
        {
          q->len += r;
          continue;
        }
      /* QEMU exiting with our "\n" unread makes Linux report ECONNRESET
       * (after the data it did send, e.g. the reply to "quit"). */
      if (r == 0 || errno == ECONNRESET)
        {
          mark_dead (q, "%s is not answering (connection closed)", q->peer);
          return -2;
        }
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        {
          mark_dead (q, "%s is not answering (read: %s)", q->peer, strerror (errno));
          return -2;
        }
      r = poll (&p, 1, left_ms (deadline));
      if (r == 0)
        return 0;
      if (r < 0 && errno != EINTR)
        {
          mark_dead (q, "%s is not answering (poll: %s)", q->peer, strerror (errno));
          return -2;
        }
    }
}

static int
send_all (struct rp_qmp *q, const char *s, size_t n, long long deadline)
{
  while (n > 0)
    {
      /* MSG_NOSIGNAL: a dead QEMU must give EPIPE, not kill rpfs. */
      ssize_t r = send (q->fd, s, n, MSG_NOSIGNAL);
      struct pollfd p = { .fd = q->fd, .events = POLLOUT };

      if (r >= 0)
        {
          s += r;
          n -= r;
          continue;
        }
      if (errno == EINTR)
        continue;
      if (errno == EPIPE || errno == ECONNRESET)
        {
          mark_dead (q, "%s is not answering (connection closed)", q->peer);
          return -2;
        }
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        {
          mark_dead (q, "%s is not answering (write: %s)", q->peer, strerror (errno));
          return -2;
        }
      r = poll (&p, 1, left_ms (deadline));
      if (r == 0)
        {
          mark_dead (q, "%s is not answering (not reading commands)", q->peer);
          return -2;
        }
    }
  return 0;
}

static void
dispatch_event (struct rp_qmp *q, json_t *msg)
{
  const char *name = json_string_value (json_object_get (msg, "event"));
  json_t *data = json_object_get (msg, "data");

  if (!q->ev_fn || !name)
    return;
  if (json_is_object (data))
    q->ev_fn (q->ev_opaque, name, data);
  else
    {
      /* Callers can rely on DATA being an object (a peer's "data": 2 or
       * null is replaced too; found by tests/fuzz/fuzz_qmp.c). */
      data = json_object ();
      q->ev_fn (q->ev_opaque, name, data);
      json_decref (data);
    }
}

/* Send one command and wait for its reply; the lock is held. */
static int
cmd_locked (struct rp_qmp *q, const char *command, json_t *args,
            json_t **ret, char **err)
{
  long long deadline = q->timeout_ms > 0 ? now_ms () + q->timeout_ms : -1;
  json_int_t id = q->next_id++;
  json_t *req, *msg = NULL;
  char *s;
  int r;

  if (atomic_load (&q->dead))
    {
      json_decref (args);
      return dead_err (q, err);
    }
  req = json_pack ("{s:s, s:I}", "execute", command, "id", id);
  if (req && args)
    json_object_set_new (req, "arguments", args);
  else
    json_decref (args);
  s = req ? json_dumps (req, JSON_COMPACT) : NULL;
  json_decref (req);
  if (!s)
    {
      set_err (err, "cannot encode QMP command %s", command);
      return -1;
    }
  r = send_all (q, s, strlen (s), deadline);
  if (r == 0)
    r = send_all (q, "\n", 1, deadline);
  free (s);
  if (r < 0)
    return dead_err (q, err);

  for (;;)
    {
      json_t *rid, *val, *e;

      r = read_msg (q, deadline, &msg);
      if (r == 0)
        {
          atomic_fetch_add (&q->timeouts, 1);
          set_err (err, "%s is not answering (no reply to %s within %d "
                   "ms)", q->peer, command, q->timeout_ms);
          return -3;
        }
      if (r < 0)
        return dead_err (q, err);
      if (json_object_get (msg, "event"))
        {
          dispatch_event (q, msg);
          json_decref (msg);
          continue;
        }
      rid = json_object_get (msg, "id");
      /* A reply without id is QEMU refusing our line before reading the id;
       * with one command in flight it can only be ours. */
      if (rid && !(json_is_integer (rid) && json_integer_value (rid) == id))
        {
          json_decref (msg);    /* stale reply to a command that timed out */
          continue;
        }
      atomic_store (&q->timeouts, 0);
      if ((val = json_object_get (msg, "return")))
        {
          if (ret)
            *ret = json_incref (val);
          json_decref (msg);
          return 0;
        }
      if ((e = json_object_get (msg, "error")))
        {
          const char *d = json_string_value (json_object_get (e, "desc"));
          const char *c = json_string_value (json_object_get (e, "class"));

          set_err (err, "%s", d ? d : c ? c : "unknown QMP error");
          json_decref (msg);
          return -1;
        }
      json_decref (msg);        /* neither: ignore, like QEMU's own clients */
    }
}

static struct rp_qmp *
conn_new (int fd, int timeout_ms, const char *peer, char **err)
{
  struct rp_qmp *q = calloc (1, sizeof *q);
  int fl;

  if (!q)
    {
      close (fd);
      set_err (err, "out of memory");
      return NULL;
    }
  pthread_mutex_init (&q->lock, NULL);
  q->fd = fd;
  q->timeout_ms = timeout_ms;
  q->next_id = 1;
  q->peer = peer;
  atomic_init (&q->dead, false);
  atomic_init (&q->timeouts, 0);
  fl = fcntl (fd, F_GETFL);
  if (fl < 0 || fcntl (fd, F_SETFL, fl | O_NONBLOCK) < 0
      || fcntl (fd, F_SETFD, FD_CLOEXEC) < 0)
    {
      set_err (err, "%s socket: %s", peer, strerror (errno));
      rp_qmp_close (q);
      return NULL;
    }
  return q;
}

struct rp_qmp *
rp_qmp_open_agent (int fd, int timeout_ms, char **err)
{
  struct rp_qmp *q = conn_new (fd, timeout_ms, "the guest agent", err);
  struct timespec ts;
  json_t *ret = NULL;
  json_int_t token;

  if (!q)
    return NULL;
  q->agent = true;
  /* Replies to an earlier connection's commands may still come out of the
   * channel: start the ids where they cannot collide, and sync first; the
   * agent puts 0xff before the sync's reply, so that a partial line left
   * in the channel cannot swallow it (take_line starts after an 0xff). */
  clock_gettime (CLOCK_REALTIME, &ts);
  token = ((json_int_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000)
          & 0x3fffffffffffLL;
  q->next_id = token + 1;
  if (rp_qmp_cmd (q, "guest-sync-delimited", json_pack ("{s:I}", "id", token),
                  &ret, err) != 0)
    {
      rp_qmp_close (q);
      return NULL;
    }
  if (!json_is_integer (ret) || json_integer_value (ret) != token)
    {
      set_err (err, "the guest agent answered guest-sync out of step");
      json_decref (ret);
      rp_qmp_close (q);
      return NULL;
    }
  json_decref (ret);
  return q;
}

struct rp_qmp *
rp_qmp_open (int fd, int timeout_ms, char **err)
{
  struct rp_qmp *q = conn_new (fd, timeout_ms, "QEMU", err);
  json_t *msg = NULL;
  int r;

  if (!q)
    return NULL;
  r = read_msg (q, timeout_ms > 0 ? now_ms () + timeout_ms : -1, &msg);
  if (r == 0)
    mark_dead (q, "%s is not answering (no QMP greeting within %d ms)", q->peer,
               timeout_ms);
  if (r <= 0)
    {
      dead_err (q, err);
      rp_qmp_close (q);
      return NULL;
    }
  if (!json_object_get (msg, "QMP"))
    {
      json_decref (msg);
      set_err (err, "peer is not a QMP monitor (no greeting)");
      rp_qmp_close (q);
      return NULL;
    }
  json_decref (msg);
  if (rp_qmp_cmd (q, "qmp_capabilities", NULL, NULL, err) != 0)
    {
      rp_qmp_close (q);
      return NULL;
    }
  return q;
}

void
rp_qmp_set_event (struct rp_qmp *q, rp_qmp_event_fn fn, void *opaque)
{
  pthread_mutex_lock (&q->lock);
  q->ev_fn = fn;
  q->ev_opaque = opaque;
  pthread_mutex_unlock (&q->lock);
}

int
rp_qmp_cmd (struct rp_qmp *q, const char *command, json_t *args,
            json_t **ret, char **err)
{
  int r;

  if (ret)
    *ret = NULL;
  if (err)
    *err = NULL;
  pthread_mutex_lock (&q->lock);
  r = cmd_locked (q, command, args, ret, err);
  pthread_mutex_unlock (&q->lock);
  return r;
}

int
rp_qmp_poll_events (struct rp_qmp *q, int timeout_ms, char **err)
{
  long long deadline = timeout_ms >= 0 ? now_ms () + timeout_ms : -1;
  json_t *msg;
  int n = 0, r;

  if (err)
    *err = NULL;
  pthread_mutex_lock (&q->lock);
  while ((r = read_msg (q, deadline, &msg)) > 0)
    {
      if (json_object_get (msg, "event"))
        {
          dispatch_event (q, msg);
          n++;
          deadline = now_ms ();   /* got one: only drain what is there */
        }
      json_decref (msg);        /* a stale reply otherwise */
    }
  if (r < 0 && n == 0)
    n = dead_err (q, err);      /* events before EOF still count */
  pthread_mutex_unlock (&q->lock);
  return n;
}

int
rp_qmp_transaction (struct rp_qmp *q, json_t *actions, char **err)
{
  json_t *args = json_object ();

  json_object_set_new (args, "actions", actions);
  return rp_qmp_cmd (q, "transaction", args, NULL, err);
}

json_t *
rp_qmp_action (const char *type, json_t *data)
{
  return json_pack ("{s:s, s:o}", "type", type, "data", data);
}

int
rp_qmp_timeouts (struct rp_qmp *q)
{
  return atomic_load (&q->timeouts);
}

bool
rp_qmp_alive (struct rp_qmp *q)
{
  struct pollfd p = { .fd = q->fd, .events = POLLRDHUP };

  if (atomic_load (&q->dead))
    return false;
  /* Peer gone (e.g. QEMU killed) is visible without sending anything. */
  if (poll (&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
    return false;
  return true;
}

void
rp_qmp_close (struct rp_qmp *q)
{
  if (!q)
    return;
  if (q->fd >= 0)
    close (q->fd);
  pthread_mutex_destroy (&q->lock);
  free (q->dead_msg);
  free (q->buf);
  free (q);
}
