/* The file engine: a sparse regular file (or a block device through the page
 * cache). TRIM punches holes, WRITE_ZEROES punches or zero-ranges, extents
 * come from SEEK_DATA/SEEK_HOLE, FLUSH is fdatasync and FUA is RWF_DSYNC. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "storage/lib/aio.h"
#include "storage/lib/memfile.h"
#include "storage/storage.h"
#include "util/size.h"
#include "util/fullio.h"

struct file_h {
	int fd;
	uint64_t size;
	bool readonly;
	bool is_blockdev;
	/* On tmpfs and ramfs the page cache is the storage: reads and writes
	 * never wait for a device, so they run on the loop without a thread
	 * hop (these file systems also refuse RWF_NOWAIT). */
	bool in_memory;
	atomic_bool nowait_ok;     /* preadv2(RWF_NOWAIT) is supported here */
	atomic_bool punch_ok;      /* fallocate(PUNCH_HOLE) is supported here */
	pthread_mutex_t big_write; /* in memory: one large WRITE at a time (NP_BIG_WRITE) */
	/* In memory: the file mapped shared as it was at open, for large
	 * READs to leave from (file_map_read), READs to be copied from
	 * (map_copy) and, where writable (not for a read-only export),
	 * WRITEs to land in (map_copy, file_map_write). Copies into and out
	 * of it survive the file cut short underneath (storage/lib/mapcopy.c). */
	uint8_t *map;
	uint64_t map_len;
	bool map_writable;
	long page;
	unsigned page_shift;
	/* With the mapping, one bit per page of it: set where the file is
	 * known to hold data (found at open, or written since), clear where
	 * it may hold a hole. A READ is copied out of the mapping only where
	 * every page's bit is set: touching a hole there would allocate a
	 * page for it. A bit may be wrong the other way (another process
	 * punched the page, or a TRIM raced a WRITE): such a READ allocates
	 * the page, reads the right data (zeroes), and the bit is true again. */
	_Atomic uint64_t *data_bits;
};

/* The pages [*first, *last] of the bitmap that [off, off + len) touches,
 * clipped to the mapping; false where that is none. */
static bool page_span(const struct file_h *f, uint64_t off, uint64_t len, uint64_t *first,
		      uint64_t *last)
{
	if (!f->data_bits || len == 0 || off >= f->map_len)
		return false;
	if (off + len > f->map_len)
		len = f->map_len - off;
	*first = off >> f->page_shift;
	*last = (off + len - 1) >> f->page_shift;
	return true;
}

static bool bit_of(const struct file_h *f, uint64_t p)
{
	return atomic_load_explicit(&f->data_bits[p / 64], memory_order_relaxed) >> (p % 64) & 1;
}

/* Marks the pages [off, off + len) touches as holding data. */
static void bits_set(struct file_h *f, uint64_t off, uint64_t len)
{
	uint64_t a, b;

	if (page_span(f, off, len, &a, &b))
		for (uint64_t p = a; p <= b; p++)
			if (!bit_of(f, p))
				atomic_fetch_or_explicit(&f->data_bits[p / 64], 1ULL << (p % 64),
							 memory_order_relaxed);
}

/* Forgets the pages [off, off + len) may have lost: all it touches, since
 * a page only partly punched keeps its data but nothing is lost by asking
 * again. Before the punch, so that no READ copies a hole after it. */
static void bits_clear(struct file_h *f, uint64_t off, uint64_t len)
{
	uint64_t a, b;

	if (page_span(f, off, len, &a, &b))
		for (uint64_t p = a; p <= b; p++)
			atomic_fetch_and_explicit(&f->data_bits[p / 64], ~(1ULL << (p % 64)),
						  memory_order_relaxed);
}

/* Whether all of [off, off + len) lies in the mapping, known to hold data. */
static bool bits_all(const struct file_h *f, uint64_t off, uint64_t len)
{
	uint64_t a, b;

	if (off + len > f->map_len || !page_span(f, off, len, &a, &b))
		return false;
	for (uint64_t p = a; p <= b; p++)
		if (!bit_of(f, p))
			return false;
	return true;
}

