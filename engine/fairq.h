/* A fair queue: requests of many owners (connections), taken from the
 * owners in turn.
 *
 * Each owner keeps its own FIFO of requests, and the owners that have some
 * wait in a FIFO of their own, the ring. A pop takes the oldest request of
 * the owner at the ring's head, then sends that owner to the ring's tail if
 * it has more, or out of the ring if not. So while k owners have requests,
 * none waits more than k - 1 pops between two of its own, however many the
 * others queued; an owner that empties and pushes again rejoins at the tail.
 *
 * Every operation is O(1) and nothing here locks or allocates: the caller
 * serializes, the owner node is embedded in the owner (and must outlive its
 * requests in the queue), and requests are linked through req->next. An
 * owner is in the ring exactly when it has requests; an all-zero owner is
 * an empty one, so one in calloc'd memory needs no initialization.
 *
 * push and pop are in pool.c, where struct np_req is complete. */
#ifndef NP_ENGINE_FAIRQ_H
#define NP_ENGINE_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>

struct np_req;

struct np_fairq_owner {
	struct np_req *head, *tail;  /* its requests, oldest first */
	struct np_fairq_owner *next; /* in the ring, while it has requests */
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

/* Appends first..last, already linked, to the owner's requests; an owner
 * that had none joins the ring at its tail. */
void np_fairq_push(struct np_fairq *q, struct np_fairq_owner *o, struct np_req *first,
		   struct np_req *last);
/* Takes the oldest request of the owner whose turn it is; NULL if the queue
 * is empty. The request's next is left as it was. */
struct np_req *np_fairq_pop(struct np_fairq *q);

#endif
