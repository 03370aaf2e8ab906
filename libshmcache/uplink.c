/*
 * uplink.c - the uplink thread: a process-local queue of remote operations,
 * batched and pipelined to the remote tier.
 *
 * Callers enqueue (wait-free, liburcu's wfcqueue). Whoever holds exec_lock
 * runs the queue: dequeues a batch, pipelines it, answers it. A caller
 * that finds exec_lock free takes it and runs the queue itself until its
 * own request is answered (flat combining; standalone servers only, see
 * combine): a miss on an idle uplink then costs one round trip and no
 * thread hand-off at all, which on a VM can cost tens of microseconds
 * each way. A caller that finds it held wakes the thread and sleeps on a
 * futex in its own request until someone answers it; the thread waits for
 * exec_lock and runs what is left. The thread sleeps when the queue is
 * empty and a producer that sees it asleep wakes it (a flag and a futex
 * word, ordered by full barriers on both sides, so a wakeup is never
 * lost). Every remote call is bounded by the configured timeouts, so a
 * caller never waits forever; an open breaker answers at once.
 *
 * Waking a sleeping thread costs the waker a system call and a pass through
 * the scheduler, several microseconds: were the thread to wake every caller
 * of a batch itself, it would spend most of its time doing that, one after
 * the other, instead of sending the next batch. So it publishes every
 * answer of a batch, wakes the first caller only, and leaves the rest to
 * the callers: each one, once it sees its answer, wakes two more (a binary
 * tree over the batch, see uplink_req.wake_next). The futex words are
 * process-local (private futexes: no shared key for the kernel to look up).
 * For the same reason the thread, when the queue runs dry, lingers a few
 * microseconds (yielding the CPU) before it sleeps: the callers it has just
 * answered are about to queue more.
 *
 * Write-behind operations own copies of their key and value and are freed
 * by the thread; at most write_behind_queue of them wait at a time, beyond
 * that they are dropped and counted.
 *
 * The thread mirrors the breaker of every node it talks to in the
 * segment's node table (unodes.h) after each round and each tick, writing
 * an entry only when what it shows has changed, and gives its entries
 * back when it stops.
 */
#include "uplink.h"

#include "alloc.h"
#include "handle.h"
#include "obs.h"
#include "redis_cluster.h"
#include "redis_node.h"
#include "unodes.h"
#include "uplink_uri.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/futex.h>
#include <urcu/wfcqueue.h>
#include "atomic.h"

#define IDLE_TICK_MS 50	     /* health checks and topology refresh while idle */
#define IDLE_LINGER_NS 20000 /* look for more work this long before sleeping */
#define CLAIM_RETRY_MS 1000  /* the node table was full: look again after this */

/* ThreadSanitizer cannot see the ordering liburcu's wfcqueue gives (its
 * atomics are inline assembly): TSAN_RELEASE / TSAN_ACQUIRE (atomic.h)
 * tell it that what a caller wrote into a request before enqueueing it
 * happens before the thread reads it. */

/* Futex operations on words of this process only. */
#define FUTEX_PRIVATE_BIT 128 /* FUTEX_PRIVATE_FLAG of <linux/futex.h> */
#define FUTEX_WAIT_LOCAL (FUTEX_WAIT | FUTEX_PRIVATE_BIT)
#define FUTEX_WAKE_LOCAL (FUTEX_WAKE | FUTEX_PRIVATE_BIT)

struct uplink_req {
	struct cds_wfcq_node node;
	struct shmc__rop op;
	bool owned;           /* write-behind: the thread frees it */
	int32_t done;         /* futex word: 1 once op's result is set */
	/* Written by the thread before done: the done words of the (at most
	 * two) other callers of the same batch that this request's caller
	 * wakes once it sees done, whether it slept or not. Those callers
	 * may have seen their own answers and returned already: a wake-up
	 * then finds nobody, or a later request of the same thread at the
	 * same address, which sees done still 0 and sleeps again. */
	int32_t *wake_next[2];
	unsigned char data[]; /* owned copies of key and value */
};

