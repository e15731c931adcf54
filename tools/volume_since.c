/* `nbdplex volume export --since SNAP`: the source endpoint of an
 * incremental copy. Its extents are the ranges in which the volume
 * differs from SNAP (thin_admin_diff), the rest flagged VC_SKIP, so that
 * the copy (volume_copy.c) writes only what changed; its reads are
 * thin_admin_read. Without SNAP, for a full export from a served pool,
 * the ranges are those with data and the rest reads as zeroes. Both go to the pool opened here, or,
 * when a server holds it, to the server's control socket ("ranges" and "read"), one window or
 * THIN_READ_MAX bytes per request. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "storage/thin/thin_admin.h"
#include "tools/volume_copy.h"
#include "util/err.h"

struct since {
	struct thin_pool *p;          /* NULL: through the server's control socket */
	const char *dir, *snap, *vol; /* snap NULL: a full copy */
};

/* ---- the server's answers */

/* An np_ctl_out_fn that keeps the first cap bytes at dst and counts the
 * rest, keeping the last byte seen. */
struct sink {
	char *dst;
	size_t cap, got;
	char last;
};

static void sink_out(void *arg, const char *data, size_t len)
{
	struct sink *k = arg;
	size_t n = k->got < k->cap ? k->cap - k->got : 0;

	if (n > len)
		n = len;
	memcpy(k->dst + k->got, data, n);
	k->got += len;
	if (len)
		k->last = data[len - 1];
}

struct collect {
	struct np_io *io;
	uint64_t pos, max, n;
	uint32_t gap; /* the flags of what lies between ranges */
};

/* A changed range (or one with data): what lies before it is unchanged
 * (or zeroes). */
static int add_range(void *ctx, uint64_t off, uint64_t len)
{
	struct collect *c = ctx;

	if (off > c->pos)
		np_io_add_extent(c->io, off - c->pos, c->gap);
	np_io_add_extent(c->io, len, 0);
	c->pos = off + len;
	return ++c->n == c->max;
}

/* The changed ranges of the window c->io asks about, at most c->max. */
static int ranges(struct since *s, struct collect *c, uint64_t *size, char **err)
{
	char a[24], b[24], m[24],
	    *words[] = {"ranges", s->snap ? (char *)s->snap : "-", (char *)s->vol, a, b, m};
	size_t cap = (c->max + 1) * 44; /* two 20-digit numbers a line */
	struct sink k = {.dst = malloc(cap + 1), .cap = cap};
	char *line, *save = NULL;
	int rc;

	if (s->p) {
		free(k.dst);
		return thin_admin_diff(s->p, s->snap, s->vol, c->io->offset, c->io->len, add_range,
				       c, size, err);
	}
	if (!k.dst)
		return -ENOMEM;
	snprintf(a, sizeof(a), "%llu", (unsigned long long)c->io->offset);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)c->io->len);
	snprintf(m, sizeof(m), "%llu", (unsigned long long)c->max);
	rc = thin_control_call_fn(s->dir, 6, words, sink_out, &k, err);
	if (rc == 0 && k.got > cap)
		rc = np_errmsg(err, -EPROTO, "%s/control.sock: a longer answer than asked for",
			       s->dir);
	if (rc == 0)
		k.dst[k.got] = '\0';
	for (line = rc == 0 ? strtok_r(k.dst, "\n", &save) : NULL; line && rc == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long long x, y;

		if (line == k.dst && sscanf(line, "%llu", &x) == 1)
			*size = x;
		else if (sscanf(line, "%llu %llu", &x, &y) == 2)
			add_range(c, x, y);
		else
			rc = np_errmsg(err, -EPROTO, "%s/control.sock: bad line %s", s->dir, line);
	}
	free(k.dst);
	return rc;
}

/* ---- the endpoint */

static int since_extents(struct vc_ep *ep, struct np_io *io)
{
	struct since *s = ep->priv;
	struct collect c = {.io = io,
			    .pos = io->offset,
			    .max = (io->max_extents - 1) / 2,
			    .gap = s->snap ? VC_SKIP : NP_EXTENT_HOLE | NP_EXTENT_ZERO};
	uint64_t size;
	int rc;

	io->n_extents = 0;
	rc = ranges(s, &c, &size, NULL);
	if (rc < 0)
		return rc;
	/* Short of the cap, the window is walked to its end. */
	if (c.n < c.max && io->offset + io->len > c.pos)
		np_io_add_extent(io, io->offset + io->len - c.pos, c.gap);
	return 0;
}

static int since_read(struct vc_ep *ep, void *buf, uint64_t len, uint64_t off)
{
	struct since *s = ep->priv;

	while (len > 0) {
		uint64_t n = len > THIN_READ_MAX ? THIN_READ_MAX : len;
		char a[24], b[24], *words[] = {"read", (char *)s->vol, a, b};
		/* The answer is the bytes, then a newline. */
		struct sink k = {.dst = buf, .cap = n};
		int rc;

		char *err = NULL;

		if (s->p) {
			rc = thin_admin_read(s->p, s->vol, buf, n, off, &err);
		} else {
			snprintf(a, sizeof(a), "%llu", (unsigned long long)off);
			snprintf(b, sizeof(b), "%llu", (unsigned long long)n);
			rc = thin_control_call_fn(s->dir, 4, words, sink_out, &k, &err);
			if (rc == 0 && (k.got != n + 1 || k.last != '\n'))
				rc = -EPROTO;
		}
		if (err) /* the copy's message names it */
			snprintf(ep->msg, sizeof(ep->msg), "%s", err);
		free(err);
		if (rc < 0)
			return rc;
		buf = (char *)buf + n;
		off += n;
		len -= n;
	}
	return 0;
}

static int since_none(struct vc_ep *ep)
{
	(void)ep;
	return -EROFS;
}

static void since_close(struct vc_ep *ep)
{
	free(ep->priv);
	ep->priv = NULL;
}

static const struct vc_ep_ops since_ops = {
    .extents = since_extents,
    .read = since_read,
    .flush = since_none,
    .close = since_close,
};

int vc_since_open(struct vc_ep *ep, struct thin_pool *p, const char *dir, const char *snap,
		  const char *vol, char **err)
{
	struct since *s = calloc(1, sizeof(*s));
	struct np_extent one;
	struct np_io io = {.offset = 0, .len = 1, .extents = &one, .max_extents = 1};
	struct collect c = {.io = &io, .max = 1};
	uint64_t size = 0;
	int rc;

	if (!s)
		return -ENOMEM;
	*s = (struct since){.p = p, .dir = dir, .snap = snap, .vol = vol};
	/* A first question checks both names and learns the size. */
	rc = ranges(s, &c, &size, err);
	if (rc < 0) {
		free(s);
		return rc;
	}
	ep->ops = &since_ops;
	ep->priv = s;
	ep->size = size;
	return 0;
}
