/*
 * verify.c - check every invariant of a segment, read-only.
 *
 * Checked: header and geometry (by the attach path), process and thread
 * slots (states, owners, reader words), bucket lock words, every index
 * entry (offset in the data area, item inside its chunk and below its
 * chunk's append mark, chunk in a state that may hold reachable items, tag
 * and position consistent with the key's hash and its primary's probe
 * count, no item and no key reachable twice), every chunk's item chain and
 * accounting (reachable bytes never exceed used - dead).
 *
 * The walk takes no lock and joins no read section, so on a live segment it
 * can meet an operation half-way; a finding counts only if a second full
 * pass finds it too.
 */
#include "verify.h"

#include "alloc.h"
#include "handle.h"
#include "index.h"
#include "lease.h"
#include "index_read.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reach {
	uint64_t off;  /* item offset in the data area */
	uint64_t hash;
	uint32_t bucket;
};

struct walk {
	shmc_cache *c;
	struct shmc__verify_report *r;
	bool quiet;
	uint64_t *chunk_reach; /* reachable bytes per chunk */
	struct reach *reach;
	uint64_t nreach;
};

static void note(struct walk *w, bool is_error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void note(struct walk *w, bool is_error, const char *fmt, ...)
{
	if (is_error)
		w->r->errors++;
	if (w->quiet || !w->r->emit)
		return;
	char line[512];
	int n = snprintf(line, sizeof(line), "%s: ", is_error ? "ERROR" : "note");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	w->r->emit(w->r->emit_arg, line);
}

static void check_slots(struct walk *w)
{
	shmc_cache *c = w->c;
	for (uint32_t p = 0; p < c->geo.max_procs; p++) {
		uint32_t st = uatomic_read(&c->procs[p].state);
		if (st == SHMC__PROC_FREE)
			continue;
		if (st != SHMC__PROC_ACTIVE)
			note(w, true, "proc slot %u has state %u", p, st);
		else if (shmc__proc_alive(c, p))
			w->r->procs_live++;
		else {
			w->r->procs_dead++;
			note(w, false, "proc slot %u (pid %u) is dead, not yet reaped", p,
			     c->procs[p].pid);
		}
	}
	uint64_t gp = uatomic_read(&c->hdr->gp_ctr);
	for (uint32_t t = 0; t < c->geo.max_threads; t++) {
		struct shmc__thread_slot *ts = &c->threads[t];
		uint32_t owner = uatomic_read(&ts->owner_proc);
		uint64_t ctr = uatomic_read(&ts->rcu_ctr);
		if (!owner) {
			if (ctr)
				note(w, true, "free thread slot %u has reader word %llu", t,
				     (unsigned long long)ctr);
			continue;
		}
		if (owner - 1 >= c->geo.max_procs)
			note(w, true, "thread slot %u names proc %u of %u", t, owner - 1,
			     c->geo.max_procs);
		else if (uatomic_read(&c->procs[owner - 1].state) != SHMC__PROC_ACTIVE)
			note(w, true, "thread slot %u belongs to free proc slot %u", t, owner - 1);
		else if (shmc__proc_alive(c, owner - 1))
			w->r->threads_live++;
		if (ctr > gp)
			note(w, true, "thread slot %u reader word %llu is ahead of the epoch %llu", t,
			     (unsigned long long)ctr, (unsigned long long)gp);
	}
}

static void check_chunks(struct walk *w)
{
	shmc_cache *c = w->c;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		uint32_t st = uatomic_read(&ch->state);
		uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
		switch (shmc__chunk_state(st)) {
		case SHMC__CHUNK_FREE:
			w->r->chunks_free++;
			continue;
		case SHMC__CHUNK_RETIRING:
			w->r->chunks_retiring++;
			continue;
		case SHMC__CHUNK_RETIRED:
			w->r->chunks_retired++;
			continue;
		case SHMC__CHUNK_OPEN:
			w->r->chunks_open++;
			break;
		case SHMC__CHUNK_SEALED:
			w->r->chunks_sealed++;
			break;
		default:
			note(w, true, "chunk %u has state %u", k, st);
			continue;
		}
		if (used > c->geo.chunk_bytes) {
			note(w, true, "chunk %u used %llu exceeds the chunk size", k,
			     (unsigned long long)used);
			continue;
		}
		if (dead > used)
			note(w, true, "chunk %u counts %llu dead bytes of %llu used", k,
			     (unsigned long long)dead, (unsigned long long)used);
		/* The item chain must parse exactly up to used. */
		uint64_t base = (uint64_t)k << c->geo.chunk_shift, pos = 0;
		while (pos < used) {
			struct shmc__item_hdr h;
			if (pos + SHMC__ITEM_HDR > used)
				break;
			shmc__item_hdr_read(c->data + base + pos, &h);
			uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
			if (h.klen == 0 || pos + bytes > used)
				break;
			pos += bytes;
		}
		if (pos != used)
			note(w, true, "chunk %u item chain breaks at byte %llu of %llu", k,
			     (unsigned long long)pos, (unsigned long long)used);
		uint64_t reach = w->chunk_reach[k];
		uint64_t live = used - (dead < used ? dead : used);
		if (reach > live)
			note(w, true, "chunk %u: %llu reachable bytes but only %llu counted live", k,
			     (unsigned long long)reach, (unsigned long long)live);
		else if (st == SHMC__CHUNK_SEALED && live > reach)
			w->r->bytes_leaked += live - reach;
	}
}

