/*
 * test_uplink_cluster.c - the Redis Cluster uplink as a caller sees it,
 * end to end through the public API: shmc_open with
 * shmc_opts_set_uplink("redis-cluster://..."), shmc_fetch with no loader,
 * shmc_stats; against the fixture's six-node cluster (three masters, three
 * replicas, cluster-node-timeout 1000 ms; tests/uplink/servers.sh).
 *
 * test_redis_cluster.c drives the routing layer (redis_cluster.c) directly;
 * here the whole path runs: fill leases in the segment, each process's
 * uplink thread with its queue and batches, and the routing under it, in
 * several processes that attach the segment by name while the cluster
 * changes under them. What is asserted is what a caller can observe:
 * return codes, values, and the host-wide counters.
 *
 * Values are written into the cluster with the test's own connections
 * (cluster_util.h) at the master that owns each key's slot, as the cluster
 * itself computes it (CLUSTER KEYSLOT), and replicated before use (WAIT).
 * Loads delete each key from L1 before fetching it, so that fetches really
 * go to the cluster.
 *
 * The failover test kills a master; the node is started again (it rejoins
 * as a replica) before the test ends, also when the test fails, so the
 * cluster is whole for the tests that run after it (the fixture's tests
 * run one at a time: RESOURCE_LOCK redis_cluster).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include <shmcache.h>

#include "cluster_util.h"
#include "testutil.h"

#define SEGMENT_BYTES (16u << 20)
#define KEY_BYTES 48
#define VAL_BYTES 96

/* ---------------------------------------------------------- the data */

/* Every key's slot as the cluster computes it, and its owner's port. */
static uint16_t owner_of(const struct tc_env *e, const struct tc_topo *t, const char *key)
{
	uint16_t port = t->slot_port[tc_keyslot(e, key)];

	assert_true(port != 0);
	return port;
}

static void value_of(char *out, const char *key)
{
	snprintf(out, VAL_BYTES, "value:%s:%ld", key, (long)getpid());
}

/* SET every key at its owner, or DEL it (vals NULL); then wait until each
 * master involved has replicated its writes to its replica (WAIT covers
 * every write of every client of that master so far). */
static void cluster_write(const struct tc_env *e, const struct tc_topo *t, char (*keys)[KEY_BYTES],
			  char (*vals)[VAL_BYTES], unsigned n)
{
	uint16_t masters[TC_NODES_MAX];
	unsigned nmasters = tc_topo_masters(t, masters);
	redisContext *conn[TC_NODES_MAX] = {NULL};
	bool used[TC_NODES_MAX] = {false};

	for (unsigned m = 0; m < nmasters; m++) {
		conn[m] = tc_connect(masters[m]);
		assert_non_null(conn[m]);
	}
	for (unsigned i = 0; i < n; i++) {
		uint16_t owner = owner_of(e, t, keys[i]);
		unsigned m = 0;
		while (m < nmasters && masters[m] != owner)
			m++;
		assert_true(m < nmasters);
		redisReply *r = vals ? redisCommand(conn[m], "SET %s %s", keys[i], vals[i])
				     : redisCommand(conn[m], "DEL %s", keys[i]);
		if (!r || r->type == REDIS_REPLY_ERROR)
			fail_msg("writing %s at %u: %s", keys[i], (unsigned)owner,
				 r ? r->str : conn[m]->errstr);
		freeReplyObject(r);
		used[m] = true;
	}
	for (unsigned m = 0; m < nmasters; m++) {
		if (used[m]) {
			redisReply *r = redisCommand(conn[m], "WAIT 1 5000");
			assert_non_null(r);
			assert_int_equal(r->type, REDIS_REPLY_INTEGER);
			assert_int_equal(r->integer, 1);
			freeReplyObject(r);
		}
		redisFree(conn[m]);
	}
}

/* A handle on segment name with the cluster uplink (create: a fresh
 * segment, this process running no background roles). */
static int open_uplink(const char *name, const char *uri, bool create, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);

	if (!rc)
		rc = shmc_opts_set_uplink(o, uri);
	if (!rc && create)
		rc = shmc_opts_set_size(o, SEGMENT_BYTES);
	if (!rc && create)
		rc = shmc_opts_set_sweeper(o, 0);
	if (!rc) {
		if (create)
			shmc_unlink(name);
		rc = shmc_open(name, o, create ? SHMC_CREATE | SHMC_EXCL : 0, out);
	}
	shmc_opts_destroy(o);
	return rc;
}

