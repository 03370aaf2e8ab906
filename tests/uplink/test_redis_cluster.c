/*
 * test_redis_cluster.c - redis_cluster.c against a real six-node Redis
 * Cluster (three masters, three replicas, cluster-node-timeout 1000 ms) on
 * loopback, started by the CTest fixture redis_cluster (tests/uplink/
 * servers.sh start-cluster); SHMC_REDIS_CLUSTER_ENV names its env file.
 *
 * The test checks what the cluster says with its own hiredis connections
 * (cluster_util.h: CLUSTER NODES, CLUSTER KEYSLOT, INFO commandstats, plain
 * GETs at the owning master), never through the code under test. It
 * changes the cluster: a slot migrates from one master to another, and a
 * master is killed and, once its replica has taken over, started again (it
 * rejoins as a replica), so the cluster is healthy again when each test
 * ends.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include <shmcache.h>

#include "cluster_util.h"
#include "redis_cluster.h"
#include "testutil.h"
#include "uplink_uri.h"

#define BATCH 64

/* ------------------------------------------------- the cluster object */

static struct shmc__rcluster *cluster_open(const struct tc_env *e, const char *options)
{
	struct shmc__uplink_config cfg;
	char uri[1200], err[160];
	struct shmc__rcluster *cl = NULL;

	snprintf(uri, sizeof uri, "%s%s", e->uri, options ? options : "");
	if (shmc__uplink_uri_parse(uri, &cfg, err, sizeof err) != 0)
		fail_msg("uri %s: %s", uri, err);
	assert_int_equal(shmc__rcluster_new(&cfg, &cl), 0);
	assert_non_null(cl);
	return cl;
}

static void op_set(struct shmc__rop *op, const char *key, const char *val, uint64_t px_ms)
{
	memset(op, 0, sizeof *op);
	op->kind = SHMC__ROP_SET;
	op->key = key;
	op->klen = strlen(key);
	op->val = val;
	op->vlen = strlen(val);
	op->px_ms = px_ms;
}

static void op_key(struct shmc__rop *op, enum shmc__rop_kind kind, const char *key)
{
	memset(op, 0, sizeof *op);
	op->kind = kind;
	op->key = key;
	op->klen = strlen(key);
}

static void ops_release(struct shmc__rop *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ops[i].val_out);
		ops[i].val_out = NULL;
	}
}

static void expect_op_rc(const struct shmc__rop *op, int rc)
{
	if (op->rc != rc)
		fail_msg("%.*s: rc %d (%s), expected %d: %s", (int)op->klen, (const char *)op->key,
			 op->rc, shmc_errname(op->rc), rc, op->err);
}

static void expect_op_value(const struct shmc__rop *op, const char *val)
{
	expect_op_rc(op, 0);
	if (op->vlen_out != strlen(val) || memcmp(op->val_out, val, op->vlen_out) != 0)
		fail_msg("%.*s: value '%.*s', expected '%s'", (int)op->klen, (const char *)op->key,
			 (int)op->vlen_out, (const char *)op->val_out, val);
}

/* ------------------------------------------------------------ tests */

#define NKEYS 300

static void make_keys(char keys[][32], unsigned n, const char *prefix)
{
	for (unsigned i = 0; i < n; i++)
		snprintf(keys[i], 32, "%s:%u", prefix, i);
}

static void test_redis_cluster_slots_match_server_keyslot(void **state)
{
	(void)state;
	struct tc_env e;
	char key[64];

	tc_env_load(&e);
	for (unsigned i = 0; i < 200; i++) {
		snprintf(key, sizeof key, i % 3 ? "key:%u" : "{tag%u}x", i);
		redisReply *r = tc_cmd(e.port[0], "CLUSTER KEYSLOT %s", key);
		assert_non_null(r);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		assert_int_equal(shmc__cluster_slot(key, strlen(key)), r->integer);
		freeReplyObject(r);
	}
}

