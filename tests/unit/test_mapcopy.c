/* np_mapped_copy: copies into a shared mapping of a tmpfs file land in
 * the file; a copy into or out of pages the file lost (cut short) or
 * cannot get (a hole on a full tmpfs) fails with -EFAULT and the process
 * goes on, from several threads at once too; a SIGBUS outside a guarded
 * copy still ends the process. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/lib/memfile.h"
#include "tests/unit/check.h"

#define LEN (1 << 20)

static char path[] = "/dev/shm/np-mapcopy-XXXXXX";

static uint8_t *map_file(int fd, size_t len)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return m == MAP_FAILED ? NULL : m;
}

struct racer {
	uint8_t *map;
	int efaults, oks;
};

/* Copies 64 KiB at a time over the whole mapping while the file shrinks
 * and grows under it. */
static void *race(void *arg)
{
	struct racer *r = arg;
	static uint8_t src[64 << 10];

	for (int round = 0; round < 200; round++)
		for (size_t off = 0; off < LEN; off += sizeof(src)) {
			if (np_mapped_copy(r->map + off, src, sizeof(src)) == 0)
				r->oks++;
			else
				r->efaults++;
		}
	return NULL;
}

static void test_copies_and_truncation(void)
{
	int fd = mkstemp(path);
	static uint8_t buf[16384];
	uint8_t *m;

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, LEN) == 0);
	m = map_file(fd, LEN);
	CHECK(m != NULL);
	if (fd < 0 || !m)
		return;
	memset(buf, 0x5a, sizeof(buf));
	CHECK(np_mapped_copy(m + 12345, buf, 4096) == 0);
	memset(buf, 0, sizeof(buf));
	CHECK(pread(fd, buf, 4096, 12345) == 4096);
	CHECK(buf[0] == 0x5a && buf[4095] == 0x5a);

	/* Cut short: the copy past the new end fails, the one before works. */
	CHECK(ftruncate(fd, LEN / 2) == 0);
	CHECK(np_mapped_copy(m + LEN / 2 + 100, buf, 100) == -EFAULT);
	CHECK(np_mapped_copy(m + LEN / 2 - 8192, buf, 16384) == -EFAULT);
	CHECK(np_mapped_copy(m + 100, buf, 100) == 0);
	/* Reading from the lost pages fails the same way. */
	CHECK(np_mapped_copy(buf, m + LEN / 2 + 100, 100) == -EFAULT);
	CHECK(np_mapped_copy(buf, m + 100, 100) == 0);
	/* Again, on the same thread: the handler is still armed. */
	CHECK(np_mapped_copy(m + LEN - 1, buf, 1) == -EFAULT);
	CHECK(ftruncate(fd, LEN) == 0);
	CHECK(np_mapped_copy(m + LEN - 1, buf, 1) == 0);

	/* Several threads while the file shrinks and grows. */
	{
		struct racer r[3] = {{m, 0, 0}, {m, 0, 0}, {m, 0, 0}};
		pthread_t t[3];

		for (int i = 0; i < 3; i++)
			pthread_create(&t[i], NULL, race, &r[i]);
		for (int i = 0; i < 400; i++) {
			CHECK(ftruncate(fd, i % 2 ? LEN : LEN / 4) == 0);
			usleep(200);
		}
		for (int i = 0; i < 3; i++) {
			pthread_join(t[i], NULL);
			CHECK(r[i].oks > 0);
		}
		fprintf(stderr, "racing copies: %d, %d, %d failed with EFAULT\n", r[0].efaults,
			r[1].efaults, r[2].efaults);
	}
	munmap(m, LEN);
	close(fd);
	unlink(path);
}

/* A hole on a full tmpfs: the page cannot be had. Needs a mount of our
 * own; without the privilege the check is reported, not skipped. */
static void test_full_tmpfs(void)
{
	char dir[] = "/tmp/np-mapcopy-XXXXXX", file[64];
	uint8_t *m, buf[4096] = {1};
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	CHECK(mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0);
	snprintf(file, sizeof(file), "%s/f", dir);
	fd = open(file, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0 && ftruncate(fd, LEN) == 0);
	m = fd >= 0 ? map_file(fd, LEN) : NULL;
	CHECK(m != NULL);
	if (m) {
		int fails = 0;

		/* 64 KiB hold 16 pages; of 32 pages written, some must fail. */
		for (int i = 0; i < 32; i++)
			fails += np_mapped_copy(m + i * 4096, buf, sizeof(buf)) == -EFAULT;
		CHECK(fails > 0 && fails < 32);
		CHECK(pwrite(fd, buf, sizeof(buf), 31 * 4096) < 0 && errno == ENOSPC);
		munmap(m, LEN);
	}
	if (fd >= 0)
		close(fd);
	umount(dir);
	rmdir(dir);
}

/* A SIGBUS outside a guarded copy is not swallowed: a fault, or one sent
 * by kill. */
static void test_unguarded_fault_kills(bool sent)
{
	pid_t pid = fork();
	int st = 0;

	if (pid == 0 && sent) {
		kill(getpid(), SIGBUS);
		_exit(0);
	}
	if (pid == 0) {
		char child_path[] = "/dev/shm/np-mapcopy-XXXXXX";
		int fd = mkstemp(child_path);
		uint8_t *m;

		if (fd < 0 || ftruncate(fd, LEN) < 0 || !(m = map_file(fd, LEN)))
			_exit(2);
		unlink(child_path);
		if (ftruncate(fd, 0) < 0)
			_exit(2);
		*(volatile uint8_t *)(m + 4096) = 1;
		_exit(0);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
#ifdef __SANITIZE_ADDRESS__
	/* AddressSanitizer's handler, the one before ours, reports and exits. */
	CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS) ||
	      (WIFEXITED(st) && WEXITSTATUS(st) == 1));
#else
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
#endif
}

int main(void)
{
	CHECK(np_copy_guard_init());
	CHECK(np_copy_guard_init()); /* once is enough; twice is harmless */
	test_copies_and_truncation();
	test_full_tmpfs();
	test_unguarded_fault_kills(false);
	test_unguarded_fault_kills(true);
	return check_done();
}
