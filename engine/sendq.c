/* A connection's write queue: replies go out at the end of the callback
 * that produced them (np_loop_flush), in one uv_try_write of every pending
 * reply; what the socket does not take waits for it to drain, behind a
 * poll handle, or, when none can be had, in a uv_write. Large READs whose
 * data goes by sendfile leave from the file when their turn comes.
 *
 * Nothing here closes a connection: a failed write is returned, or, from
 * libuv's callbacks, handed to the connection's written callback. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/conn_int.h"
#include "engine/request.h"
#include "engine/sendq.h"
#include "engine/tls.h"
#include "util/fullio.h"

#define WRITE_BATCH 1024 /* iovecs per write; IOV_MAX on Linux */

/* Collects up to WRITE_BATCH iovecs of queued replies starting at r. A
 * reply whose data goes by sendfile ends the batch after its header, and
 * is where the batch stops. */
static unsigned gather(struct np_req *r, uv_buf_t *bufs, struct np_req **stop)
{
	unsigned n = 0;

	for (; r && n + (r->n_iov - r->iov_done) <= WRITE_BATCH; r = r->next) {
		for (unsigned i = r->iov_done; i < r->n_iov; i++)
			bufs[n++] = uv_buf_init(r->iov[i].iov_base, (unsigned)r->iov[i].iov_len);
		if (r->sf_len)
			break;
	}
	*stop = r;
	return n;
}

/* Drops written bytes from the front of the queue. */
static void advance(struct np_conn *c, size_t written)
{
	while (c->out_head && written) {
		struct np_req *r = c->out_head;
		struct iovec *v = &r->iov[r->iov_done];

		if (written < v->iov_len) {
			v->iov_base = (uint8_t *)v->iov_base + written;
			v->iov_len -= written;
			return;
		}
		written -= v->iov_len;
		if (++r->iov_done == r->n_iov) {
			if (r->sf_len)
				return; /* its data goes by sendfile */
			c->out_head = r->next;
			if (!c->out_head)
				c->out_tail = NULL;
			np_req_free(r);
		}
	}
}

/* Why a read from or a write to the client failed. EFAULT: a READ's data
 * sent from, or a WRITE's received into, the engine's mapping of a file
 * (map_read, map_write) that was cut short underneath. */
const char *np_socket_error(int e)
{
	return e == UV_EFAULT ? "a request's data is gone: the export's file was cut short under it"
			      : uv_strerror(e);
}

static void on_write(uv_write_t *w, int status)
{
	struct np_conn *c = container_of(w, struct np_conn, write_req);

	while (c->writing) {
		struct np_req *next = c->writing->next;

		np_req_free(c->writing);
		c->writing = next;
	}
	c->write_busy = false;
	c->written(c, status < 0 ? np_socket_error(status) : NULL);
}

static int materialize(struct np_req *r);

/* Waiting for a full socket to take more. libuv's own write queue can only
 * take buffers, so a reply whose data goes by sendfile would have to be
 * read into memory first; instead a poll handle on a duplicate of the
 * socket's descriptor (epoll keeps it apart from libuv's registration of
 * the original) says when to go on. */
struct np_wpoll {
	uv_poll_t poll;
	int fd;
};

static void on_wpoll_close(uv_handle_t *h)
{
	struct np_wpoll *p = container_of((uv_poll_t *)h, struct np_wpoll, poll);

	close(p->fd);
	free(p);
}

static void on_writable(uv_poll_t *h, int status, int events)
{
	struct np_conn *c = h->data;
	struct np_wpoll *p = container_of(h, struct np_wpoll, poll);

	(void)events;
	uv_poll_stop(h);
	if (status < 0) {
		/* libuv says EBADF for any POLLERR; the socket knows the real
		 * cause (a client that closed with replies unread: a reset). */
		int e = 0;
		socklen_t len = sizeof(e);

		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e > 0)
			status = -e;
		c->written(c, uv_strerror(status));
		return;
	}
	c->written(c, NULL);
}

/* Returns false when no poll handle can be had (out of descriptors): the
 * caller then hands the queue to libuv. */
static bool wait_writable(struct np_conn *c)
{
	struct np_wpoll *p = c->wpoll;
	uv_os_fd_t sock;

	if (!p) {
		if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0 || !(p = calloc(1, sizeof(*p))))
			return false;
		p->fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
		if (p->fd < 0 || uv_poll_init_socket(c->tcp.loop, &p->poll, p->fd) < 0) {
			if (p->fd >= 0)
				close(p->fd);
			free(p);
			return false;
		}
		p->poll.data = c;
		c->wpoll = p;
	}
	return uv_poll_start(&p->poll, UV_WRITABLE, on_writable) == 0;
}

/* Sends what a sendfile reply has left, for as long as the socket takes
 * it. Returns 0 when the reply is gone (or left as a buffered one), 1 when
 * the socket is full, -1 on failure, with *why. */
