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

struct np_loop;
struct np_server;
struct np_stats_ask;
struct np_loop_export;
void np_stats_record(struct np_loop_export *le, uint16_t cmd, uint64_t bytes, bool error,
		     uint64_t t0);

/* From any thread but a loop's: every loop's numbers as Prometheus text. */
int np_stats_collect(struct np_server *srv, struct np_buf *out);

#endif
