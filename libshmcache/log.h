/*
 * log.h - the allocator: fixed-size chunks of the data area, appended to by
 * one owner thread at a time.
 *
 * Item format (12-byte header, then key, then value; items are packed with
 * no alignment and never straddle a chunk):
 *
 *   expire_rel u32 | vlen u32 | klen u16 | refbit u8 | kind u8 | key | value
 *
 * expire_rel is milliseconds after the chunk's base_ms (0 = never), which
 * keeps the header at 12 bytes; an item whose expiry would not fit goes to
 * a fresh chunk. Everything but refbit is immutable once published.
 *
 * Chunk life: FREE -> OPEN (allocated to a thread, under alloc_lock) ->
 * SEALED (owner is done appending) -> RETIRING -> RETIRED (every byte dead,
 * retire_gp stamped) -> FREE (allocator, after a grace period).
 *
 * Two logs share the chunks, as in S3-FIFO: new items enter the small
 * probationary log; when its oldest chunk is emptied, only the items read
 * since they were written move on to the main log, the rest are evicted
 * (leaving a ghost fingerprint in their bucket, so that a key asked for
 * again soon enters main directly). A one-pass scan thus flows through the
 * small log without displacing the main log's working set. Main runs
 * CLOCK: its oldest chunk's referenced items are copied forward with the
 * bit cleared, the rest evicted. Each thread has one open chunk per log.
 */
#ifndef SHMC_LOG_H
#define SHMC_LOG_H

#include "atomic.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SHMC__ITEM_HDR 12u

/* item kinds */
enum { SHMC__ITEM_VALUE = 1, SHMC__ITEM_NEGATIVE = 2 /* a cached "absent" (fetch.c) */ };

struct shmc__item_hdr {
	uint32_t expire_rel; /* ms after chunk base_ms; 0 = no expiry */
	uint32_t vlen;
	uint16_t klen;
	uint8_t refbit;      /* CLOCK reference bit: readers set 0->1 */
	uint8_t kind;        /* SHMC__ITEM_* */
};
_Static_assert(sizeof(struct shmc__item_hdr) == SHMC__ITEM_HDR, "packed header");

/* Chunk state word: the state in the low 4 bits. A RETIRING word also names
 * its claimant (thread slot + 1 in bits 4..19, the slot's generation's low
 * 12 bits above), so a reaper can finish a retirement whose claimant died. */
enum {
	SHMC__CHUNK_FREE = 0,
	SHMC__CHUNK_OPEN = 1,
	SHMC__CHUNK_SEALED = 2,
	SHMC__CHUNK_RETIRING = 3,
	SHMC__CHUNK_RETIRED = 4,
};

/* Which log a chunk belongs to (chunk.log, set when it is opened). */
enum shmc__log_class { SHMC__LOG_SMALL = 0, SHMC__LOG_MAIN = 1, SHMC__NLOGS = 2 };

struct shmc__chunk {
	uint32_t state;     /* SHMC__CHUNK_*; see transitions above */
	uint32_t owner;     /* thread slot + 1 while OPEN (owner's identity) */
	uint64_t base_ms;   /* coarse-clock ms when opened (owner, before use) */
	uint64_t used;      /* bytes appended; owner stores after writing items */
	uint64_t retire_gp; /* gp_ctr value whose grace period frees it */
	uint64_t life;      /* +1 on every allocation: tells reuse apart */
	uint64_t open_seq;  /* header chunk_seq when opened: age order */
	/* Latest expiry of any item appended (UINT64_MAX if one never
	 * expires); stored by the owner before the item's bytes count in
	 * used, so every published item expires no later. */
	uint64_t expire_max;
	uint32_t log;       /* enum shmc__log_class */
	uint32_t reserved;
	/* On its own line: every writer that displaces an item adds here, and
	 * that must not bounce the line the owner appends through. */
	_Alignas(64) uint64_t dead; /* bytes of unlinked items; atomic add */
	/* Earliest expiry of any item appended (UINT64_MAX if none has a
	 * TTL): the sweeper walks a chunk for expired items only once this
	 * has passed. Owner stores it like expire_max; rarely lowered, so it
	 * may share the dead line. */
	uint64_t expire_min;
	uint64_t reserved2[6];
};
_Static_assert(sizeof(struct shmc__chunk) == 128, "two cache lines");



