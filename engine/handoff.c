/* The hand-off of a running server to a new process (serve --takeover),
 * both sides, over a connection to the old process's control socket.
 *
 * The new process has opened its exports; it connects and sends
 * "takeover". The old one, on a thread of its own (np_handoff_serve):
 *   1. stops accepting (the listening sockets keep queueing in the kernel);
 *   2. stops parsing on every connection (conn.c, handoff_step): requests in
 *      flight finish and their replies go out, a WRITE payload arriving is
 *      read whole, a handshake goes on to transmission (at most HS_WAIT_MS,
 *      then it is closed), a TLS connection drains and ends with
 *      close_notify;
 *   3. once every connection is still (at most QUIESCE_MS), flushes every
 *      export and sends HELLO, each listener and each connection (its
 *      socket by SCM_RIGHTS, its negotiated options, its unparsed input),
 *      then END;
 *   4. waits for ACK (the new process has all of it and serves every
 *      export named); before it, the new process may send RELEASE with
 *      the names of exports it could not open because this process holds
 *      them exclusively (EBUSY: a thin pool's RocksDB lock, a device
 *      opened O_EXCL): this one closes their engine handles (each loop's,
 *      then the shared one) and answers RELEASED, and the new one opens
 *      them. On ACK it answers COMMIT, and from then on never reads those
 *      sockets again: its loops let the connections go, and it exits 0.
 * Any failure before COMMIT (NAK, a timeout, the new process gone) resumes
 * the old process: it reopens what it released (the new process closes it
 * before its NAK, or it closes as that process dies; tried for RETAKE_MS,
 * then the old process exits rather than answer from a closed engine),
 * then accepting and parsing start again from what is buffered, and
 * nothing was lost or answered twice, since the new process has read
 * nothing. If the old process dies after ACK, the new one keeps what it
 * received.
 *
 * Messages are fixed structs of this build (both ends run on one host and
 * check the magic, which carries a version), each possibly followed by a
 * payload, with descriptors riding on the struct (util/ctl.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/conn.h"
#include "engine/export.h"
#include "engine/handoff.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/mailbox.h"
#include "engine/server.h"
#include "util/ctl.h"
#include "util/err.h"

#define HANDOFF_MAGIC 0x4e50484f46463031ULL /* "NPHOFF01" */
#define QUIESCE_MS    10000                 /* requests in flight must finish within this */
#define HS_WAIT_MS    5000                  /* handshakes under way may finish within this */
#define MSG_MS        30000                 /* each message, either way */
#define MAX_MOVED     65536                 /* connections in one hand-off */

enum {
	MSG_LISTENER = 1,
	MSG_CONN,
	MSG_END,
	MSG_ACK,
	MSG_NAK,
	MSG_COMMIT,
	MSG_RELEASE,
	MSG_RELEASED
};
#define RETAKE_MS 10000 /* reopening what the new process had, once it let go */

struct msg_hello {
	uint64_t magic;
	uint32_t n_listeners, n_conns;
	int32_t pid;
	uint32_t pad;
	uint64_t next_conn_id; /* connections numbered so far */
	struct np_handoff_stats stats;
};

struct msg {
	uint32_t type;
	uint32_t len1, len2; /* LISTENER: addr; CONN: export and contexts, input; NAK: text */
	uint32_t flags;      /* LISTENER: unlink; CONN: NP_MOVED_* */
	uint64_t a, b;       /* LISTENER: dev, ino; CONN: id; END: the pause so far */
	struct sockaddr_storage peer;
};

