/* A fair queue: jobs of many owners (connections), taken from the owners
 * in turn.
 *
 * Each owner keeps its own FIFO of jobs, and the owners that have some
 * wait in a FIFO of their own, the ring. A pop takes the oldest job of the
 * owner at the ring's head, then sends that owner to the ring's tail if it
 * has more, or out of the ring if not. So while k owners have jobs, none
 * waits more than k - 1 pops between two of its own, however many the
 * others queued; an owner that empties and pushes again rejoins at the
 * tail.
 *
 * Every operation is O(1) and nothing here locks or allocates: the caller
 * serializes, the owner node is embedded in the owner (and must outlive its
 * jobs in the queue), and jobs are linked through job->next. An owner is in
 * the ring exactly when it has jobs; an all-zero owner is an empty one, so
 * one in calloc'd memory needs no initialization. */
#ifndef NP_ENGINE_FAIRQ_H
#define NP_ENGINE_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/job.h"

struct np_fairq_owner {
	struct np_job *head, *tail;  /* its jobs, oldest first */
	struct np_fairq_owner *next; /* in the ring, while it has jobs */
};

struct np_fairq {
	struct np_fairq_owner *head, *tail; /* the ring; head is served next */
};

static inline void np_fairq_init(struct np_fairq *q)
{
	q->head = q->tail = NULL;
}

static inline bool np_fairq_empty(const struct np_fairq *q)
{
	return !q->head;
}

/* Appends first..last, already linked, to the owner's jobs; an owner that
 * had none joins the ring at its tail. */
void np_fairq_push(struct np_fairq *q, struct np_fairq_owner *o, struct np_job *first,
		   struct np_job *last);
/* Takes the oldest job of the owner whose turn it is; NULL if the queue is
 * empty. The job's next is left as it was. */
struct np_job *np_fairq_pop(struct np_fairq *q);

/* The job np_fairq_pop would take, left in place; NULL if none. */
static inline struct np_job *np_fairq_peek(const struct np_fairq *q)
{
	return q->head ? q->head->head : NULL;
}
/* Takes all of an owner's jobs out of the queue, and the owner out of the
 * ring; returns them, oldest first, linked through next (NULL: none).
 * O(owners in the ring), for the rare owner that goes away. */
struct np_job *np_fairq_remove(struct np_fairq *q, struct np_fairq_owner *o);

#endif
