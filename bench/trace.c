/*
 * trace.c - eviction quality: our miss ratio next to an exact LRU's.
 *
 * One request trace is generated, deterministically from --seed: Zipf draws
 * over --trace-keys keys, each rank mapped to a key by a keyed permutation
 * so that popular keys are not neighbours. It is replayed twice through a
 * fresh segment whose data area holds about --trace-cache-items items, in
 * one process, cache-aside (GET; on a miss, SET the key):
 *
 *   zipf       the Zipf requests alone;
 *   zipf+scan  the same Zipf requests with a one-pass scan interleaved 1:1
 *              from the start of the middle third: TRACE_SCAN_FACTOR times
 *              the cache's items, keys requested nowhere else, each once.
 *              LRU lets the scan push out half its hot set; a scan-resistant
 *              policy should not.
 *
 * The yardstick is an exact LRU in private memory replaying the same trace.
 * Its capacity is the average number of items our cache held after the
 * warm-up, so the two are compared at the same number of items: the figure
 * says how well we choose what to keep, not how densely we pack (the memory
 * phase of shmcache-bench measures that). Miss ratios count the requests
 * after the warm-up, the first third of the Zipf requests, the same way for
 * both.
 *
 * The cache is used only through the public API, with its default options
 * apart from the geometry, so a background sweeper runs in this process
 * when the library has one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmcache.h"

#include "bench.h"

#define TRACE_SCAN_FACTOR 5u		   /* scan keys per item the cache is sized for */
#define TRACE_SCAN_TARGET_GAIN 0.03	   /* our miss ratio under LRU's by this during a scan */
#define TRACE_ITEMS_SAMPLE_EVERY 10000u	   /* requests between two reads of stats.items */
#define TRACE_POLL_MASK 4095u		   /* requests between interrupt checks, minus one */
#define TRACE_CHUNK_MIN ((size_t)64 << 10) /* the library's smallest chunk */
#define TRACE_CHUNK_MAX ((size_t)64 << 20) /* and its largest */
#define TRACE_ITEMS_PER_CHUNK 16u	   /* chunks grow until they hold this many items */
#define TRACE_SIZE_ATTEMPTS 8		   /* segment sizes tried to get the data area right */
#define TRACE_SUFFIX ".trc"		   /* appended to --name for the trace's segment */

/* ----------------------------------------------------------------- zipf */

/* Zipf(theta) over ranks [0, n) by inverting the exact CDF: a table of n
 * doubles and a binary search per draw. The generator of the load phases
 * (Gray et al.) approximates every rank past the second, which does not
 * matter for throughput but does for a miss ratio. */
struct zipf_cdf {
	double *cdf; /* cdf[r] = P(rank <= r), cdf[n - 1] = 1 */
	uint64_t n;
};

static int zipf_cdf_build(struct zipf_cdf *z, uint64_t n, double theta)
{
	z->cdf = malloc(n * sizeof *z->cdf);
	if (!z->cdf)
		return -1;
	z->n = n;
	double sum = 0.0;
	for (uint64_t r = 0; r < n; r++) {
		sum += pow((double)(r + 1), -theta);
		z->cdf[r] = sum;
	}
	for (uint64_t r = 0; r < n; r++)
		z->cdf[r] /= sum;
	z->cdf[n - 1] = 1.0;
	return 0;
}

