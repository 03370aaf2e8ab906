/*
 * redis_cluster.h - Redis Cluster routing for the uplink: key slots (CRC16
 * with hash tags), the slot map from CLUSTER SLOTS, redirects, back-off and
 * topology refresh. The routing table is read under liburcu RCU (urcu-memb)
 * and replaced whole when the topology changes, so a reader never sees a
 * half-updated map. Used by the uplink thread; shmc__rcluster_route may be
 * called from any thread.
 */
#ifndef SHMC_REDIS_CLUSTER_H
#define SHMC_REDIS_CLUSTER_H

#include "redis_node.h"
#include "uplink_uri.h"

#include <stddef.h>
#include <stdint.h>

#define SHMC__CLUSTER_SLOTS 16384

/* The slot of a key: CRC16 (XMODEM) of the key, or of the part inside the
 * first {...} if that part is not empty, modulo 16384. */
uint16_t shmc__cluster_slot(const void *key, size_t klen);

struct shmc__rcluster;

/* A cluster reached through cfg's seeds. Tries to load the slot map now
 * (from the first seed that answers); if none answers, the map is loaded
 * by a later exec or tick, and ops fail with SHMC_EUPLINK meanwhile.
 * Returns 0 and *out, or SHMC_ENOMEM. */
int shmc__rcluster_new(const struct shmc__uplink_config *cfg, struct shmc__rcluster **out);
void shmc__rcluster_free(struct shmc__rcluster *cl);

/* Run ops, each routed by its key's slot (to a replica for GET when
 * replica_reads): grouped per node and pipelined; MOVED updates the map
 * (and schedules a refresh) and retries; ASK retries once at the named node
 * with ASKING; TRYAGAIN and CLUSTERDOWN retry with bounded back-off; at
 * most a few rounds within the command timeout. Every op ends with rc 0,
 * SHMC_ENOTFOUND or SHMC_EUPLINK (err says why). */
void shmc__rcluster_exec(struct shmc__rcluster *cl, struct shmc__rop *ops, size_t nops);

/* Periodic work: refresh the slot map every few seconds and when a
 * redirect asked for it; health checks of every node. */
void shmc__rcluster_tick(struct shmc__rcluster *cl);

/* Counters. */
struct shmc__rcluster_stats {
	uint64_t redirects_moved, redirects_ask, retries_tryagain, retries_clusterdown;
	uint64_t topology_refreshes;
	unsigned nodes;
};
void shmc__rcluster_stats(const struct shmc__rcluster *cl, struct shmc__rcluster_stats *out);

/* Visit every node (for breaker state and per-node counters). */
void shmc__rcluster_each_node(struct shmc__rcluster *cl,
			      void (*fn)(void *arg, struct shmc__rnode *n), void *arg);

/* The parsed CLUSTER SLOTS reply, before it becomes a routing table.
 * Exposed so that tests can feed the parser hand-built replies; the rest of
 * the library goes through shmc__rcluster_new / _tick / _exec. */
#define SHMC__CLUSTER_MAX_REPLICAS 4 /* replicas kept per master; more are ignored */
#define SHMC__CLUSTER_NO_NODE UINT16_MAX

struct shmc__cluster_range {
	uint16_t first, last; /* slots, inclusive */
	uint16_t master;      /* index into nodes, or SHMC__CLUSTER_NO_NODE when the
			       * node announced its address as unknown ("?") */
	uint16_t nreplicas;
	uint16_t replica[SHMC__CLUSTER_MAX_REPLICAS]; /* indexes into nodes */
};

struct shmc__cluster_map {
	struct shmc__cluster_range *ranges; /* one per reply entry, in reply order */
	size_t nranges;
	struct shmc__endpoint *nodes;       /* distinct nodes named, by host:port */
	size_t nnodes;
};

/* Parse and validate a CLUSTER SLOTS reply: every element's type, slot
 * numbers in 0..16383 with first <= last, no slot twice, hosts that fit an
 * endpoint, ports in 1..65535, node ids (when present) strings. A node with
 * an empty host is asked_host (the node that answered); one with host "?"
 * is unknown (a replica is then left out; a master leaves its slots
 * unserved). Returns 0 and *out (release with shmc__cluster_map_free), or
 * SHMC_EUPLINK (an error reply, garbage, or no slot at all) or SHMC_ENOMEM,
 * with the reason in err (NUL-terminated, at most errcap bytes) and *out
 * empty. */
int shmc__cluster_map_parse(const struct redisReply *reply, const char *asked_host,
			    struct shmc__cluster_map *out, char *err, size_t errcap);
void shmc__cluster_map_free(struct shmc__cluster_map *m);

#endif
