/* Reply building: pure functions from the negotiated options and a
 * request's result to the bytes that answer it. They do no I/O and know no
 * connection: they fill a caller's header buffer (NP_REPLY_HDR_MAX bytes)
 * and iovecs (NP_REPLY_MAX_IOV), pointing the data iovecs at the caller's
 * buffers, and return how many iovecs they filled. */
#ifndef NP_ENGINE_REPLY_H
#define NP_ENGINE_REPLY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "net/proto.h"
#include "storage/storage.h"

#define NP_REPLY_MAX_CHUNKS 8 /* per READ: data and holes */
#define NP_REPLY_MAX_IOV    (2 * NP_REPLY_MAX_CHUNKS + 1)
#define NP_REPLY_HDR_MAX    (NP_REPLY_MAX_CHUNKS * (NBD_EXT_CHUNK_SIZE + 16))
/* Zero runs are looked for in blocks of this size, at most 64 of them per
 * READ (a larger READ's granule is a multiple of it). */
#define NP_REPLY_HOLE_BLOCK 4096

/* What the handshake settled on. extended implies structured. */
struct np_reply_opts {
	bool structured, extended;
};

/* Which granules of a READ of len bytes at offset, whose data is data,
 * are all zeroes (bit k for granule k). */
uint64_t np_reply_zero_mask(const void *data, uint64_t offset, uint64_t len);

/* A successful READ: with structured replies, zero granules (zero_mask) as
 * OFFSET_HOLE chunks and the rest as OFFSET_DATA, in at most
 * NP_REPLY_MAX_CHUNKS chunks; else a simple reply and the data. The data is
 * the last iovec when zero_mask is 0. */
unsigned np_reply_read(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset,
		       const void *data, uint64_t len, uint64_t zero_mask, uint8_t *hdr,
		       struct iovec *iov);

/* A failed request: an ERROR chunk where structured replies are in use for
 * it (every command under extended headers; READ and BLOCK_STATUS under
 * structured replies), else a simple reply. error is an NBD error. */
unsigned np_reply_error(const struct np_reply_opts *o, uint16_t cmd, uint64_t cookie,
			uint64_t offset, uint32_t error, uint8_t *hdr, struct iovec *iov);

/* A success with nothing to say: a NONE chunk under extended headers,
 * else a simple reply. */
unsigned np_reply_ok(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset, uint8_t *hdr,
		     struct iovec *iov);

/* One meta context's part of a BLOCK_STATUS answer: the context's id (as
 * SET_META_CONTEXT gave it) and the engine's extents for it. */
struct np_reply_meta {
	uint32_t id;
	const struct np_extent *ext;
	uint32_t n_ext;
};

/* A successful BLOCK_STATUS (structured replies) for [offset, offset +
 * len): one chunk per context (at most NP_HS_MAX_META), the last one
 * flagged DONE, each with its extents trimmed to that range, or one
 * hole-less extent of len when there are none, only the first with
 * req_one. The descriptors go in payload, which must hold
 * np_reply_block_status_size() bytes. */
size_t np_reply_block_status_size(const struct np_reply_opts *o, uint64_t len, bool req_one,
				  const struct np_reply_meta *m, unsigned n_meta);
unsigned np_reply_block_status(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset,
			       uint64_t len, bool req_one, const struct np_reply_meta *m,
			       unsigned n_meta, uint8_t *hdr, struct iovec *iov, uint8_t *payload);

#endif
