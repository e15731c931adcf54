/* The fair queue under the worker pool and the limits: the exact order of
 * turns, owners leaving and rejoining the ring, owners taken out, and a
 * long random run that checks each
 * owner's FIFO and the bound on how long an owner with requests waits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fairq.h"
#include "tests/unit/check.h"

#define N_BIG      10000
#define OWNERS_BIG 7

/* Each job's tag says whose it is (high half) and its number in that
 * owner's FIFO (low half). */
struct tagged {
	struct np_job job;
	uint64_t tag;
};
static struct tagged reqs[N_BIG];
static unsigned n_reqs, next_seq[OWNERS_BIG];

static unsigned owner_of(const struct np_job *j)
{
	return container_of(j, struct tagged, job)->tag >> 32;
}

static unsigned seq_of(const struct np_job *j)
{
	return (uint32_t)container_of(j, struct tagged, job)->tag;
}

/* Links n new requests of owner o, numbered on from its last, and pushes
 * them. */
static void push(struct np_fairq *q, struct np_fairq_owner *owners, unsigned o, unsigned n)
{
	struct np_job *first = &reqs[n_reqs].job;

	for (unsigned i = 0; i < n; i++) {
		struct tagged *r = &reqs[n_reqs++];

		r->tag = (uint64_t)o << 32 | ++next_seq[o];
		r->job.next = i + 1 < n ? &r[1].job : (struct np_job *)0x1; /* push ends the list */
	}
	np_fairq_push(q, &owners[o], first, &reqs[n_reqs - 1].job);
}

static void reset(struct np_fairq *q, struct np_fairq_owner *owners, size_t n_owners)
{
	memset(owners, 0, n_owners * sizeof(*owners));
	np_fairq_init(q);
	n_reqs = 0;
	memset(next_seq, 0, sizeof(next_seq));
}

/* Pops one request and checks it is owner o's number seq. */
static void expect(struct np_fairq *q, unsigned o, unsigned seq)
{
	struct np_job *r = np_fairq_pop(q);

	CHECK(r != NULL);
	if (!r)
		return;
	if (owner_of(r) != o || seq_of(r) != seq)
		fprintf(stderr, "popped %c%u, expected %c%u\n", 'A' + owner_of(r), seq_of(r),
			'A' + o, seq);
	CHECK(owner_of(r) == o && seq_of(r) == seq);
}

enum { A, B, C, D };

static void test_turns(void)
{
	struct np_fairq q;
	struct np_fairq_owner owners[OWNERS_BIG];

	/* An empty queue, and a zeroed owner, are empty. */
	memset(&q, 0xa5, sizeof(q));
	reset(&q, owners, OWNERS_BIG);
	CHECK(np_fairq_empty(&q));
	CHECK(np_fairq_pop(&q) == NULL);
	CHECK(owners[A].head == NULL);

	reset(&q, owners, OWNERS_BIG);
	push(&q, owners, A, 5);
	push(&q, owners, B, 1);
	push(&q, owners, C, 2);
	CHECK(!np_fairq_empty(&q));
	expect(&q, A, 1);
	expect(&q, B, 1);
	expect(&q, C, 1);
	expect(&q, A, 2);
	expect(&q, C, 2);
	expect(&q, A, 3);
	expect(&q, A, 4);
	expect(&q, A, 5);
	CHECK(np_fairq_pop(&q) == NULL);
	CHECK(np_fairq_empty(&q));
	CHECK(owners[A].head == NULL && owners[B].head == NULL && owners[C].head == NULL);
}

/* An owner that empties leaves the ring; pushing again puts it at the
 * tail, behind owners that were waiting, whatever its place was before. */
static void test_rejoin(void)
{
	struct np_fairq q;
	struct np_fairq_owner owners[OWNERS_BIG];

	reset(&q, owners, OWNERS_BIG);
	push(&q, owners, A, 1); /* A1 */
	push(&q, owners, B, 2); /* B1 B2 */
	push(&q, owners, C, 1); /* C1 */
	expect(&q, A, 1);       /* A is empty and out of the ring: B C */
	push(&q, owners, A, 1); /* A2 joins at the tail: B C A */
	expect(&q, B, 1);       /* C A B */
	expect(&q, C, 1);       /* A B */
	expect(&q, A, 2);       /* B */
	expect(&q, B, 2);
	CHECK(np_fairq_pop(&q) == NULL);

	/* An owner alone in the ring keeps its turn. */
	push(&q, owners, D, 3);
	expect(&q, D, 1);
	expect(&q, D, 2);
	push(&q, owners, A, 1); /* A3 behind D */
	expect(&q, D, 3);
	expect(&q, A, 3);
	CHECK(np_fairq_pop(&q) == NULL);

	/* Emptied completely, the queue works as new. */
	push(&q, owners, C, 1);
	expect(&q, C, 2);
	CHECK(np_fairq_empty(&q));
}

/* A push to an owner that already has requests adds to its FIFO and keeps
 * its place in the ring. */
