/* The handshake state machine, fed byte strings as a client would send. */
#include <string.h>

#include "net/handshake.h"
#include "net/proto.h"
#include "tests/unit/check.h"

static const struct np_hs_export exports[] = {
	{.name = "disk", .description = "the disk", .size = 1 << 20,
	 .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF,
	 .min_block = 1, .pref_block = 4096, .max_block = 1 << 25},
	{.name = "other", .size = 4096, .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY,
	 .min_block = 512, .pref_block = 4096, .max_block = 1 << 20},
	{.name = "secret", .size = 4096, .tflags = NBD_FLAG_HAS_FLAGS, .hidden = true},
};

static const struct np_hs_export *lookup(void *ctx, const char *name)
{
	(void)ctx;
	if (!*name)
		return &exports[0];
	for (size_t i = 0; i < 3; i++)
		if (!strcmp(exports[i].name, name))
			return &exports[i];
	return NULL;
}

static const struct np_hs_export *nth(void *ctx, size_t i)
{
	(void)ctx;
	return i < 3 ? &exports[i] : NULL;
}

static const struct np_hs_ops ops = {.lookup = lookup, .nth = nth};

struct msg {
	uint8_t b[8192];
	size_t n;
};

static void put32(struct msg *m, uint32_t v)
{
	np_put32(m->b + m->n, v);
	m->n += 4;
}

static void put16(struct msg *m, uint16_t v)
{
	np_put16(m->b + m->n, v);
	m->n += 2;
}

static void puts_(struct msg *m, const char *s)
{
	memcpy(m->b + m->n, s, strlen(s));
	m->n += strlen(s);
}

static void option(struct msg *m, uint32_t opt, const struct msg *data)
{
	nbd_opt_encode(m->b + m->n, opt, data ? (uint32_t)data->n : 0);
	m->n += NBD_OPT_HDR_SIZE;
	if (data) {
		memcpy(m->b + m->n, data->b, data->n);
		m->n += data->n;
	}
}

/* Starts a handshake past the greeting and the client flags. */
static void start(struct np_hs *hs, uint32_t cflags)
{
	uint8_t f[4];
	size_t used;

	np_hs_init(hs, &ops, NULL);
	CHECK(hs->out.len == 18);
	CHECK(np_get64(hs->out.data) == NBD_MAGIC);
	CHECK(np_get64(hs->out.data + 8) == NBD_IHAVEOPT);
	CHECK(np_get16(hs->out.data + 16) == (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
	hs->out.len = 0;
	np_put32(f, cflags);
	CHECK(np_hs_input(hs, f, 4, &used) == NP_HS_MORE && used == 4);
}

/* Walks the option replies in hs->out; returns how many there were and
 * the type of the last. */
struct walk {
	unsigned n;
	uint32_t last_type;
	uint32_t types[32];
	size_t off[32];
	uint32_t len[32];
};

static void walk(struct np_hs *hs, uint32_t opt, struct walk *w)
{
	size_t pos = 0;

	memset(w, 0, sizeof(*w));
	while (pos + NBD_OPT_REPLY_HDR_SIZE <= hs->out.len && w->n < 32) {
		const uint8_t *p = hs->out.data + pos;

		CHECK(np_get64(p) == NBD_REP_MAGIC);
		CHECK(np_get32(p + 8) == opt);
		w->types[w->n] = np_get32(p + 12);
		w->len[w->n] = np_get32(p + 16);
		w->off[w->n] = pos + NBD_OPT_REPLY_HDR_SIZE;
		w->last_type = w->types[w->n];
		pos += NBD_OPT_REPLY_HDR_SIZE + w->len[w->n];
		w->n++;
	}
	CHECK(pos == hs->out.len);
	hs->out.len = 0;
}

static enum np_hs_status feed(struct np_hs *hs, const struct msg *m)
{
	size_t used = 0;
	enum np_hs_status st = np_hs_input(hs, m->b, m->n, &used);

	CHECK(used == m->n || st != NP_HS_MORE);
	return st;
}

static void go_data(struct msg *d, const char *name, int n_info, const uint16_t *info)
{
	d->n = 0;
	put32(d, (uint32_t)strlen(name));
	puts_(d, name);
	put16(d, (uint16_t)n_info);
	for (int i = 0; i < n_info; i++)
		put16(d, info[i]);
}

static void test_list_and_unknown(void)
{
	struct np_hs hs;
	struct msg m = {0};
	struct walk w;

	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	option(&m, NBD_OPT_LIST, NULL);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_LIST, &w);
	CHECK(w.n == 3); /* two visible exports and the ACK; "secret" is hidden */
	CHECK(w.types[0] == NBD_REP_SERVER && w.types[2] == NBD_REP_ACK);

	m.n = 0;
	option(&m, 1234, NULL);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, 1234, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_UNSUP);

	m.n = 0;
	option(&m, NBD_OPT_STARTTLS, NULL);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_STARTTLS, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_POLICY);

	/* LIST with data is malformed but not fatal. */
	{
		struct msg d = {.n = 3};

		m.n = 0;
		option(&m, NBD_OPT_LIST, &d);
		CHECK(feed(&hs, &m) == NP_HS_MORE);
		walk(&hs, NBD_OPT_LIST, &w);
		CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_INVALID);
	}
	np_hs_free(&hs);
}

