// SPDX-License-Identifier: GPL-2.0
/* nbdplex: per-disk attributes under /sys/block/nbdplexN/nbdplex/. */
#include <linux/blkdev.h>
#include <linux/device.h>
#include <linux/sysfs.h>

#include "npk.h"

static struct npk_dev *npk_from_dev(struct device *d)
{
	return dev_to_disk(d)->private_data;
}

/* One line per channel: slot, path, state, requests and bytes in flight, totals. */
static ssize_t channels_show(struct device *d, struct device_attribute *attr,
			     char *buf)
{
	struct npk_dev *dev = npk_from_dev(d);
	int i, len = 0;

	len += sysfs_emit_at(buf, len, "slot path state reqs_inflight bytes_inflight reqs_total bytes_total\n");
	spin_lock(&dev->lock);
	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *c = dev->chans[i];

		if (!c)
			continue;
		len += sysfs_emit_at(buf, len, "%d %u %s %d %lld %lld %lld\n", i,
				     c->path,
				     test_bit(NPK_CHAN_DEAD, &c->flags) ? "dead" : "up",
				     atomic_read(&c->reqs_inflight),
				     (long long)atomic64_read(&c->bytes_inflight),
				     (long long)atomic64_read(&c->reqs_total),
				     (long long)atomic64_read(&c->bytes_total));
	}
	spin_unlock(&dev->lock);
	return len;
}
static DEVICE_ATTR_RO(channels);

/*
 * One line per path that has a channel: healthy and dying channels, the
 * sums of its channels' counters, and the rate the driver learnt for it
 * (kB/s, 0 until it moved data). The totals are those of the channels that
 * exist now, so they drop when a channel is replaced; a reader that turns
 * them into a rate must allow for that.
 */
static ssize_t paths_show(struct device *d, struct device_attribute *attr,
			  char *buf)
{
	struct npk_dev *dev = npk_from_dev(d);
	struct {
		int up, dead, reqs;
		s64 inflight, total;
		u64 rate;
	} p[NPK_MAX_PATHS] = {};
	int i, len = 0;

	spin_lock(&dev->lock);
	for (i = 0; i < NPK_MAX_CHANNELS; i++) {
		struct npk_chan *c = dev->chans[i];

		if (!c || c->path >= NPK_MAX_PATHS)
			continue;
		if (test_bit(NPK_CHAN_DEAD, &c->flags))
			p[c->path].dead++;
		else
			p[c->path].up++;
		p[c->path].reqs += atomic_read(&c->reqs_inflight);
		p[c->path].inflight += atomic64_read(&c->bytes_inflight);
		p[c->path].total += atomic64_read(&c->bytes_total);
		p[c->path].rate = dev->paths[c->path].rate >> NPK_RATE_SHIFT;
	}
	spin_unlock(&dev->lock);

	len += sysfs_emit_at(buf, len, "path state channels_up channels_dead reqs_inflight bytes_inflight bytes_total rate_kBps\n");
	for (i = 0; i < NPK_MAX_PATHS; i++) {
		if (!p[i].up && !p[i].dead)
			continue;
		len += sysfs_emit_at(buf, len, "%d %s %d %d %d %lld %lld %llu\n", i,
				     p[i].up ? "up" : "down", p[i].up, p[i].dead,
				     p[i].reqs, (long long)p[i].inflight,
				     (long long)p[i].total, p[i].rate);
	}
	return len;
}
static DEVICE_ATTR_RO(paths);

static ssize_t dead_timeout_show(struct device *d, struct device_attribute *attr,
				 char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(npk_from_dev(d)->dead_timeout));
}

static ssize_t dead_timeout_store(struct device *d, struct device_attribute *attr,
				  const char *buf, size_t count)
{
	unsigned int v;
	int ret = kstrtouint(buf, 10, &v);

	if (ret)
		return ret;
	WRITE_ONCE(npk_from_dev(d)->dead_timeout, v);
	return count;
}
static DEVICE_ATTR_RW(dead_timeout);

static ssize_t flags_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%#x\n", npk_from_dev(d)->flags);
}
static DEVICE_ATTR_RO(flags);

static ssize_t owner_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", npk_from_dev(d)->owner);
}
static DEVICE_ATTR_RO(owner);

static struct attribute *npk_disk_attrs[] = {
	&dev_attr_channels.attr,
	&dev_attr_dead_timeout.attr,
	&dev_attr_flags.attr,
	&dev_attr_owner.attr,
	&dev_attr_paths.attr,
	NULL,
};

static const struct attribute_group npk_disk_group = {
	.name = "nbdplex",
	.attrs = npk_disk_attrs,
};

const struct attribute_group *npk_disk_groups[] = {
	&npk_disk_group,
	NULL,
};