/* At open: the file's data extents, from SEEK_DATA and SEEK_HOLE. */
static int bits_scan(struct file_h *f)
{
	uint64_t words = ((f->map_len >> f->page_shift) + 64) / 64;
	off_t pos = 0;

	f->data_bits = calloc(words, sizeof(*f->data_bits));
	if (!f->data_bits)
		return -ENOMEM;
	while ((uint64_t)pos < f->map_len) {
		off_t data = lseek(f->fd, pos, SEEK_DATA), hole;

		if (data < 0)
			break; /* ENXIO: no data after pos */
		hole = lseek(f->fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)f->map_len;
		bits_set(f, (uint64_t)data, (uint64_t)(hole - data));
		pos = hole;
	}
	return 0;
}

static int errf(char **err, int r, const char *fmt, const char *a, const char *b)
{
	if (err && asprintf(err, fmt, a, b) < 0)
		*err = NULL;
	return r;
}

/* SPEC is PATH[,size=SIZE]. A missing file is created sparse when a size is
 * given; an existing smaller file is grown to the size, never shrunk. */
static int file_open(const char *spec, bool readonly, void **handle, char **err)
{
	char *path = strdup(spec);
	char *opt = path ? strchr(path, ',') : NULL;
	uint64_t want = 0;
	bool have_size = false;
	struct file_h *f;
	struct stat st;
	int fd, r;

	if (!path)
		return -ENOMEM;
	if (opt) {
		*opt++ = '\0';
		if (strncmp(opt, "size=", 5) != 0 || np_parse_size(opt + 5, &want) < 0) {
			r = errf(err, -EINVAL,
				 "file engine: bad option '%s' in '%s' (want size=SIZE)", opt,
				 spec);
			goto out_free_path;
		}
		have_size = true;
	}
	if (!*path) {
		r = errf(err, -EINVAL, "file engine: no path in '%s'%s", spec, "");
		goto out_free_path;
	}
	fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && have_size && !readonly)
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT && !have_size)
			errf(err, r, "%s: no such file (add ,size=SIZE to create it)%s", path, "");
		else
			errf(err, r, "%s: %s", path, strerror(-r));
		goto out_free_path;
	}
	if (fstat(fd, &st) < 0) {
		r = errf(err, -errno, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		r = -ENOMEM;
		goto out_close;
	}
	f->fd = fd;
	f->readonly = readonly;
	if (S_ISBLK(st.st_mode)) {
		f->is_blockdev = true;
		if (ioctl(fd, BLKGETSIZE64, &f->size) < 0) {
			r = errf(err, -errno, "%s: BLKGETSIZE64: %s", path, strerror(errno));
			goto out_free_f;
		}
	} else if (S_ISREG(st.st_mode)) {
		f->size = (uint64_t)st.st_size;
		if (have_size && want > f->size && !readonly) {
			if (ftruncate(fd, (off_t)want) < 0) {
				r = errf(err, -errno, "%s: cannot grow: %s", path, strerror(errno));
				goto out_free_f;
			}
			f->size = want;
		} else if (have_size && want != f->size) {
			char sz[64];

			snprintf(sz, sizeof(sz), "%llu", (unsigned long long)f->size);
			r = errf(err, -EINVAL,
				 "%s: file is %s bytes, refusing to shrink or change it to size=",
				 path, sz);
			goto out_free_f;
		}
	} else {
		r = errf(err, -EINVAL, "%s: not a regular file or block device%s", path, "");
		goto out_free_f;
	}
	f->in_memory = !f->is_blockdev && np_fd_in_memory(fd);
	atomic_store(&f->nowait_ok, true);
	atomic_store(&f->punch_ok, true);
	pthread_mutex_init(&f->big_write, NULL);
	f->page = sysconf(_SC_PAGESIZE);
	if (f->in_memory && f->size && f->page > 0) {
		/* Only address space: pages are mapped as requests touch them. */
		bool guard = np_copy_guard_init(), w = !readonly && guard;
		void *m =
		    mmap(NULL, f->size, w ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);

		if (m != MAP_FAILED) {
			f->map = m;
			f->map_len = f->size;
			f->map_writable = w;
			f->page_shift = (unsigned)__builtin_ctzl((unsigned long)f->page);
			if (guard && bits_scan(f) < 0) {
				free(f->data_bits);
				f->data_bits = NULL;
			}
		}
	}
	free(path);
	*handle = f;
	return 0;

out_free_f:
	free(f);
out_close:
	close(fd);
out_free_path:
	free(path);
	return r;
}

static void file_close(void *h)
{
	struct file_h *f = h;

	if (f->map)
		munmap(f->map, f->map_len);
	free(f->data_bits);
	close(f->fd);
	pthread_mutex_destroy(&f->big_write);
	free(f);
}

