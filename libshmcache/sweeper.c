/*
 * sweeper.c - making room, and the reaper pass.
 *
 * Memory comes back one chunk at a time: a chunk is emptied (each item the
 * index still points at is moved to the emptier's open chunk or unlinked),
 * retired, and reused after a grace period.
 *
 * Compaction: a writer that opens a chunk while free chunks run low empties
 * the sealed chunk with the fewest live bytes into it (greedy cleaning).
 * Direct reclaim: a writer that finds no free chunk at all has no room to
 * move anything, so it unlinks (evicts) the emptiest chunk's items. A
 * retirement whose claimant died is taken over by the next writer short of
 * memory, or by a reaper pass.
 */
#include "sweeper.h"

#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "log.h"
#include "rcu.h"
#include "fault.h"

#include <stdlib.h>
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

/* What happens to the reachable items of a chunk being emptied. */
enum empty_policy {
	EVICT_ALL,       /* no room to move anything: unlink every item */
	KEEP_ALL,        /* move every item that fits in the caller's chunk */
	KEEP_REFERENCED, /* CLOCK: move items read since they were written */
};

/* Move or unlink the item at data offset off (in chunk k, claimed by the
 * caller) if the index still points at it; expired items are unlinked.
 * Moving appends a copy (reference bit clear) to the caller's open chunk
 * and re-points the slot, under the key's bucket lock and inside a read
 * section (keys compared on the way may belong to recycled chunks).
 * Returns the item's size, or 0 when the walk must stop (corrupt chain). */
static uint64_t empty_item(shmc_cache *c, struct shmc__tctx *t, uint32_t k, uint64_t off,
			   uint64_t end, enum empty_policy policy)
{
	struct shmc__item_hdr h;
	if (off + SHMC__ITEM_HDR > end)
		return 0;
	shmc__item_hdr_read(c->data + off, &h);
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
	if (h.klen == 0 || off + bytes > end)
		return 0;
	const unsigned char *key = c->data + off + SHMC__ITEM_HDR;
	struct shmc__keyref kr;
	shmc__keyref_init(c, &kr, key, h.klen);
	struct shmc__found f;
	enum { GONE, MOVED, EVICTED, EXPIRED } fate = GONE;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, kr.bucket);
	if (shmc__index_find(c, &kr, &f) == 0 && shmc__entry_off(f.entry) == off) {
		uint64_t expire = shmc__item_expiry(&c->chunks[k], &h), to;
		bool keep = policy == KEEP_ALL || (policy == KEEP_REFERENCED && h.refbit);
		if (expire && shmc__now_ms() >= expire)
			fate = EXPIRED;
		else if (keep &&
			 shmc__log_append_here(c, t, key, h.klen, key + h.klen, h.vlen, expire, &to) == 0)
			fate = MOVED;
		else
			fate = EVICTED;
		if (fate == MOVED)
			shmc__index_replace_locked(c, &kr, &f, to);
		else
			shmc__index_remove_locked(c, &kr, &f);
	}
	shmc__bucket_unlock(c, t, kr.bucket);
	shmc__rcu_read_exit(c, t);
	if (fate == EVICTED || fate == EXPIRED) {
		shmc__count(t, fate == EVICTED ? SHMC__CTR_evictions : SHMC__CTR_expirations, 1);
		shmc__count(t, SHMC__CTR_items_removed, 1);
	}
	return bytes;
}

/* Empty chunk k (claimed RETIRING by the caller) and retire it. Nothing
 * reachable is left in it afterwards, so it is retired whatever its dead
 * count says (a writer killed between unlinking and counting leaves it
 * short); it is reused only after a grace period, like any chunk. */
static void empty_chunk(shmc_cache *c, struct shmc__tctx *t, uint32_t k, enum empty_policy policy)
{
	uint64_t base = (uint64_t)k << c->geo.chunk_shift;
	uint64_t used = uatomic_read(&c->chunks[k].used);
	if (used > c->geo.chunk_bytes)
		used = c->geo.chunk_bytes;
	uint64_t end = base + used;
	for (uint64_t off = base; off < end;) {
		uint64_t bytes = empty_item(c, t, k, off, end, policy);
		if (!bytes)
			break;
		off += bytes;
		SHMC__FAULT_POINT("evict.item");
	}
	shmc__chunk_retire_evicted(c, k);
}

void shmc__compact_into_open(shmc_cache *c, struct shmc__tctx *t)
{
	uint32_t k = pick_victim(c);
	if (k == UINT32_MAX)
		return;
	struct shmc__chunk *ch = &c->chunks[k];
	if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_SEALED, shmc__retiring_word(t->lock_id)) !=
	    SHMC__CHUNK_SEALED)
		return;
	SHMC__FAULT_POINT("compact.claimed");
	/* Mostly garbage: keep everything. Mostly live: let CLOCK choose. */
	uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
	empty_chunk(c, t, k, dead * 2 >= used ? KEEP_ALL : KEEP_REFERENCED);
}

/* Take over a retirement whose claimant died mid-way (an evictor or
 * compactor killed during its walk): walking the chunk again is harmless
 * and covers every point it could have died at. */