static void test_interleaved(void)
{
	struct np_fairq q;
	struct np_fairq_owner owners[OWNERS_BIG];

	reset(&q, owners, OWNERS_BIG);
	push(&q, owners, A, 1); /* A1 */
	push(&q, owners, B, 1); /* B1 */
	push(&q, owners, A, 2); /* A2 A3; the ring is still A B */
	push(&q, owners, C, 1); /* C1 */
	expect(&q, A, 1);       /* B C A */
	push(&q, owners, B, 1); /* B2 */
	expect(&q, B, 1);       /* C A B */
	push(&q, owners, D, 1); /* D1: C A B D */
	expect(&q, C, 1);       /* A B D */
	expect(&q, A, 2);       /* B D A */
	expect(&q, B, 2);       /* D A */
	expect(&q, D, 1);       /* A */
	expect(&q, A, 3);
	CHECK(np_fairq_pop(&q) == NULL);
}

/* An owner that goes away takes all its jobs out, from any place in the
 * ring (head, middle, tail, alone); peek shows what pop takes next. */
static void test_remove(void)
{
	struct np_fairq q;
	struct np_fairq_owner owners[OWNERS_BIG];
	struct np_job *j;

	reset(&q, owners, OWNERS_BIG);
	CHECK(np_fairq_peek(&q) == NULL);
	CHECK(np_fairq_remove(&q, &owners[A]) == NULL); /* not in the ring */
	push(&q, owners, A, 2);
	push(&q, owners, B, 1);
	push(&q, owners, C, 3);
	push(&q, owners, D, 1);
	CHECK(np_fairq_peek(&q) && owner_of(np_fairq_peek(&q)) == A);
	j = np_fairq_remove(&q, &owners[C]); /* the middle: A B D */
	CHECK(j && owner_of(j) == C && seq_of(j) == 1 && j->next && seq_of(j->next) == 2 &&
	      j->next->next && seq_of(j->next->next) == 3 && !j->next->next->next);
	CHECK(owners[C].head == NULL);
	j = np_fairq_remove(&q, &owners[A]); /* the head: B D */
	CHECK(j && owner_of(j) == A && seq_of(j) == 1 && seq_of(j->next) == 2);
	j = np_fairq_remove(&q, &owners[D]); /* the tail: B */
	CHECK(j && owner_of(j) == D && !j->next);
	push(&q, owners, C, 1); /* the tail is right again: B C */
	expect(&q, B, 1);
	expect(&q, C, 4);
	push(&q, owners, D, 1);
	j = np_fairq_remove(&q, &owners[D]); /* alone */
	CHECK(j && np_fairq_empty(&q) && np_fairq_pop(&q) == NULL);
	push(&q, owners, A, 1);
	expect(&q, A, 3);
	CHECK(np_fairq_empty(&q));
}

/* Many requests in batches of random size to random owners, with pops in
 * between: every owner's come out in order, every one comes out once, and
 * an owner with requests never sees more than OWNERS_BIG - 1 pops of others
 * between joining the ring or being served and being served again. */
static void test_big(void)
{
	struct np_fairq q;
	struct np_fairq_owner owners[OWNERS_BIG];
	unsigned pushed[OWNERS_BIG] = {0}, popped[OWNERS_BIG] = {0};
	unsigned waited[OWNERS_BIG] = {0};
	unsigned total = 0, max_waited = 0, bad_order = 0, bad_wait = 0;
	unsigned seed = 12345;

	reset(&q, owners, OWNERS_BIG);
	while (n_reqs < N_BIG || total < N_BIG) {
		unsigned pops;

		seed = seed * 1103515245 + 12345;
		if (n_reqs < N_BIG) {
			unsigned o = (seed >> 16) % OWNERS_BIG;
			unsigned n = 1 + (seed >> 8) % 40;

			if (n > N_BIG - n_reqs)
				n = N_BIG - n_reqs;
			if (pushed[o] == popped[o])
				waited[o] = 0; /* joins the ring now */
			push(&q, owners, o, n);
			pushed[o] += n;
			pops = (seed >> 4) % 48;
		} else {
			pops = N_BIG;
		}
		while (pops--) {
			struct np_job *r = np_fairq_pop(&q);
			unsigned who;

			if (!r)
				break;
			who = owner_of(r);
			total++;
			if (seq_of(r) != popped[who] + 1)
				bad_order++;
			popped[who]++;
			waited[who] = 0;
			for (unsigned o = 0; o < OWNERS_BIG; o++) {
				if (o == who || pushed[o] == popped[o])
					continue;
				if (++waited[o] > max_waited)
					max_waited = waited[o];
				if (waited[o] > OWNERS_BIG - 1)
					bad_wait++;
			}
		}
	}
	CHECK(total == N_BIG);
	CHECK(bad_order == 0);
	CHECK(bad_wait == 0);
	/* Every owner had to wait its full turn at some point. */
	CHECK(max_waited == OWNERS_BIG - 1);
	for (unsigned o = 0; o < OWNERS_BIG; o++)
		CHECK(pushed[o] && pushed[o] == popped[o]);
	CHECK(np_fairq_pop(&q) == NULL);
	CHECK(np_fairq_empty(&q));
}

int main(void)
{
	test_turns();
	test_rejoin();
	test_interleaved();
	test_remove();
	test_big();
	return check_done();
}
