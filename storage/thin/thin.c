/* The thin storage engine: a volume of a thin pool, -e NAME=thin:POOLDIR/VOLUME.
 *
 * The data path resolves logical chunks through the volume's chain of
 * devices (pool.h), reads and writes the data file with pread/pwrite, and
 * queues mapping changes for group commit. A write lands in a chunk the
 * volume owns (in place) or in a freshly allocated one, and only then is its
 * mapping committed, so a crash leaves either the old mapping with the old
 * contents or the new mapping with the new contents. The chunks a volume
 * owns are cached per volume (struct thin_vol) so that I/O to written space
 * skips RocksDB; the cache holds committed mappings only and takes no part
 * in what a crash leaves. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/lib/memfile.h"
#include "storage/storage.h"
#include "storage/thin/diff.h"
#include "storage/thin/pool.h"
#include "util/fullio.h"

/* Chunks resolved per lookup; bounds the map array on the stack's behalf. */
#define WINDOW 4096
/* Chunks of a write whose state lives on the stack. */
#define SMALL 16

enum map_state {
	MAP_UNKNOWN,
	MAP_HOLE,
	MAP_OWNED,  /* mapped in the volume's own device: writable in place */
	MAP_SHARED, /* mapped in a base device: copy on write */
};

struct map {
	uint64_t pchunk;
	enum map_state state;
};

static void resolve(struct map *m, unsigned level, uint64_t val)
{
	if (m->state != MAP_UNKNOWN)
		return;
	if (val == THIN_TOMBSTONE) {
		m->state = MAP_HOLE;
		return;
	}
	m->pchunk = val;
	m->state = level == 0 ? MAP_OWNED : MAP_SHARED;
}

struct lookup_ctx {
	struct map *m;
	uint64_t first;
	unsigned level;
};

static int lookup_cb(void *ctx, uint64_t lc, uint64_t pc)
{
	struct lookup_ctx *c = ctx;

	resolve(&c->m[lc - c->first], c->level, pc);
	return 0;
}

/* The volume's mapping cache (struct thin_vol). Slots are accessed
 * atomically because readers of two chunks that share a slot hold its
 * stripe shared and may fill it at once; either value is right. */
_Static_assert(THIN_VCACHE_SLOTS % THIN_STRIPES == 0, "a slot must have one stripe");
_Static_assert((THIN_VCACHE_SLOTS & (THIN_VCACHE_SLOTS - 1)) == 0, "slots: a power of two");

static uint64_t *vcache_slot(struct thin_vol *v, uint64_t lc)
{
	return &v->vcache[lc & (THIN_VCACHE_SLOTS - 1)];
}

/* 0 when lc is too far out for the slot's 32-bit tag. */
static uint64_t vcache_tag(uint64_t lc)
{
	uint64_t tag = lc / THIN_VCACHE_SLOTS + 1;

	return tag >> 32 ? 0 : tag << 32;
}

static bool vcache_get(struct thin_vol *v, uint64_t lc, uint64_t *pc)
{
	uint64_t tag = vcache_tag(lc);
	uint64_t e = __atomic_load_n(vcache_slot(v, lc), __ATOMIC_RELAXED);

	if (!tag || (e & ~0xffffffffULL) != tag)
		return false;
	*pc = e & 0xffffffff;
	return true;
}

/* lc is now mapped to pc in the volume's own device. Pools have at most
 * 2^32 chunks (thin_pool_create), so pc fits the slot's low half. */
static void vcache_put(struct thin_vol *v, uint64_t lc, uint64_t pc)
{
	uint64_t tag = vcache_tag(lc);

	if (v->vcache && tag && pc <= 0xffffffff)
		__atomic_store_n(vcache_slot(v, lc), tag | pc, __ATOMIC_RELAXED);
}

/* lc is about to stop being mapped in the volume's own device. */
static void vcache_drop(struct thin_vol *v, uint64_t lc)
{
	uint64_t pc;

	if (v->vcache && vcache_get(v, lc, &pc))
		__atomic_store_n(vcache_slot(v, lc), 0, __ATOMIC_RELAXED);
}

void thin_vcache_clear(struct thin_vol *v)
{
	if (v->vcache)
		memset(v->vcache, 0, THIN_VCACHE_SLOTS * sizeof(*v->vcache));
}

