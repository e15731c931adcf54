/* The cost of the dirty-map walk (storage/thin/diff.c, issue 26):
 *   diff_walk DIR SIZE_GIB CHANGED
 * makes a pool in DIR (which must not exist) with 64 KiB chunks, a volume
 * v of SIZE_GIB GiB and its snapshot s1, then maps CHANGED chunks of v
 * chosen at random (a seeded generator) as if written after s1, reopens
 * the pool (so the maps are read from RocksDB's files, not its memtable),
 * and times thin_admin_diff(s1, v) over the whole volume: the walk behind
 * `volume diff`, `export --since` and qemu:dirty-bitmap:s1. CHANGED is a
 * count of chunks, or a percentage of the volume ("1%").
 *
 * The mappings are put in the database directly, with no data written
 * (physical chunk = logical chunk), because the walk reads maps only:
 * a 64 GiB volume half rewritten would otherwise take 32 GiB of writes.
 * Prints one line: size, changed chunks, ranges found, and the median of
 * five walks in seconds and nanoseconds per changed chunk. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/thin/pool.h"

#define CHUNK (64 * 1024)
#define RUNS  5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int count_cb(void *ctx, uint64_t off, uint64_t len)
{
	uint64_t *n = ctx;

	(void)off;
	(void)len;
	n[0]++;
	n[1] += len;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what, int rc, char *err)
{
	fprintf(stderr, "diff_walk: %s: %s\n", what, err ? err : strerror(-rc));
	exit(1);
}

/* Maps k distinct chunks of n, chosen by a seeded xorshift, in v's device,
 * in batches of one transaction. */
static void inject(struct thin_pool *p, uint64_t dev, uint64_t n, uint64_t k)
{
	uint8_t *seen = calloc((n + 7) / 8, 1);
	uint64_t x = 0x9e3779b97f4a7c15ULL, done = 0;
	struct thin_txn t = {0};
	uint8_t key[17];
	int rc;

	if (!seen)
		die("memory", -ENOMEM, NULL);
	while (done < k) {
		uint64_t lc;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		lc = x % n;
		if (seen[lc / 8] >> (lc % 8) & 1)
			continue;
		seen[lc / 8] |= (uint8_t)(1 << (lc % 8));
		thin_key_map(key, dev, lc);
		if ((rc = thin_txn_put(&t, key, 17, lc)) < 0)
			die("put", rc, NULL);
		if (++done % 65536 == 0 || done == k) {
			if ((rc = thin_commit(p, &t)) < 0)
				die("commit", rc, NULL);
			thin_txn_reset(&t);
		}
	}
	free(seen);
}

int main(int argc, char **argv)
{
	struct thin_pool *p;
	uint64_t gib, n, k, found[2];
	double secs[RUNS];
	char *err = NULL, *end;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: diff_walk DIR SIZE_GIB CHANGED[%%]\n");
		return 2;
	}
	gib = strtoull(argv[2], NULL, 10);
	n = gib * (1ULL << 30) / CHUNK;
	k = strtoull(argv[3], &end, 10);
	if (*end == '%')
		k = n * k / 100;
	if (!n || k > n)
		return 2;
	if ((rc = thin_pool_create(argv[1], NULL, CHUNK, 1ULL << 30, &err)) < 0)
		die("init", rc, err);
	if ((rc = thin_pool_open(argv[1], false, &p, &err)) < 0)
		die("open", rc, err);
	if ((rc = thin_admin_create(p, "v", gib << 30, &err)) < 0 ||
	    (rc = thin_admin_snapshot(p, "v", "s1", &err)) < 0)
		die("create", rc, err);
	inject(p, thin_dev_find(p, "v")->id, n, k);
	thin_pool_close(p);
	if ((rc = thin_pool_open(argv[1], false, &p, &err)) < 0)
		die("reopen", rc, err);
	for (int i = 0; i < RUNS; i++) {
		uint64_t size;
		double t0 = now();

		found[0] = found[1] = 0;
		rc = thin_admin_diff(p, "s1", "v", 0, UINT64_MAX, count_cb, found, &size, &err);
		secs[i] = now() - t0;
		if (rc < 0)
			die("diff", rc, err);
	}
	thin_pool_close(p);
	if (found[1] != k * CHUNK) {
		fprintf(stderr, "diff_walk: found %llu bytes changed, expected %llu\n",
			(unsigned long long)found[1], (unsigned long long)(k * CHUNK));
		return 1;
	}
	qsort(secs, RUNS, sizeof(secs[0]), cmp_double);
	printf("%llu GiB\t%llu chunks changed (%.2f%%)\t%llu ranges\t%.4f s\t%.0f ns/changed "
	       "chunk\n",
	       (unsigned long long)gib, (unsigned long long)k, 100.0 * k / n,
	       (unsigned long long)found[0], secs[RUNS / 2], k ? secs[RUNS / 2] * 1e9 / k : 0);
	return 0;
}
