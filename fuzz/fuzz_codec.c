/* libFuzzer target: the request and reply codec (net/codec.c).
 *
 * The input is decoded as a request header of both sizes and as a reply
 * header of the three kinds. A decoder must return 0 exactly when the bytes
 * are too few, -EBADMSG exactly on a wrong magic, and otherwise the header
 * size; a decoded header re-encodes to the very bytes it came from. The
 * input is also parsed as a stream of requests the way the server parses a
 * socket read, and its 32-bit words go through the error mapping, which
 * must round-trip every NBD error it knows and map the rest to EIO. The
 * client side's decoders (greeting, option reply, info, EXPORT_NAME reply)
 * get the same input. */
#include <errno.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "net/proto.h"

static void check_request(const uint8_t *in, size_t len, bool ext)
{
	size_t need = ext ? NBD_EXT_REQUEST_SIZE : NBD_REQUEST_SIZE;
	uint32_t magic = ext ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC;
	uint8_t again[NBD_EXT_REQUEST_SIZE];
	struct nbd_request req;
	int r = nbd_request_decode(in, len, ext, &req);

	if (len < 4) {
		REQUIRE(r == 0);
	} else if (np_get32(in) != magic) {
		REQUIRE(r == -EBADMSG);
	} else if (len < need) {
		REQUIRE(r == 0);
	} else {
		REQUIRE(r == (int)need);
		if (!ext)
			REQUIRE(req.count <= UINT32_MAX);
		REQUIRE(nbd_request_encode(again, ext, &req) == need);
		REQUIRE(!memcmp(again, in, need));
	}
}

static void check_reply(const uint8_t *in, size_t len)
{
	uint8_t again[NBD_EXT_CHUNK_SIZE];
	struct nbd_reply rep;
	int r = nbd_reply_decode(in, len, &rep);
	size_t need;

	if (len < 4) {
		REQUIRE(r == 0);
		return;
	}
	switch (np_get32(in)) {
	case NBD_SIMPLE_REPLY_MAGIC:
		need = NBD_SIMPLE_REPLY_SIZE;
		break;
	case NBD_STRUCTURED_REPLY_MAGIC:
		need = NBD_CHUNK_SIZE;
		break;
	case NBD_EXTENDED_REPLY_MAGIC:
		need = NBD_EXT_CHUNK_SIZE;
		break;
	default:
		REQUIRE(r == -EBADMSG);
		return;
	}
	if (len < need) {
		REQUIRE(r == 0);
		return;
	}
	REQUIRE(r == (int)need);
	REQUIRE(rep.magic == np_get32(in));
	if (rep.magic == NBD_SIMPLE_REPLY_MAGIC) {
		REQUIRE(rep.flags == 0 && rep.type == 0 && rep.offset == 0 && rep.length == 0);
		nbd_simple_reply_encode(again, rep.error, rep.cookie);
	} else {
		bool ext = rep.magic == NBD_EXTENDED_REPLY_MAGIC;

		REQUIRE(rep.error == 0);
		if (!ext)
			REQUIRE(rep.offset == 0 && rep.length <= UINT32_MAX);
		REQUIRE(nbd_chunk_encode(again, ext, rep.flags, rep.type, rep.cookie, rep.offset,
					 rep.length) == need);
	}
	REQUIRE(!memcmp(again, in, need));
}

/* Requests back to back, as in one socket read; the first byte picks the
 * header size. */
static void check_stream(const uint8_t *in, size_t len)
{
	bool ext = len && (in[0] & 1);
	size_t pos = 1;

	while (pos < len) {
		struct nbd_request req;
		int r = nbd_request_decode(in + pos, len - pos, ext, &req);

		REQUIRE(r == 0 || r == -EBADMSG || r == (ext ? 32 : 28));
		if (r <= 0)
			break;
		pos += (size_t)r;
		REQUIRE(pos <= len);
		REQUIRE(nbd_cmd_name(req.type) != NULL);
	}
}

static bool known_wire_error(uint32_t e)
{
	switch (e) {
	case 0:
	case NBD_EPERM:
	case NBD_EIO:
	case NBD_ENOMEM:
	case NBD_EINVAL:
	case NBD_ENOSPC:
	case NBD_EOVERFLOW:
	case NBD_ENOTSUP:
	case NBD_ESHUTDOWN:
		return true;
	default:
		return false;
	}
}

static void check_words(const uint8_t *in, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i += 4) {
		uint32_t w = np_get32(in + i);
		int e = nbd_wire_to_errno(w);

		REQUIRE(e <= 0 && (e == 0) == (w == 0));
		REQUIRE(nbd_errno_to_wire(e) == (known_wire_error(w) ? w : NBD_EIO));
		REQUIRE(known_wire_error(nbd_errno_to_wire(-(int)(w & 0xffff))));
		REQUIRE(nbd_opt_name(w) && *nbd_opt_name(w));
		REQUIRE(nbd_cmd_name((uint16_t)w) && *nbd_cmd_name((uint16_t)w));
	}
}

/* The client side of the handshake (nbdplex attach): each decoder needs
 * its fixed size, refuses a wrong magic, and an option reply re-encodes to
 * its bytes; an info decodes all of its data or refuses it as too short. */
static void check_client(const uint8_t *in, size_t len)
{
	uint8_t again[NBD_OPT_REPLY_HDR_SIZE];
	struct nbd_opt_reply rep;
	struct nbd_info info;
	uint64_t size;
	uint16_t flags;
	int r = nbd_greeting_decode(in, len, &flags);

	if (len < NBD_GREETING_SIZE)
		REQUIRE(r == 0);
	else
		REQUIRE(r == (np_get64(in) == NBD_MAGIC && np_get64(in + 8) == NBD_IHAVEOPT
				  ? NBD_GREETING_SIZE
				  : -EBADMSG));
	r = nbd_opt_reply_decode(in, len, &rep);
	if (len < NBD_OPT_REPLY_HDR_SIZE) {
		REQUIRE(r == 0);
	} else if (np_get64(in) != NBD_REP_MAGIC) {
		REQUIRE(r == -EBADMSG);
	} else {
		REQUIRE(r == NBD_OPT_REPLY_HDR_SIZE);
		nbd_opt_reply_encode(again, rep.opt, rep.type, rep.length);
		REQUIRE(!memcmp(again, in, sizeof(again)));
	}
	r = nbd_info_decode(in, len, &info);
	REQUIRE(r == (int)len || r == -EBADMSG);
	if (len < 2)
		REQUIRE(r == -EBADMSG);
	r = nbd_export_name_reply_decode(in, len, &size, &flags);
	REQUIRE(r == (len < NBD_EXPORT_NAME_REPLY_SIZE ? 0 : NBD_EXPORT_NAME_REPLY_SIZE));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_request(data, size, false);
	check_request(data, size, true);
	check_reply(data, size);
	check_stream(data, size);
	check_words(data, size);
	check_client(data, size);
	return 0;
}
