// SPDX-License-Identifier: GPL-2.0
/*
 * nbdplex: a blk-mq client for NBD servers that spreads each disk's
 * requests over several TCP channels. Userspace (`nbdplex attach`) does the
 * handshake and hands connected sockets to this driver through the control
 * device; the driver only moves requests and replies.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/file.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>

#include "npk.h"

#define NPK_MINORS	16

static unsigned int dead_timeout = 30;
module_param(dead_timeout, uint, 0444);
MODULE_PARM_DESC(dead_timeout,
		 "Seconds requests wait for a channel before failing with EIO (default 30)");

unsigned int npk_io_timeout = 60;
module_param_named(io_timeout, npk_io_timeout, uint, 0444);
MODULE_PARM_DESC(io_timeout,
		 "Seconds before a request's channel is presumed stuck and dropped (default 60)");

static unsigned int max_request_kb = 4096;
module_param(max_request_kb, uint, 0444);
MODULE_PARM_DESC(max_request_kb, "Largest request in KiB, 64..32768 (default 4096)");

static unsigned int queue_depth = 128;
module_param(queue_depth, uint, 0444);
MODULE_PARM_DESC(queue_depth, "Requests in flight per hardware queue (default 128)");

static int npk_major;
static DEFINE_IDR(npk_idr);
static DEFINE_MUTEX(npk_ctl_mutex);

static const struct block_device_operations npk_fops = {
	.owner = THIS_MODULE,
};

struct npk_chan *npk_chan_get_slot(struct npk_dev *dev, int slot)
{
	struct npk_chan *chan;

	spin_lock(&dev->lock);
	chan = dev->chans[slot];
	if (chan)
		kref_get(&chan->ref);
	spin_unlock(&dev->lock);
	return chan;
}

/* Takes a dead channel out of the disk's table, once. */
void npk_dev_chan_gone(struct npk_dev *dev, struct npk_chan *chan)
{
	bool found = false;

	spin_lock(&dev->lock);
	if (dev->chans[chan->slot] == chan) {
		dev->chans[chan->slot] = NULL;
		found = true;
		if (--dev->nr_chans == 0)
			dev->dead_since = jiffies ?: 1;
	}
	spin_unlock(&dev->lock);
	if (found)
		kref_put(&chan->ref, npk_chan_release);
}

static void npk_set_limits(struct npk_dev *dev, u32 bs)
{
	struct request_queue *q = dev->disk->queue;
	unsigned int big = round_down(UINT_MAX, bs) >> SECTOR_SHIFT;

	blk_queue_logical_block_size(q, bs);
	blk_queue_physical_block_size(q, bs);
	blk_queue_max_hw_sectors(q, clamp(max_request_kb, 64U, 32768U) * 2);
	/* The block layer caps the soft limit lower; the server takes it all. */
	q->limits.max_sectors = queue_max_hw_sectors(q);
	blk_queue_max_segments(q, USHRT_MAX);
	blk_queue_max_segment_size(q, UINT_MAX);
	blk_queue_rq_timeout(q, npk_io_timeout * HZ);
	if (dev->flags & NBD_FLAG_SEND_TRIM) {
		blk_queue_max_discard_sectors(q, big);
		q->limits.discard_granularity = bs;
	}
	if (dev->flags & NPK_FLAG_SEND_WRITE_ZEROES)
		blk_queue_max_write_zeroes_sectors(q, big);
	blk_queue_write_cache(q, dev->flags & NBD_FLAG_SEND_FLUSH,
			      dev->flags & NBD_FLAG_SEND_FUA);
	if (!(dev->flags & NPK_FLAG_ROTATIONAL))
		blk_queue_flag_set(QUEUE_FLAG_NONROT, q);
	blk_queue_flag_clear(QUEUE_FLAG_ADD_RANDOM, q);
}

static int npk_add_channel(struct npk_dev *dev, struct npk_channel *arg);
static void npk_fail_all(struct npk_dev *dev);

