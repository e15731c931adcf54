/* The rbd engine's data path, on the event loops.
 *
 * READ, WRITE, FLUSH, TRIM and WRITE_ZEROES leave from the loop thread as
 * librbd aio requests whose completions carry no callback: librbd queues
 * each finished one on the image and signals the image's eventfd, which
 * every loop serving the export polls. The loop that wakes first drains
 * the queue with rbd_poll_io_events, in batches, and finishes its own
 * requests there and then; a request another loop sent goes to that loop's
 * mailbox (a locked list and a uv_async_t), because io->done must run on
 * the loop that owns the connection. One image handle serves every loop:
 * one handle per loop would fight over the image's exclusive lock on every
 * write, and a FLUSH on one handle would not cover the others' writes.
 *
 * BLOCK_STATUS (rbd_diff_iterate2) and RESIZE (rbd_resize) wait for the
 * cluster: rbd_run_blocking hands them to the core's worker pool
 * (env->run_blocking), which runs np_io_run_sync and finishes them on the
 * loop.
 *
 * No request finishes inside submit(): those answered without librbd wait
 * in the mailbox, so the core never sees done() re-entered from its own
 * submit() call. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "storage/rbd/rbd_int.h"

/* Completions taken per rbd_poll_io_events call, and calls per wake-up
 * before yielding to the loop (it then wakes itself again). */
#define RBD_REAP        64
#define RBD_REAP_ROUNDS 16

struct rbd_loop {
	struct rbd_handle *h;
	uv_loop_t *loop;
	const struct np_loop_env *env;       /* the core's, for blocking work */
	void (*core_done)(struct np_io *io); /* io->done while the pool has it */
	uv_poll_t poll;                      /* the image's eventfd */
	uv_async_t async;                    /* the mailbox's doorbell */

	/* Requests finished for this loop elsewhere (or early), linked
	 * through io->next; any thread pushes, this loop pops. */
	pthread_mutex_t lock;
	struct np_io *mail_head, *mail_tail;

	unsigned inflight; /* accepted by submit and not yet done */
	int handles_open;  /* poll and async, until their close callbacks */
	bool closing;
	bool close_started;
};

/* io->engine_priv while librbd holds it. */
#define IO_LOOP(io) ((io)->engine_priv[0])
#define IO_COMP(io) ((io)->engine_priv[1])

static void mail_push(struct rbd_loop *lh, struct np_io *io)
{
	/* The doorbell rings under the lock: the owner frees lh only after
	 * taking the lock to empty the mailbox, so lh outlives this send. */
	pthread_mutex_lock(&lh->lock);
	io->next = NULL;
	if (lh->mail_tail)
		lh->mail_tail->next = io;
	else
		lh->mail_head = io;
	lh->mail_tail = io;
	uv_async_send(&lh->async);
	pthread_mutex_unlock(&lh->lock);
}

static void finish_early(struct rbd_loop *lh, struct np_io *io, int result)
{
	io->result = result;
	mail_push(lh, io);
}

static void handle_closed(uv_handle_t *handle)
{
	struct rbd_loop *lh = handle->data;

	if (--lh->handles_open > 0)
		return;
	pthread_mutex_destroy(&lh->lock);
	free(lh);
}

static void maybe_finish(struct rbd_loop *lh)
{
	if (!lh->closing || lh->close_started || lh->inflight > 0)
		return;
	lh->close_started = true;
	uv_poll_stop(&lh->poll);
	uv_close((uv_handle_t *)&lh->poll, handle_closed);
	uv_close((uv_handle_t *)&lh->async, handle_closed);
}

static void complete(struct rbd_loop *lh, struct np_io *io)
{
	lh->inflight--;
	io->done(io);
}

/* ---- librbd's completions ---- */

/* Turns a finished completion into io->result; returns the io. */
static struct np_io *take(rbd_completion_t c)
{
	struct np_io *io = rbd_aio_get_arg(c);
	ssize_t r = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	IO_COMP(io) = NULL;
	if (r < 0)
		io->result = (int)r;
	else if (rbd_op_of(io) == RBD_OP_READ && (uint64_t)r != io->len)
		io->result = -EIO; /* cut short: the image shrank under it */
	else
		io->result = 0;
	return io;
}

static void drain_mail(struct rbd_loop *lh)
{
	struct np_io *io, *next;

	pthread_mutex_lock(&lh->lock);
	io = lh->mail_head;
	lh->mail_head = lh->mail_tail = NULL;
	pthread_mutex_unlock(&lh->lock);
	for (; io; io = next) {
		next = io->next;
		complete(lh, io);
	}
}

static void on_event(uv_poll_t *poll, int status, int events)
{
	struct rbd_loop *lh = poll->data;
	rbd_completion_t comps[RBD_REAP];
	uint64_t count;
	int round, n = 0, i;

	(void)status;
	(void)events;
	/* Read the counter first: a completion queued after this read
	 * raises it again and wakes some loop. Another loop may have read it
	 * already (EAGAIN): the queue is drained all the same. */
	if (read(lh->h->efd, &count, sizeof(count)) < 0) {
		/* nothing to do */
	}
	for (round = 0; round < RBD_REAP_ROUNDS; round++) {
		n = rbd_poll_io_events(lh->h->image, comps, RBD_REAP);
		for (i = 0; i < n; i++) {
			struct np_io *io = take(comps[i]);
			struct rbd_loop *owner = IO_LOOP(io);

			if (owner == lh)
				complete(lh, io);
			else
				mail_push(owner, io);
		}
		if (n < RBD_REAP)
			break;
	}
	if (n == RBD_REAP) {
		/* More may wait: come back after the loop served others. */
		count = 1;
		if (write(lh->h->efd, &count, sizeof(count)) < 0) {
			/* the next completion wakes a loop anyway */
		}
	}
	maybe_finish(lh);
}

