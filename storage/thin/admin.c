/* Thin pools: the typed administration API of thin_admin.h (create,
 * resize, snapshot, clone, delete, list, check, space). The control socket
 * and `nbdplex volume` both call it. Every change is one synced write
 * batch, made under io_lock held exclusively, so I/O never sees half a
 * change. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "storage/thin/diff.h"
#include "storage/thin/pool.h"
#include "util/size.h"

static uint64_t chunks_of(struct thin_pool *p, uint64_t bytes)
{
	return (bytes + p->meta.chunk_size - 1) >> p->chunk_shift;
}

int thin_vol_refresh(struct thin_pool *p, struct thin_vol *v)
{
	struct thin_dev *d = thin_dev_find(p, v->name);

	if (!d)
		return -ENOENT;
	/* A new chain may turn what the volume owned into a base's chunks. */
	thin_vcache_clear(v);
	__atomic_store_n(&v->size, d->r.size, __ATOMIC_RELAXED);
	free(v->chain);
	v->chain = NULL;
	v->nchain = 0;
	return thin_chain_of(p, d, &v->chain, &v->nchain);
}

static int refresh_all(struct thin_pool *p)
{
	int rc = 0;

	for (struct thin_vol *v = p->vols; v; v = v->next)
		if (thin_vol_refresh(p, v) < 0)
			rc = -ENOMEM;
	return rc;
}

static int put_dev(struct thin_txn *t, const struct thin_dev *d)
{
	uint8_t key[9];

	thin_key_dev(key, d->id);
	return thin_txn_put_blob(t, key, 9, &d->r, sizeof(d->r));
}

static int put_meta(struct thin_pool *p, struct thin_txn *t)
{
	return thin_txn_put_blob(t, (const uint8_t *)"M", 1, &p->meta, thin_meta_len(&p->meta));
}

static int add_dev(struct thin_pool *p, const struct thin_dev *d)
{
	if (p->ndevs == p->capdevs) {
		size_t cap = p->capdevs ? p->capdevs * 2 : 16;
		void *n = realloc(p->devs, cap * sizeof(*p->devs));

		if (!n)
			return -ENOMEM;
		p->devs = n;
		p->capdevs = cap;
	}
	p->devs[p->ndevs++] = *d;
	return 0;
}

static void remove_dev(struct thin_pool *p, uint64_t id)
{
	for (size_t i = 0; i < p->ndevs; i++)
		if (p->devs[i].id == id) {
			p->devs[i] = p->devs[--p->ndevs];
			return;
		}
}

static bool is_open(struct thin_pool *p, const char *name)
{
	for (struct thin_vol *v = p->vols; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return true;
	return false;
}

static int count_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	(void)lc;
	if (pc != THIN_TOMBSTONE)
		++*(uint64_t *)ctx;
	return 0;
}

struct drop_ctx {
	struct thin_txn *t;
	uint64_t dev;
};

/* Unmaps an entry of ctx->dev and releases its chunk. */
static int drop_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	struct drop_ctx *c = ctx;
	uint8_t key[17];
	int rc = 0;

	thin_key_map(key, c->dev, lc);
	if (pc != THIN_TOMBSTONE)
		rc = thin_txn_free(c->t, pc);
	return rc ? rc : thin_txn_del(c->t, key, 17);
}

struct merge_ctx {
	struct thin_pool *p;
	struct thin_txn *t;
	uint64_t from, to, to_limit;
};

/* Moves an entry of a deleted snapshot into its only child, unless the child
 * overrides it or cannot see it. */
static int merge_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	struct merge_ctx *c = ctx;
	struct drop_ctx drop = {.t = c->t, .dev = c->from};
	uint8_t key[17];
	char *e = NULL, *v;
	size_t vlen;

	if (lc >= c->to_limit)
		return drop_cb(&drop, lc, pc);
	thin_key_map(key, c->to, lc);
	v = rocksdb_get(c->p->db, c->p->ro, (char *)key, 17, &vlen, &e);
	if (e) {
		free(e);
		return -EIO;
	}
	if (v) {
		free(v);
		return drop_cb(&drop, lc, pc);
	}
	if (thin_txn_put(c->t, key, 17, pc) < 0)
		return -ENOMEM;
	thin_key_map(key, c->from, lc);
	return thin_txn_del(c->t, key, 17);
}

