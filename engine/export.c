/* Exports: opening each engine, asking its capabilities once, and turning
 * them into the transmission flags every client of the export sees. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/access.h"
#include "engine/config.h"
#include "engine/export.h"
#include "engine/log.h"
#include "engine/server.h"
#include "storage/registry.h"
#include "util/err.h"

static uint16_t tflags_from_caps(uint32_t caps, bool readonly)
{
	/* FUA and WRITE_ZEROES are always offered: the core emulates them
	 * (flush after write, zeroes written) when the engine cannot. So is
	 * BLOCK_STATUS's payload (extended headers only; request.c reads it). */
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF |
		     NBD_FLAG_SEND_CACHE | NBD_FLAG_BLOCK_STATUS_PAYLOAD;

	if (readonly || !(caps & NP_CAP_WRITE))
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	if (!readonly && (caps & NP_CAP_TRIM))
		f |= NBD_FLAG_SEND_TRIM;
	if (!readonly && (caps & NP_CAP_RESIZE))
		f |= NBD_FLAG_SEND_RESIZE;
	if (caps & NP_CAP_MULTI_CONN)
		f |= NBD_FLAG_CAN_MULTI_CONN;
	if (caps & NP_CAP_ROTATIONAL)
		f |= NBD_FLAG_ROTATIONAL;
	return f;
}

/* What a reload may change without reopening the export. */
static void apply_settings(struct np_export *ex, const struct np_export_cfg *ec)
{
	ex->cfg = ec;
	ex->hs.name = ec->name;
	ex->hs.description = ec->description;
	ex->hs.hidden = ec->hidden;
	ex->hs.tls_only = ec->tls_only;
	ex->allow = &ec->allow;
}

/* max_request: the server's (as started; a reload keeps it). Returns 0 or
 * -errno; with quiet_busy, -EBUSY is not logged (the caller says why). */
static int open_one(struct np_export *ex, const struct np_export_cfg *ec, bool all_readonly,
		    uint32_t max_request, bool quiet_busy)
{
	const char *colon = strchr(ec->spec, ':');
	char engine[32];
	char *err = NULL;
	int r;

	if (!colon || (size_t)(colon - ec->spec) >= sizeof(engine)) {
		np_err("export '%s': bad spec '%s' (want ENGINE:SPEC)", ec->name, ec->spec);
		return -1;
	}
	memcpy(engine, ec->spec, (size_t)(colon - ec->spec));
	engine[colon - ec->spec] = '\0';
	ex->ops = np_storage_find(engine);
	if (!ex->ops) {
		np_err("export '%s': unknown engine '%s' (this build has: %s)", ec->name, engine,
		       np_storage_names());
		return -1;
	}
	ex->readonly = all_readonly || ec->readonly;
	r = ex->ops->open(colon + 1, ex->readonly, &ex->h, &err);
	if (r < 0) {
		if (r == -EBUSY && quiet_busy)
			np_info("export '%s': %s; asking the running server to release it",
				ec->name, err ? err : strerror(-r));
		else
			np_err("export '%s': %s", ec->name, err ? err : strerror(-r));
		free(err);
		ex->ops = NULL;
		return r;
	}
	ex->caps = ex->ops->caps(ex->h);
	if (!(ex->caps & NP_CAP_WRITE))
		ex->readonly = true;
	apply_settings(ex, ec);
	ex->hs.size = ex->ops->get_size(ex->h);
	ex->hs.tflags = tflags_from_caps(ex->caps, ex->readonly);
	ex->hs.min_block = 1;
	ex->hs.pref_block = 4096;
	ex->hs.max_block = max_request;
	if (ex->ops->block_size)
		ex->ops->block_size(ex->h, &ex->hs.min_block, &ex->hs.pref_block,
				    &ex->hs.max_block);
	if (ex->hs.max_block > max_request)
		ex->hs.max_block = max_request;
	np_info("export '%s': %s, %llu bytes%s", ec->name, ec->spec,
		(unsigned long long)ex->hs.size, ex->readonly ? ", read-only" : "");
	return 0;
}

/* Flushes and closes an export no one holds any more (one released to a
 * new process has no handle left). */
static void destroy(struct np_export *ex)
{
	if (!ex->h) {
		free(ex);
		return;
	}
	if (!ex->readonly && ex->ops->flush) {
		int r = ex->ops->flush(ex->h);

		if (r < 0)
			np_err("export '%s': flush at close: %s", ex->hs.name, strerror(-r));
	}
	ex->ops->close(ex->h);
	free(ex);
}

/* Opens an export into a free slot; the table holds the reference.
 * Returns 0, -EBUSY (with quiet_busy: not logged as an error) or -1. */
