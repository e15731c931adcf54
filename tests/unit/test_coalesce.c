/* When a loop waits before it polls (np_coalesce_turn, engine/server.c):
 * never a wait for a client with one request in flight; a trial once
 * 64 turns have passed and one of them brought two requests; a wait every
 * turn while each brings a connection several requests; a
 * bounded run-out once they stop paying; and no run at all while every
 * wait overruns (the loop's core busy with other threads). */
#include <string.h>

#include "engine/loop.h"
#include "tests/unit/check.h"

/* Runs n turns in which one connection brought `most` requests, each wait
 * overrunning or not; returns how many turns waited. */
static unsigned run(struct np_coalesce *co, unsigned n, unsigned most, bool overrun)
{
	unsigned waits = 0;

	for (unsigned i = 0; i < n; i++) {
		if (np_coalesce_turn(co, most)) {
			waits++;
			co->overran = overrun;
		}
	}
	return waits;
}

int main(void)
{
	struct np_coalesce co;

	/* One request in flight: never a wait, so none in its latency. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 6400, 1, false) == 0);
	CHECK(co.credit == 0);

	/* A trial once 64 turns have passed and one brought two requests;
	 * one request per turn after it ends it (that turn does not count
	 * towards the next), and the next needs two in a turn again. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 10, 1, false) == 0);
	CHECK(run(&co, 1, 2, false) == 0);
	CHECK(run(&co, 52, 1, false) == 0);
	CHECK(run(&co, 1, 1, false) == 1);
	CHECK(run(&co, 1, 1, false) == 0);
	CHECK(run(&co, 640, 1, false) == 0);
	CHECK(run(&co, 1, 2, false) == 1);

	/* Turns that served nothing do not bring the trial nearer. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 1000, 0, false) == 0);
	CHECK(co.probe == 0);

	/* Several requests per wait: once tried, it waits every turn. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 640, 4, false) == 640 - 63);
	CHECK(co.credit == 8);

	/* When they stop paying, full credit lasts three more waits. */
	CHECK(run(&co, 3, 1, false) == 3);
	CHECK(run(&co, 1, 1, false) == 0);
	CHECK(co.credit == 0);

	/* Every wait overruns: as for one request in flight, whatever the
	 * requests per turn. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 640, 4, true) == 9);

	/* One overrun among paying waits costs two credits, not the run. */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 100, 4, false) == 100 - 63);
	CHECK(run(&co, 1, 4, true) == 1);
	CHECK(run(&co, 1, 4, false) == 1);
	CHECK(co.credit == 6);
	CHECK(run(&co, 100, 4, false) == 100);
	return check_done();
}
