/* nbdplex attach --status: what each network path of a device is doing.
 * The driver sums its channels per path in /sys/block/nbdplexN/nbdplex/paths;
 * the addresses and the channels each path should have come from the
 * command line of the attach process that owns the device. */
#include "tools/attach_status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmod/nbdplex_uapi.h"
#include "tools/attach.h"

#define SYS_FMT     "/sys/block/" NPK_DISK_PREFIX "%u/"
#define CMDLINE_MAX 8192

struct path_sample {
	int seen;
	int up, dead, reqs;
	long long inflight, total;
	long long rate; /* the driver's estimate, kB/s; -1 from an older driver */
};

struct plan {
	char cmdline[CMDLINE_MAX];
	const char *addr[NPK_MAX_PATHS];
	int want[NPK_MAX_PATHS];
	int npaths; /* 0 when the owner's command line is not an attach's */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads the paths attribute into s[]; returns 0 or -errno. */
static int sample(unsigned index, struct path_sample *s)
{
	char name[96], line[256];
	FILE *f;
	int p;
	struct path_sample v;
	char state[16];

	snprintf(name, sizeof(name), SYS_FMT "nbdplex/paths", index);
	f = fopen(name, "re");
	if (!f)
		return -errno;
	memset(s, 0, sizeof(*s) * NPK_MAX_PATHS);
	while (fgets(line, sizeof(line), f)) {
		int n;

		memset(&v, 0, sizeof(v));
		v.rate = -1;
		n = sscanf(line, "%d %15s %d %d %d %lld %lld %lld", &p, state, &v.up, &v.dead,
			   &v.reqs, &v.inflight, &v.total, &v.rate);
		if (n < 7 || p < 0 || p >= NPK_MAX_PATHS)
			continue; /* the header */
		v.seen = 1;
		s[p] = v;
	}
	fclose(f);
	return 0;
}

static long read_long(unsigned index, const char *attr)
{
	char name[96];
	long v = -1;
	FILE *f;

	snprintf(name, sizeof(name), SYS_FMT "%s", index, attr);
	f = fopen(name, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Fills pl from the owner's command line, when it is an nbdplex attach. */
static void read_plan(pid_t owner, struct plan *pl)
{
	char name[64], *argv[256];
	size_t n;
	int argc = 0;
	FILE *f;

	memset(pl, 0, sizeof(*pl));
	snprintf(name, sizeof(name), "/proc/%d/cmdline", (int)owner);
	f = fopen(name, "re");
	if (!f)
		return;
	n = fread(pl->cmdline, 1, sizeof(pl->cmdline) - 1, f);
	fclose(f);
	pl->cmdline[n] = 0;
	/* Arguments from the word "attach" on, as np_cmd_attach saw them. */
	for (size_t i = 0; i < n && argc < 255; i += strlen(pl->cmdline + i) + 1) {
		if (argc || !strcmp(pl->cmdline + i, "attach"))
			argv[argc++] = pl->cmdline + i;
	}
	argv[argc] = NULL;
	if (argc)
		pl->npaths = np_attach_plan(argc, argv, pl->addr, pl->want);
	if (pl->npaths < 0)
		pl->npaths = 0;
}

static const char *state_of(const struct path_sample *s, int want)
{
	if (!s->up)
		return "down";
	return want && s->up < want ? "degraded" : "up";
}

static void usage_status(FILE *f)
{
	fprintf(f, "usage: nbdplex attach --status DEVICE [--interval MS]\n"
		   "Prints, per network path of a device made by attach: its state (up, degraded:\n"
		   "fewer channels than asked for, down: none), channels up of those asked for,\n"
		   "requests and bytes in flight now, the throughput over the interval (default\n"
		   "1000 ms), the rate the driver learnt for it (MB/s; requests go where they\n"
		   "finish first by it) and the bytes its current channels have moved.\n");
}

int np_attach_status(int argc, char **argv)
{
	struct path_sample a[NPK_MAX_PATHS], b[NPK_MAX_PATHS];
	static struct plan pl;
	unsigned index;
	char extra;
	const char *dev;
	long interval = 1000, owner;
	double t0, dt;
	int up = 0, want = 0, last = -1, r;

	if (argc == 4 && !strcmp(argv[2], "--interval")) {
		char *end;

		interval = strtol(argv[3], &end, 10);
		if (*end || !*argv[3] || interval < 0 || interval > 60000) {
			fprintf(stderr,
				"nbdplex attach: --interval must be 0..60000 ms, not '%s'\n",
				argv[3]);
			return 2;
		}
		argc = 2;
	}
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_status(stdout);
		return 0;
	}
	if (argc != 2) {
		usage_status(stderr);
		return 2;
	}
	dev = argv[1];
	if (!strncmp(dev, "/dev/", 5))
		dev += 5;
	if (sscanf(dev, NPK_DISK_PREFIX "%u%c", &index, &extra) != 1) {
		fprintf(stderr, "nbdplex attach: '%s' is not an nbdplex device\n", argv[1]);
		return 2;
	}
	t0 = now_s();
	r = sample(index, a);
	if (r < 0) {
		fprintf(stderr, "nbdplex attach: %s: %s\n", argv[1],
			r == -ENOENT
			    ? "no such device (or nbdplex.ko too old for per-path counters)"
			    : strerror(-r));
		return 1;
	}
	owner = read_long(index, "nbdplex/owner");
	read_plan((pid_t)owner, &pl);
	if (interval)
		usleep((useconds_t)interval * 1000);
	dt = now_s() - t0;
	r = sample(index, b);
	if (r < 0) {
		fprintf(stderr, "nbdplex attach: %s went away: %s\n", argv[1], strerror(-r));
		return 1;
	}

	for (int p = 0; p < NPK_MAX_PATHS; p++) {
		if (p < pl.npaths || b[p].seen)
			last = p;
		up += b[p].up;
		want += p < pl.npaths ? pl.want[p] : b[p].up;
	}
	printf("/dev/" NPK_DISK_PREFIX "%u: %d of %d channels up; owner %ld%s\n", index, up, want,
	       owner, pl.npaths ? "" : " (not an nbdplex attach: addresses unknown)");
	printf("%-4s  %-8s  %-8s  %4s  %14s  %8s  %8s  %14s  %s\n", "path", "state", "channels",
	       "reqs", "inflight_bytes", "MB/s", "rate", "total_bytes", "address");
	for (int p = 0; p <= last; p++) {
		int w = p < pl.npaths ? pl.want[p] : 0;
		char chans[24], rate[16] = "-", learnt[24] = "-";
		long long moved = b[p].total - a[p].total;

		if (!b[p].seen && p >= pl.npaths)
			continue;
		if (w)
			snprintf(chans, sizeof(chans), "%d/%d", b[p].up, w);
		else
			snprintf(chans, sizeof(chans), "%d", b[p].up);
		/* A replaced channel takes its total with it: no negative rates. */
		if (interval)
			snprintf(rate, sizeof(rate), "%.2f",
				 moved > 0 && dt > 0 ? (double)moved / dt / 1e6 : 0.0);
		if (b[p].seen && b[p].rate >= 0)
			snprintf(learnt, sizeof(learnt), "%.2f", (double)b[p].rate / 1e3);
		printf("%-4d  %-8s  %-8s  %4d  %14lld  %8s  %8s  %14lld  %s\n", p,
		       state_of(&b[p], w), chans, b[p].reqs, b[p].inflight, rate, learnt,
		       b[p].total, p < pl.npaths ? pl.addr[p] : "?");
	}
	return 0;
}

int np_attach_spread(unsigned index, int channels, unsigned spread_kb)
{
	char name[96];
	long now;
	unsigned kb;
	FILE *f;
	int r;

	if (channels < 2)
		return 0;
	/* Four pieces per channel: each channel's next piece is on the wire
	 * while the server answers one, and the driver, which sends each piece
	 * where it finishes first, can split a request between unequal paths
	 * finely enough that the faster one does not wait for the slower (in
	 * eighths a 2:1 pair gets 0.89 of its sum, in sixteenths 0.97). At
	 * least 64 KiB, whole pages. */
	kb = spread_kb / (4 * (unsigned)channels);
	kb = kb < 64 ? 64 : kb & ~3u;
	/* Never larger than what the driver was loaded to take (its
	 * max_request_kb sets max_sectors_kb): only ever smaller. */
	now = read_long(index, "queue/max_sectors_kb");
	if (now > 0 && (unsigned long)now <= kb)
		return 0;
	snprintf(name, sizeof(name), SYS_FMT "queue/max_sectors_kb", index);
	f = fopen(name, "we");
	if (!f)
		return -errno;
	r = fprintf(f, "%u\n", kb);
	if (fclose(f) || r < 0)
		return errno ? -errno : -EIO;
	return 0;
}
