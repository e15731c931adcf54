/* config.c: the command line and INI files. */
#ifndef NP_ENGINE_CONFIG_H
#define NP_ENGINE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/access.h"
#include "net/handshake.h"
#include "net/proto.h"

/* Quality of service (qos.c): token buckets of requests and of bytes per
 * second, for every request, reads (READ) or writes (WRITE, WRITE_ZEROES,
 * TRIM). A rate of 0 is no limit. Bytes are those of READ and WRITE. */
enum { NP_QOS_ALL, NP_QOS_READ, NP_QOS_WRITE, NP_QOS_CLASSES };
#define NP_QOS_BURST_MS_DEFAULT 1000
#define NP_QOS_BURST_MS_MAX     60000
struct np_qos_limits {
	uint64_t iops[NP_QOS_CLASSES];
	uint64_t bps[NP_QOS_CLASSES];
	unsigned burst_ms; /* the buckets hold this long of their rate */
};

struct np_export_cfg {
	char *name;
	char *spec; /* ENGINE:SPEC */
	char *description;
	bool readonly;
	bool hidden;         /* left out of NBD_OPT_LIST */
	bool tls_only;       /* refused to clients without TLS */
	struct np_acl allow; /* who may use it (empty: everyone allowed in) */
	struct np_qos_limits qos;
};

/* A [client NAME] section: the connections it names share its limits. */
struct np_client_cfg {
	char *name;
	struct np_acl address; /* TCP peers it names (empty: none) */
	char **identities;     /* TLS identities: PSK user names or certificate DNs */
	size_t n_identities;
	struct np_qos_limits qos;
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

/* A READ or WRITE may be of max_request bytes: 64 MiB unless set, from the
 * 32 MiB every client must take to 256 MiB. Clients that do not negotiate
 * block sizes (NBD_OPT_EXPORT_NAME, the kernel's nbd.ko) send what they
 * like, and other servers take 64 MiB. The caps on bytes in flight are at
 * least NP_MAX_REQUEST; a connection starts a request while it holds less
 * than its cap (np_req_over_budget, request.c), so one larger than what is left,
 * or than the cap, still runs, and a connection holds at most its cap plus
 * one request. */
#define NP_MAX_REQUEST         NBD_MAX_PORTABLE_REQUEST
#define NP_MAX_REQUEST_DEFAULT (64U << 20)
#define NP_MAX_REQUEST_LIMIT   (256U << 20)

struct np_config {
	char **listen; /* HOST:PORT or unix:PATH */
	size_t n_listen;
	unsigned socket_mode; /* of the sockets that listen = unix:PATH makes */
	struct np_export_cfg *exports;
	size_t n_exports;
	struct np_client_cfg *clients;
	size_t n_clients;
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
	char *takeover; /* the control socket of a server to take over from */
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
/* Sets one limit key (iops-limit, read-bps-limit, burst-seconds, ...) from
 * its text. Returns 0, -EINVAL for a bad value or -ENOENT for another key. */
int np_qos_limit_set(struct np_qos_limits *l, const char *key, const char *v);

#endif
