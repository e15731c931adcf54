/* Crash consistency of the thin engine: a child process writes, zeroes and
 * trims with FUA or FLUSH from several threads and is killed with SIGKILL at
 * a random moment; a fresh process then reopens the pool and checks that
 * every write acknowledged as durable reads back (or a later one that was
 * in flight), and that the allocation bitmap matches the block maps.
 *
 * The oracle is a log the child appends to: an "intent" record before each
 * operation and a "durable" record once FUA or a FLUSH covered it. Each 4K
 * block belongs to one thread, so its records are in program order.
 *
 * Meanwhile the child snapshots the volume and deletes old snapshots, and
 * the pool grows.
 *
 * Usage: thin_crash [ITERATIONS]        (the test; default 12)
 *        thin_crash child POOL LOG SEQBASE SECONDS
 *        thin_crash verify POOL LOG
 * The parent never opens RocksDB itself, so that forking it stays safe. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/proto.h"
#include "storage/storage.h"
#include "storage/thin/pool.h"
#include "tools/volume.h"

#define BS       4096ULL
#define CS       (64 * 1024ULL)
#define VOL_SIZE (16 * 1024 * 1024ULL)
#define NBLOCKS  (VOL_SIZE / BS)
#define SHARED   (NBLOCKS / 2) /* blocks below: 4K ops; above: whole-chunk ops */
#define THREADS  4

enum { REC_WRITE = 1, REC_ZERO = 2, REC_DURABLE = 3 };

struct rec {
	uint32_t type;
	uint32_t nblocks;
	uint64_t block;
	uint64_t seq;
};

static const struct np_storage_ops *ops = &np_storage_thin;

