/* `nbdplex volume import` and `export`: copies between a thin volume and a
 * file, a block device or an NBD server, skipping holes and zeroes.
 *
 * The copy walks the source's extents (SEEK_DATA/SEEK_HOLE, the volume's
 * chunk map, or NBD block status), reads only what holds data, and checks
 * what it reads one pool chunk at a time: an all-zero chunk is treated as
 * a hole, so that it stays unallocated in the pool. Zero ranges cost the
 * target nothing when it already reads as zeroes (a volume or file this
 * command created); otherwise they are zeroed, which unmaps them in a
 * volume and punches holes in a file. Memory is one buffer of 4 MiB, or one
 * chunk when chunks are larger.
 *
 * The pool is opened directly, like the other volume commands without a
 * server. An import refuses a pool that a running server holds, with a
 * message that says how to copy through that server instead (a new volume
 * is then exported by adding it to the server's config and sending
 * SIGHUP); an export reads it through the server's control socket
 * (volume_since.c). While a copy runs on a pool opened here, this process
 * answers the pool's control socket, so `nbdplex volume list` and the like
 * keep working, and the volume being copied cannot be deleted or resized
 * underneath. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/proto.h"
#include "storage/registry.h"
#include "storage/storage.h"
#include "storage/thin/thin_admin.h"
#include "tools/progress.h"
#include "tools/volume.h"
#include "tools/volume_copy.h"
#include "util/size.h"
#include "util/err.h"

#define BUF_BYTES   (4u << 20)
#define EXT_WINDOW  (1ULL << 30) /* bytes of extents asked for at once */
#define MAX_EXTENTS 1024
#define SECTOR      512

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

#define fail np_volume_fail

bool vc_is_nbd_uri(const char *s)
{
	static const char *const schemes[] = {"nbd://",       "nbds://",      "nbd+unix://",
					      "nbds+unix://", "nbd+vsock://", "nbds+vsock://"};

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(s, schemes[i], strlen(schemes[i])) == 0)
			return true;
	return false;
}

/* ---- endpoints over this binary's storage engines (thin, file) */

struct eng {
	const struct np_storage_ops *ops;
	void *h;
	uint32_t caps;
};

static int eng_run(struct vc_ep *ep, uint16_t cmd, void *buf, uint64_t len, uint64_t off)
{
	struct eng *e = ep->priv;
	struct np_io io = {.op = cmd, .offset = off, .len = len, .buf = buf};

	np_io_run_sync(e->ops, e->h, e->caps, &io);
	return io.result;
}

static int eng_extents(struct vc_ep *ep, struct np_io *io)
{
	struct eng *e = ep->priv;

	io->op = NP_OP_EXTENTS;
	np_io_run_sync(e->ops, e->h, e->caps, io);
	return io->result;
}

static int eng_read(struct vc_ep *ep, void *buf, uint64_t len, uint64_t off)
{
	return eng_run(ep, NP_OP_READ, buf, len, off);
}

static int eng_write(struct vc_ep *ep, const void *buf, uint64_t len, uint64_t off)
{
	return eng_run(ep, NP_OP_WRITE, (void *)buf, len, off);
}

static int eng_zero(struct vc_ep *ep, uint64_t len, uint64_t off)
{
	return eng_run(ep, NP_OP_ZERO, NULL, len, off);
}

static int eng_flush(struct vc_ep *ep)
{
	return eng_run(ep, NP_OP_FLUSH, NULL, 0, 0);
}

static void eng_close(struct vc_ep *ep)
{
	struct eng *e = ep->priv;

	e->ops->close(e->h);
	free(e);
	ep->priv = NULL;
}

static const struct vc_ep_ops eng_ops = {
    .extents = eng_extents,
    .read = eng_read,
    .write = eng_write,
    .zero = eng_zero,
    .flush = eng_flush,
    .close = eng_close,
};

