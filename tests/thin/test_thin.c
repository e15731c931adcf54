/* Unit test of the thin engine through np_storage_thin and of
 * `nbdplex volume` through np_cmd_volume: contents, holes, snapshots and
 * clones, space accounting, ENOSPC and reuse, mappings that go through
 * memtable flushes, and the tool's errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/proto.h"
#include "storage/storage.h"
#include "storage/thin/pool.h"
#include "tools/volume.h"

#define K  1024ULL
#define M  (1024 * K)
#define CS (64 * K)
#define HZ (NP_EXTENT_HOLE | NP_EXTENT_ZERO)

static int failures;
static char pool[PATH_MAX];
static const struct np_storage_ops *ops = &np_storage_thin;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_) {                                                                    \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
				__LINE__, #a, a_, #b, b_);                                         \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* The test binary is linked with -Wl,--wrap=fallocate, so every fallocate
 * of the engine comes through here and the hole punches are counted. */
int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len);
static unsigned punches;
static int punch_errno; /* when set, punches fail with it */

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		__atomic_fetch_add(&punches, 1, __ATOMIC_RELAXED);
		if (punch_errno) {
			errno = punch_errno;
			return -1;
		}
	}
	return __real_fallocate(fd, mode, off, len);
}

/* Runs `nbdplex volume ARGS...` in-process; returns its exit status. */
static int vol(const char *first, ...)
{
	char *argv[16] = {"volume"};
	int argc = 1;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a && argc < 15; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return np_cmd_volume(argc, argv);
}

static void *open_vol(const char *name, bool ro)
{
	char spec[PATH_MAX + 200];
	char *err = NULL;
	void *h = NULL;
	int rc;

	snprintf(spec, sizeof(spec), "%s/%s", pool, name);
	rc = ops->open(spec, ro, &h, &err);
	if (rc < 0)
		fprintf(stderr, "open %s: %s\n", spec, err ? err : strerror(-rc));
	free(err);
	return rc < 0 ? NULL : h;
}

/* Creates a volume and opens it for writing. */
static void *new_vol(const char *name, const char *size)
{
	void *h;

	CHECK_EQ(vol("create", pool, name, size, NULL), 0);
	h = open_vol(name, false);
	CHECK(h != NULL);
	return h;
}

static void fill(uint8_t *buf, uint64_t len, uint64_t off, unsigned seed)
{
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((off + i) * 31 + seed * 7 + ((off + i) >> 12));
}

static bool verify(void *h, uint64_t len, uint64_t off, int seed)
{
	uint8_t *got = malloc(len), *want = malloc(len);
	bool ok;

	if (seed < 0)
		memset(want, 0, len);
	else
		fill(want, len, off, seed);
	ok = ops->pread(h, got, len, off) == 0 && memcmp(got, want, len) == 0;
	if (!ok)
		fprintf(stderr, "verify %llu+%llu seed %d failed\n", (unsigned long long)off,
			(unsigned long long)len, seed);
	free(got);
	free(want);
	return ok;
}

static int write_pat(void *h, uint64_t len, uint64_t off, unsigned seed, uint32_t flags)
{
	uint8_t *buf = malloc(len);
	int rc;

	fill(buf, len, off, seed);
	rc = ops->pwrite(h, buf, len, off, flags);
	free(buf);
	return rc;
}

/* Returns the extents of [off, off+len) in ext (up to 64). */
static unsigned extents(void *h, uint64_t len, uint64_t off, struct np_extent *ext)
{
	struct np_io io = {.op = NP_OP_EXTENTS, .offset = off, .len = len};

	io.extents = ext;
	io.max_extents = 64;
	CHECK_EQ(ops->extents(h, &io), 0);
	return io.n_extents;
}

/* The pool, for a look at its state: shares the registry entry with open
 * volumes, else opens the DB. NULL if it cannot be opened. */
static struct thin_pool *pool_get(void)
{
	struct thin_pool *p;
	char *err = NULL;
	int rc = thin_pool_open(pool, false, &p, &err);

	free(err);
	return rc == 0 ? p : NULL;
}

static uint64_t pool_used(void)
{
	struct thin_pool *p = pool_get();
	uint64_t n = 0;

	if (p) {
		n = thin_pool_used(p);
		thin_pool_close(p);
	}
	return n;
}

static void check_pool(void)
{
	struct thin_pool *p;
	char *err = NULL;

	CHECK_EQ(thin_pool_open(pool, false, &p, &err), 0);
	free(err);
	pthread_rwlock_wrlock(&p->io_lock);
	CHECK_EQ(thin_check(p, stderr), 0);
	pthread_rwlock_unlock(&p->io_lock);
	thin_pool_close(p);
}

static void test_rw_holes(void)
{
	struct np_extent ext[64];
	unsigned n;
	void *h;

	CHECK_EQ(vol("create", pool, "v1", "64M", NULL), 0);
	h = open_vol("v1", false);
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_EQ(ops->get_size(h), 64 * M);
	CHECK(ops->caps(h) & NP_CAP_EXTENTS);
	CHECK(ops->caps(h) & NP_CAP_TRIM);
	CHECK(verify(h, 1 * M, 0, -1));
	n = extents(h, 64 * M, 0, ext);
	CHECK_EQ(n, 1);
	CHECK_EQ(ext[0].flags, HZ);
	CHECK_EQ(ext[0].length, 64 * M);

	/* A 4K write inside chunk 1 maps that chunk only; the rest of it
	 * reads as zeroes. */
	CHECK_EQ(write_pat(h, 4 * K, CS + 8 * K, 1, 0), 0);
	CHECK(verify(h, 4 * K, CS + 8 * K, 1));
	CHECK(verify(h, 8 * K, CS, -1));
	CHECK(verify(h, CS - 12 * K, CS + 12 * K, -1));
	n = extents(h, 4 * CS, 0, ext);
	CHECK_EQ(n, 3);
	CHECK_EQ(ext[0].flags, HZ);
	CHECK_EQ(ext[0].length, CS);
	CHECK_EQ(ext[1].flags, 0);
	CHECK_EQ(ext[1].length, CS);
	CHECK_EQ(ext[2].flags, HZ);

	/* An unaligned write over several chunks, FUA. */
	CHECK_EQ(write_pat(h, 5 * CS + 123, 10 * CS + 77, 2, NP_IO_FUA), 0);
	CHECK(verify(h, 5 * CS + 123, 10 * CS + 77, 2));
	CHECK(verify(h, 77, 10 * CS, -1));
	CHECK_EQ(ops->flush(h), 0);

	/* Overwrite in place. */
	CHECK_EQ(write_pat(h, 4 * K, CS + 8 * K, 3, 0), 0);
	CHECK(verify(h, 4 * K, CS + 8 * K, 3));

	/* Zero of a partial chunk writes zeroes; of whole chunks unmaps. */
	CHECK_EQ(ops->zero(h, 2 * CS, 11 * CS, 0), 0);
	CHECK(verify(h, 2 * CS, 11 * CS, -1));
	CHECK(verify(h, CS, 13 * CS, 2));
	n = extents(h, 6 * CS, 10 * CS, ext);
	CHECK_EQ(n, 3);
	CHECK_EQ(ext[0].flags, 0);
	CHECK_EQ(ext[1].flags, HZ);
	CHECK_EQ(ext[1].length, 2 * CS);
	CHECK_EQ(ops->trim(h, CS - 100, 10 * CS + 100, 0), 0);
	CHECK(verify(h, 77, 10 * CS, -1));
	CHECK(verify(h, 23, 10 * CS + 77, 2));
	CHECK(verify(h, CS - 100, 10 * CS + 100, -1));
	ops->close(h);
}

