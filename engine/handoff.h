/* handoff.c: the hand-off of a running server's listeners and connections
 * to a new process (serve --takeover), both sides. */
#ifndef NP_ENGINE_HANDOFF_H
#define NP_ENGINE_HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/conn.h"
#include "engine/server.h"

struct np_server;

/* The old process, on the control thread: a new one asked on fd. Starts
 * the hand-off on a thread of its own and returns 0 (fd is then its), or
 * -EBUSY (with *err) when one is already under way. */
int np_handoff_serve(struct np_server *srv, int fd, char **err);

/* A listener as it moves. */
struct np_handoff_listener {
	int fd;
	char *addr; /* HOST:PORT or unix:PATH */
	bool unlink;
	uint64_t dev, ino;
};

/* What the new process received. */
struct np_handoff_in {
	int sock; /* to the old process; open until it exits */
	pid_t old_pid;
	struct np_handoff_listener *listeners;
	size_t n_listeners;
	struct np_conn_moved *conns;
	size_t n_conns;
	uint64_t t_end;                /* uv_hrtime() when the last message arrived */
	uint64_t old_ns;               /* the pause so far, as the old process measured it */
	struct np_handoff_stats stats; /* the hand-offs before this one */
	uint64_t next_conn_id;         /* the old process's count of connections */
};

/* The new process, before it serves: connects to the old one's control
 * socket, receives the listeners and connections, checks that every
 * connection's export is served here, and agrees. Returns 0 once the
 * sockets are this process's, or -errno with *err (the old process then
 * serves on). */
int np_handoff_receive(struct np_server *srv, const char *control, struct np_handoff_in *in,
		       char **err);
/* Adds the hand-off's pause, now over, to the histogram. */
void np_handoff_record(struct np_server *srv, const struct np_handoff_in *in);
/* Waits, at most timeout_ms, for the old process to exit (its end of the
 * socket closes), then frees in. */
void np_handoff_finish(struct np_handoff_in *in, int timeout_ms);

#endif