static int eng_open(struct vc_ep *ep, const struct np_storage_ops *ops, const char *spec,
		    bool readonly, char **err)
{
	struct eng *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return -ENOMEM;
	e->ops = ops;
	rc = ops->open(spec, readonly, &e->h, err);
	if (rc < 0) {
		free(e);
		return rc;
	}
	e->caps = ops->caps(e->h);
	ep->ops = &eng_ops;
	ep->priv = e;
	ep->size = ops->get_size(e->h);
	return 0;
}

/* Opens a file or block device that the caller opened as fd, through the
 * file engine. The engine is given /proc/self/fd/N rather than the path, so
 * that a path with a comma is not taken for engine options. */
static int file_ep_open(struct vc_ep *ep, int fd, bool readonly, char **err)
{
	char spec[64];

	snprintf(spec, sizeof(spec), "/proc/self/fd/%d", fd);
	return eng_open(ep, np_storage_find("file"), spec, readonly, err);
}

/* ---- the copy */

struct copy {
	struct vc_ep *src, *dst;
	uint64_t len; /* bytes copied, from offset 0 */
	uint32_t blk; /* zero detection unit: the pool's chunk size */
	char *buf;
	size_t bufsz;        /* a multiple of blk */
	uint64_t zoff, zlen; /* zeroes not yet passed on to dst */
	uint64_t data, zero; /* bytes written as data, and as zeroes or holes */
	uint64_t skipped;    /* bytes an incremental copy left alone (VC_SKIP) */
	struct np_progress bar;
	double secs;
	/* Where the copy failed, for the message. */
	const char *failed_op;
	struct vc_ep *failed_ep;
	uint64_t failed_at;
};

static bool is_zero(const char *p, size_t n)
{
	static const char z[16];

	if (n <= sizeof(z))
		return memcmp(p, z, n) == 0;
	return memcmp(p, z, sizeof(z)) == 0 && memcmp(p, p + sizeof(z), n - sizeof(z)) == 0;
}

static int failed(struct copy *c, int rc, const char *op, struct vc_ep *ep, uint64_t at)
{
	c->failed_op = op;
	c->failed_ep = ep;
	c->failed_at = at;
	return rc;
}

static int flush_zeroes(struct copy *c)
{
	int rc = 0;

	if (c->zlen && !c->dst->fresh)
		rc = c->dst->ops->zero(c->dst, c->zlen, c->zoff);
	if (rc < 0)
		return failed(c, rc, "zeroing", c->dst, c->zoff);
	c->zlen = 0;
	return 0;
}

/* Queues [off, off + n) as zeroes; neighbouring ranges go out as one. */
static int add_zeroes(struct copy *c, uint64_t off, uint64_t n)
{
	int rc = 0;

	c->zero += n;
	if (c->zlen && c->zoff + c->zlen == off) {
		c->zlen += n;
		return 0;
	}
	rc = flush_zeroes(c);
	c->zoff = off;
	c->zlen = n;
	return rc;
}

static int put_data(struct copy *c, const char *buf, uint64_t n, uint64_t off)
{
	int rc = flush_zeroes(c);

	if (rc == 0)
		rc = c->dst->ops->write(c->dst, buf, n, off);
	if (rc < 0)
		return c->failed_op ? rc : failed(c, rc, "writing", c->dst, off);
	c->data += n;
	return 0;
}

/* Copies a range the source holds data for, piece by piece; pieces end on
 * buffer-sized boundaries so that blocks line up with the pool's chunks. */
