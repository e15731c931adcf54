/* A one-line progress bar for long copies: percentage, rate, time left.
 *
 * The line is redrawn in place with a carriage return at most five times a
 * second, so that a fast copy does not spend its time on the terminal. The
 * rate is the average since the start: copies run at a steady pace once the
 * page cache is warm, and an average does not jump about on holes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "tools/progress.h"

#define REDRAW_SECONDS 0.2
#define BAR_CELLS      24

double np_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *np_fmt_bytes(char *buf, size_t len, double bytes)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		bytes /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", bytes);
	else
		snprintf(buf, len, "%.1f %s", bytes, units[u]);
	return buf;
}

static void fmt_duration(char *buf, size_t len, double s)
{
	unsigned long t = (unsigned long)(s + 0.5);

	if (s < 0 || s > 360000.0)
		snprintf(buf, len, "--:--");
	else if (t >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

/* Columns of the terminal out is, or 80. */
static int columns(FILE *out)
{
	struct winsize ws;

	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static void draw(struct np_progress *p, uint64_t done, bool final)
{
	double now = np_now(), elapsed = now - p->start;
	double frac = p->total ? (double)done / p->total : 1.0;
	double rate = elapsed > 0 ? done / elapsed : 0;
	char bar[BAR_CELLS + 4], text[160], sdone[32], stotal[32], srate[32], left[32];
	int cells, n;

	if (frac > 1.0)
		frac = 1.0;
	np_fmt_bytes(sdone, sizeof(sdone), done);
	np_fmt_bytes(stotal, sizeof(stotal), p->total);
	np_fmt_bytes(srate, sizeof(srate), rate);
	if (final)
		fmt_duration(left, sizeof(left), elapsed);
	else
		fmt_duration(left, sizeof(left),
			     rate > 0 && done <= p->total ? (p->total - done) / rate : -1);
	snprintf(text, sizeof(text), "%s / %s  %s/s  %s %s", sdone, stotal, srate, left,
		 final ? "total" : "left");
	/* The line must not wrap, or the carriage return would not reach its
	 * start: on a narrow terminal the bar goes first. */
	n = 5 + (int)strlen(text);
	if (n + BAR_CELLS + 3 < columns(p->out)) {
		cells = (int)(frac * BAR_CELLS);
		bar[0] = '[';
		memset(bar + 1, '#', cells);
		memset(bar + 1 + cells, '.', BAR_CELLS - cells);
		snprintf(bar + 1 + BAR_CELLS, 3, "] ");
	} else {
		bar[0] = '\0';
	}
	n = fprintf(p->out, "\r%3d%% %s%s", (int)(frac * 100), bar, text) - 1;
	/* A shorter line than the last one leaves no stale characters. */
	if (n > 0 && n < p->width)
		fprintf(p->out, "%*s", p->width - n, "");
	if (n > p->width)
		p->width = n;
	if (final)
		fputc('\n', p->out);
	fflush(p->out);
	p->last = now;
}

void np_progress_start(struct np_progress *p, FILE *out, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->total = total;
	p->start = p->last = np_now();
	if (out)
		draw(p, 0, false);
}

void np_progress_update(struct np_progress *p, uint64_t done)
{
	if (p->out && np_now() - p->last >= REDRAW_SECONDS)
		draw(p, done, false);
}

void np_progress_end(struct np_progress *p, uint64_t done)
{
	if (p->out)
		draw(p, done, true);
}
