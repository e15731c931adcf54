/* `nbdplex stats`: asks a running server's control socket for its
 * statistics. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/stats.h"

/* nbdplex stats --control PATH: prints the server's statistics. */
int np_cmd_stats(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = NULL;
	char buf[65536];
	ssize_t n;
	int fd;

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
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "nbdplex stats: %s: path too long\n", path);
		return 2;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, "stats\n", 6) != 6) {
		fprintf(stderr, "nbdplex stats: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return n < 0 ? 1 : 0;
}
