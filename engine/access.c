/* Access control: allow lists of addresses and CIDR ranges, and the limits
 * on connections, in total and per client address. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/access.h"
#include "engine/server.h"

/* IPv4 is kept as IPv4-mapped IPv6 so that one comparison serves both, and
 * a v4 rule matches a v4 client seen on a dual-stack listener. A Unix peer
 * becomes a multicast address, which no TCP peer can have, that holds its
 * user: the connection limits count it per user. */
static void to_v6(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_UNIX) {
		const struct np_unix_peer *u = (const struct np_unix_peer *)sa;
		uint32_t uid = u->cred ? (uint32_t)u->uid : UINT32_MAX;

		memset(out, 0, 16);
		out[0] = 0xff;
		out[1] = 'u';
		memcpy(out + 12, &uid, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	}
}

bool np_addr_is_local(const struct sockaddr *peer, const struct sockaddr *me)
{
	static const uint8_t lo6[16] = {[15] = 1};
	static const uint8_t v4[12] = {[10] = 0xff, [11] = 0xff};
	uint8_t p[16], m[16];

	if (peer->sa_family != AF_INET && peer->sa_family != AF_INET6)
		return true;
	to_v6(peer, p);
	if (!memcmp(p, lo6, 16) || (!memcmp(p, v4, 12) && p[12] == 127))
		return true;
	if (!me || (me->sa_family != AF_INET && me->sa_family != AF_INET6))
		return true;
	to_v6(me, m);
	return !memcmp(p, m, 16);
}

int np_cidr_parse(const char *s, struct np_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash, *end;
	unsigned long prefix;
	bool v4;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	v4 = strchr(buf, ':') == NULL;
	if (v4) {
		memset(out->addr, 0, 10);
		out->addr[10] = out->addr[11] = 0xff;
		if (inet_pton(AF_INET, buf, out->addr + 12) != 1)
			return -EINVAL;
	} else if (inet_pton(AF_INET6, buf, out->addr) != 1) {
		return -EINVAL;
	}
	prefix = v4 ? 32 : 128;
	if (slash) {
		errno = 0;
		prefix = strtoul(slash, &end, 10);
		if (errno || end == slash || *end || prefix > (v4 ? 32u : 128u))
			return -EINVAL;
	}
	out->prefix = (unsigned)prefix + (v4 ? 96 : 0);
	return 0;
}

int np_acl_add(struct np_acl *acl, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
		struct np_cidr *v = realloc(acl->v, (acl->n + 1) * sizeof(*v));

		if (!v) {
			r = -ENOMEM;
			break;
		}
		acl->v = v;
		if (np_cidr_parse(tok, &acl->v[acl->n]) < 0) {
			r = -EINVAL;
			break;
		}
		acl->n++;
	}
	free(copy);
	return r;
}

bool np_acl_allows(const struct np_acl *acl, const struct sockaddr *sa)
{
	uint8_t a[16];

	if (acl->n == 0 || sa->sa_family == AF_UNIX)
		return true;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return false;
	to_v6(sa, a);
	for (size_t i = 0; i < acl->n; i++) {
		const struct np_cidr *c = &acl->v[i];
		unsigned full = c->prefix / 8, rest = c->prefix % 8;

		if (memcmp(a, c->addr, full) != 0)
			continue;
		if (rest && ((a[full] ^ c->addr[full]) & (0xff00 >> rest) & 0xff))
			continue;
		return true;
	}
	return false;
}

void np_acl_free(struct np_acl *acl)
{
	free(acl->v);
	acl->v = NULL;
	acl->n = 0;
}

/* ---- connection limits ---- */

#define LIMIT_BUCKETS 256

struct client_count {
	uint8_t addr[16];
	unsigned n;
	struct client_count *next;
};

static unsigned bucket_of(const uint8_t a[16])
{
	unsigned h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ a[i]) * 16777619u;
	return h % LIMIT_BUCKETS;
}

