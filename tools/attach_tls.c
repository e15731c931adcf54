/* TLS for nbdplex attach: GnuTLS runs the handshake and the options on the
 * blocking socket, then the session's keys and record sequence numbers go
 * to the kernel's TLS layer, which the driver then uses without knowing.
 *
 * Hand-off rules: GnuTLS must hold no record it has read but we have not
 * consumed (checked), and nothing but data records may follow on the wire.
 * Tickets are not asked for; a TLS 1.3 server that sends a NewSessionTicket
 * anyway sends it right after the handshake, before it answers NBD_OPT_GO,
 * so the option exchange consumes it. A record of another type after the
 * hand-off (a KeyUpdate, an alert) makes the kernel fail the receive, which
 * ends the channel; attach's background process then opens a fresh one. */
#include "tools/attach_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define HANDSHAKE_TIMEOUT_MS 30000
#define PSK_LINE_MAX         1024

/* AEAD ciphers the kernel's TLS layer takes (AES-GCM since 4.13/5.1,
 * ChaCha20-Poly1305 since 5.11), in TLS 1.3 and 1.2. */
#define PRIORITY_KTLS                                                                              \
	"NORMAL:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-VERS-ALL:+VERS-TLS1.3:"  \
	"+VERS-TLS1.2"
#define PRIORITY_PSK ":+ECDHE-PSK:+DHE-PSK:+PSK"

struct np_tls {
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk;
	char *username;
	char *hostname;
	char *priority;
};

struct np_tls_session {
	struct np_tls *t;
	gnutls_session_t s;
	char desc[128];
};

/* Finds username's key in a psktool file; returns 0 and a malloc'd hex
 * key, or -errno with *err set. */
static int psk_lookup(const char *file, const char *username, char **key, char **err)
{
	char line[PSK_LINE_MAX];
	size_t ulen = strlen(username);
	FILE *f = fopen(file, "r");
	int r = -ENOENT;

	if (!f)
		return np_errmsg(err, -errno, "--tls-psk %s: %s", file, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *hex = line + ulen + 1;
		size_t n;

		if (strncmp(line, username, ulen) || line[ulen] != ':')
			continue;
		n = strcspn(hex, "\r\n");
		hex[n] = 0;
		if (n == 0 || n % 2 || strspn(hex, "0123456789abcdefABCDEF") != n) {
			r = np_errmsg(
			    err, -EINVAL,
			    "--tls-psk %s: the key of '%s' is not an even number of hex digits",
			    file, username);
			break;
		}
		*key = strdup(hex);
		r = *key ? 0 : np_errmsg(err, -ENOMEM, "out of memory");
		break;
	}
	if (r == -ENOENT)
		np_errmsg(err, -ENOENT,
			  "--tls-psk %s has no key for user '%s' (see --tls-username)", file,
			  username);
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return r;
}

static int load_psk(struct np_tls *t, const struct np_tls_opts *o, char **err)
{
	const char *user = o->username;
	struct passwd *pw;
	gnutls_datum_t d;
	char *key = NULL;
	int r;

	if (!user) {
		pw = getpwuid(geteuid());
		if (!pw)
			return np_errmsg(err, -ENOENT,
					 "no user name for uid %u; use --tls-username",
					 (unsigned)geteuid());
		user = pw->pw_name;
	}
	t->username = strdup(user);
	if (!t->username)
		return np_errmsg(err, -ENOMEM, "out of memory");
	r = psk_lookup(o->psk_file, user, &key, err);
	if (r < 0)
		return r;
	d.data = (unsigned char *)key;
	d.size = (unsigned)strlen(key);
	r = gnutls_psk_allocate_client_credentials(&t->psk);
	if (r >= 0)
		r = gnutls_psk_set_client_credentials(t->psk, user, &d, GNUTLS_PSK_KEY_HEX);
	explicit_bzero(key, d.size);
	free(key);
	if (r < 0)
		return np_errmsg(err, -EINVAL, "--tls-psk %s: %s", o->psk_file, gnutls_strerror(r));
	return 0;
}

static int readable(const char *dir, const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	return access(path, R_OK) == 0;
}