static void test_snapshot_clone(void)
{
	void *v, *s, *c;
	uint64_t before;

	v = open_vol("v1", false);
	CHECK(v != NULL);
	if (!v)
		return;
	CHECK_EQ(write_pat(v, 8 * CS, 20 * CS, 4, 0), 0);
	/* Through the control socket served by this very process. */
	CHECK_EQ(vol("snapshot", pool, "v1", "s1", NULL), 0);
	before = pool_used();
	CHECK_EQ(write_pat(v, 4 * K, 20 * CS + 4 * K, 5, 0), 0); /* copy on write */
	CHECK_EQ(write_pat(v, CS, 21 * CS, 6, 0), 0);            /* whole chunk: no copy */
	CHECK_EQ(pool_used(), before + 2);
	CHECK(verify(v, 4 * K, 20 * CS, 4));
	CHECK(verify(v, 4 * K, 20 * CS + 4 * K, 5));
	CHECK(verify(v, CS - 8 * K, 20 * CS + 8 * K, 4));
	CHECK(verify(v, CS, 21 * CS, 6));

	s = open_vol("s1", true);
	CHECK(s != NULL);
	CHECK(open_vol("s1", false) == NULL); /* a snapshot is read-only */
	if (s) {
		CHECK(verify(s, 8 * CS, 20 * CS, 4));
		CHECK(!(ops->caps(s) & NP_CAP_WRITE));
		ops->close(s);
	}

	CHECK_EQ(vol("clone", pool, "s1", "c1", NULL), 0);
	c = open_vol("c1", false);
	CHECK(c != NULL);
	if (c) {
		CHECK(verify(c, 8 * CS, 20 * CS, 4));
		CHECK_EQ(write_pat(c, 3 * CS, 22 * CS + 5, 7, 0), 0);
		CHECK_EQ(ops->trim(c, CS, 20 * CS, 0), 0);
		CHECK(verify(c, CS, 20 * CS, -1));
		CHECK(verify(c, 3 * CS, 22 * CS + 5, 7));
		ops->close(c);
	}
	/* Neither the snapshot nor the origin saw the clone's writes. */
	CHECK(verify(v, 2 * CS, 22 * CS, 4));
	CHECK(verify(v, CS - 8 * K, 20 * CS + 8 * K, 4));
	s = open_vol("s1", true);
	if (s) {
		CHECK(verify(s, 8 * CS, 20 * CS, 4));
		ops->close(s);
	}
	/* Trimming a shared chunk in the origin leaves the snapshot alone. */
	CHECK_EQ(ops->trim(v, CS, 23 * CS, 0), 0);
	CHECK(verify(v, CS, 23 * CS, -1));
	ops->close(v);
	s = open_vol("s1", true);
	if (s) {
		CHECK(verify(s, CS, 23 * CS, 4));
		ops->close(s);
	}

	/* s1 has two dependents (v1 and c1): refuse, change nothing. */
	CHECK(vol("delete", pool, "s1", NULL) != 0);
	s = open_vol("s1", true);
	CHECK(s != NULL);
	if (s)
		ops->close(s);
	/* Without the clone, deleting s1 folds it into v1, whose contents
	 * stay. */
	CHECK_EQ(vol("delete", pool, "c1", NULL), 0);
	CHECK_EQ(vol("delete", pool, "s1", NULL), 0);
	v = open_vol("v1", false);
	if (v) {
		CHECK(verify(v, 4 * K, 20 * CS, 4));
		CHECK(verify(v, 4 * K, 20 * CS + 4 * K, 5));
		CHECK(verify(v, CS, 21 * CS, 6));
		CHECK(verify(v, CS, 22 * CS, 4));
		CHECK(verify(v, CS, 23 * CS, -1));
		CHECK(verify(v, 4 * CS, 24 * CS, 4));
		ops->close(v);
	}
	check_pool();
}

struct worker {
	void *h;
	unsigned id;
	int rc;
};

/* Each thread writes its own 4K blocks, interleaved with the others' in
 * the same chunks: the stripe locks and group commit keep every one. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < 64 && w->rc == 0; i++) {
		uint64_t off = 40 * CS + ((uint64_t)i * 4 + w->id) * 4 * K;

		w->rc = write_pat(w->h, 4 * K, off, 10 + w->id, i % 8 == 0 ? NP_IO_FUA : 0);
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct worker w[4];
	pthread_t t[4];
	void *h = open_vol("v1", false);

	CHECK(h != NULL);
	if (!h)
		return;
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){.h = h, .id = i};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].rc, 0);
	}
	for (unsigned i = 0; i < 64; i++)
		for (unsigned id = 0; id < 4; id++)
			CHECK(verify(h, 4 * K, 40 * CS + ((uint64_t)i * 4 + id) * 4 * K, 10 + id));
	ops->close(h);
	check_pool();
}

/* The volume's mapping cache (struct thin_vol) must follow every change of
 * the volume's own mappings. Each step reads what it is about to change, so
 * that the chunks are cached; a stale entry would show old data, or turn a
 * copy on write into a write through to a snapshot. */
