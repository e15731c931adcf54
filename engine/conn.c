/* One client connection, from accept to close: the socket's reads (into
 * a fixed input buffer, or a WRITE payload straight into its buffer), the
 * handshake (options.c) and TLS (tls.c) acted on, requests handed to
 * request.c, replies flushed through sendq.c, and the connection's state
 * (enum np_conn_state), which only this file changes. Past its budget of
 * bytes in flight a connection stops reading until replies drain. */
#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include "engine/access.h"
#include "engine/conn_int.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/options.h"
#include "engine/qos.h"
#include "engine/request.h"
#include "engine/sendq.h"
#include "engine/server.h"
#include "engine/tls.h"

static void conn_input(struct np_conn *c);
static void conn_process(struct np_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void try_finish(struct np_conn *c);
static void conn_end(struct np_conn *c);
static void end_if_stopped(struct np_conn *c);
static void handoff_step(struct np_conn *c);

static void resume_if_drained(struct np_conn *c)
{
	if (c->paused && c->state < NP_CONN_ENDING && !np_req_over_budget(c, np_req_cap(c) / 2) &&
	    !np_request_turn_spent(c)) {
		c->paused = false;
		if (!c->reading && c->state != NP_CONN_DRAINING && !c->handoff) {
			uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
			c->reading = true;
		}
		conn_input(c);
		end_if_stopped(c);
	}
}

/* ---- TLS: tls.c says what happened, this acts on it ---- */

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
	np_sendq_push_tls(c);
}