/* Resolves chunks [first, first + n) of v, walking down the chain; the
 * caller holds io_lock shared. With locked, it also holds the chunks'
 * stripes, so that it may use and fill the cache: a lookup without them
 * could fill a slot with a mapping that a trim has just removed. */
static int lookup(struct thin_vol *v, uint64_t first, uint64_t n, struct map *m, bool locked)
{
	struct thin_pool *p = v->pool;
	bool cached = locked && v->vcache;
	uint8_t lo[17];
	char *e = NULL;
	int rc = 0;

	if (cached) {
		uint64_t i = 0;

		for (; i < n && vcache_get(v, first + i, &m[i].pchunk); i++)
			m[i].state = MAP_OWNED;
		if (i == n)
			return 0;
	}
	for (uint64_t i = 0; i < n; i++)
		m[i].state = MAP_UNKNOWN;
	for (unsigned l = 0; l < v->nchain; l++) {
		uint64_t end = first + n;

		if (end > v->chain[l].limit)
			end = v->chain[l].limit;
		if (end <= first)
			break;
		thin_key_map(lo, v->chain[l].dev, first);
		if (end - first == 1) {
			size_t vlen;
			char *val = rocksdb_get(p->db, p->ro, (char *)lo, 17, &vlen, &e);

			if (val && vlen == 8) {
				uint64_t pc;

				memcpy(&pc, val, 8);
				resolve(&m[0], l, pc);
			}
			free(val);
		} else {
			struct lookup_ctx c = {.m = m, .first = first, .level = l};

			rc = thin_map_each(p, v->chain[l].dev, first, end, lookup_cb, &c);
		}
		if (e) {
			free(e);
			rc = -EIO;
		}
		if (rc < 0)
			return rc;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (m[i].state == MAP_UNKNOWN)
			m[i].state = MAP_HOLE;
		else if (cached && m[i].state == MAP_OWNED)
			vcache_put(v, first + i, m[i].pchunk);
	}
	return 0;
}

/* Chunks lie within the data file, so its end is an error here. */
static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	int rc = np_pread_full(fd, buf, len, off, 0);

	return rc == -ENODATA ? -EIO : rc;
}

/* Writers of one chunk are serialised by a stripe lock, so that two partial
 * writes to a fresh or shared chunk do not both allocate and lose one. */
struct stripes {
	uint64_t bits[THIN_STRIPES / 64];
};

static unsigned stripe_of(uint64_t dev, uint64_t lc)
{
	return (lc + dev * 0x9E3779B97F4A7C15ULL) % THIN_STRIPES;
}

static void stripes_lock(struct thin_pool *p, struct stripes *s, uint64_t dev, uint64_t first,
			 uint64_t n, bool shared)
{
	memset(s, 0, sizeof(*s));
	for (uint64_t i = 0; i < n && i < THIN_STRIPES; i++) {
		unsigned k = stripe_of(dev, first + i);

		s->bits[k / 64] |= 1ULL << (k % 64);
	}
	if (n >= THIN_STRIPES)
		memset(s, 0xff, sizeof(*s));
	for (unsigned w = 0; w < THIN_STRIPES / 64; w++)
		for (uint64_t b = s->bits[w]; b; b &= b - 1) {
			pthread_rwlock_t *l = &p->stripes[w * 64 + __builtin_ctzll(b)];

			if (shared)
				pthread_rwlock_rdlock(l);
			else
				pthread_rwlock_wrlock(l);
		}
}

static void stripes_unlock(struct thin_pool *p, struct stripes *s)
{
	for (unsigned w = 0; w < THIN_STRIPES / 64; w++)
		for (uint64_t b = s->bits[w]; b; b &= b - 1)
			pthread_rwlock_unlock(&p->stripes[w * 64 + __builtin_ctzll(b)]);
}

/* cached: the volume keeps its mapping cache, and is the only handle of
 * its name in this process (an export). An uncached read-only handle may
 * sit beside one (thin_open_uncached). */
