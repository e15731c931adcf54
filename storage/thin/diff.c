/* Thin pools: changed chunks and allocation depth (diff.h).
 *
 * Both walks read the maps of some levels of a chain in rounds. A round
 * reads each level from the current chunk on, at most walk_cap() entries
 * of it (one RocksDB seek and a scan); a level that had more ends the
 * round at its last entry read, and the entries before that end are merged
 * (the topmost level's entry wins a chunk) and handed on in order. Memory
 * is bounded by WALK_TOTAL entries whatever the range, and time by the
 * entries in the range plus one seek per level and round. Chunks no level
 * maps cost nothing: a sparse terabyte is walked in one round. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "storage/thin/diff.h"

#define WALK_TOTAL 65536 /* entries held by one round, over all levels */

int thin_chain_of(struct thin_pool *p, const struct thin_dev *d, struct thin_level **chain,
		  unsigned *n)
{
	uint64_t limit = (d->r.size + p->meta.chunk_size - 1) >> p->chunk_shift;
	struct thin_level *c = calloc(p->ndevs ? p->ndevs : 1, sizeof(*c));
	unsigned k = 0;

	if (!c)
		return -ENOMEM;
	/* The device graph is a forest; k bounds the walk should a corrupt
	 * record make a cycle. */
	while (d && k < p->ndevs) {
		c[k].dev = d->id;
		c[k].limit = limit;
		k++;
		if (!d->r.base)
			break;
		if (d->r.base_limit < limit)
			limit = d->r.base_limit;
		d = thin_dev_get(p, d->r.base);
	}
	*chain = c;
	*n = k;
	return 0;
}

unsigned thin_chain_find(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
			 const char *name)
{
	for (unsigned l = 1; l < nchain; l++) {
		const struct thin_dev *d = thin_dev_get(p, chain[l].dev);

		if (d && d->r.kind == THIN_SNAPSHOT && strcmp(d->r.name, name) == 0)
			return l;
	}
	return 0;
}

/* ---- the walk over some levels' maps */

struct ent {
	uint64_t lc, pc;
	unsigned level;
};

struct collect {
	struct ent *e;
	size_t n;
	size_t level_n, cap;
	unsigned level;
	uint64_t last;
};

static int collect_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	struct collect *c = ctx;

	c->e[c->n++] = (struct ent){lc, pc, c->level};
	c->last = lc;
	return ++c->level_n == c->cap;
}

static int ent_cmp(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;

	if (x->lc != y->lc)
		return x->lc < y->lc ? -1 : 1;
	return x->level < y->level ? -1 : x->level > y->level;
}

typedef int (*walk_fn)(void *ctx, uint64_t lc, unsigned level, uint64_t pc);

/* Calls fn, in chunk order, for every chunk of [first, end) that one of
 * levels [0, nlevels) maps or tombstones, with the topmost such entry.
 * With stop, only one round: *stop says where it ended. */
static int walk(struct thin_pool *p, const struct thin_level *chain, unsigned nlevels,
		uint64_t first, uint64_t end, walk_fn fn, void *ctx, uint64_t *stop)
{
	struct collect c = {.cap = nlevels ? WALK_TOTAL / nlevels : 1};
	uint64_t pos = first;
	int rc = 0;

	if (stop)
		*stop = end;
	if (nlevels == 0 || first >= end)
		return 0;
	if (c.cap < 16)
		c.cap = 16;
	c.e = malloc(c.cap * nlevels * sizeof(*c.e));
	if (!c.e)
		return -ENOMEM;
	while (pos < end && rc == 0) {
		uint64_t frontier = end, prev = UINT64_MAX;

		c.n = 0;
		for (unsigned l = 0; l < nlevels && rc == 0; l++) {
			uint64_t lim = end < chain[l].limit ? end : chain[l].limit;

			if (pos >= lim)
				continue;
			c.level = l;
			c.level_n = 0;
			rc = thin_map_each(p, chain[l].dev, pos, lim, collect_cb, &c);
			if (rc > 0)
				rc = 0;
			if (c.level_n == c.cap && c.last + 1 < frontier)
				frontier = c.last + 1;
		}
		if (rc < 0)
			break;
		qsort(c.e, c.n, sizeof(*c.e), ent_cmp);
		for (size_t i = 0; i < c.n && rc == 0; i++) {
			if (c.e[i].lc >= frontier)
				break;
			if (c.e[i].lc == prev)
				continue; /* a lower level's entry, hidden */
			prev = c.e[i].lc;
			rc = fn(ctx, c.e[i].lc, c.e[i].level, c.e[i].pc);
		}
		pos = frontier;
		if (stop) {
			*stop = frontier;
			break;
		}
	}
	free(c.e);
	return rc;
}

/* ---- runs of equal values */

