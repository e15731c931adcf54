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

/* Whether a loop waits before it polls (server.c). */
struct np_coalesce {
	unsigned probe;  /* turns with requests since the last trial wait */
	unsigned credit; /* waits that paid, less twice those that did not */
	bool overran;    /* the last wait lasted far longer than asked */
};
bool np_coalesce_turn(struct np_coalesce *co, unsigned most);

struct np_loop {
	uv_loop_t uv;
	uv_thread_t thread;
	struct np_server *srv;
	unsigned index;
	struct np_mailbox mbox; /* new sockets, completions, stats, shutdown */
	struct np_loop_env env; /* what async engines' loop handles get */
	/* server.c's: the last connection of a draining loop is gone. */
	void (*empty)(struct np_loop *l);
	bool draining;         /* loop thread only */
	struct np_conn *conns; /* doubly linked, loop thread only */
	unsigned n_conns;
	struct np_conn *dirty; /* connections with replies to send */
	uv_timer_t drain_timer;
	uv_prepare_t before_sleep; /* writes pending replies before the loop waits */
	/* Coalescing (server.c): the most requests one connection brought in
	 * since the loop last went to sleep, counted by conn.c's dispatch. */
	uint64_t turn;      /* loop turns so far */
	unsigned turn_most; /* of this turn */
	struct np_coalesce coalesce;
	long wait_ns; /* 0: never */
	/* Per export slot, made when the first client of an export arrives;
	 * this loop's thread only. */
	struct np_loop_export *ex[NP_MAX_EXPORTS];
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
/* A connection joins the loop, and leaves it as it is freed (with the
 * references it held to exports and its count against the limits). */
void np_loop_conn_add(struct np_loop *l, struct np_conn *c);
void np_loop_conn_remove(struct np_loop *l, struct np_conn *c);
/* Closes the engine's handle for the loop and drops its reference. */
void np_loop_export_release(struct np_loop *l, struct np_loop_export *le);

#endif