static void test_cache(void)
{
	void *v, *s, *o;

	v = new_vol("cv", "4M");
	o = new_vol("other", "4M");
	if (!v || !o)
		return;
	CHECK_EQ(write_pat(v, 4 * CS, 0, 50, 0), 0);
	CHECK(verify(v, 4 * CS, 0, 50));

	/* A live snapshot: what the volume owned is now shared. */
	CHECK_EQ(vol("snapshot", pool, "cv", "cs1", NULL), 0);
	CHECK_EQ(write_pat(v, 4 * K, 8 * K, 51, 0), 0); /* copy on write */
	CHECK_EQ(write_pat(v, CS, CS, 52, 0), 0);       /* whole chunk: fresh */
	CHECK(verify(v, 8 * K, 0, 50));
	CHECK(verify(v, 4 * K, 8 * K, 51));
	CHECK(verify(v, CS - 12 * K, 12 * K, 50));
	CHECK(verify(v, CS, CS, 52));
	CHECK(verify(v, 2 * CS, 2 * CS, 50));
	s = open_vol("cs1", true);
	CHECK(s != NULL);
	if (s) {
		CHECK(verify(s, 4 * CS, 0, 50));
		CHECK(verify(s, 4 * CS, 0, 50)); /* from the snapshot's own cache */
		ops->close(s);
	}

	/* The chunks written since are the volume's again, and cached: a trim
	 * and a zero must drop them, even once their chunks hold another
	 * volume's data. */
	CHECK(verify(v, 4 * K, 8 * K, 51));
	CHECK_EQ(ops->trim(v, CS, 0, 0), 0);
	CHECK(verify(v, CS, 0, -1));
	CHECK_EQ(ops->zero(v, CS, CS, 0), 0);
	CHECK(verify(v, CS, CS, -1));
	CHECK_EQ(ops->flush(v), 0); /* the releases are durable: reusable */
	CHECK_EQ(write_pat(o, 4 * M, 0, 53, 0), 0);
	CHECK(verify(v, 2 * CS, 0, -1));
	/* Trimming a shared chunk leaves a tombstone over the snapshot's. */
	CHECK_EQ(ops->trim(v, CS, 2 * CS, 0), 0);
	CHECK(verify(v, CS, 2 * CS, -1));
	CHECK(verify(v, CS, 3 * CS, 50));

	/* Written again: fresh chunks, cached at once. */
	CHECK_EQ(write_pat(v, 4 * K, 4 * K, 54, 0), 0);
	CHECK(verify(v, 4 * K, 4 * K, 54));
	CHECK(verify(v, 4 * K, 0, -1));
	CHECK_EQ(write_pat(v, 4 * K, 4 * K, 55, NP_IO_FUA), 0); /* in place */
	CHECK(verify(v, 4 * K, 4 * K, 55));

	/* A clone of the snapshot, and a second snapshot of the volume. */
	CHECK_EQ(vol("snapshot", pool, "cv", "cs2", NULL), 0);
	CHECK_EQ(write_pat(v, 4 * K, 4 * K, 56, 0), 0);
	CHECK_EQ(vol("clone", pool, "cs1", "cc", NULL), 0);
	s = open_vol("cs2", true);
	if (s) {
		CHECK(verify(s, 4 * K, 4 * K, 55));
		CHECK(verify(s, 4 * K, 0, -1));
		CHECK(verify(s, CS - 8 * K, 8 * K, -1));
		CHECK(verify(s, 2 * CS, CS, -1));
		CHECK(verify(s, CS, 3 * CS, 50));
		ops->close(s);
	}
	s = open_vol("cc", false);
	if (s) {
		CHECK(verify(s, 4 * CS, 0, 50));
		ops->close(s);
	}
	CHECK(verify(v, 4 * K, 4 * K, 56));

	/* Deleting snapshots folds them into the volume while it is open:
	 * what it saw through them it now owns, and writes in place. */
	CHECK_EQ(vol("delete", pool, "cc", NULL), 0);
	CHECK_EQ(vol("delete", pool, "cs1", NULL), 0);
	CHECK_EQ(vol("delete", pool, "cs2", NULL), 0);
	CHECK(verify(v, CS, 3 * CS, 50));
	CHECK_EQ(write_pat(v, 4 * K, 3 * CS, 57, 0), 0);
	CHECK(verify(v, 4 * K, 3 * CS, 57));
	CHECK(verify(v, CS - 4 * K, 3 * CS + 4 * K, 50));
	CHECK(verify(v, 4 * K, 4 * K, 56));

	/* Growing while open. */
	CHECK_EQ(ops->resize(v, 5 * M), 0);
	CHECK(verify(v, CS - 4 * K, 3 * CS + 4 * K, 50));
	CHECK_EQ(write_pat(v, 4 * K, 3 * CS, 58, 0), 0);
	CHECK(verify(v, 4 * K, 3 * CS, 58));
	CHECK(verify(v, 1 * M, 4 * M, -1));
	CHECK(verify(o, 4 * M, 0, 53));
	ops->close(o);
	ops->close(v);
	/* A fresh open (an empty cache) sees the same. */
	v = open_vol("cv", false);
	if (v) {
		CHECK(verify(v, 4 * K, 0, -1));
		CHECK(verify(v, 4 * K, 4 * K, 56));
		CHECK(verify(v, CS - 8 * K, 8 * K, -1));
		CHECK(verify(v, 2 * CS, CS, -1));
		CHECK(verify(v, 4 * K, 3 * CS, 58));
		ops->close(v);
	}
	CHECK_EQ(vol("delete", pool, "cv", NULL), 0);
	CHECK_EQ(vol("delete", pool, "other", NULL), 0);
	check_pool();
}

/* Threads that each own some chunks of one volume write, read back and trim
 * them while another snapshots the volume and deletes old snapshots: every
 * snapshot makes the cached chunks shared under the threads' feet. */
struct churn {
	void *h;
	unsigned id;
	uint8_t *shadow; /* what the thread's chunks should hold */
	int bad;
};

#define CHURN_THREADS 3
#define CHURN_CHUNKS  12 /* per thread */

static uint64_t churn_off(unsigned id, unsigned c)
{
	return ((uint64_t)c * CHURN_THREADS + id) * CS;
}

static void *churn_main(void *arg)
{
	struct churn *w = arg;
	uint8_t *buf = malloc(CS);
	unsigned r = w->id * 7919 + 1;

	for (unsigned i = 0; i < 600 && buf; i++) {
		unsigned c, op;
		uint64_t at, len;

		r = r * 1103515245 + 12345;
		c = (r >> 8) % CHURN_CHUNKS;
		op = (r >> 20) % 8;
		at = (r >> 4) % 16 * 4 * K;
		len = op == 0 ? CS : 4 * K;
		if (op == 0)
			at = 0;
		if (op == 7) {
			if (ops->trim(w->h, CS, churn_off(w->id, c), 0) < 0)
				w->bad++;
			memset(w->shadow + (uint64_t)c * CS, 0, CS);
		} else {
			fill(buf, len, churn_off(w->id, c) + at, 60 + i);
			if (ops->pwrite(w->h, buf, len, churn_off(w->id, c) + at,
					op == 1 ? NP_IO_FUA : 0) < 0)
				w->bad++;
			memcpy(w->shadow + (uint64_t)c * CS + at, buf, len);
		}
		if (ops->pread(w->h, buf, CS, churn_off(w->id, c)) < 0 ||
		    memcmp(buf, w->shadow + (uint64_t)c * CS, CS) != 0) {
			if (w->bad++ < 5)
				fprintf(stderr, "churn: thread %u chunk %u differs at step %u\n",
					w->id, c, i);
		}
	}
	free(buf);
	return NULL;
}

static void test_cache_churn(void)
{
	struct churn w[CHURN_THREADS];
	pthread_t t[CHURN_THREADS];
	char name[32], old[32];
	void *h;

	h = new_vol("ch", "4M");
	if (!h)
		return;
	for (unsigned i = 0; i < CHURN_THREADS; i++) {
		w[i] = (struct churn){.h = h, .id = i, .shadow = calloc(CHURN_CHUNKS, CS)};
		pthread_create(&t[i], NULL, churn_main, &w[i]);
	}
	for (unsigned k = 0; k < 30; k++) {
		snprintf(name, sizeof(name), "chs%u", k);
		CHECK_EQ(vol("snapshot", pool, "ch", name, NULL), 0);
		if (k >= 2) {
			snprintf(old, sizeof(old), "chs%u", k - 2);
			CHECK_EQ(vol("delete", pool, old, NULL), 0);
		}
		usleep(2000);
	}
	for (unsigned i = 0; i < CHURN_THREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].bad, 0);
	}
	ops->close(h);
	h = open_vol("ch", false);
	for (unsigned i = 0; h && i < CHURN_THREADS; i++)
		for (unsigned c = 0; c < CHURN_CHUNKS; c++) {
			uint8_t *buf = malloc(CS);

			CHECK(ops->pread(h, buf, CS, churn_off(i, c)) == 0 &&
			      memcmp(buf, w[i].shadow + (uint64_t)c * CS, CS) == 0);
			free(buf);
		}
	if (h)
		ops->close(h);
	for (unsigned i = 0; i < CHURN_THREADS; i++)
		free(w[i].shadow);
	CHECK_EQ(vol("delete", pool, "chs28", NULL), 0);
	CHECK_EQ(vol("delete", pool, "chs29", NULL), 0);
	CHECK_EQ(vol("delete", pool, "ch", NULL), 0);
	check_pool();
}

