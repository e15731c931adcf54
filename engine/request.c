/* A request, from parsing to its reply: every complete request in the
 * input buffer is parsed, validated against the export and the negotiated
 * options, and handed with the rest of its batch to the export's engine at
 * once (submit, rw_nowait, or the worker pool); its completion is turned
 * into a reply (reply.c) queued on the connection.
 *
 * Nothing here closes or stops a connection: what the client's requests
 * call for (a DISC, a bad header) is returned to conn.c, which acts on it.
 *
 * Memory is bounded: requests and replies not yet written count against
 * max_inflight, and past it parsing stops (the connection is paused) until
 * replies drain. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conn_int.h"
#include "engine/export.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/reply.h"
#include "engine/request.h"
#include "engine/server.h"
#include "engine/stats.h"

#define SENDFILE_MIN  (64 * 1024)  /* smaller reads are cheaper copied */
#define MAP_READ_MIN  (256 * 1024) /* smaller: cheaper read in batches (file.c) */
#define MAP_WRITE_MIN (256 * 1024) /* smaller: cheaper written in batches */
#define ASYNC_BATCH   256
#define NP_INLINE_MAX (128 * 1024)

/* Requests parsed in one go: those for the engine's submit or rw_nowait,
 * and those for the worker pool. */
struct batch {
	struct np_job *pool_head, *pool_tail;
	struct np_io *ios[ASYNC_BATCH];
	unsigned n_ios;
};

static void reply_now(struct np_conn *c, struct np_req *r, uint32_t error);

/* A BLOCK_STATUS payload (extended headers): an effect length and at most
 * this many context ids, repeats included. */
#define BSTAT_PAYLOAD_MAX (8 + 4 * 64)

/* What a BLOCK_STATUS asks, in r->extra: the contexts it answers (indexes
 * into the connection's hs.meta, in the order selected) and each one's
 * extents, max of them per context. */
struct bstat {
	unsigned n;
	uint8_t idx[NP_HS_MAX_META];
	uint32_t n_ext[NP_HS_MAX_META];
	uint32_t max;
	struct np_extent ext[];
};

/* Counts bytes a request holds against its connection's cap and the
 * server's total budget; np_req_free gives them back. */
static void charge(struct np_req *r, uint64_t n)
{
	struct np_conn *c = r->conn;

	r->charge += n;
	c->inflight_bytes += n;
	atomic_fetch_add_explicit(&c->srv->inflight_total, n, memory_order_relaxed);
}

/* Whether a connection must stop reading: past its own cap, or holding
 * NP_FAIR_HOLD or more while the server is past its total budget. So the
 * clients that hold the budget (ones that never read their replies, say)
 * wait behind themselves, and one that holds little, a client at a modest
 * queue depth, goes on beside them; every client makes progress, and its
 * own completions are what let it go on. */