/* Every byte set, padding included: the whole struct goes on the wire. */
static void msg_init(struct msg *m, uint32_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

#define NP_MOVED_STRUCTURED 1u
#define NP_MOVED_EXTENDED   2u

/* ---- running a function on each loop ---- */

struct loop_call {
	struct np_job job;
	struct np_loop *loop;
	void (*fn)(struct np_loop *l, void *arg);
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void call_complete(struct np_job *job)
{
	struct loop_call *lc = container_of(job, struct loop_call, job);

	lc->fn(lc->loop, lc->arg);
	pthread_mutex_lock(&lc->mu);
	lc->done = true;
	pthread_cond_signal(&lc->cv);
	pthread_mutex_unlock(&lc->mu);
}

/* Runs fn on loop l's thread and waits for it. Loops answer within a turn;
 * one that is gone (the server is stopping) is never asked. */
static void on_loop(struct np_loop *l, void (*fn)(struct np_loop *, void *), void *arg)
{
	struct loop_call lc = {.loop = l, .fn = fn, .arg = arg};

	pthread_mutex_init(&lc.mu, NULL);
	pthread_cond_init(&lc.cv, NULL);
	lc.job.complete = call_complete;
	lc.job.mbox = np_loop_mailbox(l);
	np_mailbox_post(lc.job.mbox, &lc.job);
	pthread_mutex_lock(&lc.mu);
	while (!lc.done)
		pthread_cond_wait(&lc.cv, &lc.mu);
	pthread_mutex_unlock(&lc.mu);
	pthread_mutex_destroy(&lc.mu);
	pthread_cond_destroy(&lc.cv);
}

static void on_each_loop(struct np_server *srv, void (*fn)(struct np_loop *, void *), void *arg)
{
	for (unsigned i = 0; i < srv->n_loops; i++)
		on_loop(np_loop_nth(srv, i), fn, arg);
}

static void stop_accepting(struct np_loop *l, void *arg)
{
	struct np_server *srv = arg;

	(void)l;
	for (size_t i = 0; i < srv->n_listeners; i++)
		uv_poll_stop(&srv->listeners[i].poll);
}

static void handoff_on(struct np_loop *l, void *arg)
{
	(void)arg;
	np_conns_handoff(l, true);
}

static void handoff_off(struct np_loop *l, void *arg)
{
	(void)arg;
	np_conns_handoff(l, false);
}

static void count_busy(struct np_loop *l, void *arg)
{
	*(unsigned *)arg += np_conns_busy(l);
}

static void close_handshakes(struct np_loop *l, void *arg)
{
	(void)arg;
	np_conns_close_handshakes(l, "its handshake did not finish before a hand-off");
}

struct collected {
	struct np_conn_moved *all;
	size_t n;
	int rc;
};

static void collect(struct np_loop *l, void *arg)
{
	struct collected *co = arg;
	struct np_conn_moved *mine;
	size_t n;
	void *grown;

	if (co->rc < 0)
		return;
	co->rc = np_conns_export(l, &mine, &n);
	if (co->rc < 0)
		return;
	grown = realloc(co->all, (co->n + n + 1) * sizeof(*co->all));
	if (!grown) {
		for (size_t i = 0; i < n; i++)
			np_conn_moved_free(&mine[i]);
		co->rc = -ENOMEM;
	} else {
		co->all = grown;
		memcpy(co->all + co->n, mine, n * sizeof(*mine));
		co->n += n;
	}
	free(mine);
}

/* ---- the old process ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether the new process has gone (its end closed) while we wait. */
static bool peer_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN));
}

/* Waits until every connection is still; a handshake has HS_WAIT_MS. */
static int quiesce(struct np_server *srv, int fd, uint64_t t0)
{
	bool hs_closed = false;

	for (unsigned round = 0;; round++) {
		unsigned busy = 0;
		uint64_t ms = (now_ns() - t0) / 1000000;
		struct timespec ts = {0, round < 100 ? 200000 : 2000000};

		on_each_loop(srv, count_busy, &busy);
		if (busy == 0)
			return 0;
		if (peer_gone(fd))
			return -ECONNRESET;
		if (ms >= QUIESCE_MS)
			return -ETIMEDOUT;
		if (ms >= HS_WAIT_MS && !hs_closed) {
			on_each_loop(srv, close_handshakes, NULL);
			hs_closed = true;
		}
		nanosleep(&ts, NULL);
	}
}

/* Every export's data reaches its storage before another process serves
 * it. */
