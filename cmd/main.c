/* nbdplex: one binary, one subcommand per job.
 *
 * main() lives here, above both the server core (engine/, library npcore)
 * and the tools (tools/, library nptools), because it dispatches to both
 * and belongs to neither; the unit tests link those libraries and so never
 * meet a second main(). */
#include <stdio.h>
#include <string.h>

#include "engine/config.h"
#include "engine/server.h"
#include "storage/registry.h"
#include "tools/stats.h"
#ifdef NP_HAVE_ATTACH
#include "tools/attach.h"
#endif

#ifndef NP_VERSION
#define NP_VERSION "0.1"
#endif

static int np_cmd_serve(int argc, char **argv)
{
	struct np_config cfg;
	int r = np_config_from_args(&cfg, argc, argv);

	if (r == 0)
		r = np_serve(&cfg);
	else if (r < 0)
		r = 0; /* --help */
	np_config_free(&cfg);
	return r;
}

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
    {"serve", np_cmd_serve, "serve exports over NBD"},
    {"stats", np_cmd_stats, "print a running server's statistics"},
    {"qos", np_cmd_qos, "show or change a running server's limits"},
#ifdef NP_HAVE_ATTACH
    {"attach", np_cmd_attach, "attach an export as /dev/nbdplexN through nbdplex.ko"},
    {"detach", np_cmd_detach, "detach a device made by attach"},
#endif
};

static void usage(FILE *f)
{
	fprintf(f, "usage: nbdplex COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	for (const struct np_engine_cmd *c = np_engine_cmds; c->name; c++)
		fprintf(f, "  %-8s %s\n", c->name, c->help);
	fprintf(f, "\n'nbdplex COMMAND --help' describes each.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("nbdplex %s\n", NP_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	const struct np_engine_cmd *ec = np_engine_cmd_find(argv[1]);

	if (ec)
		return ec->fn(argc - 1, argv + 1);
	fprintf(stderr, "nbdplex: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
