/* Client side of the NBD handshake: fixed newstyle, NBD_OPT_GO with a
 * fallback to NBD_OPT_EXPORT_NAME for servers that do not know GO. */
#include "tools/attach_nbd.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/proto.h"

/* No single handshake step may take longer than this. */
#define HANDSHAKE_TIMEOUT_S 30

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int io_all(int fd, void *buf, size_t len, int writing)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int split_path(const char *path, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t n;

	if (path[0] == '[') {
		const char *end = strchr(path, ']');

		if (!end)
			return -1;
		n = (size_t)(end - path - 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		path++;
	} else {
		colon = strrchr(path, ':');
		n = colon ? (size_t)(colon - path) : strlen(path);
	}
	if (n == 0 || n >= hostlen)
		return -1;
	memcpy(host, path, n);
	host[n] = 0;
	snprintf(port, portlen, "%s", colon && colon[1] ? colon + 1 : "10809");
	return 0;
}

static int tcp_connect(const char *path, char *err, size_t errlen)
{
	char host[256], port[32];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1, r, one = 1;
	struct timeval tv = {.tv_sec = HANDSHAKE_TIMEOUT_S};

	if (split_path(path, host, sizeof(host), port, sizeof(port)))
		return fail(err, errlen, "bad path '%s' (expected HOST[:PORT])", path);
	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		return fail(err, errlen, "%s: %s", path, gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		r = errno;
		close(fd);
		fd = -1;
		errno = r;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(err, errlen, "connect to %s: %s", path, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return fd;
}

/* Sends one option with its payload. */
static int send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t hdr[NBD_OPT_HDR_SIZE];
	int r;

	nbd_opt_encode(hdr, opt, len);
	r = io_all(fd, hdr, sizeof(hdr), 1);
	if (!r && len)
		r = io_all(fd, (void *)data, len, 1);
	return r;
}

/* Negotiates with NBD_OPT_GO. Returns 0, 1 when the server does not know GO,
 * or -1 with err set. */
static int opt_go(int fd, const char *path, const char *name, struct np_export_info *info,
		  char *err, size_t errlen)
{
	size_t nlen = strlen(name);
	uint8_t req[4 + NBD_MAX_STRING + 4], hdr[NBD_OPT_REPLY_HDR_SIZE], data[1024];
	int got_export = 0, r;

	np_put32(req, (uint32_t)nlen);
	memcpy(req + 4, name, nlen);
	np_put16(req + 4 + nlen, 1);
	np_put16(req + 6 + nlen, NBD_INFO_BLOCK_SIZE);
	r = send_opt(fd, NBD_OPT_GO, req, (uint32_t)(nlen + 8));
	/* A server sends at most a few infos; bound the loop anyway. */
	for (int i = 0; !r && i < 64; i++) {
		uint32_t type, len;

		r = io_all(fd, hdr, sizeof(hdr), 0);
		if (r)
			break;
		if (np_get64(hdr) != NBD_REP_MAGIC || np_get32(hdr + 8) != NBD_OPT_GO)
			return fail(err, errlen, "%s: bad option reply", path);
		type = np_get32(hdr + 12);
		len = np_get32(hdr + 16);
		if (len > sizeof(data) - 1)
			return fail(err, errlen, "%s: option reply too long (%u bytes)", path, len);
		r = io_all(fd, data, len, 0);
		if (r)
			break;
		data[len] = 0;
		if (type == NBD_REP_ACK) {
			if (!got_export)
				return fail(err, errlen, "%s: server sent no export size", path);
			return 0;
		}
		if (type == NBD_REP_ERR_UNSUP)
			return 1;
		if (type & 0x80000000U)
			return fail(err, errlen, "%s: server refused export '%s': %s (error %#x)", path, name,
				    len ? (char *)data : "no reason given", type);
		if (type != NBD_REP_INFO || len < 2)
			continue;
		if (np_get16(data) == NBD_INFO_EXPORT && len >= 12) {
			info->size = np_get64(data + 2);
			info->flags = np_get16(data + 10);
			got_export = 1;
		} else if (np_get16(data) == NBD_INFO_BLOCK_SIZE && len >= 14) {
			info->min_block = np_get32(data + 2);
		}
	}
	return fail(err, errlen, "%s: handshake failed: %s", path, r ? strerror(-r) : "too many replies");
}

static int opt_export_name(int fd, const char *path, const char *name, int no_zeroes,
			   struct np_export_info *info, char *err, size_t errlen)
{
	uint8_t reply[10 + 124];
	int r = send_opt(fd, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name));

	if (!r)
		r = io_all(fd, reply, no_zeroes ? 10 : sizeof(reply), 0);
	if (r)
		return fail(err, errlen, "%s: server refused export '%s' (%s)", path, name, strerror(-r));
	info->size = np_get64(reply);
	info->flags = np_get16(reply + 8);
	return 0;
}

int np_nbd_connect(const char *path, const char *name, struct np_export_info *info, char *err,
		   size_t errlen)
{
	uint8_t greet[18], cflags[4];
	uint16_t hflags;
	int fd, r;
	struct timeval tv = {0};

	memset(info, 0, sizeof(*info));
	if (strlen(name) > NBD_MAX_STRING)
		return fail(err, errlen, "export name too long");
	fd = tcp_connect(path, err, errlen);
	if (fd < 0)
		return -1;
	r = io_all(fd, greet, sizeof(greet), 0);
	if (r) {
		fail(err, errlen, "%s: no greeting: %s", path, strerror(-r));
		goto out_close;
	}
	if (np_get64(greet) != NBD_MAGIC || np_get64(greet + 8) != NBD_IHAVEOPT) {
		fail(err, errlen, "%s: not a newstyle NBD server", path);
		goto out_close;
	}
	hflags = np_get16(greet + 16);
	if (!(hflags & NBD_FLAG_FIXED_NEWSTYLE)) {
		fail(err, errlen, "%s: server does not support fixed newstyle", path);
		goto out_close;
	}
	np_put32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE | (hflags & NBD_FLAG_NO_ZEROES));
	r = io_all(fd, cflags, sizeof(cflags), 1);
	if (!r) {
		r = opt_go(fd, path, name, info, err, errlen);
		if (r == 1)
			r = opt_export_name(fd, path, name, hflags & NBD_FLAG_NO_ZEROES, info, err, errlen);
	} else {
		fail(err, errlen, "%s: %s", path, strerror(-r));
	}
	if (r)
		goto out_close;
	if (!(info->flags & NBD_FLAG_HAS_FLAGS))
		info->flags = NBD_FLAG_HAS_FLAGS;
	/* The kernel's sends block until done; no timeouts in transmission. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;

out_close:
	close(fd);
	return -1;
}
