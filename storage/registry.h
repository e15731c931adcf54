/* The engines built in and the subcommands they contribute. Both tables are
 * generated at build time from the engines that storage/NAME/engine.cmake
 * added with np_add_engine (storage/engines.cmake). */
#ifndef NP_STORAGE_REGISTRY_H
#define NP_STORAGE_REGISTRY_H

#include <stdio.h>

#include "storage/storage.h"

/* Every engine built in, in the order added, ending with NULL. */
extern const struct np_storage_ops *const np_storage_engines[];

/* The engine called name, or NULL when none is built in or it was built
 * against another version of the interface. */
const struct np_storage_ops *np_storage_find(const char *name);
/* "file, mem, ...", for messages. */
const char *np_storage_names(void);
/* Prints every engine's usage lines, "ENGINE:SPEC  what", indented by
 * indent spaces, for --help. */
void np_storage_usage(FILE *f, int indent);

/* A subcommand an engine contributes (`nbdplex volume` for thin). */
struct np_engine_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

/* Linked into the nbdplex executable alone, because the functions they
 * name belong to the tools: every subcommand, ending with a NULL name, and
 * the one called name or NULL. */
extern const struct np_engine_cmd np_engine_cmds[];
const struct np_engine_cmd *np_engine_cmd_find(const char *name);

#endif
