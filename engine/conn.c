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
#include <assert.h>
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

static void conn_input(struct np_conn *c);
static void conn_process(struct np_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void try_finish(struct np_conn *c);
static void conn_end(struct np_conn *c);
static void end_if_stopped(struct np_conn *c);

/* The transitions of enum np_conn_state (internal.h), asserted: a
 * connection that skipped one would leak a request or a handle. */
static inline bool may_go(enum np_conn_state from, enum np_conn_state to)
{
	switch (to) {
	case NP_CONN_HANDSHAKE:
		return from == NP_CONN_TLS_HANDSHAKE;
	case NP_CONN_TLS_HANDSHAKE:
	case NP_CONN_TRANSMISSION:
		return from == NP_CONN_HANDSHAKE;
	case NP_CONN_DRAINING:
		return from == NP_CONN_TRANSMISSION;
	case NP_CONN_ENDING:
		return from < NP_CONN_ENDING;
	case NP_CONN_CLOSING:
		return from < NP_CONN_CLOSED;
	case NP_CONN_CLOSED:
		return from == NP_CONN_ENDING || from == NP_CONN_CLOSING;
	}
	return false;
}

static void set_state(struct np_conn *c, enum np_conn_state to)
{
	assert(may_go(c->state, to));
	c->state = to;
}

static void resume_if_drained(struct np_conn *c)
{
	if (c->paused && c->state < NP_CONN_ENDING && !np_req_over_budget(c, np_req_cap(c) / 2)) {
		c->paused = false;
		if (!c->reading && c->state != NP_CONN_DRAINING) {
			uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
			c->reading = true;
		}
		conn_input(c);
		end_if_stopped(c);
	}
}

/* Queues handshake replies: in clear before TLS, encrypted after. */
static int queue_bytes(struct np_conn *c, const void *data, size_t len)
{
	return np_req_queue_copy(c, data, len, !c->tls_up);
}

/* ---- TLS: tls.c says what happened, this acts on it ---- */

/* Sends what GnuTLS has pushed, as is. */
static void send_pushed(struct np_conn *c)
{
	if (c->tls_out.len) {
		np_req_queue_copy(c, c->tls_out.data, c->tls_out.len, true);
		np_buf_free(&c->tls_out);
	}
}

/* Decrypts records into the input buffer and handles them, until GnuTLS
 * needs more ciphertext or the connection stops reading. */
static void tls_pump(struct np_conn *c)
{
	while (c->state < NP_CONN_ENDING && !c->paused) {
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
	if (r < 0) {
		np_conn_close(c, why);
	} else if (r == 0 && c->state == NP_CONN_TLS_HANDSHAKE) {
		set_state(c, NP_CONN_HANDSHAKE);
		tls_pump(c); /* options may already be waiting */
	}
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

/* ---- writing ---- */

static void conn_flush(struct np_conn *c)
{
	const char *why = NULL;

	if (c->state >= NP_CONN_CLOSING)
		goto out;
	if (c->tls_up && c->out_tail && !c->out_tail->wire && tls_encrypt_queue(c) < 0) {
		np_conn_close(c, "TLS: cannot encrypt");
		return;
	}
	if (np_sendq_flush(c, &why) < 0) {
		np_conn_close(c, why);
		return;
	}
out:
	resume_if_drained(c);
	if (c->state >= NP_CONN_ENDING)
		try_finish(c);
}

/* The socket took a write libuv finished, or drained (sendq.c), or failed. */
static void conn_written(struct np_conn *c, const char *why)
{
	if (why) {
		np_conn_close(c, why);
		return;
	}
	conn_flush(c);
	np_loop_flush(c->loop);
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

	assert(c->state == NP_CONN_CLOSED && !c->engine_busy);
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

/* The timer closes first and the socket after it, so that the connection
 * goes with the last of its handles (on_close). */
static void on_timer_closed(uv_handle_t *h)
{
	struct np_conn *c = h->data;

	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void try_finish(struct np_conn *c)
{
	if (c->state == NP_CONN_CLOSED || c->engine_busy)
		return;
	if (c->state == NP_CONN_ENDING && (c->out_head || c->write_busy))
		return;
	set_state(c, NP_CONN_CLOSED);
	np_sendq_stop(c);
	c->timer.data = c->tcp.data = c;
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
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
	if (c->state == NP_CONN_CLOSED)
		return;
	if (why)
		np_info("conn %llu from %s: closing: %s", (unsigned long long)c->id, c->peer, why);
	set_state(c, NP_CONN_CLOSING);
	stop_reading(c);
	try_finish(c);
}

/* The client is done (NBD_CMD_DISC, or the end of its handshake): nothing
 * more is read or parsed, and the connection closes once the requests it
 * holds are answered. */
static void conn_end(struct np_conn *c)
{
	if (c->state >= NP_CONN_ENDING)
		return;
	set_state(c, NP_CONN_ENDING);
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
	if (c->state == NP_CONN_DRAINING && !c->paused)
		conn_end(c);
}

void np_conn_drain(struct np_conn *c)
{
	if (c->state >= NP_CONN_DRAINING)
		return;
	if (c->state != NP_CONN_TRANSMISSION) {
		conn_end(c);
		return;
	}
	/* The client has sent these requests and may be waiting for their
	 * replies: what is already in our buffers is answered, however a
	 * budget paused its parsing; only the socket is no longer read. */
	set_state(c, NP_CONN_DRAINING);
	stop_reading(c);
	conn_input(c);
	end_if_stopped(c);
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
	set_state(c, NP_CONN_TRANSMISSION);
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
	const char *why = NULL;

	if (c->state >= NP_CONN_ENDING || c->state == NP_CONN_TLS_HANDSHAKE)
		return;
	if (c->state == NP_CONN_HANDSHAKE) {
		size_t used = 0;
		enum np_hs_status st = np_hs_input(&c->hs, c->in, c->in_len, &used);

		np_request_consume(c, used);
		if (c->hs.out.len) {
			if (queue_bytes(c, c->hs.out.data, c->hs.out.len) < 0) {
				np_conn_close(c, "out of memory");
				return;
			}
			c->hs.out.len = 0;
		}
		if (st == NP_HS_STARTTLS) {
			np_loop_flush(c->loop); /* the ACK goes out in clear first */
			if (np_tls_start(c) < 0) {
				np_conn_close(c, "TLS: cannot start a session");
				return;
			}
			set_state(c, NP_CONN_TLS_HANDSHAKE);
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
	switch (np_request_parse(c, &why)) {
	case NP_PARSE_DISC:
		conn_end(c);
		return;
	case NP_PARSE_CLOSE:
		np_conn_close(c, why);
		return;
	}
	if (c->state < NP_CONN_ENDING) {
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
		if (nread == UV_EOF && c->state == NP_CONN_TRANSMISSION && !c->payload_req)
			np_conn_close(c, NULL); /* a client that leaves without DISC */
		else
			np_conn_close(c, nread != UV_EOF ? np_socket_error((int)nread)
					 : c->state <= NP_CONN_TLS_HANDSHAKE
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
		c->payload_got += (uint64_t)nread;
		if (c->payload_got == c->payload_req->io.len)
			np_request_payload_done(c);
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
	c->written = conn_written;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	c->reading = true;
}
