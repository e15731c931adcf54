/* Configuration: serve's command line and INI files with the same settings.
 *
 * [server]                 [export NAME]
 * listen = HOST:PORT       spec = ENGINE:SPEC        (as in -e NAME=ENGINE:SPEC)
 * listen = unix:PATH
 * socket-mode = OCTAL
 * threads = N              description = TEXT
 * read-only = yes|no       read-only = yes|no
 * pidfile = FILE
 * handshake-timeout = SECONDS
 * max-inflight = SIZE     hidden = yes|no          (left out of the export list)
 * allow = ADDR[/BITS] ...  allow = ADDR[/BITS] ...  (who may connect / use it)
 * max-connections = N
 * max-connections-per-client = N                     tls-only = yes|no
 * tls = off|on|require
 * tls-certificates = DIR
 * tls-psk = FILE
 * tls-verify-peer = yes|no
 * metrics = HOST:PORT
 * control = SOCKET
 * log-level = error|warn|info|debug
 * max-inflight-total = SIZE
 * max-request = SIZE
 * sendfile = auto|on|off
 * coalesce-us = MICROSECONDS
 *
 * Limits (qos.c), in [export NAME] and in [client NAME]:
 *   iops-limit, read-iops-limit, write-iops-limit = REQUESTS per second
 *   bps-limit, read-bps-limit, write-bps-limit = SIZE per second
 *   burst-seconds = SECONDS (what a bucket holds; default 1)
 * [client NAME] also names whom it covers; its connections share its limits:
 *   address = ADDR[/BITS] ...    tls-identity = PSK-USER or certificate DN
 *
 * Exports given with -e come first, then those of config files in order; the
 * first export is also the default (empty) name. */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/access.h"
#include "engine/config.h"
#include "engine/log.h"
#include "storage/registry.h"
#include "util/size.h"

/* serve --help, up to the list of the engines built in. */
static const char serve_usage[] =
	"usage: nbdplex serve [-l HOST:PORT|unix:PATH]... [-e NAME=ENGINE:SPEC]... [-c FILE]\n"
	"                     [-r] [--socket-mode MODE] [--pidfile FILE] [--threads N] [--loops N]\n"
	"                     [--handshake-timeout SECONDS] [--max-inflight SIZE]\n"
	"                     [--max-inflight-total SIZE] [--max-request SIZE]\n"
	"                     [--sendfile auto|on|off]\n"
	"                     [--coalesce-us N]\n"
	"                     [--allow ADDR[/BITS]]... [--max-connections N]\n"
	"                     [--max-connections-per-client N] [--tls off|on|require]\n"
	"                     [--tls-certificates DIR] [--tls-psk FILE] [--tls-verify-peer]\n"
	"                     [--metrics HOST:PORT] [--control SOCKET] [--log-level LEVEL] [-v]\n"
	"                     [--takeover SOCKET]\n"
	"\n"
	"Serves block devices over the NBD protocol, in the foreground.\n"
	"\n"
	"  -l, --listen HOST:PORT   listen here; repeatable, one per NIC path\n"
	"                           (default 0.0.0.0:10809)\n"
	"  -l, --listen unix:PATH   listen on a Unix socket made at PATH (a stale one is\n"
	"                           replaced, a live one refused); removed at exit\n"
	"      --socket-mode MODE   of those sockets, in octal (default 0660)\n"
	"  -e, --export NAME=ENGINE:SPEC\n";

