/* Statistics: counted by each loop for itself, snapshotted on request.
 *
 * The data path only touches its own loop's counters, with no atomics and
 * no shared cache lines. A reader (the metrics endpoint, the control
 * socket) posts a request to every loop through its async door; each loop
 * copies its counters and connection list into the request's slot, and the
 * reader sums and formats. The request is reference-counted, so a reader
 * that gives up waiting (a loop busy shutting down) frees nothing a loop
 * still writes. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/conn.h"
#include "engine/export.h"
#include "engine/loop.h"
#include "engine/qos.h"
#include "engine/server.h"
#include "engine/stats.h"

static const char *const cmd_label[NP_STAT_CMDS] = {
    "read", "write", "disc", "flush", "trim", "cache", "write_zeroes", "block_status", "other",
};

/* ---- snapshots ---- */

struct slot {
	bool filled;
	struct np_stats_export *ex;
	size_t n_ex;
	struct np_stats_conn *conns;
	size_t n_conns;
};

struct np_collect {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	unsigned n_done;
	unsigned n_slots;
	struct slot *slots; /* one per loop */
};

struct np_stats_ask {
	struct np_job job; /* completes on the loop asked */
	struct np_loop *loop;
	struct np_collect *col;
	unsigned slot;
};

static void collect_put(struct np_collect *col)
{
	int refs;

	pthread_mutex_lock(&col->lock);
	refs = --col->refs;
	pthread_mutex_unlock(&col->lock);
	if (refs)
		return;
	/* A loop that answered after the reader gave up left its copy here. */
	for (unsigned i = 0; i < col->n_slots; i++) {
		if (col->slots[i].filled) {
			free(col->slots[i].ex);
			free(col->slots[i].conns);
		}
	}
	pthread_mutex_destroy(&col->lock);
	pthread_cond_destroy(&col->cond);
	free(col->slots);
	free(col);
}

/* On a loop thread: copies this loop's numbers into the ask. */
static void answer(struct np_job *job)
{
	struct np_stats_ask *ask = container_of(job, struct np_stats_ask, job);
	struct slot *s = &ask->col->slots[ask->slot];
	bool ok = np_loop_exports_stats(ask->loop, &s->ex, &s->n_ex) == 0;

	ok = np_conns_stats(ask->loop, &s->conns, &s->n_conns) == 0 && ok;
	pthread_mutex_lock(&ask->col->lock);
	s->filled = ok;
	ask->col->n_done++;
	pthread_cond_signal(&ask->col->cond);
	pthread_mutex_unlock(&ask->col->lock);
	if (!ok) {
		free(s->ex);
		free(s->conns);
	}
	collect_put(ask->col);
	free(ask);
}

/* Appends printf output to b; gives up quietly on memory exhaustion (the
 * caller answers with what it has). */
static void outf(struct np_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct np_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		np_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static const char *label(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
	return out;
}

static void header(struct np_buf *b, const char *name, const char *type, const char *help)
{
	outf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter per export and command in [first, last], read at field of
 * struct np_cmd_stats; zeroes are left out unless always. */
static void counters(struct np_buf *b, struct np_export *const *list,
		     const struct np_export_stats *sum, const char *name, const char *help,
		     size_t field, unsigned first, unsigned last, bool always)
{
	char lbl[2 * NBD_MAX_STRING + 8];

	header(b, name, "counter", help);
	for (size_t e = 0; e < NP_MAX_EXPORTS; e++) {
		for (unsigned k = first; list[e] && k <= last; k++) {
			uint64_t v;

			memcpy(&v, (const char *)&sum[e].cmd[k] + field, sizeof(v));
			if (v || always)
				outf(b, "%s{export=\"%s\",command=\"%s\"} %llu\n", name,
				     label(list[e]->hs.name, lbl, sizeof(lbl)), cmd_label[k],
				     (unsigned long long)v);
		}
	}
}

/* The exports in the table, held while the numbers are formatted. */
static void hold_exports(struct np_server *srv, struct np_export **list)
{
	pthread_mutex_lock(&srv->exports_lock);
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		list[i] = srv->exports[i];
		if (list[i])
			list[i]->refs++;
	}
	pthread_mutex_unlock(&srv->exports_lock);
}

static void release_exports(struct np_server *srv, struct np_export **list)
{
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++)
		if (list[i])
			np_export_put(srv, list[i]);
}

