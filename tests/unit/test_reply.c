/* Reply building (engine/reply.c) under each set of negotiated options:
 * READs with and without holes, the chunk limit, errors, empty successes
 * and block status, each read back through net/codec.c as a client would
 * (reply_check.h). */
#include <string.h>

#include "net/handshake.h"
#include "tests/unit/check.h"
#include "tests/unit/reply_check.h"

static const struct np_reply_opts SIMPLE = {false, false}, STRUCTURED = {true, false},
				  EXTENDED = {true, true};

static uint8_t hdr[NP_REPLY_HDR_MAX];
static struct iovec iov[NP_REPLY_MAX_IOV];

/* A READ whose data is in, the reply to it, and its reading back. */
static void read_round_trip(const struct np_reply_opts *o, const uint8_t *data, uint64_t off,
			    uint64_t len, unsigned *chunks, unsigned *holes)
{
	uint8_t *back = malloc(len);
	uint64_t mask = o->structured ? np_reply_zero_mask(data, off, len) : 0;
	unsigned n = np_reply_read(o, 0xc00c1e, off, data, len, mask, hdr, iov);
	const char *why;

	CHECK(n >= 1 && n <= NP_REPLY_MAX_IOV);
	memset(back, 0xee, len);
	why = reply_read_back(o, iov, n, 0xc00c1e, off, len, back, chunks, holes);
	if (why)
		fprintf(stderr, "read of %llu at %llu: %s\n", (unsigned long long)len,
			(unsigned long long)off, why);
	CHECK(why == NULL);
	CHECK(memcmp(back, data, len) == 0);
	free(back);
}

static void test_read(void)
{
	uint64_t len = 64 * 1024;
	uint8_t *data = malloc(len);
	unsigned chunks, holes;

	memset(data, 0x5a, len);
	/* Simple replies: a header, then the data as it is. */
	read_round_trip(&SIMPLE, data, 0, len, &chunks, &holes);
	CHECK(np_reply_read(&SIMPLE, 1, 0, data, len, 0, hdr, iov) == 2);
	CHECK(iov[1].iov_base == data && iov[1].iov_len == len);
	/* No zeroes: one data chunk, whose data is the last iovec (where
	 * sendfile takes over). */
	read_round_trip(&STRUCTURED, data, 0, len, &chunks, &holes);
	CHECK(chunks == 1 && holes == 0);
	CHECK(np_reply_read(&EXTENDED, 1, 0, data, len, 0, hdr, iov) == 2);
	CHECK(iov[1].iov_base == data && iov[1].iov_len == len);
	/* A zero block in the middle is a hole between two data chunks. */
	memset(data + 16384, 0, 8192);
	read_round_trip(&STRUCTURED, data, 0, len, &chunks, &holes);
	CHECK(chunks == 3 && holes == 1);
	read_round_trip(&EXTENDED, data, 0, len, &chunks, &holes);
	CHECK(chunks == 3 && holes == 1);
	/* An unaligned READ: granules are clipped to it. */
	read_round_trip(&EXTENDED, data + 100, 100, len - 1000, &chunks, &holes);
	CHECK(holes == 1);
	/* All zeroes: one hole. */
	memset(data, 0, len);
	read_round_trip(&STRUCTURED, data, 4096, len, &chunks, &holes);
	CHECK(chunks == 1 && holes == 1);
	free(data);
}

/* Zero and data granules alternating: no more than NP_REPLY_MAX_CHUNKS
 * chunks, the last one data, whatever the pattern. */
static void test_chunk_limit(void)
{
	uint64_t len = 64 * NP_REPLY_HOLE_BLOCK;
	uint8_t *data = calloc(1, len);
	uint64_t mask;
	unsigned chunks, holes;

	for (unsigned k = 0; k < 64; k += 2)
		memset(data + k * NP_REPLY_HOLE_BLOCK, 1, NP_REPLY_HOLE_BLOCK);
	mask = np_reply_zero_mask(data, 0, len);
	CHECK(mask == 0xaaaaaaaaaaaaaaaaULL);
	read_round_trip(&EXTENDED, data, 0, len, &chunks, &holes);
	CHECK(chunks == NP_REPLY_MAX_CHUNKS);
	CHECK(holes < chunks);
	/* Twice as large: the granule doubles, the mask still has 64 bits. */
	free(data);
	data = calloc(1, 2 * len);
	memset(data + len, 1, len);
	CHECK(np_reply_zero_mask(data, 0, 2 * len) == 0xffffffffULL);
	free(data);
}