static void test_redis_cluster_keys_on_every_master_roundtrip(void **state)
{
	(void)state;
	static char keys[NKEYS][32], vals[NKEYS][32];
	struct tc_env e;
	struct tc_topo t;
	uint16_t masters[TC_NODES_MAX];
	unsigned per_master[TC_NODES_MAX] = {0};
	struct shmc__rop ops[BATCH];

	tc_env_load(&e);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);
	make_keys(keys, NKEYS, "spread");
	for (unsigned i = 0; i < NKEYS; i++) {
		snprintf(vals[i], sizeof vals[i], "value-%u-%u", i, (unsigned)getpid());
		uint16_t owner = t.slot_port[shmc__cluster_slot(keys[i], strlen(keys[i]))];
		for (unsigned m = 0; m < nmasters; m++)
			per_master[m] += masters[m] == owner;
	}
	for (unsigned m = 0; m < nmasters; m++)
		assert_true(per_master[m] >= 10); /* keys reach every master */

	struct shmc__rcluster *cl = cluster_open(&e, NULL);
	for (unsigned base = 0; base < NKEYS; base += BATCH) {
		unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
		for (unsigned i = 0; i < n; i++)
			op_set(&ops[i], keys[base + i], vals[base + i], 0);
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++)
			expect_op_rc(&ops[i], 0);
	}
	/* Each value is on the master that owns its slot (asked directly). */
	for (unsigned i = 0; i < NKEYS; i++) {
		uint16_t owner = t.slot_port[shmc__cluster_slot(keys[i], strlen(keys[i]))];
		redisReply *r = tc_cmd(owner, "GET %s", keys[i]);
		assert_non_null(r);
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		assert_string_equal(r->str, vals[i]);
		freeReplyObject(r);
	}
	for (unsigned base = 0; base < NKEYS; base += BATCH) {
		unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
		for (unsigned i = 0; i < n; i++)
			op_key(&ops[i], SHMC__ROP_GET, keys[base + i]);
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++) {
			expect_op_value(&ops[i], vals[base + i]);
			assert_int_equal(ops[i].pttl_ms, -1);
		}
		ops_release(ops, n);
	}
	/* SET with PX, then GET: the remaining TTL comes back. */
	op_set(&ops[0], keys[0], "ttl", 60000);
	op_key(&ops[1], SHMC__ROP_GET, keys[0]);
	shmc__rcluster_exec(cl, ops, 2);
	expect_op_rc(&ops[0], 0);
	expect_op_value(&ops[1], "ttl");
	assert_true(ops[1].pttl_ms > 50000 && ops[1].pttl_ms <= 60000);
	ops_release(ops, 2);

	for (unsigned base = 0; base < NKEYS; base += BATCH) {
		unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
		for (unsigned i = 0; i < n; i++)
			op_key(&ops[i], SHMC__ROP_DEL, keys[base + i]);
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++)
			expect_op_rc(&ops[i], 0);
		for (unsigned i = 0; i < n; i++)
			op_key(&ops[i], SHMC__ROP_GET, keys[base + i]);
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++)
			expect_op_rc(&ops[i], SHMC_ENOTFOUND);
	}

	struct shmc__rcluster_stats st;
	shmc__rcluster_stats(cl, &st);
	assert_int_equal(st.nodes, 6); /* seeds and map deduplicated */
	assert_true(st.topology_refreshes >= 1);
	assert_int_equal(st.redirects_moved, 0);
	assert_int_equal(st.redirects_ask, 0);
	shmc__rcluster_free(cl);
}

static void count_node(void *arg, struct shmc__rnode *n)
{
	(void)n;
	++*(unsigned *)arg;
}

