/* What a loop keeps: its connections, and for each export its connections
 * to it, its statistics, and an async engine's handle for the loop, opened
 * with the first client and closed with the last once the export is
 * removed. All on the loop's own thread. */
#include <stdlib.h>
#include <string.h>

#include "engine/access.h"
#include "engine/conn.h"
#include "engine/export.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/server.h"

struct np_loop_export *np_loop_export_get(struct np_loop *l, struct np_export *ex)
{
	struct np_loop_export *le = l->ex[ex->slot];

	/* A slot is reused only once nothing of its last export is left
	 * here but counters: start afresh. */
	if (le && le->gen != ex->gen)
		memset(le, 0, sizeof(*le));
	if (!le) {
		le = calloc(1, sizeof(*le));
		if (!le)
			return NULL;
		l->ex[ex->slot] = le;
	}
	if (!le->gen) {
		if (ex->ops->loop_open) {
			if (ex->ops->loop_open(ex->h, &l->env, &le->engine_loop) < 0) {
				np_err("export '%s': cannot set up its event loop", ex->hs.name);
				le->engine_loop = NULL;
				return NULL;
			}
			/* The engine handle holds the export until closed. */
			pthread_mutex_lock(&l->srv->exports_lock);
			ex->refs++;
			pthread_mutex_unlock(&l->srv->exports_lock);
			le->export = ex;
		}
		le->gen = ex->gen;
	}
	return le;
}

void np_loop_export_release(struct np_loop *l, struct np_loop_export *le)
{
	struct np_export *ex = le->export;

	if (!ex)
		return;
	if (le->engine_loop && ex->ops->loop_close)
		ex->ops->loop_close(le->engine_loop);
	le->engine_loop = NULL;
	le->export = NULL;
	np_export_put(l->srv, ex);
}

void np_loop_export_conn_gone(struct np_loop *l, struct np_export *ex)
{
	struct np_loop_export *le = l->ex[ex->slot];

	if (--le->conns == 0 && np_export_draining(ex))
		np_loop_export_release(l, le);
}

void np_loop_conn_add(struct np_loop *l, struct np_conn *c)
{
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	l->n_conns++;
}

void np_loop_conn_remove(struct np_loop *l, struct np_conn *c)
{
	if (c->dirty) {
		struct np_conn **pp = &l->dirty;

		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	l->n_conns--;
	np_limits_release(&l->srv->limits, (struct sockaddr *)&c->peer_sa);
	if (c->export) {
		np_loop_export_conn_gone(l, c->export);
		np_export_put(l->srv, c->export);
	}
	if (c->hs_view.held)
		np_export_put(l->srv, c->hs_view.held);
}
