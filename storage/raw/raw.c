/* The raw engine: a block device (or, for tests, a regular file) opened with
 * O_DIRECT, so that the page cache neither doubles memory use nor hides
 * device errors until a later flush.
 *
 * This file holds open/close, the capability queries, the synchronous
 * operations the core runs on worker threads, and the range lock that keeps
 * read-modify-write of partial blocks correct. The per-loop kernel AIO path is in
 * raw_aio.c.
 *
 * O_DIRECT needs offsets, lengths and buffers aligned to the device's logical
 * block size. Requests that are not go through an aligned bounce buffer;
 * partial blocks of a write are read, patched and written back while the
 * writer holds a lock on those blocks. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "storage/raw/raw_int.h"
#include "util/fullio.h"

/* The largest piece written at once when zeroes have to be written out. */
#define RAW_ZERO_CHUNK (1024U * 1024)

/* ---- range lock ---- */

static bool raw_range_overlaps(const struct raw_handle *h, uint64_t start, uint64_t end)
{
	const struct raw_range *r;

	for (r = h->locked; r; r = r->next)
		if (r->start < end && start < r->end)
			return true;
	return false;
}

static void raw_range_insert(struct raw_handle *h, struct raw_range *r, uint64_t start,
			     uint64_t end)
{
	r->start = start;
	r->end = end;
	r->prev = NULL;
	r->next = h->locked;
	if (h->locked)
		h->locked->prev = r;
	h->locked = r;
}

bool raw_range_trylock(struct raw_handle *h, struct raw_range *r, uint64_t start, uint64_t end)
{
	bool ok;

	pthread_mutex_lock(&h->lock);
	ok = !raw_range_overlaps(h, start, end);
	if (ok)
		raw_range_insert(h, r, start, end);
	pthread_mutex_unlock(&h->lock);
	return ok;
}

void raw_range_lock(struct raw_handle *h, struct raw_range *r, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&h->lock);
	while (raw_range_overlaps(h, start, end))
		pthread_cond_wait(&h->cond, &h->lock);
	raw_range_insert(h, r, start, end);
	pthread_mutex_unlock(&h->lock);
}

