/* The worker pool: threads that run jobs (job.h) that may block. */
#ifndef NP_ENGINE_POOL_H
#define NP_ENGINE_POOL_H

#include <pthread.h>
#include <stdbool.h>

#include "engine/fairq.h"

/* Jobs wait in a fair queue, in turns per owner (fairq.h); the queue and
 * every owner's node in it are under the pool's lock. */
struct np_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct np_fairq queue;
	pthread_t *threads;
	unsigned n_threads;
	bool stop;
};

/* Returns 0 or a negative errno. */
int np_pool_start(struct np_pool *pool, unsigned n_threads);
/* Queues a list of jobs linked through next, all of one owner, under one
 * lock. Each runs on a worker, then is posted to its mailbox. The owner's
 * node must live until its last job has been taken by a worker. */
void np_pool_submit(struct np_pool *pool, struct np_fairq_owner *owner, struct np_job *first,
		    struct np_job *last);
void np_pool_stop(struct np_pool *pool);

#endif
