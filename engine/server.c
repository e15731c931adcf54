/* The server's lifetime: event loops (one per core), listeners, signals and
 * an orderly shutdown.
 *
 * Listening sockets are polled on loop 0, which accepts and hands each new
 * socket to the next loop in turn; a connection then lives on that loop. The
 * one door into a loop from another thread is its mailbox (mailbox.c): new
 * sockets, completions from the worker pool, stats requests and the
 * shutdown request, drained whole by one wake-up. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/access.h"
#include "engine/config.h"
#include "engine/conn.h"
#include "engine/export.h"
#include "engine/handoff.h"
#include "engine/log.h"
#include "engine/loop_int.h"
#include "engine/metrics.h"
#include "engine/qos.h"
#include "engine/request.h"
#include "engine/server.h"
#include "engine/tls.h"

#ifdef NP_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
/* Without libsystemd, telling a service manager is a no-op. */
static int sd_notifyf(int unset, const char *fmt, ...)
{
	(void)unset;
	(void)fmt;
	return 0;
}
#define sd_notify(unset, text) sd_notifyf(unset, "%s", text)

/* Nor can it take sockets from one: say so rather than ignore them. */
static int sd_listen_fds(int unset_environment)
{
	(void)unset_environment;
	if (getenv("LISTEN_FDS"))
		np_warn("LISTEN_FDS is set, but this build has no libsystemd for socket "
			"activation: listening on the configured addresses");
	return 0;
}
#define SD_LISTEN_FDS_START    3
#endif

#define ACCEPT_BATCH 64

static void loop_close_handles(struct np_loop *l);
static void on_drain_timeout(uv_timer_t *t);
static void listener_close(struct np_listener *lis);

/* ---- wake-ups from other threads ---- */

/* A socket on its way from the listener to a loop. */
struct accept_job {
	struct np_job job;
	struct np_loop *loop;
	struct np_accepted a;
};

static void accept_complete(struct np_job *job)
{
	struct accept_job *aj = container_of(job, struct accept_job, job);
	struct np_loop *l = aj->loop;

	if (l->draining)
		np_server_drop_fd(l->srv, &aj->a);
	else
		np_conn_accept(l, &aj->a);
	free(aj);
}

static void loop_push_fd(struct np_loop *l, const struct np_accepted *a)
{
	struct accept_job *aj = malloc(sizeof(*aj));

	if (!aj) {
		np_err("out of memory handing a connection to a loop");
		np_server_drop_fd(l->srv, a);
		return;
	}
	aj->job.run = NULL;
	aj->job.complete = accept_complete;
	aj->job.mbox = &l->mbox;
	aj->loop = l;
	aj->a = *a;
	np_mailbox_post(&l->mbox, &aj->job);
}

static void loop_maybe_finish(struct np_loop *l)
{
	if (l->draining && l->lc.n == 0)
		loop_close_handles(l);
}

/* Exports were removed: their clients here finish what they sent and
 * close; engine handles no client here uses any more are closed. */
static void loop_reap(struct np_loop *l)
{
	np_conns_drain(l, true);
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++) {
		struct np_loop_export *le = l->ex[i];

		if (le && le->export && le->conns == 0 && np_export_draining(le->export))
			np_loop_export_release(l, le);
	}
	np_loop_flush(l);
}

/* A new process took this one's sockets over (handoff.c): the
 * connections, all still, are let go without a byte more read or written
 * (closing our descriptor of a socket leaves the new process's open), and
 * the listeners too, their socket files left in place. Then the process
 * ends as at shutdown, its exports flushed and closed. */
static void loop_handed_off(struct np_loop *l)
{
	struct np_server *srv = l->srv;

	l->draining = true;
	np_conns_close(l, NULL);
	if (l->index == 0) {
		srv->stopping = true;
		for (size_t i = 0; i < srv->n_listeners; i++) {
			uv_poll_stop(&srv->listeners[i].poll);
			srv->listeners[i].unlink = false;
		}
	}
}

static void on_listen_ready(uv_poll_t *p, int status, int events);

/* A hand-off failed: loop 0 accepts again. */
static void accept_again(struct np_server *srv)
{
	if (atomic_load(&srv->accept_paused) || srv->stopping)
		return;
	for (size_t i = 0; i < srv->n_listeners; i++)
		uv_poll_start(&srv->listeners[i].poll, UV_READABLE, on_listen_ready);
}

