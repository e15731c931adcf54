/* Thin pools: the chunk allocator and group commit.
 *
 * Writers put their metadata changes in a transaction and queue it; the
 * first writer that finds no commit in progress becomes the leader, takes the
 * whole queue, writes it as one RocksDB batch (with the bitmap segments it
 * touches) and wakes the others. While a leader writes, the next group
 * gathers behind it, and the leader hands the lead to the first of it, so a
 * busy pool commits many writes per WAL write. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#include "storage/thin/pool.h"

static void bit_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ULL << (i % 64);
}

static void bit_clear(uint64_t *b, uint64_t i)
{
	b[i / 64] &= ~(1ULL << (i % 64));
}

/* Bitmaps are allocated in whole segments so that a segment can be copied
 * to and from the database without bounds arithmetic, and for cap_chunks,
 * so that growing the pool never reallocates them. */
static uint64_t words_for(uint64_t nchunks)
{
	uint64_t segs = (nchunks + THIN_SEG_CHUNKS - 1) / THIN_SEG_CHUNKS;

	return segs * (THIN_SEG_BYTES / 8);
}

int thin_bitmap_load(struct thin_pool *p)
{
	uint64_t words = words_for(p->cap_chunks), have = words_for(p->meta.nchunks);
	rocksdb_iterator_t *it;
	uint64_t nused = 0;
	char *e = NULL;

	/* Large bitmaps come from mmap, zeroed as they are touched: only
	 * the pool's present size costs memory. */
	p->committed = calloc(words, 8);
	p->used = calloc(words, 8);
	if (!p->committed || !p->used)
		return -ENOMEM;
	it = rocksdb_create_iterator(p->db, p->ro);
	for (rocksdb_iter_seek(it, "A", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		uint64_t seg = 0;

		if (klen != 9 || k[0] != 'A')
			break;
		for (int i = 1; i < 9; i++)
			seg = seg << 8 | (uint8_t)k[i];
		if (vlen != THIN_SEG_BYTES || (seg + 1) * THIN_SEG_BYTES / 8 > have)
			continue;
		memcpy((char *)p->committed + seg * THIN_SEG_BYTES, v, THIN_SEG_BYTES);
	}
	rocksdb_iter_get_error(it, &e);
	rocksdb_iter_destroy(it);
	if (e) {
		free(e);
		return -EIO;
	}
	for (uint64_t i = p->meta.nchunks; i < have * 64; i++)
		bit_clear(p->committed, i);
	for (uint64_t w = 0; w < have; w++)
		nused += __builtin_popcountll(p->committed[w]);
	memcpy(p->used, p->committed, have * 8);
	p->nfree = p->meta.nchunks - nused;
	return 0;
}

uint64_t thin_pool_used(struct thin_pool *p)
{
	uint64_t n;

	pthread_mutex_lock(&p->alloc_mu);
	n = p->meta.nchunks - p->nfree - p->npending;
	pthread_mutex_unlock(&p->alloc_mu);
	return n;
}

/* Bytes the data file may reach on its file system now: what it holds
 * plus what is free, less the reserve for the database. */
static int fs_room(struct thin_pool *p, uint64_t *room)
{
	struct statvfs vfs;
	struct stat st;
	uint64_t free_bytes;

	if (fstat(p->data_fd, &st) < 0 || fstatvfs(p->data_fd, &vfs) < 0)
		return -errno;
	free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	free_bytes = free_bytes > p->fs_reserve ? free_bytes - p->fs_reserve : 0;
	*room = (uint64_t)st.st_blocks * 512 + free_bytes;
	return 0;
}

/* Makes room for need more chunks, in one step; see pool.h for the order
 * of the writes and why a crash between them is harmless. -ENOSPC when the
 * pool may not or cannot grow by any chunk. */
static int pool_grow(struct thin_pool *p, uint64_t need)
{
	uint32_t cs = p->meta.chunk_size;
	uint64_t have, want, step, room = 0;
	struct thin_meta m;
	struct stat st;
	char *e = NULL;
	int rc = 0;

	if (!p->grows)
		return -ENOSPC;
	pthread_mutex_lock(&p->grow_mu);
	pthread_mutex_lock(&p->alloc_mu);
	have = p->meta.nchunks;
	/* Another writer may have grown the pool while this one waited. */
	if (p->nfree >= need) {
		pthread_mutex_unlock(&p->alloc_mu);
		goto out;
	}
	pthread_mutex_unlock(&p->alloc_mu);
	step = p->grow_chunks > have / 8 ? p->grow_chunks : have / 8;
	if (step < need)
		step = need;
	want = have + step < p->cap_chunks ? have + step : p->cap_chunks;
	rc = fs_room(p, &room);
	if (rc == 0 && want > room / cs)
		want = room / cs;
	if (rc == 0 && want <= have)
		rc = -ENOSPC;
	if (rc == 0 && fstat(p->data_fd, &st) < 0)
		rc = -errno;
	/* A step cut short by a crash may have sized the file already. */
	if (rc == 0 && (uint64_t)st.st_size < want * cs &&
	    (ftruncate(p->data_fd, want * cs) < 0 || fdatasync(p->data_fd) < 0))
		rc = -errno;
	if (rc < 0)
		goto out;
	/* Catalog changes, the other writers of the record, run with io_lock
	 * held exclusively, and growers hold it (shared, or that very lock):
	 * the rest of the record cannot change meanwhile. */
	m = p->meta;
	m.nchunks = want;
	{
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();

		rocksdb_writeoptions_set_sync(wo, 1);
		rocksdb_put(p->db, wo, "M", 1, (const char *)&m, thin_meta_len(&m), &e);
		rocksdb_writeoptions_destroy(wo);
	}
	if (e) {
		free(e);
		rc = -EIO;
		goto out;
	}
	pthread_mutex_lock(&p->alloc_mu);
	p->meta.nchunks = want;
	p->nfree += want - have;
	pthread_mutex_unlock(&p->alloc_mu);
out:
	pthread_mutex_unlock(&p->grow_mu);
	return rc;
}

int thin_pool_space(struct thin_pool *p, struct thin_space *s)
{
	uint64_t cs = p->meta.chunk_size, room = 0;
	struct stat st;
	int rc;

	pthread_mutex_lock(&p->alloc_mu);
	s->used = (p->meta.nchunks - p->nfree - p->npending) * cs;
	s->allocated = p->meta.nchunks * cs;
	pthread_mutex_unlock(&p->alloc_mu);
	if (fstat(p->data_fd, &st) < 0)
		return -errno;
	s->data_size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : s->allocated;
	s->max = p->cap_chunks * cs;
	if (!p->grows) {
		s->limit = S_ISBLK(st.st_mode) ? "device" : "fixed";
		s->max = s->allocated;
	} else if (p->meta.max_chunks) {
		s->limit = "size";
	} else {
		s->limit = "fs";
		rc = fs_room(p, &room);
		if (rc < 0)
			return rc;
		room -= room % cs;
		if (room < s->max)
			s->max = room > s->allocated ? room : s->allocated;
	}
	return 0;
}

int thin_alloc(struct thin_pool *p, uint64_t n, uint64_t *out)
{
	uint64_t got = 0, words, w;
	int rc = 0;

	pthread_mutex_lock(&p->alloc_mu);
	if (p->nfree < n && p->npending > 0) {
		/* Released chunks become reusable once their release is
		 * durable: pay for one synced commit rather than fail, or
		 * grow. */
		struct thin_txn t = {.sync = true};

		pthread_mutex_unlock(&p->alloc_mu);
		thin_commit(p, &t);
		pthread_mutex_lock(&p->alloc_mu);
	}
	/* Bounded: other writers may take what a step added before this one
	 * gets to it, but each step is at least n chunks. */
	for (int tries = 0; p->nfree < n && tries < 4 && rc == 0; tries++) {
		pthread_mutex_unlock(&p->alloc_mu);
		rc = pool_grow(p, n);
		pthread_mutex_lock(&p->alloc_mu);
	}
	if (p->nfree < n) {
		pthread_mutex_unlock(&p->alloc_mu);
		return rc == -EIO ? -EIO : -ENOSPC;
	}
	words = (p->meta.nchunks + 63) / 64;
	w = p->hint / 64 % words;
	for (uint64_t k = 0; k <= words && got < n;) {
		uint64_t free_bits = ~p->used[w];

		while (free_bits && got < n) {
			uint64_t i = w * 64 + __builtin_ctzll(free_bits);

			if (i >= p->meta.nchunks)
				break;
			bit_set(p->used, i);
			out[got++] = i;
			p->nfree--;
			free_bits &= free_bits - 1;
		}
		if (got < n) {
			w = (w + 1) % words;
			k++;
		}
	}
	p->hint = w * 64;
	pthread_mutex_unlock(&p->alloc_mu);
	if (got < n) {
		/* nfree said there was room; a mismatch is a bug, not ENOSPC. */
		thin_unalloc(p, out, got);
		return -EUCLEAN;
	}
	return 0;
}

void thin_unalloc(struct thin_pool *p, const uint64_t *chunks, uint64_t n)
{
	pthread_mutex_lock(&p->alloc_mu);
	for (uint64_t i = 0; i < n; i++) {
		bit_clear(p->used, chunks[i]);
		p->nfree++;
	}
	pthread_mutex_unlock(&p->alloc_mu);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	void *a;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 8;
	a = realloc(*arr, c * elem);
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = c;
	return 0;
}

static int txn_op(struct thin_txn *t, const uint8_t *key, size_t klen, bool del, uint64_t val)
{
	struct thin_op *op;

	if (grow((void **)&t->ops, &t->capops, t->nops, sizeof(*t->ops)) < 0)
		return -ENOMEM;
	op = &t->ops[t->nops++];
	memcpy(op->key, key, klen);
	op->klen = klen;
	op->del = del;
	op->val = val;
	op->blob = NULL;
	op->bloblen = 0;
	return 0;
}

int thin_txn_put(struct thin_txn *t, const uint8_t *key, size_t klen, uint64_t val)
{
	return txn_op(t, key, klen, false, val);
}

int thin_txn_del(struct thin_txn *t, const uint8_t *key, size_t klen)
{
	return txn_op(t, key, klen, true, 0);
}

int thin_txn_put_blob(struct thin_txn *t, const uint8_t *key, size_t klen, const void *v,
		      size_t vlen)
{
	void *b = malloc(vlen);

	if (!b || txn_op(t, key, klen, false, 0) < 0) {
		free(b);
		return -ENOMEM;
	}
	memcpy(b, v, vlen);
	t->ops[t->nops - 1].blob = b;
	t->ops[t->nops - 1].bloblen = vlen;
	return 0;
}

int thin_txn_alloc(struct thin_txn *t, uint64_t chunk)
{
	if (grow((void **)&t->allocs, &t->capallocs, t->nallocs, 8) < 0)
		return -ENOMEM;
	t->allocs[t->nallocs++] = chunk;
	return 0;
}

int thin_txn_free(struct thin_txn *t, uint64_t chunk)
{
	if (grow((void **)&t->frees, &t->capfrees, t->nfrees, 8) < 0)
		return -ENOMEM;
	t->frees[t->nfrees++] = chunk;
	return 0;
}

void thin_txn_reset(struct thin_txn *t)
{
	for (size_t i = 0; i < t->nops; i++)
		free(t->ops[i].blob);
	free(t->ops);
	free(t->allocs);
	free(t->frees);
	t->ops = NULL;
	t->allocs = t->frees = NULL;
	t->nops = t->nallocs = t->nfrees = 0;
	t->capops = t->capallocs = t->capfrees = 0;
}

static int mark_seg(uint64_t **segs, size_t *n, size_t *cap, uint64_t seg)
{
	for (size_t i = *n; i > 0; i--)
		if ((*segs)[i - 1] == seg)
			return 0;
	if (grow((void **)segs, cap, *n, 8) < 0)
		return -ENOMEM;
	(*segs)[(*n)++] = seg;
	return 0;
}

/* Releases chunks whose unmapping has been committed. */
static void release(struct thin_pool *p, struct thin_txn *group, bool durable)
{
	pthread_mutex_lock(&p->alloc_mu);
	if (durable) {
		for (size_t i = 0; i < p->npending; i++)
			bit_clear(p->used, p->pending[i]);
		p->nfree += p->npending;
		p->npending = 0;
	}
	for (struct thin_txn *t = group; t; t = t->next)
		for (size_t i = 0; i < t->nfrees; i++) {
			if (durable) {
				bit_clear(p->used, t->frees[i]);
				p->nfree++;
			} else if (grow((void **)&p->pending, &p->cappending, p->npending, 8) ==
				   0) {
				p->pending[p->npending++] = t->frees[i];
			}
			/* else: out of memory, the chunk leaks until reopen */
		}
	pthread_mutex_unlock(&p->alloc_mu);
}

static int commit_group(struct thin_pool *p, struct thin_txn *group)
{
	rocksdb_writebatch_t *wb;
	uint64_t *segs = NULL;
	size_t nsegs = 0, capsegs = 0;
	bool sync = false;
	char *e = NULL;
	int rc = 0;

	if (p->broken)
		return -EIO;
	wb = rocksdb_writebatch_create();
	for (struct thin_txn *t = group; t; t = t->next) {
		sync |= t->sync;
		for (size_t i = 0; i < t->nops; i++) {
			struct thin_op *op = &t->ops[i];

			if (op->del)
				rocksdb_writebatch_delete(wb, (char *)op->key, op->klen);
			else if (op->blob)
				rocksdb_writebatch_put(wb, (char *)op->key, op->klen, op->blob,
						       op->bloblen);
			else
				rocksdb_writebatch_put(wb, (char *)op->key, op->klen,
						       (char *)&op->val, 8);
		}
		for (size_t i = 0; i < t->nallocs && rc == 0; i++) {
			bit_set(p->committed, t->allocs[i]);
			rc = mark_seg(&segs, &nsegs, &capsegs, t->allocs[i] / THIN_SEG_CHUNKS);
		}
		for (size_t i = 0; i < t->nfrees && rc == 0; i++) {
			bit_clear(p->committed, t->frees[i]);
			rc = mark_seg(&segs, &nsegs, &capsegs, t->frees[i] / THIN_SEG_CHUNKS);
		}
	}
	for (size_t i = 0; i < nsegs && rc == 0; i++) {
		uint8_t key[9];

		key[0] = 'A';
		for (int j = 8; j >= 1; j--)
			key[j] = segs[i] >> (8 * (8 - j)) & 0xff;
		rocksdb_writebatch_put(wb, (char *)key, 9,
				       (char *)p->committed + segs[i] * THIN_SEG_BYTES,
				       THIN_SEG_BYTES);
	}
	free(segs);
	/* Data before metadata: a mapping must never become durable before
	 * the chunk contents it points at. */
	if (rc == 0 && sync && fdatasync(p->data_fd) < 0)
		rc = -errno;
	if (rc == 0 && rocksdb_writebatch_count(wb) > 0) {
		rocksdb_writeoptions_set_sync(p->wo, sync);
		rocksdb_write(p->db, p->wo, wb, &e);
	} else if (rc == 0 && sync) {
		rocksdb_flush_wal(p->db, 1, &e);
	}
	rocksdb_writebatch_destroy(wb);
	if (e) {
		free(e);
		rc = -EIO;
	}
	if (rc < 0) {
		/* The in-memory bitmap no longer matches the database. */
		p->broken = 1;
		return rc;
	}
	release(p, group, sync);
	return 0;
}

enum { TXN_WAITING, TXN_DONE, TXN_LEAD };

/* Each waiting writer sleeps on its own transaction's state word, so that
 * a leader wakes exactly the writers it committed for and the one that
 * leads next, rather than every waiter. */
static int txn_wait(struct thin_txn *t)
{
	int state;

	while ((state = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE)) == TXN_WAITING)
		syscall(SYS_futex, &t->state, FUTEX_WAIT_PRIVATE, TXN_WAITING, NULL, NULL, 0);
	return state;
}