static void print_uplink_stats(const char *what, const struct shmc_stats *st)
{
	print_message("%s: %" PRIu64 " fetch lookups, %" PRIu64 " origin calls, %" PRIu64
		      " fills, %" PRIu64 " coalesced waits; uplink: %" PRIu64
		      " round trips, %" PRIu64 " ops, %" PRIu64 " redirects (MOVED+ASK), %" PRIu64
		      " topology refreshes; errors: connect %" PRIu64 ", timeout %" PRIu64
		      ", protocol %" PRIu64 ", reply %" PRIu64 ", fast fails %" PRIu64
		      ", breaker opens %" PRIu64 "\n",
		      what, st->gets, st->origin_calls, st->fills, st->coalesced_waits,
		      st->uplink_batches, st->uplink_ops, st->uplink_redirects,
		      st->uplink_topology_refreshes, st->uplink_err_connect, st->uplink_err_timeout,
		      st->uplink_err_protocol, st->uplink_err_reply, st->uplink_fast_fails,
		      st->uplink_breaker_opens);
}

/* ------------------------------------- keys on every master, one process */

#define SPREAD_KEYS 60
#define SPREAD_ABSENT 4
#define SPREAD_THREADS 4

struct spread {
	shmc_cache *c;
	char keys[SPREAD_KEYS + SPREAD_ABSENT][KEY_BYTES];
	char vals[SPREAD_KEYS][VAL_BYTES];
	_Atomic unsigned arrived;
	_Atomic unsigned errors, wrong, absent_ok;
	char first_problem[256];
	_Atomic int have_problem;
};

struct spread_thread {
	struct spread *s;
	unsigned index;
};

static void spread_problem(struct spread *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void spread_problem(struct spread *s, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&s->have_problem, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(s->first_problem, sizeof s->first_problem, fmt, ap);
	va_end(ap);
}

/* Fetch every key once, starting at a different key in each thread, all
 * threads at once: their misses meet in the uplink's queue. */
static void *spread_main(void *arg)
{
	struct spread_thread *th = arg;
	struct spread *s = th->s;
	const unsigned total = SPREAD_KEYS + SPREAD_ABSENT;
	char buf[VAL_BYTES];

	tu_barrier_wait(&s->arrived, SPREAD_THREADS);
	for (unsigned i = 0; i < total; i++) {
		unsigned k = (i + th->index * total / SPREAD_THREADS) % total;
		size_t vlen = 0;
		int rc = shmc_fetch(s->c, s->keys[k], strlen(s->keys[k]), buf, sizeof buf, &vlen,
				    NULL, NULL);
		if (k >= SPREAD_KEYS) {
			if (rc == SHMC_ENOTFOUND) {
				atomic_fetch_add(&s->absent_ok, 1);
				continue;
			}
			atomic_fetch_add(&s->wrong, 1);
			spread_problem(s, "%s: %s, expected SHMC_ENOTFOUND", s->keys[k],
				       shmc_errname(rc));
		} else if (rc) {
			atomic_fetch_add(&s->errors, 1);
			spread_problem(s, "%s: %s: %s", s->keys[k], shmc_errname(rc),
				       shmc_errmsg(s->c));
		} else if (vlen != strlen(s->vals[k]) || memcmp(buf, s->vals[k], vlen)) {
			atomic_fetch_add(&s->wrong, 1);
			spread_problem(s, "%s: value '%.*s', expected '%s'", s->keys[k], (int)vlen,
				       buf, s->vals[k]);
		}
	}
	return NULL;
}

static void test_uplink_cluster_keys_on_every_master_read_through(void **state)
{
	(void)state;
	static struct spread s;
	struct tc_env e;
	static struct tc_topo t;
	uint16_t masters[TC_NODES_MAX];
	unsigned per_master[TC_NODES_MAX] = {0};
	char name[TU_NAME_MAX];

	tc_env_load(&e);
	tc_wait_cluster_ok(&e, 10000);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);

	memset(&s, 0, sizeof s);
	for (unsigned i = 0; i < SPREAD_KEYS; i++) {
		snprintf(s.keys[i], KEY_BYTES, "e2e:spread:%u", i);
		value_of(s.vals[i], s.keys[i]);
		uint16_t owner = owner_of(&e, &t, s.keys[i]);
		for (unsigned m = 0; m < nmasters; m++)
			per_master[m] += masters[m] == owner;
	}
	for (unsigned m = 0; m < nmasters; m++) {
		print_message("master %u owns %u of the %u keys\n", (unsigned)masters[m],
			      per_master[m], SPREAD_KEYS);
		assert_true(per_master[m] >= 5); /* every master serves some */
	}
	for (unsigned i = 0; i < SPREAD_ABSENT; i++)
		snprintf(s.keys[SPREAD_KEYS + i], KEY_BYTES, "e2e:absent:%u", i);
	cluster_write(&e, &t, s.keys + SPREAD_KEYS, NULL, SPREAD_ABSENT);
	cluster_write(&e, &t, s.keys, s.vals, SPREAD_KEYS);

	tu_segname(name, sizeof name, "uplink-spread");
	int rc = open_uplink(name, e.uri, true, &s.c);
	if (rc)
		fail_msg("shmc_open(%s) with uplink %s: %s: %s", name, e.uri, shmc_errname(rc),
			 shmc_errmsg(NULL));

	/* Concurrent misses from several threads: every value arrives. */
	pthread_t th[SPREAD_THREADS];
	struct spread_thread args[SPREAD_THREADS];
	for (unsigned i = 0; i < SPREAD_THREADS; i++) {
		args[i] = (struct spread_thread){.s = &s, .index = i};
		assert_int_equal(pthread_create(&th[i], NULL, spread_main, &args[i]), 0);
	}
	for (unsigned i = 0; i < SPREAD_THREADS; i++)
		pthread_join(th[i], NULL);
	if (atomic_load(&s.have_problem))
		print_error("first problem: %s\n", s.first_problem);
	assert_int_equal(atomic_load(&s.errors), 0);
	assert_int_equal(atomic_load(&s.wrong), 0);
	assert_int_equal(atomic_load(&s.absent_ok), SPREAD_ABSENT * SPREAD_THREADS);

	/* Now they are in L1: a plain get finds each value. */
	for (unsigned i = 0; i < SPREAD_KEYS; i++) {
		char buf[VAL_BYTES];
		size_t vlen = 0;
		assert_int_equal(
			shmc_get(s.c, s.keys[i], strlen(s.keys[i]), buf, sizeof buf, &vlen), 0);
		assert_int_equal(vlen, strlen(s.vals[i]));
		assert_memory_equal(buf, s.vals[i], vlen);
	}

	/* The counters, once this process's uplink thread has stopped (it
	 * counts a batch after answering it): one origin call, one remote
	 * GET per key however many threads asked, no error, no redirect. */
	shmc_cache *watch = NULL;
	assert_int_equal(shmc_open(name, NULL, 0, &watch), 0);
	shmc_close(s.c);
	struct shmc_stats st;
	assert_int_equal(shmc_stats(watch, &st), 0);
	print_uplink_stats("keys on every master", &st);
	assert_int_equal(st.origin_calls, SPREAD_KEYS + SPREAD_ABSENT);
	assert_int_equal(st.uplink_ops, SPREAD_KEYS + SPREAD_ABSENT);
	assert_true(st.uplink_batches >= 1);
	assert_int_equal(st.loader_errors, 0);
	assert_int_equal(st.uplink_err_connect + st.uplink_err_timeout + st.uplink_err_protocol +
				 st.uplink_err_reply + st.uplink_fast_fails,
			 0);
	assert_int_equal(st.uplink_redirects, 0);
	assert_true(st.uplink_topology_refreshes >= 1);
	shmc_close(watch);
	shmc_unlink(name);
	cluster_write(&e, &t, s.keys, NULL, SPREAD_KEYS);
}

