/* `nbdplex volume`: thin pool administration.
 *
 * Commands go to a running server's control socket when one answers (the
 * server holds the database lock), else the tool opens the pool itself and
 * calls the typed API (storage/thin/thin_admin.h). The server's socket calls
 * the same functions, so messages and results do not depend on whether a
 * server is running. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/storage.h"
#include "storage/thin/thin_admin.h"
#include "tools/volume.h"
#include "tools/volume_copy.h"
#include "util/size.h"

static const char usage_all[] =
    "usage: nbdplex volume COMMAND POOLDIR [ARGS]\n"
    "  init POOLDIR [--data FILE_OR_DEVICE] [--chunk-size SIZE] [--size SIZE]\n"
    "  create POOLDIR VOLUME SIZE\n"
    "  resize POOLDIR VOLUME SIZE\n"
    "  snapshot POOLDIR VOLUME SNAPSHOT\n"
    "  clone POOLDIR SNAPSHOT NEWVOLUME\n"
    "  list POOLDIR\n"
    "  delete POOLDIR NAME\n"
    "  check POOLDIR\n"
    "  diff POOLDIR FROM TO [--json]\n"
    "  import POOLDIR VOLUME FILE|URI [--overwrite] [--size SIZE] [--quiet]\n"
    "  export POOLDIR VOLUME FILE|URI [--overwrite | --since SNAP] [--quiet]\n"
    "    (both: [--progress|--no-progress]; URI: nbd://HOST[:PORT]/EXPORT or\n"
    "    nbd+unix:///EXPORT?socket=PATH)\n"
    "Sizes accept K, M, G, T suffixes. All but import work while a server serves\n"
    "the pool, through POOLDIR/control.sock.\n"
    "`nbdplex volume COMMAND --help` for more.\n";

/* The commands with the pool opened here. Arguments were checked by
 * check_args. */
static int do_create(struct thin_pool *p, char **args, char **err)
{
	uint64_t size = 0;

	np_parse_size(args[1], &size);
	return thin_admin_create(p, args[0], size, err);
}

static int do_resize(struct thin_pool *p, char **args, char **err)
{
	uint64_t size = 0;

	np_parse_size(args[1], &size);
	return thin_admin_resize(p, args[0], size, err);
}

static int do_snapshot(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_snapshot(p, args[0], args[1], err);
}

static int do_clone(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_clone(p, args[0], args[1], err);
}

static int do_delete(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_delete(p, args[0], err);
}

static int do_check(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_check(p, stdout, err);
}

static int do_list(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_print_list(p, stdout, err);
}

/* volume diff --json (the words to the server end with "json"). */
static bool diff_json;

static int do_diff(struct thin_pool *p, char **args, char **err)
{
	return thin_admin_print_diff(p, args[0], args[1], diff_json, stdout, err);
}

typedef int (*direct_fn)(struct thin_pool *p, char **args, char **err);

static const struct {
	const char *name;
	int nargs; /* after POOLDIR */
	direct_fn direct;
	const char *help;
} cmds[] = {
    {"init", 0, NULL,
     "usage: nbdplex volume init POOLDIR [--data FILE_OR_DEVICE] [--chunk-size SIZE] "
     "[--size SIZE]\n"
     "Creates a thin pool in POOLDIR (created if missing, else it must be empty).\n"
     "  --data        data file or block device (default POOLDIR/data)\n"
     "  --chunk-size  allocation unit, a power of two from 4K to 64M (default 64K)\n"
     "  --size        the most a new data file may grow to (default: until its\n"
     "                file system is full)\n"
     "A data file starts empty (an existing one at its own size) and grows in\n"
     "steps of 1G, or an eighth of the pool once that is more, as writes need\n"
     "chunks; a write gets ENOSPC only when it cannot grow further. When the\n"
     "database shares the file system, growth leaves it 1/16 of that free\n"
     "(48M to 256M, at most a quarter). A block device is used at its size.\n"
     "Pools made before growth existed keep the size they were made with.\n"},
    {"create", 2, do_create,
     "usage: nbdplex volume create POOLDIR VOLUME SIZE\n"
     "Creates an empty thin volume; SIZE may exceed the pool's free space.\n"},
    {"resize", 2, do_resize,
     "usage: nbdplex volume resize POOLDIR VOLUME SIZE\n"
     "Grows or shrinks a volume that is not being exported; shrinking frees the\n"
     "chunks past the new end.\n"},
    {"snapshot", 2, do_snapshot,
     "usage: nbdplex volume snapshot POOLDIR VOLUME SNAPSHOT\n"
     "Makes a read-only snapshot of VOLUME in constant time; VOLUME stays writable\n"
     "and shares its chunks with the snapshot until it overwrites them.\n"},
    {"clone", 2, do_clone,
     "usage: nbdplex volume clone POOLDIR SNAPSHOT NEWVOLUME\n"
     "Makes a writable volume from a snapshot in constant time.\n"},
    {"list", 0, do_list,
     "usage: nbdplex volume list POOLDIR\n"
     "Lists volumes and snapshots: size and allocated bytes (both in bytes) and\n"
     "origin, then a pool summary line starting with #: chunks in the pool, used\n"
     "and free, metadata commits since the pool was opened and the writes they\n"
     "carried, then in bytes: bytes_used, bytes_allocated (chunks handed to the\n"
     "pool so far), bytes_max (what it may grow to now), limit (size: --size;\n"
     "fs: its file system's free space; device: a block device; fixed: a pool\n"
     "made before growth existed) and data_file (the data file's size).\n"
     "Allocated counts the chunks each one holds itself: a chunk a volume shares\n"
     "with its snapshot counts for the snapshot until the volume overwrites it.\n"},
    {"delete", 1, do_delete,
     "usage: nbdplex volume delete POOLDIR NAME\n"
     "Deletes a volume or snapshot and frees its chunks. A snapshot that two or\n"
     "more volumes depend on cannot be deleted; delete them first.\n"},
    {"diff", 2, do_diff,
     "usage: nbdplex volume diff POOLDIR FROM TO [--json]\n"
     "Prints the byte ranges in which TO, a volume or snapshot, may differ from\n"
     "FROM, a snapshot it comes from (taken of it, of an older state of it, or of\n"
     "what it was cloned from): one \"OFFSET LENGTH\" line per range, or a JSON\n"
     "array of {\"offset\", \"length\"} objects, in whole chunks. A chunk is\n"
     "listed when TO maps or trimmed it since FROM, unless both read as zeroes;\n"
     "the walk reads only those chunks' records, whatever the volume's size.\n"
     "Works while a server serves the pool; the qemu:dirty-bitmap:FROM meta\n"
     "context of an export of TO gives the same over NBD.\n"},
    {"check", 0, do_check,
     "usage: nbdplex volume check POOLDIR\n"
     "Verifies that every mapped chunk is allocated exactly once and that the\n"
     "data file holds the pool; prints the bytes used and allocated.\n"},
};

