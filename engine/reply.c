/* Reply building (reply.h). */
#include <string.h>

#include "engine/reply.h"
#include "net/handshake.h"

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static unsigned add_chunk(const struct np_reply_opts *o, uint8_t **h, struct iovec *iov, unsigned n,
			  uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
			  uint64_t length)
{
	size_t k = nbd_chunk_encode(*h, o->extended, flags, type, cookie, offset, length);

	iov[n].iov_base = *h;
	iov[n].iov_len = k;
	*h += k;
	return n + 1;
}

/* Granule k of a read covers [base + k * g, base + (k + 1) * g) clipped to
 * the read, where base is the read's offset rounded down to the hole block
 * and g the smallest multiple of it that needs at most 64 granules. */
static uint64_t granule(uint64_t offset, uint64_t len, uint64_t *base)
{
	uint64_t end = offset + len, g = NP_REPLY_HOLE_BLOCK;

	*base = offset / NP_REPLY_HOLE_BLOCK * NP_REPLY_HOLE_BLOCK;
	while ((end - *base + g - 1) / g > 64)
		g += NP_REPLY_HOLE_BLOCK;
	return g;
}

uint64_t np_reply_zero_mask(const void *data, uint64_t offset, uint64_t len)
{
	uint64_t base, g = granule(offset, len, &base), end = offset + len, mask = 0;

	for (unsigned k = 0; base + k * g < end; k++) {
		uint64_t a = base + k * g < offset ? offset : base + k * g;
		uint64_t b = base + (k + 1) * g > end ? end : base + (k + 1) * g;

		if (all_zero((const uint8_t *)data + (a - offset), b - a))
			mask |= 1ULL << k;
	}
	return mask;
}

static unsigned simple(uint64_t cookie, uint32_t error, uint8_t *hdr, struct iovec *iov)
{
	nbd_simple_reply_encode(hdr, error, cookie);
	iov[0].iov_base = hdr;
	iov[0].iov_len = NBD_SIMPLE_REPLY_SIZE;
	return 1;
}

unsigned np_reply_read(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset,
		       const void *data, uint64_t len, uint64_t zero_mask, uint8_t *hdr,
		       struct iovec *iov)
{
	uint64_t end = offset + len, pos = offset, base, g;
	unsigned chunks = 0, k = 0, n = 0;

	if (!o->structured) {
		n = simple(cookie, 0, hdr, iov);
		iov[n].iov_base = (void *)data;
		iov[n].iov_len = len;
		return n + 1;
	}
	g = granule(offset, len, &base);
	while (pos < end) {
		bool zero = zero_mask >> k & 1;
		uint16_t flags;
		uint64_t run_end;

		/* Extend over granules of the same kind; the last chunk
		 * allowed takes the rest as data. */
		if (++chunks == NP_REPLY_MAX_CHUNKS && zero)
			zero = false;
		do {
			k++;
			run_end = base + k * g > end ? end : base + k * g;
		} while (run_end < end &&
			 (chunks == NP_REPLY_MAX_CHUNKS || (zero_mask >> k & 1) == zero));
		flags = run_end == end ? NBD_REPLY_FLAG_DONE : 0;
		if (zero) {
			n = add_chunk(o, &hdr, iov, n, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie,
				      offset, 12);
			np_put64(hdr, pos);
			np_put32(hdr + 8, (uint32_t)(run_end - pos));
			iov[n - 1].iov_len += 12;
			hdr += 12;
		} else {
			n = add_chunk(o, &hdr, iov, n, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
				      offset, 8 + run_end - pos);
			np_put64(hdr, pos);
			iov[n - 1].iov_len += 8;
			hdr += 8;
			iov[n].iov_base = (uint8_t *)data + (pos - offset);
			iov[n].iov_len = run_end - pos;
			n++;
		}
		pos = run_end;
	}
	return n;
}

