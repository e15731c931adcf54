/* The storage engine interface.
 *
 * An engine is one versioned struct of function pointers. The core asks an
 * open export for its size and capabilities once, turns them into NBD
 * transmission flags, validates every request (bounds, flags, read-only)
 * before an engine sees it, and emulates what an engine lacks: WRITE_ZEROES by
 * writing zeroes, FUA by a flush after the write, CACHE as a no-op.
 *
 * Two shapes of I/O fit the same interface:
 * - Synchronous operations (pread, pwrite, ...) that may block. The core runs
 *   them on its worker pool and returns completions to the connection's loop
 *   in batches. An engine may also offer rw_nowait, which the core calls
 *   on the loop thread first with each batch of READs and WRITEs (page-cache
 *   hits without a thread hop).
 * - Asynchronous submission (loop_open/submit), for engines such as kernel AIO
 *   that complete on an event the loop polls. The core hands each loop's
 *   batch of parsed requests to submit() at once; the engine calls io->done
 *   on that loop's thread when each one finishes.
 *
 * All functions return 0 or a negative errno; errno values are mapped to NBD
 * errors in one place (nbd_errno_to_wire). Engines never log on the data
 * path. Handles are shared by every connection and loop, so the synchronous
 * operations must be safe to call from several threads at once. */
#ifndef NP_STORAGE_H
#define NP_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NP_STORAGE_API_VERSION 3

/* Capabilities, from caps(). */
#define NP_CAP_WRITE      (1U << 0)  /* writes are possible at all */
#define NP_CAP_FLUSH      (1U << 1)  /* flush() does something useful */
#define NP_CAP_FUA        (1U << 2)  /* pwrite/zero/trim honour NP_IO_FUA natively */
#define NP_CAP_TRIM       (1U << 3)  /* trim() implemented */
#define NP_CAP_ZERO       (1U << 4)  /* zero() implemented (else emulated by writes) */
#define NP_CAP_FAST_ZERO  (1U << 5)  /* zero() honours NP_IO_FAST_ZERO */
#define NP_CAP_MULTI_CONN (1U << 6)  /* a flush covers writes from every connection */
#define NP_CAP_EXTENTS    (1U << 7)  /* extents() reports holes and zeroes */
#define NP_CAP_CACHE      (1U << 8)  /* cache() prefetches */
#define NP_CAP_ROTATIONAL (1U << 9)  /* the medium seeks */
#define NP_CAP_RESIZE     (1U << 10) /* resize() implemented (NP_OP_RESIZE) */

/* What an engine is asked to do. These are the engine interface's own
 * codes, not the wire's: the core converts each request once, where it
 * validates it (np_io_from_wire), so engines know nothing of NBD. */
enum np_op {
	NP_OP_READ,
	NP_OP_WRITE,
	NP_OP_FLUSH,
	NP_OP_TRIM,
	NP_OP_ZERO,    /* reads back as zeroes afterwards (WRITE_ZEROES) */
	NP_OP_CACHE,   /* a hint to prefetch */
	NP_OP_EXTENTS, /* which parts are holes or read as zeroes (BLOCK_STATUS) */
	NP_OP_RESIZE,  /* the new size travels in offset */
};

/* Flags of a request (struct np_io's flags, and the flags argument of
 * pwrite, trim and zero). */
#define NP_IO_FUA       (1U << 0) /* durable when done */
#define NP_IO_NO_HOLE   (1U << 1) /* ZERO: keep the range allocated */
#define NP_IO_FAST_ZERO (1U << 2) /* ZERO: -ENOTSUP rather than slowly */

/* Flags of an extent. */
#define NP_EXTENT_HOLE (1U << 0) /* not allocated */
#define NP_EXTENT_ZERO (1U << 1) /* reads as zeroes */

/* One extent of an EXTENTS answer. */
struct np_extent {
	uint64_t length;
	uint32_t flags;
};

/* One request as an engine sees it. The core owns the struct and the
 * buffers; an engine fills result (and for BLOCK_STATUS the extents), then
 * calls done exactly once. */
struct np_io {
	enum np_op op;
	uint32_t flags; /* NP_IO_* */
	uint64_t offset;
	uint64_t len;
	void *buf;  /* READ: destination; WRITE: source; len bytes */
	int result; /* 0 or a negative errno */

	/* EXTENTS: the engine appends up to max_extents extents covering
	 * [offset, offset + len) from the start; it may stop early. context
	 * names the meta context asked about: NULL is base:allocation (flags
	 * NP_EXTENT_*), anything else one of the engine's contexts(), whose
	 * flags are that context's own values; an engine that does not know
	 * it (any longer) returns -EINVAL. */
	const char *context;
	struct np_extent *extents;
	uint32_t n_extents;
	uint32_t max_extents;

	void (*done)(struct np_io *io);
	void *owner;          /* the core's */
	struct np_io *next;   /* free for the engine while it holds the io */
	void *engine_priv[4]; /* free for the engine while it holds the io */
};

/* Appends an extent to io, merging with the previous one when the flags are
 * equal. Returns false when io->max_extents is reached. */
bool np_io_add_extent(struct np_io *io, uint64_t length, uint32_t flags);

/* What the core gives an engine's per-loop handle (loop_open). */
struct np_loop_env {
	void *loop; /* uv_loop_t * */
	/* For an io the engine got from submit and cannot do without
	 * blocking: runs fn(h, io) on a worker of the core's pool, h being the
	 * handle loop_open was called with, then calls io->done on this loop.
	 * Never calls done from inside run_blocking. The core's pool takes
	 * turns between connections and is sized by --threads. */
	void (*run_blocking)(const struct np_loop_env *env, struct np_io *io,
			     void (*fn)(void *h, struct np_io *io));
};

