// SPDX-License-Identifier: GPL-2.0
/*
 * nbdplex: the data path. queue_rq sends each request on the path where it
 * will be done first by that path's learnt rate, on that path's least
 * loaded channel; one receive
 * worker per channel reads replies and completes requests; a channel that
 * fails hands its in-flight requests back to blk-mq, which sends them again
 * elsewhere.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/uio.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "npk.h"

/* How often requests parked while no channel is up look again. */
#define NPK_WAIT_MS	100
/* Weight of a request beyond its payload, so that flushes spread too. */
#define NPK_REQ_COST	512
/*
 * A path's rate is sampled over 100 ms of it being busy and smoothed with
 * a weight of 1/4 per sample that is above the smoothed rate, and of 1/2
 * per sample below it: a path that slows to a quarter has lost most of
 * its share within half a second (0.5^5 of the difference is left), one
 * that recovers wins it back within a second (0.75^10), and one sample, a
 * TCP burst or a stall of the guest, moves it little. The faster fall
 * costs less than it risks: a path given too little for one sample is
 * still measured on what it gets.
 */
#define NPK_RATE_WINDOW_NS	(100 * NSEC_PER_MSEC)
#define NPK_RATE_EWMA_UP	2
#define NPK_RATE_EWMA_DOWN	1

void npk_chan_release(struct kref *ref)
{
	struct npk_chan *chan = container_of(ref, struct npk_chan, ref);

	sockfd_put(chan->sock);
	kfree(chan);
}

/* Marks the channel dead once and wakes its receiver by shutting the socket. */
void npk_chan_fail(struct npk_chan *chan)
{
	if (test_and_set_bit(NPK_CHAN_DEAD, &chan->flags))
		return;
	dev_warn_ratelimited(disk_to_dev(chan->dev->disk),
			     "dropping channel %d (path %u)\n", chan->slot, chan->path);
	kernel_sock_shutdown(chan->sock, SHUT_RDWR);
}

/*
 * Learns the rate of chan's path from a completed request of the given
 * weight. The path was busy from the later of its previous completion and
 * this request's send, so the time it spent idle between bursts does not
 * count against it, and requests completing together on its channels add
 * up to the time the path took for all of them.
 */
static void npk_rate_sample(struct npk_chan *chan, u32 bytes, u64 sent)
{
	struct npk_dev *dev = chan->dev;
	struct npk_path *p = &dev->paths[chan->path];
	u64 now = ktime_get_ns(), start, rate;

	spin_lock(&dev->lock);
	start = max(p->last_done, sent);
	p->last_done = now;
	if (now > start)
		p->win_ns += now - start;
	p->win_bytes += bytes;
	if (p->win_ns >= NPK_RATE_WINDOW_NS) {
		rate = mul_u64_u64_div_u64(p->win_bytes,
					   NSEC_PER_MSEC << NPK_RATE_SHIFT, p->win_ns);
		if (p->rate) {
			int w = rate < p->rate ? NPK_RATE_EWMA_DOWN : NPK_RATE_EWMA_UP;

			rate = p->rate - (p->rate >> w) + (rate >> w);
		}
		p->rate = max_t(u64, rate, 1);
		p->win_bytes = 0;
		p->win_ns = 0;
	}
	spin_unlock(&dev->lock);
}

/*
 * A healthy channel with a reference, for a request of the given weight:
 * on the path where it would be done first, the one whose bytes in flight
 * over its live channels plus this request, divided by the path's learnt
 * rate, are least; there, the channel with the fewest bytes in flight.
 * Paths, not channels, share the load, so that three channels on two
 * equal paths still split it evenly, and a path twice as fast gets twice
 * the bytes. A path with no rate yet counts as fast as the fastest known,
 * so that it gets requests and a rate; with no rate known they count as
 * equal. Ties go to the path, then the channel, picked least recently, so
 * that even one request at a time uses every path.
 */
static struct npk_chan *npk_pick(struct npk_dev *dev, u32 weight)
{
	u64 bytes[NPK_MAX_PATHS], last[NPK_MAX_PATHS], rate[NPK_MAX_PATHS];
	unsigned long live = 0;
	struct npk_chan *best = NULL;
	u64 fastest = 0, lhs, rhs;
	s64 best_bytes;
	u32 path = 0, p;
	int i;

	BUILD_BUG_ON(NPK_MAX_PATHS > BITS_PER_LONG);
	spin_lock(&dev->lock);
	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *c = dev->chans[i];