/* After the mailbox's jobs (completions, accepted sockets, stats) have
 * run: their replies go out, then the signals are acted on. */
static void on_mail(struct np_mailbox *mb, unsigned signals)
{
	struct np_loop *l = container_of(mb, struct np_loop, mbox);
	bool shutdown = signals & NP_LOOP_SHUTDOWN;

	np_loop_flush(l);
	if (signals & NP_LOOP_HANDOFF)
		loop_handed_off(l);
	if (signals & NP_LOOP_ACCEPT)
		accept_again(l->srv);
	if (signals & NP_LOOP_REAP)
		loop_reap(l);
	if (shutdown && !l->draining) {
		l->draining = true;
		np_conns_drain(l, false);
		np_loop_flush(l);
		/* Clients that never read their replies must not hold the
		 * server forever. */
		uv_timer_start(&l->drain_timer, on_drain_timeout,
			       (uint64_t)l->srv->cfg->shutdown_timeout * 1000, 0);
	}
	if (l->draining)
		loop_maybe_finish(l);
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct np_loop *l = container_of(t, struct np_loop, drain_timer);

	np_conns_close(l, "shutdown timeout with requests still in flight");
}

static void loop_close_handles(struct np_loop *l)
{
	struct np_server *srv = l->srv;

	if (np_mailbox_closing(&l->mbox))
		return;
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++)
		if (l->ex[i])
			np_loop_export_release(l, l->ex[i]);
	np_mailbox_close(&l->mbox);
	uv_close((uv_handle_t *)&l->drain_timer, NULL);
	uv_close((uv_handle_t *)&l->before_sleep, NULL);
	if (l->index == 0) {
		for (size_t i = 0; i < srv->n_listeners; i++)
			uv_close((uv_handle_t *)&srv->listeners[i].poll, NULL);
		if (srv->signals_ready) {
			uv_close((uv_handle_t *)&srv->sigint, NULL);
			uv_close((uv_handle_t *)&srv->sigterm, NULL);
			uv_close((uv_handle_t *)&srv->sighup, NULL);
		}
	}
}

/* Tells every loop to shut down, or to reap removed exports. */
static void wake_all(struct np_server *srv, unsigned signal)
{
	for (unsigned i = 0; i < srv->n_loops; i++)
		np_mailbox_signal(&srv->loops[i].mbox, signal);
}

static void request_shutdown(struct np_server *srv)
{
	wake_all(srv, NP_LOOP_SHUTDOWN);
}

static void loops_reap(struct np_server *srv)
{
	wake_all(srv, NP_LOOP_REAP);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct np_server *srv = s->data;

	if (srv->stopping) {
		np_warn("second signal %d: exiting without draining", signum);
		_exit(1);
	}
	if (atomic_load(&srv->handoff_busy)) {
		/* The connections are the hand-off's until it ends: a drain now
		 * would drop what they have not parsed. handoff.c signals again
		 * if this process keeps them. */
		np_info("signal %d: shutting down once the hand-off under way ends", signum);
		atomic_store(&srv->stop_pending, true);
		return;
	}
	np_info("signal %d: finishing requests in flight, then exiting", signum);
	sd_notify(0, "STOPPING=1");
	srv->stopping = true;
	for (size_t i = 0; i < srv->n_listeners; i++) {
		uv_poll_stop(&srv->listeners[i].poll);
		listener_close(&srv->listeners[i]);
	}
	request_shutdown(srv);
}

/* SIGHUP: the exports are read again; systemd hears of it. */
static void on_sighup(uv_signal_t *s, int signum)
{
	struct np_server *srv = s->data;

	(void)signum;
	if (srv->stopping)
		return;
	np_info("SIGHUP: reloading the configuration");
	sd_notify(0, "RELOADING=1");
	/* The loops drain the clients of removed exports. */
	if (np_exports_reload(srv) == 0) {
		np_qos_configure(srv->qos, srv->current_cfg);
		loops_reap(srv);
	}
	sd_notifyf(0, "READY=1\nSTATUS=serving %zu export(s)", srv->n_exports);
}

/* ---- listeners ---- */

/* Names a Unix peer (accept() gives an empty address): the socket it came
 * through and, from the kernel, who it is. */
