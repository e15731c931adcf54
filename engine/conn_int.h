/* struct np_conn and struct np_req, for the connection's own files: conn.c
 * and conns.c (the connection and its loop's list), request.c, sendq.c,
 * options.c and tls.c. Everyone else sees conn.h. */
#ifndef NP_ENGINE_CONN_INT_H
#define NP_ENGINE_CONN_INT_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include "engine/conn.h"
#include "engine/export.h"
#include "engine/fairq.h"
#include "engine/job.h"
#include "engine/loop.h"
#include "engine/mailbox.h"
#include "engine/qos.h"
#include "engine/reply.h"
#include "net/buf.h"
#include "net/handshake.h"
#include "net/proto.h"
#include "storage/storage.h"

#define NP_INBUF_SIZE  (NP_HS_MAX_OPTION + 64 * 1024)
#define NP_MAX_EXTENTS 1024
/* Bytes a connection may hold during the handshake (np_req_cap). */
#define NP_HS_MAX_PENDING (1024 * 1024)
/* Fairness (docs/design.md 4.1): the connections that bring requests in a
 * loop turn share NP_TURN_BUDGET of them, each parsing at least
 * NP_TURN_MIN before it waits for the next turn (np_request_turn_spent);
 * and one holding less than NP_FAIR_HOLD bytes is never paused by the
 * server's total budget, which others may hold. */
#define NP_TURN_BUDGET 1024
#define NP_TURN_MIN    8
#define NP_FAIR_HOLD   (1024 * 1024)

struct np_req {
	struct np_io io;
	struct np_job job; /* on the pool: run the engine, complete on the loop */
	void (*blocking)(void *h, struct np_io *io); /* an engine's, by run_blocking */
	struct np_conn *conn;
	struct np_req *next;
	uint64_t cookie;
	uint16_t cmd;            /* NBD_CMD_* as sent (io.op is the engine's) */
	uint16_t cmd_flags;      /* NBD_CMD_FLAG_* as sent (DF, REQ_ONE: the reply's) */
	uint64_t t0;             /* when it was parsed, for latency */
	uint32_t error;          /* NBD error decided before any engine ran */
	uint64_t charge;         /* bytes counted against the in-flight cap */
	struct np_qos_item qos;  /* held back by a limit (qos.c) */
	bool wire;               /* bytes to send as they are (not to encrypt) */
	int sf_fd;               /* READ sent with sendfile: from this file, */
	uint64_t sf_off, sf_len; /* this range, after the iovecs; 0: none */
	bool buf_mapped;         /* READ: io.buf is the engine's memory (map_read) */
	bool zero_scanned;       /* zero_mask is known */
	uint64_t zero_mask;      /* READ: which granules are all zero (conn.c) */
	struct iovec iov[NP_REPLY_MAX_IOV];
	unsigned n_iov, iov_done;
	void *extra; /* heap payload to free with the reply (extents, text) */
	/* Last: req_new clears everything before it. */
	uint8_t hdr[NP_REPLY_HDR_MAX];
};

/* A connection's life, in this order; conn.c asserts every change.
 * HANDSHAKE may go to TLS_HANDSHAKE and back (STARTTLS) and on to
 * TRANSMISSION; any state before ENDING may end or close; an ending one may
 * still close. */
enum np_conn_state {
	NP_CONN_HANDSHAKE,     /* options */
	NP_CONN_TLS_HANDSHAKE, /* STARTTLS accepted, TLS handshake under way */
	NP_CONN_TRANSMISSION,  /* requests */
	NP_CONN_DRAINING,      /* the server's end: the socket is no longer read,
				* requests already received are still answered */
	NP_CONN_ENDING,        /* nothing more is parsed; closes once the replies
				* it holds are out (DISC, drained) */
	NP_CONN_CLOSING,       /* replies are dropped; closes once no engine or
				* pool holds a request of it */
	NP_CONN_CLOSED,        /* its handles are closing; freed in on_close */
};

#define B(s) (1u << NP_CONN_##s)
/* The states each state may be entered from, asserted at every change: a
 * connection that skipped one would leak a request or a handle. Only
 * conn.c changes a connection's state. */
static const unsigned entered_from[] __attribute__((unused)) = {
    [NP_CONN_HANDSHAKE] = B(TLS_HANDSHAKE),    [NP_CONN_TLS_HANDSHAKE] = B(HANDSHAKE),
    [NP_CONN_TRANSMISSION] = B(HANDSHAKE),     [NP_CONN_DRAINING] = B(TRANSMISSION),
    [NP_CONN_ENDING] = B(ENDING) - 1,          [NP_CONN_CLOSING] = B(CLOSED) - 1,
    [NP_CONN_CLOSED] = B(ENDING) | B(CLOSING),
};
#undef B

