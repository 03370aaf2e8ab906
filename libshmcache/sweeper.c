/*
 * sweeper.c - making room, expiry, and the reaper pass.
 *
 * Memory comes back one chunk at a time: a chunk is emptied (each item the
 * index still points at is moved to the emptier's open chunk or unlinked),
 * retired, and reused after a grace period.
 *
 * One eviction step (shmc__evict_step) picks its victim in this order:
 *  1. a sealed chunk whose every item has expired: unlink them all;
 *  2. a sealed chunk at least half dead (overwritten or deleted items):
 *     move every live item (compaction; nothing is lost while memory is
 *     mostly garbage);
 *  3. the oldest chunk of the small probationary log while that log holds
 *     more than its share: read items are promoted to main, the rest
 *     evicted with a ghost left behind;
 *  4. the oldest chunk of the main log: CLOCK, read items copied forward
 *     with the bit cleared, the rest evicted.
 * The sweeper role runs steps ahead of time to keep free chunks above a
 * low watermark; a writer that finds free chunks critically low runs one
 * itself. A writer that finds no free chunk at all has no room to move
 * anything and evicts the emptiest chunk outright (shmc__reclaim_direct).
 * A retirement whose claimant died is taken over by the next writer short
 * of memory, or by a reaper pass.
 */
#include "sweeper.h"

#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "lease.h"
#include "log.h"
#include "rcu.h"
#include "fault.h"

#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

uint32_t shmc__free_low(const shmc_cache *c)
{
	uint32_t w = c->geo.nchunks / 32;
	return SHMC__EVICTION_RESERVE + (w < 2 ? 2 : w);
}

uint32_t shmc__free_critical(const shmc_cache *c)
{
	uint32_t w = c->geo.nchunks / 64;
	return SHMC__EVICTION_RESERVE + (w ? w : 1);
}

/* The probationary log's share of the chunks (S3-FIFO's 10%). */
static uint32_t small_target(const shmc_cache *c)
{
	uint32_t w = c->geo.nchunks / 10;
	return w ? w : 1;
}

static uint64_t chunk_live(const struct shmc__chunk *ch)
{
	uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
	return used > dead ? used - dead : 0;
}

/* The victim of a direct reclaim, which has no room to move anything: the
 * probationary log's oldest sealed chunk while that log is over its share
 * (its items have not proved themselves; a scan must not reach main),
 * else the sealed chunk with the fewest live bytes. UINT32_MAX if none. */
static uint32_t pick_direct_victim(shmc_cache *c)
{
	uint32_t emptiest = UINT32_MAX, oldest_small = UINT32_MAX, small_chunks = 0;
	uint64_t least_live = UINT64_MAX, oldest_seq = UINT64_MAX;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		uint32_t st = uatomic_read(&ch->state);
		bool small = uatomic_read(&ch->log) == SHMC__LOG_SMALL;
		if (st != SHMC__CHUNK_SEALED && st != SHMC__CHUNK_OPEN)
			continue;
		small_chunks += small;
		if (st != SHMC__CHUNK_SEALED)
			continue;
		uint64_t live = chunk_live(ch), seq = uatomic_read(&ch->open_seq);
		if (live < least_live) {
			least_live = live;
			emptiest = k;
		}
		if (small && seq < oldest_seq) {
			oldest_seq = seq;
			oldest_small = k;
		}
	}
	return oldest_small != UINT32_MAX && small_chunks > small_target(c) ? oldest_small
									    : emptiest;
}

/* What happens to the reachable items of a chunk being emptied. Expired
 * items are unlinked under every policy. */
enum empty_policy {
	EVICT_ALL, /* no room to move anything (or all expired): unlink all */
	KEEP_ALL,  /* compaction: move every item, keeping its CLOCK bit */
	CLOCK,     /* move items read since written (bit cleared), evict the rest */
};

/* Where a kept item of a chunk of log goes: read items of the
 * probationary log graduate to main; unread ones (kept only by
 * compaction) stay on probation. */
static enum shmc__log_class keep_dest(uint32_t log, const struct shmc__item_hdr *h)
{
	return log == SHMC__LOG_SMALL && !h->refbit ? SHMC__LOG_SMALL : SHMC__LOG_MAIN;
}

