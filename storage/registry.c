/* The engine registry and what the core does for every engine alike: size
 * parsing, extent bookkeeping, and the synchronous dispatcher that emulates
 * what an engine lacks. */
#include <errno.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "net/proto.h"
#include "storage/storage.h"

extern const struct np_storage_ops np_storage_file;
extern const struct np_storage_ops np_storage_mem;
#ifdef NP_HAVE_RAW
extern const struct np_storage_ops np_storage_raw;
#endif
#ifdef NP_HAVE_THIN
extern const struct np_storage_ops np_storage_thin;
#endif
#ifdef NP_HAVE_RBD
extern const struct np_storage_ops np_storage_rbd;
#endif

static const struct np_storage_ops *const engines[] = {
	&np_storage_file,
	&np_storage_mem,
#ifdef NP_HAVE_RAW
	&np_storage_raw,
#endif
#ifdef NP_HAVE_THIN
	&np_storage_thin,
#endif
#ifdef NP_HAVE_RBD
	&np_storage_rbd,
#endif
};

#define N_ENGINES (sizeof(engines) / sizeof(engines[0]))

const struct np_storage_ops *np_storage_find(const char *name)
{
	for (size_t i = 0; i < N_ENGINES; i++) {
		const struct np_storage_ops *ops = engines[i];

		/* Refuse an engine built against another version of the
		 * interface rather than call through a mismatched table. */
		if (ops->api_version != NP_STORAGE_API_VERSION ||
		    ops->size != sizeof(struct np_storage_ops))
			continue;
		if (strcmp(ops->name, name) == 0)
			return ops;
	}
	return NULL;
}

const char *np_storage_names(void)
{
	static char names[128];

	if (!names[0]) {
		for (size_t i = 0; i < N_ENGINES; i++) {
			if (i)
				strcat(names, ", ");
			strcat(names, engines[i]->name);
		}
	}
	return names;
}

int np_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] != '\0' && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

bool np_fd_in_memory(int fd)
{
	struct statfs sf;
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fstatfs(fd, &sf) == 0 &&
	       (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
}

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
	uint32_t fua = io->flags & NBD_CMD_FLAG_FUA;
	int r;

	/* FUA is passed down only to engines that honour it; for the rest it
	 * becomes a flush after the write. */
	uint32_t pass = (caps & NP_CAP_FUA) ? io->flags : io->flags & ~NBD_CMD_FLAG_FUA;

	switch (io->cmd) {
	case NBD_CMD_READ:
		r = ops->pread(h, io->buf, io->len, io->offset);
		break;
	case NBD_CMD_WRITE:
		r = ops->pwrite(h, io->buf, io->len, io->offset, pass);
		break;
	case NBD_CMD_FLUSH:
		r = ops->flush ? ops->flush(h) : 0;
		fua = 0;
		break;
	case NBD_CMD_TRIM:
		r = ops->trim ? ops->trim(h, io->len, io->offset, pass) : 0;
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (ops->zero && (caps & NP_CAP_ZERO)) {
			r = ops->zero(h, io->len, io->offset, pass);
			/* An engine that cannot zero this range quickly
			 * says ENOTSUP; without FAST_ZERO we write zeroes. */
			if (r == -ENOTSUP && !(io->flags & NBD_CMD_FLAG_FAST_ZERO))
				r = zero_by_writing(ops, h, io->len, io->offset);
		} else if (io->flags & NBD_CMD_FLAG_FAST_ZERO) {
			r = -ENOTSUP;
		} else {
			r = zero_by_writing(ops, h, io->len, io->offset);
		}
		break;
	case NBD_CMD_CACHE:
		r = ops->cache ? ops->cache(h, io->len, io->offset) : 0;
		fua = 0;
		break;
	case NBD_CMD_BLOCK_STATUS:
		io->n_extents = 0;
		if (ops->extents && (caps & NP_CAP_EXTENTS)) {
			r = ops->extents(h, io);
		} else {
			np_io_add_extent(io, io->len, 0);
			r = 0;
		}
		fua = 0;
		break;
	case NBD_CMD_RESIZE:
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