struct np_conn {
	uv_tcp_t tcp; /* first: handle callbacks recover the conn from it */
	uv_timer_t timer;
	struct np_loop *loop;
	struct np_server *srv;       /* the loop's, kept at hand */
	struct np_loop_conns *lc;    /* the loop's list of connections */
	struct np_mailbox *mbox;     /* the loop's, where pool jobs complete */
	struct np_conn *prev, *next; /* in lc->head */
	struct np_conn *dirty_next;
	bool dirty;
	uint64_t id;
	char peer[64];
	struct sockaddr_storage peer_sa;

	enum np_conn_state state; /* changed only by np_conn_set_state */
	struct np_hs hs;
	struct np_hs_view hs_view;  /* the exports the handshake sees (export.c) */
	struct np_export *export;   /* held while in transmission */
	struct np_loop_export *lex; /* this loop's state for it */
	bool structured, extended; /* and the meta contexts: hs.meta */
	bool sendfile; /* large reads may go by sendfile (cfg and where the peer is) */

	uint8_t *in;
	size_t in_len;
	struct np_req *payload_req; /* WRITE whose payload is still arriving */
	uint64_t payload_got;
	uint64_t skip;           /* payload bytes to discard (refused WRITE) */
	struct np_req *skip_req; /* its reply, sent once the payload is gone */

	uint64_t n_requests, n_bytes, n_errors;
	uint64_t turn;      /* the loop turn turn_reqs counts for */
	unsigned turn_reqs; /* requests parsed in that turn */
	uint64_t inflight_bytes;
	unsigned engine_busy;             /* requests an engine or the pool still holds */
	struct np_fairq_owner pool_queue; /* its requests waiting for a worker;
					   * under pool.lock */
	struct np_qos_conn qos;           /* its limits, and its requests they hold */
	/* Flow control, apart from the state: whether libuv reads the
	 * socket, and whether a budget stopped the parsing. */
	bool reading, paused;
	/* A hand-off to another process is under way (handoff.c): no new
	 * request is parsed; a WRITE payload still arriving is read whole. */
	bool handoff;

	void *tls;       /* gnutls_session_t once STARTTLS was accepted */
	bool tls_up;     /* its handshake is done */
	bool tls_bye;    /* close_notify queued after the last reply */
	uint8_t *tls_in; /* ciphertext received, not yet decrypted */
	size_t tls_in_len, tls_in_pos;
	struct np_buf tls_out; /* ciphertext produced, not yet queued */

	struct np_req *out_head, *out_tail; /* replies not yet written */
	struct np_req *writing;             /* replies handed to uv_write */
	uv_write_t write_req;
	bool write_busy;
	struct np_wpoll *wpoll; /* waits for a full socket to drain; made on first need */
	/* conn.c's: libuv finished a write, or the socket drained, or failed
	 * (why); sendq.c calls it from libuv's callbacks. */
	void (*written)(struct np_conn *c, const char *why);
};

static inline void np_conn_set_state(struct np_conn *c, enum np_conn_state to)
{
	assert(entered_from[to] & 1u << c->state);
	c->state = to;
}

/* Puts c on its loop's list of connections with replies to write. */
static inline void np_conn_mark_dirty(struct np_conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = c->lc->dirty;
		c->lc->dirty = c;
	}
}

/* The server's end of a connection (a reload that removed its export,
 * shutdown): stops reading the socket, answers every request already
 * received, buffered ones a budget had paused included, then closes. */
void np_conn_drain(struct np_conn *c);
void np_conn_close(struct np_conn *c, const char *why);
/* A hand-off to another process starts (on) or failed (off): see
 * handoff_step in conn.c. np_conn_still: the connection can move now (no
 * request in flight, nothing to send, nothing arriving). np_conn_export
 * describes it, with a dup of its socket: 0, or -1. */
void np_conn_handoff(struct np_conn *c, bool on);
bool np_conn_still(const struct np_conn *c);
int np_conn_export(const struct np_conn *c, struct np_conn_moved *m);
/* conns.c: a connection joins its loop's list (c->lc), and leaves it as it
 * is freed, with the references it held to exports and its count against
 * the limits. */
void np_conns_link(struct np_conn *c);
void np_conns_unlink(struct np_conn *c);

#endif
