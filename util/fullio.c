/* Full I/O: see fullio.h for the rules. */
#include "util/fullio.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Linux moves at most this much in one call (MAX_RW_COUNT); asking for
 * less keeps every count positive in a ssize_t. */
#define CHUNK_MAX (1U << 30)

enum op { OP_READ, OP_WRITE, OP_PREAD, OP_PWRITE };

static ssize_t one_call(enum op op, int fd, uint8_t *p, size_t n, uint64_t off, int rwflags,
			bool *not_sock)
{
	struct iovec iov = {.iov_base = p, .iov_len = n};
	ssize_t r;

	switch (op) {
	case OP_READ:
		return read(fd, p, n);
	case OP_WRITE:
		if (*not_sock)
			return write(fd, p, n);
		r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0 && errno == ENOTSOCK) {
			*not_sock = true;
			return write(fd, p, n);
		}
		return r;
	case OP_PREAD:
		return preadv2(fd, &iov, 1, (off_t)off, rwflags);
	case OP_PWRITE:
	default:
		return pwritev2(fd, &iov, 1, (off_t)off, rwflags);
	}
}

static int full(enum op op, int fd, void *buf, size_t len, uint64_t off, int rwflags)
{
	uint8_t *p = buf;
	bool not_sock = false;
	int intr = 0;

	while (len > 0) {
		ssize_t r =
		    one_call(op, fd, p, len > CHUNK_MAX ? CHUNK_MAX : len, off, rwflags, &not_sock);

		if (r < 0 && errno == EINTR && ++intr < NP_FULLIO_MAX_EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			if (op == OP_WRITE || op == OP_PWRITE)
				return -EPIPE;
			memset(p, 0, len);
			return -ENODATA;
		}
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

int np_read_full(int fd, void *buf, size_t len)
{
	return full(OP_READ, fd, buf, len, 0, 0);
}

int np_write_full(int fd, const void *buf, size_t len)
{
	return full(OP_WRITE, fd, (void *)buf, len, 0, 0);
}

int np_pread_full(int fd, void *buf, size_t len, uint64_t off, int rwflags)
{
	return full(OP_PREAD, fd, buf, len, off, rwflags);
}

int np_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, int rwflags)
{
	return full(OP_PWRITE, fd, (void *)buf, len, off, rwflags);
}
