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

static int verb_diff(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "json") == 0))
		return np_errmsg(err, -EINVAL, "usage: diff FROM TO [json]");
	return thin_admin_print_diff(ctx, argv[1], argv[2], argc == 4, out, err);
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return *s && !*end && !errno && *s != '-' ? 0 : -EINVAL;
}

struct ranges_ctx {
	FILE *out;
	uint64_t left;
};

static int ranges_cb(void *ctx, uint64_t off, uint64_t len)
{
	struct ranges_ctx *r = ctx;

	fprintf(r->out, "%llu %llu\n", (unsigned long long)off, (unsigned long long)len);
	return --r->left == 0;
}

/* For `export`: "ranges FROM TO OFFSET LENGTH MAX" answers TO's size on
 * a line, then at most MAX changed ranges of [OFFSET, OFFSET + LENGTH), a
 * line each; FROM "-" (no name starts so) asks for the ranges with data. */
static int verb_ranges(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	uint64_t off, len, max, size;
	struct ranges_ctx r = {.out = NULL};
	char *buf = NULL;
	size_t n = 0;
	int rc;

	if (parse_u64(argv[3], &off) || parse_u64(argv[4], &len) || parse_u64(argv[5], &max) ||
	    max == 0 || max > 65536)
		return np_errmsg(err, -EINVAL, "ranges: OFFSET LENGTH MAX (1 to 65536) expected");
	r.left = max;
	r.out = open_memstream(&buf, &n);
	if (!r.out)
		return -ENOMEM;
	rc = thin_admin_diff(ctx, strcmp(argv[1], "-") ? argv[1] : NULL, argv[2], off, len,
			     ranges_cb, &r, &size, err);
	fclose(r.out);
	if (rc == 0) {
		fprintf(out, "%llu\n", (unsigned long long)size);
		fwrite(buf, 1, n, out);
	}
	free(buf);
	return rc;
}

/* "read NAME OFFSET LENGTH": the bytes, then a newline, so that the status
 * line that follows is a line of its own whatever the data. */
static int verb_read(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	uint64_t off, len;
	char *buf;
	int rc;

	if (parse_u64(argv[2], &off) || parse_u64(argv[3], &len) || len > THIN_READ_MAX)
		return np_errmsg(err, -EINVAL, "read: OFFSET LENGTH (at most %u) expected",
				 THIN_READ_MAX);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	rc = thin_admin_read(ctx, argv[1], buf, len, off, err);
	if (rc == 0) {
		fwrite(buf, 1, len, out);
		fputc('\n', out);
	}
	free(buf);
	return rc;
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
    {"diff", -1, verb_diff, "diff FROM TO [json]"},
    {"ranges", 5, verb_ranges, "ranges FROM TO OFFSET LENGTH MAX"},
    {"read", 3, verb_read, "read NAME OFFSET LENGTH"},
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

int thin_control_call_fn(const char *dir, int argc, char **argv,
			 void (*out)(void *arg, const char *data, size_t len), void *arg,
			 char **err)
{
	char path[PATH_MAX + 16];

	sock_path(dir, path, sizeof(path));
	return np_ctl_call(path, NP_CTL_STATUS, argc, argv, out, arg, err);
}

int thin_control_call(const char *dir, int argc, char **argv, FILE *out, char **err)
{
	return thin_control_call_fn(dir, argc, argv, np_ctl_out_file, out, err);
}