static void test_space(void)
{
	uint64_t before, chunks;
	void *h;
	int rc = 0;
	uint64_t off = 0;

	/* The pool has 256 chunks; a 1G volume overcommits it. */
	CHECK_EQ(vol("create", pool, "big", "1G", NULL), 0);
	h = open_vol("big", false);
	CHECK(h != NULL);
	if (!h)
		return;
	before = pool_used();
	CHECK_EQ(write_pat(h, 4 * CS, 0, 20, 0), 0);
	CHECK_EQ(pool_used(), before + 4);
	CHECK_EQ(ops->trim(h, 4 * CS, 0, 0), 0);
	/* Trimmed chunks count as used until the release is durable... */
	CHECK_EQ(ops->flush(h), 0);
	CHECK_EQ(pool_used(), before);

	for (chunks = 0; chunks < 1000 && rc == 0; chunks++, off += CS)
		rc = write_pat(h, CS, off, 21, 0);
	CHECK_EQ(rc, -ENOSPC);
	CHECK(chunks < 1000);
	CHECK_EQ(pool_used(), 256);
	/* Nothing written before ENOSPC is damaged. */
	CHECK(verify(h, CS, 0, 21));
	CHECK(verify(h, CS, off - 2 * CS, 21));
	/* A failed write maps nothing. */
	CHECK(verify(h, CS, off - CS, -1));
	/* ...but a write that needs space finds it once trim freed some. */
	CHECK_EQ(ops->trim(h, 2 * CS, 0, 0), 0);
	CHECK_EQ(write_pat(h, CS, off + 10 * CS, 22, 0), 0);
	CHECK_EQ(write_pat(h, CS, off + 11 * CS, 22, 0), 0);
	CHECK_EQ(write_pat(h, CS, off + 12 * CS, 22, 0), -ENOSPC);
	CHECK(verify(h, CS, off + 10 * CS, 22));
	ops->close(h);
	check_pool();

	/* Deleting the volume frees its chunks for others. */
	CHECK_EQ(vol("delete", pool, "big", NULL), 0);
	h = open_vol("v1", false);
	if (h) {
		CHECK_EQ(write_pat(h, 16 * CS, 48 * CS, 23, 0), 0);
		CHECK(verify(h, 16 * CS, 48 * CS, 23));
		ops->close(h);
	}
	check_pool();
}

static void test_resize(void)
{
	void *h;

	CHECK_EQ(vol("create", pool, "r", "1M", NULL), 0);
	h = open_vol("r", false);
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_EQ(write_pat(h, 1 * M, 0, 30, 0), 0);
	/* An exported volume grows at once, but does not shrink. */
	CHECK(ops->caps(h) & NP_CAP_RESIZE);
	CHECK_EQ(vol("resize", pool, "r", "3M", NULL), 0);
	CHECK_EQ(ops->get_size(h), 3 * M);
	CHECK(verify(h, 1 * M, 0, 30));
	CHECK(verify(h, 2 * M, 1 * M, -1));
	CHECK(vol("resize", pool, "r", "100000", NULL) != 0);
	CHECK_EQ(ops->resize(h, 1 * M), -EBUSY);
	CHECK_EQ(ops->resize(h, 4 * M), 0);
	CHECK_EQ(ops->get_size(h), 4 * M);
	ops->close(h);
	CHECK_EQ(vol("resize", pool, "r", "100000", NULL), 0);
	CHECK_EQ(vol("resize", pool, "r", "2M", NULL), 0);
	h = open_vol("r", false);
	if (h) {
		CHECK_EQ(ops->get_size(h), 2 * M);
		CHECK(verify(h, 100000, 0, 30));
		CHECK(verify(h, 2 * M - 100000, 100000, -1));
		ops->close(h);
	}
	check_pool();
}

static void test_fast_zero(void)
{
	struct np_extent ext[64];
	uint64_t size = CS + 34464; /* ends inside its second chunk */
	char sz[32];
	void *h;

	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	CHECK_EQ(vol("create", pool, "fz", sz, NULL), 0);
	h = open_vol("fz", false);
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK(ops->caps(h) & NP_CAP_FAST_ZERO);
	CHECK_EQ(write_pat(h, size, 0, 40, 0), 0);
	/* Zeroing part of a chunk would cost a write: FAST_ZERO declines. */
	CHECK_EQ(ops->zero(h, 4 * K, 0, NP_IO_FAST_ZERO), -ENOTSUP);
	CHECK_EQ(ops->zero(h, CS, 0, NP_IO_FAST_ZERO | NP_IO_NO_HOLE), -ENOTSUP);
	CHECK(verify(h, size, 0, 40));
	/* A range that reaches the end unmaps the last, partial chunk. */
	CHECK_EQ(ops->zero(h, size - CS, CS, NP_IO_FAST_ZERO), 0);
	CHECK(verify(h, CS, 0, 40));
	CHECK(verify(h, size - CS, CS, -1));
	CHECK_EQ(extents(h, size, 0, ext), 2);
	CHECK_EQ(ext[1].flags, HZ);
	CHECK_EQ(ext[1].length, size - CS);
	CHECK_EQ(ops->zero(h, CS, 0, NP_IO_FAST_ZERO), 0);
	CHECK_EQ(extents(h, size, 0, ext), 1);
	ops->close(h);
	/* Growing must not bring back what was past the old end. */
	CHECK_EQ(vol("resize", pool, "fz", "1M", NULL), 0);
	h = open_vol("fz", false);
	if (h) {
		CHECK(verify(h, 1 * M, 0, -1));
		ops->close(h);
	}
	CHECK_EQ(vol("delete", pool, "fz", NULL), 0);
	check_pool();
}

/* Every chunk a write maps afresh is punched before its data goes in, so
 * that whatever a released chunk held cannot reappear after a power loss:
 * partial and whole-chunk writes to holes, and copies on write. */
static void test_fresh_punch(void)
{
	unsigned before;
	void *h = new_vol("pz", "1M");

	if (!h)
		return;
	before = punches;
	CHECK_EQ(write_pat(h, 4 * K, 0, 50, 0), 0);
	CHECK_EQ(punches, before + 1);
	CHECK_EQ(write_pat(h, CS, CS, 51, 0), 0); /* a whole chunk */
	CHECK_EQ(punches, before + 2);
	CHECK_EQ(write_pat(h, 4 * K, 4 * K, 52, 0), 0); /* owned: written in place */
	CHECK_EQ(punches, before + 2);
	ops->close(h);
	CHECK_EQ(vol("snapshot", pool, "pz", "pz-s", NULL), 0);
	h = open_vol("pz", false);
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_EQ(write_pat(h, 4 * K, 8 * K, 53, 0), 0); /* copy on write */
	CHECK_EQ(punches, before + 3);
	CHECK_EQ(write_pat(h, CS, CS, 54, 0), 0); /* a whole shared chunk */
	CHECK_EQ(punches, before + 4);
	CHECK(verify(h, 4 * K, 0, 50));
	CHECK(verify(h, 4 * K, 4 * K, 52));
	CHECK(verify(h, 4 * K, 8 * K, 53));
	CHECK(verify(h, CS - 12 * K, 12 * K, -1));
	CHECK(verify(h, CS, CS, 54));
	ops->close(h);
	h = open_vol("pz-s", true);
	CHECK(h != NULL);
	if (h) {
		CHECK(verify(h, 8 * K, 8 * K, -1));
		CHECK(verify(h, CS, CS, 51));
		ops->close(h);
	}
	CHECK_EQ(vol("delete", pool, "pz", NULL), 0);
	CHECK_EQ(vol("delete", pool, "pz-s", NULL), 0);
	check_pool();
}

