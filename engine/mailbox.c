/* The loop's mailbox (mailbox.h). Jobs queue in the order they were
 * posted, under a lock held only to link or unlink; uv_async_send
 * coalesces wake-ups, so the callback takes the whole list at once. */
#include "engine/mailbox.h"

static unsigned take(struct np_mailbox *mb, struct np_job **jobs)
{
	unsigned signals;

	pthread_mutex_lock(&mb->lock);
	*jobs = mb->head;
	mb->head = mb->tail = NULL;
	signals = mb->signals;
	mb->signals = 0;
	pthread_mutex_unlock(&mb->lock);
	return signals;
}

static void complete_all(struct np_job *job)
{
	for (struct np_job *next; job; job = next) {
		next = job->next;
		job->complete(job);
	}
}

static void on_async(uv_async_t *h)
{
	struct np_mailbox *mb = container_of(h, struct np_mailbox, async);
	struct np_job *jobs;
	unsigned signals = take(mb, &jobs);

	complete_all(jobs);
	mb->drained(mb, signals);
}

int np_mailbox_init(struct np_mailbox *mb, uv_loop_t *loop, np_mailbox_drained_cb *drained)
{
	mb->head = mb->tail = NULL;
	mb->signals = 0;
	mb->drained = drained;
	pthread_mutex_init(&mb->lock, NULL);
	return uv_async_init(loop, &mb->async, on_async);
}

void np_mailbox_post(struct np_mailbox *mb, struct np_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&mb->lock);
	if (mb->tail)
		mb->tail->next = job;
	else
		mb->head = job;
	mb->tail = job;
	pthread_mutex_unlock(&mb->lock);
	uv_async_send(&mb->async);
}

void np_mailbox_signal(struct np_mailbox *mb, unsigned bits)
{
	pthread_mutex_lock(&mb->lock);
	mb->signals |= bits;
	pthread_mutex_unlock(&mb->lock);
	uv_async_send(&mb->async);
}

void np_mailbox_close(struct np_mailbox *mb)
{
	if (!uv_is_closing((uv_handle_t *)&mb->async))
		uv_close((uv_handle_t *)&mb->async, NULL);
}

bool np_mailbox_closing(const struct np_mailbox *mb)
{
	return uv_is_closing((const uv_handle_t *)&mb->async);
}

void np_mailbox_destroy(struct np_mailbox *mb)
{
	struct np_job *jobs;

	take(mb, &jobs);
	complete_all(jobs);
	pthread_mutex_destroy(&mb->lock);
}