static bool take_over_orphan(shmc_cache *c, struct shmc__tctx *t, uint32_t k)
{
	struct shmc__chunk *ch = &c->chunks[k];
	uint32_t w = uatomic_read(&ch->state);
	if (shmc__chunk_state(w) != SHMC__CHUNK_RETIRING || !shmc__claimant_gone(c, w))
		return false;
	if (uatomic_cmpxchg(&ch->state, w, shmc__retiring_word(t->lock_id)) != w)
		return false;
	empty_chunk(c, t, k, KEEP_REFERENCED);
	return true;
}

static uint32_t finish_retirements(shmc_cache *c, struct shmc__tctx *t)
{
	uint32_t finished = 0;
	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		finished += take_over_orphan(c, t, k);
	return finished;
}

bool shmc__reclaim_direct(shmc_cache *c, struct shmc__tctx *t)
{
	/* Orphaned retirements first: they hold memory nobody else frees. */
	if (finish_retirements(c, t))
		return true;
	for (int tries = 0; tries < 4; tries++) {
		uint32_t k = pick_victim(c);
		if (k == UINT32_MAX)
			return false;
		struct shmc__chunk *ch = &c->chunks[k];
		/* Claim it: only one evictor per chunk. */
		if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_SEALED, shmc__retiring_word(t->lock_id)) !=
		    SHMC__CHUNK_SEALED)
			continue;
		SHMC__FAULT_POINT("evict.claimed");
		empty_chunk(c, t, k, EVICT_ALL);
		return true;
	}
	return false;
}

static uint32_t release_dead_locks(shmc_cache *c)
{
	uint32_t released = 0;
	for (uint32_t b = 0; b < c->geo.nbuckets; b++) {
		uint32_t *lock = &c->buckets[b].lock;
		uint32_t w = uatomic_read(lock);
		if (w && shmc__lock_holder_dead(c, w, false) && uatomic_cmpxchg(lock, w, 0) == w)
			released++;
	}
	return released;
}


/* Bytes reachable from the index, per chunk. Inside a read section: the
 * headers read belong to items other writers may displace meanwhile. */
static void reachable_per_chunk(shmc_cache *c, struct shmc__tctx *t, uint64_t *reach)
{
	shmc__rcu_read_enter(c, t);
	for (uint32_t b = 0; b < c->geo.nbuckets; b++) {
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++) {
			uint64_t e = uatomic_read(&c->buckets[b].slot[s]);
			uint64_t off = shmc__entry_off(e);
			if (!(e & SHMC__ENTRY_ITEM) || off + SHMC__ITEM_HDR > c->geo.data_bytes)
				continue;
			struct shmc__item_hdr h;
			shmc__item_hdr_read(c->data + off, &h);
			reach[shmc__chunk_of(c, off)] += SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
		}
	}
	shmc__rcu_read_exit(c, t);
}

/* Count as dead what no index entry reaches in chunks that were sealed
 * throughout. Writers count a displaced item dead inside the read section
 * in which they displaced it, so after one grace period every displacement
 * the walk saw has been counted; what is still missing belongs to a writer
 * that died. Displacements after the walk only make the estimate smaller,
 * so the audit never counts a byte twice. */
static uint64_t audit_sealed(shmc_cache *c, struct shmc__tctx *t)
{
	uint32_t n = c->geo.nchunks;
	uint64_t *reach = calloc(n, sizeof(*reach));
	uint64_t *life = calloc(n, sizeof(*life));
	if (!reach || !life) {
		free(reach);
		free(life);
		return 0;
	}
	for (uint32_t k = 0; k < n; k++)
		life[k] = uatomic_read(&c->chunks[k].state) == SHMC__CHUNK_SEALED
				  ? uatomic_read(&c->chunks[k].life)
				  : 0;
	reachable_per_chunk(c, t, reach);
	uint64_t recovered = 0;
	if (shmc__rcu_wait(c, shmc__rcu_retire_stamp(c), 2000)) {
		/* In a read section, so a chunk seen SEALED with the same life
		 * cannot be retired and handed out again before the add. */
		shmc__rcu_read_enter(c, t);
		for (uint32_t k = 0; k < n; k++) {
			struct shmc__chunk *ch = &c->chunks[k];
			if (!life[k] || uatomic_read(&ch->state) != SHMC__CHUNK_SEALED ||
			    uatomic_read(&ch->life) != life[k])
				continue;
			uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
			if (dead + reach[k] >= used) {
				/* All dead already (a reaper sealed it without
				 * trying): retire it now. */
				shmc__chunk_try_retire(c, t, k);
				continue;
			}
			uint64_t missing = used - dead - reach[k];
			uatomic_add(&ch->dead, missing);
			recovered += missing;
			shmc__chunk_try_retire(c, t, k);
		}
		shmc__rcu_read_exit(c, t);
	}
	free(reach);
	free(life);
	return recovered;
}

int shmc__reap_pass(shmc_cache *c, struct shmc__tctx *t, struct shmc__reap_result *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (uatomic_read(&c->procs[p].state) != SHMC__PROC_FREE &&
		    shmc__proc_reap_if_dead(c, p))
			out->procs_reaped++;
	out->locks_released = release_dead_locks(c);
	out->retirements_finished = finish_retirements(c, t);
	out->leaked_bytes_recovered = audit_sealed(c, t);
	return 0;
}