/* Move or unlink the item at data offset off (in chunk k of log, claimed
 * by the caller) if the index still points at it. Moving appends a copy to
 * the caller's open chunk of the destination log (room reserved first,
 * outside any lock) and re-points the slot, under the key's bucket lock
 * and inside a read section (keys compared on the way may belong to
 * recycled chunks). Returns the item's size, or 0 when the walk must stop
 * (corrupt chain). */
static uint64_t empty_item(shmc_cache *c, struct shmc__tctx *t, uint32_t k, uint32_t log,
			   uint64_t off, uint64_t end, enum empty_policy policy)
{
	struct shmc__item_hdr h;
	if (off + SHMC__ITEM_HDR > end)
		return 0;
	shmc__item_hdr_read(c->data + off, &h);
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
	if (h.klen == 0 || off + bytes > end)
		return 0;
	const unsigned char *key = c->data + off + SHMC__ITEM_HDR;
	uint64_t expire = shmc__item_expiry(&c->chunks[k], &h);
	uint64_t now = shmc__now_ms();
	bool is_expired = expire && now >= expire;
	bool keep = !is_expired && (policy == KEEP_ALL || (policy == CLOCK && h.refbit));
	enum shmc__log_class dest = keep_dest(log, &h);
	if (keep && shmc__log_reserve(c, t, dest, bytes) != 0)
		keep = false;

	struct shmc__keyref kr;
	shmc__keyref_init(c, &kr, key, h.klen);
	struct shmc__found f = {.entry = shmc__entry_make(kr.tag, off)};
	enum { GONE, MOVED, EVICTED, EXPIRED } fate = GONE;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, kr.bucket);
	if ((f.slot = shmc__index_slot_of_locked(c, &kr, f.entry))) {
		uint64_t to;
		if (is_expired)
			fate = EXPIRED;
		else if (keep && shmc__log_append_here(c, t, dest, key, h.klen, key + h.klen, h.vlen,
						       expire, &to) == 0)
			fate = MOVED;
		else
			fate = EVICTED;
		if (fate == MOVED) {
			/* Compaction keeps the item's standing; CLOCK and
			 * promotion give it a fresh start (bit clear, as
			 * appended). Ours until published: a plain store. */
			if (policy == KEEP_ALL && h.refbit && dest == log)
				c->data[to + offsetof(struct shmc__item_hdr, refbit)] = 1;
			c->data[to + offsetof(struct shmc__item_hdr, kind)] = h.kind;
			shmc__index_replace_locked(c, &kr, &f, to);
		} else {
			shmc__index_remove_locked(c, &kr, &f);
		}
		/* Evicted from probation: remember the key, so that if it is
		 * asked for again soon it enters main directly. */
		if (fate == EVICTED && log == SHMC__LOG_SMALL)
			CMM_STORE_SHARED(c->buckets[kr.bucket].ghost, shmc__ghost_fp(&kr));
	}
	shmc__bucket_unlock(c, t, kr.bucket);
	shmc__rcu_read_exit(c, t);
	if (fate == EVICTED || fate == EXPIRED) {
		enum shmc__counter why = fate == EXPIRED	      ? SHMC__CTR_expirations
					 : policy == EVICT_ALL     ? SHMC__CTR_evicted_direct
					 : log == SHMC__LOG_SMALL ? SHMC__CTR_evicted_probation
								   : SHMC__CTR_evicted_clock;
		shmc__count(t, why, 1);
		shmc__count(t, SHMC__CTR_items_removed, 1);
	} else if (fate == MOVED && log == SHMC__LOG_SMALL && dest == SHMC__LOG_MAIN) {
		shmc__count(t, SHMC__CTR_promotions, 1);
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
	uint32_t log = uatomic_read(&c->chunks[k].log);
	if (used > c->geo.chunk_bytes)
		used = c->geo.chunk_bytes;
	uint64_t end = base + used;
	bool outer = !t->making_room;
	t->making_room = true;
	for (uint64_t off = base; off < end;) {
		uint64_t bytes = empty_item(c, t, k, log, off, end, policy);
		if (!bytes)
			break;
		off += bytes;
		SHMC__FAULT_POINT("evict.item");
	}
	if (outer)
		t->making_room = false;
	shmc__chunk_retire_evicted(c, k);
}

