/* Unix control sockets: see ctl.h for the protocol.
 *
 * The serving thread polls every listening socket and a wake pipe. Any
 * change to the set of sockets bumps gen and wakes it; the thread records
 * the gen it has seen at the top of each round, before it builds its poll
 * set, so np_ctl_close knows when the thread can no longer touch a socket
 * it removed (a request in progress on it included). */
#include "util/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fullio.h"

struct np_ctl {
	struct np_ctl_config cfg;
	char *path;
	int fd;
	dev_t dev; /* the socket file bound, so as to remove only that one: */
	ino_t ino; /* a process that took over may have bound its own there */
	struct np_ctl *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct np_ctl *socks;
	pthread_t thread;
	bool running, stopping;
	int wake[2];
	unsigned long gen, seen;
} g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .wake = {-1, -1},
};

/* Fills sa for path. A path too long for sun_path goes through
 * /proc/self/fd/DIRFD/NAME; *dirfd is then open until the caller has bound
 * or connected, and closes it. */
static int ctl_addr(const char *path, struct sockaddr_un *sa, int *dirfd)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int n;

	*dirfd = -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path) + 1);
		return 0;
	}
	if (!slash)
		return -ENAMETOOLONG;
	dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (*dirfd < 0)
		return -errno;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd, slash + 1);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
		close(*dirfd);
		*dirfd = -1;
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Reads one request line into buf (max_line + 1 bytes): returns its
 * length without the "\n", -E2BIG when no "\n" came within max_line bytes,
 * or another negative errno when the client sent nothing usable in time. */
static ssize_t read_line(int fd, char *buf, size_t max_line)
{
	size_t len = 0;

	while (len < max_line) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char *nl;
		ssize_t r;
		int pr = poll(&pfd, 1, NP_CTL_IO_MS);

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr == 0 ? -ETIMEDOUT : -errno;
		r = read(fd, buf + len, max_line - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break; /* the client's EOF ends the line too */
		nl = memchr(buf + len, '\n', (size_t)r);
		len += (size_t)r;
		if (nl) {
			len = (size_t)(nl - buf);
			break;
		}
	}
	if (len == 0)
		return -ENODATA;
	if (len == max_line)
		return -E2BIG;
	buf[len] = '\0';
	if (buf[len - 1] == '\r')
		buf[--len] = '\0';
	return (ssize_t)len;
}

/* Runs the verb of line. Returns its status, or 1 when a verb took the
 * connection fd over. */
