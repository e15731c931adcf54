/* A growable byte buffer for encoding messages. */
#ifndef NP_NET_BUF_H
#define NP_NET_BUF_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct np_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* Makes room for n more bytes and returns where they go, or NULL. */
static inline uint8_t *np_buf_reserve(struct np_buf *b, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return NULL;
		b->data = p;
		b->cap = cap;
	}
	b->len += n;
	return b->data + b->len - n;
}

static inline int np_buf_append(struct np_buf *b, const void *src, size_t n)
{
	uint8_t *p = np_buf_reserve(b, n);

	if (!p)
		return -ENOMEM;
	memcpy(p, src, n);
	return 0;
}

static inline void np_buf_free(struct np_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

#endif
