/* Limits per export and per client: token buckets that hold a request back
 * until it may run. A request over a limit waits; it never fails because of
 * one.
 *
 * Each export and each [client] section has a group: up to six buckets
 * (requests and bytes per second; for all requests, reads, writes), each
 * holding burst-seconds of its rate and refilled by the clock. A request
 * takes one token from every request bucket that applies and its length
 * from every byte bucket; it may go once each holds what it needs, or the
 * bucket's whole size when it needs more (then the bucket goes into debt,
 * so the rate still holds on average).
 *
 * A connection's requests pass its client's group, then its export's. Where
 * a group's buckets are short, or others already wait in it, the request
 * waits in the group's fair queue (fairq.h, the pool's own mechanism), one
 * owner per connection: connections that share a limit take turns, and one
 * that floods waits behind itself. A request waiting still holds its charge
 * against the in-flight caps (request.c), so the memory waiting takes is
 * bounded by them, and its connection stops reading at its cap as it would
 * for a slow disk.
 *
 * One thread lets requests go: it sleeps until the first waiting request's
 * buckets will hold enough, takes its tokens, and posts it to its loop's
 * mailbox, where its job's complete dispatches it. A change of limits (the
 * control socket, SIGHUP) wakes it, so it applies at once. A request that
 * can go at once, on a connection with none waiting, never meets the
 * thread: the loop takes its tokens under the lock. A connection whose
 * groups have no limit takes no lock at all.
 *
 * Groups live until the server stops, since connections point at them; a
 * reload that drops an export or a [client] section clears its limits. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/access.h"
#include "engine/mailbox.h"
#include "engine/qos.h"
#include "util/err.h"

enum { TOKENS_REQS, TOKENS_BYTES };

struct bucket {
	double rate; /* per second; 0: no limit */
	double size; /* what it holds when full */
	double tokens;
};

struct np_qos_group {
	struct np_qos_group *next;
	bool client;
	bool present; /* named by the current configuration */
	char *name;
	struct np_qos_limits lim;
	atomic_bool limited; /* some rate is set; read without the lock */
	struct bucket b[2][NP_QOS_CLASSES];
	uint64_t refilled; /* ns */
	struct np_fairq queue;
	uint64_t waiting, throttled, waited_ns;
};

struct np_qos {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stop;
	struct np_qos_group *groups;
	const struct np_config *cfg; /* the current one, for [client] matches */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void refill(struct np_qos_group *g, uint64_t now)
{
	double dt = (double)(now - g->refilled) / 1e9;

	g->refilled = now;
	for (int k = 0; k < 2; k++) {
		for (int c = 0; c < NP_QOS_CLASSES; c++) {
			struct bucket *b = &g->b[k][c];

			if (b->rate) {
				b->tokens += b->rate * dt;
				if (b->tokens > b->size)
					b->tokens = b->size;
			}
		}
	}
}

/* The buckets of g an item draws on, with what it needs of each: a token
 * of the request buckets, its length of the byte buckets, of those for
 * every request and for its class. */
struct draw {
	struct bucket *b;
	double need;
};

static int draws(struct np_qos_group *g, const struct np_qos_item *it, struct draw d[4])
{
	int n = 0;

	for (int k = 0; k < 2; k++) {
		double need = k == TOKENS_REQS ? 1.0 : (double)it->bytes;

		for (int c = 0; c < NP_QOS_CLASSES; c++) {
			struct bucket *b = &g->b[k][c];

			if (b->rate > 0 && need > 0 && (c == NP_QOS_ALL || c == it->cls))
				d[n++] = (struct draw){b, need};
		}
	}
	return n;
}

/* How long until every bucket holds what the item needs (or, for a need
 * larger than the bucket, until it is full); 0: it may go. */
static uint64_t wait_ns(struct np_qos_group *g, const struct np_qos_item *it)
{
	struct draw d[4];
	int n = draws(g, it, d);
	uint64_t most = 0;

	for (int i = 0; i < n; i++) {
		struct bucket *b = d[i].b;
		double want = d[i].need < b->size ? d[i].need : b->size;

		if (b->tokens < want) {
			uint64_t w = (uint64_t)((want - b->tokens) / b->rate * 1e9) + 1;

			if (w > most)
				most = w;
		}
	}
	return most;
}

static void take(struct np_qos_group *g, const struct np_qos_item *it)
{
	struct draw d[4];
	int n = draws(g, it, d);

	for (int i = 0; i < n; i++)
		d[i].b->tokens -= d[i].need;
}

static void set_limits(struct np_qos_group *g, const struct np_qos_limits *lim, uint64_t now)
{
	double burst;
	bool any = false;

	refill(g, now);
	g->lim = *lim;
	if (!g->lim.burst_ms)
		g->lim.burst_ms = NP_QOS_BURST_MS_DEFAULT;
	burst = g->lim.burst_ms / 1000.0;
	for (int k = 0; k < 2; k++) {
		for (int c = 0; c < NP_QOS_CLASSES; c++) {
			struct bucket *b = &g->b[k][c];
			uint64_t rate = k == TOKENS_REQS ? lim->iops[c] : lim->bps[c];
			bool was = b->rate > 0;

			b->rate = (double)rate;
			b->size = b->rate * burst < 1 ? 1 : b->rate * burst;
			if (!was || b->tokens > b->size)
				b->tokens = b->size;
			any |= rate > 0;
		}
	}
	atomic_store(&g->limited, any);
}

static struct np_qos_group *find(struct np_qos *q, bool client, const char *name)
{
	for (struct np_qos_group *g = q->groups; g; g = g->next)
		if (g->client == client && !strcmp(g->name, name))
			return g;
	return NULL;
}

static struct np_qos_group *get(struct np_qos *q, bool client, const char *name)
{
	struct np_qos_group *g = find(q, client, name);

