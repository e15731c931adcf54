/* Thin pools: changed chunks and allocation depth (diff.c), from the maps
 * of a device chain (pool.h). Behind the meta contexts
 * qemu:dirty-bitmap:SNAP and qemu:allocation-depth of a thin export, and
 * `nbdplex volume diff` and `export --since`.
 *
 * A volume's content at a chunk is that of the first level of its chain
 * that maps it (or a tombstone: a hole). A snapshot SNAP at level j of the
 * chain sees only levels j and below, so the volume can differ from SNAP
 * only at chunks that levels 0 to j-1 map or tombstone: the walk reads
 * those levels' maps and nothing else. Its cost is in proportion to the
 * entries of those levels in the range, not to the range. */
#ifndef NP_THIN_DIFF_H
#define NP_THIN_DIFF_H

#include <stdint.h>

#include "storage/thin/pool.h"

#define THIN_CTX_DEPTH        "qemu:allocation-depth"
#define THIN_CTX_DIRTY_PREFIX "qemu:dirty-bitmap:"
#define THIN_DIRTY            1 /* the dirty bit of a qemu:dirty-bitmap extent */

/* The chain of device d, as a volume of it sees it: a malloc'd array of
 * *n levels. The caller holds io_lock. */
int thin_chain_of(struct thin_pool *p, const struct thin_dev *d, struct thin_level **chain,
		  unsigned *n);

/* Called with runs of chunks [first, first + n) and their value, in
 * order, covering the range walked; non-zero stops the walk (and is
 * returned unless negative errors come first). */
typedef int (*thin_run_cb)(void *ctx, uint64_t first, uint64_t n, uint32_t value);

/* Over chunks [first, end) of a chain: THIN_DIRTY where levels above
 * level j (a snapshot's) may make the content differ from that level's,
 * 0 where both read the same chunk or both read zeroes. The caller holds
 * io_lock shared. With next, only one round of the walk: runs go as far
 * as *next, where the caller goes on (end when done). */
int thin_dirty_runs(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
		    unsigned j, uint64_t first, uint64_t end, thin_run_cb cb, void *ctx,
		    uint64_t *next);

/* Over chunks [first, end) of a chain: 0 where no level maps the chunk (or
 * a tombstone hides it), else 1 + the level that maps it (1: the device's
 * own chunk; 2 and more: inherited). The caller holds io_lock shared.
 * next as for thin_dirty_runs. */
int thin_depth_runs(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
		    uint64_t first, uint64_t end, thin_run_cb cb, void *ctx, uint64_t *next);

/* The level of chain that is the snapshot called name, from 1, or 0. */
unsigned thin_chain_find(struct thin_pool *p, const struct thin_level *chain, unsigned nchain,
			 const char *name);

/* thin.c: opens POOLDIR/NAME read-only without a mapping cache, beside an
 * export of it if there is one (for thin_admin_read); np_storage_thin's
 * close closes it. */
int thin_open_uncached(const char *spec, void **handle, char **err);

/* The engine's side (thin.c calls them): the contexts of a volume, and
 * the extents of one of them (io->context). */
struct np_io;
int thin_vol_contexts(struct thin_vol *v, char ***names, size_t *n);
int thin_vol_context_extents(struct thin_vol *v, struct np_io *io);

#endif
