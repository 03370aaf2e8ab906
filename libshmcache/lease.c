/*
 * lease.c - fill leases (see lease.h).
 */
#include "lease.h"

#include "handle.h"
#include "index.h"
#include "index_read.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

#define LEASE_POLL_MS 10        /* a waiter re-checks its filler this often */
#define LEASE_STUCK_DONE_MS 60000 /* a DONE record older than this has dead waiters */

static bool is_lease_of(shmc_cache *c, const struct shmc__keyref *k, uint64_t e)
{
	if (!e || (e & SHMC__ENTRY_ITEM) || shmc__entry_tag(e) != k->tag)
		return false;
	uint32_t idx = shmc__lease_index(e);
	if (idx >= c->geo.nleases)
		return false;
	struct shmc__lease *l = &c->leases[idx];
	return uatomic_read(&l->key_hash) == k->hash &&
	       e == shmc__lease_entry(k->tag, idx, uatomic_read(&l->gen));
}

static bool lease_of(shmc_cache *c, const struct shmc__keyref *k, uint64_t e, const void *unused)
{
	(void)unused;
	return is_lease_of(c, k, e);
}

uint64_t *shmc__lease_find_locked(shmc_cache *c, const struct shmc__keyref *k)
{
	return shmc__index_probe_locked(c, k, lease_of, NULL);
}

void shmc__lease_cancel_locked(shmc_cache *c, const struct shmc__keyref *k)
{
	uint64_t *slot = shmc__lease_find_locked(c, k);
	if (slot)
		uatomic_xchg(slot, 0);
}

int shmc__lease_claim_locked(shmc_cache *c, struct shmc__tctx *t, const struct shmc__keyref *k,
			     uint32_t owner, uint64_t deadline_ms, uint64_t *entry)
{
	uint32_t n = c->geo.nleases;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t idx = (t->slot_idx + i) % n;
		struct shmc__lease *l = &c->leases[idx];
		if (uatomic_read(&l->state) != SHMC__LEASE_FREE ||
		    uatomic_cmpxchg(&l->state, SHMC__LEASE_FREE, SHMC__LEASE_FILLING) !=
			    SHMC__LEASE_FREE)
			continue;
		uint32_t gen = uatomic_read(&l->gen) + 1;
		uatomic_set(&l->gen, gen);
		uatomic_set(&l->claim, shmc__claim_make(owner, deadline_ms));
		uatomic_set(&l->key_hash, k->hash);
		uatomic_set(&l->result, 0);
		uatomic_set(&l->waiters, 0);
		uint64_t e = shmc__lease_entry(k->tag, idx, gen);
		/* The CAS that publishes the entry orders the fields above. */
		if (shmc__index_insert_entry_locked(c, k, e) != 0) {
			uatomic_set(&l->state, SHMC__LEASE_FREE);
			return SHMC_ENOSPC;
		}
		*entry = e;
		return 0;
	}
	return SHMC_ENOSPC;
}

static void futex_wake_all(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void shmc__lease_finish(shmc_cache *c, uint32_t idx, int result)
{
	struct shmc__lease *l = &c->leases[idx];
	uatomic_set(&l->result, result);
	uatomic_set(&l->done_ms, shmc__now_ms());
	cmm_smp_wmb();
	uatomic_set(&l->state, SHMC__LEASE_DONE);
	/* A waiter counts itself (a full barrier) before it looks at state:
	 * either it sees DONE and never sleeps, or this sees it counted. The
	 * system call is skipped in the common case: nobody waited. */
	cmm_smp_mb();
	if (uatomic_read(&l->waiters) != 0)
		futex_wake_all(&l->state);
	else
		uatomic_cmpxchg(&l->state, SHMC__LEASE_DONE, SHMC__LEASE_FREE);
}

void shmc__lease_leave(shmc_cache *c, uint32_t idx)
{
	struct shmc__lease *l = &c->leases[idx];
	if (uatomic_add_return(&l->waiters, -1) == 0)
		uatomic_cmpxchg(&l->state, SHMC__LEASE_DONE, SHMC__LEASE_FREE);
}

int shmc__lease_wait(shmc_cache *c, struct shmc__tctx *t, uint32_t idx, unsigned fill_timeout_ms,
		     unsigned wait_ms)
{
	struct shmc__lease *l = &c->leases[idx];
	uint64_t start = shmc__now_ms();
	for (;;) {
		if (uatomic_read(&l->state) != SHMC__LEASE_FILLING)
			return SHMC__LEASE_DONE;
		uint64_t claim = uatomic_read(&l->claim), now = shmc__now_ms();
		uint32_t owner = shmc__claim_owner(claim);
		bool gone = owner == 0 || shmc__claim_expired(claim, now) ||
			    shmc__lock_holder_dead(c, owner, false);
		if (gone && uatomic_read(&l->state) == SHMC__LEASE_FILLING &&
		    uatomic_cmpxchg(&l->claim, claim,
				    shmc__claim_make(t->lock_id, now + fill_timeout_ms)) == claim)
			return 1;
		if (now - start >= wait_ms)
			return SHMC_ETIMEDOUT;
		struct timespec poll = {0, LEASE_POLL_MS * 1000000L};
		syscall(SYS_futex, &l->state, FUTEX_WAIT, SHMC__LEASE_FILLING, &poll, NULL, 0);
	}
}

void shmc__lease_reap(shmc_cache *c, struct shmc__tctx *t)
{
	uint64_t now = shmc__now_ms();
	for (uint32_t idx = 0; idx < c->geo.nleases; idx++) {
		struct shmc__lease *l = &c->leases[idx];
		uint32_t st = uatomic_read(&l->state);
		if (st == SHMC__LEASE_DONE) {
			/* Its last waiter died before leaving. */
			if (now - uatomic_read(&l->done_ms) > LEASE_STUCK_DONE_MS)
				uatomic_cmpxchg(&l->state, SHMC__LEASE_DONE, SHMC__LEASE_FREE);
			continue;
		}
		if (st != SHMC__LEASE_FILLING || uatomic_read(&l->waiters))
			continue; /* waiters take a dead filler's place themselves */
		uint64_t claim = uatomic_read(&l->claim);
		uint32_t owner = shmc__claim_owner(claim);
		bool abandoned = owner ? shmc__lock_holder_dead(c, owner, false)
				       : shmc__claim_expired(claim, now);
		if (!abandoned ||
		    uatomic_cmpxchg(&l->claim, claim, shmc__claim_make(t->lock_id, now + 1000)) != claim)
			continue;
		struct shmc__keyref kr;
		shmc__keyref_from_hash(c, &kr, uatomic_read(&l->key_hash));
		uint64_t e = shmc__lease_entry(kr.tag, idx, uatomic_read(&l->gen));
		shmc__bucket_lock(c, t, kr.bucket);
		uint64_t *slot = shmc__index_slot_of_locked(c, &kr, e);
		if (slot)
			uatomic_cmpxchg(slot, e, 0);
		shmc__bucket_unlock(c, t, kr.bucket);
		shmc__lease_finish(c, idx, SHMC__LEASE_RETRY);
	}
}
