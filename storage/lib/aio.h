/* Linux kernel AIO (io_setup, io_submit, io_getevents), the one way engines
 * use it: the file engine for batches on tmpfs that complete inside
 * io_submit, the raw engine for O_DIRECT requests that complete later on an
 * eventfd. Straight system calls with the kernel's own structs, no libaio;
 * completions are read from the ring the kernel maps into the process when
 * its layout is the one known here, which saves a system call per batch
 * (perf/README.md).
 *
 * All functions return a count or a negative errno and retry EINTR. A
 * context belongs to one thread at a time: the ring has one reader. */
#ifndef NP_STORAGE_LIB_AIO_H
#define NP_STORAGE_LIB_AIO_H

#include <linux/aio_abi.h>
#include <stdbool.h>
#include <stdint.h>

struct np_aio {
	aio_context_t ctx;
	bool ring; /* completions may be read from the ring in user space */
};

/* Makes a context for nr requests in flight. 0 or -errno (-EAGAIN: the
 * system-wide limit fs.aio-max-nr is near). */
int np_aio_setup(struct np_aio *a, unsigned nr);
void np_aio_destroy(struct np_aio *a);

/* Fills cb for a READ (write false) or WRITE of len bytes at off, carrying
 * data back in its completion's io_event.data. */
void np_aio_prep(struct iocb *cb, bool write, int fd, void *buf, uint64_t len, uint64_t off,
		 uint64_t data);
/* Makes cb's completion add one to the eventfd efd. */
void np_aio_notify(struct iocb *cb, int efd);

/* Submits up to n iocbs; returns how many the kernel took (at least one),
 * or -errno for the first of them (-EAGAIN: out of resources). */
int np_aio_submit(const struct np_aio *a, struct iocb **cbs, unsigned n);

/* Collects between min and max completions into ev, waiting for the first
 * min of them (min 0: only those already there). Returns how many it got,
 * fewer than min only when io_getevents fails, or -errno when it got none
 * and io_getevents failed. */
int np_aio_reap(const struct np_aio *a, struct io_event *ev, unsigned min, unsigned max);

#endif
