/*
 * dump.c - a read-only walk over every live item, for `shmcache dump`.
 *
 * The public API has no iterator (a cache is read by key), so the dump walks
 * the index directly, slot by slot like verify.c, on a handle from
 * shmc__inspect_open(): mapped read-only, no process slot, no read section.
 * Nothing therefore holds back memory reuse while it runs, which is what
 * lets a dump of a large live segment take seconds without stalling its
 * writers; the price is that any item may be displaced, and its chunk
 * retired and handed to a writer, in the middle of being copied.
 *
 * So an item is copied first and trusted after, seqlock-style, against the
 * chunk's life (bumped by the allocator before a chunk is reused, before
 * anything is appended to it again):
 *
 *   e = slot; life = chunk.life; rmb; slot == e?  copy; rmb;  chunk.life == life && slot == e?
 *
 * The slot still holding e after life was read means the item was published,
 * whole, within that life of its chunk (a reachable item's chunk is never
 * reused); the same life after the copy means no byte of it was reused
 * during the copy. Items are immutable while published, so such a copy is
 * exactly what a reader would have got. A failed check retries the slot; a
 * slot rewritten under every attempt is skipped and counted.
 *
 * Every length and offset read from the segment is bounds-checked before
 * use, so a torn read costs a retry, never an access outside the data area.
 */
#include "dump.h"

#include "alloc.h"
#include "atomic.h"
#include "handle.h"
#include "index.h"
#include "log.h"

#include <string.h>

/* Attempts per slot before it counts as unstable. A retry needs a writer to
 * replace that very slot during a copy of at most one chunk, so a few
 * attempts are plenty unless the key is rewritten nonstop. */
#define DUMP_ATTEMPTS_PER_SLOT 8

enum copy_result {
	COPY_OK = 0,
	COPY_RETRY,	/* the slot or the chunk changed: try the slot again */
	COPY_CORRUPT,	/* stable, but fails the bounds checks */
	COPY_NOT_VALUE, /* stable, but not a value item (nothing to dump) */
};

struct walk {
	shmc_cache *c;
	unsigned char *buf; /* key then value of the item being copied */
	size_t cap;
	struct shmc__dump_counts *counts;
};

static int buf_reserve(struct walk *w, size_t bytes)
{
	if (bytes <= w->cap)
		return 0;
	/* Items never exceed a chunk, so growing straight to one chunk bounds
	 * the reallocations at one. */
	size_t cap = bytes < w->c->geo.chunk_bytes ? w->c->geo.chunk_bytes : bytes;
	unsigned char *buf = shmc__zalloc(cap);
	if (!buf)
		return SHMC_ENOMEM;
	shmc__free(w->buf);
	w->buf = buf;
	w->cap = cap;
	return 0;
}

/* Copy the item of entry e, read from *slot, into w->buf and check the copy
 * (see the top of the file). Returns a copy_result or SHMC_ENOMEM. */
static int copy_item(struct walk *w, const uint64_t *slot, uint64_t e, struct shmc__item_hdr *h,
		     uint64_t *expire_abs_ms)
{
	shmc_cache *c = w->c;
	uint64_t off = shmc__entry_off(e);
	uint64_t chunk_end = (off | (c->geo.chunk_bytes - 1)) + 1;
	if (chunk_end > c->geo.data_bytes || off + SHMC__ITEM_HDR > chunk_end)
		return COPY_CORRUPT; /* e is one atomic word: this is what the slot holds */
	struct shmc__chunk *ch = &c->chunks[shmc__chunk_of(c, off)];

	uint64_t life = uatomic_read(&ch->life);
	cmm_smp_rmb();
	if (uatomic_read(slot) != e)
		return COPY_RETRY;
	cmm_smp_rmb();
	shmc__item_hdr_read(c->data + off, h);
	uint64_t base_ms = CMM_LOAD_SHARED(ch->base_ms);
	uint64_t kv_bytes = (uint64_t)h->klen + h->vlen;
	bool in_bounds = h->klen >= 1 && h->klen <= c->geo.max_key_bytes &&
			 off + SHMC__ITEM_HDR + kv_bytes <= chunk_end;
	if (in_bounds && h->kind == SHMC__ITEM_VALUE) {
		int rc = buf_reserve(w, (size_t)kv_bytes);
		if (rc)
			return rc;
		memcpy(w->buf, c->data + off + SHMC__ITEM_HDR, (size_t)kv_bytes);
	}
	cmm_smp_rmb();
	if (uatomic_read(&ch->life) != life || uatomic_read(slot) != e)
		return COPY_RETRY;

	if (!in_bounds)
		return COPY_CORRUPT;
	if (h->kind != SHMC__ITEM_VALUE)
		return COPY_NOT_VALUE;
	*expire_abs_ms = h->expire_rel ? base_ms + h->expire_rel : 0;
	return COPY_OK;
}

static int visit_slot(struct walk *w, const uint64_t *slot, shmc__dump_fn fn, void *arg)
{
	for (int attempt = 0; attempt < DUMP_ATTEMPTS_PER_SLOT; attempt++) {
		uint64_t e = uatomic_read(slot);
		if (!(e & SHMC__ENTRY_ITEM))
			return 0;
		struct shmc__item_hdr h;
		uint64_t expire_abs_ms = 0;
		int rc = copy_item(w, slot, e, &h, &expire_abs_ms);
		switch (rc) {
		case COPY_OK:
			break;
		case COPY_RETRY:
			continue;
		case COPY_CORRUPT:
			w->counts->corrupt++;
			return 0;
		case COPY_NOT_VALUE:
			return 0;
		default:
			return rc;
		}
		/* Expired items are invisible to readers; a dump shows what a
		 * reader could get. */
		uint64_t now = shmc__now_ms();
		if (expire_abs_ms && now >= expire_abs_ms) {
			w->counts->expired++;
			return 0;
		}
		uint64_t left = expire_abs_ms ? expire_abs_ms - now : 0;
		struct shmc__dump_item item = {
			.key = w->buf,
			.klen = h.klen,
			.value = w->buf + h.klen,
			.vlen = h.vlen,
			.ttl_left_ms = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left,
		};
		w->counts->items++;
		return fn(arg, &item);
	}
	w->counts->unstable++;
	return 0;
}

int shmc__dump_walk(shmc_cache *c, shmc__dump_fn fn, void *arg, struct shmc__dump_counts *counts)
{
	struct shmc__dump_counts ignored;
	struct walk w = {.c = c, .counts = counts ? counts : &ignored};
	memset(w.counts, 0, sizeof(*w.counts));
	int rc = 0;
	for (uint32_t b = 0; b < c->geo.nbuckets && !rc; b++)
		for (int s = 0; s < SHMC__BUCKET_SLOTS && !rc; s++)
			rc = visit_slot(&w, &c->buckets[b].slot[s], fn, arg);
	shmc__free(w.buf);
	return rc;
}
