/* Client side of the NBD handshake, for nbdplex attach. */
#ifndef NP_TOOLS_ATTACH_NBD_H
#define NP_TOOLS_ATTACH_NBD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct np_tls;

/* What --check reads from the start of the export. */
#define NP_CHECK_READ 65536

struct np_export_info {
	uint64_t size;
	uint16_t flags;     /* transmission flags */
	uint32_t min_block; /* 0 when the server sent no NBD_INFO_BLOCK_SIZE */
	char tls[128];      /* the TLS session's description; empty without TLS */
};

/* Connects to HOST[:PORT] (IPv6 as [ADDR]:PORT) and negotiates export name
 * with fixed newstyle and NBD_OPT_GO. With tls (not NULL), first upgrades
 * with NBD_OPT_STARTTLS, negotiates over TLS and hands the record layer to
 * the kernel; there is no fallback to plaintext. Returns a connected socket
 * in transmission phase, or -errno with a message in *err. */
int np_nbd_connect(const char *path, const char *name, struct np_tls *tls,
		   struct np_export_info *info, char **err);

/* Asks for the export's size and flags with a short handshake of its own
 * (NBD_OPT_INFO, then NBD_OPT_ABORT), as np_nbd_connect would negotiate
 * them. Returns 0, or -errno with a message in *err. */
int np_nbd_size(const char *path, const char *name, struct np_tls *tls, struct np_export_info *info,
		char **err);

/* Connects like np_nbd_connect, then reads the first NP_CHECK_READ bytes of
 * the export (fewer if it is smaller) through the socket as the driver
 * would, writes them to out, reports the session on stderr and
 * disconnects. Needs no driver. Returns 0, or -errno with a message in *err. */
int np_nbd_check(const char *path, const char *name, struct np_tls *tls, FILE *out, char **err);

#endif
