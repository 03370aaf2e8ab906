/*
 * sweeper.h - making room (eviction steps, direct reclaim), expiry, the
 * reaper pass, and the sweeper role that runs them ahead of the writers.
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

/* One eviction step: choose a victim chunk (wholly expired, else mostly
 * dead, else the probationary log's oldest while it is over its share,
 * else the main log's oldest), move what it keeps into the caller's open
 * chunks, unlink the rest, retire it. Returns false if nothing could be
 * claimed. The caller must not be inside a read section. */
bool shmc__evict_step(struct shmc_cache *c, struct shmc__tctx *t);

/* Free chunks only an eviction step may take: what it keeps (promotions,
 * CLOCK survivors) needs room to move into, or the step would have to
 * fall back to evicting blindly. */
#define SHMC__EVICTION_RESERVE 2u

/* Free chunks the sweeper keeps available, and the level below which a
 * writer makes room itself (the sweeper is behind, or none runs); both
 * count the reserve in. */
uint32_t shmc__free_low(const struct shmc_cache *c);
uint32_t shmc__free_critical(const struct shmc_cache *c);

/* Wake the sweeper role's holder before its next tick. */
void shmc__sweeper_wake(struct shmc_cache *c);

/* The sweeper role, run by the lease holder's thread until *stop: every
 * tick (2 ms while the cache is busy, 100 ms while idle) it refreshes the
 * header clock and keeps free chunks at the low watermark; every 100 ms it
 * reaps dead processes and walks a share of the chunks for expired items.
 * Clears the header clock on return. */
void shmc__sweeper_run(struct shmc_cache *c, struct shmc__tctx *t, const bool *stop);

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
