/*
 * verify.h - walk a segment and check every invariant (shmcache verify).
 */
#ifndef SHMC_VERIFY_H
#define SHMC_VERIFY_H

#include <stdint.h>

struct shmc_cache;

struct shmc__verify_report {
	/* Invariant violations: any nonzero value means the segment is bad. */
	uint64_t errors;
	/* What was found. */
	uint64_t items_reachable;
	uint64_t bytes_reachable;
	uint64_t chunks_free, chunks_open, chunks_sealed, chunks_retiring, chunks_retired;
	uint64_t procs_live, threads_live;
	/* Work pending for the reaper, not violations: processes that died
	 * and were not reaped yet, bucket locks they still hold, and log bytes
	 * that no index entry reaches but that no chunk counts as dead (they
	 * wait for the accounting audit). */
	uint64_t procs_dead;
	uint64_t locks_held_by_dead;
	uint64_t bytes_leaked;
	/* Called with one line per finding (errors and notes); may be NULL. */
	void (*emit)(void *arg, const char *line);
	void *emit_arg;
};

/* Check the segment behind c. Reads only: safe on a live segment, where an
 * operation in flight can look like a violation for an instant, so findings
 * are confirmed by a second pass before being reported. Returns 0 and
 * fills *r (r->errors tells the verdict), or SHMC_ENOMEM. */
int shmc__verify(struct shmc_cache *c, struct shmc__verify_report *r);

/* Open a segment for inspection only: mapped read-only, no process slot,
 * no reader registration. Close with shmc_close(). */
int shmc__inspect_open(const char *name, struct shmc_cache **out);

#endif