static int npk_create(struct npk_create *arg)
{
	struct npk_channel ch;
	struct npk_dev *dev;
	struct gendisk *disk;
	u32 bs = arg->block_size;
	int ret;

	if (bs < 512 || bs > PAGE_SIZE || !is_power_of_2(bs) || !arg->size ||
	    arg->size % bs)
		return -EINVAL;
	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	spin_lock_init(&dev->lock);
	dev->flags = arg->flags;
	dev->owner = task_tgid_vnr(current);
	dev->dead_timeout = arg->dead_timeout ?: dead_timeout;
	dev->dead_since = jiffies ?: 1;

	ret = idr_alloc_cyclic(&npk_idr, dev, 0, (1 << MINORBITS) / NPK_MINORS,
			       GFP_KERNEL);
	if (ret < 0)
		goto out_free_dev;
	dev->index = ret;

	/*
	 * Each channel's receiver is one work item that runs as long as the
	 * channel lives. No WQ_MEM_RECLAIM: its rescuer takes every pending
	 * item of the queue and runs them one after another, so when it steps
	 * in (a worker slow to start, easily 10 ms under emulation) the first
	 * receiver it runs keeps the others from ever starting, and requests
	 * on their channels hang with no reply read and no failover.
	 */
	dev->rx_wq = alloc_workqueue("nbdplex%d-rx", WQ_HIGHPRI | WQ_UNBOUND, 0,
				     dev->index);
	if (!dev->rx_wq) {
		ret = -ENOMEM;
		goto out_free_idr;
	}

	dev->tag_set.ops = &npk_mq_ops;
	dev->tag_set.nr_hw_queues = num_online_cpus();
	dev->tag_set.queue_depth = clamp(queue_depth, 1U, 1024U);
	dev->tag_set.numa_node = NUMA_NO_NODE;
	dev->tag_set.cmd_size = sizeof(struct npk_cmd);
	dev->tag_set.flags = BLK_MQ_F_SHOULD_MERGE | BLK_MQ_F_BLOCKING;
	dev->tag_set.driver_data = dev;
	ret = blk_mq_alloc_tag_set(&dev->tag_set);
	if (ret)
		goto out_free_wq;

	disk = blk_mq_alloc_disk(&dev->tag_set, dev);
	if (IS_ERR(disk)) {
		ret = PTR_ERR(disk);
		goto out_free_tag_set;
	}
	dev->disk = disk;
	disk->major = npk_major;
	disk->first_minor = dev->index * NPK_MINORS;
	disk->minors = NPK_MINORS;
	disk->fops = &npk_fops;
	disk->private_data = dev;
	snprintf(disk->disk_name, DISK_NAME_LEN, NPK_DISK_PREFIX "%d", dev->index);
	/*
	 * device_add_disk() names the disk's device too, but the first
	 * channel logs before it: named now, its dev_*() messages say which
	 * disk they are about.
	 */
	ret = dev_set_name(disk_to_dev(disk), "%s", disk->disk_name);
	if (ret)
		goto out_put_disk;
	npk_set_limits(dev, bs);
	set_capacity(disk, arg->size >> SECTOR_SHIFT);
	if (dev->flags & NBD_FLAG_READ_ONLY)
		set_disk_ro(disk, true);

	ch.index = dev->index;
	ch.fd = arg->fd;
	ch.path = arg->path;
	ret = npk_add_channel(dev, &ch);
	if (ret < 0)
		goto out_put_disk;
	ret = device_add_disk(NULL, disk, npk_disk_groups);
	if (ret)
		goto out_fail_channel;
	arg->index = dev->index;
	dev_info(disk_to_dev(disk), "%llu bytes, flags %#x\n", arg->size, dev->flags);
	return 0;

out_fail_channel:
	npk_fail_all(dev);
	flush_workqueue(dev->rx_wq);
out_put_disk:
	put_disk(disk);
out_free_tag_set:
	blk_mq_free_tag_set(&dev->tag_set);
out_free_wq:
	destroy_workqueue(dev->rx_wq);
out_free_idr:
	idr_remove(&npk_idr, dev->index);
out_free_dev:
	kfree(dev);
	return ret;
}

static void npk_fail_all(struct npk_dev *dev)
{
	int i;

	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *chan = npk_chan_get_slot(dev, i);

		if (chan) {
			npk_chan_fail(chan);
			kref_put(&chan->ref, npk_chan_release);
		}
	}
}

/*
 * Fails every channel, so that in-flight and parked requests end with EIO,
 * then deletes the disk. Called with npk_ctl_mutex held.
 */
