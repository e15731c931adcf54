/* Sizes as people write them, for the command line, INI files and specs. */
#ifndef NP_UTIL_SIZE_H
#define NP_UTIL_SIZE_H

#include <stdint.h>

/* Parses a size with an optional K, M, G, T suffix (powers of 1024), which
 * may be followed by "B" or "iB". Returns 0 or -EINVAL. */
int np_parse_size(const char *s, uint64_t *out);

#endif