unsigned np_reply_error(const struct np_reply_opts *o, uint16_t cmd, uint64_t cookie,
			uint64_t offset, uint32_t error, uint8_t *hdr, struct iovec *iov)
{
	bool content = cmd == NBD_CMD_READ || cmd == NBD_CMD_BLOCK_STATUS;
	uint8_t *p = hdr;

	if (!o->extended && !(o->structured && content))
		return simple(cookie, error, hdr, iov);
	add_chunk(o, &p, iov, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, offset, 6);
	np_put32(p, error);
	np_put16(p + 4, 0); /* no message */
	iov[0].iov_len += 6;
	return 1;
}

unsigned np_reply_ok(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset, uint8_t *hdr,
		     struct iovec *iov)
{
	if (!o->extended)
		return simple(cookie, 0, hdr, iov);
	return add_chunk(o, &hdr, iov, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, offset,
			 0);
}

/* How many descriptors answer: the extents up to len, only one with
 * req_one, and at least one. */
static uint32_t n_descriptors(uint64_t len, bool req_one, const struct np_extent *ext,
			      uint32_t n_ext)
{
	uint64_t total = 0;
	uint32_t n;

	if (len == 0)
		return 0;
	if (n_ext == 0 || req_one)
		return 1;
	for (n = 0; n < n_ext && total < len; n++)
		total += ext[n].length > len - total ? len - total : ext[n].length;
	return n;
}

_Static_assert(NP_HS_MAX_META <= NP_REPLY_MAX_CHUNKS, "one chunk per context fits a reply");

size_t np_reply_block_status_size(const struct np_reply_opts *o, uint64_t len, bool req_one,
				  const struct np_reply_meta *m, unsigned n_meta)
{
	size_t n = 0;

	for (unsigned k = 0; k < n_meta; k++)
		n += n_descriptors(len, req_one, m[k].ext, m[k].n_ext);
	return n * (o->extended ? 16 : 8);
}

/* One context's chunk: its descriptors at payload, its header at *hdr. */
static unsigned context_chunk(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset,
			      uint64_t len, bool req_one, const struct np_reply_meta *m, bool last,
			      uint8_t **hdr, struct iovec *iov, unsigned n_iov, uint8_t *payload)
{
	struct np_extent whole = {len, 0};
	const struct np_extent *ext = m->n_ext ? m->ext : &whole;
	uint32_t n = n_descriptors(len, req_one, m->ext, m->n_ext);
	size_t each = o->extended ? 16 : 8;
	uint64_t total = 0;
	uint8_t *p;

	for (uint32_t i = 0; i < n; i++) {
		/* Extents past the requested range are trimmed to it. */
		uint64_t l = ext[i].length > len - total ? len - total : ext[i].length;

		total += l;
		if (o->extended) {
			np_put64(payload + i * 16, l);
			np_put64(payload + i * 16 + 8, ext[i].flags);
		} else {
			np_put32(payload + i * 8, (uint32_t)l);
			np_put32(payload + i * 8 + 4, ext[i].flags);
		}
	}
	n_iov =
	    add_chunk(o, hdr, iov, n_iov, last ? NBD_REPLY_FLAG_DONE : 0,
		      o->extended ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS,
		      cookie, offset, (o->extended ? 8 : 4) + n * each);
	p = *hdr;
	np_put32(p, m->id);
	if (o->extended)
		np_put32(p + 4, n);
	iov[n_iov - 1].iov_len += o->extended ? 8 : 4;
	*hdr += o->extended ? 8 : 4;
	iov[n_iov].iov_base = payload;
	iov[n_iov].iov_len = n * each;
	return n_iov + 1;
}

unsigned np_reply_block_status(const struct np_reply_opts *o, uint64_t cookie, uint64_t offset,
			       uint64_t len, bool req_one, const struct np_reply_meta *m,
			       unsigned n_meta, uint8_t *hdr, struct iovec *iov, uint8_t *payload)
{
	unsigned n_iov = 0;

	for (unsigned k = 0; k < n_meta; k++) {
		n_iov = context_chunk(o, cookie, offset, len, req_one, &m[k], k + 1 == n_meta, &hdr,
				      iov, n_iov, payload);
		payload += iov[n_iov - 1].iov_len;
	}
	return n_iov;
}