static void unix_peer(const struct np_listener *lis, struct np_accepted *a)
{
	struct np_unix_peer *u = (struct np_unix_peer *)&a->peer;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	size_t n = strlen(lis->path);

	memset(&a->peer, 0, sizeof(a->peer));
	u->family = AF_UNIX;
	if (getsockopt(a->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
		u->cred = true;
		u->pid = cr.pid;
		u->uid = cr.uid;
		u->gid = cr.gid;
	}
	if (n >= sizeof(u->path))
		n = sizeof(u->path) - 1;
	memcpy(u->path, lis->path, n);
}

static void on_listen_ready(uv_poll_t *p, int status, int events)
{
	struct np_listener *lis = container_of(p, struct np_listener, poll);
	struct np_server *srv = p->data;

	(void)events;
	if (status < 0 || srv->stopping)
		return;
	if (atomic_load(&srv->accept_paused)) {
		/* A hand-off: the kernel queues new clients for whichever
		 * process accepts next. */
		uv_poll_stop(p);
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct np_accepted a;
		socklen_t len = sizeof(a.peer);
		struct sockaddr *ss = (struct sockaddr *)&a.peer;
		const char *refused = NULL;

		a.fd = accept4(lis->fd, ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (a.fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				np_warn("accept on %s: %s", lis->addr, strerror(errno));
			break;
		}
		if (lis->path)
			unix_peer(lis, &a);
		if (!np_acl_allows(&srv->cfg->allow, ss))
			refused = "not in the allow list";
		else
			refused = np_limits_take(&srv->limits, ss);
		if (refused) {
			char peer[64];

			np_format_peer(ss, peer, sizeof(peer));
			np_warn("refused connection from %s on %s: %s", peer, lis->addr, refused);
			close(a.fd);
			continue;
		}
		loop_push_fd(&srv->loops[srv->next_loop], &a);
		srv->next_loop = (srv->next_loop + 1) % srv->n_loops;
	}
}

/* Splits HOST:PORT, [V6HOST]:PORT or :PORT. */
static int split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		memcpy(host, s + 1, hl < hostlen ? hl : 0);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= hostlen)
			return -EINVAL;
		memcpy(host, s, hl);
	}
	if (hl >= hostlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
		return -EINVAL;
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static void listener_start(struct np_server *srv, struct np_listener *lis)
{
	uv_poll_init(&srv->loops[0].uv, &lis->poll, lis->fd);
	lis->poll.data = srv;
	uv_poll_start(&lis->poll, UV_READABLE, on_listen_ready);
}

/* Closes a listener's socket and removes the socket file it made, unless
 * someone put another file in its place since. */
static void listener_close(struct np_listener *lis)
{
	struct stat st;

	if (lis->fd >= 0)
		close(lis->fd);
	lis->fd = -1;
	if (lis->unlink && stat(lis->path, &st) == 0 && st.st_dev == lis->dev &&
	    st.st_ino == lis->ino && unlink(lis->path) < 0)
		np_warn("removing %s: %s", lis->addr, strerror(errno));
	lis->unlink = false;
}

/* Binds a Unix socket at its path. A socket file left there by a server
 * that is gone (killed, or its machine crashed) is replaced; one that a
 * server still answers on is not, as two servers would share out clients
 * by chance; nor is any other kind of file. */
static int bind_unix(int fd, const struct sockaddr_un *sun, const char *addr)
{
	struct stat st;
	int probe, r, e;

	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0)
		return 0;
	if (errno != EADDRINUSE) {
		np_err("listen on %s: %s", addr, strerror(errno));
		return -1;
	}
	if (lstat(sun->sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		np_err("listen on %s: the file exists and is not a socket", addr);
		return -1;
	}
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	r = probe < 0 ? -1 : connect(probe, (const struct sockaddr *)sun, sizeof(*sun));
	e = errno;
	if (probe >= 0)
		close(probe);
	if (r == 0 || e == EAGAIN) {
		np_err("listen on %s: another server is listening on it", addr);
		return -1;
	}
	if (e != ECONNREFUSED && e != ENOENT) {
		np_err("listen on %s: cannot tell whether it is in use: %s", addr, strerror(e));
		return -1;
	}
	np_warn("%s: replacing the stale socket of a server that is gone", addr);
	if ((unlink(sun->sun_path) < 0 && errno != ENOENT) ||
	    bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0) {
		np_err("listen on %s: %s", addr, strerror(errno));
		return -1;
	}
	return 0;
}

static int listen_unix(struct np_server *srv, struct np_listener *lis, const char *addr)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = addr + 5;
	struct stat st;
	int fd;

	/* config.c refused longer paths */
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		np_err("listen on %s: %s", addr, strerror(errno));
		return -1;
	}
	if (bind_unix(fd, &sun, addr) < 0) {
		close(fd);
		return -1;
	}
	lis->fd = fd;
	lis->path = path;
	if (stat(path, &st) == 0) {
		lis->unlink = true;
		lis->dev = st.st_dev;
		lis->ino = st.st_ino;
	}
	/* Clients cannot connect before listen(), so none gets in while the
	 * mode is still the umask's. */
	if (!lis->unlink || chmod(path, srv->cfg->socket_mode) < 0 || listen(fd, 1024) < 0) {
		np_err("listen on %s: %s", addr, strerror(errno));
		listener_close(lis);
		return -1;
	}
	listener_start(srv, lis);
	np_info("listening on %s (mode %04o)", addr, srv->cfg->socket_mode);
	return 0;
}

