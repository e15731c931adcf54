/* The rbd engine: an image of a Ceph cluster, through librbd.
 *
 *   rbd:POOL/IMAGE[@SNAPSHOT][,conf=FILE][,id=USER][,keyring=FILE]
 *
 * A process connects to each cluster (one conf, user and keyring) once,
 * whatever the number of exports on it, and opens each image once per
 * export: every connection and loop of an export goes through that one image
 * handle, so a FLUSH covers the writes of them all (CAN_MULTI_CONN).
 *
 * librbd's cache is off unless the config turns it on: a write is then on
 * the OSDs when librbd completes it, which makes FUA free and makes two
 * gateways in front of one image see each other's writes. A write-back
 * cache would hold acknowledged writes in this process only, so an export
 * that would get one is refused, as is an image whose dead gateway could not
 * be fenced off (exclusive-lock without blocklisting on lock break).
 *
 * The data path is in rbd_aio.c; here are open and close, and the
 * synchronous operations the core and rbd_aio.c run on worker threads. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "storage/rbd/rbd_int.h"

/* Where the config leaves these at Ceph's defaults (wait for ever, or five
 * minutes), a start against an unreachable monitor or a request against a
 * vanished OSD would hang: bound them. */
#define RBD_CONNECT_TIMEOUT "10"
#define RBD_OSD_OP_TIMEOUT  "30"

/* ---- what the core's op codes mean to this engine ---- */

enum rbd_op rbd_op_of(const struct np_io *io)
{
	switch (io->op) {
	case NP_OP_READ:
		return RBD_OP_READ;
	case NP_OP_WRITE:
		return RBD_OP_WRITE;
	case NP_OP_FLUSH:
		return RBD_OP_FLUSH;
	case NP_OP_TRIM:
		return RBD_OP_TRIM;
	case NP_OP_ZERO:
		return RBD_OP_ZERO;
	case NP_OP_CACHE:
		return RBD_OP_CACHE;
	case NP_OP_EXTENTS:
	case NP_OP_RESIZE:
		return RBD_OP_BLOCKING;
	}
	return RBD_OP_INVALID;
}

#define RBD_STATE_HOLE (NP_EXTENT_HOLE | NP_EXTENT_ZERO)

/* ---- clusters, shared by the exports that name the same one ---- */

struct rbd_cluster {
	char *key; /* conf, id and keyring, NUL-separated */
	size_t key_len;
	rados_t rados;
	unsigned refs;
	struct rbd_cluster *next;
};

static pthread_mutex_t clusters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_cluster *clusters;

static int rbd_fail(char **err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int rbd_fail(char **err, int r, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (err && vasprintf(&msg, fmt, ap) >= 0)
		*err = msg;
	va_end(ap);
	return r;
}

/* Whether the config file names librbd's cache: the engine then leaves the
 * cache as configured. Ceph reads spaces, dashes and underscores in a key
 * alike. */
static bool conf_sets_cache(const char *conf)
{
	FILE *f = fopen(conf, "r");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char key[64];
		size_t n = 0;
		const char *p = line + strspn(line, " \t");

		for (; *p && *p != '=' && n < sizeof(key) - 1; p++)
			key[n++] = *p == '-' || *p == ' ' || *p == '\t' ? '_' : *p;
		while (n > 0 && key[n - 1] == '_')
			n--;
		key[n] = '\0';
		found = *p == '=' && strcmp(key, "rbd_cache") == 0;
	}
	fclose(f);
	return found;
}

static void conf_default(rados_t r, const char *opt, const char *ceph_default, const char *ours)
{
	char v[32];

	if (rados_conf_get(r, opt, v, sizeof(v)) == 0 && strcmp(v, ceph_default) == 0)
		rados_conf_set(r, opt, ours);
}