static int copy_data(struct copy *c, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t piece = c->bufsz - off % c->bufsz;
		size_t p = 0;
		int rc;

		if (interrupted)
			return failed(c, -EINTR, "interrupted", NULL, off);
		if (piece > len)
			piece = len;
		rc = c->src->ops->read(c->src, c->buf, piece, off);
		if (rc < 0)
			return failed(c, rc, "reading", c->src, off);
		while (p < piece) {
			size_t q = p;

			/* A run of blocks with data goes out in one write. */
			while (q < piece) {
				size_t end = q + c->blk - (off + q) % c->blk;

				if (end > piece)
					end = piece;
				if (is_zero(c->buf + q, end - q)) {
					if (q == p) {
						rc = add_zeroes(c, off + p, end - p);
						p = q = end;
						if (rc < 0)
							return rc;
						continue;
					}
					break;
				}
				q = end;
			}
			if (q > p) {
				rc = put_data(c, c->buf + p, q - p, off + p);
				if (rc < 0)
					return rc;
				p = q;
			}
		}
		off += piece;
		len -= piece;
		np_progress_update(&c->bar, off);
	}
	return 0;
}

static int run_copy(struct copy *c)
{
	struct np_extent ext[MAX_EXTENTS];
	uint64_t pos = 0;
	int rc = 0;

	c->bufsz = c->blk > BUF_BYTES ? c->blk : BUF_BYTES;
	c->buf = malloc(c->bufsz);
	if (!c->buf)
		return failed(c, -ENOMEM, "allocating a buffer", NULL, 0);
	while (pos < c->len && rc == 0) {
		struct np_io io = {.offset = pos, .extents = ext, .max_extents = MAX_EXTENTS};

		io.len = c->len - pos < EXT_WINDOW ? c->len - pos : EXT_WINDOW;
		rc = c->src->ops->extents(c->src, &io);
		if (rc < 0) {
			failed(c, rc, "mapping", c->src, pos);
			break;
		}
		if (io.n_extents == 0) /* nothing known: all data */
			np_io_add_extent(&io, io.len, 0);
		for (uint32_t i = 0; i < io.n_extents && pos < c->len && rc == 0; i++) {
			uint64_t n = ext[i].length;

			if (n > c->len - pos)
				n = c->len - pos;
			if (ext[i].flags & VC_SKIP)
				c->skipped += n;
			else if (ext[i].flags & NP_EXTENT_ZERO)
				rc = add_zeroes(c, pos, n);
			else
				rc = copy_data(c, pos, n);
			pos += n;
			np_progress_update(&c->bar, pos);
			if (interrupted && rc == 0)
				rc = failed(c, -EINTR, "interrupted", NULL, pos);
		}
	}
	if (rc == 0)
		rc = flush_zeroes(c);
	if (rc == 0 && (rc = c->dst->ops->flush(c->dst)) < 0)
		failed(c, rc, "flushing", c->dst, 0);
	free(c->buf);
	c->buf = NULL;
	return rc;
}

/* The message for a failed copy, without the "nbdplex volume: " prefix. */
static void copy_error(struct copy *c, const char *cmd, int rc)
{
	const char *peer = c->failed_ep && c->failed_ep->msg[0] ? c->failed_ep->msg : NULL;

	if (rc == -EINTR && !c->failed_ep) {
		fprintf(stderr, "nbdplex volume: %s: interrupted at %llu bytes\n", cmd,
			(unsigned long long)c->failed_at);
		return;
	}
	fprintf(stderr, "nbdplex volume: %s: %s %s at offset %llu: %s%s%s%s\n", cmd,
		c->failed_op ? c->failed_op : "copying", c->failed_ep ? c->failed_ep->name : "",
		(unsigned long long)c->failed_at, strerror(-rc), peer ? " (" : "", peer ? peer : "",
		peer ? ")" : "");
	if (rc == -ENOSPC && c->failed_ep == c->dst)
		fprintf(stderr, "nbdplex volume: %s: %s is out of space%s\n", cmd, c->dst->name,
			strcmp(cmd, "import") == 0
			    ? " (the pool is full: `nbdplex volume list` shows its free chunks)"
			    : "");
}

/* Copies all of src to dst, drawing the bar on bar (NULL: none), then
 * closes both; on failure says why. */
static int copy_all(struct copy *c, FILE *bar, const char *cmd, struct vc_ep *src,
		    struct vc_ep *dst, uint32_t blk)
{
	double t0 = np_now();
	int rc;

