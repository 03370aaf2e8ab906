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
	int rc = pthread_mutex_init(&obs->hot_lock, &ma);
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

static int hot_lock(struct shmc__obs *obs, bool wait)
{
	int rc = wait ? pthread_mutex_lock(&obs->hot_lock) : pthread_mutex_trylock(&obs->hot_lock);
	if (rc == EOWNERDEAD) {
		/* A sampler died mid-update: at worst one entry holds a
		 * half-copied key or count, which the sketch tolerates. */
		pthread_mutex_consistent(&obs->hot_lock);
		rc = 0;
	}
	return rc;
}

static void hot_decay_locked(struct shmc__obs *obs)
{
	for (uint32_t i = 0; i < obs->hot_used && i < SHMC__HOT_SLOTS; i++) {
		obs->hot[i].count /= 2;
		obs->hot[i].error /= 2;
	}
	obs->hot_samples = 0;
}

void shmc__obs_hotkey(shmc_cache *c, uint64_t hash, const void *key, size_t klen)
{
	struct shmc__obs *obs = c->obs;
	if (hot_lock(obs, false))
		return; /* busy: skip this sample rather than wait */
	uint32_t used = obs->hot_used < SHMC__HOT_SLOTS ? obs->hot_used : SHMC__HOT_SLOTS;
	size_t shown = klen < SHMC_HOTKEY_MAX ? klen : SHMC_HOTKEY_MAX;
	struct shmc__hot_entry *e = NULL, *min = NULL;
	for (uint32_t i = 0; i < used; i++) {
		struct shmc__hot_entry *x = &obs->hot[i];
		if (x->hash == hash && x->klen == klen && memcmp(x->key, key, shown) == 0) {
			e = x;
			break;
		}
		if (!min || x->count < min->count)
			min = x;
	}
	if (!e) {
		uint64_t inherited = 0;
		if (used < SHMC__HOT_SLOTS) {
			e = &obs->hot[used];
			obs->hot_used = used + 1;
		} else {
			e = min;
			inherited = min->count;
		}
		e->hash = hash;
		e->klen = (uint16_t)klen;
		memcpy(e->key, key, shown);
		e->count = inherited;
		e->error = inherited;
	}
	e->count++;
	obs->hot_period = c->sample_period;
	if (++obs->hot_samples >= SHMC__HOT_DECAY)
		hot_decay_locked(obs);
	pthread_mutex_unlock(&obs->hot_lock);
}

static int by_count_desc(const void *a, const void *b)
{
	const struct shmc_hotkey *x = a, *y = b;
	return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

int shmc_hotkeys(shmc_cache *c, struct shmc_hotkey *out, size_t cap, size_t *n)
{
	if (!c || !n || (!out && cap))
		return SHMC_EINVAL;
	struct shmc__obs *obs = c->obs;
	struct shmc_hotkey *all = malloc(sizeof(*all) * SHMC__HOT_SLOTS);
	if (!all)
		return SHMC_ENOMEM;
	size_t used = 0;
	/* Inspection handles map the segment read-only: they read without the
	 * lock (a torn entry shows a wrong count for one refresh, no more). */
	bool locked = !(c->flags & SHMC__INSPECT) && hot_lock(obs, true) == 0;
	uint64_t scale = obs->hot_period ? obs->hot_period : 1;
	uint32_t lim = obs->hot_used < SHMC__HOT_SLOTS ? obs->hot_used : SHMC__HOT_SLOTS;
	for (uint32_t i = 0; i < lim; i++) {
		const struct shmc__hot_entry *e = &obs->hot[i];
		if (!e->count)
			continue;
		struct shmc_hotkey *h = &all[used++];
		size_t shown = e->klen < SHMC_HOTKEY_MAX ? e->klen : SHMC_HOTKEY_MAX;
		memcpy(h->key, e->key, shown);
		h->klen = shown;
		h->truncated = e->klen > SHMC_HOTKEY_MAX;
		h->count = e->count * scale;
		h->error = e->error * scale;
	}
	if (locked)
		pthread_mutex_unlock(&obs->hot_lock);
	qsort(all, used, sizeof(*all), by_count_desc);
	*n = used < cap ? used : cap;
	if (*n)
		memcpy(out, all, sizeof(*all) * *n);
	free(all);
	return 0;
}