/* The smallest rank whose CDF exceeds u, for u in [0, 1). */
static uint64_t zipf_cdf_draw(const struct zipf_cdf *z, double u)
{
	uint64_t lo = 0, hi = z->n - 1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (z->cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* A keyed bijection of [0, n): an invertible mix of [0, 2^bits), the
 * smallest power of two holding n, walked along its cycle until it lands
 * below n (fewer than two steps on average). Adding a constant,
 * multiplying by an odd one and x ^= x >> s are each invertible modulo
 * 2^bits. */
struct rank_perm {
	uint64_t n;
	uint64_t mask;
	uint64_t key;
	unsigned shift;
};

static void rank_perm_init(struct rank_perm *p, uint64_t n, uint64_t seed)
{
	unsigned bits = 1;
	while (((uint64_t)1 << bits) < n)
		bits++;
	p->n = n;
	p->mask = ((uint64_t)1 << bits) - 1;
	p->key = splitmix64(&seed);
	p->shift = (bits + 1) / 2;
}

static uint64_t rank_perm_apply(const struct rank_perm *p, uint64_t rank)
{
	uint64_t x = rank;
	do {
		x = (x + p->key) & p->mask;
		x = (x * 0x9e3779b97f4a7c15ull) & p->mask;
		x ^= x >> p->shift;
		x = (x * 0xbf58476d1ce4e5b9ull) & p->mask;
		x ^= x >> p->shift;
	} while (x >= p->n);
	return x;
}

/* ---------------------------------------------------------------- trace */

/* Requests in order: the Zipf keys, except that from scan_start on, scan
 * keys and Zipf keys alternate (scan first) until the scan_len scan keys
 * are spent. Keys are ids: Zipf keys below the key count, scan key j at
 * scan_first_key + j. */
struct trace {
	const char *name;
	const uint32_t *zipf_keys;
	uint64_t zipf_len;
	uint64_t scan_start;
	uint64_t scan_len; /* 0: no scan */
	uint32_t scan_first_key;
	uint64_t warmup; /* requests before the measured ones */
};

enum request_kind { REQ_ZIPF, REQ_ZIPF_DURING_SCAN, REQ_SCAN };

static uint64_t trace_len(const struct trace *t)
{
	return t->zipf_len + t->scan_len;
}

static inline uint32_t trace_request(const struct trace *t, uint64_t pos, enum request_kind *kind)
{
	*kind = REQ_ZIPF;
	if (pos < t->scan_start)
		return t->zipf_keys[pos];
	uint64_t in_scan = pos - t->scan_start;
	if (in_scan >= 2 * t->scan_len)
		return t->zipf_keys[pos - t->scan_len];
	if (in_scan % 2 == 0) {
		*kind = REQ_SCAN;
		return t->scan_first_key + (uint32_t)(in_scan / 2);
	}
	*kind = REQ_ZIPF_DURING_SCAN;
	return t->zipf_keys[t->scan_start + in_scan / 2];
}

/* Counted alike for our cache and for the LRU. */
struct miss_count {
	uint64_t measured; /* requests after the warm-up */
	uint64_t measured_misses;
	uint64_t during_scan; /* Zipf requests between two scan requests */
	uint64_t during_scan_misses;
};

static inline void miss_count_add(struct miss_count *m, const struct trace *t, uint64_t pos,
				  enum request_kind kind, bool miss)
{
	if (pos >= t->warmup) {
		m->measured++;
		m->measured_misses += miss;
	}
	if (kind == REQ_ZIPF_DURING_SCAN) {
		m->during_scan++;
		m->during_scan_misses += miss;
	}
}

static double ratio(uint64_t part, uint64_t whole)
{
	return whole ? (double)part / (double)whole : 0.0;
}

/* ----------------------------------------------------------------- ours */

struct cache_replay {
	struct miss_count misses;
	double avg_items; /* stats.items, averaged over samples after the warm-up */
	uint64_t evictions;
	uint64_t data_bytes;
	uint64_t failures; /* failed GETs and SETs, and hits with a wrong value */
	int first_failure;
	double seconds;
};

/* Creates name with a data area of want_chunks chunks, or one more. How
 * much of a segment the data area gets depends on the library's layout
 * (slots, chunk table, index), so the size is found by asking: create, read
 * stats.data_bytes, correct by the cost per chunk seen, try again. */
static int segment_open_sized(const struct trace_config *tc, const char *name, size_t chunk_bytes,
			      uint64_t want_chunks, shmc_cache **out)
{
	struct segment_spec spec = {
		.segment_bytes = want_chunks * chunk_bytes * 9 / 8 + ((size_t)2 << 20),
		.item_bytes = tc->key_size + tc->value_size,
		.key_size = tc->key_size,
		.chunk_bytes = chunk_bytes,
		.sweeper = true,
	};
	for (int attempt = 1;; attempt++) {
		if (bench_segment_create(name, &spec, out) != 0)
			return -1;
		struct shmc_stats st;
		int rc = shmc_stats(*out, &st);
		if (rc != 0) {
			fprintf(stderr, "shmcache-bench: shmc_stats: %s\n", shmc_errname(rc));
			break;
		}
		uint64_t got = st.data_bytes / chunk_bytes;
		if (got >= want_chunks && got <= want_chunks + 1)
			return 0;
		if (attempt == TRACE_SIZE_ATTEMPTS) {
			/* Small caches: even the smallest segment holds more. */
			fprintf(stderr,
				"shmcache-bench: warning: the data area has %" PRIu64
				" chunks, not the %" PRIu64 " wanted\n",
				got, want_chunks);
			return 0;
		}
		double per_chunk = (double)st.segment_bytes / (double)(got ? got : 1);
		double size = (double)spec.segment_bytes +
			      ((double)want_chunks - (double)got) * per_chunk;
		spec.segment_bytes = size < SHMC_MIN_SIZE ? SHMC_MIN_SIZE : (size_t)size;
		shmc_close(*out);
		shmc_unlink(name);
	}
	shmc_close(*out);
	shmc_unlink(name);
	*out = NULL;
	return -1;
}

/* Replays t through c, cache-aside. Returns 0, or -1 (interrupted, out of
 * memory, or shmc_stats failed at the end). */
static int replay_cache(const struct trace_config *tc, const struct trace *t, shmc_cache *c,
			struct cache_replay *r)
{
	size_t key_size = tc->key_size, value_size = tc->value_size;
	/* The first bytes of a value are its key's id, so a hit can be checked. */
	size_t stamp = value_size < sizeof(uint64_t) ? value_size : sizeof(uint64_t);
	char *key = malloc(key_size);
	unsigned char *value = malloc(value_size ? value_size : 1);
	unsigned char *got = malloc(value_size ? value_size : 1);
	int result = -1;
	if (!key || !value || !got) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	for (size_t j = 0; j < value_size; j++)
		value[j] = (unsigned char)(j * 131u + 7u);

	double items_sum = 0.0;
	uint64_t items_samples = 0;
	uint64_t len = trace_len(t), t0 = now_ns();
	for (uint64_t pos = 0; pos < len; pos++) {
		enum request_kind kind;
		uint64_t id = trace_request(t, pos, &kind);
		key_format(key, key_size, id);
		size_t vlen = 0;
		int rc = shmc_get(c, key, key_size, got, value_size, &vlen);
		bool miss = rc == SHMC_ENOTFOUND;
		if (miss) {
			memcpy(value, &id, stamp);
			rc = shmc_set(c, key, key_size, value, value_size, 0, 0);
		} else if (rc == 0 && (vlen != value_size || memcmp(got, &id, stamp) != 0)) {
			rc = BENCH_EBADVALUE;
		}
		if (rc != 0 && r->failures++ == 0)
			r->first_failure = rc;
		miss_count_add(&r->misses, t, pos, kind, miss);

		if (pos >= t->warmup && (pos - t->warmup) % TRACE_ITEMS_SAMPLE_EVERY == 0) {
			struct shmc_stats st;
			if (shmc_stats(c, &st) == 0) {
				items_sum += (double)st.items;
				items_samples++;
			}
		}
		if ((pos & TRACE_POLL_MASK) == 0 && bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			goto out;
		}
	}
	r->seconds = (double)(now_ns() - t0) / 1e9;
	r->avg_items = items_samples ? items_sum / (double)items_samples : 0.0;
	struct shmc_stats st;
	int rc = shmc_stats(c, &st);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_stats: %s\n", shmc_errname(rc));
		goto out;
	}
	r->evictions = st.evictions;
	r->data_bytes = st.data_bytes;
	result = 0;
out:
	free(key);
	free(value);
	free(got);
	return result;
}

/* ------------------------------------------------------------------ LRU */

/* Exact LRU over key ids: a circular doubly linked list of nodes, most
 * recent first, with nodes[capacity] as its head. The ids are dense, so the
 * map from key to node is an array indexed by id rather than a hash table. */
struct lru_node {
	uint32_t key;
	uint32_t prev;
	uint32_t next;
};

struct lru {
	struct lru_node *nodes;
	uint32_t *node_of_key; /* node + 1, 0 when the key is absent */
	uint32_t capacity;
	uint32_t used;
};

static int lru_create(struct lru *l, uint32_t capacity, uint64_t key_ids)
{
	l->nodes = malloc(((size_t)capacity + 1) * sizeof *l->nodes);
	l->node_of_key = calloc(key_ids, sizeof *l->node_of_key);
	l->capacity = capacity;
	l->used = 0;
	if (!l->nodes || !l->node_of_key)
		return -1;
	l->nodes[capacity].prev = l->nodes[capacity].next = capacity;
	return 0;
}

static void lru_destroy(struct lru *l)
{
	free(l->nodes);
	free(l->node_of_key);
}

static inline void lru_unlink(struct lru *l, uint32_t n)
{
	struct lru_node *node = &l->nodes[n];
	l->nodes[node->prev].next = node->next;
	l->nodes[node->next].prev = node->prev;
}

static inline void lru_push_front(struct lru *l, uint32_t n)
{
	uint32_t head = l->capacity;
	l->nodes[n].prev = head;
	l->nodes[n].next = l->nodes[head].next;
	l->nodes[l->nodes[head].next].prev = n;
	l->nodes[head].next = n;
}

/* Returns whether key was cached; afterwards it is, most recent. */
static inline bool lru_access(struct lru *l, uint32_t key)
{
	uint32_t n = l->node_of_key[key];
	if (n) {
		lru_unlink(l, n - 1);
		lru_push_front(l, n - 1);
		return true;
	}
	if (l->used < l->capacity) {
		n = l->used++;
	} else {
		n = l->nodes[l->capacity].prev;
		lru_unlink(l, n);
		l->node_of_key[l->nodes[n].key] = 0;
	}
	l->nodes[n].key = key;
	l->node_of_key[key] = n + 1;
	lru_push_front(l, n);
	return false;
}

static int replay_lru(const struct trace *t, uint32_t capacity, uint64_t key_ids,
		      struct miss_count *m)
{
	struct lru l;
	if (lru_create(&l, capacity, key_ids) != 0) {
		fprintf(stderr, "shmcache-bench: out of memory for the LRU\n");
		lru_destroy(&l);
		return -1;
	}
	uint64_t len = trace_len(t);
	for (uint64_t pos = 0; pos < len; pos++) {
		enum request_kind kind;
		uint32_t key = trace_request(t, pos, &kind);
		miss_count_add(m, t, pos, kind, !lru_access(&l, key));
	}
	lru_destroy(&l);
	return 0;
}

/* --------------------------------------------------------------- report */

struct trace_setup {
	const struct trace_config *tc;
	char name[256];
	size_t chunk_bytes;
	uint64_t want_chunks;
	uint64_t key_ids; /* Zipf keys and scan keys */
	uint32_t *zipf_keys;
	double build_seconds;
};

static void print_header(const struct trace_setup *s)
{
	const struct trace_config *tc = s->tc;
	if (tc->json)
		return;
	printf("trace: %" PRIu64 " zipf(%.2f) requests over %" PRIu64 " keys, seed %" PRIu64
	       ", key=%zuB value=%zuB, built in %.1f s\n",
	       tc->requests, tc->zipf_theta, tc->keys, tc->seed, tc->key_size, tc->value_size,
	       s->build_seconds);
	printf("cache: data area of %" PRIu64 " chunks of %zu KiB for %" PRIu64
	       " items; miss ratios after the first %" PRIu64 " requests (warm-up)\n",
	       s->want_chunks, s->chunk_bytes >> 10, tc->cache_items, tc->requests / 3);
	printf("%-10s %-18s %7s %7s %9s  %-18s %9s %9s %10s %6s\n", "trace", "requests", "ours",
	       "LRU", "ours-LRU", "target", "avg items", "LRU cap", "evictions", "secs");
}

/* The target and the cache's figures go on a trace's first row only. */
static void print_row(const char *trace, const char *requests, double ours, double lru,
		      const char *verdict, const struct cache_replay *r, uint32_t lru_capacity)
{
	printf("%-10s %-18s %7.4f %7.4f %+9.4f", trace, requests, ours, lru, ours - lru);
	if (r)
		printf("  %-18s %9.0f %9" PRIu32 " %10" PRIu64 " %6.1f", verdict, r->avg_items,
		       lru_capacity, r->evictions, r->seconds);
	printf("\n");
}

/* The scan trace's target is on the Zipf requests during the scan; the
 * plain trace's on every measured request. */
static void report_trace(const struct trace_setup *s, const struct trace *t,
			 const struct cache_replay *r, const struct miss_count *lru,
			 uint32_t lru_capacity)
{
	const struct trace_config *tc = s->tc;
	double ours_all = ratio(r->misses.measured_misses, r->misses.measured);
	double lru_all = ratio(lru->measured_misses, lru->measured);
	double ours_scan = ratio(r->misses.during_scan_misses, r->misses.during_scan);
	double lru_scan = ratio(lru->during_scan_misses, lru->during_scan);
	bool scan = t->scan_len > 0;
	bool met = scan ? ours_scan <= lru_scan - TRACE_SCAN_TARGET_GAIN : ours_all <= lru_all;
	const char *outcome = met ? "met" : "MISSED";
	char verdict[32];
	if (scan)
		snprintf(verdict, sizeof verdict, "<= LRU-%.2f %s", TRACE_SCAN_TARGET_GAIN,
			 outcome);
	else
		snprintf(verdict, sizeof verdict, "<= LRU %s", outcome);

	if (tc->json) {
		printf("{\"trace\":\"%s\",\"requests\":%" PRIu64 ",\"keys\":%" PRIu64
		       ",\"zipf\":%.4f,\"seed\":%" PRIu64 ",\"key_size\":%zu,\"value_size\":%zu,"
		       "\"cache_items_target\":%" PRIu64 ",\"data_bytes\":%" PRIu64
		       ",\"avg_items\":%.1f,\"lru_capacity\":%" PRIu32 ",\"evictions\":%" PRIu64
		       ",\"miss_ratio\":%.4f,\"lru_miss_ratio\":%.4f,\"miss_ratio_diff\":%.4f,",
		       t->name, trace_len(t), tc->keys, tc->zipf_theta, tc->seed, tc->key_size,
		       tc->value_size, tc->cache_items, r->data_bytes, r->avg_items, lru_capacity,
		       r->evictions, ours_all, lru_all, ours_all - lru_all);
		if (scan)
			printf("\"scan_keys\":%" PRIu64 ",\"scan_zipf_miss_ratio\":%.4f,"
			       "\"scan_lru_zipf_miss_ratio\":%.4f,\"scan_miss_ratio_diff\":%.4f,",
			       t->scan_len, ours_scan, lru_scan, ours_scan - lru_scan);
		else
			printf("\"scan_keys\":0,\"scan_zipf_miss_ratio\":null,"
			       "\"scan_lru_zipf_miss_ratio\":null,\"scan_miss_ratio_diff\":null,");
		printf("\"target_met\":%s,\"failures\":%" PRIu64 ",\"seconds\":%.2f}\n",
		       met ? "true" : "false", r->failures, r->seconds);
	} else if (scan) {
		print_row(t->name, "zipf during scan", ours_scan, lru_scan, verdict, r,
			  lru_capacity);
		print_row(t->name, "all after warm-up", ours_all, lru_all, verdict, NULL, 0);
	} else {
		print_row(t->name, "all after warm-up", ours_all, lru_all, verdict, r,
			  lru_capacity);
	}
	if (r->failures)
		fprintf(stderr,
			"shmcache-bench: trace %s: %" PRIu64 " failed operations (first: %s)\n",
			t->name, r->failures, error_name(r->first_failure));
}

/* ----------------------------------------------------------------- runs */

static int trace_setup_build(struct trace_setup *s, const struct trace_config *tc)
{
	memset(s, 0, sizeof *s);
	s->tc = tc;
	snprintf(s->name, sizeof s->name, "%s" TRACE_SUFFIX, tc->segment_name);
	uint64_t scan_len = TRACE_SCAN_FACTOR * tc->cache_items;
	/* The scan starts after the warm-up and takes one Zipf request per
	 * scan key. */
	if (tc->requests - tc->requests / 3 < scan_len) {
		fprintf(stderr,
			"shmcache-bench: --trace-requests %" PRIu64 " too few for a scan of"
			" %" PRIu64 " keys after a warm-up of a third\n",
			tc->requests, scan_len);
		return -1;
	}
	s->key_ids = tc->keys + scan_len;
	if (s->key_ids > UINT32_MAX || tc->key_size - 1 < decimal_digits(s->key_ids - 1)) {
		fprintf(stderr,
			"shmcache-bench: --key-size %zu cannot hold %" PRIu64
			" distinct trace keys (%" PRIu64 " zipf + %" PRIu64 " scan)\n",
			tc->key_size, s->key_ids, tc->keys, scan_len);
		return -1;
	}
	size_t item = ITEM_HEADER_BYTES + tc->key_size + tc->value_size;
	s->chunk_bytes = TRACE_CHUNK_MIN;
	while (s->chunk_bytes < TRACE_CHUNK_MAX && s->chunk_bytes < item * TRACE_ITEMS_PER_CHUNK)
		s->chunk_bytes <<= 1;
	s->want_chunks = (tc->cache_items * item + s->chunk_bytes - 1) / s->chunk_bytes;

	uint64_t t0 = now_ns();
	struct zipf_cdf z;
	s->zipf_keys = malloc(tc->requests * sizeof *s->zipf_keys);
	if (!s->zipf_keys || zipf_cdf_build(&z, tc->keys, tc->zipf_theta) != 0) {
		fprintf(stderr, "shmcache-bench: out of memory for the trace\n");
		return -1;
	}
	struct rank_perm perm;
	rank_perm_init(&perm, tc->keys, tc->seed);
	uint64_t rng = xorshift_seed(tc->seed);
	for (uint64_t i = 0; i < tc->requests; i++)
		s->zipf_keys[i] =
			(uint32_t)rank_perm_apply(&perm, zipf_cdf_draw(&z, uniform_unit(&rng)));
	free(z.cdf);
	s->build_seconds = (double)(now_ns() - t0) / 1e9;
	return 0;
}

/* One trace: ours on a fresh segment, then the LRU at our average size. */
static int trace_measure(const struct trace_setup *s, const struct trace *t, bool *failed)
{
	shmc_cache *c = NULL;
	if (segment_open_sized(s->tc, s->name, s->chunk_bytes, s->want_chunks, &c) != 0)
		return -1;
	struct cache_replay r;
	memset(&r, 0, sizeof r);
	int rc = replay_cache(s->tc, t, c, &r);
	shmc_close(c);
	shmc_unlink(s->name);
	if (rc != 0)
		return -1;

	struct miss_count lru;
	memset(&lru, 0, sizeof lru);
	double capacity = r.avg_items < 1.0 ? 1.0 : round(r.avg_items);
	if (replay_lru(t, (uint32_t)capacity, s->key_ids, &lru) != 0)
		return -1;
	report_trace(s, t, &r, &lru, (uint32_t)capacity);
	*failed |= r.failures > 0;
	return 0;
}

int trace_run(const struct trace_config *tc)
{
	struct trace_setup s;
	int result = -1;
	if (trace_setup_build(&s, tc) != 0)
		goto out;
	print_header(&s);

	uint64_t warmup = tc->requests / 3;
	struct trace zipf = {
		.name = "zipf",
		.zipf_keys = s.zipf_keys,
		.zipf_len = tc->requests,
		.scan_start = tc->requests,
		.warmup = warmup,
	};
	struct trace scan = zipf;
	scan.name = "zipf+scan";
	scan.scan_start = warmup;
	scan.scan_len = TRACE_SCAN_FACTOR * tc->cache_items;
	scan.scan_first_key = (uint32_t)tc->keys;

	bool failed = false;
	if (trace_measure(&s, &zipf, &failed) != 0 || trace_measure(&s, &scan, &failed) != 0)
		goto out;
	result = failed ? -1 : 0;
out:
	free(s.zipf_keys);
	return result;
}
