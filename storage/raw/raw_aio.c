/* The raw engine's asynchronous path: one kernel AIO context per event loop
 * (storage/lib/aio.c, the path the file engine uses too).
 *
 * Reads, and writes whose offset and length are block-aligned, go to the
 * device from the loop thread: every request of a submit() batch becomes an
 * iocb, and all of them leave in one io_submit. Each iocb signals the loop's
 * eventfd when it completes; a uv_poll_t on that eventfd drains the
 * completions (from the kernel's ring, or io_getevents) and calls io->done
 * on the loop thread.
 *
 * What may block goes to libuv's worker pool through np_io_run_sync: flush
 * (fdatasync), trim and zero (ioctls that wait for the device), writes that
 * need a read-modify-write of partial blocks, and aligned writes that find
 * their blocks locked by such a read-modify-write (waiting for the lock on
 * the loop would stall every connection of that loop).
 *
 * Completions that happen without the device (errors found before
 * submission) are not delivered from inside submit(): they wait on a list
 * until the next poll callback, so the core never sees done() re-entered
 * from its own submit() call. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "storage/lib/aio.h"
#include "storage/raw/raw_int.h"

/* iocbs in flight per loop; more requests wait in a FIFO for a slot. */
#define RAW_SLOTS 256
/* Fallback when the system-wide aio limit (fs.aio-max-nr) is nearly used. */
#define RAW_SLOTS_MIN 32
/* Completions reaped per io_getevents call, and calls per poll callback
 * before yielding to the loop (the callback re-arms itself). */
#define RAW_REAP        64
#define RAW_REAP_ROUNDS 16
/* Longer transfers risk a short completion (the kernel caps one transfer
 * near 2 GiB); the synchronous path loops on short transfers instead. */
#define RAW_AIO_MAX_LEN (1ULL << 30)

struct raw_req {
	struct iocb cb;
	struct np_io *io;
	void *bounce;  /* NULL when the device reads or writes io->buf itself */
	uint64_t skip; /* bytes of the bounce buffer before io->offset */
	bool locked;
	struct raw_range range;
	struct raw_req *next_free;
};

struct raw_loop {
	struct raw_handle *h;
	uv_loop_t *loop;
	const struct np_loop_env *env;
	void (*core_done)(struct np_io *io); /* what a punted io's done was */
	struct np_aio aio;
	int efd;
	uv_poll_t poll;

	unsigned nslots;
	struct raw_req *reqs;
	struct raw_req *free;
	struct iocb **batch;
	unsigned aio_inflight;

	/* Requests waiting for an iocb slot, and requests finished without
	 * the device, both linked through io->next. */
	struct np_io *pend_head, *pend_tail;
	struct np_io *dfr_head, *dfr_tail;

	unsigned inflight; /* accepted by submit and not yet done */
	bool closing;
	bool close_started;
};

static void raw_kick(struct raw_loop *lh);

static void raw_list_push(struct np_io **head, struct np_io **tail, struct np_io *io)
{
	io->next = NULL;
	if (*tail)
		(*tail)->next = io;
	else
		*head = io;
	*tail = io;
}

static void raw_wake(struct raw_loop *lh)
{
	uint64_t one = 1;

	/* Cannot fail short of an overflow of the 64-bit counter; a lost
	 * wake-up would still be repaired by the next completion. */
	if (write(lh->efd, &one, sizeof(one)) < 0) {
		/* nothing more to do */
	}
}

static void raw_defer(struct raw_loop *lh, struct np_io *io, int result)
{
	io->result = result;
	raw_list_push(&lh->dfr_head, &lh->dfr_tail, io);
	raw_wake(lh);
}

static void raw_close_cb(uv_handle_t *handle)
{
	struct raw_loop *lh = handle->data;

	np_aio_destroy(&lh->aio);
	close(lh->efd);
	free(lh->batch);
	free(lh->reqs);
	free(lh);
}

/* Frees the loop handle once it is closing and nothing is in flight; the
 * memory lives until the poll handle's close callback, so callers up the
 * stack may still read it. */
static void raw_maybe_finish(struct raw_loop *lh)
{
	if (!lh->closing || lh->close_started || lh->inflight > 0)
		return;
	lh->close_started = true;
	uv_poll_stop(&lh->poll);
	uv_close((uv_handle_t *)&lh->poll, raw_close_cb);
}

static void raw_complete(struct raw_loop *lh, struct np_io *io)
{
	lh->inflight--;
	io->done(io);
}

/* ---- worker pool ---- */

static void raw_blocking(void *h, struct np_io *io)
{
	np_io_run_sync(&np_storage_raw, h, raw_caps(h), io);
}

/* The pool's completion comes through here, for the loop's count of what
 * is in flight, before the core's done. */
static void raw_blocking_done(struct np_io *io)
{
	struct raw_loop *lh = io->engine_priv[0];

	io->done = lh->core_done;
	raw_complete(lh, io);
	raw_maybe_finish(lh);
}

