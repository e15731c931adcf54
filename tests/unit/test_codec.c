/* The wire codec: every fixed message, both header sizes, bad input. */
#include <errno.h>
#include <string.h>

#include "net/proto.h"
#include "storage/storage.h"
#include "tests/unit/check.h"
#include "util/size.h"

static void test_request_roundtrip(bool ext)
{
	uint8_t buf[64];
	struct nbd_request in = {.flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
				 .type = NBD_CMD_WRITE,
				 .cookie = 0x0123456789abcdefULL,
				 .offset = 0xfedcba9876543210ULL,
				 .count = ext ? 0x1122334455ULL : 0x11223344U};
	struct nbd_request out;
	size_t n = nbd_request_encode(buf, ext, &in);

	CHECK(n == (ext ? NBD_EXT_REQUEST_SIZE : NBD_REQUEST_SIZE));
	CHECK(np_get32(buf) == (ext ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC));
	/* Every prefix shorter than the header asks for more. */
	for (size_t i = 0; i < n; i++)
		CHECK(nbd_request_decode(buf, i, ext, &out) == 0 || i >= 4);
	CHECK(nbd_request_decode(buf, n - 1, ext, &out) == 0);
	CHECK(nbd_request_decode(buf, n, ext, &out) == (int)n);
	CHECK(out.flags == in.flags && out.type == in.type && out.cookie == in.cookie);
	CHECK(out.offset == in.offset && out.count == in.count);
	/* The other header style's magic is refused. */
	CHECK(nbd_request_decode(buf, n, !ext, &out) == -EBADMSG);
	buf[0] ^= 0xff;
	CHECK(nbd_request_decode(buf, n, ext, &out) == -EBADMSG);
}

static void test_replies(void)
{
	uint8_t buf[64];
	struct nbd_reply r;

	nbd_simple_reply_encode(buf, NBD_EIO, 42);
	CHECK(nbd_reply_decode(buf, 15, &r) == 0);
	CHECK(nbd_reply_decode(buf, 16, &r) == 16);
	CHECK(r.magic == NBD_SIMPLE_REPLY_MAGIC && r.error == NBD_EIO && r.cookie == 42);

	CHECK(nbd_chunk_encode(buf, false, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 7, 99,
			       4104) == NBD_CHUNK_SIZE);
	CHECK(nbd_reply_decode(buf, 19, &r) == 0);
	CHECK(nbd_reply_decode(buf, 20, &r) == 20);
	CHECK(r.magic == NBD_STRUCTURED_REPLY_MAGIC && r.flags == NBD_REPLY_FLAG_DONE);
	CHECK(r.type == NBD_REPLY_TYPE_OFFSET_DATA && r.cookie == 7 && r.length == 4104);

	CHECK(nbd_chunk_encode(buf, true, 0, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 8, 1ULL << 40,
			       1ULL << 33) == NBD_EXT_CHUNK_SIZE);
	CHECK(nbd_reply_decode(buf, 31, &r) == 0);
	CHECK(nbd_reply_decode(buf, 32, &r) == 32);
	CHECK(r.magic == NBD_EXTENDED_REPLY_MAGIC && r.type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT);
	CHECK(r.offset == 1ULL << 40 && r.length == 1ULL << 33 && r.cookie == 8);

	np_put32(buf, 0xdeadbeef);
	CHECK(nbd_reply_decode(buf, 32, &r) == -EBADMSG);
	CHECK(nbd_reply_decode(buf, 3, &r) == 0);
}

static void test_options(void)
{
	uint8_t buf[32];

	nbd_opt_encode(buf, NBD_OPT_GO, 77);
	CHECK(np_get64(buf) == NBD_IHAVEOPT && np_get32(buf + 8) == NBD_OPT_GO);
	CHECK(np_get32(buf + 12) == 77);
	nbd_opt_reply_encode(buf, NBD_OPT_LIST, NBD_REP_ERR_UNSUP, 5);
	CHECK(np_get64(buf) == NBD_REP_MAGIC && np_get32(buf + 8) == NBD_OPT_LIST);
	CHECK(np_get32(buf + 12) == NBD_REP_ERR_UNSUP && np_get32(buf + 16) == 5);
	CHECK(strcmp(nbd_opt_name(NBD_OPT_EXTENDED_HEADERS), "EXTENDED_HEADERS") == 0);
	CHECK(strcmp(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "BLOCK_STATUS") == 0);
	CHECK(strcmp(nbd_cmd_name(999), "UNKNOWN") == 0);
}

