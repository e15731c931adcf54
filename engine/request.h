/* request.c: parse, validate, dispatch and batch; completions into
 * replies. */
#ifndef NP_ENGINE_REQUEST_H
#define NP_ENGINE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/conn.h"
#include "storage/storage.h"

enum { NP_PARSE_MORE, NP_PARSE_DISC, NP_PARSE_CLOSE };
/* Handles every complete request in c's input buffer, or until a budget
 * pauses the connection (c->paused). Returns NP_PARSE_MORE, NP_PARSE_DISC
 * (the client disconnects: end the connection once its replies are out) or
 * NP_PARSE_CLOSE (close it now, for *why). */
int np_request_parse(struct np_conn *c, const char **why);
/* Whether the connection has parsed its share of this loop turn
 * (NP_TURN_REQS); parsing then pauses until the next turn. */
bool np_request_turn_spent(const struct np_conn *c);
/* The WRITE payload read straight into its buffer has all arrived. */
void np_request_payload_done(struct np_conn *c);
/* Drops n bytes from the front of the input buffer. */
void np_request_consume(struct np_conn *c, size_t n);
/* Bytes the connection may hold before it stops reading, and whether it
 * holds that many, or the server its total budget (np_req_over_budget). */
uint64_t np_req_cap(const struct np_conn *c);
bool np_req_over_budget(const struct np_conn *c, uint64_t own_cap);
/* Queues a copy of data as a reply: as it is when wire (TLS records, the
 * handshake before TLS), else encrypted first under TLS. Returns 0 or -1. */
int np_req_queue_copy(struct np_conn *c, const void *data, size_t len, bool wire);

/* Where libuv may put what arrives: the rest of a WRITE payload straight
 * into its buffer, else the free end of the input buffer. */
void np_request_recv_space(struct np_conn *c, uint8_t **p, size_t *len);
/* Frees a WRITE whose payload is still arriving, or being skipped. */
void np_request_drop_partial(struct np_conn *c);
/* Frees every request and reply a closed connection still holds. */
void np_request_drop(struct np_conn *c);
/* Frees a request, with its buffers and what it held of the budgets. */
struct np_req;
void np_req_free(struct np_req *r);
/* np_loop_env.run_blocking: runs an engine's blocking call for a request
 * it got from submit on the pool, in the connection's turn. */
void np_req_run_blocking(const struct np_loop_env *env, struct np_io *io,
			 void (*fn)(void *h, struct np_io *io));
/* Completion of an engine request, on the connection's loop thread. */
void np_req_done(struct np_io *io);

#endif