static int add_export_busy(struct np_server *srv, const struct np_export_cfg *ec, bool all_readonly,
			   bool quiet_busy)
{
	struct np_export *ex = calloc(1, sizeof(*ex));
	unsigned slot;
	int r;

	if (!ex)
		return -1;
	r = open_one(ex, ec, all_readonly, srv->cfg->max_request, quiet_busy);
	if (r < 0) {
		free(ex);
		return r == -EBUSY && quiet_busy ? r : -1;
	}
	ex->refs = 1;
	pthread_mutex_lock(&srv->exports_lock);
	for (slot = 0; slot < NP_MAX_EXPORTS && srv->exports[slot]; slot++)
		;
	if (slot < NP_MAX_EXPORTS) {
		ex->slot = slot;
		ex->gen = ++srv->next_gen;
		srv->exports[slot] = ex;
		srv->n_exports++;
	}
	pthread_mutex_unlock(&srv->exports_lock);
	if (slot == NP_MAX_EXPORTS) {
		np_err("export '%s': no room (at most %d exports, counting ones still draining)",
		       ec->name, NP_MAX_EXPORTS);
		destroy(ex);
		return -1;
	}
	return 0;
}

static int add_export(struct np_server *srv, const struct np_export_cfg *ec, bool all_readonly)
{
	return add_export_busy(srv, ec, all_readonly, false);
}

int np_exports_open(struct np_server *srv, const struct np_config *cfg)
{
	pthread_mutex_init(&srv->exports_lock, NULL);
	srv->default_export = cfg->exports[0].name;
	srv->current_cfg = cfg;
	srv->n_deferred = 0;
	for (size_t i = 0; i < cfg->n_exports; i++) {
		/* Taking over, an export the running server holds exclusively
		 * (a thin pool's lock, a device opened O_EXCL) opens once it
		 * lets go (np_exports_open_deferred). */
		int r =
		    add_export_busy(srv, &cfg->exports[i], cfg->readonly, cfg->takeover != NULL);

		if (r == -EBUSY && srv->n_deferred < NP_MAX_EXPORTS) {
			srv->deferred[srv->n_deferred++] = &cfg->exports[i];
		} else if (r < 0) {
			np_exports_close(srv);
			return -1;
		}
	}
	return 0;
}

static struct np_export *find_named(struct np_server *srv, const char *name, bool draining);

/* Takes an export opened here out of the table and closes it. */
static void remove_named(struct np_server *srv, const char *name)
{
	struct np_export *ex;

	pthread_mutex_lock(&srv->exports_lock);
	ex = find_named(srv, name, false);
	if (ex) {
		srv->exports[ex->slot] = NULL;
		srv->n_exports--;
	}
	pthread_mutex_unlock(&srv->exports_lock);
	if (ex)
		destroy(ex);
}

int np_exports_open_deferred(struct np_server *srv, char **err)
{
	for (size_t i = 0; i < srv->n_deferred; i++) {
		const struct np_export_cfg *ec = srv->deferred[i];

		if (add_export(srv, ec, srv->cfg->readonly) < 0) {
			np_exports_close_deferred(srv, i);
			return np_errmsg(err, -EBUSY,
					 "export '%s' cannot open even once released (above)",
					 ec->name);
		}
	}
	return 0;
}

void np_exports_close_deferred(struct np_server *srv, size_t n)
{
	for (size_t i = 0; i < n && i < srv->n_deferred; i++)
		remove_named(srv, srv->deferred[i]->name);
}

/* ---- letting another process open an export for a while ---- */

int np_export_space(struct np_server *srv, struct np_export *ex, uint64_t *used, uint64_t *capacity)
{
	int r = -ENOTSUP;

	/* Under the lock: a hand-off may be closing the handle. */
	pthread_mutex_lock(&srv->exports_lock);
	if (ex->h && ex->ops->space)
		r = ex->ops->space(ex->h, used, capacity);
	pthread_mutex_unlock(&srv->exports_lock);
	return r;
}

void np_export_let_go(struct np_server *srv, struct np_export *ex)
{
	void *h;

	pthread_mutex_lock(&srv->exports_lock);
	h = ex->h;
	ex->h = NULL;
	pthread_mutex_unlock(&srv->exports_lock);
	if (h)
		ex->ops->close(h);
	np_info("export '%s': released for the new process", ex->hs.name);
}