/* A write over fresh chunks that lie next to each other in the data file
 * writes each run with one punch and one pwrite; chunks it owns, chunks
 * cut by the write's ends and a gap in the fresh chunks end a run. */
static void test_fresh_runs(void)
{
	struct thin_pool *p = pool_get();
	uint64_t got[8], odd[4];
	unsigned before, n;
	void *h = new_vol("fr", "2M");

	if (!h || !p) {
		CHECK(h && p);
		return;
	}
	CHECK_EQ(write_pat(h, 4 * K, 3 * CS + 8 * K, 90, 0), 0); /* chunk 3 owned */
	/* Every other one of 8 chunks left taken: the next write's first
	 * fresh chunks are not next to each other. */
	CHECK_EQ(thin_alloc(p, 8, got), 0);
	for (int i = 0; i < 4; i++)
		odd[i] = got[2 * i + 1];
	thin_unalloc(p, got, 1);
	thin_unalloc(p, got + 2, 1);
	thin_unalloc(p, got + 4, 1);
	thin_unalloc(p, got + 6, 1);
	before = punches;
	/* Chunk 0 from its middle, 1-11 whole (3 owned), 12 up to its middle. */
	CHECK_EQ(write_pat(h, 12 * CS, CS / 2, 91, 0), 0);
	n = punches - before;
	/* 11 fresh chunks: fewer punches than that (runs), more than 2 (the
	 * cut ends and the gaps each take their own). */
	CHECK(n < 11 && n > 2);
	CHECK(verify(h, CS / 2, 0, -1));
	CHECK(verify(h, 12 * CS, CS / 2, 91));
	CHECK(verify(h, CS / 2, 12 * CS + CS / 2, -1));
	thin_unalloc(p, odd, 4);
	thin_pool_close(p);
	/* Whole shared chunks after a snapshot: copied on write without
	 * reading what they held, the snapshot keeps it. */
	ops->close(h);
	CHECK_EQ(vol("snapshot", pool, "fr", "fr-s", NULL), 0);
	h = open_vol("fr", false);
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_EQ(write_pat(h, 6 * CS, 2 * CS, 92, NP_IO_FUA), 0);
	CHECK(verify(h, 3 * CS / 2, CS / 2, 91));
	CHECK(verify(h, 6 * CS, 2 * CS, 92));
	CHECK(verify(h, 4 * CS + CS / 2, 8 * CS, 91));
	ops->close(h);
	h = open_vol("fr-s", true);
	CHECK(h != NULL);
	if (h) {
		CHECK(verify(h, 12 * CS, CS / 2, 91));
		ops->close(h);
	}
	CHECK_EQ(vol("delete", pool, "fr", NULL), 0);
	CHECK_EQ(vol("delete", pool, "fr-s", NULL), 0);
	check_pool();
}

/* ops->rw_nowait with one request; its result. */
static int nowait(void *h, int op, void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	struct np_io io = {.op = op, .buf = buf, .len = len, .offset = off, .flags = flags};
	struct np_io *ios[1] = {&io};

	io.result = 1;
	ops->rw_nowait(h, ios, 1);
	return io.result;
}

/* The loop's share (rw_nowait): READs and WRITEs without FUA inside one
 * chunk the volume owns, with the data file in memory; anything else is
 * left -EAGAIN for the pool. A pool on /dev/shm, so that its data file is
 * in memory; on a disk, nothing is done on the loop. */
static void test_rw_nowait(void)
{
	char saved[PATH_MAX], dir[] = "/dev/shm/test_thin_nowait.XXXXXX";
	uint8_t buf[4 * K], want[4 * K];
	pthread_rwlock_t *stripe;
	struct thin_vol *tv;
	void *h = new_vol("nw", "1M");

	if (!h)
		return;
	fill(buf, sizeof(buf), 0, 1);
	CHECK_EQ(nowait(h, NP_OP_READ, buf, sizeof(buf), 0, 0), -EAGAIN);
	CHECK_EQ(write_pat(h, 4 * K, 0, 80, 0), 0);
	if (!((struct thin_vol *)h)->pool->data_in_memory)
		CHECK_EQ(nowait(h, NP_OP_READ, buf, sizeof(buf), 0, 0), -EAGAIN);
	ops->close(h);
	CHECK_EQ(vol("delete", pool, "nw", NULL), 0);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "test_rw_nowait: no /dev/shm, in-memory part skipped\n");
		return;
	}
	strcpy(saved, pool);
	snprintf(pool, sizeof(pool), "%s/pool", dir);
	CHECK_EQ(vol("init", pool, "--size", "4M", NULL), 0);
	h = new_vol("nw", "1M");
	if (!h)
		goto out;
	tv = h;
	CHECK(tv->pool->data_in_memory);
	fill(buf, sizeof(buf), 8 * K, 81);
	CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, 0), -EAGAIN); /* a hole */
	CHECK_EQ(write_pat(h, 4 * K, 0, 80, 0), 0);                            /* chunk 0 owned */
	CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, 0), 0);
	CHECK(verify(h, 4 * K, 8 * K, 81));
	CHECK(verify(h, 4 * K, 0, 80));
	CHECK(verify(h, 4 * K, 4 * K, -1));
	memset(want, 0, sizeof(want));
	CHECK_EQ(nowait(h, NP_OP_READ, want, sizeof(want), 8 * K, 0), 0);
	CHECK(memcmp(want, buf, sizeof(buf)) == 0);
	CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, NP_IO_FUA), -EAGAIN);
	CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), CS - 2 * K, 0), -EAGAIN); /* 2 chunks */
	CHECK_EQ(nowait(h, NP_OP_TRIM, NULL, 4 * K, 0, 0), -EAGAIN);
	/* A catalog change holds io_lock: the loop does not wait for it. */
	pthread_rwlock_wrlock(&tv->pool->io_lock);
	CHECK_EQ(nowait(h, NP_OP_READ, want, sizeof(want), 8 * K, 0), -EAGAIN);
	pthread_rwlock_unlock(&tv->pool->io_lock);
	/* A writer of the chunk holds its stripe (thin.c's stripe_of). */
	stripe = &tv->pool->stripes[(tv->chain[0].dev * 0x9E3779B97F4A7C15ULL) % THIN_STRIPES];
	pthread_rwlock_wrlock(stripe);
	CHECK_EQ(nowait(h, NP_OP_READ, want, sizeof(want), 8 * K, 0), -EAGAIN);
	pthread_rwlock_unlock(stripe);
	ops->close(h);
	/* After a snapshot chunk 0 is shared: copied on write by the pool. */
	CHECK_EQ(vol("snapshot", pool, "nw", "nw-s", NULL), 0);
	h = open_vol("nw", false);
	CHECK(h != NULL);
	if (h) {
		fill(buf, sizeof(buf), 8 * K, 82);
		CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, 0), -EAGAIN);
		CHECK_EQ(write_pat(h, 4 * K, 8 * K, 82, 0), 0);
		CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, 0), 0);
		CHECK(verify(h, 4 * K, 8 * K, 82));
		ops->close(h);
	}
	h = open_vol("nw-s", true);
	CHECK(h != NULL);
	if (h) {
		CHECK_EQ(nowait(h, NP_OP_WRITE, buf, sizeof(buf), 8 * K, 0),
			 -EAGAIN); /* read-only */
		CHECK(verify(h, 4 * K, 8 * K, 81));
		ops->close(h);
	}
	check_pool();