static int open_vol(const char *spec, bool readonly, bool cached, void **handle, char **err)
{
	const char *slash = strrchr(spec, '/');
	struct thin_pool *p;
	struct thin_dev *d;
	struct thin_vol *v;
	char dir[PATH_MAX];
	int rc;

	if (!slash || slash == spec || !thin_name_ok(slash + 1))
		return np_errmsg(err, -EINVAL, "thin:%s: expected POOLDIR/VOLUME", spec);
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - spec), spec);
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	snprintf(v->name, sizeof(v->name), "%s", slash + 1);
	v->readonly = readonly;
	v->vcache = cached ? calloc(THIN_VCACHE_SLOTS, sizeof(*v->vcache)) : NULL;
	if (cached && !v->vcache) {
		free(v);
		return -ENOMEM;
	}
	rc = thin_pool_open(dir, true, &p, err);
	if (rc < 0) {
		free(v->vcache);
		free(v);
		return rc;
	}
	v->pool = p;
	pthread_rwlock_wrlock(&p->io_lock);
	d = thin_dev_find(p, v->name);
	if (!d)
		rc = np_errmsg(err, -ENOENT, "%s: no volume %s", dir, v->name);
	else if (d->r.kind == THIN_SNAPSHOT && !readonly)
		rc = np_errmsg(err, -EROFS, "%s: %s is a snapshot; export it read-only or clone it",
			       dir, v->name);
	for (struct thin_vol *o = p->vols; o && rc == 0 && cached; o = o->next)
		if (strcmp(o->name, v->name) == 0)
			rc = np_errmsg(err, -EBUSY, "%s: %s is already exported", dir, v->name);
	if (rc == 0)
		rc = thin_vol_refresh(p, v);
	if (rc == 0) {
		v->next = p->vols;
		p->vols = v;
	}
	pthread_rwlock_unlock(&p->io_lock);
	if (rc < 0) {
		free(v->chain);
		free(v->vcache);
		free(v);
		thin_pool_close(p);
		return rc;
	}
	*handle = v;
	return 0;
}

static int thin_open(const char *spec, bool readonly, void **handle, char **err)
{
	return open_vol(spec, readonly, true, handle, err);
}

/* Without a mapping cache, a reader never holds a mapping that another
 * handle's write or trim changed, so it may share a served volume. */
int thin_open_uncached(const char *spec, void **handle, char **err)
{
	return open_vol(spec, true, false, handle, err);
}

static void thin_close(void *h)
{
	struct thin_vol *v = h;
	struct thin_pool *p = v->pool;

	pthread_rwlock_wrlock(&p->io_lock);
	for (struct thin_vol **vp = &p->vols; *vp; vp = &(*vp)->next)
		if (*vp == v) {
			*vp = v->next;
			break;
		}
	pthread_rwlock_unlock(&p->io_lock);
	free(v->chain);
	free(v->vcache);
	free(v);
	thin_pool_close(p);
}

static uint64_t thin_get_size(void *h)
{
	return __atomic_load_n(&((struct thin_vol *)h)->size, __ATOMIC_RELAXED);
}

/* RESIZE, as `nbdplex volume resize` would do it: one catalog
 * change under the pool's exclusive lock. An exported volume can grow;
 * shrinking it is refused while any export has it open. */
static int thin_resize(void *h, uint64_t size)
{
	struct thin_vol *v = h;
	char name[sizeof(v->name)];
	char *err = NULL;
	int rc;

	if (v->readonly)
		return -EPERM;
	/* A copy: the catalog change refreshes v under the pool's lock. */
	snprintf(name, sizeof(name), "%s", v->name);
	rc = thin_admin_resize(v->pool, name, size, &err);
	free(err);
	return rc;
}

static uint32_t thin_caps(void *h)
{
	struct thin_vol *v = h;
	uint32_t caps = NP_CAP_MULTI_CONN | NP_CAP_EXTENTS;

	if (!v->readonly)
		caps |= NP_CAP_WRITE | NP_CAP_FLUSH | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO |
			NP_CAP_FAST_ZERO | NP_CAP_RESIZE;
	return caps;
}

