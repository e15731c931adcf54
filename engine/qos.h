/* qos.c: limits per export and per client. Token buckets of requests and
 * bytes per second hold a request back until it may run; it never fails
 * because of a limit. */
#ifndef NP_ENGINE_QOS_H
#define NP_ENGINE_QOS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "engine/config.h"
#include "engine/fairq.h"
#include "engine/job.h"

struct np_qos;
struct np_qos_group;

/* A connection's limits: its client's group (stage 0, if a [client]
 * section names it) and its export's (stage 1). A request passes them in
 * that order. */
enum { NP_QOS_STAGES = 2 };
struct np_qos_conn {
	struct np_qos_group *group[NP_QOS_STAGES];
	struct np_fairq_owner owner[NP_QOS_STAGES]; /* its requests waiting in
						     * each group; under the qos lock */
	unsigned waiting;                           /* its requests held back; under the qos lock */
};

/* A request as the limits see it, embedded in it. While it waits, job is
 * linked in a group's fair queue; once it may run, job is posted to
 * job.mbox, whose complete (the caller's) runs it on its loop. */
struct np_qos_item {
	struct np_job job;
	struct np_qos_conn *qc;
	uint64_t bytes; /* data it moves (READ, WRITE) */
	uint8_t cls;    /* NP_QOS_READ, NP_QOS_WRITE, or NP_QOS_ALL: neither */
	uint8_t stage;  /* the group it waits in */
	uint64_t since; /* ns when it began to wait there */
};

/* Starts the thread that lets requests go, with the limits of cfg. Returns
 * 0 or a negative errno. */
int np_qos_start(struct np_qos **out, const struct np_config *cfg);
/* After every connection has gone. */
void np_qos_stop(struct np_qos *q);
/* A reload: every group takes the limits of cfg (groups it no longer names
 * lose theirs). Connections keep their groups. */
void np_qos_configure(struct np_qos *q, const struct np_config *cfg);
/* At the start of transmission: the groups of export and of the first
 * [client] that names peer (by address) or identity (TLS; may be NULL). */
void np_qos_bind(struct np_qos *q, struct np_qos_conn *qc, const char *export,
		 const struct sockaddr *peer, const char *identity);
/* Whether any of the connection's groups has a limit now. */
bool np_qos_limited(const struct np_qos_conn *qc);
/* On the connection's loop: false if the request may run now (its tokens
 * are taken); true if it waits, to be posted to it->job.mbox when it may
 * run. it->job's complete and mbox, bytes and cls are the caller's. */
bool np_qos_wait(struct np_qos *q, struct np_qos_conn *qc, struct np_qos_item *it);
/* The connection closes: its waiting requests are posted at once, without
 * tokens (their complete drops them). */
void np_qos_cancel(struct np_qos *q, struct np_qos_conn *qc);

/* The control socket: `qos show`, and `qos set export|client NAME
 * KEY=VALUE[,KEY=VALUE]...`, all keys or none applied. Return 0, or a
 * negative errno with a message in *err. */
int np_qos_show(struct np_qos *q, FILE *out);
int np_qos_set(struct np_qos *q, const char *kind, const char *name, int n, char **kv, FILE *out,
	       char **err);
/* What `qos show` and the metrics report of one group. name points into
 * the group, which lives as long as q. */
struct np_qos_stat {
	bool client; /* a [client]'s group, else an export's */
	const char *name;
	struct np_qos_limits lim;
	uint64_t waiting;   /* requests held back now */
	uint64_t throttled; /* requests ever held back */
	uint64_t waited_ns; /* the time they spent held back */
};
/* The groups of the current configuration, in a malloc'd array; returns
 * their number, or a negative errno. */
int np_qos_snapshot(struct np_qos *q, struct np_qos_stat **out);

#endif
