/* `nbdplex volume import` and `export`: copies between a thin volume and a
 * file, a block device or an NBD server, skipping holes and zeroes.
 *
 * Each side of a copy is an endpoint: a storage engine of this binary (the
 * thin engine for volumes, the file engine for files and block devices) or
 * an NBD connection (volume_nbd.c, through libnbd). */
#ifndef NP_TOOLS_VOLUME_COPY_H
#define NP_TOOLS_VOLUME_COPY_H

#include <stdbool.h>
#include <stdint.h>

struct np_io;
struct vc_ep;

struct vc_ep_ops {
	/* Fills io->extents for [io->offset, io->offset + io->len) from the
	 * start, as a BLOCK_STATUS would (NBD_STATE_ZERO: reads as zeroes). */
	int (*extents)(struct vc_ep *ep, struct np_io *io);
	int (*read)(struct vc_ep *ep, void *buf, uint64_t len, uint64_t off);
	int (*write)(struct vc_ep *ep, const void *buf, uint64_t len, uint64_t off);
	/* Makes the range read as zeroes, deallocating it where possible. */
	int (*zero)(struct vc_ep *ep, uint64_t len, uint64_t off);
	int (*flush)(struct vc_ep *ep);
	void (*close)(struct vc_ep *ep);
};

struct vc_ep {
	const struct vc_ep_ops *ops;
	const char *name; /* for messages: the path, URI or POOLDIR/VOLUME */
	uint64_t size;
	bool fresh;    /* reads as zeroes everywhere: zeroes need no writing */
	char msg[256]; /* the last error's text, when the peer gave one */
	void *priv;
};

/* True for nbd://, nbds://, nbd+unix:// and the like. */
bool vc_is_nbd_uri(const char *s);
/* volume_nbd.c (volume_nbd_none.c without libnbd): connects to an NBD URI; writable asks for a
 * server that accepts writes. On failure returns -errno and sets *err to a malloc'd message. */
int vc_nbd_open(struct vc_ep *ep, const char *uri, bool writable, char **err);

/* An extent flag of an incremental copy's source: unchanged, the target's
 * bytes stay as they are. */
#define VC_SKIP (1U << 31)

/* volume_since.c: the source of `export --since`: the ranges in which vol
 * differs from snap, read from pool p, or through dir's control socket
 * when p is NULL (a server holds the pool). */
struct thin_pool;
int vc_since_open(struct vc_ep *ep, struct thin_pool *p, const char *dir, const char *snap,
		  const char *vol, char **err);

/* volume_copy.c. Return the process exit status like np_cmd_volume. */
int np_cmd_volume_import(int argc, char **argv);
int np_cmd_volume_export(int argc, char **argv);

#endif
