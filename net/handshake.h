/* The fixed-newstyle handshake as a state machine over an input buffer.
 *
 * The caller feeds whatever bytes have arrived; the machine consumes whole
 * messages, appends what to send to hs->out, and says when to enter
 * transmission or to close. It does no I/O and knows exports only through
 * the lookup callbacks, so it can be unit-tested and fuzzed alone. */
#ifndef NP_NET_HANDSHAKE_H
#define NP_NET_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/buf.h"

/* Options longer than this are refused by closing the connection: nothing
 * legitimate comes close, and the whole option must fit the input buffer. */
#define NP_HS_MAX_OPTION (64 * 1024)

/* What the handshake needs to know of an export. */
struct np_hs_export {
	const char *name;
	const char *description; /* may be NULL */
	uint64_t size;
	uint16_t tflags; /* transmission flags, before per-client adjustment */
	uint32_t min_block, pref_block, max_block;
	bool hidden;   /* left out of NBD_OPT_LIST */
	bool tls_only; /* refused until TLS is up */
};

struct np_hs_ops {
	/* Returns the export called name ("" is the default), or NULL. */
	const struct np_hs_export *(*lookup)(void *ctx, const char *name);
	/* Returns the i-th export for NBD_OPT_LIST, or NULL past the end. */
	const struct np_hs_export *(*nth)(void *ctx, size_t i);
	/* Optional: the meta contexts the export last found by lookup offers
	 * besides base:allocation, as a malloc'd array of *n malloc'd names
	 * that the machine frees; 0 or -errno. */
	int (*contexts)(void *ctx, char ***names, size_t *n);
};

enum np_hs_state { NP_HS_CLIENT_FLAGS, NP_HS_OPTIONS, NP_HS_DONE };

enum np_hs_status {
	NP_HS_MORE = 0,     /* need more input */
	NP_HS_GO = 1,       /* transmission starts after hs->out is sent */
	NP_HS_STARTTLS = 2, /* send hs->out in clear, then the TLS handshake;
			     * the bytes after *used are TLS records */
	NP_HS_CLOSE = -1,   /* send hs->out, then close; hs->why says why */
};

/* TLS modes, as the spec names them. */
enum np_tls_mode {
	NP_TLS_OFF,      /* NOTLS: STARTTLS is refused */
	NP_TLS_ON,       /* SELECTIVETLS: optional, except for TLS-only exports */
	NP_TLS_REQUIRE,  /* FORCEDTLS: nothing but STARTTLS and ABORT before TLS */
};

/* The most meta contexts one connection selects: each is one chunk of a
 * BLOCK_STATUS reply (engine/reply.h holds that many). A context's id is
 * its index in np_hs.meta plus 1. */
#define NP_HS_MAX_META 8
/* base:allocation's id when a client selects it first (or alone). */
#define NP_META_BASE_ALLOCATION_ID 1

struct np_hs {
	const struct np_hs_ops *ops;
	void *ctx;
	enum np_hs_state state;
	enum np_tls_mode tls_mode; /* set after np_hs_init */
	bool tls_active;           /* set by the caller once TLS is up */
	bool no_zeroes;
	bool structured;
	bool extended;
	char *meta[NP_HS_MAX_META]; /* the contexts SET_META_CONTEXT selected */
	unsigned n_meta;
	bool meta_base_allocation; /* base:allocation is among them */
	const struct np_hs_export *export;
	uint16_t tflags; /* as sent to this client */
	struct np_buf out;
	const char *why; /* static text, for the log line on close */
};

/* Starts a handshake: queues the server greeting in hs->out. */
void np_hs_init(struct np_hs *hs, const struct np_hs_ops *ops, void *ctx);

/* Consumes complete messages from in[0..len); *used says how many bytes. */
enum np_hs_status np_hs_input(struct np_hs *hs, const uint8_t *in, size_t len, size_t *used);

void np_hs_free(struct np_hs *hs);

#endif
