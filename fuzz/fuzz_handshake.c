/* libFuzzer target: the handshake state machine (net/handshake.c).
 *
 * The input is what a client sends after the server's greeting: client
 * flags, then options. It is fed twice, once whole and once split into
 * reads of sizes drawn from a hash of the input, the way the server feeds
 * its input buffer (unconsumed bytes stay and new ones are appended). After
 * every call:
 *   - used <= len, and the machine consumed whole messages only;
 *   - when it asks for more, what is left is not a complete message;
 *   - its output is, for each option consumed, replies with NBD_REP_MAGIC
 *     and that option's code, of types that option may send, ending with
 *     an ACK or an error (EXPORT_NAME: the export's size and flags);
 *   - GO and CLOSE come with an export or a reason.
 * Both feedings must produce the same bytes and the same outcome. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "net/handshake.h"
#include "net/proto.h"

static char long_name[NBD_MAX_STRING + 1];
static char long_desc[NBD_MAX_STRING + 100];

static struct np_hs_export exports[] = {
    {.name = "disk",
     .description = "the disk",
     .size = 1 << 20,
     .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF |
	       NBD_FLAG_BLOCK_STATUS_PAYLOAD,
     .min_block = 1,
     .pref_block = 4096,
     .max_block = 1 << 25},
    {.name = "ro",
     .size = 4096,
     .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY,
     .min_block = 512,
     .pref_block = 4096,
     .max_block = 1 << 20},
    {.name = "hidden",
     .size = 0,
     .tflags = NBD_FLAG_HAS_FLAGS,
     .hidden = true,
     .min_block = 1,
     .pref_block = 4096,
     .max_block = 1 << 25},
    {.name = long_name,
     .description = long_desc,
     .size = UINT64_MAX,
     .tflags = NBD_FLAG_HAS_FLAGS,
     .min_block = 1,
     .pref_block = 1,
     .max_block = 1},
};

#define N_EXPORTS (sizeof(exports) / sizeof(exports[0]))

/* The meta contexts "disk" offers besides base:allocation, one more than
 * a connection may select (NP_HS_MAX_META). */
static const char *const disk_contexts[] = {
    "qemu:allocation-depth", "qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1", "qemu:dirty-bitmap:b2",
    "qemu:dirty-bitmap:b3",  "qemu:dirty-bitmap:b4", "qemu:dirty-bitmap:b5", "qemu:dirty-bitmap:b6",
    "qemu:dirty-bitmap:b7",  "qemu:dirty-bitmap:b8",
};
#define N_DISK_CONTEXTS (sizeof(disk_contexts) / sizeof(disk_contexts[0]))

static const struct np_hs_export *last_found; /* for contexts() */

static const struct np_hs_export *lookup(void *ctx, const char *name)
{
	(void)ctx;
	last_found = NULL;
	if (!*name)
		return last_found = &exports[0];
	for (size_t i = 0; i < N_EXPORTS; i++)
		if (!strcmp(exports[i].name, name))
			return last_found = &exports[i];
	return NULL;
}

static int contexts(void *ctx, char ***names, size_t *n)
{
	(void)ctx;
	*names = NULL;
	*n = 0;
	if (last_found != &exports[0])
		return 0;
	*names = malloc(N_DISK_CONTEXTS * sizeof(**names));
	REQUIRE(*names);
	for (size_t i = 0; i < N_DISK_CONTEXTS; i++)
		REQUIRE(((*names)[i] = strdup(disk_contexts[i])));
	*n = N_DISK_CONTEXTS;
	return 0;
}

static bool known_context(const uint8_t *p, size_t len)
{
	if (len == strlen(NBD_META_BASE_ALLOCATION) && !memcmp(p, NBD_META_BASE_ALLOCATION, len))
		return true;
	for (size_t i = 0; i < N_DISK_CONTEXTS; i++)
		if (len == strlen(disk_contexts[i]) && !memcmp(p, disk_contexts[i], len))
			return true;
	return false;
}

static const struct np_hs_export *nth(void *ctx, size_t i)
{
	(void)ctx;
	return i < N_EXPORTS ? &exports[i] : NULL;
}

