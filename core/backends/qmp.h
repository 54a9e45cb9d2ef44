/* QMP client over a connected stream socket, JSON by jansson.  Thread-safe:
 * one command at a time per connection; asynchronous events read while
 * waiting for a reply are handed to the event callback. */
#ifndef RPFS_QMP_H
#define RPFS_QMP_H

#include <jansson.h>
#include <stdbool.h>

struct rp_qmp;
/* Called for each event read while a command waits (or in
 * rp_qmp_poll_events), with the connection's lock held: it must not call back
 * into this connection.  DATA is borrowed and never NULL. */
typedef void (*rp_qmp_event_fn) (void *opaque, const char *event, json_t *data);

/* Take ownership of connected socket FD, read the greeting and negotiate
 * capabilities (qmp_capabilities).  TIMEOUT_MS bounds each reply.  Returns
 * NULL with *err (caller frees). */
struct rp_qmp *rp_qmp_open (int fd, int timeout_ms, char **err);
/* The same over a qemu-guest-agent channel: no greeting; a
 * guest-sync-delimited first, so that output an earlier client left in the
 * channel cannot be taken for a reply.  Errors say "the guest agent". */
struct rp_qmp *rp_qmp_open_agent (int fd, int timeout_ms, char **err);
void rp_qmp_set_event (struct rp_qmp *q, rp_qmp_event_fn fn, void *opaque);
/* Run COMMAND with ARGS (stolen, may be NULL).  On success returns 0 and, if
 * RET, *RET = the "return" value (new reference).  On a QMP error returns -1
 * with *err = the error's "desc"; on EOF/IO error returns -2 with *err
 * saying so (the connection is then dead: every later call returns -2); when
 * no reply came within the timeout returns -3 (the connection stays usable;
 * QEMU may still carry the command out later). */
int rp_qmp_cmd (struct rp_qmp *q, const char *command, json_t *args,
                json_t **ret, char **err);
/* Events are only read while someone talks to QEMU: wait up to TIMEOUT_MS
 * (0: only what is already there, < 0: forever) for at least one event and
 * dispatch it and any others already received.  Returns the number
 * dispatched (0 on timeout) or -2 with *err if the connection is dead. */
int rp_qmp_poll_events (struct rp_qmp *q, int timeout_ms, char **err);
/* "transaction" with ACTIONS (stolen array of {type, data}). */
int rp_qmp_transaction (struct rp_qmp *q, json_t *actions, char **err);
/* Helper to build one transaction action: {"type": TYPE, "data": DATA}. */
json_t *rp_qmp_action (const char *type, json_t *data);
bool rp_qmp_alive (struct rp_qmp *q);
/* Commands in a row that got no reply within the timeout (rp_qmp_cmd
 * returned -3 for them); 0 after any reply. */
int rp_qmp_timeouts (struct rp_qmp *q);
void rp_qmp_close (struct rp_qmp *q);

#endif
