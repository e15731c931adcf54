/* The error convention (docs/design.md, "Conventions"): functions return 0
 * or a negative errno, and where a message helps a user, fill an optional
 * char **err with a malloc'd one. */
#ifndef NP_UTIL_ERR_H
#define NP_UTIL_ERR_H

/* Sets *err to the formatted message unless err is NULL or *err is already
 * set (the innermost message wins); returns rc, for
 * "return np_errmsg(err, -EINVAL, ...)". */
int np_errmsg(char **err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