	c->src = src;
	c->dst = dst;
	c->len = src->size;
	c->blk = blk;
	np_progress_start(&c->bar, bar, c->len);
	rc = run_copy(c);
	if (rc == 0)
		np_progress_end(&c->bar, c->len);
	else if (c->bar.out)
		fputc('\n', c->bar.out);
	dst->ops->close(dst);
	src->ops->close(src);
	c->secs = np_now() - t0;
	if (rc < 0)
		copy_error(c, cmd, rc);
	return rc;
}

static void summary(struct copy *c, const char *verb, const char *from, const char *to)
{
	double secs = c->secs;
	FILE *out = stdout;

	char total[32], data[32], zero[32], rate[32];

	fprintf(out, "%s %s to %s: %s in %.1f s (%s/s); %s of data, %s of holes and zeroes\n", verb,
		from, to, np_fmt_bytes(total, sizeof(total), c->len), secs,
		np_fmt_bytes(rate, sizeof(rate), secs > 0 ? c->len / secs : 0),
		np_fmt_bytes(data, sizeof(data), c->data),
		np_fmt_bytes(zero, sizeof(zero), c->zero));
}

/* ---- the commands */

static const char import_help[] =
    "usage: nbdplex volume import POOLDIR VOLUME FILE|URI [--overwrite] [--size SIZE]\n"
    "                             [--progress|--no-progress] [--quiet]\n"
    "Creates VOLUME and copies a disk image into it: a file, a block device, or an\n"
    "NBD export (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH).\n"
    "Holes and all-zero chunks are skipped and stay unallocated in the pool.\n"
    "The volume is as large as the source, rounded up to a multiple of 512 bytes\n"
    "(the padding reads as zeroes). If the copy fails, the new volume is deleted.\n"
    "  --overwrite    copy into an existing VOLUME at least as large as the source;\n"
    "                 its first bytes become the source's, zero ranges are unmapped,\n"
    "                 and anything past the source's end is left as it was\n"
    "  --size         make the new volume SIZE bytes (at least the source's size)\n"
    "  --progress     draw a progress bar on standard error even if it is not a\n"
    "                 terminal (the default when it is one); --no-progress: never\n"
    "  --quiet        no summary line on standard output\n"
    "The pool must not be held by a running server: stop it, or copy with nbdcopy\n"
    "into a volume that server exports.\n";

static const char export_help[] =
    "usage: nbdplex volume export POOLDIR VOLUME FILE|URI [--overwrite] [--since SNAP]\n"
    "                             [--progress|--no-progress] [--quiet]\n"
    "Copies a volume or snapshot out to a file, a block device or an NBD export.\n"
    "A new file is made sparse: only data is written, unallocated and all-zero\n"
    "chunks stay holes. An NBD target or a block device must be at least as large\n"
    "as the volume; data is written, and zero ranges are zeroed (WRITE_ZEROES,\n"
    "which lets the target deallocate them) except where the target already reports\n"
    "zeroes; anything past the volume's end is left as it was. If the copy fails, a\n"
    "file it made is removed.\n"
    "  --overwrite    replace an existing non-empty FILE, or write to a block device\n"
    "  --progress     draw a progress bar on standard error even if it is not a\n"
    "                 terminal (the default when it is one); --no-progress: never\n"
    "  --since SNAP   write only the chunks in which VOLUME differs from SNAP, a\n"
    "                 snapshot it comes from, into an existing FILE, device or URI\n"
    "                 that holds SNAP's content (a copy of SNAP, or the last\n"
    "                 increment's target); says how much it copied and skipped.\n"
    "                 A failed or killed run is completed by running it again\n"
    "  --quiet        no summary line on standard output\n"
    "A pool that a running server holds is read through its control socket.\n";

struct opts {
	bool overwrite, quiet;
	int progress; /* -1: when standard error is a terminal */
	uint64_t size;
	char *pool, *vol, *other;
	char *since; /* export --since SNAP */
};