/* The same keys with one shmc_fetch_many: its misses go out as one batch,
 * which the cluster client splits by master. */
static void test_uplink_cluster_fetch_many_keys_on_every_master(void **state)
{
	(void)state;
	enum { N = SPREAD_KEYS + SPREAD_ABSENT };
	static struct {
		char keys[N][KEY_BYTES], vals[N][VAL_BYTES], bufs[N][VAL_BYTES];
	} m;
	char(*keys)[KEY_BYTES] = m.keys, (*vals)[VAL_BYTES] = m.vals, (*bufs)[VAL_BYTES] = m.bufs;
	struct shmc_fetch_item items[N];
	struct tc_env e;
	static struct tc_topo t;
	char name[TU_NAME_MAX];
	uint16_t masters[TC_NODES_MAX];
	shmc_cache *c = NULL;

	tc_env_load(&e);
	tc_wait_cluster_ok(&e, 10000);
	tc_topo_load(&e, &t);
	for (unsigned i = 0; i < N; i++) {
		snprintf(keys[i], KEY_BYTES, i < SPREAD_KEYS ? "e2e:many:%u" : "e2e:many-absent:%u",
			 i);
		value_of(vals[i], keys[i]);
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = strlen(keys[i]), .buf = bufs[i], .cap = VAL_BYTES};
	}
	cluster_write(&e, &t, keys + SPREAD_KEYS, NULL, SPREAD_ABSENT);
	cluster_write(&e, &t, keys, vals, SPREAD_KEYS);

	tu_segname(name, sizeof name, "uplink-many");
	int rc = open_uplink(name, e.uri, true, &c);
	if (rc)
		fail_msg("shmc_open(%s) with uplink %s: %s: %s", name, e.uri, shmc_errname(rc),
			 shmc_errmsg(NULL));
	assert_int_equal(shmc_fetch_many(c, items, N, NULL, NULL), SPREAD_KEYS);
	for (unsigned i = 0; i < N; i++) {
		if (i >= SPREAD_KEYS) {
			assert_int_equal(items[i].rc, SHMC_ENOTFOUND);
			continue;
		}
		if (items[i].rc)
			fail_msg("%s: %s: %s", keys[i], shmc_errname(items[i].rc), shmc_errmsg(c));
		assert_int_equal(items[i].vlen, strlen(vals[i]));
		assert_memory_equal(bufs[i], vals[i], items[i].vlen);
	}
	/* counted once the uplink thread has stopped (see above) */
	shmc_cache *watch = NULL;
	assert_int_equal(shmc_open(name, NULL, 0, &watch), 0);
	shmc_close(c);
	struct shmc_stats st;
	assert_int_equal(shmc_stats(watch, &st), 0);
	print_uplink_stats("fetch_many on every master", &st);
	assert_int_equal(st.origin_calls, N);
	assert_int_equal(st.uplink_ops, N);
	/* remote calls by the master, not by the key: here 4, one round
	 * trip per master and the CLUSTER SLOTS that loaded the map (a
	 * remote call too) */
	assert_true(st.uplink_batches <= 2 * tc_topo_masters(&t, masters));
	assert_int_equal(st.loader_errors, 0);
	shmc_close(watch);
	shmc_unlink(name);
	cluster_write(&e, &t, keys, NULL, SPREAD_KEYS);
}