static void check_entry(struct walk *w, uint32_t b, int s, uint64_t e)
{
	shmc_cache *c = w->c;
	if (!(e & SHMC__ENTRY_ITEM)) {
		/* A fill lease's entry: it must name a lease record for a key
		 * with this tag. (A fill may finish while we look: a record
		 * no longer FILLING is not an error.) */
		uint32_t idx = shmc__lease_index(e);
		const struct shmc__lease *l = idx < c->geo.nleases ? &c->leases[idx] : NULL;
		if (!l || (uint16_t)(uatomic_read(&l->key_hash) >> SHMC__ENTRY_TAG_SHIFT) !=
				  shmc__entry_tag(e)) {
			if (!l || uatomic_read(&l->state) == SHMC__LEASE_FILLING)
				note(w, true, "bucket %u slot %d: entry %016llx is neither an item "
					      "nor a fill lease", b, s, (unsigned long long)e);
		}
		return;
	}
	uint64_t off = shmc__entry_off(e);
	if (off + SHMC__ITEM_HDR > c->geo.data_bytes) {
		note(w, true, "bucket %u slot %d: offset %llu outside the data area", b, s,
		     (unsigned long long)off);
		return;
	}
	uint32_t k = shmc__chunk_of(c, off);
	struct shmc__chunk *ch = &c->chunks[k];
	uint32_t st = uatomic_read(&ch->state);
	uint64_t in_chunk = off & (c->geo.chunk_bytes - 1);
	struct shmc__item_hdr h;
	shmc__item_hdr_read(c->data + off, &h);
	uint64_t bytes = SHMC__ITEM_HDR + (uint64_t)h.klen + h.vlen;
	if (st == SHMC__CHUNK_FREE || st == SHMC__CHUNK_RETIRED) {
		note(w, true, "bucket %u slot %d: item in chunk %u which is %s", b, s, k,
		     st == SHMC__CHUNK_FREE ? "free" : "retired");
		return;
	}
	if (h.klen == 0 || in_chunk + bytes > uatomic_read(&ch->used)) {
		note(w, true, "bucket %u slot %d: item at %llu (klen %u vlen %u) beyond chunk %u's used mark",
		     b, s, (unsigned long long)off, h.klen, h.vlen, k);
		return;
	}
	struct shmc__keyref kr;
	shmc__keyref_init(c, &kr, c->data + off + SHMC__ITEM_HDR, h.klen);
	if (kr.tag != shmc__entry_tag(e))
		note(w, true, "bucket %u slot %d: tag %04x, key hashes to tag %04x", b, s,
		     shmc__entry_tag(e), kr.tag);
	uint32_t dist = b >= kr.bucket ? b - kr.bucket : b + c->geo.nbuckets - kr.bucket;
	uint32_t probe = uatomic_read(&c->buckets[kr.bucket].probe);
	if (dist > probe)
		note(w, true, "bucket %u slot %d: key of primary bucket %u lies %u buckets on, probe is %u",
		     b, s, kr.bucket, dist, probe);
	w->chunk_reach[k] += bytes;
	w->r->items_reachable++;
	w->r->bytes_reachable += bytes;
	w->reach[w->nreach++] = (struct reach){.off = off, .hash = kr.hash, .bucket = b};
}