/* A node's entry in the segment's node table, and what it shows. */
struct node_pub {
	const struct shmc__rnode *node;
	int32_t entry; /* -1: none (the table was full) */
	uint32_t state, failures;
	uint64_t opens;
};

struct shmc__uplink {
	struct shmc__uplink_config cfg;
	struct cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	int32_t wake;        /* futex word the thread sleeps on */
	int32_t sleeping;    /* the thread is (about to be) asleep */
	int32_t stop;
	uint32_t behind_pending;
	/* Held by whoever runs the queue (the thread or a combining caller);
	 * everything below it is used under it. */
	pthread_mutex_t exec_lock;
	struct uplink_req **reqs;        /* the batch being run */
	struct shmc__rop *ops;
	/* The thread's context (NULL until it runs, or if it has none): the
	 * node table entries are the thread's, whoever runs a batch. */
	struct shmc__tctx *thread_t;
	struct shmc__rnode *node;        /* standalone server */
	struct shmc__rcluster *cluster;  /* or a cluster */
	shmc_cache *c;
	pthread_t thread;
	/* What the thread has counted so far of the backend's cumulative
	 * statistics (it counts the differences). */
	struct shmc__rnode_stats seen_nodes;
	struct shmc__rcluster_stats seen_cluster;
	/* The thread's own: its nodes' entries in the node table (nodes are
	 * never removed, so neither are these). */
	struct node_pub *pubs;
	size_t npubs, cap_pubs;
	uint64_t claim_retry_ms;
};