static void raw_punt(struct raw_loop *lh, struct np_io *io)
{
	lh->core_done = io->done;
	io->engine_priv[0] = lh;
	io->done = raw_blocking_done;
	lh->env->run_blocking(lh->env, io, raw_blocking);
}

/* ---- iocbs ---- */

#define RAW_PUNT 1

/* Fills req's iocb for io. Returns 0, RAW_PUNT when io must take the
 * blocking path, or a negative errno to fail io with. */
static int raw_prep(struct raw_loop *lh, struct raw_req *req, struct np_io *io)
{
	struct raw_handle *h = lh->h;
	uint64_t lo = io->offset & ~(uint64_t)(h->bs - 1);
	uint64_t hi = (io->offset + io->len + h->bs - 1) & ~(uint64_t)(h->bs - 1);
	bool exact = lo == io->offset && hi == io->offset + io->len;
	void *buf = io->buf;

	req->io = io;
	req->bounce = NULL;
	req->skip = io->offset - lo;
	req->locked = false;
	if (hi - lo > RAW_AIO_MAX_LEN)
		return RAW_PUNT;
	if (io->op == NP_OP_WRITE) {
		if (!exact)
			return RAW_PUNT;
		if (!raw_range_trylock(h, &req->range, lo, hi))
			return RAW_PUNT;
		req->locked = true;
	}
	if (!exact || !raw_buf_aligned(h, buf)) {
		req->bounce = raw_bounce_alloc(h, hi - lo);
		if (!req->bounce) {
			if (req->locked)
				raw_range_unlock(h, &req->range);
			req->locked = false;
			return -ENOMEM;
		}
		buf = req->bounce;
	}
	if (io->op == NP_OP_WRITE) {
		if (req->bounce)
			memcpy(req->bounce, io->buf, (size_t)io->len);
		np_aio_prep(&req->cb, true, h->fd, buf, hi - lo, lo, (uint64_t)(uintptr_t)req);
		/* FUA natively: the write completes only once it is durable. */
		if (io->flags & NP_IO_FUA)
			req->cb.aio_rw_flags = RWF_DSYNC;
	} else {
		np_aio_prep(&req->cb, false, h->fd, buf, hi - lo, lo, (uint64_t)(uintptr_t)req);
	}
	np_aio_notify(&req->cb, lh->efd);
	return 0;
}

/* Releases what raw_prep took and returns the slot. */
static void raw_unprep(struct raw_loop *lh, struct raw_req *req)
{
	if (req->locked)
		raw_range_unlock(lh->h, &req->range);
	req->locked = false;
	free(req->bounce);
	req->bounce = NULL;
	req->next_free = lh->free;
	lh->free = req;
}

/* Turns a completion into io->result and frees the slot; returns the io. */
static struct np_io *raw_finish(struct raw_loop *lh, struct raw_req *req, long res)
{
	struct np_io *io = req->io;

	if (res < 0)
		io->result = (int)res;
	else if ((uint64_t)res != req->cb.aio_nbytes)
		io->result = -EIO; /* a short transfer inside the device */
	else
		io->result = 0;
	if (io->result == 0 && io->op == NP_OP_READ && req->bounce)
		memcpy(io->buf, (char *)req->bounce + req->skip, (size_t)io->len);
	raw_unprep(lh, req);
	return io;
}

/* Pushes the first n iocbs of lh->batch to the kernel. */
static void raw_submit_batch(struct raw_loop *lh, unsigned n)
{
	unsigned sent = 0;

	/* Each round submits at least one iocb or fails one, so this ends. */
	while (sent < n) {
		int r = np_aio_submit(&lh->aio, lh->batch + sent, n - sent);
		struct raw_req *req;

		if (r > 0) {
			sent += (unsigned)r;
			lh->aio_inflight += (unsigned)r;
			continue;
		}
		if (r == -EAGAIN && lh->aio_inflight > 0) {
			/* The kernel is out of resources; retry when some
			 * of what is in flight completes. Keep the order. */
			unsigned i;

			for (i = n; i-- > sent;) {
				req = (struct raw_req *)(uintptr_t)lh->batch[i]->aio_data;
				req->io->next = lh->pend_head;
				lh->pend_head = req->io;
				if (!lh->pend_tail)
					lh->pend_tail = req->io;
				raw_unprep(lh, req);
			}
			return;
		}
		req = (struct raw_req *)(uintptr_t)lh->batch[sent]->aio_data;
		raw_defer(lh, raw_finish(lh, req, r), r);
		sent++;
	}
}

/* Moves waiting requests into free slots, all in one io_submit. */
static void raw_kick(struct raw_loop *lh)
{
	unsigned n = 0;

	while (lh->pend_head && lh->free) {
		struct np_io *io = lh->pend_head;
		struct raw_req *req = lh->free;
		int r;

		lh->pend_head = io->next;
		if (!lh->pend_head)
			lh->pend_tail = NULL;
		lh->free = req->next_free;
		r = raw_prep(lh, req, io);
		if (r == 0) {
			lh->batch[n++] = &req->cb;
			continue;
		}
		raw_unprep(lh, req);
		if (r == RAW_PUNT)
			raw_punt(lh, io);
		else
			raw_defer(lh, io, r);
	}
	if (n > 0)
		raw_submit_batch(lh, n);
}

