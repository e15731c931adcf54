/* Fixed-newstyle negotiation: greeting, client flags, then options until
 * EXPORT_NAME or GO. Every malformed option gets NBD_REP_ERR_INVALID and the
 * negotiation goes on; only what the protocol cannot recover from (a bad
 * magic, unknown client flags, an oversized option, an unknown export with
 * EXPORT_NAME) closes the connection.
 *
 * STARTTLS stops the machine right after its ACK: what follows on the wire
 * is a TLS handshake, which the caller runs before feeding the decrypted
 * options back in with hs->tls_active set. */
#include <stdlib.h>
#include <string.h>

#include "net/handshake.h"
#include "net/proto.h"

void np_hs_init(struct np_hs *hs, const struct np_hs_ops *ops, void *ctx)
{
	uint8_t *p;

	memset(hs, 0, sizeof(*hs));
	hs->ops = ops;
	hs->ctx = ctx;
	hs->state = NP_HS_CLIENT_FLAGS;
	p = np_buf_reserve(&hs->out, 18);
	if (!p) {
		hs->why = "out of memory";
		return;
	}
	np_put64(p, NBD_MAGIC);
	np_put64(p + 8, NBD_IHAVEOPT);
	np_put16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

static void meta_clear(struct np_hs *hs)
{
	for (unsigned i = 0; i < hs->n_meta; i++)
		free(hs->meta[i]);
	hs->n_meta = 0;
	hs->meta_base_allocation = false;
}

void np_hs_free(struct np_hs *hs)
{
	meta_clear(hs);
	np_buf_free(&hs->out);
}

/* Queues one option reply with an optional payload. */
static void reply(struct np_hs *hs, uint32_t opt, uint32_t type, const void *data, size_t len)
{
	uint8_t *p = np_buf_reserve(&hs->out, NBD_OPT_REPLY_HDR_SIZE + len);

	if (!p) {
		hs->why = "out of memory";
		return;
	}
	nbd_opt_reply_encode(p, opt, type, (uint32_t)len);
	if (len)
		memcpy(p + NBD_OPT_REPLY_HDR_SIZE, data, len);
}

/* An error reply carrying a human-readable message, as the spec allows. */
static void reply_err(struct np_hs *hs, uint32_t opt, uint32_t type, const char *msg)
{
	reply(hs, opt, type, msg, strlen(msg));
}

/* Copies a length-prefixed string out of an option; the name buffer holds
 * NBD_MAX_STRING + 1 bytes. Returns the bytes consumed or 0 on a bad length. */
static size_t take_string(const uint8_t *p, size_t left, char *name)
{
	uint32_t n;

	if (left < 4)
		return 0;
	n = np_get32(p);
	if (n > NBD_MAX_STRING || n > left - 4)
		return 0;
	memcpy(name, p + 4, n);
	name[n] = '\0';
	if (strlen(name) != n) /* embedded NUL */
		return 0;
	return 4 + n;
}

static uint16_t client_tflags(struct np_hs *hs, const struct np_hs_export *e)
{
	uint16_t f = e->tflags;

	/* DF only means something with structured replies, and the block
	 * status payload only with extended headers. */
	if (!hs->structured)
		f &= (uint16_t)~NBD_FLAG_SEND_DF;
	if (!hs->extended)
		f &= (uint16_t)~NBD_FLAG_BLOCK_STATUS_PAYLOAD;
	return f;
}

static void send_info_export(struct np_hs *hs, uint32_t opt, const struct np_hs_export *e)
{
	uint8_t b[12];

	np_put16(b, NBD_INFO_EXPORT);
	np_put64(b + 2, __atomic_load_n(&e->size, __ATOMIC_RELAXED));
	np_put16(b + 10, client_tflags(hs, e));
	reply(hs, opt, NBD_REP_INFO, b, sizeof(b));
}

static void send_info_string(struct np_hs *hs, uint32_t opt, uint16_t type, const char *s)
{
	size_t n = strlen(s);
	uint8_t b[2 + NBD_MAX_STRING];

	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	np_put16(b, type);
	memcpy(b + 2, s, n);
	reply(hs, opt, NBD_REP_INFO, b, 2 + n);
}

static void send_info_block_size(struct np_hs *hs, uint32_t opt, const struct np_hs_export *e)
{
	uint8_t b[14];

	np_put16(b, NBD_INFO_BLOCK_SIZE);
	np_put32(b + 2, e->min_block);
	np_put32(b + 6, e->pref_block);
	np_put32(b + 10, e->max_block);
	reply(hs, opt, NBD_REP_INFO, b, sizeof(b));
}

/* NBD_OPT_INFO and NBD_OPT_GO. Returns true when GO succeeded. */
static bool opt_info_go(struct np_hs *hs, uint32_t opt, const uint8_t *d, size_t len)
{
	char name[NBD_MAX_STRING + 1];
	size_t n = take_string(d, len, name);
	const struct np_hs_export *e;
	uint16_t nreq;

	if (n == 0 || len - n < 2) {
		reply_err(hs, opt, NBD_REP_ERR_INVALID, "malformed export name");
		return false;
	}
	nreq = np_get16(d + n);
	if (len != n + 2 + 2 * (size_t)nreq) {
		reply_err(hs, opt, NBD_REP_ERR_INVALID, "option length does not match requests");
		return false;
	}
	e = hs->ops->lookup(hs->ctx, name);
	if (!e) {
		reply_err(hs, opt, NBD_REP_ERR_UNKNOWN, "no such export");
		return false;
	}
	if (e->tls_only && !hs->tls_active) {
		reply_err(hs, opt, NBD_REP_ERR_TLS_REQD, "this export requires TLS");
		return false;
	}
	send_info_export(hs, opt, e);
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t type = np_get16(d + n + 2 + 2 * i);

		if (type == NBD_INFO_NAME)
			send_info_string(hs, opt, NBD_INFO_NAME, e->name);
		else if (type == NBD_INFO_DESCRIPTION && e->description)
			send_info_string(hs, opt, NBD_INFO_DESCRIPTION, e->description);
	}
	/* Sent whether asked or not: the maximum tells every client how large a
	 * request may be, and a minimum of 1 constrains nobody. */
	send_info_block_size(hs, opt, e);
	reply(hs, opt, NBD_REP_ACK, NULL, 0);
	if (opt != NBD_OPT_GO)
		return false;
	hs->export = e;
	hs->tflags = client_tflags(hs, e);
	return true;
}

