/* One client connection, from accept to close.
 *
 * Input lands in a fixed buffer; every complete message in it is handled
 * before the next read: during the handshake by the state machine in net/,
 * in transmission by parsing all complete requests, validating each and
 * handing the whole batch to the export's engine at once. A WRITE payload
 * that has not fully arrived is read straight into its request's buffer.
 *
 * Replies queue on the connection and go out at the end of the callback
 * that produced them (np_loop_flush): one uv_try_write of every pending
 * reply, and a uv_write for what the socket did not take.
 *
 * Memory is bounded: requests and replies not yet written count against
 * max_inflight, and past it the connection stops reading until replies
 * drain. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/reply.h"

#define WRITE_BATCH       1024         /* iovecs per write; IOV_MAX on Linux */
#define SENDFILE_MIN      (64 * 1024)  /* smaller reads are cheaper copied */
#define MAP_READ_MIN      (256 * 1024) /* smaller: cheaper read in batches (file.c) */
#define MAP_WRITE_MIN     (256 * 1024) /* smaller: cheaper written in batches */
#define ASYNC_BATCH       256
#define NP_INLINE_MAX     (128 * 1024)
#define NP_HS_MAX_PENDING (1024 * 1024)

/* Requests parsed in one go: those for the engine's submit or rw_nowait,
 * and those for the worker pool. */
struct batch {
	struct np_job *pool_head, *pool_tail;
	struct np_io *ios[ASYNC_BATCH];
	unsigned n_ios;
};

static void conn_input(struct np_conn *c);
static void conn_process(struct np_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_flush(struct np_conn *c);
static void try_finish(struct np_conn *c);
static void reply_now(struct np_conn *c, struct np_req *r, uint32_t error);
static void conn_end(struct np_conn *c);
static void end_if_stopped(struct np_conn *c);

static void mark_dirty(struct np_conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = c->loop->dirty;
		c->loop->dirty = c;
	}
}

/* Counts bytes a request holds against its connection's cap and the
 * server's total budget; np_req_free gives them back. */
static void charge(struct np_req *r, uint64_t n)
{
	struct np_conn *c = r->conn;

	r->charge += n;
	c->inflight_bytes += n;
	atomic_fetch_add_explicit(&c->loop->srv->inflight_total, n, memory_order_relaxed);
}

/* Whether a connection must stop reading: past its own cap, or holding
 * requests while the server is past its total budget. A connection with
 * nothing in flight may always send one more, so every client makes
 * progress, and its own completions are what let it go on. */
static bool over_budget(const struct np_conn *c, uint64_t own_cap)
{
	const struct np_server *srv = c->loop->srv;

	return c->inflight_bytes >= own_cap ||
	       (c->inflight_bytes > 0 && c->phase == NP_CONN_TRANSMISSION &&
		atomic_load_explicit(&srv->inflight_total, memory_order_relaxed) >=
		    srv->cfg->max_inflight_total);
}

static struct np_req *req_new(struct np_conn *c)
{
	struct np_req *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	memset(r, 0, offsetof(struct np_req, hdr));
	r->conn = c;
	r->t0 = uv_hrtime();
	r->io.owner = r;
	r->io.done = np_req_done;
	r->charge = 0;
	charge(r, sizeof(*r));
	return r;
}

/* Bytes of requests and replies a connection may hold before it stops
 * reading: the configured cap in transmission; during the handshake, a
 * small one, since option replies are small and a client that sends
 * options without reading the replies must not grow the queue. */
static uint64_t cap_of(const struct np_conn *c)
{
	return c->phase == NP_CONN_HANDSHAKE ? NP_HS_MAX_PENDING : c->loop->srv->cfg->max_inflight;
}

static void resume_if_drained(struct np_conn *c)
{
	if (c->paused && !c->closing && !over_budget(c, cap_of(c) / 2)) {
		c->paused = false;
		if (!c->reading && !c->stopping) {
			uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
			c->reading = true;
		}
		conn_input(c);
		end_if_stopped(c);
	}
}

void np_req_free(struct np_req *r)
{
	struct np_conn *c = r->conn;

	c->inflight_bytes -= r->charge;
	atomic_fetch_sub_explicit(&c->loop->srv->inflight_total, r->charge, memory_order_relaxed);
	if (!r->buf_mapped)
		free(r->io.buf);
	free(r->extra);
	free(r);
}