/* Whether a loop's numbers for slot belong to the export there now. */
static bool current(struct np_export *const *list, unsigned slot, uint64_t gen)
{
	return slot < NP_MAX_EXPORTS && list[slot] && list[slot]->gen == gen;
}

/* The limits in force (qos.c) and what they hold back, per export and per
 * [client]: one sample per group for each gauge and counter, and one per
 * limit set. */
static void qos_metrics(struct np_server *srv, struct np_buf *b)
{
	static const char *const cls[NP_QOS_CLASSES] = {"all", "read", "write"};
	struct np_qos_stat *v;
	int n = np_qos_snapshot(srv->qos, &v);
	char lbl[2 * NBD_MAX_STRING + 8];

	if (n <= 0)
		return;
	header(b, "nbdplex_qos_limit", "gauge",
	       "Limits in force: requests (iops) or bytes (bps) per second.");
	for (int i = 0; i < n; i++) {
		for (int c = 0; c < NP_QOS_CLASSES; c++) {
			for (int k = 0; k < 2; k++) {
				uint64_t x = k ? v[i].lim.bps[c] : v[i].lim.iops[c];

				if (x)
					outf(
					    b,
					    "nbdplex_qos_limit{%s=\"%s\",kind=\"%s\",class=\"%s\"} "
					    "%llu\n",
					    v[i].client ? "client" : "export",
					    label(v[i].name, lbl, sizeof(lbl)), k ? "bps" : "iops",
					    cls[c], (unsigned long long)x);
			}
		}
	}
	header(b, "nbdplex_qos_waiting", "gauge", "Requests a limit holds back now.");
	for (int i = 0; i < n; i++)
		outf(b, "nbdplex_qos_waiting{%s=\"%s\"} %llu\n", v[i].client ? "client" : "export",
		     label(v[i].name, lbl, sizeof(lbl)), (unsigned long long)v[i].waiting);
	header(b, "nbdplex_qos_throttled_total", "counter", "Requests a limit held back.");
	for (int i = 0; i < n; i++)
		outf(b, "nbdplex_qos_throttled_total{%s=\"%s\"} %llu\n",
		     v[i].client ? "client" : "export", label(v[i].name, lbl, sizeof(lbl)),
		     (unsigned long long)v[i].throttled);
	header(b, "nbdplex_qos_throttled_seconds_total", "counter",
	       "Time requests spent held back by a limit.");
	for (int i = 0; i < n; i++)
		outf(b, "nbdplex_qos_throttled_seconds_total{%s=\"%s\"} %.6f\n",
		     v[i].client ? "client" : "export", label(v[i].name, lbl, sizeof(lbl)),
		     (double)v[i].waited_ns / 1e9);
	free(v);
}

