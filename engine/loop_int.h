/* struct np_loop, for the loop's own files: server.c, which runs loops, and
 * loopex.c, which keeps what they hold. Everyone else sees loop.h. */
#ifndef NP_ENGINE_LOOP_INT_H
#define NP_ENGINE_LOOP_INT_H

#include <uv.h>

#include "engine/export.h"
#include "engine/loop.h"
#include "engine/mailbox.h"
#include "storage/storage.h"

struct np_loop {
	uv_loop_t uv;
	uv_thread_t thread;
	struct np_server *srv;
	unsigned index;
	struct np_mailbox mbox; /* new sockets, completions, stats, shutdown */
	struct np_loop_env env; /* what async engines' loop handles get */
	/* server.c's: the last connection of a draining loop is gone. */
	void (*empty)(struct np_loop *l);
	bool draining; /* loop thread only */
	struct np_loop_conns lc;
	uv_timer_t drain_timer;
	uv_prepare_t before_sleep; /* writes pending replies before the loop waits */
	struct np_coalesce coalesce;
	long wait_ns; /* 0: never */
	/* Per export slot, made when the first client of an export arrives;
	 * this loop's thread only. */
	struct np_loop_export *ex[NP_MAX_EXPORTS];
};

#endif