static int parse_opts(int argc, char **argv, bool import, struct opts *o)
{
	static const struct option lopts[] = {
	    {"overwrite", no_argument, NULL, 'o'}, {"size", required_argument, NULL, 's'},
	    {"progress", no_argument, NULL, 'p'},  {"no-progress", no_argument, NULL, 'P'},
	    {"quiet", no_argument, NULL, 'q'},     {"since", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
	};
	const char *cmd = import ? "import" : "export";
	int c;

	memset(o, 0, sizeof(*o));
	o->progress = -1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hq", lopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->overwrite = true;
			break;
		case 's':
			if (!import)
				return fail(2, "export: --size is for import (see --help)");
			if (np_parse_size(optarg, &o->size) < 0 || o->size == 0)
				return fail(2, "--size %s: expected a positive size with K/M/G/T",
					    optarg);
			break;
		case 'p':
			o->progress = 1;
			break;
		case 'P':
			o->progress = 0;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'S':
			if (import)
				return fail(2, "import: --since is for export (see --help)");
			if (!thin_name_ok(optarg))
				return fail(2, "export: bad snapshot name %s", optarg);
			o->since = optarg;
			break;
		case 'h':
			fputs(import ? import_help : export_help, stdout);
			return -1;
		default:
			return fail(2, "%s: unknown or incomplete option %s (see --help)", cmd,
				    argv[optind - 1]);
		}
	}
	if (argc - optind != 3)
		return fail(2, "%s: expected POOLDIR VOLUME %s (see --help)", cmd,
			    import ? "FILE|URI" : "FILE|URI");
	o->pool = argv[optind];
	o->vol = argv[optind + 1];
	o->other = argv[optind + 2];
	if (!thin_name_ok(o->vol))
		return fail(2, "%s: bad volume name %s (use A-Z a-z 0-9 . _ -)", cmd, o->vol);
	if (o->since && o->overwrite)
		return fail(2, "export: --since writes into an existing copy; --overwrite is not "
			       "needed");
	if (o->overwrite && o->size)
		return fail(2, "import: --size makes a new volume; with --overwrite the volume "
			       "keeps its size");
	return 0;
}

