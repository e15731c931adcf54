/* The worker pool: threads that run engine operations that may block.
 *
 * Requests come in as lists, one lock per parsed batch, each list from one
 * connection, and go back to their loop through np_loop_complete, which
 * wakes the loop once however many completions are waiting.
 *
 * Workers take requests from the connections in turn, one request at a
 * time (engine/fairq.h): each connection has its own queue in the pool, and
 * the connections with requests queued wait in a ring. So a client with one
 * request to run waits behind at most one of each other client's, not behind
 * the whole queue of a client with a thousand slow ones (FUA writes, reads
 * of uncached data), as it did when the pool was one FIFO. */
#include <stdlib.h>

#include "engine/internal.h"

/* The fair queue of engine/fairq.h, here where struct np_req is complete. */
static void ring_append(struct np_fairq *q, struct np_fairq_owner *o)
{
	o->next = NULL;
	if (q->tail)
		q->tail->next = o;
	else
		q->head = o;
	q->tail = o;
}

void np_fairq_push(struct np_fairq *q, struct np_fairq_owner *o, struct np_req *first,
		   struct np_req *last)
{
	last->next = NULL;
	if (o->head) {
		o->tail->next = first;
		o->tail = last;
		return;
	}
	o->head = first;
	o->tail = last;
	ring_append(q, o);
}

struct np_req *np_fairq_pop(struct np_fairq *q)
{
	struct np_fairq_owner *o = q->head;
	struct np_req *req;

	if (!o)
		return NULL;
	req = o->head;
	o->head = req->next;
	q->head = o->next;
	if (!q->head)
		q->tail = NULL;
	if (o->head)
		ring_append(q, o);
	else
		o->tail = NULL;
	return req;
}

static void *worker(void *arg)
{
	struct np_pool *pool = arg;

	for (;;) {
		struct np_req *req;
		struct np_export *ex;

		pthread_mutex_lock(&pool->lock);
		while (np_fairq_empty(&pool->queue) && !pool->stop)
			pthread_cond_wait(&pool->cond, &pool->lock);
		req = np_fairq_pop(&pool->queue);
		pthread_mutex_unlock(&pool->lock);
		if (!req)
			return NULL;

		ex = req->conn->export;
		np_io_run_sync(ex->ops, ex->h, ex->caps, &req->io);
		if (req->io.op == NP_OP_READ)
			np_req_scan_zeroes(req);
		np_loop_complete(req->conn->loop, req);
	}
}

int np_pool_start(struct np_pool *pool, unsigned n_threads)
{
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	np_fairq_init(&pool->queue);
	pool->threads = calloc(n_threads, sizeof(*pool->threads));
	if (!pool->threads)
		return -1;
	for (unsigned i = 0; i < n_threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0)
			return -1;
		pool->n_threads++;
	}
	return 0;
}

/* The list is queued on the connection of its first request: the whole
 * list is that connection's (submit_batch in conn.c).
 *
 * The connection's queue node, c->pool_queue, is used until the worker pops
 * its last request, and the connection is still there then: dispatch counts
 * each request in c->engine_busy before it can get here, np_req_done takes
 * it off on the loop once the worker has handed the request back, and the
 * connection is closed (try_finish) and freed (on_close) only when
 * engine_busy is 0. */
void np_pool_submit(struct np_pool *pool, struct np_req *first, struct np_req *last)
{
	bool many = first != last;

	pthread_mutex_lock(&pool->lock);
	np_fairq_push(&pool->queue, &first->conn->pool_queue, first, last);
	if (many)
		pthread_cond_broadcast(&pool->cond);
	else
		pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

void np_pool_stop(struct np_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	free(pool->threads);
	pool->threads = NULL;
	pool->n_threads = 0;
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
}