/* After the store the waiter may return and its transaction go away: the
 * wake may then hit a later futex at the same address, whose waiter
 * checks its state again and sleeps on. */
static void txn_wake(struct thin_txn *t, int state)
{
	int *word = &t->state;

	__atomic_store_n(word, state, __ATOMIC_RELEASE);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int thin_commit(struct thin_pool *p, struct thin_txn *t)
{
	struct thin_txn *group, *next;
	uint64_t n = 0;
	int rc;

	t->result = 0;
	t->next = NULL;
	t->state = TXN_WAITING;
	pthread_mutex_lock(&p->commit_mu);
	*p->queue_tail = t;
	p->queue_tail = &t->next;
	if (p->leader) {
		pthread_mutex_unlock(&p->commit_mu);
		if (txn_wait(t) == TXN_DONE)
			return t->result;
		/* Handed the lead: p->leader stayed set. */
		pthread_mutex_lock(&p->commit_mu);
	}
	p->leader = true;
	group = p->queue;
	p->queue = NULL;
	p->queue_tail = &p->queue;
	pthread_mutex_unlock(&p->commit_mu);

	rc = commit_group(p, group);

	pthread_mutex_lock(&p->commit_mu);
	for (struct thin_txn *g = group; g; g = g->next)
		n++;
	p->ngroups++;
	p->ntxns += n;
	next = p->queue; /* waiting: it cannot go away before it is woken */
	p->leader = next != NULL;
	pthread_mutex_unlock(&p->commit_mu);
	if (next)
		txn_wake(next, TXN_LEAD);
	for (struct thin_txn *g = group, *gn; g; g = gn) {
		gn = g->next; /* read before the wake: g may be gone after it */
		g->result = rc;
		if (g != t)
			txn_wake(g, TXN_DONE);
	}
	return rc;
}
