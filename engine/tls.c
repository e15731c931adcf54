/* TLS after NBD_OPT_STARTTLS, with GnuTLS over memory.
 *
 * GnuTLS never touches the socket: its pull function reads ciphertext that
 * libuv has already received into c->tls_in, and its push function appends
 * ciphertext to c->tls_out, which leaves as an ordinary queued reply. So the
 * loop stays non-blocking and replies are still written in batches: every
 * plaintext reply queued by a callback is encrypted in one pass before the
 * connection's write. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/config.h"
#include "engine/conn_int.h"
#include "engine/log.h"
#include "engine/server.h"
#include "engine/tls.h"

#define TLS_IN_SIZE (64 * 1024)

struct np_tls {
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	bool verify_peer;
};

static int load_x509(struct np_tls *t, const char *dir)
{
	char cert[4096], key[4096], ca[4096];
	struct stat st;
	int r;

	snprintf(cert, sizeof(cert), "%s/server-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", dir);
	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	if (gnutls_certificate_allocate_credentials(&t->x509) < 0)
		return -1;
	r = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		np_err("TLS: cannot load %s and %s: %s", cert, key, gnutls_strerror(r));
		return -1;
	}
	if (stat(ca, &st) == 0) {
		r = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			np_err("TLS: cannot load %s: %s", ca, gnutls_strerror(r));
			return -1;
		}
	} else if (t->verify_peer) {
		np_err("TLS: --tls-verify-peer needs %s", ca);
		return -1;
	}
	return 0;
}

int np_tls_server_init(struct np_server *srv)
{
	const struct np_config *cfg = srv->cfg;
	struct np_tls *t;
	int r;

	if (cfg->tls_mode == NP_TLS_OFF)
		return 0;
	if (!cfg->tls_certificates && !cfg->tls_psk) {
		np_err("TLS: --tls %s needs --tls-certificates DIR or --tls-psk FILE",
		       cfg->tls_mode == NP_TLS_REQUIRE ? "require" : "on");
		return -1;
	}
	r = gnutls_global_init();
	if (r < 0) {
		np_err("TLS: %s", gnutls_strerror(r));
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	srv->tls = t;
	t->verify_peer = cfg->tls_verify_peer;
	if (cfg->tls_certificates && load_x509(t, cfg->tls_certificates) < 0)
		return -1;
	if (cfg->tls_psk) {
		struct stat st;

		if (stat(cfg->tls_psk, &st) < 0) {
			np_err("TLS: %s: %s", cfg->tls_psk, strerror(errno));
			return -1;
		}
		if (gnutls_psk_allocate_server_credentials(&t->psk) < 0)
			return -1;
		r = gnutls_psk_set_server_credentials_file(t->psk, cfg->tls_psk);
		if (r < 0) {
			np_err("TLS: %s: %s", cfg->tls_psk, gnutls_strerror(r));
			return -1;
		}
	}
	np_info("TLS %s: %s%s%s", cfg->tls_mode == NP_TLS_REQUIRE ? "required" : "offered",
		t->x509 ? "X.509" : "", t->x509 && t->psk ? " and " : "", t->psk ? "PSK" : "");
	return 0;
}

void np_tls_server_free(struct np_server *srv)
{
	struct np_tls *t = srv->tls;

	if (!t)
		return;
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	free(t);
	srv->tls = NULL;
	gnutls_global_deinit();
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct np_conn *c = ptr;

	if (np_buf_append(&c->tls_out, data, len) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return (ssize_t)len;
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct np_conn *c = ptr;
	size_t avail = c->tls_in_len - c->tls_in_pos;

	if (avail == 0) {
		gnutls_transport_set_errno(c->tls, EAGAIN);
		return -1;
	}
	if (len > avail)
		len = avail;
	memcpy(data, c->tls_in + c->tls_in_pos, len);
	c->tls_in_pos += len;
	return (ssize_t)len;
}

static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
	struct np_conn *c = ptr;

	(void)ms;
	return c->tls_in_len > c->tls_in_pos;
}

void np_tls_recv_space(struct np_conn *c, uint8_t **p, size_t *len)
{
	if (c->tls_in_pos) {
		memmove(c->tls_in, c->tls_in + c->tls_in_pos, c->tls_in_len - c->tls_in_pos);
		c->tls_in_len -= c->tls_in_pos;
		c->tls_in_pos = 0;
	}
	*p = c->tls_in + c->tls_in_len;
	*len = TLS_IN_SIZE - c->tls_in_len;
}

int np_tls_read(struct np_conn *c, const char **why)
{
	size_t space = NP_INBUF_SIZE - c->in_len;
	ssize_t r;

	if (space == 0)
		return 0;
	r = gnutls_record_recv(c->tls, c->in + c->in_len, space);
	if (r > 0) {
		c->in_len += (size_t)r;
		return 1;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return 0;
	*why = r == 0 ? NULL : gnutls_strerror((int)r);
	return -1;
}

int np_tls_step(struct np_conn *c, const char **why)
{
	struct np_tls *t = c->srv->tls;
	int r = gnutls_handshake(c->tls);

	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return 1;
	if (r < 0) {
		*why = gnutls_strerror(r);
		return -1;
	}
	if (t->verify_peer && gnutls_auth_get_type(c->tls) == GNUTLS_CRD_CERTIFICATE) {
		unsigned status = 0;

		if (gnutls_certificate_verify_peers2(c->tls, &status) < 0 || status != 0) {
			*why = "TLS: the client's certificate is not trusted";
			return -1;
		}
	}
	c->tls_up = true;
	c->hs.tls_active = true;
	if (gnutls_auth_get_type(c->tls) == GNUTLS_CRD_PSK)
		np_info("conn %llu from %s: TLS up, PSK identity '%s'", (unsigned long long)c->id,
			c->peer, gnutls_psk_server_get_username(c->tls));
	else
		np_info("conn %llu from %s: TLS up (%s)", (unsigned long long)c->id, c->peer,
			gnutls_protocol_get_name(gnutls_protocol_get_version(c->tls)));
	return 0;
}

int np_tls_start(struct np_conn *c)
{
	struct np_tls *t = c->srv->tls;
	const char *prio = t->psk ? "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK" : "NORMAL";
	uint8_t *left = c->in;
	size_t n = c->in_len;

	c->tls_in = malloc(TLS_IN_SIZE);
	if (!c->tls_in ||
	    gnutls_init((gnutls_session_t *)&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0)
		return -1;
	if (gnutls_priority_set_direct(c->tls, prio, NULL) < 0)
		return -1;
	if (t->x509) {
		gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, t->x509);
		if (t->verify_peer)
			gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
	}
	if (t->psk)
		gnutls_credentials_set(c->tls, GNUTLS_CRD_PSK, t->psk);
	gnutls_transport_set_ptr(c->tls, c);
	gnutls_transport_set_push_function(c->tls, push);
	gnutls_transport_set_pull_function(c->tls, pull);
	gnutls_transport_set_pull_timeout_function(c->tls, pull_timeout);
	/* What the client sent after STARTTLS is already its TLS hello. */
	if (n > TLS_IN_SIZE)
		return -1;
	memcpy(c->tls_in, left, n);
	c->tls_in_len = n;
	c->tls_in_pos = 0;
	c->in_len = 0;
	return 0;
}

