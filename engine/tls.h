/* tls.c: the server side of TLS: the credentials, and a connection's
 * session. */
#ifndef NP_ENGINE_TLS_H
#define NP_ENGINE_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/conn.h"

struct np_server;
struct np_tls;
int np_tls_server_init(struct np_server *srv);
void np_tls_server_free(struct np_server *srv);
/* The connection's half: these return what happened and leave acting on
 * it to conn.c. Ciphertext GnuTLS produces collects in c->tls_out, for
 * the caller to queue as it is. */
/* Sets up TLS on a connection whose STARTTLS was just accepted; what the
 * client sent after STARTTLS becomes the first ciphertext. Returns 0 or
 * -1. */
int np_tls_start(struct np_conn *c);
/* Goes on with the TLS handshake: 1 while it needs more from the client,
 * 0 once TLS is up (c->tls_up), -1 on failure with *why. */
int np_tls_step(struct np_conn *c, const char **why);
/* Where libuv may put received ciphertext, and that n bytes arrived. */
void np_tls_recv_space(struct np_conn *c, uint8_t **p, size_t *len);
void np_tls_received(struct np_conn *c, size_t n);
/* Decrypts one record into the input buffer: 1 when it did, 0 when GnuTLS
 * needs more ciphertext or the buffer is full, -1 when the session ended
 * (*why: NULL for a clean close). */
int np_tls_read(struct np_conn *c, const char **why);
/* Encrypts len bytes into c->tls_out. Returns 0 or -EIO. */
int np_tls_encrypt(struct np_conn *c, const void *data, size_t len);
/* Queues the session's close_notify into c->tls_out: the clean end of a
 * TLS connection, after its last reply. */
void np_tls_bye(struct np_conn *c);
void np_tls_conn_free(struct np_conn *c);
/* Who the TLS peer is, for [client] sections: its PSK user name, or the DN
 * of its certificate when certificates are verified; NULL if neither. The
 * DN goes into buf. */
const char *np_tls_identity(struct np_conn *c, char *buf, size_t len);

#endif
