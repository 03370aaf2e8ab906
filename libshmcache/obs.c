/*
 * obs.c - latency histograms and the hot-key sketch.
 */
#include "obs.h"

#include "handle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atomic.h"

int shmc__obs_init(struct shmc__obs *obs)
{
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&obs->hot.lock, &ma);
	pthread_mutexattr_destroy(&ma);
	return rc;
}

uint64_t shmc__obs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t ns)
{
	if (ns < (1u << SHMC__HIST_SUB_BITS))
		return (unsigned)ns;
	unsigned k = 63u - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)(ns >> (k - SHMC__HIST_SUB_BITS)) & ((1u << SHMC__HIST_SUB_BITS) - 1);
	unsigned i = (k - SHMC__HIST_SUB_BITS + 1) * (1u << SHMC__HIST_SUB_BITS) + sub;
	return i < SHMC__HIST_BUCKETS ? i : SHMC__HIST_BUCKETS - 1;
}

uint64_t shmc_latency_bucket_lower(unsigned i)
{
	const unsigned per = 1u << SHMC__HIST_SUB_BITS;
	if (i < per)
		return i;
	if (i >= SHMC__HIST_BUCKETS)
		i = SHMC__HIST_BUCKETS; /* the end of the last bucket */
	unsigned k = i / per + SHMC__HIST_SUB_BITS - 1, sub = i % per;
	return ((uint64_t)per + sub) << (k - SHMC__HIST_SUB_BITS);
}

void shmc__obs_latency(shmc_cache *c, enum shmc_op op, uint64_t ns)
{
	struct shmc__hist *h = &c->obs->hist[op][c->proc_idx % SHMC__HIST_STRIPES];
	uatomic_inc(&h->count[bucket_of(ns)]);
	uatomic_add(&h->sum_ns, ns);
	uint64_t m = uatomic_read(&h->max_ns);
	while (ns > m) {
		uint64_t seen = uatomic_cmpxchg(&h->max_ns, m, ns);
		if (seen == m)
			break;
		m = seen;
	}
}

int shmc_latency_histogram(shmc_cache *c, enum shmc_op op, uint64_t counts[SHMC_LATENCY_BUCKETS])
{
	if (!c || !counts || (unsigned)op >= SHMC_NOPS)
		return SHMC_EINVAL;
	memset(counts, 0, sizeof(uint64_t) * SHMC_LATENCY_BUCKETS);
	for (int s = 0; s < SHMC__HIST_STRIPES; s++)
		for (unsigned i = 0; i < SHMC__HIST_BUCKETS; i++)
			counts[i] += uatomic_read(&c->obs->hist[op][s].count[i]);
	return 0;
}

/* The midpoint of the bucket holding the rank-th sample (0-based). */
static uint64_t percentile(const uint64_t *counts, uint64_t total, double q)
{
	uint64_t rank = (uint64_t)(q * (double)(total - 1)), seen = 0;
	for (unsigned i = 0; i < SHMC__HIST_BUCKETS; i++) {
		seen += counts[i];
		if (seen > rank) {
			uint64_t lo = shmc_latency_bucket_lower(i), hi = shmc_latency_bucket_lower(i + 1);
			return hi > lo + 1 ? lo + (hi - lo) / 2 : lo;
		}
	}
	return shmc_latency_bucket_lower(SHMC__HIST_BUCKETS - 1);
}

int shmc_latency(shmc_cache *c, enum shmc_op op, struct shmc_latency *out)
{
	if (!out)
		return SHMC_EINVAL;
	uint64_t *counts = malloc(sizeof(uint64_t) * SHMC_LATENCY_BUCKETS);
	if (!counts)
		return SHMC_ENOMEM;
	int rc = shmc_latency_histogram(c, op, counts);
	if (rc) {
		free(counts);
		return rc;
	}
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < SHMC__HIST_BUCKETS; i++)
		out->count += counts[i];
	for (int s = 0; s < SHMC__HIST_STRIPES; s++) {
		const struct shmc__hist *h = &c->obs->hist[op][s];
		out->sum_ns += uatomic_read(&h->sum_ns);
		uint64_t m = uatomic_read(&h->max_ns);
		if (m > out->max_ns)
			out->max_ns = m;
	}
	if (out->count) {
		out->p50_ns = percentile(counts, out->count, 0.50);
		out->p90_ns = percentile(counts, out->count, 0.90);
		out->p99_ns = percentile(counts, out->count, 0.99);
		out->p999_ns = percentile(counts, out->count, 0.999);
	}
	free(counts);
	return 0;
}

/* ------------------------------------------------------------- hot keys */

static int hot_lock(struct shmc__hot *hot, bool wait)
{
	int rc = wait ? pthread_mutex_lock(&hot->lock) : pthread_mutex_trylock(&hot->lock);
	if (rc == EOWNERDEAD) {
		/* A sampler died mid-update: at worst one entry holds a
		 * half-copied key or count, which the sketch tolerates. */
		pthread_mutex_consistent(&hot->lock);
		rc = 0;
	}
	return rc;
}

/* The index position holding entry e's key, or of the first hole. */
static uint32_t hot_probe(const struct shmc__hot *hot, uint64_t hash, const void *key,
			  size_t klen, bool *found)
{
	const uint32_t mask = SHMC__HOT_INDEX - 1;
	size_t shown = klen < SHMC_HOTKEY_MAX ? klen : SHMC_HOTKEY_MAX;
	for (uint32_t p = (uint32_t)hash & mask;; p = (p + 1) & mask) {
		uint32_t e = hot->index[p];
		if (!e) {
			*found = false;
			return p;
		}
		e--;
		if (hot->hash[e] == hash && hot->klen[e] == klen &&
		    memcmp(hot->key[e], key, shown) == 0) {
			*found = true;
			return p;
		}
	}
}