static int thin_pread(void *h, void *buf, uint64_t len, uint64_t off)
{
	struct thin_vol *v = h;
	struct thin_pool *p = v->pool;
	uint32_t cs = p->meta.chunk_size;
	uint64_t chunks =
	    len ? ((off + len - 1) >> p->chunk_shift) - (off >> p->chunk_shift) + 1 : 0;
	struct map mbuf[SMALL];
	struct map *m = chunks <= SMALL ? mbuf : malloc(WINDOW * sizeof(*m));
	struct stripes s;
	int rc = 0;

	if (!m)
		return -ENOMEM;
	pthread_rwlock_rdlock(&p->io_lock);
	while (len > 0 && rc == 0) {
		uint64_t first = off >> p->chunk_shift;
		uint64_t last = (off + len - 1) >> p->chunk_shift;
		uint64_t n = last - first + 1 > WINDOW ? WINDOW : last - first + 1;

		stripes_lock(p, &s, v->chain[0].dev, first, n, true);
		rc = lookup(v, first, n, m, true);
		for (uint64_t i = 0; i < n && len > 0 && rc == 0;) {
			uint64_t inoff = off & (cs - 1);
			uint64_t piece = cs - inoff < len ? cs - inoff : len;
			uint64_t j = i + 1, run = piece;

			if (m[i].state == MAP_HOLE) {
				memset(buf, 0, piece);
			} else {
				/* Physically consecutive chunks are read in one call. */
				while (j < n && run < len && m[j].state != MAP_HOLE &&
				       m[j].pchunk == m[i].pchunk + (j - i)) {
					run += len - run < cs ? len - run : cs;
					j++;
				}
				piece = run;
				rc = full_pread(p->data_fd, buf, piece,
						(m[i].pchunk << p->chunk_shift) + inoff);
			}
			buf = (char *)buf + piece;
			off += piece;
			len -= piece;
			i = m[i].state == MAP_HOLE ? i + 1 : j;
		}
		stripes_unlock(p, &s);
	}
	pthread_rwlock_unlock(&p->io_lock);
	if (m != mbuf)
		free(m);
	return rc;
}

/* A chunk-sized scratch buffer, allocated on first use: most writes need
 * none. */
static char *scratch(char **tmp, uint32_t cs)
{
	if (!*tmp)
		*tmp = malloc(cs);
	return *tmp;
}

/* Punches [at, at + len) of the data file, fresh chunks about to be
 * written. A fresh chunk may still hold what a volume that released it, or
 * a write cut short by a crash, left there. Punching it first puts the new
 * contents into a hole: until they reach the disk, a power loss shows
 * zeroes there, never the old data, even if a RocksDB flush has already
 * made the mapping durable. Before a partial write it also zeroes the rest
 * of the chunk without writing it, and it keeps a data file sparse. */
static bool punch_fresh(struct thin_pool *p, uint64_t at, uint64_t len)
{
	bool punched;

	if (__atomic_load_n(&p->no_punch, __ATOMIC_RELAXED))
		return false;
	punched = fallocate(p->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, len) == 0;
	/* e.g. a device without discard; any other failure leaves only these
	 * chunks to be written whole. */
	if (!punched && errno == EOPNOTSUPP)
		__atomic_store_n(&p->no_punch, true, __ATOMIC_RELAXED);
	return punched;
}

/* Queues the mapping of chunk lc to the fresh chunk newp. */
static int map_fresh(struct thin_vol *v, uint64_t lc, uint64_t newp, struct thin_txn *t)
{
	uint8_t key[17];
	int rc;

	thin_key_map(key, v->chain[0].dev, lc);
	rc = thin_txn_put(t, key, 17, newp);
	return rc ? rc : thin_txn_alloc(t, newp);
}

/* Set once copy_file_range fails for want of support: copies on write go
 * through a buffer from then on. */
static bool no_copy_range;

/* Copies len bytes of the data file from `from` to `to` in the kernel (a
 * shared extent where the file system can). */
