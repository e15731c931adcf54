/* Encode and decode of fixed NBD wire messages. Pure functions over buffers. */
#include <errno.h>
#include <string.h>

#include "net/proto.h"

int nbd_request_decode(const uint8_t *buf, size_t len, bool extended, struct nbd_request *req)
{
	size_t need = extended ? NBD_EXT_REQUEST_SIZE : NBD_REQUEST_SIZE;

	if (len < 4)
		return 0;
	if (np_get32(buf) != (extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC))
		return -EBADMSG;
	if (len < need)
		return 0;
	req->flags = np_get16(buf + 4);
	req->type = np_get16(buf + 6);
	req->cookie = np_get64(buf + 8);
	req->offset = np_get64(buf + 16);
	req->count = extended ? np_get64(buf + 24) : np_get32(buf + 24);
	return (int)need;
}

size_t nbd_request_encode(uint8_t *buf, bool extended, const struct nbd_request *req)
{
	np_put32(buf, extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC);
	np_put16(buf + 4, req->flags);
	np_put16(buf + 6, req->type);
	np_put64(buf + 8, req->cookie);
	np_put64(buf + 16, req->offset);
	if (extended) {
		np_put64(buf + 24, req->count);
		return NBD_EXT_REQUEST_SIZE;
	}
	np_put32(buf + 24, (uint32_t)req->count);
	return NBD_REQUEST_SIZE;
}

void nbd_simple_reply_encode(uint8_t buf[NBD_SIMPLE_REPLY_SIZE], uint32_t error, uint64_t cookie)
{
	np_put32(buf, NBD_SIMPLE_REPLY_MAGIC);
	np_put32(buf + 4, error);
	np_put64(buf + 8, cookie);
}

size_t nbd_chunk_encode(uint8_t *buf, bool extended, uint16_t flags, uint16_t type, uint64_t cookie,
			uint64_t offset, uint64_t length)
{
	np_put32(buf, extended ? NBD_EXTENDED_REPLY_MAGIC : NBD_STRUCTURED_REPLY_MAGIC);
	np_put16(buf + 4, flags);
	np_put16(buf + 6, type);
	np_put64(buf + 8, cookie);
	if (extended) {
		np_put64(buf + 16, offset);
		np_put64(buf + 24, length);
		return NBD_EXT_CHUNK_SIZE;
	}
	np_put32(buf + 16, (uint32_t)length);
	return NBD_CHUNK_SIZE;
}

int nbd_reply_decode(const uint8_t *buf, size_t len, struct nbd_reply *rep)
{
	if (len < 4)
		return 0;
	memset(rep, 0, sizeof(*rep));
	rep->magic = np_get32(buf);
	switch (rep->magic) {
	case NBD_SIMPLE_REPLY_MAGIC:
		if (len < NBD_SIMPLE_REPLY_SIZE)
			return 0;
		rep->error = np_get32(buf + 4);
		rep->cookie = np_get64(buf + 8);
		return NBD_SIMPLE_REPLY_SIZE;
	case NBD_STRUCTURED_REPLY_MAGIC:
		if (len < NBD_CHUNK_SIZE)
			return 0;
		rep->flags = np_get16(buf + 4);
		rep->type = np_get16(buf + 6);
		rep->cookie = np_get64(buf + 8);
		rep->length = np_get32(buf + 16);
		return NBD_CHUNK_SIZE;
	case NBD_EXTENDED_REPLY_MAGIC:
		if (len < NBD_EXT_CHUNK_SIZE)
			return 0;
		rep->flags = np_get16(buf + 4);
		rep->type = np_get16(buf + 6);
		rep->cookie = np_get64(buf + 8);
		rep->offset = np_get64(buf + 16);
		rep->length = np_get64(buf + 24);
		return NBD_EXT_CHUNK_SIZE;
	default:
		return -EBADMSG;
	}
}

void nbd_opt_encode(uint8_t buf[NBD_OPT_HDR_SIZE], uint32_t opt, uint32_t length)
{
	np_put64(buf, NBD_IHAVEOPT);
	np_put32(buf + 8, opt);
	np_put32(buf + 12, length);
}