/* Remove the index position p (linear probing: later keys of the same
 * run move back so that no lookup stops short of them). */
static void hot_unindex(struct shmc__hot *hot, uint32_t p)
{
	const uint32_t mask = SHMC__HOT_INDEX - 1;
	hot->index[p] = 0;
	for (uint32_t j = (p + 1) & mask; hot->index[j]; j = (j + 1) & mask) {
		uint32_t home = (uint32_t)hot->hash[hot->index[j] - 1] & mask;
		/* Movable to p unless its home lies cyclically in (p, j]. */
		bool stays = p <= j ? (home > p && home <= j) : (home > p || home <= j);
		if (!stays) {
			hot->index[p] = hot->index[j];
			hot->index[j] = 0;
			p = j;
		}
	}
}

void shmc__obs_hotkey(shmc_cache *c, uint64_t hash, const void *key, size_t klen)
{
	struct shmc__hot *hot = &c->obs->hot;
	if (hot_lock(hot, false))
		return; /* busy: skip this sample rather than wait */
	uint32_t used = hot->used < SHMC__HOT_SLOTS ? hot->used : SHMC__HOT_SLOTS;
	bool found;
	uint32_t p = hot_probe(hot, hash, key, klen, &found);
	uint32_t e;
	if (found) {
		e = hot->index[p] - 1u;
	} else {
		/* New: a free entry, or the (nearly) smallest, which is last. */
		if (used < SHMC__HOT_SLOTS) {
			e = used;
			hot->order[used] = (uint16_t)e;
			hot->rank[e] = (uint16_t)used;
			hot->count[e] = 0;
			hot->used = ++used;
		} else {
			e = hot->order[used - 1] % SHMC__HOT_SLOTS;
			bool old_found;
			uint32_t old = hot_probe(hot, hot->hash[e], hot->key[e], hot->klen[e], &old_found);
			if (old_found)
				hot_unindex(hot, old);
			p = hot_probe(hot, hash, key, klen, &found);
		}
		hot->error[e] = hot->count[e];
		hot->hash[e] = hash;
		hot->klen[e] = (uint16_t)klen;
		memcpy(hot->key[e], key, klen < SHMC_HOTKEY_MAX ? klen : SHMC_HOTKEY_MAX);
		hot->index[p] = (uint16_t)(e + 1);
	}
	/* Keep order[] sorted by count, exactly: counts grow by one, so the
	 * entries between e's new place (the first rank with a smaller count,
	 * found by binary search) and its old one all had e's old count, and
	 * swapping e with the first of them keeps the order. */
	uint32_t r = hot->rank[e] % SHMC__HOT_SLOTS, lo = 0, hi = r;
	uint32_t n = ++hot->count[e];
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (hot->count[hot->order[mid]] < n)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < r) {
		uint16_t other = hot->order[lo];
		hot->order[lo] = (uint16_t)e;
		hot->order[r] = other;
		hot->rank[e] = (uint16_t)lo;
		hot->rank[other] = (uint16_t)r;
	}
	hot->period = c->sample_period * SHMC__HOT_EVERY;
	if (++hot->samples >= SHMC__HOT_DECAY) {
		for (uint32_t j = 0; j < used; j++) {
			hot->count[j] /= 2;
			hot->error[j] /= 2;
		}
		hot->samples = 0;
	}
	pthread_mutex_unlock(&hot->lock);
}

int shmc_hotkeys(shmc_cache *c, struct shmc_hotkey *out, size_t cap, size_t *n)
{
	if (!c || !n || (!out && cap))
		return SHMC_EINVAL;
	struct shmc__hot *hot = &c->obs->hot;
	struct shmc_hotkey *all = malloc(sizeof(*all) * SHMC__HOT_SLOTS);
	if (!all)
		return SHMC_ENOMEM;
	size_t used = 0;
	/* Inspection handles map the segment read-only: they read without the
	 * lock (a torn entry shows a wrong count for one refresh, no more). */
	bool locked = !(c->flags & SHMC__INSPECT) && hot_lock(hot, true) == 0;
	uint64_t scale = hot->period ? hot->period : 1;
	uint32_t lim = hot->used < SHMC__HOT_SLOTS ? hot->used : SHMC__HOT_SLOTS;
	for (uint32_t rank = 0; rank < lim; rank++) { /* hottest first */
		uint32_t i = hot->order[rank] % SHMC__HOT_SLOTS;
		if (!hot->count[i])
			continue;
		struct shmc_hotkey *h = &all[used++];
		size_t shown = hot->klen[i] < SHMC_HOTKEY_MAX ? hot->klen[i] : SHMC_HOTKEY_MAX;
		memcpy(h->key, hot->key[i], shown);
		h->klen = shown;
		h->truncated = hot->klen[i] > SHMC_HOTKEY_MAX;
		h->count = (uint64_t)hot->count[i] * scale;
		h->error = (uint64_t)hot->error[i] * scale;
	}
	if (locked)
		pthread_mutex_unlock(&hot->lock);
	*n = used < cap ? used : cap;
	if (*n)
		memcpy(out, all, sizeof(*all) * *n);
	free(all);
	return 0;
}
