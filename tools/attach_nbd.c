/* Client side of the NBD handshake: fixed newstyle, NBD_OPT_STARTTLS when
 * asked for, NBD_OPT_GO with a fallback to NBD_OPT_EXPORT_NAME for servers
 * that do not know GO. With TLS, the options after STARTTLS go through
 * GnuTLS and the socket leaves with its record layer in the kernel. */
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
#include "tools/attach_tls.h"
#include "util/err.h"
#include "util/fullio.h"

/* No single handshake step may take longer than this. */
#define HANDSHAKE_TIMEOUT_S 30

/* One connection during the handshake: plain, or through a TLS session. */
struct conn {
	int fd;
	struct np_tls_session *tls;
};

static int io_all(struct conn *c, void *buf, size_t len, int writing)
{
	int r;

	if (c->tls)
		return np_tls_io(c->tls, buf, len, writing);
	r = writing ? np_write_full(c->fd, buf, len) : np_read_full(c->fd, buf, len);
	/* A server that closes in the middle of a message has reset the
	 * session, as far as the handshake is concerned. */
	return r == -ENODATA ? -ECONNRESET : r;
}

static int split_path(const char *path, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t n;

	if (path[0] == '[') {
		const char *end = strchr(path, ']');

		if (!end)
			return -EINVAL;
		n = (size_t)(end - path - 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		path++;
	} else {
		colon = strrchr(path, ':');
		n = colon ? (size_t)(colon - path) : strlen(path);
	}
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	memcpy(host, path, n);
	host[n] = 0;
	snprintf(port, portlen, "%s", colon && colon[1] ? colon + 1 : "10809");
	return 0;
}

static int tcp_connect(const char *path, char **err)
{
	char host[256], port[32];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1, r, one = 1;
	struct timeval tv = {.tv_sec = HANDSHAKE_TIMEOUT_S};

	if (split_path(path, host, sizeof(host), port, sizeof(port)))
		return np_errmsg(err, -EINVAL, "bad path '%s' (expected HOST[:PORT])", path);
	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		return np_errmsg(err, -EHOSTUNREACH, "%s: %s", path, gai_strerror(r));
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
		return np_errmsg(err, -errno, "connect to %s: %s", path, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return fd;
}

/* Sends one option with its payload. */
static int send_opt(struct conn *c, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t hdr[NBD_OPT_HDR_SIZE];
	int r;

	nbd_opt_encode(hdr, opt, len);
	r = io_all(c, hdr, sizeof(hdr), 1);
	if (!r && len)
		r = io_all(c, (void *)data, len, 1);
	return r;
}

/* Reads one option reply to opt: its type, and its *len bytes of data with
 * a NUL after them. Returns 0, a negative errno from the socket, -EBADMSG
 * for a reply that is not one to opt, or -E2BIG for one longer than
 * size - 1. */
static int read_reply(struct conn *c, uint32_t opt, uint32_t *type, uint8_t *data, size_t size,
		      uint32_t *len)
{
	uint8_t hdr[NBD_OPT_REPLY_HDR_SIZE];
	struct nbd_opt_reply rep;
	int r = io_all(c, hdr, sizeof(hdr), 0);

	if (r)
		return r;
	if (nbd_opt_reply_decode(hdr, sizeof(hdr), &rep) < 0 || rep.opt != opt)
		return -EBADMSG;
	*type = rep.type;
	*len = rep.length;
	if (*len > size - 1)
		return -E2BIG;
	r = io_all(c, data, *len, 0);
	data[r ? 0 : *len] = 0;
	return r;
}

/* Puts "PATH: " before the message already in *err; returns rc. */
static int prefix_path(char **err, int rc, const char *path)
{
	char *why;

	if (!err || !*err)
		return rc;
	why = *err;
	*err = NULL;
	np_errmsg(err, rc, "%s: %s", path, why);
	free(why);
	return rc;
}

/* Negotiates with NBD_OPT_GO, or asks with NBD_OPT_INFO (the same replies,
 * and the handshake goes on). Returns 0, -ENOTSUP without a message when
 * the server does not know the option, or -errno with *err set. */
static int opt_go(struct conn *c, uint32_t opt, const char *path, const char *name,
		  struct np_export_info *info, char **err)
{
	static const uint16_t want[] = {NBD_INFO_BLOCK_SIZE};
	uint8_t req[4 + NBD_MAX_STRING + 2 + 2 * 1], data[1024];
	size_t n = nbd_opt_go_encode(req, name, strlen(name), want, 1);
	int got_export = 0, r;

	r = send_opt(c, opt, req, (uint32_t)n);
	/* A server sends at most a few infos; bound the loop anyway. */
	for (int i = 0; !r && i < 64; i++) {
		struct nbd_info ni;
		uint32_t type, len;

		r = read_reply(c, opt, &type, data, sizeof(data), &len);
		if (r == -EBADMSG)
			return np_errmsg(err, -EPROTO, "%s: bad option reply", path);
		if (r == -E2BIG)
			return np_errmsg(err, -EPROTO, "%s: option reply too long", path);
		if (r)
			break;
		if (type == NBD_REP_ACK) {
			if (!got_export)
				return np_errmsg(err, -EPROTO, "%s: server sent no export size",
						 path);
			return 0;
		}
		if (type == NBD_REP_ERR_UNSUP)
			return -ENOTSUP; /* no message: the caller falls back */
		if (type == NBD_REP_ERR_TLS_REQD && !c->tls)
			return np_errmsg(err, -EACCES,
					 "%s: the server requires TLS (%s); use --tls with "
					 "--tls-certificates DIR or --tls-psk FILE",
					 path, len ? (char *)data : "no reason given");
		if (type & 0x80000000U)
			return np_errmsg(err, -ENOENT,
					 "%s: server refused export '%s': %s (error %#x)", path,
					 name, len ? (char *)data : "no reason given", type);
		/* An info too short for its type is ignored, like one we do
		 * not know. */
		if (type != NBD_REP_INFO || nbd_info_decode(data, len, &ni) < 0)
			continue;
		if (ni.type == NBD_INFO_EXPORT) {
			info->size = ni.size;
			info->flags = ni.tflags;
			got_export = 1;
		} else if (ni.type == NBD_INFO_BLOCK_SIZE) {
			info->min_block = ni.min_block;
		}
	}
	return np_errmsg(err, r ? r : -EPROTO, "%s: handshake failed: %s", path,
			 r ? strerror(-r) : "too many replies");
}

static int opt_export_name(struct conn *c, const char *path, const char *name, int no_zeroes,
			   struct np_export_info *info, char **err)
{
	uint8_t reply[10 + 124];
	int r = send_opt(c, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name));

	if (!r)
		r = io_all(c, reply, no_zeroes ? 10 : sizeof(reply), 0);
	if (r)
		return np_errmsg(err, r, "%s: server refused export '%s' (%s)", path, name,
				 strerror(-r));
	nbd_export_name_reply_decode(reply, sizeof(reply), &info->size, &info->flags);
	return 0;
}

/* Asks for TLS and runs the handshake. Returns 0 with c->tls set, or -errno
 * with *err set. */
static int starttls(struct conn *c, const char *path, struct np_tls *tls, char **err)
{
	uint8_t data[256];
	char host[256], port[32];
	uint32_t type = 0, len;
	int r = send_opt(c, NBD_OPT_STARTTLS, NULL, 0);

	if (!r)
		r = read_reply(c, NBD_OPT_STARTTLS, &type, data, sizeof(data), &len);
	if (r)
		return np_errmsg(err, r, "%s: STARTTLS: %s", path,
				 r == -EBADMSG ? "bad reply" : strerror(-r));
	if (type == NBD_REP_ERR_UNSUP)
		return np_errmsg(err, -ENOTSUP, "%s: the server does not support TLS", path);
	if (type != NBD_REP_ACK)
		return np_errmsg(err, -EACCES, "%s: the server refused TLS: %s (error %#x)", path,
				 data[0] ? (char *)data : "no reason given", type);
	if (split_path(path, host, sizeof(host), port, sizeof(port)))
		return np_errmsg(err, -EINVAL, "bad path '%s'", path);
	r = np_tls_handshake(tls, c->fd, host, &c->tls, err);
	return r < 0 ? prefix_path(err, r, path) : 0;
}

/* Connects and negotiates up to opt (NBD_OPT_GO, falling back to
 * NBD_OPT_EXPORT_NAME, or NBD_OPT_INFO). Returns 0, or -errno with *err
 * set; either way the caller closes c. */
static int negotiate(struct conn *c, const char *path, const char *name, struct np_tls *tls,
		     uint32_t opt, struct np_export_info *info, char **err)
{
	uint8_t greet[NBD_GREETING_SIZE], cflags[4];
	uint16_t hflags;
	int r;

	memset(info, 0, sizeof(*info));
	if (strlen(name) > NBD_MAX_STRING)
		return np_errmsg(err, -ENAMETOOLONG, "export name too long");
	c->fd = tcp_connect(path, err);
	if (c->fd < 0)
		return c->fd;
	r = io_all(c, greet, sizeof(greet), 0);
	if (r)
		return np_errmsg(err, r, "%s: no greeting: %s", path, strerror(-r));
	if (nbd_greeting_decode(greet, sizeof(greet), &hflags) < 0)
		return np_errmsg(err, -EPROTO, "%s: not a newstyle NBD server", path);
	if (!(hflags & NBD_FLAG_FIXED_NEWSTYLE))
		return np_errmsg(err, -EPROTO, "%s: server does not support fixed newstyle", path);
	np_put32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE | (hflags & NBD_FLAG_NO_ZEROES));
	r = io_all(c, cflags, sizeof(cflags), 1);
	if (r)
		return np_errmsg(err, r, "%s: %s", path, strerror(-r));
	r = tls ? starttls(c, path, tls, err) : 0;
	if (r < 0)
		return r;
	r = opt_go(c, opt, path, name, info, err);
	if (r == -ENOTSUP && opt == NBD_OPT_INFO)
		return np_errmsg(err, -ENOTSUP, "%s: the server does not know NBD_OPT_INFO", path);
	if (r == -ENOTSUP)
		r = opt_export_name(c, path, name, hflags & NBD_FLAG_NO_ZEROES, info, err);
	return r;
}