static int listen_on(struct np_server *srv, struct np_listener *lis, const char *addr)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res;
	char host[256], port[16];
	int one = 1, r, fd;

	lis->fd = -1;
	lis->addr = (char *)addr;
	if (!strncmp(addr, "unix:", 5))
		return listen_unix(srv, lis, addr);
	if (split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		np_err("listen address '%s': want HOST:PORT", addr);
		return -1;
	}
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r != 0) {
		np_err("listen address '%s': %s", addr, gai_strerror(r));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		np_err("listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	lis->fd = fd;
	listener_start(srv, lis);
	np_info("listening on %s", addr);
	return 0;
}

/* Socket activation: takes the n listening sockets a service manager
 * (systemd, systemd-socket-activate) passed, TCP or Unix. Theirs stay
 * theirs: the socket files are not removed at exit. */
static int listen_activated(struct np_server *srv, struct np_listener *lis, int fd)
{
	struct sockaddr_storage ss;
	const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
	socklen_t len = sizeof(ss), ilen = sizeof(int);
	int type = 0, listening = 0, flags;
	char name[NP_UNIX_PATH_MAX + 8];

	lis->fd = fd;
	memset(&ss, 0, sizeof(ss));
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0 || type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0 || !listening ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)) {
		np_err("socket activation: file descriptor %d is not a listening TCP or Unix "
		       "stream socket (Accept=yes is not supported)",
		       fd);
		return -1;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		np_err("socket activation: file descriptor %d: %s", fd, strerror(errno));
		return -1;
	}
	if (ss.ss_family == AF_UNIX) {
		/* An abstract socket's name starts with a NUL, shown as @. */
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
			       ? len - offsetof(struct sockaddr_un, sun_path)
			       : 0;

		if (n && !sun->sun_path[0])
			snprintf(name, sizeof(name), "unix:@%.*s", (int)n - 1, sun->sun_path + 1);
		else
			snprintf(name, sizeof(name), "unix:%.*s", (int)strnlen(sun->sun_path, n),
				 sun->sun_path);
	} else {
		np_format_peer((const struct sockaddr *)&ss, name, sizeof(name));
	}
	lis->addr = lis->addr_owned = strdup(name);
	if (!lis->addr) {
		np_err("out of memory");
		return -1;
	}
	if (ss.ss_family == AF_UNIX)
		lis->path = lis->addr + 5;
	listener_start(srv, lis);
	np_info("listening on %s (socket activation)", lis->addr);
	return 0;
}

/* The listeners of the process taken over, as they were (its socket files
 * are ours to remove at exit if they were its). */
static int listen_taken(struct np_server *srv, struct np_handoff_in *in)
{
	srv->listeners = calloc(in->n_listeners + 1, sizeof(*srv->listeners));
	if (!srv->listeners)
		return -1;
	if (srv->cfg->n_listen)
		np_info("taking over: the listen addresses configured are not used; the running "
			"server's are");
	for (size_t i = 0; i < in->n_listeners; i++) {
		struct np_handoff_listener *h = &in->listeners[i];
		struct np_listener *lis = &srv->listeners[i];

		lis->fd = h->fd;
		h->fd = -1;
		srv->n_listeners++;
		lis->addr = lis->addr_owned = h->addr;
		h->addr = NULL;
		if (!strncmp(lis->addr, "unix:", 5))
			lis->path = lis->addr + 5;
		lis->unlink = h->unlink;
		lis->dev = (dev_t)h->dev;
		lis->ino = (ino_t)h->ino;
		listener_start(srv, lis);
		np_info("listening on %s (taken over)", lis->addr);
	}
	return 0;
}