out:
	strcpy(pool, saved);
	snprintf(saved, sizeof(saved), "rm -rf '%s'", dir);
	if (system(saved) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* A punch that fails writes the fresh chunk whole (zeroes around the
 * data). Only EOPNOTSUPP stops the pool punching; an I/O error is taken
 * for this chunk alone. */
static void test_punch_fails(void)
{
	void *h = new_vol("pf", "1M");
	unsigned before;

	if (!h)
		return;
	CHECK(!((struct thin_vol *)h)->pool->no_punch);
	before = punches;
	punch_errno = EIO;
	CHECK_EQ(write_pat(h, 4 * K, 4 * K, 70, 0), 0);
	CHECK_EQ(punches, before + 1);
	CHECK(!((struct thin_vol *)h)->pool->no_punch);
	punch_errno = EOPNOTSUPP;
	CHECK_EQ(write_pat(h, 4 * K, CS + 8 * K, 71, 0), 0);
	CHECK_EQ(punches, before + 2);
	CHECK(((struct thin_vol *)h)->pool->no_punch);
	punch_errno = 0;
	CHECK_EQ(write_pat(h, 4 * K, 2 * CS, 72, 0), 0); /* no punch tried */
	CHECK_EQ(punches, before + 2);
	CHECK(verify(h, 4 * K, 0, -1));
	CHECK(verify(h, 4 * K, 4 * K, 70));
	CHECK(verify(h, CS - 8 * K, 8 * K, -1));
	CHECK(verify(h, 8 * K, CS, -1));
	CHECK(verify(h, 4 * K, CS + 8 * K, 71));
	CHECK(verify(h, CS - 12 * K, CS + 12 * K, -1));
	CHECK(verify(h, 4 * K, 2 * CS, 72));
	CHECK(verify(h, CS - 4 * K, 2 * CS + 4 * K, -1));
	/* The flag lives in the pool, which closes with its last volume. */
	ops->close(h);
	CHECK_EQ(vol("delete", pool, "pf", NULL), 0);
	check_pool();
}

struct big_writer {
	void *h;
	unsigned id, seed;
	uint64_t len, skew; /* each write: len bytes at k MiB + skew */
	int rc;
};

#define BIG_VOL (32 * M)

/* Writes every fourth MiB, from its id on: beside the other threads', and
 * sharing a chunk with them wherever skew cuts one. */
static void *big_writer_main(void *arg)
{
	struct big_writer *w = arg;

	for (uint64_t k = w->id; k + 1 < BIG_VOL / M && w->rc == 0; k += 4)
		w->rc = write_pat(w->h, w->len, k * M + w->skew, w->seed, 0);
	return NULL;
}

/* What big_writer_main leaves in img, in one thread. */
static void big_expect(uint8_t *img, const struct big_writer *w)
{
	for (uint64_t k = 0; k + 1 < BIG_VOL / M; k++)
		fill(img + k * M + w->skew, w->len, k * M + w->skew, w->seed);
}

static bool big_run(void *h, uint64_t len, uint64_t skew, unsigned seed)
{
	struct big_writer w[4];
	pthread_t t[4];
	bool ok = true;

	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct big_writer){.h = h, .id = i, .seed = seed, .len = len, .skew = skew};
		pthread_create(&t[i], NULL, big_writer_main, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].rc, 0);
		ok = ok && w[i].rc == 0;
	}
	return ok;
}

static bool image_matches(void *h, const uint8_t *img)
{
	uint8_t *got = malloc(BIG_VOL);
	bool ok = got && ops->pread(h, got, BIG_VOL, 0) == 0 && memcmp(got, img, BIG_VOL) == 0;

	free(got);
	return ok;
}

/* Writes of NP_BIG_WRITE or more to a pool whose data is on tmpfs take
 * turns at the data file (pool.h, big_write). Four threads write 1 MiB
 * each to fresh space, cutting chunks they share, then 512 KiB each over
 * it after a snapshot (copies on write and partial chunks). */
static void test_big_writes(const char *tmp)
{
	char saved[PATH_MAX], data[] = "/dev/shm/test_thin.XXXXXX";
	uint8_t *img = calloc(1, BIG_VOL), *img1 = malloc(BIG_VOL);
	int fd = mkstemp(data);
	void *h;

	memcpy(saved, pool, sizeof(saved));
	snprintf(pool, sizeof(pool), "%s/poolshm", tmp);
	CHECK(fd >= 0 && img && img1);
	if (fd < 0 || !img || !img1)
		goto out;
	close(fd);
	unlink(data); /* init makes it */
	CHECK_EQ(vol("init", pool, "--data", data, "--size", "64M", NULL), 0);
	h = new_vol("b", "32M");
	if (!h)
		goto out;
	CHECK(((struct thin_vol *)h)->pool->data_in_memory);
	CHECK(big_run(h, M, 4 * K, 60));
	ops->close(h);
	CHECK_EQ(vol("snapshot", pool, "b", "b-s", NULL), 0);
	h = open_vol("b", false);
	CHECK(h != NULL);
	if (!h)
		goto out;
	CHECK(big_run(h, 512 * K, 300 * K, 61));
	big_expect(img, &(struct big_writer){.len = M, .skew = 4 * K, .seed = 60});
	memcpy(img1, img, BIG_VOL);
	big_expect(img, &(struct big_writer){.len = 512 * K, .skew = 300 * K, .seed = 61});
	CHECK(image_matches(h, img));
	ops->close(h);
	h = open_vol("b-s", true);
	CHECK(h != NULL);
	if (h) {
		CHECK(image_matches(h, img1));
		ops->close(h);
	}
	check_pool();
out:
	unlink(data);
	free(img);
	free(img1);
	memcpy(pool, saved, sizeof(pool));
}

