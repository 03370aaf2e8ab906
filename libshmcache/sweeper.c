/*
 * sweeper.c - making room.
 *
 * Direct reclaim: a writer that finds no free chunk picks the sealed chunk
 * with the most dead bytes (greedy cleaning: the least live data lost),
 * walks its items, and unlinks each one that the index still points at,
 * under that key's bucket lock and inside a read section (the keys compared
 * along the way may belong to chunks being recycled). Afterwards nothing
 * reachable lives in the chunk, so it is retired whatever its dead-byte
 * count says (a writer killed between unlinking and counting leaves that
 * count short); it is reused only after a grace period, like any chunk.
 */
#include "sweeper.h"

#include "handle.h"
#include "index.h"
#include "log.h"
#include "rcu.h"

#include <string.h>
#include "atomic.h"

static uint32_t pick_victim(shmc_cache *c)
{
	uint32_t best = UINT32_MAX;
	uint64_t best_live = UINT64_MAX;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		if (uatomic_read(&ch->state) != SHMC__CHUNK_SEALED)
			continue;
		uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
		uint64_t live = used > dead ? used - dead : 0;
		if (live < best_live) {
			best_live = live;
			best = k;
		}
	}
	return best;
}

/* Unlink the item at data offset off if the index still points at it.
 * Returns its size, or 0 when the walk must stop (corrupt item). */
static uint64_t evict_item(shmc_cache *c, struct shmc__tctx *t, uint64_t off, uint64_t end)
{
	struct shmc__item_hdr h;
	if (off + SHMC__ITEM_HDR > end)
		return 0;
	shmc__item_hdr_read(c->data + off, &h);
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
	if (h.klen == 0 || off + bytes > end)
		return 0;
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, c->data + off + SHMC__ITEM_HDR, h.klen);
	struct shmc__found f;
	bool unlinked = false;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, k.bucket);
	if (shmc__index_find(c, &k, &f) == 0 && shmc__entry_off(f.entry) == off) {
		shmc__index_remove_locked(c, &k, &f);
		unlinked = true;
	}
	shmc__bucket_unlock(c, t, k.bucket);
	shmc__rcu_read_exit(c, t);
	if (unlinked) {
		shmc__count(t, SHMC__CTR_evictions, 1);
		shmc__count(t, SHMC__CTR_items_removed, 1);
	}
	return bytes;
}

bool shmc__reclaim_direct(shmc_cache *c, struct shmc__tctx *t)
{
	for (int tries = 0; tries < 4; tries++) {
		uint32_t k = pick_victim(c);
		if (k == UINT32_MAX)
			return false;
		struct shmc__chunk *ch = &c->chunks[k];
		/* Claim it: only one evictor per chunk. */
		if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_SEALED, SHMC__CHUNK_RETIRING) !=
		    SHMC__CHUNK_SEALED)
			continue;
		uint64_t base = (uint64_t)k << c->geo.chunk_shift;
		uint64_t used = uatomic_read(&ch->used);
		if (used > c->geo.chunk_bytes)
			used = c->geo.chunk_bytes;
		uint64_t end = base + used;
		for (uint64_t off = base; off < end;) {
			uint64_t bytes = evict_item(c, t, off, end);
			if (!bytes)
				break;
			off += bytes;
		}
		shmc__chunk_retire_evicted(c, k);
		return true;
	}
	return false;
}