static void flush_exports(struct np_server *srv)
{
	struct np_export *held[NP_MAX_EXPORTS];
	size_t n = 0;

	pthread_mutex_lock(&srv->exports_lock);
	for (unsigned i = 0; i < NP_MAX_EXPORTS; i++)
		if (srv->exports[i]) {
			srv->exports[i]->refs++;
			held[n++] = srv->exports[i];
		}
	pthread_mutex_unlock(&srv->exports_lock);
	for (size_t i = 0; i < n; i++) {
		struct np_export *ex = held[i];
		int r = !ex->readonly && ex->ops->flush ? ex->ops->flush(ex->h) : 0;

		if (r < 0)
			np_warn("hand-off: export '%s': flush: %s", ex->hs.name, strerror(-r));
		np_export_put(srv, ex);
	}
}

static int send_msg(int fd, const struct msg *m, int sockfd, const void *p1, const void *p2)
{
	int r = np_ctl_send(fd, m, sizeof(*m), &sockfd, sockfd >= 0 ? 1 : 0);

	if (r == 0 && m->len1)
		r = np_ctl_send(fd, p1, m->len1, NULL, 0);
	if (r == 0 && m->len2)
		r = np_ctl_send(fd, p2, m->len2, NULL, 0);
	return r;
}

static int send_all(struct np_server *srv, int fd, const struct collected *co, uint64_t t0)
{
	struct msg_hello h;
	struct msg m;
	int r;

	memset(&h, 0, sizeof(h));
	h.magic = HANDOFF_MAGIC;
	h.n_listeners = (uint32_t)srv->n_listeners;
	h.n_conns = (uint32_t)co->n;
	h.pid = (int32_t)getpid();
	h.next_conn_id = atomic_load(&srv->next_conn_id);
	h.stats = srv->handoff;
	r = np_ctl_send(fd, &h, sizeof(h), NULL, 0);

	for (size_t i = 0; r == 0 && i < srv->n_listeners; i++) {
		const struct np_listener *lis = &srv->listeners[i];

		msg_init(&m, MSG_LISTENER);
		m.len1 = (uint32_t)strlen(lis->addr) + 1;
		m.flags = lis->unlink;
		m.a = lis->dev;
		m.b = lis->ino;
		r = send_msg(fd, &m, lis->fd, lis->addr, NULL);
	}
	for (size_t i = 0; r == 0 && i < co->n; i++) {
		const struct np_conn_moved *c = &co->all[i];

		msg_init(&m, MSG_CONN);
		m.len1 = (uint32_t)c->export_len;
		m.len2 = (uint32_t)c->in_len;
		m.flags = (c->structured ? NP_MOVED_STRUCTURED : 0) |
			  (c->extended ? NP_MOVED_EXTENDED : 0);
		m.a = c->id;
		m.peer = c->peer;
		r = send_msg(fd, &m, c->fd, c->export, c->in);
	}
	if (r == 0) {
		msg_init(&m, MSG_END);
		m.a = now_ns() - t0;
		r = send_msg(fd, &m, -1, NULL, NULL);
	}
	return r;
}

static void refuse(int fd, const char *why);

/* What the old process let go of for the new one. */
struct released {
	struct np_export *ex[NP_MAX_EXPORTS];
	size_t n;
};

struct let_go_arg {
	struct np_export *ex;
	bool reopen;
	bool failed; /* a loop's handle did not open again */
};

static void loop_let_go(struct np_loop *l, void *arg)
{
	struct let_go_arg *a = arg;

	if (np_loop_export_let_go(l, a->ex, a->reopen) < 0)
		a->failed = true;
}

/* Closes the engine handles of the exports named in names (len bytes of
 * NUL-terminated names) that this server has; the exports stay in the
 * table, held. */
static int release_named(struct np_server *srv, const char *names, size_t len, struct released *rel,
			 char **err)
{
	for (const char *name = names; name < names + len; name += strlen(name) + 1) {
		struct np_export *found = NULL;
		struct let_go_arg a = {.failed = false};

		pthread_mutex_lock(&srv->exports_lock);
		for (unsigned k = 0; k < NP_MAX_EXPORTS && !found; k++)
			if (srv->exports[k] && !srv->exports[k]->draining &&
			    strcmp(srv->exports[k]->hs.name, name) == 0)
				found = srv->exports[k];
		if (found)
			found->refs++;
		pthread_mutex_unlock(&srv->exports_lock);
		if (!found) {
			/* New here, perhaps a volume of a pool this server
			 * holds: it may open once the others are released. */
			np_info("hand-off: no export '%s' here to release", name);
			continue;
		}
		if (rel->n == NP_MAX_EXPORTS) {
			np_export_put(srv, found);
			return np_errmsg(err, -E2BIG, "too many exports to release");
		}
		rel->ex[rel->n++] = found;
		a.ex = found;
		a.reopen = false;
		on_each_loop(srv, loop_let_go, &a);
		np_export_let_go(srv, found);
	}
	return 0;
}