int np_limits_init(struct np_limits *lim, unsigned max_total, unsigned max_per_client)
{
	memset(lim, 0, sizeof(*lim));
	lim->max_total = max_total;
	lim->max_per_client = max_per_client;
	pthread_mutex_init(&lim->lock, NULL);
	if (max_per_client) {
		lim->buckets = calloc(LIMIT_BUCKETS, sizeof(*lim->buckets));
		if (!lim->buckets)
			return -ENOMEM;
	}
	return 0;
}

const char *np_limits_take(struct np_limits *lim, const struct sockaddr *sa)
{
	const char *refused = NULL;
	uint8_t a[16];

	to_v6(sa, a);
	pthread_mutex_lock(&lim->lock);
	if (lim->max_total && lim->total >= lim->max_total) {
		refused = "too many connections";
	} else if (lim->buckets) {
		struct client_count **pp = &lim->buckets[bucket_of(a)], *c = *pp;

		while (c && memcmp(c->addr, a, 16) != 0)
			c = c->next;
		if (c && c->n >= lim->max_per_client) {
			refused = "too many connections from this address";
		} else if (!c && !(c = calloc(1, sizeof(*c)))) {
			refused = "out of memory";
		} else if (c->n == 0) {
			memcpy(c->addr, a, 16);
			c->next = *pp;
			*pp = c;
		}
		if (!refused)
			c->n++;
	}
	if (!refused)
		lim->total++;
	pthread_mutex_unlock(&lim->lock);
	return refused;
}

void np_limits_release(struct np_limits *lim, const struct sockaddr *sa)
{
	uint8_t a[16];

	to_v6(sa, a);
	pthread_mutex_lock(&lim->lock);
	lim->total--;
	if (lim->buckets) {
		struct client_count **pp = &lim->buckets[bucket_of(a)];

		while (*pp && memcmp((*pp)->addr, a, 16) != 0)
			pp = &(*pp)->next;
		if (*pp && --(*pp)->n == 0) {
			struct client_count *dead = *pp;

			*pp = dead->next;
			free(dead);
		}
	}
	pthread_mutex_unlock(&lim->lock);
}

void np_limits_free(struct np_limits *lim)
{
	if (lim->buckets) {
		for (int i = 0; i < LIMIT_BUCKETS; i++) {
			while (lim->buckets[i]) {
				struct client_count *next = lim->buckets[i]->next;

				free(lim->buckets[i]);
				lim->buckets[i] = next;
			}
		}
		free(lim->buckets);
	}
	pthread_mutex_destroy(&lim->lock);
}

/* ---- peers ---- */

void np_format_peer(const struct sockaddr *sa, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

		uv_ip6_name(a, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		uv_ip4_name(a, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
	} else if (sa->sa_family == AF_UNIX) {
		const struct np_unix_peer *u = (const struct np_unix_peer *)sa;
		char who[64] = "";
		size_t n = strnlen(u->path, sizeof(u->path)), room;

		if (u->cred)
			snprintf(who, sizeof(who), " (pid %d, uid %u)", (int)u->pid,
				 (unsigned)u->uid);
		/* Who is on the other end says more than the whole path: a
		 * long path keeps its tail. */
		room = len > 6 + strlen(who) ? len - 6 - strlen(who) : 0;
		if (n <= room)
			snprintf(out, len, "unix:%.*s%s", (int)n, u->path, who);
		else if (room > 3)
			snprintf(out, len, "unix:...%s%s", u->path + n - (room - 3), who);
		else
			snprintf(out, len, "unix%s", who);
	} else {
		snprintf(out, len, "?");
	}
}

void np_server_drop_fd(struct np_server *srv, const struct np_accepted *a)
{
	np_limits_release(&srv->limits, (const struct sockaddr *)&a->peer);
	close(a->fd);
}

bool np_tcp_peer_is_local(uv_tcp_t *tcp, const struct sockaddr *peer)
{
	struct sockaddr_storage me;
	int len = sizeof(me);
	bool known = uv_tcp_getsockname(tcp, (struct sockaddr *)&me, &len) == 0;

	return np_addr_is_local(peer, known ? (const struct sockaddr *)&me : NULL);
}
