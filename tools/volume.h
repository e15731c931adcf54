/* `nbdplex volume`: thin pool administration. */
#ifndef NP_TOOLS_VOLUME_H
#define NP_TOOLS_VOLUME_H

/* argv[0] is "volume". Returns the process exit status: 0 on success,
 * 1 when the command failed, 2 on a usage error. */
int np_cmd_volume(int argc, char **argv);

/* Prints "nbdplex volume: " and the message to stderr; returns status. */
int np_volume_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
