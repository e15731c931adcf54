/* The registry of the engines built in. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

extern const struct np_storage_ops np_storage_file;
extern const struct np_storage_ops np_storage_mem;
#ifdef NP_HAVE_RAW
extern const struct np_storage_ops np_storage_raw;
#endif
#ifdef NP_HAVE_THIN
extern const struct np_storage_ops np_storage_thin;
#endif

static const struct np_storage_ops *const engines[] = {
    &np_storage_file,
    &np_storage_mem,
#ifdef NP_HAVE_RAW
    &np_storage_raw,
#endif
#ifdef NP_HAVE_THIN
    &np_storage_thin,
#endif
};

#define N_ENGINES (sizeof(engines) / sizeof(engines[0]))

const struct np_storage_ops *np_storage_find(const char *name)
{
	for (size_t i = 0; i < N_ENGINES; i++) {
		const struct np_storage_ops *ops = engines[i];

		/* Refuse an engine built against another version of the
		 * interface rather than call through a mismatched table. */
		if (ops->api_version != NP_STORAGE_API_VERSION ||
		    ops->size != sizeof(struct np_storage_ops))
			continue;
		if (strcmp(ops->name, name) == 0)
			return ops;
	}
	return NULL;
}

const char *np_storage_names(void)
{
	static char names[128];

	if (!names[0]) {
		for (size_t i = 0; i < N_ENGINES; i++) {
			if (i)
				strcat(names, ", ");
			strcat(names, engines[i]->name);
		}
	}
	return names;
}