struct runs {
	thin_run_cb cb;
	void *ctx;
	uint64_t start, n, pos;
	uint32_t value;
};

static int run_add(struct runs *r, uint64_t first, uint64_t n, uint32_t value)
{
	int rc = 0;

	if (n == 0)
		return 0;
	if (r->n && r->value == value && r->start + r->n == first) {
		r->n += n;
	} else {
		if (r->n)
			rc = r->cb(r->ctx, r->start, r->n, r->value);
		r->start = first;
		r->n = n;
		r->value = value;
	}
	r->pos = first + n;
	return rc;
}

static int run_end(struct runs *r, int rc)
{
	if (rc == 0 && r->n)
		rc = r->cb(r->ctx, r->start, r->n, r->value);
	return rc;
}

/* ---- changed chunks */

struct dirty {
	struct runs r;
	struct thin_pool *p;
	const struct thin_level *below; /* the snapshot's levels */
	unsigned nbelow;
};

/* Whether the levels of a snapshot read data at lc (1), or zeroes (0). */
static int has_data(struct thin_pool *p, const struct thin_level *lv, unsigned n, uint64_t lc)
{
	for (unsigned l = 0; l < n && lc < lv[l].limit; l++) {
		uint8_t key[17];
		size_t vlen;
		char *e = NULL, *val;
		uint64_t pc;

		thin_key_map(key, lv[l].dev, lc);
		val = rocksdb_get(p->db, p->ro, (char *)key, 17, &vlen, &e);
		if (e) {
			free(e);
			free(val);
			return -EIO;
		}
		if (val && vlen == 8) {
			memcpy(&pc, val, 8);
			free(val);
			return pc != THIN_TOMBSTONE;
		}
		free(val);
	}
	return 0;
}

static int dirty_entry(void *ctx, uint64_t lc, unsigned level, uint64_t pc)
{
	struct dirty *d = ctx;
	uint32_t v = THIN_DIRTY;
	int rc = run_add(&d->r, d->r.pos, lc - d->r.pos, 0);

	(void)level;
	/* A tombstone over zeroes changed nothing: a trim of a chunk that
	 * was never written below. */
	if (rc == 0 && pc == THIN_TOMBSTONE) {
		rc = has_data(d->p, d->below, d->nbelow, lc);
		v = rc > 0 ? THIN_DIRTY : 0;
		rc = rc < 0 ? rc : 0;
	}
	return rc ? rc : run_add(&d->r, lc, 1, v);
}

int thin_dirty_runs(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
		    unsigned j, uint64_t first, uint64_t end, thin_run_cb cb, void *ctx,
		    uint64_t *next)
{
	struct dirty d = {.r = {.cb = cb, .ctx = ctx, .pos = first},
			  .p = p,
			  .below = chain + j,
			  .nbelow = nchain - j};
	/* Past what the snapshot's level shows through (a shrink, then a
	 * grow), the volume reads only its own levels: called changed. */
	uint64_t shown = j < nchain ? chain[j].limit : 0, mid = end < shown ? end : shown;
	int rc = 0;

	if (mid > first)
		rc = walk(p, chain, j, first, mid, dirty_entry, &d, next);
	if (next && mid > first && *next < mid) {
		/* One round, which ended short of mid. */
		if (rc == 0 && *next > d.r.pos)
			rc = run_add(&d.r, d.r.pos, *next - d.r.pos, 0);
		return run_end(&d.r, rc);
	}
	if (next)
		*next = end;
	if (rc == 0 && mid > d.r.pos)
		rc = run_add(&d.r, d.r.pos, mid - d.r.pos, 0);
	if (rc == 0 && end > d.r.pos)
		rc = run_add(&d.r, d.r.pos, end - d.r.pos, THIN_DIRTY);
	return run_end(&d.r, rc);
}

/* ---- allocation depth */

static int depth_entry(void *ctx, uint64_t lc, unsigned level, uint64_t pc)
{
	struct runs *r = ctx;
	int rc = run_add(r, r->pos, lc - r->pos, 0);

	return rc ? rc : run_add(r, lc, 1, pc == THIN_TOMBSTONE ? 0 : level + 1);
}

int thin_depth_runs(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
		    uint64_t first, uint64_t end, thin_run_cb cb, void *ctx, uint64_t *next)
{
	struct runs r = {.cb = cb, .ctx = ctx, .pos = first};
	uint64_t stop = end;
	int rc = walk(p, chain, nchain, first, end, depth_entry, &r, next ? &stop : NULL);

	if (next)
		*next = stop;
	if (rc == 0 && stop > r.pos)
		rc = run_add(&r, r.pos, stop - r.pos, 0);
	return run_end(&r, rc);
}

/* ---- the engine's contexts */