/* Asks the file system each time, so that a file grown (or a device
 * resized) under a running server shows at the next handshake. */
static uint64_t file_get_size(void *h)
{
	struct file_h *f = h;
	uint64_t size = __atomic_load_n(&f->size, __ATOMIC_RELAXED);
	struct stat st;

	if (f->is_blockdev) {
		if (ioctl(f->fd, BLKGETSIZE64, &size) < 0)
			return __atomic_load_n(&f->size, __ATOMIC_RELAXED);
	} else if (fstat(f->fd, &st) == 0) {
		size = (uint64_t)st.st_size;
	}
	__atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
	return size;
}

/* RESIZE: grows with a hole or cuts the file, then makes the new
 * size durable before the client hears of it. */
static int file_resize(void *h, uint64_t size)
{
	struct file_h *f = h;

	if (f->readonly)
		return -EPERM;
	if (f->is_blockdev)
		return -EOPNOTSUPP;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (size < f->map_len)
		bits_clear(f, size, f->map_len - size);
	if (ftruncate(f->fd, (off_t)size) < 0 || fsync(f->fd) < 0)
		return -errno;
	__atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
	return 0;
}

static uint32_t file_caps(void *h)
{
	struct file_h *f = h;
	uint32_t c = NP_CAP_FLUSH | NP_CAP_MULTI_CONN | NP_CAP_CACHE | NP_CAP_EXTENTS;

	if (!f->readonly)
		c |= NP_CAP_WRITE | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO | NP_CAP_FAST_ZERO;
	if (!f->readonly && !f->is_blockdev)
		c |= NP_CAP_RESIZE;
	return c;
}

/* Reads all of [off, off+len); bytes past the end of the file read as zeroes
 * (the file may have been truncated under us), as np_pread_full leaves
 * them. With RWF_NOWAIT, a range only partly cached gives -EAGAIN: let a
 * worker finish it. */
static int read_full(struct file_h *f, void *buf, uint64_t len, uint64_t off, int rwflags)
{
	int r = np_pread_full(f->fd, buf, len, off, rwflags);

	return r == -ENODATA ? 0 : r;
}

static int file_pread(void *h, void *buf, uint64_t len, uint64_t off)
{
	return read_full(h, buf, len, off, 0);
}

static int file_pwrite(void *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	struct file_h *f = h;
	int rwflags = (flags & NP_IO_FUA) ? RWF_DSYNC : 0;
	bool big = f->in_memory && len >= NP_BIG_WRITE;
	int r;

	if (big)
		pthread_mutex_lock(&f->big_write);
	r = np_pwrite_full(f->fd, buf, len, off, rwflags);
	if (big)
		pthread_mutex_unlock(&f->big_write);
	if (r == 0)
		bits_set(f, off, len);
	return r;
}

/* On tmpfs and ramfs the page cache is the storage, so sendfile cannot
 * block. A range that starts in a hole is left to the buffered path, which
 * sends holes as hole chunks; holes further in go as zeroes. (SEEK_DATA
 * answers at once where there is data; SEEK_HOLE would walk every page up
 * to the next hole, milliseconds on a big full file.) lseek disturbs no
 * one: every read and write here names its offset. */
static int file_sendfile_fd(void *h, uint64_t off, uint64_t len)
{
	struct file_h *f = h;

	(void)len;
	if (!f->in_memory || lseek(f->fd, (off_t)off, SEEK_DATA) != (off_t)off)
		return -1;
	return f->fd;
}

/* Pages a mapped range may span, in 4 KiB pages: the largest request that
 * every client may send (32 MiB); a larger READ goes the usual way. */
#define MAP_PAGES ((32u << 20) / 4096)

/* Whether [off, off + len) lies in the mapping with every page of it in
 * memory (mincore): none a hole, none swapped out. Past the mapped length
 * (the file grew) it does not. */
static bool map_resident(const struct file_h *f, uint64_t off, uint64_t len)
{
	unsigned char vec[MAP_PAGES];
	uint64_t a = off - off % (uint64_t)f->page;
	uint64_t pages = (off + len - a + (uint64_t)f->page - 1) / (uint64_t)f->page;

	if (!f->map || off + len > f->map_len || pages > sizeof(vec) ||
	    mincore(f->map + a, off + len - a, vec) < 0)
		return false;
	for (uint64_t i = 0; i < pages; i++)
		if (!(vec[i] & 1))
			return false;
	return true;
}

