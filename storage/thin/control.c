/* Thin pools: the control socket POOLDIR/control.sock.
 *
 * While a server has a pool open, RocksDB's lock keeps `nbdplex volume` from
 * opening it, so the process that has it open answers catalog commands on
 * an NP_CTL_STATUS socket (util/ctl.h): the words of the command, then the
 * command's output and a last line "OK" or "ERR <errno> <message>".
 *
 * The socket is mode 0600: whoever may change the catalog may also open
 * the pool directly. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/thin/pool.h"
#include "util/ctl.h"

#define CTL_MAX_LINE 4096

static int verb_ping(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return 0;
}

static int verb_admin(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin(ctx, argc, argv, out, err);
}

static const struct np_ctl_verb verbs[] = {
    {"ping", 0, verb_ping, "ping"},   {"list", -1, verb_admin, NULL},
    {"check", -1, verb_admin, NULL},  {"create", -1, verb_admin, NULL},
    {"resize", -1, verb_admin, NULL}, {"snapshot", -1, verb_admin, NULL},
    {"clone", -1, verb_admin, NULL},  {"delete", -1, verb_admin, NULL},
};

static void sock_path(const char *dir, char *path, size_t size)
{
	snprintf(path, size, "%s/control.sock", dir);
}

int thin_control_start(struct thin_pool *p, char **err)
{
	char path[PATH_MAX + 16];
	struct np_ctl_config cfg = {
	    .path = path,
	    .mode = 0600,
	    .backlog = 8,
	    .max_line = CTL_MAX_LINE,
	    .framing = NP_CTL_STATUS,
	    .verbs = verbs,
	    .nverbs = sizeof(verbs) / sizeof(verbs[0]),
	    .ctx = p,
	};

	sock_path(p->dir, path, sizeof(path));
	return np_ctl_listen(&cfg, &p->ctl, err);
}

void thin_control_stop(struct thin_pool *p)
{
	np_ctl_close(p->ctl);
	p->ctl = NULL;
}

int thin_control_call(const char *dir, int argc, char **argv, FILE *out, char **err)
{
	char path[PATH_MAX + 16];

	sock_path(dir, path, sizeof(path));
	return np_ctl_call(path, NP_CTL_STATUS, argc, argv, np_ctl_out_file, out, err);
}
