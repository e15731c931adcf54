/* What the server does to all of a loop's connections at once: drain them
 * (a reload removed their export, or shutdown) or close them (a drain that
 * timed out). On the loop's thread. Above conn.c: it acts on connections
 * through conn.c's functions. */
#include <errno.h>
#include <stdlib.h>

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

void np_conns_handoff(struct np_loop *l, bool on)
{
	for (struct np_conn *c = np_loop_conns(l)->head, *next; c; c = next) {
		next = c->next;
		np_conn_handoff(c, on);
	}
	np_loop_flush(l);
}

unsigned np_conns_busy(struct np_loop *l)
{
	unsigned n = 0;

	for (struct np_conn *c = np_loop_conns(l)->head; c; c = c->next)
		n += !np_conn_still(c);
	return n;
}

void np_conns_close_handshakes(struct np_loop *l, const char *why)
{
	for (struct np_conn *c = np_loop_conns(l)->head, *next; c; c = next) {
		next = c->next;
		if (c->state <= NP_CONN_TLS_HANDSHAKE)
			np_conn_close(c, why);
	}
}

int np_conns_export(struct np_loop *l, struct np_conn_moved **out, size_t *n)
{
	struct np_loop_conns *lc = np_loop_conns(l);

	*n = 0;
	*out = calloc(lc->n + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (struct np_conn *c = lc->head; c; c = c->next) {
		if (np_conn_export(c, &(*out)[*n]) < 0) {
			while (*n)
				np_conn_moved_free(&(*out)[--*n]);
			free(*out);
			*out = NULL;
			return -ENOMEM;
		}
		(*n)++;
	}
	return 0;
}