int shmc__uplink_check_uri(const char *uri)
{
	struct shmc__uplink_config cfg;
	char err[256];
	if (shmc__uplink_uri_parse(uri, &cfg, err, sizeof(err)) != 0)
		return shmc__fail(NULL, SHMC_EINVAL, "uplink URI: %s", err);
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake_thread(struct shmc__uplink *u)
{
	cmm_smp_mb();
	if (uatomic_read(&u->sleeping)) {
		uatomic_inc(&u->wake);
		futex_async(&u->wake, FUTEX_WAKE_LOCAL, 1, NULL, NULL, 0);
	}
}

static void enqueue_quiet(struct shmc__uplink *u, struct uplink_req *r)
{
	cds_wfcq_node_init(&r->node);
	TSAN_RELEASE(r);
	cds_wfcq_enqueue(&u->head, &u->tail, &r->node);
}

static void enqueue(struct shmc__uplink *u, struct uplink_req *r)
{
	enqueue_quiet(u, r);
	wake_thread(u);
}

static size_t run_batch(struct shmc__uplink *u, struct shmc__tctx *t, struct uplink_req *self);

/* Run the queue in the caller's thread until r is answered, if nobody
 * else is running it. false if r is still to be answered by someone
 * else (exec_lock was held, or a concurrent enqueue ahead of r was not
 * yet linked, or the remote tier is a cluster: its routing table is read
 * in liburcu read-side sections, which must not run in an application
 * thread that may have registered with liburcu itself, see
 * redis_cluster.c). */
static bool combine(struct shmc__uplink *u, struct uplink_req *r)
{
	if (u->cluster || pthread_mutex_trylock(&u->exec_lock) != 0)
		return false;
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(u->c, &err); /* NULL: count nothing */
	while (!uatomic_read(&r->done) && run_batch(u, t, r))
		;
	pthread_mutex_unlock(&u->exec_lock);
	return uatomic_read(&r->done);
}

/* Wait until r is answered (it is queued, and someone runs the queue);
 * then wake the callers r's answer hands on to. */
static void await_answer(struct uplink_req *r)
{
	while (!uatomic_read(&r->done))
		futex_async(&r->done, FUTEX_WAIT_LOCAL, 0, NULL, NULL, 0);
	cmm_smp_rmb();
	for (int i = 0; i < 2; i++)
		if (r->wake_next[i])
			futex_async(r->wake_next[i], FUTEX_WAKE_LOCAL, 1, NULL, NULL, 0);
}

/* Enqueue reqs[0..n) and see them all answered, by running the queue or
 * by sleeping until the thread has. The queue is first in, first out, so
 * once the last is answered, so are the others. */
static void submit_and_wait(struct shmc__uplink *u, struct uplink_req *reqs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		enqueue_quiet(u, &reqs[i]);
	if (!combine(u, &reqs[n - 1]))
		wake_thread(u);
	for (size_t i = 0; i < n; i++)
		await_answer(&reqs[i]);
}

/* Per-node totals, summed over a cluster's nodes (nodes are never removed,
 * so the sums only grow). */
static void node_sum(void *arg, struct shmc__rnode *n)
{
	struct shmc__rnode_stats *sum = arg, s;
	shmc__rnode_stats(n, &s);
	sum->calls += s.calls;
	sum->ops += s.ops;
	sum->errors_connect += s.errors_connect;
	sum->errors_timeout += s.errors_timeout;
	sum->errors_protocol += s.errors_protocol;
	sum->errors_reply += s.errors_reply;
	sum->breaker_opens += s.breaker_opens;
	sum->fast_fails += s.fast_fails;
}

/* Count what the backend's cumulative statistics moved by since the last
 * look, in the uplink thread's own counters. */
static void count_backend(struct shmc__uplink *u, struct shmc__tctx *t)
{
	struct shmc__rnode_stats now = {0}, *was = &u->seen_nodes;
	if (u->cluster)
		shmc__rcluster_each_node(u->cluster, node_sum, &now);
	else
		node_sum(&now, u->node);
	shmc__count(t, SHMC__CTR_uplink_batches, now.calls - was->calls);
	shmc__count(t, SHMC__CTR_uplink_ops, now.ops - was->ops);
	shmc__count(t, SHMC__CTR_uplink_err_connect, now.errors_connect - was->errors_connect);
	shmc__count(t, SHMC__CTR_uplink_err_timeout, now.errors_timeout - was->errors_timeout);
	shmc__count(t, SHMC__CTR_uplink_err_protocol, now.errors_protocol - was->errors_protocol);
	shmc__count(t, SHMC__CTR_uplink_err_reply, now.errors_reply - was->errors_reply);
	shmc__count(t, SHMC__CTR_uplink_fast_fails, now.fast_fails - was->fast_fails);
	shmc__count(t, SHMC__CTR_uplink_breaker_opens, now.breaker_opens - was->breaker_opens);
	*was = now;
	if (!u->cluster)
		return;
	struct shmc__rcluster_stats cs, *cw = &u->seen_cluster;
	shmc__rcluster_stats(u->cluster, &cs);
	shmc__count(t, SHMC__CTR_uplink_redirects,
		    cs.redirects_moved + cs.redirects_ask - cw->redirects_moved - cw->redirects_ask);
	shmc__count(t, SHMC__CTR_uplink_topology_refreshes,
		    cs.topology_refreshes - cw->topology_refreshes);
	*cw = cs;
}

/* ------------------------------------------------- the node table */

struct publish_ctx {
	struct shmc__uplink *u;
	struct shmc__tctx *t;
	size_t next; /* where the next node's pub probably is */
	bool may_claim;
	bool claim_failed;
};

static uint32_t public_state(enum shmc__breaker_state s)
{
	switch (s) {
	case SHMC__BREAKER_OPEN:
		return SHMC_BREAKER_OPEN;
	case SHMC__BREAKER_HALF_OPEN:
		return SHMC_BREAKER_HALF_OPEN;
	case SHMC__BREAKER_CLOSED:
		break;
	}
	return SHMC_BREAKER_CLOSED;
}

/* n's pub, made (without an entry) if it has none yet; NULL if out of
 * memory. */
static struct node_pub *pub_of(struct publish_ctx *p, const struct shmc__rnode *n)
{
	struct shmc__uplink *u = p->u;
	size_t i = p->next < u->npubs && u->pubs[p->next].node == n ? p->next : 0;
	while (i < u->npubs && u->pubs[i].node != n)
		i++;
	if (i == u->npubs) {
		if (u->npubs == u->cap_pubs) {
			size_t cap = u->cap_pubs ? 2 * u->cap_pubs : 8;
			struct node_pub *grown = shmc__zalloc(cap * sizeof(*grown));
			if (!grown)
				return NULL;
			if (u->npubs)
				memcpy(grown, u->pubs, u->npubs * sizeof(*grown));
			shmc__free(u->pubs);
			u->pubs = grown;
			u->cap_pubs = cap;
		}
		u->pubs[u->npubs++] = (struct node_pub){.node = n, .entry = -1};
	}
	p->next = i + 1;
	return &u->pubs[i];
}

static void publish_node(void *arg, struct shmc__rnode *n)
{
	struct publish_ctx *p = arg;
	struct node_pub *pub = pub_of(p, n);
	if (!pub)
		return;
	if (pub->entry < 0) {
		if (!p->may_claim)
			return;
		pub->entry = shmc__unode_claim(p->u->c, p->t, shmc__rnode_name(n));
		if (pub->entry < 0) {
			p->claim_failed = true;
			return;
		}
		pub->state = SHMC_BREAKER_CLOSED; /* what a claim shows */
		pub->failures = 0;
		pub->opens = 0;
	}
	struct shmc__rnode_stats st;
	shmc__rnode_stats(n, &st);
	uint32_t state = public_state(shmc__rnode_breaker(n)), failures = shmc__rnode_failures(n);
	if (state == pub->state && failures == pub->failures && st.breaker_opens == pub->opens)
		return;
	pub->state = state;
	pub->failures = failures;
	pub->opens = st.breaker_opens;
	shmc__unode_publish(p->u->c, p->t, (uint32_t)pub->entry, state, failures, st.breaker_opens);
}

/* Mirror every node's breaker in the node table. */
static void publish_nodes(struct shmc__uplink *u, struct shmc__tctx *t)
{
	uint64_t now = now_ms();
	struct publish_ctx p = {.u = u, .t = t, .may_claim = now >= u->claim_retry_ms};
	if (u->cluster)
		shmc__rcluster_each_node(u->cluster, publish_node, &p);
	else
		publish_node(&p, u->node);
	if (p.claim_failed)
		u->claim_retry_ms = now + CLAIM_RETRY_MS;
}

static void release_nodes(struct shmc__uplink *u, struct shmc__tctx *t)
{
	for (size_t i = 0; i < u->npubs; i++)
		if (u->pubs[i].entry >= 0)
			shmc__unode_release(u->c, t, (uint32_t)u->pubs[i].entry);
	shmc__free(u->pubs);
	u->pubs = NULL;
	u->npubs = u->cap_pubs = 0;
}

/* Hand a finished request back: wake its caller, or free a write-behind. */
static void complete(struct shmc__uplink *u, struct shmc__tctx *t, struct uplink_req *r)
{
	if (r->owned) {
		if (t && r->op.rc != 0)
			shmc__count(t, SHMC__CTR_write_behind_failed, 1);
		uatomic_dec(&u->behind_pending);
		free(r->op.val_out);
		shmc__free(r);
		return;
	}
	cmm_smp_wmb();
	uatomic_set(&r->done, 1);
	futex_async(&r->done, FUTEX_WAKE_LOCAL, 1, NULL, NULL, 0);
}

/* Hand a batch back: free its write-behinds; publish every other answer
 * and wake the first caller, who starts the tree of wake-ups (caller j
 * wakes callers 2j + 1 and 2j + 2). self is the request of the caller
 * running the batch (NULL for the thread): it is moved first, and being
 * awake already, is not woken. Once a request's done is set its memory
 * may be gone (its caller returns): nothing of it is read after.
 *
 * A caller with several requests (shmc__uplink_get_many) awaits them in
 * the order it queued them, and the others keep that order here: a
 * request's parent in the tree is earlier in the batch, so it is never a
 * later request of the same caller, which would wait for itself. */
static void complete_batch(struct shmc__uplink *u, struct shmc__tctx *t, struct uplink_req **reqs,
			   size_t n, struct uplink_req *self)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (reqs[i]->owned)
			complete(u, t, reqs[i]);
		else
			reqs[m++] = reqs[i];
	}
	if (!m)
		return;
	for (size_t i = 1; i < m; i++)
		if (reqs[i] == self) {
			memmove(&reqs[1], &reqs[0], i * sizeof(*reqs));
			reqs[0] = self;
			break;
		}
	for (size_t j = 0; j < m; j++) {
		size_t child = 2 * j + 1;
		reqs[j]->wake_next[0] = child < m ? &reqs[child]->done : NULL;
		reqs[j]->wake_next[1] = child + 1 < m ? &reqs[child + 1]->done : NULL;
	}
	cmm_smp_wmb();
	bool wake_first = reqs[0] != self;
	int32_t *first = &reqs[0]->done;
	for (size_t j = 0; j < m; j++)
		uatomic_set(&reqs[j]->done, 1);
	if (wake_first)
		futex_async(first, FUTEX_WAKE_LOCAL, 1, NULL, NULL, 0);
}

