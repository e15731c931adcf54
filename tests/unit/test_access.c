/* Allow lists: address and range parsing and matching, v4 and v6. */
#include <arpa/inet.h>
#include <string.h>

#include "engine/access.h"
#include "tests/unit/check.h"

static struct sockaddr_storage addr(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &a->sin6_addr);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &a->sin_addr);
	}
	return ss;
}

static bool allows(const struct np_acl *acl, const char *ip)
{
	struct sockaddr_storage ss = addr(ip);

	return np_acl_allows(acl, (struct sockaddr *)&ss);
}

int main(void)
{
	struct np_acl acl = {0};
	struct np_cidr c;
	struct np_limits lim;
	struct sockaddr_storage a1 = addr("10.0.0.1"), a2 = addr("10.0.0.2");

	CHECK(allows(&acl, "1.2.3.4")); /* empty list: everyone */
	CHECK(np_acl_add(&acl, "10.1.0.0/16, 192.168.5.7 fd00::/8") == 0);
	CHECK(acl.n == 3);
	CHECK(allows(&acl, "10.1.200.3"));
	CHECK(!allows(&acl, "10.2.0.1"));
	CHECK(allows(&acl, "192.168.5.7"));
	CHECK(!allows(&acl, "192.168.5.8"));
	CHECK(allows(&acl, "fd12:3456::1"));
	CHECK(!allows(&acl, "fe80::1"));
	/* A v4 client seen through a dual-stack socket matches v4 rules. */
	CHECK(allows(&acl, "::ffff:10.1.2.3"));
	CHECK(!allows(&acl, "::ffff:10.9.2.3"));
	np_acl_free(&acl);

	CHECK(np_acl_add(&acl, "10.0.0.0/7") == 0); /* a prefix not on a byte */
	CHECK(allows(&acl, "11.255.255.255"));
	CHECK(!allows(&acl, "12.0.0.0"));
	np_acl_free(&acl);
	CHECK(np_acl_add(&acl, "0.0.0.0/0") == 0);
	CHECK(allows(&acl, "8.8.8.8"));
	CHECK(!allows(&acl, "::1")); /* a v4 range does not match v6 */
	np_acl_free(&acl);

	CHECK(np_cidr_parse("1.2.3.4/33", &c) < 0);
	CHECK(np_cidr_parse("::1/129", &c) < 0);
	CHECK(np_cidr_parse("1.2.3", &c) < 0);
	CHECK(np_cidr_parse("1.2.3.4/x", &c) < 0);
	CHECK(np_cidr_parse("host.example", &c) < 0);
	CHECK(np_acl_add(&acl, "1.2.3.4 bogus") < 0);

	/* np_addr_is_local: loopback, or the address the peer connected to. */
	{
		struct sockaddr_storage me4 = addr("192.0.2.1"), me6 = addr("2001:db8::1");
		struct sockaddr_storage p;
		const struct sockaddr *m4 = (struct sockaddr *)&me4, *m6 = (struct sockaddr *)&me6;

		p = addr("127.0.0.1");
		CHECK(np_addr_is_local((struct sockaddr *)&p, m4));
		p = addr("127.9.8.7");
		CHECK(np_addr_is_local((struct sockaddr *)&p, m4));
		p = addr("::1");
		CHECK(np_addr_is_local((struct sockaddr *)&p, m6));
		p = addr("::ffff:127.0.0.1");
		CHECK(np_addr_is_local((struct sockaddr *)&p, m6));
		p = addr("192.0.2.1");
		CHECK(np_addr_is_local((struct sockaddr *)&p, m4));
		p = addr("::ffff:192.0.2.1"); /* a v4 peer on a dual-stack listener */
		CHECK(np_addr_is_local((struct sockaddr *)&p, m4));
		p = addr("192.0.2.2");
		CHECK(!np_addr_is_local((struct sockaddr *)&p, m4));
		CHECK(np_addr_is_local((struct sockaddr *)&p, NULL));
		p = addr("2001:db8::2");
		CHECK(!np_addr_is_local((struct sockaddr *)&p, m6));
		p = addr("128.0.0.1");
		CHECK(!np_addr_is_local((struct sockaddr *)&p, m4));
	}
	np_acl_free(&acl);

	/* Limits: 3 in total, 2 per address, released on close. */
	CHECK(np_limits_init(&lim, 3, 2) == 0);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a1) == NULL);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a1) == NULL);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a1) != NULL);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a2) == NULL);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a2) != NULL); /* total */
	np_limits_release(&lim, (struct sockaddr *)&a1);
	CHECK(np_limits_take(&lim, (struct sockaddr *)&a2) == NULL);
	np_limits_release(&lim, (struct sockaddr *)&a1);
	np_limits_release(&lim, (struct sockaddr *)&a2);
	np_limits_release(&lim, (struct sockaddr *)&a2);
	CHECK(lim.total == 0);
	np_limits_free(&lim);

	/* Unix peers: past any allow list, counted per user. */
	{
		struct sockaddr_storage u0, u0b, u1;
		struct np_unix_peer *p0 = (struct np_unix_peer *)&u0;

		memset(&u0, 0, sizeof(u0));
		p0->family = AF_UNIX;
		p0->cred = true;
		p0->pid = 100;
		p0->uid = 0;
		u0b = u1 = u0;
		((struct np_unix_peer *)&u0b)->pid = 101;
		((struct np_unix_peer *)&u1)->uid = 1000;
		CHECK(np_acl_add(&acl, "192.0.2.1") == 0);
		CHECK(np_acl_allows(&acl, (struct sockaddr *)&u0));
		CHECK(np_addr_is_local((struct sockaddr *)&u0, NULL));
		np_acl_free(&acl);
		CHECK(np_limits_init(&lim, 0, 1) == 0);
		CHECK(np_limits_take(&lim, (struct sockaddr *)&u0) == NULL);
		CHECK(np_limits_take(&lim, (struct sockaddr *)&u0b) != NULL); /* same user */
		CHECK(np_limits_take(&lim, (struct sockaddr *)&u1) == NULL);
		CHECK(np_limits_take(&lim, (struct sockaddr *)&a1) == NULL); /* not a Unix peer */
		np_limits_release(&lim, (struct sockaddr *)&u0);
		CHECK(np_limits_take(&lim, (struct sockaddr *)&u0b) == NULL);
		np_limits_release(&lim, (struct sockaddr *)&u0b);
		np_limits_release(&lim, (struct sockaddr *)&u1);
		np_limits_release(&lim, (struct sockaddr *)&a1);
		CHECK(lim.total == 0);
		np_limits_free(&lim);
	}
	return check_done();
}
