/* Declarations shared by the server engine's files, one heading per file. */
#ifndef NP_ENGINE_INTERNAL_H
#define NP_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <uv.h>

#include "engine/mailbox.h"
#include "engine/pool.h"
#include "engine/reply.h"
#include "net/handshake.h"
#include "net/proto.h"
#include "storage/storage.h"

/* ---- log.c ---- */
enum np_log_level { NP_LOG_ERROR, NP_LOG_WARN, NP_LOG_INFO, NP_LOG_DEBUG };
extern enum np_log_level np_log_level;
void np_log(enum np_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define np_err(...)  np_log(NP_LOG_ERROR, __VA_ARGS__)
#define np_warn(...) np_log(NP_LOG_WARN, __VA_ARGS__)
#define np_info(...) np_log(NP_LOG_INFO, __VA_ARGS__)
#define np_debug(...)                                                                              \
	do {                                                                                       \
		if (np_log_level >= NP_LOG_DEBUG)                                                  \
			np_log(NP_LOG_DEBUG, __VA_ARGS__);                                         \
	} while (0)

/* ---- access.c: allow lists and connection limits ---- */
struct np_cidr {
	uint8_t addr[16]; /* IPv6, or IPv4-mapped IPv6 */
	unsigned prefix;  /* bits of addr that must match */
};

struct np_acl {
	struct np_cidr *v;
	size_t n; /* 0: everyone */
};

int np_cidr_parse(const char *s, struct np_cidr *out);
/* Adds a list of addresses and ranges separated by spaces or commas. */
int np_acl_add(struct np_acl *acl, const char *list);
/* Allow lists are about IP addresses: a Unix peer is always allowed, its
 * socket file's mode and owner being what guards it. */
bool np_acl_allows(const struct np_acl *acl, const struct sockaddr *sa);
/* Whether a peer runs on this host: it has a loopback address, or the
 * address it connected to, me (what goes to one of our own addresses goes
 * through loopback, whatever the interface); other local addresses are
 * not looked up. A peer that is not IP, or a NULL me, counts as local. */
bool np_addr_is_local(const struct sockaddr *peer, const struct sockaddr *me);
void np_acl_free(struct np_acl *acl);
/* np_addr_is_local for a connected socket's peer, for --sendfile auto. */
bool np_tcp_peer_is_local(uv_tcp_t *tcp, const struct sockaddr *peer);

/* A peer of a Unix socket, as the listener records it in place of the
 * empty address accept() gives (np_accepted.peer, np_conn.peer_sa): the
 * socket's path and the peer's credentials, which name it in logs and
 * metrics and count it, per user, against max-connections-per-client. */
struct np_unix_peer {
	sa_family_t family; /* AF_UNIX */
	bool cred;          /* pid, uid and gid are known (SO_PEERCRED) */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char path[96]; /* the listening socket's, cut short if need be */
};
_Static_assert(sizeof(struct np_unix_peer) <= sizeof(struct sockaddr_storage),
	       "a Unix peer fits where accepted addresses are kept");

struct client_count;
struct np_limits {
	pthread_mutex_t lock;
	unsigned max_total, max_per_client, total;
	struct client_count **buckets;
};

int np_limits_init(struct np_limits *lim, unsigned max_total, unsigned max_per_client);
/* Counts a new connection; returns NULL, or why it is refused. */
const char *np_limits_take(struct np_limits *lim, const struct sockaddr *sa);
void np_limits_release(struct np_limits *lim, const struct sockaddr *sa);
void np_limits_free(struct np_limits *lim);

/* ---- config.c ---- */
struct np_export_cfg {
	char *name;
	char *spec; /* ENGINE:SPEC */
	char *description;
	bool readonly;
	bool hidden;         /* left out of NBD_OPT_LIST */
	bool tls_only;       /* refused to clients without TLS */
	struct np_acl allow; /* who may use it (empty: everyone allowed in) */
};

/* Large READs of files on tmpfs may go by sendfile(2). To a client on the
 * same host that costs more than it saves: the data is then copied by the
 * client's receive out of page-cache pages, which measured twice the
 * client's CPU per 1 MiB read over loopback (perf/README.md). */
enum np_sendfile_mode { NP_SENDFILE_AUTO, NP_SENDFILE_ON, NP_SENDFILE_OFF };

#define NP_COALESCE_DEFAULT_US 20
#define NP_COALESCE_MAX_US     1000

/* sizeof(sockaddr_un.sun_path), with the terminating NUL */
#define NP_UNIX_PATH_MAX 108

struct np_config {
	char **listen; /* HOST:PORT or unix:PATH */
	size_t n_listen;
	unsigned socket_mode; /* of the sockets that listen = unix:PATH makes */
	struct np_export_cfg *exports;
	size_t n_exports;
	bool readonly;
	char *pidfile;
	unsigned threads;            /* worker pool threads */
	unsigned loops;              /* event loops; 0 = one per core */
	unsigned handshake_timeout;  /* seconds */
	uint64_t max_inflight;       /* bytes per connection */
	uint64_t max_inflight_total; /* bytes over all connections */
	uint32_t max_request;        /* bytes of one READ or WRITE */
	unsigned shutdown_timeout;   /* seconds to drain on SIGTERM */
	unsigned coalesce_us;        /* a loop's wait before it polls (server.c) */
	struct np_acl allow;         /* who may connect at all */
	unsigned max_connections;    /* 0: no limit */
	unsigned max_connections_per_client;
	enum np_tls_mode tls_mode;
	char *tls_certificates; /* DIR with ca-cert.pem, server-cert.pem, server-key.pem */
	char *tls_psk;          /* psktool's format */
	bool tls_verify_peer;   /* require a client certificate signed by the CA */
	bool tls_mode_set;
	char *metrics; /* HOST:PORT for Prometheus' /metrics */
	char *control; /* unix socket for nbdplex stats */
	enum np_sendfile_mode sendfile;
	int argc; /* what it was parsed from, to parse again on SIGHUP */
	char **argv;
};

/* Fills cfg from argv (serve's options) and any -c files. Returns 0, or
 * prints a message naming what was wrong and returns 2 (usage) or 1. A
 * return of -1 means --help was printed. */
int np_config_from_args(struct np_config *cfg, int argc, char **argv);
int np_config_load_ini(struct np_config *cfg, const char *path);
void np_config_free(struct np_config *cfg);

/* ---- export.c ---- */
/* Exports live in a table of NP_MAX_EXPORTS slots, so that loops can keep
 * per-export state in arrays indexed by slot. A reload (SIGHUP) adds
 * exports to free slots and marks removed ones draining: they take no new
 * clients, their connections finish what they hold and close, and the last
 * reference closes the engine and frees the slot. */
#define NP_MAX_EXPORTS 256

struct np_export {
	struct np_hs_export hs; /* name, description, size, flags, block sizes */
	const struct np_acl *allow;
	const struct np_export_cfg *cfg; /* kept alive: every config loaded is */
	const struct np_storage_ops *ops;
	void *h;
	uint32_t caps;
	bool readonly;
	bool draining; /* removed by a reload; set under exports_lock */
	unsigned slot;
	uint64_t gen;  /* tells apart exports that used the same slot */
	unsigned refs; /* the table, connections, loops' engine handles;
			* under exports_lock */
};

struct np_server;
int np_exports_open(struct np_server *srv, const struct np_config *cfg);
void np_exports_close(struct np_server *srv);
/* Rereads the configuration from the same arguments and files, on loop 0,
 * and marks removed exports draining; the caller then has the loops drain
 * their clients. Returns 0, or -1 with the old configuration kept. */
int np_exports_reload(struct np_server *srv);
/* Drops a reference; the last one flushes and closes the export. */
void np_export_put(struct np_server *srv, struct np_export *ex);
bool np_export_draining(const struct np_export *ex);
/* The size clients are held to; it changes with NBD_CMD_RESIZE and when the
 * engine reports a new size at a handshake (a file grown underneath). */
uint64_t np_export_size(const struct np_export *ex);
uint64_t np_export_refresh_size(struct np_export *ex);
/* What one connection's handshake holds of the export table: the lookups
 * of np_export_hs_ops (ctx: this struct) see the exports visible to peer,
 * and read copies made under the lock, so that a reload can change an
 * export's settings while handshakes go on. */
struct np_hs_view {
	struct np_server *srv;
	const struct sockaddr *peer;
	struct np_export *held; /* found by the last lookup; held until the next
				 * lookup, transmission, or the connection's end */
	struct np_hs_export found, listed;
};
extern const struct np_hs_ops np_export_hs_ops;

/* ---- stats.c ---- */
#define NP_STAT_CMDS   9 /* NBD_CMD_READ .. NBD_CMD_BLOCK_STATUS, then the rest */
#define NP_LAT_BUCKETS 14

struct np_cmd_stats {
	uint64_t requests, bytes, errors;
	uint64_t lat[NP_LAT_BUCKETS];
	uint64_t lat_sum_ns;
};

struct np_export_stats {
	struct np_cmd_stats cmd[NP_STAT_CMDS];
};

struct np_loop;
struct np_server;
struct np_stats_ask;
struct np_loop_export;
void np_stats_record(struct np_loop_export *le, uint16_t cmd, uint64_t bytes, bool error,
		     uint64_t t0);

/* From any thread but a loop's: every loop's numbers as Prometheus text. */
int np_stats_collect(struct np_server *srv, struct np_buf *out);
/* Signals of a loop's mailbox. */
#define NP_LOOP_SHUTDOWN 1u /* drain every connection, then stop */
#define NP_LOOP_REAP     2u /* exports were removed: drain their clients */

/* ---- metrics.c: the HTTP endpoint and the control socket ---- */
int np_metrics_start(struct np_server *srv);
void np_metrics_stop(struct np_server *srv);

/* ---- server.c: loops, listeners, lifetime (loopex.c: a loop's exports) ---- */
/* A socket accepted by the listener, on its way to a loop. */
struct np_accepted {
	int fd;
	struct sockaddr_storage peer;
};

/* Whether a loop waits before it polls (server.c). */
struct np_coalesce {
	unsigned probe;  /* turns with requests since the last trial wait */
	unsigned credit; /* waits that paid, less twice those that did not */
	bool overran;    /* the last wait lasted far longer than asked */
};
bool np_coalesce_turn(struct np_coalesce *co, unsigned most);

struct np_loop {
	uv_loop_t uv;
	uv_thread_t thread;
	struct np_server *srv;
	unsigned index;
	struct np_mailbox mbox; /* new sockets, completions, stats, shutdown */
	struct np_loop_env env; /* what async engines' loop handles get */
	/* server.c's: the last connection of a draining loop is gone. */
	void (*empty)(struct np_loop *l);
	bool draining;         /* loop thread only */
	struct np_conn *conns; /* doubly linked, loop thread only */
	unsigned n_conns;
	struct np_conn *dirty; /* connections with replies to send */
	uv_timer_t drain_timer;
	uv_prepare_t before_sleep; /* writes pending replies before the loop waits */
	/* Coalescing (server.c): the most requests one connection brought in
	 * since the loop last went to sleep, counted by conn.c's dispatch. */
	uint64_t turn;      /* loop turns so far */
	unsigned turn_most; /* of this turn */
	struct np_coalesce coalesce;
	long wait_ns; /* 0: never */
	/* Per export slot, made when the first client of an export arrives;
	 * this loop's thread only. */
	struct np_loop_export *ex[NP_MAX_EXPORTS];
};

/* What one loop keeps for one export. */
struct np_loop_export {
	uint64_t gen;             /* the export's, to tell a reused slot */
	unsigned conns;           /* this loop's connections to it */
	void *engine_loop;        /* an async engine's handle for this loop */
	struct np_export *export; /* held while engine_loop is open */
	struct np_export_stats stats;
};

/* On a loop thread: this loop's state for the export, made on first use
 * (opening the engine's per-loop handle); NULL on failure. */
struct np_loop_export *np_loop_export_get(struct np_loop *l, struct np_export *ex);
/* On a loop thread, when one of its connections to ex closes. */
void np_loop_export_conn_gone(struct np_loop *l, struct np_export *ex);
/* A connection joins the loop, and leaves it as it is freed (with the
 * references it held to exports and its count against the limits). */
void np_loop_conn_add(struct np_loop *l, struct np_conn *c);
void np_loop_conn_remove(struct np_loop *l, struct np_conn *c);
/* Closes the engine's handle for the loop and drops its reference. */
void np_loop_export_release(struct np_loop *l, struct np_loop_export *le);

struct np_listener {
	int fd;
	uv_poll_t poll;
	char *addr;       /* HOST:PORT or unix:PATH, for log lines */
	char *addr_owned; /* addr, when it was made here (socket activation) */
	const char *path; /* of a Unix socket, else NULL */
	bool unlink;      /* the socket file is ours to remove at exit */
	dev_t dev;        /* the file made, so as not to remove another */
	ino_t ino;
};

struct np_server {
	struct np_config *cfg; /* as started: [server] settings */
	pthread_mutex_t exports_lock;
	struct np_export *exports[NP_MAX_EXPORTS]; /* slots; under exports_lock */
	size_t n_exports;                          /* live ones */
	const char *default_export;                /* name of the first one configured */
	const struct np_config *current_cfg;       /* the last loaded; under exports_lock */
	uint64_t next_gen;
	struct np_config **reloaded; /* configs loaded by SIGHUP, kept */
	size_t n_reloaded;
	struct np_loop *loops;
	unsigned n_loops;
	unsigned next_loop;
	struct np_pool pool;
	struct np_listener *listeners;
	size_t n_listeners;
	uv_signal_t sigint, sigterm, sighup;
	atomic_uint_fast64_t next_conn_id;
	atomic_uint_fast64_t inflight_total; /* bytes all connections hold */
	struct np_limits limits;
	struct np_tls *tls;
	struct np_metrics *metrics;
	bool stopping;
	bool signals_ready;
};

int np_serve(struct np_config *cfg);

/* ---- conn.c: one client connection ---- */
#define NP_INBUF_SIZE (NP_HS_MAX_OPTION + 64 * 1024)
/* A READ or WRITE may be of max_request bytes: 64 MiB unless set, from the
 * 32 MiB every client must take to 256 MiB. Clients that do not negotiate
 * block sizes (NBD_OPT_EXPORT_NAME, the kernel's nbd.ko) send what they
 * like, and other servers take 64 MiB. The caps on bytes in flight are at
 * least NP_MAX_REQUEST; a connection starts a request while it holds less
 * than its cap (over_budget in conn.c), so one larger than what is left,
 * or than the cap, still runs, and a connection holds at most its cap plus
 * one request. */
#define NP_MAX_REQUEST         NBD_MAX_PORTABLE_REQUEST
#define NP_MAX_REQUEST_DEFAULT (64U << 20)
#define NP_MAX_REQUEST_LIMIT   (256U << 20)
#define NP_MAX_EXTENTS         1024
/* Bytes a connection may hold during the handshake (np_req_cap). */
#define NP_HS_MAX_PENDING (1024 * 1024)

struct np_req {
	struct np_io io;
	struct np_job job; /* on the pool: run the engine, complete on the loop */
	void (*blocking)(void *h, struct np_io *io); /* an engine's, by run_blocking */
	struct np_conn *conn;
	struct np_req *next;
	uint64_t cookie;
	uint16_t cmd;            /* NBD_CMD_* as sent (io.op is the engine's) */
	uint16_t cmd_flags;      /* NBD_CMD_FLAG_* as sent (DF, REQ_ONE: the reply's) */
	uint64_t t0;             /* when it was parsed, for latency */
	uint32_t error;          /* NBD error decided before any engine ran */
	uint64_t charge;         /* bytes counted against the in-flight cap */
	bool wire;               /* bytes to send as they are (not to encrypt) */
	int sf_fd;               /* READ sent with sendfile: from this file, */
	uint64_t sf_off, sf_len; /* this range, after the iovecs; 0: none */
	bool buf_mapped;         /* READ: io.buf is the engine's memory (map_read) */
	bool zero_scanned;       /* zero_mask is known */
	uint64_t zero_mask;      /* READ: which granules are all zero (conn.c) */
	struct iovec iov[NP_REPLY_MAX_IOV];
	unsigned n_iov, iov_done;
	void *extra; /* heap payload to free with the reply (extents, text) */
	/* Last: req_new clears everything before it. */
	uint8_t hdr[NP_REPLY_HDR_MAX];
};

/* A connection's life, in this order; conn.c asserts every change.
 * HANDSHAKE may go to TLS_HANDSHAKE and back (STARTTLS) and on to
 * TRANSMISSION; any state before ENDING may end or close; an ending one may
 * still close. */
enum np_conn_state {
	NP_CONN_HANDSHAKE,     /* options */
	NP_CONN_TLS_HANDSHAKE, /* STARTTLS accepted, TLS handshake under way */
	NP_CONN_TRANSMISSION,  /* requests */
	NP_CONN_DRAINING,      /* the server's end: the socket is no longer read,
				* requests already received are still answered */
	NP_CONN_ENDING,        /* nothing more is parsed; closes once the replies
				* it holds are out (DISC, drained) */
	NP_CONN_CLOSING,       /* replies are dropped; closes once no engine or
				* pool holds a request of it */
	NP_CONN_CLOSED,        /* its handles are closing; freed in on_close */
};

struct np_conn {
	uv_tcp_t tcp; /* first: handle callbacks recover the conn from it */
	uv_timer_t timer;
	struct np_loop *loop;
	struct np_conn *prev, *next; /* in loop->conns */
	struct np_conn *dirty_next;
	bool dirty;
	uint64_t id;
	char peer[64];
	struct sockaddr_storage peer_sa;

	enum np_conn_state state; /* changed only by conn.c's set_state */
	struct np_hs hs;
	struct np_hs_view hs_view;  /* the exports the handshake sees (export.c) */
	struct np_export *export;   /* held while in transmission */
	struct np_loop_export *lex; /* this loop's state for it */
	bool structured, extended, meta_base_allocation;
	bool sendfile; /* large reads may go by sendfile (cfg and where the peer is) */

	uint8_t *in;
	size_t in_len;
	struct np_req *payload_req; /* WRITE whose payload is still arriving */
	uint64_t payload_got;
	uint64_t skip;           /* payload bytes to discard (refused WRITE) */
	struct np_req *skip_req; /* its reply, sent once the payload is gone */

	uint64_t n_requests, n_bytes, n_errors;
	uint64_t turn;      /* the loop turn turn_reqs counts for */
	unsigned turn_reqs; /* requests parsed in that turn */
	uint64_t inflight_bytes;
	unsigned engine_busy;             /* requests an engine or the pool still holds */
	struct np_fairq_owner pool_queue; /* its requests waiting for a worker;
					   * under pool.lock */
	/* Flow control, apart from the state: whether libuv reads the
	 * socket, and whether a budget stopped the parsing. */
	bool reading, paused;

	void *tls;       /* gnutls_session_t once STARTTLS was accepted */
	bool tls_up;     /* its handshake is done */
	uint8_t *tls_in; /* ciphertext received, not yet decrypted */
	size_t tls_in_len, tls_in_pos;
	struct np_buf tls_out; /* ciphertext produced, not yet queued */

	struct np_req *out_head, *out_tail; /* replies not yet written */
	struct np_req *writing;             /* replies handed to uv_write */
	uv_write_t write_req;
	bool write_busy;
	struct np_wpoll *wpoll; /* waits for a full socket to drain; made on first need */
	/* conn.c's: libuv finished a write, or the socket drained, or failed
	 * (why); sendq.c calls it from libuv's callbacks. */
	void (*written)(struct np_conn *c, const char *why);
};

void np_conn_accept(struct np_loop *l, const struct np_accepted *a);
/* Puts c on its loop's list of connections with replies to write. */
static inline void np_conn_mark_dirty(struct np_conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = c->loop->dirty;
		c->loop->dirty = c;
	}
}

