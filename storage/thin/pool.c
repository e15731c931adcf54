/* Thin pools: creation, the process-wide registry of open pools, the device
 * table. See pool.h for the design. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "storage/lib/memfile.h"
#include "storage/storage.h"
#include "storage/thin/pool.h"

/* Several exports of one server may serve volumes of one pool, and RocksDB
 * lets a database be opened once per process, so open pools are shared. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct thin_pool *registry;

bool thin_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > THIN_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = v & 0xff;
		v >>= 8;
	}
}

void thin_key_dev(uint8_t *key, uint64_t id)
{
	key[0] = 'D';
	put_be64(key + 1, id);
}

void thin_key_map(uint8_t *key, uint64_t dev, uint64_t lchunk)
{
	key[0] = 'B';
	put_be64(key + 1, dev);
	put_be64(key + 9, lchunk);
}

struct thin_dev *thin_dev_find(struct thin_pool *p, const char *name)
{
	for (size_t i = 0; i < p->ndevs; i++)
		if (p->devs[i].r.kind != THIN_HIDDEN && strcmp(p->devs[i].r.name, name) == 0)
			return &p->devs[i];
	return NULL;
}

struct thin_dev *thin_dev_get(struct thin_pool *p, uint64_t id)
{
	for (size_t i = 0; i < p->ndevs; i++)
		if (p->devs[i].id == id)
			return &p->devs[i];
	return NULL;
}

int thin_map_each(struct thin_pool *p, uint64_t dev, uint64_t from, uint64_t to, thin_map_cb cb,
		  void *ctx)
{
	uint8_t lo[17], hi[17];
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	char *e = NULL;
	int rc = 0;

	thin_key_map(lo, dev, from);
	if (to == UINT64_MAX)
		thin_key_map(hi, dev + 1, 0);
	else
		thin_key_map(hi, dev, to);
	rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 17);
	it = rocksdb_create_iterator(p->db, ro);
	for (rocksdb_iter_seek(it, (char *)lo, 17); rocksdb_iter_valid(it) && rc == 0;
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		uint64_t lc = 0, pc;

		if (klen != 17 || vlen != 8)
			continue;
		for (int i = 9; i < 17; i++)
			lc = lc << 8 | k[i];
		memcpy(&pc, v, 8);
		rc = cb(ctx, lc, pc);
	}
	rocksdb_iter_get_error(it, &e);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (e) {
		free(e);
		return -EIO;
	}
	return rc;
}

static int rdb_options(struct thin_pool *p)
{
	p->opts = rocksdb_options_create();
	p->topts = rocksdb_block_based_options_create();
	p->cache = rocksdb_cache_create_lru(64 << 20);
	p->wo = rocksdb_writeoptions_create();
	p->ro = rocksdb_readoptions_create();
	if (!p->opts || !p->topts || !p->cache || !p->wo || !p->ro)
		return -ENOMEM;
	rocksdb_block_based_options_set_block_cache(p->topts, p->cache);
	/* Most lookups of a snapshot's child miss in the child's own map and
	 * fall through to the base: a bloom filter keeps those misses cheap. */
	rocksdb_block_based_options_set_filter_policy(p->topts,
						      rocksdb_filterpolicy_create_bloom(10));
	rocksdb_options_set_block_based_table_factory(p->opts, p->topts);
	/* The same holds for the memtable, where fresh mappings live. */
	rocksdb_options_set_memtable_prefix_bloom_size_ratio(p->opts, 0.05);
	rocksdb_options_set_memtable_whole_key_filtering(p->opts, 1);
	/* Every write to fresh space inserts its mapping into the memtable's
	 * skiplist, and the insert's cost grows with the skiplist: with
	 * RocksDB's 64 MiB default such writes took about 13% more CPU than
	 * with 16 MiB (perf/RESULTS-thin.md). Smaller still, the extra
	 * flushes and compactions cost more than the inserts save. */
	rocksdb_options_set_write_buffer_size(p->opts, 16 << 20);
	/* A commit without FUA stays in RocksDB's WAL buffer until a synced
	 * commit (FUA, FLUSH, a catalog change, a clean close) or a full
	 * buffer writes it out: one write(2) per commit was about a tenth of
	 * the CPU of a write to fresh space. NBD promises durability only
	 * after FLUSH or FUA, so a server killed meanwhile may lose such
	 * writes; their chunks are free again and the old contents read
	 * back, as after a power loss. */
	rocksdb_options_set_manual_wal_flush(p->opts, 1);
	rocksdb_options_increase_parallelism(p->opts, 2);
	rocksdb_options_set_info_log_level(p->opts, 2 /* WARN */);
	rocksdb_options_set_keep_log_file_num(p->opts, 2);
	return 0;
}