/* Appends r to the list from *head to *tail. */
static void req_append(struct np_req **head, struct np_req **tail, struct np_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static void out_append(struct np_conn *c, struct np_req *r)
{
	req_append(&c->out_head, &c->out_tail, r);
	mark_dirty(c);
}

static int queue_copy(struct np_conn *c, const void *data, size_t len, bool wire)
{
	struct np_req *r = req_new(c);

	if (!r || !(r->io.buf = malloc(len))) {
		if (r)
			np_req_free(r);
		return -1;
	}
	memcpy(r->io.buf, data, len);
	r->wire = wire;
	charge(r, len);
	r->iov[0].iov_base = r->io.buf;
	r->iov[0].iov_len = len;
	r->n_iov = 1;
	out_append(c, r);
	return 0;
}

/* Queues handshake replies: in clear before TLS, encrypted after. */
static int queue_bytes(struct np_conn *c, const void *data, size_t len)
{
	return queue_copy(c, data, len, !c->tls_up);
}

/* ---- TLS: tls.c says what happened, this acts on it ---- */

/* Sends what GnuTLS has pushed, as is. */
static void send_pushed(struct np_conn *c)
{
	if (c->tls_out.len) {
		queue_copy(c, c->tls_out.data, c->tls_out.len, true);
		np_buf_free(&c->tls_out);
	}
}

/* Decrypts records into the input buffer and handles them, until GnuTLS
 * needs more ciphertext or the connection stops reading. */
static void tls_pump(struct np_conn *c)
{
	while (!c->closing && !c->paused) {
		const char *why = NULL;
		int r = np_tls_read(c, &why);

		if (r > 0) {
			conn_process(c);
			continue;
		}
		if (r < 0)
			np_conn_close(c, why);
		break;
	}
	send_pushed(c);
}

static void tls_handshake(struct np_conn *c)
{
	const char *why = NULL;
	int r = np_tls_step(c, &why);

	send_pushed(c);
	if (r < 0)
		np_conn_close(c, why);
	else if (r == 0)
		tls_pump(c); /* options may already be waiting */
}

static void tls_input(struct np_conn *c, size_t n)
{
	np_tls_received(c, n);
	if (c->tls_up)
		tls_pump(c);
	else
		tls_handshake(c);
}

/* Encrypts every queued plaintext reply into one TLS write. */
static int tls_encrypt_queue(struct np_conn *c)
{
	for (struct np_req **pp = &c->out_head; *pp;) {
		struct np_req *r = *pp;

		if (r->wire) {
			c->out_tail = r;
			pp = &r->next;
			continue;
		}
		for (unsigned i = r->iov_done; i < r->n_iov; i++)
			if (np_tls_encrypt(c, r->iov[i].iov_base, r->iov[i].iov_len) < 0)
				return -1;
		*pp = r->next;
		np_req_free(r);
	}
	if (!c->out_head)
		c->out_tail = NULL;
	send_pushed(c);
	return 0;
}

/* ---- replies ---- */

/* Notes which parts of a finished READ are zeroes, for hole chunks; done by
 * whichever thread did the read, so a large scan is off the loop. */
static void scan_zeroes(struct np_req *r)
{
	r->zero_scanned = true;
	r->zero_mask = 0;
	if (r->io.cmd != NBD_CMD_READ || r->io.result || !r->conn->structured ||
	    (r->io.flags & NBD_CMD_FLAG_DF))
		return;
	r->zero_mask = np_reply_zero_mask(r->io.buf, r->io.offset, r->io.len);
}

/* Encodes r's reply (reply.c) into its header buffer and iovecs. */
static void build_reply(struct np_req *r)
{
	struct np_conn *c = r->conn;
	const struct np_reply_opts o = {c->structured, c->extended};
	struct np_io *io = &r->io;
	uint16_t cmd = io->cmd;

	r->n_iov = 0;
	r->iov_done = 0;
	if (!r->error)
		r->error = nbd_errno_to_wire(io->result);
	if (!r->error && c->structured && cmd == NBD_CMD_BLOCK_STATUS) {
		bool one = io->flags & NBD_CMD_FLAG_REQ_ONE;
		size_t size =
		    np_reply_block_status_size(&o, io->len, one, io->extents, io->n_extents);
		uint8_t *d = malloc(size ? size : 1);

		if (d) {
			r->n_iov =
			    np_reply_block_status(&o, r->cookie, io->offset, io->len, one,
						  io->extents, io->n_extents, r->hdr, r->iov, d);
			free(r->extra); /* the extents array */
			r->extra = d;
		} else {
			r->error = NBD_ENOMEM;
		}
	}
	if (!r->error && cmd == NBD_CMD_READ) {
		if (!r->zero_scanned)
			scan_zeroes(r);
		r->n_iov = np_reply_read(&o, r->cookie, io->offset, io->buf, io->len, r->zero_mask,
					 r->hdr, r->iov);
	} else if (r->error) {
		r->n_iov = np_reply_error(&o, cmd, r->cookie, io->offset, r->error, r->hdr, r->iov);
	} else if (r->n_iov == 0) {
		r->n_iov = np_reply_ok(&o, r->cookie, io->offset, r->hdr, r->iov);
	}
	{
		uint64_t bytes = !r->error && cmd <= NBD_CMD_WRITE ? io->len : 0;

		np_stats_record(c->lex, cmd, bytes, r->error != 0, r->t0);
		c->n_requests++;
		c->n_bytes += bytes;
		c->n_errors += r->error != 0;
	}
	if (r->error)
		np_debug("conn %llu: %s offset %llu length %llu: error %u",
			 (unsigned long long)c->id, nbd_cmd_name(cmd),
			 (unsigned long long)io->offset, (unsigned long long)io->len, r->error);
}

void np_req_done(struct np_io *io)
{
	struct np_req *r = io->owner;
	struct np_conn *c = r->conn;

	c->engine_busy--;
	if (io->cmd == NBD_CMD_RESIZE && io->result == 0)
		np_export_refresh_size(c->export);
	if (c->closing && !c->graceful) {
		np_req_free(r);
		try_finish(c);
		return;
	}
	build_reply(r);
	out_append(c, r);
}

/* ---- writing ---- */

/* Collects up to WRITE_BATCH iovecs of queued replies starting at r. A
 * reply whose data goes by sendfile ends the batch after its header, and
 * is where the batch stops. */
static unsigned gather(struct np_req *r, uv_buf_t *bufs, struct np_req **stop)
{
	unsigned n = 0;

	for (; r && n + (r->n_iov - r->iov_done) <= WRITE_BATCH; r = r->next) {
		for (unsigned i = r->iov_done; i < r->n_iov; i++)
			bufs[n++] = uv_buf_init(r->iov[i].iov_base, (unsigned)r->iov[i].iov_len);
		if (r->sf_len)
			break;
	}
	*stop = r;
	return n;
}

/* Drops written bytes from the front of the queue. */
static void advance(struct np_conn *c, size_t written)
{
	while (c->out_head && written) {
		struct np_req *r = c->out_head;
		struct iovec *v = &r->iov[r->iov_done];

		if (written < v->iov_len) {
			v->iov_base = (uint8_t *)v->iov_base + written;
			v->iov_len -= written;
			return;
		}
		written -= v->iov_len;
		if (++r->iov_done == r->n_iov) {
			if (r->sf_len)
				return; /* its data goes by sendfile */
			c->out_head = r->next;
			if (!c->out_head)
				c->out_tail = NULL;
			np_req_free(r);
		}
	}
}

/* Why a read from or a write to the client failed. EFAULT: a READ's data
 * sent from, or a WRITE's received into, the engine's mapping of a file
 * (map_read, map_write) that was cut short underneath. */
static const char *socket_error(int e)
{
	return e == UV_EFAULT ? "a request's data is gone: the export's file was cut short under it"
			      : uv_strerror(e);
}

static void on_write(uv_write_t *w, int status)
{
	struct np_conn *c = container_of(w, struct np_conn, write_req);

	while (c->writing) {
		struct np_req *next = c->writing->next;

		np_req_free(c->writing);
		c->writing = next;
	}
	c->write_busy = false;
	if (status < 0) {
		np_conn_close(c, socket_error(status));
		return;
	}
	conn_flush(c);
	resume_if_drained(c);
	np_loop_flush(c->loop);
}

static int materialize(struct np_req *r);

/* Waiting for a full socket to take more. libuv's own write queue can only
 * take buffers, so a reply whose data goes by sendfile would have to be
 * read into memory first; instead a poll handle on a duplicate of the
 * socket's descriptor (epoll keeps it apart from libuv's registration of
 * the original) says when to go on. */
struct np_wpoll {
	uv_poll_t poll;
	int fd;
};

static void on_wpoll_close(uv_handle_t *h)
{
	struct np_wpoll *p = container_of((uv_poll_t *)h, struct np_wpoll, poll);

	close(p->fd);
	free(p);
}

static void on_writable(uv_poll_t *h, int status, int events)
{
	struct np_conn *c = h->data;
	struct np_wpoll *p = container_of(h, struct np_wpoll, poll);

	(void)events;
	uv_poll_stop(h);
	if (status < 0) {
		/* libuv says EBADF for any POLLERR; the socket knows the real
		 * cause (a client that closed with replies unread: a reset). */
		int e = 0;
		socklen_t len = sizeof(e);

		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e > 0)
			status = -e;
		np_conn_close(c, uv_strerror(status));
		return;
	}
	conn_flush(c);
	np_loop_flush(c->loop);
}