/* ---- request.c: parse, validate, dispatch and batch ---- */
enum { NP_PARSE_MORE, NP_PARSE_DISC, NP_PARSE_CLOSE };
/* Handles every complete request in c's input buffer, or until a budget
 * pauses the connection (c->paused). Returns NP_PARSE_MORE, NP_PARSE_DISC
 * (the client disconnects: end the connection once its replies are out) or
 * NP_PARSE_CLOSE (close it now, for *why). */
int np_request_parse(struct np_conn *c, const char **why);
/* The WRITE payload read straight into its buffer has all arrived. */
void np_request_payload_done(struct np_conn *c);
/* Drops n bytes from the front of the input buffer. */
void np_request_consume(struct np_conn *c, size_t n);
/* Bytes the connection may hold before it stops reading, and whether it
 * holds that many, or the server its total budget (np_req_over_budget). */
uint64_t np_req_cap(const struct np_conn *c);
bool np_req_over_budget(const struct np_conn *c, uint64_t own_cap);
/* Queues a copy of data as a reply: as it is when wire (TLS records, the
 * handshake before TLS), else encrypted first under TLS. Returns 0 or -1. */
int np_req_queue_copy(struct np_conn *c, const void *data, size_t len, bool wire);

/* ---- options.c: the handshake on a connection ---- */
enum { NP_OPT_MORE, NP_OPT_STARTTLS, NP_OPT_END, NP_OPT_CLOSE, NP_OPT_GO };
/* Starts the handshake: the greeting is queued. Returns 0 or -1. */
int np_options_start(struct np_conn *c);
/* Handles the options in c's input buffer and queues their replies.
 * Returns NP_OPT_MORE (wait for more), NP_OPT_STARTTLS (start TLS once
 * the ACK is out), NP_OPT_END (the client ended the handshake),
 * NP_OPT_CLOSE (close, for *why) or NP_OPT_GO (transmission: c->export
 * and the negotiated options are set). */
