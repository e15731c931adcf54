/* A loop: its thread, mailbox and connections (server.c), and its state
 * per export (loopex.c). */
#ifndef NP_ENGINE_LOOP_H
#define NP_ENGINE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine/export.h"
#include "engine/mailbox.h"
#include "engine/stats.h"
#include "storage/storage.h"

/* Signals of a loop's mailbox. */
#define NP_LOOP_SHUTDOWN 1u /* drain every connection, then stop */
#define NP_LOOP_REAP     2u /* exports were removed: drain their clients */
#define NP_LOOP_HANDOFF  4u /* the connections went to a new process: let go */
#define NP_LOOP_ACCEPT   8u /* loop 0: a hand-off failed, accept again */

/* Whether a loop waits before it polls (server.c). */
struct np_coalesce {
	unsigned probe;  /* turns with requests since the last trial wait */
	unsigned credit; /* waits that paid, less twice those that did not */
	bool overran;    /* the last wait lasted far longer than asked */
	bool several;    /* a turn since the last trial brought a connection 2+ */
};
bool np_coalesce_turn(struct np_coalesce *co, unsigned most);

/* A loop's struct is its own files' (server.c, loopex.c: loop_int.h);
 * others go through the functions below, on the loop's thread unless said. */
struct np_loop;

/* What a loop keeps for its connections' files: its connections, those
 * with replies to write, and the requests per turn that coalescing reads.
 * A connection keeps a pointer to it (np_conn.lc), as the request path
 * counts into it once per request. Loop thread only. */
struct np_loop_conns {
	struct np_conn *head; /* doubly linked through np_conn.prev and next */
	unsigned n;
	struct np_conn *dirty; /* connections with replies to send */
	/* Coalescing (server.c): the most requests one connection brought in
	 * since the loop last went to sleep, counted by request.c's dispatch. */
	uint64_t turn;      /* loop turns so far */
	unsigned turn_most; /* of this turn */
	/* Fairness (request.c): connections that brought requests in turn
	 * conns_turn, and in the turn before it, which share the turn's
	 * quantum. */
	uint64_t conns_turn;
	unsigned turn_conns, last_conns;
};

/* What one loop keeps for one export. */
struct np_loop_export {
	uint64_t gen;             /* the export's, to tell a reused slot */
	unsigned conns;           /* this loop's connections to it */
	void *engine_loop;        /* an async engine's handle for this loop */
	struct np_export *export; /* held while engine_loop is open */
	struct np_export_stats stats;
};

/* On a loop thread: this loop's state for the export, made on first use
 * (opening the engine's per-loop handle); NULL on failure. */
struct np_loop_export *np_loop_export_get(struct np_loop *l, struct np_export *ex);
/* On a loop thread, when one of its connections to ex closes. */
void np_loop_export_conn_gone(struct np_loop *l, struct np_export *ex);
/* On a loop thread, in a hand-off: closes (reopen false) or opens again
 * this loop's engine handle of ex, keeping the loop's reference. Returns 0
 * or the engine's -errno. */
int np_loop_export_let_go(struct np_loop *l, struct np_export *ex, bool reopen);
/* Closes the engine's handle for the loop and drops its reference. */
void np_loop_export_release(struct np_loop *l, struct np_loop_export *le);

/* The loop's parts that its connections use; any thread. */
struct np_loop_conns *np_loop_conns(struct np_loop *l);
struct np_server *np_loop_server(struct np_loop *l);
uv_loop_t *np_loop_uv(struct np_loop *l);
struct np_mailbox *np_loop_mailbox(struct np_loop *l);
unsigned np_loop_index(const struct np_loop *l);
/* The i-th of the server's loops; any thread. */
struct np_loop *np_loop_nth(struct np_server *srv, unsigned i);
/* One of the loop's connections is gone: a draining loop may finish. */
void np_loop_conn_gone(struct np_loop *l);
/* This loop's counters of every export it has served, in a malloc'd
 * array. Returns 0 or -ENOMEM (then *out is NULL). */
int np_loop_exports_stats(struct np_loop *l, struct np_stats_export **out, size_t *n);

#endif