static int run_verb(struct np_ctl *c, int fd, char *line, FILE *out, char **err)
{
	char *argv[NP_CTL_MAX_ARGS], *save = NULL;
	int argc = 0;

	for (char *w = strtok_r(line, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (argc == NP_CTL_MAX_ARGS)
			return np_errmsg(err, -E2BIG, "more than %d words", NP_CTL_MAX_ARGS);
		argv[argc++] = w;
	}
	if (argc == 0)
		return np_errmsg(err, -EINVAL, "no command");
	if (c->cfg.take && strcmp(argv[0], c->cfg.take_verb) == 0) {
		int rc = argc == 1 ? c->cfg.take(c->cfg.ctx, fd, argc, argv, err)
				   : np_errmsg(err, -EINVAL, "usage: %s", c->cfg.take_verb);

		return rc < 0 ? rc : 1;
	}
	for (size_t i = 0; i < c->cfg.nverbs; i++) {
		const struct np_ctl_verb *v = &c->cfg.verbs[i];

		if (strcmp(argv[0], v->name) != 0)
			continue;
		if (v->nargs >= 0 && argc != 1 + v->nargs)
			return np_errmsg(err, -EINVAL, "usage: %s", v->usage ? v->usage : v->name);
		return v->fn(c->cfg.ctx, argc, argv, out, err);
	}
	return np_errmsg(err, -EINVAL, "unknown command %s", argv[0]);
}

/* Serves one request on fd; returns whether fd is still ours to close. */
static bool serve_one(struct np_ctl *c, int fd)
{
	struct timeval tv = {.tv_sec = NP_CTL_IO_MS / 1000};
	char *line = malloc(c->cfg.max_line + 1), *out = NULL, *err = NULL;
	size_t outlen = 0;
	ssize_t n;
	FILE *f;
	int rc;

	/* Whatever the verb wrote waits at most this long for a client that
	 * does not read. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!line)
		return true;
	n = read_line(fd, line, c->cfg.max_line);
	if (n < 0 && n != -E2BIG) {
		free(line);
		return true;
	}
	f = open_memstream(&out, &outlen);
	if (!f) {
		free(line);
		return true;
	}
	if (n == -E2BIG)
		rc = np_errmsg(&err, -E2BIG, "request longer than %zu bytes", c->cfg.max_line - 1);
	else
		rc = run_verb(c, fd, line, f, &err);
	if (rc == 1) {
		fclose(f);
		free(out);
		free(line);
		return false;
	}
	if (c->cfg.framing == NP_CTL_STATUS && rc == 0)
		fprintf(f, "OK\n");
	else if (c->cfg.framing == NP_CTL_STATUS)
		fprintf(f, "ERR %d %s\n", -rc, err ? err : strerror(-rc));
	else if (rc < 0)
		fprintf(f, "error: %s\n", err ? err : strerror(-rc));
	if (fclose(f) == 0)
		np_write_full(fd, out, outlen);
	free(out);
	free(err);
	free(line);
	return true;
}

static void *ctl_main(void *arg)
{
	struct pollfd *pfd = NULL;
	struct np_ctl **socks = NULL;

	(void)arg;
	pthread_mutex_lock(&g.mu);
	while (!g.stopping) {
		unsigned long round = g.gen;
		size_t n = 0, i;
		void *np, *ns;
		struct pollfd wake_only, *pf;
		int r;

		g.seen = round;
		pthread_cond_broadcast(&g.cv);
		for (struct np_ctl *c = g.socks; c; c = c->next)
			n++;
		np = realloc(pfd, (n + 1) * sizeof(*pfd));
		ns = np ? realloc(socks, (n + 1) * sizeof(*socks)) : NULL;
		if (np)
			pfd = np;
		if (ns)
			socks = ns;
		if (!np || !ns)
			n = 0; /* out of memory: serve nothing until woken */
		pf = pfd ? pfd : &wake_only;
		pf[0] = (struct pollfd){.fd = g.wake[0], .events = POLLIN};
		i = 0;
		for (struct np_ctl *c = g.socks; c && i < n; c = c->next, i++) {
			pf[1 + i] = (struct pollfd){.fd = c->fd, .events = POLLIN};
			socks[i] = c;
		}
		pthread_mutex_unlock(&g.mu);
		r = poll(pf, n + 1, -1);
		pthread_mutex_lock(&g.mu);
		if (r <= 0)
			continue;
		if (pf[0].revents) {
			char drain[64];

			while (read(g.wake[0], drain, sizeof(drain)) > 0)
				;
		}
		/* A changed set of sockets is polled afresh: a socket polled
		 * this round may be gone. */
		for (i = 0; i < n && g.gen == round && !g.stopping; i++) {
			int fd;

			if (!pf[1 + i].revents)
				continue;
			fd = accept4(socks[i]->fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			pthread_mutex_unlock(&g.mu);
			if (serve_one(socks[i], fd))
				close(fd);
			pthread_mutex_lock(&g.mu);
		}
	}
	g.seen = g.gen;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	free(pfd);
	free(socks);
	return NULL;
}

static void wake_thread(void)
{
	/* A full pipe already wakes the thread. */
	if (write(g.wake[1], "x", 1) < 0) {
	}
}

int np_ctl_listen(const struct np_ctl_config *cfg, struct np_ctl **out, char **err)
{
	struct np_ctl *c = calloc(1, sizeof(*c));
	struct sockaddr_un sa;
	int dirfd = -1, rc;

	if (!c || !(c->path = strdup(cfg->path))) {
		free(c);
		return np_errmsg(err, -ENOMEM, "%s: out of memory", cfg->path);
	}
	c->cfg = *cfg;
	c->fd = -1;
	rc = ctl_addr(c->path, &sa, &dirfd);
	if (rc < 0)
		goto out_free;
	/* A socket file left by a process that was killed. */
	unlink(c->path);
	/* Non-blocking, so that the thread's accept never waits for a
	 * connection another poller took. */
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out_free;
	}
	/* Before listen, so that nobody connects while the mode is wider. */
	if ((cfg->mode && chmod(c->path, cfg->mode) < 0) ||
	    listen(c->fd, cfg->backlog > 0 ? cfg->backlog : 8) < 0) {
		rc = -errno;
		unlink(c->path);
		goto out_free;
	}
	{
		struct stat st;

		if (stat(c->path, &st) == 0) {
			c->dev = st.st_dev;
			c->ino = st.st_ino;
		}
	}
	if (dirfd >= 0)
		close(dirfd);
	dirfd = -1;

	pthread_mutex_lock(&g.mu);
	while (g.stopping)
		pthread_cond_wait(&g.cv, &g.mu);
	if (!g.running) {
		if (pipe2(g.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
			rc = -errno;
		} else {
			rc = -pthread_create(&g.thread, NULL, ctl_main, NULL);
			if (rc < 0) {
				close(g.wake[0]);
				close(g.wake[1]);
				g.wake[0] = g.wake[1] = -1;
			}
		}
		if (rc < 0) {
			pthread_mutex_unlock(&g.mu);
			unlink(c->path);
			goto out_free;
		}
		g.running = true;
	}
	c->next = g.socks;
	g.socks = c;
	g.gen++;
	wake_thread();
	pthread_mutex_unlock(&g.mu);
	*out = c;
	return 0;

out_free:
	if (dirfd >= 0)
		close(dirfd);
	if (c->fd >= 0)
		close(c->fd);
	np_errmsg(err, rc, "%s: %s", c->path, strerror(-rc));
	free(c->path);
	free(c);
	return rc;
}

void np_ctl_close(struct np_ctl *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&g.mu);
	for (struct np_ctl **pp = &g.socks; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	g.gen++;
	if (!g.socks) {
		pthread_t t = g.thread;

		/* The last socket: the thread goes, so that a process that
		 * serves none has no thread for it. */
		g.stopping = true;
		wake_thread();
		pthread_mutex_unlock(&g.mu);
		pthread_join(t, NULL);
		pthread_mutex_lock(&g.mu);
		close(g.wake[0]);
		close(g.wake[1]);
		g.wake[0] = g.wake[1] = -1;
		g.running = g.stopping = false;
		pthread_cond_broadcast(&g.cv);
	} else {
		unsigned long mine = g.gen;

		wake_thread();
		while (g.seen < mine)
			pthread_cond_wait(&g.cv, &g.mu);
	}
	pthread_mutex_unlock(&g.mu);
	close(c->fd);
	{
		struct stat st;

		if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
			unlink(c->path);
	}
	free(c->path);
	free(c);
}

void np_ctl_out_file(void *arg, const char *data, size_t len)
{
	fwrite(data, 1, len, arg);
}

/* Parses the status line of an NP_CTL_STATUS answer. */
static int parse_status(const char *last, char **err)
{
	char *msg;
	long n;

	if (strcmp(last, "OK") == 0)
		return 0;
	if (strncmp(last, "ERR ", 4) != 0)
		return -ECONNRESET; /* closed without a status: it is going away */
	n = strtol(last + 4, &msg, 10);
	return np_errmsg(err, n > 0 && n < 4096 ? (int)-n : -EIO, "%s",
			 *msg == ' ' ? msg + 1 : msg);
}

int np_ctl_open(const char *path, int argc, char *const *argv)
{
	struct sockaddr_un sa;
	char *req = NULL;
	size_t reqlen = 0;
	int fd, dirfd, rc;
	FILE *f;

	rc = ctl_addr(path, &sa, &dirfd);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		if (dirfd >= 0)
			close(dirfd);
		return rc;
	}
	if (dirfd >= 0)
		close(dirfd);
	f = open_memstream(&req, &reqlen);
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	for (int i = 0; i < argc; i++)
		fprintf(f, "%s%s", i ? " " : "", argv[i]);
	fprintf(f, "\n");
	rc = fclose(f) == 0 ? np_write_full(fd, req, reqlen) : -ENOMEM;
	free(req);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int np_ctl_call(const char *path, enum np_ctl_framing framing, int argc, char *const *argv,
		np_ctl_out_fn out, void *arg, char **err)
{
	char *hold = NULL, buf[65536];
	size_t held = 0;
	int fd = np_ctl_open(path, argc, argv), rc = 0;

	if (fd < 0)
		return fd;
	while (rc == 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, NP_CTL_REPLY_MS);
		ssize_t n;

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			rc = pr == 0 ? -ETIMEDOUT : -errno;
			break;
		}
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		/* A server that answers before it has read a whole request
		 * (one too long) resets the connection after its answer: the
		 * answer is complete, and its status says so. */
		if (n < 0 && errno != ECONNRESET)
			rc = -errno;
		if (n <= 0)
			break;
		if (framing == NP_CTL_RAW) {
			out(arg, buf, (size_t)n);
			continue;
		}
		/* The last complete line may be the status: hold it back, and
		 * pass on every line before it. */
		{
			char *nh = realloc(hold, held + (size_t)n + 1);
			size_t emit = 0;

			if (!nh) {
				rc = -ENOMEM;
				break;
			}
			hold = nh;
			memcpy(hold + held, buf, (size_t)n);
			held += (size_t)n;
			for (size_t i = held - 1; i-- > 0;)
				if (hold[i] == '\n') {
					emit = i + 1;
					break;
				}
			if (hold[held - 1] != '\n') {
				char *nl = memrchr(hold, '\n', held);

				emit = nl ? (size_t)(nl - hold) + 1 : 0;
			}
			if (emit) {
				out(arg, hold, emit);
				memmove(hold, hold + emit, held - emit);
				held -= emit;
			}
		}
	}
	close(fd);
	if (framing == NP_CTL_STATUS && rc == 0) {
		char *last;

		if (!hold)
			hold = calloc(1, 1);
		if (!hold)
			return -ENOMEM;
		hold[held] = '\0';
		if (held && hold[held - 1] == '\n')
			hold[--held] = '\0';
		last = memrchr(hold, '\n', held);
		last = last ? last + 1 : hold;
		if (last > hold)
			out(arg, hold, (size_t)(last - hold));
		rc = parse_status(last, err);
	}
	free(hold);
	return rc;
}

int np_ctl_send(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(NP_CTL_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > NP_CTL_MAX_FDS || len == 0)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	/* The descriptors ride on the first bytes; the rest, if the socket
	 * took only part, follows as plain bytes. */
	do
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : np_write_full(fd, (const char *)buf + n, len - (size_t)n);
}

/* Waits until fd is readable, at most timeout_ms. */
static int wait_readable(int fd, int timeout_ms)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, timeout_ms);

		if (pr > 0)
			return 0;
		if (pr == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
	return -EINTR;
}

int np_ctl_recv(int fd, void *buf, size_t len, int *fds, size_t *nfds, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(NP_CTL_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	size_t got = 0;

	*nfds = 0;
	while (got < len) {
		struct iovec iov = {.iov_base = (char *)buf + got, .iov_len = len - got};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;
		int rc = wait_readable(fd, timeout_ms);

		if (rc < 0)
			return rc;
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			size_t k;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int one;

				memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (*nfds < NP_CTL_MAX_FDS)
					fds[(*nfds)++] = one;
				else
					close(one);
			}
		}
		if (n == 0)
			return -ENODATA;
		got += (size_t)n;
	}
	return 0;
}