/* The rest of serve_usage, after the engines' lines (np_storage_usage). */
static const char serve_usage_tail[] =
	"                           repeatable; the first export is also the default name\n"
	"  -c, --config FILE        INI file with [server], [export NAME] and [client NAME]\n"
	"                           sections (limits: nbdplex.conf(5))\n"
	"  -r, --read-only          every export read-only\n"
	"      --pidfile FILE       written once every listener is ready\n"
	"      --threads N          worker threads for blocking I/O (default 2 per core, min 4)\n"
	"      --loops N            event loops (default one per core)\n"
	"      --handshake-timeout S   close clients that do not finish the handshake (30)\n"
	"      --max-inflight SIZE  bytes of requests in flight per connection (64M)\n"
	"      --max-inflight-total SIZE   over all connections (256M)\n"
	"      --max-request SIZE   largest READ or WRITE, advertised to clients\n"
	"                           (default 64M; 32M to 256M)\n"
	"      --sendfile auto|on|off   large reads from tmpfs files by sendfile(2);\n"
	"                           auto: only to clients on another host (default);\n"
	"                           else from the server's mapping of the file\n"
	"      --coalesce-us N      while a client keeps several requests in flight, a loop\n"
	"                           that has answered requests waits this long before it\n"
	"                           polls its sockets again, to take the requests that\n"
	"                           arrive meanwhile together\n"
	"                           (default 20; 0: never, at most 1000)\n"
	"      --allow ADDR[/BITS]  accept clients only from these addresses and ranges;\n"
	"                           repeatable (per export: allow = in its [export] section);\n"
	"                           TCP clients only: Unix ones are always let in\n"
	"      --max-connections N  in total\n"
	"      --max-connections-per-client N   from one address\n"
	"      --tls off|on|require TLS through STARTTLS: refused, offered, or required\n"
	"                           (on when credentials are given; per export: tls-only = yes)\n"
	"      --tls-certificates DIR   ca-cert.pem, server-cert.pem, server-key.pem\n"
	"      --tls-psk FILE       pre-shared keys in psktool's format (USER:HEXKEY)\n"
	"      --tls-verify-peer    require client certificates signed by ca-cert.pem\n"
	"      --metrics HOST:PORT  serve Prometheus text at http://HOST:PORT/metrics\n"
	"      --control SOCKET     unix socket for 'nbdplex stats --control SOCKET'\n"
	"      --takeover SOCKET    take the listeners and every connection over from the\n"
	"                           server whose --control SOCKET this is, then serve\n"
	"      --log-level LEVEL    error, warn, info (default) or debug; lines go to\n"
	"                           stderr (the journal under systemd), one per event,\n"
	"                           naming the connection and its peer\n"
	"  -v, --verbose            the same as --log-level debug\n"
	"\n"
	"Sizes accept K, M, G, T suffixes. SIGINT or SIGTERM finish the requests in\n"
	"flight, flush every export and exit 0. Started by systemd socket activation\n"
	"(LISTEN_FDS), it serves on the sockets passed, not on the listen addresses.\n";

static void print_usage(FILE *f)
{
	fputs(serve_usage, f);
	np_storage_usage(f, 8);
	fputs(serve_usage_tail, f);
}