#define fail np_volume_fail

int np_volume_fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("nbdplex volume: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static int parse_size_arg(const char *what, const char *s, uint64_t *out)
{
	if (np_parse_size(s, out) < 0 || *out == 0)
		return fail(2, "%s %s: expected a positive size with K/M/G/T", what, s);
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data", required_argument, NULL, 'd'},
	    {"chunk-size", required_argument, NULL, 'c'},
	    {"size", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *data = NULL;
	uint64_t chunk = THIN_DEFAULT_CHUNK, size = 0;
	char *err = NULL;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			data = optarg;
			break;
		case 'c':
			if (parse_size_arg("--chunk-size", optarg, &chunk))
				return 2;
			if (chunk > THIN_MAX_CHUNK)
				return fail(2, "--chunk-size %s: at most 64M", optarg);
			break;
		case 's':
			if (parse_size_arg("--size", optarg, &size))
				return 2;
			break;
		case 'h':
			fputs(cmds[0].help, stdout);
			return 0;
		default:
			return fail(2, "init: unknown or incomplete option %s (see --help)",
				    argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return fail(2, "init: expected one POOLDIR (see --help)");
	rc = thin_pool_create(argv[optind], data, chunk, size, &err);
	if (rc < 0) {
		fail(1, "%s", err ? err : strerror(-rc));
		free(err);
		return 1;
	}
	return 0;
}

static int check_args(const char *cmd, char **args)
{
	uint64_t size;

	if (strcmp(cmd, "create") == 0 || strcmp(cmd, "resize") == 0) {
		if (!thin_name_ok(args[0]))
			return fail(2, "%s: bad volume name %s", cmd, args[0]);
		return parse_size_arg("size", args[1], &size);
	}
	for (int i = 0; strcmp(cmd, "list") && strcmp(cmd, "check") && i < 2 && args[i]; i++)
		if (!thin_name_ok(args[i]))
			return fail(2, "%s: bad name %s (use A-Z a-z 0-9 . _ -)", cmd, args[i]);
	return 0;
}

static int run(const char *dir, int argc, char **argv, direct_fn direct)
{
	char *err = NULL;
	struct thin_pool *p;
	struct stat st;
	int rc;

	if (stat(dir, &st) < 0)
		return fail(1, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(1, "%s: not a directory", dir);
	rc = thin_control_call(dir, argc, argv, stdout, &err);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		/* No server has the pool: open it here. */
		rc = thin_pool_open(dir, false, &p, &err);
		if (rc == 0) {
			rc = direct(p, argv + 1, &err);
			thin_pool_close(p);
		}
	}
	fflush(stdout);
	if (rc < 0) {
		fail(1, "%s", err ? err : strerror(-rc));
		free(err);
		return 1;
	}
	return 0;
}

int np_cmd_volume(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_all, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "import") == 0)
		return np_cmd_volume_import(argc - 1, argv + 1);
	if (strcmp(argv[1], "export") == 0)
		return np_cmd_volume_export(argc - 1, argv + 1);
	if (strcmp(argv[1], "diff") == 0)
		for (int j = 2; j < argc; j++)
			if (strcmp(argv[j], "--json") == 0) {
				diff_json = true;
				memmove(argv + j, argv + j + 1, (size_t)(argc - j) * sizeof(*argv));
				argc--;
				break;
			}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) != 0)
			continue;
		for (int j = 2; j < argc; j++)
			if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
				fputs(cmds[i].help, stdout);
				return 0;
			}
		if (i == 0)
			return cmd_init(argc - 1, argv + 1);
		if (argc != 3 + cmds[i].nargs)
			return fail(2, "%s: wrong number of arguments\n%s", cmds[i].name,
				    cmds[i].help);
		if (check_args(cmds[i].name, argv + 3))
			return 2;
		/* The server's command line is the words without POOLDIR. */
		char *words[4] = {argv[1]};
		int n = 1 + cmds[i].nargs;

		for (int j = 0; j < cmds[i].nargs; j++)
			words[1 + j] = argv[3 + j];
		if (diff_json)
			words[n++] = "json";
		return run(argv[2], n, words, cmds[i].direct);
	}
	return fail(2, "unknown command %s (see --help)", argv[1]);
}
