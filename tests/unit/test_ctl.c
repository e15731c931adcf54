/* util/ctl.c: two sockets on the one control thread, both framings, verb
 * lookup and arity, bounds, a path longer than sun_path, and a thread that
 * stops with the last socket and starts again with the next. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "util/ctl.h"
#include "util/err.h"

static int verb_echo(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	for (int i = 1; i < argc; i++)
		fprintf(out, "%s %s\n", (const char *)ctx, argv[i]);
	return 0;
}

static int verb_fail(void *ctx, int argc, char **argv, FILE *out, char **err)
{
	fprintf(out, "partial\n");
	return np_errmsg(err, -ENOSPC, "no room for %s", argv[1]);
}

static const struct np_ctl_verb verbs[] = {
    {"echo", -1, verb_echo, NULL},
    {"fail", 1, verb_fail, "fail NAME"},
};

struct sink {
	char buf[4096];
	size_t len;
};

static void to_sink(void *arg, const char *data, size_t len)
{
	struct sink *s = arg;

	if (s->len + len < sizeof(s->buf)) {
		memcpy(s->buf + s->len, data, len);
		s->len += len;
		s->buf[s->len] = '\0';
	}
}

static int call(const char *path, enum np_ctl_framing fr, int argc, char **argv, struct sink *s,
		char **err)
{
	memset(s, 0, sizeof(*s));
	free(*err);
	*err = NULL;
	return np_ctl_call(path, fr, argc, argv, to_sink, s, err);
}

static struct np_ctl *listen_at(const char *path, enum np_ctl_framing fr, const char *tag)
{
	struct np_ctl_config cfg = {.path = path,
				    .mode = 0600,
				    .max_line = 64,
				    .framing = fr,
				    .verbs = verbs,
				    .nverbs = 2,
				    .ctx = (void *)tag};
	struct np_ctl *c = NULL;
	char *err = NULL;
	int rc = np_ctl_listen(&cfg, &c, &err);

	if (rc < 0)
		fprintf(stderr, "listen %s: %s\n", path, err ? err : "?");
	free(err);
	return rc == 0 ? c : NULL;
}

int main(void)
{
	char dir[] = "/tmp/np-ctl-XXXXXX", a[PATH_MAX], b[PATH_MAX], deep[PATH_MAX];
	char *echo[] = {"echo", "x", "y"}, *fail[] = {"fail", "v"}, *bad[] = {"nope"};
	char *usage[] = {"fail"}, *lng[] = {"echo", NULL};
	char *err = NULL;
	struct np_ctl *ca, *cb, *cd;
	struct stat st;
	struct sink s;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(a, sizeof(a), "%s/a.sock", dir);
	snprintf(b, sizeof(b), "%s/b.sock", dir);
	ca = listen_at(a, NP_CTL_STATUS, "A");
	cb = listen_at(b, NP_CTL_RAW, "B");
	CHECK(ca && cb);
	CHECK(stat(a, &st) == 0 && (st.st_mode & 0777) == 0600);

	/* Status framing: output, then OK or the verb's error. */
	CHECK(call(a, NP_CTL_STATUS, 3, echo, &s, &err) == 0);
	CHECK(strcmp(s.buf, "A x\nA y\n") == 0);
	CHECK(call(a, NP_CTL_STATUS, 2, fail, &s, &err) == -ENOSPC);
	CHECK(err && strcmp(err, "no room for v") == 0);
	CHECK(strcmp(s.buf, "partial\n") == 0);
	CHECK(call(a, NP_CTL_STATUS, 1, usage, &s, &err) == -EINVAL);
	CHECK(err && strcmp(err, "usage: fail NAME") == 0);
	CHECK(call(a, NP_CTL_STATUS, 1, bad, &s, &err) == -EINVAL);
	CHECK(err && strcmp(err, "unknown command nope") == 0);
	/* A request over max_line is refused, and the socket serves on. */
	lng[1] = calloc(1, 100);
	memset(lng[1], 'z', 99);
	CHECK(call(a, NP_CTL_STATUS, 2, lng, &s, &err) == -E2BIG);
	free(lng[1]);
	CHECK(call(a, NP_CTL_STATUS, 3, echo, &s, &err) == 0);

	/* Raw framing: the output alone; an error is a line of text. */
	CHECK(call(b, NP_CTL_RAW, 3, echo, &s, &err) == 0);
	CHECK(strcmp(s.buf, "B x\nB y\n") == 0);
	CHECK(call(b, NP_CTL_RAW, 1, bad, &s, &err) == 0);
	CHECK(strcmp(s.buf, "error: unknown command nope\n") == 0);

	/* Closing one leaves the other served; its file is gone. */
	np_ctl_close(cb);
	CHECK(access(b, F_OK) < 0 && errno == ENOENT);
	CHECK(call(b, NP_CTL_RAW, 3, echo, &s, &err) == -ENOENT);
	CHECK(call(a, NP_CTL_STATUS, 3, echo, &s, &err) == 0);

	/* A path longer than sun_path (108 bytes). */
	snprintf(deep, sizeof(deep), "%s/%0120d", dir, 0);
	CHECK(mkdir(deep, 0700) == 0);
	strcat(deep, "/c.sock");
	cd = listen_at(deep, NP_CTL_STATUS, "D");
	CHECK(cd != NULL);
	CHECK(call(deep, NP_CTL_STATUS, 3, echo, &s, &err) == 0);
	CHECK(strcmp(s.buf, "D x\nD y\n") == 0);
	np_ctl_close(cd);
	CHECK(access(deep, F_OK) < 0);

	/* The last close stops the thread; a new socket starts it again. */
	np_ctl_close(ca);
	cb = listen_at(b, NP_CTL_STATUS, "B");
	CHECK(cb != NULL);
	CHECK(call(b, NP_CTL_STATUS, 3, echo, &s, &err) == 0);
	CHECK(strcmp(s.buf, "B x\nB y\n") == 0);
	np_ctl_close(cb);
	free(err);
	*strrchr(deep, '/') = '\0';
	rmdir(deep);
	rmdir(dir);
	return check_done();
}
