/* See err.h. */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>

int np_errmsg(char **err, int rc, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	if (err && !*err) {
		va_start(ap, fmt);
		if (vasprintf(&s, fmt, ap) < 0)
			s = NULL;
		va_end(ap);
		*err = s;
	}
	return rc;
}