/* A connection received from the process taken over, on its way to a
 * loop. */
struct import_job {
	struct np_job job;
	struct np_loop *loop;
	struct np_conn_moved m;
};

static void import_complete(struct np_job *job)
{
	struct import_job *ij = container_of(job, struct import_job, job);

	np_conn_import(ij->loop, &ij->m);
	ij->m.fd = -1; /* the connection's, or closed */
	np_conn_moved_free(&ij->m);
	free(ij);
}

static void import_all(struct np_server *srv, struct np_handoff_in *in)
{
	uint64_t top = 0;

	for (size_t i = 0; i < in->n_conns; i++) {
		struct np_loop *l = &srv->loops[i % srv->n_loops];
		struct import_job *ij = malloc(sizeof(*ij));

		if (!ij) {
			np_err("out of memory taking over conn %llu",
			       (unsigned long long)in->conns[i].id);
			continue;
		}
		top = in->conns[i].id > top ? in->conns[i].id : top;
		ij->job = (struct np_job){.complete = import_complete, .mbox = &l->mbox};
		ij->loop = l;
		ij->m = in->conns[i];
		in->conns[i] = (struct np_conn_moved){.fd = -1};
		np_mailbox_post(&l->mbox, &ij->job);
	}
	/* Connection numbers, and connections_accepted_total with them, go
	 * on from the old process's. */
	atomic_store(&srv->next_conn_id, in->next_conn_id > top ? in->next_conn_id : top);
}

/* Starts the metrics endpoint and the control socket once the process taken
 * over has exited and freed them. */
static void *after_old(void *arg)
{
	struct np_server *srv = arg;

	np_handoff_finish(srv->handoff_in, 60000);
	if (np_metrics_start(srv) < 0)
		np_err("hand-off: cannot start --metrics or --control; serving without them");
	return NULL;
}

/* Opens the listeners: the sockets passed by socket activation if any,
 * else the configured addresses. */
static int listen_all(struct np_server *srv)
{
	struct np_config *cfg = srv->cfg;
	int n = sd_listen_fds(1);
	size_t count = n > 0 ? (size_t)n : cfg->n_listen;

	if (n < 0) {
		np_err("socket activation: %s", strerror(-n));
		return -1;
	}
	srv->listeners = calloc(count, sizeof(*srv->listeners));
	if (!srv->listeners)
		return -1;
	if (n > 0)
		np_info("socket activation: %d socket(s) passed; the listen addresses "
			"configured are not used",
			n);
	for (size_t i = 0; i < count; i++) {
		int r =
		    n > 0 ? listen_activated(srv, &srv->listeners[i], SD_LISTEN_FDS_START + (int)i)
			  : listen_on(srv, &srv->listeners[i], cfg->listen[i]);

		if (r < 0)
			return -1;
		srv->n_listeners++;
	}
	return 0;
}

/* ---- loops ---- */

/* Coalescing. A client that keeps many requests in flight but sends them one
 * at a time (fio's nbd engine, libnbd) finds this loop faster than itself: the
 * loop sleeps after every request, and every request the client sends must
 * wake it: a fifth of fio's time went there (perf/README.md). So once
 * replies are out, a loop that has just served requests may wait a little
 * before it polls again (whether or not input is already waiting: checking
 * first lost the gain, perf/README.md), in nanosleep, where arriving data
 * wakes nobody; then it takes everything that came in at once.
 *
 * It waits while the waits pay. A trial every PROBE_TURNS turns that served
 * requests, one of which brought some connection two requests or more,
 * starts it with two credits; a wait after which some connection brought
 * two requests or more earns one (up to CREDIT_MAX), any other costs two,
 * and with none left it stops. A client with one request in flight never
 * brings two in a turn, so it never waits: the time from its request's
 * arrival to the reply's send has no wait in it (a trial in every 65
 * requests put one inside the p99 of QD1 latency, perf/README.md). One that
 * keeps several in flight but sends them one at a time brings two in a
 * turn whenever the loop falls behind it once.
 *
 * A wait that lasts OVERRUN_NS longer than asked does not pay either: the
 * loop's timer fired, but its core was busy with other threads, so the loop
 * waited for a CPU rather than for requests, and its connections with it.
 * With 4 connections and the CPUs saturated, a 20 us wait took 250 us on
 * average; on 1 connection, 65 (perf/README.md). */
