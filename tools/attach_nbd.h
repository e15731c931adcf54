/* Client side of the NBD handshake, for nbdplex attach. */
#ifndef NP_TOOLS_ATTACH_NBD_H
#define NP_TOOLS_ATTACH_NBD_H

#include <stddef.h>
#include <stdint.h>

struct np_export_info {
	uint64_t size;
	uint16_t flags;     /* transmission flags */
	uint32_t min_block; /* 0 when the server sent no NBD_INFO_BLOCK_SIZE */
};

/* Connects to HOST[:PORT] (IPv6 as [ADDR]:PORT) and negotiates export name
 * with fixed newstyle and NBD_OPT_GO. Returns a connected socket in
 * transmission phase, or -1 with a message in err. */
int np_nbd_connect(const char *path, const char *name, struct np_export_info *info, char *err,
		   size_t errlen);

#endif
