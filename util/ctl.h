/* Unix control sockets: one component for every socket through which a
 * local tool talks to a running process (the server's --control socket for
 * `nbdplex stats`, a thin pool's POOLDIR/control.sock for `nbdplex
 * volume`).
 *
 * One thread per process serves every socket, one connection at a time:
 * commands are rare and short, and one thread bounds what a local client
 * can make the process do. A connection carries one request: a line of
 * words separated by single spaces and ended by "\n" (or by the client's
 * EOF), at most max_line bytes, each read waiting at most NP_CTL_IO_MS.
 * The first word is the verb, looked up in the socket's table. The answer
 * is the verb's output, then, on an NP_CTL_STATUS socket, a last line "OK"
 * or "ERR <errno> <message>"; on an NP_CTL_RAW socket an error is the line
 * "error: <message>". Then the server closes.
 *
 * A path longer than sun_path is reached through /proc/self/fd/DIRFD/NAME,
 * so a socket may live in a directory of any depth. */
#ifndef NP_UTIL_CTL_H
#define NP_UTIL_CTL_H

#include <stdio.h>
#include <sys/types.h>

#define NP_CTL_IO_MS    5000   /* per read and per write of the server */
#define NP_CTL_REPLY_MS 600000 /* per read of the client: a command may be long */
#define NP_CTL_MAX_ARGS 8

enum np_ctl_framing {
	NP_CTL_RAW,    /* the output, and nothing after it */
	NP_CTL_STATUS, /* the output, then "OK" or "ERR <errno> <message>" */
};

/* A verb: argv[0] is the verb, argv[1..argc-1] its arguments. Writes its
 * output to out and returns 0, or a negative errno with an optional
 * message in *err. */
typedef int (*np_ctl_fn)(void *ctx, int argc, char **argv, FILE *out, char **err);

/* A verb that takes the connection over (the server's hand-off): it gets
 * the socket, which is then its own to talk on and to close, and the
 * component writes nothing. It returns 0 once it owns fd, or a negative
 * errno (with *err) for the component to answer as for any verb. It must
 * not keep the control thread: what takes long goes to a thread of its own. */
typedef int (*np_ctl_take_fn)(void *ctx, int fd, int argc, char **argv, char **err);

struct np_ctl_verb {
	const char *name;
	int nargs; /* the arguments after the verb; -1: any number */
	np_ctl_fn fn;
	const char *usage; /* "create VOLUME SIZE", for a wrong number of arguments */
};

struct np_ctl_config {
	const char *path;
	mode_t mode; /* 0: as the umask makes it */
	int backlog;
	size_t max_line; /* the longest request, "\n" included */
	enum np_ctl_framing framing;
	const struct np_ctl_verb *verbs;
	size_t nverbs;
	void *ctx; /* passed to every verb */
	/* One verb without arguments may take the connection over. */
	const char *take_verb;
	np_ctl_take_fn take;
};

struct np_ctl;

/* Replaces a stale socket file at cfg->path, listens there, and serves it
 * on the process's control thread (started with the first socket). Returns
 * 0, or -errno with a message in *err. */
int np_ctl_listen(const struct np_ctl_config *cfg, struct np_ctl **out, char **err);
/* Stops serving (waiting for a request in progress on this socket), closes
 * the socket and removes its file. The last one stops the thread. Never
 * call it from a verb. */
void np_ctl_close(struct np_ctl *c);

/* Called with each piece of the answer's output, in order. */
typedef void (*np_ctl_out_fn)(void *arg, const char *data, size_t len);

/* The client: sends the words as one request and passes the output to out.
 * On an NP_CTL_STATUS socket returns the status (0, or the server's -errno
 * with its message in *err), or -ECONNRESET when the server closed without
 * one; on an NP_CTL_RAW socket 0 once the server closed. -ENOENT or
 * -ECONNREFUSED: nobody serves path. */
int np_ctl_call(const char *path, enum np_ctl_framing framing, int argc, char *const *argv,
		np_ctl_out_fn out, void *arg, char **err);
/* An np_ctl_out_fn that writes to the FILE * arg. */
void np_ctl_out_file(void *arg, const char *data, size_t len);

/* The client of a verb that takes the connection: connects to path, sends
 * the words as one request and returns the socket (blocking, close-on-exec),
 * or a negative errno (-ENOENT, -ECONNREFUSED: nobody serves path). */
int np_ctl_open(const char *path, int argc, char *const *argv);

/* Messages with descriptors on a control connection (SCM_RIGHTS): len bytes
 * in one piece, with nfds descriptors (at most NP_CTL_MAX_FDS) riding on
 * them. np_ctl_recv reads exactly len bytes and the descriptors that came
 * with them (made close-on-exec) into fds, their number into *nfds; it
 * waits at most timeout_ms for each part. Both return 0 or a negative
 * errno; -ENODATA: the peer closed before the message. */
#define NP_CTL_MAX_FDS 16
int np_ctl_send(int fd, const void *buf, size_t len, const int *fds, size_t nfds);
int np_ctl_recv(int fd, void *buf, size_t len, int *fds, size_t *nfds, int timeout_ms);

#endif