static void npk_remove(struct npk_dev *dev)
{
	spin_lock(&dev->lock);
	dev->dying = true;
	spin_unlock(&dev->lock);
	npk_fail_all(dev);
	flush_workqueue(dev->rx_wq);
	blk_mq_kick_requeue_list(dev->disk->queue);
	del_gendisk(dev->disk);
	/* del_gendisk waited for all I/O; nothing can add work any more. */
	destroy_workqueue(dev->rx_wq);
	dev_info(disk_to_dev(dev->disk), "removed\n");
	put_disk(dev->disk);
	blk_mq_free_tag_set(&dev->tag_set);
	idr_remove(&npk_idr, dev->index);
	kfree(dev);
}

static int npk_add_channel(struct npk_dev *dev, struct npk_channel *arg)
{
	struct npk_chan *chan;
	struct socket *sock;
	int ret, slot;

	if (arg->path >= NPK_MAX_PATHS)
		return -EINVAL;
	sock = sockfd_lookup(arg->fd, &ret);
	if (!sock)
		return ret;
	if (sock->ops->shutdown == sock_no_shutdown) {
		ret = -EINVAL;
		goto out_put_sock;
	}
	chan = kzalloc(sizeof(*chan), GFP_KERNEL);
	if (!chan) {
		ret = -ENOMEM;
		goto out_put_sock;
	}
	chan->dev = dev;
	chan->sock = sock;
	chan->path = arg->path;
	/*
	 * Corking is for plain TCP only: kernel TLS keeps a record open
	 * while MSG_MORE is set, and uncorking TCP does not close it.
	 */
	chan->tcp = sock->sk->sk_protocol == IPPROTO_TCP &&
		    sock->sk->sk_type == SOCK_STREAM &&
		    !inet_csk(sock->sk)->icsk_ulp_ops;
	kref_init(&chan->ref);	/* the table's reference */
	mutex_init(&chan->tx_lock);
	INIT_WORK(&chan->rx_work, npk_rx_work);
	sock->sk->sk_allocation = GFP_NOIO | __GFP_MEMALLOC;
	sock->sk->sk_use_task_frag = false;
	/*
	 * A send on a path that went down waits for socket buffer space
	 * that never comes, inside queue_rq; and blk-mq's timeout work waits
	 * for every queue_rq under way before it calls npk_timeout, so that
	 * sender would never be failed over. Bound the wait by the I/O
	 * timeout: the send then fails, and so does the channel. (0 would
	 * make every send non-blocking.)
	 */
	if (npk_io_timeout)
		sock->sk->sk_sndtimeo = npk_io_timeout * HZ;

	ret = -ENOSPC;
	spin_lock(&dev->lock);
	for (slot = 0; slot < NPK_MAX_CHANNELS; slot++) {
		if (!dev->chans[slot])
			break;
	}
	if (dev->dying) {
		ret = -ENODEV;
	} else if (slot < NPK_MAX_CHANNELS) {
		chan->slot = slot;
		dev->chans[slot] = chan;
		dev->nr_chans++;
		dev->dead_since = 0;
		kref_get(&chan->ref);	/* the receive worker's */
		ret = 0;
	}
	spin_unlock(&dev->lock);
	if (ret)
		goto out_free_chan;
	queue_work(dev->rx_wq, &chan->rx_work);
	blk_mq_kick_requeue_list(dev->disk->queue);
	dev_info(disk_to_dev(dev->disk), "channel %d up (path %u)\n", slot, chan->path);
	return slot;

out_free_chan:
	kfree(chan);
out_put_sock:
	sockfd_put(sock);
	return ret;
}

static int npk_del_channels(struct npk_dev *dev, u32 path)
{
	int i, n = 0;

	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *chan = npk_chan_get_slot(dev, i);

		if (!chan)
			continue;
		if (chan->path == path) {
			npk_chan_fail(chan);
			n++;
		}
		kref_put(&chan->ref, npk_chan_release);
	}
	return n;
}

static void npk_info(struct npk_dev *dev, struct npk_info *info)
{
	int i;

	memset(info->per_path, 0, sizeof(info->per_path));
	info->nr_channels = 0;
	info->owner = dev->owner;
	spin_lock(&dev->lock);
	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *chan = dev->chans[i];

		if (chan && !test_bit(NPK_CHAN_DEAD, &chan->flags)) {
			info->nr_channels++;
			info->per_path[chan->path]++;
		}
	}
	spin_unlock(&dev->lock);
}

