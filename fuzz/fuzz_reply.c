/* libFuzzer target: reply building (engine/reply.c).
 *
 * The input picks the negotiated options (byte 0), a READ's offset and
 * length (bytes 1-5), and its data: the rest of the input, cycled, each
 * byte a run of 64 to 8,192 bytes, all zeroes when its top bit is set. The
 * READ's reply is read back as a client would (tests/unit/reply_check.h):
 * it must decode, its chunks be in order and cover the READ exactly, DONE be
 * on the last only, there be no more than NP_REPLY_MAX_CHUNKS, and the data
 * it carries (holes as zeroes) be the data. The same bytes, as extents, make
 * a BLOCK_STATUS reply whose descriptors must stay within the request and
 * follow the extents. */
#include "fuzz/fuzz.h"
#include "net/handshake.h"
#include "tests/unit/reply_check.h"

#define MAX_LEN (1U << 20)
#define MAX_EXT 64

static void fill(uint8_t *data, uint64_t len, const uint8_t *in, size_t n)
{
	uint64_t at = 0;

	for (size_t i = 0; at < len; i = (i + 1) % n) {
		uint64_t run = ((uint64_t)(in[i] & 0x7f) + 1) * 64;

		if (run > len - at)
			run = len - at;
		memset(data + at, in[i] & 0x80 ? 0 : (in[i] | 1), run);
		at += run;
	}
}

static void check_read(const struct np_reply_opts *o, uint64_t off, const uint8_t *data,
		       uint64_t len)
{
	static uint8_t hdr[NP_REPLY_HDR_MAX], back[MAX_LEN];
	struct iovec iov[NP_REPLY_MAX_IOV];
	uint64_t mask = o->structured ? np_reply_zero_mask(data, off, len) : 0;
	unsigned n = np_reply_read(o, 42, off, data, len, mask, hdr, iov), chunks, holes;
	size_t used = 0;

	REQUIRE(n >= 1 && n <= NP_REPLY_MAX_IOV);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *b = iov[i].iov_base;

		if (b >= hdr && b < hdr + sizeof(hdr)) {
			REQUIRE(b == hdr + used); /* headers packed in order */
			used += iov[i].iov_len;
		}
	}
	REQUIRE(used <= sizeof(hdr));
	REQUIRE(reply_read_back(o, iov, n, 42, off, len, back, &chunks, &holes) == NULL);
	REQUIRE(memcmp(back, data, len) == 0);
	REQUIRE(chunks <= NP_REPLY_MAX_CHUNKS);
	REQUIRE(holes == 0 || mask != 0);
}

static void check_block_status(const struct np_reply_opts *o, uint64_t off, uint64_t len, bool one,
			       const uint8_t *in, size_t n)
{
	static uint8_t hdr[NP_REPLY_HDR_MAX], payload[MAX_EXT * 16];
	struct np_extent ext[MAX_EXT];
	struct iovec iov[NP_REPLY_MAX_IOV];
	uint32_t n_ext = 0, each = o->extended ? 16 : 8, count;
	uint64_t total = 0;
	size_t size;
	struct nbd_reply rep;

	for (size_t i = 0; i + 1 < n && n_ext < MAX_EXT; i += 2) {
		ext[n_ext].length = ((uint64_t)in[i] << 8 | in[i + 1]) * 512;
		ext[n_ext++].flags = in[i] & 3;
	}
	struct np_reply_meta m = {NP_META_BASE_ALLOCATION_ID, ext, n_ext};

	size = np_reply_block_status_size(o, len, one, &m, 1);
	REQUIRE(size % each == 0 && size <= sizeof(payload));
	REQUIRE(np_reply_block_status(o, 7, off, len, one, &m, 1, hdr, iov, payload) == 2);
	REQUIRE(iov[1].iov_base == payload && iov[1].iov_len == size);
	REQUIRE(nbd_reply_decode(hdr, iov[0].iov_len, &rep) > 0);
	REQUIRE(rep.flags == NBD_REPLY_FLAG_DONE && rep.cookie == 7);
	REQUIRE(rep.length ==
		iov[0].iov_len - (o->extended ? NBD_EXT_CHUNK_SIZE : NBD_CHUNK_SIZE) + size);
	REQUIRE(np_get32(hdr + iov[0].iov_len - (o->extended ? 8 : 4)) ==
		NP_META_BASE_ALLOCATION_ID);
	count = (uint32_t)(size / each);
	REQUIRE(count >= 1 && (!one || count == 1));
	REQUIRE(n_ext == 0 || count <= n_ext);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t l = o->extended ? np_get64(payload + i * 16) : np_get32(payload + i * 8);
		uint32_t f = o->extended ? (uint32_t)np_get64(payload + i * 16 + 8)
					 : np_get32(payload + i * 8 + 4);

		REQUIRE(n_ext == 0 ? (l == len && f == 0)
				   : (l <= ext[i].length && f == ext[i].flags));
		/* Only the last may be cut short. */
		REQUIRE(i + 1 == count || n_ext == 0 || l == ext[i].length);
		total += l;
	}
	REQUIRE(total <= len);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	static uint8_t data[MAX_LEN];
	struct np_reply_opts o;
	uint64_t off, len;

	if (size < 7)
		return 0;
	o.extended = in[0] & 2;
	o.structured = o.extended || (in[0] & 1);
	off = ((uint64_t)in[1] << 8 | in[2]) * 97;
	len = ((uint64_t)in[3] << 16 | (uint64_t)in[4] << 8 | in[5]) % MAX_LEN + 1;
	fill(data, len, in + 6, size - 6);
	check_read(&o, off, data, len);
	if (o.structured)
		check_block_status(&o, off, o.extended ? len : len & 0xffffffff, in[0] & 4, in + 6,
				   size - 6);
	return 0;
}