/* Returns false when no poll handle can be had (out of descriptors): the
 * caller then hands the queue to libuv. */
static bool wait_writable(struct np_conn *c)
{
	struct np_wpoll *p = c->wpoll;
	uv_os_fd_t sock;

	if (!p) {
		if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0 || !(p = calloc(1, sizeof(*p))))
			return false;
		p->fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
		if (p->fd < 0 || uv_poll_init_socket(&c->loop->uv, &p->poll, p->fd) < 0) {
			if (p->fd >= 0)
				close(p->fd);
			free(p);
			return false;
		}
		p->poll.data = c;
		c->wpoll = p;
	}
	return uv_poll_start(&p->poll, UV_WRITABLE, on_writable) == 0;
}

/* Sends what a sendfile reply has left, for as long as the socket takes
 * it. Returns 0 when the reply is gone (or left as a buffered one), 1 when
 * the socket is full, -1 when the connection closed. */
static int send_file_part(struct np_conn *c, struct np_req *r)
{
	uv_os_fd_t sock;

	if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0) {
		np_conn_close(c, "no socket");
		return -1;
	}
	while (r->sf_len) {
		off_t off = (off_t)r->sf_off;
		size_t n = r->sf_len > (1U << 30) ? (1U << 30) : (size_t)r->sf_len;
		ssize_t w = sendfile(sock, r->sf_fd, &off, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 1;
		if (w < 0) {
			np_conn_close(c, strerror(errno));
			return -1;
		}
		if (w == 0) {
			/* The file shrank under the read: the rest reads as
			 * zeroes, as pread would give them, and is written
			 * from a buffer. */
			if (materialize(r) == 0)
				return 0;
			np_conn_close(c, "out of memory for a reply");
			return -1;
		}
		r->sf_off += (uint64_t)w;
		r->sf_len -= (uint64_t)w;
	}
	c->out_head = r->next;
	if (!c->out_head)
		c->out_tail = NULL;
	np_req_free(r);
	return 0;
}

/* Reads what a sendfile reply has left into a buffer, for a write that
 * libuv finishes; bytes past the end of a shrunk file read as zeroes. */
