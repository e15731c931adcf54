/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Control interface of the nbdplex driver, shared by the kernel module and
 * `nbdplex attach`. Userspace opens /dev/nbdplex-ctl, creates a disk with the
 * size and transmission flags it negotiated, then hands the driver connected
 * sockets (channels), each tagged with the network path it runs over.
 */
#ifndef NBDPLEX_UAPI_H
#define NBDPLEX_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define NPK_CTL_NAME		"nbdplex-ctl"
#define NPK_DISK_PREFIX		"nbdplex"
#define NPK_MAX_CHANNELS	16
#define NPK_MAX_PATHS		16

struct npk_create {
	__u64 size;		/* bytes, a multiple of block_size */
	__u32 block_size;	/* 512..4096, a power of two */
	__u32 flags;		/* NBD transmission flags from the handshake */
	__u32 dead_timeout;	/* seconds without a channel before EIO; 0: default */
	__u32 index;		/* out: N of /dev/nbdplexN */
	__s32 fd;		/* the first channel, so the partition scan can read */
	__u32 path;		/* its path */
};

struct npk_channel {
	__u32 index;
	__s32 fd;		/* connected socket, transmission phase reached */
	__u32 path;		/* < NPK_MAX_PATHS */
	__u32 pad;
};

struct npk_info {
	__u32 index;
	__u32 nr_channels;	/* out: healthy channels */
	__u32 per_path[NPK_MAX_PATHS];	/* out: healthy channels per path */
	__s32 owner;		/* out: pid of the creator */
	__u32 pad;
};

struct npk_resize {
	__u32 index;
	__u32 pad;
	__u64 size;		/* bytes, a multiple of the disk's block size */
};

#define NPK_IOC_MAGIC		0xE5
#define NPK_IOC_CREATE		_IOWR(NPK_IOC_MAGIC, 1, struct npk_create)
#define NPK_IOC_ADD_CHANNEL	_IOW(NPK_IOC_MAGIC, 2, struct npk_channel)
#define NPK_IOC_DEL_CHANNELS	_IOW(NPK_IOC_MAGIC, 3, struct npk_channel)
#define NPK_IOC_REMOVE		_IO(NPK_IOC_MAGIC, 4)
#define NPK_IOC_INFO		_IOWR(NPK_IOC_MAGIC, 5, struct npk_info)
#define NPK_IOC_RESIZE		_IOW(NPK_IOC_MAGIC, 6, struct npk_resize)

#endif