static void pool_free(struct thin_pool *p)
{
	if (p->db)
		rocksdb_close(p->db);
	if (p->opts)
		rocksdb_options_destroy(p->opts);
	if (p->topts)
		rocksdb_block_based_options_destroy(p->topts);
	if (p->cache)
		rocksdb_cache_destroy(p->cache);
	if (p->wo)
		rocksdb_writeoptions_destroy(p->wo);
	if (p->ro)
		rocksdb_readoptions_destroy(p->ro);
	if (p->data_fd >= 0)
		close(p->data_fd);
	free(p->devs);
	free(p->used);
	free(p->committed);
	free(p->pending);
	free(p);
}

static struct thin_pool *pool_alloc(void)
{
	struct thin_pool *p = calloc(1, sizeof(*p));
	pthread_rwlockattr_t attr;

	if (!p)
		return NULL;
	p->data_fd = -1;
	p->queue_tail = &p->queue;
	/* Catalog changes must not starve behind a steady stream of I/O. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p->io_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&p->alloc_mu, NULL);
	pthread_mutex_init(&p->grow_mu, NULL);
	pthread_mutex_init(&p->commit_mu, NULL);
	pthread_mutex_init(&p->big_write, NULL);
	for (int i = 0; i < THIN_STRIPES; i++)
		pthread_rwlock_init(&p->stripes[i], NULL);
	return p;
}

size_t thin_meta_len(const struct thin_meta *m)
{
	return m->version >= 2 ? sizeof(*m) : THIN_META_V1_LEN;
}

static int data_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return -errno;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = st.st_size;
	return 0;
}

/* Removes a directory of plain files (a RocksDB directory), for undoing a
 * failed init. */
static void rm_flat_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char buf[PATH_MAX + 256];

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(buf, sizeof(buf), "%s/%s", path, e->d_name);
		unlink(buf);
	}
	closedir(d);
	rmdir(path);
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

/* Opens or creates the data file. A new file starts empty and grows as
 * chunks are needed; size, when given, is how far. */
static int create_data(const char *path, uint64_t size, int *fdp, uint64_t *have, bool *created,
		       bool *grows, char **err)
{
	struct statvfs vfs;
	struct stat st;
	int fd = open(path, O_RDWR);
	int rc;

	*created = false;
	if (fd >= 0) {
		if (size)
			return close(fd),
			       np_errmsg(err, -EINVAL,
					 "--size applies to a new data file; %s exists", path);
		rc = data_size(fd, have);
		if (rc < 0) {
			close(fd);
			return np_errmsg(err, rc, "%s: not a regular file or block device", path);
		}
		*grows = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
		*fdp = fd;
		return 0;
	}
	if (errno != ENOENT)
		return np_errmsg(err, -errno, "%s: %s", path, strerror(errno));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return np_errmsg(err, -errno, "%s: %s", path, strerror(errno));
	*created = true;
	*grows = true;
	/* A maximum larger than the whole file system can never be reached:
	 * most likely a mistake. */
	if (size && fstatvfs(fd, &vfs) == 0 && size > (uint64_t)vfs.f_blocks * vfs.f_frsize) {
		close(fd);
		unlink(path);
		*created = false;
		return np_errmsg(err, -ENOSPC,
				 "%s: --size %llu is larger than its file system (%llu bytes)",
				 path, (unsigned long long)size,
				 (unsigned long long)vfs.f_blocks * vfs.f_frsize);
	}
	*have = 0;
	*fdp = fd;
	return 0;
}