static int check_size(uint64_t size, char **err)
{
	if (size == 0 || size > THIN_MAX_SIZE)
		return np_errmsg(err, -EINVAL, "size %llu: expected 1 byte to 4E",
				 (unsigned long long)size);
	return 0;
}

static int need_new_name(struct thin_pool *p, const char *name, char **err)
{
	if (!thin_name_ok(name))
		return np_errmsg(err, -EINVAL,
				 "name %s: use 1-%d of A-Z a-z 0-9 . _ -, not starting with . or -",
				 name, THIN_NAME_MAX);
	if (thin_dev_find(p, name))
		return np_errmsg(err, -EEXIST, "%s: %s already exists", p->dir, name);
	return 0;
}

static struct thin_dev *need(struct thin_pool *p, const char *name, int kind, char **err)
{
	struct thin_dev *d = thin_dev_find(p, name);

	if (!d) {
		np_errmsg(err, -ENOENT, "%s: no volume or snapshot named %s", p->dir, name);
		return NULL;
	}
	if (kind && (int)d->r.kind != kind) {
		np_errmsg(err, -EINVAL, "%s: %s is a %s, not a %s", p->dir, name,
			  d->r.kind == THIN_SNAPSHOT ? "snapshot" : "volume",
			  kind == THIN_SNAPSHOT ? "snapshot" : "volume");
		return NULL;
	}
	return d;
}

/* The arguments of one catalog change. */
struct change {
	const char *name, *other;
	uint64_t size;
};

static int cmd_create(struct thin_pool *p, const struct change *a, struct thin_txn *t, char **err)
{
	struct thin_dev d = {0};
	int rc = need_new_name(p, a->name, err);

	if (rc == 0)
		rc = check_size(a->size, err);
	if (rc < 0)
		return rc;
	d.r.size = a->size;
	d.id = p->meta.next_dev++;
	d.r.kind = THIN_VOLUME;
	snprintf(d.r.name, sizeof(d.r.name), "%s", a->name);
	if ((rc = put_dev(t, &d)) < 0 || (rc = put_meta(p, t)) < 0 || (rc = thin_commit(p, t)) < 0)
		return rc;
	return add_dev(p, &d);
}

static int cmd_snapshot(struct thin_pool *p, const struct change *a, struct thin_txn *t, char **err)
{
	struct thin_dev *vol = need(p, a->name, THIN_VOLUME, err);
	struct thin_dev snap, fresh = {0};
	int rc;

	if (!vol)
		return -EINVAL;
	rc = need_new_name(p, a->other, err);
	if (rc < 0)
		return rc;
	/* The volume's device becomes the snapshot, frozen; the volume
	 * continues in a new, empty device on top of it. */
	snap = *vol;
	snprintf(snap.r.name, sizeof(snap.r.name), "%s", a->other);
	snprintf(snap.r.origin, sizeof(snap.r.origin), "%s", a->name);
	snap.r.kind = THIN_SNAPSHOT;
	snap.r.nchildren++;
	fresh.id = p->meta.next_dev++;
	fresh.r.base = snap.id;
	fresh.r.base_limit = chunks_of(p, vol->r.size);
	fresh.r.size = vol->r.size;
	fresh.r.kind = THIN_VOLUME;
	memcpy(fresh.r.name, vol->r.name, sizeof(fresh.r.name));
	memcpy(fresh.r.origin, vol->r.origin, sizeof(fresh.r.origin));
	if ((rc = put_dev(t, &snap)) < 0 || (rc = put_dev(t, &fresh)) < 0 ||
	    (rc = put_meta(p, t)) < 0 || (rc = thin_commit(p, t)) < 0)
		return rc;
	*vol = snap;
	return add_dev(p, &fresh);
}