static void test_redis_cluster_replica_reads_served_by_replicas(void **state)
{
	(void)state;
	static char keys[NKEYS][32], vals[NKEYS][32];
	struct tc_env e;
	struct tc_topo t;
	uint16_t masters[TC_NODES_MAX], replicas[TC_NODES_MAX];
	struct shmc__rop ops[BATCH];
	const unsigned rounds = 3;

	tc_env_load(&e);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters), nreplicas = 0;
	for (unsigned m = 0; m < nmasters; m++)
		nreplicas += tc_topo_replicas(&t, masters[m], replicas + nreplicas);
	assert_int_equal(nreplicas, 3);

	struct shmc__rcluster *cl = cluster_open(&e, "?replica_reads=1");
	make_keys(keys, NKEYS, "replica");
	for (unsigned base = 0; base < NKEYS; base += BATCH) {
		unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
		for (unsigned i = 0; i < n; i++) {
			snprintf(vals[base + i], sizeof vals[0], "r-%u-%u", base + i,
				 (unsigned)getpid());
			op_set(&ops[i], keys[base + i], vals[base + i], 0);
		}
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++)
			expect_op_rc(&ops[i], 0);
	}
	/* Replication is asynchronous: wait until every master's writes have
	 * reached one replica (WAIT on each master covers the writes of all
	 * its clients up to now). */
	for (unsigned m = 0; m < nmasters; m++) {
		redisContext *c = tc_connect(masters[m]);
		assert_non_null(c);
		redisReply *r = redisCommand(c, "WAIT 1 5000");
		assert_non_null(r);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		assert_int_equal(r->integer, 1);
		freeReplyObject(r);
		redisFree(c);
	}
	for (unsigned i = 0; i < e.nports; i++)
		tc_ok(e.port[i], "CONFIG RESETSTAT");

	for (unsigned round = 0; round < rounds; round++) {
		for (unsigned base = 0; base < NKEYS; base += BATCH) {
			unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
			for (unsigned i = 0; i < n; i++)
				op_key(&ops[i], SHMC__ROP_GET, keys[base + i]);
			shmc__rcluster_exec(cl, ops, n);
			for (unsigned i = 0; i < n; i++)
				expect_op_value(&ops[i], vals[base + i]);
			ops_release(ops, n);
		}
	}
	long long on_masters = 0, on_replicas = 0;
	for (unsigned m = 0; m < nmasters; m++)
		on_masters += tc_cmd_calls(masters[m], "get");
	for (unsigned r = 0; r < nreplicas; r++) {
		long long calls = tc_cmd_calls(replicas[r], "get");
		print_message("replica %u served %lld GETs\n", (unsigned)replicas[r], calls);
		assert_true(calls > 0);
		on_replicas += calls;
	}
	print_message("GETs: %lld on replicas, %lld on masters\n", on_replicas, on_masters);
	assert_int_equal(on_masters, 0);
	assert_int_equal(on_replicas, (long long)NKEYS * rounds);

	unsigned visited = 0;
	shmc__rcluster_each_node(cl, count_node, &visited);
	assert_int_equal(visited, 6);

	for (unsigned base = 0; base < NKEYS; base += BATCH) {
		unsigned n = NKEYS - base < BATCH ? NKEYS - base : BATCH;
		for (unsigned i = 0; i < n; i++)
			op_key(&ops[i], SHMC__ROP_DEL, keys[base + i]);
		shmc__rcluster_exec(cl, ops, n);
		for (unsigned i = 0; i < n; i++)
			expect_op_rc(&ops[i], 0);
	}
	shmc__rcluster_free(cl);
}

/* ------------------------------------------- a load thread for the rest */

#define LOAD_KEYS 24

struct load {
	struct shmc__rcluster *cl;
	char keys[LOAD_KEYS][48];
	unsigned nkeys;
	atomic_bool stop;
	atomic_ullong iterations, ops, failed, wrong;
	atomic_ullong first_fail_ms, last_fail_ms; /* 0 = none */
	char first_err[200];			   /* written once, before failed turns 1 */
	unsigned pause_us;
};

/* The uplink thread's part: exec and tick, over and over. Each iteration
 * SETs every key to a fresh value and GETs it back in the same batch (so
 * the GET goes where the SET went, after it), every 5th one also DELs
 * half the keys and GETs them as absent. A failed op is counted (with its
 * time); a wrong answer to an op that succeeded is counted apart. */