static int cluster_connect(struct rbd_cluster *c, const char *conf, const char *id,
			   const char *keyring, char **err)
{
	const char *path = conf ? conf : "/etc/ceph/ceph.conf";
	int r;

	if (conf && access(conf, R_OK) < 0)
		return rbd_fail(err, -errno, "rbd: config %s: %s", conf, strerror(errno));
	if (keyring && access(keyring, R_OK) < 0)
		return rbd_fail(err, -errno, "rbd: keyring %s: %s", keyring, strerror(errno));
	r = rados_create(&c->rados, id);
	if (r < 0)
		return rbd_fail(err, r, "rbd: cannot create a cluster handle for user '%s': %s",
				id ? id : "admin", strerror(-r));
	r = rados_conf_read_file(c->rados, conf);
	if (r < 0 && conf) {
		rados_shutdown(c->rados);
		return rbd_fail(err, r, "rbd: config %s: %s", conf, strerror(-r));
	}
	if (keyring)
		rados_conf_set(c->rados, "keyring", keyring);
	conf_default(c->rados, "client_mount_timeout", "300", RBD_CONNECT_TIMEOUT);
	conf_default(c->rados, "rados_mon_op_timeout", "0", RBD_CONNECT_TIMEOUT);
	conf_default(c->rados, "rados_osd_op_timeout", "0", RBD_OSD_OP_TIMEOUT);
	if (!conf_sets_cache(path))
		rados_conf_set(c->rados, "rbd_cache", "false");
	r = rados_connect(c->rados);
	if (r < 0) {
		const char *why = r == -ETIMEDOUT ? "no monitor answered"
				  : r == -EACCES || r == -EPERM
				      ? "the monitor refused the user or its key"
				  : r == -ENOENT ? "no keyring found for the user"
						 : strerror(-r);

		rados_shutdown(c->rados);
		return rbd_fail(err, r, "rbd: cannot connect to the cluster of %s as client.%s: %s",
				path, id ? id : "admin", why);
	}
	return 0;
}

