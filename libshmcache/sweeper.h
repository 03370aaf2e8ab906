/*
 * sweeper.h - making room (compaction, direct reclaim) and the reaper pass,
 * run today by the writers that need them; the background sweeper role will
 * run the same code ahead of time.
 */
#ifndef SHMC_SWEEPER_H
#define SHMC_SWEEPER_H

#include <stdbool.h>
#include <stdint.h>

struct shmc_cache;
struct shmc__tctx;

/* For a writer that found no free chunk: first take over retirements whose
 * claimant died; failing that, evict the sealed chunk with the fewest live
 * bytes (unlink every item still reachable, counted as evictions) and
 * retire it. Returns false if there was nothing to take. */
bool shmc__reclaim_direct(struct shmc_cache *c, struct shmc__tctx *t);

/* Compaction, run by a writer that just opened a chunk while free chunks
 * are running low: the sealed chunk with the fewest live bytes is emptied
 * into the writer's new chunk. When that chunk is at least half dead every
 * live item moves (nothing is lost while memory is mostly garbage);
 * otherwise CLOCK decides: referenced items move with their bit cleared,
 * the rest are evicted. Either way the chunk is then retired. */
void shmc__compact_into_open(struct shmc_cache *c, struct shmc__tctx *t);

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