/* The hand-off failed: this process opens again what it released, each
 * loop's handle after the shared one. The new process closed them or is
 * gone; its descriptors may take a moment to close. */
static void take_back(struct np_server *srv, struct released *rel)
{
	for (size_t i = 0; i < rel->n; i++) {
		struct np_export *ex = rel->ex[i];
		struct let_go_arg a = {.ex = ex, .reopen = true};
		uint64_t t0 = now_ns();
		struct timespec ts = {0, 50000000};

		while (np_export_take_back(srv, ex) < 0 &&
		       !(a.failed = now_ns() - t0 > (uint64_t)RETAKE_MS * 1000000u))
			nanosleep(&ts, NULL);
		if (!a.failed)
			on_each_loop(srv, loop_let_go, &a); /* each loop's handle */
		if (a.failed) {
			/* Its clients cannot be served, and must not be
			 * answered from a closed engine. */
			np_err("hand-off: export '%s' cannot be reopened; exiting", ex->hs.name);
			_exit(1);
		}
		np_export_put(srv, ex);
	}
	rel->n = 0;
}

/* The new process's verdict: 0 on ACK, else why not. Before it, each
 * RELEASE is answered (RELEASED, or NAK with the reason). */
static int await_ack(struct np_server *srv, int fd, struct released *rel, char **err)
{
	struct msg m;
	int fds[NP_CTL_MAX_FDS];
	size_t nfds;
	int r;

again:
	r = np_ctl_recv(fd, &m, sizeof(m), fds, &nfds, MSG_MS);
	while (nfds)
		close(fds[--nfds]);
	if (r == 0 && m.type == MSG_RELEASE && m.len1 > 0 && m.len1 <= 65536) {
		char *names = malloc(m.len1 + 1);
		char *why = NULL;

		r = names ? np_ctl_recv(fd, names, m.len1, fds, &nfds, MSG_MS) : -ENOMEM;
		while (r == 0 && nfds)
			close(fds[--nfds]);
		if (r == 0) {
			names[m.len1] = '\0';
			np_info("hand-off: the new process asks for exports it cannot open");
			r = release_named(srv, names, m.len1, rel, &why);
		}
		free(names);
		if (r == 0) {
			msg_init(&m, MSG_RELEASED);
			r = send_msg(fd, &m, -1, NULL, NULL);
		} else if (why) {
			refuse(fd, why);
			np_errmsg(err, r, "%s", why);
		}
		free(why);
		if (r == 0)
			goto again;
		return np_errmsg(err, r, "releasing exports: %s", strerror(-r));
	}
	if (r < 0)
		return np_errmsg(err, r, "the new process did not answer: %s", strerror(-r));
	if (m.type == MSG_ACK)
		return 0;
	if (m.type == MSG_NAK && m.len1 > 0 && m.len1 < 4096) {
		char *text = malloc(m.len1 + 1);

		if (text && np_ctl_recv(fd, text, m.len1, fds, &nfds, MSG_MS) == 0) {
			text[m.len1] = '\0';
			np_errmsg(err, -EPROTO, "the new process refused: %s", text);
		}
		free(text);
		return -EPROTO;
	}
	return np_errmsg(err, -EPROTO, "the new process answered %u", m.type);
}

struct old_side {
	struct np_server *srv;
	int fd;
};