static void test_tool_errors(const char *tmp)
{
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/nope", tmp);
	CHECK(vol("list", path, NULL) != 0);
	CHECK(vol("create", path, "x", "1M", NULL) != 0);
	CHECK(access(path, F_OK) != 0);
	/* A directory that is not a pool. */
	snprintf(path, sizeof(path), "%s/foreign", tmp);
	mkdir(path, 0700);
	CHECK(vol("list", path, NULL) != 0);
	CHECK(vol("create", path, "x", "1M", NULL) != 0);
	snprintf(path, sizeof(path), "%s/foreign/file", tmp);
	f = fopen(path, "w");
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/foreign", tmp);
	CHECK(vol("init", path, NULL) != 0); /* not empty */
	CHECK(vol("init", pool, NULL) != 0); /* already a pool */
	snprintf(path, sizeof(path), "%s/tiny", tmp);
	CHECK(vol("init", path, "--size", "16K", NULL) != 0);
	CHECK(access(path, F_OK) != 0);                         /* nothing left behind */
	CHECK(vol("init", path, "--size", "1000T", NULL) != 0); /* more than the disk */
	CHECK(access(path, F_OK) != 0);
	CHECK(vol("init", path, "--chunk-size", "3000", NULL) != 0);
	CHECK(vol("init", path, "--bogus", NULL) != 0);

	CHECK(vol("create", pool, "v1", "1M", NULL) != 0); /* duplicate */
	CHECK(vol("create", pool, "new", "12Q", NULL) != 0);
	CHECK(vol("create", pool, "new", "0", NULL) != 0);
	CHECK(vol("create", pool, "bad/name", "1M", NULL) != 0);
	CHECK(vol("create", pool, "new", NULL) != 0);
	CHECK(vol("snapshot", pool, "missing", "s", NULL) != 0);
	CHECK(vol("clone", pool, "v1", "c", NULL) != 0); /* not a snapshot */
	CHECK(vol("delete", pool, "missing", NULL) != 0);
	CHECK(vol("frobnicate", pool, NULL) != 0);
	CHECK_EQ(vol("create", "--help", NULL), 0);
	CHECK_EQ(vol("--help", NULL), 0);
	/* None of that created anything. */
	CHECK(open_vol("new", false) == NULL);
	CHECK(open_vol("c", false) == NULL);
	CHECK(open_vol("s", true) == NULL);
	CHECK_EQ(vol("list", pool, NULL), 0);
	CHECK_EQ(vol("check", pool, NULL), 0);
}

/* Rewrites the pool record as a pool made before growth had it: version 1,
 * nchunks chunks, the data file sized to match. */
static void make_v1(const char *data, uint64_t nchunks)
{
	struct thin_pool *p = pool_get();
	struct thin_meta m;
	char *err = NULL;

	CHECK_EQ(truncate(data, nchunks * CS), 0);
	CHECK(p != NULL);
	if (!p)
		return;
	m = p->meta;
	m.version = 1;
	m.nchunks = nchunks;
	rocksdb_put(p->db, p->wo, "M", 1, (const char *)&m, THIN_META_V1_LEN, &err);
	CHECK(err == NULL);
	free(err);
	thin_pool_close(p);
}

static size_t meta_len(void)
{
	struct thin_pool *p = pool_get();
	char *err = NULL, *v;
	size_t len = 0;

	if (!p)
		return 0;
	v = rocksdb_get(p->db, p->ro, "M", 1, &len, &err);
	free(v);
	free(err);
	thin_pool_close(p);
	return len;
}

/* A pool grows in steps as writes need chunks, records each step, reopens
 * after a step cut short (a data file larger than the pool), and refuses a
 * data file smaller than its record. A pool of version 1 keeps its size
 * and stays version 1. */
static void test_grow(const char *tmp)
{
	char saved[sizeof(pool)], data[PATH_MAX + 16];
	struct thin_pool *p;
	struct stat st;
	void *h;

	memcpy(saved, pool, sizeof(saved));
	snprintf(pool, sizeof(pool), "%s/poolgrow", tmp);
	snprintf(data, sizeof(data), "%s/data", pool);
	CHECK_EQ(vol("init", pool, NULL), 0);
	CHECK(stat(data, &st) == 0 && st.st_size == 0);
	h = new_vol("g", "64M");
	if (!h)
		goto out;
	p = ((struct thin_vol *)h)->pool;
	CHECK(p->grows);
	CHECK_EQ(p->meta.nchunks, 0);
	p->grow_chunks = 4;
	CHECK_EQ(write_pat(h, 10 * CS, 0, 80, 0), 0); /* a step of what it needs */
	CHECK_EQ(p->meta.nchunks, 10);
	CHECK_EQ(write_pat(h, CS, 20 * CS, 81, 0), 0); /* a step of 4 */
	CHECK_EQ(p->meta.nchunks, 14);
	CHECK(stat(data, &st) == 0 && st.st_size == (off_t)(14 * CS));
	ops->close(h);
	CHECK_EQ(pool_used(), 11);
	if ((p = pool_get())) {
		CHECK_EQ(p->meta.nchunks, 14); /* recorded */
		thin_pool_close(p);
	}
	/* A crash after the file grew but before the record did. */
	CHECK_EQ(truncate(data, 100 * CS), 0);
	h = open_vol("g", false);
	CHECK(h != NULL);
	if (!h)
		goto out;
	p = ((struct thin_vol *)h)->pool;
	p->grow_chunks = 4;
	CHECK_EQ(write_pat(h, 4 * CS, 30 * CS, 82, 0), 0);
	CHECK_EQ(p->meta.nchunks, 18);
	CHECK(stat(data, &st) == 0 && st.st_size == (off_t)(100 * CS)); /* not shrunk */
	CHECK(verify(h, 10 * CS, 0, 80));
	CHECK(verify(h, CS, 20 * CS, 81));
	CHECK(verify(h, 4 * CS, 30 * CS, 82));
	ops->close(h);
	check_pool();
	/* The file lost what the record says it has: refused, not used. */
	CHECK_EQ(truncate(data, 17 * CS), 0);
	CHECK(open_vol("g", false) == NULL);
	CHECK_EQ(truncate(data, 100 * CS), 0);

	/* Version 1: 20 chunks, 15 of them used, no growth. */
	make_v1(data, 20);
	CHECK_EQ(meta_len(), THIN_META_V1_LEN);
	h = open_vol("g", false);
	CHECK(h != NULL);
	if (!h)
		goto out;
	p = ((struct thin_vol *)h)->pool;
	CHECK(!p->grows);
	CHECK_EQ(write_pat(h, 5 * CS, 40 * CS, 83, 0), 0);
	CHECK_EQ(write_pat(h, CS, 50 * CS, 84, 0), -ENOSPC);
	CHECK_EQ(p->meta.nchunks, 20);
	CHECK(verify(h, 10 * CS, 0, 80));
	CHECK(verify(h, 5 * CS, 40 * CS, 83));
	ops->close(h);
	/* A catalog change writes the record back as it was. */
	CHECK_EQ(vol("create", pool, "g2", "1M", NULL), 0);
	CHECK_EQ(meta_len(), THIN_META_V1_LEN);
	check_pool();

	/* --size is the most the pool may grow to. */
	snprintf(pool, sizeof(pool), "%s/poolmax", tmp);
	snprintf(data, sizeof(data), "%s/data", pool);
	CHECK_EQ(vol("init", pool, "--size", "1M", NULL), 0);
	CHECK(stat(data, &st) == 0 && st.st_size == 0);
	h = new_vol("m", "4M");
	if (h) {
		CHECK_EQ(write_pat(h, 12 * CS, 0, 85, 0), 0);
		CHECK_EQ(write_pat(h, 8 * CS, 2 * M, 86, 0), -ENOSPC);
		CHECK_EQ(write_pat(h, 4 * CS, 2 * M, 86, 0), 0);
		CHECK_EQ(write_pat(h, CS, 3 * M, 87, 0), -ENOSPC);
		CHECK(verify(h, 12 * CS, 0, 85));
		CHECK(verify(h, 4 * CS, 2 * M, 86));
		ops->close(h);
	}
	CHECK(stat(data, &st) == 0 && st.st_size == (off_t)M);
	check_pool();
out:
	memcpy(pool, saved, sizeof(pool));
}

