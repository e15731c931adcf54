/* access.c: allow lists, connection limits and peer names. */
#ifndef NP_ENGINE_ACCESS_H
#define NP_ENGINE_ACCESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

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

/* A socket accepted by the listener, on its way to a loop. */
struct np_accepted {
	int fd;
	struct sockaddr_storage peer;
};

/* "ADDR:PORT", "[V6ADDR]:PORT" or "unix:PATH[pid N uid N]", for log lines. */
void np_format_peer(const struct sockaddr *sa, char *out, size_t len);
struct np_server;
/* Closes an accepted socket that never became a connection. */
void np_server_drop_fd(struct np_server *srv, const struct np_accepted *a);

#endif