static void *handoff_thread(void *arg)
{
	struct old_side os = *(struct old_side *)arg;
	struct np_server *srv = os.srv;
	struct collected co = {0};
	struct released rel = {.n = 0};
	struct ucred cr = {0};
	socklen_t crlen = sizeof(cr);
	uint64_t t0 = now_ns();
	char *err = NULL;
	int r;

	free(arg);
	getsockopt(os.fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen);
	np_info("hand-off: process %d takes over; stopping accepting and parsing", (int)cr.pid);
	atomic_store(&srv->accept_paused, true);
	on_loop(np_loop_nth(srv, 0), stop_accepting, srv);
	/* After loop 0 stopped accepting, each loop's mailbox holds every
	 * socket it will get, ahead of this. */
	on_each_loop(srv, handoff_on, NULL);
	r = quiesce(srv, os.fd, t0);
	if (r < 0) {
		np_errmsg(&err, r, "%s",
			  r == -ETIMEDOUT ? "requests in flight did not finish in time"
					  : "the new process went away");
		goto resume;
	}
	flush_exports(srv);
	on_each_loop(srv, collect, &co);
	if (co.rc < 0) {
		r = np_errmsg(&err, co.rc, "out of memory");
		goto resume;
	}
	r = send_all(srv, os.fd, &co, t0);
	if (r < 0) {
		np_errmsg(&err, r, "sending: %s", strerror(-r));
		goto resume;
	}
	r = await_ack(srv, os.fd, &rel, &err);
	if (r < 0)
		goto resume;
	{
		struct msg m;

		msg_init(&m, MSG_COMMIT);
		/* From here the sockets are the new process's, whatever
		 * becomes of it: this one never reads them again. */
		np_ctl_send(os.fd, &m, sizeof(m), NULL, 0);
	}
	np_info("hand-off: %zu connection(s) and %zu listener(s) passed in %.1f ms; exiting", co.n,
		srv->n_listeners, (double)(now_ns() - t0) / 1e6);
	for (size_t i = 0; i < rel.n; i++)
		np_export_put(srv, rel.ex[i]); /* closed: the new process's now */
	srv->handoff_sock = os.fd;
	srv->handed_off = true;
	for (unsigned i = 0; i < srv->n_loops; i++)
		np_mailbox_signal(np_loop_mailbox(np_loop_nth(srv, i)), NP_LOOP_HANDOFF);
	goto out;

resume:
	np_warn("hand-off failed: %s; serving on", err ? err : strerror(-r));
	close(os.fd);
	take_back(srv, &rel);
	on_each_loop(srv, handoff_off, NULL);
	atomic_store(&srv->accept_paused, false);
	np_mailbox_signal(np_loop_mailbox(np_loop_nth(srv, 0)), NP_LOOP_ACCEPT);
	atomic_store(&srv->handoff_busy, false);
	if (atomic_load(&srv->stop_pending))
		kill(getpid(), SIGTERM); /* the shutdown asked for meanwhile */
out:
	for (size_t i = 0; i < co.n; i++)
		np_conn_moved_free(&co.all[i]);
	free(co.all);
	free(err);
	return NULL;
}

int np_handoff_serve(struct np_server *srv, int fd, char **err)
{
	struct old_side *os;
	pthread_attr_t attr;
	pthread_t t;
	bool idle = false;
	int r;

	if (!atomic_compare_exchange_strong(&srv->handoff_busy, &idle, true))
		return np_errmsg(err, -EBUSY, "a hand-off is already under way");
	if (srv->stopping) {
		atomic_store(&srv->handoff_busy, false);
		return np_errmsg(err, -ESHUTDOWN, "the server is shutting down");
	}
	os = malloc(sizeof(*os));
	if (!os) {
		atomic_store(&srv->handoff_busy, false);
		return np_errmsg(err, -ENOMEM, "out of memory");
	}
	os->srv = srv;
	os->fd = fd;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = -pthread_create(&t, &attr, handoff_thread, os);
	pthread_attr_destroy(&attr);
	if (r < 0) {
		free(os);
		atomic_store(&srv->handoff_busy, false);
		return np_errmsg(err, r, "cannot start the hand-off: %s", strerror(-r));
	}
	return 0;
}

/* ---- the new process ---- */

static int recv_part(int fd, void *buf, size_t len)
{
	int fds[NP_CTL_MAX_FDS];
	size_t nfds;
	int r = np_ctl_recv(fd, buf, len, fds, &nfds, MSG_MS);

	while (nfds)
		close(fds[--nfds]);
	return r;
}

