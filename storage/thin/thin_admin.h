/* Thin pools: the typed administration API. The pool's control socket
 * (control.c, which turns the words of a request into these calls) and
 * `nbdplex volume` when no process serves the pool both call it, so
 * results and messages do not depend on which path ran. Callers outside
 * storage/thin/ see a pool only through this header.
 *
 * Every function returns 0 or a negative errno, with a malloc'd message in
 * *err when err is not NULL (util/err.h). Each catalog change is one synced
 * write batch made under the pool's io_lock held exclusively, so I/O never
 * sees half a change, and every open volume follows it at once. */
#ifndef NP_THIN_ADMIN_H
#define NP_THIN_ADMIN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define THIN_NAME_MAX      128
#define THIN_DEFAULT_CHUNK (64 * 1024)
#define THIN_MIN_CHUNK     4096
#define THIN_MAX_CHUNK     (64 * 1024 * 1024)
#define THIN_MAX_SIZE      (1ULL << 62) /* the largest volume */

struct thin_pool;

/* A volume or snapshot name: 1 to THIN_NAME_MAX of A-Z a-z 0-9 . _ -, not
 * starting with . or -. */
bool thin_name_ok(const char *name);

/* volume init: creates a pool in dir (see `nbdplex volume init --help`). */
int thin_pool_create(const char *dir, const char *data, uint32_t chunk_size, uint64_t size,
		     char **err);
/* Opens (or shares) the pool in dir; with_control also serves
 * POOLDIR/control.sock, so that other volume commands reach this process.
 * Fails with -EBUSY while another process has it open. */
int thin_pool_open(const char *dir, bool with_control, struct thin_pool **out, char **err);
void thin_pool_close(struct thin_pool *p);
uint32_t thin_admin_chunk_size(const struct thin_pool *p);
/* Sends the words of a command (those of `nbdplex volume` without POOLDIR:
 * "create", NAME, SIZE) to the process serving the pool in dir, and writes
 * its output to out. -ENOENT or -ECONNREFUSED: no process serves it, so
 * open it with thin_pool_open and call the functions below instead. */
int thin_control_call(const char *dir, int argc, char **argv, FILE *out, char **err);
/* The same, passing the output to out(arg, data, len) piece by piece. */
int thin_control_call_fn(const char *dir, int argc, char **argv,
			 void (*out)(void *arg, const char *data, size_t len), void *arg,
			 char **err);

int thin_admin_create(struct thin_pool *p, const char *name, uint64_t size, char **err);
/* Grows a volume, exported or not, or shrinks one that no export has open. */
int thin_admin_resize(struct thin_pool *p, const char *name, uint64_t size, char **err);
int thin_admin_snapshot(struct thin_pool *p, const char *vol, const char *snap, char **err);
int thin_admin_clone(struct thin_pool *p, const char *snap, const char *vol, char **err);
/* Deletes a volume or snapshot that no export has open and on which at
 * most one volume depends. */
int thin_admin_delete(struct thin_pool *p, const char *name, char **err);

/* The space of a pool, in bytes. */
struct thin_space {
	uint64_t used;      /* chunks mapped, or released but not yet durable */
	uint64_t allocated; /* chunks handed to the allocator (the pool record) */
	uint64_t max;       /* what allocated may reach now */
	uint64_t data_size; /* the data file or device */
	const char *limit;  /* what bounds max: size, fs, device, fixed */
};
int thin_admin_space(struct thin_pool *p, struct thin_space *s, char **err);

struct thin_vol_info {
	char name[THIN_NAME_MAX + 1];
	char origin[THIN_NAME_MAX + 1]; /* empty: none, or no longer there */
	bool snapshot;
	uint64_t size;      /* bytes */
	uint64_t allocated; /* bytes of the chunks it maps itself */
};

struct thin_pool_info {
	char dir[PATH_MAX];
	uint32_t chunk_size;
	uint64_t commits, writes; /* group commits since the pool was opened, and their writes */
	struct thin_space space;
};

/* Every volume and snapshot, sorted by name, in *vols (malloc'd, *n of
 * them), and the pool's state. I/O goes on meanwhile. */
int thin_admin_list(struct thin_pool *p, struct thin_vol_info **vols, size_t *n,
		    struct thin_pool_info *info, char **err);
/* thin_admin_list, written to out as the text of `nbdplex volume list`. */
int thin_admin_print_list(struct thin_pool *p, FILE *out, char **err);
/* Incremental backup (diff.c). Calls cb, in order, with each byte range of
 * [off, off + len) in which `to` (a volume or snapshot) may differ from
 * `from`, a snapshot in its chain (taken of it, or of what it was cloned
 * from), at chunk granularity and clipped to to's size, which goes in
 * *size; a non-zero cb stops the walk. I/O goes on meanwhile. With from
 * NULL, the ranges where `to` maps data (for a full copy). */
typedef int (*thin_range_cb)(void *ctx, uint64_t off, uint64_t len);
int thin_admin_diff(struct thin_pool *p, const char *from, const char *to, uint64_t off,
		    uint64_t len, thin_range_cb cb, void *ctx, uint64_t *size, char **err);
/* thin_admin_diff over all of to, as `volume diff`'s text: one "OFFSET
 * LENGTH" line per range, or with json a JSON array of {"offset",
 * "length"} objects. */
int thin_admin_print_diff(struct thin_pool *p, const char *from, const char *to, bool json,
			  FILE *out, char **err);
/* The most thin_admin_read reads at once. */
#define THIN_READ_MAX (4u << 20)
/* Reads len bytes (at most THIN_READ_MAX) of volume or snapshot name at off,
 * for a copy out of a pool that another process serves. */
int thin_admin_read(struct thin_pool *p, const char *name, void *buf, uint64_t len, uint64_t off,
		    char **err);

/* Verifies that every mapped chunk is allocated exactly once and that the
 * data file holds the pool; writes what it finds to report (`volume
 * check`'s text). -EUCLEAN: inconsistent. */
int thin_admin_check(struct thin_pool *p, FILE *report, char **err);

#endif