static void test_error(void)
{
	struct nbd_reply rep;
	unsigned n;

	/* A WRITE's error under structured replies is still simple. */
	n = np_reply_error(&STRUCTURED, NBD_CMD_WRITE, 7, 0, NBD_ENOSPC, hdr, iov);
	CHECK(n == 1 && iov[0].iov_len == NBD_SIMPLE_REPLY_SIZE);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_SIMPLE_REPLY_SIZE);
	CHECK(rep.error == NBD_ENOSPC && rep.cookie == 7);
	/* A READ's is an error chunk: the error, an empty message. */
	n = np_reply_error(&STRUCTURED, NBD_CMD_READ, 7, 512, NBD_EIO, hdr, iov);
	CHECK(n == 1 && iov[0].iov_len == NBD_CHUNK_SIZE + 6);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_ERROR && rep.flags == NBD_REPLY_FLAG_DONE);
	CHECK(rep.length == 6 && np_get32(hdr + NBD_CHUNK_SIZE) == NBD_EIO);
	CHECK(np_get16(hdr + NBD_CHUNK_SIZE + 4) == 0);
	/* Under extended headers every error is a chunk, with the offset. */
	n = np_reply_error(&EXTENDED, NBD_CMD_FLUSH, 9, 4096, NBD_EINVAL, hdr, iov);
	CHECK(n == 1 && iov[0].iov_len == NBD_EXT_CHUNK_SIZE + 6);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_EXT_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_ERROR && rep.offset == 4096 && rep.cookie == 9);
	/* Simple replies carry the error in the header. */
	n = np_reply_error(&SIMPLE, NBD_CMD_READ, 3, 0, NBD_EPERM, hdr, iov);
	CHECK(n == 1 && nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_SIMPLE_REPLY_SIZE);
	CHECK(rep.error == NBD_EPERM);
}

static void test_ok(void)
{
	struct nbd_reply rep;

	CHECK(np_reply_ok(&STRUCTURED, 5, 0, hdr, iov) == 1);
	CHECK(iov[0].iov_len == NBD_SIMPLE_REPLY_SIZE);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_SIMPLE_REPLY_SIZE);
	CHECK(rep.error == 0 && rep.cookie == 5);
	CHECK(np_reply_ok(&EXTENDED, 5, 8192, hdr, iov) == 1);
	CHECK(iov[0].iov_len == NBD_EXT_CHUNK_SIZE);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_EXT_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_NONE && rep.flags == NBD_REPLY_FLAG_DONE);
	CHECK(rep.length == 0 && rep.offset == 8192);
}