static void on_mail(uv_async_t *async)
{
	struct rbd_loop *lh = async->data;

	drain_mail(lh);
	maybe_finish(lh);
}

/* ---- blocking operations ---- */

/* On a worker of the core's pool. */
static void rbd_blocking(void *h, struct np_io *io)
{
	np_io_run_sync(&np_storage_rbd, h, rbd_caps(h), io);
}

/* Back on the loop: the core calls this as io->done; the loop's count of
 * requests in flight drops before the core's own done runs. */
static void rbd_blocking_done(struct np_io *io)
{
	struct rbd_loop *lh = IO_LOOP(io);

	io->done = lh->core_done;
	complete(lh, io);
	maybe_finish(lh);
}

/* The one place that hands work to a thread: the core's pool, which takes
 * turns between connections and is sized by --threads. */
static void rbd_run_blocking(struct rbd_loop *lh, struct np_io *io)
{
	IO_LOOP(io) = lh;
	lh->core_done = io->done;
	io->done = rbd_blocking_done;
	lh->env->run_blocking(lh->env, io, rbd_blocking);
}

/* ---- submission ---- */

/* Sends io to librbd; returns 0, or a negative errno to finish it with. */
static int send_aio(struct rbd_loop *lh, struct np_io *io, enum rbd_op op)
{
	rbd_image_t img = lh->h->image;
	rbd_completion_t c;
	int r;

	r = rbd_aio_create_completion(io, NULL, &c);
	if (r < 0)
		return r;
	IO_LOOP(io) = lh;
	IO_COMP(io) = c;
	switch (op) {
	case RBD_OP_READ:
		r = rbd_aio_read2(img, io->offset, (size_t)io->len, io->buf, c, 0);
		break;
	case RBD_OP_WRITE:
		/* FUA needs nothing more: with no write-back cache, librbd
		 * completes a write once the OSDs have it. */
		r = rbd_aio_write2(img, io->offset, (size_t)io->len, io->buf, c, 0);
		break;
	case RBD_OP_FLUSH:
		r = rbd_aio_flush(img, c);
		break;
	case RBD_OP_TRIM:
		r = rbd_aio_discard(img, io->offset, io->len, c);
		break;
	case RBD_OP_ZERO:
		r = rbd_aio_write_zeroes(img, io->offset, io->len, c, 0, 0);
		break;
	default:
		r = -EINVAL;
		break;
	}
	if (r < 0) {
		rbd_aio_release(c);
		IO_COMP(io) = NULL;
	}
	return r;
}

void rbd_submit(void *loop_handle, struct np_io **ios, unsigned n)
{
	struct rbd_loop *lh = loop_handle;
	unsigned i;

	for (i = 0; i < n; i++) {
		struct np_io *io = ios[i];
		enum rbd_op op = rbd_op_of(io);
		int r;

		lh->inflight++;
		if (lh->closing) {
			finish_early(lh, io, -ESHUTDOWN);
			continue;
		}
		switch (op) {
		case RBD_OP_CACHE:
			/* librbd reads ahead on its own; with its cache off
			 * there is nowhere to keep what a prefetch would get. */
			finish_early(lh, io, 0);
			break;
		case RBD_OP_BLOCKING:
		case RBD_OP_INVALID:
			rbd_run_blocking(lh, io);
			break;
		default:
			if (op != RBD_OP_READ && lh->h->readonly) {
				finish_early(lh, io, -EPERM);
				break;
			}
			r = send_aio(lh, io, op);
			if (r < 0)
				finish_early(lh, io, r);
			break;
		}
	}
}

/* ---- per-loop setup ---- */

int rbd_loop_open(void *hv, const struct np_loop_env *env, void **loop_handle)
{
	struct rbd_handle *h = hv;
	struct rbd_loop *lh;
	int r;

	*loop_handle = NULL;
	lh = calloc(1, sizeof(*lh));
	if (!lh)
		return -ENOMEM;
	lh->h = h;
	lh->env = env;
	lh->loop = env->loop;
	pthread_mutex_init(&lh->lock, NULL);
	r = uv_async_init(lh->loop, &lh->async, on_mail);
	if (r < 0) {
		pthread_mutex_destroy(&lh->lock);
		free(lh);
		return r;
	}
	lh->async.data = lh;
	lh->handles_open = 1;
	r = uv_poll_init(lh->loop, &lh->poll, h->efd);
	if (r == 0) {
		lh->handles_open = 2;
		lh->poll.data = lh;
		r = uv_poll_start(&lh->poll, UV_READABLE, on_event);
	}
	if (r < 0) {
		/* Initialised handles are freed by their close callbacks. */
		lh->closing = lh->close_started = true;
		if (lh->handles_open == 2)
			uv_close((uv_handle_t *)&lh->poll, handle_closed);
		uv_close((uv_handle_t *)&lh->async, handle_closed);
		return r;
	}
	*loop_handle = lh;
	return 0;
}

void rbd_loop_close(void *loop_handle)
{
	struct rbd_loop *lh = loop_handle;

	if (!lh || lh->closing)
		return;
	lh->closing = true;
	maybe_finish(lh);
}
