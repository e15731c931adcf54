/* When a loop waits before it polls (np_coalesce_turn, engine/server.c):
 * one trial wait in 65 turns for a client with one request in flight;
 * a wait every turn while each brings a connection several requests; a
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

	/* One request in flight: a trial after 64 turns, then one in every 65
	 * (the turn after a trial, which ends it, does not count). */
	memset(&co, 0, sizeof(co));
	CHECK(run(&co, 63, 1, false) == 0);
	CHECK(run(&co, 1, 1, false) == 1);
	CHECK(run(&co, 1, 1, false) == 0);
	CHECK(run(&co, 640 - 65, 1, false) == 8);
	CHECK(co.credit == 0);

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