static int send_file_part(struct np_conn *c, struct np_req *r, const char **why)
{
	uv_os_fd_t sock;

	if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0) {
		*why = "no socket";
		return -1;
	}
	while (r->sf_len) {
		off_t off = (off_t)r->sf_off;
		size_t n = r->sf_len > (1U << 30) ? (1U << 30) : (size_t)r->sf_len;
		ssize_t w = sendfile(sock, r->sf_fd, &off, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 1;
		if (w < 0) {
			*why = strerror(errno);
			return -1;
		}
		if (w == 0) {
			/* The file shrank under the read: the rest reads as
			 * zeroes, as pread would give them, and is written
			 * from a buffer. */
			int e = materialize(r);

			if (e == 0)
				return 0;
			*why = e == -ENOMEM ? "out of memory for a reply" : strerror(-e);
			return -1;
		}
		r->sf_off += (uint64_t)w;
		r->sf_len -= (uint64_t)w;
	}
	c->out_head = r->next;
	if (!c->out_head)
		c->out_tail = NULL;
	np_req_free(r);
	return 0;
}

/* Reads what a sendfile reply has left into a buffer, for a write that
 * libuv finishes; bytes past the end of a shrunk file read as zeroes
 * (np_pread_full zeroes them and says -ENODATA). Returns 0 or a negative
 * errno. */
static int materialize(struct np_req *r)
{
	uint8_t *buf = malloc(r->sf_len);
	int e;

	if (!buf)
		return -ENOMEM;
	e = np_pread_full(r->sf_fd, buf, r->sf_len, r->sf_off, 0);
	if (e < 0 && e != -ENODATA) {
		free(buf);
		return e;
	}
	free(r->io.buf);
	r->io.buf = buf;
	r->iov[r->n_iov].iov_base = buf;
	r->iov[r->n_iov].iov_len = r->sf_len;
	r->n_iov++;
	r->sf_len = 0;
	return 0;
}

int np_sendq_flush(struct np_conn *c, const char **why)
{
	uv_buf_t bufs[WRITE_BATCH];
	struct np_req *stop;
	unsigned n;
	int w;

	if (c->tls_up && c->out_tail && !c->out_tail->wire && np_sendq_encrypt(c) < 0) {
		*why = "TLS: cannot encrypt";
		return -1;
	}
	if (c->write_busy || (c->wpoll && uv_is_active((uv_handle_t *)&c->wpoll->poll)))
		return 0;
	while (c->out_head) {
		struct np_req *head = c->out_head;

		if (head->iov_done == head->n_iov && head->sf_len) {
			int rc = send_file_part(c, head, why);

			if (rc < 0)
				return -1;
			if (rc > 0)
				break; /* the socket is full */
			continue;
		}
		n = gather(c->out_head, bufs, &stop);
		if (n == 0)
			break;
		w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
		if (w < 0 && w != UV_EAGAIN) {
			*why = np_socket_error(w);
			return -1;
		}
		advance(c, w > 0 ? (size_t)w : 0);
		if (c->out_head && (w == UV_EAGAIN || c->out_head != stop))
			break; /* the socket is full */
	}
	if (c->out_head && !wait_writable(c)) {
		/* Hand the rest to libuv, which writes it when the socket
		 * drains; these replies leave the queue until it is done.
		 * libuv cannot sendfile, so their file data is read now. */
		for (struct np_req *r = c->out_head; r; r = r->next) {
			if (r->sf_len && materialize(r) < 0) {
				*why = "out of memory for a reply";
				return -1;
			}
		}
		n = gather(c->out_head, bufs, &stop);
		c->writing = c->out_head;
		for (struct np_req *r = c->out_head; r; r = r->next) {
			if (r->next == stop) {
				r->next = NULL;
				break;
			}
		}
		c->out_head = stop;
		if (!stop)
			c->out_tail = NULL;
		w = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
		if (w < 0) {
			*why = np_socket_error(w);
			return -1;
		}
		c->write_busy = true;
	}
	return 0;
}

void np_sendq_stop(struct np_conn *c)
{
	if (c->wpoll) {
		uv_close((uv_handle_t *)&c->wpoll->poll, on_wpoll_close);
		c->wpoll = NULL;
	}
}

void np_sendq_push_tls(struct np_conn *c)
{
	if (c->tls_out.len) {
		np_req_queue_copy(c, c->tls_out.data, c->tls_out.len, true);
		np_buf_free(&c->tls_out);
	}
}

/* Encrypts every queued plaintext reply into one TLS write. */
int np_sendq_encrypt(struct np_conn *c)
{
	for (struct np_req **pp = &c->out_head; *pp;) {
		struct np_req *r = *pp;

		if (r->wire) {
			c->out_tail = r;
			pp = &r->next;
			continue;
		}
		for (unsigned i = r->iov_done; i < r->n_iov; i++)
			if (np_tls_encrypt(c, r->iov[i].iov_base, r->iov[i].iov_len) < 0)
				return -1;
		*pp = r->next;
		np_req_free(r);
	}
	if (!c->out_head)
		c->out_tail = NULL;
	np_sendq_push_tls(c);
	return 0;
}
