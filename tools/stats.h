/* `nbdplex stats` and `nbdplex qos`. */
#ifndef NP_TOOLS_STATS_H
#define NP_TOOLS_STATS_H

/* nbdplex stats --control PATH. argv[0] is "stats"; returns the exit
 * status. */
int np_cmd_stats(int argc, char **argv);
/* nbdplex qos show|set --control PATH ...: the server's limits. */
int np_cmd_qos(int argc, char **argv);

#endif