static const struct np_hs_ops ops = {.lookup = lookup, .nth = nth, .contexts = contexts};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	memset(long_name, 'n', NBD_MAX_STRING);
	memset(long_desc, 'd', sizeof(long_desc) - 1);
	return 0;
}

/* One feeding of the input. */
struct run {
	struct np_hs hs;
	enum np_hs_status st;
	size_t consumed; /* of the input */
	uint8_t *out;    /* everything the machine sent after the greeting */
	size_t out_len;
	uint32_t last_opt;
	bool meta; /* the last SET_META_CONTEXT that settled selected base:allocation */
};

static bool is_export(const struct np_hs_export *e)
{
	return e >= exports && e < exports + N_EXPORTS;
}

static void check_info(uint32_t opt, const uint8_t *p, uint32_t len)
{
	REQUIRE(opt == NBD_OPT_INFO || opt == NBD_OPT_GO);
	REQUIRE(len >= 2);
	switch (np_get16(p)) {
	case NBD_INFO_EXPORT: {
		bool found = false;

		REQUIRE(len == 12);
		for (size_t i = 0; i < N_EXPORTS; i++)
			found |= exports[i].size == np_get64(p + 2);
		REQUIRE(found);
		REQUIRE(np_get16(p + 10) & NBD_FLAG_HAS_FLAGS);
		break;
	}
	case NBD_INFO_NAME:
	case NBD_INFO_DESCRIPTION:
		REQUIRE(len - 2 <= NBD_MAX_STRING);
		break;
	case NBD_INFO_BLOCK_SIZE:
		REQUIRE(len == 14);
		REQUIRE(np_get32(p + 2) <= np_get32(p + 6) && np_get32(p + 6) <= np_get32(p + 10));
		break;
	default:
		REQUIRE(!"unexpected NBD_INFO type");
	}
}

/* The data of the option whose replies check_replies reads, for
 * check_meta_query. */
static const uint8_t *opt_data;
static uint32_t opt_len;

/* A context was granted: a query of the option named it, whole, or, in a
 * listing, by a prefix that ends with a colon, or the listing had no
 * query at all. */
static void check_meta_query(uint32_t opt, const uint8_t *ctx, size_t ctx_len)
{
	const uint8_t *d = opt_data;
	uint32_t len = opt_len, name_len, nq, pos;
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;

	REQUIRE(len >= 8);
	name_len = np_get32(d);
	REQUIRE(name_len <= len - 8);
	nq = np_get32(d + 4 + name_len);
	pos = 8 + name_len;
	if (list && nq == 0)
		return;
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t ql;

		REQUIRE(len - pos >= 4);
		ql = np_get32(d + pos);
		REQUIRE(ql <= len - pos - 4);
		if ((ql == ctx_len && !memcmp(d + pos + 4, ctx, ql)) ||
		    (list && ql > 0 && ql <= ctx_len && d[pos + 4 + ql - 1] == ':' &&
		     !memcmp(d + pos + 4, ctx, ql)))
			return;
		pos += 4 + ql;
	}
	REQUIRE(!"a context granted that no query named");
}

/* Checks the replies to one option at out[*pos..len); advances *pos past
 * them and returns the type of the last. *meta says whether a context
 * was among them. */
