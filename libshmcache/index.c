/*
 * index.c - the bucket hash table: lock-free lookup, single-word writes.
 *
 * Bucket choice is XXH3's low 32 bits mapped onto nbuckets by a multiply
 * (no power-of-two sizing, so the index is sized to the data area); the tag
 * is the top 16 bits, independent of the bucket. A reader touches the
 * primary bucket's line and the item's line(s); following buckets only when
 * the primary says some of its keys overflowed there.
 */
#include "index.h"
#include "index_read.h"

#include "handle.h"

#include <sched.h>
#include <string.h>
#include "atomic.h"
static bool claim_slot(struct shmc__bucket *b, uint64_t e)
{
	for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
		if (uatomic_read(&b->slot[s]) == 0 && uatomic_cmpxchg(&b->slot[s], 0, e) == 0)
			return true;
	return false;
}

void shmc__keyref_from_hash(const shmc_cache *c, struct shmc__keyref *k, uint64_t hash)
{
	k->key = NULL;
	k->klen = 0;
	k->hash = hash;
	k->bucket = (uint32_t)(((hash & 0xffffffffu) * (uint64_t)c->geo.nbuckets) >> 32);
	k->tag = (uint16_t)(hash >> SHMC__ENTRY_TAG_SHIFT);
}

int shmc__index_insert_locked(shmc_cache *c, const struct shmc__keyref *k, uint64_t off)
{
	return shmc__index_insert_entry_locked(c, k, shmc__entry_make(k->tag, off));
}

int shmc__index_insert_entry_locked(shmc_cache *c, const struct shmc__keyref *k, uint64_t e)
{
	struct shmc__bucket *primary = &c->buckets[k->bucket];
	for (uint32_t n = 0; n <= SHMC__MAX_PROBE && n < c->geo.nbuckets; n++) {
		struct shmc__bucket *b = &c->buckets[shmc__neighbour(c, k->bucket, n)];
		if (n > primary->probe) {
			/* Raise before the key can appear there (see index.h). */
			uatomic_set(&primary->probe, (uint16_t)n);
			cmm_smp_mb();
		}
		if (claim_slot(b, e))
			return 0;
	}
	return SHMC_ENOSPC;
}

uint64_t *shmc__index_probe_locked(shmc_cache *c, const struct shmc__keyref *k,
				   shmc__slot_match match, const void *arg)
{
	uint32_t probe = uatomic_read(&c->buckets[k->bucket].probe);
	if (probe > SHMC__MAX_PROBE)
		probe = SHMC__MAX_PROBE;
	for (uint32_t n = 0; n <= probe && n < c->geo.nbuckets; n++) {
		struct shmc__bucket *b = &c->buckets[shmc__neighbour(c, k->bucket, n)];
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
			if (match(c, k, uatomic_read(&b->slot[s]), arg))
				return &b->slot[s];
	}
	return NULL;
}

static bool same_entry(shmc_cache *c, const struct shmc__keyref *k, uint64_t e, const void *want)
{
	(void)c;
	(void)k;
	return e == *(const uint64_t *)want;
}

uint64_t *shmc__index_slot_of_locked(shmc_cache *c, const struct shmc__keyref *k, uint64_t e)
{
	return shmc__index_probe_locked(c, k, same_entry, &e);
}

uint64_t shmc__index_replace_locked(shmc_cache *c, const struct shmc__keyref *k,
				    struct shmc__found *f, uint64_t off)
{
	(void)c;
	return uatomic_xchg(f->slot, shmc__entry_make(k->tag, off));
}

uint64_t shmc__index_remove_locked(shmc_cache *c, const struct shmc__keyref *k,
				   struct shmc__found *f)
{
	(void)c;
	(void)k;
	return uatomic_xchg(f->slot, 0);
}

void shmc__bucket_lock(shmc_cache *c, struct shmc__tctx *t, uint32_t b)
{
	uint32_t *lock = &c->buckets[b].lock;
	for (unsigned spin = 0;; spin++) {
		uint32_t cur = uatomic_read(lock);
		if (cur == 0) {
			if (uatomic_cmpxchg(lock, 0, t->lock_id) == 0)
				return;
			continue;
		}
		if (spin < 128) {
			caa_cpu_relax();
			continue;
		}
		/* Held for a while: the holder may be dead. Its bucket is
		 * consistent (single-word commits), so take the lock over. */
		if ((spin & 63) == 0 && shmc__lock_holder_dead(c, cur, true) &&
		    uatomic_cmpxchg(lock, cur, t->lock_id) == cur)
			return;
		sched_yield();
	}
}

void shmc__bucket_unlock(shmc_cache *c, struct shmc__tctx *t, uint32_t b)
{
	(void)t;
	/* Release: every slot store of the critical section is visible
	 * before the lock reads free. */
	__atomic_store_n(&c->buckets[b].lock, 0, __ATOMIC_RELEASE);
}
