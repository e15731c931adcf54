/* server.c: listeners, loops, signals and the server's lifetime. */
#ifndef NP_ENGINE_SERVER_H
#define NP_ENGINE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "engine/access.h"
#include "engine/config.h"
#include "engine/export.h"
#include "engine/pool.h"

struct np_listener {
	int fd;
	uv_poll_t poll;
	char *addr;       /* HOST:PORT or unix:PATH, for log lines */
	char *addr_owned; /* addr, when it was made here (socket activation) */
	const char *path; /* of a Unix socket, else NULL */
	bool unlink;      /* the socket file is ours to remove at exit */
	dev_t dev;        /* the file made, so as not to remove another */
	ino_t ino;
};

/* Hand-offs to a new process (handoff.c): how many, and their pauses (from
 * the moment the old process stops accepting to the new one's reading) in
 * a histogram; each process passes them on to the next. */
#define NP_HANDOFF_BUCKETS 10
#define NP_HANDOFF_BOUNDS_MS                                                                       \
	{                                                                                          \
		1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000                                        \
	}
struct np_handoff_stats {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t buckets[NP_HANDOFF_BUCKETS + 1]; /* the last: over the largest bound */
};

struct np_server {
	struct np_config *cfg; /* as started: [server] settings */
	pthread_mutex_t exports_lock;
	struct np_export *exports[NP_MAX_EXPORTS]; /* slots; under exports_lock */
	size_t n_exports;                          /* live ones */
	const char *default_export;                /* name of the first one configured */
	const struct np_config *current_cfg;       /* the last loaded; under exports_lock */
	/* serve --takeover: exports whose open found them busy (held by the
	 * process taken over), opened once it has released them (handoff.c). */
	const struct np_export_cfg *deferred[NP_MAX_EXPORTS];
	size_t n_deferred;
	uint64_t next_gen;
	struct np_config **reloaded; /* configs loaded by SIGHUP, kept */
	size_t n_reloaded;
	struct np_loop *loops;
	unsigned n_loops;
	unsigned next_loop;
	struct np_pool pool;
	struct np_listener *listeners;
	size_t n_listeners;
	uv_signal_t sigint, sigterm, sighup;
	atomic_uint_fast64_t next_conn_id;
	atomic_uint_fast64_t inflight_total; /* bytes all connections hold */
	struct np_limits limits;
	struct np_tls *tls;
	struct np_metrics *metrics;
	struct np_qos *qos; /* limits per export and per client */
	bool stopping;
	bool signals_ready;
	/* A hand-off (handoff.c): accepting stopped, one under way, the
	 * sockets gone to the new process (exit without touching them). */
	atomic_bool accept_paused, handoff_busy;
	atomic_bool stop_pending; /* SIGTERM or SIGINT came during a hand-off */
	bool handed_off;
	int handoff_sock; /* the new process's end, held open until exit */
	/* The new process: what it received, until the old process exits,
	 * and the thread that then starts --metrics and --control. */
	struct np_handoff_in *handoff_in;
	pthread_t after_old;
	bool after_old_started;
	struct np_handoff_stats handoff;
};

int np_serve(struct np_config *cfg);

#endif
