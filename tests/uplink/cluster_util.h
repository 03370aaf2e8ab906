/*
 * cluster_util.h - what the Redis Cluster tests of tests/uplink/ share: the
 * fixture's env file (tests/uplink/servers.sh start-cluster), the tests' own
 * hiredis connections to single nodes, the cluster's view of itself (CLUSTER
 * NODES), and waiting for it to be healthy again.
 *
 * These are the tests' independent eyes on the cluster: nothing here goes
 * through the library. Failures are cmocka failures, so none of this may be
 * called in a forked child.
 */
#ifndef SHMC_TEST_CLUSTER_UTIL_H
#define SHMC_TEST_CLUSTER_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#define TC_NODES_MAX 16
#define TC_SLOTS 16384

/* ------------------------------------------------------- the env file */

struct tc_env {
	char uri[1024]; /* SHMC_REDIS_CLUSTER_URI: redis-cluster://seed,seed,seed */
	unsigned nports;
	uint16_t port[TC_NODES_MAX];
	pid_t pid[TC_NODES_MAX]; /* pid[i] serves port[i] */
	char servers_sh[1024];
	char dir[1024];
};

/* Read the file named by SHMC_REDIS_CLUSTER_ENV (fails the test if it is
 * not set or incomplete: six nodes, each with a pid). */
/* A value of a servers.sh env file line: KEY=VALUE or KEY='VALUE'; true and
 * out if line sets key (fails the test if the value does not fit). */
bool tc_env_value(const char *line, const char *key, char *out, size_t cap);

void tc_env_load(struct tc_env *e);
pid_t tc_env_pid_of(const struct tc_env *e, uint16_t port);

/* servers.sh restart-node for port (a node the test killed), which waits
 * until the cluster is whole again and rewrites the env file; then reload
 * e from it. */
void tc_restart_node(struct tc_env *e, uint16_t port);

/* ---------------------------------------------- our own connections */

/* A connection to 127.0.0.1:port (1 s to connect, 5 s per command), or
 * NULL if nothing answers there. */
redisContext *tc_connect(uint16_t port);

/* One command (argv, or printf-style without binary arguments) on a
 * connection of its own; the reply, or NULL if the node is not there. */
redisReply *tc_argv(uint16_t port, int argc, const char **argv);
redisReply *tc_cmd(uint16_t port, const char *fmt, ...);

/* The same, failing the test unless the reply is not an error. */
void tc_ok(uint16_t port, const char *fmt, ...);

/* CLUSTER KEYSLOT as the cluster computes it (the first node of e that
 * answers). */
unsigned tc_keyslot(const struct tc_env *e, const char *key);

/* Sum of "cmdstat_<cmd>:calls=N" in INFO commandstats on port. */
long long tc_cmd_calls(uint16_t port, const char *cmd);

/* ---------------------------------------------- the cluster's view */

struct tc_node {
	char id[48];
	uint16_t port;
	bool master, failed;
	char master_id[48];
};

struct tc_topo {
	struct tc_node node[TC_NODES_MAX];
	unsigned n;
	uint16_t slot_port[TC_SLOTS]; /* owning master's port, 0 = none */
};

/* CLUSTER NODES from the first node of e that answers. */
void tc_topo_load(const struct tc_env *e, struct tc_topo *t);
/* The node on port (fails the test if there is none). */
const struct tc_node *tc_topo_by_port(const struct tc_topo *t, uint16_t port);
/* The live masters, by port; returns how many. */
unsigned tc_topo_masters(const struct tc_topo *t, uint16_t *ports);
/* The live replicas of the master on port; returns how many. */
unsigned tc_topo_replicas(const struct tc_topo *t, uint16_t master_port, uint16_t *ports);

/* Wait until every node of e says cluster_state:ok with all 16384 slots
 * served (fails the test after timeout_ms). */
void tc_wait_cluster_ok(const struct tc_env *e, unsigned timeout_ms);

/* ------------------------------------------------ a slot migration */

/* A slot moved by hand in the steps of redis-cli --cluster reshard, so
 * that a test can meet the slot in each state: begin (IMPORTING at dst,
 * MIGRATING at src), steps (MIGRATE a few keys at a time), finish (the
 * slot is dst's, on every master). */
struct tc_migration {
	unsigned slot;
	uint16_t src, dst; /* the slot's owner, and another master */
	char src_id[48], dst_id[48];
	uint16_t masters[TC_NODES_MAX];
	unsigned nmasters;
};

/* Plan the move of slot away from its owner in t. */
void tc_migration_plan(const struct tc_topo *t, unsigned slot, struct tc_migration *m);
void tc_migration_begin(const struct tc_migration *m);
/* MIGRATE up to batch (at most 16) of the slot's keys left at src;
 * returns how many (0: none left). */
unsigned tc_migration_step(const struct tc_migration *m, unsigned batch);
void tc_migration_finish(const struct tc_migration *m);

#endif