/* The victim of the next eviction step and what to do with it. */
struct victim {
	uint32_t chunk;
	enum empty_policy policy;
};

static bool choose_victim(shmc_cache *c, uint64_t now, struct victim *v)
{
	uint32_t garbage = UINT32_MAX, oldest[SHMC__NLOGS] = {UINT32_MAX, UINT32_MAX};
	uint64_t most_dead = 0, oldest_seq[SHMC__NLOGS] = {UINT64_MAX, UINT64_MAX};
	uint32_t small_chunks = 0;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		uint32_t st = uatomic_read(&ch->state);
		if (st != SHMC__CHUNK_SEALED && st != SHMC__CHUNK_OPEN)
			continue;
		uint32_t log = uatomic_read(&ch->log) == SHMC__LOG_SMALL ? SHMC__LOG_SMALL : SHMC__LOG_MAIN;
		small_chunks += log == SHMC__LOG_SMALL;
		if (st != SHMC__CHUNK_SEALED)
			continue;
		if (uatomic_read(&ch->expire_max) <= now) {
			*v = (struct victim){k, EVICT_ALL};
			return true;
		}
		uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
		if (dead * 2 >= used && dead > most_dead) {
			most_dead = dead;
			garbage = k;
		}
		uint64_t seq = uatomic_read(&ch->open_seq);
		if (seq < oldest_seq[log]) {
			oldest_seq[log] = seq;
			oldest[log] = k;
		}
	}
	if (garbage != UINT32_MAX)
		*v = (struct victim){garbage, KEEP_ALL};
	else if (oldest[SHMC__LOG_SMALL] != UINT32_MAX &&
		 (small_chunks > small_target(c) || oldest[SHMC__LOG_MAIN] == UINT32_MAX))
		*v = (struct victim){oldest[SHMC__LOG_SMALL], CLOCK};
	else if (oldest[SHMC__LOG_MAIN] != UINT32_MAX)
		*v = (struct victim){oldest[SHMC__LOG_MAIN], CLOCK};
	else
		return false;
	return true;
}