/* A message, its descriptor (or -1) and its payloads (malloc'd, NUL
 * terminated). */
static int recv_msg(int fd, struct msg *m, int *sock, char **p1, uint8_t **p2)
{
	int fds[NP_CTL_MAX_FDS];
	size_t nfds;
	int r = np_ctl_recv(fd, m, sizeof(*m), fds, &nfds, MSG_MS);

	*sock = -1;
	*p1 = NULL;
	*p2 = NULL;
	if (r < 0)
		return r;
	if (nfds)
		*sock = fds[0];
	for (size_t i = 1; i < nfds; i++)
		close(fds[i]);
	if (m->len1 > 65536 || m->len2 > 1u << 20)
		r = -EPROTO;
	if (r == 0 && !(*p1 = calloc(1, m->len1 + 1)))
		r = -ENOMEM;
	if (r == 0 && !(*p2 = malloc(m->len2 + 1)))
		r = -ENOMEM;
	if (r == 0 && m->len1)
		r = recv_part(fd, *p1, m->len1);
	if (r == 0 && m->len2)
		r = recv_part(fd, *p2, m->len2);
	if (r < 0) {
		if (*sock >= 0)
			close(*sock);
		free(*p1);
		free(*p2);
		*sock = -1;
		*p1 = NULL;
		*p2 = NULL;
	}
	return r;
}

static void free_in(struct np_handoff_in *in)
{
	for (size_t i = 0; i < in->n_listeners; i++) {
		if (in->listeners[i].fd >= 0)
			close(in->listeners[i].fd);
		free(in->listeners[i].addr);
	}
	for (size_t i = 0; i < in->n_conns; i++)
		np_conn_moved_free(&in->conns[i]);
	free(in->listeners);
	free(in->conns);
	in->listeners = NULL;
	in->conns = NULL;
	in->n_listeners = in->n_conns = 0;
}

static int receive_all(int fd, struct np_handoff_in *in, char **err)
{
	struct msg_hello h;
	int r;

	memset(&h, 0, sizeof(h));
	r = recv_part(fd, &h, sizeof(h));
	if (r == -ENODATA || (r == 0 && h.magic != HANDOFF_MAGIC)) {
		/* The control socket answered a line instead: an error, such
		 * as a hand-off already under way, or a server too old. */
		char *text = (char *)&h;

		text[sizeof(h) - 1] = '\0';
		if (strchr(text, '\n'))
			*strchr(text, '\n') = '\0';
		if (strncmp(text, "error: ", 7) == 0)
			text += 7;
		return np_errmsg(err, -EPROTO, "the running server refused: %s",
				 text[0] ? text : "it closed the connection");
	}
	if (r < 0)
		return np_errmsg(err, r, "receiving: %s", strerror(-r));
	if (h.n_listeners > 1024 || h.n_conns > MAX_MOVED)
		return np_errmsg(err, -EPROTO, "too many sockets offered");
	in->old_pid = h.pid;
	in->stats = h.stats;
	in->next_conn_id = h.next_conn_id;
	in->listeners = calloc(h.n_listeners + 1, sizeof(*in->listeners));
	in->conns = calloc(h.n_conns + 1, sizeof(*in->conns));
	if (!in->listeners || !in->conns)
		return np_errmsg(err, -ENOMEM, "out of memory");
	for (;;) {
		struct msg m;
		char *p1;
		uint8_t *p2;
		int sock;

		r = recv_msg(fd, &m, &sock, &p1, &p2);
		if (r < 0)
			return np_errmsg(err, r, "receiving: %s", strerror(-r));
		if (m.type == MSG_END) {
			free(p1);
			free(p2);
			in->old_ns = m.a;
			break;
		}
		if (sock < 0 || (m.type == MSG_LISTENER && in->n_listeners == h.n_listeners) ||
		    (m.type == MSG_CONN && in->n_conns == h.n_conns) ||
		    (m.type != MSG_LISTENER && m.type != MSG_CONN)) {
			if (sock >= 0)
				close(sock);
			free(p1);
			free(p2);
			return np_errmsg(err, -EPROTO, "unexpected message %u", m.type);
		}
		if (m.type == MSG_LISTENER) {
			struct np_handoff_listener *l = &in->listeners[in->n_listeners++];

			l->fd = sock;
			l->addr = p1;
			l->unlink = m.flags & 1;
			l->dev = m.a;
			l->ino = m.b;
			free(p2);
		} else {
			struct np_conn_moved *c = &in->conns[in->n_conns++];

			c->fd = sock;
			c->id = m.a;
			c->peer = m.peer;
			c->export = p1;
			c->in = p2;
			c->in_len = m.len2;
			c->structured = m.flags & NP_MOVED_STRUCTURED;
			c->extended = m.flags & NP_MOVED_EXTENDED;
			c->export_len = m.len1;
		}
	}
	in->t_end = now_ns();
	return 0;
}

