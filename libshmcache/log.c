/*
 * log.c - the allocator: chunks of the data area appended to by one thread
 * at a time, retired when every item in them is dead, reused after an RCU
 * grace period.
 *
 * Writers never contend on an allocator: a thread appends to its own open
 * chunk and takes the (robust, process-shared) alloc_lock only to change
 * chunk states, once per chunk. Every state change under that lock is a
 * single store to a chunk's state, so a holder killed mid-way leaves the
 * table consistent and the next locker simply marks the mutex consistent.
 */
#include "log.h"

#include "handle.h"
#include "rcu.h"
#include "sweeper.h"
#include "fault.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

#define GRACE_WAIT_MS 2000 /* give up waiting for readers after this */

static void alloc_lock(shmc_cache *c)
{
	int rc = pthread_mutex_lock(&c->hdr->alloc_lock);
	if (rc == EOWNERDEAD)
		pthread_mutex_consistent(&c->hdr->alloc_lock);
}

static void alloc_unlock(shmc_cache *c)
{
	pthread_mutex_unlock(&c->hdr->alloc_lock);
}

/* RETIRING -> RETIRED. Every item in the chunk was unlinked before this
 * call, so the stamp follows every unlink. */
static void chunk_stamp_retired(shmc_cache *c, uint32_t k)
{
	struct shmc__chunk *ch = &c->chunks[k];
	uatomic_set(&ch->retire_gp, shmc__rcu_retire_stamp(c));
	cmm_smp_wmb();
	uatomic_set(&ch->state, SHMC__CHUNK_RETIRED);
}

void shmc__chunk_try_retire(shmc_cache *c, struct shmc__tctx *t, uint32_t k)
{
	struct shmc__chunk *ch = &c->chunks[k];
	if (uatomic_read(&ch->state) != SHMC__CHUNK_SEALED ||
	    uatomic_read(&ch->dead) != uatomic_read(&ch->used))
		return;
	if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_SEALED, shmc__retiring_word(t->lock_id)) ==
	    SHMC__CHUNK_SEALED) {
		SHMC__FAULT_POINT("retire.claimed");
		chunk_stamp_retired(c, k);
	}
}

void shmc__chunk_retire_evicted(shmc_cache *c, uint32_t k)
{
	chunk_stamp_retired(c, k);
}

void shmc__chunk_seal(shmc_cache *c, struct shmc__tctx *t, uint32_t k)
{
	struct shmc__chunk *ch = &c->chunks[k];
	if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_OPEN, SHMC__CHUNK_SEALED) != SHMC__CHUNK_OPEN)
		return;
	SHMC__FAULT_POINT("chunk.sealed");
	/* cmpxchg is a full barrier: a concurrent last-dead writer either sees
	 * SEALED or we see its dead count. */
	if (t)
		shmc__chunk_try_retire(c, t, k);
}

void shmc__log_item_dead(shmc_cache *c, struct shmc__tctx *t, uint64_t off, uint64_t bytes)
{
	uint32_t k = shmc__chunk_of(c, off);
	struct shmc__chunk *ch = &c->chunks[k];
	uint64_t dead = uatomic_add_return(&ch->dead, bytes);
	if (uatomic_read(&ch->state) == SHMC__CHUNK_SEALED && dead == uatomic_read(&ch->used))
		shmc__chunk_try_retire(c, t, k);
}

void shmc__log_thread_done(shmc_cache *c, struct shmc__tctx *t)
{
	for (int log = 0; log < SHMC__NLOGS; log++) {
		struct shmc__open_chunk *oc = &t->open[log];
		if (!oc->chunk)
			continue;
		shmc__chunk_seal(c, t, oc->chunk - 1);
		oc->chunk = 0;
	}
}

static void chunk_take(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log, uint32_t k,
		       uint64_t now)
{
	struct shmc__chunk *ch = &c->chunks[k];
	/* Atomic stores: emptiers, the sweeper and stats read these fields of
	 * any chunk without a lock, and one that saw this chunk SEALED before
	 * it was recycled may still be reading them. */
	uatomic_set(&ch->owner, t->slot_idx + 1);
	uatomic_set(&ch->base_ms, now);
	uatomic_set(&ch->used, 0);
	uatomic_set(&ch->dead, 0);
	uatomic_set(&ch->retire_gp, 0);
	uatomic_set(&ch->expire_max, 0);
	uatomic_set(&ch->expire_min, UINT64_MAX);
	uatomic_set(&ch->log, (uint32_t)log);
	uatomic_set(&ch->open_seq, ++c->hdr->chunk_seq);
	uatomic_set(&ch->life, ch->life + 1);
	SHMC__FAULT_POINT("chunk.take");
	cmm_smp_wmb();
	uatomic_set(&ch->state, SHMC__CHUNK_OPEN);
	t->open[log] = (struct shmc__open_chunk){
		.chunk = k + 1, .base_ms = now, .expire_min = UINT64_MAX};
	c->hdr->alloc_rotor = k + 1;
}

