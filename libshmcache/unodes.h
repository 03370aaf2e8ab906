/*
 * unodes.h - the uplink node table: where every process's uplink thread
 * publishes the circuit-breaker state of each remote node it talks to, so
 * that any attached process (shmc_uplink_nodes, shmcache-stat) can read the
 * breakers of the whole host.
 *
 * A breaker is process-local state (redis_node.c); this table is its
 * shared mirror. One entry per (uplink thread, node). An entry belongs to
 * the thread slot that claimed it, named with that slot's generation, so
 * an entry whose thread is gone (its slot released or claimed again, or
 * its process dead) is recognised as such without any clean-up: readers
 * skip it and the next claimer takes it over.
 *
 * Only the owner writes an entry's fields, inside a sequence lock (seq odd
 * while writing); readers copy them and retry if seq moved. The fields
 * also say which owner wrote them (written_by), so that a reader never
 * attributes a previous owner's node to a new owner that has claimed the
 * entry but not yet written it.
 */
#ifndef SHMC_UNODES_H
#define SHMC_UNODES_H

#include <stdint.h>

#define SHMC__UNODES_PER_PROC 4 /* entries per process slot */
#define SHMC__UNODES_MIN 64
#define SHMC__UNODE_ADDR 88 /* bytes of an address, NUL included */

struct shmc__unode {
	/* Owner: (thread slot + 1) << 32 | the slot's gen when claimed; 0 =
	 * free. Claimed by CAS from 0 or from an owner that is gone; stored 0
	 * by the owner when its uplink stops. */
	uint64_t owner;
	/* Sequence lock over the fields below: odd while the owner writes. */
	uint32_t seq;
	uint32_t state;	   /* SHMC_BREAKER_* */
	uint32_t failures; /* consecutive failures of the node */
	uint32_t reserved32;
	uint64_t breaker_opens;	     /* times the owner's breaker of the node opened */
	uint64_t written_by;	     /* owner word of the writer of these fields */
	char addr[SHMC__UNODE_ADDR]; /* NUL-terminated by the writer; readers
				      * terminate their copy themselves */
};
_Static_assert(sizeof(struct shmc__unode) == 128, "two cache lines");

/* Entries of a segment with max_procs process slots. */
static inline uint32_t shmc__unodes_for(uint32_t max_procs)
{
	uint32_t n = max_procs * SHMC__UNODES_PER_PROC;
	return n < SHMC__UNODES_MIN ? SHMC__UNODES_MIN : n;
}

struct shmc_cache;
struct shmc__tctx;

/* Claim an entry for the node called addr, owned by the calling thread
 * (context t), and publish state 0 (closed) in it. Returns the entry's
 * index, or -1 if every entry belongs to a live thread. Scans the table:
 * not for a hot path. */
int32_t shmc__unode_claim(struct shmc_cache *c, struct shmc__tctx *t, const char *addr);

/* Write the state of entry idx, claimed by the calling thread. */
void shmc__unode_publish(struct shmc_cache *c, struct shmc__tctx *t, uint32_t idx, uint32_t state,
			 uint32_t failures, uint64_t breaker_opens);

/* Give entry idx back (if it is still the calling thread's). */
void shmc__unode_release(struct shmc_cache *c, struct shmc__tctx *t, uint32_t idx);

#endif