int np_export_take_back(struct np_server *srv, struct np_export *ex)
{
	char *err = NULL;
	void *h = NULL;
	int r;

	if (ex->h)
		return 0;
	r = ex->ops->open(strchr(ex->cfg->spec, ':') + 1, ex->readonly, &h, &err);
	if (r < 0) {
		np_errmsg(&err, r, "%s", strerror(-r));
		np_warn("export '%s': reopening: %s", ex->hs.name, err);
		free(err);
		return r;
	}
	pthread_mutex_lock(&srv->exports_lock);
	ex->h = h;
	pthread_mutex_unlock(&srv->exports_lock);
	np_info("export '%s': reopened", ex->hs.name);
	return 0;
}

void np_exports_close(struct np_server *srv)
{
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		if (srv->exports[i])
			destroy(srv->exports[i]);
		srv->exports[i] = NULL;
	}
	for (size_t i = 0; i < srv->n_reloaded; i++) {
		np_config_free(srv->reloaded[i]);
		free(srv->reloaded[i]);
	}
	free(srv->reloaded);
	srv->reloaded = NULL;
	srv->n_reloaded = 0;
	pthread_mutex_destroy(&srv->exports_lock);
}

static struct np_export *find_named(struct np_server *srv, const char *name, bool draining)
{
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		struct np_export *ex = srv->exports[i];

		if (ex && ex->draining == draining && strcmp(ex->hs.name, name) == 0)
			return ex;
	}
	return NULL;
}

void np_export_put(struct np_server *srv, struct np_export *ex)
{
	const struct np_export_cfg *next = NULL;
	const struct np_config *cfg;
	bool last;

	pthread_mutex_lock(&srv->exports_lock);
	last = --ex->refs == 0;
	if (last) {
		srv->exports[ex->slot] = NULL;
		/* A reload that changed this export opens the new one now. */
		cfg = srv->current_cfg;
		for (size_t i = 0; cfg && ex->draining && i < cfg->n_exports && !next; i++)
			if (strcmp(cfg->exports[i].name, ex->hs.name) == 0 &&
			    !find_named(srv, ex->hs.name, false) &&
			    !find_named(srv, ex->hs.name, true))
				next = &cfg->exports[i];
	}
	pthread_mutex_unlock(&srv->exports_lock);
	if (!last)
		return;
	np_info("export '%s': closed", ex->hs.name);
	destroy(ex);
	if (next)
		add_export(srv, next, srv->cfg->readonly);
}

bool np_export_draining(const struct np_export *ex)
{
	return __atomic_load_n(&ex->draining, __ATOMIC_RELAXED);
}

/* ---- SIGHUP ---- */

static bool same_acl(const struct np_acl *a, const struct np_acl *b)
{
	return a->n == b->n && (!a->n || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

static const struct np_export_cfg *find_cfg(const struct np_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_exports; i++)
		if (strcmp(cfg->exports[i].name, name) == 0)
			return &cfg->exports[i];
	return NULL;
}

static bool opt_str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Marks an export removed and wakes every loop to drain its clients. */
static void retire(struct np_server *srv, struct np_export *ex, const char *why)
{
	np_info("export '%s': %s; draining its connections", ex->hs.name, why);
	__atomic_store_n(&ex->draining, true, __ATOMIC_RELAXED);
	srv->n_exports--;
}

int np_exports_reload(struct np_server *srv)
{
	struct np_config *cfg = calloc(1, sizeof(*cfg));
	struct np_config **keep;
	struct np_export *gone[NP_MAX_EXPORTS];
	size_t n_gone = 0, added = 0, kept = 0, changed = 0;
	bool ro = srv->cfg->readonly; /* a [server] setting: kept from the start */
	int r;

	if (!cfg)
		return -1;
	r = np_config_from_args(cfg, srv->cfg->argc, srv->cfg->argv);
	keep = r == 0 ? realloc(srv->reloaded, (srv->n_reloaded + 1) * sizeof(*keep)) : NULL;
	if (!keep) {
		np_err("reload: the configuration has errors (above); keeping the one in use");
		np_config_free(cfg);
		free(cfg);
		return -1;
	}
	srv->reloaded = keep;
	srv->reloaded[srv->n_reloaded++] = cfg;

	/* Exports that stay: same engine and mode. Their clients keep their
	 * connections; the rest of what the config says of them (description,
	 * allow list, hidden, TLS-only) applies to the next handshake. */
	pthread_mutex_lock(&srv->exports_lock);
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		struct np_export *ex = srv->exports[i];
		const struct np_export_cfg *ec;

		if (!ex || ex->draining)
			continue;
		ec = find_cfg(cfg, ex->hs.name);
		if (!ec || strcmp(ec->spec, ex->cfg->spec) != 0 ||
		    (ro || ec->readonly) != (ro || ex->cfg->readonly)) {
			retire(srv, ex, ec ? "changed" : "removed");
			gone[n_gone++] = ex;
			continue;
		}
		if (!opt_str_eq(ec->description, ex->cfg->description) ||
		    ec->hidden != ex->cfg->hidden || ec->tls_only != ex->cfg->tls_only ||
		    !same_acl(&ec->allow, &ex->cfg->allow))
			changed++;
		apply_settings(ex, ec);
		kept++;
	}
	srv->default_export = cfg->exports[0].name;
	srv->current_cfg = cfg;
	pthread_mutex_unlock(&srv->exports_lock);

	/* New exports. One that replaces an export still draining opens when
	 * that one closes (np_export_put): both may need the same engine
	 * object (a thin volume opens once). */
	for (size_t i = 0; i < cfg->n_exports; i++) {
		const char *name = cfg->exports[i].name;
		bool exists, wait;

		pthread_mutex_lock(&srv->exports_lock);
		exists = find_named(srv, name, false) != NULL;
		wait = find_named(srv, name, true) != NULL;
		pthread_mutex_unlock(&srv->exports_lock);
		if (wait)
			np_info("export '%s': opens once the old one has drained", name);
		else if (!exists && add_export(srv, &cfg->exports[i], ro) == 0)
			added++;
	}
	for (size_t i = 0; i < n_gone; i++)
		np_export_put(srv, gone[i]); /* the table's reference */
	np_info("reload: %zu export(s) kept (%zu with new settings), %zu added, %zu removed", kept,
		changed, added, n_gone);
	return 0;
}