static void *load_main(void *arg)
{
	struct load *l = arg;
	struct shmc__rop ops[3 * LOAD_KEYS];
	char vals[LOAD_KEYS][48];

	while (!atomic_load(&l->stop)) {
		unsigned long long it = atomic_fetch_add(&l->iterations, 1);
		size_t n = 0;
		for (unsigned k = 0; k < l->nkeys; k++) {
			snprintf(vals[k], sizeof vals[k], "v%llu.%u", it, k);
			op_set(&ops[n++], l->keys[k], vals[k], 0);
			op_key(&ops[n++], SHMC__ROP_GET, l->keys[k]);
		}
		bool dels = it % 5 == 4;
		size_t ndels = 0;
		if (dels)
			for (unsigned k = 0; k < l->nkeys; k += 2, ndels++)
				op_key(&ops[n++], SHMC__ROP_DEL, l->keys[k]);
		size_t before_gets = n;
		if (dels)
			for (unsigned k = 0; k < l->nkeys; k += 2)
				op_key(&ops[n++], SHMC__ROP_GET, l->keys[k]);
		shmc__rcluster_exec(l->cl, ops, n);

		uint64_t now = tu_now_ms();
		for (size_t i = 0; i < n; i++) {
			struct shmc__rop *op = &ops[i];
			bool ok;
			if (i < 2 * l->nkeys && op->kind == SHMC__ROP_GET) {
				/* after its SET: that value, unless the SET failed
				 * (then an older value, or none, is right too) */
				const struct shmc__rop *set = &ops[i - 1];
				const char *want = vals[i / 2];
				if (set->rc == 0)
					ok = op->rc == SHMC_EUPLINK ||
					     (op->rc == 0 && op->vlen_out == strlen(want) &&
					      !memcmp(op->val_out, want, op->vlen_out));
				else
					ok = op->rc == 0 || op->rc == SHMC_ENOTFOUND ||
					     op->rc == SHMC_EUPLINK;
			} else if (i >= before_gets) {
				/* after its DEL: absent, unless the DEL failed */
				const struct shmc__rop *del = &ops[i - ndels];
				ok = op->rc == SHMC_ENOTFOUND || op->rc == SHMC_EUPLINK ||
				     (del->rc != 0 && op->rc == 0);
			} else {
				ok = op->rc == 0 || op->rc == SHMC_EUPLINK;
			}
			if (!ok) {
				atomic_fetch_add(&l->wrong, 1);
				fprintf(stderr,
					"load: wrong answer for %.*s: rc %d %s, value '%.*s'\n",
					(int)op->klen, (const char *)op->key, op->rc, op->err,
					(int)op->vlen_out,
					op->val_out ? (const char *)op->val_out : "");
			}
			if (op->rc == SHMC_EUPLINK) {
				if (atomic_load(&l->failed) == 0)
					snprintf(l->first_err, sizeof l->first_err, "%.*s: %s",
						 (int)op->klen, (const char *)op->key, op->err);
				atomic_fetch_add(&l->failed, 1);
				unsigned long long zero = 0;
				atomic_compare_exchange_strong(&l->first_fail_ms, &zero, now);
				atomic_store(&l->last_fail_ms, now);
			}
		}
		atomic_fetch_add(&l->ops, n);
		ops_release(ops, n);
		shmc__rcluster_tick(l->cl);
		if (l->pause_us)
			tu_sleep_us(l->pause_us);
	}
	return NULL;
}

static void wait_iterations(struct load *l, unsigned long long more, unsigned timeout_ms)
{
	unsigned long long target = atomic_load(&l->iterations) + more;
	uint64_t deadline = tu_now_ms() + timeout_ms;

	while (atomic_load(&l->iterations) < target) {
		if (tu_now_ms() > deadline)
			fail_msg("the load thread made no progress in %u ms", timeout_ms);
		tu_sleep_ms(1);
	}
}

/* Wait until counter (read by fn) exceeds 0, running nothing ourselves. */
static bool wait_stat(struct shmc__rcluster *cl, bool ask, unsigned timeout_ms)
{
	uint64_t deadline = tu_now_ms() + timeout_ms;
	struct shmc__rcluster_stats st;

	do {
		shmc__rcluster_stats(cl, &st);
		if ((ask ? st.redirects_ask : st.redirects_moved) > 0)
			return true;
		tu_sleep_ms(2);
	} while (tu_now_ms() < deadline);
	return false;
}