static struct rbd_cluster *cluster_get(const char *conf, const char *id, const char *keyring,
				       char **err, int *res)
{
	struct rbd_cluster *c;
	size_t lc = conf ? strlen(conf) : 0, li = id ? strlen(id) : 0;
	size_t lk = keyring ? strlen(keyring) : 0, len = lc + li + lk + 3;
	char *key = malloc(len);

	*res = -ENOMEM;
	if (!key)
		return NULL;
	snprintf(key, len, "%s", conf ? conf : "");
	snprintf(key + lc + 1, len - lc - 1, "%s", id ? id : "");
	snprintf(key + lc + li + 2, len - lc - li - 2, "%s", keyring ? keyring : "");

	/* Held across the connect: a second export of the same cluster waits
	 * for the first instead of connecting twice. Exports open at start
	 * and on reload only. */
	pthread_mutex_lock(&clusters_lock);
	for (c = clusters; c; c = c->next) {
		if (c->key_len == len && memcmp(c->key, key, len) == 0) {
			c->refs++;
			pthread_mutex_unlock(&clusters_lock);
			free(key);
			return c;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out;
	*res = cluster_connect(c, conf, id, keyring, err);
	if (*res < 0) {
		free(c);
		c = NULL;
		goto out;
	}
	c->key = key;
	c->key_len = len;
	key = NULL;
	c->refs = 1;
	c->next = clusters;
	clusters = c;
out:
	pthread_mutex_unlock(&clusters_lock);
	free(key);
	return c;
}

static void cluster_put(struct rbd_cluster *c)
{
	struct rbd_cluster **p;

	pthread_mutex_lock(&clusters_lock);
	if (--c->refs > 0) {
		pthread_mutex_unlock(&clusters_lock);
		return;
	}
	for (p = &clusters; *p != c; p = &(*p)->next)
		;
	*p = c->next;
	pthread_mutex_unlock(&clusters_lock);
	rados_shutdown(c->rados);
	free(c->key);
	free(c);
}

/* ---- open and close ---- */

struct rbd_spec {
	char *pool, *image, *snap, *conf, *id, *keyring;
};

/* Splits SPEC in place (it is a copy); returns 0 or -EINVAL with *err. */
static int parse_spec(char *s, const char *spec, struct rbd_spec *o, char **err)
{
	char *opt, *save = NULL, *first = strtok_r(s, ",", &save);
	char *slash = first ? strchr(first, '/') : NULL;

	memset(o, 0, sizeof(*o));
	if (!slash || slash == first || !slash[1])
		return rbd_fail(err, -EINVAL,
				"rbd:%s: expected POOL/IMAGE[@SNAPSHOT][,conf=FILE]"
				"[,id=USER][,keyring=FILE]",
				spec);
	*slash = '\0';
	o->pool = first;
	o->image = slash + 1;
	o->snap = strchr(o->image, '@');
	if (o->snap) {
		*o->snap++ = '\0';
		if (!*o->snap || !*o->image)
			return rbd_fail(err, -EINVAL, "rbd:%s: empty image or snapshot name", spec);
	}
	while ((opt = strtok_r(NULL, ",", &save))) {
		char *v = strchr(opt, '=');

		if (v)
			*v++ = '\0';
		if (v && *v && strcmp(opt, "conf") == 0)
			o->conf = v;
		else if (v && *v && strcmp(opt, "id") == 0)
			o->id = strncmp(v, "client.", 7) == 0 ? v + 7 : v;
		else if (v && *v && strcmp(opt, "keyring") == 0)
			o->keyring = v;
		else
			return rbd_fail(err, -EINVAL,
					"rbd:%s: unknown option '%s' (conf=, id=, keyring=)", spec,
					opt);
	}
	return 0;
}

static void on_header_update(void *arg)
{
	struct rbd_handle *h = arg;
	uint64_t size;

	if (rbd_get_size(h->image, &size) == 0)
		atomic_store(&h->size, size);
}

/* The value librbd uses for option NAME on this image (the config, then
 * the pool's and the image's own overrides), or "" when it has none. */
static void image_option(struct rbd_handle *h, const char *name, char *buf, size_t len)
{
	rbd_config_option_t *opts = NULL;
	int n = 0, i;

	buf[0] = '\0';
	if (rbd_config_image_list(h->image, NULL, &n) != -ERANGE || n <= 0)
		return;
	opts = calloc((size_t)n, sizeof(*opts));
	if (!opts)
		return;
	if (rbd_config_image_list(h->image, opts, &n) == 0) {
		for (i = 0; i < n; i++)
			if (strcmp(opts[i].name, name) == 0)
				snprintf(buf, len, "%s", opts[i].value);
		rbd_config_image_list_cleanup(opts, n);
	}
	free(opts);
}

/* Refuses an image that two gateways could not safely share, and one this
 * process would serve from a write-back cache. */
static int check_shareable(struct rbd_handle *h, char **err)
{
	uint64_t features = 0;
	char v[32];
	int r;

	if (h->readonly)
		return 0;
	r = rbd_get_features(h->image, &features);
	if (r < 0)
		return rbd_fail(err, r, "rbd: %s: cannot read its features: %s", h->name,
				strerror(-r));
	/* Without blocklisting, a gateway that lost the lock while writing
	 * (killed, cut off) could still land writes after the other one's. */
	image_option(h, "rbd_blocklist_on_break_lock", v, sizeof(v));
	if ((features & RBD_FEATURE_EXCLUSIVE_LOCK) && strcmp(v, "false") == 0)
		return rbd_fail(err, -EINVAL,
				"rbd: %s: exclusive-lock is on and rbd_blocklist_on_break_lock is "
				"false: a lost gateway could not be fenced off; set it true or "
				"disable exclusive-lock",
				h->name);
	image_option(h, "rbd_cache", v, sizeof(v));
	if (strcmp(v, "true") != 0)
		return 0;
	image_option(h, "rbd_cache_policy", v, sizeof(v));
	if (strcmp(v, "writeback") == 0)
		return rbd_fail(err, -EINVAL,
				"rbd: %s: librbd's write-back cache is on (rbd_cache = true, "
				"rbd_cache_policy = writeback): acknowledged writes would live in "
				"this process only; set rbd_cache = false, or a writethrough or "
				"writearound policy for an image no other gateway serves",
				h->name);
	return 0;
}

static int rbd_open_spec(const char *spec, bool readonly, void **handle, char **err)
{
	struct rbd_spec o;
	struct rbd_handle *h;
	char *s = strdup(spec);
	uint64_t size;
	int r;

	*handle = NULL;
	h = calloc(1, sizeof(*h));
	if (!s || !h) {
		r = rbd_fail(err, -ENOMEM, "rbd:%s: out of memory", spec);
		goto out_free;
	}
	h->efd = -1;
	r = parse_spec(s, spec, &o, err);
	if (r < 0)
		goto out_free;
	if (asprintf(&h->name, "%s/%s%s%s", o.pool, o.image, o.snap ? "@" : "",
		     o.snap ? o.snap : "") < 0) {
		h->name = NULL;
		r = rbd_fail(err, -ENOMEM, "rbd:%s: out of memory", spec);
		goto out_free;
	}
	h->readonly = readonly || o.snap;
	h->cluster = cluster_get(o.conf, o.id, o.keyring, err, &r);
	if (!h->cluster)
		goto out_free;
	r = rados_ioctx_create(h->cluster->rados, o.pool, &h->ioctx);
	if (r < 0) {
		r = rbd_fail(err, r, "rbd: pool '%s': %s", o.pool,
			     r == -ENOENT ? "no such pool" : strerror(-r));
		goto out_cluster;
	}
	r = h->readonly ? rbd_open_read_only(h->ioctx, o.image, &h->image, NULL)
			: rbd_open(h->ioctx, o.image, &h->image, NULL);
	if (r < 0) {
		r = rbd_fail(err, r, "rbd: image '%s' in pool '%s': %s", o.image, o.pool,
			     r == -ENOENT ? "no such image" : strerror(-r));
		goto out_ioctx;
	}
	if (o.snap) {
		r = rbd_snap_set(h->image, o.snap);
		if (r < 0) {
			r = rbd_fail(err, r, "rbd: snapshot '%s' of %s/%s: %s", o.snap, o.pool,
				     o.image, r == -ENOENT ? "no such snapshot" : strerror(-r));
			goto out_image;
		}
	}
	r = check_shareable(h, err);
	if (r < 0)
		goto out_image;
	r = rbd_get_size(h->image, &size);
	if (r < 0) {
		r = rbd_fail(err, r, "rbd: %s: cannot read its size: %s", h->name, strerror(-r));
		goto out_image;
	}
	atomic_store(&h->size, size);
	h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->efd < 0) {
		r = rbd_fail(err, -errno, "rbd: %s: eventfd: %s", h->name, strerror(errno));
		goto out_image;
	}
	r = rbd_set_image_notification(h->image, h->efd, EVENT_TYPE_EVENTFD);
	if (r < 0) {
		r = rbd_fail(err, r, "rbd: %s: cannot register its eventfd: %s", h->name,
			     strerror(-r));
		goto out_efd;
	}
	/* Only a head image changes size; a snapshot never does. */
	if (!o.snap && rbd_update_watch(h->image, &h->watch, on_header_update, h) == 0)
		h->watching = true;
	free(s);
	*handle = h;
	return 0;

out_efd:
	close(h->efd);
out_image:
	rbd_close(h->image);
out_ioctx:
	rados_ioctx_destroy(h->ioctx);
out_cluster:
	cluster_put(h->cluster);
out_free:
	if (h)
		free(h->name);
	free(h);
	free(s);
	return r;
}

static void rbd_close_handle(void *hv)
{
	struct rbd_handle *h = hv;

	if (!h)
		return;
	if (h->watching)
		rbd_update_unwatch(h->image, h->watch);
	/* rbd_close waits for what is still in flight. */
	rbd_close(h->image);
	close(h->efd);
	rados_ioctx_destroy(h->ioctx);
	cluster_put(h->cluster);
	free(h->name);
	free(h);
}

static uint64_t rbd_size(void *hv)
{
	struct rbd_handle *h = hv;

	return atomic_load(&h->size);
}

uint32_t rbd_caps(void *hv)
{
	struct rbd_handle *h = hv;

	/* FUA: with no write-back cache a completed write is on the OSDs.
	 * EXTENTS: BLOCK_STATUS from librbd's diff, holes where no object is. */
	if (h->readonly)
		return NP_CAP_MULTI_CONN | NP_CAP_EXTENTS;
	return NP_CAP_WRITE | NP_CAP_FLUSH | NP_CAP_FUA | NP_CAP_TRIM | NP_CAP_ZERO |
	       NP_CAP_FAST_ZERO | NP_CAP_MULTI_CONN | NP_CAP_EXTENTS | NP_CAP_RESIZE;
}

static void rbd_block_size(void *hv, uint32_t *min, uint32_t *pref, uint32_t *max)
{
	(void)hv;
	(void)min;
	(void)max;
	/* librbd takes any alignment, but a write of less than 4 KiB is
	 * still a 4 KiB write on most OSD stores. */
	*pref = 4096;
}

/* ---- synchronous operations (worker threads) ---- */

static int rbd_sync_read(void *hv, void *buf, uint64_t len, uint64_t off)
{
	struct rbd_handle *h = hv;
	ssize_t n = rbd_read2(h->image, off, len, buf, 0);

	if (n < 0)
		return (int)n;
	if ((uint64_t)n < len)
		memset((char *)buf + n, 0, len - (uint64_t)n);
	return 0;
}

static int rbd_sync_write(void *hv, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
	struct rbd_handle *h = hv;
	ssize_t n;

	(void)flags; /* FUA: every completed write is on the OSDs */
	n = rbd_write2(h->image, off, len, buf, 0);
	if (n < 0)
		return (int)n;
	return (uint64_t)n == len ? 0 : -EIO;
}

static int rbd_sync_flush(void *hv)
{
	struct rbd_handle *h = hv;

	return rbd_flush(h->image);
}

static int rbd_sync_trim(void *hv, uint64_t len, uint64_t off, uint32_t flags)
{
	struct rbd_handle *h = hv;
	int r;

	(void)flags;
	r = rbd_discard(h->image, off, len);
	return r < 0 ? r : 0;
}

static int rbd_sync_zero(void *hv, uint64_t len, uint64_t off, uint32_t flags)
{
	struct rbd_handle *h = hv;
	ssize_t r;

	(void)flags;
	r = rbd_write_zeroes(h->image, off, len, 0, 0);
	return r < 0 ? (int)r : 0;
}

struct rbd_diff {
	struct np_io *io;
	uint64_t pos; /* the end of what io->extents covers so far */
	bool full;
};

/* librbd reports, in ascending order, the extents that hold data (exists)
 * and, when diffing against a snapshot, those discarded since. Without a
 * snapshot an object is reported from its start to its last written byte,
 * so what lies between is data to a client even if never written. */
static int on_diff(uint64_t off, size_t len, int exists, void *arg)
{
	struct rbd_diff *d = arg;
	uint64_t end = d->io->offset + d->io->len;

	if (off < d->pos) {
		if (off + len <= d->pos)
			return 0;
		len -= (size_t)(d->pos - off);
		off = d->pos;
	}
	if (off + len > end)
		len = (size_t)(end - off);
	if (!np_io_add_extent(d->io, off - d->pos, RBD_STATE_HOLE) ||
	    !np_io_add_extent(d->io, len, exists ? 0 : RBD_STATE_HOLE)) {
		d->full = true;
		return -ECANCELED; /* stops the iteration */
	}
	d->pos = off + len;
	return 0;
}

static int rbd_sync_extents(void *hv, struct np_io *io)
{
	struct rbd_handle *h = hv;
	struct rbd_diff d = {.io = io, .pos = io->offset};
	int r;

	r = rbd_diff_iterate2(h->image, NULL, io->offset, io->len, 1, 0, on_diff, &d);
	if (r < 0 && !(r == -ECANCELED && d.full))
		return r;
	if (!d.full)
		np_io_add_extent(io, io->offset + io->len - d.pos, RBD_STATE_HOLE);
	if (io->n_extents == 0)
		return -EIO;
	return 0;
}

static int rbd_sync_resize(void *hv, uint64_t size)
{
	struct rbd_handle *h = hv;
	int r = rbd_resize(h->image, size);

	if (r == 0)
		atomic_store(&h->size, size);
	return r;
}

const struct np_storage_ops np_storage_rbd = {
    .size = sizeof(struct np_storage_ops),
    .api_version = NP_STORAGE_API_VERSION,
    .name = "rbd",
    .usage = "POOL/IMAGE[@SNAP][,conf=FILE][,id=USER][,keyring=FILE]\n"
	     "\ta Ceph RBD image (a snapshot read-only)",
    .open = rbd_open_spec,
    .close = rbd_close_handle,
    .get_size = rbd_size,
    .caps = rbd_caps,
    .block_size = rbd_block_size,
    .pread = rbd_sync_read,
    .pwrite = rbd_sync_write,
    .flush = rbd_sync_flush,
    .trim = rbd_sync_trim,
    .zero = rbd_sync_zero,
    .extents = rbd_sync_extents,
    .resize = rbd_sync_resize,
    .loop_open = rbd_loop_open,
    .loop_close = rbd_loop_close,
    .submit = rbd_submit,
};
