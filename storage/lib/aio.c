/* Linux kernel AIO through straight system calls (storage/lib/aio.h). */
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif

#include "storage/lib/aio.h"

#define AIO_RING_MAGIC 0xa10a10a1

/* The header of the completion ring at an AIO context's address (the
 * kernel's fs/aio.c layout, version 1), then the events. */
struct aio_ring_view {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
	struct io_event events[];
};

/* Valgrind learns what a read filled only from io_getevents. */
static bool under_valgrind(void)
{
#if __has_include(<valgrind/valgrind.h>)
	return RUNNING_ON_VALGRIND;
#else
	return false;
#endif
}

int np_aio_setup(struct np_aio *a, unsigned nr)
{
	struct aio_ring_view *ring;

	a->ctx = 0;
	a->ring = false;
	if (syscall(SYS_io_setup, (long)nr, &a->ctx) < 0)
		return -errno;
	ring = (void *)(uintptr_t)a->ctx;
	a->ring = ring->magic == AIO_RING_MAGIC && ring->incompat_features == 0 &&
		  ring->header_length == sizeof(*ring) && ring->nr >= nr && !under_valgrind();
	return 0;
}

void np_aio_destroy(struct np_aio *a)
{
	if (a->ctx)
		syscall(SYS_io_destroy, a->ctx);
	a->ctx = 0;
}

void np_aio_prep(struct iocb *cb, bool write, int fd, void *buf, uint64_t len, uint64_t off,
		 uint64_t data)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = data;
	cb->aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
	cb->aio_fildes = (uint32_t)fd;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = len;
	cb->aio_offset = (int64_t)off;
}

void np_aio_notify(struct iocb *cb, int efd)
{
	cb->aio_flags |= IOCB_FLAG_RESFD;
	cb->aio_resfd = (uint32_t)efd;
}

int np_aio_submit(const struct np_aio *a, struct iocb **cbs, unsigned n)
{
	long r;

	do
		r = syscall(SYS_io_submit, a->ctx, (long)n, cbs);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r > 0 ? (int)r : -EIO; /* (taking none is not an answer) */
}

/* Takes up to max completions that are already in the ring. */
static unsigned ring_take(const struct np_aio *a, struct io_event *ev, unsigned max)
{
	struct aio_ring_view *ring = (void *)(uintptr_t)a->ctx;
	unsigned head = ring->head, got = 0;
	unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);

	while (got < max && head != tail) {
		ev[got++] = ring->events[head];
		head = head + 1 == ring->nr ? 0 : head + 1;
	}
	__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	return got;
}

int np_aio_reap(const struct np_aio *a, struct io_event *ev, unsigned min, unsigned max)
{
	struct timespec zero = {0, 0};
	unsigned got = a->ring ? ring_take(a, ev, max) : 0;

	/* Without the ring, min 0 is one look that does not wait. */
	while (got < max && (got < min || (!a->ring && got == 0 && min == 0))) {
		long want = got < min ? (long)(min - got) : 0;
		long r = syscall(SYS_io_getevents, a->ctx, want, (long)(max - got), ev + got,
				 want ? NULL : &zero);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return got ? (int)got : -errno;
		got += (unsigned)r;
		if (want == 0)
			break;
	}
	return (int)got;
}
