/* Thin pools: internal interface shared by the engine, the control socket and
 * `nbdplex volume`.
 *
 * On-disk layout of a pool directory:
 *   POOLDIR/db/           RocksDB: pool record, devices, block maps, allocation bitmap
 *   POOLDIR/data          the data file (unless `volume init --data` named another)
 *   POOLDIR/control.sock  while a server has the pool open
 *
 * Design (why snapshots are O(1)): every volume and snapshot is a "device"
 * with its own sparse block map (logical chunk -> physical chunk). A device
 * may have a base device; a lookup that finds nothing in a device's own map
 * falls through to its base, up to base_limit chunks (so that a shrink
 * followed by a grow does not resurrect old data). Snapshotting volume V
 * freezes V's current device under the snapshot's name and gives V a fresh,
 * empty device whose base is the frozen one: two records written, whatever
 * the size of V. A clone of a snapshot is a fresh device based on the
 * snapshot's. Frozen devices are never written, so a physical chunk always
 * belongs to exactly one (device, logical chunk) entry and needs no
 * reference count: sharing happens through the base chain instead, and
 * copy-on-write is "the chunk came from a base device, so allocate a new
 * one". Trimming a chunk that a base still maps writes a tombstone that stops
 * the fall-through. Deleting a snapshot folds its map into its only child
 * (O(snapshot's own chunks)); a snapshot with two or more children (clones)
 * cannot be deleted. The price of O(1) snapshots is paid on lookups: a chunk
 * that no level maps costs one (bloom-filtered) RocksDB lookup per snapshot
 * in the volume's lineage, so long-lived volumes should not keep hundreds
 * of snapshots; deleting old ones folds them and shortens the chain.
 *
 * Keys (big-endian numbers so that a device's map is one ordered range):
 *   "M"                        pool record (struct thin_meta)
 *   'D' id64                   device record (struct thin_dev_rec)
 *   'B' dev64 lchunk64         physical chunk number, or THIN_TOMBSTONE
 *   'A' seg64                  allocation bitmap segment (THIN_SEG_BYTES)
 *
 * Free space is the allocation bitmap. It is updated in the same write batch
 * as the mappings that use or release chunks, so after a crash a chunk that
 * was written but never mapped is free again, and a mapped chunk is never
 * free. A released chunk is not reused until a synced write has made its
 * release durable, so that a power loss cannot leave an old mapping pointing
 * at reused data. Commits without FUA reach the WAL file only with the next
 * synced one (RocksDB's manual WAL flush), so a killed server process, like
 * a power loss, may undo them; it never undoes a synced one.
 *
 * Lock order: pool->io_lock (shared for I/O, exclusive for catalog changes),
 * then stripe locks in ascending order, then alloc_mu or commit_mu. Readers
 * hold their chunks' stripes shared from lookup to pread, so that a chunk a
 * concurrent trim releases cannot be reused by another volume's write while
 * the read still has its number. The
 * registry lock is taken only around open and close. */
#ifndef NP_THIN_POOL_H
#define NP_THIN_POOL_H

#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <rocksdb/c.h>

#include "storage/thin/thin_admin.h"
#include "util/err.h"

#define THIN_TOMBSTONE  UINT64_MAX
#define THIN_SEG_BYTES  512 /* one bitmap segment: 4096 chunks */
#define THIN_SEG_CHUNKS (THIN_SEG_BYTES * 8)
#define THIN_STRIPES    1024
#define THIN_MAGIC      "NPTHIN01"
#define THIN_MAX_CHUNKS (1ULL << 32) /* pchunk fits a mapping cache slot */
#define THIN_GROW_BYTES (1ULL << 30) /* default growth step */

enum thin_kind {
	THIN_HIDDEN = 0, /* not written today; never matched by name */
	THIN_VOLUME = 1,
	THIN_SNAPSHOT = 2,
};

/* Values are stored in host byte order: a pool is not moved between
 * machines of different endianness. */
struct thin_meta {
	char magic[8];
	uint32_t version;
	uint32_t chunk_size;
	uint64_t nchunks;
	uint64_t next_dev;
	char data_path[PATH_MAX];
	/* Version 2 on: how far nchunks may grow; 0: while the file system
	 * has room. Version 1 records end before it. */
	uint64_t max_chunks;
};

#define THIN_META_V1_LEN offsetof(struct thin_meta, max_chunks)

struct thin_dev_rec {
	uint64_t base;       /* 0: none */
	uint64_t base_limit; /* chunks of base visible through this device */
	uint64_t size;       /* bytes */
	uint32_t nchildren;  /* devices whose base this is */
	uint32_t kind;
	char name[THIN_NAME_MAX + 1];
	char origin[THIN_NAME_MAX + 1]; /* what it was cloned or snapshotted from */
};

struct thin_dev {
	uint64_t id;
	struct thin_dev_rec r;
};

/* One level of a volume's lookup chain, flattened from the device table so
 * that the I/O path never searches it. */
struct thin_level {
	uint64_t dev;
	uint64_t limit; /* chunks below this may be mapped at this level */
};

struct thin_pool;

/* Slots of a volume's mapping cache: a power of two, and a multiple of
 * THIN_STRIPES so that every chunk a slot may hold has the same stripe.
 * 128 KiB per open volume; 1 GiB of 64 KiB chunks fits without conflicts. */
#define THIN_VCACHE_SLOTS (16 * THIN_STRIPES)

