/* nbdplex attach / detach: negotiate in userspace, hand the sockets to
 * nbdplex.ko, and keep the channels up from a small background process. */
#include "tools/attach.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kmod/nbdplex_uapi.h"
#include "net/proto.h"
#include "tools/attach_nbd.h"
#include "tools/attach_status.h"
#include "tools/attach_tls.h"
#include "util/err.h"

#define CTL_DEV        "/dev/" NPK_CTL_NAME
#define POLL_MS        200
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* How often the size of an export that may change (SEND_RESIZE) is asked. */
#define RESIZE_POLL_MS 2000
/* One request of this size (a 1 MiB dd or copy) is split over all channels. */
#define SPREAD_KB 1024

struct attach {
	const char *paths[NPK_MAX_PATHS];
	int npaths;
	int channels;
	const char *name;
	unsigned dead_timeout;
	int foreground;
	const char *log;
	int check;
	int tls;
	struct np_tls_opts tls_opts;
	struct np_tls *tls_creds; /* loaded once, reused by every reconnection */
	int ctl;
	struct np_export_info info;
	uint32_t index;
	int want[NPK_MAX_PATHS];
	long long next_try[NPK_MAX_PATHS];
	int backoff[NPK_MAX_PATHS];
	uint32_t block_size;
	uint64_t disk_size; /* bytes, as the driver has it */
	long long next_size;
	int size_failing;
};

static FILE *log_file;
static volatile sig_atomic_t stop;

