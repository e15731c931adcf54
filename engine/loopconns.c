/* What the server does to all of a loop's connections at once: drain them
 * (a reload removed their export, or shutdown) or close them (a drain that
 * timed out). On the loop's thread. Above conn.c: it acts on connections
 * through conn.c's functions. */
#include "engine/conn_int.h"
#include "engine/export.h"
#include "engine/loop.h"

void np_conns_drain(struct np_loop *l, bool removed_only)
{
	for (struct np_conn *c = np_loop_conns(l)->head, *next; c; c = next) {
		next = c->next;
		if (!removed_only || (c->export && np_export_draining(c->export)))
			np_conn_drain(c);
	}
}

void np_conns_close(struct np_loop *l, const char *why)
{
	for (struct np_conn *c = np_loop_conns(l)->head, *next; c; c = next) {
		next = c->next;
		np_conn_close(c, why);
	}
}