static void format(struct np_server *srv, struct np_collect *col, struct np_buf *b)
{
	const size_t ne = NP_MAX_EXPORTS;
	struct np_export *list[NP_MAX_EXPORTS];
	struct np_export_stats *sum = calloc(ne, sizeof(*sum));
	unsigned *conns = calloc(ne, sizeof(*conns));
	uint64_t *inflight = calloc(ne, sizeof(*inflight));
	char lbl[2 * NBD_MAX_STRING + 8], lbl2[160];

	hold_exports(srv, list);
	if (!sum || !conns || !inflight)
		goto out;
	for (unsigned i = 0; i < srv->n_loops; i++) {
		struct slot *s = &col->slots[i];

		if (!s->filled)
			continue;
		for (size_t j = 0; j < s->n_ex; j++) {
			size_t e = s->ex[j].slot;

			if (!current(list, s->ex[j].slot, s->ex[j].gen))
				continue;
			for (unsigned k = 0; k < NP_STAT_CMDS; k++) {
				struct np_cmd_stats *d = &sum[e].cmd[k],
						    *x = &s->ex[j].stats.cmd[k];

				d->requests += x->requests;
				d->bytes += x->bytes;
				d->errors += x->errors;
				d->lat_sum_ns += x->lat_sum_ns;
				for (unsigned q = 0; q < NP_LAT_BUCKETS; q++)
					d->lat[q] += x->lat[q];
			}
		}
		for (size_t k = 0; k < s->n_conns; k++) {
			if (current(list, s->conns[k].slot, s->conns[k].gen)) {
				conns[s->conns[k].slot]++;
				inflight[s->conns[k].slot] += s->conns[k].inflight_bytes;
			}
		}
	}

	counters(b, list, sum, "nbdplex_requests_total",
		 "Requests answered, by export and command.",
		 offsetof(struct np_cmd_stats, requests), 0, NP_STAT_CMDS - 1, false);
	counters(b, list, sum, "nbdplex_bytes_total", "Bytes read and written, by export.",
		 offsetof(struct np_cmd_stats, bytes), NBD_CMD_READ, NBD_CMD_WRITE, true);
	counters(b, list, sum, "nbdplex_errors_total", "Requests answered with an error.",
		 offsetof(struct np_cmd_stats, errors), 0, NP_STAT_CMDS - 1, false);
	header(b, "nbdplex_request_duration_seconds", "histogram",
	       "Time from parsing a request to queueing its reply.");
	for (size_t e = 0; e < ne; e++) {
		for (unsigned k = 0; list[e] && k < NP_STAT_CMDS; k++) {
			struct np_cmd_stats *d = &sum[e].cmd[k];
			uint64_t cum = 0;

			if (!d->requests)
				continue;
			label(list[e]->hs.name, lbl, sizeof(lbl));
			snprintf(lbl2, sizeof(lbl2), "command=\"%s\"", cmd_label[k]);
			for (unsigned q = 0; q < NP_LAT_BUCKETS; q++) {
				cum += d->lat[q];
				if (q < NP_LAT_BUCKETS - 1)
					outf(b,
					     "nbdplex_request_duration_seconds_bucket{export=\"%"
					     "s\",%s,"
					     "le=\"%g\"} %llu\n",
					     lbl, lbl2, np_stats_lat_bounds_ns[q] / 1e9,
					     (unsigned long long)cum);
				else
					outf(b,
					     "nbdplex_request_duration_seconds_bucket{export=\"%"
					     "s\",%s,"
					     "le=\"+Inf\"} %llu\n",
					     lbl, lbl2, (unsigned long long)cum);
			}
			outf(b, "nbdplex_request_duration_seconds_sum{export=\"%s\",%s} %.9f\n",
			     lbl, lbl2, d->lat_sum_ns / 1e9);
			outf(b, "nbdplex_request_duration_seconds_count{export=\"%s\",%s} %llu\n",
			     lbl, lbl2, (unsigned long long)d->requests);
		}
	}
	header(b, "nbdplex_connections", "gauge", "Connections in transmission, by export.");
	header(b, "nbdplex_bytes_in_flight", "gauge",
	       "Bytes of requests and replies held, by export.");
	header(b, "nbdplex_export_size_bytes", "gauge", "Size of each export.");
	header(b, "nbdplex_export_allocated_bytes", "gauge",
	       "Bytes of storage each export uses, where its engine can tell.");
	for (size_t e = 0; e < ne; e++) {
		struct np_export *ex = list[e];
		uint64_t used, cap;

		if (!ex)
			continue;
		label(ex->hs.name, lbl, sizeof(lbl));
		outf(b, "nbdplex_connections{export=\"%s\"} %u\n", lbl, conns[e]);
		outf(b, "nbdplex_bytes_in_flight{export=\"%s\"} %llu\n", lbl,
		     (unsigned long long)inflight[e]);
		outf(b, "nbdplex_export_size_bytes{export=\"%s\"} %llu\n", lbl,
		     (unsigned long long)np_export_size(ex));
		if (np_export_space(srv, ex, &used, &cap) == 0)
			outf(b, "nbdplex_export_allocated_bytes{export=\"%s\"} %llu\n", lbl,
			     (unsigned long long)used);
	}
	header(b, "nbdplex_connection_requests_total", "counter",
	       "Requests answered on each open connection.");
	for (unsigned i = 0; i < srv->n_loops; i++) {
		struct slot *s = &col->slots[i];

		for (size_t k = 0; s->filled && k < s->n_conns; k++) {
			struct np_stats_conn *cs = &s->conns[k];
			const char *ename =
			    current(list, cs->slot, cs->gen) ? list[cs->slot]->hs.name : "";

			outf(b,
			     "nbdplex_connection_requests_total{conn=\"%llu\",peer=\"%s\",export="
			     "\"%s\","
			     "tls=\"%s\"} %llu\n",
			     (unsigned long long)cs->id, label(cs->peer, lbl2, sizeof(lbl2)),
			     label(ename, lbl, sizeof(lbl)), cs->tls ? "yes" : "no",
			     (unsigned long long)cs->requests);
			outf(b,
			     "nbdplex_connection_bytes_total{conn=\"%llu\",peer=\"%s\"} %llu\n"
			     "nbdplex_connection_errors_total{conn=\"%llu\",peer=\"%s\"} %llu\n"
			     "nbdplex_connection_bytes_in_flight{conn=\"%llu\",peer=\"%s\"} %llu\n",
			     (unsigned long long)cs->id, lbl2, (unsigned long long)cs->bytes,
			     (unsigned long long)cs->id, lbl2, (unsigned long long)cs->errors,
			     (unsigned long long)cs->id, lbl2,
			     (unsigned long long)cs->inflight_bytes);
		}
	}
	qos_metrics(srv, b);
	header(b, "nbdplex_connections_accepted_total", "counter", "Connections accepted.");
	outf(b, "nbdplex_connections_accepted_total %llu\n",
	     (unsigned long long)atomic_load(&srv->next_conn_id));
	/* Carried from process to process by the hand-off (handoff.c); the
	 * other counters start again with each process. */
	header(b, "nbdplex_handoff_pause_seconds", "histogram",
	       "Pauses of the hand-offs to a new process (serve --takeover) this server's line "
	       "has made.");
	{
		static const unsigned bounds[NP_HANDOFF_BUCKETS] = NP_HANDOFF_BOUNDS_MS;
		uint64_t cum = 0;

		for (unsigned i = 0; i < NP_HANDOFF_BUCKETS; i++) {
			cum += srv->handoff.buckets[i];
			outf(b, "nbdplex_handoff_pause_seconds_bucket{le=\"%g\"} %llu\n",
			     bounds[i] / 1000.0, (unsigned long long)cum);
		}
		outf(b, "nbdplex_handoff_pause_seconds_bucket{le=\"+Inf\"} %llu\n",
		     (unsigned long long)srv->handoff.count);
		outf(b, "nbdplex_handoff_pause_seconds_sum %.6f\n", srv->handoff.sum_ns / 1e9);
		outf(b, "nbdplex_handoff_pause_seconds_count %llu\n",
		     (unsigned long long)srv->handoff.count);
	}
out:
	release_exports(srv, list);
	free(sum);
	free(conns);
	free(inflight);
}