/* Run up to cfg.batch queued requests as one pipelined round, under
 * exec_lock; self as in complete_batch. Returns how many it ran. */
static size_t run_batch(struct shmc__uplink *u, struct shmc__tctx *t, struct uplink_req *self)
{
	struct uplink_req **reqs = u->reqs;
	struct shmc__rop *ops = u->ops;
	size_t n = 0;
	while (n < u->cfg.batch) {
		struct cds_wfcq_node *node = __cds_wfcq_dequeue_nonblocking(&u->head, &u->tail);
		if (!node || node == CDS_WFCQ_WOULDBLOCK)
			break;
		reqs[n] = caa_container_of(node, struct uplink_req, node);
		TSAN_ACQUIRE(reqs[n]);
		n++;
	}
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		ops[i] = reqs[i]->op;
	uint64_t t0 = shmc__obs_now_ns();
	if (u->cluster)
		shmc__rcluster_exec(u->cluster, ops, n);
	else
		shmc__rnode_exec(u->node, ops, n);
	/* Before anyone is woken: a caller that reads the stats or the node
	 * table once its call returned sees what the call did. */
	if (t) {
		shmc__obs_latency(u->c, SHMC_OP_UPLINK, shmc__obs_now_ns() - t0);
		count_backend(u, t);
	}
	if (u->thread_t)
		publish_nodes(u, u->thread_t);
	for (size_t i = 0; i < n; i++)
		reqs[i]->op = ops[i];
	complete_batch(u, t, reqs, n, self);
	return n;
}

