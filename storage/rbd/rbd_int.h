/* Internal declarations of the rbd engine, shared by rbd.c (the cluster,
 * open, the synchronous operations) and rbd_aio.c (the per-loop path).
 * Nothing here is visible to the core. */
#ifndef NP_STORAGE_RBD_INT_H
#define NP_STORAGE_RBD_INT_H

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/storage.h"

struct rbd_cluster;

struct rbd_handle {
	struct rbd_cluster *cluster;
	rados_ioctx_t ioctx;
	rbd_image_t image;
	bool readonly; /* a snapshot, or the export is read-only */
	/* librbd signals finished requests here (rbd_set_image_notification);
	 * every loop polls it. */
	int efd;
	/* Refreshed by librbd's header watch when the image is resized by
	 * anyone, so get_size never waits for the cluster. */
	_Atomic uint64_t size;
	uint64_t watch;
	bool watching;
	char *name; /* POOL/IMAGE[@SNAP], for messages */
};

/* What the core's op codes (enum np_op) mean to this engine. */
enum rbd_op {
	RBD_OP_READ,
	RBD_OP_WRITE,
	RBD_OP_FLUSH,
	RBD_OP_TRIM,
	RBD_OP_ZERO,
	RBD_OP_CACHE,
	RBD_OP_BLOCKING, /* BLOCK_STATUS, RESIZE: run on a thread */
	RBD_OP_INVALID,
};
enum rbd_op rbd_op_of(const struct np_io *io);

uint32_t rbd_caps(void *h);

extern const struct np_storage_ops np_storage_rbd;

/* The asynchronous path, in rbd_aio.c. */
int rbd_loop_open(void *h, const struct np_loop_env *env, void **loop_handle);
void rbd_loop_close(void *loop_handle);
void rbd_submit(void *loop_handle, struct np_io **ios, unsigned n);

#endif