static void test_redis_cluster_slot_migration_under_load_invisible(void **state)
{
	(void)state;
	static struct load l;
	struct tc_env e;
	struct tc_topo t;
	uint16_t masters[TC_NODES_MAX];
	pthread_t th;

	tc_env_load(&e);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);

	/* Every key of the load shares the slot of the tag "mig". */
	uint16_t slot = shmc__cluster_slot("mig", 3);
	struct tc_migration mig;
	tc_migration_plan(&t, slot, &mig);
	uint16_t src = mig.src, dst = mig.dst;

	memset(&l, 0, sizeof l);
	l.nkeys = LOAD_KEYS;
	for (unsigned k = 0; k < l.nkeys; k++)
		snprintf(l.keys[k], sizeof l.keys[k], "{mig}key%u", k);
	l.cl = cluster_open(&e, NULL);
	l.pause_us = 200;
	assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
	wait_iterations(&l, 20, 10000);

	/* The resharding steps of redis-cli --cluster reshard, by hand. */
	tc_migration_begin(&mig);
	wait_iterations(&l, 5, 10000);
	unsigned migrated = 0;
	for (unsigned moved; (moved = tc_migration_step(&mig, 4)) != 0;) {
		migrated += moved;
		wait_iterations(&l, 2, 10000); /* the load meets a half-moved slot */
	}
	/* Still MIGRATING: every key is on dst now, so src answers ASK. */
	assert_true(wait_stat(l.cl, true, 10000));
	wait_iterations(&l, 5, 10000);

	tc_migration_finish(&mig);
	/* Now src answers MOVED, once: the client's map follows. */
	assert_true(wait_stat(l.cl, false, 10000));
	wait_iterations(&l, 50, 10000);

	atomic_store(&l.stop, true);
	pthread_join(th, NULL);
	struct shmc__rcluster_stats st;
	shmc__rcluster_stats(l.cl, &st);
	print_message("migration of slot %u (%u keys moved, %u -> %u): %llu iterations, %llu ops, "
		      "%llu failed, %llu wrong; %" PRIu64 " ASK, %" PRIu64 " MOVED, %" PRIu64
		      " TRYAGAIN, %" PRIu64 " refreshes\n",
		      (unsigned)slot, migrated, (unsigned)src, (unsigned)dst,
		      (unsigned long long)atomic_load(&l.iterations),
		      (unsigned long long)atomic_load(&l.ops),
		      (unsigned long long)atomic_load(&l.failed),
		      (unsigned long long)atomic_load(&l.wrong), st.redirects_ask,
		      st.redirects_moved, st.retries_tryagain, st.topology_refreshes);
	if (atomic_load(&l.failed))
		print_error("first failure: %s\n", l.first_err);
	assert_int_equal(atomic_load(&l.failed), 0);
	assert_int_equal(atomic_load(&l.wrong), 0);
	assert_true(st.redirects_ask > 0);
	assert_true(st.redirects_moved > 0);

	/* The cluster agrees: dst serves the slot. */
	tc_topo_load(&e, &t);
	assert_int_equal(t.slot_port[slot], dst);
	shmc__rcluster_free(l.cl);
	tc_wait_cluster_ok(&e, 10000);
}

/* A forked child: its own cluster object, one round trip, then free, whose
 * grace period must end although the parent's load thread (registered with
 * urcu-memb, forever absent in the child) was running exec at the fork. */
static int fork_child(unsigned index, void *arg)
{
	const struct tc_env *e = arg;
	struct shmc__uplink_config cfg;
	struct shmc__rcluster *cl = NULL;
	struct shmc__rop op;
	char err[160], key[32];

	if (shmc__uplink_uri_parse(e->uri, &cfg, err, sizeof err) != 0 ||
	    shmc__rcluster_new(&cfg, &cl) != 0)
		return 1;
	snprintf(key, sizeof key, "forkchild:%u", index);
	op_key(&op, SHMC__ROP_GET, key);
	shmc__rcluster_exec(cl, &op, 1);
	shmc__rcluster_free(cl); /* a grace period */
	return op.rc == SHMC_ENOTFOUND ? 0 : 2;
}

static void test_redis_cluster_fork_during_load_child_not_stuck(void **state)
{
	(void)state;
	static struct load l;
	struct tc_env e;
	pthread_t th;

	tc_env_load(&e);
	memset(&l, 0, sizeof l);
	l.nkeys = LOAD_KEYS;
	for (unsigned k = 0; k < l.nkeys; k++)
		snprintf(l.keys[k], sizeof l.keys[k], "forkload:%u", k);
	l.cl = cluster_open(&e, NULL);
	assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
	wait_iterations(&l, 10, 10000);
	for (unsigned i = 0; i < 20; i++) {
		/* the child's watchdog (10 s) turns a stuck grace period into a failure */
		assert_int_equal(tu_fork_run(1, fork_child, &e, 10), 0);
		wait_iterations(&l, 1, 10000);
	}
	atomic_store(&l.stop, true);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&l.failed), 0);
	assert_int_equal(atomic_load(&l.wrong), 0);
	shmc__rcluster_free(l.cl);
}

