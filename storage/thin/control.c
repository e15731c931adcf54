/* Thin pools: the control socket POOLDIR/control.sock.
 *
 * While a server has a pool open, RocksDB's lock keeps `nbdplex volume` from
 * opening it, so the process that has it open answers catalog commands on
 * an NP_CTL_STATUS socket (util/ctl.h): the words of the command, then the
 * command's output and a last line "OK" or "ERR <errno> <message>". The
 * verbs turn the words into calls of the typed API (thin_admin.h).
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
#include "util/size.h"

#define CTL_MAX_LINE 4096

static int verb_ping(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return 0;
}

static int parse_size(const char *s, uint64_t *out, char **err)
{
	if (np_parse_size(s, out) < 0 || *out == 0 || *out > THIN_MAX_SIZE)
		return np_errmsg(err, -EINVAL, "size %s: expected 1 byte to 4E, with K/M/G/T", s);
	return 0;
}

static int verb_create(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	uint64_t size;
	int rc = parse_size(argv[2], &size, err);

	return rc < 0 ? rc : thin_admin_create(ctx, argv[1], size, err);
}

static int verb_resize(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	uint64_t size;
	int rc = parse_size(argv[2], &size, err);

	return rc < 0 ? rc : thin_admin_resize(ctx, argv[1], size, err);
}

static int verb_snapshot(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin_snapshot(ctx, argv[1], argv[2], err);
}

static int verb_clone(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin_clone(ctx, argv[1], argv[2], err);
}

static int verb_delete(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin_delete(ctx, argv[1], err);
}

static int verb_check(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin_check(ctx, out, err);
}

static int verb_list(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	return thin_admin_print_list(ctx, out, err);
}

/* The one place where the words of a request become typed calls. */
static const struct np_ctl_verb verbs[] = {
    {"ping", 0, verb_ping, "ping"},
    {"list", 0, verb_list, "list"},
    {"check", 0, verb_check, "check"},
    {"create", 2, verb_create, "create VOLUME SIZE"},
    {"resize", 2, verb_resize, "resize VOLUME SIZE"},
    {"snapshot", 2, verb_snapshot, "snapshot VOLUME SNAPSHOT"},
    {"clone", 2, verb_clone, "clone SNAPSHOT NEWVOLUME"},
    {"delete", 1, verb_delete, "delete NAME"},
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