static void test_go(void)
{
	struct np_hs hs;
	struct msg m = {0}, d;
	struct walk w;
	uint16_t info[] = {NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE};

	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	/* INFO for an unknown export. */
	go_data(&d, "nope", 0, NULL);
	option(&m, NBD_OPT_INFO, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_INFO, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_UNKNOWN);

	/* A GO whose request count disagrees with its length. */
	go_data(&d, "disk", 1, info);
	d.n -= 1;
	m.n = 0;
	option(&m, NBD_OPT_GO, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_GO, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_INVALID);

	/* INFO without structured replies: no DF in the flags. */
	go_data(&d, "disk", 3, info);
	m.n = 0;
	option(&m, NBD_OPT_INFO, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_INFO, &w);
	CHECK(w.n == 5 && w.last_type == NBD_REP_ACK);
	CHECK(np_get16(hs.out.data + w.off[0]) == NBD_INFO_EXPORT);
	CHECK(np_get64(hs.out.data + w.off[0] + 2) == 1 << 20);
	CHECK(!(np_get16(hs.out.data + w.off[0] + 10) & NBD_FLAG_SEND_DF));
	CHECK(np_get16(hs.out.data + w.off[1]) == NBD_INFO_NAME);
	CHECK(w.len[1] == 2 + 4 && !memcmp(hs.out.data + w.off[1] + 2, "disk", 4));
	CHECK(np_get16(hs.out.data + w.off[2]) == NBD_INFO_DESCRIPTION);
	CHECK(np_get16(hs.out.data + w.off[3]) == NBD_INFO_BLOCK_SIZE);
	CHECK(np_get32(hs.out.data + w.off[3] + 10) == 1 << 25);
	CHECK(hs.state == NP_HS_OPTIONS && !hs.export);

	/* Structured replies, then SET_META_CONTEXT, then GO on the default. */
	m.n = 0;
	option(&m, NBD_OPT_STRUCTURED_REPLY, NULL);
	d.n = 0;
	put32(&d, 4);
	puts_(&d, "disk");
	put32(&d, 2);
	put32(&d, 9);
	puts_(&d, "qemu:junk");
	put32(&d, 15);
	puts_(&d, "base:allocation");
	option(&m, NBD_OPT_SET_META_CONTEXT, &d);
	go_data(&d, "", 0, NULL);
	option(&m, NBD_OPT_GO, &d);
	/* Bytes past the GO belong to transmission and stay unconsumed. */
	memcpy(m.b + m.n, "XYZ", 3);
	{
		size_t used;

		CHECK(np_hs_input(&hs, m.b, m.n + 3, &used) == NP_HS_GO);
		CHECK(used == m.n);
	}
	CHECK(hs.structured && !hs.extended && hs.meta_base_allocation);
	CHECK(hs.export == &exports[0]);
	CHECK(hs.tflags & NBD_FLAG_SEND_DF);
	CHECK(hs.state == NP_HS_DONE);
	np_hs_free(&hs);
}

