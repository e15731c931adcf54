/* Helpers for engines that keep data in files whose storage is memory
 * (tmpfs, ramfs): they find such files, copy to and from their mappings
 * safely, and keep large writes to them from spinning. Engines include this
 * where they need it; it is no part of the engine interface. */
#ifndef NP_STORAGE_LIB_MEMFILE_H
#define NP_STORAGE_LIB_MEMFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Whether fd is a regular file on tmpfs or ramfs, where the page cache is
 * the storage: reads and writes never wait for a device. */
bool np_fd_in_memory(int fd);

/* Copying to or from a shared mapping of a file (storage/lib/mapcopy.c).
 * After np_copy_guard_init has said yes (once per process; it installs a
 * SIGBUS handler), np_mapped_copy copies n bytes from src to dst, either of
 * them in such a mapping, or returns -EFAULT where a page of it is gone (the
 * file was cut short) or cannot be had (a full file system under a hole),
 * having copied a part, instead of the SIGBUS that a plain copy would
 * raise. Any thread. */
bool np_copy_guard_init(void);
int np_mapped_copy(void *dst, const void *src, size_t n);

/* tmpfs lets one WRITE into a file at a time (the inode's lock), and the
 * kernel waits for that lock by spinning while its holder runs: two threads
 * each writing 1 MiB at once spent 8% of the server's CPU spinning
 * (perf/README.md). An engine takes its own mutex first for a write of
 * NP_BIG_WRITE bytes or more into a file in memory, so that a thread which
 * finds it held sleeps and leaves its core to others. Below that the spin
 * is shorter than a sleep and a wake-up. */
#define NP_BIG_WRITE (256u << 10)

#endif