uint64_t np_export_size(const struct np_export *ex)
{
	return __atomic_load_n(&ex->hs.size, __ATOMIC_RELAXED);
}

uint64_t np_export_refresh_size(struct np_export *ex)
{
	uint64_t now = ex->ops->get_size(ex->h);
	uint64_t was = __atomic_exchange_n(&ex->hs.size, now, __ATOMIC_RELAXED);

	if (was != now)
		np_info("export '%s': size now %llu bytes (was %llu)", ex->hs.name,
			(unsigned long long)now, (unsigned long long)was);
	return now;
}

/* An export denied to a client does not exist for it: it is neither
 * listed nor found, so its name is not disclosed. Called with exports_lock
 * held. */
static bool visible(const struct np_hs_view *v, const struct np_export *ex)
{
	return ex && !ex->draining && np_acl_allows(ex->allow, v->peer);
}

/* The strings of the copies belong to a configuration that is never freed
 * while the server runs. */
static const struct np_hs_export *hs_lookup(void *ctx, const char *name)
{
	struct np_hs_view *v = ctx;
	struct np_server *srv = v->srv;
	struct np_export *found = NULL, *old = v->held;

	pthread_mutex_lock(&srv->exports_lock);
	if (!*name)
		name = srv->default_export;
	for (unsigned i = 0; i < NP_MAX_EXPORTS && !found; i++) {
		struct np_export *ex = srv->exports[i];

		if (visible(v, ex) && strcmp(ex->hs.name, name) == 0)
			found = ex;
	}
	if (found) {
		found->refs++;
		v->found = found->hs;
	}
	v->held = found;
	pthread_mutex_unlock(&srv->exports_lock);
	if (old)
		np_export_put(srv, old);
	if (!found)
		return NULL;
	/* Every handshake sees the size as it is now. */
	v->found.size = np_export_refresh_size(found);
	return &v->found;
}

static const struct np_hs_export *hs_nth(void *ctx, size_t i)
{
	struct np_hs_view *v = ctx;
	struct np_server *srv = v->srv;
	const struct np_hs_export *e = NULL;

	pthread_mutex_lock(&srv->exports_lock);
	for (unsigned k = 0; k < NP_MAX_EXPORTS && !e; k++)
		if (visible(v, srv->exports[k]) && i-- == 0) {
			v->listed = srv->exports[k]->hs;
			e = &v->listed;
		}
	pthread_mutex_unlock(&srv->exports_lock);
	return e;
}

/* The contexts of the export the last lookup found (and holds). */
static int hs_contexts(void *ctx, char ***names, size_t *n)
{
	struct np_hs_view *v = ctx;
	struct np_export *ex = v->held;

	*names = NULL;
	*n = 0;
	if (!ex || !ex->ops->contexts || !(ex->caps & NP_CAP_EXTENTS))
		return 0;
	return ex->ops->contexts(ex->h, names, n);
}

const struct np_hs_ops np_export_hs_ops = {
    .lookup = hs_lookup, .nth = hs_nth, .contexts = hs_contexts};