/* An open volume (an export's handle). */
struct thin_vol {
	struct thin_pool *pool;
	struct thin_vol *next;
	bool readonly;
	uint64_t size;
	struct thin_level *chain;
	unsigned nchain;
	char name[THIN_NAME_MAX + 1];
	/* Chunks the volume's own device maps (level 0 of the chain), as
	 * committed, direct-mapped: slot lchunk % THIN_VCACHE_SLOTS holds
	 * (lchunk / THIN_VCACHE_SLOTS + 1) << 32 | pchunk, or 0. It saves a
	 * RocksDB lookup per I/O to written space. A slot is read and filled
	 * under its chunk's stripe lock held shared, and changed by writes and
	 * trims under it exclusive; catalog changes, which may change the
	 * chain, empty it under io_lock exclusive. NULL: no cache. */
	uint64_t *vcache;
};

/* One metadata update; the key is at most 17 bytes. The value is val, or a
 * malloc'd blob (records) owned by the transaction. */
struct thin_op {
	uint8_t key[17];
	uint8_t klen;
	bool del;
	uint64_t val;
	void *blob;
	size_t bloblen;
};

/* A unit of group commit: its ops land in one RocksDB write batch together
 * with those of every other transaction queued at the same moment. */
struct thin_txn {
	struct thin_op *ops;
	size_t nops, capops;
	uint64_t *allocs; /* chunks that become mapped */
	size_t nallocs, capallocs;
	uint64_t *frees; /* chunks that stop being mapped */
	size_t nfrees, capfrees;
	bool sync;
	int state; /* futex word of thin_commit's waiters */
	int result;
	struct thin_txn *next;
};

struct thin_pool {
	struct thin_pool *next; /* registry */
	int refs;
	char dir[PATH_MAX];
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_cache_t *cache;
	rocksdb_block_based_table_options_t *topts;
	rocksdb_writeoptions_t *wo;
	rocksdb_readoptions_t *ro;
	int data_fd;
	struct thin_meta meta;
	uint32_t chunk_shift;
	bool no_punch;             /* the data file cannot punch holes: write zeroes (atomic) */
	bool data_in_memory;       /* the data file is on tmpfs or ramfs */
	pthread_mutex_t big_write; /* then: one large write's data at a time */

	pthread_rwlock_t io_lock;
	struct thin_dev *devs;
	size_t ndevs, capdevs;
	struct thin_vol *vols;

	/* Growth (see above). The bitmaps have room for cap_chunks, so that
	 * growing never moves them under a commit that is writing them. */
	pthread_mutex_t grow_mu;
	bool grows;
	uint64_t cap_chunks;
	uint64_t grow_chunks;
	uint64_t fs_reserve; /* bytes growth leaves free for the database */

	pthread_mutex_t alloc_mu;
	uint64_t *used;      /* committed, in flight, or released but not yet durable */
	uint64_t *committed; /* what the bitmap in the database says */
	uint64_t nfree;
	uint64_t hint;
	uint64_t *pending; /* released chunks waiting for a synced commit */
	size_t npending, cappending;

	pthread_mutex_t commit_mu;
	struct thin_txn *queue, **queue_tail;
	bool leader;
	uint64_t ngroups, ntxns; /* group commits and the transactions in them */
	int broken;              /* a failed metadata write: refuse further I/O */

	pthread_rwlock_t stripes[THIN_STRIPES]; /* writers exclusive, readers shared */

	struct np_ctl *ctl; /* POOLDIR/control.sock, when served */
};

/* thin.c */
struct np_storage_ops;
extern const struct np_storage_ops np_storage_thin;
/* Writes with io_lock already held (shared or exclusive). */
int thin_write_locked(struct thin_vol *v, const void *buf, uint64_t len, uint64_t off,
		      uint32_t flags, bool skip_holes);
/* Empties v's mapping cache; the caller holds io_lock exclusive. */
void thin_vcache_clear(struct thin_vol *v);

/* pool.c */
size_t thin_meta_len(const struct thin_meta *m);
struct thin_dev *thin_dev_find(struct thin_pool *p, const char *name);
struct thin_dev *thin_dev_get(struct thin_pool *p, uint64_t id);
void thin_key_dev(uint8_t *key, uint64_t id);
void thin_key_map(uint8_t *key, uint64_t dev, uint64_t lchunk);
/* Calls cb for each entry of dev's own map in [from, to) (to UINT64_MAX: to
 * the end), in order, until cb returns non-zero. */
typedef int (*thin_map_cb)(void *ctx, uint64_t lc, uint64_t pc);
int thin_map_each(struct thin_pool *p, uint64_t dev, uint64_t from, uint64_t to, thin_map_cb cb,
		  void *ctx);

/* alloc.c: allocator and group commit */
int thin_alloc(struct thin_pool *p, uint64_t n, uint64_t *out);
void thin_unalloc(struct thin_pool *p, const uint64_t *chunks, uint64_t n);
int thin_txn_put(struct thin_txn *t, const uint8_t *key, size_t klen, uint64_t val);
int thin_txn_del(struct thin_txn *t, const uint8_t *key, size_t klen);
int thin_txn_put_blob(struct thin_txn *t, const uint8_t *key, size_t klen, const void *v,
		      size_t vlen);
int thin_txn_alloc(struct thin_txn *t, uint64_t chunk);
int thin_txn_free(struct thin_txn *t, uint64_t chunk);
void thin_txn_reset(struct thin_txn *t);
int thin_commit(struct thin_pool *p, struct thin_txn *t);
int thin_bitmap_load(struct thin_pool *p);
uint64_t thin_pool_used(struct thin_pool *p);

int thin_pool_space(struct thin_pool *p, struct thin_space *s);

/* admin.c: the typed API of thin_admin.h, and: */
int thin_vol_refresh(struct thin_pool *p, struct thin_vol *v);
/* The check of thin_admin_check, with io_lock held exclusively. */
int thin_check(struct thin_pool *p, FILE *out);

/* control.c */
int thin_control_start(struct thin_pool *p, char **err);
void thin_control_stop(struct thin_pool *p);

#endif
