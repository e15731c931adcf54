/* Exports: opening each engine, asking its capabilities once, and turning
 * them into the transmission flags every client of the export sees. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static uint16_t tflags_from_caps(uint32_t caps, bool readonly)
{
	/* FUA and WRITE_ZEROES are always offered: the core emulates them
	 * (flush after write, zeroes written) when the engine cannot. */
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF |
		     NBD_FLAG_SEND_CACHE;

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

static int open_one(struct np_export *ex, const struct np_export_cfg *ec, bool all_readonly)
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
		np_err("export '%s': %s", ec->name, err ? err : strerror(-r));
		free(err);
		ex->ops = NULL;
		return -1;
	}
	ex->caps = ex->ops->caps(ex->h);
	if (!(ex->caps & NP_CAP_WRITE))
		ex->readonly = true;
	ex->hs.name = ec->name;
	ex->hs.description = ec->description;
	ex->hs.hidden = ec->hidden;
	ex->hs.tls_only = ec->tls_only;
	ex->allow = &ec->allow;
	ex->hs.size = ex->ops->get_size(ex->h);
	ex->hs.tflags = tflags_from_caps(ex->caps, ex->readonly);
	ex->hs.min_block = 1;
	ex->hs.pref_block = 4096;
	ex->hs.max_block = NP_MAX_REQUEST;
	if (ex->ops->block_size)
		ex->ops->block_size(ex->h, &ex->hs.min_block, &ex->hs.pref_block,
				    &ex->hs.max_block);
	if (ex->hs.max_block > NP_MAX_REQUEST)
		ex->hs.max_block = NP_MAX_REQUEST;
	np_info("export '%s': %s, %llu bytes%s", ec->name, ec->spec,
		(unsigned long long)ex->hs.size, ex->readonly ? ", read-only" : "");
	return 0;
}

int np_exports_open(struct np_export **out, const struct np_config *cfg)
{
	struct np_export *ex = calloc(cfg->n_exports, sizeof(*ex));

	if (!ex)
		return -1;
	for (size_t i = 0; i < cfg->n_exports; i++) {
		if (open_one(&ex[i], &cfg->exports[i], cfg->readonly) < 0) {
			np_exports_close(ex, i);
			return -1;
		}
	}
	*out = ex;
	return 0;
}

void np_exports_close(struct np_export *ex, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ex[i].ops && !ex[i].readonly && ex[i].ops->flush) {
			int r = ex[i].ops->flush(ex[i].h);

			if (r < 0)
				np_err("export '%s': flush at exit: %s", ex[i].hs.name, strerror(-r));
		}
		if (ex[i].ops)
			ex[i].ops->close(ex[i].h);
	}
	free(ex);
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
 * listed nor found, so its name is not disclosed. */
static bool allowed(const struct np_conn *c, const struct np_export *ex)
{
	return np_acl_allows(ex->allow, (const struct sockaddr *)&c->peer_sa);
}

static const struct np_hs_export *hs_lookup(void *ctx, const char *name)
{
	struct np_conn *c = ctx;
	struct np_server *srv = c->loop->srv;

	for (size_t i = 0; i < srv->n_exports; i++) {
		struct np_export *ex = &srv->exports[i];

		if ((!*name && i == 0) || strcmp(ex->hs.name, name) == 0) {
			if (!allowed(c, ex))
				return NULL;
			/* Every handshake sees the size as it is now. */
			np_export_refresh_size(ex);
			return &ex->hs;
		}
	}
	return NULL;
}

static const struct np_hs_export *hs_nth(void *ctx, size_t i)
{
	struct np_conn *c = ctx;
	struct np_server *srv = c->loop->srv;

	for (size_t k = 0; k < srv->n_exports; k++)
		if (allowed(c, &srv->exports[k]) && i-- == 0)
			return &srv->exports[k].hs;
	return NULL;
}

const struct np_hs_ops np_export_hs_ops = {.lookup = hs_lookup, .nth = hs_nth};
