/* What a loop keeps: for each export its connections to it, its
 * statistics, and an async engine's handle for the loop, opened with the
 * first client and closed with the last once the export is removed; and
 * the loop's parts its connections use (the list of connections itself
 * is conn.c's). All on the loop's own thread unless said. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export.h"
#include "engine/log.h"
#include "engine/loop_int.h"
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

/* This loop's engine handle of ex, if it has one: closed before the
 * export's own handle is (a hand-off releasing it), or opened again on the
 * reopened one. The loop keeps its reference to the export meanwhile. */
int np_loop_export_let_go(struct np_loop *l, struct np_export *ex, bool reopen)
{
	struct np_loop_export *le = l->ex[ex->slot];
	int r = 0;

	if (!le || le->gen != ex->gen || le->export != ex)
		return 0;
	if (!reopen) {
		if (le->engine_loop && ex->ops->loop_close)
			ex->ops->loop_close(le->engine_loop);
		le->engine_loop = NULL;
	} else if (!le->engine_loop && ex->h && ex->ops->loop_open) {
		r = ex->ops->loop_open(ex->h, &l->env, &le->engine_loop);
		if (r < 0) {
			np_err("export '%s': cannot set up its event loop again", ex->hs.name);
			le->engine_loop = NULL;
		}
	}
	return r;
}

void np_loop_export_conn_gone(struct np_loop *l, struct np_export *ex)
{
	struct np_loop_export *le = l->ex[ex->slot];

	if (--le->conns == 0 && np_export_draining(ex))
		np_loop_export_release(l, le);
}

struct np_loop_conns *np_loop_conns(struct np_loop *l)
{
	return &l->lc;
}

struct np_server *np_loop_server(struct np_loop *l)
{
	return l->srv;
}

uv_loop_t *np_loop_uv(struct np_loop *l)
{
	return &l->uv;
}

struct np_mailbox *np_loop_mailbox(struct np_loop *l)
{
	return &l->mbox;
}

unsigned np_loop_index(const struct np_loop *l)
{
	return l->index;
}

struct np_loop *np_loop_nth(struct np_server *srv, unsigned i)
{
	return &srv->loops[i];
}

void np_loop_conn_gone(struct np_loop *l)
{
	if (l->draining)
		l->empty(l);
}

int np_loop_exports_stats(struct np_loop *l, struct np_stats_export **out, size_t *n)
{
	size_t m = 0;

	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++)
		m += l->ex[i] && l->ex[i]->gen;
	*n = 0;
	*out = malloc((m + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		if (l->ex[i] && l->ex[i]->gen) {
			struct np_stats_export *es = &(*out)[(*n)++];

			es->slot = i;
			es->gen = l->ex[i]->gen;
			es->stats = l->ex[i]->stats;
		}
	}
	return 0;
}