int thin_vol_contexts(struct thin_vol *v, char ***names, size_t *n)
{
	struct thin_pool *p = v->pool;
	char **a;
	size_t k = 0;
	int rc = 0;

	pthread_rwlock_rdlock(&p->io_lock);
	a = calloc(v->nchain + 1, sizeof(*a));
	if (a && !(a[k++] = strdup(THIN_CTX_DEPTH)))
		rc = -ENOMEM;
	for (unsigned l = 1; a && rc == 0 && l < v->nchain; l++) {
		const struct thin_dev *d = thin_dev_get(p, v->chain[l].dev);
		size_t len;

		if (!d || d->r.kind != THIN_SNAPSHOT)
			continue;
		len = strlen(THIN_CTX_DIRTY_PREFIX) + strlen(d->r.name) + 1;
		a[k] = malloc(len);
		if (!a[k]) {
			rc = -ENOMEM;
			break;
		}
		snprintf(a[k++], len, "%s%s", THIN_CTX_DIRTY_PREFIX, d->r.name);
	}
	pthread_rwlock_unlock(&p->io_lock);
	if (!a || rc < 0) {
		for (size_t i = 0; a && i < k; i++)
			free(a[i]);
		free(a);
		return -ENOMEM;
	}
	*names = a;
	*n = k;
	return 0;
}

struct ext_ctx {
	struct np_io *io;
	uint64_t off, end;
	uint32_t shift;
};

/* Chunks to bytes, clipped to the request. */
static int ext_cb(void *ctx, uint64_t first, uint64_t n, uint32_t value)
{
	struct ext_ctx *x = ctx;
	uint64_t a = first << x->shift, b = (first + n) << x->shift;

	if (a < x->off)
		a = x->off;
	if (b > x->end)
		b = x->end;
	return b > a && !np_io_add_extent(x->io, b - a, value);
}

int thin_vol_context_extents(struct thin_vol *v, struct np_io *io)
{
	struct thin_pool *p = v->pool;
	uint64_t size = __atomic_load_n(&v->size, __ATOMIC_RELAXED);
	struct ext_ctx x = {.io = io, .off = io->offset, .shift = p->chunk_shift};
	const char *ctx = io->context;
	uint64_t first, end;
	int rc;

	x.end = io->offset + io->len > size ? size : io->offset + io->len;
	if (x.end <= x.off)
		return 0;
	first = x.off >> p->chunk_shift;
	end = ((x.end - 1) >> p->chunk_shift) + 1;
	pthread_rwlock_rdlock(&p->io_lock);
	if (strcmp(ctx, THIN_CTX_DEPTH) == 0) {
		rc = thin_depth_runs(p, v->chain, v->nchain, first, end, ext_cb, &x, NULL);
	} else if (strncmp(ctx, THIN_CTX_DIRTY_PREFIX, strlen(THIN_CTX_DIRTY_PREFIX)) == 0) {
		/* By name at each request: a snapshot deleted since the
		 * handshake is an error, not a stale answer. */
		unsigned j =
		    thin_chain_find(p, v->chain, v->nchain, ctx + strlen(THIN_CTX_DIRTY_PREFIX));

		rc = j ? thin_dirty_runs(p, v->chain, v->nchain, j, first, end, ext_cb, &x, NULL)
		       : -EINVAL;
	} else {
		rc = -EINVAL;
	}
	pthread_rwlock_unlock(&p->io_lock);
	return rc < 0 ? rc : 0;
}

/* ---- the administration API (thin_admin.h) */

struct range_ctx {
	thin_range_cb cb;
	void *ctx;
	uint64_t off, end;
	uint32_t shift;
};

static int range_cb(void *ctx, uint64_t first, uint64_t n, uint32_t value)
{
	struct range_ctx *r = ctx;
	uint64_t a = first << r->shift, b = (first + n) << r->shift;

	if (!value) /* clean, or no data */
		return 0;
	if (a < r->off)
		a = r->off;
	if (b > r->end)
		b = r->end;
	return b > a ? r->cb(r->ctx, a, b - a) : 0;
}

/* One window of thin_admin_diff, under io_lock: the chain is found again
 * for each, since a catalog change may come between two. */
