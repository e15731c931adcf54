/* `nbdplex volume import/export`: the NBD endpoint, through libnbd.
 *
 * Extents come from block status in the base:allocation context when the
 * server offers it (else everything is data). Zeroing a range first asks
 * the server what it already holds there and leaves alone what it reports
 * as zeroes, so exporting into a fresh sparse or thin target writes only
 * the data; the rest goes out as WRITE_ZEROES (which lets the server
 * deallocate), or as written zeroes to a server without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "net/proto.h"
#include "storage/storage.h"
#include "util/err.h"
#include "tools/volume_copy.h"

/* One request's bytes at most: the protocol's portable limit is 32 MiB,
 * and a server may ask for less. Block status and zero requests stay below
 * 2^32 on the wire. */
#define MAX_REQUEST (32u << 20)
#define MAX_RANGE   (1u << 30)
#define ZERO_BUF    (1u << 20)

struct nbd_ep {
	struct nbd_handle *h;
	bool extents, can_zero, can_flush;
	uint32_t max_req;
	char *zeroes; /* for servers without WRITE_ZEROES, allocated on first use */
};

static int nbd_failed(struct vc_ep *ep)
{
	const char *msg = nbd_get_error();
	int e = nbd_get_errno();

	snprintf(ep->msg, sizeof(ep->msg), "%s", msg ? msg : "NBD request failed");
	return e > 0 ? -e : -EIO;
}

struct ext_ctx {
	struct np_io *io;
	uint64_t pos;
};

static int extent_cb(void *user, const char *context, uint64_t offset, uint32_t *entries, size_t n,
		     int *error)
{
	struct ext_ctx *c = user;
	uint64_t end = c->io->offset + c->io->len;

	(void)offset;
	(void)error;
	if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < n && c->pos < end; i += 2) {
		uint64_t len = entries[i] < end - c->pos ? entries[i] : end - c->pos;

		if (!np_io_add_extent(c->io, len,
				      entries[i + 1] & (NBD_STATE_HOLE | NBD_STATE_ZERO)))
			break;
		c->pos += len;
	}
	return 0;
}

static int nbd_ep_extents(struct vc_ep *ep, struct np_io *io)
{
	struct nbd_ep *n = ep->priv;
	struct ext_ctx c = {.io = io, .pos = io->offset};
	nbd_extent_callback cb = {.callback = extent_cb, .user_data = &c};

	io->n_extents = 0;
	if (!n->extents)
		return np_io_add_extent(io, io->len, 0), 0;
	if (io->len > MAX_RANGE)
		io->len = MAX_RANGE;
	if (nbd_block_status(n->h, io->len, io->offset, cb, 0) < 0)
		return nbd_failed(ep);
	return 0;
}

static int nbd_ep_read(struct vc_ep *ep, void *buf, uint64_t len, uint64_t off)
{
	struct nbd_ep *n = ep->priv;

	while (len > 0) {
		uint64_t k = len < n->max_req ? len : n->max_req;

		if (nbd_pread(n->h, buf, k, off, 0) < 0)
			return nbd_failed(ep);
		buf = (char *)buf + k;
		off += k;
		len -= k;
	}
	return 0;
}

static int nbd_ep_write(struct vc_ep *ep, const void *buf, uint64_t len, uint64_t off)
{
	struct nbd_ep *n = ep->priv;

	while (len > 0) {
		uint64_t k = len < n->max_req ? len : n->max_req;

		if (nbd_pwrite(n->h, buf, k, off, 0) < 0)
			return nbd_failed(ep);
		buf = (const char *)buf + k;
		off += k;
		len -= k;
	}
	return 0;
}

/* Zeroes a range the server did not report as zeroes. */
static int zero_range(struct vc_ep *ep, uint64_t len, uint64_t off)
{
	struct nbd_ep *n = ep->priv;

	while (len > 0) {
		uint64_t k = len < MAX_RANGE ? len : MAX_RANGE;

		if (n->can_zero) {
			if (nbd_zero(n->h, k, off, 0) < 0)
				return nbd_failed(ep);
		} else {
			if (!n->zeroes && !(n->zeroes = calloc(1, ZERO_BUF)))
				return -ENOMEM;
			if (k > ZERO_BUF)
				k = ZERO_BUF;
			if (nbd_pwrite(n->h, n->zeroes, k, off, 0) < 0)
				return nbd_failed(ep);
		}
		off += k;
		len -= k;
	}
	return 0;
}

static int nbd_ep_zero(struct vc_ep *ep, uint64_t len, uint64_t off)
{
	struct np_extent ext[64];
	int rc;

	while (len > 0) {
		struct np_io io = {.offset = off, .len = len, .extents = ext, .max_extents = 64};

		rc = nbd_ep_extents(ep, &io);
		if (rc < 0)
			return rc;
		if (io.n_extents == 0)
			np_io_add_extent(&io, io.len, 0);
		for (uint32_t i = 0; i < io.n_extents && len > 0; i++) {
			uint64_t k = ext[i].length < len ? ext[i].length : len;

			if (!(ext[i].flags & NP_EXTENT_ZERO) && (rc = zero_range(ep, k, off)) < 0)
				return rc;
			off += k;
			len -= k;
		}
	}
	return 0;
}

static int nbd_ep_flush(struct vc_ep *ep)
{
	struct nbd_ep *n = ep->priv;

	if (n->can_flush && nbd_flush(n->h, 0) < 0)
		return nbd_failed(ep);
	return 0;
}

static void nbd_ep_close(struct vc_ep *ep)
{
	struct nbd_ep *n = ep->priv;

	nbd_shutdown(n->h, 0);
	nbd_close(n->h);
	free(n->zeroes);
	free(n);
	ep->priv = NULL;
}

static const struct vc_ep_ops nbd_ops = {
    .extents = nbd_ep_extents,
    .read = nbd_ep_read,
    .write = nbd_ep_write,
    .zero = nbd_ep_zero,
    .flush = nbd_ep_flush,
    .close = nbd_ep_close,
};

int vc_nbd_open(struct vc_ep *ep, const char *uri, bool writable, char **err)
{
	struct nbd_ep *n = calloc(1, sizeof(*n));
	int64_t size, max;
	int rc;

	if (!n)
		return -ENOMEM;
	n->h = nbd_create();
	if (!n->h) {
		free(n);
		return np_errmsg(err, -ENOMEM, "%s: %s", uri, nbd_get_error());
	}
	if (nbd_add_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    nbd_connect_uri(n->h, uri) < 0) {
		rc = nbd_get_errno() > 0 ? -nbd_get_errno() : -EIO;
		np_errmsg(err, rc, "%s: %s", uri, nbd_get_error());
		goto out_close;
	}
	size = nbd_get_size(n->h);
	if (size < 0) {
		rc = np_errmsg(err, -EIO, "%s: %s", uri, nbd_get_error());
		goto out_close;
	}
	if (writable && nbd_is_read_only(n->h) == 1) {
		rc = np_errmsg(err, -EROFS, "%s: the server exports it read-only", uri);
		goto out_close;
	}
	n->extents = nbd_can_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	n->can_zero = nbd_can_zero(n->h) == 1;
	n->can_flush = nbd_can_flush(n->h) == 1;
	max = nbd_get_block_size(n->h, LIBNBD_SIZE_MAXIMUM);
	n->max_req = max > 0 && max < MAX_REQUEST ? (uint32_t)max : MAX_REQUEST;
	ep->ops = &nbd_ops;
	ep->priv = n;
	ep->size = (uint64_t)size;
	return 0;

out_close:
	nbd_close(n->h);
	free(n);
	return rc;
}