static int copy_range(struct thin_pool *p, uint64_t from, uint64_t to, uint64_t len)
{
	loff_t in = (loff_t)from, out = (loff_t)to;

	while (len > 0) {
		ssize_t k = copy_file_range(p->data_fd, &in, p->data_fd, &out, len, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO; /* the data file ends inside a chunk */
		len -= (uint64_t)k;
	}
	return 0;
}

/* A partial write to the fresh chunk at `at` of a chunk that is shared (m)
 * or a hole not punched: the rest of the chunk comes from the shared one
 * or is zeroes. Data over a shared chunk: the kernel copies the chunk
 * (copy_file_range: no trip through a buffer, and a shared extent where
 * the file system can), then the piece goes over it. Otherwise, or where
 * the kernel cannot copy, the chunk is put together in a buffer. */
static int fill_write(struct thin_pool *p, const struct map *m, uint64_t at, const void *src,
		      uint64_t inoff, uint64_t n, char **tmpp)
{
	uint32_t cs = p->meta.chunk_size;
	char *tmp;
	int rc;

	if (m->state == MAP_SHARED && src && !__atomic_load_n(&no_copy_range, __ATOMIC_RELAXED)) {
		rc = copy_range(p, m->pchunk << p->chunk_shift, at, cs);
		if (rc == 0)
			return np_pwrite_full(p->data_fd, src, n, at + inoff, 0);
		if (rc != -EXDEV && rc != -EOPNOTSUPP && rc != -ENOSYS && rc != -EINVAL)
			return rc;
		__atomic_store_n(&no_copy_range, true, __ATOMIC_RELAXED);
	}
	if (!(tmp = scratch(tmpp, cs)))
		return -ENOMEM;
	if (m->state == MAP_SHARED)
		rc = full_pread(p->data_fd, tmp, cs, m->pchunk << p->chunk_shift);
	else
		rc = (memset(tmp, 0, cs), 0);
	if (rc < 0)
		return rc;
	if (src)
		memcpy(tmp + inoff, src, n);
	else
		memset(tmp + inoff, 0, n);
	return np_pwrite_full(p->data_fd, tmp, cs, at, 0);
}

/* Writes [inoff, inoff + n) of chunk lc from src (NULL: zeroes). A chunk
 * the volume does not own goes to newp, filled from the shared chunk or
 * zeroes around the piece; its mapping is queued in t. */
static int chunk_write(struct thin_vol *v, uint64_t lc, const struct map *m, const void *src,
		       uint64_t inoff, uint64_t n, uint64_t newp, struct thin_txn *t, char **tmpp)
{
	struct thin_pool *p = v->pool;
	uint32_t cs = p->meta.chunk_size;
	uint64_t at = (m->state == MAP_OWNED ? m->pchunk : newp) << p->chunk_shift;
	bool punched = m->state != MAP_OWNED && punch_fresh(p, at, cs);
	char *tmp;
	int rc;

	if (m->state == MAP_OWNED || (n == cs && src)) {
		if (!src) {
			if (!(tmp = scratch(tmpp, cs)))
				return -ENOMEM;
			memset(tmp, 0, n);
			src = tmp;
		}
		rc = np_pwrite_full(p->data_fd, src, n, at + inoff, 0);
		if (rc < 0 || m->state == MAP_OWNED)
			return rc;
	} else if (m->state == MAP_HOLE && punched) {
		rc = src ? np_pwrite_full(p->data_fd, src, n, at + inoff, 0) : 0;
	} else {
		rc = fill_write(p, m, at, src, inoff, n, tmpp);
	}
	return rc < 0 ? rc : map_fresh(v, lc, newp, t);
}

/* The whole chunks from i on that a write of src replaces in fresh chunks
 * lying next to each other in the data file: how many, 1 if none. What
 * they held is not read (a whole chunk is overwritten), so the run takes
 * one punch and one write. */
static uint64_t fresh_run(const struct map *m, const uint64_t *fresh, uint64_t i, uint64_t n,
			  uint64_t k, uint64_t whole)
{
	uint64_t r = 1;

	while (r < whole && i + r < n && m[i + r].state != MAP_OWNED &&
	       m[i + r].state != MAP_UNKNOWN && fresh[k + r] == fresh[k] + r)
		r++;
	return r;
}

/* Writes r whole chunks from src to the fresh chunks newp.. newp + r - 1,
 * first lc, and queues their mappings in t. */
static int run_write(struct thin_vol *v, uint64_t lc, uint64_t r, const void *src, uint64_t newp,
		     struct thin_txn *t)
{
	struct thin_pool *p = v->pool;
	uint64_t at = newp << p->chunk_shift;
	int rc;

	punch_fresh(p, at, r << p->chunk_shift);
	rc = np_pwrite_full(p->data_fd, src, r << p->chunk_shift, at, 0);
	for (uint64_t j = 0; j < r && rc == 0; j++)
		rc = map_fresh(v, lc + j, newp + j, t);
	return rc;
}

/* The caller holds io_lock shared. Writes one window of chunks, all of whose
 * stripes it locks. */
static int write_window(struct thin_vol *v, const void *buf, uint64_t len, uint64_t off, bool fua,
			bool skip_holes)
{
	struct thin_pool *p = v->pool;
	uint32_t cs = p->meta.chunk_size;
	uint64_t first = off >> p->chunk_shift;
	uint64_t n = ((off + len - 1) >> p->chunk_shift) - first + 1;
	struct thin_txn t = {.sync = fua};
	struct stripes s;
	/* Most writes span a few chunks: keep their state off the heap. */
	struct map mbuf[SMALL];
	uint64_t fbuf[SMALL];
	struct map *m = n <= SMALL ? mbuf : malloc(n * sizeof(*m));
	uint64_t *fresh = n <= SMALL ? fbuf : malloc(n * sizeof(*fresh));
	char *tmp = NULL;
	uint64_t need = 0, used = 0;
	bool big = p->data_in_memory && len >= NP_BIG_WRITE;
	int rc;

	if (!m || !fresh) {
		rc = -ENOMEM;
		goto out_free;
	}
	stripes_lock(p, &s, v->chain[0].dev, first, n, false);
	rc = lookup(v, first, n, m, true);
	/* Zeroing the edges of a trim leaves holes alone: they read as zeroes. */
	for (uint64_t i = 0; i < n && rc == 0; i++)
		if (skip_holes && m[i].state == MAP_HOLE)
			m[i].state = MAP_UNKNOWN;
		else
			need += m[i].state != MAP_OWNED;
	if (rc == 0 && need)
		rc = thin_alloc(p, need, fresh);
	if (rc < 0) {
		need = 0;
		goto out_unlock;
	}
	/* The data only: the commit below needs no turn at the file. */
	if (big)
		pthread_mutex_lock(&p->big_write);
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		uint64_t inoff = off & (cs - 1);
		uint64_t piece = cs - inoff < len ? cs - inoff : len;
		uint64_t newp;

		uint64_t r = 1;

		if (m[i].state != MAP_UNKNOWN && m[i].state != MAP_OWNED && buf && inoff == 0)
			r = fresh_run(m, fresh, i, n, used, len >> p->chunk_shift);
		if (r > 1) {
			rc = run_write(v, first + i, r, buf, fresh[used], &t);
			used += r;
			piece = r << p->chunk_shift;
			i += r - 1;
		} else if (m[i].state != MAP_UNKNOWN) {
			newp = m[i].state == MAP_OWNED ? 0 : fresh[used++];
			rc = chunk_write(v, first + i, &m[i], buf, inoff, piece, newp, &t, &tmp);
		}
		if (buf)
			buf = (const char *)buf + piece;
		off += piece;
		len -= piece;
	}
	if (big)
		pthread_mutex_unlock(&p->big_write);
	if (rc == 0 && (t.nops || fua))
		rc = thin_commit(p, &t);
	if (rc < 0 && !p->broken)
		thin_unalloc(p, fresh, need);
	/* The fresh chunks' mappings are committed: cache them. */
	for (uint64_t i = 0, k = 0; i < n && rc == 0; i++)
		if (m[i].state == MAP_HOLE || m[i].state == MAP_SHARED)
			vcache_put(v, first + i, fresh[k++]);
out_unlock:
	stripes_unlock(p, &s);
out_free:
	thin_txn_reset(&t);
	if (m != mbuf)
		free(m);
	if (fresh != fbuf)
		free(fresh);
	free(tmp);
	return rc;
}