static int cmd_clone(struct thin_pool *p, const struct change *a, struct thin_txn *t, char **err)
{
	struct thin_dev *snap = need(p, a->name, THIN_SNAPSHOT, err);
	struct thin_dev d = {0}, s;
	int rc;

	if (!snap)
		return -EINVAL;
	rc = need_new_name(p, a->other, err);
	if (rc < 0)
		return rc;
	s = *snap;
	s.r.nchildren++;
	d.id = p->meta.next_dev++;
	d.r.base = s.id;
	d.r.base_limit = chunks_of(p, s.r.size);
	d.r.size = s.r.size;
	d.r.kind = THIN_VOLUME;
	snprintf(d.r.name, sizeof(d.r.name), "%s", a->other);
	snprintf(d.r.origin, sizeof(d.r.origin), "%s", a->name);
	if ((rc = put_dev(t, &s)) < 0 || (rc = put_dev(t, &d)) < 0 || (rc = put_meta(p, t)) < 0 ||
	    (rc = thin_commit(p, t)) < 0)
		return rc;
	*snap = s;
	return add_dev(p, &d);
}

static int cmd_resize(struct thin_pool *p, const struct change *a, struct thin_txn *t, char **err)
{
	struct thin_dev *vol = need(p, a->name, THIN_VOLUME, err);
	struct thin_dev d;
	uint64_t size = a->size, newc;
	int rc;

	if (!vol)
		return -EINVAL;
	rc = check_size(size, err);
	if (rc < 0)
		return rc;
	/* Growing is safe under I/O (this runs with io_lock held exclusively
	 * and every open volume is refreshed after); shrinking could race a
	 * write already checked against the old size. */
	if (size < vol->r.size && is_open(p, a->name))
		return np_errmsg(err, -EBUSY, "%s: %s is exported; stop the export to shrink it",
				 p->dir, a->name);
	d = *vol;
	newc = chunks_of(p, size);
	if (size > d.r.size && (d.r.size & (p->meta.chunk_size - 1))) {
		/* Bytes past the old end in its last chunk may hold data from
		 * before a shrink: zero them so that the new space reads as
		 * zeroes. */
		struct thin_vol v = {.pool = p};
		uint64_t end = chunks_of(p, d.r.size) << p->chunk_shift;

		snprintf(v.name, sizeof(v.name), "%s", d.r.name);
		rc = thin_vol_refresh(p, &v);
		if (rc == 0)
			rc = thin_write_locked(&v, NULL, (size < end ? size : end) - d.r.size,
					       d.r.size, 0, true);
		free(v.chain);
		if (rc < 0)
			return np_errmsg(err, rc, "%s: %s: cannot zero the tail: %s", p->dir,
					 a->name, strerror(-rc));
		d = *vol;
	}
	if (newc < chunks_of(p, d.r.size)) {
		struct drop_ctx c = {.t = t, .dev = d.id};

		rc = thin_map_each(p, d.id, newc, UINT64_MAX, drop_cb, &c);
		if (rc < 0)
			return rc;
		if (d.r.base_limit > newc)
			d.r.base_limit = newc;
	}
	d.r.size = size;
	if ((rc = put_dev(t, &d)) < 0 || (rc = thin_commit(p, t)) < 0)
		return rc;
	*vol = d;
	return 0;
}

