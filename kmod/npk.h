/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nbdplex: internal declarations of the client driver.
 *
 * Locking: npk_ctl_mutex serialises control operations (create, add,
 * remove). dev->lock (a spinlock) protects dev->chans[], nr_chans,
 * dead_since, dying and dev->paths[]. chan->tx_lock serialises sends on one socket and
 * is also the barrier that keeps a failing channel's in-flight list stable
 * while it is handed over (see npk_chan_failover()). cmd->lock is held by
 * whichever path owns a request at the moment: its sender (taken before
 * tx_lock), its channel's receiver while it reads the reply and ends it,
 * or that channel's failover while it requeues it.
 */
#ifndef NPK_H
#define NPK_H

#include <linux/blk-mq.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/nbd.h>
#include <linux/net.h>
#include <linux/version.h>
#include <linux/workqueue.h>

#include "nbdplex_uapi.h"

/*
 * The kernels the module builds on, checked here only. npk_set_limits()
 * sets the queue with the blk_queue_*() setters, the API up to 6.8; 6.9
 * hands a struct queue_limits to blk_mq_alloc_disk() instead and later
 * kernels drop the setters: a queue_limits path would be a second way to
 * do it, and one never compiled or run here (see kmod/README.md). The
 * floor is the 6.1 stable update that brought sk_use_task_frag, which
 * npk_add_channel() turns off.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 191) || \
	LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
#error "nbdplex.ko builds on Linux 6.1.191 to 6.8 only (see kmod/README.md)"
#endif

/*
 * The wire format is <linux/nbd.h>'s: struct nbd_request and nbd_reply,
 * NBD_CMD_*, and command flags in the upper 16 bits of the request's type
 * word. What 6.1's header lacks has a name of our own here, so that a newer
 * header that adds it cannot clash; where the kernel made it a macro, its
 * value is the kernel's. NBD_CMD_WRITE_ZEROES became an enum constant,
 * which the preprocessor cannot test, so its value is always ours.
 */
#define NPK_CMD_WRITE_ZEROES	6
#ifdef NBD_CMD_FLAG_NO_HOLE
#define NPK_CMD_FLAG_NO_HOLE	NBD_CMD_FLAG_NO_HOLE
#else
#define NPK_CMD_FLAG_NO_HOLE	(1 << 17)
#endif
#ifdef NBD_FLAG_ROTATIONAL
#define NPK_FLAG_ROTATIONAL	NBD_FLAG_ROTATIONAL
#else
#define NPK_FLAG_ROTATIONAL	(1 << 4)
#endif
#ifdef NBD_FLAG_SEND_WRITE_ZEROES
#define NPK_FLAG_SEND_WRITE_ZEROES	NBD_FLAG_SEND_WRITE_ZEROES
#else
#define NPK_FLAG_SEND_WRITE_ZEROES	(1 << 6)
#endif

#define NPK_CHAN_DEAD	0

struct npk_dev;

struct npk_chan {
	struct npk_dev *dev;
	struct socket *sock;
	struct kref ref;
	struct mutex tx_lock;
	struct work_struct rx_work;
	unsigned long flags;
	u32 path;
	int slot;
	bool tcp;
	u64 last_pick;		/* dev->picks when last chosen; under dev->lock */
	atomic_t reqs_inflight;
	atomic64_t bytes_inflight;
	atomic64_t reqs_total;
	atomic64_t bytes_total;
};

/*
 * What the driver learnt of one network path: how fast it moves requests
 * while it has some in flight (see npk_rate_sample()). Fixed point: bytes
 * per ms (kB/s) << NPK_RATE_SHIFT.
 */
#define NPK_RATE_SHIFT	4
struct npk_path {
	u64 rate;		/* smoothed; 0 until the first sample */
	u64 last_done;		/* ns (ktime) of its last completion */
	u64 win_bytes;		/* completed in the sample being gathered */
	u64 win_ns;		/* time busy in the sample being gathered */
};

struct npk_dev {
	struct blk_mq_tag_set tag_set;
	struct gendisk *disk;
	struct workqueue_struct *rx_wq;
	int index;
	u32 flags;
	pid_t owner;
	unsigned int dead_timeout;	/* seconds */
	spinlock_t lock;
	struct npk_chan *chans[NPK_MAX_CHANNELS];
	unsigned int nr_chans;
	u64 picks;		/* channel choices made, for npk_chan.last_pick */
	struct npk_path paths[NPK_MAX_PATHS];
	unsigned long dead_since;	/* jiffies; 0 while a channel is up */
	bool dying;
};

/* Per-request state, behind each struct request. */
struct npk_cmd {
	struct mutex lock;	/* see the top of this file */
	struct npk_chan *chan;	/* channel it is in flight on, or NULL */
	u32 gen;		/* bumped on each send; high half of the handle */
	u32 acct;		/* bytes counted in chan->bytes_inflight */
	u64 sent;		/* ns (ktime) of the last send */
};

/* Per-hardware-queue state. */
struct npk_hctx {
	unsigned long corked;	/* channel slots holding MSG_MORE data */
};

extern unsigned int npk_io_timeout;
extern const struct blk_mq_ops npk_mq_ops;
extern const struct attribute_group *npk_disk_groups[];

/* npk_io.c */
void npk_chan_release(struct kref *ref);
void npk_chan_fail(struct npk_chan *chan);
void npk_rx_work(struct work_struct *work);

/* npk_main.c */
struct npk_chan *npk_chan_get_slot(struct npk_dev *dev, int slot);
void npk_dev_chan_gone(struct npk_dev *dev, struct npk_chan *chan);

#endif
