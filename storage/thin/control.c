/* Thin pools: the control socket POOLDIR/control.sock.
 *
 * While a server has a pool open, RocksDB's lock keeps `nbdplex volume` from
 * opening it, so the server answers catalog commands on a Unix socket from a
 * thread of its own (commands are rare and short; one at a time is enough).
 *
 * Protocol, one command per connection: the client sends the words of the
 * command separated by single spaces and ended by "\n" (names and sizes
 * never contain spaces); the server answers with the command's output, then
 * a last line "OK" or "ERR <errno> <message>", and closes.
 *
 * The socket is mode 0600: whoever may change the catalog may also open
 * the pool directly. Paths go through /proc/self/fd/DIRFD so that a long POOLDIR does not
 * overflow sun_path. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "storage/thin/pool.h"

#define CTL_MAX_LINE 4096
#define CTL_MAX_ARGS 8
#define CTL_IO_MS    5000
#define CTL_REPLY_MS 600000

static int sock_addr(const char *dir, int *dirfd, struct sockaddr_un *sa)
{
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return -errno;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/control.sock", *dirfd);
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		buf += w;
		len -= w;
	}
	return 0;
}

/* Reads until "\n" (server) or EOF (client), waiting at most ms per read. */
static ssize_t read_msg(int fd, char **bufp, bool to_eof, int ms)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (len + 1 >= cap) {
			char *n;

			if (!to_eof && cap >= CTL_MAX_LINE)
				break;
			n = realloc(buf, cap * 2);
			if (!n)
				break;
			buf = n;
			cap *= 2;
		}
		if (poll(&pfd, 1, ms) <= 0)
			break;
		r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += r;
		if (!to_eof && memchr(buf, '\n', len))
			break;
	}
	buf[len] = '\0';
	*bufp = buf;
	return len;
}

static void serve_one(struct thin_pool *p, int fd)
{
	char *line = NULL, *out = NULL, *err = NULL, *save = NULL;
	char *argv[CTL_MAX_ARGS];
	size_t outlen = 0;
	int argc = 0, rc;
	FILE *f;

	if (read_msg(fd, &line, false, CTL_IO_MS) <= 0 || !strchr(line, '\n')) {
		free(line);
		return;
	}
	*strchr(line, '\n') = '\0';
	for (char *w = strtok_r(line, " ", &save); w && argc < CTL_MAX_ARGS;
	     w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	f = open_memstream(&out, &outlen);
	if (!f) {
		free(line);
		return;
	}
	if (argc == 1 && strcmp(argv[0], "ping") == 0)
		rc = 0;
	else
		rc = thin_admin(p, argc, argv, f, &err);
	if (rc == 0)
		fprintf(f, "OK\n");
	else
		fprintf(f, "ERR %d %s\n", -rc, err ? err : strerror(-rc));
	fclose(f);
	write_all(fd, out, outlen);
	free(out);
	free(err);
	free(line);
}

static void *control_main(void *arg)
{
	struct thin_pool *p = arg;

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = p->ctl_fd, .events = POLLIN},
		    {.fd = p->ctl_wake[0], .events = POLLIN},
		};
		int fd;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		fd = accept4(p->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(p, fd);
		close(fd);
	}
	return NULL;
}

int thin_control_start(struct thin_pool *p, char **err)
{
	struct sockaddr_un sa;
	int dirfd, rc;

	rc = sock_addr(p->dir, &dirfd, &sa);
	if (rc < 0)
		return thin_errmsg(err, rc, "%s: %s", p->dir, strerror(-rc));
	/* We hold the database lock, so a socket left here is stale. */
	unlinkat(dirfd, "control.sock", 0);
	p->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->ctl_fd < 0 || bind(p->ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(dirfd, "control.sock", 0600, 0) < 0 || listen(p->ctl_fd, 8) < 0 ||
	    pipe2(p->ctl_wake, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out_close;
	}
	rc = -pthread_create(&p->ctl_thread, NULL, control_main, p);
	if (rc < 0)
		goto out_close;
	p->ctl_running = true;
	close(dirfd);
	return 0;

out_close:
	if (p->ctl_fd >= 0) {
		close(p->ctl_fd);
		unlinkat(dirfd, "control.sock", 0);
	}
	if (p->ctl_wake[0] >= 0) {
		close(p->ctl_wake[0]);
		close(p->ctl_wake[1]);
	}
	p->ctl_fd = p->ctl_wake[0] = p->ctl_wake[1] = -1;
	close(dirfd);
	return thin_errmsg(err, rc, "%s/control.sock: %s", p->dir, strerror(-rc));
}

void thin_control_stop(struct thin_pool *p)
{
	char path[PATH_MAX + 16];

	if (!p->ctl_running)
		return;
	if (write(p->ctl_wake[1], "x", 1) < 0) {
		/* The pipe is empty and ours: a failed write means the
		 * thread cannot be woken, so do not wait for it. */
		pthread_detach(p->ctl_thread);
	} else {
		pthread_join(p->ctl_thread, NULL);
	}
	close(p->ctl_fd);
	close(p->ctl_wake[0]);
	close(p->ctl_wake[1]);
	snprintf(path, sizeof(path), "%s/control.sock", p->dir);
	unlink(path);
	p->ctl_running = false;
}

int thin_control_call(const char *dir, int argc, char **argv, FILE *out, char **err)
{
	struct sockaddr_un sa;
	char *line = NULL, *reply = NULL, *last;
	size_t linelen = 0;
	int fd, dirfd, rc;
	FILE *f;

	rc = sock_addr(dir, &dirfd, &sa);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		close(dirfd);
		return rc;
	}
	close(dirfd);
	f = open_memstream(&line, &linelen);
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	for (int i = 0; i < argc; i++)
		fprintf(f, "%s%s", i ? " " : "", argv[i]);
	fprintf(f, "\n");
	fclose(f);
	rc = write_all(fd, line, linelen);
	free(line);
	if (rc == 0 && read_msg(fd, &reply, true, CTL_REPLY_MS) < 0)
		rc = -ENOMEM;
	close(fd);
	if (rc < 0)
		return rc;
	/* The status is the last line; everything before it is output. */
	last = reply + strlen(reply);
	if (last > reply && last[-1] == '\n')
		*--last = '\0';
	while (last > reply && last[-1] != '\n')
		last--;
	if (strcmp(last, "OK") == 0) {
		rc = 0;
	} else if (strncmp(last, "ERR ", 4) == 0) {
		char *msg;
		long n = strtol(last + 4, &msg, 10);

		rc = n > 0 && n < 4096 ? (int)-n : -EIO;
		thin_errmsg(err, rc, "%s", *msg == ' ' ? msg + 1 : msg);
	} else {
		/* The server closed without a status: it is going away. */
		rc = -ECONNRESET;
	}
	fwrite(reply, 1, last - reply, out);
	free(reply);
	return rc;
}
