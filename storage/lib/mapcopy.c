/* Copies to and from a shared mapping of a file, surviving the file's
 * change underneath.
 *
 * A load from or a store into a page of a MAP_SHARED file mapping that the
 * file no longer has (another process cut the file short), or that cannot
 * be allocated (a hole, on a full tmpfs), raises SIGBUS, which would end
 * the server and every connection with it. np_mapped_copy copies with a
 * handler armed for the calling thread: the handler jumps back out of the
 * copy, which fails with -EFAULT, and the caller goes the usual way
 * (pread, pwrite), which answers as it always did (zeroes past the end,
 * ENOSPC, a file grown back). A SIGBUS outside such a copy (or one sent by
 * kill) gets its old disposition back and strikes again at once, as if no
 * handler had been there.
 *
 * SA_NODEFER leaves SIGBUS unblocked while the handler runs, so jumping out
 * of it with a jump buffer that saved no signal mask (no system call on
 * the copy's path) leaves the thread's mask as it was. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "storage/lib/memfile.h"

static __thread sigjmp_buf *copy_jmp; /* set only during a guarded copy */
static struct sigaction old_bus;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;
static bool bus_ok;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = copy_jmp;

	(void)uc;
	if (jb && si->si_code > 0) {
		copy_jmp = NULL;
		siglongjmp(*jb, 1);
	}
	/* Not a guarded copy's fault: under the old disposition a fault
	 * repeats, and a SIGBUS sent by someone is sent again. */
	sigaction(sig, &old_bus, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

static void bus_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	bus_ok = sigaction(SIGBUS, &sa, &old_bus) == 0;
}

bool np_copy_guard_init(void)
{
	pthread_once(&bus_once, bus_install);
	return bus_ok;
}

int np_mapped_copy(void *dst, const void *src, size_t n)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 0))
		return -EFAULT;
	copy_jmp = &jb;
	/* The handler must see the buffer armed before the copy's first
	 * access to the mapping, and disarmed only after its last. */
	atomic_signal_fence(memory_order_seq_cst);
	memcpy(dst, src, n);
	atomic_signal_fence(memory_order_seq_cst);
	copy_jmp = NULL;
	return 0;
}
