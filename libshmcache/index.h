/*
 * index.h - the bucket hash table.
 *
 * A key hashes (XXH3-64) to a primary bucket; it lives in one slot of that
 * bucket or, when the primary is full, of one of the next primary.probe
 * buckets (linear probing at bucket granularity, at most SHMC__MAX_PROBE:
 * long enough that the index, sized for SHMC__INDEX_LOAD, fills after the
 * data area). A slot is one 64-bit word: tag (16 bits of the hash) |
 * location. Readers scan the slots without any lock; a writer changes a
 * slot with one atomic exchange or CAS, so a reader sees the old or the new
 * item, never a mix.
 *
 * Who writes what:
 *  - bucket.lock: CAS by writers of keys whose PRIMARY bucket this is. It
 *    records the holder as (thread slot generation << 16 | thread slot + 1).
 *  - a slot holding key K: exchanged only by the holder of primary(K)'s lock.
 *  - an empty slot: claimed by CAS(0 -> entry) by any writer, so writers of
 *    two primaries never claim the same slot.
 *  - bucket.probe: how many buckets after this one may hold keys of this
 *    primary. Written under the lock; only ever raised, and raised BEFORE
 *    such a key is published, so readers never stop short of a key (a
 *    crash or a later delete leaves it too high: readers look further).
 */
#ifndef SHMC_INDEX_H
#define SHMC_INDEX_H

#include <stdint.h>

#define SHMC__BUCKET_SLOTS 7
#define SHMC__MAX_PROBE 256  /* buckets after the primary a key may use */
#define SHMC__INDEX_LOAD 0.88 /* target slot load when sizing the index */

#define SHMC__ENTRY_TAG_SHIFT 48
#define SHMC__ENTRY_ITEM (1ull << 47)          /* slot holds an item */
#define SHMC__ENTRY_OFF_MASK ((1ull << 46) - 1) /* byte offset in data area */

struct shmc__bucket {
	uint32_t lock;     /* 0 free, else holder id (see above) */
	uint16_t probe;    /* buckets after this one holding its keys (lock) */
	uint16_t ghost;    /* fingerprint of a key of this primary recently
			    * evicted from the probationary log (see log.h);
			    * a hint, written without the lock */
	uint64_t slot[SHMC__BUCKET_SLOTS];
};
_Static_assert(sizeof(struct shmc__bucket) == 64, "one cache line");

static inline uint64_t shmc__entry_make(uint16_t tag, uint64_t off)
{
	return ((uint64_t)tag << SHMC__ENTRY_TAG_SHIFT) | SHMC__ENTRY_ITEM | off;
}
static inline uint16_t shmc__entry_tag(uint64_t e)
{
	return (uint16_t)(e >> SHMC__ENTRY_TAG_SHIFT);
}
static inline uint64_t shmc__entry_off(uint64_t e)
{
	return e & SHMC__ENTRY_OFF_MASK;
}

/* (declarations follow) */

#include "log.h"

#include <stdbool.h>
#include <stddef.h>

struct shmc_cache;
struct shmc__tctx;

/* Where a key hashes to. */
struct shmc__keyref {
	const void *key;
	size_t klen;
	uint64_t hash;
	uint32_t bucket; /* primary bucket */
	uint16_t tag;
};

/* shmc__keyref_init(c, k, key, klen): in index_read.h, inline (it is on
 * every operation's path). */

/* The key reference of a key known only by its hash (key NULL): enough to
 * find its bucket and entries, not to compare keys. */
void shmc__keyref_from_hash(const struct shmc_cache *c, struct shmc__keyref *k, uint64_t hash);

/* A key's ghost fingerprint: hash bits that neither the bucket (low 32)
 * nor the tag (top 16) uses, never 0 (= no ghost). */
static inline uint16_t shmc__ghost_fp(const struct shmc__keyref *k)
{
	return (uint16_t)(k->hash >> 32) | 1u;
}

/* A located item. */
struct shmc__found {
	uint64_t *slot;   /* the index slot holding it */
	uint64_t entry;   /* the slot's value when read */
	unsigned char *item;
	struct shmc__item_hdr hdr;
	uint64_t expire_abs_ms; /* 0 = never */
};


/* Writer side, with the key's primary bucket locked:
 * publish a new item for a key known to be absent (claims a free slot in
 * the primary bucket or a neighbour) - 0 or SHMC_ENOSPC;
 * replace the item in f->slot - returns the previous entry;
 * remove the item in f->slot - returns the previous entry. */
/* Finding a key: shmc__index_find() in index_read.h (inline: it is the
 * whole of a GET). */

int shmc__index_insert_locked(struct shmc_cache *c, const struct shmc__keyref *k, uint64_t off);
/* The same for any entry word (a fill lease's, see lease.h). */
int shmc__index_insert_entry_locked(struct shmc_cache *c, const struct shmc__keyref *k,
				    uint64_t e);
/* The first slot in k's probe sequence (its primary bucket and the
 * neighbours its probe count covers) whose entry match accepts, or NULL. */
typedef bool (*shmc__slot_match)(struct shmc_cache *c, const struct shmc__keyref *k, uint64_t e,
				 const void *arg);
uint64_t *shmc__index_probe_locked(struct shmc_cache *c, const struct shmc__keyref *k,
				   shmc__slot_match match, const void *arg);

/* The slot in k's probe sequence holding exactly entry e, or NULL. Finds an
 * item by where it is, not by its key: no key is compared, so no other
 * entry in the way can hide it. */
uint64_t *shmc__index_slot_of_locked(struct shmc_cache *c, const struct shmc__keyref *k,
				     uint64_t e);
uint64_t shmc__index_replace_locked(struct shmc_cache *c, const struct shmc__keyref *k,
				    struct shmc__found *f, uint64_t off);
uint64_t shmc__index_remove_locked(struct shmc_cache *c, const struct shmc__keyref *k,
				   struct shmc__found *f);

void shmc__bucket_lock(struct shmc_cache *c, struct shmc__tctx *t, uint32_t b);
void shmc__bucket_unlock(struct shmc_cache *c, struct shmc__tctx *t, uint32_t b);

#endif
