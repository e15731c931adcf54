/* The fair queue of fairq.h. */
#include "engine/fairq.h"

static void ring_append(struct np_fairq *q, struct np_fairq_owner *o)
{
	o->next = NULL;
	if (q->tail)
		q->tail->next = o;
	else
		q->head = o;
	q->tail = o;
}

void np_fairq_push(struct np_fairq *q, struct np_fairq_owner *o, struct np_job *first,
		   struct np_job *last)
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

struct np_job *np_fairq_pop(struct np_fairq *q)
{
	struct np_fairq_owner *o = q->head;
	struct np_job *job;

	if (!o)
		return NULL;
	job = o->head;
	o->head = job->next;
	q->head = o->next;
	if (!q->head)
		q->tail = NULL;
	if (o->head)
		ring_append(q, o);
	else
		o->tail = NULL;
	return job;
}

struct np_job *np_fairq_remove(struct np_fairq *q, struct np_fairq_owner *o)
{
	struct np_job *jobs = o->head;
	struct np_fairq_owner *prev = NULL;

	if (!jobs)
		return NULL;
	for (struct np_fairq_owner *p = q->head; p != o; p = p->next)
		prev = p;
	if (prev)
		prev->next = o->next;
	else
		q->head = o->next;
	if (q->tail == o)
		q->tail = prev;
	o->head = o->tail = NULL;
	o->next = NULL;
	return jobs;
}
