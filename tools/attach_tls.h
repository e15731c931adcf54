/* TLS for nbdplex attach: the handshake and the options run in userspace
 * with GnuTLS, then the record layer moves into the kernel (kTLS) so that
 * nbdplex.ko reads and writes plaintext on the socket it is given. */
#ifndef NP_TOOLS_ATTACH_TLS_H
#define NP_TOOLS_ATTACH_TLS_H

#include <stddef.h>

struct np_tls_opts {
	const char *certificates; /* DIR with ca-cert.pem [client-cert.pem client-key.pem] */
	const char *psk_file;     /* psktool format: USERNAME:HEXKEY per line */
	const char *username;     /* PSK identity; default: the local user name */
	const char *hostname;     /* name the certificate must carry; default: the path's host */
	const char *priority;     /* GnuTLS priority string; default: what kTLS can take */
};

/* Credentials, loaded once and reused for every channel. */
struct np_tls;
/* One TLS session on one connected socket, until it moves into the kernel. */
struct np_tls_session;

/* Loads the credentials o names into *out. Returns 0, or -errno with a
 * message in *err. */
int np_tls_load(const struct np_tls_opts *o, struct np_tls **out, char **err);
void np_tls_free(struct np_tls *t);

/* Runs the client handshake on the blocking socket fd (its timeouts
 * apply); host is what the server's certificate is checked against unless
 * the options name another. Returns 0 with the session in *out, or -errno
 * with a message in *err. */
int np_tls_handshake(struct np_tls *t, int fd, const char *host, struct np_tls_session **out,
		     char **err);

/* Sends (writing) or receives all of len bytes. Returns 0 or a negative
 * errno: -ECONNRESET at end of stream, -ETIMEDOUT, -EPROTO for TLS errors. */
int np_tls_io(struct np_tls_session *s, void *buf, size_t len, int writing);

/* "TLS1.3 AES-256-GCM, PSK 'alice'" or the like, for messages. */
const char *np_tls_describe(struct np_tls_session *s);

/* Hands the record layer of fd to the kernel: TCP_ULP "tls" with the
 * session's keys and sequence numbers for both directions. Afterwards fd
 * carries plaintext. Returns 0, or -errno with a message naming the
 * reason when the kernel cannot take it or GnuTLS still holds unread data. */
int np_tls_to_kernel(struct np_tls_session *s, int fd, char **err);

/* Frees the session without sending anything on the socket. */
void np_tls_session_free(struct np_tls_session *s);

#endif
