/*
 * index_read.h - the read side of the index, inline: a GET is this code.
 */
#ifndef SHMC_INDEX_READ_H
#define SHMC_INDEX_READ_H

#include "handle.h"
#include "index.h"
#include "log.h"

#include <stddef.h>
#include <string.h>

/* Inline XXH3 so that short keys take its specialised path with no call. */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* Hash key and find its primary bucket and tag. */
static inline __attribute__((always_inline)) void
shmc__keyref_init(const struct shmc_cache *c, struct shmc__keyref *k, const void *key, size_t klen)
{
	k->key = key;
	k->klen = klen;
	k->hash = XXH3_64bits(key, klen);
	k->bucket = (uint32_t)(((k->hash & 0xffffffffu) * (uint64_t)c->geo.nbuckets) >> 32);
	k->tag = (uint16_t)(k->hash >> SHMC__ENTRY_TAG_SHIFT);
	/* The bucket line is the first miss of every operation: start it now,
	 * to overlap with whatever the caller does before the lookup. */
	__builtin_prefetch(&c->buckets[k->bucket]);
}

static inline uint32_t shmc__neighbour(const struct shmc_cache *c, uint32_t b, uint32_t n)
{
	b += n;
	return b >= c->geo.nbuckets ? b - c->geo.nbuckets : b;
}

/* Short keys are the common case: compare them inline, with two possibly
 * overlapping loads per side instead of a call to memcmp. */
static inline __attribute__((always_inline)) bool shmc__key_equal(const unsigned char *a,
							      const unsigned char *b, size_t n)
{
	if (n >= 8 && n <= 16) {
		uint64_t a0, b0, a1, b1;
		memcpy(&a0, a, 8);
		memcpy(&b0, b, 8);
		memcpy(&a1, a + n - 8, 8);
		memcpy(&b1, b + n - 8, 8);
		return ((a0 ^ b0) | (a1 ^ b1)) == 0;
	}
	if (n >= 4 && n < 8) {
		uint32_t a0, b0, a1, b1;
		memcpy(&a0, a, 4);
		memcpy(&b0, b, 4);
		memcpy(&a1, a + n - 4, 4);
		memcpy(&b1, b + n - 4, 4);
		return ((a0 ^ b0) | (a1 ^ b1)) == 0;
	}
	return memcmp(a, b, n) == 0;
}

/* Bounds-check the entry and match the key. 1 = match, 0 = other key,
 * <0 = corrupt. */
static inline __attribute__((always_inline)) int shmc__item_match(struct shmc_cache *c, const struct shmc__keyref *k, uint64_t e,
			     struct shmc__found *f)
{
	uint64_t off = shmc__entry_off(e);
	uint64_t chunk_end = (off | (c->geo.chunk_bytes - 1)) + 1;
	if (chunk_end > c->geo.data_bytes || off + SHMC__ITEM_HDR > chunk_end)
		return SHMC_ECORRUPT;
	unsigned char *p = c->data + off;
	/* Field by field, cheapest rejection first; the rest only on a match.
	 * (Scalar loads keep the header out of memory on the hot path.) */
	uint16_t klen;
	uint32_t vlen, expire_rel;
	memcpy(&klen, p + offsetof(struct shmc__item_hdr, klen), sizeof(klen));
	if (klen != k->klen)
		return 0;
	memcpy(&vlen, p + offsetof(struct shmc__item_hdr, vlen), sizeof(vlen));
	if (off + SHMC__ITEM_HDR + klen + (uint64_t)vlen > chunk_end)
		return SHMC_ECORRUPT;
	if (!shmc__key_equal(p + SHMC__ITEM_HDR, k->key, k->klen))
		return 0;
	memcpy(&expire_rel, p + offsetof(struct shmc__item_hdr, expire_rel), sizeof(expire_rel));
	f->entry = e;
	f->item = p;
	f->hdr.klen = klen;
	f->hdr.vlen = vlen;
	f->hdr.expire_rel = expire_rel;
	f->hdr.refbit = CMM_LOAD_SHARED(*(const uint8_t *)(p + offsetof(struct shmc__item_hdr, refbit)));
	f->hdr.kind = p[offsetof(struct shmc__item_hdr, kind)];
	f->expire_abs_ms = shmc__item_expiry(&c->chunks[off >> c->geo.chunk_shift], &f->hdr);
	return 1;
}

static inline __attribute__((always_inline)) int shmc__scan_bucket(struct shmc_cache *c, const struct shmc__keyref *k,
			      struct shmc__bucket *b, struct shmc__found *f)
{
	/* One compare per slot: tag and "holds an item" together. */
	const uint64_t mask = ~(uint64_t)0 << SHMC__ENTRY_TAG_SHIFT | SHMC__ENTRY_ITEM;
	const uint64_t want = (uint64_t)k->tag << SHMC__ENTRY_TAG_SHIFT | SHMC__ENTRY_ITEM;
	for (int s = 0; s < SHMC__BUCKET_SLOTS; s++) {
		uint64_t e = CMM_LOAD_SHARED(b->slot[s]);
		if ((e & mask) != want)
			continue;
		int m = shmc__item_match(c, k, e, f);
		if (m > 0) {
			f->slot = &b->slot[s];
			return 0;
		}
		if (m < 0)
			return m;
	}
	return SHMC_ENOTFOUND;
}

/* Find key. Call inside a read section (or under the key's bucket lock and
 * a read section). Returns 0, SHMC_ENOTFOUND or SHMC_ECORRUPT (an entry
 * points outside the data area). Expiry is not checked here. */
static inline __attribute__((always_inline)) int
shmc__index_find(struct shmc_cache *c, const struct shmc__keyref *k,
				   struct shmc__found *f)
{
	struct shmc__bucket *primary = &c->buckets[k->bucket];
	int rc = shmc__scan_bucket(c, k, primary, f);
	if (rc != SHMC_ENOTFOUND)
		return rc;
	uint32_t probe = CMM_LOAD_SHARED(primary->probe);
	if (probe > SHMC__MAX_PROBE)
		probe = SHMC__MAX_PROBE; /* a scribbled value costs time, not safety */
	for (uint32_t n = 1; n <= probe; n++) {
		rc = shmc__scan_bucket(c, k, &c->buckets[shmc__neighbour(c, k->bucket, n)], f);
		if (rc != SHMC_ENOTFOUND)
			return rc;
	}
	return SHMC_ENOTFOUND;
}

#endif
