/* Where statistics leave the server: Prometheus' /metrics over HTTP
 * (libmicrohttpd, on its own thread) and a unix control socket that
 * `nbdplex stats` reads. Both format the same snapshot (stats.c). */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/internal.h"

struct np_metrics {
	struct MHD_Daemon *httpd;
	int control_fd;
	pthread_t control_thread;
	bool control_running;
	char *control_path;
};

static enum MHD_Result on_http(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **state)
{
	struct np_server *srv = cls;
	struct MHD_Response *resp;
	struct np_buf b = {0};
	enum MHD_Result r;
	unsigned status = MHD_HTTP_OK;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		np_buf_append(&b, "GET /metrics\n", 13);
	} else if (strcmp(url, "/metrics") != 0) {
		status = MHD_HTTP_NOT_FOUND;
		np_buf_append(&b, "see /metrics\n", 13);
	} else if (np_stats_collect(srv, &b) < 0) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		np_buf_free(&b);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static int start_http(struct np_server *srv, struct np_metrics *m, const char *addr)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	const char *colon = strrchr(addr, ':');
	char host[256];
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int r;

	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		np_err("--metrics '%s': want HOST:PORT", addr);
		return -1;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host) - 2);
		host[strlen(host) - 2] = '\0';
	}
	r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
	if (r != 0) {
		np_err("--metrics '%s': %s", addr, gai_strerror(r));
		return -1;
	}
	if (res->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->httpd = MHD_start_daemon(flags, 0, NULL, NULL, on_http, srv, MHD_OPTION_SOCK_ADDR,
				    res->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				    MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
	freeaddrinfo(res);
	if (!m->httpd) {
		np_err("--metrics %s: cannot listen (address in use?)", addr);
		return -1;
	}
	np_info("metrics on http://%s/metrics", addr);
	return 0;
}

/* The control socket: each client sends one command line and gets the
 * answer, then the connection closes. Only "stats" exists today. */
static void *control_main(void *arg)
{
	struct np_server *srv = arg;
	struct np_metrics *m = srv->metrics;

	for (;;) {
		char cmd[64];
		ssize_t n;
		int fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* closed by np_metrics_stop */
		}
		{
			struct timeval tv = {.tv_sec = 5};

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		}
		n = read(fd, cmd, sizeof(cmd) - 1);
		if (n > 0) {
			struct np_buf b = {0};

			cmd[n] = '\0';
			cmd[strcspn(cmd, "\r\n")] = '\0';
			if (strcmp(cmd, "stats") == 0)
				np_stats_collect(srv, &b);
			else
				np_buf_append(&b, "error: unknown command\n", 23);
			for (size_t off = 0; off < b.len;) {
				ssize_t w = write(fd, b.data + off, b.len - off);

				if (w <= 0)
					break;
				off += (size_t)w;
			}
			np_buf_free(&b);
		}
		close(fd);
	}
}

static int start_control(struct np_server *srv, struct np_metrics *m, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sa.sun_path)) {
		np_err("--control %s: path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	m->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(path); /* a socket left by a server that was killed */
	if (m->control_fd < 0 || bind(m->control_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(m->control_fd, 16) < 0) {
		np_err("--control %s: %s", path, strerror(errno));
		return -1;
	}
	m->control_path = strdup(path);
	if (pthread_create(&m->control_thread, NULL, control_main, srv) != 0)
		return -1;
	m->control_running = true;
	return 0;
}

int np_metrics_start(struct np_server *srv)
{
	struct np_metrics *m;

	if (!srv->cfg->metrics && !srv->cfg->control)
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	m->control_fd = -1;
	srv->metrics = m;
	if (srv->cfg->metrics && start_http(srv, m, srv->cfg->metrics) < 0)
		return -1;
	if (srv->cfg->control && start_control(srv, m, srv->cfg->control) < 0)
		return -1;
	return 0;
}

void np_metrics_stop(struct np_server *srv)
{
	struct np_metrics *m = srv->metrics;

	if (!m)
		return;
	if (m->httpd)
		MHD_stop_daemon(m->httpd);
	if (m->control_fd >= 0) {
		/* Wakes the thread blocked in accept. */
		shutdown(m->control_fd, SHUT_RDWR);
		if (m->control_running)
			pthread_join(m->control_thread, NULL);
		close(m->control_fd);
		unlink(m->control_path);
	}
	free(m->control_path);
	free(m);
	srv->metrics = NULL;
}