static void opt_list(struct np_hs *hs, size_t len)
{
	const struct np_hs_export *e;

	if (len) {
		reply_err(hs, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "LIST takes no data");
		return;
	}
	for (size_t i = 0; (e = hs->ops->nth(hs->ctx, i)) != NULL; i++) {
		uint8_t b[4 + 2 * NBD_MAX_STRING];
		size_t n = strnlen(e->name, NBD_MAX_STRING);
		size_t dn = e->description ? strnlen(e->description, NBD_MAX_STRING) : 0;

		if (e->hidden || (e->tls_only && !hs->tls_active))
			continue;
		np_put32(b, (uint32_t)n);
		memcpy(b + 4, e->name, n);
		if (dn)
			memcpy(b + 4 + n, e->description, dn);
		reply(hs, NBD_OPT_LIST, NBD_REP_SERVER, b, 4 + n + dn);
	}
	reply(hs, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static void send_meta_context(struct np_hs *hs, uint32_t opt, uint32_t id, const char *name)
{
	uint8_t b[4 + NBD_MAX_STRING];
	size_t n = strnlen(name, NBD_MAX_STRING);

	np_put32(b, id);
	memcpy(b + 4, name, n);
	reply(hs, opt, NBD_REP_META_CONTEXT, b, 4 + n);
}

/* Whether query q names context name. Listing, a query that ends with a
 * colon ("base:", "qemu:", "qemu:dirty-bitmap:") names every context under
 * it; SET_META_CONTEXT takes whole names only, so that what a client
 * selects stays within what it asked for by name. */
static bool meta_match(const char *q, const char *name, bool list)
{
	size_t n = strlen(q);

	if (strcmp(q, name) == 0)
		return true;
	return list && n && q[n - 1] == ':' && strncmp(q, name, n) == 0;
}

/* The export's contexts: base:allocation first, then the engine's. */
static int meta_names(struct np_hs *hs, char ***names, size_t *n)
{
	char **eng = NULL, **all;
	size_t ne = 0;

	if (hs->ops->contexts && hs->ops->contexts(hs->ctx, &eng, &ne) < 0)
		ne = 0, eng = NULL; /* base:allocation is always there */
	all = malloc((ne + 1) * sizeof(*all));
	if (!all) {
		for (size_t i = 0; i < ne; i++)
			free(eng[i]);
		free(eng);
		return -1;
	}
	all[0] = (char *)NBD_META_BASE_ALLOCATION;
	for (size_t i = 0; i < ne; i++)
		all[i + 1] = eng[i];
	free(eng);
	*names = all;
	*n = ne + 1;
	return 0;
}

static void meta_names_free(char **names, size_t n)
{
	for (size_t i = 1; i < n; i++)
		free(names[i]);
	free(names);
}

/* Selects name for SET_META_CONTEXT (once, whatever the queries repeat).
 * Returns false when the connection already has NP_HS_MAX_META. */
static bool meta_select(struct np_hs *hs, const char *name)
{
	for (unsigned i = 0; i < hs->n_meta; i++)
		if (strcmp(hs->meta[i], name) == 0)
			return true;
	if (hs->n_meta == NP_HS_MAX_META || !(hs->meta[hs->n_meta] = strdup(name)))
		return false;
	hs->n_meta++;
	if (strcmp(name, NBD_META_BASE_ALLOCATION) == 0)
		hs->meta_base_allocation = true;
	return true;
}

/* Walks the queries of a meta context option at d[pos..len): checks them
 * when names is NULL, else marks the names each one matches. Returns false
 * on a malformed query or trailing bytes. */
static bool meta_queries(const uint8_t *d, size_t pos, size_t len, uint32_t nq, bool list,
			 char **names, size_t nnames, bool *hit)
{
	for (uint32_t i = 0; i < nq; i++) {
		char q[NBD_MAX_STRING + 1];
		size_t qn = take_string(d + pos, len - pos, q);

		if (qn == 0)
			return false;
		pos += qn;
		for (size_t k = 0; names && k < nnames; k++)
			hit[k] = hit[k] || meta_match(q, names[k], list);
	}
	return pos == len;
}

/* LIST_META_CONTEXT and SET_META_CONTEXT: base:allocation, and whatever
 * the export's engine offers (contexts of np_hs_ops). An empty LIST lists
 * them all; SET replaces the selection with the names asked for, at most
 * NP_HS_MAX_META of them. */
static void opt_meta(struct np_hs *hs, uint32_t opt, const uint8_t *d, size_t len)
{
	char name[NBD_MAX_STRING + 1], **names;
	size_t n = take_string(d, len, name), nnames;
	bool list = opt == NBD_OPT_LIST_META_CONTEXT, too_many = false, *hit;
	uint32_t nq;

	if (!list && !hs->structured) {
		reply_err(hs, opt, NBD_REP_ERR_INVALID, "negotiate structured replies first");
		return;
	}
	if (n == 0 || len - n < 4) {
		reply_err(hs, opt, NBD_REP_ERR_INVALID, "malformed meta context option");
		return;
	}
	nq = np_get32(d + n);
	if (!meta_queries(d, n + 4, len, nq, list, NULL, 0, NULL)) {
		reply_err(hs, opt, NBD_REP_ERR_INVALID, "malformed meta context query");
		return;
	}
	if (!hs->ops->lookup(hs->ctx, name)) {
		reply_err(hs, opt, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	names = NULL;
	if (meta_names(hs, &names, &nnames) < 0 || !(hit = calloc(nnames, sizeof(*hit)))) {
		if (names)
			meta_names_free(names, nnames);
		hs->why = "out of memory";
		return;
	}
	meta_queries(d, n + 4, len, nq, list, names, nnames, hit);
	if (!list)
		meta_clear(hs);
	for (size_t k = 0; k < nnames && !hs->why; k++) {
		if (!hit[k] && !(list && nq == 0))
			continue;
		if (list)
			send_meta_context(hs, opt, 0, names[k]);
		else if (!meta_select(hs, names[k]))
			too_many = true;
	}
	meta_names_free(names, nnames);
	free(hit);
	if (too_many) {
		meta_clear(hs);
		reply_err(hs, opt, NBD_REP_ERR_TOO_BIG, "too many meta contexts selected");
		return;
	}
	for (unsigned i = 0; !list && i < hs->n_meta; i++)
		send_meta_context(hs, opt, i + 1, hs->meta[i]);
	reply(hs, opt, NBD_REP_ACK, NULL, 0);
}

/* EXPORT_NAME: the old way into transmission, which cannot send an error. */
static enum np_hs_status opt_export_name(struct np_hs *hs, const uint8_t *d, size_t len)
{
	char name[NBD_MAX_STRING + 1];
	const struct np_hs_export *e;
	uint8_t *p;

	if (len > NBD_MAX_STRING || memchr(d, 0, len)) {
		hs->why = "malformed export name";
		return NP_HS_CLOSE;
	}
	memcpy(name, d, len);
	name[len] = '\0';
	e = hs->ops->lookup(hs->ctx, name);
	if (!e) {
		hs->why = "unknown export requested with EXPORT_NAME";
		return NP_HS_CLOSE;
	}
	if (e->tls_only && !hs->tls_active) {
		hs->why = "TLS-only export requested with EXPORT_NAME without TLS";
		return NP_HS_CLOSE;
	}
	hs->export = e;
	hs->tflags = client_tflags(hs, e);
	p = np_buf_reserve(&hs->out, hs->no_zeroes ? 10 : 134);
	if (!p) {
		hs->why = "out of memory";
		return NP_HS_CLOSE;
	}
	np_put64(p, __atomic_load_n(&e->size, __ATOMIC_RELAXED));
	np_put16(p + 8, hs->tflags);
	if (!hs->no_zeroes)
		memset(p + 10, 0, 124);
	return NP_HS_GO;
}

static enum np_hs_status opt_starttls(struct np_hs *hs, size_t len)
{
	if (len) {
		reply_err(hs, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
	} else if (hs->tls_mode == NP_TLS_OFF) {
		reply_err(hs, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
			  "TLS is not configured on this server");
	} else if (hs->tls_active) {
		reply_err(hs, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already active");
	} else {
		reply(hs, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
		return NP_HS_STARTTLS;
	}
	return NP_HS_MORE;
}

static enum np_hs_status option(struct np_hs *hs, uint32_t opt, const uint8_t *d, size_t len)
{
	/* FORCEDTLS: before TLS, only STARTTLS and ABORT are answered. */
	if (hs->tls_mode == NP_TLS_REQUIRE && !hs->tls_active && opt != NBD_OPT_STARTTLS &&
	    opt != NBD_OPT_ABORT) {
		if (opt == NBD_OPT_EXPORT_NAME) {
			hs->why = "EXPORT_NAME without TLS on a server that requires it";
			return NP_HS_CLOSE;
		}
		reply_err(hs, opt, NBD_REP_ERR_TLS_REQD, "this server requires TLS");
		return NP_HS_MORE;
	}
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		return opt_export_name(hs, d, len);
	case NBD_OPT_GO:
	case NBD_OPT_INFO:
		return opt_info_go(hs, opt, d, len) ? NP_HS_GO : NP_HS_MORE;
	case NBD_OPT_LIST:
		opt_list(hs, len);
		return NP_HS_MORE;
	case NBD_OPT_ABORT:
		reply(hs, opt, NBD_REP_ACK, NULL, 0);
		hs->why = "client aborted the handshake";
		return NP_HS_CLOSE;
	case NBD_OPT_STARTTLS:
		return opt_starttls(hs, len);
	case NBD_OPT_STRUCTURED_REPLY:
	case NBD_OPT_EXTENDED_HEADERS:
		if (len) {
			reply_err(hs, opt, NBD_REP_ERR_INVALID, "option takes no data");
			return NP_HS_MORE;
		}
		hs->structured = true;
		if (opt == NBD_OPT_EXTENDED_HEADERS)
			hs->extended = true;
		reply(hs, opt, NBD_REP_ACK, NULL, 0);
		return NP_HS_MORE;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(hs, opt, d, len);
		return NP_HS_MORE;
	default:
		reply_err(hs, opt, NBD_REP_ERR_UNSUP, "option not supported");
		return NP_HS_MORE;
	}
}

enum np_hs_status np_hs_input(struct np_hs *hs, const uint8_t *in, size_t len, size_t *used)
{
	size_t pos = 0;
	enum np_hs_status st = NP_HS_MORE;

	while (st == NP_HS_MORE && !hs->why) {
		if (hs->state == NP_HS_CLIENT_FLAGS) {
			uint32_t cf;

			if (len - pos < 4)
				break;
			cf = np_get32(in + pos);
			pos += 4;
			if (cf & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
				hs->why = "unknown client flags";
				st = NP_HS_CLOSE;
			} else if (!(cf & NBD_FLAG_C_FIXED_NEWSTYLE)) {
				hs->why = "client does not speak fixed newstyle";
				st = NP_HS_CLOSE;
			}
			hs->no_zeroes = cf & NBD_FLAG_C_NO_ZEROES;
			hs->state = NP_HS_OPTIONS;
		} else if (hs->state == NP_HS_OPTIONS) {
			uint32_t opt, olen;

			if (len - pos < NBD_OPT_HDR_SIZE)
				break;
			if (np_get64(in + pos) != NBD_IHAVEOPT) {
				hs->why = "bad option magic";
				st = NP_HS_CLOSE;
				break;
			}
			opt = np_get32(in + pos + 8);
			olen = np_get32(in + pos + 12);
			if (olen > NP_HS_MAX_OPTION) {
				hs->why = "option too long";
				st = NP_HS_CLOSE;
				break;
			}
			if (len - pos < NBD_OPT_HDR_SIZE + olen)
				break;
			st = option(hs, opt, in + pos + NBD_OPT_HDR_SIZE, olen);
			pos += NBD_OPT_HDR_SIZE + olen;
		} else {
			break;
		}
	}
	if (st == NP_HS_MORE && hs->why)
		st = NP_HS_CLOSE;
	if (st == NP_HS_GO)
		hs->state = NP_HS_DONE;
	if (st == NP_HS_STARTTLS) {
		hs->structured = hs->extended = false;
		meta_clear(hs);
	}
	*used = pos;
	return st;
}
