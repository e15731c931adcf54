/* `nbdplex stats` and `nbdplex qos`: ask a running server's control socket
 * for its statistics, or show and change its limits. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/stats.h"
#include "util/ctl.h"

/* Takes --control PATH (or --control=PATH) at argv[*i]; true if it was. */
static bool control_arg(int argc, char **argv, int *i, const char **path)
{
	if (!strcmp(argv[*i], "--control") && *i + 1 < argc) {
		*path = argv[++*i];
		return true;
	}
	if (!strncmp(argv[*i], "--control=", 10)) {
		*path = argv[*i] + 10;
		return true;
	}
	return false;
}

/* The answer, gathered so that an error can go to stderr. */
struct answer {
	char *data;
	size_t len;
};

static void gather(void *arg, const char *data, size_t len)
{
	struct answer *a = arg;
	char *p = realloc(a->data, a->len + len + 1);

	if (!p)
		return;
	memcpy(p + a->len, data, len);
	a->len += len;
	p[a->len] = '\0';
	a->data = p;
}

/* Sends words to the control socket at path; prints the answer to stdout,
 * or a server's "error: ..." to stderr. Returns the exit status. */
static int call(const char *cmd, const char *path, int n, char **words)
{
	struct answer a = {0};
	int rc = np_ctl_call(path, NP_CTL_RAW, n, words, gather, &a, NULL);

	if (rc < 0) {
		fprintf(stderr, "nbdplex %s: %s: %s\n", cmd, path, strerror(-rc));
		free(a.data);
		return 1;
	}
	if (a.len >= 7 && !strncmp(a.data, "error: ", 7)) {
		fprintf(stderr, "nbdplex %s: %s", cmd, a.data + 7);
		rc = 1;
	} else if (a.len) {
		fwrite(a.data, 1, a.len, stdout);
	}
	free(a.data);
	return rc ? 1 : 0;
}

/* nbdplex stats --control PATH: prints the server's statistics. */
int np_cmd_stats(int argc, char **argv)
{
	char *words[] = {"stats"};
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf(
			    "usage: nbdplex stats --control SOCKET\n\n"
			    "Prints the statistics of the server started with --control SOCKET,\n"
			    "in Prometheus' text format (the same as its --metrics endpoint).\n");
			return 0;
		}
		if (!control_arg(argc, argv, &i, &path)) {
			fprintf(stderr, "nbdplex stats: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "nbdplex stats: give the server's --control SOCKET\n");
		return 2;
	}
	return call("stats", path, 1, words);
}

static const char qos_usage[] =
    "usage: nbdplex qos show --control SOCKET\n"
    "       nbdplex qos set --control SOCKET [--client] NAME KEY=VALUE...\n\n"
    "Shows the limits of the server started with --control SOCKET, per export\n"
    "and per [client] section, with the requests they hold back; or changes\n"
    "those of export NAME (or of client NAME) at once, for the connections\n"
    "already open too, until the next SIGHUP rereads the configuration.\n"
    "KEY is iops-limit, bps-limit, read-iops-limit, write-iops-limit,\n"
    "read-bps-limit, write-bps-limit (0: no limit) or burst-seconds; bytes take\n"
    "K, M, G suffixes. Every key is checked before any applies.\n";

/* nbdplex qos show|set --control PATH ... */
int np_cmd_qos(int argc, char **argv)
{
	char *words[NP_CTL_MAX_ARGS] = {"qos"};
	char joined[1024] = "";
	const char *path = NULL, *kind = "export";
	int n = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(qos_usage, stdout);
			return 0;
		}
		if (control_arg(argc, argv, &i, &path))
			continue;
		if (!strcmp(argv[i], "--client")) {
			kind = "client";
		} else if (n == 1 && (!strcmp(argv[i], "show") || !strcmp(argv[i], "set"))) {
			words[n++] = argv[i];
			if (argv[i][1] == 'e')
				words[n++] = (char *)kind;
		} else if (n == 3) {
			words[n++] = argv[i]; /* NAME */
		} else if (n == 4 && strchr(argv[i], '=')) {
			/* KEY=VALUE words travel as one, comma-joined. */
			size_t len = strlen(joined);

			if (len + strlen(argv[i]) + 2 > sizeof(joined)) {
				fprintf(stderr, "nbdplex qos: too many limits at once\n");
				return 2;
			}
			snprintf(joined + len, sizeof(joined) - len, "%s%s", len ? "," : "",
				 argv[i]);
		} else {
			fprintf(stderr, "nbdplex qos: unexpected argument '%s'\n%s", argv[i],
				qos_usage);
			return 2;
		}
	}
	if (n > 2)
		words[2] = (char *)kind; /* --client may come after set */
	if (!path || n == 1 || (n > 2 && (n != 4 || !*joined))) {
		fprintf(stderr, "%s", qos_usage);
		return 2;
	}
	if (*joined)
		words[n++] = joined;
	return call("qos", path, n, words);
}
