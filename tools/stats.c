/* `nbdplex stats`: asks a running server's control socket for its
 * statistics. */
#include <stdio.h>
#include <string.h>

#include "tools/stats.h"
#include "util/ctl.h"

/* nbdplex stats --control PATH: prints the server's statistics. */
int np_cmd_stats(int argc, char **argv)
{
	char *words[] = {"stats"};
	const char *path = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf(
			    "usage: nbdplex stats --control SOCKET\n\n"
			    "Prints the statistics of the server started with --control SOCKET,\n"
			    "in Prometheus' text format (the same as its --metrics endpoint).\n");
			return 0;
		}
		if (!strcmp(argv[i], "--control") && i + 1 < argc)
			path = argv[++i];
		else if (!strncmp(argv[i], "--control=", 10))
			path = argv[i] + 10;
		else {
			fprintf(stderr, "nbdplex stats: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "nbdplex stats: give the server's --control SOCKET\n");
		return 2;
	}
	rc = np_ctl_call(path, NP_CTL_RAW, 1, words, np_ctl_out_file, stdout, NULL);
	if (rc < 0) {
		fprintf(stderr, "nbdplex stats: %s: %s\n", path, strerror(-rc));
		return 1;
	}
	return 0;
}