		if (!c || test_bit(NPK_CHAN_DEAD, &c->flags))
			continue;
		p = c->path;
		if (!__test_and_set_bit(p, &live)) {
			bytes[p] = weight;
			last[p] = 0;
			rate[p] = dev->paths[p].rate;
			fastest = max(fastest, rate[p]);
		}
		bytes[p] += max_t(s64, atomic64_read(&c->bytes_inflight), 0);
		last[p] = max(last[p], c->last_pick);
	}
	/*
	 * bytes[p] / rate[p] < bytes[path] / rate[path], multiplied out: up to
	 * 2^32 bytes times 2^31 (kB/s << NPK_RATE_SHIFT: 134 GB/s) fits a u64.
	 */
	for_each_set_bit(p, &live, NPK_MAX_PATHS) {
		rate[p] = min_t(u64, rate[p] ?: fastest ?: 1, 1ULL << 31);
		bytes[p] = min_t(u64, bytes[p], 1ULL << 32);
	}
	if (live)
		path = __ffs(live);
	for_each_set_bit(p, &live, NPK_MAX_PATHS) {
		lhs = bytes[p] * rate[path];
		rhs = bytes[path] * rate[p];
		if (lhs < rhs || (lhs == rhs && last[p] < last[path]))
			path = p;
	}
	best_bytes = S64_MAX;
	for (i = 0; live && i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *c = dev->chans[i];
		s64 b;

		if (!c || c->path != path || test_bit(NPK_CHAN_DEAD, &c->flags))
			continue;
		b = atomic64_read(&c->bytes_inflight);
		if (b < best_bytes || (b == best_bytes && c->last_pick < best->last_pick)) {
			best = c;
			best_bytes = b;
		}
	}
	if (best) {
		best->last_pick = ++dev->picks;
		kref_get(&best->ref);
	}
	spin_unlock(&dev->lock);
	return best;
}

static void npk_acct_done(struct npk_cmd *cmd, struct npk_chan *chan)
{
	atomic_dec(&chan->reqs_inflight);
	atomic64_sub(cmd->acct, &chan->bytes_inflight);
	WRITE_ONCE(cmd->chan, NULL);
}

/* Moves all of it over the channel's socket: sends, or receives when rx. */
static int npk_sock_io(struct npk_chan *chan, struct iov_iter *it, int flags, bool rx)
{
	struct msghdr msg = { .msg_flags = MSG_NOSIGNAL | flags };
	unsigned int noreclaim = memalloc_noreclaim_save();
	int ret = 0;

	while (iov_iter_count(it)) {
		msg.msg_iter = *it;
		ret = rx ? sock_recvmsg(chan->sock, &msg, msg.msg_flags) :
			   sock_sendmsg(chan->sock, &msg);
		if (ret <= 0) {
			if (ret == 0)
				ret = -ECONNRESET;
			break;
		}
		iov_iter_advance(it, ret);
		ret = 0;
	}
	memalloc_noreclaim_restore(noreclaim);
	return ret;
}

static int npk_xmit(struct npk_chan *chan, struct iov_iter *it, bool more)
{
	return npk_sock_io(chan, it, more && chan->tcp ? MSG_MORE : 0, false);
}

static int npk_recv(struct npk_chan *chan, struct iov_iter *it)
{
	return npk_sock_io(chan, it, MSG_WAITALL, true);
}

/* Points it at the data of one bio of a request. */
static void npk_bio_iter(struct iov_iter *it, unsigned int dir, struct bio *bio)
{
	struct bvec_iter bi;
	struct bio_vec bv;
	unsigned int nr = 0;

	bio_for_each_bvec(bv, bio, bi)
		nr++;
	iov_iter_bvec(it, dir, __bvec_iter_bvec(bio->bi_io_vec, bio->bi_iter),
		      nr, bio->bi_iter.bi_size);
	it->iov_offset = bio->bi_iter.bi_bvec_done;
}

