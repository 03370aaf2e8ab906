/*
 * obs.h - observability that does not fit in a counter: latency histograms
 * and the hot-key sketch, host-wide, in their own region of the segment.
 *
 * Only sampled operations (one in a handle's sample period per thread)
 * write here, so the hot path pays a private counter decrement and a
 * predictable branch; a sampled one pays two clock reads and a few atomic
 * adds.
 *
 * Histograms are striped (a process writes the stripe of its proc slot
 * index) so that processes rarely share a line; readers sum the stripes.
 * Buckets are log-linear: values below 32 ns exactly, then 32 buckets per
 * power of two, so a bucket's midpoint is within 1/64 of any value in it.
 */
#ifndef SHMC_OBS_H
#define SHMC_OBS_H

#include "shmcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SHMC__HIST_SUB_BITS 5
#define SHMC__HIST_BUCKETS SHMC_LATENCY_BUCKETS /* up to 2^34 ns, 17 s */
#define SHMC__HIST_STRIPES 4

struct shmc__hist {
	uint64_t count[SHMC__HIST_BUCKETS];
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t pad[6];
};

/* Space-saving sketch (Metwally et al.): SHMC__HOT_SLOTS counters; a
 * sampled key either bumps its counter or replaces the smallest, inheriting
 * its count as error. A small open-addressing index finds a key's entry;
 * order[] ranks the entries by count, exactly (one binary search and one
 * swap per sample), and its last one, the minimum, is replaced.
 * Only one lookup in SHMC__HOT_EVERY sampled ones is sketched. Updated
 * under a robust mutex that a sampler only tries (a busy sketch skips the
 * sample); halved every SHMC__HOT_DECAY samples so that it follows the
 * current workload. */
#define SHMC__HOT_SLOTS 256
#define SHMC__HOT_INDEX 1024 /* power of two, 4x the entries: short probes */
#define SHMC__HOT_EVERY 4
#define SHMC__HOT_DECAY (1u << 18)

struct shmc__hot {
	pthread_mutex_t lock;
	uint32_t used;
	uint32_t samples;     /* since the last halving */
	uint32_t period;      /* lookups per sketched sample: scales counts */
	uint32_t reserved;
	uint16_t index[SHMC__HOT_INDEX]; /* entry + 1 by hash; 0 = empty */
	uint16_t order[SHMC__HOT_SLOTS]; /* entries by descending count */
	uint16_t rank[SHMC__HOT_SLOTS];  /* inverse of order */
	uint64_t hash[SHMC__HOT_SLOTS];
	uint32_t count[SHMC__HOT_SLOTS];
	uint32_t error[SHMC__HOT_SLOTS];
	uint16_t klen[SHMC__HOT_SLOTS]; /* the keys' real lengths */
	unsigned char key[SHMC__HOT_SLOTS][SHMC_HOTKEY_MAX];
};

struct shmc__obs {
	struct shmc__hist hist[SHMC_NOPS][SHMC__HIST_STRIPES];
	_Alignas(64) struct shmc__hot hot;
};

struct shmc_cache;

/* Initialise a new segment's region (the mutex; the rest is zero). */
int shmc__obs_init(struct shmc__obs *obs);

/* Record a sampled operation's latency. */
void shmc__obs_latency(struct shmc_cache *c, enum shmc_op op, uint64_t ns);

/* Record a sampled lookup of key (hash as the index computed it). */
void shmc__obs_hotkey(struct shmc_cache *c, uint64_t hash, const void *key, size_t klen);

/* Monotonic nanoseconds, for timing samples. */
uint64_t shmc__obs_now_ns(void);

#endif
