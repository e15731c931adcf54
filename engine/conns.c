/* A loop's connections, kept in the np_loop_conns the loop gives them: the
 * list, and their numbers for a stats request. On the loop's thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/access.h"
#include "engine/conn_int.h"
#include "engine/export.h"
#include "engine/loop.h"
#include "engine/server.h"

void np_conns_link(struct np_conn *c)
{
	struct np_loop_conns *lc = c->lc;

	c->next = lc->head;
	if (lc->head)
		lc->head->prev = c;
	lc->head = c;
	lc->n++;
}

void np_conns_unlink(struct np_conn *c)
{
	struct np_loop_conns *lc = c->lc;

	if (c->dirty) {
		struct np_conn **pp = &lc->dirty;

		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		lc->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	lc->n--;
	np_limits_release(&c->srv->limits, (struct sockaddr *)&c->peer_sa);
	if (c->export) {
		np_loop_export_conn_gone(c->loop, c->export);
		np_export_put(c->srv, c->export);
	}
	if (c->hs_view.held)
		np_export_put(c->srv, c->hs_view.held);
}

int np_conns_stats(struct np_loop *l, struct np_stats_conn **out, size_t *n)
{
	struct np_loop_conns *lc = np_loop_conns(l);

	*n = 0;
	*out = malloc((lc->n + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (struct np_conn *c = lc->head; c; c = c->next) {
		struct np_stats_conn *cs = &(*out)[(*n)++];
		bool tx = c->export != NULL;

		cs->id = c->id;
		memcpy(cs->peer, c->peer, sizeof(cs->peer));
		cs->slot = tx ? c->export->slot : NP_MAX_EXPORTS;
		cs->gen = tx ? c->export->gen : 0;
		cs->requests = c->n_requests;
		cs->bytes = c->n_bytes;
		cs->errors = c->n_errors;
		cs->inflight_bytes = c->inflight_bytes;
		cs->tls = c->tls_up;
	}
	return 0;
}