static int load_x509(struct np_tls *t, const struct np_tls_opts *o, char **err)
{
	char ca[4096], crl[4096], cert[4096], key[4096];
	const char *dir = o->certificates;
	int r = gnutls_certificate_allocate_credentials(&t->x509);

	if (r < 0)
		return np_errmsg(err, -EIO, "TLS: %s", gnutls_strerror(r));
	if (!dir) {
		/* --tls alone: the server's certificate must chain to the
		 * system's trusted CAs. */
		r = gnutls_certificate_set_x509_system_trust(t->x509);
		if (r <= 0)
			return np_errmsg(
			    err, -ENOENT,
			    "--tls needs --tls-certificates DIR or --tls-psk FILE (no system CA "
			    "certificates found)");
		return 0;
	}
	if (!readable(dir, "ca-cert.pem", ca, sizeof(ca)))
		return np_errmsg(err, -errno, "--tls-certificates: cannot read %s: %s", ca,
				 strerror(errno));
	r = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0)
		return np_errmsg(err, -EINVAL, "--tls-certificates: %s: %s", ca,
				 r < 0 ? gnutls_strerror(r) : "no certificate in it");
	if (readable(dir, "ca-crl.pem", crl, sizeof(crl))) {
		r = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
		if (r < 0)
			return np_errmsg(err, -EINVAL, "--tls-certificates: %s: %s", crl,
					 gnutls_strerror(r));
	}
	/* A client certificate, for servers that verify their peers. */
	if (readable(dir, "client-cert.pem", cert, sizeof(cert)) &&
	    readable(dir, "client-key.pem", key, sizeof(key))) {
		r = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
		if (r < 0)
			return np_errmsg(err, -EINVAL, "--tls-certificates: %s and %s: %s", cert,
					 key, gnutls_strerror(r));
	}
	return 0;
}

int np_tls_load(const struct np_tls_opts *o, struct np_tls **out, char **err)
{
	struct np_tls *t;
	const char *epos = NULL;
	gnutls_priority_t prio;
	int r = gnutls_global_init();

	*out = NULL;
	if (r < 0)
		return np_errmsg(err, -EIO, "TLS: %s", gnutls_strerror(r));
	t = calloc(1, sizeof(*t));
	if (!t) {
		gnutls_global_deinit();
		return np_errmsg(err, -ENOMEM, "out of memory");
	}
	if (o->psk_file && o->certificates) {
		r = np_errmsg(err, -EINVAL, "--tls-psk and --tls-certificates exclude each other");
		goto out_free;
	}
	r = o->psk_file ? load_psk(t, o, err) : load_x509(t, o, err);
	if (r < 0)
		goto out_free;
	if (o->hostname && !(t->hostname = strdup(o->hostname)))
		goto out_nomem;
	if (o->priority)
		t->priority = strdup(o->priority);
	else if (t->psk)
		t->priority = strdup(PRIORITY_KTLS PRIORITY_PSK);
	else
		t->priority = strdup(PRIORITY_KTLS);
	if (!t->priority)
		goto out_nomem;
	/* Check the priority string now rather than on the first connection. */
	r = gnutls_priority_init(&prio, t->priority, &epos);
	if (r < 0) {
		r = np_errmsg(err, -EINVAL, "--tls-priority: %s at '%s'", gnutls_strerror(r),
			      epos ? epos : "");
		goto out_free;
	}
	gnutls_priority_deinit(prio);
	*out = t;
	return 0;

out_nomem:
	r = np_errmsg(err, -ENOMEM, "out of memory");
out_free:
	np_tls_free(t);
	return r;
}

void np_tls_free(struct np_tls *t)
{
	if (!t)
		return;
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_client_credentials(t->psk);
	free(t->username);
	free(t->hostname);
	free(t->priority);
	free(t);
	gnutls_global_deinit();
}

static int is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Explains a failed handshake as well as GnuTLS lets us. */
static int handshake_error(struct np_tls_session *s, int r, char **err)
{
	const char *hint = s->t->psk ? " (wrong PSK key or user name?)" : "";
	gnutls_datum_t out = {0};
	int rc;

	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
	    gnutls_certificate_verification_status_print(
		gnutls_session_get_verify_cert_status(s->s), GNUTLS_CRT_X509, &out, 0) >= 0) {
		size_t n = strlen((char *)out.data);

		while (n && out.data[n - 1] == ' ')
			out.data[--n] = 0;
		rc = np_errmsg(err, -EACCES, "TLS: the server's certificate is not accepted: %s",
			       out.data);
		gnutls_free(out.data);
	} else if (r == GNUTLS_E_AGAIN) {
		rc = np_errmsg(err, -ETIMEDOUT, "TLS handshake timed out");
	} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		rc = np_errmsg(err, -ECONNREFUSED,
			       "TLS handshake failed: the server sent alert '%s'%s",
			       gnutls_alert_get_name(gnutls_alert_get(s->s)), hint);
	} else if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR) {
		rc = np_errmsg(err, -ECONNRESET,
			       "TLS handshake failed: the server closed the connection%s", hint);
	} else {
		rc =
		    np_errmsg(err, -EPROTO, "TLS handshake failed: %s%s", gnutls_strerror(r), hint);
	}
	return rc;
}