void nbd_opt_reply_encode(uint8_t buf[NBD_OPT_REPLY_HDR_SIZE], uint32_t opt, uint32_t type,
			  uint32_t length)
{
	np_put64(buf, NBD_REP_MAGIC);
	np_put32(buf + 8, opt);
	np_put32(buf + 12, type);
	np_put32(buf + 16, length);
}

size_t nbd_opt_go_encode(uint8_t *buf, const char *name, size_t nlen, const uint16_t *infos,
			 uint16_t n)
{
	np_put32(buf, (uint32_t)nlen);
	memcpy(buf + 4, name, nlen);
	np_put16(buf + 4 + nlen, n);
	for (uint16_t i = 0; i < n; i++)
		np_put16(buf + 6 + nlen + 2 * i, infos[i]);
	return 6 + nlen + 2 * (size_t)n;
}

int nbd_greeting_decode(const uint8_t *buf, size_t len, uint16_t *hflags)
{
	if (len < NBD_GREETING_SIZE)
		return 0;
	if (np_get64(buf) != NBD_MAGIC || np_get64(buf + 8) != NBD_IHAVEOPT)
		return -EBADMSG;
	*hflags = np_get16(buf + 16);
	return NBD_GREETING_SIZE;
}

int nbd_opt_reply_decode(const uint8_t *buf, size_t len, struct nbd_opt_reply *rep)
{
	if (len < NBD_OPT_REPLY_HDR_SIZE)
		return 0;
	if (np_get64(buf) != NBD_REP_MAGIC)
		return -EBADMSG;
	rep->opt = np_get32(buf + 8);
	rep->type = np_get32(buf + 12);
	rep->length = np_get32(buf + 16);
	return NBD_OPT_REPLY_HDR_SIZE;
}

int nbd_info_decode(const uint8_t *buf, size_t len, struct nbd_info *info)
{
	memset(info, 0, sizeof(*info));
	if (len < 2)
		return -EBADMSG;
	info->type = np_get16(buf);
	switch (info->type) {
	case NBD_INFO_EXPORT:
		if (len < 12)
			return -EBADMSG;
		info->size = np_get64(buf + 2);
		info->tflags = np_get16(buf + 10);
		break;
	case NBD_INFO_BLOCK_SIZE:
		if (len < 14)
			return -EBADMSG;
		info->min_block = np_get32(buf + 2);
		info->pref_block = np_get32(buf + 6);
		info->max_block = np_get32(buf + 10);
		break;
	default:
		break;
	}
	return (int)len;
}

int nbd_export_name_reply_decode(const uint8_t *buf, size_t len, uint64_t *size, uint16_t *tflags)
{
	if (len < NBD_EXPORT_NAME_REPLY_SIZE)
		return 0;
	*size = np_get64(buf);
	*tflags = np_get16(buf + 8);
	return NBD_EXPORT_NAME_REPLY_SIZE;
}

uint32_t nbd_errno_to_wire(int neg_errno)
{
	switch (-neg_errno) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
	case EACCES:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

int nbd_wire_to_errno(uint32_t err)
{
	switch (err) {
	case 0:
		return 0;
	case NBD_EPERM:
		return -EPERM;
	case NBD_ENOMEM:
		return -ENOMEM;
	case NBD_EINVAL:
		return -EINVAL;
	case NBD_ENOSPC:
		return -ENOSPC;
	case NBD_EOVERFLOW:
		return -EOVERFLOW;
	case NBD_ENOTSUP:
		return -ENOTSUP;
	case NBD_ESHUTDOWN:
		return -ESHUTDOWN;
	default:
		return -EIO;
	}
}

const char *nbd_cmd_name(uint16_t type)
{
	static const char *const names[] = {"READ",         "WRITE",        "DISC",
					    "FLUSH",        "TRIM",         "CACHE",
					    "WRITE_ZEROES", "BLOCK_STATUS", "RESIZE"};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "UNKNOWN";
}

const char *nbd_opt_name(uint32_t opt)
{
	static const char *const names[] = {"0",
					    "EXPORT_NAME",
					    "ABORT",
					    "LIST",
					    "PEEK_EXPORT",
					    "STARTTLS",
					    "INFO",
					    "GO",
					    "STRUCTURED_REPLY",
					    "LIST_META_CONTEXT",
					    "SET_META_CONTEXT",
					    "EXTENDED_HEADERS"};

	return opt < sizeof(names) / sizeof(names[0]) ? names[opt] : "UNKNOWN";
}