/* The queue has just run dry. The callers a batch answered usually queue
 * their next misses within microseconds, and waking this thread from sleep
 * would cost each such caller a system call and the thread a trip through
 * the scheduler (on another CPU, an interrupt): look again for a moment
 * first, yielding the CPU to whatever else wants it meanwhile. true if
 * work came. */
static bool linger(struct shmc__uplink *u)
{
	uint64_t until = shmc__obs_now_ns() + IDLE_LINGER_NS;
	for (;;) {
		if (!cds_wfcq_empty(&u->head, &u->tail))
			return true;
		if (uatomic_read(&u->stop) || shmc__obs_now_ns() >= until)
			return false;
		sched_yield();
	}
}

static void tick(struct shmc__uplink *u)
{
	if (u->cluster)
		shmc__rcluster_tick(u->cluster);
	else
		shmc__rnode_health(u->node);
}

static void *uplink_main(void *arg)
{
	struct shmc__uplink *u = arg;
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(u->c, &err); /* counters; NULL: count nothing */
	uint64_t next_tick = 0;
	pthread_mutex_lock(&u->exec_lock);
	u->thread_t = t;
	pthread_mutex_unlock(&u->exec_lock);
	while (!uatomic_read(&u->stop)) {
		pthread_mutex_lock(&u->exec_lock);
		size_t ran = run_batch(u, t, NULL);
		uint64_t now = now_ms();
		if (now >= next_tick) {
			tick(u);
			next_tick = now + IDLE_TICK_MS;
			/* run_batch counts and publishes what a batch did; this
			 * is for the health checks and topology refreshes, and
			 * for a breaker turning half-open with time */
			if (t) {
				count_backend(u, t);
				publish_nodes(u, t);
			}
		}
		pthread_mutex_unlock(&u->exec_lock);
		if (ran || linger(u))
			continue;
		/* Nothing queued: sleep until a producer wakes us or a tick. */
		int32_t seen = uatomic_read(&u->wake);
		uatomic_set(&u->sleeping, 1);
		cmm_smp_mb();
		if (cds_wfcq_empty(&u->head, &u->tail) && !uatomic_read(&u->stop)) {
			struct timespec nap = {0, IDLE_TICK_MS * 1000000L};
			futex_async(&u->wake, FUTEX_WAIT_LOCAL, seen, &nap, NULL, 0);
		}
		uatomic_set(&u->sleeping, 0);
	}
	/* Stopping: whatever is still queued fails (a caller combining now
	 * would be using a handle being closed). */
	pthread_mutex_lock(&u->exec_lock);
	struct cds_wfcq_node *node;
	while ((node = __cds_wfcq_dequeue_blocking(&u->head, &u->tail)) != NULL) {
		struct uplink_req *r = caa_container_of(node, struct uplink_req, node);
		TSAN_ACQUIRE(r);
		r->op.rc = SHMC_EUPLINK;
		snprintf(r->op.err, sizeof(r->op.err), "the handle is closing");
		if (r->owned && t)
			shmc__count(t, SHMC__CTR_write_behind_dropped, 1);
		complete(u, NULL, r);
	}
	if (t)
		release_nodes(u, t);
	pthread_mutex_unlock(&u->exec_lock);
	return NULL;
}