/* A READ of pages all in memory goes out from the mapping; where a page
 * is missing the buffered path reads it, so that a hole is sent as a hole
 * chunk and not allocated by the touch. A TRIM of the range between this
 * check and the send leaves the file its pages back, read as zeroes by
 * the send: right data, less sparse. */
static const void *file_map_read(void *h, uint64_t off, uint64_t len)
{
	struct file_h *f = h;

	return map_resident(f, off, len) ? f->map + off : NULL;
}

/* A WRITE within the writable mapping is a copy into it, and so is a READ
 * of pages all known to hold data a copy out of it: no system call, page
 * cache lookup, folio lock or inode lock (perf/README.md). One that faults
 * there (the file cut short, a hole on a full file system) says false and
 * goes the usual way, which answers as pread or pwrite does. */
static bool map_copy(struct file_h *f, struct np_io *io)
{
	if (io->op == NP_OP_WRITE) {
		if (!f->map_writable || io->offset + io->len > f->map_len ||
		    np_mapped_copy(f->map + io->offset, io->buf, io->len) < 0)
			return false;
		bits_set(f, io->offset, io->len);
	} else if (io->op != NP_OP_READ || !bits_all(f, io->offset, io->len) ||
		   np_mapped_copy(io->buf, f->map + io->offset, io->len) < 0) {
		return false; /* (bits_all: no bits without a mapping) */
	}
	io->result = 0;
	return true;
}

/* A large WRITE lands in the mapping as it arrives: recv copies it from
 * the socket into the file's pages, where a buffer and a pwrite would copy
 * it twice. tmpfs keeps no dirty state to flush, so FUA asks nothing more.
 * The pages are written as they come, not all at once when the payload is
 * complete: a client that leaves mid-payload leaves part of its WRITE in
 * place, as a disk may after a power cut (a WRITE never answered promises
 * nothing about its range). Only over pages all in memory: a hole would
 * have a page allocated in the middle of the copy from the socket, and on
 * a full file system that fails the read with EFAULT (the connection
 * closes) where pwrite answers ENOSPC. (A TRIM of the range racing this
 * WRITE on a full file system can still end so.) */
static void *file_map_write(void *h, uint64_t off, uint64_t len, const void *head, size_t head_len)
{
	struct file_h *f = h;

	if (!f->map_writable || head_len >= len || !map_resident(f, off, len) ||
	    np_mapped_copy(f->map + off, head, head_len) < 0)
		return NULL;
	bits_set(f, off, len); /* every page of it is there (map_resident) */
	return f->map + off;
}

/* ---- READs and WRITEs on the loop thread, many per system call ----
 *
 * On tmpfs a buffered kernel AIO request completes inside io_submit (the
 * page cache is the storage; nothing waits for a device), so one io_submit
 * does a whole batch, and its completions are read from the ring the kernel
 * maps into this process, with no second system call. Per request that is
 * about half the CPU of one pread or pwrite (perf/README.md). Each loop
 * thread has its own context, made on first use and destroyed with the
 * thread. */

#define NOW_BATCH 64 /* iocbs per io_submit; the context holds at least this */

static pthread_key_t aio_key;
static bool aio_key_ok;
static pthread_once_t aio_once = PTHREAD_ONCE_INIT;
static __thread struct np_aio tl_aio;
static __thread int tl_aio_state; /* 0 not tried, 1 usable, -1 unavailable */

static void aio_ctx_destroy(void *ctx)
{
	struct np_aio a = {.ctx = (aio_context_t)(uintptr_t)ctx};

	np_aio_destroy(&a);
}

static void aio_key_init(void)
{
	aio_key_ok = pthread_key_create(&aio_key, aio_ctx_destroy) == 0;
}

/* This thread's AIO context, or NULL when there is none to be had (the
 * system-wide limit fs.aio-max-nr, say); then requests go one by one. */
static const struct np_aio *loop_aio(void)
{
	if (tl_aio_state == 0) {
		tl_aio_state = -1;
		pthread_once(&aio_once, aio_key_init);
		if (aio_key_ok && np_aio_setup(&tl_aio, NOW_BATCH) == 0) {
			if (pthread_setspecific(aio_key, (void *)(uintptr_t)tl_aio.ctx) != 0) {
				np_aio_destroy(&tl_aio);
				return NULL;
			}
			tl_aio_state = 1;
		}
	}
	return tl_aio_state == 1 ? &tl_aio : NULL;
}

