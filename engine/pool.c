/* The worker pool: threads that run jobs that may block.
 *
 * Jobs come in as lists, one lock per parsed batch, each list from one
 * owner (a connection), and go back to their loop through its mailbox,
 * which wakes the loop once however many completions are waiting.
 *
 * Workers take jobs from the owners in turn, one at a time (fairq.h): each
 * connection has its own queue in the pool, and the connections with jobs
 * queued wait in a ring. So a client with one request to run waits behind
 * at most one of each other client's, not behind the whole queue of a
 * client with a thousand slow ones (FUA writes, reads of uncached data), as
 * it did when the pool was one FIFO. */
#include <errno.h>
#include <stdlib.h>

#include "engine/mailbox.h"
#include "engine/pool.h"

static void *worker(void *arg)
{
	struct np_pool *pool = arg;

	for (;;) {
		struct np_job *job;

		pthread_mutex_lock(&pool->lock);
		while (np_fairq_empty(&pool->queue) && !pool->stop)
			pthread_cond_wait(&pool->cond, &pool->lock);
		job = np_fairq_pop(&pool->queue);
		pthread_mutex_unlock(&pool->lock);
		if (!job)
			return NULL;
		if (job->run)
			job->run(job);
		np_mailbox_post(job->mbox, job);
	}
}

int np_pool_start(struct np_pool *pool, unsigned n_threads)
{
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	np_fairq_init(&pool->queue);
	pool->threads = calloc(n_threads, sizeof(*pool->threads));
	if (!pool->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < n_threads; i++) {
		int r = pthread_create(&pool->threads[i], NULL, worker, pool);

		if (r != 0)
			return -r;
		pool->n_threads++;
	}
	return 0;
}

void np_pool_submit(struct np_pool *pool, struct np_fairq_owner *owner, struct np_job *first,
		    struct np_job *last)
{
	bool many = first != last;

	pthread_mutex_lock(&pool->lock);
	np_fairq_push(&pool->queue, owner, first, last);
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