static void test_meta(void)
{
	struct np_hs hs;
	struct msg m = {0}, d = {0};
	struct walk w;

	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	put32(&d, 4);
	puts_(&d, "disk");
	put32(&d, 1);
	put32(&d, 15);
	puts_(&d, "base:allocation");
	option(&m, NBD_OPT_SET_META_CONTEXT, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_SET_META_CONTEXT, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_INVALID); /* needs structured first */

	d.n = 0;
	put32(&d, 4);
	puts_(&d, "disk");
	put32(&d, 1);
	put32(&d, 5);
	puts_(&d, "base:");
	m.n = 0;
	option(&m, NBD_OPT_LIST_META_CONTEXT, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_LIST_META_CONTEXT, &w);
	CHECK(w.n == 2 && w.types[0] == NBD_REP_META_CONTEXT && w.last_type == NBD_REP_ACK);
	CHECK(np_get32(hs.out.data + w.off[0]) == 0); /* a listing's id is 0 */

	/* A query whose length runs past the option. */
	d.n = 0;
	put32(&d, 4);
	puts_(&d, "disk");
	put32(&d, 1);
	put32(&d, 500);
	m.n = 0;
	option(&m, NBD_OPT_LIST_META_CONTEXT, &d);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_LIST_META_CONTEXT, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ERR_INVALID);

	/* Extended headers imply structured replies. */
	m.n = 0;
	option(&m, NBD_OPT_EXTENDED_HEADERS, NULL);
	CHECK(feed(&hs, &m) == NP_HS_MORE);
	walk(&hs, NBD_OPT_EXTENDED_HEADERS, &w);
	CHECK(w.n == 1 && w.last_type == NBD_REP_ACK);
	CHECK(hs.extended && hs.structured);
	np_hs_free(&hs);
}

static void test_export_name(bool no_zeroes)
{
	struct np_hs hs;
	struct msg m = {0}, d = {0};

	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE | (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0));
	puts_(&d, "other");
	option(&m, NBD_OPT_EXPORT_NAME, &d);
	CHECK(feed(&hs, &m) == NP_HS_GO);
	CHECK(hs.out.len == (no_zeroes ? 10u : 134u));
	CHECK(np_get64(hs.out.data) == 4096);
	CHECK(np_get16(hs.out.data + 8) & NBD_FLAG_READ_ONLY);
	np_hs_free(&hs);

	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	d.n = 0;
	puts_(&d, "missing");
	m.n = 0;
	option(&m, NBD_OPT_EXPORT_NAME, &d);
	CHECK(feed(&hs, &m) == NP_HS_CLOSE);
	CHECK(hs.why != NULL);
	np_hs_free(&hs);
}

static void test_fatal(void)
{
	struct np_hs hs;
	struct msg m = {0};
	size_t used;
	uint8_t f[4];

	/* Unknown client flags. */
	np_hs_init(&hs, &ops, NULL);
	np_put32(f, 0x80);
	CHECK(np_hs_input(&hs, f, 4, &used) == NP_HS_CLOSE);
	np_hs_free(&hs);

	/* Not fixed newstyle. */
	np_hs_init(&hs, &ops, NULL);
	np_put32(f, 0);
	CHECK(np_hs_input(&hs, f, 4, &used) == NP_HS_CLOSE);
	np_hs_free(&hs);

	/* Garbage instead of an option. */
	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	memset(m.b, 'A', 64);
	m.n = 64;
	CHECK(np_hs_input(&hs, m.b, m.n, &used) == NP_HS_CLOSE);
	np_hs_free(&hs);

	/* An option longer than we accept is refused before its data. */
	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	nbd_opt_encode(m.b, NBD_OPT_GO, NP_HS_MAX_OPTION + 1);
	CHECK(np_hs_input(&hs, m.b, NBD_OPT_HDR_SIZE, &used) == NP_HS_CLOSE);
	np_hs_free(&hs);

	/* A partial option waits for more. */
	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	m.n = 0;
	{
		struct msg d = {.n = 10};

		option(&m, NBD_OPT_INFO, &d);
	}
	for (size_t i = 0; i < m.n; i++) {
		CHECK(np_hs_input(&hs, m.b, i, &used) == NP_HS_MORE);
		CHECK(used == 0);
	}
	np_hs_free(&hs);

	/* ABORT is acknowledged, then the connection closes. */
	start(&hs, NBD_FLAG_C_FIXED_NEWSTYLE);
	m.n = 0;
	option(&m, NBD_OPT_ABORT, NULL);
	CHECK(feed(&hs, &m) == NP_HS_CLOSE);
	CHECK(hs.out.len == NBD_OPT_REPLY_HDR_SIZE && np_get32(hs.out.data + 12) == NBD_REP_ACK);
	np_hs_free(&hs);
}

int main(void)
{
	test_list_and_unknown();
	test_go();
	test_meta();
	test_export_name(false);
	test_export_name(true);
	test_fatal();
	return check_done();
}
