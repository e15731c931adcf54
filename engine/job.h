/* A job: work that may block, run on a worker of the pool (pool.c), then
 * finished on the loop that asked for it, through that loop's mailbox
 * (mailbox.c). The struct is embedded in whatever it stands for (a
 * request, an engine's blocking call, an accepted socket), so handing work
 * around allocates nothing; the owner recovers itself with container_of. */
#ifndef NP_ENGINE_JOB_H
#define NP_ENGINE_JOB_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct np_mailbox;

struct np_job {
	void (*run)(struct np_job *job);      /* on a worker; NULL: nothing to run */
	void (*complete)(struct np_job *job); /* on the loop that owns mbox */
	struct np_mailbox *mbox;              /* where complete is called */
	struct np_job *next;                  /* the queue's, while queued */
};

#endif