static uint64_t window_bytes(struct thin_pool *p, uint64_t len, uint64_t off)
{
	uint64_t end = ((off >> p->chunk_shift) + WINDOW) << p->chunk_shift;

	return end - off < len ? end - off : len;
}

int thin_write_locked(struct thin_vol *v, const void *buf, uint64_t len, uint64_t off,
		      uint32_t flags, bool skip_holes)
{
	struct thin_pool *p = v->pool;
	int rc = 0;

	while (len > 0 && rc == 0) {
		uint64_t piece = window_bytes(p, len, off);

		rc = p->broken ? -EIO
			       : write_window(v, buf, piece, off, flags & NP_IO_FUA, skip_holes);
		if (buf)
			buf = (const char *)buf + piece;
		off += piece;
		len -= piece;
	}
	return rc;
}

static int do_write(struct thin_vol *v, const void *buf, uint64_t len, uint64_t off, uint32_t flags,
		    bool skip_holes)
{
	int rc;

	if (v->readonly)
		return -EROFS;
	pthread_rwlock_rdlock(&v->pool->io_lock);
	rc = thin_write_locked(v, buf, len, off, flags, skip_holes);
	pthread_rwlock_unlock(&v->pool->io_lock);
	return rc;
}

static int thin_pwrite(void *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	return do_write(h, buf, len, off, flags, false);
}

static int thin_flush(void *h)
{
	struct thin_vol *v = h;
	struct thin_txn t = {.sync = true};

	return thin_commit(v->pool, &t);
}