void raw_range_unlock(struct raw_handle *h, struct raw_range *r)
{
	pthread_mutex_lock(&h->lock);
	if (r->prev)
		r->prev->next = r->next;
	else
		h->locked = r->next;
	if (r->next)
		r->next->prev = r->prev;
	/* Waiters may want any part of the range, so wake them all; each
	 * rechecks its own overlap. */
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* ---- helpers ---- */

void *raw_bounce_alloc(const struct raw_handle *h, uint64_t len)
{
	void *p;

	if (len == 0 || len > SIZE_MAX)
		return NULL;
	if (posix_memalign(&p, h->bs < 4096 ? 4096 : h->bs, (size_t)len) != 0)
		return NULL;
	return p;
}

static uint64_t raw_down(const struct raw_handle *h, uint64_t v)
{
	return v & ~(uint64_t)(h->bs - 1);
}

static uint64_t raw_up(const struct raw_handle *h, uint64_t v)
{
	return raw_down(h, v + h->bs - 1);
}

/* Rejects what the core should already have rejected, so that no input can
 * make the engine touch memory or blocks outside the request. */
static int raw_check(const struct raw_handle *h, uint64_t len, uint64_t off, bool write)
{
	if (off > h->size || len > h->size - off)
		return -EINVAL;
	if (write && h->readonly)
		return -EPERM;
	return 0;
}

/* Requests lie within the device, so its end is an error here. */
static int raw_read_full(const struct raw_handle *h, void *buf, uint64_t len, uint64_t off)
{
	int r = np_pread_full(h->fd, buf, len, off, 0);

	return r == -ENODATA ? -EIO : r;
}

static int raw_write_full(const struct raw_handle *h, const void *buf, uint64_t len, uint64_t off,
			  int rwf)
{
	int r = np_pwrite_full(h->fd, buf, len, off, rwf);

	return r == -EPIPE ? -EIO : r;
}

/* Writes [off, off + len) from buf, with the caller holding the lock on the
 * blocks around it. Partial head and tail blocks are read first so that the
 * bytes around the request survive. */
static int raw_write_locked(struct raw_handle *h, const void *buf, uint64_t len, uint64_t off,
			    int rwf)
{
	uint64_t lo = raw_down(h, off), hi = raw_up(h, off + len);
	bool head = off != lo, tail = off + len != hi;
	char *b;
	int r = 0;

	if (!head && !tail && raw_buf_aligned(h, buf))
		return raw_write_full(h, buf, len, off, rwf);
	b = raw_bounce_alloc(h, hi - lo);
	if (!b)
		return -ENOMEM;
	if (head)
		r = raw_read_full(h, b, h->bs, lo);
	/* A tail in the head's block has just been read with it. */
	if (r == 0 && tail && !(head && hi - lo == h->bs))
		r = raw_read_full(h, b + (hi - lo - h->bs), h->bs, hi - h->bs);
	if (r == 0) {
		memcpy(b + (off - lo), buf, (size_t)len);
		r = raw_write_full(h, b, hi - lo, lo, rwf);
	}
	free(b);
	return r;
}

/* ---- open, close, queries ---- */

static int raw_fail(char **err, int r, const char *fmt, const char *spec)
{
	char *msg = NULL;

	if (err && asprintf(&msg, fmt, spec, strerror(-r)) >= 0)
		*err = msg;
	return r;
}

static bool raw_pow2(uint64_t v)
{
	return v && (v & (v - 1)) == 0;
}

static int raw_probe_blk(struct raw_handle *h)
{
	uint64_t size;
	int lbs = 0;
	unsigned int pbs = 0;
	unsigned short rot = 0;

	if (ioctl(h->fd, BLKGETSIZE64, &size) < 0 || ioctl(h->fd, BLKSSZGET, &lbs) < 0)
		return -errno;
	if (lbs <= 0)
		return -EINVAL;
	h->bs = (uint32_t)lbs;
	h->size = size;
	if (ioctl(h->fd, BLKPBSZGET, &pbs) == 0 && pbs > h->pref)
		h->pref = pbs;
	/* Rotational media make the core advertise NBD_FLAG_ROTATIONAL, so that
	 * clients sort their requests; unknown means not rotational. */
	if (ioctl(h->fd, BLKROTATIONAL, &rot) == 0)
		h->rotational = rot != 0;
	return 0;
}

static int raw_probe_file(struct raw_handle *h, const struct stat *st)
{
	struct statx stx;

	/* Filesystems state their O_DIRECT alignment through statx; without
	 * it, 4096 is safe on every filesystem that supports O_DIRECT. */
	h->bs = 4096;
	if (statx(h->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		h->bs = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > h->bs)
			h->bs = stx.stx_dio_mem_align;
	}
	h->size = (uint64_t)st->st_size;
	return 0;
}

static int raw_open(const char *spec, bool readonly, void **handle, char **err)
{
	struct raw_handle *h;
	struct stat st;
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
	int r;

	*handle = NULL;
	if (!spec || !*spec)
		return raw_fail(err, -EINVAL,
				"raw: '%s': expected a device, e.g. raw:/dev/sdb (%s)",
				spec ? spec : "");
	if (stat(spec, &st) < 0)
		return raw_fail(err, -errno, "raw: %s: %s", spec);
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))
		return raw_fail(err, -ENODEV, "raw: %s: not a block device or regular file (%s)",
				spec);
	/* An exclusive open fails while the device is mounted or claimed by
	 * another exclusive user, instead of silently corrupting it. */
	if (S_ISBLK(st.st_mode) && !readonly)
		flags |= O_EXCL;

	h = calloc(1, sizeof(*h));
	if (!h)
		return raw_fail(err, -ENOMEM, "raw: %s: %s", spec);
	h->readonly = readonly;
	h->pref = 4096;
	h->fd = open(spec, flags);
	if (h->fd < 0) {
		r = -errno;
		free(h);
		if (r == -EBUSY)
			return raw_fail(
			    err, r, "raw: %s: in use (mounted or opened exclusively): %s", spec);
		return raw_fail(err, r, "raw: %s: cannot open with O_DIRECT: %s", spec);
	}
	if (fstat(h->fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	h->is_blk = S_ISBLK(st.st_mode);
	r = h->is_blk ? raw_probe_blk(h) : raw_probe_file(h, &st);
	if (r < 0)
		goto out_close;
	if (!raw_pow2(h->bs) || h->bs < 512 || h->bs > 65536) {
		r = -EINVAL;
		goto out_close;
	}
	if (h->pref < h->bs)
		h->pref = h->bs;
	/* A regular file may end in a partial block that O_DIRECT cannot
	 * write without extending the file; serve whole blocks only. */
	h->size = raw_down(h, h->size);
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	*handle = h;
	return 0;

out_close:
	close(h->fd);
	free(h);
	return raw_fail(err, r, "raw: %s: cannot query size or block size: %s", spec);
}

static void raw_close(void *hv)
{
	struct raw_handle *h = hv;

	if (!h)
		return;
	close(h->fd);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static uint64_t raw_get_size(void *hv)
{
	return ((struct raw_handle *)hv)->size;
}

uint32_t raw_caps(void *hv)
{
	struct raw_handle *h = hv;
	/* One fd serves every connection and O_DIRECT bypasses any private
	 * cache, so a flush on any connection covers all of them. */
	uint32_t caps = NP_CAP_FLUSH | NP_CAP_MULTI_CONN;

	if (!h->readonly)
		caps |= NP_CAP_WRITE | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO | NP_CAP_FAST_ZERO;
	if (h->rotational)
		caps |= NP_CAP_ROTATIONAL;
	return caps;
}

/* The largest request is the server's (--max-request): I/O of any length
 * is split as the device needs. */
static void raw_block_size(void *hv, uint32_t *min, uint32_t *pref, uint32_t *max)
{
	struct raw_handle *h = hv;

	(void)max;
	*min = h->bs;
	*pref = h->pref;
}

/* ---- synchronous operations ---- */

static int raw_pread(void *hv, void *buf, uint64_t len, uint64_t off)
{
	struct raw_handle *h = hv;
	uint64_t lo, hi;
	char *b;
	int r;

	r = raw_check(h, len, off, false);
	if (r < 0 || len == 0)
		return r;
	lo = raw_down(h, off);
	hi = raw_up(h, off + len);
	if (lo == off && hi == off + len && raw_buf_aligned(h, buf))
		return raw_read_full(h, buf, len, off);
	b = raw_bounce_alloc(h, hi - lo);
	if (!b)
		return -ENOMEM;
	r = raw_read_full(h, b, hi - lo, lo);
	if (r == 0)
		memcpy(buf, b + (off - lo), (size_t)len);
	free(b);
	return r;
}

static int raw_pwrite(void *hv, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	struct raw_handle *h = hv;
	struct raw_range range;
	int r;

	r = raw_check(h, len, off, true);
	if (r < 0 || len == 0)
		return r;
	raw_range_lock(h, &range, raw_down(h, off), raw_up(h, off + len));
	r = raw_write_locked(h, buf, len, off, (flags & NP_IO_FUA) ? RWF_DSYNC : 0);
	raw_range_unlock(h, &range);
	return r;
}

static int raw_flush(void *hv)
{
	struct raw_handle *h = hv;

	return fdatasync(h->fd) < 0 ? -errno : 0;
}

static bool raw_unsupported(int r)
{
	return r == -EOPNOTSUPP || r == -ENOTTY || r == -ENOSYS;
}

/* Zeroes whole blocks without sending zeroes if the device or filesystem
 * can. With fast_only, refuses (-EOPNOTSUPP) rather than let the kernel
 * fall back to writing zeroes itself: on a block device that means
 * fallocate(PUNCH_HOLE), which the kernel never turns into writes. */
static int raw_zero_fast(struct raw_handle *h, uint64_t len, uint64_t off, bool fast_only)
{
	uint64_t range[2] = {off, len};
	int r;

	if (!h->is_blk)
		r = fallocate(h->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len);
	else if (fast_only)
		r = fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len);
	else if (__atomic_load_n(&h->no_zeroout, __ATOMIC_RELAXED))
		return -EOPNOTSUPP;
	else
		r = ioctl(h->fd, BLKZEROOUT, range);
	r = r < 0 ? -errno : 0;
	if (h->is_blk && !fast_only && raw_unsupported(r))
		__atomic_store_n(&h->no_zeroout, 1, __ATOMIC_RELAXED);
	return r;
}

static int raw_zero_write(struct raw_handle *h, uint64_t len, uint64_t off)
{
	uint64_t chunk = len < RAW_ZERO_CHUNK ? len : RAW_ZERO_CHUNK;
	char *z = raw_bounce_alloc(h, chunk);
	int r = 0;

	if (!z)
		return -ENOMEM;
	memset(z, 0, (size_t)chunk);
	while (r == 0 && len > 0) {
		uint64_t n = len < chunk ? len : chunk;

		r = raw_write_full(h, z, n, off, 0);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

/* Zeroes the partial blocks around the whole blocks [alo, ahi), which lie
 * inside [off, off + len); the caller holds the lock. */
static int raw_zero_edges(struct raw_handle *h, uint64_t off, uint64_t len, uint64_t alo,
			  uint64_t ahi)
{
	/* A partial block is shorter than bs, at most 64 KiB. */
	static const char zeroes[65536];
	int r = 0;

	if (alo >= ahi) {
		/* Inside one block, or across two partial ones. */
		char *z = calloc(1, (size_t)len);

		r = z ? raw_write_locked(h, z, len, off, 0) : -ENOMEM;
		free(z);
		return r;
	}
	if (off < alo)
		r = raw_write_locked(h, zeroes, alo - off, off, 0);
	if (r == 0 && ahi < off + len)
		r = raw_write_locked(h, zeroes, off + len - ahi, ahi, 0);
	return r;
}

static int raw_zero(void *hv, uint64_t len, uint64_t off, uint32_t flags)
{
	struct raw_handle *h = hv;
	struct raw_range range;
	uint64_t lo, hi, alo, ahi;
	int r;

	r = raw_check(h, len, off, true);
	if (r < 0 || len == 0)
		return r;
	lo = raw_down(h, off);
	hi = raw_up(h, off + len);
	alo = raw_up(h, off);
	ahi = raw_down(h, off + len);
	raw_range_lock(h, &range, lo, hi);
	if (flags & NP_IO_FAST_ZERO) {
		/* The client would rather write zeroes itself than wait for
		 * us to: only a fast zero of the whole blocks will do, tried
		 * first so that a refusal leaves the range untouched. */
		r = alo < ahi ? raw_zero_fast(h, ahi - alo, alo, true) : 0;
		if (raw_unsupported(r))
			r = -ENOTSUP;
		if (r == 0)
			r = raw_zero_edges(h, off, len, alo, ahi);
	} else {
		r = raw_zero_edges(h, off, len, alo, ahi);
		if (r == 0 && alo < ahi) {
			r = raw_zero_fast(h, ahi - alo, alo, false);
			if (r < 0 && (raw_unsupported(r) || r == -EINVAL))
				r = raw_zero_write(h, ahi - alo, alo);
		}
	}
	raw_range_unlock(h, &range);
	if (r == 0 && (flags & NP_IO_FUA))
		r = raw_flush(h);
	return r;
}

static int raw_trim(void *hv, uint64_t len, uint64_t off, uint32_t flags)
{
	struct raw_handle *h = hv;
	struct raw_range range;
	uint64_t alo, ahi;
	int r;

	r = raw_check(h, len, off, true);
	if (r < 0 || len == 0)
		return r;
	/* Trim is advisory: partial blocks at the ends are left alone. */
	alo = raw_up(h, off);
	ahi = raw_down(h, off + len);
	if (alo < ahi) {
		uint64_t range2[2] = {alo, ahi - alo};

		raw_range_lock(h, &range, alo, ahi);
		if (h->is_blk)
			r = ioctl(h->fd, BLKDISCARD, range2) < 0 ? -errno : 0;
		else
			r = fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)alo,
				      (off_t)(ahi - alo)) < 0
				? -errno
				: 0;
		raw_range_unlock(h, &range);
		/* A device that cannot discard has simply kept the data. */
		if (raw_unsupported(r))
			r = 0;
	}
	if (r == 0 && (flags & NP_IO_FUA))
		r = raw_flush(h);
	return r;
}

const struct np_storage_ops np_storage_raw = {
    .size = sizeof(struct np_storage_ops),
    .api_version = NP_STORAGE_API_VERSION,
    .name = "raw",
    .usage = "DEVICE\ta block device, O_DIRECT through kernel AIO",
    .open = raw_open,
    .close = raw_close,
    .get_size = raw_get_size,
    .caps = raw_caps,
    .block_size = raw_block_size,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .flush = raw_flush,
    .trim = raw_trim,
    .zero = raw_zero,
    .loop_open = raw_loop_open,
    .loop_close = raw_loop_close,
    .submit = raw_submit,
};