static void test_block_status(void)
{
	const struct np_extent ext[] = {
	    {4096, NBD_STATE_HOLE | NBD_STATE_ZERO}, {8192, 0}, {1 << 20, NBD_STATE_ZERO}};
	uint8_t payload[64];
	struct nbd_reply rep;
	size_t size;
	struct np_reply_meta m[] = {{NP_META_BASE_ALLOCATION_ID, ext, 3}};
	struct np_reply_meta m2[] = {{NP_META_BASE_ALLOCATION_ID, ext, 2}};
	struct np_reply_meta none[] = {{NP_META_BASE_ALLOCATION_ID, NULL, 0}};

	/* The last extent goes past the request: it is cut to it. */
	size = np_reply_block_status_size(&STRUCTURED, 16384, false, m, 1);
	CHECK(size == 3 * 8);
	CHECK(np_reply_block_status(&STRUCTURED, 11, 0, 16384, false, m, 1, hdr, iov, payload) ==
	      2);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_BLOCK_STATUS && rep.flags == NBD_REPLY_FLAG_DONE);
	CHECK(rep.length == 4 + size && iov[0].iov_len == NBD_CHUNK_SIZE + 4);
	CHECK(np_get32(hdr + NBD_CHUNK_SIZE) == NP_META_BASE_ALLOCATION_ID);
	CHECK(iov[1].iov_base == payload && iov[1].iov_len == size);
	CHECK(np_get32(payload) == 4096 && np_get32(payload + 4) == 3);
	CHECK(np_get32(payload + 8) == 8192 && np_get32(payload + 12) == 0);
	CHECK(np_get32(payload + 16) == 4096 && np_get32(payload + 20) == NBD_STATE_ZERO);
	/* Extents that end early stop there. */
	CHECK(np_reply_block_status_size(&STRUCTURED, 1 << 30, false, m2, 1) == 2 * 8);
	/* REQ_ONE: the first only. */
	size = np_reply_block_status_size(&EXTENDED, 16384, true, m, 1);
	CHECK(size == 16);
	CHECK(np_reply_block_status(&EXTENDED, 11, 0, 16384, true, m, 1, hdr, iov, payload) == 2);
	CHECK(nbd_reply_decode(hdr, iov[0].iov_len, &rep) == NBD_EXT_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT && rep.length == 8 + 16);
	CHECK(np_get32(hdr + NBD_EXT_CHUNK_SIZE + 4) == 1);
	CHECK(np_get64(payload) == 4096 && np_get64(payload + 8) == 3);
	/* No extents from the engine: all of it, allocated data. */
	CHECK(np_reply_block_status(&STRUCTURED, 1, 0, 65536, false, none, 1, hdr, iov, payload) ==
	      2);
	CHECK(iov[1].iov_len == 8 && np_get32(payload) == 65536 && np_get32(payload + 4) == 0);
}

/* Two contexts: a chunk each, in order, each with its own id and 64-bit
 * descriptors; only the last is DONE. */
static void test_block_status_contexts(void)
{
	const struct np_extent a[] = {{1ULL << 33, 0}};
	const struct np_extent b[] = {{65536, 1}, {1ULL << 33, 0}};
	struct np_reply_meta m[] = {{2, a, 1}, {5, b, 2}};
	uint8_t payload[64];
	struct nbd_reply rep;
	size_t size = np_reply_block_status_size(&EXTENDED, 1ULL << 33, false, m, 2);
	uint8_t *h2;

	CHECK(size == 3 * 16);
	CHECK(np_reply_block_status(&EXTENDED, 9, 0, 1ULL << 33, false, m, 2, hdr, iov, payload) ==
	      4);
	CHECK(nbd_reply_decode(iov[0].iov_base, iov[0].iov_len, &rep) == NBD_EXT_CHUNK_SIZE);
	CHECK(rep.type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT && rep.flags == 0 && rep.cookie == 9);
	CHECK(rep.length == 8 + 16 && iov[1].iov_len == 16);
	CHECK(np_get32(hdr + NBD_EXT_CHUNK_SIZE) == 2 &&
	      np_get32(hdr + NBD_EXT_CHUNK_SIZE + 4) == 1);
	CHECK(np_get64(iov[1].iov_base) == 1ULL << 33);
	h2 = iov[2].iov_base;
	CHECK(nbd_reply_decode(h2, iov[2].iov_len, &rep) == NBD_EXT_CHUNK_SIZE);
	CHECK(rep.flags == NBD_REPLY_FLAG_DONE && rep.length == 8 + 32);
	CHECK(np_get32(h2 + NBD_EXT_CHUNK_SIZE) == 5 && np_get32(h2 + NBD_EXT_CHUNK_SIZE + 4) == 2);
	CHECK(iov[3].iov_len == 32 && (uint8_t *)iov[3].iov_base == payload + 16);
	CHECK(np_get64(payload + 16) == 65536 && np_get64(payload + 24) == 1);
	CHECK(np_get64(payload + 32) == (1ULL << 33) - 65536 && np_get64(payload + 40) == 0);
}

int main(void)
{
	test_read();
	test_chunk_limit();
	test_error();
	test_ok();
	test_block_status();
	test_block_status_contexts();
	return check_done();
}
