/* NBD wire protocol: constants, wire structs and pure encode/decode helpers.
 *
 * Everything here works on byte buffers and does no I/O, so the server, the
 * tools and the tests share one definition of the protocol and the codec can
 * be fuzzed in isolation. Numbers are big-endian on the wire. */
#ifndef NP_NET_PROTO_H
#define NP_NET_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBD_DEFAULT_PORT 10809

/* Magics. */
#define NBD_MAGIC 0x4e42444d41474943ULL
#define NBD_IHAVEOPT 0x49484156454F5054ULL
#define NBD_REP_MAGIC 0x3e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513U
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698U
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efU
#define NBD_EXTENDED_REQUEST_MAGIC 0x21e41c71U
#define NBD_EXTENDED_REPLY_MAGIC 0x6e8a278cU

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE (1U << 0)
#define NBD_FLAG_NO_ZEROES (1U << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1U << 0)
#define NBD_FLAG_C_NO_ZEROES (1U << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS (1U << 0)
#define NBD_FLAG_READ_ONLY (1U << 1)
#define NBD_FLAG_SEND_FLUSH (1U << 2)
#define NBD_FLAG_SEND_FUA (1U << 3)
#define NBD_FLAG_ROTATIONAL (1U << 4)
#define NBD_FLAG_SEND_TRIM (1U << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1U << 6)
#define NBD_FLAG_SEND_DF (1U << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1U << 8)
#define NBD_FLAG_SEND_RESIZE (1U << 9)
#define NBD_FLAG_SEND_CACHE (1U << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1U << 11)
#define NBD_FLAG_BLOCK_STATUS_PAYLOAD (1U << 12)

/* Options. */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10
#define NBD_OPT_EXTENDED_HEADERS 11

/* Option replies. */
#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_ERR(n) (0x80000000U | (n))
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9)
#define NBD_REP_ERR_EXT_HEADER_REQD NBD_REP_ERR(10)

/* NBD_INFO types. */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* Commands and command flags. */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_RESIZE 8

#define NBD_CMD_FLAG_FUA (1U << 0)
#define NBD_CMD_FLAG_NO_HOLE (1U << 1)
#define NBD_CMD_FLAG_DF (1U << 2)
#define NBD_CMD_FLAG_REQ_ONE (1U << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1U << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN (1U << 5)

/* Structured replies. */
#define NBD_REPLY_FLAG_DONE (1U << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6
#define NBD_REPLY_TYPE_ERROR 32769
#define NBD_REPLY_TYPE_ERROR_OFFSET 32770

#define NBD_STATE_HOLE (1U << 0)
#define NBD_STATE_ZERO (1U << 1)

/* Errors carried in replies. */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* Sizes of fixed wire messages. */
#define NBD_REQUEST_SIZE 28
#define NBD_EXT_REQUEST_SIZE 32
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_CHUNK_SIZE 20
#define NBD_EXT_CHUNK_SIZE 32
#define NBD_OPT_HDR_SIZE 16
#define NBD_OPT_REPLY_HDR_SIZE 20
#define NBD_GREETING_SIZE 18        /* NBDMAGIC, IHAVEOPT, handshake flags */
#define NBD_EXPORT_NAME_REPLY_SIZE 10 /* size, transmission flags (then 124 zeroes) */
#define NBD_MAX_STRING 4096
#define NBD_MAX_PORTABLE_REQUEST (32U * 1024 * 1024)

#define NBD_META_BASE_ALLOCATION "base:allocation"

/* Big-endian load and store. */
static inline uint16_t np_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t np_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t np_get64(const uint8_t *p)
{
	return (uint64_t)np_get32(p) << 32 | np_get32(p + 4);
}

static inline void np_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void np_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void np_put64(uint8_t *p, uint64_t v)
{
	np_put32(p, (uint32_t)(v >> 32));
	np_put32(p + 4, (uint32_t)v);
}

/* A transmission request, decoded from either header size. */
struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint64_t count; /* 32 bits on the wire without extended headers */
};