/* The export of every connection must be served here; else the whole
 * hand-off is refused, and the old process keeps its clients. */
static int check_exports(struct np_server *srv, const struct np_handoff_in *in, char **err)
{
	for (size_t i = 0; i < in->n_conns; i++) {
		const struct np_export *found = NULL;
		bool in_memory;

		pthread_mutex_lock(&srv->exports_lock);
		for (unsigned k = 0; k < NP_MAX_EXPORTS && !found; k++)
			if (srv->exports[k] && !srv->exports[k]->draining &&
			    strcmp(srv->exports[k]->hs.name, in->conns[i].export) == 0)
				found = srv->exports[k];
		in_memory = found && strcmp(found->ops->name, "mem") == 0;
		pthread_mutex_unlock(&srv->exports_lock);
		if (!found)
			return np_errmsg(
			    err, -ENOENT,
			    "export '%s' has clients but is not in the new configuration",
			    in->conns[i].export);
		/* Its data is the old process's memory: its clients would find
		 * another disk. */
		if (in_memory)
			return np_errmsg(
			    err, -EXDEV,
			    "export '%s' has clients and is in memory (mem:): its data "
			    "cannot move to another process",
			    in->conns[i].export);
	}
	return 0;
}

static void refuse(int fd, const char *why)
{
	struct msg m;

	msg_init(&m, MSG_NAK);
	m.len1 = (uint32_t)strlen(why);
	send_msg(fd, &m, -1, why, NULL);
}

/* Asks the running server (now still, its exports flushed) to let go of
 * the exports this process found busy, and opens them. *opened: how many
 * were released, for np_exports_close_deferred. */
static int open_released(struct np_server *srv, int fd, size_t *opened, char **err)
{
	char *names = NULL;
	size_t len = 0;
	struct msg m;
	int r;

	*opened = 0;
	if (!srv->n_deferred)
		return 0;
	for (size_t i = 0; i < srv->n_deferred; i++)
		len += strlen(srv->deferred[i]->name) + 1;
	names = malloc(len);
	if (!names)
		return np_errmsg(err, -ENOMEM, "out of memory");
	len = 0;
	for (size_t i = 0; i < srv->n_deferred; i++) {
		size_t n = strlen(srv->deferred[i]->name) + 1;

		memcpy(names + len, srv->deferred[i]->name, n);
		len += n;
	}
	msg_init(&m, MSG_RELEASE);
	m.len1 = (uint32_t)len;
	r = send_msg(fd, &m, -1, names, NULL);
	free(names);
	if (r < 0)
		return np_errmsg(err, r, "the running server went away: %s", strerror(-r));
	r = recv_part(fd, &m, sizeof(m));
	if (r < 0)
		return np_errmsg(err, r, "the running server did not release: %s", strerror(-r));
	if (m.type == MSG_NAK && m.len1 > 0 && m.len1 < 4096) {
		char *text = calloc(1, m.len1 + 1);

		if (text && recv_part(fd, text, m.len1) == 0)
			np_errmsg(err, -EPROTO, "the running server cannot release: %s", text);
		free(text);
		return np_errmsg(err, -EPROTO, "the running server cannot release them");
	}
	if (m.type != MSG_RELEASED)
		return np_errmsg(err, -EPROTO, "the running server answered %u", m.type);
	np_info("hand-off: %zu export(s) released; opening them", srv->n_deferred);
	r = np_exports_open_deferred(srv, err); /* on failure, closes what it opened */
	if (r == 0)
		*opened = srv->n_deferred;
	return r;
}