static void tls_handshake(struct np_conn *c)
{
	const char *why = NULL;
	int r = np_tls_step(c, &why);

	np_sendq_push_tls(c);
	if (r < 0) {
		np_conn_close(c, why);
	} else if (r == 0 && c->state == NP_CONN_TLS_HANDSHAKE) {
		np_conn_set_state(c, NP_CONN_HANDSHAKE);
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

static void conn_flush(struct np_conn *c)
{
	const char *why = NULL;

	if (c->state >= NP_CONN_CLOSING)
		goto out;
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
	struct np_loop_conns *lc = np_loop_conns(l);

	while (lc->dirty) {
		struct np_conn *c = lc->dirty;

		lc->dirty = c->dirty_next;
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
	np_request_drop(c);
	np_conns_unlink(c);
	np_hs_free(&c->hs);
	np_tls_conn_free(c);
	free(c->in);
	free(c);
	np_loop_conn_gone(l);
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
	if (c->state == NP_CONN_ENDING && c->tls_up && !c->tls_bye) {
		/* A clean end of TLS, after the last reply: the client tells it
		 * from a connection cut short. */
		c->tls_bye = true;
		np_tls_bye(c);
		np_sendq_push_tls(c);
		if (c->out_head)
			return;
	}
	np_conn_set_state(c, NP_CONN_CLOSED);
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
	np_conn_set_state(c, NP_CONN_CLOSING);
	stop_reading(c);
	np_qos_cancel(c->srv->qos, &c->qos); /* what a limit holds comes back now */
	try_finish(c);
}

/* The client is done (NBD_CMD_DISC, or the end of its handshake): nothing
 * more is read or parsed, and the connection closes once the requests it
 * holds are answered. */
static void conn_end(struct np_conn *c)
{
	if (c->state >= NP_CONN_ENDING)
		return;
	np_conn_set_state(c, NP_CONN_ENDING);
	stop_reading(c);
	/* A refused WRITE's payload still arriving is simply not read. */
	np_request_drop_partial(c);
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
	np_conn_set_state(c, NP_CONN_DRAINING);
	stop_reading(c);
	conn_input(c);
	end_if_stopped(c);
}

/* ---- handshake and input ---- */

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

/* A connection that parsed its share of a loop turn waits a millisecond,
 * then goes on in a later turn with what it has buffered first (if the
 * loop is still in the same turn, another millisecond). A fresh quantum at
 * the loop's next iteration instead (timers run before server.c counts the
 * turn) gave 120 clients that flood 16 requests each per iteration, and a
 * good client beside them 450x its p99 alone; with the millisecond, 1.7x
 * (tests/stress/fairness.py). */
static void on_next_turn(uv_timer_t *t)
{
	struct np_conn *c = container_of(t, struct np_conn, timer);

	if (np_request_turn_spent(c)) {
		uv_timer_start(&c->timer, on_next_turn, 1, 0);
		return;
	}
	resume_if_drained(c);
	np_loop_flush(c->loop);
}

static void conn_process(struct np_conn *c)
{
	const char *why = NULL;

	if (c->state >= NP_CONN_ENDING || c->state == NP_CONN_TLS_HANDSHAKE)
		return;
	if (c->state == NP_CONN_HANDSHAKE) {
		switch (np_options_input(c, &why)) {
		case NP_OPT_CLOSE:
			np_conn_close(c, why);
			return;
		case NP_OPT_STARTTLS:
			np_loop_flush(c->loop); /* the ACK goes out in clear first */
			if (np_tls_start(c) < 0) {
				np_conn_close(c, "TLS: cannot start a session");
				return;
			}
			np_conn_set_state(c, NP_CONN_TLS_HANDSHAKE);
			tls_handshake(c);
			return;
		case NP_OPT_END:
			conn_end(c);
			return;
		case NP_OPT_MORE:
			/* A client that sends options without reading the
			 * replies is not read either. */
			c->paused |= c->inflight_bytes >= NP_HS_MAX_PENDING;
			goto pause;
		}
		np_conn_set_state(c, NP_CONN_TRANSMISSION);
		uv_timer_stop(&c->timer);
	}
	switch (np_request_parse(c, &why)) {
	case NP_PARSE_DISC:
		conn_end(c);
		return;
	case NP_PARSE_CLOSE:
		np_conn_close(c, why);
		return;
	}
pause:
	if (c->state < NP_CONN_ENDING && c->paused && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	if (c->state == NP_CONN_TRANSMISSION || c->state == NP_CONN_DRAINING)
		if (c->paused && np_request_turn_spent(c) && !c->handoff)
			uv_timer_start(&c->timer, on_next_turn, 1, 0);
	handoff_step(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct np_conn *c = container_of((uv_tcp_t *)h, struct np_conn, tcp);
	uint8_t *p;
	size_t len;

	(void)suggested;
	if (c->tls)
		np_tls_recv_space(c, &p, &len);
	else
		np_request_recv_space(c, &p, &len);
	*buf = uv_buf_init((char *)p, (unsigned)len);
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

/* A connection on socket fd from peer, on loop l, in its loop's list; NULL
 * (fd dropped) on failure. */
static struct np_conn *conn_new(struct np_loop *l, const struct np_accepted *a)
{
	struct np_server *srv = np_loop_server(l);
	struct np_conn *c = calloc(1, sizeof(*c));

	if (!c || !(c->in = malloc(NP_INBUF_SIZE))) {
		np_err("out of memory accepting a connection");
		free(c);
		np_server_drop_fd(srv, a);
		return NULL;
	}
	if (uv_tcp_init(np_loop_uv(l), &c->tcp) < 0) {
		np_err("cannot set up an accepted socket");
		np_server_drop_fd(srv, a);
		free(c->in);
		free(c);
		return NULL;
	}
	if (uv_tcp_open(&c->tcp, a->fd) < 0) {
		np_err("cannot set up an accepted socket");
		np_server_drop_fd(srv, a);
		uv_close((uv_handle_t *)&c->tcp, free_unopened);
		return NULL;
	}
	c->loop = l;
	c->srv = srv;
	c->lc = np_loop_conns(l);
	c->mbox = np_loop_mailbox(l);
	uv_tcp_nodelay(&c->tcp, 1);
	c->peer_sa = a->peer;
	np_format_peer((struct sockaddr *)&c->peer_sa, c->peer, sizeof(c->peer));
	c->sendfile = srv->cfg->sendfile == NP_SENDFILE_ON ||
		      (srv->cfg->sendfile == NP_SENDFILE_AUTO &&
		       !np_tcp_peer_is_local(&c->tcp, (struct sockaddr *)&c->peer_sa));
	np_conns_link(c);
	uv_timer_init(np_loop_uv(l), &c->timer);
	c->written = conn_written;
	return c;
}

void np_conn_accept(struct np_loop *l, const struct np_accepted *a)
{
	struct np_server *srv = np_loop_server(l);
	struct np_conn *c = conn_new(l, a);

	if (!c)
		return;
	c->id = atomic_fetch_add(&srv->next_conn_id, 1) + 1;
	uv_timer_start(&c->timer, on_handshake_timeout,
		       (uint64_t)srv->cfg->handshake_timeout * 1000, 0);
	if (np_options_start(c) < 0) {
		np_conn_close(c, "out of memory");
		return;
	}
	np_debug("conn %llu from %s: accepted on loop %u", (unsigned long long)c->id, c->peer,
		 np_loop_index(l));
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	c->reading = true;
}

/* ---- hand-off to another process (handoff.c) ---- */

/* A connection in a hand-off stops where it can move: a plain one in
 * transmission stops reading once no WRITE payload is arriving (request.c
 * parses nothing new); a TLS one drains, because without kernel TLS its
 * session's keys cannot leave GnuTLS, and ends with close_notify, after
 * which its client reconnects. One still in its handshake goes on to
 * transmission first. */
static void handoff_step(struct np_conn *c)
{
	if (!c->handoff || c->state != NP_CONN_TRANSMISSION)
		return;
	if (c->tls) {
		c->handoff = false;
		np_info("conn %llu from %s: TLS: draining for the hand-off (no kernel TLS to move "
			"its session); the client reconnects",
			(unsigned long long)c->id, c->peer);
		np_conn_drain(c);
		return;
	}
	if (!c->payload_req && !c->skip && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

void np_conn_handoff(struct np_conn *c, bool on)
{
	if (on) {
		c->handoff = true;
		handoff_step(c);
		return;
	}
	if (!c->handoff)
		return;
	/* The hand-off failed: on as before, from what is buffered. */
	c->handoff = false;
	if (c->state >= NP_CONN_DRAINING)
		return;
	if (!c->reading && !c->paused) {
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
		c->reading = true;
	}
	conn_input(c);
}

bool np_conn_still(const struct np_conn *c)
{
	return c->state == NP_CONN_TRANSMISSION && c->handoff && !c->tls && !c->reading &&
	       !c->payload_req && !c->skip && !c->engine_busy && !c->out_head && !c->write_busy;
}

int np_conn_export(const struct np_conn *c, struct np_conn_moved *m)
{
	uv_os_fd_t fd = -1;

	memset(m, 0, sizeof(*m));
	uv_fileno((const uv_handle_t *)&c->tcp, &fd);
	m->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	m->id = c->id;
	/* accept() filled only the address's own length of peer_sa; a Unix
	 * peer (unix_peer, server.c) is cleared whole. */
	memcpy(&m->peer, &c->peer_sa,
	       c->peer_sa.ss_family == AF_INET    ? sizeof(struct sockaddr_in)
	       : c->peer_sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(m->peer));
	m->export_len = strlen(c->export->hs.name) + 1;
	for (unsigned i = 0; i < c->hs.n_meta; i++)
		m->export_len += strlen(c->hs.meta[i]) + 1;
	m->export = malloc(m->export_len);
	if (m->export) {
		char *p = stpcpy(m->export, c->export->hs.name) + 1;

		for (unsigned i = 0; i < c->hs.n_meta; i++)
			p = stpcpy(p, c->hs.meta[i]) + 1;
	}
	m->structured = c->structured;
	m->extended = c->extended;
	m->in_len = c->in_len;
	m->in = malloc(c->in_len ? c->in_len : 1);
	if (m->fd < 0 || !m->export || !m->in) {
		np_conn_moved_free(m);
		return -1;
	}
	memcpy(m->in, c->in, c->in_len);
	return 0;
}

void np_conn_moved_free(struct np_conn_moved *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	free(m->export);
	free(m->in);
	m->export = NULL;
	m->in = NULL;
}

int np_conn_import(struct np_loop *l, const struct np_conn_moved *m)
{
	struct np_server *srv = np_loop_server(l);
	struct np_accepted a = {.fd = m->fd, .peer = m->peer};
	const char *why = NULL;
	struct np_conn *c;

	/* Counted against the limits as at accept: only a configuration that
	 * lowered them finds a connection over them, and closes it. */
	why = np_limits_take(&srv->limits, (const struct sockaddr *)&m->peer);
	if (why) {
		char peer[64];

		np_format_peer((const struct sockaddr *)&m->peer, peer, sizeof(peer));
		np_warn("conn %llu from %s: taken over, but closed: %s", (unsigned long long)m->id,
			peer, why);
		close(m->fd);
		return -1;
	}
	c = conn_new(l, &a); /* on failure, it gave the limits back */
	if (!c)
		return -1;
	c->id = m->id;
	if (m->in_len > NP_INBUF_SIZE ||
	    np_options_adopt(c, m->export, m->export_len, m->structured, m->extended, &why) !=
		NP_OPT_GO) {
		np_warn("conn %llu from %s: taken over, but closed: %s", (unsigned long long)c->id,
			c->peer, why ? why : "too much unparsed input");
		np_conn_close(c, NULL);
		return -1;
	}
	np_conn_set_state(c, NP_CONN_TRANSMISSION);
	memcpy(c->in, m->in, m->in_len);
	c->in_len = m->in_len;
	np_info("conn %llu from %s: taken over on loop %u (%zu bytes unparsed)",
		(unsigned long long)c->id, c->peer, np_loop_index(l), m->in_len);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	c->reading = true;
	conn_process(c);
	np_loop_flush(l);
	return 0;
}