	if (g)
		return g;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->name = strdup(name))) {
		free(g);
		return NULL;
	}
	g->client = client;
	g->refilled = now_ns();
	np_fairq_init(&g->queue);
	g->next = q->groups;
	q->groups = g;
	return g;
}

/* ---- waiting ---- */

static void enter(struct np_qos_group *g, struct np_qos_item *it, int stage, uint64_t now)
{
	it->stage = (uint8_t)stage;
	it->since = now;
	g->waiting++;
	g->throttled++;
	np_fairq_push(&g->queue, &it->qc->owner[stage], &it->job, &it->job);
}

static void leave(struct np_qos_group *g, struct np_qos_item *it, uint64_t now)
{
	g->waiting--;
	g->waited_ns += now - it->since;
}

static void release(struct np_qos_item *it)
{
	it->qc->waiting--;
	np_mailbox_post(it->job.mbox, &it->job);
}

/* Passes the item through the groups from stage on: takes the tokens of
 * those that have them now and nobody waiting, and stops it in the first
 * that has not (true), or lets it go (false). */
static bool pass(struct np_qos_item *it, int stage, uint64_t now)
{
	struct np_qos_conn *qc = it->qc;

	for (int s = stage; s < NP_QOS_STAGES; s++) {
		struct np_qos_group *g = qc->group[s];

		if (!g || !atomic_load_explicit(&g->limited, memory_order_relaxed))
			continue;
		refill(g, now);
		if (!np_fairq_empty(&g->queue) || wait_ns(g, it)) {
			enter(g, it, s, now);
			return true;
		}
		take(g, it);
	}
	return false;
}

/* Lets go what may go of g's queue, in its connections' turns. Returns
 * when the head may go next (UINT64_MAX: the queue is empty); *moved is set
 * when a request moved on to wait in another group. */
static uint64_t serve(struct np_qos_group *g, uint64_t now, bool *moved)
{
	struct np_job *job;

	refill(g, now);
	while ((job = np_fairq_peek(&g->queue))) {
		struct np_qos_item *it = container_of(job, struct np_qos_item, job);
		uint64_t w = wait_ns(g, it);

		if (w)
			return now + w;
		take(g, it);
		np_fairq_pop(&g->queue);
		leave(g, it, now);
		if (pass(it, it->stage + 1, now))
			*moved = true;
		else
			release(it);
	}
	return UINT64_MAX;
}