/* The client's side of the handshake, as nbdplex attach decodes it. */
static void test_client_handshake(void)
{
	static const uint16_t want[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME};
	uint8_t buf[64];
	struct nbd_opt_reply rep;
	struct nbd_info info;
	uint64_t size = 0;
	uint16_t hflags = 0, tflags = 0;

	np_put64(buf, NBD_MAGIC);
	np_put64(buf + 8, NBD_IHAVEOPT);
	np_put16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	CHECK(nbd_greeting_decode(buf, 17, &hflags) == 0);
	CHECK(nbd_greeting_decode(buf, 18, &hflags) == NBD_GREETING_SIZE);
	CHECK(hflags == (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
	np_put64(buf + 8, 0x00420281861253ULL); /* oldstyle */
	CHECK(nbd_greeting_decode(buf, 18, &hflags) == -EBADMSG);

	/* Option replies round-trip through the server's encoder. */
	nbd_opt_reply_encode(buf, NBD_OPT_GO, NBD_REP_INFO, 12);
	CHECK(nbd_opt_reply_decode(buf, NBD_OPT_REPLY_HDR_SIZE - 1, &rep) == 0);
	CHECK(nbd_opt_reply_decode(buf, NBD_OPT_REPLY_HDR_SIZE, &rep) == NBD_OPT_REPLY_HDR_SIZE);
	CHECK(rep.opt == NBD_OPT_GO && rep.type == NBD_REP_INFO && rep.length == 12);
	buf[0] ^= 1;
	CHECK(nbd_opt_reply_decode(buf, NBD_OPT_REPLY_HDR_SIZE, &rep) == -EBADMSG);

	/* Infos: each type's own length; short ones are refused. */
	np_put16(buf, NBD_INFO_EXPORT);
	np_put64(buf + 2, 1ULL << 40);
	np_put16(buf + 10, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
	CHECK(nbd_info_decode(buf, 12, &info) == 12);
	CHECK(info.type == NBD_INFO_EXPORT && info.size == 1ULL << 40);
	CHECK(info.tflags == (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH));
	CHECK(nbd_info_decode(buf, 11, &info) == -EBADMSG);
	np_put16(buf, NBD_INFO_BLOCK_SIZE);
	np_put32(buf + 2, 512);
	np_put32(buf + 6, 4096);
	np_put32(buf + 10, 1U << 25);
	CHECK(nbd_info_decode(buf, 14, &info) == 14);
	CHECK(info.min_block == 512 && info.pref_block == 4096 && info.max_block == 1U << 25);
	CHECK(nbd_info_decode(buf, 13, &info) == -EBADMSG);
	np_put16(buf, NBD_INFO_NAME);
	CHECK(nbd_info_decode(buf, 5, &info) == 5 && info.type == NBD_INFO_NAME);
	CHECK(nbd_info_decode(buf, 1, &info) == -EBADMSG);

	np_put64(buf, 12345);
	np_put16(buf + 8, NBD_FLAG_HAS_FLAGS);
	CHECK(nbd_export_name_reply_decode(buf, 9, &size, &tflags) == 0);
	CHECK(nbd_export_name_reply_decode(buf, 10, &size, &tflags) == 10);
	CHECK(size == 12345 && tflags == NBD_FLAG_HAS_FLAGS);

	/* GO's data: name length, name, count, info types. */
	CHECK(nbd_opt_go_encode(buf, "disk", 4, want, 2) == 14);
	CHECK(np_get32(buf) == 4 && memcmp(buf + 4, "disk", 4) == 0);
	CHECK(np_get16(buf + 8) == 2 && np_get16(buf + 10) == NBD_INFO_BLOCK_SIZE);
	CHECK(np_get16(buf + 12) == NBD_INFO_NAME);
	CHECK(nbd_opt_go_encode(buf, "", 0, NULL, 0) == 6 && np_get16(buf + 4) == 0);
}

static void test_errors(void)
{
	CHECK(nbd_errno_to_wire(0) == 0);
	CHECK(nbd_errno_to_wire(-EROFS) == NBD_EPERM);
	CHECK(nbd_errno_to_wire(-ENOSPC) == NBD_ENOSPC);
	CHECK(nbd_errno_to_wire(-EDQUOT) == NBD_ENOSPC);
	CHECK(nbd_errno_to_wire(-EINVAL) == NBD_EINVAL);
	CHECK(nbd_errno_to_wire(-ENOTSUP) == NBD_ENOTSUP);
	CHECK(nbd_errno_to_wire(-EBADF) == NBD_EIO);
	for (uint32_t e = 0; e < 200; e++) {
		int neg = nbd_wire_to_errno(e);

		/* Every wire error survives a round trip or becomes EIO. */
		CHECK(nbd_errno_to_wire(neg) == e || nbd_errno_to_wire(neg) == NBD_EIO);
	}
}

static void test_sizes(void)
{
	uint64_t v;

	CHECK(np_parse_size("512", &v) == 0 && v == 512);
	CHECK(np_parse_size("4k", &v) == 0 && v == 4096);
	CHECK(np_parse_size("64M", &v) == 0 && v == 64ULL << 20);
	CHECK(np_parse_size("1G", &v) == 0 && v == 1ULL << 30);
	CHECK(np_parse_size("2TiB", &v) == 0 && v == 2ULL << 40);
	CHECK(np_parse_size("", &v) == -EINVAL);
	CHECK(np_parse_size("-1", &v) == -EINVAL);
	CHECK(np_parse_size("12Q", &v) == -EINVAL);
	CHECK(np_parse_size("1Mx", &v) == -EINVAL);
	CHECK(np_parse_size("99999999999999T", &v) == -EINVAL);
}

static void test_extents(void)
{
	struct np_extent e[2];
	struct np_io io = {.extents = e, .max_extents = 2};

	CHECK(np_io_add_extent(&io, 10, 0));
	CHECK(np_io_add_extent(&io, 5, 0)); /* merged */
	CHECK(io.n_extents == 1 && e[0].length == 15);
	CHECK(np_io_add_extent(&io, 7, NBD_STATE_HOLE));
	CHECK(!np_io_add_extent(&io, 7, 0)); /* full */
	CHECK(io.n_extents == 2 && e[1].length == 7);
}

int main(void)
{
	test_request_roundtrip(false);
	test_request_roundtrip(true);
	test_replies();
	test_options();
	test_client_handshake();
	test_errors();
	test_sizes();
	test_extents();
	return check_done();
}