int np_tls_handshake(struct np_tls *t, int fd, const char *host, struct np_tls_session **out,
		     char **err)
{
	struct np_tls_session *s = calloc(1, sizeof(*s));
	const char *name = t->hostname ? t->hostname : host;
	int r;

	*out = NULL;
	if (!s)
		return np_errmsg(err, -ENOMEM, "out of memory");
	s->t = t;
	r = gnutls_init(&s->s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
	if (r < 0) {
		free(s);
		return np_errmsg(err, -EIO, "TLS: %s", gnutls_strerror(r));
	}
	r = gnutls_priority_set_direct(s->s, t->priority, NULL);
	if (r >= 0 && t->psk)
		r = gnutls_credentials_set(s->s, GNUTLS_CRD_PSK, t->psk);
	if (r >= 0 && t->x509) {
		r = gnutls_credentials_set(s->s, GNUTLS_CRD_CERTIFICATE, t->x509);
		/* SNI carries names only, never addresses. */
		if (r >= 0 && !is_ip_literal(name))
			r = gnutls_server_name_set(s->s, GNUTLS_NAME_DNS, name, strlen(name));
		if (r >= 0)
			gnutls_session_set_verify_cert(s->s, name, 0);
	}
	if (r < 0) {
		r = np_errmsg(err, -EIO, "TLS: %s", gnutls_strerror(r));
		goto out_free;
	}
	gnutls_transport_set_int(s->s, fd);
	gnutls_handshake_set_timeout(s->s, HANDSHAKE_TIMEOUT_MS);
	/* Warning alerts and interrupted calls are not fatal; bound the retries. */
	for (int i = 0; i < 16; i++) {
		r = gnutls_handshake(s->s);
		if (r >= 0 || r == GNUTLS_E_AGAIN || gnutls_error_is_fatal(r))
			break;
	}
	if (r < 0) {
		r = handshake_error(s, r, err);
		goto out_free;
	}
	snprintf(s->desc, sizeof(s->desc), "%s %s, %s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(s->s)),
		 gnutls_cipher_get_name(gnutls_cipher_get(s->s)),
		 gnutls_auth_get_type(s->s) == GNUTLS_CRD_PSK ? "PSK" : "X.509");
	*out = s;
	return 0;

out_free:
	np_tls_session_free(s);
	return r;
}

int np_tls_io(struct np_tls_session *s, void *buf, size_t len, int writing)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n =
		    writing ? gnutls_record_send(s->s, p, len) : gnutls_record_recv(s->s, p, len);

		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n == GNUTLS_E_AGAIN)
			return -ETIMEDOUT;
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			return -ECONNRESET;
		if (n < 0)
			return -EPROTO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

const char *np_tls_describe(struct np_tls_session *s)
{
	return s->desc;
}

/* The kernel's view of one direction's keys (linux/tls.h), sized for the
 * largest cipher we hand over. */
union ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/* Where each field lives in the kernel's struct for one cipher. */
struct ktls_layout {
	gnutls_cipher_algorithm_t cipher;
	uint16_t type;
	size_t size, key_off, key_len, salt_off, salt_len, iv_off, iv_len, seq_off;
};

#define KTLS_LAYOUT(gc, kt, st, saltlen)                                                           \
	{                                                                                          \
		gc, kt, sizeof(struct st), offsetof(struct st, key),                               \
		    sizeof(((struct st *)0)->key), offsetof(struct st, salt), saltlen,             \
		    offsetof(struct st, iv), sizeof(((struct st *)0)->iv),                         \
		    offsetof(struct st, rec_seq)                                                   \
	}

static const struct ktls_layout layouts[] = {
    KTLS_LAYOUT(GNUTLS_CIPHER_AES_128_GCM, TLS_CIPHER_AES_GCM_128, tls12_crypto_info_aes_gcm_128,
		TLS_CIPHER_AES_GCM_128_SALT_SIZE),
    KTLS_LAYOUT(GNUTLS_CIPHER_AES_256_GCM, TLS_CIPHER_AES_GCM_256, tls12_crypto_info_aes_gcm_256,
		TLS_CIPHER_AES_GCM_256_SALT_SIZE),
    KTLS_LAYOUT(GNUTLS_CIPHER_CHACHA20_POLY1305, TLS_CIPHER_CHACHA20_POLY1305,
		tls12_crypto_info_chacha20_poly1305, 0),
};