/* Refuses a pool that a running server holds: its control socket answers. */
static int check_no_server(const char *pool, const char *cmd, const char *how)
{
	char *err = NULL;
	char *ping[] = {"ping"};
	struct stat st;
	int rc;

	if (stat(pool, &st) < 0)
		return fail(1, "%s: %s: %s", cmd, pool, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(1, "%s: %s: not a directory", cmd, pool);
	rc = thin_control_call(pool, 1, ping, stdout, &err);
	free(err);
	if (rc == -ENOENT || rc == -ECONNREFUSED)
		return 0;
	if (rc == 0)
		return fail(1,
			    "%s: %s is held by a running nbdplex server (or another import or "
			    "export); stop it first, or %s",
			    cmd, pool, how);
	return fail(1, "%s: %s/control.sock: %s", cmd, pool, strerror(-rc));
}

static FILE *bar_stream(const struct opts *o)
{
	if (o->progress == 1 || (o->progress == -1 && !o->quiet && isatty(STDERR_FILENO)))
		return stderr;
	return NULL;
}

static void catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Parses the command line and checks that the pool is free: returns 0 to
 * go on, -1 after --help, or the exit status. */
static int begin(int argc, char **argv, bool import, struct opts *o)
{
	int rc = parse_opts(argc, argv, import, o);

	if (rc)
		return rc;
	if (import && check_no_server(o->pool, "import",
				      "create the volume with `nbdplex volume create`, serve it, "
				      "and copy with nbdcopy FILE nbd://HOST:PORT/EXPORT"))
		return 1;
	catch_signals();
	return 0;
}

/* Opens the pool with its control socket. Another volume command that
 * opened the pool directly holds its lock for a moment: wait a few seconds
 * for it rather than fail. */
static int open_pool(const char *dir, struct thin_pool **p, char **err)
{
	int rc = -EBUSY;

	for (int i = 0; i < 50 && rc == -EBUSY; i++) {
		if (i) {
			free(*err);
			*err = NULL;
			usleep(100 * 1000);
		}
		rc = thin_pool_open(dir, true, p, err);
	}
	return rc;
}

/* Opens the source of an import: an NBD URI or a file or block device. */
static int open_source(struct vc_ep *ep, const char *what, char **err)
{
	int fd, rc;

	ep->name = what;
	if (vc_is_nbd_uri(what))
		return vc_nbd_open(ep, what, false, err);
	fd = open(what, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return np_errmsg(err, -errno, "%s: %s", what, strerror(errno));
	rc = file_ep_open(ep, fd, true, err);
	close(fd);
	if (rc < 0 && err && !*err)
		np_errmsg(err, rc, "%s: %s", what, strerror(-rc));
	return rc;
}

static int report(const char *cmd, int rc, char *err)
{
	fail(1, "%s: %s", cmd, err ? err : strerror(-rc));
	free(err);
	return 1;
}

int np_cmd_volume_import(int argc, char **argv)
{
	struct vc_ep src = {0}, dst = {0};
	struct copy c = {0};
	struct thin_pool *p = NULL;
	struct opts o;
	char *err = NULL, spec[PATH_MAX + THIN_NAME_MAX + 2];
	bool created = false;
	int rc;

	rc = begin(argc, argv, true, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	rc = open_source(&src, o.other, &err);
	if (rc < 0)
		return report("import", rc, err);
	if (src.size == 0) {
		src.ops->close(&src);
		return fail(1, "import: %s is empty", o.other);
	}
	if (o.size && o.size < src.size) {
		src.ops->close(&src);
		return fail(1, "import: --size %llu is smaller than %s (%llu bytes)",
			    (unsigned long long)o.size, o.other, (unsigned long long)src.size);
	}
	snprintf(spec, sizeof(spec), "%s/%s", o.pool, o.vol);
	dst.name = spec;
	/* With control: other volume commands come to this process meanwhile. */
	rc = open_pool(o.pool, &p, &err);
	if (rc == 0) {
		uint64_t vsize = o.size ? o.size : (src.size + SECTOR - 1) / SECTOR * SECTOR;

		rc = thin_admin_create(p, o.vol, vsize, &err);
		created = rc == 0;
		if (rc == -EEXIST && o.overwrite) {
			free(err);
			err = NULL;
			rc = 0;
		} else if (rc == -EEXIST) {
			free(err);
			err = NULL;
			rc = np_errmsg(&err, rc,
				       "%s: %s already exists (--overwrite copies into it, or "
				       "delete it first)",
				       o.pool, o.vol);
		}
	}
	if (rc == 0)
		rc = eng_open(&dst, np_storage_find("thin"), spec, false, &err);
	if (rc == 0 && dst.size < src.size)
		rc = np_errmsg(&err, -ENOSPC,
			       "%s is %llu bytes, smaller than %s (%llu bytes); resize it first",
			       spec, (unsigned long long)dst.size, o.other,
			       (unsigned long long)src.size);
	if (rc < 0) {
		if (dst.priv)
			dst.ops->close(&dst);
		src.ops->close(&src);
		if (p)
			thin_pool_close(p);
		return report("import", rc, err);
	}
	dst.fresh = created;
	rc = copy_all(&c, bar_stream(&o), "import", &src, &dst, thin_admin_chunk_size(p));
	if (rc < 0) {
		if (created) {
			char *derr = NULL;

			if (thin_admin_delete(p, o.vol, &derr) == 0)
				fprintf(stderr,
					"nbdplex volume: import: deleted the new volume %s\n",
					o.vol);
			else
				fprintf(stderr, "nbdplex volume: import: could not delete %s: %s\n",
					o.vol, derr ? derr : "");
			free(derr);
		}
		thin_pool_close(p);
		return 1;
	}
	thin_pool_close(p);
	if (!o.quiet)
		summary(&c, "imported", o.other, spec);
	return 0;
}

/* Opens the target of an export that is a file or block device. *made says
 * what to undo on failure: 1 the file was created, 2 it was empty. */
static int open_target_file(struct vc_ep *ep, const struct opts *o, uint64_t size, int *made,
			    char **err)
{
	const char *path = o->other;
	struct stat st;
	int fd, rc;

	*made = 0;
	if (stat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			return np_errmsg(err, -EINVAL, "%s: not a regular file or block device",
					 path);
		if ((S_ISBLK(st.st_mode) || st.st_size > 0) && !o->overwrite)
			return np_errmsg(err, -EEXIST,
					 "%s exists; --overwrite replaces its contents", path);
		fd = open(path, O_RDWR | O_CLOEXEC | (S_ISREG(st.st_mode) ? O_TRUNC : 0));
		if (S_ISREG(st.st_mode) && st.st_size == 0)
			*made = 2;
	} else if (errno == ENOENT) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		*made = 1;
	} else {
		fd = -1;
	}
	if (fd < 0) {
		*made = 0;
		return np_errmsg(err, -errno, "%s: %s", path, strerror(errno));
	}
	/* A regular file starts empty: holes need no writing. */
	ep->fresh = S_ISREG(st.st_mode) || *made == 1;
	if (ep->fresh && ftruncate(fd, (off_t)size) < 0)
		rc = np_errmsg(err, -errno, "%s: cannot size to %llu bytes: %s", path,
			       (unsigned long long)size, strerror(errno));
	else
		rc = file_ep_open(ep, fd, false, err);
	close(fd);
	return rc;
}

static void undo_target(const char *path, int made)
{
	if (made == 1 && unlink(path) == 0)
		fprintf(stderr, "nbdplex volume: export: removed %s\n", path);
	else if (made == 2 && truncate(path, 0) < 0)
		fprintf(stderr, "nbdplex volume: export: %s: %s\n", path, strerror(errno));
}

/* Opens the existing target of an incremental export: never created,
 * truncated or sized, since it holds the content the increment applies
 * to. */
static int open_target_existing(struct vc_ep *ep, const char *path, char **err)
{
	struct stat st;
	int fd, rc;

	ep->name = path;
	if (vc_is_nbd_uri(path))
		return vc_nbd_open(ep, path, true, err);
	if (stat(path, &st) < 0)
		return np_errmsg(err, -errno,
				 "%s: %s (--since writes into a copy of the snapshot; make "
				 "the first one without it)",
				 path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return np_errmsg(err, -EINVAL, "%s: not a regular file or block device", path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return np_errmsg(err, -errno, "%s: %s", path, strerror(errno));
	rc = file_ep_open(ep, fd, false, err);
	close(fd);
	return rc;
}

/* Whether a server holds the pool (its control socket answers). */
static bool served(const char *pool)
{
	char *err = NULL, *ping[] = {"ping"};
	int rc = thin_control_call(pool, 1, ping, stdout, &err);

	free(err);
	return rc == 0;
}

/* export --since: the ranges changed since o->since, into an existing
 * target. */
static int export_since(const struct opts *o)
{
	struct vc_ep src = {0}, dst = {0};
	struct copy c = {0};
	struct thin_pool *p = NULL;
	char *err = NULL, spec[PATH_MAX + THIN_NAME_MAX + 2], total[32], data[32], zero[32];
	uint32_t chunk = THIN_DEFAULT_CHUNK;
	int rc = 0;

	snprintf(spec, sizeof(spec), "%s/%s", o->pool, o->vol);
	src.name = spec;
	if (!served(o->pool)) {
		rc = open_pool(o->pool, &p, &err);
		if (rc == 0)
			chunk = thin_admin_chunk_size(p);
	}
	if (rc == 0)
		rc = vc_since_open(&src, p, o->pool, o->since, o->vol, &err);
	if (rc == 0) {
		rc = open_target_existing(&dst, o->other, &err);
		if (rc < 0)
			src.ops->close(&src);
	}
	if (rc == 0 && dst.size < src.size) {
		dst.ops->close(&dst);
		src.ops->close(&src);
		rc = np_errmsg(&err, -ENOSPC, "%s is %llu bytes, smaller than %s (%llu bytes)",
			       o->other, (unsigned long long)dst.size, spec,
			       (unsigned long long)src.size);
	}
	if (rc < 0) {
		if (p)
			thin_pool_close(p);
		return report("export", rc, err);
	}
	rc = copy_all(&c, bar_stream(o), "export", &src, &dst, chunk);
	if (p)
		thin_pool_close(p);
	if (rc < 0) {
		fprintf(stderr,
			"nbdplex volume: export: %s holds part of the increment; run the same "
			"command again to complete it\n",
			o->other);
		return 1;
	}
	/* Exact byte counts, for scripts that check what a backup moved. */
	if (!o->quiet)
		printf("exported %s since %s to %s: %llu bytes changed (%s: %s of data, %s of "
		       "zeroes) in %.1f s; %llu bytes unchanged, skipped\n",
		       spec, o->since, o->other, (unsigned long long)(c.data + c.zero),
		       np_fmt_bytes(total, sizeof(total), c.data + c.zero),
		       np_fmt_bytes(data, sizeof(data), c.data),
		       np_fmt_bytes(zero, sizeof(zero), c.zero), c.secs,
		       (unsigned long long)c.skipped);
	return 0;
}

int np_cmd_volume_export(int argc, char **argv)
{
	struct vc_ep src = {0}, dst = {0};
	struct copy c = {0};
	struct thin_pool *p = NULL;
	struct opts o;
	char *err = NULL, spec[PATH_MAX + THIN_NAME_MAX + 2];
	int made = 0;
	int rc;

	rc = begin(argc, argv, false, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (o.since)
		return export_since(&o);
	snprintf(spec, sizeof(spec), "%s/%s", o.pool, o.vol);
	src.name = spec;
	/* The source first: a bad pool or volume name touches no target.
	 * A pool that a server holds is read through its control socket. */
	if (served(o.pool)) {
		rc = vc_since_open(&src, NULL, o.pool, NULL, o.vol, &err);
	} else {
		rc = open_pool(o.pool, &p, &err);
		if (rc == 0)
			rc = eng_open(&src, np_storage_find("thin"), spec, true, &err);
	}
	if (rc < 0) {
		if (p)
			thin_pool_close(p);
		return report("export", rc, err);
	}
	dst.name = o.other;
	if (vc_is_nbd_uri(o.other))
		rc = vc_nbd_open(&dst, o.other, true, &err);
	else
		rc = open_target_file(&dst, &o, src.size, &made, &err);
	if (rc == 0 && dst.size < src.size) {
		dst.ops->close(&dst);
		rc = np_errmsg(&err, -ENOSPC, "%s is %llu bytes, smaller than %s (%llu bytes)",
			       o.other, (unsigned long long)dst.size, spec,
			       (unsigned long long)src.size);
	}
	if (rc < 0) {
		undo_target(o.other, made);
		src.ops->close(&src);
		if (p)
			thin_pool_close(p);
		return report("export", rc, err);
	}
	rc = copy_all(&c, bar_stream(&o), "export", &src, &dst,
		      p ? thin_admin_chunk_size(p) : THIN_DEFAULT_CHUNK);
	if (p)
		thin_pool_close(p);
	if (rc < 0) {
		undo_target(o.other, made);
		return 1;
	}
	if (!o.quiet)
		summary(&c, "exported", spec, o.other);
	return 0;
}