/* ----------------------------------------- loads in forked processes */

#define LOAD_PROCS 3
#define LOAD_THREADS 2
#define LOAD_WORKERS (LOAD_PROCS * LOAD_THREADS)
#define LOAD_KEYS_MAX 32
#define LOAD_PAUSE_US 200
#define CHILD_WATCHDOG_S 240

/* Shared with the children (MAP_SHARED); the parent fills the first part
 * before forking. */
struct load {
	char segment[TU_NAME_MAX];
	char uri[1024];
	unsigned nkeys;
	char keys[LOAD_KEYS_MAX][KEY_BYTES];
	char vals[LOAD_KEYS_MAX][VAL_BYTES];
	bool watched[LOAD_KEYS_MAX]; /* errors of these keys are counted apart */

	_Atomic unsigned ready; /* workers running */
	_Atomic bool stop;
	_Atomic unsigned open_failed;
	_Atomic uint64_t fetches, errors, errors_watched, wrong;
	_Atomic uint64_t err_uplink, err_timedout, err_other;
	_Atomic uint64_t first_err_ms, last_err_ms; /* 0 = none */
	_Atomic uint64_t max_fetch_us;
	_Atomic int have_first, have_first_other;
	char first_err[256];	   /* written once, by whoever set have_first */
	char first_other_err[256]; /* the same for keys not watched */
};

/* Children of the current test, for the teardown. */
static struct load *g_load;
static pid_t g_pids[LOAD_PROCS];
static unsigned g_nchildren;

struct worker {
	struct load *l;
	shmc_cache *c;
	unsigned index;
};

static void note_error(struct load *l, unsigned k, int rc, const char *msg)
{
	uint64_t now = tu_now_ms(), zero = 0;

	atomic_fetch_add(&l->errors, 1);
	if (l->watched[k])
		atomic_fetch_add(&l->errors_watched, 1);
	_Atomic uint64_t *kind = rc == SHMC_EUPLINK	? &l->err_uplink
				 : rc == SHMC_ETIMEDOUT ? &l->err_timedout
							: &l->err_other;
	atomic_fetch_add(kind, 1);
	atomic_compare_exchange_strong(&l->first_err_ms, &zero, now);
	uint64_t last = atomic_load(&l->last_err_ms);
	while (last < now && !atomic_compare_exchange_weak(&l->last_err_ms, &last, now))
		;
	if (!atomic_exchange(&l->have_first, 1))
		snprintf(l->first_err, sizeof l->first_err, "%s: %s: %s", l->keys[k],
			 shmc_errname(rc), msg);
	if (!l->watched[k] && !atomic_exchange(&l->have_first_other, 1))
		snprintf(l->first_other_err, sizeof l->first_other_err, "%s: %s: %s", l->keys[k],
			 shmc_errname(rc), msg);
}