static int cmd_delete(struct thin_pool *p, const struct change *a, struct thin_txn *t, char **err)
{
	struct thin_dev *d = need(p, a->name, 0, err);
	struct thin_dev gone, *child = NULL, *base;
	uint8_t key[9];
	int rc;

	if (!d)
		return -ENOENT;
	if (is_open(p, a->name))
		return np_errmsg(err, -EBUSY, "%s: %s is exported; stop the export to delete it",
				 p->dir, a->name);
	if (d->r.nchildren >= 2) {
		char *names = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&names, &len);

		for (size_t i = 0; f && i < p->ndevs; i++)
			if (p->devs[i].r.base == d->id)
				fprintf(f, " %s", p->devs[i].r.name);
		if (f)
			fclose(f);
		rc = np_errmsg(err, -EBUSY, "%s: cannot delete %s: %s depend on it:%s", p->dir,
			       a->name, "volumes", names ? names : "");
		free(names);
		return rc;
	}
	gone = *d;
	for (size_t i = 0; i < p->ndevs; i++)
		if (p->devs[i].r.base == gone.id)
			child = &p->devs[i];
	if (child) {
		/* Fold the snapshot into the one device that sees it. */
		struct merge_ctx c = {.p = p, .t = t, .from = gone.id, .to = child->id};
		struct thin_dev ch = *child;

		c.to_limit = ch.r.base_limit;
		rc = thin_map_each(p, gone.id, 0, UINT64_MAX, merge_cb, &c);
		if (rc < 0)
			return rc;
		ch.r.base = gone.r.base;
		if (gone.r.base_limit < ch.r.base_limit)
			ch.r.base_limit = gone.r.base_limit;
		if ((rc = put_dev(t, &ch)) < 0)
			return rc;
		thin_key_dev(key, gone.id);
		if ((rc = thin_txn_del(t, key, 9)) < 0 || (rc = thin_commit(p, t)) < 0)
			return rc;
		*child = ch;
		remove_dev(p, gone.id);
		return 0;
	}
	{
		struct drop_ctx c = {.t = t, .dev = gone.id};

		rc = thin_map_each(p, gone.id, 0, UINT64_MAX, drop_cb, &c);
	}
	if (rc < 0)
		return rc;
	base = gone.r.base ? thin_dev_get(p, gone.r.base) : NULL;
	if (base) {
		struct thin_dev b = *base;

		b.r.nchildren--;
		if ((rc = put_dev(t, &b)) < 0)
			return rc;
	}
	thin_key_dev(key, gone.id);
	if ((rc = thin_txn_del(t, key, 9)) < 0 || (rc = thin_commit(p, t)) < 0)
		return rc;
	if (base)
		base->r.nchildren--;
	remove_dev(p, gone.id);
	return 0;
}

static int cmp_dev(const void *a, const void *b)
{
	return strcmp(((const struct thin_dev *)a)->r.name, ((const struct thin_dev *)b)->r.name);
}

int thin_admin_list(struct thin_pool *p, struct thin_vol_info **vols, size_t *n,
		    struct thin_pool_info *info, char **err)
{
	struct thin_dev *devs;
	struct thin_vol_info *v = NULL;
	size_t nd = 0;
	int rc;

	*vols = NULL;
	*n = 0;
	memset(info, 0, sizeof(*info));
	/* Listing counts every chunk of every map, which takes a while on a
	 * big pool: let I/O go on, since I/O never reads the device table and
	 * changes to it hold the lock exclusively. */
	pthread_rwlock_rdlock(&p->io_lock);
	devs = malloc((p->ndevs + 1) * sizeof(*devs));
	rc = thin_pool_space(p, &info->space);
	if (rc == 0 && devs) {
		/* Sorted in a copy: other readers of the table may run meanwhile. */
		nd = p->ndevs;
		if (nd) /* an empty pool has no table at all */
			memcpy(devs, p->devs, nd * sizeof(*devs));
		qsort(devs, nd, sizeof(*devs), cmp_dev);
		v = calloc(nd + 1, sizeof(*v));
	}
	if (rc == 0 && (!devs || !v))
		rc = -ENOMEM;
	for (size_t i = 0; i < nd && rc == 0; i++) {
		struct thin_dev *d = &devs[i];
		uint64_t chunks = 0;

		rc = thin_map_each(p, d->id, 0, UINT64_MAX, count_cb, &chunks);
		snprintf(v[i].name, sizeof(v[i].name), "%s", d->r.name);
		if (d->r.origin[0] && thin_dev_find(p, d->r.origin))
			snprintf(v[i].origin, sizeof(v[i].origin), "%s", d->r.origin);
		v[i].snapshot = d->r.kind == THIN_SNAPSHOT;
		v[i].size = d->r.size;
		v[i].allocated = chunks * p->meta.chunk_size;
	}
	snprintf(info->dir, sizeof(info->dir), "%s", p->dir);
	info->chunk_size = p->meta.chunk_size;
	pthread_mutex_lock(&p->commit_mu);
	info->commits = p->ngroups;
	info->writes = p->ntxns;
	pthread_mutex_unlock(&p->commit_mu);
	pthread_rwlock_unlock(&p->io_lock);
	free(devs);
	if (rc < 0) {
		free(v);
		return np_errmsg(err, rc, "%s: list failed: %s", p->dir, strerror(-rc));
	}
	*vols = v;
	*n = nd;
	return 0;
}

