/*
 * sweeper.h - making room: direct reclaim by writers that find no free
 * chunk. (The background sweeper role, CLOCK and TTL sweeps build on it.)
 */
#ifndef SHMC_SWEEPER_H
#define SHMC_SWEEPER_H

#include <stdbool.h>
#include <stdint.h>

struct shmc_cache;
struct shmc__tctx;

/* Evict the sealed chunk with the fewest live bytes: unlink every item of
 * it that is still reachable (counted as evictions) and retire it. Returns
 * false if no sealed chunk could be taken. */
bool shmc__reclaim_direct(struct shmc_cache *c, struct shmc__tctx *t);

/* What one reaper pass did. */
struct shmc__reap_result {
	uint32_t procs_reaped;
	uint32_t locks_released;
	uint32_t retirements_finished;
	uint64_t leaked_bytes_recovered;
};

/* One full reaper pass: reap dead processes, release bucket locks whose
 * holders are gone, finish retirements whose claimants died, and audit the
 * accounting of sealed chunks so that bytes no index entry reaches are
 * counted dead (and their chunks retired). Waits for one grace period; the
 * caller must not be inside a read section. Returns 0 or SHMC_ENOMEM. */
int shmc__reap_pass(struct shmc_cache *c, struct shmc__tctx *t, struct shmc__reap_result *out);

#endif
