/* `nbdplex attach --status DEVICE`: the per-path view of a device made by
 * attach, from /sys/block/nbdplexN/nbdplex/paths. */
#ifndef NP_TOOLS_ATTACH_STATUS_H
#define NP_TOOLS_ATTACH_STATUS_H

/* argv[0] is "--status", argv[1] the device (/dev/nbdplexN or nbdplexN),
 * then optionally --interval MS. Samples the per-path counters twice and
 * prints one line per path. Returns 0, 1 on failure, 2 on a usage error. */
int np_attach_status(int argc, char **argv);

/* Sets the device's largest request (queue/max_sectors_kb) so that one
 * request of spread_kb (the 1 MiB of a dd or a copy) splits into four
 * pieces per channel (at least 64 KiB each), and one sequential stream keeps
 * every path busy. No change with one channel. Returns 0 or -errno. */
int np_attach_spread(unsigned index, int channels, unsigned spread_kb);

#endif