/* Does what is left of one request, from byte `done` on (file_pwrite
 * marks the pages a WRITE wrote as data). */
static int rw_rest(struct file_h *f, struct np_io *io, uint64_t done)
{
	uint8_t *p = (uint8_t *)io->buf + done;

	if (io->op == NP_OP_READ)
		return read_full(f, p, io->len - done, io->offset + done, 0);
	return file_pwrite(f, p, io->len - done, io->offset + done, 0);
}

/* Up to NOW_BATCH requests in one io_submit. Anything the kernel does not
 * take, or finishes short, is completed by plain calls. */
static void rw_submit(struct file_h *f, const struct np_aio *aio, struct np_io **ios, int n)
{
	struct iocb cb[NOW_BATCH], *cbp[NOW_BATCH];
	struct io_event ev[NOW_BATCH];
	bool done[NOW_BATCH] = {false};
	int sent, got;

	for (int i = 0; i < n; i++) {
		np_aio_prep(&cb[i], ios[i]->op == NP_OP_WRITE, f->fd, ios[i]->buf, ios[i]->len,
			    ios[i]->offset, (uint64_t)i);
		cbp[i] = &cb[i];
	}
	sent = np_aio_submit(aio, cbp, (unsigned)n);
	if (sent < 0)
		sent = 0;
	got = sent ? np_aio_reap(aio, ev, (unsigned)sent, (unsigned)sent) : 0;
	if (got < 0)
		got = 0;
	for (int k = 0; k < got; k++) {
		int i = (int)ev[k].data;
		struct np_io *io;

		if (i < 0 || i >= sent || done[i])
			continue;
		io = ios[i];
		done[i] = true;
		if (ev[k].res < 0) {
			io->result = (int)ev[k].res;
			continue;
		}
		if (io->op == NP_OP_WRITE) /* (rw_rest marks the rest) */
			bits_set(f, io->offset, (uint64_t)ev[k].res);
		io->result =
		    (uint64_t)ev[k].res < io->len ? rw_rest(f, io, (uint64_t)ev[k].res) : 0;
	}
	for (int i = 0; i < n; i++) {
		if (done[i])
			continue;
		if (i < sent) {
			/* submitted, but its completion could not be collected: the
			 * buffer may still be in use, so this thread stops using AIO */
			tl_aio_state = -1;
			ios[i]->result = -EIO;
			continue;
		}
		ios[i]->result = rw_rest(f, ios[i], 0);
	}
}

/* Runs READs and WRITEs that cannot block: on tmpfs all of them, in
 * batches, FUA ones too (memory is all the storage there is: fdatasync
 * does nothing on tmpfs); elsewhere READs the page cache holds, one by one
 * (preadv2 with RWF_NOWAIT). Anything else is left -EAGAIN, for the pool. */
static void file_rw_nowait(void *h, struct np_io **ios, unsigned n)
{
	struct file_h *f = h;

	if (!f->in_memory) {
		for (unsigned i = 0; i < n; i++) {
			struct np_io *io = ios[i];
			int r = -EAGAIN;

			if (io->op == NP_OP_READ &&
			    atomic_load_explicit(&f->nowait_ok, memory_order_relaxed)) {
				r = read_full(f, io->buf, io->len, io->offset, RWF_NOWAIT);
				if (r == -EOPNOTSUPP || r == -EINVAL) {
					atomic_store(&f->nowait_ok, false);
					r = -EAGAIN;
				}
			}
			io->result = r;
		}
		return;
	}
	/* Copies to and from the mapping where they can be; the rest go by
	 * AIO, a chunk of one or a thread without AIO by plain calls. */
	for (unsigned i = 0; i < n; i += NOW_BATCH) {
		unsigned k = n - i < NOW_BATCH ? n - i : NOW_BATCH;
		struct np_io *todo[NOW_BATCH];
		int m = 0;
		const struct np_aio *aio;

		for (unsigned j = 0; j < k; j++)
			if (!map_copy(f, ios[i + j]))
				todo[m++] = ios[i + j];
		aio = m > 1 ? loop_aio() : NULL;
		if (aio)
			rw_submit(f, aio, todo, m);
		else
			for (int j = 0; j < m; j++)
				todo[j]->result = rw_rest(f, todo[j], 0);
	}
}