/* Free what shmc__uplink_start made (the thread is not running). */
static void uplink_free(struct shmc__uplink *u)
{
	if (u->cluster)
		shmc__rcluster_free(u->cluster);
	if (u->node)
		shmc__rnode_free(u->node);
	shmc__free(u->reqs);
	shmc__free(u->ops);
	cds_wfcq_destroy(&u->head, &u->tail);
	pthread_mutex_destroy(&u->exec_lock);
	shmc__free(u);
}

int shmc__uplink_start(shmc_cache *c, const char *uri)
{
	struct shmc__uplink *u = shmc__zalloc(sizeof(*u));
	if (!u)
		return shmc__fail(c, SHMC_ENOMEM, "uplink");
	cds_wfcq_init(&u->head, &u->tail);
	pthread_mutex_init(&u->exec_lock, NULL);
	char err[256];
	if (shmc__uplink_uri_parse(uri, &u->cfg, err, sizeof(err)) != 0) {
		uplink_free(u);
		return shmc__fail(c, SHMC_EINVAL, "uplink URI: %s", err);
	}
	int rc = 0;
	if (u->cfg.kind == SHMC__UPLINK_REDIS_CLUSTER) {
		rc = shmc__rcluster_new(&u->cfg, &u->cluster);
	} else {
		u->node = shmc__rnode_new(&u->cfg.seeds[0], &u->cfg);
		rc = u->node ? 0 : SHMC_ENOMEM;
	}
	u->reqs = shmc__zalloc(sizeof(*u->reqs) * u->cfg.batch);
	u->ops = shmc__zalloc(sizeof(*u->ops) * u->cfg.batch);
	if (rc || !u->reqs || !u->ops) {
		uplink_free(u);
		return shmc__fail(c, rc ? rc : SHMC_ENOMEM, "uplink: out of memory");
	}
	u->c = c;
	c->uplink = u;
	int e = pthread_create(&u->thread, NULL, uplink_main, u);
	if (e) {
		c->uplink = NULL;
		uplink_free(u);
		return shmc__fail(c, -e, "starting the uplink thread: %s", strerror(e));
	}
	return 0;
}