/* The request's NBD type word: the command, and its flags above bit 16. */
static int npk_cmd_type(struct request *rq, u32 *type)
{
	u32 flags = (rq->cmd_flags & REQ_FUA) ? NBD_CMD_FLAG_FUA : 0;

	switch (req_op(rq)) {
	case REQ_OP_READ:
		*type = NBD_CMD_READ | flags;
		return 0;
	case REQ_OP_WRITE:
		*type = NBD_CMD_WRITE | flags;
		return 0;
	case REQ_OP_FLUSH:
		*type = NBD_CMD_FLUSH | flags;
		return 0;
	case REQ_OP_DISCARD:
		*type = NBD_CMD_TRIM | flags;
		return 0;
	case REQ_OP_WRITE_ZEROES:
		if (rq->cmd_flags & REQ_NOUNMAP)
			flags |= NPK_CMD_FLAG_NO_HOLE;
		*type = NPK_CMD_WRITE_ZEROES | flags;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

/*
 * Pushes out data that earlier sends of this batch left corked. Dispatch
 * can run on one hctx from several tasks at once, hence the atomic bit ops:
 * whoever sets a bit pushes it at the end of its own batch at the latest,
 * and whoever clears a bit pushes that channel, even the one it just sent
 * on uncorked: another task may have corked more data there since.
 */
static void npk_uncork(struct npk_dev *dev, struct npk_hctx *h)
{
	int slot;

	for (slot = 0; slot < NPK_MAX_CHANNELS; slot++) {
		struct npk_chan *chan;

		if (!test_bit(slot, &h->corked) || !test_and_clear_bit(slot, &h->corked))
			continue;
		chan = npk_chan_get_slot(dev, slot);
		if (!chan)
			continue;
		tcp_sock_set_cork(chan->sock->sk, false);
		kref_put(&chan->ref, npk_chan_release);
	}
}

/*
 * Sends rq on chan. Returns 0 when the request is in flight on chan (even
 * if the send failed: the channel is then failed and its failover sends the
 * request again), or -EAGAIN when chan died before we could use it.
 *
 * cmd->lock is held throughout: the reply can arrive as soon as the last
 * byte is queued, and its receiver must not end the request (and free its
 * bios) while this still walks them.
 */
static int npk_send(struct npk_chan *chan, struct request *rq, bool more)
{
	struct npk_cmd *cmd = blk_mq_rq_to_pdu(rq);
	struct nbd_request hdr;
	struct kvec kv = { .iov_base = &hdr, .iov_len = sizeof(hdr) };
	bool write = req_op(rq) == REQ_OP_WRITE;
	struct iov_iter it;
	struct bio *bio;
	__be64 handle;
	u32 type;
	int ret;

	npk_cmd_type(rq, &type);
	mutex_lock(&cmd->lock);
	mutex_lock(&chan->tx_lock);
	if (test_bit(NPK_CHAN_DEAD, &chan->flags)) {
		ret = -EAGAIN;
		goto out_unlock;
	}
	cmd->gen++;
	cmd->acct = blk_rq_bytes(rq) + NPK_REQ_COST;
	atomic_inc(&chan->reqs_inflight);
	atomic64_add(cmd->acct, &chan->bytes_inflight);
	WRITE_ONCE(cmd->chan, chan);
	cmd->sent = ktime_get_ns();

	hdr.magic = cpu_to_be32(NBD_REQUEST_MAGIC);
	hdr.type = cpu_to_be32(type);
	/* 6.1's handle is char[8]; later headers add a __be64 beside it. */
	handle = cpu_to_be64((u64)cmd->gen << 32 | blk_mq_unique_tag(rq));
	memcpy(hdr.handle, &handle, sizeof(hdr.handle));
	if (req_op(rq) == REQ_OP_FLUSH) {
		hdr.from = 0;
		hdr.len = 0;
	} else {
		hdr.from = cpu_to_be64((u64)blk_rq_pos(rq) << SECTOR_SHIFT);
		hdr.len = cpu_to_be32(blk_rq_bytes(rq));
	}
	iov_iter_kvec(&it, ITER_SOURCE, &kv, 1, sizeof(hdr));
	ret = npk_xmit(chan, &it, more || write);
	if (!ret && write) {
		__rq_for_each_bio(bio, rq) {
			npk_bio_iter(&it, ITER_SOURCE, bio);
			ret = npk_xmit(chan, &it, more || bio->bi_next);
			if (ret)
				break;
		}
	}
	if (ret) {
		dev_err_ratelimited(disk_to_dev(chan->dev->disk),
				    "send on channel %d failed: %d\n", chan->slot, ret);
		npk_chan_fail(chan);
		ret = 0;
	}
out_unlock:
	mutex_unlock(&chan->tx_lock);
	mutex_unlock(&cmd->lock);
	return ret;
}

static blk_status_t npk_queue_rq(struct blk_mq_hw_ctx *hctx,
				 const struct blk_mq_queue_data *bd)
{
	struct npk_dev *dev = hctx->queue->queuedata;
	struct npk_hctx *h = hctx->driver_data;
	struct request *rq = bd->rq;
	struct npk_chan *chan;
	unsigned long since;
	u32 type;
	bool more;
	int tries, ret = -EAGAIN;

	if (npk_cmd_type(rq, &type))
		return BLK_STS_NOTSUPP;
	blk_mq_start_request(rq);
	for (tries = 0; tries < NPK_MAX_CHANNELS && ret == -EAGAIN; tries++) {
		chan = npk_pick(dev, blk_rq_bytes(rq) + NPK_REQ_COST);
		if (!chan)
			break;
		more = !bd->last && chan->tcp;
		ret = npk_send(chan, rq, more);
		if (!ret) {
			if (more)
				set_bit(chan->slot, &h->corked);
			else
				npk_uncork(dev, h);
		}
		kref_put(&chan->ref, npk_chan_release);
	}
	if (!ret)
		return BLK_STS_OK;
	if (bd->last)
		npk_uncork(dev, h);

	spin_lock(&dev->lock);
	since = dev->dead_since;
	ret = dev->dying || (since && time_after(jiffies, since + dev->dead_timeout * HZ));
	spin_unlock(&dev->lock);
	if (ret) {
		dev_err_ratelimited(disk_to_dev(dev->disk),
				    "no channel, failing I/O\n");
		return BLK_STS_IOERR;
	}
	/* Park it until a channel comes or the dead timeout passes. */
	blk_mq_requeue_request(rq, false);
	blk_mq_delay_kick_requeue_list(hctx->queue, NPK_WAIT_MS);
	return BLK_STS_OK;
}

static void npk_commit_rqs(struct blk_mq_hw_ctx *hctx)
{
	npk_uncork(hctx->queue->queuedata, hctx->driver_data);
}

static int npk_init_hctx(struct blk_mq_hw_ctx *hctx, void *data, unsigned int i)
{
	struct npk_hctx *h = kzalloc(sizeof(*h), GFP_KERNEL);

	if (!h)
		return -ENOMEM;
	hctx->driver_data = h;
	return 0;
}

static void npk_exit_hctx(struct blk_mq_hw_ctx *hctx, unsigned int i)
{
	kfree(hctx->driver_data);
	hctx->driver_data = NULL;
}

static int npk_init_request(struct blk_mq_tag_set *set, struct request *rq,
			    unsigned int hctx_idx, unsigned int numa_node)
{
	struct npk_cmd *cmd = blk_mq_rq_to_pdu(rq);

	mutex_init(&cmd->lock);
	cmd->chan = NULL;
	cmd->gen = 0;
	return 0;
}

/*
 * A request that outlived the I/O timeout: its channel is presumed stuck.
 * Failing the channel hands the request to another one, through that
 * channel's failover. No cmd->lock here: a sender stuck in sendmsg holds
 * it, and failing the channel is what unsticks that sender.
 */
static enum blk_eh_timer_return npk_timeout(struct request *rq)
{
	struct npk_dev *dev = rq->q->queuedata;
	struct npk_cmd *cmd = blk_mq_rq_to_pdu(rq);
	struct npk_chan *chan;
	int i;

	spin_lock(&dev->lock);
	chan = READ_ONCE(cmd->chan);
	for (i = 0; chan && i < NPK_MAX_CHANNELS; i++)
		if (dev->chans[i] == chan)
			break;
	if (i == NPK_MAX_CHANNELS)
		chan = NULL;
	if (chan)
		kref_get(&chan->ref);
	spin_unlock(&dev->lock);
	if (chan) {
		dev_warn_ratelimited(disk_to_dev(dev->disk),
				     "request timed out on channel %d\n", chan->slot);
		npk_chan_fail(chan);
		kref_put(&chan->ref, npk_chan_release);
	}
	return BLK_EH_RESET_TIMER;
}

const struct blk_mq_ops npk_mq_ops = {
	.queue_rq	= npk_queue_rq,
	.commit_rqs	= npk_commit_rqs,
	.init_hctx	= npk_init_hctx,
	.exit_hctx	= npk_exit_hctx,
	.init_request	= npk_init_request,
	.timeout	= npk_timeout,
};

static blk_status_t npk_errno_status(u32 err)
{
	switch (err) {
	case 0:
		return BLK_STS_OK;
	case ENOSPC:
		return BLK_STS_NOSPC;
	case EINVAL:
	case EOPNOTSUPP:
		return BLK_STS_NOTSUPP;
	default:
		return BLK_STS_IOERR;
	}
}

/* Reads one reply; returns 0, or a negative errno that ends the channel. */
static int npk_rx_one(struct npk_chan *chan)
{
	struct npk_dev *dev = chan->dev;
	struct nbd_reply rep;
	struct kvec kv = { .iov_base = &rep, .iov_len = sizeof(rep) };
	struct iov_iter it;
	struct request *rq = NULL;
	struct npk_cmd *cmd;
	struct bio *bio;
	u32 tag, hwq, err;
	__be64 cookie;
	u64 handle;
	int ret;

	iov_iter_kvec(&it, ITER_DEST, &kv, 1, sizeof(rep));
	ret = npk_recv(chan, &it);
	if (ret)
		return ret;
	if (be32_to_cpu(rep.magic) != NBD_REPLY_MAGIC) {
		dev_err_ratelimited(disk_to_dev(dev->disk), "bad reply magic %#x\n",
				    be32_to_cpu(rep.magic));
		return -EPROTO;
	}
	memcpy(&cookie, rep.handle, sizeof(cookie));
	handle = be64_to_cpu(cookie);
	tag = (u32)handle;
	hwq = blk_mq_unique_tag_to_hwq(tag);
	if (hwq < dev->tag_set.nr_hw_queues)
		rq = blk_mq_tag_to_rq(dev->tag_set.tags[hwq],
				      blk_mq_unique_tag_to_tag(tag));
	cmd = rq ? blk_mq_rq_to_pdu(rq) : NULL;
	/*
	 * A late reply for a tag that was reused or resent cannot be trusted.
	 * Look before taking the lock, so that a stray handle never waits on a
	 * sender elsewhere; look again under it, which waits for the sender of
	 * this request to let go of it.
	 */
	if (cmd && READ_ONCE(cmd->chan) == chan) {
		mutex_lock(&cmd->lock);
		if (cmd->chan != chan || cmd->gen != (u32)(handle >> 32)) {
			mutex_unlock(&cmd->lock);
			cmd = NULL;
		}
	} else {
		cmd = NULL;
	}
	if (!cmd) {
		dev_err_ratelimited(disk_to_dev(dev->disk),
				    "dropping reply with stale handle %#llx\n", handle);
		return -EPROTO;
	}
	err = be32_to_cpu(rep.error);
	if (!err && req_op(rq) == REQ_OP_READ) {
		__rq_for_each_bio(bio, rq) {
			npk_bio_iter(&it, ITER_DEST, bio);
			ret = npk_recv(chan, &it);
			if (ret) {
				/* Still in flight here: the failover requeues it. */
				mutex_unlock(&cmd->lock);
				return ret;
			}
		}
	}
	if (err)
		dev_err_ratelimited(disk_to_dev(dev->disk),
				    "server error %u for sector %llu\n", err,
				    (unsigned long long)blk_rq_pos(rq));
	atomic64_inc(&chan->reqs_total);
	atomic64_add(blk_rq_bytes(rq), &chan->bytes_total);
	/* Only moving data tells how fast a path is: a flush waits on disks. */
	if (!err && (req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE))
		npk_rate_sample(chan, cmd->acct, cmd->sent);
	npk_acct_done(cmd, chan);
	mutex_unlock(&cmd->lock);
	blk_mq_end_request(rq, npk_errno_status(err));
	return 0;
}

static bool npk_requeue_one(struct request *rq, void *data)
{
	struct npk_chan *chan = data;
	struct npk_cmd *cmd = blk_mq_rq_to_pdu(rq);
	bool mine;

	if (READ_ONCE(cmd->chan) != chan)
		return true;
	mutex_lock(&cmd->lock);
	mine = cmd->chan == chan;
	if (mine)
		npk_acct_done(cmd, chan);
	mutex_unlock(&cmd->lock);
	if (mine)
		blk_mq_requeue_request(rq, false);
	return true;
}

/*
 * Hands every request in flight on a dead channel back to blk-mq. Runs in
 * the channel's receive worker after it stopped reading, so no reply can
 * complete one of them concurrently; taking tx_lock once waits out any
 * sender that picked the channel before it was marked dead.
 */
static void npk_chan_failover(struct npk_chan *chan)
{
	struct npk_dev *dev = chan->dev;

	npk_chan_fail(chan);
	npk_dev_chan_gone(dev, chan);
	mutex_lock(&chan->tx_lock);
	mutex_unlock(&chan->tx_lock);
	blk_mq_tagset_busy_iter(&dev->tag_set, npk_requeue_one, chan);
	blk_mq_kick_requeue_list(dev->disk->queue);
}

void npk_rx_work(struct work_struct *work)
{
	struct npk_chan *chan = container_of(work, struct npk_chan, rx_work);
	int ret;

	do {
		ret = npk_rx_one(chan);
	} while (!ret);
	if (!test_bit(NPK_CHAN_DEAD, &chan->flags))
		dev_warn_ratelimited(disk_to_dev(chan->dev->disk),
				     "channel %d (path %u) lost: %d\n", chan->slot,
				     chan->path, ret);
	npk_chan_failover(chan);
	kref_put(&chan->ref, npk_chan_release);
}
