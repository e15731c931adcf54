/* Internal declarations of the raw engine, shared by raw.c (open, the
 * synchronous operations, the range lock) and raw_aio.c (the per-loop kernel AIO
 * path). Nothing here is visible to the core. */
#ifndef NP_STORAGE_RAW_RAW_INT_H
#define NP_STORAGE_RAW_RAW_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/storage.h"

/* A locked byte range [start, end), always aligned to the block size. Every
 * writer (aligned writes, read-modify-write, zero, trim) holds one for the
 * blocks it touches, so that a read-modify-write never reads a block another
 * writer is about to change and then writes the stale copy back. */
struct raw_range {
	uint64_t start;
	uint64_t end;
	struct raw_range *prev;
	struct raw_range *next;
};

struct raw_handle {
	int fd;
	bool readonly;
	bool is_blk;
	bool rotational;
	uint32_t bs;   /* alignment of offsets, lengths and buffers for O_DIRECT */
	uint32_t pref; /* preferred block size */
	uint64_t size; /* a multiple of bs */

	/* Set once BLKZEROOUT has said the device cannot zero, so that later
	 * requests go straight to writing zeroes. */
	int no_zeroout;

	/* Protects locked and wakes writers waiting for a range. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct raw_range *locked;
};

static inline bool raw_aligned(const struct raw_handle *h, uint64_t v)
{
	return (v & (h->bs - 1)) == 0;
}

static inline bool raw_buf_aligned(const struct raw_handle *h, const void *p)
{
	return ((uintptr_t)p & (h->bs - 1)) == 0;
}

/* Takes r without blocking; returns false when an overlapping range is held. */
bool raw_range_trylock(struct raw_handle *h, struct raw_range *r, uint64_t start, uint64_t end);
/* Takes r, waiting for overlapping holders to release; worker threads only. */
void raw_range_lock(struct raw_handle *h, struct raw_range *r, uint64_t start, uint64_t end);
void raw_range_unlock(struct raw_handle *h, struct raw_range *r);

/* An O_DIRECT-capable buffer of len bytes (a multiple of h->bs), or NULL. */
void *raw_bounce_alloc(const struct raw_handle *h, uint64_t len);

uint32_t raw_caps(void *h);

extern const struct np_storage_ops np_storage_raw;

/* The asynchronous path, in raw_aio.c. */
int raw_loop_open(void *h, const struct np_loop_env *env, void **loop_handle);
void raw_loop_close(void *loop_handle);
void raw_submit(void *loop_handle, struct np_io **ios, unsigned n);

#endif