void shmc__uplink_stop(shmc_cache *c)
{
	struct shmc__uplink *u = c->uplink;
	if (!u)
		return;
	uatomic_set(&u->stop, 1);
	uatomic_inc(&u->wake);
	futex_async(&u->wake, FUTEX_WAKE_LOCAL, 1, NULL, NULL, 0);
	pthread_join(u->thread, NULL);
	c->uplink = NULL;
	uplink_free(u);
}

void shmc__uplink_forget(shmc_cache *c)
{
	/* The parent's thread, connections and queue are not ours: leave
	 * them (a fork child must not talk on the parent's sockets). */
	c->uplink_forgotten = c->uplink;
	c->uplink = NULL;
}

int shmc__uplink_restart(shmc_cache *c)
{
	struct shmc__uplink *old = c->uplink_forgotten;
	if (!old)
		return 0;
	c->uplink_forgotten = NULL;
	return shmc__uplink_start(c, c->uplink_uri);
}

/* The remote tier's failure, recorded for the caller; other codes pass. */
static int remote_failure(shmc_cache *c, const struct shmc__rop *op)
{
	if (op->rc && op->rc != SHMC_ENOTFOUND)
		return shmc__fail(c, SHMC_EUPLINK, "remote tier: %s", op->err);
	return op->rc;
}

/* A request on the caller's stack, answered before it returns. */
static int call(shmc_cache *c, struct shmc__rop *op)
{
	struct shmc__uplink *u = c->uplink;
	if (!u)
		return shmc__fail(c, SHMC_EUPLINK, "no uplink configured");
	struct uplink_req r = {.op = *op};
	submit_and_wait(u, &r, 1);
	*op = r.op;
	return remote_failure(c, op);
}

size_t shmc__uplink_batch(shmc_cache *c)
{
	return c->uplink ? c->uplink->cfg.batch : 1;
}

int shmc__uplink_get_many(shmc_cache *c, struct shmc__uplink_answer *answers, size_t n)
{
	struct shmc__uplink *u = c->uplink;
	if (!u)
		return shmc__fail(c, SHMC_EUPLINK, "no uplink configured");
	if (!n)
		return 0;
	struct uplink_req *reqs = shmc__zalloc(n * sizeof(*reqs));
	if (!reqs)
		return shmc__fail(c, SHMC_ENOMEM, "uplink: %zu requests", n);
	for (size_t i = 0; i < n; i++)
		reqs[i].op = (struct shmc__rop){
			.kind = SHMC__ROP_GET, .key = answers[i].op.key, .klen = answers[i].op.klen};
	submit_and_wait(u, reqs, n);
	for (size_t i = 0; i < n; i++) {
		answers[i].c = c;
		answers[i].op = reqs[i].op;
	}
	shmc__free(reqs);
	return 0;
}