static uint32_t check_replies(uint32_t opt, const uint8_t *out, size_t len, size_t *pos, bool *meta)
{
	*meta = false;
	for (;;) {
		const uint8_t *p = out + *pos;
		uint32_t type, rlen;

		REQUIRE(len - *pos >= NBD_OPT_REPLY_HDR_SIZE);
		REQUIRE(np_get64(p) == NBD_REP_MAGIC);
		REQUIRE(np_get32(p + 8) == opt);
		type = np_get32(p + 12);
		rlen = np_get32(p + 16);
		REQUIRE(rlen <= len - *pos - NBD_OPT_REPLY_HDR_SIZE);
		*pos += NBD_OPT_REPLY_HDR_SIZE + rlen;
		p += NBD_OPT_REPLY_HDR_SIZE;
		if (type & 0x80000000U) {
			REQUIRE(type >= NBD_REP_ERR_UNSUP && type <= NBD_REP_ERR_EXT_HEADER_REQD);
			return type;
		}
		switch (type) {
		case NBD_REP_ACK:
			REQUIRE(rlen == 0);
			return type;
		case NBD_REP_SERVER:
			REQUIRE(opt == NBD_OPT_LIST);
			REQUIRE(rlen >= 4 && np_get32(p) <= rlen - 4);
			REQUIRE(np_get32(p) <= NBD_MAX_STRING);
			break;
		case NBD_REP_INFO:
			check_info(opt, p, rlen);
			break;
		case NBD_REP_META_CONTEXT:
			REQUIRE(opt == NBD_OPT_LIST_META_CONTEXT ||
				opt == NBD_OPT_SET_META_CONTEXT);
			REQUIRE(rlen >= 4 && known_context(p + 4, rlen - 4));
			/* A listing's ids are 0, a selection's 1 to the most. */
			if (opt == NBD_OPT_LIST_META_CONTEXT)
				REQUIRE(np_get32(p) == 0);
			else
				REQUIRE(np_get32(p) >= 1 && np_get32(p) <= NP_HS_MAX_META);
			check_meta_query(opt, p + 4, rlen - 4);
			if (rlen - 4 == strlen(NBD_META_BASE_ALLOCATION) &&
			    !memcmp(p + 4, NBD_META_BASE_ALLOCATION, rlen - 4))
				*meta = true;
			break;
		default:
			REQUIRE(!"unexpected option reply type");
		}
	}
}

/* Checks what one call consumed, in[from..to), against what it sent. */
static void check_call(struct run *r, const uint8_t *in, size_t from, size_t to)
{
	const uint8_t *out = r->hs.out.data;
	size_t len = r->hs.out.len, pos = 0, at = from;

	if (at == 0 && to >= 4)
		at = 4; /* the client flags get no reply */
	while (at < to) {
		uint32_t opt, olen, last;
		bool meta;

		REQUIRE(to - at >= NBD_OPT_HDR_SIZE);
		REQUIRE(np_get64(in + at) == NBD_IHAVEOPT);
		opt = np_get32(in + at + 8);
		olen = np_get32(in + at + 12);
		REQUIRE(olen <= NP_HS_MAX_OPTION && to - at >= NBD_OPT_HDR_SIZE + olen);
		at += NBD_OPT_HDR_SIZE + olen;
		r->last_opt = opt;
		if (opt == NBD_OPT_EXPORT_NAME) {
			/* Ends the negotiation, one way or the other. */
			REQUIRE(at == to && r->st != NP_HS_MORE);
			if (r->st == NP_HS_GO) {
				size_t want = r->hs.no_zeroes ? 10 : 134;

				REQUIRE(len - pos == want);
				REQUIRE(np_get64(out + pos) == r->hs.export->size);
				REQUIRE(np_get16(out + pos + 8) == r->hs.tflags);
				for (size_t i = 10; i < want; i++)
					REQUIRE(out[pos + i] == 0);
				pos = len;
			}
			break;
		}
		opt_data = in + at - olen;
		opt_len = olen;
		last = check_replies(opt, out, len, &pos, &meta);
		/* An ACK settles the selection, and so does TOO_BIG (none). */
		if (opt == NBD_OPT_SET_META_CONTEXT &&
		    (last == NBD_REP_ACK || last == NBD_REP_ERR_TOO_BIG))
			r->meta = meta;
		if (opt == NBD_OPT_ABORT) {
			REQUIRE(last == NBD_REP_ACK && at == to && r->st == NP_HS_CLOSE);
		} else if (at == to && r->st == NP_HS_GO) {
			REQUIRE(opt == NBD_OPT_GO && last == NBD_REP_ACK);
		}
	}
	REQUIRE(at == to);
	REQUIRE(pos == len);
}