/* Over and over: delete a key from L1, fetch it through the uplink, check
 * the value. Each worker starts at its own key. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct load *l = w->l;
	char buf[VAL_BYTES];

	atomic_fetch_add(&l->ready, 1);
	for (unsigned i = w->index * l->nkeys / LOAD_WORKERS; !atomic_load(&l->stop); i++) {
		unsigned k = i % l->nkeys;
		const char *key = l->keys[k];
		size_t klen = strlen(key), vlen = 0;
		int rc = shmc_del(w->c, key, klen);
		if (rc && rc != SHMC_ENOTFOUND) {
			note_error(l, k, rc, "shmc_del");
			continue;
		}
		uint64_t t0 = tu_now_ns();
		rc = shmc_fetch(w->c, key, klen, buf, sizeof buf, &vlen, NULL, NULL);
		uint64_t us = (tu_now_ns() - t0) / 1000, max = atomic_load(&l->max_fetch_us);
		while (us > max && !atomic_compare_exchange_weak(&l->max_fetch_us, &max, us))
			;
		if (rc) {
			note_error(l, k, rc, shmc_errmsg(w->c));
		} else if (vlen != strlen(l->vals[k]) || memcmp(buf, l->vals[k], vlen)) {
			atomic_fetch_add(&l->wrong, 1);
			tu_child_log("%s: value '%.*s', expected '%s'", key, (int)vlen, buf,
				     l->vals[k]);
		}
		atomic_fetch_add(&l->fetches, 1);
		tu_sleep_us(LOAD_PAUSE_US);
	}
	return NULL;
}

/* A child: its own handle on the segment, by name, with the uplink; then
 * LOAD_THREADS workers until told to stop. */
