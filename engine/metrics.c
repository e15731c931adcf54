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

#include "engine/handoff.h"
#include "engine/log.h"
#include "engine/metrics.h"
#include "engine/qos.h"
#include "engine/server.h"
#include "engine/stats.h"
#include "util/ctl.h"
#include "util/err.h"

struct np_metrics {
	struct MHD_Daemon *httpd;
	struct np_ctl *control;
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

/* The control socket: one request per connection (util/ctl.h). The answer
 * is raw, as `nbdplex stats` and scripts read it. */
static int verb_stats(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	struct np_buf b = {0};
	int rc = np_stats_collect(ctx, &b);

	if (b.len)
		fwrite(b.data, 1, b.len, out);
	np_buf_free(&b);
	return rc < 0 ? np_errmsg(err, -EIO, "cannot collect statistics") : 0;
}

/* qos show; qos set export|client NAME KEY=VALUE[,KEY=VALUE]... (qos.c). */
static int verb_qos(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	struct np_server *srv = ctx;

	if (argc == 2 && !strcmp(argv[1], "show"))
		return np_qos_show(srv->qos, out);
	if (argc >= 5 && !strcmp(argv[1], "set"))
		return np_qos_set(srv->qos, argv[2], argv[3], argc - 4, argv + 4, out, err);
	return np_errmsg(err, -EINVAL,
			 "usage: qos show | qos set export|client NAME KEY=VALUE[,KEY=VALUE]...");
}

/* A new process asks for the listeners and connections (handoff.c). */
static int verb_takeover(void *ctx, int fd, int argc, char **argv, char **err)
{
	(void)argc;
	(void)argv;
	return np_handoff_serve(ctx, fd, err);
}

static const struct np_ctl_verb control_verbs[] = {
    {"stats", 0, verb_stats, "stats"},
    {"qos", -1, verb_qos, "qos show | qos set export|client NAME KEY=VALUE..."},
};

static int start_control(struct np_server *srv, struct np_metrics *m, const char *path)
{
	struct np_ctl_config cfg = {
	    .path = path,
	    .backlog = 16,
	    .max_line = 1024, /* qos set with its limits */
	    .framing = NP_CTL_RAW,
	    .verbs = control_verbs,
	    .nverbs = sizeof(control_verbs) / sizeof(control_verbs[0]),
	    .ctx = srv,
	    .take_verb = "takeover",
	    .take = verb_takeover,
	};
	char *err = NULL;

	if (np_ctl_listen(&cfg, &m->control, &err) < 0) {
		np_err("--control %s", err ? err : path);
		free(err);
		return -1;
	}
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
	np_ctl_close(m->control);
	free(m);
	srv->metrics = NULL;
}