/* Fills info for one direction. GnuTLS gives the whole static IV; the
 * kernel splits it into a 4-byte salt and the rest for AES-GCM. In TLS 1.2
 * the 8-byte explicit nonce of AES-GCM is the record sequence number (as
 * GnuTLS sends it), so the kernel's "iv" starts there. */
static int ktls_fill(union ktls_info *info, const struct ktls_layout *l, uint16_t version,
		     gnutls_session_t s, int read)
{
	gnutls_datum_t iv, key;
	unsigned char seq[8];
	uint8_t *p = (uint8_t *)info;
	int r = gnutls_record_get_state(s, read, NULL, &iv, &key, seq);

	if (r < 0 || key.size != l->key_len)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->base.version = version;
	info->base.cipher_type = l->type;
	memcpy(p + l->key_off, key.data, key.size);
	memcpy(p + l->seq_off, seq, sizeof(seq));
	if (version == TLS_1_2_VERSION && l->salt_len) {
		if (iv.size != l->salt_len)
			return -EINVAL;
		memcpy(p + l->salt_off, iv.data, l->salt_len);
		memcpy(p + l->iv_off, seq, l->iv_len);
	} else {
		if (iv.size != l->salt_len + l->iv_len)
			return -EINVAL;
		memcpy(p + l->salt_off, iv.data, l->salt_len);
		memcpy(p + l->iv_off, iv.data + l->salt_len, l->iv_len);
	}
	return 0;
}

int np_tls_to_kernel(struct np_tls_session *s, int fd, char **err)
{
	gnutls_protocol_t proto = gnutls_protocol_get_version(s->s);
	gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(s->s);
	const struct ktls_layout *l = NULL;
	union ktls_info tx, rx;
	uint16_t version;
	int r, ulp_err;

	if (gnutls_record_check_pending(s->s))
		return np_errmsg(err, -EPROTO, "TLS: %zu bytes left unread after the handshake",
				 gnutls_record_check_pending(s->s));
	if (proto == GNUTLS_TLS1_3)
		version = TLS_1_3_VERSION;
	else if (proto == GNUTLS_TLS1_2)
		version = TLS_1_2_VERSION;
	else
		return np_errmsg(err, -EPROTONOSUPPORT, "kernel TLS takes TLS 1.2 and 1.3, not %s",
				 gnutls_protocol_get_name(proto));
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].cipher == cipher)
			l = &layouts[i];
	if (!l)
		return np_errmsg(
		    err, -ENOTSUP,
		    "the session uses cipher %s, which kernel TLS cannot take; allow AES-GCM "
		    "or ChaCha20-Poly1305",
		    gnutls_cipher_get_name(cipher));
	if (ktls_fill(&tx, l, version, s->s, 0) || ktls_fill(&rx, l, version, s->s, 1)) {
		r = np_errmsg(err, -EIO, "TLS: cannot read the session's %s keys from GnuTLS",
			      gnutls_cipher_get_name(cipher));
		goto out;
	}
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		/* ENOENT: no "tls" ULP registered and none could be loaded. */
		ulp_err = -errno;
		r = np_errmsg(
		    err, ulp_err,
		    "kernel TLS unavailable (%s): %s; try 'modprobe tls' (the kernel needs "
		    "CONFIG_TLS); attach never falls back to plaintext",
		    s->desc,
		    ulp_err == -ENOENT ? "no 'tls' module in this kernel" : strerror(-ulp_err));
		goto out;
	}
	if (setsockopt(fd, SOL_TLS, TLS_TX, &tx, (socklen_t)l->size) ||
	    setsockopt(fd, SOL_TLS, TLS_RX, &rx, (socklen_t)l->size)) {
		r = np_errmsg(err, -errno,
			      "kernel TLS refused %s: %s (an older kernel may lack it)", s->desc,
			      strerror(errno));
		goto out;
	}
	r = 0;
out:
	explicit_bzero(&tx, sizeof(tx));
	explicit_bzero(&rx, sizeof(rx));
	return r;
}

void np_tls_session_free(struct np_tls_session *s)
{
	if (!s)
		return;
	gnutls_deinit(s->s);
	free(s);
}
