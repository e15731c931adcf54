/* Looking up the engines built in. The table itself, np_storage_engines, is
 * generated from the engines added (storage/engines.cmake). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "storage/registry.h"

const struct np_storage_ops *np_storage_find(const char *name)
{
	for (size_t i = 0; np_storage_engines[i]; i++) {
		const struct np_storage_ops *ops = np_storage_engines[i];

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
	static char names[256];

	if (!names[0]) {
		size_t len = 0;

		/* Names that do not fit are cut: this is only for messages. */
		for (size_t i = 0; np_storage_engines[i] && len < sizeof(names); i++) {
			int n = snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "",
					 np_storage_engines[i]->name);

			if (n < 0)
				break;
			len += (size_t)n;
		}
	}
	return names;
}

void np_storage_usage(FILE *f, int indent)
{
	for (size_t i = 0; np_storage_engines[i]; i++) {
		const struct np_storage_ops *ops = np_storage_engines[i];
		const char *line = ops->usage ? ops->usage : "SPEC\t";

		/* Lines of SPEC<TAB>TEXT; the engine's name goes before the
		 * first, and a line without a tab (a long SPEC) has its text
		 * on the next, which starts with the tab. */
		for (bool first = true; *line; first = false) {
			size_t len = strcspn(line, "\n"), tab = strcspn(line, "\t");
			int spec = (int)(tab < len ? tab : len);
			int name = first ? (int)strlen(ops->name) + 1 : 0;
			int pad = 21 - name - spec;

			if (first)
				fprintf(f, "%*s%s:%.*s", indent, "", ops->name, spec, line);
			else
				fprintf(f, "%*s%.*s", indent, "", spec, line);
			if (tab < len)
				fprintf(f, "%*s%.*s", (pad > 0 ? pad : 0) + 2, "", (int)(len - tab - 1),
					line + tab + 1);
			fputc('\n', f);
			line += len + (line[len] == '\n');
		}
	}
}