static void print_list(FILE *out, const struct thin_vol_info *vols, size_t n,
		       const struct thin_pool_info *info)
{
	const struct thin_space *sp = &info->space;
	unsigned shift = (unsigned)__builtin_ctz(info->chunk_size);
	uint64_t used = sp->used >> shift, nchunks = sp->allocated >> shift;

	fprintf(out, "%-20s %-8s %14s %14s %s\n", "NAME", "TYPE", "SIZE", "ALLOCATED", "ORIGIN");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%-20s %-8s %14llu %14llu %s\n", vols[i].name,
			vols[i].snapshot ? "snapshot" : "volume", (unsigned long long)vols[i].size,
			(unsigned long long)vols[i].allocated,
			vols[i].origin[0] ? vols[i].origin : "-");
	fprintf(out,
		"# pool %s chunk_size %u chunks %llu used %llu free %llu commits %llu writes %llu "
		"bytes_used %llu bytes_allocated %llu bytes_max %llu limit %s data_file %llu\n",
		info->dir, info->chunk_size, (unsigned long long)nchunks, (unsigned long long)used,
		(unsigned long long)(nchunks - used), (unsigned long long)info->commits,
		(unsigned long long)info->writes, (unsigned long long)sp->used,
		(unsigned long long)sp->allocated, (unsigned long long)sp->max, sp->limit,
		(unsigned long long)sp->data_size);
}

int thin_admin_print_list(struct thin_pool *p, FILE *out, char **err)
{
	struct thin_vol_info *vols;
	struct thin_pool_info info;
	size_t n;
	int rc = thin_admin_list(p, &vols, &n, &info, err);

	if (rc == 0)
		print_list(out, vols, n, &info);
	free(vols);
	return rc;
}

struct check_ctx {
	struct thin_pool *p;
	uint64_t *seen;
	uint64_t mapped;
	int bad;
	FILE *out;
};

static int check_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	struct check_ctx *c = ctx;

	if (pc == THIN_TOMBSTONE)
		return 0;
	if (pc >= c->p->meta.nchunks || (c->seen[pc / 64] >> (pc % 64) & 1) ||
	    !(c->p->committed[pc / 64] >> (pc % 64) & 1)) {
		if (c->bad++ < 10)
			fprintf(c->out, "bad mapping: chunk %llu -> %llu\n", (unsigned long long)lc,
				(unsigned long long)pc);
		return 0;
	}
	c->seen[pc / 64] |= 1ULL << (pc % 64);
	c->mapped++;
	return 0;
}

/* Verifies that every mapped chunk is allocated exactly once and that
 * nothing else is allocated: the invariant a crash must not break. The
 * caller holds io_lock exclusively, so the pool does not grow meanwhile. */