int np_stats_collect(struct np_server *srv, struct np_buf *out)
{
	struct np_collect *col = calloc(1, sizeof(*col));
	struct timespec deadline;

	if (!col || !(col->slots = calloc(srv->n_loops, sizeof(*col->slots)))) {
		free(col);
		return -ENOMEM;
	}
	pthread_mutex_init(&col->lock, NULL);
	pthread_cond_init(&col->cond, NULL);
	col->refs = 1 + (int)srv->n_loops;
	col->n_slots = srv->n_loops;
	for (unsigned i = 0; i < srv->n_loops; i++) {
		struct np_loop *l = np_loop_nth(srv, i);
		struct np_stats_ask *ask = calloc(1, sizeof(*ask));

		if (!ask) {
			pthread_mutex_lock(&col->lock);
			col->n_done++;
			pthread_mutex_unlock(&col->lock);
			collect_put(col);
			continue;
		}
		ask->col = col;
		ask->slot = i;
		ask->loop = l;
		ask->job.run = NULL;
		ask->job.complete = answer;
		ask->job.mbox = np_loop_mailbox(l);
		np_mailbox_post(ask->job.mbox, &ask->job);
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	pthread_mutex_lock(&col->lock);
	while (col->n_done < srv->n_loops)
		if (pthread_cond_timedwait(&col->cond, &col->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&col->lock);
	format(srv, col, out);
	for (unsigned i = 0; i < srv->n_loops; i++) {
		pthread_mutex_lock(&col->lock);
		if (col->slots[i].filled) {
			free(col->slots[i].ex);
			free(col->slots[i].conns);
			col->slots[i].filled = false;
		}
		pthread_mutex_unlock(&col->lock);
	}
	collect_put(col);
	return 0;
}