/* ---- the loop side ---- */

static void raw_poll_cb(uv_poll_t *poll, int status, int events)
{
	struct raw_loop *lh = poll->data;
	struct io_event ev[RAW_REAP];
	struct np_io *io, *next;
	uint64_t count;
	int round, n = 0, i;

	(void)status;
	(void)events;
	/* Read the counter before reaping: a completion after this read
	 * raises it again and brings the callback back. */
	if (read(lh->efd, &count, sizeof(count)) < 0) {
		/* EAGAIN: a spurious wake-up; reap anyway */
	}
	for (round = 0; round < RAW_REAP_ROUNDS; round++) {
		n = np_aio_reap(&lh->aio, ev, 0, RAW_REAP);
		for (i = 0; i < n; i++) {
			lh->aio_inflight--;
			io = raw_finish(lh, (struct raw_req *)(uintptr_t)ev[i].data,
					(long)ev[i].res);
			raw_complete(lh, io);
		}
		if (n < RAW_REAP)
			break;
	}
	/* Stopped with completions possibly left: come back after the
	 * loop has served everyone else. */
	if (n == RAW_REAP)
		raw_wake(lh);

	/* Slots freed up: send what waits, then what finished early. */
	raw_kick(lh);
	io = lh->dfr_head;
	lh->dfr_head = lh->dfr_tail = NULL;
	for (; io; io = next) {
		next = io->next;
		raw_complete(lh, io);
	}
	raw_maybe_finish(lh);
}

int raw_loop_open(void *hv, const struct np_loop_env *env, void **loop_handle)
{
	struct raw_loop *lh;
	unsigned i;
	int r;

	*loop_handle = NULL;
	lh = calloc(1, sizeof(*lh));
	if (!lh)
		return -ENOMEM;
	lh->h = hv;
	lh->loop = env->loop;
	lh->env = env;
	lh->nslots = RAW_SLOTS;
	r = np_aio_setup(&lh->aio, lh->nslots);
	if (r == -EAGAIN) {
		lh->nslots = RAW_SLOTS_MIN;
		r = np_aio_setup(&lh->aio, lh->nslots);
	}
	if (r < 0)
		goto out_free;
	lh->reqs = calloc(lh->nslots, sizeof(*lh->reqs));
	lh->batch = calloc(lh->nslots, sizeof(*lh->batch));
	if (!lh->reqs || !lh->batch) {
		r = -ENOMEM;
		goto out_destroy;
	}
	for (i = 0; i < lh->nslots; i++) {
		lh->reqs[i].next_free = lh->free;
		lh->free = &lh->reqs[i];
	}
	lh->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (lh->efd < 0) {
		r = -errno;
		goto out_destroy;
	}
	r = uv_poll_init(lh->loop, &lh->poll, lh->efd);
	if (r < 0)
		goto out_close_efd;
	lh->poll.data = lh;
	r = uv_poll_start(&lh->poll, UV_READABLE, raw_poll_cb);
	if (r < 0) {
		/* The handle is initialised: only its close callback frees. */
		lh->closing = lh->close_started = true;
		uv_close((uv_handle_t *)&lh->poll, raw_close_cb);
		return r;
	}
	*loop_handle = lh;
	return 0;

out_close_efd:
	close(lh->efd);
out_destroy:
	np_aio_destroy(&lh->aio);
out_free:
	free(lh->batch);
	free(lh->reqs);
	free(lh);
	return r;
}

void raw_loop_close(void *loop_handle)
{
	struct raw_loop *lh = loop_handle;
	struct np_io *io, *next;

	if (!lh || lh->closing)
		return;
	lh->closing = true;
	/* Requests still waiting for a slot will never get one. */
	io = lh->pend_head;
	lh->pend_head = lh->pend_tail = NULL;
	for (; io; io = next) {
		next = io->next;
		raw_defer(lh, io, -ESHUTDOWN);
	}
	raw_maybe_finish(lh);
}

void raw_submit(void *loop_handle, struct np_io **ios, unsigned n)
{
	struct raw_loop *lh = loop_handle;
	struct raw_handle *h = lh->h;
	unsigned i;

	for (i = 0; i < n; i++) {
		struct np_io *io = ios[i];

		lh->inflight++;
		if (lh->closing) {
			raw_defer(lh, io, -ESHUTDOWN);
			continue;
		}
		switch (io->op) {
		case NP_OP_READ:
		case NP_OP_WRITE:
			if (io->offset > h->size || io->len > h->size - io->offset)
				raw_defer(lh, io, -EINVAL);
			else if (io->len == 0)
				raw_defer(lh, io, 0);
			else if (io->op == NP_OP_WRITE && h->readonly)
				raw_defer(lh, io, -EPERM);
			else
				raw_list_push(&lh->pend_head, &lh->pend_tail, io);
			break;
		default:
			/* flush, trim, zero and what the core emulates */
			raw_punt(lh, io);
			break;
		}
	}
	raw_kick(lh);
}