static int diff_window(struct thin_pool *p, const char *from, const char *to, uint64_t first,
		       uint64_t end, struct range_ctx *r, uint64_t *size, uint64_t *next,
		       char **err)
{
	struct thin_level *chain = NULL;
	const struct thin_dev *d;
	unsigned nchain = 0, j;
	int rc;

	pthread_rwlock_rdlock(&p->io_lock);
	d = thin_dev_find(p, to);
	if (!d) {
		rc = np_errmsg(err, -ENOENT, "%s: no volume or snapshot %s", p->dir, to);
		goto out;
	}
	*size = d->r.size;
	rc = thin_chain_of(p, d, &chain, &nchain);
	if (rc < 0)
		goto out;
	j = from ? thin_chain_find(p, chain, nchain, from) : 0;
	if (from && !j) {
		rc = np_errmsg(err, -EINVAL,
			       "%s: %s is not a snapshot that %s comes from (see volume list's "
			       "origins)",
			       p->dir, from, to);
		goto out;
	}
	*next = end;
	if (end > first && from)
		rc = thin_dirty_runs(p, chain, nchain, j, first, end, range_cb, r, next);
	else if (end > first)
		rc = thin_depth_runs(p, chain, nchain, first, end, range_cb, r, next);
	if (rc < 0 && rc != -ENOMEM)
		rc =
		    np_errmsg(err, rc, "%s: reading the maps of %s: %s", p->dir, to, strerror(-rc));
out:
	pthread_rwlock_unlock(&p->io_lock);
	free(chain);
	return rc;
}

int thin_admin_diff(struct thin_pool *p, const char *from, const char *to, uint64_t off,
		    uint64_t len, thin_range_cb cb, void *ctx, uint64_t *size, char **err)
{
	struct range_ctx r = {.cb = cb, .ctx = ctx, .off = off, .shift = p->chunk_shift};
	uint64_t first, end, next, now;
	int rc;

	/* The first window, empty, checks the names and learns the size. */
	rc = diff_window(p, from, to, 0, 0, &r, size, &next, err);
	if (rc < 0)
		return rc;
	r.end = off >= *size ? off : len > *size - off ? *size : off + len;
	if (r.end <= r.off)
		return 0;
	first = r.off >> p->chunk_shift;
	end = ((r.end - 1) >> p->chunk_shift) + 1;
	/* One round of the walk (at most WALK_TOTAL entries) per hold of
	 * io_lock, so that a catalog change (which takes it exclusive, and
	 * which I/O then queues behind) never waits for a whole walk of a
	 * large volume, while a sparse one is still walked at once. */
	while (first < end && rc == 0) {
		rc = diff_window(p, from, to, first, end, &r, &now, &next, err);
		first = next;
	}
	return rc > 0 ? 0 : rc;
}

struct print_ctx {
	FILE *out;
	bool json;
	uint64_t n, pending_off, pending_len;
};

/* Ranges come in runs of chunks already merged, except across rounds of
 * the walk: neighbours are joined here. */
static void print_range(struct print_ctx *c)
{
	if (!c->pending_len)
		return;
	if (c->json)
		fprintf(c->out, "%s{\"offset\": %llu, \"length\": %llu}", c->n ? ",\n" : "[\n",
			(unsigned long long)c->pending_off, (unsigned long long)c->pending_len);
	else
		fprintf(c->out, "%llu %llu\n", (unsigned long long)c->pending_off,
			(unsigned long long)c->pending_len);
	c->n++;
}

static int print_cb(void *ctx, uint64_t off, uint64_t len)
{
	struct print_ctx *c = ctx;

	if (c->pending_len && c->pending_off + c->pending_len == off) {
		c->pending_len += len;
		return 0;
	}
	print_range(c);
	c->pending_off = off;
	c->pending_len = len;
	return 0;
}

int thin_admin_print_diff(struct thin_pool *p, const char *from, const char *to, bool json,
			  FILE *out, char **err)
{
	struct print_ctx c = {.out = out, .json = json};
	uint64_t size;
	int rc = thin_admin_diff(p, from, to, 0, UINT64_MAX, print_cb, &c, &size, err);

	if (rc < 0)
		return rc;
	print_range(&c);
	if (json)
		fputs(c.n ? "\n]\n" : "[]\n", out);
	return 0;
}

int thin_admin_read(struct thin_pool *p, const char *name, void *buf, uint64_t len, uint64_t off,
		    char **err)
{
	char spec[PATH_MAX + THIN_NAME_MAX + 2];
	void *h;
	int rc;

	if (len > THIN_READ_MAX)
		return np_errmsg(err, -EINVAL, "read of %llu bytes: at most %u at once",
				 (unsigned long long)len, THIN_READ_MAX);
	snprintf(spec, sizeof(spec), "%s/%s", p->dir, name);
	/* Opened like an export (sharing this process's pool), so that a
	 * catalog change meanwhile refreshes its chain, but beside a server's
	 * export of it: backups read live volumes. */
	rc = thin_open_uncached(spec, &h, err);
	if (rc < 0)
		return rc;
	if (off > np_storage_thin.get_size(h) || len > np_storage_thin.get_size(h) - off)
		rc = np_errmsg(err, -EINVAL, "%s: read past the end", spec);
	else
		rc = np_storage_thin.pread(h, buf, len, off);
	if (rc < 0 && err && !*err)
		np_errmsg(err, rc, "%s: reading at %llu: %s", spec, (unsigned long long)off,
			  strerror(-rc));
	np_storage_thin.close(h);
	return rc;
}