struct np_storage_ops {
	uint32_t size;        /* sizeof(struct np_storage_ops) */
	uint32_t api_version; /* NP_STORAGE_API_VERSION */
	const char *name;     /* the ENGINE in -e NAME=ENGINE:SPEC */
	/* For serve --help: one line per form of SPEC, each the SPEC's syntax,
	 * a tab and what it serves ("SIZE\tin memory, for tests"). */
	const char *usage;

	/* Opens SPEC (the text after "ENGINE:"). On failure returns -errno and
	 * may set *err to a malloc'd message naming what was wrong. */
	int (*open)(const char *spec, bool readonly, void **handle, char **err);
	void (*close)(void *h);

	/* The export's size now. It may change while the export is served (a
	 * file grown underneath, a thin volume resized): the core asks again
	 * at every handshake and after NP_OP_RESIZE, from any thread, so it
	 * must be cheap and thread-safe. */
	uint64_t (*get_size)(void *h);
	uint32_t (*caps)(void *h);
	/* Optional: block size constraints (NBD_INFO_BLOCK_SIZE). Leave a value
	 * untouched to keep the core's default (1, 4096, the server's
	 * --max-request: 64 MiB unless set). */
	void (*block_size)(void *h, uint32_t *min, uint32_t *pref, uint32_t *max);

	/* Synchronous operations, may block; called on worker threads. */
	int (*pread)(void *h, void *buf, uint64_t len, uint64_t off);
	int (*pwrite)(void *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags);
	int (*flush)(void *h);
	int (*trim)(void *h, uint64_t len, uint64_t off, uint32_t flags);
	int (*zero)(void *h, uint64_t len, uint64_t off, uint32_t flags);
	int (*cache)(void *h, uint64_t len, uint64_t off);
	int (*extents)(void *h, struct np_io *io);
	/* Optional: the meta contexts extents() answers besides
	 * base:allocation, now ("qemu:dirty-bitmap:SNAP" ...): a malloc'd
	 * array of *n malloc'd names, which the caller frees. Called on a
	 * loop thread at each meta context option of a handshake, so it must
	 * not block for long (thin takes its pool's io_lock shared). */
	int (*contexts)(void *h, char ***names, size_t *n);

	/* Optional, called on a loop thread with a batch of READs and
	 * WRITEs: runs those it can without blocking, as few system calls as
	 * it likes, and sets each one's result; a result of -EAGAIN sends
	 * that request to the worker pool instead. A WRITE with FUA is done
	 * here only if it is durable when done (on tmpfs, say). */
	void (*rw_nowait)(void *h, struct np_io **ios, unsigned n);

	/* Optional: bytes of storage the export uses and could use, for
	 * metrics (for a thin volume: its allocated chunks and the pool). */
	int (*space)(void *h, uint64_t *used, uint64_t *capacity);

	/* Optional asynchronous path. loop_open is called once per event loop
	 * on that loop's thread and returns a per-loop handle; env lives until
	 * loop_close. submit gets every request parsed in one loop iteration
	 * at once. Requests an engine cannot do asynchronously it hands to
	 * env->run_blocking (with np_io_run_sync in fn, say), so that all
	 * blocking work shares the core's pool. */
	int (*loop_open)(void *h, const struct np_loop_env *env, void **loop_handle);
	void (*loop_close)(void *loop_handle);
	void (*submit)(void *loop_handle, struct np_io **ios, unsigned n);

	/* Optional, with NP_CAP_RESIZE: makes the export size bytes long
	 * (NP_OP_RESIZE); new space reads as zeroes. May block; runs on a
	 * worker thread through np_io_run_sync. */
	int (*resize)(void *h, uint64_t size);

	/* Optional, called on a loop thread for a large READ: a descriptor
	 * from which sendfile() sends exactly what pread would for [off,
	 * off + len) without blocking (memory is the storage), or -1. Ranges
	 * with holes should say -1: they read better as hole chunks. */
	int (*sendfile_fd)(void *h, uint64_t off, uint64_t len);

	/* Optional, called on a loop thread for a large READ when sendfile
	 * is not used: memory that holds what pread would for [off, off +
	 * len), readable without blocking and valid until close, or NULL. The
	 * core sends the reply's data from it with writev and never reads it
	 * in user space, so a file cut short underneath fails that write with
	 * EFAULT (the connection closes) instead of raising SIGBUS. Ranges
	 * with holes should say NULL: they read better as hole chunks. */
	const void *(*map_read)(void *h, uint64_t off, uint64_t len);

	/* Optional, called on a loop thread for a large WRITE whose payload
	 * is still arriving, of which the first head_len bytes (fewer than
	 * len) came with the request: writes those to [off, off + head_len)
	 * and returns memory that stands for [off, off + len), where the rest
	 * of the payload is then received straight from the socket, or NULL
	 * (the core then writes the whole payload the usual way). The data is
	 * in place as it lands, and the WRITE is done, FUA or not, when its
	 * last byte has: only for storage where that holds (memory is the
	 * storage). The core itself never touches that memory, only recv
	 * does, so a file cut short underneath fails that read with EFAULT
	 * (the connection closes) instead of raising SIGBUS. */
	void *(*map_write)(void *h, uint64_t off, uint64_t len, const void *head, size_t head_len);
};

/* Runs io through the synchronous operations of ops, including the core's
 * emulations (zero by writing, FUA by flush); sets io->result. Does not call
 * io->done. (storage/dispatch.c) */
void np_io_run_sync(const struct np_storage_ops *ops, void *h, uint32_t caps, struct np_io *io);

#endif