static int load_child(unsigned index, void *arg)
{
	struct load *l = arg;
	shmc_cache *c = NULL;
	int rc = open_uplink(l->segment, l->uri, false, &c);

	if (rc) {
		tu_child_log("shmc_open(%s): %s: %s", l->segment, shmc_errname(rc),
			     shmc_errmsg(NULL));
		atomic_fetch_add(&l->open_failed, 1);
		return 1;
	}
	pthread_t th[LOAD_THREADS];
	struct worker w[LOAD_THREADS];
	unsigned started = 0;
	for (unsigned t = 0; t < LOAD_THREADS; t++) {
		w[t] = (struct worker){.l = l, .c = c, .index = index * LOAD_THREADS + t};
		if (pthread_create(&th[t], NULL, worker_main, &w[t]) != 0) {
			atomic_fetch_add(&l->open_failed, 1);
			break;
		}
		started++;
	}
	for (unsigned t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	shmc_close(c);
	return started == LOAD_THREADS ? 0 : 1;
}

/* Fork the children and wait until every worker runs and the load has
 * made some progress. */
static void load_start(struct load *l)
{
	g_nchildren = tu_fork_start(LOAD_PROCS, load_child, l, CHILD_WATCHDOG_S, g_pids);
	assert_int_equal(g_nchildren, LOAD_PROCS);
	uint64_t deadline = tu_now_ms() + 20000;
	while (atomic_load(&l->ready) < LOAD_WORKERS) {
		assert_int_equal(atomic_load(&l->open_failed), 0);
		if (tu_now_ms() > deadline)
			fail_msg("only %u of %u workers started", atomic_load(&l->ready),
				 LOAD_WORKERS);
		tu_sleep_ms(5);
	}
}

/* Wait until the workers have fetched more times more. */
static void load_progress(struct load *l, uint64_t more, unsigned timeout_ms)
{
	uint64_t target = atomic_load(&l->fetches) + more;
	uint64_t deadline = tu_now_ms() + timeout_ms;

	while (atomic_load(&l->fetches) < target) {
		if (tu_now_ms() > deadline)
			fail_msg("the load made %" PRIu64 " of %" PRIu64 " more fetches in %u ms",
				 more - (target - atomic_load(&l->fetches)), more, timeout_ms);
		tu_sleep_ms(2);
	}
}

/* Stop the workers and wait for the children; returns how many failed. */
static unsigned load_stop(struct load *l)
{
	atomic_store(&l->stop, true);
	unsigned failed = tu_fork_wait(g_nchildren, g_pids);
	g_nchildren = 0;
	return failed;
}

static struct load *load_new(const char *tag, const char *uri)
{
	struct load *l = tu_shared_alloc(sizeof *l);

	assert_non_null(l);
	g_load = l;
	tu_segname(l->segment, sizeof l->segment, tag);
	snprintf(l->uri, sizeof l->uri, "%s", uri);
	return l;
}

/* What the parent watches the segment with: no uplink, no roles. */
static shmc_cache *watch_open(const char *name)
{
	shmc_cache *c = NULL;

	assert_int_equal(tu_open_fresh(name, SEGMENT_BYTES, 0, 0, &c), 0);
	return c;
}

static uint64_t redirects_now(shmc_cache *watch)
{
	struct shmc_stats st;

	assert_int_equal(shmc_stats(watch, &st), 0);
	return st.uplink_redirects;
}

/* ------------------------------------------ a slot migrated under load */

#define MIG_KEYS 16
#define MIG_BATCH 4 /* keys per MIGRATE */

static void test_uplink_cluster_slot_migration_under_load_invisible(void **state)
{
	(void)state;
	struct tc_env e;
	static struct tc_topo t;
	uint16_t masters[TC_NODES_MAX];

	tc_env_load(&e);
	tc_wait_cluster_ok(&e, 10000);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);

	struct load *l = load_new("uplink-migrate", e.uri);
	l->nkeys = MIG_KEYS;
	for (unsigned k = 0; k < MIG_KEYS; k++) {
		snprintf(l->keys[k], KEY_BYTES, "{e2e-mig}key%u", k);
		value_of(l->vals[k], l->keys[k]);
	}
	unsigned slot = tc_keyslot(&e, l->keys[0]);
	for (unsigned k = 1; k < MIG_KEYS; k++)
		assert_int_equal(tc_keyslot(&e, l->keys[k]), slot);
	struct tc_migration mig;
	tc_migration_plan(&t, slot, &mig);
	uint16_t src = mig.src, dst = mig.dst;
	cluster_write(&e, &t, l->keys, l->vals, MIG_KEYS);

	shmc_cache *watch = watch_open(l->segment);
	load_start(l);
	load_progress(l, 200, 20000);
	uint64_t before = redirects_now(watch);

	/* The steps of redis-cli --cluster reshard, by hand, with the load
	 * meeting the slot in each state. */
	tc_migration_begin(&mig);
	load_progress(l, 50, 10000);
	unsigned migrated = 0;
	for (unsigned moved; (moved = tc_migration_step(&mig, MIG_BATCH)) != 0;) {
		migrated += moved;
		load_progress(l, 50, 10000); /* the load meets a half-moved slot */
	}
	assert_int_equal(migrated, MIG_KEYS);
	/* Every key is on dst, the slot still MIGRATING at src: the callers'
	 * fetches are redirected (ASK), and still answered. */
	uint64_t deadline = tu_now_ms() + 10000;
	while (redirects_now(watch) == before) {
		if (tu_now_ms() > deadline)
			fail_msg("no redirect counted while slot %u was migrating", slot);
		tu_sleep_ms(5);
	}
	load_progress(l, 100, 10000);

	uint64_t assigned_ms = tu_now_ms(), at_assign = redirects_now(watch);
	uint64_t while_migrating = at_assign - before;
	tc_migration_finish(&mig);

	/* The callers' uplinks are sent on to dst (MOVED, or ASK until src
	 * learns), and their slot maps follow: then a whole second of fetches
	 * goes without a redirect. */
	deadline = tu_now_ms() + 20000;
	for (;;) {
		uint64_t r0 = redirects_now(watch), f0 = atomic_load(&l->fetches);
		tu_sleep_ms(1000);
		if (redirects_now(watch) == r0 && atomic_load(&l->fetches) > f0 + 100)
			break;
		if (tu_now_ms() > deadline)
			fail_msg("fetches of slot %u still redirected 20 s after it moved", slot);
	}
	uint64_t converged_ms = tu_now_ms() - 1000, after_assign = redirects_now(watch) - at_assign;
	load_progress(l, 100, 10000);
	unsigned failed_children = load_stop(l);

	struct shmc_stats st;
	assert_int_equal(shmc_stats(watch, &st), 0);
	print_message("slot %u (%u keys) moved from %u to %u under %u processes x %u threads: "
		      "%" PRIu64 " fetches, %" PRIu64 " errors, %" PRIu64
		      " wrong values, slowest fetch %" PRIu64 " us\n",
		      slot, migrated, (unsigned)src, (unsigned)dst, LOAD_PROCS, LOAD_THREADS,
		      (uint64_t)atomic_load(&l->fetches), (uint64_t)atomic_load(&l->errors),
		      (uint64_t)atomic_load(&l->wrong), (uint64_t)atomic_load(&l->max_fetch_us));
	print_message(
		"redirects seen by the callers' uplinks: %" PRIu64 " while migrating, %" PRIu64
		" from the slot's assignment to dst on (maps settled within %" PRIu64
		" ms), %" PRIu64 " in all\n",
		while_migrating, after_assign, converged_ms - assigned_ms, st.uplink_redirects);
	print_uplink_stats("migration", &st);
	if (atomic_load(&l->have_first))
		print_error("first error: %s\n", l->first_err);
	assert_int_equal(failed_children, 0);
	assert_int_equal(atomic_load(&l->errors), 0);
	assert_int_equal(atomic_load(&l->wrong), 0);
	assert_true(while_migrating > 0);
	assert_true(after_assign > 0);
	/* most fetches really went to the cluster */
	assert_true(st.origin_calls * 2 >= atomic_load(&l->fetches));
	assert_int_equal(st.loader_errors, 0);

	tc_topo_load(&e, &t);
	assert_int_equal(t.slot_port[slot], dst);
	shmc_close(watch);
	shmc_unlink(l->segment);
	cluster_write(&e, &t, l->keys, NULL, MIG_KEYS);
	tc_wait_cluster_ok(&e, 10000);
}

