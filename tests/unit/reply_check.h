/* Reads replies built by engine/reply.c back the way a client would, for
 * the unit test and the fuzzer: every header decoded with net/codec.c,
 * every rule of the protocol that a client relies on checked. */
#ifndef NP_TESTS_REPLY_CHECK_H
#define NP_TESTS_REPLY_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "engine/reply.h"

/* The iovecs laid end to end, as the socket would carry them. */
static inline uint8_t *reply_flatten(const struct iovec *iov, unsigned n, size_t *len)
{
	size_t total = 0;
	uint8_t *p;

	for (unsigned i = 0; i < n; i++)
		total += iov[i].iov_len;
	p = malloc(total ? total : 1);
	if (!p)
		abort();
	*len = 0;
	for (unsigned i = 0; i < n; i++) {
		memcpy(p + *len, iov[i].iov_base, iov[i].iov_len);
		*len += iov[i].iov_len;
	}
	return p;
}

/* Checks the reply to a READ of len bytes at offset and writes the data it
 * carries to out (holes as zeroes). Returns NULL, or what is wrong. The
 * number of chunks and of hole chunks go to *chunks and *holes. */
static inline const char *reply_read_back(const struct np_reply_opts *o, const struct iovec *iov,
					  unsigned n_iov, uint64_t cookie, uint64_t offset,
					  uint64_t len, uint8_t *out, unsigned *chunks,
					  unsigned *holes)
{
	size_t size, at = 0;
	uint8_t *w = reply_flatten(iov, n_iov, &size);
	uint64_t pos = offset;
	const char *why = NULL;
	struct nbd_reply rep;
	int k;

	*chunks = *holes = 0;
	if (!o->structured) {
		k = nbd_reply_decode(w, size, &rep);
		if (k != NBD_SIMPLE_REPLY_SIZE || rep.magic != NBD_SIMPLE_REPLY_MAGIC)
			why = "not a simple reply";
		else if (rep.error || rep.cookie != cookie)
			why = "wrong error or cookie";
		else if (size != NBD_SIMPLE_REPLY_SIZE + len)
			why = "data of the wrong length";
		else
			memcpy(out, w + k, len);
		free(w);
		return why;
	}
	while (!why && at < size) {
		bool last;
		uint64_t start;

		k = nbd_reply_decode(w + at, size - at, &rep);
		if (k <= 0 || rep.magic != (o->extended ? NBD_EXTENDED_REPLY_MAGIC
							: NBD_STRUCTURED_REPLY_MAGIC)) {
			why = "not a chunk of the negotiated kind";
			break;
		}
		at += (size_t)k;
		++*chunks;
		last = rep.flags & NBD_REPLY_FLAG_DONE;
		if (rep.cookie != cookie || (o->extended && rep.offset != offset))
			why = "wrong cookie or offset";
		else if (rep.length > size - at || rep.length < 8)
			why = "a payload longer than the reply, or too short";
		else if (last != (at + rep.length == size))
			why = "DONE not exactly on the last chunk";
		if (why)
			break;
		start = np_get64(w + at);
		if (start != pos) {
			why = "chunks not in order or not adjacent";
		} else if (rep.type == NBD_REPLY_TYPE_OFFSET_DATA) {
			uint64_t n = rep.length - 8;

			if (n == 0 || n > offset + len - pos)
				why = "a data chunk outside the read";
			else
				memcpy(out + (pos - offset), w + at + 8, n);
			pos += n;
		} else if (rep.type == NBD_REPLY_TYPE_OFFSET_HOLE) {
			uint64_t n = rep.length == 12 ? np_get32(w + at + 8) : 0;

			if (n == 0 || n > offset + len - pos)
				why = "a bad hole chunk";
			else
				memset(out + (pos - offset), 0, n);
			pos += n;
			++*holes;
		} else {
			why = "a chunk of an unexpected type";
		}
		at += rep.length;
	}
	if (!why && pos != offset + len)
		why = "the chunks do not cover the read";
	free(w);
	return why;
}

#endif
