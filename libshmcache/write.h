/*
 * write.h - the pieces of a write that shmc_set (cache.c) and read-through
 * (fetch.c) share.
 */
#ifndef SHMC_WRITE_H
#define SHMC_WRITE_H

#include "log.h"

#include <stddef.h>
#include <stdint.h>

struct shmc_cache;
struct shmc__tctx;
struct shmc__keyref;

/* SHMC_EINVAL for an empty key, SHMC_ETOOBIG for one over the segment's
 * limit (message recorded), else 0. */
int shmc__check_key(struct shmc_cache *c, const void *key, size_t klen);

/* Absolute expiry ttl_ms from now: the precise clock rounded up, since
 * readers compare with clocks that only ever lag it, so that nothing
 * expires early; capped to what an item header can express. */
uint64_t shmc__expiry_in(uint64_t ttl_ms);

/* Stored expiry of a value written with ttl_ms (0 = the segment default;
 * 0 returned = never): TTL jitter applied, the stale window added. Keeps
 * the header clock honest on the way. */
uint64_t shmc__expiry_for(struct shmc_cache *c, uint32_t ttl_ms);

/* Append a new item of key k to the calling thread's probationary chunk
 * (writers write nowhere else, so each holds one open chunk). If k's ghost
 * says it was evicted from probation recently, it has proved it comes back:
 * the item is marked read, so that leaving probation promotes it. */
int shmc__append_new(struct shmc_cache *c, struct shmc__tctx *t, const struct shmc__keyref *k,
		     const void *val, size_t vlen, uint64_t expire, uint64_t *off);

/* Account a displaced or removed index entry dead. Inside a read section. */
void shmc__entry_dead(struct shmc_cache *c, struct shmc__tctx *t, uint64_t e);

#endif