/* After NP_HS_MORE, the bytes left must not hold a complete message. */
static void check_incomplete(const struct run *r, const uint8_t *in, size_t len)
{
	size_t left = len - r->consumed;
	const uint8_t *p = in + r->consumed;

	if (r->hs.state == NP_HS_CLIENT_FLAGS) {
		REQUIRE(left < 4);
		return;
	}
	REQUIRE(r->hs.state == NP_HS_OPTIONS);
	if (left < NBD_OPT_HDR_SIZE)
		return;
	REQUIRE(np_get64(p) == NBD_IHAVEOPT);
	REQUIRE(np_get32(p + 12) <= NP_HS_MAX_OPTION);
	REQUIRE(left < NBD_OPT_HDR_SIZE + (size_t)np_get32(p + 12));
}

/* Feeds in[0..len) in reads of sizes drawn from seed; 0 means all at once. */
static void feed(struct run *r, const uint8_t *in, size_t len, uint64_t seed)
{
	size_t fed = 0;

	memset(r, 0, sizeof(*r));
	np_hs_init(&r->hs, &ops, NULL);
	REQUIRE(!r->hs.why && r->hs.out.len == 18);
	REQUIRE(np_get64(r->hs.out.data) == NBD_MAGIC);
	REQUIRE(np_get64(r->hs.out.data + 8) == NBD_IHAVEOPT);
	REQUIRE(np_get16(r->hs.out.data + 16) == (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
	r->hs.out.len = 0;
	r->st = NP_HS_MORE;
	while (r->st == NP_HS_MORE && fed < len) {
		size_t n = len - fed, avail, used = 0;
		uint8_t *buf;

		if (seed) {
			/* xorshift: mostly small reads, sometimes one byte or the rest. */
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			switch (seed % 4) {
			case 0:
				n = 1;
				break;
			case 1:
			case 2:
				n = 1 + (seed >> 8) % 40;
				break;
			}
			if (n > len - fed)
				n = len - fed;
		}
		fed += n;
		/* An exact-size copy, so that reading past len is caught. */
		avail = fed - r->consumed;
		buf = malloc(avail ? avail : 1);
		REQUIRE(buf);
		memcpy(buf, in + r->consumed, avail);
		r->st = np_hs_input(&r->hs, buf, avail, &used);
		free(buf);
		REQUIRE(used <= avail);
		REQUIRE(r->st == NP_HS_MORE || r->st == NP_HS_GO || r->st == NP_HS_CLOSE);
		check_call(r, in, r->consumed, r->consumed + used);
		r->consumed += used;
		if (r->hs.out.len) {
			r->out = realloc(r->out, r->out_len + r->hs.out.len);
			REQUIRE(r->out);
			memcpy(r->out + r->out_len, r->hs.out.data, r->hs.out.len);
			r->out_len += r->hs.out.len;
			r->hs.out.len = 0;
		}
		if (r->st == NP_HS_MORE) {
			REQUIRE(!r->hs.why);
			check_incomplete(r, in, fed);
		}
	}
	if (r->st == NP_HS_GO) {
		REQUIRE(r->hs.state == NP_HS_DONE && is_export(r->hs.export));
		REQUIRE(r->hs.tflags == (r->hs.tflags & r->hs.export->tflags));
		if (!r->hs.structured)
			REQUIRE(!(r->hs.tflags & NBD_FLAG_SEND_DF));
		if (!r->hs.extended)
			REQUIRE(!(r->hs.tflags & NBD_FLAG_BLOCK_STATUS_PAYLOAD));
		/* base:allocation is on exactly when the last accepted
		 * SET_META_CONTEXT said so. */
		REQUIRE(r->hs.meta_base_allocation == r->meta);
		if (r->hs.meta_base_allocation)
			REQUIRE(r->hs.structured);
	} else if (r->st == NP_HS_CLOSE) {
		REQUIRE(r->hs.why && *r->hs.why);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, split;
	uint64_t seed = fuzz_hash(data, size) | 1;

	feed(&whole, data, size, 0);
	feed(&split, data, size, seed);
	REQUIRE(whole.st == split.st);
	REQUIRE(whole.consumed == split.consumed);
	REQUIRE(whole.out_len == split.out_len);
	REQUIRE(!whole.out_len || !memcmp(whole.out, split.out, whole.out_len));
	np_hs_free(&whole.hs);
	np_hs_free(&split.hs);
	free(whole.out);
	free(split.out);
	return 0;
}
