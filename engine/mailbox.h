/* A loop's mailbox: the one door into a loop from other threads. Jobs
 * finished by the pool, accepted sockets and stats requests are posted as
 * jobs; a few one-bit signals (shutdown, reap) ride along. One uv_async_t
 * wakes the loop however many were posted, and its callback drains the
 * whole mailbox: every job's complete, oldest first, then the owner's
 * drained callback with the signals raised since the last drain. */
#ifndef NP_ENGINE_MAILBOX_H
#define NP_ENGINE_MAILBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "engine/job.h"

struct np_mailbox;
typedef void np_mailbox_drained_cb(struct np_mailbox *mb, unsigned signals);

struct np_mailbox {
	uv_async_t async;
	pthread_mutex_t lock;
	struct np_job *head, *tail; /* under lock */
	unsigned signals;           /* under lock */
	np_mailbox_drained_cb *drained;
};

/* On the loop's thread, before any other thread can post. Returns 0 or a
 * negative errno. */
int np_mailbox_init(struct np_mailbox *mb, uv_loop_t *loop, np_mailbox_drained_cb *drained);
/* Any thread: job->complete runs on the mailbox's loop. */
void np_mailbox_post(struct np_mailbox *mb, struct np_job *job);
/* Any thread: the next drain sees these bits. */
void np_mailbox_signal(struct np_mailbox *mb, unsigned bits);
/* The loop's thread: stops the wake-ups (the handle closes with the loop). */
void np_mailbox_close(struct np_mailbox *mb);
bool np_mailbox_closing(const struct np_mailbox *mb);
/* After the loop has stopped: completes what is left, without the drained
 * callback, and frees the lock. */
void np_mailbox_destroy(struct np_mailbox *mb);

#endif
