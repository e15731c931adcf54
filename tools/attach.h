/* `nbdplex attach` and `nbdplex detach`: the userspace half of the kernel
 * client (kmod/). */
#ifndef NP_TOOLS_ATTACH_H
#define NP_TOOLS_ATTACH_H

/* argv[0] is "attach": negotiates with the server, creates /dev/nbdplexN,
 * hands it the channels, prints the device and leaves a background process
 * that replaces lost channels. Returns the exit status: 0 on success, 1 on
 * failure, 2 on a usage error. */
int np_cmd_attach(int argc, char **argv);

/* argv[0] is "detach": removes a device made by attach and waits for its
 * background process to end. Same exit statuses. */
int np_cmd_detach(int argc, char **argv);

/* For attach --status: parses an attach command line (argv[0] is "attach")
 * into its paths and the channels it keeps on each (paths[] and want[] have
 * NPK_MAX_PATHS entries). Returns the number of paths, or -EINVAL. */
int np_attach_plan(int argc, char **argv, const char **paths, int *want);

#endif
