/*
 * sweeper.h - making room: direct reclaim by writers that find no free
 * chunk. (The background sweeper role, CLOCK and TTL sweeps build on it.)
 */
#ifndef SHMC_SWEEPER_H
#define SHMC_SWEEPER_H

#include <stdbool.h>

struct shmc_cache;
struct shmc__tctx;

/* Evict the sealed chunk with the fewest live bytes: unlink every item of
 * it that is still reachable (counted as evictions) and retire it. Returns
 * false if no sealed chunk could be taken. */
bool shmc__reclaim_direct(struct shmc_cache *c, struct shmc__tctx *t);

#endif