static int by_off(const void *a, const void *b)
{
	const struct reach *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int by_hash(const void *a, const void *b)
{
	const struct reach *x = a, *y = b;
	return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static void check_duplicates(struct walk *w)
{
	shmc_cache *c = w->c;
	qsort(w->reach, w->nreach, sizeof(*w->reach), by_off);
	for (uint64_t i = 1; i < w->nreach; i++)
		if (w->reach[i].off == w->reach[i - 1].off)
			note(w, true, "item at %llu reachable from buckets %u and %u",
			     (unsigned long long)w->reach[i].off, w->reach[i - 1].bucket,
			     w->reach[i].bucket);
	qsort(w->reach, w->nreach, sizeof(*w->reach), by_hash);
	for (uint64_t i = 1; i < w->nreach; i++) {
		struct reach *x = &w->reach[i - 1], *y = &w->reach[i];
		if (x->hash != y->hash || x->off == y->off)
			continue;
		struct shmc__item_hdr hx, hy;
		shmc__item_hdr_read(c->data + x->off, &hx);
		shmc__item_hdr_read(c->data + y->off, &hy);
		if (hx.klen == hy.klen &&
		    memcmp(c->data + x->off + SHMC__ITEM_HDR, c->data + y->off + SHMC__ITEM_HDR, hx.klen) == 0)
			note(w, true, "one key reachable twice: buckets %u and %u", x->bucket, y->bucket);
	}
}

static void check_index(struct walk *w)
{
	shmc_cache *c = w->c;
	for (uint32_t b = 0; b < c->geo.nbuckets; b++) {
		struct shmc__bucket *bk = &c->buckets[b];
		uint32_t lock = uatomic_read(&bk->lock);
		if (lock) {
			uint32_t slot = (lock & 0xffffu) - 1;
			if (slot >= c->geo.max_threads)
				note(w, true, "bucket %u lock word %08x names no thread slot", b, lock);
			else if (shmc__lock_holder_dead(c, lock, false)) {
				w->r->locks_held_by_dead++;
				note(w, false, "bucket %u locked by a dead or departed thread (slot %u)", b, slot);
			}
		}
		if (uatomic_read(&bk->probe) > SHMC__MAX_PROBE)
			note(w, true, "bucket %u probe %u exceeds %d", b, bk->probe, SHMC__MAX_PROBE);
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++) {
			uint64_t e = uatomic_read(&bk->slot[s]);
			if (e)
				check_entry(w, b, s, e);
		}
	}
}

static int verify_pass(shmc_cache *c, struct shmc__verify_report *r, bool quiet)
{
	struct walk w = {.c = c, .r = r, .quiet = quiet};
	memset(r, 0, offsetof(struct shmc__verify_report, emit));
	uint64_t slots = (uint64_t)c->geo.nbuckets * SHMC__BUCKET_SLOTS;
	w.chunk_reach = calloc(c->geo.nchunks, sizeof(*w.chunk_reach));
	w.reach = malloc(slots * sizeof(*w.reach));
	if (!w.chunk_reach || !w.reach) {
		free(w.chunk_reach);
		free(w.reach);
		return SHMC_ENOMEM;
	}
	check_slots(&w);
	check_index(&w);
	check_duplicates(&w);
	check_chunks(&w);
	free(w.chunk_reach);
	free(w.reach);
	return 0;
}

int shmc__verify(shmc_cache *c, struct shmc__verify_report *r)
{
	/* A quiet first pass; only if it finds errors, a second one that
	 * reports what persists. */
	int rc = verify_pass(c, r, true);
	if (rc || !r->errors) {
		if (!rc && r->emit) /* repeat the notes of a clean pass */
			rc = verify_pass(c, r, false);
		return rc;
	}
	return verify_pass(c, r, false);
}

int shmc__inspect_open(const char *name, shmc_cache **out)
{
	shmc_cache *c = shmc__zalloc(sizeof(*c));
	if (!c)
		return SHMC_ENOMEM;
	c->fd = -1;
	c->proc_idx = UINT32_MAX;
	c->flags = SHMC_RDONLY | SHMC__INSPECT;
	c->fork_gen = UINT64_MAX; /* never "ours": close releases nothing */
	pthread_mutex_init(&c->lock, NULL);
	int rc = shmc__segment_open(c, name, NULL, SHMC__INSPECT);
	if (rc) {
		shmc__segment_close(c);
		pthread_mutex_destroy(&c->lock);
		shmc__free(c);
		return rc;
	}
	*out = c;
	return 0;
}