static int file_flush(void *h)
{
	return fdatasync(((struct file_h *)h)->fd) < 0 ? -errno : 0;
}

static int fua_done(struct file_h *f, uint32_t flags, int r)
{
	if (r == 0 && (flags & NP_IO_FUA))
		r = file_flush(f);
	return r;
}

static int punch(struct file_h *f, uint64_t len, uint64_t off)
{
	if (f->is_blockdev) {
		uint64_t range[2] = {off, len};

		return ioctl(f->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	}
	if (!atomic_load_explicit(&f->punch_ok, memory_order_relaxed))
		return -ENOTSUP;
	bits_clear(f, off, len);
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) <
	    0) {
		if (errno == EOPNOTSUPP) {
			atomic_store(&f->punch_ok, false);
			return -ENOTSUP;
		}
		return -errno;
	}
	return 0;
}

static int file_trim(void *h, uint64_t len, uint64_t off, uint32_t flags)
{
	int r = punch(h, len, off);

	/* TRIM is advisory: a file system that cannot punch holes keeps the
	 * data, which is a correct answer to a trim. */
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		r = 0;
	return fua_done(h, flags, r);
}

static int file_zero(void *h, uint64_t len, uint64_t off, uint32_t flags)
{
	struct file_h *f = h;
	int r;

	if (f->is_blockdev) {
		uint64_t range[2] = {off, len};

		r = ioctl(f->fd, BLKZEROOUT, range) < 0 ? -errno : 0;
	} else if (flags & NP_IO_NO_HOLE) {
		r = fallocate(f->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) < 0 ? -errno : 0;
	} else {
		r = punch(f, len, off);
	}
	/* The core turns ENOTSUP into written zeroes unless FAST_ZERO. */
	if (r == -EOPNOTSUPP || r == -ENOTTY)
		r = -ENOTSUP;
	return fua_done(f, flags, r);
}

static int file_cache(void *h, uint64_t len, uint64_t off)
{
	struct file_h *f = h;

	return -posix_fadvise(f->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

static int file_extents(void *h, struct np_io *io)
{
	struct file_h *f = h;
	uint64_t pos = io->offset, end = io->offset + io->len;

	if (f->is_blockdev)
		return np_io_add_extent(io, io->len, 0), 0;
	while (pos < end) {
		off_t data = lseek(f->fd, (off_t)pos, SEEK_DATA);
		off_t hole;

		if (data < 0) {
			if (errno == ENXIO) /* only a hole up to EOF */
				data = (off_t)end;
			else if (errno == EINVAL || errno == EOPNOTSUPP)
				return np_io_add_extent(io, end - pos, 0), 0;
			else
				return -errno;
		}
		if ((uint64_t)data > pos) {
			uint64_t n = ((uint64_t)data < end ? (uint64_t)data : end) - pos;

			if (!np_io_add_extent(io, n, NP_EXTENT_HOLE | NP_EXTENT_ZERO))
				return 0;
			pos += n;
			if (pos >= end)
				break;
		}
		hole = lseek(f->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		{
			uint64_t n = ((uint64_t)hole < end ? (uint64_t)hole : end) - pos;

			if (n == 0) /* racing with a write; report the rest as data */
				n = end - pos;
			if (!np_io_add_extent(io, n, 0))
				return 0;
			pos += n;
		}
	}
	return 0;
}

static int file_space(void *h, uint64_t *used, uint64_t *capacity)
{
	struct file_h *f = h;
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	*capacity = file_get_size(f);
	*used = f->is_blockdev ? *capacity : (uint64_t)st.st_blocks * 512;
	return 0;
}

const struct np_storage_ops np_storage_file = {
    .size = sizeof(struct np_storage_ops),
    .api_version = NP_STORAGE_API_VERSION,
    .name = "file",
    .usage = "PATH[,size=SIZE]\ta sparse file (created if missing and a size is given)",
    .open = file_open,
    .close = file_close,
    .get_size = file_get_size,
    .caps = file_caps,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .trim = file_trim,
    .zero = file_zero,
    .cache = file_cache,
    .extents = file_extents,
    .rw_nowait = file_rw_nowait,
    .space = file_space,
    .resize = file_resize,
    .sendfile_fd = file_sendfile_fd,
    .map_read = file_map_read,
    .map_write = file_map_write,
};