static int add_str(char ***arr, size_t *n, const char *s)
{
	char **p = realloc(*arr, (*n + 1) * sizeof(**arr));

	if (!p)
		return -ENOMEM;
	*arr = p;
	p[*n] = strdup(s);
	if (!p[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static struct np_export_cfg *find_export(struct np_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_exports; i++)
		if (strcmp(cfg->exports[i].name, name) == 0)
			return &cfg->exports[i];
	return NULL;
}

static struct np_client_cfg *get_client(struct np_config *cfg, const char *name)
{
	struct np_client_cfg *p;

	for (size_t i = 0; i < cfg->n_clients; i++)
		if (strcmp(cfg->clients[i].name, name) == 0)
			return &cfg->clients[i];
	p = realloc(cfg->clients, (cfg->n_clients + 1) * sizeof(*p));
	if (!p)
		return NULL;
	cfg->clients = p;
	p = &cfg->clients[cfg->n_clients];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	if (!p->name)
		return NULL;
	cfg->n_clients++;
	return p;
}

static struct np_export_cfg *add_export(struct np_config *cfg, const char *name)
{
	struct np_export_cfg *p = realloc(cfg->exports, (cfg->n_exports + 1) * sizeof(*p));

	if (!p)
		return NULL;
	cfg->exports = p;
	p = &cfg->exports[cfg->n_exports];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	if (!p->name)
		return NULL;
	cfg->n_exports++;
	return p;
}

/* Checks a NAME for an export: a string the protocol can carry. */
static bool valid_name(const char *name)
{
	return *name && strlen(name) <= NBD_MAX_STRING;
}

static int parse_export_arg(struct np_config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *name;
	struct np_export_cfg *e;

	if (!eq || eq == arg || !eq[1] || !strchr(eq + 1, ':')) {
		fprintf(stderr, "nbdplex serve: bad export '%s' (want NAME=ENGINE:SPEC)\n", arg);
		return 2;
	}
	name = strndup(arg, (size_t)(eq - arg));
	if (!name)
		return 1;
	if (!valid_name(name) || find_export(cfg, name)) {
		fprintf(stderr, "nbdplex serve: export name '%s' is %s\n", name,
			valid_name(name) ? "given twice" : "invalid");
		free(name);
		return 2;
	}
	e = add_export(cfg, name);
	free(name);
	if (!e || !(e->spec = strdup(eq + 1)))
		return 1;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || n < lo || n > hi)
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

/* A rate: a whole number of requests, or a size, per second. */
static int parse_rate(const char *v, bool size, uint64_t *out)
{
	char *end;

	if (*v == '-' || !*v)
		return -EINVAL;
	if (size)
		return np_parse_size(v, out);
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

int np_qos_limit_set(struct np_qos_limits *l, const char *key, const char *v)
{
	static const char *const prefix[NP_QOS_CLASSES] = {"", "read-", "write-"};

	if (!strcmp(key, "burst-seconds")) {
		char *end;
		double s;

		errno = 0;
		s = strtod(v, &end);
		if (errno || end == v || *end || !(s >= 0.001 && s <= NP_QOS_BURST_MS_MAX / 1000))
			return -EINVAL;
		l->burst_ms = (unsigned)(s * 1000 + 0.5);
		return 0;
	}
	for (int c = 0; c < NP_QOS_CLASSES; c++) {
		size_t n = strlen(prefix[c]);

		if (strncmp(key, prefix[c], n))
			continue;
		if (!strcmp(key + n, "iops-limit"))
			return parse_rate(v, false, &l->iops[c]);
		if (!strcmp(key + n, "bps-limit"))
			return parse_rate(v, true, &l->bps[c]);
	}
	return -ENOENT;
}

/* Settings shared by the command line and the [server] section. Returns
 * 0, -EINVAL for a bad value, or -ENOENT for an unknown key. */
static int server_setting(struct np_config *cfg, const char *key, const char *v)
{
	if (!strcmp(key, "listen")) {
		/* A path that cannot be bound is refused now, with the rest of
		 * the configuration's mistakes, rather than at start. */
		if (!strncmp(v, "unix:", 5) && (!v[5] || strlen(v + 5) >= NP_UNIX_PATH_MAX))
			return -EINVAL;
		return add_str(&cfg->listen, &cfg->n_listen, v);
	}
	if (!strcmp(key, "socket-mode")) {
		char *end;
		unsigned long m;

		errno = 0;
		m = strtoul(v, &end, 8);
		if (errno || end == v || *end || *v == '-' || m > 0777)
			return -EINVAL;
		cfg->socket_mode = (unsigned)m;
		return 0;
	}
	if (!strcmp(key, "threads"))
		return parse_uint(v, 1, 1024, &cfg->threads);
	if (!strcmp(key, "coalesce-us"))
		return parse_uint(v, 0, NP_COALESCE_MAX_US, &cfg->coalesce_us);
	if (!strcmp(key, "loops"))
		return parse_uint(v, 1, 256, &cfg->loops);
	if (!strcmp(key, "handshake-timeout"))
		return parse_uint(v, 1, 3600, &cfg->handshake_timeout);
	if (!strcmp(key, "read-only"))
		return parse_bool(v, &cfg->readonly);
	if (!strcmp(key, "max-inflight") || !strcmp(key, "max-inflight-total")) {
		uint64_t *dst = key[12] ? &cfg->max_inflight_total : &cfg->max_inflight;
		int r = np_parse_size(v, dst);

		return r < 0 || *dst < NP_MAX_REQUEST ? -EINVAL : 0;
	}
	if (!strcmp(key, "max-request")) {
		uint64_t v64;
		int r = np_parse_size(v, &v64);

		if (r < 0 || v64 < NP_MAX_REQUEST || v64 > NP_MAX_REQUEST_LIMIT)
			return -EINVAL;
		cfg->max_request = (uint32_t)v64;
		return 0;
	}
	if (!strcmp(key, "allow"))
		return np_acl_add(&cfg->allow, v);
	if (!strcmp(key, "max-connections"))
		return parse_uint(v, 1, 1000000, &cfg->max_connections);
	if (!strcmp(key, "max-connections-per-client"))
		return parse_uint(v, 1, 1000000, &cfg->max_connections_per_client);
	if (!strcmp(key, "tls")) {
		cfg->tls_mode_set = true;
		if (!strcmp(v, "off"))
			cfg->tls_mode = NP_TLS_OFF;
		else if (!strcmp(v, "on"))
			cfg->tls_mode = NP_TLS_ON;
		else if (!strcmp(v, "require"))
			cfg->tls_mode = NP_TLS_REQUIRE;
		else
			return -EINVAL;
		return 0;
	}
	if (!strcmp(key, "sendfile")) {
		static const char *const modes[] = {"auto", "on", "off"};

		for (int i = 0; i < 3; i++) {
			if (!strcmp(v, modes[i])) {
				cfg->sendfile = (enum np_sendfile_mode)i;
				return 0;
			}
		}
		return -EINVAL;
	}
	if (!strcmp(key, "tls-verify-peer"))
		return parse_bool(v, &cfg->tls_verify_peer);
	if (!strcmp(key, "tls-certificates") || !strcmp(key, "tls-psk")) {
		char **dst = key[4] == 'c' ? &cfg->tls_certificates : &cfg->tls_psk;

		free(*dst);
		*dst = strdup(v);
		return *dst ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "log-level")) {
		static const char *const names[] = {"error", "warn", "info", "debug"};

		for (int i = 0; i < 4; i++) {
			if (!strcmp(v, names[i])) {
				np_log_level = (enum np_log_level)i;
				return 0;
			}
		}
		return -EINVAL;
	}
	if (!strcmp(key, "metrics") || !strcmp(key, "control")) {
		char **dst = key[0] == 'm' ? &cfg->metrics : &cfg->control;

		free(*dst);
		*dst = strdup(v);
		return *dst ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "pidfile")) {
		free(cfg->pidfile);
		cfg->pidfile = strdup(v);
		return cfg->pidfile ? 0 : -ENOMEM;
	}
	return -ENOENT;
}

struct ini_ctx {
	struct np_config *cfg;
	const char *path;
	char err[512];
};

static int on_ini_line(void *user, const char *section, const char *key, const char *value)
{
	struct ini_ctx *ctx = user;
	struct np_config *cfg = ctx->cfg;
	int r = -ENOENT;

	if (!strcmp(section, "server")) {
		r = server_setting(cfg, key, value);
	} else if (!strncmp(section, "export ", 7) && valid_name(section + 7)) {
		struct np_export_cfg *e = find_export(cfg, section + 7);

		if (!e && !(e = add_export(cfg, section + 7)))
			r = -ENOMEM;
		else if (!strcmp(key, "spec") && strchr(value, ':')) {
			free(e->spec);
			r = (e->spec = strdup(value)) ? 0 : -ENOMEM;
		} else if (!strcmp(key, "spec")) {
			r = -EINVAL;
		} else if (!strcmp(key, "description")) {
			free(e->description);
			r = (e->description = strdup(value)) ? 0 : -ENOMEM;
		} else if (!strcmp(key, "read-only")) {
			r = parse_bool(value, &e->readonly);
		} else if (!strcmp(key, "tls-only")) {
			r = parse_bool(value, &e->tls_only);
		} else if (!strcmp(key, "hidden")) {
			r = parse_bool(value, &e->hidden);
		} else if (!strcmp(key, "allow")) {
			r = np_acl_add(&e->allow, value);
		} else {
			r = np_qos_limit_set(&e->qos, key, value);
		}
	} else if (!strncmp(section, "client ", 7) && valid_name(section + 7)) {
		struct np_client_cfg *cl = get_client(cfg, section + 7);

		if (!cl)
			r = -ENOMEM;
		else if (!strcmp(key, "address"))
			r = np_acl_add(&cl->address, value);
		else if (!strcmp(key, "tls-identity"))
			r = *value ? add_str(&cl->identities, &cl->n_identities, value) : -EINVAL;
		else
			r = np_qos_limit_set(&cl->qos, key, value);
	} else {
		snprintf(ctx->err, sizeof(ctx->err), "unknown section [%s]", section);
		return 0;
	}
	if (r == -ENOENT)
		snprintf(ctx->err, sizeof(ctx->err), "unknown key '%s' in [%s]", key, section);
	else if (r < 0)
		snprintf(ctx->err, sizeof(ctx->err), "bad value '%s' for '%s' in [%s]", value, key,
			 section);
	return r == 0;
}

int np_config_load_ini(struct np_config *cfg, const char *path)
{
	struct ini_ctx ctx = {.cfg = cfg, .path = path};
	FILE *f = fopen(path, "r");
	int line;

	if (!f) {
		fprintf(stderr, "nbdplex serve: %s: %s\n", path, strerror(errno));
		return 1;
	}
	line = ini_parse_file(f, on_ini_line, &ctx);
	fclose(f);
	if (line != 0) {
		fprintf(stderr, "nbdplex serve: %s:%d: %s\n", path, line,
			ctx.err[0] ? ctx.err : "syntax error");
		return 2;
	}
	for (size_t i = 0; i < cfg->n_exports; i++) {
		if (!cfg->exports[i].spec) {
			fprintf(stderr, "nbdplex serve: %s: [export %s] has no spec = ENGINE:SPEC\n",
				path, cfg->exports[i].name);
			return 2;
		}
	}
	for (size_t i = 0; i < cfg->n_clients; i++) {
		if (!cfg->clients[i].address.n && !cfg->clients[i].n_identities) {
			fprintf(stderr,
				"nbdplex serve: %s: [client %s] names no address = ADDR[/BITS] "
				"and no tls-identity = NAME\n",
				path, cfg->clients[i].name);
			return 2;
		}
	}
	return 0;
}

int np_config_from_args(struct np_config *cfg, int argc, char **argv)
{
	enum {
		OPT_PIDFILE = 256,
		OPT_THREADS,
		OPT_LOOPS,
		OPT_HS_TIMEOUT,
		OPT_MAX_INFLIGHT,
		OPT_ALLOW,
		OPT_MAX_CONNS,
		OPT_MAX_CONNS_CLIENT,
		OPT_TLS,
		OPT_TLS_CERTS,
		OPT_TLS_PSK,
		OPT_TLS_VERIFY,
		OPT_METRICS,
		OPT_CONTROL,
		OPT_TAKEOVER,
		OPT_SOCKET_MODE,
		OPT_LOG_LEVEL,
		OPT_MAX_INFLIGHT_TOTAL,
		OPT_MAX_REQUEST,
		OPT_SENDFILE,
		OPT_COALESCE,
	};
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"export", required_argument, NULL, 'e'},
		{"config", required_argument, NULL, 'c'},
		{"read-only", no_argument, NULL, 'r'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"pidfile", required_argument, NULL, OPT_PIDFILE},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"loops", required_argument, NULL, OPT_LOOPS},
		{"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
		{"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
		{"allow", required_argument, NULL, OPT_ALLOW},
		{"max-connections", required_argument, NULL, OPT_MAX_CONNS},
		{"max-connections-per-client", required_argument, NULL, OPT_MAX_CONNS_CLIENT},
		{"tls", required_argument, NULL, OPT_TLS},
		{"tls-certificates", required_argument, NULL, OPT_TLS_CERTS},
		{"tls-psk", required_argument, NULL, OPT_TLS_PSK},
		{"tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY},
		{"metrics", required_argument, NULL, OPT_METRICS},
		{"control", required_argument, NULL, OPT_CONTROL},
		{"takeover", required_argument, NULL, OPT_TAKEOVER},
		{"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"max-inflight-total", required_argument, NULL, OPT_MAX_INFLIGHT_TOTAL},
		{"max-request", required_argument, NULL, OPT_MAX_REQUEST},
		{"sendfile", required_argument, NULL, OPT_SENDFILE},
		{"coalesce-us", required_argument, NULL, OPT_COALESCE},
		{NULL, 0, NULL, 0},
	};
	static const char *const keys[] = {
		[OPT_PIDFILE - 256] = "pidfile",
		[OPT_THREADS - 256] = "threads",
		[OPT_LOOPS - 256] = "loops",
		[OPT_HS_TIMEOUT - 256] = "handshake-timeout",
		[OPT_MAX_INFLIGHT - 256] = "max-inflight",
		[OPT_ALLOW - 256] = "allow",
		[OPT_MAX_CONNS - 256] = "max-connections",
		[OPT_MAX_CONNS_CLIENT - 256] = "max-connections-per-client",
		[OPT_TLS - 256] = "tls",
		[OPT_TLS_CERTS - 256] = "tls-certificates",
		[OPT_TLS_PSK - 256] = "tls-psk",
		[OPT_TLS_VERIFY - 256] = "tls-verify-peer",
		[OPT_METRICS - 256] = "metrics",
		[OPT_CONTROL - 256] = "control",
		[OPT_SOCKET_MODE - 256] = "socket-mode",
		[OPT_LOG_LEVEL - 256] = "log-level",
		[OPT_MAX_INFLIGHT_TOTAL - 256] = "max-inflight-total",
		[OPT_MAX_REQUEST - 256] = "max-request",
		[OPT_SENDFILE - 256] = "sendfile",
		[OPT_COALESCE - 256] = "coalesce-us",
	};
	char **configs = NULL;
	size_t n_configs = 0;
	int c, r = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->handshake_timeout = 30;
	cfg->max_inflight = 64ULL << 20;
	cfg->max_inflight_total = 256ULL << 20;
	cfg->max_request = NP_MAX_REQUEST_DEFAULT;
	cfg->shutdown_timeout = 30;
	cfg->coalesce_us = NP_COALESCE_DEFAULT_US;
	cfg->socket_mode = 0660;
	cfg->argc = argc;
	cfg->argv = argv;
	optind = 0; /* glibc: start afresh, also when parsing again on SIGHUP */
	while (r == 0 && (c = getopt_long(argc, argv, "l:e:c:rvh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (server_setting(cfg, "listen", optarg) < 0) {
				fprintf(stderr,
					"nbdplex serve: bad listen address '%s' (want HOST:PORT "
					"or unix:PATH, a path of at most %d bytes)\n",
					optarg, NP_UNIX_PATH_MAX - 1);
				r = 2;
			}
			break;
		case 'e':
			r = parse_export_arg(cfg, optarg);
			break;
		case 'c':
			r = add_str(&configs, &n_configs, optarg) ? 1 : 0;
			break;
		case 'r':
			cfg->readonly = true;
			break;
		case 'v':
			np_log_level = NP_LOG_DEBUG;
			break;
		case 'h':
			print_usage(stdout);
			r = -1;
			break;
		case OPT_PIDFILE:
		case OPT_THREADS:
		case OPT_LOOPS:
		case OPT_HS_TIMEOUT:
		case OPT_MAX_INFLIGHT:
		case OPT_ALLOW:
		case OPT_MAX_CONNS:
		case OPT_MAX_CONNS_CLIENT:
		case OPT_TLS:
		case OPT_TLS_CERTS:
		case OPT_TLS_PSK:
		case OPT_TLS_VERIFY:
		case OPT_METRICS:
		case OPT_CONTROL:
		case OPT_SOCKET_MODE:
		case OPT_LOG_LEVEL:
		case OPT_MAX_INFLIGHT_TOTAL:
		case OPT_MAX_REQUEST:
		case OPT_SENDFILE:
		case OPT_COALESCE:
			if (server_setting(cfg, keys[c - 256], optarg ? optarg : "yes") < 0) {
				fprintf(stderr, "nbdplex serve: bad value '%s' for --%s\n",
					optarg ? optarg : "", keys[c - 256]);
				r = 2;
			}
			break;
		case OPT_TAKEOVER: /* the command line only: it names this start */
			free(cfg->takeover);
			cfg->takeover = strdup(optarg);
			r = cfg->takeover ? 0 : 1;
			break;
		default:
			print_usage(stderr);
			r = 2;
			break;
		}
	}
	if (r == 0 && optind < argc) {
		fprintf(stderr, "nbdplex serve: unexpected argument '%s'\n", argv[optind]);
		r = 2;
	}
	for (size_t i = 0; i < n_configs; i++) {
		if (r == 0)
			r = np_config_load_ini(cfg, configs[i]);
		free(configs[i]);
	}
	free(configs);
	if (r == 0 && cfg->n_exports == 0) {
		fprintf(stderr, "nbdplex serve: no export given (use -e NAME=ENGINE:SPEC)\n");
		r = 2;
	}
	/* Credentials alone turn TLS on (optional for clients). */
	if (r == 0 && !cfg->tls_mode_set && (cfg->tls_certificates || cfg->tls_psk))
		cfg->tls_mode = NP_TLS_ON;
	if (r == 0 && cfg->n_listen == 0)
		r = add_str(&cfg->listen, &cfg->n_listen, "0.0.0.0:10809") ? 1 : 0;
	return r;
}

void np_config_free(struct np_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++)
		free(cfg->listen[i]);
	free(cfg->listen);
	for (size_t i = 0; i < cfg->n_exports; i++) {
		free(cfg->exports[i].name);
		free(cfg->exports[i].spec);
		free(cfg->exports[i].description);
		np_acl_free(&cfg->exports[i].allow);
	}
	for (size_t i = 0; i < cfg->n_clients; i++) {
		struct np_client_cfg *cl = &cfg->clients[i];

		free(cl->name);
		np_acl_free(&cl->address);
		for (size_t k = 0; k < cl->n_identities; k++)
			free(cl->identities[k]);
		free(cl->identities);
	}
	free(cfg->clients);
	np_acl_free(&cfg->allow);
	free(cfg->exports);
	free(cfg->pidfile);
	free(cfg->tls_certificates);
	free(cfg->tls_psk);
	free(cfg->metrics);
	free(cfg->control);
	free(cfg->takeover);
	memset(cfg, 0, sizeof(*cfg));
}
