/* Full I/O on blocking file descriptors: one loop, one set of rules, for
 * every caller that must move exactly len bytes.
 *
 * All return 0 when len bytes moved, else a negative errno:
 *   - EINTR is retried, at most NP_FULLIO_MAX_EINTR times in one call (then
 *     -EINTR), so that no caller spins forever under a signal storm;
 *   - end of file (or a peer's orderly close) before len bytes: -ENODATA,
 *     and the bytes of buf not read are zeroed, so that a caller for which
 *     a short file reads as zeroes may take the buffer as it is;
 *   - a write that moves nothing: -EPIPE;
 *   - EAGAIN is not retried: these are for blocking descriptors, where it
 *     means that SO_RCVTIMEO or SO_SNDTIMEO expired; it returns -EAGAIN.
 * After an error, how much moved is unknown to the caller.
 *
 * Writes to a socket use send(MSG_NOSIGNAL), so that a closed peer gives
 * -EPIPE instead of SIGPIPE; on other descriptors they use write. */
#ifndef NP_UTIL_FULLIO_H
#define NP_UTIL_FULLIO_H

#include <stddef.h>
#include <stdint.h>

#define NP_FULLIO_MAX_EINTR 1000

int np_read_full(int fd, void *buf, size_t len);
int np_write_full(int fd, const void *buf, size_t len);
/* At offset off, with preadv2/pwritev2's flags (RWF_DSYNC, RWF_NOWAIT, or
 * 0 for plain pread/pwrite). */
int np_pread_full(int fd, void *buf, size_t len, uint64_t off, int rwflags);
int np_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, int rwflags);

#endif