static int materialize(struct np_req *r)
{
	uint8_t *buf = malloc(r->sf_len);
	uint64_t done = 0;

	if (!buf)
		return -1;
	while (done < r->sf_len) {
		ssize_t n =
		    pread(r->sf_fd, buf + done, r->sf_len - done, (off_t)(r->sf_off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			memset(buf + done, 0, r->sf_len - done);
			break;
		}
		done += (uint64_t)n;
	}
	free(r->io.buf);
	r->io.buf = buf;
	r->iov[r->n_iov].iov_base = buf;
	r->iov[r->n_iov].iov_len = r->sf_len;
	r->n_iov++;
	r->sf_len = 0;
	return 0;
}

static void conn_flush(struct np_conn *c)
{
	uv_buf_t bufs[WRITE_BATCH];
	struct np_req *stop;
	unsigned n;
	int w;

	if (c->closed || (c->closing && !c->graceful))
		goto out;
	if (c->tls_up && c->out_tail && !c->out_tail->wire && tls_encrypt_queue(c) < 0) {
		np_conn_close(c, "TLS: cannot encrypt");
		return;
	}
	if (c->write_busy || (c->wpoll && uv_is_active((uv_handle_t *)&c->wpoll->poll)))
		goto out;
	while (c->out_head) {
		struct np_req *head = c->out_head;

		if (head->iov_done == head->n_iov && head->sf_len) {
			int rc = send_file_part(c, head);

			if (rc < 0)
				return;
			if (rc > 0)
				break; /* the socket is full */
			continue;
		}
		n = gather(c->out_head, bufs, &stop);
		if (n == 0)
			break;
		w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
		if (w < 0 && w != UV_EAGAIN) {
			np_conn_close(c, socket_error(w));
			return;
		}
		advance(c, w > 0 ? (size_t)w : 0);
		if (c->out_head && (w == UV_EAGAIN || c->out_head != stop))
			break; /* the socket is full */
	}
	if (c->out_head && !wait_writable(c)) {
		/* Hand the rest to libuv, which writes it when the socket
		 * drains; these replies leave the queue until it is done.
		 * libuv cannot sendfile, so their file data is read now. */
		for (struct np_req *r = c->out_head; r; r = r->next) {
			if (r->sf_len && materialize(r) < 0) {
				np_conn_close(c, "out of memory for a reply");
				return;
			}
		}
		n = gather(c->out_head, bufs, &stop);
		c->writing = c->out_head;
		for (struct np_req *r = c->out_head; r; r = r->next) {
			if (r->next == stop) {
				r->next = NULL;
				break;
			}
		}
		c->out_head = stop;
		if (!stop)
			c->out_tail = NULL;
		w = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
		if (w < 0) {
			np_conn_close(c, socket_error(w));
			return;
		}
		c->write_busy = true;
	}
out:
	resume_if_drained(c);
	if (c->closing)
		try_finish(c);
}

void np_loop_flush(struct np_loop *l)
{
	while (l->dirty) {
		struct np_conn *c = l->dirty;

		l->dirty = c->dirty_next;
		c->dirty = false;
		conn_flush(c);
	}
}

/* ---- closing ---- */

static void on_close(uv_handle_t *h)
{
	struct np_conn *c = h->data;
	struct np_loop *l = c->loop;

	/* The socket and the timer close separately, in an order libuv does
	 * not promise; the connection goes when the last one has. */
	if (--c->open_handles)
		return;

	while (c->out_head) {
		struct np_req *next = c->out_head->next;

		np_req_free(c->out_head);
		c->out_head = next;
	}
	if (c->payload_req)
		np_req_free(c->payload_req);
	if (c->skip_req)
		np_req_free(c->skip_req);
	if (c->dirty) {
		struct np_conn **pp = &l->dirty;

		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	l->n_conns--;
	np_limits_release(&l->srv->limits, (struct sockaddr *)&c->peer_sa);
	if (c->export) {
		np_loop_export_conn_gone(l, c->export);
		np_export_put(l->srv, c->export);
	}
	if (c->hs_export)
		np_export_put(l->srv, c->hs_export);
	np_hs_free(&c->hs);
	np_tls_conn_free(c);
	free(c->in);
	free(c);
	if (l->draining)
		l->empty(l);
}

static void try_finish(struct np_conn *c)
{
	if (c->closed || c->engine_busy)
		return;
	if (c->graceful && (c->out_head || c->write_busy))
		return;
	c->closed = true;
	if (c->wpoll) {
		uv_close((uv_handle_t *)&c->wpoll->poll, on_wpoll_close);
		c->wpoll = NULL;
	}
	c->open_handles = 2;
	c->timer.data = c->tcp.data = c;
	uv_close((uv_handle_t *)&c->timer, on_close);
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void stop_reading(struct np_conn *c)
{
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	uv_timer_stop(&c->timer);
}

void np_conn_close(struct np_conn *c, const char *why)
{
	if (c->closed)
		return;
	if (why)
		np_info("conn %llu from %s: closing: %s", (unsigned long long)c->id, c->peer, why);
	c->closing = true;
	c->graceful = false;
	stop_reading(c);
	try_finish(c);
}

/* The client is done (NBD_CMD_DISC, or the end of its handshake): nothing
 * more is read or parsed, and the connection closes once the requests it
 * holds are answered. */
static void conn_end(struct np_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->graceful = true;
	stop_reading(c);
	/* A refused WRITE's payload still arriving is simply not read. */
	if (c->payload_req) {
		np_req_free(c->payload_req);
		c->payload_req = NULL;
	}
	if (c->skip_req) {
		np_req_free(c->skip_req);
		c->skip_req = NULL;
	}
	try_finish(c);
}

/* A stopped connection ends once it has parsed every complete request it
 * had received; a pause (a budget) holds the rest until replies drain. */
static void end_if_stopped(struct np_conn *c)
{
	if (c->stopping && !c->paused && !c->closing)
		conn_end(c);
}

void np_conn_drain(struct np_conn *c)
{
	if (c->closing || c->stopping)
		return;
	if (c->phase != NP_CONN_TRANSMISSION) {
		conn_end(c);
		return;
	}
	/* The client has sent these requests and may be waiting for their
	 * replies: what is already in our buffers is answered, however a
	 * budget paused its parsing; only the socket is no longer read. */
	c->stopping = true;
	stop_reading(c);
	conn_input(c);
	end_if_stopped(c);
}

/* ---- transmission ---- */

/* On a worker: the engine's blocking call, then the zero scan of a READ,
 * which is best done by the thread that has the data in its cache. */
static void req_run(struct np_job *job)
{
	struct np_req *r = container_of(job, struct np_req, job);
	struct np_export *ex = r->conn->export;

	np_io_run_sync(ex->ops, ex->h, ex->caps, &r->io);
	if (r->io.cmd == NBD_CMD_READ)
		scan_zeroes(r);
}

static void req_complete(struct np_job *job)
{
	np_req_done(&container_of(job, struct np_req, job)->io);
}

static void blocking_run(struct np_job *job)
{
	struct np_req *r = container_of(job, struct np_req, job);

	r->blocking(r->conn->export->h, &r->io);
}

static void blocking_complete(struct np_job *job)
{
	struct np_req *r = container_of(job, struct np_req, job);

	r->io.done(&r->io);
}

/* The io is a request's (engines get no other), whose job is free while
 * the engine holds it; the connection lives on until it is done, as for
 * pool_append below. */
void np_req_run_blocking(const struct np_loop_env *env, struct np_io *io,
			 void (*fn)(void *h, struct np_io *io))
{
	struct np_req *r = io->owner;
	struct np_conn *c = r->conn;

	(void)env;
	r->blocking = fn;
	r->job.run = blocking_run;
	r->job.complete = blocking_complete;
	r->job.mbox = &c->loop->mbox;
	np_pool_submit(&c->loop->srv->pool, &c->pool_queue, &r->job, &r->job);
}

/* Adds r to the batch's list for the pool. The connection's queue node in
 * the pool, c->pool_queue, is used until a worker takes its last job, and
 * the connection is still there then: dispatch counts each request in
 * c->engine_busy, np_req_done takes it off on the loop once the job is
 * complete, and the connection is closed (try_finish) and freed (on_close)
 * only when engine_busy is 0. */
static void pool_append(struct batch *b, struct np_req *r)
{
	r->job.run = req_run;
	r->job.complete = req_complete;
	r->job.mbox = &r->conn->loop->mbox;
	r->job.next = NULL;
	if (b->pool_tail)
		b->pool_tail->next = &r->job;
	else
		b->pool_head = &r->job;
	b->pool_tail = &r->job;
}

/* Hands the batch over. The loop's own work (rw_nowait) runs before the
 * pool's, so a FLUSH in the pool follows the WRITEs parsed before it. */
static void submit_batch(struct np_conn *c, struct batch *b)
{
	struct np_export *ex = c->export;
	unsigned n = b->n_ios;

	b->n_ios = 0;
	if (n && ex->ops->submit) {
		ex->ops->submit(c->lex->engine_loop, b->ios, n);
	} else if (n) {
		ex->ops->rw_nowait(ex->h, b->ios, n);
		for (unsigned i = 0; i < n; i++) {
			if (b->ios[i]->result == -EAGAIN)
				pool_append(b, b->ios[i]->owner);
			else
				np_req_done(b->ios[i]);
		}
	}
	if (b->pool_head) {
		np_pool_submit(&c->loop->srv->pool, &c->pool_queue, b->pool_head, b->pool_tail);
		b->pool_head = b->pool_tail = NULL;
	}
}

static void dispatch(struct np_conn *c, struct np_req *r, struct batch *b)
{
	struct np_export *ex = c->export;
	struct np_loop *l = c->loop;

	if (r->buf_mapped && r->io.cmd == NBD_CMD_WRITE) {
		reply_now(c, r, 0); /* its payload is in place (try_map_write) */
		return;
	}
	c->engine_busy++;
	if (c->turn != l->turn) {
		c->turn = l->turn;
		c->turn_reqs = 0;
	}
	if (++c->turn_reqs > l->turn_most)
		l->turn_most = c->turn_reqs;
	/* Transfers the engine can do without blocking run on the loop, a
	 * batch at a time: every WRITE (the engine leaves those it cannot do
	 * so, FUA ones on a disk, say, to the pool), and READs up to
	 * NP_INLINE_MAX. Larger reads go to the pool, where several run at
	 * once on every core while the loop goes on parsing. A large WRITE is
	 * cheaper inline: its payload has arrived in pieces over several loop
	 * turns, so the pool's handoff would buy no parallel work and cost two
	 * thread wake-ups (perf/README.md). */
	if (ex->ops->submit ||
	    (ex->ops->rw_nowait && (r->io.cmd == NBD_CMD_WRITE ||
				    (r->io.cmd == NBD_CMD_READ && r->io.len <= NP_INLINE_MAX)))) {
		b->ios[b->n_ios++] = &r->io;
		if (b->n_ios == ASYNC_BATCH)
			submit_batch(c, b);
		return;
	}
	pool_append(b, r);
}

/* Answers a request that no engine needs to see. */
static void reply_now(struct np_conn *c, struct np_req *r, uint32_t error)
{
	r->error = error;
	build_reply(r);
	out_append(c, r);
}

/* A refused request's payload is read and dropped; the error is answered
 * once it has all arrived, because clients match a reply only to a request
 * they have finished sending. */
static void skip_payload(struct np_conn *c, struct np_req *r, uint32_t err, uint64_t len)
{
	if (len == 0) {
		reply_now(c, r, err);
		return;
	}
	r->error = err;
	c->skip = len;
	c->skip_req = r;
}

/* Checks a request against the export and the negotiated features; returns
 * the NBD error to answer with, or 0. */
static uint32_t validate(struct np_conn *c, const struct nbd_request *h)
{
	struct np_export *ex = c->export;
	uint64_t size = np_export_size(ex);
	uint16_t allowed = NBD_CMD_FLAG_FUA;
	bool writes = false, in_range = h->offset <= size && h->count <= size - h->offset;

	switch (h->type) {
	case NBD_CMD_RESIZE:
		/* The new size is in the offset field; nothing else is set. */
		if (ex->readonly)
			return NBD_EPERM;
		if (!(ex->hs.tflags & NBD_FLAG_SEND_RESIZE) || h->count || h->flags ||
		    h->offset % ex->hs.min_block)
			return NBD_EINVAL;
		return 0;
	case NBD_CMD_READ:
		allowed |= c->structured ? NBD_CMD_FLAG_DF : 0;
		if (h->count == 0 || h->count > ex->hs.max_block)
			return NBD_EINVAL;
		break;
	case NBD_CMD_WRITE:
		writes = true;
		if (h->count == 0 || h->count > ex->hs.max_block)
			return NBD_EINVAL;
		break;
	case NBD_CMD_WRITE_ZEROES:
		allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
		writes = true;
		break;
	case NBD_CMD_TRIM:
		writes = true;
		break;
	case NBD_CMD_FLUSH:
		return (h->flags & ~allowed) ? NBD_EINVAL : 0;
	case NBD_CMD_CACHE:
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed |= NBD_CMD_FLAG_REQ_ONE;
		if (!c->meta_base_allocation)
			return NBD_EINVAL;
		break;
	default:
		return NBD_EINVAL;
	}
	if (h->flags & ~allowed)
		return NBD_EINVAL;
	if (writes && ex->readonly)
		return NBD_EPERM;
	if (h->count == 0)
		return NBD_EINVAL;
	if (!in_range)
		return (h->type == NBD_CMD_WRITE || h->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC
										     : NBD_EINVAL;
	return 0;
}

/* A large READ of a range that memory holds is answered at once, from the
 * file, with no copy through a buffer of ours: the reply's header is built
 * as for one data chunk, and its data leaves when its turn comes
 * (conn_flush). Either by sendfile, for clients on other hosts (the NIC
 * reads the pages), or, for a client on this host, by writev from the
 * engine's mapping of the file: over loopback the receiver copies the
 * data either way, so only the copy into our buffer is saved, and sendfile
 * there costs the client more than it saves us (perf/README.md). Not under
 * TLS, which encrypts in user space: it would read a mapping of a file
 * cut short underneath with a SIGBUS, where the kernel's copy fails the
 * write with EFAULT and closes only this connection. */
static bool try_direct_read(struct np_conn *c, struct np_req *r)
{
	const struct np_storage_ops *ops = c->export->ops;
	void *h = c->export->h;
	const void *map = NULL;
	int fd = -1;

	if (r->io.len < SENDFILE_MIN || c->tls || ops->submit)
		return false;
	if (c->sendfile && ops->sendfile_fd)
		fd = ops->sendfile_fd(h, r->io.offset, r->io.len);
	else if (ops->map_read && r->io.len >= MAP_READ_MIN)
		map = ops->map_read(h, r->io.offset, r->io.len);
	if (fd < 0 && !map)
		return false;
	r->zero_scanned = true; /* no holes: one data chunk */
	if (map) {
		r->io.buf = (void *)map;
		r->buf_mapped = true;
	}
	build_reply(r);
	if (fd >= 0 && !r->error) {
		r->n_iov--; /* the data iovec, which would point at no buffer */
		r->sf_fd = fd;
		r->sf_off = r->io.offset;
		r->sf_len = r->io.len;
	}
	out_append(c, r);
	return true;
}

/* A large WRITE whose payload is still arriving lands in the engine's
 * memory (map_write) with no buffer of ours between: the engine writes
 * the bytes that came with the request, at *pos in the input buffer, and
 * the rest is read from the socket straight into place (on_alloc). Not
 * under TLS, whose payload arrives encrypted and is decrypted into the
 * input buffer. */
static bool try_map_write(struct np_conn *c, struct np_req *r, size_t *pos)
{
	const struct np_storage_ops *ops = c->export->ops;
	size_t head = c->in_len - *pos;

	if (!ops->map_write || r->io.len < MAP_WRITE_MIN || c->tls || head >= r->io.len)
		return false;
	r->io.buf = ops->map_write(c->export->h, r->io.offset, r->io.len, c->in + *pos, head);
	if (!r->io.buf)
		return false;
	r->buf_mapped = true;
	*pos += head;
	c->payload_req = r;
	c->payload_got = head;
	return true;
}

/* Handles one request header, whose payload (if any) starts at *pos in the
 * input buffer. Returns false when the connection closes. */
static bool handle_request(struct np_conn *c, const struct nbd_request *h, struct batch *b,
			   size_t *pos)
{
	bool payload =
	    h->type == NBD_CMD_WRITE || (c->extended && (h->flags & NBD_CMD_FLAG_PAYLOAD_LEN));
	struct np_req *r;
	uint32_t err;

	if (h->type == NBD_CMD_DISC) {
		np_debug("conn %llu: client disconnects", (unsigned long long)c->id);
		conn_end(c);
		return false;
	}
	err = validate(c, h);
	if (payload && h->type != NBD_CMD_WRITE)
		err = NBD_EINVAL; /* we offer no command with a payload but WRITE */
	if (payload && err && h->count > UINT32_MAX) {
		np_conn_close(c, "refused request with an impossible payload length");
		return false;
	}
	r = req_new(c);
	if (!r) {
		np_conn_close(c, "out of memory");
		return false;
	}
	r->cookie = h->cookie;
	r->io.cmd = h->type;
	r->io.flags = h->flags;
	r->io.offset = h->offset;
	r->io.len = h->count;
	if (err) {
		np_debug("conn %llu: refused %s offset %llu length %llu flags 0x%x",
			 (unsigned long long)c->id, nbd_cmd_name(h->type),
			 (unsigned long long)h->offset, (unsigned long long)h->count, h->flags);
		if (payload) {
			skip_payload(c, r, err, h->count);
			return true;
		}
		reply_now(c, r, err);
		return true;
	}
	if (h->type == NBD_CMD_READ && try_direct_read(c, r)) {
		charge(r, h->count);
		return true;
	}
	if (h->type == NBD_CMD_WRITE && try_map_write(c, r, pos))
		return true;
	if (h->type == NBD_CMD_READ || h->type == NBD_CMD_WRITE) {
		r->io.buf = malloc(h->count);
		if (!r->io.buf) {
			if (payload)
				skip_payload(c, r, NBD_ENOMEM, h->count);
			else
				reply_now(c, r, NBD_ENOMEM);
			return true;
		}
		charge(r, h->count);
	} else if (h->type == NBD_CMD_BLOCK_STATUS) {
		uint32_t max = (h->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NP_MAX_EXTENTS;

		r->extra = malloc(max * sizeof(struct np_extent));
		if (!r->extra) {
			reply_now(c, r, NBD_ENOMEM);
			return true;
		}
		r->io.extents = r->extra;
		r->io.max_extents = max;
		/* The client's length is a hint; a 32-bit reply caps it. */
		if (!c->extended && r->io.len > UINT32_MAX)
			r->io.len = UINT32_MAX;
	}
	if (payload) {
		c->payload_req = r;
		c->payload_got = 0;
		return true;
	}
	dispatch(c, r, b);
	return true;
}

static void consume(struct np_conn *c, size_t n)
{
	if (n) {
		c->in_len -= n;
		memmove(c->in, c->in + n, c->in_len);
	}
}

static void parse_requests(struct np_conn *c)
{
	struct batch b = {0};
	uint64_t cap = cap_of(c);
	size_t pos = 0;

	while (!c->closing) {
		size_t avail = c->in_len - pos;
		struct nbd_request h;
		int n;

		if (c->skip) {
			size_t k = c->skip < avail ? c->skip : avail;

			pos += k;
			c->skip -= k;
			if (c->skip)
				break;
			reply_now(c, c->skip_req, c->skip_req->error);
			c->skip_req = NULL;
			continue;
		}
		if (c->payload_req) {
			/* (Not for a mapped payload: try_map_write took the
			 * whole input, and the rest goes straight to it.) */
			struct np_req *r = c->payload_req;
			uint64_t want = r->io.len - c->payload_got;
			size_t k = want < avail ? want : avail;

			memcpy((uint8_t *)r->io.buf + c->payload_got, c->in + pos, k);
			pos += k;
			c->payload_got += k;
			if (c->payload_got < r->io.len)
				break;
			c->payload_req = NULL;
			dispatch(c, r, &b);
			continue;
		}
		if (over_budget(c, cap)) {
			c->paused = true;
			break;
		}
		n = nbd_request_decode(c->in + pos, avail, c->extended, &h);
		if (n == 0)
			break;
		if (n < 0) {
			np_conn_close(c, "bad request magic");
			break;
		}
		pos += (size_t)n;
		if (!handle_request(c, &h, &b, &pos))
			break;
	}
	if (!c->closed)
		consume(c, pos);
	if (b.n_ios || b.pool_head)
		submit_batch(c, &b);
}

/* ---- handshake and input ---- */

/* Returns false when the connection closes. */
static bool start_transmission(struct np_conn *c)
{
	struct np_export *ex = c->hs_export;
	struct np_loop_export *le = NULL;

	/* The reference taken at lookup passes to the connection. */
	c->hs_export = NULL;
	if (ex && !np_export_draining(ex))
		le = np_loop_export_get(c->loop, ex);
	if (!le) {
		if (ex)
			np_export_put(c->loop->srv, ex);
		np_conn_close(c, "export removed by a reload, or unavailable on this loop");
		return false;
	}
	c->export = ex;
	c->lex = le;
	le->conns++;
	c->structured = c->hs.structured;
	c->extended = c->hs.extended;
	c->meta_base_allocation = c->hs.meta_base_allocation;
	c->phase = NP_CONN_TRANSMISSION;
	uv_timer_stop(&c->timer);
	np_hs_free(&c->hs);
	np_info("conn %llu from %s: export '%s'%s%s%s", (unsigned long long)c->id, c->peer,
		ex->hs.name, c->structured ? ", structured replies" : "",
		c->extended ? ", extended headers" : "",
		c->meta_base_allocation ? ", base:allocation" : "");
	return true;
}

/* Goes on with what the client has sent: first what is already in the
 * input buffer, where a pause leaves the requests it did not parse (the
 * client may send nothing more until they are answered: one that waits
 * at its own cap), then, under TLS, what GnuTLS can decrypt. */
static void conn_input(struct np_conn *c)
{
	conn_process(c);
	if (c->tls_up)
		tls_pump(c);
}

static void conn_process(struct np_conn *c)
{
	if (c->closing || (c->tls && !c->tls_up))
		return;
	if (c->phase == NP_CONN_HANDSHAKE) {
		size_t used = 0;
		enum np_hs_status st = np_hs_input(&c->hs, c->in, c->in_len, &used);

		consume(c, used);
		if (c->hs.out.len) {
			if (queue_bytes(c, c->hs.out.data, c->hs.out.len) < 0) {
				np_conn_close(c, "out of memory");
				return;
			}
			c->hs.out.len = 0;
		}
		if (st == NP_HS_STARTTLS) {
			np_loop_flush(c->loop); /* the ACK goes out in clear first */
			if (np_tls_start(c) < 0)
				np_conn_close(c, "TLS: cannot start a session");
			else
				tls_handshake(c);
			return;
		}
		if (st == NP_HS_CLOSE) {
			np_info("conn %llu from %s: handshake ended: %s", (unsigned long long)c->id,
				c->peer, c->hs.why ? c->hs.why : "closed");
			conn_end(c);
			return;
		}
		if (st != NP_HS_GO) {
			if (c->inflight_bytes >= NP_HS_MAX_PENDING && c->reading) {
				c->paused = true;
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = false;
			}
			return;
		}
		if (!start_transmission(c))
			return;
	}
	parse_requests(c);
	if (!c->closing) {
		if (c->paused && c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = false;
		}
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct np_conn *c = container_of((uv_tcp_t *)h, struct np_conn, tcp);

	(void)suggested;
	if (c->tls) {
		uint8_t *p;
		size_t len;

		np_tls_recv_space(c, &p, &len);
		*buf = uv_buf_init((char *)p, (unsigned)len);
		return;
	}
	if (c->payload_req && c->in_len == 0) {
		/* The rest of a WRITE payload goes straight to its buffer. */
		struct np_req *r = c->payload_req;

		*buf = uv_buf_init((char *)r->io.buf + c->payload_got,
				   (unsigned)(r->io.len - c->payload_got));
		return;
	}
	*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(NP_INBUF_SIZE - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct np_conn *c = container_of((uv_tcp_t *)s, struct np_conn, tcp);

	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && c->phase == NP_CONN_TRANSMISSION && !c->payload_req)
			np_conn_close(c, NULL); /* a client that leaves without DISC */
		else
			np_conn_close(c, nread != UV_EOF ? socket_error((int)nread)
					 : c->phase == NP_CONN_HANDSHAKE
					     ? "client left during the handshake"
					     : "client left mid-request");
		np_loop_flush(c->loop);
		return;
	}
	if (c->tls) {
		tls_input(c, (size_t)nread);
		np_loop_flush(c->loop);
		return;
	}
	if ((uint8_t *)buf->base >= c->in && (uint8_t *)buf->base < c->in + NP_INBUF_SIZE) {
		c->in_len += (size_t)nread;
	} else {
		struct batch b = {0};

		c->payload_got += (uint64_t)nread;
		if (c->payload_got == c->payload_req->io.len) {
			struct np_req *r = c->payload_req;

			c->payload_req = NULL;
			dispatch(c, r, &b);
			submit_batch(c, &b);
		}
	}
	conn_process(c);
	np_loop_flush(c->loop);
}

static void on_handshake_timeout(uv_timer_t *t)
{
	struct np_conn *c = container_of(t, struct np_conn, timer);

	np_conn_close(c, "handshake timed out");
}

static void free_unopened(uv_handle_t *h)
{
	struct np_conn *c = container_of((uv_tcp_t *)h, struct np_conn, tcp);

	free(c->in);
	free(c);
}

/* Whether the peer runs on this host (np_addr_is_local), for --sendfile auto. */
static bool peer_is_local(struct np_conn *c)
{
	struct sockaddr_storage me;
	int len = sizeof(me);
	bool known = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&me, &len) == 0;

	return np_addr_is_local((const struct sockaddr *)&c->peer_sa,
				known ? (const struct sockaddr *)&me : NULL);
}

void np_conn_accept(struct np_loop *l, const struct np_accepted *a)
{
	struct np_server *srv = l->srv;
	struct np_conn *c = calloc(1, sizeof(*c));

	if (!c || !(c->in = malloc(NP_INBUF_SIZE))) {
		np_err("out of memory accepting a connection");
		free(c);
		np_server_drop_fd(srv, a);
		return;
	}
	if (uv_tcp_init(&l->uv, &c->tcp) < 0) {
		np_err("cannot set up an accepted socket");
		np_server_drop_fd(srv, a);
		free(c->in);
		free(c);
		return;
	}
	if (uv_tcp_open(&c->tcp, a->fd) < 0) {
		np_err("cannot set up an accepted socket");
		np_server_drop_fd(srv, a);
		uv_close((uv_handle_t *)&c->tcp, free_unopened);
		return;
	}
	c->loop = l;
	c->id = atomic_fetch_add(&srv->next_conn_id, 1) + 1;
	uv_tcp_nodelay(&c->tcp, 1);
	c->peer_sa = a->peer;
	np_format_peer((struct sockaddr *)&c->peer_sa, c->peer, sizeof(c->peer));
	c->sendfile = srv->cfg->sendfile == NP_SENDFILE_ON ||
		      (srv->cfg->sendfile == NP_SENDFILE_AUTO && !peer_is_local(c));
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	l->n_conns++;
	uv_timer_init(&l->uv, &c->timer);
	uv_timer_start(&c->timer, on_handshake_timeout,
		       (uint64_t)srv->cfg->handshake_timeout * 1000, 0);
	np_hs_init(&c->hs, &np_export_hs_ops, c);
	c->hs.tls_mode = srv->cfg->tls_mode;
	if (c->hs.why || queue_bytes(c, c->hs.out.data, c->hs.out.len) < 0) {
		np_conn_close(c, "out of memory");
		return;
	}
	c->hs.out.len = 0;
	np_debug("conn %llu from %s: accepted on loop %u", (unsigned long long)c->id, c->peer,
		 l->index);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	c->reading = true;
}
