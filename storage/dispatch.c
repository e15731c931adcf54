/* The synchronous dispatcher: one np_io run through an engine's blocking
 * operations, with the emulations that let every engine answer every
 * request (zero by writing, FUA by a flush, the rest as no-ops).
 *
 * It lives beside the engine interface rather than in the server core
 * because three kinds of callers need it and none of them may call up into
 * engine/: the core's worker pool, an asynchronous engine running what it
 * cannot submit (raw_aio.c), and tools that drive an engine without a
 * server (nbdplex volume import and export). It knows nothing but
 * storage.h. */
#include <errno.h>
#include <stdint.h>

#include "storage/storage.h"

bool np_io_add_extent(struct np_io *io, uint64_t length, uint32_t flags)
{
	if (length == 0)
		return true;
	if (io->n_extents && io->extents[io->n_extents - 1].flags == flags) {
		io->extents[io->n_extents - 1].length += length;
		return true;
	}
	if (io->n_extents >= io->max_extents)
		return false;
	io->extents[io->n_extents].length = length;
	io->extents[io->n_extents].flags = flags;
	io->n_extents++;
	return true;
}

/* Writes zeroes through pwrite, for engines without zero(). */
static int zero_by_writing(const struct np_storage_ops *ops, void *h, uint64_t len, uint64_t off)
{
	static const uint8_t zeroes[64 * 1024];

	while (len) {
		uint64_t n = len < sizeof(zeroes) ? len : sizeof(zeroes);
		int r = ops->pwrite(h, zeroes, n, off, 0);

		if (r < 0)
			return r;
		len -= n;
		off += n;
	}
	return 0;
}

void np_io_run_sync(const struct np_storage_ops *ops, void *h, uint32_t caps, struct np_io *io)
{
	uint32_t fua = io->flags & NP_IO_FUA;
	int r;

	/* FUA is passed down only to engines that honour it; for the rest it
	 * becomes a flush after the write. */
	uint32_t pass = (caps & NP_CAP_FUA) ? io->flags : io->flags & ~NP_IO_FUA;

	switch (io->op) {
	case NP_OP_READ:
		r = ops->pread(h, io->buf, io->len, io->offset);
		break;
	case NP_OP_WRITE:
		r = ops->pwrite(h, io->buf, io->len, io->offset, pass);
		break;
	case NP_OP_FLUSH:
		r = ops->flush ? ops->flush(h) : 0;
		fua = 0;
		break;
	case NP_OP_TRIM:
		r = ops->trim ? ops->trim(h, io->len, io->offset, pass) : 0;
		break;
	case NP_OP_ZERO:
		if (ops->zero && (caps & NP_CAP_ZERO)) {
			r = ops->zero(h, io->len, io->offset, pass);
			/* An engine that cannot zero this range quickly
			 * says ENOTSUP; without FAST_ZERO we write zeroes. */
			if (r == -ENOTSUP && !(io->flags & NP_IO_FAST_ZERO))
				r = zero_by_writing(ops, h, io->len, io->offset);
		} else if (io->flags & NP_IO_FAST_ZERO) {
			r = -ENOTSUP;
		} else {
			r = zero_by_writing(ops, h, io->len, io->offset);
		}
		break;
	case NP_OP_CACHE:
		r = ops->cache ? ops->cache(h, io->len, io->offset) : 0;
		fua = 0;
		break;
	case NP_OP_EXTENTS:
		io->n_extents = 0;
		if (io->context && !ops->contexts) {
			r = -EINVAL; /* a context this engine never offered */
		} else if (ops->extents && (caps & NP_CAP_EXTENTS)) {
			r = ops->extents(h, io);
		} else {
			np_io_add_extent(io, io->len, 0);
			r = 0;
		}
		fua = 0;
		break;
	case NP_OP_RESIZE:
		/* The new size travels in the offset field. */
		r = ops->resize && (caps & NP_CAP_RESIZE) ? ops->resize(h, io->offset) : -EINVAL;
		fua = 0;
		break;
	default:
		r = -EINVAL;
		fua = 0;
		break;
	}
	if (r == 0 && fua && !(caps & NP_CAP_FUA) && ops->flush)
		r = ops->flush(h);
	io->result = r;
}
