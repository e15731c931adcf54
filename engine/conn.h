/* conn.c: one client connection, as the rest of the server sees it: a
 * loop's connections are accepted, drained, closed and counted through
 * these; struct np_conn is the connection's files' own (conn_int.h). */
#ifndef NP_ENGINE_CONN_H
#define NP_ENGINE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/access.h"
#include "engine/loop.h"
#include "engine/stats.h"

struct np_conn;

void np_conn_accept(struct np_loop *l, const struct np_accepted *a);

/* A connection in transmission as it moves to another process (handoff.c):
 * the socket, what the handshake negotiated, and the bytes received but
 * not parsed. export and in are malloc'd. */
struct np_conn_moved {
	int fd;
	uint64_t id;
	struct sockaddr_storage peer;
	char *export; /* its name, then each meta context selected, each ending in NUL */
	size_t export_len;
	bool structured, extended;
	uint8_t *in;
	size_t in_len;
};
void np_conn_moved_free(struct np_conn_moved *m);
/* The old process: a loop's connections stop parsing for the hand-off
 * (TLS ones drain and end with close_notify: their keys cannot move), or
 * go on as before; how many are not yet still (requests in flight,
 * replies unsent, a payload arriving, a handshake under way); every still
 * one described in a malloc'd array (a dup of each socket). Loop thread. */
void np_conns_handoff(struct np_loop *l, bool on);
unsigned np_conns_busy(struct np_loop *l);
/* Closes the connections of l still in their handshake (a hand-off waited
 * long enough for them). */
void np_conns_close_handshakes(struct np_loop *l, const char *why);
int np_conns_export(struct np_loop *l, struct np_conn_moved **out, size_t *n);
/* The new process: a connection received, in transmission, on loop l.
 * Takes m->fd and frees nothing of m. Returns 0, or -1 (fd closed) when
 * the export is not served here. */
int np_conn_import(struct np_loop *l, const struct np_conn_moved *m);
/* A loop's connections: every one drained (or those whose export a reload
 * removed), every one closed; and their numbers, in a malloc'd array (0 or
 * -ENOMEM, then *out is NULL). */
void np_conns_drain(struct np_loop *l, bool removed_only);
void np_conns_close(struct np_loop *l, const char *why);
int np_conns_stats(struct np_loop *l, struct np_stats_conn **out, size_t *n);
/* Writes every connection's pending replies; called at the end of each
 * callback that produced replies, so replies go out in as few writes as
 * possible. */
void np_loop_flush(struct np_loop *l);

#endif