#define SHMC__CHUNK_STATE_MASK 0xfu

static inline uint32_t shmc__chunk_state(uint32_t word)
{
	return word & SHMC__CHUNK_STATE_MASK;
}

/* The RETIRING word of a claimant whose bucket-lock id is lock_id. */
static inline uint32_t shmc__retiring_word(uint32_t lock_id)
{
	return ((lock_id >> 16) & 0xfffu) << 20 | (lock_id & 0xffffu) << 4 | SHMC__CHUNK_RETIRING;
}

struct shmc_cache;
struct shmc__tctx;

/* Append an item (header, key, value) to the calling thread's open chunk,
 * opening a new chunk when it is full or cannot express expire_abs_ms
 * (absolute coarse-clock ms, 0 = never). Waits for a grace period when the
 * only reusable chunks need one, unless the thread is inside a read section.
 * The item is not reachable until the caller publishes *off in the index.
 * Returns 0, SHMC_ENOSPC or SHMC_ETOOBIG. */
int shmc__log_append(struct shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
		     const void *key, size_t klen, const void *val, size_t vlen,
		     uint64_t expire_abs_ms, uint64_t *off);

/* Make sure the thread's open chunk of log has room for an item of bytes
 * (sealing it and opening another if not), for a mover that will append
 * under a bucket lock with shmc__log_append_here. Never compacts. Returns 0
 * or SHMC_ENOSPC. */
int shmc__log_reserve(struct shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
		      uint64_t bytes);

/* Append to the thread's open chunk only: SHMC_ENOSPC if it does not fit
 * there (no allocation, no waiting; for use under a bucket lock). */
int shmc__log_append_here(struct shmc_cache *c, struct shmc__tctx *t, enum shmc__log_class log,
			  const void *key, size_t klen, const void *val, size_t vlen,
			  uint64_t expire_abs_ms, uint64_t *off);

/* Under alloc_lock: RETIRED chunks whose grace period is over become FREE.
 * Returns the number of FREE chunks. */
uint32_t shmc__log_recycle(struct shmc_cache *c);

/* The item of size bytes at data offset off is unreachable: account it dead
 * in its chunk, and retire the chunk if that was its last live byte. */
void shmc__log_item_dead(struct shmc_cache *c, struct shmc__tctx *t, uint64_t off,
			 uint64_t bytes);

/* Chunk k takes no more appends. t is the sealing thread, or NULL for a
 * reaper sealing a dead owner's chunk (it then does not try to retire it:
 * the audit or the evictor will). */
void shmc__chunk_seal(struct shmc_cache *c, struct shmc__tctx *t, uint32_t k);

/* If chunk k is SEALED with every byte dead, retire it. */
void shmc__chunk_try_retire(struct shmc_cache *c, struct shmc__tctx *t, uint32_t k);

/* RETIRING -> RETIRED for a chunk an evictor emptied (sweeper.c). */
void shmc__chunk_retire_evicted(struct shmc_cache *c, uint32_t k);

/* Seal the thread's open chunks, if any. */
void shmc__log_thread_done(struct shmc_cache *c, struct shmc__tctx *t);

/* Read an item header. refbit is the one field other threads store to
 * after publication, so it is read as a shared word on its own. */
static inline void shmc__item_hdr_read(const unsigned char *p, struct shmc__item_hdr *h)
{
	memcpy(h, p, offsetof(struct shmc__item_hdr, refbit));
	h->refbit = CMM_LOAD_SHARED(*(const uint8_t *)(p + offsetof(struct shmc__item_hdr, refbit)));
	h->kind = p[offsetof(struct shmc__item_hdr, kind)];
}

/* Absolute expiry (coarse-clock ms, 0 = never) of an item at data offset
 * off with header h. */
static inline uint64_t shmc__item_expiry(const struct shmc__chunk *ch, const struct shmc__item_hdr *h)
{
	return h->expire_rel ? ch->base_ms + h->expire_rel : 0;
}
#endif