int np_nbd_connect(const char *path, const char *name, struct np_tls *tls,
		   struct np_export_info *info, char **err)
{
	struct conn c = {.fd = -1};
	struct timeval tv = {0};
	int r = negotiate(&c, path, name, tls, NBD_OPT_GO, info, err);

	if (r < 0)
		goto out_close;
	if (c.tls) {
		/* After GO's final reply the server sends nothing until asked,
		 * so the kernel takes over at a record boundary. */
		snprintf(info->tls, sizeof(info->tls), "%s", np_tls_describe(c.tls));
		r = np_tls_to_kernel(c.tls, c.fd, err);
		if (r < 0) {
			prefix_path(err, r, path);
			goto out_close;
		}
		np_tls_session_free(c.tls);
		c.tls = NULL;
	}
	if (!(info->flags & NBD_FLAG_HAS_FLAGS))
		info->flags = NBD_FLAG_HAS_FLAGS;
	/* The kernel's sends block until done; no timeouts in transmission. */
	setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return c.fd;

out_close:
	np_tls_session_free(c.tls);
	if (c.fd >= 0)
		close(c.fd);
	return r;
}

int np_nbd_size(const char *path, const char *name, struct np_tls *tls, struct np_export_info *info,
		char **err)
{
	struct conn c = {.fd = -1};
	uint8_t data[256];
	uint32_t type, len;
	int r = negotiate(&c, path, name, tls, NBD_OPT_INFO, info, err);

	if (!r && !send_opt(&c, NBD_OPT_ABORT, NULL, 0))
		read_reply(&c, NBD_OPT_ABORT, &type, data, sizeof(data), &len);
	np_tls_session_free(c.tls);
	if (c.fd >= 0)
		close(c.fd);
	return r;
}

