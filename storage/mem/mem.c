/* The mem engine: a sparse disk in memory, for tests. Pages are allocated on
 * first write and freed by TRIM and WRITE_ZEROES, so it reports real holes.
 * One mutex guards everything: this engine is for correctness, not speed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "util/size.h"

#define MEM_PAGE (64 * 1024)

struct mem_h {
	pthread_mutex_t lock;
	uint64_t size;
	uint64_t n_pages;
	uint8_t **pages;
};

static int mem_open(const char *spec, bool readonly, void **handle, char **err)
{
	struct mem_h *m;
	uint64_t size;

	(void)readonly;
	if (np_parse_size(spec, &size) < 0 || size == 0) {
		if (asprintf(err, "mem engine: bad size '%s' (e.g. mem:64M)", spec) < 0)
			*err = NULL;
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = size;
	m->n_pages = (size + MEM_PAGE - 1) / MEM_PAGE;
	m->pages = calloc(m->n_pages, sizeof(*m->pages));
	if (!m->pages) {
		free(m);
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	*handle = m;
	return 0;
}

static void mem_close(void *h)
{
	struct mem_h *m = h;

	for (uint64_t i = 0; i < m->n_pages; i++)
		free(m->pages[i]);
	free(m->pages);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static uint64_t mem_get_size(void *h)
{
	return ((struct mem_h *)h)->size;
}

static uint32_t mem_caps(void *h)
{
	(void)h;
	return NP_CAP_WRITE | NP_CAP_FLUSH | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO |
	       NP_CAP_FAST_ZERO | NP_CAP_MULTI_CONN | NP_CAP_EXTENTS;
}

/* Iterates over the page-sized pieces of [off, off+len): page index, offset
 * in the page and length of each. */
#define FOR_EACH_PIECE(off, len, pg, in, n)                                                        \
	for (uint64_t pos_ = (off), end_ = (off) + (len), pg, in, n;                               \
	     pos_ < end_ && ((pg = pos_ / MEM_PAGE), (in = pos_ % MEM_PAGE),                       \
			     (n = MEM_PAGE - in < end_ - pos_ ? MEM_PAGE - in : end_ - pos_), 1);  \
	     pos_ += n)

static int mem_pread(void *h, void *buf, uint64_t len, uint64_t off)
{
	struct mem_h *m = h;
	uint8_t *p = buf;

	pthread_mutex_lock(&m->lock);
	FOR_EACH_PIECE(off, len, pg, in, n)
	{
		if (m->pages[pg])
			memcpy(p, m->pages[pg] + in, n);
		else
			memset(p, 0, n);
		p += n;
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_pwrite(void *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	struct mem_h *m = h;
	const uint8_t *p = buf;
	int r = 0;

	(void)flags;
	pthread_mutex_lock(&m->lock);
	FOR_EACH_PIECE(off, len, pg, in, n)
	{
		if (!m->pages[pg] && !(m->pages[pg] = calloc(1, MEM_PAGE))) {
			r = -ENOMEM;
			break;
		}
		memcpy(m->pages[pg] + in, p, n);
		p += n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_flush(void *h)
{
	(void)h;
	return 0;
}

/* Frees whole pages and zeroes the partial ones at the edges. */
static int mem_zero(void *h, uint64_t len, uint64_t off, uint32_t flags)
{
	struct mem_h *m = h;

	(void)flags;
	pthread_mutex_lock(&m->lock);
	FOR_EACH_PIECE(off, len, pg, in, n)
	{
		if (!m->pages[pg])
			continue;
		if (n == MEM_PAGE) {
			free(m->pages[pg]);
			m->pages[pg] = NULL;
		} else {
			memset(m->pages[pg] + in, 0, n);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_extents(void *h, struct np_io *io)
{
	struct mem_h *m = h;
	bool more = true;

	pthread_mutex_lock(&m->lock);
	FOR_EACH_PIECE(io->offset, io->len, pg, in, n)
	{
		(void)in;
		more = np_io_add_extent(io, n, m->pages[pg] ? 0 : NP_EXTENT_HOLE | NP_EXTENT_ZERO);
		if (!more)
			break;
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_space(void *h, uint64_t *used, uint64_t *capacity)
{
	struct mem_h *m = h;
	uint64_t n = 0;

	pthread_mutex_lock(&m->lock);
	for (uint64_t i = 0; i < m->n_pages; i++)
		n += m->pages[i] != NULL;
	pthread_mutex_unlock(&m->lock);
	*used = n * MEM_PAGE;
	*capacity = m->size;
	return 0;
}

const struct np_storage_ops np_storage_mem = {
    .size = sizeof(struct np_storage_ops),
    .api_version = NP_STORAGE_API_VERSION,
    .name = "mem",
    .usage = "SIZE\tin memory, for tests",
    .open = mem_open,
    .close = mem_close,
    .get_size = mem_get_size,
    .caps = mem_caps,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .trim = mem_zero,
    .zero = mem_zero,
    .extents = mem_extents,
    .space = mem_space,
};
