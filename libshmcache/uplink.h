/*
 * uplink.h - the remote tier, as the rest of the library sees it: one
 * uplink thread per process (per handle with an uplink URI). Callers hand
 * it operations through a process-local wait-free queue and, for reads and
 * write-through, sleep until it answers; it batches whatever is queued and
 * pipelines it per node (redis_node.h, redis_cluster.h).
 *
 * Reads reach the uplink only as the loader of a fill (fetch.c): the fill
 * lease already makes them one per key per host, and the filler stores the
 * value through its lease, which wakes the other processes' waiters.
 */
#ifndef SHMC_UPLINK_H
#define SHMC_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_node.h"

struct shmc_cache;

/* Check uri; SHMC_EINVAL with the reason recorded (for shmc_opts_set_uplink). */
int shmc__uplink_check_uri(const char *uri);

/* Parse uri, connect lazily, start the thread. Returns 0, SHMC_EINVAL (bad
 * URI) or SHMC_ENOMEM / -errno (thread). */
int shmc__uplink_start(struct shmc_cache *c, const char *uri);

/* Stop the thread: queued operations complete with SHMC_EUPLINK (pending
 * write-behind operations are dropped and counted). */
void shmc__uplink_stop(struct shmc_cache *c);

/* In a fork child: the parent's thread does not exist here; start anew
 * (the child's first call re-registers the handle). */
void shmc__uplink_forget(struct shmc_cache *c);
int shmc__uplink_restart(struct shmc_cache *c);

/* The loader shmc_fetch uses when called with none (arg = the handle):
 * GET (with the key's remaining TTL, which caps the local one) through the
 * uplink thread. */
int shmc__uplink_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			uint32_t *ttl_ms);

/* The answer to one GET of shmc__uplink_get_many, which
 * shmc__uplink_answer_loader hands to a fill as the loader's result. */
struct shmc__uplink_answer {
	struct shmc_cache *c;
	struct shmc__rop op; /* the caller sets op.key and op.klen */
};

/* The uplink's batch option: the most operations one round trip carries. */
size_t shmc__uplink_batch(struct shmc_cache *c);

/* GET answers[0..n) through the uplink thread at once: one pipelined
 * batch (or more, past the batch option), one wait. Each answer's outcome
 * is in its op. Returns 0, SHMC_EUPLINK (no uplink) or SHMC_ENOMEM. */
int shmc__uplink_get_many(struct shmc_cache *c, struct shmc__uplink_answer *answers, size_t n);

/* A loader (arg = a struct shmc__uplink_answer) returning that answer, as
 * shmc__uplink_loader would have: the value (handed over: *val is the
 * caller's), a TTL capped by the remote one, SHMC_ENOTFOUND, or
 * SHMC_EUPLINK with the reason recorded. */
int shmc__uplink_answer_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			       uint32_t *ttl_ms);

/* Remote SET with PX ttl_ms (0 = none) or DEL. wait: return the remote
 * answer (write-through); else queue and return at once (write-behind:
 * SHMC_ENOSPC-free, a full queue drops the operation and counts it). */
int shmc__uplink_set(struct shmc_cache *c, const void *key, size_t klen, const void *val,
		     size_t vlen, uint32_t ttl_ms, bool wait);
int shmc__uplink_del(struct shmc_cache *c, const void *key, size_t klen, bool wait);

#endif
