/*
 * tu_verify.h - the end-of-test consistency check shared by every suite.
 *
 * What `shmcache verify NAME` does after a reaper pass: a fresh writable
 * handle (sweeper off) runs one shmc__reap_pass(), so that what dead or
 * departed processes left behind is taken over, then a separate
 * inspection-only attach (shmc__inspect_open) runs shmc__verify(). Clean
 * means no invariant violation, and nothing left for a reaper: no dead
 * process slot, no bucket lock held by the dead, no leaked byte.
 *
 * Call it once the segment is quiet (no process writing, and no sweeper
 * emptying or expiring items: those pass through states that look like
 * leaks for an instant). The caller must not be inside a read section.
 */
#ifndef SHMC_TU_VERIFY_H
#define SHMC_TU_VERIFY_H

#include <stdint.h>

/* What the check found (a copy of the interesting verify fields). */
struct tu_verify_summary {
	uint64_t errors;
	uint64_t procs_dead;
	uint64_t locks_held_by_dead;
	uint64_t bytes_leaked;
	uint64_t items_reachable;
	uint64_t chunks_free, chunks_open, chunks_sealed, chunks_retiring, chunks_retired;
};

/* Reap, then verify segment name as above. Prints every finding to
 * stderr, prefixed with name. Returns 0 if clean, -1 if not, or a
 * negative SHMC_E* code if a step could not run. out may be NULL. */
int tu_verify_clean(const char *name, struct tu_verify_summary *out);

#endif /* SHMC_TU_VERIFY_H */