int np_handoff_receive(struct np_server *srv, const char *control, struct np_handoff_in *in,
		       char **err)
{
	char *words[] = {"takeover"};
	const char *delay = getenv("NP_HANDOFF_TEST_DELAY_MS");
	struct msg m;
	size_t opened = 0;
	int r;

	memset(in, 0, sizeof(*in));
	in->sock = np_ctl_open(control, 1, words);
	if (in->sock < 0)
		return np_errmsg(err, in->sock, "--takeover %s: %s", control, strerror(-in->sock));
	r = receive_all(in->sock, in, err);
	if (r == 0 && (r = open_released(srv, in->sock, &opened, err)) < 0)
		refuse(in->sock, *err ? *err : "an export cannot open");
	if (r == 0 && (r = check_exports(srv, in, err)) < 0) {
		np_exports_close_deferred(srv, opened); /* before the old one reopens */
		opened = 0;
		refuse(in->sock, *err ? *err : "an export is missing");
	}
	if (r == 0 && delay) {
		/* For tests: a window in which to kill this process, or to
		 * ask for a second hand-off. */
		struct timespec ts = {atoi(delay) / 1000, (atoi(delay) % 1000) * 1000000L};

		np_info("hand-off: waiting %s ms before agreeing (NP_HANDOFF_TEST_DELAY_MS)",
			delay);
		nanosleep(&ts, NULL);
	}
	if (r == 0) {
		msg_init(&m, MSG_ACK);
		r = send_msg(in->sock, &m, -1, NULL, NULL);
		if (r < 0)
			np_errmsg(err, r, "the running server went away: %s", strerror(-r));
	}
	if (r == 0) {
		r = recv_part(in->sock, &m, sizeof(m));
		if (r == 0 && m.type != MSG_COMMIT) {
			r = np_errmsg(err, -EPROTO, "the running server answered %u", m.type);
		} else if (r < 0 && kill(in->old_pid, 0) < 0 && errno == ESRCH) {
			/* It died after it had passed everything: ours now. */
			np_warn("hand-off: process %d died before it confirmed; keeping what it "
				"passed",
				(int)in->old_pid);
			r = 0;
		} else if (r < 0) {
			np_errmsg(err, r, "the running server gave up: %s", strerror(-r));
		}
	}
	if (r < 0) {
		/* What it released goes back to it: closed before the old
		 * process reads the NAK or sees this one gone. */
		np_exports_close_deferred(srv, opened);
		free_in(in);
		close(in->sock);
		in->sock = -1;
		return r;
	}
	np_info("hand-off: received %zu listener(s) and %zu connection(s) from process %d",
		in->n_listeners, in->n_conns, (int)in->old_pid);
	return 0;
}

void np_handoff_record(struct np_server *srv, const struct np_handoff_in *in)
{
	static const unsigned bounds[NP_HANDOFF_BUCKETS] = NP_HANDOFF_BOUNDS_MS;
	uint64_t ns = in->old_ns + (now_ns() - in->t_end);
	unsigned b = 0;

	while (b < NP_HANDOFF_BUCKETS && ns > (uint64_t)bounds[b] * 1000000u)
		b++;
	srv->handoff = in->stats;
	srv->handoff.count++;
	srv->handoff.sum_ns += ns;
	srv->handoff.buckets[b]++;
	np_info("hand-off: paused clients for %.1f ms", (double)ns / 1e6);
}

void np_handoff_finish(struct np_handoff_in *in, int timeout_ms)
{
	char c;

	/* Its end closes when it exits: then its control socket, metrics
	 * port and exclusive resources are free. */
	if (in->sock >= 0) {
		struct pollfd p = {.fd = in->sock, .events = POLLIN};

		while (poll(&p, 1, timeout_ms) > 0 && read(in->sock, &c, 1) > 0)
			;
		close(in->sock);
		in->sock = -1;
	}
	free_in(in);
}
