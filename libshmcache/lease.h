/*
 * lease.h - fill leases: host-wide single-flight for read-through.
 *
 * A lease says "one caller is loading this key". It lives in two places:
 *  - a record in the lease table: state (the futex word waiters sleep on),
 *    owner (the filler's bucket-lock id), deadline, result, waiters;
 *  - an entry in the key's probe sequence in the index: a slot word
 *    WITHOUT the ITEM bit, tag | generation | lease index + 1.
 * Readers only ever match ITEM entries, so they never see a lease. A
 * fetcher that misses looks for the key's lease under the key's bucket
 * lock and either joins it (waiters + 1) or claims a new one. The filler
 * publishes by turning its lease entry into the item's entry (one store)
 * under the same lock; a shmc_set or shmc_del of the key removes the lease
 * entry first, so a fill never overwrites newer data.
 *
 * Record life: FREE -> FILLING (claimed, gen + 1) -> DONE (result set,
 * waiters woken) -> FREE (by whoever sees waiters reach 0 after DONE).
 * A filler that dies or overruns its deadline is replaced by the one
 * waiter whose CAS on owner succeeds. A lease nobody waits on any more is
 * cleared by the sweeper.
 */
#ifndef SHMC_LEASE_H
#define SHMC_LEASE_H

#include <stdbool.h>
#include <stdint.h>

enum { SHMC__LEASE_FREE = 0, SHMC__LEASE_FILLING = 1, SHMC__LEASE_DONE = 2 };

/* lease.result of a fill that stored nothing its waiters can read (it was
 * cancelled by a write of the key, or memory was full): look again. */
#define SHMC__LEASE_RETRY (-1998)

struct shmc__lease {
	uint32_t state;       /* SHMC__LEASE_*; futex word */
	uint32_t gen;         /* bumped on every claim; part of the entry */
	/* Who fills and until when, in one word so that a takeover is one
	 * CAS: owner (bucket-lock id; 0 = nobody, e.g. a failed refresh
	 * cooling down) << 32 | the low 32 bits of the deadline in
	 * shmc__now_ms() (compared with wraparound: deadlines are near). */
	uint64_t claim;
	uint64_t key_hash;    /* XXH3 of the key (bucket and tag derive from it) */
	int32_t result;       /* when DONE: 0 stored, SHMC_ENOTFOUND, or an error */
	uint32_t waiters;     /* joined and not yet left */
	uint64_t done_ms;     /* when it became DONE */
	uint64_t pad[3];
};

static inline uint64_t shmc__claim_make(uint32_t owner, uint64_t deadline_ms)
{
	return (uint64_t)owner << 32 | (uint32_t)deadline_ms;
}

static inline uint32_t shmc__claim_owner(uint64_t claim)
{
	return (uint32_t)(claim >> 32);
}

static inline bool shmc__claim_expired(uint64_t claim, uint64_t now_ms)
{
	return (int32_t)((uint32_t)now_ms - (uint32_t)claim) > 0;
}
_Static_assert(sizeof(struct shmc__lease) == 64, "one cache line");

struct shmc_cache;
struct shmc__tctx;
struct shmc__keyref;

/* The index entry of lease idx at generation gen for a key with tag. */
static inline uint64_t shmc__lease_entry(uint16_t tag, uint32_t idx, uint32_t gen)
{
	return (uint64_t)tag << 48 | (uint64_t)(gen & 0x3fffffffu) << 16 | (idx + 1);
}

/* Lease index of a non-ITEM entry (caller checks it against nleases). */
static inline uint32_t shmc__lease_index(uint64_t e)
{
	return (uint32_t)(e & 0xffffu) - 1;
}

/* With k's bucket locked: the slot holding k's lease entry, or NULL. */
uint64_t *shmc__lease_find_locked(struct shmc_cache *c, const struct shmc__keyref *k);

/* With k's bucket locked and no lease for k: claim a lease owned by the
 * caller with the given deadline and publish its entry. Returns 0 and
 * *entry, or SHMC_ENOSPC (no free lease or index slot: load unleased). */
int shmc__lease_claim_locked(struct shmc_cache *c, struct shmc__tctx *t,
			     const struct shmc__keyref *k, uint32_t owner, uint64_t deadline_ms,
			     uint64_t *entry);

/* With k's bucket locked: remove k's lease entry, if any, so that the
 * fill in flight stores nothing (a write of k wins over it). */
void shmc__lease_cancel_locked(struct shmc_cache *c, const struct shmc__keyref *k);

/* Set the result, mark DONE, wake every waiter; free the record if
 * nobody waits. */
void shmc__lease_finish(struct shmc_cache *c, uint32_t idx, int result);

/* A waiter is done with the record (after reading its result). */
void shmc__lease_leave(struct shmc_cache *c, uint32_t idx);

/* Wait for lease idx to finish, or for the right to take it over.
 * Returns SHMC__LEASE_DONE (read result, then leave), 1 if the caller now
 * owns it (filler dead, late, or a refresh cooling down; the caller still
 * counts as a waiter) with a deadline fill_timeout_ms from the takeover,
 * or SHMC_ETIMEDOUT after wait_ms. */
int shmc__lease_wait(struct shmc_cache *c, struct shmc__tctx *t, uint32_t idx,
		     unsigned fill_timeout_ms, unsigned wait_ms);

/* Sweeper: clear leases whose filler is gone and that nobody waits for,
 * and records stuck DONE because a waiter died. */
void shmc__lease_reap(struct shmc_cache *c, struct shmc__tctx *t);

#endif
