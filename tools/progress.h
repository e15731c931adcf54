/* A one-line progress bar for long copies: percentage, rate, time left. */
#ifndef NP_TOOLS_PROGRESS_H
#define NP_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct np_progress {
	FILE *out;      /* NULL: draw nothing */
	uint64_t total; /* bytes */
	double start;   /* seconds, CLOCK_MONOTONIC */
	double last;    /* when the bar was last drawn */
	int width;      /* characters of the last line drawn */
};

/* Monotonic time in seconds. */
double np_now(void);

/* Starts a bar for total bytes; out NULL keeps it hidden. */
void np_progress_start(struct np_progress *p, FILE *out, uint64_t total);
/* Redraws the bar when a fifth of a second has passed since the last time. */
void np_progress_update(struct np_progress *p, uint64_t done);
/* Draws the final state and ends the line. */
void np_progress_end(struct np_progress *p, uint64_t done);

/* Formats bytes as "12.3 MiB" (or "512 B") into buf. */
const char *np_fmt_bytes(char *buf, size_t len, double bytes);

#endif