int np_options_input(struct np_conn *c, const char **why);

/* Where libuv may put what arrives: the rest of a WRITE payload straight
 * into its buffer, else the free end of the input buffer. */
void np_request_recv_space(struct np_conn *c, uint8_t **p, size_t *len);
/* Frees a WRITE whose payload is still arriving, or being skipped. */
void np_request_drop_partial(struct np_conn *c);
/* Frees every request and reply a closed connection still holds. */
void np_request_drop(struct np_conn *c);

/* ---- sendq.c: the write queue ---- */
/* Writes what c's queue holds, as far as the socket takes it. Returns 0,
 * or -1 with *why when the connection must close. */
int np_sendq_flush(struct np_conn *c, const char **why);
/* Closes the poll handle a full socket made, as the connection closes. */
void np_sendq_stop(struct np_conn *c);
/* Under TLS: queues what GnuTLS pushed as one wire reply, and encrypts
 * every queued plaintext reply into it (0 or -1). */
void np_sendq_push_tls(struct np_conn *c);
int np_sendq_encrypt(struct np_conn *c);
/* Why a read from or a write to the client failed. */
const char *np_socket_error(int e);
void np_req_free(struct np_req *r);
/* "ADDR:PORT", "[V6ADDR]:PORT" or "unix:PATH[pid N uid N]", for log lines. */
void np_format_peer(const struct sockaddr *sa, char *out, size_t len);
/* Closes an accepted socket that never became a connection. */
void np_server_drop_fd(struct np_server *srv, const struct np_accepted *a);
/* The server's end of a connection (a reload that removed its export,
 * shutdown): stops reading the socket, answers every request already
 * received, buffered ones a budget had paused included, then closes. */