/* ---------------------------------------------- a master killed */

#define FO_KEYS 24
#define FO_QUIET_MS 2000 /* no error for this long: the failover is over */
#define FO_TAIL_MS 2000	 /* then this long more, checked to be clean */

/* The killed master's port while it is down (the teardown restarts it
 * if the test could not). */
static uint16_t g_killed_port;
static struct tc_env g_killed_env;

static bool is_master(uint16_t port)
{
	redisReply *r = tc_cmd(port, "ROLE");
	bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		      r->element[0]->type == REDIS_REPLY_STRING &&
		      strcmp(r->element[0]->str, "master") == 0;
	if (r)
		freeReplyObject(r);
	return master;
}

static void test_uplink_cluster_master_killed_errors_only_during_failover(void **state)
{
	(void)state;
	struct tc_env e;
	static struct tc_topo t;
	uint16_t masters[TC_NODES_MAX], replicas[TC_NODES_MAX];
	unsigned per_master[TC_NODES_MAX] = {0};

	tc_env_load(&e);
	tc_wait_cluster_ok(&e, 10000);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);

	struct load *l = load_new("uplink-failover", e.uri);
	l->nkeys = FO_KEYS;
	for (unsigned k = 0; k < FO_KEYS; k++) {
		snprintf(l->keys[k], KEY_BYTES, "e2e:failover:%u", k);
		value_of(l->vals[k], l->keys[k]);
	}
	uint16_t victim = owner_of(&e, &t, l->keys[0]);
	unsigned nvictim = 0;
	for (unsigned k = 0; k < FO_KEYS; k++) {
		uint16_t owner = owner_of(&e, &t, l->keys[k]);
		l->watched[k] = owner == victim;
		nvictim += l->watched[k];
		for (unsigned m = 0; m < nmasters; m++)
			per_master[m] += masters[m] == owner;
	}
	for (unsigned m = 0; m < nmasters; m++)
		assert_true(per_master[m] > 0);
	assert_int_equal(tc_topo_replicas(&t, victim, replicas), 1);
	uint16_t heir = replicas[0];
	pid_t victim_pid = tc_env_pid_of(&e, victim);
	cluster_write(&e, &t, l->keys, l->vals, FO_KEYS);

	shmc_cache *watch = watch_open(l->segment);
	load_start(l);
	load_progress(l, 300, 20000);
	assert_int_equal(atomic_load(&l->errors), 0); /* a healthy cluster: none */

	g_killed_env = e;
	g_killed_port = victim;
	uint64_t kill_ms = tu_now_ms();
	assert_int_equal(kill(victim_pid, SIGKILL), 0);

	/* The cluster notices (node timeout) and elects the replica. */
	uint64_t promoted_ms = 0;
	while (!promoted_ms) {
		if (is_master(heir))
			promoted_ms = tu_now_ms();
		else if (tu_now_ms() - kill_ms > 30000)
			fail_msg("replica %u not promoted 30 s after master %u was killed",
				 (unsigned)heir, (unsigned)victim);
		else
			tu_sleep_ms(10);
	}
	/* Then the callers stop seeing errors: FO_QUIET_MS without one. */
	for (;;) {
		uint64_t now = tu_now_ms(), last = atomic_load(&l->last_err_ms);
		uint64_t since = last > promoted_ms ? last : promoted_ms;
		if (now - since >= FO_QUIET_MS)
			break;
		if (now - kill_ms > 60000)
			fail_msg("callers still see errors 60 s after the kill (%" PRIu64
				 " so far; first: %s)",
				 (uint64_t)atomic_load(&l->errors), l->first_err);
		tu_sleep_ms(10);
	}
	/* ... and none after that, while the load reads every key again. */
	uint64_t errors_settled = atomic_load(&l->errors),
		 fetches_settled = atomic_load(&l->fetches);
	tu_sleep_ms(FO_TAIL_MS);
	uint64_t tail_errors = atomic_load(&l->errors) - errors_settled;
	uint64_t tail_fetches = atomic_load(&l->fetches) - fetches_settled;
	unsigned failed_children = load_stop(l);

	struct shmc_stats st;
	assert_int_equal(shmc_stats(watch, &st), 0);
	uint64_t first = atomic_load(&l->first_err_ms), last = atomic_load(&l->last_err_ms);
	print_message("failover: master %u (pid %d, %u of %u keys) killed; replica %u promoted "
		      "after %" PRIu64 " ms\n",
		      (unsigned)victim, (int)victim_pid, nvictim, FO_KEYS, (unsigned)heir,
		      promoted_ms - kill_ms);
	print_message(
		"failover: callers saw %" PRIu64 " errors (%" PRIu64
		" on the killed master's keys, %" PRIu64 " on others; %" PRIu64
		" SHMC_EUPLINK, %" PRIu64 " SHMC_ETIMEDOUT, %" PRIu64 " other) of %" PRIu64
		" fetches, from %+" PRId64 " to %+" PRId64 " ms after the kill: window %" PRIu64
		" ms, last error %+" PRId64 " ms after the promotion; slowest fetch %" PRIu64
		" us; then %" PRIu64 " fetches and %" PRIu64 " errors in %u ms\n",
		(uint64_t)atomic_load(&l->errors), (uint64_t)atomic_load(&l->errors_watched),
		(uint64_t)(atomic_load(&l->errors) - atomic_load(&l->errors_watched)),
		(uint64_t)atomic_load(&l->err_uplink), (uint64_t)atomic_load(&l->err_timedout),
		(uint64_t)atomic_load(&l->err_other), (uint64_t)atomic_load(&l->fetches),
		first ? (int64_t)(first - kill_ms) : -1, last ? (int64_t)(last - kill_ms) : -1,
		first ? last - first : 0, last ? (int64_t)(last - promoted_ms) : 0,
		(uint64_t)atomic_load(&l->max_fetch_us), tail_fetches, tail_errors, FO_TAIL_MS);
	if (atomic_load(&l->have_first))
		print_message("failover: first error: %s\n", l->first_err);
	if (atomic_load(&l->have_first_other))
		print_message("failover: first error on another master's key: %s\n",
			      l->first_other_err);
	print_uplink_stats("failover", &st);

	assert_int_equal(failed_children, 0);
	assert_int_equal(atomic_load(&l->wrong), 0);
	/* the killed master's keys could not be served until the promotion */
	assert_true(atomic_load(&l->errors_watched) > 0);
	assert_true(first >= kill_ms);
	/* errors stop soon after the replica took over, and do not come back */
	assert_true(last < promoted_ms + 5000);
	assert_int_equal(tail_errors, 0);
	assert_true(tail_fetches >= 2 * FO_KEYS);

	tc_topo_load(&e, &t);
	assert_true(tc_topo_by_port(&t, heir)->master);
	assert_int_equal(owner_of(&e, &t, l->keys[0]), heir);
	shmc_close(watch);
	shmc_unlink(l->segment);

	/* The killed node rejoins as the heir's replica. */
	tc_restart_node(&e, victim);
	g_killed_port = 0;
	tc_wait_cluster_ok(&e, 30000);
	tc_topo_load(&e, &t);
	cluster_write(&e, &t, l->keys, NULL, FO_KEYS);
}

