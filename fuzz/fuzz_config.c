/* libFuzzer target: the INI configuration parser (engine/config.c).
 *
 * The input is written to a memfd and loaded with np_config_load_ini, as
 * `serve -c FILE` does, on top of a configuration that already holds an
 * export from the command line. The load must succeed (0) or refuse the
 * file (2); what it accepted must hold exports with distinct, valid names
 * and an ENGINE:SPEC each, settings within their ranges, and allow lists
 * whose every entry admits its own address; np_config_free must release
 * everything (LeakSanitizer checks). */
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/config.h"
#include "fuzz/fuzz.h"

static int fd = -1;
static char path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = memfd_create("fuzz.ini", 0);
	REQUIRE(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	devnull = fopen("/dev/null", "w");
	REQUIRE(devnull);
	return 0;
}

static void check_acl(const struct np_acl *acl)
{
	for (size_t i = 0; i < acl->n; i++) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6};

		REQUIRE(acl->v[i].prefix <= 128);
		memcpy(&sa.sin6_addr, acl->v[i].addr, 16);
		REQUIRE(np_acl_allows(acl, (const struct sockaddr *)&sa));
	}
}

static void check_config(const struct np_config *cfg)
{
	REQUIRE(cfg->n_exports >= 1 && !strcmp(cfg->exports[0].name, "cli"));
	for (size_t i = 0; i < cfg->n_exports; i++) {
		const struct np_export_cfg *e = &cfg->exports[i];

		REQUIRE(e->name && *e->name && strlen(e->name) <= NBD_MAX_STRING);
		REQUIRE(e->spec && strchr(e->spec, ':'));
		for (size_t j = 0; j < i; j++)
			REQUIRE(strcmp(cfg->exports[j].name, e->name) != 0);
		check_acl(&e->allow);
	}
	check_acl(&cfg->allow);
	for (size_t i = 0; i < cfg->n_listen; i++)
		REQUIRE(cfg->listen[i]);
	REQUIRE(cfg->threads <= 1024 && cfg->loops <= 256);
	REQUIRE(cfg->handshake_timeout >= 1 && cfg->handshake_timeout <= 3600);
	REQUIRE(cfg->max_inflight >= NP_MAX_REQUEST);
	REQUIRE(cfg->max_request >= NP_MAX_REQUEST && cfg->max_request <= NP_MAX_REQUEST_LIMIT);
	REQUIRE(cfg->socket_mode <= 0777);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[] = {"serve", "-e", "cli=mem:1M", NULL};
	struct np_config cfg;
	FILE *saved = stderr;
	int r;

	REQUIRE(ftruncate(fd, 0) == 0);
	REQUIRE(pwrite(fd, data, size, 0) == (ssize_t)size);
	/* The command line's defaults, then the file. */
	REQUIRE(np_config_from_args(&cfg, 3, argv) == 0);
	/* Refusals print a line naming the problem; not for every input. */
	stderr = devnull;
	r = np_config_load_ini(&cfg, path);
	stderr = saved;
	REQUIRE(r == 0 || r == 2);
	if (r == 0)
		check_config(&cfg);
	np_config_free(&cfg);
	REQUIRE(cfg.n_exports == 0 && !cfg.exports && !cfg.listen && !cfg.pidfile);
	return 0;
}