/* A READ or a WRITE without FUA inside one chunk the volume owns, per the
 * cache, on a data file in memory: done at once, or -EAGAIN. Nothing here
 * waits: the stripe is only tried, and the data file's page cache is its
 * storage. Such a WRITE changes no mapping (write_window writes an owned
 * chunk in place and commits nothing); FUA goes to the pool, where the
 * commit makes the mapping durable too. */
static int owned_nowait(struct thin_vol *v, struct np_io *io)
{
	struct thin_pool *p = v->pool;
	uint64_t lc = io->offset >> p->chunk_shift, at, pc;
	bool rd = io->op == NP_OP_READ;
	pthread_rwlock_t *l;
	int rc = -EAGAIN;

	if (!rd && (io->op != NP_OP_WRITE || v->readonly || (io->flags & NP_IO_FUA)))
		return -EAGAIN;
	if (!v->vcache || !io->len || io->len >= NP_BIG_WRITE ||
	    (io->offset + io->len - 1) >> p->chunk_shift != lc)
		return -EAGAIN;
	l = &p->stripes[stripe_of(v->chain[0].dev, lc)];
	if ((rd ? pthread_rwlock_tryrdlock(l) : pthread_rwlock_trywrlock(l)) != 0)
		return -EAGAIN;
	if (vcache_get(v, lc, &pc)) {
		at = (pc << p->chunk_shift) + (io->offset & (p->meta.chunk_size - 1));
		rc = rd ? full_pread(p->data_fd, io->buf, io->len, at)
			: np_pwrite_full(p->data_fd, io->buf, io->len, at, 0);
	}
	pthread_rwlock_unlock(l);
	return rc;
}

/* The loop's share of a batch (storage.h): owned_nowait for each request,
 * under io_lock if it is free at once (a catalog change holds it, and
 * clears the cache, while a snapshot is taken). */
static void thin_rw_nowait(void *h, struct np_io **ios, unsigned n)
{
	struct thin_vol *v = h;
	struct thin_pool *p = v->pool;
	bool locked = p->data_in_memory && pthread_rwlock_tryrdlock(&p->io_lock) == 0;

	for (unsigned i = 0; i < n; i++)
		ios[i]->result = locked && !p->broken ? owned_nowait(v, ios[i]) : -EAGAIN;
	if (locked)
		pthread_rwlock_unlock(&p->io_lock);
}

/* Unmaps the whole chunks of one window; partial chunks at either end get
 * zeroes written by the caller. */
static int unmap_window(struct thin_vol *v, uint64_t first, uint64_t n, bool fua)
{
	struct thin_pool *p = v->pool;
	struct thin_txn t = {.sync = fua};
	struct stripes s;
	struct map *m = malloc(n * sizeof(*m));
	uint8_t key[17];
	int rc;

	if (!m)
		return -ENOMEM;
	stripes_lock(p, &s, v->chain[0].dev, first, n, false);
	rc = lookup(v, first, n, m, true);
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		uint64_t lc = first + i;
		/* A base that could still show through needs a tombstone. */
		bool base = v->nchain > 1 && lc < v->chain[1].limit;

		if (m[i].state == MAP_HOLE)
			continue;
		/* Before the commit, which may release the chunk for reuse;
		 * should the commit fail, the cache merely misses. */
		vcache_drop(v, lc);
		thin_key_map(key, v->chain[0].dev, lc);
		if (m[i].state == MAP_OWNED)
			rc = thin_txn_free(&t, m[i].pchunk);
		if (rc == 0)
			rc = base || m[i].state == MAP_SHARED
				 ? thin_txn_put(&t, key, 17, THIN_TOMBSTONE)
				 : thin_txn_del(&t, key, 17);
	}
	if (rc == 0 && (t.nops || fua))
		rc = thin_commit(p, &t);
	stripes_unlock(p, &s);
	thin_txn_reset(&t);
	free(m);
	return rc;
}