int thin_check(struct thin_pool *p, FILE *out)
{
	struct check_ctx c = {.p = p, .out = out};
	uint64_t words = (p->meta.nchunks + 63) / 64, committed = 0;
	struct thin_space sp;
	int rc = thin_pool_space(p, &sp);

	if (rc < 0)
		return rc;
	/* Growth sizes the file before it records the chunks (pool.h). */
	if (sp.data_size < sp.allocated || sp.allocated > sp.max) {
		fprintf(out, "data file of %llu bytes, pool of %llu bytes, maximum %llu\n",
			(unsigned long long)sp.data_size, (unsigned long long)sp.allocated,
			(unsigned long long)sp.max);
		return -EUCLEAN;
	}

	c.seen = calloc(words, 8);
	if (!c.seen)
		return -ENOMEM;
	for (size_t i = 0; i < p->ndevs && rc == 0; i++)
		rc = thin_map_each(p, p->devs[i].id, 0, UINT64_MAX, check_cb, &c);
	for (uint64_t w = 0; w < words; w++)
		committed += __builtin_popcountll(p->committed[w]);
	free(c.seen);
	if (rc == 0 && (c.bad || committed != c.mapped)) {
		fprintf(out, "%d bad mappings; %llu chunks allocated, %llu mapped\n", c.bad,
			(unsigned long long)committed, (unsigned long long)c.mapped);
		rc = -EUCLEAN;
	}
	if (rc == 0)
		fprintf(out,
			"ok: %llu chunks mapped, %zu volumes and snapshots; %llu of %llu bytes "
			"allocated used\n",
			(unsigned long long)c.mapped, p->ndevs, (unsigned long long)sp.used,
			(unsigned long long)sp.allocated);
	return rc;
}

/* Runs one catalog change: under io_lock held exclusively, then every open
 * volume follows the new device table. */
static int change(struct thin_pool *p, const char *what,
		  int (*fn)(struct thin_pool *p, const struct change *a, struct thin_txn *t,
			    char **err),
		  const struct change *a, char **err)
{
	struct thin_txn t = {.sync = true};
	int rc;

	pthread_rwlock_wrlock(&p->io_lock);
	if (p->broken)
		rc = np_errmsg(err, -EIO, "%s: a metadata write failed; reopen the pool", p->dir);
	else
		rc = fn(p, a, &t, err);
	if (rc == 0)
		rc = refresh_all(p);
	else
		/* Whatever a failed change wrote, no cache keeps a mapping
		 * from before it. */
		for (struct thin_vol *v = p->vols; v; v = v->next)
			thin_vcache_clear(v);
	pthread_rwlock_unlock(&p->io_lock);
	thin_txn_reset(&t);
	if (rc < 0)
		np_errmsg(err, rc, "%s: %s failed: %s", p->dir, what, strerror(-rc));
	return rc;
}

int thin_admin_create(struct thin_pool *p, const char *name, uint64_t size, char **err)
{
	struct change a = {.name = name, .size = size};

	return change(p, "create", cmd_create, &a, err);
}

int thin_admin_resize(struct thin_pool *p, const char *name, uint64_t size, char **err)
{
	struct change a = {.name = name, .size = size};

	return change(p, "resize", cmd_resize, &a, err);
}

int thin_admin_snapshot(struct thin_pool *p, const char *vol, const char *snap, char **err)
{
	struct change a = {.name = vol, .other = snap};

	return change(p, "snapshot", cmd_snapshot, &a, err);
}

int thin_admin_clone(struct thin_pool *p, const char *snap, const char *vol, char **err)
{
	struct change a = {.name = snap, .other = vol};

	return change(p, "clone", cmd_clone, &a, err);
}

int thin_admin_delete(struct thin_pool *p, const char *name, char **err)
{
	struct change a = {.name = name};

	return change(p, "delete", cmd_delete, &a, err);
}

int thin_admin_check(struct thin_pool *p, FILE *report, char **err)
{
	int rc;

	pthread_rwlock_wrlock(&p->io_lock);
	if (p->broken)
		rc = np_errmsg(err, -EIO, "%s: a metadata write failed; reopen the pool", p->dir);
	else
		rc = thin_check(p, report);
	pthread_rwlock_unlock(&p->io_lock);
	if (rc < 0)
		np_errmsg(err, rc, "%s: inconsistent", p->dir);
	return rc;
}

int thin_admin_space(struct thin_pool *p, struct thin_space *s, char **err)
{
	int rc = thin_pool_space(p, s);

	return rc < 0 ? np_errmsg(err, rc, "%s: %s", p->dir, strerror(-rc)) : 0;
}

uint32_t thin_admin_chunk_size(const struct thin_pool *p)
{
	return p->meta.chunk_size;
}
