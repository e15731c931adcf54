/* metrics.c: the HTTP endpoint and the control socket's stats verb. */
#ifndef NP_ENGINE_METRICS_H
#define NP_ENGINE_METRICS_H

struct np_server;
int np_metrics_start(struct np_server *srv);
void np_metrics_stop(struct np_server *srv);

#endif