static void *qos_thread(void *arg)
{
	struct np_qos *q = arg;

	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		uint64_t now = now_ns(), next = UINT64_MAX;
		bool moved = false;

		for (struct np_qos_group *g = q->groups; g; g = g->next) {
			if (!np_fairq_empty(&g->queue)) {
				uint64_t t = serve(g, now, &moved);

				if (t < next)
					next = t;
			}
		}
		if (moved)
			continue;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&q->cond, &q->lock);
		} else {
			struct timespec ts = {(time_t)(next / 1000000000u),
					      (long)(next % 1000000000u)};

			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

bool np_qos_limited(const struct np_qos_conn *qc)
{
	for (int s = 0; s < NP_QOS_STAGES; s++)
		if (qc->group[s] &&
		    atomic_load_explicit(&qc->group[s]->limited, memory_order_relaxed))
			return true;
	return false;
}

bool np_qos_wait(struct np_qos *q, struct np_qos_conn *qc, struct np_qos_item *it)
{
	bool held = false;

	if (!q || !np_qos_limited(qc))
		return false;
	it->qc = qc;
	pthread_mutex_lock(&q->lock);
	/* Behind its own: a connection with requests waiting queues the next
	 * one too, in the first group that limits it. */
	if (qc->waiting) {
		for (int s = 0; s < NP_QOS_STAGES && !held; s++) {
			struct np_qos_group *g = qc->group[s];

			if (g && atomic_load_explicit(&g->limited, memory_order_relaxed)) {
				enter(g, it, s, now_ns());
				held = true;
			}
		}
	} else {
		held = pass(it, 0, now_ns());
	}
	if (held) {
		qc->waiting++;
		pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
	return held;
}

void np_qos_cancel(struct np_qos *q, struct np_qos_conn *qc)
{
	uint64_t now;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	now = now_ns();
	for (int s = 0; s < NP_QOS_STAGES && qc->waiting; s++) {
		struct np_job *job =
		    qc->group[s] ? np_fairq_remove(&qc->group[s]->queue, &qc->owner[s]) : NULL;

		while (job) {
			struct np_job *next = job->next;
			struct np_qos_item *it = container_of(job, struct np_qos_item, job);

			leave(qc->group[s], it, now);
			release(it);
			job = next;
		}
	}
	pthread_mutex_unlock(&q->lock);
}

/* ---- configuration ---- */

static bool names(const struct np_client_cfg *cl, const struct sockaddr *peer, const char *identity)
{
	if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6) && cl->address.n &&
	    np_acl_allows(&cl->address, peer))
		return true;
	for (size_t i = 0; identity && i < cl->n_identities; i++)
		if (!strcmp(cl->identities[i], identity))
			return true;
	return false;
}

void np_qos_bind(struct np_qos *q, struct np_qos_conn *qc, const char *export,
		 const struct sockaddr *peer, const char *identity)
{
	const struct np_config *cfg;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	cfg = q->cfg;
	qc->group[0] = NULL;
	for (size_t i = 0; i < cfg->n_clients; i++) {
		if (names(&cfg->clients[i], peer, identity)) {
			qc->group[0] = find(q, true, cfg->clients[i].name);
			break;
		}
	}
	qc->group[1] = find(q, false, export);
	pthread_mutex_unlock(&q->lock);
}

/* Under the lock. A group it cannot make keeps no limit, and says so. */
static void configure(struct np_qos *q, const struct np_config *cfg)
{
	static const struct np_qos_limits none;
	uint64_t now = now_ns();

	for (struct np_qos_group *g = q->groups; g; g = g->next)
		g->present = false;
	for (size_t i = 0; i < cfg->n_exports + cfg->n_clients; i++) {
		bool client = i >= cfg->n_exports;
		const char *name =
		    client ? cfg->clients[i - cfg->n_exports].name : cfg->exports[i].name;
		struct np_qos_group *g = get(q, client, name);

		if (!g)
			continue;
		g->present = true;
		set_limits(g, client ? &cfg->clients[i - cfg->n_exports].qos : &cfg->exports[i].qos,
			   now);
	}
	for (struct np_qos_group *g = q->groups; g; g = g->next)
		if (!g->present)
			set_limits(g, &none, now);
	q->cfg = cfg;
}