int thin_pool_create(const char *dir, const char *data, uint32_t chunk_size, uint64_t size,
		     char **err)
{
	char dbpath[PATH_MAX], datapath[PATH_MAX];
	struct thin_pool *p;
	uint64_t have = 0, max;
	bool made_dir = false, made_data = false, grows = false;
	char *e = NULL;
	int rc;

	if (chunk_size < THIN_MIN_CHUNK || chunk_size > THIN_MAX_CHUNK ||
	    (chunk_size & (chunk_size - 1)))
		return np_errmsg(err, -EINVAL,
				 "chunk size %u: must be a power of two from 4K to 64M",
				 chunk_size);
	if (mkdir(dir, 0700) == 0) {
		made_dir = true;
	} else if (errno != EEXIST) {
		return np_errmsg(err, -errno, "cannot create %s: %s", dir, strerror(errno));
	} else {
		snprintf(dbpath, sizeof(dbpath), "%s/db", dir);
		if (access(dbpath, F_OK) == 0)
			return np_errmsg(err, -EEXIST, "%s: already a pool", dir);
		if (!dir_empty(dir))
			return np_errmsg(err, -ENOTEMPTY, "%s: exists and is not empty", dir);
	}
	snprintf(dbpath, sizeof(dbpath), "%s/db", dir);
	if (data)
		snprintf(datapath, sizeof(datapath), "%s", data);
	else
		snprintf(datapath, sizeof(datapath), "%s/data", dir);

	p = pool_alloc();
	if (!p) {
		rc = -ENOMEM;
		goto out_rmdir;
	}
	rc = create_data(datapath, size, &p->data_fd, &have, &made_data, &grows, err);
	if (rc < 0)
		goto out_free;
	max = grows ? size / chunk_size : have / chunk_size;
	if (max == 0 && (!grows || size)) {
		rc = np_errmsg(err, -ENOSPC, "%s: %llu bytes is smaller than one %u-byte chunk",
			       datapath, (unsigned long long)(size ? size : have), chunk_size);
		goto out_free;
	}
	if (have / chunk_size > THIN_MAX_CHUNKS || max > THIN_MAX_CHUNKS) {
		rc = np_errmsg(err, -EFBIG, "%s: more than 2^32 chunks; use a larger --chunk-size",
			       datapath);
		goto out_free;
	}
	if (!realpath(datapath, p->meta.data_path)) {
		rc = np_errmsg(err, -errno, "%s: %s", datapath, strerror(errno));
		goto out_free;
	}
	memcpy(p->meta.magic, THIN_MAGIC, 8);
	p->meta.version = 2;
	p->meta.chunk_size = chunk_size;
	p->meta.nchunks = have / chunk_size;
	p->meta.next_dev = 1;
	/* A block device keeps its size: its maximum is what it has. */
	p->meta.max_chunks = max;

	rc = rdb_options(p);
	if (rc < 0)
		goto out_free;
	rocksdb_options_set_create_if_missing(p->opts, 1);
	rocksdb_options_set_error_if_exists(p->opts, 1);
	p->db = rocksdb_open(p->opts, dbpath, &e);
	if (e) {
		rc = np_errmsg(err, -EIO, "%s: %s", dbpath, e);
		free(e);
		goto out_free;
	}
	/* An empty bitmap needs no keys: a missing segment is all free. */
	{
		rocksdb_writebatch_t *b = rocksdb_writebatch_create();

		rocksdb_writebatch_put(b, "M", 1, (const char *)&p->meta, thin_meta_len(&p->meta));
		rocksdb_writeoptions_set_sync(p->wo, 1);
		rocksdb_write(p->db, p->wo, b, &e);
		rocksdb_writebatch_destroy(b);
		if (e) {
			rc = np_errmsg(err, -EIO, "%s: %s", dbpath, e);
			free(e);
		}
	}
	if (rc == 0 && fsync(p->data_fd) < 0)
		rc = np_errmsg(err, -errno, "%s: fsync: %s", datapath, strerror(errno));
	if (rc == 0) {
		/* The new names (db/, data) must survive a power loss too. */
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || fsync(dfd) < 0)
			rc = np_errmsg(err, -errno, "%s: fsync: %s", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
	}
	pool_free(p);
	if (rc < 0)
		goto out_undo;
	return 0;

out_free:
	pool_free(p);
out_undo:
	rm_flat_dir(dbpath);
	if (made_data)
		unlink(datapath);
out_rmdir:
	if (made_dir)
		rmdir(dir);
	return rc;
}