/* Grows or shrinks the disk to what the server now reports. */
static int npk_resize(struct npk_dev *dev, u64 size)
{
	if (!size || size % queue_logical_block_size(dev->disk->queue))
		return -EINVAL;
	/* Logs the change and tells udev. */
	set_capacity_and_notify(dev->disk, size >> SECTOR_SHIFT);
	return 0;
}

static long npk_ctl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	union {
		struct npk_create create;
		struct npk_channel chan;
		struct npk_info info;
		struct npk_resize resize;
	} u;
	struct npk_dev *dev = NULL;
	long ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (_IOC_SIZE(cmd) > sizeof(u) ||
	    ((_IOC_DIR(cmd) & _IOC_WRITE) && copy_from_user(&u, uarg, _IOC_SIZE(cmd))))
		return -EFAULT;

	mutex_lock(&npk_ctl_mutex);
	switch (cmd) {
	case NPK_IOC_CREATE:
		ret = npk_create(&u.create);
		break;
	case NPK_IOC_ADD_CHANNEL:
	case NPK_IOC_DEL_CHANNELS:
	case NPK_IOC_INFO:
	case NPK_IOC_RESIZE:
		ret = -ENODEV;
		dev = idr_find(&npk_idr, u.chan.index);
		if (!dev)
			break;
		if (cmd == NPK_IOC_ADD_CHANNEL)
			ret = npk_add_channel(dev, &u.chan);
		else if (cmd == NPK_IOC_DEL_CHANNELS)
			ret = npk_del_channels(dev, u.chan.path);
		else if (cmd == NPK_IOC_RESIZE)
			ret = npk_resize(dev, u.resize.size);
		else
			ret = 0;
		if (cmd == NPK_IOC_INFO)
			npk_info(dev, &u.info);
		break;
	case NPK_IOC_REMOVE:
		ret = -ENODEV;
		dev = idr_find(&npk_idr, arg);
		if (dev) {
			npk_remove(dev);
			ret = 0;
		}
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&npk_ctl_mutex);
	if (ret >= 0 && (_IOC_DIR(cmd) & _IOC_READ) &&
	    copy_to_user(uarg, &u, _IOC_SIZE(cmd)))
		ret = -EFAULT;
	return ret;
}

static const struct file_operations npk_ctl_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= npk_ctl_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice npk_ctl = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= NPK_CTL_NAME,
	.fops	= &npk_ctl_fops,
};

static int __init npk_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct nbd_request) != 28);
	BUILD_BUG_ON(sizeof(struct nbd_reply) != 16);
	BUILD_BUG_ON(sizeof(struct npk_create) != 32);
	BUILD_BUG_ON(sizeof(struct npk_channel) != 16);
	BUILD_BUG_ON(sizeof(struct npk_resize) != 16);
	BUILD_BUG_ON(offsetof(struct npk_info, index) != offsetof(struct npk_channel, index));
	BUILD_BUG_ON(offsetof(struct npk_resize, index) != offsetof(struct npk_channel, index));

	npk_major = register_blkdev(0, NPK_DISK_PREFIX);
	if (npk_major < 0)
		return npk_major;
	ret = misc_register(&npk_ctl);
	if (ret)
		goto out_unregister_blkdev;
	pr_info("loaded (major %d)\n", npk_major);
	return 0;

out_unregister_blkdev:
	unregister_blkdev(npk_major, NPK_DISK_PREFIX);
	return ret;
}

static void __exit npk_exit(void)
{
	struct npk_dev *dev;
	int id;

	misc_deregister(&npk_ctl);
	mutex_lock(&npk_ctl_mutex);
	idr_for_each_entry(&npk_idr, dev, id)
		npk_remove(dev);
	mutex_unlock(&npk_ctl_mutex);
	idr_destroy(&npk_idr);
	unregister_blkdev(npk_major, NPK_DISK_PREFIX);
}

module_init(npk_init);
module_exit(npk_exit);
MODULE_DESCRIPTION("nbdplex: multi-channel NBD block device client");
MODULE_LICENSE("GPL");