#define PROBE_TURNS 64
#define CREDIT_MAX  8
#define OVERRUN_NS  100000

/* One loop turn: takes the most requests one connection brought in it
 * (and co->overran, for the wait before it); says whether to wait now. */
bool np_coalesce_turn(struct np_coalesce *co, unsigned most)
{
	if (co->credit) {
		if (most >= 2 && !co->overran)
			co->credit += co->credit < CREDIT_MAX;
		else
			co->credit = co->credit > 2 ? co->credit - 2 : 0;
	} else if (most) {
		co->several |= most >= 2;
		if (++co->probe >= PROBE_TURNS && co->several) {
			co->probe = 0;
			co->several = false;
			co->credit = 2;
		}
	}
	co->overran = false;
	return co->credit != 0;
}

static void coalesce(struct np_loop *l)
{
	unsigned most = l->lc.turn_most;

	l->lc.turn++;
	l->lc.turn_most = 0;
	if (l->wait_ns && np_coalesce_turn(&l->coalesce, most)) {
		struct timespec ts = {0, l->wait_ns};
		uint64_t t0 = uv_hrtime();

		nanosleep(&ts, NULL);
		l->coalesce.overran = uv_hrtime() - t0 > (uint64_t)l->wait_ns + OVERRUN_NS;
	}
}

static void on_before_sleep(uv_prepare_t *p)
{
	struct np_loop *l = container_of(p, struct np_loop, before_sleep);

	np_loop_flush(l);
	coalesce(l);
}

static int loop_init(struct np_server *srv, struct np_loop *l, unsigned index)
{
	l->srv = srv;
	l->index = index;
	l->wait_ns = (long)srv->cfg->coalesce_us * 1000;
	if (uv_loop_init(&l->uv) < 0)
		return -1;
	l->empty = loop_maybe_finish;
	l->env.loop = &l->uv;
	l->env.run_blocking = np_req_run_blocking;
	if (np_mailbox_init(&l->mbox, &l->uv, on_mail) < 0) {
		uv_loop_close(&l->uv);
		return -1;
	}
	uv_timer_init(&l->uv, &l->drain_timer);
	uv_unref((uv_handle_t *)&l->drain_timer);
	/* Completions an async engine signals to the loop directly queue
	 * replies outside our callbacks; they are written here, once per
	 * loop iteration, just before the loop waits. */
	uv_prepare_init(&l->uv, &l->before_sleep);
	uv_prepare_start(&l->before_sleep, on_before_sleep);
	uv_unref((uv_handle_t *)&l->before_sleep);
	return 0;
}