static int load_devs(struct thin_pool *p, char **err)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(p->db, p->ro);
	char *e = NULL;
	int rc = 0;

	for (rocksdb_iter_seek(it, "D", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		struct thin_dev *d;

		if (klen != 9 || k[0] != 'D')
			break;
		if (vlen != sizeof(struct thin_dev_rec)) {
			rc = np_errmsg(err, -EUCLEAN, "%s: corrupt device record", p->dir);
			break;
		}
		if (p->ndevs == p->capdevs) {
			size_t cap = p->capdevs ? p->capdevs * 2 : 16;
			void *n = realloc(p->devs, cap * sizeof(*p->devs));

			if (!n) {
				rc = -ENOMEM;
				break;
			}
			p->devs = n;
			p->capdevs = cap;
		}
		d = &p->devs[p->ndevs++];
		d->id = 0;
		for (int i = 1; i < 9; i++)
			d->id = d->id << 8 | (uint8_t)k[i];
		memcpy(&d->r, v, sizeof(d->r));
	}
	rocksdb_iter_get_error(it, &e);
	if (e) {
		rc = np_errmsg(err, -EIO, "%s: %s", p->dir, e);
		free(e);
	}
	rocksdb_iter_destroy(it);
	return rc;
}

static struct thin_pool *registry_find(const char *dir)
{
	for (struct thin_pool *p = registry; p; p = p->next)
		if (strcmp(p->dir, dir) == 0)
			return p;
	return NULL;
}

/* Whether and how far the pool may grow (pool.h). */
static int growth_limits(struct thin_pool *p)
{
	uint64_t cs = p->meta.chunk_size, cap;
	struct statvfs vfs;
	struct stat st, db;
	char dbpath[PATH_MAX + 8];

	p->cap_chunks = p->meta.nchunks;
	if (fstat(p->data_fd, &st) < 0)
		return -errno;
	p->grows = p->meta.version >= 2 && S_ISREG(st.st_mode);
	if (!p->grows)
		return 0;
	if (fstatvfs(p->data_fd, &vfs) < 0)
		return -errno;
	if (p->meta.max_chunks) {
		cap = p->meta.max_chunks;
	} else {
		/* The file system's size as it is now bounds the bitmaps: a
		 * file system enlarged later counts from the next open. */
		cap = (uint64_t)vfs.f_blocks * vfs.f_frsize / cs;
		if (cap > THIN_MAX_CHUNKS)
			cap = THIN_MAX_CHUNKS;
	}
	if (cap > p->cap_chunks)
		p->cap_chunks = cap;
	p->grow_chunks = THIN_GROW_BYTES / cs ? THIN_GROW_BYTES / cs : 1;
	/* A database that cannot write its log breaks the pool: when it
	 * shares the data's file system, growth leaves it a sixteenth of
	 * that, at least 48 MiB (RocksDB preallocates each log file at 1.1
	 * times the 16 MiB write buffer) and at most 256 MiB, but never more
	 * than a quarter of a small file system. */
	snprintf(dbpath, sizeof(dbpath), "%s/db", p->dir);
	if (stat(dbpath, &db) == 0 && db.st_dev == st.st_dev) {
		uint64_t fs = (uint64_t)vfs.f_blocks * vfs.f_frsize;

		p->fs_reserve = fs / 16 < (48ULL << 20) ? 48ULL << 20 : fs / 16;
		if (p->fs_reserve > (256ULL << 20))
			p->fs_reserve = 256ULL << 20;
		if (p->fs_reserve > fs / 4)
			p->fs_reserve = fs / 4;
	}
	return 0;
}