static void pattern(uint8_t *buf, uint64_t block, uint64_t seq)
{
	uint64_t *w = (uint64_t *)buf;

	for (unsigned i = 0; i < BS / 8; i++)
		w[i] = (block * 0x9E3779B97F4A7C15ULL) ^ (seq << 16) ^ i;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- child ---- */

static void *h;
static int logfd;
static atomic_uint_fast64_t seqno;
static double deadline;

static void log_rec(uint32_t type, uint64_t block, uint32_t n, uint64_t seq)
{
	struct rec r = {type, n, block, seq};

	if (write(logfd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
}

/* Chunks in a unit of the whole-chunk blocks: a write of a whole unit
 * takes the engine's path for runs of fresh chunks (one punch, one write,
 * one batch of mappings). */
#define RUN 4

/* Owner of a block: interleaved 4K blocks below SHARED; above, units of RUN
 * chunks, written one whole chunk or the whole unit at a time. */
static uint64_t pick(unsigned t, unsigned *rnd, uint32_t *n)
{
	uint64_t unit;

	if (rand_r(rnd) % 2) {
		*n = 1;
		return (rand_r(rnd) % (SHARED / THREADS)) * THREADS + t;
	}
	unit = SHARED +
	       ((rand_r(rnd) % ((NBLOCKS - SHARED) / (RUN * CS / BS) / THREADS)) * THREADS + t) *
		   (RUN * CS / BS);
	if (rand_r(rnd) % 2) {
		*n = RUN * CS / BS;
		return unit;
	}
	*n = CS / BS;
	return unit + rand_r(rnd) % RUN * *n;
}

static void *child_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg, rnd = t * 7919 + getpid();
	uint8_t *buf = malloc(RUN * CS);
	uint64_t pend_block[64];
	uint32_t pend_n[64];
	uint64_t pend_seq[64];
	unsigned npend = 0;

	for (unsigned i = 0; i < 1000000 && now() < deadline; i++) {
		uint32_t n;
		uint64_t b = pick(t, &rnd, &n), seq = atomic_fetch_add(&seqno, 1);
		unsigned kind = rand_r(&rnd) % 10;
		bool fua = kind < 5;
		int rc;

		if (kind == 9) {
			log_rec(REC_ZERO, b, n, seq);
			rc = (rand_r(&rnd) % 2 ? ops->trim : ops->zero)(h, n * BS, b * BS,
									NP_IO_FUA);
			fua = true;
		} else {
			for (uint32_t k = 0; k < n; k++)
				pattern(buf + k * BS, b + k, seq);
			log_rec(REC_WRITE, b, n, seq);
			rc = ops->pwrite(h, buf, n * BS, b * BS, fua ? NP_IO_FUA : 0);
		}
		if (rc < 0) {
			fprintf(stderr, "child: op failed: %s\n", strerror(-rc));
			_exit(4);
		}
		if (fua) {
			log_rec(REC_DURABLE, b, n, seq);
			continue;
		}
		pend_block[npend] = b;
		pend_n[npend] = n;
		pend_seq[npend++] = seq;
		if (npend == 64 || rand_r(&rnd) % 4 == 0) {
			if (ops->flush(h) < 0)
				_exit(5);
			for (unsigned k = 0; k < npend; k++)
				log_rec(REC_DURABLE, pend_block[k], pend_n[k], pend_seq[k]);
			npend = 0;
		}
	}
	free(buf);
	return NULL;
}

/* Snapshots of the volume under load, and deletes that fold old snapshots
 * into newer ones, so that kills also land in the middle of those. */
static void *admin_thread(void *arg)
{
	struct thin_pool *p = ((struct thin_vol *)h)->pool;
	char name[THIN_NAME_MAX + 1], old[THIN_NAME_MAX + 1];

	(void)arg;
	/* Snapshots left by the previous child would fill the pool. */
	for (unsigned left = 1, n = 0; left && n < 1000; n++) {
		char *err = NULL;

		left = 0;
		pthread_rwlock_rdlock(&p->io_lock);
		for (size_t i = 0; i < p->ndevs; i++)
			if (p->devs[i].r.kind == THIN_SNAPSHOT) {
				snprintf(name, sizeof(name), "%s", p->devs[i].r.name);
				left = 1;
			}
		pthread_rwlock_unlock(&p->io_lock);
		if (left && thin_admin_delete(p, name, &err) < 0) {
			fprintf(stderr, "child: delete %s: %s\n", name, err ? err : "?");
			_exit(6);
		}
	}
	for (unsigned k = 0; k < 10000 && now() < deadline; k++) {
		char *err = NULL;
		struct timespec ts = {0, 20 * 1000 * 1000};

		snprintf(name, sizeof(name), "s%u-%u", getpid(), k);
		if (thin_admin_snapshot(p, "c", name, &err) < 0) {
			fprintf(stderr, "child: snapshot: %s\n", err ? err : "?");
			_exit(6);
		}
		if (k >= 2) {
			snprintf(old, sizeof(old), "s%u-%u", getpid(), k - 2);
			if (thin_admin_delete(p, old, &err) < 0) {
				fprintf(stderr, "child: delete: %s\n", err ? err : "?");
				_exit(6);
			}
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int child(const char *pool, const char *log, uint64_t seqbase, double seconds)
{
	char spec[PATH_MAX + 8], *err = NULL;
	pthread_t th[THREADS], adm;

	deadline = now() + seconds;
	atomic_store(&seqno, seqbase);
	logfd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
	snprintf(spec, sizeof(spec), "%s/c", pool);
	if (logfd < 0 || ops->open(spec, false, &h, &err) < 0) {
		fprintf(stderr, "child: open: %s\n", err ? err : strerror(errno));
		return 2;
	}
	/* The pool grows from empty towards its 64M in steps of 1M, so that
	 * kills also land in the middle of growth. */
	((struct thin_vol *)h)->pool->grow_chunks = 16;
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, child_thread, (void *)t);
	pthread_create(&adm, NULL, admin_thread, NULL);
	for (unsigned t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_join(adm, NULL);
	ops->close(h);
	return 0;
}

/* ---- verify ---- */

struct cand {
	uint64_t seq;
	bool zero;
};

struct blockstate {
	struct cand *c; /* the last durable state and everything after it */
	size_t n, cap;
};

static int verify(const char *pool, const char *log)
{
	struct blockstate *bs = calloc(NBLOCKS, sizeof(*bs));
	uint8_t got[BS], want[BS];
	char spec[PATH_MAX + 8], *err = NULL;
	struct thin_pool *p;
	struct rec r;
	FILE *f = fopen(log, "r");
	unsigned bad = 0;
	uint64_t durable = 0;

	for (uint64_t b = 0; b < NBLOCKS; b++) {
		bs[b].c = malloc(sizeof(struct cand) * 4);
		bs[b].cap = 4;
		bs[b].n = 1; /* never written: zeroes */
		bs[b].c[0] = (struct cand){0, true};
	}
	while (f && fread(&r, sizeof(r), 1, f) == 1) {
		for (uint64_t b = r.block; b < r.block + r.nblocks && b < NBLOCKS; b++) {
			struct blockstate *s = &bs[b];

			if (r.type == REC_DURABLE) {
				/* Drop the states before this one: it is durable. */
				for (size_t i = 0; i < s->n; i++)
					if (s->c[i].seq == r.seq) {
						memmove(s->c, s->c + i, (s->n - i) * sizeof(*s->c));
						s->n -= i;
						break;
					}
				durable++;
				continue;
			}
			if (s->n == s->cap) {
				s->cap *= 2;
				s->c = realloc(s->c, s->cap * sizeof(*s->c));
			}
			s->c[s->n++] = (struct cand){r.seq, r.type == REC_ZERO};
		}
	}
	if (f)
		fclose(f);
	snprintf(spec, sizeof(spec), "%s/c", pool);
	if (ops->open(spec, true, &h, &err) < 0) {
		fprintf(stderr, "verify: reopen failed: %s\n", err ? err : "?");
		return 1;
	}
	for (uint64_t b = 0; b < NBLOCKS; b++) {
		bool ok = false;

		if (ops->pread(h, got, BS, b * BS) < 0) {
			fprintf(stderr, "verify: read of block %llu failed\n",
				(unsigned long long)b);
			return 1;
		}
		for (size_t i = 0; i < bs[b].n && !ok; i++) {
			if (bs[b].c[i].zero)
				memset(want, 0, BS);
			else
				pattern(want, b, bs[b].c[i].seq);
			ok = memcmp(got, want, BS) == 0;
		}
		if (!ok && bad++ < 10)
			fprintf(stderr,
				"verify: block %llu matches none of %zu states (first %llu)\n",
				(unsigned long long)b, bs[b].n, (unsigned long long)bs[b].c[0].seq);
		free(bs[b].c);
	}
	free(bs);
	ops->close(h);
	if (thin_pool_open(pool, false, &p, &err) < 0) {
		fprintf(stderr, "verify: %s\n", err ? err : "open failed");
		return 1;
	}
	pthread_rwlock_wrlock(&p->io_lock);
	if (thin_check(p, stderr) < 0)
		bad++;
	pthread_rwlock_unlock(&p->io_lock);
	thin_pool_close(p);
	printf("verify: %llu durable records, %u bad\n", (unsigned long long)durable, bad);
	return bad ? 1 : 0;
}

/* ---- parent ---- */

static int run_self(const char *self, char *const argv[], double kill_after)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv(self, argv);
		_exit(127);
	}
	if (kill_after > 0) {
		struct timespec ts = {(time_t)kill_after,
				      (long)((kill_after - (time_t)kill_after) * 1e9)};

		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return WTERMSIG(status) == SIGKILL ? 0 : -1;
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/thin_crash.XXXXXX", pool[PATH_MAX], log[PATH_MAX], self[PATH_MAX];
	char seqbuf[32], cmd[PATH_MAX + 16];
	unsigned iterations = argc > 1 ? atoi(argv[1]) : 12, done = 0, rnd = getpid();
	double start = now();
	ssize_t n;
	int rc = 0;

	if (argc == 6 && strcmp(argv[1], "child") == 0)
		return child(argv[2], argv[3], strtoull(argv[4], NULL, 10), atof(argv[5]));
	if (argc == 4 && strcmp(argv[1], "verify") == 0)
		return verify(argv[2], argv[3]);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0 || !mkdtemp(tmp))
		return 1;
	self[n] = '\0';
	snprintf(pool, sizeof(pool), "%s/pool", tmp);
	snprintf(log, sizeof(log), "%s/log", tmp);
	{
		char *init[] = {"volume", "init", pool, "--size", "64M", NULL};
		char *create[] = {"volume", "create", pool, "c", "16M", NULL};

		/* np_cmd_volume opens RocksDB in this process: do it in a
		 * child so that the parent stays fork-safe. */
		pid_t pid = fork();
		int status;

		if (pid == 0)
			_exit(np_cmd_volume(5, init) || np_cmd_volume(5, create));
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
	}
	/* Bounded in count and in time. */
	for (unsigned i = 0; i < iterations && now() - start < 120 && rc == 0; i++) {
		double kill_after = 0.05 + (rand_r(&rnd) % 600) / 1000.0;
		char *cargv[] = {self, "child", pool, log, seqbuf, "20", NULL};
		char *vargv[] = {self, "verify", pool, log, NULL};

		snprintf(seqbuf, sizeof(seqbuf), "%llu", (unsigned long long)(i + 1) << 32);
		if (run_self(self, cargv, kill_after) != 0) {
			fprintf(stderr, "iteration %u: child failed\n", i);
			rc = 1;
			break;
		}
		if (run_self(self, vargv, 0) != 0) {
			fprintf(stderr, "iteration %u: verify failed after kill at %.3f s\n", i,
				kill_after);
			rc = 1;
			break;
		}
		done++;
	}
	if (rc == 0 && done == 0)
		rc = 1;
	printf("thin_crash: %u kill -9 iterations, %s\n", done, rc ? "FAILED" : "ok");
	if (rc == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmp);
	} else {
		fprintf(stderr, "kept %s for inspection\n", tmp);
	}
	return rc;
}
