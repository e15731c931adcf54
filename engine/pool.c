/* The worker pool: threads that run engine operations that may block.
 *
 * Requests come in as lists (one lock per parsed batch) and go back to their
 * loop through np_loop_complete, which wakes the loop once however many
 * completions are waiting. */
#include <stdlib.h>

#include "engine/internal.h"

static void *worker(void *arg)
{
	struct np_pool *pool = arg;

	for (;;) {
		struct np_req *req;
		struct np_export *ex;

		pthread_mutex_lock(&pool->lock);
		while (!pool->head && !pool->stop)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (!pool->head) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
		req = pool->head;
		pool->head = req->next;
		if (!pool->head)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->lock);

		ex = req->conn->export;
		np_io_run_sync(ex->ops, ex->h, ex->caps, &req->io);
		if (req->io.cmd == NBD_CMD_READ)
			np_req_scan_zeroes(req);
		np_loop_complete(req->conn->loop, req);
	}
}

int np_pool_start(struct np_pool *pool, unsigned n_threads)
{
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
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

void np_pool_submit(struct np_pool *pool, struct np_req *first, struct np_req *last)
{
	bool many = first != last;

	last->next = NULL;
	pthread_mutex_lock(&pool->lock);
	if (pool->tail)
		pool->tail->next = first;
	else
		pool->head = first;
	pool->tail = last;
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