static void test_redis_cluster_master_killed_replica_takes_over(void **state)
{
	(void)state;
	static struct load l;
	struct tc_env e;
	struct tc_topo t;
	uint16_t masters[TC_NODES_MAX], replicas[TC_NODES_MAX];
	pthread_t th;

	tc_env_load(&e);
	tc_wait_cluster_ok(&e, 10000);
	tc_topo_load(&e, &t);
	unsigned nmasters = tc_topo_masters(&t, masters);
	assert_int_equal(nmasters, 3);

	/* Keys on every master; the victim is the owner of the first. */
	memset(&l, 0, sizeof l);
	l.nkeys = LOAD_KEYS;
	for (unsigned k = 0; k < l.nkeys; k++)
		snprintf(l.keys[k], sizeof l.keys[k], "failover:%u", k);
	uint16_t victim = t.slot_port[shmc__cluster_slot(l.keys[0], strlen(l.keys[0]))];
	assert_int_equal(tc_topo_replicas(&t, victim, replicas), 1);
	uint16_t heir = replicas[0];
	pid_t victim_pid = tc_env_pid_of(&e, victim);

	l.cl = cluster_open(&e, NULL);
	l.pause_us = 1000;
	assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
	wait_iterations(&l, 50, 10000);
	assert_int_equal(atomic_load(&l.failed), 0);

	uint64_t kill_ms = tu_now_ms();
	assert_int_equal(kill(victim_pid, SIGKILL), 0);
	/* Errors are expected while the cluster notices (node timeout) and
	 * elects the replica; then none: wait for 3 s without a failure. */
	uint64_t deadline = kill_ms + 30000;
	for (;;) {
		uint64_t now = tu_now_ms(), last = atomic_load(&l.last_fail_ms);
		if (last && now - last >= 3000)
			break;
		if (!last && now - kill_ms >= 10000)
			break; /* not one failure: checked below */
		if (now > deadline)
			break;
		tu_sleep_ms(20);
	}
	unsigned long long ops_at_end = atomic_load(&l.ops);
	wait_iterations(&l, 20, 10000);
	atomic_store(&l.stop, true);
	pthread_join(th, NULL);

	unsigned long long first = atomic_load(&l.first_fail_ms),
			   last = atomic_load(&l.last_fail_ms);
	struct shmc__rcluster_stats st;
	shmc__rcluster_stats(l.cl, &st);
	print_message("failover: master %u (pid %d) killed; errors from %+lld ms to %+lld ms after "
		      "the kill: window %llu ms, %llu failed ops of %llu (%llu iterations); "
		      "%" PRIu64 " CLUSTERDOWN retries, %" PRIu64 " MOVED, %" PRIu64 " refreshes\n",
		      (unsigned)victim, (int)victim_pid, first ? (long long)(first - kill_ms) : -1,
		      last ? (long long)(last - kill_ms) : -1, first ? last - first : 0,
		      (unsigned long long)atomic_load(&l.failed),
		      (unsigned long long)atomic_load(&l.ops),
		      (unsigned long long)atomic_load(&l.iterations), st.retries_clusterdown,
		      st.redirects_moved, st.topology_refreshes);
	if (first)
		print_message("failover: first error: %s\n", l.first_err);
	assert_int_equal(atomic_load(&l.wrong), 0);
	/* the killed master's keys could not all have been served throughout */
	assert_true(first != 0);
	/* ... and then everything was served again, for 3 s and more */
	assert_true(tu_now_ms() - last >= 3000);
	assert_true(atomic_load(&l.ops) > ops_at_end);
	assert_true(last - kill_ms < 20000);

	/* The cluster promoted the replica. */
	tc_topo_load(&e, &t);
	const struct tc_node *h = tc_topo_by_port(&t, heir);
	assert_true(h->master);
	assert_int_equal(t.slot_port[shmc__cluster_slot(l.keys[0], strlen(l.keys[0]))], heir);
	shmc__rcluster_free(l.cl);

	/* Put the killed node back: it rejoins as the heir's replica. */
	tc_restart_node(&e, victim);
	tc_wait_cluster_ok(&e, 30000);
	tc_topo_load(&e, &t);
	assert_false(tc_topo_by_port(&t, victim)->master);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redis_cluster_slots_match_server_keyslot),
		cmocka_unit_test(test_redis_cluster_keys_on_every_master_roundtrip),
		cmocka_unit_test(test_redis_cluster_replica_reads_served_by_replicas),
		cmocka_unit_test(test_redis_cluster_slot_migration_under_load_invisible),
		cmocka_unit_test(test_redis_cluster_fork_during_load_child_not_stuck),
		cmocka_unit_test(test_redis_cluster_master_killed_replica_takes_over),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