void np_qos_configure(struct np_qos *q, const struct np_config *cfg)
{
	pthread_mutex_lock(&q->lock);
	configure(q, cfg);
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

int np_qos_start(struct np_qos **out, const struct np_config *cfg)
{
	struct np_qos *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;
	int r;

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	configure(q, cfg);
	r = pthread_create(&q->thread, NULL, qos_thread, q);
	if (r) {
		q->stop = true;
		np_qos_stop(q);
		return -r;
	}
	*out = q;
	return 0;
}

void np_qos_stop(struct np_qos *q)
{
	if (!q)
		return;
	if (!q->stop) {
		pthread_mutex_lock(&q->lock);
		q->stop = true;
		pthread_cond_signal(&q->cond);
		pthread_mutex_unlock(&q->lock);
		pthread_join(q->thread, NULL);
	}
	while (q->groups) {
		struct np_qos_group *g = q->groups;

		q->groups = g->next;
		free(g->name);
		free(g);
	}
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* ---- the control socket ---- */

int np_qos_snapshot(struct np_qos *q, struct np_qos_stat **out)
{
	struct np_qos_stat *v;
	int n = 0, i = 0;

	*out = NULL;
	if (!q)
		return 0;
	pthread_mutex_lock(&q->lock);
	for (struct np_qos_group *g = q->groups; g; g = g->next)
		n += g->present;
	v = calloc(n ? (size_t)n : 1, sizeof(*v));
	/* Newest first in the list: export and client groups in the
	 * configuration's order come out reversed, so fill from the end. */
	for (struct np_qos_group *g = q->groups; g && v; g = g->next) {
		if (!g->present)
			continue;
		v[n - 1 - i++] = (struct np_qos_stat){g->client,  g->name,      g->lim,
						      g->waiting, g->throttled, g->waited_ns};
	}
	pthread_mutex_unlock(&q->lock);
	if (!v)
		return -ENOMEM;
	*out = v;
	return n;
}

static const char *const class_prefix[NP_QOS_CLASSES] = {"", "read-", "write-"};

static void show_one(FILE *out, const struct np_qos_stat *s)
{
	bool any = false;

	fprintf(out, "%s %s:", s->client ? "client" : "export", s->name);
	for (int c = 0; c < NP_QOS_CLASSES; c++) {
		if (s->lim.iops[c])
			fprintf(out, " %siops-limit=%llu", class_prefix[c],
				(unsigned long long)s->lim.iops[c]);
		if (s->lim.bps[c])
			fprintf(out, " %sbps-limit=%llu", class_prefix[c],
				(unsigned long long)s->lim.bps[c]);
		any |= s->lim.iops[c] || s->lim.bps[c];
	}
	if (any)
		fprintf(out, " burst-seconds=%g", s->lim.burst_ms / 1000.0);
	else
		fprintf(out, " no limit");
	fprintf(out, "; waiting %llu; throttled %llu requests, %.3f s\n",
		(unsigned long long)s->waiting, (unsigned long long)s->throttled,
		(double)s->waited_ns / 1e9);
}

int np_qos_show(struct np_qos *q, FILE *out)
{
	struct np_qos_stat *v;
	int n = np_qos_snapshot(q, &v);

	for (int i = 0; i < n; i++)
		show_one(out, &v[i]);
	free(v);
	return n < 0 ? n : 0;
}

int np_qos_set(struct np_qos *q, const char *kind, const char *name, int n, char **kv, FILE *out,
	       char **err)
{
	bool client = !strcmp(kind, "client");
	struct np_qos_limits lim;
	struct np_qos_group *g;
	struct np_qos_stat s;
	int rc = 0;

	if (!client && strcmp(kind, "export"))
		return np_errmsg(err, -EINVAL, "want 'export NAME' or 'client NAME', not '%s'",
				 kind);
	if (n < 1)
		return np_errmsg(err, -EINVAL, "no KEY=VALUE given");
	pthread_mutex_lock(&q->lock);
	g = find(q, client, name);
	if (!g || !g->present) {
		pthread_mutex_unlock(&q->lock);
		return np_errmsg(err, -ENOENT, "no %s '%s'", kind, name);
	}
	/* Every key is checked before any applies: nothing changes on a
	 * mistake. */
	lim = g->lim;
	for (int i = 0; i < n && !rc; i++) {
		char *save = NULL;

		for (char *w = strtok_r(kv[i], ",", &save); w && !rc;
		     w = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(w, '=');

			if (!eq) {
				rc = np_errmsg(err, -EINVAL, "want KEY=VALUE, not '%s'", w);
				break;
			}
			*eq = '\0';
			rc = np_qos_limit_set(&lim, w, eq + 1);
			if (rc == -ENOENT)
				rc = np_errmsg(err, -EINVAL, "unknown key '%s'", w);
			else if (rc < 0)
				rc = np_errmsg(err, -EINVAL, "bad value '%s' for '%s'", eq + 1, w);
		}
	}
	if (!rc) {
		set_limits(g, &lim, now_ns());
		pthread_cond_signal(&q->cond);
		s = (struct np_qos_stat){g->client,  g->name,      g->lim,
					 g->waiting, g->throttled, g->waited_ns};
	}
	pthread_mutex_unlock(&q->lock);
	if (!rc)
		show_one(out, &s);
	return rc;
}
