/* The handshake on a connection: what the client sends before
 * transmission goes through the state machine in net/ (np_hs_input), and
 * the replies it makes are queued. What the handshake comes to (STARTTLS,
 * an end, the start of transmission) is returned to conn.c, which owns
 * the connection's state and acts on it. */
#include "engine/conn_int.h"
#include "engine/export.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/options.h"
#include "engine/request.h"
#include "engine/qos.h"
#include "engine/server.h"
#include "engine/tls.h"

int np_options_start(struct np_conn *c)
{
	c->hs_view.srv = c->srv;
	c->hs_view.peer = (const struct sockaddr *)&c->peer_sa;
	np_hs_init(&c->hs, &np_export_hs_ops, &c->hs_view);
	c->hs.tls_mode = c->srv->cfg->tls_mode;
	if (c->hs.why || np_req_queue_copy(c, c->hs.out.data, c->hs.out.len, true) < 0)
		return -1;
	c->hs.out.len = 0;
	return 0;
}

/* The export chosen: the reference taken at lookup passes to the
 * connection, with this loop's state for the export. */
static int start_transmission(struct np_conn *c, const char **why)
{
	struct np_export *ex = c->hs_view.held;
	struct np_loop_export *le = NULL;

	c->hs_view.held = NULL;
	if (ex && !np_export_draining(ex))
		le = np_loop_export_get(c->loop, ex);
	if (!le) {
		if (ex)
			np_export_put(c->srv, ex);
		*why = "export removed by a reload, or unavailable on this loop";
		return NP_OPT_CLOSE;
	}
	c->export = ex;
	c->lex = le;
	le->conns++;
	c->structured = c->hs.structured;
	c->extended = c->hs.extended;
	{
		char dn[512];

		np_qos_bind(c->srv->qos, &c->qos, ex->hs.name, (const struct sockaddr *)&c->peer_sa,
			    np_tls_identity(c, dn, sizeof(dn)));
	}
	/* The meta contexts selected stay in c->hs for BLOCK_STATUS; the
	 * rest of it goes with the connection. */
	np_buf_free(&c->hs.out);
	np_info("conn %llu from %s: export '%s'%s%s, %u meta context%s%s",
		(unsigned long long)c->id, c->peer, ex->hs.name,
		c->structured ? ", structured replies" : "",
		c->extended ? ", extended headers" : "", c->hs.n_meta, c->hs.n_meta == 1 ? "" : "s",
		c->hs.meta_base_allocation ? " (base:allocation)" : "");
	return NP_OPT_GO;
}

int np_options_adopt(struct np_conn *c, const char *names, size_t len, bool structured,
		     bool extended, const char **why)
{
	const char *name = names, *end = names + len;

	c->hs_view.srv = c->srv;
	c->hs_view.peer = (const struct sockaddr *)&c->peer_sa;
	if (!np_export_hs_ops.lookup(&c->hs_view, name)) {
		*why = "its export is not served here";
		return NP_OPT_CLOSE;
	}
	c->hs.structured = structured;
	c->hs.extended = extended;
	/* The contexts the client selected, as the old process knew them; a
	 * request for one the export no longer offers gets EINVAL. */
	for (const char *p = name + strlen(name) + 1; p < end; p += strlen(p) + 1) {
		if (c->hs.n_meta == NP_HS_MAX_META || !(c->hs.meta[c->hs.n_meta] = strdup(p))) {
			*why = "too many meta contexts, or out of memory";
			return NP_OPT_CLOSE;
		}
		if (strcmp(p, NBD_META_BASE_ALLOCATION) == 0)
			c->hs.meta_base_allocation = true;
		c->hs.n_meta++;
	}
	return start_transmission(c, why);
}

int np_options_input(struct np_conn *c, const char **why)
{
	size_t used = 0;
	enum np_hs_status st = np_hs_input(&c->hs, c->in, c->in_len, &used);

	np_request_consume(c, used);
	if (c->hs.out.len) {
		/* In clear before TLS, encrypted after. */
		if (np_req_queue_copy(c, c->hs.out.data, c->hs.out.len, !c->tls_up) < 0) {
			*why = "out of memory";
			return NP_OPT_CLOSE;
		}
		c->hs.out.len = 0;
	}
	switch (st) {
	case NP_HS_STARTTLS:
		return NP_OPT_STARTTLS;
	case NP_HS_CLOSE:
		np_info("conn %llu from %s: handshake ended: %s", (unsigned long long)c->id,
			c->peer, c->hs.why ? c->hs.why : "closed");
		return NP_OPT_END;
	case NP_HS_GO:
		return start_transmission(c, why);
	default:
		return NP_OPT_MORE;
	}
}