/* Under alloc_lock: RETIRED chunks whose grace period is over become FREE.
 * *min_pending receives the smallest stamp still waiting (UINT64_MAX if
 * none). Returns how many chunks are FREE now. */
static uint32_t recycle_locked(shmc_cache *c, uint64_t *min_pending)
{
	uint32_t n = c->geo.nchunks, nfree = 0;
	uint64_t oldest = 0;
	bool oldest_known = false;
	*min_pending = UINT64_MAX;
	for (uint32_t k = 0; k < n; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		uint32_t st = uatomic_read(&ch->state);
		if (st == SHMC__CHUNK_FREE) {
			nfree++;
			continue;
		}
		if (st != SHMC__CHUNK_RETIRED)
			continue;
		if (!oldest_known) {
			oldest = shmc__rcu_oldest_reader(c);
			oldest_known = true;
		}
		cmm_smp_rmb();
		uint64_t stamp = uatomic_read(&ch->retire_gp);
		if (stamp <= oldest) {
			uatomic_set(&ch->state, SHMC__CHUNK_FREE);
			nfree++;
		} else if (stamp < *min_pending) {
			*min_pending = stamp;
		}
	}
	return nfree;
}

uint32_t shmc__log_recycle(shmc_cache *c)
{
	uint64_t min_pending;
	alloc_lock(c);
	uint32_t nfree = recycle_locked(c, &min_pending);
	alloc_unlock(c);
	return nfree;
}

/* Under alloc_lock: take a FREE chunk for log, beyond the reserve,
 * recycling RETIRED ones whose grace period is over when there is none.
 * *min_pending receives the smallest stamp still waiting; *spare, after a
 * take, how many chunks are FREE or RETIRED (free after a grace period). */
static bool chunk_find_locked(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
			      uint64_t now, uint32_t reserve, uint64_t *min_pending,
			      uint32_t *spare)
{
	uint32_t n = c->geo.nchunks;
	uint32_t rotor = uatomic_read(&c->hdr->alloc_rotor) % n;
	for (int pass = 0; pass < 2; pass++) {
		uint32_t nfree = 0, nretired = 0, first = n;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t k = (rotor + i) % n;
			uint32_t st = uatomic_read(&c->chunks[k].state);
			if (st == SHMC__CHUNK_FREE && !nfree++)
				first = k;
			nretired += st == SHMC__CHUNK_RETIRED;
		}
		if (nfree > reserve) {
			chunk_take(c, t, log, first, now);
			*spare = nfree - 1 + nretired;
			return true;
		}
		if (pass == 0 && recycle_locked(c, min_pending) <= reserve)
			return false;
	}
	return false;
}

/* Seal the thread's open chunk of log, if any. */
static void open_chunk_seal(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log)
{
	struct shmc__open_chunk *oc = &t->open[log];
	if (oc->chunk) {
		shmc__chunk_seal(c, t, oc->chunk - 1);
		oc->chunk = 0;
	}
}

static int chunk_open(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log, uint64_t now)
{
	/* Other writers may take the chunk we just freed; keep trying (evict,
	 * wait for readers) until the deadline, not for a fixed count. */
	uint64_t deadline = shmc__now_ms() + GRACE_WAIT_MS;
	uint32_t reserve = t->making_room ? 0 : SHMC__EVICTION_RESERVE;
	for (unsigned spin = 0; spin == 0 || shmc__now_ms() < deadline; spin++) {
		/* An eviction step run below may have opened a chunk of this
		 * log to move items into: use it (taking another would leave
		 * it open and unowned for ever). */
		if (t->open[log].chunk)
			return 0;
		uint64_t min_pending = UINT64_MAX;
		uint32_t spare = 0;
		alloc_lock(c);
		bool ok = chunk_find_locked(c, t, log, now, reserve, &min_pending, &spare);
		alloc_unlock(c);
		if (ok) {
			/* Running low: the sweeper makes room ahead of us; when
			 * it falls behind (or none runs) this writer empties one
			 * chunk itself, so that memory never runs out while
			 * anything can be evicted. Chunks waiting for a grace
			 * period count as room: evicting more would not make
			 * them free any sooner. */
			if (!t->making_room) {
				if (spare < shmc__free_low(c))
					shmc__sweeper_wake(c);
				if (spare < shmc__free_critical(c)) {
					shmc__evict_step(c, t);
					open_chunk_seal(c, t, SHMC__LOG_MAIN);
				}
			}
			return 0;
		}
		/* Down to the reserve with nothing waiting for a grace period:
		 * a writer makes room the way the sweeper would (its step may
		 * use the reserve; the chunk it empties then waits for a grace
		 * period like any other, which the next round waits for).
		 * Only when no step is possible, or for a step itself, is a
		 * sealed chunk evicted outright; with nothing sealed left, the
		 * reserve is better used than refused. */
		if (min_pending == UINT64_MAX) {
			if (!t->making_room) {
				bool made = shmc__evict_step(c, t);
				/* A writer keeps no main chunk open after helping,
				 * so that writers hold one open chunk each. */
				open_chunk_seal(c, t, SHMC__LOG_MAIN);
				if (made)
					continue;
			}
			if (shmc__reclaim_direct(c, t))
				continue;
			if (reserve) {
				reserve = 0;
				continue;
			}
			/* Nothing can be freed at this instant: every chunk is
			 * open or being emptied. Others' chunks are sealed when
			 * they fill, a dying process's once it is reaped (here,
			 * if the sweeper has not yet), an orphaned retirement
			 * once its claimant is seen dead: wait for that as for
			 * a grace period. An emptier does not wait: it evicts
			 * the item it could not move. */
			if (t->making_room)
				break;
			if (spin % 16 == 15)
				shmc__reap_dead_procs(c);
		}
		/* A thread in a read section would wait for itself. */
		if (t->read_depth)
			break;
		if (spin < 16)
			sched_yield();
		else
			usleep(spin < 64 ? 50 : 500);
	}
	shmc__count(t, SHMC__CTR_enospc, 1);
	return shmc__fail(c, SHMC_ENOSPC,
			  "no free log chunk: nothing left to evict%s",
			  t->read_depth ? " (or awaits readers; this thread is in a read section)"
					: " or awaits a reader's grace period");
}

