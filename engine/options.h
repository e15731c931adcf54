/* options.c: the handshake on a connection. */
#ifndef NP_ENGINE_OPTIONS_H
#define NP_ENGINE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/conn.h"

enum { NP_OPT_MORE, NP_OPT_STARTTLS, NP_OPT_END, NP_OPT_CLOSE, NP_OPT_GO };
/* Starts the handshake: the greeting is queued. Returns 0 or -1. */
int np_options_start(struct np_conn *c);
/* Handles the options in c's input buffer and queues their replies.
 * Returns NP_OPT_MORE (wait for more), NP_OPT_STARTTLS (start TLS once
 * the ACK is out), NP_OPT_END (the client ended the handshake),
 * NP_OPT_CLOSE (close, for *why) or NP_OPT_GO (transmission: c->export
 * and the negotiated options are set). */
int np_options_input(struct np_conn *c, const char **why);
/* A connection another process negotiated (a hand-off): goes straight to
 * transmission with the options it had. names (len bytes) is the export's
 * name, then each meta context the client selected, each ending in NUL.
 * Returns NP_OPT_GO or NP_OPT_CLOSE (*why). */
int np_options_adopt(struct np_conn *c, const char *names, size_t len, bool structured,
		     bool extended, const char **why);

#endif