int shmc__uplink_answer_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			       uint32_t *ttl_ms)
{
	(void)key;
	(void)klen;
	struct shmc__uplink_answer *a = arg;
	shmc_cache *c = a->c;
	struct shmc__rop *op = &a->op;
	int rc = remote_failure(c, op);
	if (rc) {
		free(op->val_out);
		op->val_out = NULL;
		return rc;
	}
	/* The loader's contract (malloc(3) memory, freed with free(3)) is
	 * val_out's own. */
	*val = op->val_out;
	*vlen = op->vlen_out;
	op->val_out = NULL;
	/* Never longer than the remote key lives; never longer than the cap. */
	uint64_t ttl = op->pttl_ms > 0 ? (uint64_t)op->pttl_ms : op->pttl_ms == 0 ? 1 : 0;
	uint32_t cap = c->uplink->cfg.ttl_cap_ms;
	if (cap && (ttl == 0 || ttl > cap))
		ttl = cap;
	/* A TTL set here is a bound, but the store spreads every TTL over
	 * +- ttl_jitter_pct of itself: hand back bound * 100 / (100 + pct),
	 * whose top of the spread is the bound, so that jitter only ever
	 * shortens a remote item's life (down to (100 - pct) / (100 + pct)
	 * of the bound). 0 (no bound: the default TTL) is left to jitter. */
	if (ttl > UINT32_MAX)
		ttl = UINT32_MAX;
	uint32_t pct = c->geo.ttl_jitter_pct;
	if (ttl && pct) {
		ttl = ttl * 100 / (100 + pct);
		if (!ttl)
			ttl = 1;
	}
	*ttl_ms = (uint32_t)ttl;
	return 0;
}

int shmc__uplink_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			uint32_t *ttl_ms)
{
	shmc_cache *c = arg;
	if (!c->uplink)
		return shmc__fail(c, SHMC_EUPLINK, "no uplink configured");
	struct uplink_req r = {.op = {.kind = SHMC__ROP_GET, .key = key, .klen = klen}};
	submit_and_wait(c->uplink, &r, 1);
	struct shmc__uplink_answer a = {.c = c, .op = r.op};
	return shmc__uplink_answer_loader(&a, key, klen, val, vlen, ttl_ms);
}

static int remote_write(shmc_cache *c, enum shmc__rop_kind kind, const void *key, size_t klen,
			const void *val, size_t vlen, uint32_t ttl_ms, bool wait)
{
	struct shmc__rop op = {
		.kind = kind, .key = key, .klen = klen, .val = val, .vlen = vlen, .px_ms = ttl_ms};
	if (wait)
		return call(c, &op);
	struct shmc__uplink *u = c->uplink;
	if (!u)
		return shmc__fail(c, SHMC_EUPLINK, "no uplink configured");
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(c, &err);
	if (uatomic_add_return(&u->behind_pending, 1) > u->cfg.write_behind_queue) {
		uatomic_dec(&u->behind_pending);
		if (t)
			shmc__count(t, SHMC__CTR_write_behind_dropped, 1);
		return 0; /* the local write stands; the loss is counted */
	}
	struct uplink_req *r = shmc__zalloc(sizeof(*r) + klen + vlen);
	if (!r) {
		uatomic_dec(&u->behind_pending);
		if (t)
			shmc__count(t, SHMC__CTR_write_behind_dropped, 1);
		return 0;
	}
	memcpy(r->data, key, klen);
	if (vlen)
		memcpy(r->data + klen, val, vlen);
	r->op = op;
	r->op.key = r->data;
	r->op.val = r->data + klen;
	r->owned = true;
	if (t)
		shmc__count(t, SHMC__CTR_write_behind_queued, 1);
	enqueue(u, r);
	return 0;
}

int shmc__uplink_set(shmc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
		     uint32_t ttl_ms, bool wait)
{
	return remote_write(c, SHMC__ROP_SET, key, klen, val, vlen, ttl_ms, wait);
}

int shmc__uplink_del(shmc_cache *c, const void *key, size_t klen, bool wait)
{
	return remote_write(c, SHMC__ROP_DEL, key, klen, NULL, 0, 0, wait);
}
