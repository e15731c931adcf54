/* Unit test of the raw engine, driven directly with a real uv loop.
 *
 *   test_raw SERVED BACKING BLOCKSIZE
 *
 * SERVED is what the engine opens (a loop device or a plain file); BACKING is
 * the file that holds its data (the same path for a plain file), read back
 * with O_DIRECT to check what really reached the medium; BLOCKSIZE is the
 * logical block size the engine must report (0: any power of two from 512,
 * for files, whose alignment the filesystem decides). Every operation also updates an
 * in-memory shadow of the device, and the device must equal the shadow after
 * each phase. tests/raw/test_raw.sh sets up the loop devices. */
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "net/proto.h"
#include "storage/storage.h"

extern const struct np_storage_ops np_storage_raw;

/* Bounds: every wait for completions gives up after this long. */
#define WAIT_SECONDS 60
#define MAX_IOS      1024

static int failures;
/* The loop's thread, and whether submit() is running: done must come on
 * that thread and never from inside submit(). */
static pthread_t loop_thread;
static bool in_submit;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return;
	failures++;
	fprintf(stderr, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct t {
	const struct np_storage_ops *ops;
	void *h;
	uv_loop_t loop;
	uv_timer_t tick;
	void *lh;
	const char *backing;
	uint8_t *shadow;
	uint64_t size;
	uint32_t bs;
	unsigned outstanding;
	uint64_t rng;
};

struct tio {
	struct np_io io;
	struct t *t;
	int finished;
	void *mem; /* what to free: buf may point inside it */
};

static uint64_t rnd(struct t *t)
{
	/* xorshift64: reproducible from the seed printed at start. */
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static void fill(struct t *t, uint8_t *p, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(rnd(t) | 1); /* never zero: trims must show */
}

static void tio_done(struct np_io *io)
{
	struct tio *x = (struct tio *)io;

	check(!x->finished, "done called twice for cmd %u at %llu", io->op,
	      (unsigned long long)io->offset);
	check(pthread_equal(pthread_self(), loop_thread), "done called off the loop thread");
	check(!in_submit, "done called from inside submit()");
	x->finished++;
	x->t->outstanding--;
}

/* The engine's blocking work, on libuv's threadpool here in place of the
 * server's pool: the same promise, fn on another thread and done on the
 * loop, never from inside run_blocking. */
struct test_env {
	struct np_loop_env env; /* first: the engine is handed &env */
	void *h;
};

struct blocking_work {
	uv_work_t work;
	struct np_io *io;
	void (*fn)(void *h, struct np_io *io);
	void *h;
};

static void blocking_work_cb(uv_work_t *w)
{
	struct blocking_work *b = w->data;

	b->fn(b->h, b->io);
}

static void blocking_after_cb(uv_work_t *w, int status)
{
	struct blocking_work *b = w->data;
	struct np_io *io = b->io;

	check(status == 0, "blocking work cancelled: %d", status);
	free(b);
	io->done(io);
}

static void test_run_blocking(const struct np_loop_env *env, struct np_io *io,
			      void (*fn)(void *h, struct np_io *io))
{
	const struct test_env *te = (const struct test_env *)env;
	struct blocking_work *b = malloc(sizeof(*b));

	if (!b)
		abort();
	b->io = io;
	b->fn = fn;
	b->h = te->h;
	b->work.data = b;
	if (uv_queue_work(env->loop, &b->work, blocking_work_cb, blocking_after_cb) < 0)
		abort();
}

static void tick_cb(uv_timer_t *timer)
{
	(void)timer; /* only wakes uv_run so that the deadline is checked */
}

/* Runs the loop until every submitted io is done, or fails after
 * WAIT_SECONDS. */
static void wait_all(struct t *t)
{
	time_t end = time(NULL) + WAIT_SECONDS;

	while (t->outstanding > 0 && time(NULL) < end)
		uv_run(&t->loop, UV_RUN_ONCE);
	check(t->outstanding == 0, "%u ios still outstanding after %d s", t->outstanding,
	      WAIT_SECONDS);
}

static void tio_init(struct t *t, struct tio *x, uint16_t cmd, uint64_t off, uint64_t len,
		     bool misalign)
{
	memset(x, 0, sizeof(*x));
	x->t = t;
	x->io.op = cmd;
	x->io.offset = off;
	x->io.len = len;
	x->io.done = tio_done;
	if (cmd == NP_OP_READ || cmd == NP_OP_WRITE) {
		/* Page-aligned unless asked otherwise, so that both the
		 * direct and the bounce paths are exercised. */
		if (posix_memalign(&x->mem, 4096, len + 8) != 0)
			abort();
		x->io.buf = (uint8_t *)x->mem + (misalign ? 3 : 0);
		if (cmd == NP_OP_WRITE)
			fill(t, x->io.buf, len);
	}
}

static void submit(struct t *t, struct tio *xs, unsigned n)
{
	struct np_io *ptrs[MAX_IOS];
	unsigned i;

	for (i = 0; i < n; i++)
		ptrs[i] = &xs[i].io;
	t->outstanding += n;
	in_submit = true;
	t->ops->submit(t->lh, ptrs, n);
	in_submit = false;
	wait_all(t);
}

static void tio_free(struct tio *xs, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		free(xs[i].mem);
}

/* Reads the whole backing file with O_DIRECT and compares it with the
 * shadow, naming the first difference. */
static void verify_backing(struct t *t, const char *phase)
{
	int fd = open(t->backing, O_RDONLY | O_DIRECT);
	uint8_t *b;
	uint64_t i, got = 0;

	check(fd >= 0, "%s: open %s: %s", phase, t->backing, strerror(errno));
	if (fd < 0)
		return;
	if (posix_memalign((void **)&b, 4096, t->size) != 0)
		abort();
	while (got < t->size) {
		ssize_t r = pread(fd, b + got, t->size - got, (off_t)got);

		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	check(got == t->size, "%s: backing file short: %llu", phase, (unsigned long long)got);
	for (i = 0; i < got && b[i] == t->shadow[i]; i++)
		;
	check(i == got, "%s: backing differs at %llu: %02x, expected %02x", phase,
	      (unsigned long long)i, i < got ? b[i] : 0, i < got ? t->shadow[i] : 0);
	free(b);
	close(fd);
}

static uint64_t rnd_below(struct t *t, uint64_t n)
{
	return n ? rnd(t) % n : 0;
}

/* ---- phases ---- */

static void test_fill_aligned(struct t *t)
{
	/* More requests than the engine has iocb slots, so that some wait. */
	unsigned n = 512, i;
	uint64_t chunk = t->size / n;
	static struct tio xs[MAX_IOS];

	for (i = 0; i < n; i++) {
		tio_init(t, &xs[i], NP_OP_WRITE, i * chunk, chunk, i % 3 == 0);
		if (i % 5 == 0)
			xs[i].io.flags = NP_IO_FUA;
	}
	submit(t, xs, n);
	for (i = 0; i < n; i++) {
		check(xs[i].io.result == 0, "aligned write %u: %d", i, xs[i].io.result);
		memcpy(t->shadow + xs[i].io.offset, xs[i].io.buf, chunk);
	}
	tio_free(xs, n);
	verify_backing(t, "aligned fill");
}

static void test_reads(struct t *t, bool aligned)
{
	unsigned n = 300, i;
	static struct tio xs[MAX_IOS];

	for (i = 0; i < n; i++) {
		uint64_t len = 1 + rnd_below(t, 256 * 1024);
		uint64_t off;

		if (aligned)
			len = (len + t->bs - 1) / t->bs * t->bs;
		off = rnd_below(t, t->size - len + 1);
		if (aligned)
			off = off / t->bs * t->bs;
		tio_init(t, &xs[i], NP_OP_READ, off, len, i % 2);
	}
	submit(t, xs, n);
	for (i = 0; i < n; i++) {
		struct np_io *io = &xs[i].io;

		check(io->result == 0, "read %u: %d", i, io->result);
		check(memcmp(io->buf, t->shadow + io->offset, io->len) == 0,
		      "%s read of %llu at %llu returned wrong data",
		      aligned ? "aligned" : "unaligned", (unsigned long long)io->len,
		      (unsigned long long)io->offset);
	}
	tio_free(xs, n);
}

/* Byte-disjoint unaligned writes packed so that neighbours share blocks:
 * without serialisation of read-modify-write, one of two writers sharing a
 * block writes back the other's stale copy and the shadow comparison
 * fails. */
static void test_unaligned_shared_blocks(struct t *t)
{
	unsigned n = 400, i;
	uint64_t base = t->size / 4, pos = base;
	static struct tio xs[MAX_IOS];

	for (i = 0; i < n; i++) {
		uint64_t len = 1 + rnd_below(t, t->bs * 3 / 2);

		tio_init(t, &xs[i], NP_OP_WRITE, pos, len, i % 2);
		pos += len;
	}
	submit(t, xs, n);
	for (i = 0; i < n; i++) {
		check(xs[i].io.result == 0, "unaligned write %u: %d", i, xs[i].io.result);
		memcpy(t->shadow + xs[i].io.offset, xs[i].io.buf, xs[i].io.len);
	}
	tio_free(xs, n);
	verify_backing(t, "unaligned writes sharing blocks");
}

/* A whole-block aligned write and an unaligned write inside the same block,
 * in one batch. Either order is allowed, but the bytes outside the small
 * write must be the big write's: a read-modify-write that read the block
 * before the aligned write landed and wrote it back after would leave old
 * bytes there. */
static void test_aligned_vs_rmw(struct t *t)
{
	unsigned blocks = 200, i;
	uint64_t base = t->size / 2;
	static struct tio xs[MAX_IOS];

	for (i = 0; i < blocks; i++) {
		uint64_t b = base + (uint64_t)i * t->bs;

		tio_init(t, &xs[2 * i], NP_OP_WRITE, b, t->bs, false);
		tio_init(t, &xs[2 * i + 1], NP_OP_WRITE, b + 10, 20, true);
	}
	submit(t, xs, 2 * blocks);
	for (i = 0; i < blocks; i++)
		check(xs[2 * i].io.result == 0 && xs[2 * i + 1].io.result == 0,
		      "aligned/rmw pair %u: %d %d", i, xs[2 * i].io.result,
		      xs[2 * i + 1].io.result);
	/* Read the blocks back through the engine and judge each one. */
	{
		static struct tio rs[MAX_IOS];

		for (i = 0; i < blocks; i++)
			tio_init(t, &rs[i], NP_OP_READ, base + (uint64_t)i * t->bs, t->bs, false);
		submit(t, rs, blocks);
		for (i = 0; i < blocks; i++) {
			uint8_t *got = rs[i].io.buf, *big = xs[2 * i].io.buf;
			uint8_t *small = xs[2 * i + 1].io.buf;
			bool small_last = memcmp(got + 10, small, 20) == 0;
			bool big_last = memcmp(got + 10, big + 10, 20) == 0;

			check(rs[i].io.result == 0, "read back %u: %d", i, rs[i].io.result);
			check(memcmp(got, big, 10) == 0 &&
				  memcmp(got + 30, big + 30, t->bs - 30) == 0,
			      "block %u: bytes outside the small write are not the aligned write's",
			      i);
			check(small_last || big_last, "block %u: small range is neither write", i);
			memcpy(t->shadow + rs[i].io.offset, got, t->bs);
		}
		tio_free(rs, blocks);
	}
	tio_free(xs, 2 * blocks);
	verify_backing(t, "aligned vs read-modify-write");
}

struct sync_arg {
	struct t *t;
	unsigned idx, nthreads;
	uint64_t base;
	int err;
};

/* Thread idx writes every nthreads-th 7-byte piece: all threads share every
 * block, through the synchronous path the core's workers use. */
static void *sync_writer(void *p)
{
	struct sync_arg *a = p;
	struct t *t = a->t;
	uint64_t piece;
	uint8_t buf[7];

	for (piece = a->idx; piece < 3000; piece += a->nthreads) {
		uint64_t off = a->base + piece * 7;
		unsigned k;

		for (k = 0; k < 7; k++)
			buf[k] = (uint8_t)(piece * 7 + k) | 1;
		a->err = t->ops->pwrite(t->h, buf, 7, off, 0);
		if (a->err)
			break;
	}
	return NULL;
}

static void test_sync_threads(struct t *t)
{
	enum { NT = 4 };
	pthread_t th[NT];
	struct sync_arg args[NT];
	uint64_t base = t->size / 8 + 5, piece;
	unsigned i;

	for (i = 0; i < NT; i++) {
		args[i] = (struct sync_arg){.t = t, .idx = i, .nthreads = NT, .base = base};
		pthread_create(&th[i], NULL, sync_writer, &args[i]);
	}
	for (i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		check(args[i].err == 0, "sync writer %u: %d", i, args[i].err);
	}
	for (piece = 0; piece < 3000; piece++)
		for (i = 0; i < 7; i++)
			t->shadow[base + piece * 7 + i] = (uint8_t)(piece * 7 + i) | 1;
	verify_backing(t, "synchronous writers sharing blocks");
}

static void test_trim_zero(struct t *t)
{
	static struct tio xs[8];
	uint64_t bs = t->bs, a = 3 * t->size / 4;
	unsigned i, n = 0;
	uint8_t *b;
	int r;

	/* Aligned trim and zero on the async path; unaligned ones too. */
	tio_init(t, &xs[n++], NP_OP_TRIM, a, 64 * bs, false);
	tio_init(t, &xs[n++], NP_OP_ZERO, a + 100 * bs, 64 * bs, false);
	tio_init(t, &xs[n++], NP_OP_ZERO, a + 200 * bs + 17, 5 * bs + 100, false);
	tio_init(t, &xs[n++], NP_OP_ZERO, a + 300 * bs + 1, 10, false);
	xs[n - 1].io.flags = NP_IO_FUA;
	tio_init(t, &xs[n++], NP_OP_TRIM, a + 400 * bs + 9, 8 * bs, false);
	tio_init(t, &xs[n++], NP_OP_FLUSH, 0, 0, false);
	submit(t, xs, n);
	for (i = 0; i < n; i++) {
		struct np_io *io = &xs[i].io;

		check(io->result == 0, "cmd %u at %llu: %d", io->op, (unsigned long long)io->offset,
		      io->result);
		if (io->op == NP_OP_ZERO)
			memset(t->shadow + io->offset, 0, io->len);
	}
	/* Trims read back as zeroes on loop devices and files (they punch
	 * holes); an unaligned trim leaves its partial blocks alone. */
	memset(t->shadow + a, 0, 64 * bs);
	memset(t->shadow + a + 401 * bs, 0, 7 * bs);

	/* The synchronous path, with and without FUA. */
	r = t->ops->zero(t->h, 3 * bs + 5, a + 500 * bs + 3, NP_IO_FUA);
	check(r == 0, "sync zero: %d", r);
	memset(t->shadow + a + 500 * bs + 3, 0, 3 * bs + 5);
	/* A fast zero either zeroes or refuses leaving the data alone. */
	r = t->ops->zero(t->h, 9 * bs + 7, a + 700 * bs + 1, NP_IO_FAST_ZERO);
	check(r == 0 || r == -ENOTSUP, "sync fast zero: %d", r);
	if (r == 0)
		memset(t->shadow + a + 700 * bs + 1, 0, 9 * bs + 7);
	r = t->ops->trim(t->h, 4 * bs, a + 600 * bs, 0);
	check(r == 0, "sync trim: %d", r);
	memset(t->shadow + a + 600 * bs, 0, 4 * bs);
	r = t->ops->flush(t->h);
	check(r == 0, "sync flush: %d", r);
	verify_backing(t, "trim and zero");

	/* And through the engine's own synchronous read, unaligned. */
	b = malloc(20 * bs);
	r = t->ops->pread(t->h, b, 20 * bs, a + 199 * bs + 1);
	check(r == 0 && memcmp(b, t->shadow + a + 199 * bs + 1, 20 * bs) == 0,
	      "sync unaligned read after zero: %d", r);
	free(b);
}

static void test_bad_input(struct t *t)
{
	static struct tio xs[4];
	uint8_t buf[16];
	int r;

	tio_init(t, &xs[0], NP_OP_READ, t->size - 4, 8, false);
	tio_init(t, &xs[1], NP_OP_WRITE, UINT64_MAX - 2, 8, false);
	tio_init(t, &xs[2], NP_OP_READ, 0, 0, false);
	submit(t, xs, 3);
	check(xs[0].io.result == -EINVAL, "read past the end: %d", xs[0].io.result);
	check(xs[1].io.result == -EINVAL, "write at 2^64-3: %d", xs[1].io.result);
	check(xs[2].io.result == 0, "empty read: %d", xs[2].io.result);
	tio_free(xs, 3);
	r = t->ops->pread(t->h, buf, 16, t->size);
	check(r == -EINVAL, "sync read past the end: %d", r);
	r = t->ops->zero(t->h, UINT64_MAX, 1, 0);
	check(r == -EINVAL, "sync zero of 2^64-1 bytes: %d", r);
	r = t->ops->trim(t->h, 8, UINT64_MAX - 1, 0);
	check(r == -EINVAL, "sync trim past the end: %d", r);
}

static void test_open_errors(void)
{
	void *h = NULL;
	char *err = NULL;
	int r;

	r = np_storage_raw.open("/nonexistent/nbdplex-raw", false, &h, &err);
	check(r == -ENOENT && h == NULL && err && strstr(err, "/nonexistent/nbdplex-raw"),
	      "open of a missing path: %d %s", r, err ? err : "(no message)");
	free(err);
	err = NULL;
	r = np_storage_raw.open("/dev/null", false, &h, &err);
	check(r == -ENODEV && err, "open of a character device: %d", r);
	free(err);
	err = NULL;
	r = np_storage_raw.open("", false, &h, &err);
	check(r == -EINVAL && err, "open of an empty spec: %d", r);
	free(err);
}

static void test_readonly(const char *path)
{
	void *h = NULL;
	char *err = NULL;
	uint8_t buf[512];
	int r = np_storage_raw.open(path, true, &h, &err);

	check(r == 0, "read-only open: %d %s", r, err ? err : "");
	free(err);
	if (r)
		return;
	check(!(np_storage_raw.caps(h) & NP_CAP_WRITE), "read-only export has CAP_WRITE");
	check(np_storage_raw.caps(h) & NP_CAP_MULTI_CONN, "read-only export lacks MULTI_CONN");
	memset(buf, 0, sizeof(buf));
	r = np_storage_raw.pwrite(h, buf, sizeof(buf), 0, 0);
	check(r < 0, "write to a read-only export succeeded");
	np_storage_raw.close(h);
}

static void close_handle(uv_handle_t *handle, void *arg)
{
	(void)arg;
	if (!uv_is_closing(handle))
		uv_close(handle, NULL);
}

int main(int argc, char **argv)
{
	static struct t t;
	static struct test_env env;
	uint32_t min = 1, pref = 4096, max = 32 << 20, caps, want;
	char *err = NULL;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: %s SERVED BACKING BLOCKSIZE\n", argv[0]);
		return 2;
	}
	alarm(10 * WAIT_SECONDS); /* a hang fails the test rather than CI */
	loop_thread = pthread_self();
	t.ops = &np_storage_raw;
	t.backing = argv[2];
	t.rng = getenv("RAW_SEED") ? strtoull(getenv("RAW_SEED"), NULL, 0) : (uint64_t)time(NULL);
	t.rng |= 1;
	printf("# %s (block size %s), seed %llu\n", argv[1], argv[3], (unsigned long long)t.rng);

	check(t.ops->size == sizeof(struct np_storage_ops) &&
		  t.ops->api_version == NP_STORAGE_API_VERSION && !strcmp(t.ops->name, "raw"),
	      "ops header");
	test_open_errors();
	r = t.ops->open(argv[1], false, &t.h, &err);
	check(r == 0, "open %s: %d %s", argv[1], r, err ? err : "");
	free(err);
	if (r)
		return 1;
	t.size = t.ops->get_size(t.h);
	t.ops->block_size(t.h, &min, &pref, &max);
	t.bs = min;
	if (strtoul(argv[3], NULL, 0))
		check(min == strtoul(argv[3], NULL, 0), "block size min %u, expected %s", min,
		      argv[3]);
	check(min >= 512 && (min & (min - 1)) == 0, "block size min %u", min);
	check(pref >= 4096 && pref >= min && max == 32U << 20, "block size pref %u max %u", pref,
	      max);
	check(t.size >= 16 << 20 && t.size % min == 0, "size %llu", (unsigned long long)t.size);
	caps = t.ops->caps(t.h);
	want = NP_CAP_WRITE | NP_CAP_FLUSH | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO |
	       NP_CAP_FAST_ZERO | NP_CAP_MULTI_CONN;
	check((caps & want) == want, "caps %#x lack some of %#x", caps, want);

	t.shadow = malloc(t.size);
	uv_loop_init(&t.loop);
	uv_timer_init(&t.loop, &t.tick);
	uv_timer_start(&t.tick, tick_cb, 100, 100);
	env.env.loop = &t.loop;
	env.env.run_blocking = test_run_blocking;
	env.h = t.h;
	r = t.ops->loop_open(t.h, &env.env, &t.lh);
	check(r == 0, "loop_open: %d", r);
	if (r)
		return 1;

	test_fill_aligned(&t);
	test_reads(&t, true);
	test_reads(&t, false);
	test_unaligned_shared_blocks(&t);
	test_aligned_vs_rmw(&t);
	test_sync_threads(&t);
	test_trim_zero(&t);
	test_reads(&t, false);
	test_bad_input(&t);

	/* The engine's per-loop state must go away with no handle left. */
	t.ops->loop_close(t.lh);
	uv_timer_stop(&t.tick);
	uv_close((uv_handle_t *)&t.tick, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&t.loop);
	if (r) {
		/* uv_strerror allocates for codes it does not know, such as 0. */
		check(0, "uv_loop_close: %s (a handle leaked)", uv_strerror(r));
		uv_walk(&t.loop, close_handle, NULL);
		uv_run(&t.loop, UV_RUN_DEFAULT);
	}
	t.ops->close(t.h);
	test_readonly(argv[1]);
	free(t.shadow);

	printf("%s: %s\n", argv[1], failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
