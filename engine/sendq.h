/* sendq.c: a connection's write queue. */
#ifndef NP_ENGINE_SENDQ_H
#define NP_ENGINE_SENDQ_H

#include "engine/conn.h"

/* Writes what c's queue holds, as far as the socket takes it. Returns 0,
 * or -1 with *why when the connection must close. */
int np_sendq_flush(struct np_conn *c, const char **why);
/* Closes the poll handle a full socket made, as the connection closes. */
void np_sendq_stop(struct np_conn *c);
/* Under TLS: queues what GnuTLS pushed as one wire reply, and encrypts
 * every queued plaintext reply into it (0 or -1). */
void np_sendq_push_tls(struct np_conn *c);
int np_sendq_encrypt(struct np_conn *c);
/* Why a read from or a write to the client failed. */
const char *np_socket_error(int e);

#endif