static void loop_thread(void *arg)
{
	struct np_loop *l = arg;

	/* The coalescing wait is a few microseconds; the default slack of
	 * 50 would triple it. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
	uv_run(&l->uv, UV_RUN_DEFAULT);
}

static int write_pidfile(const char *path)
{
	char tmp[4096];
	FILE *f;

	/* Written under a temporary name and renamed, so whoever waits for
	 * the file never reads it half-written. */
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) < 0) {
		np_err("pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int np_serve(struct np_config *cfg)
{
	struct np_server srv = {.cfg = cfg, .handoff_sock = -1};
	struct np_handoff_in hin = {.sock = -1};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads;
	int ret = 1;

	signal(SIGPIPE, SIG_IGN);
	if (ncpu < 1)
		ncpu = 1;
	srv.n_loops = cfg->loops ? cfg->loops : (unsigned)ncpu;
	threads = cfg->threads ? cfg->threads : (unsigned)(2 * ncpu < 4 ? 4 : 2 * ncpu);

	if (np_limits_init(&srv.limits, cfg->max_connections, cfg->max_connections_per_client) < 0)
		return 1;
	if (np_exports_open(&srv, cfg) < 0) {
		np_limits_free(&srv.limits);
		return 1;
	}
	if (np_tls_server_init(&srv) < 0)
		goto out_close_exports;
	if (np_qos_start(&srv.qos, cfg) < 0)
		goto out_close_exports;
	srv.loops = calloc(srv.n_loops, sizeof(*srv.loops));
	if (!srv.loops)
		goto out_close_exports;
	for (unsigned i = 0; i < srv.n_loops; i++)
		if (loop_init(&srv, &srv.loops[i], i) < 0)
			goto out_close_exports;
	if (cfg->takeover) {
		char *err = NULL;

		if (np_handoff_receive(&srv, cfg->takeover, &hin, &err) < 0) {
			np_err("%s", err ? err : "hand-off failed");
			free(err);
			goto out_close_exports;
		}
		srv.handoff_in = &hin;
		if (listen_taken(&srv, &hin) < 0)
			goto out_close_exports;
		import_all(&srv, &hin);
	} else if (listen_all(&srv) < 0) {
		goto out_close_exports;
	}
	if (np_pool_start(&srv.pool, threads) < 0) {
		np_err("cannot start %u worker threads", threads);
		goto out_stop_pool;
	}
	if (cfg->takeover) {
		np_handoff_record(&srv, &hin);
		if (pthread_create(&srv.after_old, NULL, after_old, &srv) != 0)
			goto out_stop_pool;
		srv.after_old_started = true;
	} else if (np_metrics_start(&srv) < 0) {
		goto out_stop_pool;
	}
	uv_signal_init(&srv.loops[0].uv, &srv.sigint);
	uv_signal_init(&srv.loops[0].uv, &srv.sigterm);
	srv.sigint.data = srv.sigterm.data = &srv;
	uv_signal_start(&srv.sigint, on_signal, SIGINT);
	uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
	uv_signal_init(&srv.loops[0].uv, &srv.sighup);
	srv.sighup.data = &srv;
	uv_signal_start(&srv.sighup, on_sighup, SIGHUP);
	srv.signals_ready = true;
	for (unsigned i = 1; i < srv.n_loops; i++)
		uv_thread_create(&srv.loops[i].thread, loop_thread, &srv.loops[i]);
	if (cfg->pidfile && write_pidfile(cfg->pidfile) < 0) {
		srv.stopping = true;
		request_shutdown(&srv);
	} else {
		ret = 0;
		np_info("ready: %zu export(s), %u loop(s), %u worker thread(s)", srv.n_exports,
			srv.n_loops, threads);
		/* Type=notify units start their dependents only now, with every
		 * listener accepting. */
		sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=serving %zu export(s)", (int)getpid(),
			   srv.n_exports);
	}
	uv_run(&srv.loops[0].uv, UV_RUN_DEFAULT);
	for (unsigned i = 1; i < srv.n_loops; i++)
		uv_thread_join(&srv.loops[i].thread);
	/* After a hand-off the pidfile is the new process's. */
	if (cfg->pidfile && ret == 0 && !srv.handed_off)
		unlink(cfg->pidfile);
	np_info("all connections closed; flushing exports");

out_stop_pool:
	if (srv.after_old_started)
		pthread_join(srv.after_old, NULL);
	np_metrics_stop(&srv);
	if (srv.pool.threads)
		np_pool_stop(&srv.pool);
out_close_exports:
	for (unsigned i = 0; i < srv.n_loops && srv.loops; i++) {
		struct np_loop *l = &srv.loops[i];

		if (!l->srv)
			continue;
		if (!np_mailbox_closing(&l->mbox))
			loop_close_handles(l);
		uv_run(&l->uv, UV_RUN_NOWAIT);
		uv_loop_close(&l->uv);
		/* Sockets still on their way are closed, readers of stats
		 * still waiting are answered. */
		l->draining = true;
		np_mailbox_destroy(&l->mbox);
		for (unsigned k = 0; k < NP_MAX_EXPORTS; k++)
			free(l->ex[k]);
	}
	for (size_t i = 0; i < srv.n_listeners; i++) {
		listener_close(&srv.listeners[i]);
		free(srv.listeners[i].addr_owned);
	}
	free(srv.loops);
	free(srv.listeners);
	np_exports_close(&srv);
	np_qos_stop(srv.qos);
	np_limits_free(&srv.limits);
	np_tls_server_free(&srv);
	if (cfg->takeover && !srv.after_old_started)
		np_handoff_finish(&hin, 0);
	/* The new process waits for this end to close before it serves the
	 * control socket. */
	if (srv.handoff_sock >= 0)
		close(srv.handoff_sock);
	return ret;
}
