/* conn.c: one client connection, as the rest of the server sees it: a
 * loop's connections are accepted, drained, closed and counted through
 * these; struct np_conn is the connection's files' own (conn_int.h). */
#ifndef NP_ENGINE_CONN_H
#define NP_ENGINE_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/access.h"
#include "engine/loop.h"
#include "engine/stats.h"

struct np_conn;

void np_conn_accept(struct np_loop *l, const struct np_accepted *a);
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
