/* util/fullio.c: the EOF, EPIPE and EAGAIN rules that fullio.h states. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "util/fullio.h"

static void test_stream(void)
{
	int sv[2];
	uint8_t in[16], out[16];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	memset(out, 'a', sizeof(out));
	CHECK(np_write_full(sv[0], out, 10) == 0);
	CHECK(np_read_full(sv[1], in, 10) == 0);
	CHECK(memcmp(in, out, 10) == 0);
	/* End of stream before len: -ENODATA, and the rest zeroed. */
	CHECK(np_write_full(sv[0], out, 4) == 0);
	shutdown(sv[0], SHUT_WR);
	memset(in, 0xff, sizeof(in));
	CHECK(np_read_full(sv[1], in, sizeof(in)) == -ENODATA);
	CHECK(in[3] == 'a' && in[4] == 0 && in[15] == 0);
	close(sv[1]);
	/* A closed peer: -EPIPE, and no SIGPIPE kills us. */
	CHECK(np_write_full(sv[0], out, sizeof(out)) == -EPIPE);
	close(sv[0]);
}

static void test_nonblocking(void)
{
	int sv[2];
	uint8_t b[8];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	CHECK(np_read_full(sv[1], b, sizeof(b)) == -EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

static void test_file(void)
{
	char path[] = "/tmp/np-fullio-XXXXXX";
	int fd = mkstemp(path);
	uint8_t in[32], out[32];

	CHECK(fd >= 0);
	unlink(path);
	memset(out, 'b', sizeof(out));
	CHECK(np_pwrite_full(fd, out, sizeof(out), 100, 0) == 0);
	CHECK(np_pread_full(fd, in, sizeof(in), 100, 0) == 0);
	CHECK(memcmp(in, out, sizeof(in)) == 0);
	/* Past the end of the file: -ENODATA with the tail zeroed. */
	memset(in, 0xff, sizeof(in));
	CHECK(np_pread_full(fd, in, sizeof(in), 120, 0) == -ENODATA);
	CHECK(in[11] == 'b' && in[12] == 0 && in[31] == 0);
	/* A pipe is written with write(), not send(). */
	{
		int p[2];

		CHECK(pipe(p) == 0);
		CHECK(np_write_full(p[1], out, 5) == 0);
		CHECK(np_read_full(p[0], in, 5) == 0);
		close(p[0]);
		close(p[1]);
	}
	close(fd);
}

int main(void)
{
	test_stream();
	test_nonblocking();
	test_file();
	return check_done();
}