/* A numeric RocksDB property of the pool, asked of the open pool's
 * database while volumes are open. */
static uint64_t pool_prop(const char *name)
{
	struct thin_pool *p = pool_get();
	uint64_t n = 0;
	char *v;

	if (!p)
		return 0;
	if ((v = rocksdb_property_value(p->db, name)))
		n = strtoull(v, NULL, 10);
	free(v);
	thin_pool_close(p);
	return n;
}

/* Enough commits that the mappings and bitmap segments go through memtable
 * flushes into SST files: a volume of 4K chunks written one chunk at a time
 * in scattered order, snapshotted, partly overwritten (copy on write) and
 * partly trimmed, then read back after a reopen. */
static void test_flushes(const char *tmp)
{
	enum { N = 49152, STEP = 40507 }; /* STEP is prime to N: a permutation */
	char saved[PATH_MAX];
	uint64_t used, sst;
	void *h;
	int rc = 0;

	memcpy(saved, pool, sizeof(saved));
	snprintf(pool, sizeof(pool), "%s/pool4k", tmp);
	CHECK_EQ(vol("init", pool, "--chunk-size", "4K", "--size", "256M", NULL), 0);
	h = new_vol("f", "192M");
	if (!h)
		goto out;
	sst = pool_prop("rocksdb.total-sst-files-size");
	for (uint64_t i = 0; i < N && rc == 0; i++)
		rc = write_pat(h, 4 * K, i * STEP % N * 4 * K, 30, 0);
	CHECK_EQ(rc, 0);
	/* The memtable filled up: it is being flushed, or it was. */
	CHECK(pool_prop("rocksdb.num-immutable-mem-table") > 0 ||
	      pool_prop("rocksdb.total-sst-files-size") > sst);
	ops->close(h);
	CHECK_EQ(vol("snapshot", pool, "f", "f-s", NULL), 0);
	h = open_vol("f", false);
	CHECK(h != NULL);
	if (!h)
		goto out;
	for (uint64_t i = 0; i < N && rc == 0; i++) {
		uint64_t k = i * STEP % N;

		if (k % 3 == 0)
			rc = write_pat(h, 4 * K, k * 4 * K, 31, 0);
		if (k % 5 == 0 && rc == 0)
			rc = ops->trim(h, 4 * K, k * 4 * K, 0);
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(ops->flush(h), 0);
	ops->close(h);

	/* All N chunks, the copies of every third one, less the copies that
	 * were trimmed again (every fifteenth). */
	used = pool_used();
	CHECK_EQ(used, N + (N + 2) / 3 - (N + 14) / 15);
	h = open_vol("f", true);
	CHECK(h != NULL);
	if (h) {
		for (uint64_t k = 0; k < N && rc == 0; k++)
			if (!verify(h, 4 * K, k * 4 * K, k % 5 == 0 ? -1 : k % 3 == 0 ? 31 : 30))
				rc = -1;
		CHECK_EQ(rc, 0);
		ops->close(h);
	}
	h = open_vol("f-s", true);
	CHECK(h != NULL);
	if (h) {
		for (uint64_t k = 0; k < N && rc == 0; k++)
			if (!verify(h, 4 * K, k * 4 * K, 30))
				rc = -1;
		CHECK_EQ(rc, 0);
		ops->close(h);
	}
	check_pool();
out:
	memcpy(pool, saved, sizeof(pool));
}

/* The typed admin API (thin_admin.h) that `nbdplex volume` and the control
 * socket share: typed results, and errors as -errno with a message. */
static void test_admin_api(void)
{
	struct thin_pool *p = pool_get();
	struct thin_vol_info *vols = NULL;
	struct thin_pool_info info;
	size_t n = 0, found = 0;
	char *err = NULL;

	CHECK(p != NULL);
	if (!p)
		return;
	CHECK_EQ(thin_admin_create(p, "api-v", 3 * CS, &err), 0);
	CHECK_EQ(thin_admin_snapshot(p, "api-v", "api-s", &err), 0);
	CHECK_EQ(thin_admin_list(p, &vols, &n, &info, &err), 0);
	for (size_t i = 0; i < n; i++) {
		if (i)
			CHECK(strcmp(vols[i - 1].name, vols[i].name) < 0);
		if (strcmp(vols[i].name, "api-v") == 0) {
			CHECK(!vols[i].snapshot && vols[i].size == 3 * CS);
			CHECK(strcmp(vols[i].origin, "") == 0);
			found++;
		}
		if (strcmp(vols[i].name, "api-s") == 0) {
			CHECK(vols[i].snapshot && strcmp(vols[i].origin, "api-v") == 0);
			found++;
		}
	}
	CHECK_EQ(found, 2);
	CHECK_EQ(info.chunk_size, CS);
	CHECK(strcmp(info.dir, p->dir) == 0);
	free(vols);
	CHECK_EQ(thin_admin_create(p, "api-v", CS, &err), -EEXIST);
	CHECK(err && strstr(err, "api-v already exists"));
	free(err);
	err = NULL;
	CHECK_EQ(thin_admin_create(p, "-bad", CS, &err), -EINVAL);
	free(err);
	err = NULL;
	CHECK_EQ(thin_admin_create(p, "api-z", 0, NULL), -EINVAL);
	CHECK_EQ(thin_admin_clone(p, "api-v", "api-c", &err), -EINVAL); /* not a snapshot */
	CHECK(err && strstr(err, "is a volume, not a snapshot"));
	free(err);
	err = NULL;
	CHECK_EQ(thin_admin_resize(p, "api-v", 5 * CS, &err), 0);
	CHECK_EQ(thin_admin_delete(p, "api-s", &err), 0);
	CHECK_EQ(thin_admin_delete(p, "api-v", &err), 0);
	CHECK_EQ(thin_admin_delete(p, "api-v", &err), -ENOENT);
	free(err);
	thin_pool_close(p);
}

int main(void)
{
	char tmp[] = "/tmp/test_thin.XXXXXX";
	char cmd[PATH_MAX];

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(pool, sizeof(pool), "%s/pool", tmp);
	/* 16 MiB of 64 KiB chunks: 256 chunks, small enough to fill. */
	CHECK_EQ(vol("init", pool, "--size", "16M", NULL), 0);
	test_rw_holes();
	test_snapshot_clone();
	test_admin_api();
	test_concurrent();
	test_cache();
	test_cache_churn();
	test_space();
	test_resize();
	test_fast_zero();
	test_fresh_punch();
	test_fresh_runs();
	test_rw_nowait();
	test_punch_fails();
	test_big_writes(tmp);
	test_tool_errors(tmp);
	test_flushes(tmp);
	test_grow(tmp);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("test_thin: all checks passed\n");
	return 0;
}