bool shmc__evict_step(shmc_cache *c, struct shmc__tctx *t)
{
	for (int tries = 0; tries < 4; tries++) {
		struct victim v;
		if (!choose_victim(c, shmc__now_ms(), &v))
			return false;
		struct shmc__chunk *ch = &c->chunks[v.chunk];
		/* Claim it: only one emptier per chunk. */
		if (uatomic_cmpxchg(&ch->state, SHMC__CHUNK_SEALED, shmc__retiring_word(t->lock_id)) !=
		    SHMC__CHUNK_SEALED)
			continue;
		/* The look that chose it may predate the chunk's current
		 * life: evict it whole only if it is still wholly expired. */
		if (v.policy == EVICT_ALL && uatomic_read(&ch->expire_max) > shmc__now_ms())
			v.policy = CLOCK;
		/* Fault points: a claimant killed here leaves a RETIRING chunk
		 * that the next one short of memory finishes, whatever it was
		 * doing with it (moving everything, or evicting). */
		if (v.policy == KEEP_ALL)
			SHMC__FAULT_POINT("compact.claimed");
		else
			SHMC__FAULT_POINT("evict.claimed");
		empty_chunk(c, t, v.chunk, v.policy);
		return true;
	}
	return false;
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
	empty_chunk(c, t, k, CLOCK);
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
		uint32_t k = pick_direct_victim(c);
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

/* The life of chunk ch if it is SEALED in it, else 0 (no life is 0). A
 * state read alone does not tell which life it belongs to: the chunk may
 * be retired, recycled and taken again between two loads, and a walk
 * that started before the new life's items were published would count
 * them missing. chunk_take stores life before any state of that life, so
 * an unchanged life around the state load pins the state to it. */
static uint64_t sealed_life(const struct shmc__chunk *ch)
{
	uint64_t life = uatomic_read(&ch->life);
	cmm_smp_rmb();
	uint32_t st = uatomic_read(&ch->state);
	cmm_smp_rmb();
	return st == SHMC__CHUNK_SEALED && uatomic_read(&ch->life) == life ? life : 0;
}

/* Count as dead what no index entry reaches in chunks that were sealed
 * throughout. Writers count a displaced item dead inside the read section
 * in which they displaced it, so after one grace period every displacement
 * the walk saw has been counted; what is still missing belongs to a writer
 * that died. Displacements after the walk only make the estimate smaller,
 * and the add lands only on the dead count it was computed from, so the
 * audit never counts a byte twice, even when two audits overlap. */
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
		life[k] = sealed_life(&c->chunks[k]);
	reachable_per_chunk(c, t, reach);
	uint64_t recovered = 0;
	if (shmc__rcu_wait(c, shmc__rcu_retire_stamp(c), 2000)) {
		/* In a read section, so a chunk seen SEALED with the same life
		 * cannot be retired and handed out again before the add. */
		shmc__rcu_read_enter(c, t);
		for (uint32_t k = 0; k < n; k++) {
			struct shmc__chunk *ch = &c->chunks[k];
			if (!life[k] || sealed_life(ch) != life[k])
				continue;
			uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
			if (dead + reach[k] >= used) {
				/* All dead already (a reaper sealed it without
				 * trying): retire it now. */
				shmc__chunk_try_retire(c, t, k);
				continue;
			}
			/* Only onto the dead count the estimate was made from:
			 * another audit (a second thread or process running a
			 * reap pass) may have added the same bytes since, or a
			 * writer its displacement; the next pass tries again. */
			uint64_t missing = used - dead - reach[k];
			if (uatomic_cmpxchg(&ch->dead, dead, dead + missing) != dead)
				continue;
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
	out->procs_reaped = shmc__reap_dead_procs(c);
	out->locks_released = release_dead_locks(c);
	out->retirements_finished = finish_retirements(c, t);
	out->leaked_bytes_recovered = audit_sealed(c, t);
	return 0;
}

/* ------------------------------------------------------ the sweeper role */

/* Clock refresh and watermark check period while the cache is busy: what
 * expiry may be late by. An idle cache is visited every SWEEP_MAINT_MS. */
#define SWEEP_TICK_MS 2
#define SWEEP_MAINT_MS 100 /* reaping and expiry walk period */
#define EXPIRY_SWEEP_S 10  /* the expiry walk covers every chunk this often */

/* Unlink the expired items of chunk k that the index still points at, and
 * count them dead. Inside a read section, so the chunk is not recycled
 * under the walk even if an emptier claims it meanwhile. */
static void expire_chunk_items(shmc_cache *c, struct shmc__tctx *t, uint32_t k, uint64_t now)
{
	struct shmc__chunk *ch = &c->chunks[k];
	shmc__rcu_read_enter(c, t);
	if (uatomic_read(&ch->state) != SHMC__CHUNK_SEALED) {
		shmc__rcu_read_exit(c, t);
		return;
	}
	uint64_t base = (uint64_t)k << c->geo.chunk_shift;
	uint64_t used = uatomic_read(&ch->used);
	uint64_t end = base + (used < c->geo.chunk_bytes ? used : c->geo.chunk_bytes);
	for (uint64_t off = base; off + SHMC__ITEM_HDR <= end;) {
		struct shmc__item_hdr h;
		shmc__item_hdr_read(c->data + off, &h);
		uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
		if (h.klen == 0 || off + bytes > end)
			break;
		uint64_t expire = shmc__item_expiry(ch, &h);
		if (expire && now >= expire) {
			struct shmc__keyref kr;
			bool unlinked = false;
			shmc__keyref_init(c, &kr, c->data + off + SHMC__ITEM_HDR, h.klen);
			struct shmc__found f = {.entry = shmc__entry_make(kr.tag, off)};
			shmc__bucket_lock(c, t, kr.bucket);
			if ((f.slot = shmc__index_slot_of_locked(c, &kr, f.entry))) {
				shmc__index_remove_locked(c, &kr, &f);
				unlinked = true;
			}
			shmc__bucket_unlock(c, t, kr.bucket);
			if (unlinked) {
				shmc__log_item_dead(c, t, off, bytes);
				shmc__count(t, SHMC__CTR_expirations, 1);
				shmc__count(t, SHMC__CTR_items_removed, 1);
			}
		}
		off += bytes;
	}
	shmc__rcu_read_exit(c, t);
}

/* Walk a share of the chunks that hold expired items, resuming where the
 * last holder of the role stopped. */
static void expiry_walk(shmc_cache *c, struct shmc__tctx *t, struct shmc__role *r, uint64_t now)
{
	uint32_t n = c->geo.nchunks;
	uint32_t budget = n / (EXPIRY_SWEEP_S * 1000 / SWEEP_MAINT_MS);
	if (!budget)
		budget = 1;
	uint32_t k = (uint32_t)(uatomic_read(&r->cursor) % n);
	for (uint32_t seen = 0; seen < n && budget; seen++, k = (k + 1) % n) {
		struct shmc__chunk *ch = &c->chunks[k];
		if (uatomic_read(&ch->state) != SHMC__CHUNK_SEALED ||
		    uatomic_read(&ch->expire_min) > now)
			continue;
		expire_chunk_items(c, t, k, now);
		budget--;
	}
	uatomic_set(&r->cursor, k);
}

static bool dead_procs_exist(shmc_cache *c)
{
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (uatomic_read(&c->procs[p].state) != SHMC__PROC_FREE && !shmc__proc_alive(c, p))
			return true;
	return false;
}

/* Keep FREE (or soon free) chunks at the low watermark, then let the grace
 * period turn RETIRED ones FREE, so writers rarely wait. */
static void make_room(shmc_cache *c, struct shmc__tctx *t, const bool *stop)
{
	uint32_t low = shmc__free_low(c), avail = 0;
	bool any_retired = false;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		uint32_t st = uatomic_read(&c->chunks[k].state);
		avail += st == SHMC__CHUNK_FREE || st == SHMC__CHUNK_RETIRED;
		any_retired |= st == SHMC__CHUNK_RETIRED;
	}
	/* Each step frees about one chunk (CLOCK may keep much of it; the
	 * next tick counts again). */
	for (uint32_t need = avail < low ? low - avail : 0;
	     need && !__atomic_load_n(stop, __ATOMIC_ACQUIRE) && shmc__evict_step(c, t); need--)
		any_retired = true;
	if (any_retired)
		shmc__log_recycle(c);
}

void shmc__sweeper_wake(shmc_cache *c)
{
	struct shmc__role *r = &c->hdr->role[SHMC__ROLE_SWEEPER];
	uatomic_inc(&r->wake);
	syscall(SYS_futex, &r->wake, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Operations so far, host-wide (live threads only): tells an idle cache
 * from a busy one. */
static uint64_t ops_so_far(shmc_cache *c)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < c->geo.max_threads; i++) {
		struct shmc__thread_slot *ts = &c->threads[i];
		if (uatomic_read(&ts->owner_proc))
			sum += uatomic_read(&ts->counters[SHMC__CTR_gets]) +
			       uatomic_read(&ts->counters[SHMC__CTR_sets]);
	}
	return sum;
}

void shmc__sweeper_run(shmc_cache *c, struct shmc__tctx *t, const bool *stop)
{
	struct shmc__role *r = &c->hdr->role[SHMC__ROLE_SWEEPER];
	uint64_t next_maint = 0, last_ops = UINT64_MAX;
	bool busy = true;
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
		uint32_t seen = uatomic_read(&r->wake);
		/* The precise clock, rounded down: the header clock never
		 * runs ahead of real time (writers round expiries up). */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		uatomic_set(&c->hdr->clock_ms, busy ? now : 0);
		make_room(c, t, stop);
		if (now >= next_maint) {
			if (dead_procs_exist(c)) {
				struct shmc__reap_result rr;
				shmc__reap_pass(c, t, &rr);
			}
			expiry_walk(c, t, r, now);
			shmc__lease_reap(c, t);
			uint64_t ops = ops_so_far(c);
			busy = ops != last_ops;
			last_ops = ops;
			uatomic_inc(&r->passes);
			next_maint = now + SWEEP_MAINT_MS;
		}
		/* Sleep a tick (while idle, until the next maintenance pass:
		 * readers then use the real clock), or until a writer short of
		 * chunks wakes us. Not private: the word is in shared memory. */
		long sleep_ms = busy ? SWEEP_TICK_MS : SWEEP_MAINT_MS;
		struct timespec nap = {0, sleep_ms * 1000000L};
		syscall(SYS_futex, &r->wake, FUTEX_WAIT, seen, &nap, NULL, 0);
	}
	/* Readers fall back to the real clock until the next holder runs. */
	uatomic_set(&c->hdr->clock_ms, 0);
}
