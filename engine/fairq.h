/* A fair queue: items of many owners, taken from the owners in turn.
 *
 * Each owner keeps its own FIFO of items, and the owners that have items
 * wait in a FIFO of their own, the ring. A pop takes the oldest item of the
 * owner at the ring's head, then sends that owner to the ring's tail if it
 * has more, or out of the ring if not. So while k owners have items, none
 * waits more than k - 1 pops between two of its own, however many items the
 * others queued; an owner that empties and pushes again rejoins at the tail.
 *
 * Every operation is O(1) and nothing here locks or allocates: the caller
 * serializes, the owner node is embedded in the owner (and must outlive its
 * items in the queue), and items are linked through a pointer of their own,
 * found at offset q->link in each item. That pointer may have any object
 * pointer type (the pool's is struct np_req's next): it is read and written
 * as a void * with memcpy, which breaks no aliasing rule and asks only that
 * both pointer types look the same in memory, as on every platform we build
 * for.
 *
 * An owner is in the ring exactly when it has items. An all-zero owner is
 * an empty one, so one in calloc'd memory needs no initialization. */
#ifndef NP_ENGINE_FAIRQ_H
#define NP_ENGINE_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct np_fairq_owner {
	void *head, *tail;           /* its items, oldest first */
	struct np_fairq_owner *next; /* in the ring, while it has items */
};

struct np_fairq {
	struct np_fairq_owner *head, *tail; /* the ring; head is served next */
	size_t link;                        /* offset of the pointer in an item to the next one */
};

static inline void np_fairq_init(struct np_fairq *q, size_t link)
{
	q->head = q->tail = NULL;
	q->link = link;
}

static inline bool np_fairq_empty(const struct np_fairq *q)
{
	return !q->head;
}

static inline void *np_fairq__next(const struct np_fairq *q, const void *item)
{
	void *next;

	memcpy(&next, (const char *)item + q->link, sizeof(next));
	return next;
}

static inline void np_fairq__set_next(const struct np_fairq *q, void *item, void *next)
{
	memcpy((char *)item + q->link, &next, sizeof(next));
}

static inline void np_fairq__ring_append(struct np_fairq *q, struct np_fairq_owner *o)
{
	o->next = NULL;
	if (q->tail)
		q->tail->next = o;
	else
		q->head = o;
	q->tail = o;
}

/* Appends the items first..last, already linked to each other, to the
 * owner's; an owner that had none joins the ring at its tail. */
static inline void np_fairq_push(struct np_fairq *q, struct np_fairq_owner *o, void *first,
				 void *last)
{
	np_fairq__set_next(q, last, NULL);
	if (o->head) {
		np_fairq__set_next(q, o->tail, first);
		o->tail = last;
		return;
	}
	o->head = first;
	o->tail = last;
	np_fairq__ring_append(q, o);
}

/* Takes the oldest item of the owner whose turn it is; NULL if the queue is
 * empty. The item's link is left as it was. */
static inline void *np_fairq_pop(struct np_fairq *q)
{
	struct np_fairq_owner *o = q->head;
	void *item;

	if (!o)
		return NULL;
	item = o->head;
	o->head = np_fairq__next(q, item);
	q->head = o->next;
	if (!q->head)
		q->tail = NULL;
	if (o->head)
		np_fairq__ring_append(q, o);
	else
		o->tail = NULL;
	return item;
}

#endif