static void logmsg(const char *fmt, ...)
{
	va_list ap;

	if (!log_file)
		return;
	va_start(ap, fmt);
	fprintf(log_file, "nbdplex attach[%d]: ", (int)getpid());
	vfprintf(log_file, fmt, ap);
	va_end(ap);
	fputc('\n', log_file);
	fflush(log_file);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage_attach(FILE *f)
{
	fprintf(f,
		"usage: nbdplex attach [--path HOST[:PORT]]... [--channels N] [--export NAME]\n"
		"                      [--dead-timeout SECONDS] [--foreground] [--log FILE]\n"
		"                      [--tls] [--tls-certificates DIR | --tls-psk FILE]\n"
		"                      [--tls-username NAME] [--tls-hostname NAME]\n"
		"                      [--tls-priority STRING] [--check]\n"
		"       nbdplex attach --status DEVICE [--interval MS]\n"
		"Connects to an NBD server, creates /dev/nbdplexN through nbdplex.ko with N\n"
		"channels spread over the paths, prints the device and returns. A background\n"
		"process replaces lost channels until 'nbdplex detach DEVICE'.\n"
		"  -p, --path          server address, once per network path (default\n"
		"                      127.0.0.1:10809)\n"
		"  -n, --channels      TCP channels in all (default: one per path); more than\n"
		"                      one needs a server that advertises CAN_MULTI_CONN\n"
		"  -e, --export        export name (default: the server's default export)\n"
		"  -t, --dead-timeout  seconds I/O waits with no channel before failing\n"
		"                      (default: the module's dead_timeout)\n"
		"  -f, --foreground    stay in the foreground and keep the channels up\n"
		"  -l, --log FILE      where the background process reports reconnections\n"
		"      --tls           require TLS (STARTTLS); the handshake runs here, then\n"
		"                      the kernel's TLS (modprobe tls) carries the channels\n"
		"      --tls-certificates DIR  ca-cert.pem to check the server; client-cert.pem\n"
		"                      and client-key.pem when present (implies --tls)\n"
		"      --tls-psk FILE  pre-shared keys, psktool format (implies --tls)\n"
		"      --tls-username NAME  PSK identity (default: the local user name)\n"
		"      --tls-hostname NAME  name the server's certificate must carry\n"
		"                      (default: the host of each --path)\n"
		"      --tls-priority STRING  GnuTLS priority string (default: TLS 1.2/1.3\n"
		"                      with AES-GCM or ChaCha20-Poly1305, what kernel TLS takes)\n"
		"      --check         negotiate on the first path only (TLS into the kernel\n"
		"                      included), write the export's first 64 KiB to stdout\n"
		"                      and exit, without the driver or a device\n");
}

/* Opens one channel on path p and hands it to the driver. */
static int add_channel(struct attach *a, int p, char **err)
{
	struct np_export_info info;
	struct npk_channel ch = {.index = a->index, .path = (uint32_t)p};
	int fd = np_nbd_connect(a->paths[p], a->name, a->tls_creds, &info, err), r;

	if (fd < 0)
		return fd;
	if (info.size != a->info.size || info.flags != a->info.flags) {
		close(fd);
		return np_errmsg(err, -ESTALE,
				 "%s: export changed (size %llu flags %#x, was %llu %#x)",
				 a->paths[p], (unsigned long long)info.size, info.flags,
				 (unsigned long long)a->info.size, a->info.flags);
	}
	ch.fd = fd;
	if (ioctl(a->ctl, NPK_IOC_ADD_CHANNEL, &ch) < 0) {
		r = np_errmsg(err, -errno, "adding a channel to nbdplex%u: %s", a->index,
			      strerror(errno));
		close(fd);
		return r;
	}
	/* The driver holds its own reference to the socket. */
	close(fd);
	return 0;
}

static int setup(struct attach *a, char **err)
{
	struct npk_create cr = {0};
	int fd, p, r;

	a->ctl = open(CTL_DEV, O_RDWR | O_CLOEXEC);
	if (a->ctl < 0)
		return np_errmsg(err, -errno, "cannot open %s: %s (is nbdplex.ko loaded?)", CTL_DEV,
				 strerror(errno));
	fd = np_nbd_connect(a->paths[0], a->name, a->tls_creds, &a->info, err);
	if (fd < 0)
		return fd;
	if (a->channels > 1 && !(a->info.flags & NBD_FLAG_CAN_MULTI_CONN)) {
		close(fd);
		return np_errmsg(err, -EINVAL,
				 "the server does not advertise CAN_MULTI_CONN for this export, so "
				 "a flush on one of %d channels would not cover writes on the "
				 "others; use --channels 1",
				 a->channels);
	}
	cr.size = a->info.size;
	cr.block_size = 512;
	if (a->info.min_block > 512 && a->info.min_block <= 4096)
		cr.block_size = a->info.min_block;
	cr.size -= cr.size % cr.block_size;
	cr.flags = a->info.flags;
	cr.dead_timeout = a->dead_timeout;
	cr.fd = fd;
	cr.path = 0;
	if (ioctl(a->ctl, NPK_IOC_CREATE, &cr) < 0) {
		r = np_errmsg(err, -errno, "creating the disk (%llu bytes): %s",
			      (unsigned long long)cr.size, strerror(errno));
		close(fd);
		return r;
	}
	close(fd);
	a->index = cr.index;
	a->block_size = cr.block_size;
	a->disk_size = cr.size;
	/* Requests no larger than a share of SPREAD_KB, so that one sequential
	 * stream keeps every path busy (sysfs max_sectors_kb overrides it). */
	r = np_attach_spread(a->index, a->channels, SPREAD_KB);
	if (r < 0)
		fprintf(stderr,
			"nbdplex attach: warning: cannot set the request size of nbdplex%u: %s\n",
			a->index, strerror(-r));
	for (int i = 0; i < a->channels; i++)
		a->want[i % a->npaths]++;
	for (int i = 1; i < a->channels; i++) {
		p = i % a->npaths;
		r = add_channel(a, p, err);
		if (r < 0)
			goto out_remove;
	}
	return 0;

out_remove:
	ioctl(a->ctl, NPK_IOC_REMOVE, (unsigned long)a->index);
	return r;
}

/* Follows the size of an export whose server advertises SEND_RESIZE: asks
 * for it with a fresh short handshake on the first path that answers, and
 * resizes the disk when it changed. */
static void follow_size(struct attach *a)
{
	struct np_export_info info;
	struct npk_resize rs = {.index = a->index};
	char *err = NULL;
	int p, r = 0;

	for (p = 0; p < a->npaths; p++) {
		/* The last path's reason is the one reported. */
		free(err);
		err = NULL;
		r = np_nbd_size(a->paths[p], a->name, a->tls_creds, &info, &err);
		if (r == 0)
			break;
	}
	if (p == a->npaths) {
		if (!a->size_failing)
			logmsg("nbdplex%u: cannot ask for the export's size: %s", a->index,
			       err ? err : strerror(-r));
		a->size_failing = 1;
		free(err);
		return;
	}
	free(err);
	a->size_failing = 0;
	a->info.size = info.size; /* what a new channel now reports */
	rs.size = info.size - info.size % a->block_size;
	if (rs.size == a->disk_size)
		return;
	if (ioctl(a->ctl, NPK_IOC_RESIZE, &rs) < 0) {
		logmsg("nbdplex%u: resizing from %llu to %llu bytes: %s", a->index,
		       (unsigned long long)a->disk_size, (unsigned long long)rs.size,
		       strerror(errno));
		return;
	}
	logmsg("nbdplex%u: resized from %llu to %llu bytes", a->index,
	       (unsigned long long)a->disk_size, (unsigned long long)rs.size);
	a->disk_size = rs.size;
}

/* Keeps every path at its number of channels until the disk is removed. */
static void keep_up(struct attach *a)
{
	while (!stop) {
		struct npk_info info = {.index = a->index};
		long long t = now_ms();

		if (ioctl(a->ctl, NPK_IOC_INFO, &info) < 0) {
			logmsg("nbdplex%u is gone (%s), exiting", a->index, strerror(errno));
			return;
		}
		for (int p = 0; p < a->npaths; p++) {
			if ((int)info.per_path[p] >= a->want[p] || t < a->next_try[p])
				continue;
			char *err = NULL;
			int r = add_channel(a, p, &err);

			if (r == 0) {
				logmsg("nbdplex%u: channel on %s restored", a->index, a->paths[p]);
				a->backoff[p] = 0;
				continue;
			}
			a->backoff[p] = a->backoff[p] ? a->backoff[p] * 2 : BACKOFF_MIN_MS;
			if (a->backoff[p] > BACKOFF_MAX_MS)
				a->backoff[p] = BACKOFF_MAX_MS;
			a->next_try[p] = t + a->backoff[p];
			logmsg("nbdplex%u: %s; retrying in %d ms", a->index,
			       err ? err : strerror(-r), a->backoff[p]);
			free(err);
		}
		if ((a->info.flags & NBD_FLAG_SEND_RESIZE) && t >= a->next_size) {
			a->next_size = t + RESIZE_POLL_MS;
			follow_size(a);
		}
		usleep(POLL_MS * 1000);
	}
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int parse_attach(struct attach *a, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"path", required_argument, 0, 'p'},
	    {"channels", required_argument, 0, 'n'},
	    {"export", required_argument, 0, 'e'},
	    {"dead-timeout", required_argument, 0, 't'},
	    {"foreground", no_argument, 0, 'f'},
	    {"log", required_argument, 0, 'l'},
	    {"help", no_argument, 0, 'h'},
	    {"tls", no_argument, 0, 'T'},
	    {"tls-certificates", required_argument, 0, 'C'},
	    {"tls-psk", required_argument, 0, 'K'},
	    {"tls-username", required_argument, 0, 'U'},
	    {"tls-hostname", required_argument, 0, 'H'},
	    {"tls-priority", required_argument, 0, 'P'},
	    {"check", no_argument, 0, 'c'},
	    {0, 0, 0, 0},
	};
	char *end;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "p:n:e:t:fl:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (a->npaths == NPK_MAX_PATHS) {
				fprintf(stderr, "nbdplex attach: at most %d paths\n",
					NPK_MAX_PATHS);
				return 2;
			}
			a->paths[a->npaths++] = optarg;
			break;
		case 'n':
			a->channels = (int)strtol(optarg, &end, 10);
			if (*end || a->channels < 1 || a->channels > NPK_MAX_CHANNELS) {
				fprintf(stderr,
					"nbdplex attach: --channels must be 1..%d, not '%s'\n",
					NPK_MAX_CHANNELS, optarg);
				return 2;
			}
			break;
		case 'e':
			a->name = optarg;
			break;
		case 't':
			a->dead_timeout = (unsigned)strtoul(optarg, &end, 10);
			if (*end || !*optarg) {
				fprintf(stderr, "nbdplex attach: bad --dead-timeout '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'f':
			a->foreground = 1;
			break;
		case 'l':
			a->log = optarg;
			break;
		case 'T':
			a->tls = 1;
			break;
		case 'C':
			a->tls_opts.certificates = optarg;
			a->tls = 1;
			break;
		case 'K':
			a->tls_opts.psk_file = optarg;
			a->tls = 1;
			break;
		case 'U':
			a->tls_opts.username = optarg;
			break;
		case 'H':
			a->tls_opts.hostname = optarg;
			break;
		case 'P':
			a->tls_opts.priority = optarg;
			break;
		case 'c':
			a->check = 1;
			break;
		case 'h':
			usage_attach(stdout);
			return -1;
		default:
			usage_attach(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "nbdplex attach: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->npaths)
		a->paths[a->npaths++] = "127.0.0.1:10809";
	if (!a->channels)
		a->channels = a->npaths;
	return 0;
}

/* Prints a failure and frees its message; returns the exit status. */
static int report(int rc, char *err)
{
	fprintf(stderr, "nbdplex attach: %s\n", err ? err : strerror(-rc));
	free(err);
	return 1;
}

int np_cmd_attach(int argc, char **argv)
{
	struct attach a = {.name = "", .ctl = -1};
	char *err = NULL, dev[64];
	int pipefd[2], r;
	pid_t pid;

	if (argc > 1 && !strcmp(argv[1], "--status"))
		return np_attach_status(argc - 1, argv + 1);
	r = parse_attach(&a, argc, argv);
	if (r)
		return r < 0 ? 0 : r;
	if (a.log) {
		log_file = fopen(a.log, "a");
		if (!log_file) {
			fprintf(stderr, "nbdplex attach: cannot open log %s: %s\n", a.log,
				strerror(errno));
			return 1;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (a.tls) {
		r = np_tls_load(&a.tls_opts, &a.tls_creds, &err);
		if (r < 0)
			return report(r, err);
	}
	if (a.check) {
		r = np_nbd_check(a.paths[0], a.name, a.tls_creds, stdout, &err);
		np_tls_free(a.tls_creds);
		return r < 0 ? report(r, err) : 0;
	}
	if (a.foreground) {
		r = setup(&a, &err);
		if (r < 0) {
			report(r, err);
		} else {
			printf("/dev/" NPK_DISK_PREFIX "%u\n", a.index);
			fflush(stdout);
			signal(SIGTERM, on_term);
			signal(SIGINT, on_term);
			keep_up(&a);
		}
		np_tls_free(a.tls_creds);
		return r ? 1 : 0;
	}

	/* The child does the work, so that the disk's owner is the process
	 * that stays; it reports back through a pipe. */
	if (pipe(pipefd)) {
		perror("nbdplex attach: pipe");
		np_tls_free(a.tls_creds);
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("nbdplex attach: fork");
		np_tls_free(a.tls_creds);
		return 1;
	}
	if (pid > 0) {
		char msg[600];
		ssize_t n;

		/* Only the background process connects. */
		np_tls_free(a.tls_creds);
		close(pipefd[1]);
		n = read(pipefd[0], msg, sizeof(msg) - 1);
		msg[n > 0 ? n : 0] = 0;
		if (n > 0 && msg[0] == '/') {
			printf("%s\n", msg);
			return 0;
		}
		fprintf(stderr, "nbdplex attach: %s\n", n > 0 ? msg : "background process died");
		return 1;
	}
	close(pipefd[0]);
	setsid();
	r = setup(&a, &err);
	if (r < 0) {
		const char *msg = err ? err : strerror(-r);

		if (write(pipefd[1], msg, strlen(msg)) < 0)
			_exit(1);
		_exit(1);
	}
	logmsg("attached %s as nbdplex%u", a.paths[0], a.index);
	r = open("/dev/null", O_RDWR);
	if (r >= 0) {
		dup2(r, 0);
		dup2(r, 1);
		dup2(r, 2);
		if (r > 2)
			close(r);
	}
	snprintf(dev, sizeof(dev), "/dev/" NPK_DISK_PREFIX "%u", a.index);
	if (write(pipefd[1], dev, strlen(dev)) < 0)
		_exit(1);
	close(pipefd[1]);
	signal(SIGTERM, on_term);
	keep_up(&a);
	_exit(0);
}

int np_attach_plan(int argc, char **argv, const char **paths, int *want)
{
	struct attach a = {0};

	if (parse_attach(&a, argc, argv))
		return -EINVAL;
	for (int p = 0; p < NPK_MAX_PATHS; p++) {
		paths[p] = p < a.npaths ? a.paths[p] : NULL;
		want[p] = 0;
	}
	for (int i = 0; i < a.channels; i++)
		want[i % a.npaths]++;
	return a.npaths;
}

/* 1 while pid runs (a zombie counts as ended). */
static int alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
		r = p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return r;
}

int np_cmd_detach(int argc, char **argv)
{
	const char *dev;
	unsigned index;
	char extra;
	struct npk_info info = {0};
	int ctl;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: nbdplex detach DEVICE\n"
		       "Removes a device made by 'nbdplex attach' (e.g. /dev/nbdplex0): I/O still\n"
		       "in flight fails, and the attach's background process ends.\n");
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: nbdplex detach DEVICE\n");
		return 2;
	}
	dev = argv[1];
	if (!strncmp(dev, "/dev/", 5))
		dev += 5;
	if (sscanf(dev, NPK_DISK_PREFIX "%u%c", &index, &extra) != 1) {
		fprintf(stderr, "nbdplex detach: '%s' is not an nbdplex device\n", argv[1]);
		return 2;
	}
	ctl = open(CTL_DEV, O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		fprintf(stderr, "nbdplex detach: cannot open %s: %s\n", CTL_DEV, strerror(errno));
		return 1;
	}
	info.index = index;
	if (ioctl(ctl, NPK_IOC_INFO, &info) < 0 ||
	    ioctl(ctl, NPK_IOC_REMOVE, (unsigned long)index) < 0) {
		fprintf(stderr, "nbdplex detach: %s: %s\n", argv[1],
			errno == ENODEV ? "no such device" : strerror(errno));
		close(ctl);
		return 1;
	}
	close(ctl);
	/* The owner polls every POLL_MS; give it ample time to notice. */
	for (int i = 0; i < 100 && info.owner > 0 && info.owner != getpid() && alive(info.owner);
	     i++)
		usleep(100 * 1000);
	if (info.owner > 0 && info.owner != getpid() && alive(info.owner)) {
		fprintf(stderr, "nbdplex detach: %s removed, but process %d is still running\n",
			argv[1], (int)info.owner);
		return 1;
	}
	return 0;
}
