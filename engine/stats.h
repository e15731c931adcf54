/* stats.c: per-export request counters and latencies, and their
 * Prometheus text. */
#ifndef NP_ENGINE_STATS_H
#define NP_ENGINE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "net/buf.h"

#define NP_STAT_CMDS   9 /* NBD_CMD_READ .. NBD_CMD_BLOCK_STATUS, then the rest */
#define NP_LAT_BUCKETS 14

struct np_cmd_stats {
	uint64_t requests, bytes, errors;
	uint64_t lat[NP_LAT_BUCKETS];
	uint64_t lat_sum_ns;
};

struct np_export_stats {
	struct np_cmd_stats cmd[NP_STAT_CMDS];
};

/* Upper bounds of the latency buckets; the last has none. */
static const uint64_t np_stats_lat_bounds_ns[NP_LAT_BUCKETS - 1] = {
    50000,    100000,   250000,   500000,    1000000,   2500000,    5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 1000000000,
};

/* A request's numbers, into its export's counters on its loop; inline, as
 * the files of the request path call it once per request. */
static inline void np_stats_record(struct np_export_stats *st, uint16_t cmd, uint64_t bytes,
				   bool error, uint64_t ns)
{
	struct np_cmd_stats *s = &st->cmd[cmd < NP_STAT_CMDS - 1 ? cmd : NP_STAT_CMDS - 1];
	unsigned b = 0;

	while (b < NP_LAT_BUCKETS - 1 && ns > np_stats_lat_bounds_ns[b])
		b++;
	s->requests++;
	s->bytes += bytes;
	s->errors += error;
	s->lat[b]++;
	s->lat_sum_ns += ns;
}

/* What a loop answers a stats request with, on its own thread: each of its
 * connections (np_conns_stats, conn.c) and its counters per export
 * (np_loop_exports_stats, loopex.c). */
struct np_stats_conn {
	uint64_t id;
	char peer[64];
	unsigned slot; /* of its export, or NP_MAX_EXPORTS in the handshake */
	uint64_t gen;
	uint64_t requests, bytes, errors, inflight_bytes;
	bool tls;
};

struct np_stats_export {
	unsigned slot;
	uint64_t gen;
	struct np_export_stats stats;
};

struct np_server;
/* From any thread but a loop's: asks every loop for its numbers, on the
 * loop's thread, and formats them as Prometheus text. */
int np_stats_collect(struct np_server *srv, struct np_buf *out);

#endif