bool np_req_over_budget(const struct np_conn *c, uint64_t own_cap)
{
	const struct np_server *srv = c->srv;

	return c->inflight_bytes >= own_cap ||
	       (c->inflight_bytes >= NP_FAIR_HOLD &&
		(c->state == NP_CONN_TRANSMISSION || c->state == NP_CONN_DRAINING) &&
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
uint64_t np_req_cap(const struct np_conn *c)
{
	return c->state <= NP_CONN_TLS_HANDSHAKE ? NP_HS_MAX_PENDING : c->srv->cfg->max_inflight;
}

void np_req_free(struct np_req *r)
{
	struct np_conn *c = r->conn;

	c->inflight_bytes -= r->charge;
	atomic_fetch_sub_explicit(&c->srv->inflight_total, r->charge, memory_order_relaxed);
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
	np_conn_mark_dirty(c);
}

int np_req_queue_copy(struct np_conn *c, const void *data, size_t len, bool wire)
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

/* ---- replies ---- */

/* Notes which parts of a finished READ are zeroes, for hole chunks; done by
 * whichever thread did the read, so a large scan is off the loop. */
static void scan_zeroes(struct np_req *r)
{
	r->zero_scanned = true;
	r->zero_mask = 0;
	if (r->cmd != NBD_CMD_READ || r->io.result || !r->conn->structured ||
	    (r->cmd_flags & NBD_CMD_FLAG_DF))
		return;
	r->zero_mask = np_reply_zero_mask(r->io.buf, r->io.offset, r->io.len);
}

/* The engine's name for the k-th context a BLOCK_STATUS asks about: NULL
 * for base:allocation, which every engine answers. */
static const char *bstat_context(const struct np_conn *c, const struct bstat *bs, unsigned k)
{
	const char *name = c->hs.meta[bs->idx[k]];

	return strcmp(name, NBD_META_BASE_ALLOCATION) == 0 ? NULL : name;
}

/* Asks the engine about each context in turn, on a worker. The first
 * error fails the request. */
static void bstat_run(struct np_req *r)
{
	struct np_export *ex = r->conn->export;
	struct bstat *bs = r->extra;

	for (unsigned k = 0; k < bs->n && r->io.result == 0; k++) {
		r->io.context = bstat_context(r->conn, bs, k);
		r->io.extents = bs->ext + (size_t)k * bs->max;
		r->io.max_extents = bs->max;
		np_io_run_sync(ex->ops, ex->h, ex->caps, &r->io);
		bs->n_ext[k] = r->io.n_extents;
	}
}

/* Sets up r (whose contexts are bs->idx) to ask the engine. Returns an NBD
 * error, or 0. */
static uint32_t bstat_start(struct np_req *r, struct bstat *bs)
{
	size_t size = sizeof(*bs) + (size_t)bs->n * bs->max * sizeof(struct np_extent);
	struct bstat *full = malloc(size);

	if (!full)
		return NBD_ENOMEM;
	memcpy(full, bs, sizeof(*bs));
	charge(r, size);
	free(r->extra);
	r->extra = full;
	r->io.context = bstat_context(r->conn, full, 0);
	r->io.extents = full->ext;
	r->io.max_extents = full->max;
	/* The client's length is a hint; a 32-bit reply caps it. */
	if (!r->conn->extended && r->io.len > UINT32_MAX)
		r->io.len = UINT32_MAX;
	return 0;
}

/* The payload of a BLOCK_STATUS (in r->io.buf) has arrived: the length it
 * asks about, and which of the connection's contexts. Returns an NBD
 * error, or 0. */
static uint32_t bstat_payload(struct np_conn *c, struct np_req *r, struct bstat *bs)
{
	const uint8_t *p = r->io.buf;
	uint64_t len = np_get64(p), size = np_export_size(c->export);
	uint64_t n = (r->io.len - 8) / 4, seen = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint32_t id = np_get32(p + 8 + 4 * i);

		if (id == 0 || id > c->hs.n_meta)
			return NBD_EINVAL;
		if (!(seen >> (id - 1) & 1))
			bs->idx[bs->n++] = (uint8_t)(id - 1);
		seen |= 1ULL << (id - 1);
	}
	free(r->io.buf);
	r->io.buf = NULL;
	r->io.len = len;
	if (len == 0 || r->io.offset > size || len > size - r->io.offset)
		return NBD_EINVAL;
	return 0;
}

/* Encodes r's reply (reply.c) into its header buffer and iovecs. */
static void build_reply(struct np_req *r)
{
	struct np_conn *c = r->conn;
	const struct np_reply_opts o = {c->structured, c->extended};
	struct np_io *io = &r->io;
	uint16_t cmd = r->cmd;

	r->n_iov = 0;
	r->iov_done = 0;
	if (!r->error)
		r->error = nbd_errno_to_wire(io->result);
	if (!r->error && c->structured && cmd == NBD_CMD_BLOCK_STATUS) {
		bool one = r->cmd_flags & NBD_CMD_FLAG_REQ_ONE;
		struct bstat *bs = r->extra;
		struct np_reply_meta m[NP_HS_MAX_META];
		size_t size;
		uint8_t *d;

		if (bs->n == 1 && bstat_context(c, bs, 0) == NULL)
			bs->n_ext[0] = io->n_extents; /* the engine's own path ran it */
		for (unsigned k = 0; k < bs->n; k++)
			m[k] = (struct np_reply_meta){bs->idx[k] + 1, bs->ext + (size_t)k * bs->max,
						      bs->n_ext[k]};
		size = np_reply_block_status_size(&o, io->len, one, m, bs->n);
		d = malloc(size ? size : 1);
		if (d) {
			r->n_iov = np_reply_block_status(&o, r->cookie, io->offset, io->len, one, m,
							 bs->n, r->hdr, r->iov, d);
			free(r->extra); /* the extents */
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

		np_stats_record(&c->lex->stats, cmd, bytes, r->error != 0, uv_hrtime() - r->t0);
		c->n_requests++;
		c->n_bytes += bytes;
		c->n_errors += r->error != 0;
	}
	if (r->error)
		np_debug("conn %llu: %s offset %llu length %llu: error %u",
			 (unsigned long long)c->id, nbd_cmd_name(cmd),
			 (unsigned long long)io->offset, (unsigned long long)io->len, r->error);
}

/* A request the engine, the pool or a limit held comes back: it counts no
 * more in engine_busy, and a closing connection drops it; the flush that
 * follows every completion (np_loop_flush) closes the connection once it
 * holds none. */
static bool drop_if_closing(struct np_req *r)
{
	struct np_conn *c = r->conn;

	c->engine_busy--;
	if (c->state < NP_CONN_CLOSING)
		return false;
	np_req_free(r);
	np_conn_mark_dirty(c);
	return true;
}

void np_req_done(struct np_io *io)
{
	struct np_req *r = io->owner;
	struct np_conn *c = r->conn;

	if (r->cmd == NBD_CMD_RESIZE && io->result == 0)
		np_export_refresh_size(c->export);
	if (drop_if_closing(r))
		return;
	build_reply(r);
	out_append(c, r);
}

/* ---- transmission ---- */

/* On a worker: the engine's blocking call, then the zero scan of a READ,
 * which is best done by the thread that has the data in its cache. */
static void req_run(struct np_job *job)
{
	struct np_req *r = container_of(job, struct np_req, job);
	struct np_export *ex = r->conn->export;

	if (r->cmd == NBD_CMD_BLOCK_STATUS)
		bstat_run(r);
	else
		np_io_run_sync(ex->ops, ex->h, ex->caps, &r->io);
	if (r->io.op == NP_OP_READ)
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
	r->job.mbox = c->mbox;
	np_pool_submit(&c->srv->pool, &c->pool_queue, &r->job, &r->job);
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
	r->job.mbox = r->conn->mbox;
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
		np_pool_submit(&c->srv->pool, &c->pool_queue, b->pool_head, b->pool_tail);
		b->pool_head = b->pool_tail = NULL;
	}
}

static void route(struct np_conn *c, struct np_req *r, struct batch *b);

/* A limit lets a request it held go, on the connection's loop: it runs as
 * though just parsed (it still counts in engine_busy). */
static void qos_admitted(struct np_job *job)
{
	struct np_req *r = container_of(job, struct np_req, qos.job);
	struct batch b = {0};

	if (r->conn->state >= NP_CONN_CLOSING) {
		drop_if_closing(r);
		return;
	}
	route(r->conn, r, &b);
	submit_batch(r->conn, &b);
}

/* Whether a limit (qos.c) holds the request back; it then comes back
 * through qos_admitted. */
static bool qos_holds(struct np_conn *c, struct np_req *r)
{
	struct np_qos_item *it = &r->qos;

	if (!np_qos_limited(&c->qos))
		return false;
	it->job.run = NULL;
	it->job.complete = qos_admitted;
	it->job.mbox = c->mbox;
	it->bytes = r->cmd == NBD_CMD_READ || r->cmd == NBD_CMD_WRITE ? r->io.len : 0;
	it->cls =
	    r->cmd == NBD_CMD_READ ? NP_QOS_READ
	    : r->cmd == NBD_CMD_WRITE || r->cmd == NBD_CMD_WRITE_ZEROES || r->cmd == NBD_CMD_TRIM
		? NP_QOS_WRITE
		: NP_QOS_ALL;
	return np_qos_wait(c->srv->qos, &c->qos, it);
}

static void dispatch(struct np_conn *c, struct np_req *r, struct batch *b)
{
	struct np_loop_conns *l = c->lc;

	if (r->buf_mapped && r->io.op == NP_OP_WRITE) {
		reply_now(c, r, 0); /* its payload is in place (try_map_write) */
		return;
	}
	c->engine_busy++;
	if (l->conns_turn != l->turn) {
		l->last_conns = l->conns_turn + 1 == l->turn ? l->turn_conns : 0;
		l->turn_conns = 0;
		l->conns_turn = l->turn;
	}
	if (c->turn != l->turn) {
		c->turn = l->turn;
		c->turn_reqs = 0;
		l->turn_conns++;
	}
	if (++c->turn_reqs > l->turn_most)
		l->turn_most = c->turn_reqs;
	if (qos_holds(c, r))
		return;
	route(c, r, b);
}

/* Sends a request on its way, now that it may run. */
static void route(struct np_conn *c, struct np_req *r, struct batch *b)
{
	struct np_export *ex = c->export;

	/* Contexts other than base:allocation, or several, are the pool's:
	 * bstat_run asks about each in turn. */
	if (r->cmd == NBD_CMD_BLOCK_STATUS) {
		struct bstat *bs = r->extra;

		if (bs->n > 1 || bstat_context(c, bs, 0)) {
			pool_append(b, r);
			return;
		}
	}
	/* Transfers the engine can do without blocking run on the loop, a
	 * batch at a time: every WRITE (the engine leaves those it cannot do
	 * so, FUA ones on a disk, say, to the pool), and READs up to
	 * NP_INLINE_MAX. Larger reads go to the pool, where several run at
	 * once on every core while the loop goes on parsing. A large WRITE is
	 * cheaper inline: its payload has arrived in pieces over several loop
	 * turns, so the pool's handoff would buy no parallel work and cost two
	 * thread wake-ups (perf/README.md). */
	if (ex->ops->submit ||
	    (ex->ops->rw_nowait &&
	     (r->io.op == NP_OP_WRITE || (r->io.op == NP_OP_READ && r->io.len <= NP_INLINE_MAX)))) {
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

/* A request whose payload has all arrived: a WRITE goes to the engine,
 * a BLOCK_STATUS first reads which contexts and range it asks about. */
static void dispatch_payload(struct np_conn *c, struct np_req *r, struct batch *b)
{
	if (r->cmd == NBD_CMD_BLOCK_STATUS) {
		struct bstat bs = {.max =
				       (r->cmd_flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NP_MAX_EXTENTS};
		uint32_t err = bstat_payload(c, r, &bs);

		if (!err)
			err = bstat_start(r, &bs);
		if (err) {
			reply_now(c, r, err);
			return;
		}
	}
	dispatch(c, r, b);
}

/* Extents go to the wire as the engine flagged them. */
_Static_assert(NP_EXTENT_HOLE == NBD_STATE_HOLE && NP_EXTENT_ZERO == NBD_STATE_ZERO,
	       "engine extent flags are the wire's block status flags");

/* The one place where a request's wire command and flags become the engine
 * interface's op code and flags, once validate() has accepted it. Flags
 * that concern only the reply (DF, REQ_ONE) stay with the np_req. */
static void np_io_from_wire(struct np_io *io, const struct nbd_request *h)
{
	static const enum np_op ops[] = {
	    [NBD_CMD_READ] = NP_OP_READ,
	    [NBD_CMD_WRITE] = NP_OP_WRITE,
	    [NBD_CMD_FLUSH] = NP_OP_FLUSH,
	    [NBD_CMD_TRIM] = NP_OP_TRIM,
	    [NBD_CMD_CACHE] = NP_OP_CACHE,
	    [NBD_CMD_WRITE_ZEROES] = NP_OP_ZERO,
	    [NBD_CMD_BLOCK_STATUS] = NP_OP_EXTENTS,
	    [NBD_CMD_RESIZE] = NP_OP_RESIZE,
	};

	assert(h->type < sizeof(ops) / sizeof(ops[0]) && h->type != NBD_CMD_DISC);
	io->op = ops[h->type];
	io->flags = (h->flags & NBD_CMD_FLAG_FUA ? NP_IO_FUA : 0) |
		    (h->flags & NBD_CMD_FLAG_NO_HOLE ? NP_IO_NO_HOLE : 0) |
		    (h->flags & NBD_CMD_FLAG_FAST_ZERO ? NP_IO_FAST_ZERO : 0);
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
		if (c->hs.n_meta == 0)
			return NBD_EINVAL;
		if (c->extended && (h->flags & NBD_CMD_FLAG_PAYLOAD_LEN)) {
			/* The length is the payload's; the range is in it, and is
			 * checked once it has arrived (bstat_payload). */
			if (h->flags & ~(allowed | NBD_CMD_FLAG_PAYLOAD_LEN))
				return NBD_EINVAL;
			return h->count < 12 || h->count > BSTAT_PAYLOAD_MAX || (h->count - 8) % 4
				   ? NBD_EINVAL
				   : 0;
		}
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
 * input buffer. Returns NP_PARSE_MORE, or what ends the parsing. */
static int handle_request(struct np_conn *c, const struct nbd_request *h, struct batch *b,
			  size_t *pos, const char **why)
{
	bool payload =
	    h->type == NBD_CMD_WRITE || (c->extended && (h->flags & NBD_CMD_FLAG_PAYLOAD_LEN));
	struct np_req *r;
	uint32_t err;

	if (h->type == NBD_CMD_DISC) {
		np_debug("conn %llu: client disconnects", (unsigned long long)c->id);
		return NP_PARSE_DISC;
	}
	err = validate(c, h);
	if (payload && h->type != NBD_CMD_WRITE && h->type != NBD_CMD_BLOCK_STATUS)
		err = NBD_EINVAL; /* we offer no other command with a payload */
	if (payload && err && h->count > UINT32_MAX) {
		*why = "refused request with an impossible payload length";
		return NP_PARSE_CLOSE;
	}
	r = req_new(c);
	if (!r) {
		*why = "out of memory";
		return NP_PARSE_CLOSE;
	}
	r->cookie = h->cookie;
	r->cmd = h->type;
	r->cmd_flags = h->flags;
	r->io.offset = h->offset;
	r->io.len = h->count;
	if (err) {
		np_debug("conn %llu: refused %s offset %llu length %llu flags 0x%x",
			 (unsigned long long)c->id, nbd_cmd_name(h->type),
			 (unsigned long long)h->offset, (unsigned long long)h->count, h->flags);
		if (payload) {
			skip_payload(c, r, err, h->count);
			return NP_PARSE_MORE;
		}
		reply_now(c, r, err);
		return NP_PARSE_MORE;
	}
	np_io_from_wire(&r->io, h);
	/* The zero-copy paths answer at once, so a request a limit may hold
	 * back takes the ordinary one. */
	if (h->type == NBD_CMD_READ && !np_qos_limited(&c->qos) && try_direct_read(c, r)) {
		charge(r, h->count);
		return NP_PARSE_MORE;
	}
	if (h->type == NBD_CMD_WRITE && !np_qos_limited(&c->qos) && try_map_write(c, r, pos))
		return NP_PARSE_MORE;
	if (h->type == NBD_CMD_READ || h->type == NBD_CMD_WRITE || payload) {
		r->io.buf = malloc(h->count);
		if (!r->io.buf) {
			if (payload)
				skip_payload(c, r, NBD_ENOMEM, h->count);
			else
				reply_now(c, r, NBD_ENOMEM);
			return NP_PARSE_MORE;
		}
		charge(r, h->count);
	}
	if (h->type == NBD_CMD_BLOCK_STATUS && !payload) {
		struct bstat bs = {.n = c->hs.n_meta,
				   .max = (h->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NP_MAX_EXTENTS};

		for (unsigned k = 0; k < bs.n; k++)
			bs.idx[k] = (uint8_t)k;
		err = bstat_start(r, &bs);
		if (err) {
			reply_now(c, r, err);
			return NP_PARSE_MORE;
		}
	}
	if (payload) {
		c->payload_req = r;
		c->payload_got = 0;
		return NP_PARSE_MORE;
	}
	dispatch(c, r, b);
	return NP_PARSE_MORE;
}

void np_request_consume(struct np_conn *c, size_t n)
{
	if (n) {
		c->in_len -= n;
		memmove(c->in, c->in + n, c->in_len);
	}
}

/* A connection's quantum is its share of the turn's budget among the
 * connections busy in this turn or the last: a few clients, at any queue
 * depth a client uses, never meet it; a crowd of clients that flood gets
 * NP_TURN_MIN each per turn, so a turn stays short and a client with one
 * request waits for one short turn, not behind their floods (docs/design.md
 * 4.1, tests/stress/fairness.py). */
bool np_request_turn_spent(const struct np_conn *c)
{
	const struct np_loop_conns *l = c->lc;
	unsigned busy = l->turn_conns > l->last_conns ? l->turn_conns : l->last_conns;
	unsigned quantum = NP_TURN_BUDGET / (busy ? busy : 1);

	return c->turn == l->turn &&
	       c->turn_reqs >= (quantum > NP_TURN_MIN ? quantum : NP_TURN_MIN);
}

int np_request_parse(struct np_conn *c, const char **why)
{
	struct batch b = {0};
	uint64_t cap = np_req_cap(c);
	size_t pos = 0;
	int ret = NP_PARSE_MORE;

	while (ret == NP_PARSE_MORE) {
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
			dispatch_payload(c, r, &b);
			continue;
		}
		if (c->handoff) /* the rest moves to the next process unparsed */
			break;
		if (np_req_over_budget(c, cap) || np_request_turn_spent(c)) {
			c->paused = true;
			break;
		}
		n = nbd_request_decode(c->in + pos, avail, c->extended, &h);
		if (n == 0)
			break;
		if (n < 0) {
			*why = "bad request magic";
			ret = NP_PARSE_CLOSE;
			break;
		}
		pos += (size_t)n;
		ret = handle_request(c, &h, &b, &pos, why);
	}
	np_request_consume(c, pos);
	if (b.n_ios || b.pool_head)
		submit_batch(c, &b);
	return ret;
}

void np_request_payload_done(struct np_conn *c)
{
	struct np_req *r = c->payload_req;
	struct batch b = {0};

	c->payload_req = NULL;
	dispatch_payload(c, r, &b);
	submit_batch(c, &b);
}

void np_request_drop_partial(struct np_conn *c)
{
	if (c->payload_req) {
		np_req_free(c->payload_req);
		c->payload_req = NULL;
	}
	if (c->skip_req) {
		np_req_free(c->skip_req);
		c->skip_req = NULL;
	}
}

void np_request_drop(struct np_conn *c)
{
	while (c->out_head) {
		struct np_req *next = c->out_head->next;

		np_req_free(c->out_head);
		c->out_head = next;
	}
	c->out_tail = NULL;
	np_request_drop_partial(c);
}

void np_request_recv_space(struct np_conn *c, uint8_t **p, size_t *len)
{
	if (c->payload_req && c->in_len == 0) {
		/* The rest of a WRITE payload goes straight to its buffer. */
		struct np_req *r = c->payload_req;

		*p = (uint8_t *)r->io.buf + c->payload_got;
		*len = r->io.len - c->payload_got;
		return;
	}
	*p = c->in + c->in_len;
	*len = NP_INBUF_SIZE - c->in_len;
}