void np_tls_received(struct np_conn *c, size_t n)
{
	c->tls_in_len += n;
}

int np_tls_encrypt(struct np_conn *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t w = gnutls_record_send(c->tls, p, len);

		if (w < 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

const char *np_tls_identity(struct np_conn *c, char *buf, size_t len)
{
	const gnutls_datum_t *certs;
	unsigned n = 0;
	gnutls_x509_crt_t crt;
	size_t size = len;
	int r;

	if (!c->tls_up)
		return NULL;
	if (gnutls_auth_get_type(c->tls) == GNUTLS_CRD_PSK)
		return gnutls_psk_server_get_username(c->tls);
	/* A certificate names its holder only once the CA has vouched for it
	 * (np_tls_step checked it). */
	if (!c->srv->tls->verify_peer || !(certs = gnutls_certificate_get_peers(c->tls, &n)) ||
	    !n || gnutls_x509_crt_init(&crt) < 0)
		return NULL;
	r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
	if (r >= 0)
		r = gnutls_x509_crt_get_dn(crt, buf, &size);
	gnutls_x509_crt_deinit(crt);
	return r < 0 ? NULL : buf;
}

void np_tls_bye(struct np_conn *c)
{
	/* The transport is memory: this only pushes the alert into tls_out. */
	if (c->tls && c->tls_up)
		gnutls_bye(c->tls, GNUTLS_SHUT_WR);
}

void np_tls_conn_free(struct np_conn *c)
{
	if (c->tls)
		gnutls_deinit(c->tls);
	free(c->tls_in);
	np_buf_free(&c->tls_out);
}