int np_nbd_check(const char *path, const char *name, struct np_tls *tls, FILE *out, char **err)
{
	struct np_export_info info;
	struct nbd_request req = {.type = NBD_CMD_READ};
	struct nbd_reply reply;
	struct timeval tv = {.tv_sec = HANDSHAKE_TIMEOUT_S};
	uint8_t hdr[NBD_EXT_REQUEST_SIZE], rep[NBD_SIMPLE_REPLY_SIZE];
	struct conn c = {.fd = -1};
	uint8_t *buf = NULL;
	size_t n;
	int r;

	c.fd = np_nbd_connect(path, name, tls, &info, err);
	if (c.fd < 0)
		return c.fd;
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	req.count = info.size < NP_CHECK_READ ? info.size : NP_CHECK_READ;
	req.cookie = 1;
	buf = malloc(NP_CHECK_READ);
	if (!buf) {
		r = np_errmsg(err, -ENOMEM, "out of memory");
		goto out_close;
	}
	n = nbd_request_encode(hdr, false, &req);
	r = io_all(&c, hdr, n, 1);
	if (!r)
		r = io_all(&c, rep, sizeof(rep), 0);
	if (r) {
		r = np_errmsg(err, r, "%s: reading through the connection: %s", path, strerror(-r));
		goto out_close;
	}
	if (nbd_reply_decode(rep, sizeof(rep), &reply) != NBD_SIMPLE_REPLY_SIZE ||
	    reply.magic != NBD_SIMPLE_REPLY_MAGIC || reply.error || reply.cookie != 1) {
		r = np_errmsg(err, -EPROTO, "%s: bad reply to a read (magic %#x, error %u)", path,
			      reply.magic, reply.error);
		goto out_close;
	}
	r = io_all(&c, buf, req.count, 0);
	if (r) {
		r = np_errmsg(err, r, "%s: reading through the connection: %s", path, strerror(-r));
		goto out_close;
	}
	fwrite(buf, 1, req.count, out);
	fflush(out);
	fprintf(stderr, "%s: export size %llu, flags %#x, %s%s; read %llu bytes\n", path,
		(unsigned long long)info.size, info.flags, info.tls[0] ? info.tls : "no TLS",
		info.tls[0] ? ", record layer in the kernel" : "", (unsigned long long)req.count);
	req.type = NBD_CMD_DISC;
	req.count = 0;
	n = nbd_request_encode(hdr, false, &req);
	io_all(&c, hdr, n, 1);
	free(buf);
	close(c.fd);
	return 0;

out_close:
	free(buf);
	close(c.fd);
	return r;
}