static int pool_load(struct thin_pool *p, char **err)
{
	char dbpath[PATH_MAX + 8];
	char *e = NULL, *v;
	size_t vlen;
	uint64_t have;
	int rc;

	snprintf(dbpath, sizeof(dbpath), "%s/db", p->dir);
	if (access(dbpath, F_OK) < 0)
		return np_errmsg(err, -ENOENT, "%s: not a thin pool (no db; see volume init)",
				 p->dir);
	rc = rdb_options(p);
	if (rc < 0)
		return rc;
	p->db = rocksdb_open(p->opts, dbpath, &e);
	if (e) {
		bool locked = strstr(e, "lock") != NULL;

		rc = np_errmsg(err, locked ? -EBUSY : -EIO, "%s: %s%s", p->dir, e,
			       locked ? " (another process has the pool open)" : "");
		free(e);
		return rc;
	}
	v = rocksdb_get(p->db, p->ro, "M", 1, &vlen, &e);
	if (e) {
		rc = np_errmsg(err, -EIO, "%s: %s", p->dir, e);
		free(e);
		return rc;
	}
	if (!v || vlen < THIN_META_V1_LEN || memcmp(v, THIN_MAGIC, 8) != 0) {
		free(v);
		return np_errmsg(err, -EINVAL, "%s: not an nbdplex thin pool", p->dir);
	}
	memcpy(&p->meta, v, vlen < sizeof(p->meta) ? vlen : sizeof(p->meta));
	free(v);
	if (vlen != thin_meta_len(&p->meta))
		return np_errmsg(err, -EINVAL, "%s: pool record of version %u has %zu bytes",
				 p->dir, p->meta.version, vlen);
	p->chunk_shift = __builtin_ctz(p->meta.chunk_size);
	p->data_fd = open(p->meta.data_path, O_RDWR | O_CLOEXEC);
	if (p->data_fd < 0)
		return np_errmsg(err, -errno, "%s: data %s: %s", p->dir, p->meta.data_path,
				 strerror(errno));
	p->data_in_memory = np_fd_in_memory(p->data_fd);
	rc = data_size(p->data_fd, &have);
	if (rc < 0 || have < p->meta.nchunks * p->meta.chunk_size)
		return np_errmsg(err, rc < 0 ? rc : -EUCLEAN,
				 "%s: data %s is smaller than the pool", p->dir, p->meta.data_path);
	rc = growth_limits(p);
	if (rc < 0)
		return np_errmsg(err, rc, "%s: data %s: %s", p->dir, p->meta.data_path,
				 strerror(-rc));
	rc = load_devs(p, err);
	if (rc < 0)
		return rc;
	rc = thin_bitmap_load(p);
	if (rc < 0)
		return np_errmsg(err, rc, "%s: cannot load the allocation bitmap", p->dir);
	return 0;
}

int thin_pool_open(const char *dir, bool with_control, struct thin_pool **out, char **err)
{
	char real[PATH_MAX];
	struct thin_pool *p;
	struct stat st;
	int rc;

	if (!realpath(dir, real) || stat(real, &st) < 0)
		return np_errmsg(err, -errno, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return np_errmsg(err, -ENOTDIR, "%s: not a directory", dir);
	pthread_mutex_lock(&registry_mu);
	p = registry_find(real);
	if (p) {
		p->refs++;
		pthread_mutex_unlock(&registry_mu);
		*out = p;
		return 0;
	}
	p = pool_alloc();
	if (!p) {
		pthread_mutex_unlock(&registry_mu);
		return -ENOMEM;
	}
	snprintf(p->dir, sizeof(p->dir), "%s", real);
	rc = pool_load(p, err);
	if (rc == 0 && with_control)
		rc = thin_control_start(p, err);
	if (rc < 0) {
		pool_free(p);
		pthread_mutex_unlock(&registry_mu);
		return rc;
	}
	p->refs = 1;
	p->next = registry;
	registry = p;
	pthread_mutex_unlock(&registry_mu);
	*out = p;
	return 0;
}

void thin_pool_close(struct thin_pool *p)
{
	struct thin_pool **pp;

	pthread_mutex_lock(&registry_mu);
	if (--p->refs > 0) {
		pthread_mutex_unlock(&registry_mu);
		return;
	}
	for (pp = &registry; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&registry_mu);
	thin_control_stop(p);
	/* Whatever was written without FUA or FLUSH becomes durable on a clean
	 * close, as a file engine's data would through the page cache. */
	if (!p->broken) {
		struct thin_txn t = {.sync = true};

		thin_commit(p, &t);
		thin_txn_reset(&t);
	}
	pool_free(p);
}
