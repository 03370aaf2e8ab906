/*
 * redis_node.h - one Redis server as the uplink sees it: a hiredis
 * connection (connected lazily, reconnected with back-off), a circuit
 * breaker, health checks, and pipelined batches of operations. Used by the
 * uplink thread only (not thread-safe); memory from the library's private
 * allocator (alloc.h), never the segment.
 */
#ifndef SHMC_REDIS_NODE_H
#define SHMC_REDIS_NODE_H

#include "uplink_uri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One operation of a batch. The caller fills the request part; exec fills
 * the result part. */
enum shmc__rop_kind { SHMC__ROP_GET, SHMC__ROP_SET, SHMC__ROP_DEL };

/* Result of an operation (rop.rc): 0 or a SHMC_E* code, or one of these
 * cluster answers, which redis_cluster.c acts on. */
enum {
	SHMC__ROP_MOVED = -1900,       /* slot served elsewhere: redirect_to */
	SHMC__ROP_ASK = -1901,         /* retry once at redirect_to with ASKING */
	SHMC__ROP_TRYAGAIN = -1902,    /* slot migrating: back off, retry */
	SHMC__ROP_CLUSTERDOWN = -1903, /* cluster unavailable: back off, retry */
};

struct shmc__rop {
	/* request */
	enum shmc__rop_kind kind;
	const void *key;
	size_t klen;
	const void *val;  /* SET */
	size_t vlen;
	uint64_t px_ms;   /* SET: PX milliseconds, 0 = no expiry */
	bool asking;      /* send ASKING first (cluster ASK redirect) */
	/* result */
	int rc;           /* 0; SHMC_ENOTFOUND (GET of an absent key); SHMC_EUPLINK
			   * (connection, timeout, breaker open, error reply,
			   * garbage or wrong reply type: err says which); or a
			   * SHMC__ROP_* redirect */
	void *val_out;    /* GET: value, from malloc(3); the caller frees it with
			   * free(3) (a loader's result as it is, no copy) */
	size_t vlen_out;
	int64_t pttl_ms;  /* GET: remaining remote TTL, -1 = none */
	uint16_t slot;    /* MOVED/ASK: the slot named */
	struct shmc__endpoint redirect_to; /* MOVED/ASK: the node named */
	char err[160];    /* why rc is SHMC_EUPLINK */
};

struct shmc__rnode;

/* A node at ep with cfg's timeouts, credentials and breaker settings. Does
 * not connect yet. NULL if out of memory. */
struct shmc__rnode *shmc__rnode_new(const struct shmc__endpoint *ep,
				    const struct shmc__uplink_config *cfg);
void shmc__rnode_free(struct shmc__rnode *n);

/* Run ops as one pipeline: GET is sent as GET + PTTL, SET as SET PX, DEL
 * as DEL; every reply is checked for its expected type. Connects (AUTH,
 * SELECT, READONLY when asked) if needed. Returns 0 if the node answered
 * (each op's rc says how), or SHMC_EUPLINK if the node failed as a whole
 * (connect error, timeout, protocol error, breaker open): every op then
 * has rc SHMC_EUPLINK and err set. Feeds the breaker. */
int shmc__rnode_exec(struct shmc__rnode *n, struct shmc__rop *ops, size_t nops);

/* Send READONLY on every (re)connection, for replica reads. */
void shmc__rnode_set_readonly(struct shmc__rnode *n, bool on);

/* Run one command (argv style) and hand its raw reply to fn, which returns
 * 0 or an error; for CLUSTER SLOTS and the like. Returns fn's result or
 * SHMC_EUPLINK (with the reason in err). */
struct redisReply;
int shmc__rnode_command(struct shmc__rnode *n, int argc, const char **argv, const size_t *argvlen,
			int (*fn)(void *arg, const struct redisReply *reply), void *arg, char *err,
			size_t errcap);

/* Breaker and health. */
enum shmc__breaker_state { SHMC__BREAKER_CLOSED, SHMC__BREAKER_OPEN, SHMC__BREAKER_HALF_OPEN };

/* true if a request may be sent now (closed, or half-open and the probe
 * slot is free); false while open (fail fast). */
bool shmc__rnode_available(struct shmc__rnode *n);
enum shmc__breaker_state shmc__rnode_breaker(const struct shmc__rnode *n);
/* PING if the health interval has passed (and, while open, after
 * breaker_open_ms: that is the half-open probe). Call often; cheap when
 * nothing is due. */
void shmc__rnode_health(struct shmc__rnode *n);
const struct shmc__endpoint *shmc__rnode_endpoint(const struct shmc__rnode *n);
/* "host:port", "[v6]:port" or the socket path, as messages name it. */
const char *shmc__rnode_name(const struct shmc__rnode *n);
/* Consecutive failures of the node (0 after a success). */
uint32_t shmc__rnode_failures(const struct shmc__rnode *n);

/* Counters of this node since it was created. */
struct shmc__rnode_stats {
	uint64_t calls;        /* pipelines sent */
	uint64_t ops;          /* operations in them */
	uint64_t errors_connect, errors_timeout, errors_protocol, errors_reply;
	uint64_t breaker_opens;
	uint64_t fast_fails;   /* ops refused while the breaker was open */
};
void shmc__rnode_stats(const struct shmc__rnode *n, struct shmc__rnode_stats *out);

#endif