static int thin_unmap(void *h, uint64_t len, uint64_t off, uint32_t flags)
{
	struct thin_vol *v = h;
	struct thin_pool *p = v->pool;
	uint32_t cs = p->meta.chunk_size;
	bool fua = flags & NP_IO_FUA;
	uint64_t head, tail, first, n;
	int rc = 0;

	if (v->readonly)
		return -EROFS;
	if (len == 0)
		return 0;
	/* The rest of the last chunk past the end is never read (a grow zeroes
	 * it first), so a range that reaches the end unmaps that chunk whole. */
	if (off + len == thin_get_size(v))
		len = ((off + len + cs - 1) & ~(uint64_t)(cs - 1)) - off;
	/* Zero [off, off+head) and [end-tail, end) by writing; unmap between. */
	head = off & (cs - 1) ? cs - (off & (cs - 1)) : 0;
	if (head > len)
		head = len;
	tail = (off + len) & (cs - 1);
	if (head + tail > len)
		tail = len - head;
	if (head)
		rc = do_write(v, NULL, head, off, flags, true);
	if (rc == 0 && tail)
		rc = do_write(v, NULL, tail, off + len - tail, flags, true);
	first = (off + head) >> p->chunk_shift;
	n = (len - head - tail) >> p->chunk_shift;
	pthread_rwlock_rdlock(&p->io_lock);
	while (rc == 0 && n > 0) {
		uint64_t k = n > WINDOW ? WINDOW : n;

		rc = p->broken ? -EIO : unmap_window(v, first, k, fua);
		first += k;
		n -= k;
	}
	pthread_rwlock_unlock(&p->io_lock);
	return rc;
}

static int thin_zero(void *h, uint64_t len, uint64_t off, uint32_t flags)
{
	struct thin_vol *v = h;
	uint64_t mask = v->pool->meta.chunk_size - 1;

	/* NO_HOLE asks for allocated zeroes. */
	if (flags & NP_IO_NO_HOLE)
		return flags & NP_IO_FAST_ZERO ? -ENOTSUP
					       : do_write(h, NULL, len, off, flags, false);
	/* Whole chunks are unmapped in metadata; partial ones cost writes,
	 * which a FAST_ZERO client would rather do itself. */
	if ((flags & NP_IO_FAST_ZERO) &&
	    ((off & mask) || (((off + len) & mask) && off + len != thin_get_size(v))))
		return -ENOTSUP;
	return thin_unmap(h, len, off, flags);
}

static int thin_cache(void *h, uint64_t len, uint64_t off)
{
	(void)h;
	(void)len;
	(void)off;
	return 0;
}

static int thin_extents(void *h, struct np_io *io)
{
	struct thin_vol *v = h;
	struct thin_pool *p = v->pool;
	uint32_t cs = p->meta.chunk_size;
	uint64_t off = io->offset, len = io->len;
	uint64_t size = thin_get_size(v);
	struct map *m = malloc(WINDOW * sizeof(*m));
	bool more = true;
	int rc = 0;

	if (io->context) { /* qemu:dirty-bitmap:SNAP, qemu:allocation-depth */
		free(m);
		return thin_vol_context_extents(v, io);
	}
	if (!m)
		return -ENOMEM;
	if (off + len > size)
		len = off < size ? size - off : 0;
	pthread_rwlock_rdlock(&p->io_lock);
	while (len > 0 && more && rc == 0) {
		uint64_t first = off >> p->chunk_shift;
		uint64_t last = (off + len - 1) >> p->chunk_shift;
		uint64_t n = last - first + 1 > WINDOW ? WINDOW : last - first + 1;

		rc = lookup(v, first, n, m, false);
		for (uint64_t i = 0; i < n && len > 0 && more && rc == 0; i++) {
			uint64_t inoff = off & (cs - 1);
			uint64_t piece = cs - inoff < len ? cs - inoff : len;
			uint32_t fl = m[i].state == MAP_HOLE ? NP_EXTENT_HOLE | NP_EXTENT_ZERO : 0;

			more = np_io_add_extent(io, piece, fl);
			off += piece;
			len -= piece;
		}
	}
	pthread_rwlock_unlock(&p->io_lock);
	free(m);
	return rc;
}

static int thin_contexts(void *h, char ***names, size_t *n)
{
	return thin_vol_contexts(h, names, n);
}

const struct np_storage_ops np_storage_thin = {
    .size = sizeof(struct np_storage_ops),
    .api_version = NP_STORAGE_API_VERSION,
    .name = "thin",
    .usage = "POOLDIR/VOLUME\ta volume of a thin pool",
    .open = thin_open,
    .close = thin_close,
    .get_size = thin_get_size,
    .caps = thin_caps,
    .pread = thin_pread,
    .pwrite = thin_pwrite,
    .flush = thin_flush,
    .trim = thin_unmap,
    .zero = thin_zero,
    .cache = thin_cache,
    .extents = thin_extents,
    .contexts = thin_contexts,
    .resize = thin_resize,
    .rw_nowait = thin_rw_nowait,
};