int shmc__log_append_here(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
			  const void *key, size_t klen, const void *val, size_t vlen,
			  uint64_t expire_abs_ms, uint64_t *off)
{
	struct shmc__open_chunk *oc = &t->open[log];
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)klen + vlen;
	if (!oc->chunk || oc->used + bytes > c->geo.chunk_bytes)
		return SHMC_ENOSPC;
	uint64_t rel = 0;
	if (expire_abs_ms) {
		/* Never 0 (= no expiry); never beyond u32. */
		rel = expire_abs_ms > oc->base_ms ? expire_abs_ms - oc->base_ms : 1;
		if (rel > UINT32_MAX)
			return SHMC_ENOSPC;
	}
	uint32_t k = oc->chunk - 1;
	uint64_t o = ((uint64_t)k << c->geo.chunk_shift) + oc->used;
	struct shmc__item_hdr h = {.expire_rel = (uint32_t)rel,
				   .vlen = (uint32_t)vlen,
				   .klen = (uint16_t)klen,
				   .refbit = 0,
				   .kind = SHMC__ITEM_VALUE};
	unsigned char *p = c->data + o;
	memcpy(p, &h, sizeof(h));
	memcpy(p + SHMC__ITEM_HDR, key, klen);
	if (vlen)
		memcpy(p + SHMC__ITEM_HDR + klen, val, vlen);
	uint64_t expire = expire_abs_ms ? oc->base_ms + rel : UINT64_MAX;
	if (expire > oc->expire_max) {
		oc->expire_max = expire;
		uatomic_set(&c->chunks[k].expire_max, expire);
	}
	if (expire_abs_ms && expire < oc->expire_min) {
		oc->expire_min = expire;
		uatomic_set(&c->chunks[k].expire_min, expire);
	}
	oc->used += bytes;
	/* used covers the item (and expire_max its expiry) before anyone can
	 * count it dead or find it. */
	uatomic_set(&c->chunks[k].used, oc->used);
	shmc__count(t, SHMC__CTR_bytes_written, bytes);
	*off = o;
	return 0;
}

int shmc__log_append(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
		     const void *key, size_t klen, const void *val, size_t vlen,
		     uint64_t expire_abs_ms, uint64_t *off)
{
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)klen + vlen;
	if (bytes > c->geo.chunk_bytes)
		return shmc__fail(c, SHMC_ETOOBIG, "item of %llu bytes exceeds the %u-byte chunk",
				  (unsigned long long)bytes, c->geo.chunk_bytes);
	/* A fresh chunk may be filled by compaction before our item lands:
	 * then open another, a bounded number of times. */
	for (int attempt = 0;; attempt++) {
		if (shmc__log_append_here(c, t, log, key, klen, val, vlen, expire_abs_ms, off) == 0)
			return 0;
		open_chunk_seal(c, t, log);
		if (attempt > 8)
			return shmc__fail(c, SHMC_ENOSPC, "no chunk with room: memory is full of live items");
		int rc = chunk_open(c, t, log, shmc__now_ms());
		if (rc)
			return rc;
	}
}

int shmc__log_reserve(shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
		      uint64_t bytes)
{
	struct shmc__open_chunk *oc = &t->open[log];
	if (oc->chunk && oc->used + bytes <= c->geo.chunk_bytes)
		return 0;
	open_chunk_seal(c, t, log);
	bool outer = !t->making_room;
	t->making_room = true;
	int rc = chunk_open(c, t, log, shmc__now_ms());
	if (outer)
		t->making_room = false;
	return rc;
}