/* ------------------------------------------------------------ teardown */

/* Whatever a failed test left: stop its children, restart a killed node,
 * free the load. */
static int load_teardown(void **state)
{
	(void)state;
	if (g_load) {
		if (g_nchildren) {
			atomic_store(&g_load->stop, true);
			tu_fork_wait(g_nchildren, g_pids);
			g_nchildren = 0;
		}
		shmc_unlink(g_load->segment);
		tu_shared_free(g_load, sizeof *g_load);
		g_load = NULL;
	}
	if (g_killed_port) {
		char cmd[2600];
		snprintf(cmd, sizeof cmd, "bash '%s' restart-node '%s' %u >&2",
			 g_killed_env.servers_sh, g_killed_env.dir, (unsigned)g_killed_port);
		int rc = system(cmd);
		g_killed_port = 0;
		if (rc != 0) {
			fprintf(stderr, "teardown: restarting the killed node failed: %s\n", cmd);
			return -1;
		}
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uplink_cluster_keys_on_every_master_read_through),
		cmocka_unit_test(test_uplink_cluster_fetch_many_keys_on_every_master),
		cmocka_unit_test_teardown(test_uplink_cluster_slot_migration_under_load_invisible,
					  load_teardown),
		cmocka_unit_test_teardown(
			test_uplink_cluster_master_killed_errors_only_during_failover,
			load_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