void np_conn_drain(struct np_conn *c);
void np_conn_close(struct np_conn *c, const char *why);
/* np_loop_env.run_blocking: runs an engine's blocking call for a request
 * it got from submit on the pool, in the connection's turn. */
void np_req_run_blocking(const struct np_loop_env *env, struct np_io *io,
			 void (*fn)(void *h, struct np_io *io));
/* Completion of an engine request, on the connection's loop thread. */
void np_req_done(struct np_io *io);
/* Writes every connection's pending replies; called at the end of each
 * callback that produced replies, so replies go out in as few writes as
 * possible. */
void np_loop_flush(struct np_loop *l);

/* ---- tls.c ---- */
struct np_tls;
int np_tls_server_init(struct np_server *srv);
void np_tls_server_free(struct np_server *srv);
/* The connection's half: these return what happened and leave acting on
 * it to conn.c. Ciphertext GnuTLS produces collects in c->tls_out, for
 * the caller to queue as it is. */
/* Sets up TLS on a connection whose STARTTLS was just accepted; what the
 * client sent after STARTTLS becomes the first ciphertext. Returns 0 or
 * -1. */
int np_tls_start(struct np_conn *c);
/* Goes on with the TLS handshake: 1 while it needs more from the client,
 * 0 once TLS is up (c->tls_up), -1 on failure with *why. */
int np_tls_step(struct np_conn *c, const char **why);
/* Where libuv may put received ciphertext, and that n bytes arrived. */
void np_tls_recv_space(struct np_conn *c, uint8_t **p, size_t *len);
void np_tls_received(struct np_conn *c, size_t n);
/* Decrypts one record into the input buffer: 1 when it did, 0 when GnuTLS
 * needs more ciphertext or the buffer is full, -1 when the session ended
 * (*why: NULL for a clean close). */
int np_tls_read(struct np_conn *c, const char **why);
/* Encrypts len bytes into c->tls_out. Returns 0 or -EIO. */
int np_tls_encrypt(struct np_conn *c, const void *data, size_t len);
void np_tls_conn_free(struct np_conn *c);

#endif