/* Decodes one request header from buf. Returns the header size consumed,
 * 0 when fewer bytes than a header are available, or -EBADMSG when the
 * magic does not match the negotiated header style. */
int nbd_request_decode(const uint8_t *buf, size_t len, bool extended, struct nbd_request *req);

/* Encodes a request header; returns its size (28 or 32). With the compact
 * header, count must fit in 32 bits. */
size_t nbd_request_encode(uint8_t *buf, bool extended, const struct nbd_request *req);

/* Simple reply: magic, error, cookie (16 bytes). */
void nbd_simple_reply_encode(uint8_t buf[NBD_SIMPLE_REPLY_SIZE], uint32_t error, uint64_t cookie);

/* Structured or extended chunk header; returns its size (20 or 32). The
 * extended header carries the request's offset and a 64-bit length. */
size_t nbd_chunk_encode(uint8_t *buf, bool extended, uint16_t flags, uint16_t type, uint64_t cookie,
			uint64_t offset, uint64_t length);

/* Decoded reply header of any of the three kinds, for clients and tests. */
struct nbd_reply {
	uint32_t magic;
	uint32_t error;  /* simple replies */
	uint16_t flags;  /* structured and extended */
	uint16_t type;   /* structured and extended */
	uint64_t cookie;
	uint64_t offset; /* extended */
	uint64_t length; /* payload length of a chunk */
};

/* Returns the header size consumed, 0 when more bytes are needed, or
 * -EBADMSG on an unknown magic. */
int nbd_reply_decode(const uint8_t *buf, size_t len, struct nbd_reply *rep);

/* Option request header: IHAVEOPT, option, length. */
void nbd_opt_encode(uint8_t buf[NBD_OPT_HDR_SIZE], uint32_t opt, uint32_t length);

/* Option reply header: magic, option, type, length. */
void nbd_opt_reply_encode(uint8_t buf[NBD_OPT_REPLY_HDR_SIZE], uint32_t opt, uint32_t type,
			  uint32_t length);

/* The client's side of the handshake (nbdplex attach). Each decoder
 * returns the bytes consumed, 0 when more are needed, or -EBADMSG. */

/* The data of NBD_OPT_GO or NBD_OPT_INFO: the export name (nlen bytes, at
 * most NBD_MAX_STRING) and n information requests. buf holds 6 + nlen + 2n
 * bytes; returns that size. */
size_t nbd_opt_go_encode(uint8_t *buf, const char *name, size_t nlen, const uint16_t *infos,
			 uint16_t n);

/* The server's greeting; refuses one that is not fixed-newstyle's magic. */
int nbd_greeting_decode(const uint8_t *buf, size_t len, uint16_t *hflags);

struct nbd_opt_reply {
	uint32_t opt;
	uint32_t type;
	uint32_t length; /* of the data that follows */
};

int nbd_opt_reply_decode(const uint8_t *buf, size_t len, struct nbd_opt_reply *rep);

/* The data of an NBD_REP_INFO reply. Fields the type does not carry are 0;
 * a type this codec does not know decodes to its type alone. */
struct nbd_info {
	uint16_t type;
	uint64_t size;   /* NBD_INFO_EXPORT */
	uint16_t tflags; /* NBD_INFO_EXPORT */
	uint32_t min_block, pref_block, max_block; /* NBD_INFO_BLOCK_SIZE */
};

/* Decodes all len bytes of the data; -EBADMSG when they are too few for
 * the type. */
int nbd_info_decode(const uint8_t *buf, size_t len, struct nbd_info *info);

/* The reply to NBD_OPT_EXPORT_NAME, without the zeroes that follow unless
 * NBD_FLAG_NO_ZEROES was agreed. */
int nbd_export_name_reply_decode(const uint8_t *buf, size_t len, uint64_t *size,
				 uint16_t *tflags);

/* Maps a negative errno to the NBD error sent to a client. */
uint32_t nbd_errno_to_wire(int neg_errno);

/* Maps an NBD error received from a server to a negative errno. */
int nbd_wire_to_errno(uint32_t err);

const char *nbd_cmd_name(uint16_t type);
const char *nbd_opt_name(uint32_t opt);

#endif
