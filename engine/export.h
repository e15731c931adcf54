/* export.c: the export table, capabilities into flags, and reload. */
#ifndef NP_ENGINE_EXPORT_H
#define NP_ENGINE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/access.h"
#include "engine/config.h"
#include "net/handshake.h"
#include "storage/storage.h"

/* Exports live in a table of NP_MAX_EXPORTS slots, so that loops can keep
 * per-export state in arrays indexed by slot. A reload (SIGHUP) adds
 * exports to free slots and marks removed ones draining: they take no new
 * clients, their connections finish what they hold and close, and the last
 * reference closes the engine and frees the slot. */
#define NP_MAX_EXPORTS 256

struct np_export {
	struct np_hs_export hs; /* name, description, size, flags, block sizes */
	const struct np_acl *allow;
	const struct np_export_cfg *cfg; /* kept alive: every config loaded is */
	const struct np_storage_ops *ops;
	void *h;
	uint32_t caps;
	bool readonly;
	bool draining; /* removed by a reload; set under exports_lock */
	unsigned slot;
	uint64_t gen;  /* tells apart exports that used the same slot */
	unsigned refs; /* the table, connections, loops' engine handles;
			* under exports_lock */
};

struct np_server;
int np_exports_open(struct np_server *srv, const struct np_config *cfg);
void np_exports_close(struct np_server *srv);
/* Rereads the configuration from the same arguments and files, on loop 0,
 * and marks removed exports draining; the caller then has the loops drain
 * their clients. Returns 0, or -1 with the old configuration kept. */
int np_exports_reload(struct np_server *srv);
/* serve --takeover: opens the exports np_exports_open found busy (now
 * released by the running server); on failure closes those it opened and
 * returns -errno with *err set. np_exports_close_deferred closes the first
 * n of them again (the hand-off failed: the running server takes them
 * back). */
int np_exports_open_deferred(struct np_server *srv, char **err);
void np_exports_close_deferred(struct np_server *srv, size_t n);
/* The running server's side: closes an export's engine handle (each loop's
 * own handle closed first, np_loop_export_let_go) so that the new process
 * can open it, and opens it again if the hand-off fails. Only while every
 * connection is still. take_back returns 0 or -errno. */
void np_export_let_go(struct np_server *srv, struct np_export *ex);
/* The engine's space() (bytes used and usable), or -errno: -ENOTSUP
 * without one, or while a hand-off has the handle closed. */
int np_export_space(struct np_server *srv, struct np_export *ex, uint64_t *used,
		    uint64_t *capacity);
int np_export_take_back(struct np_server *srv, struct np_export *ex);
/* Drops a reference; the last one flushes and closes the export. */
void np_export_put(struct np_server *srv, struct np_export *ex);
bool np_export_draining(const struct np_export *ex);
/* The size clients are held to; it changes with NBD_CMD_RESIZE and when the
 * engine reports a new size at a handshake (a file grown underneath). */
uint64_t np_export_size(const struct np_export *ex);
uint64_t np_export_refresh_size(struct np_export *ex);
/* What one connection's handshake holds of the export table: the lookups
 * of np_export_hs_ops (ctx: this struct) see the exports visible to peer,
 * and read copies made under the lock, so that a reload can change an
 * export's settings while handshakes go on. */
struct np_hs_view {
	struct np_server *srv;
	const struct sockaddr *peer;
	struct np_export *held; /* found by the last lookup; held until the next
				 * lookup, transmission, or the connection's end */
	struct np_hs_export found, listed;
};
extern const struct np_hs_ops np_export_hs_ops;

#endif
