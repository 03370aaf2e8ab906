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
	if (!t->chunk)
		return;
	shmc__chunk_seal(c, t, t->chunk - 1);
	t->chunk = 0;
}

static void chunk_take(shmc_cache *c, struct shmc__tctx *t, uint32_t k, uint64_t now)
{
	struct shmc__chunk *ch = &c->chunks[k];
	ch->owner = t->slot_idx + 1;
	ch->base_ms = now;
	ch->used = 0;
	ch->dead = 0;
	ch->retire_gp = 0;
	uatomic_set(&ch->life, ch->life + 1);
	SHMC__FAULT_POINT("chunk.take");
	cmm_smp_wmb();
	uatomic_set(&ch->state, SHMC__CHUNK_OPEN);
	t->chunk = k + 1;
	t->chunk_used = 0;
	t->chunk_base_ms = now;
	c->hdr->alloc_rotor = k + 1;
	if (c->hdr->free_hint)
		c->hdr->free_hint--;
}

/* Under alloc_lock: take a FREE chunk, or a RETIRED one whose grace period
 * is over. *min_pending receives the smallest stamp still waiting. */
static bool chunk_find_locked(shmc_cache *c, struct shmc__tctx *t, uint64_t now,
			      uint64_t *min_pending)
{
	uint32_t n = c->geo.nchunks;
	uint32_t rotor = uatomic_read(&c->hdr->alloc_rotor) % n;
	bool any_retired = false;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = (rotor + i) % n;
		uint32_t st = uatomic_read(&c->chunks[k].state);
		if (st == SHMC__CHUNK_FREE) {
			chunk_take(c, t, k, now);
			return true;
		}
		any_retired |= st == SHMC__CHUNK_RETIRED;
	}
	*min_pending = UINT64_MAX;
	if (!any_retired)
		return false;
	uint64_t oldest = shmc__rcu_oldest_reader(c);
	uint32_t found = n;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = (rotor + i) % n;
		struct shmc__chunk *ch = &c->chunks[k];
		if (uatomic_read(&ch->state) != SHMC__CHUNK_RETIRED)
			continue;
		cmm_smp_rmb();
		uint64_t stamp = uatomic_read(&ch->retire_gp);
		if (stamp <= oldest) {
			c->hdr->free_hint++;
			if (found == n)
				found = k;
			else
				uatomic_set(&ch->state, SHMC__CHUNK_FREE);
		} else if (stamp < *min_pending) {
			*min_pending = stamp;
		}
	}
	if (found == n)
		return false;
	chunk_take(c, t, found, now);
	return true;
}

static uint32_t compact_watermark(const shmc_cache *c)
{
	uint32_t w = c->geo.nchunks / 32;
	return w ? w : 1;
}

static int chunk_open(shmc_cache *c, struct shmc__tctx *t, uint64_t now)
{
	/* Other writers may take the chunk we just freed; keep trying (evict,
	 * wait for readers) until the deadline, not for a fixed count. */
	uint64_t deadline = shmc__now_ms() + GRACE_WAIT_MS;
	for (unsigned spin = 0; spin == 0 || shmc__now_ms() < deadline; spin++) {
		uint64_t min_pending;
		alloc_lock(c);
		bool ok = chunk_find_locked(c, t, now, &min_pending);
		uint32_t free_left = c->hdr->free_hint;
		alloc_unlock(c);
		if (ok) {
			/* Running low: move the live items of the emptiest sealed
			 * chunk into this new one, so that it is freed (after a
			 * grace period) before memory runs out. */
			if (free_left < compact_watermark(c))
				shmc__compact_into_open(c, t);
			return 0;
		}
		/* Nothing is waiting for a grace period: make room by evicting
		 * a sealed chunk, which then waits for one like any other. */
		if (min_pending == UINT64_MAX) {
			if (shmc__reclaim_direct(c, t))
				continue;
			break;
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

int shmc__log_append_here(shmc_cache *c, struct shmc__tctx *t, const void *key, size_t klen,
			  const void *val, size_t vlen, uint64_t expire_abs_ms, uint64_t *off)
{
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)klen + vlen;
	if (!t->chunk || t->chunk_used + bytes > c->geo.chunk_bytes)
		return SHMC_ENOSPC;
	uint64_t rel = 0;
	if (expire_abs_ms) {
		/* Never 0 (= no expiry); never beyond u32. */
		rel = expire_abs_ms > t->chunk_base_ms ? expire_abs_ms - t->chunk_base_ms : 1;
		if (rel > UINT32_MAX)
			return SHMC_ENOSPC;
	}
	uint32_t k = t->chunk - 1;
	uint64_t o = ((uint64_t)k << c->geo.chunk_shift) + t->chunk_used;
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
	t->chunk_used += bytes;
	/* used covers the item before anyone can count it dead. */
	uatomic_set(&c->chunks[k].used, t->chunk_used);
	shmc__count(t, SHMC__CTR_bytes_written, bytes);
	*off = o;
	return 0;
}

int shmc__log_append(shmc_cache *c, struct shmc__tctx *t, const void *key, size_t klen,
		     const void *val, size_t vlen, uint64_t expire_abs_ms, uint64_t *off)
{
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)klen + vlen;
	if (bytes > c->geo.chunk_bytes)
		return shmc__fail(c, SHMC_ETOOBIG, "item of %llu bytes exceeds the %u-byte chunk",
				  (unsigned long long)bytes, c->geo.chunk_bytes);
	/* A fresh chunk may be filled by compaction before our item lands:
	 * then open another, a bounded number of times. */
	for (int attempt = 0;; attempt++) {
		if (shmc__log_append_here(c, t, key, klen, val, vlen, expire_abs_ms, off) == 0)
			return 0;
		shmc__log_thread_done(c, t);
		if (attempt > 8)
			return shmc__fail(c, SHMC_ENOSPC, "no chunk with room: memory is full of live items");
		int rc = chunk_open(c, t, shmc__now_ms());
		if (rc)
			return rc;
	}
}
