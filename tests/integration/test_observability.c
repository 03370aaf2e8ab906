/*
 * test_observability.c - what the library reports about itself: the
 * host-wide hot-key sketch under a skewed workload from several processes,
 * the latency histograms (bucket math and sample counts), and the
 * per-process breakdown of the counters.
 *
 * The hot-key test draws its keys from an exact Zipf(0.99) sampler (a
 * precomputed CDF and a binary search, ranks scattered over the keys by a
 * hash), counts every draw, and compares the sketch's top 10 with the true
 * top 10 of those counts. It samples one lookup in 4 per thread instead of
 * the default 64, so that a few million lookups give the sketch as many
 * samples as a long run at the default period would.
 *
 * Children run plain C checks and report through their exit status
 * (testutil.h); only the parent uses cmocka's asserts.
 */
#include <math.h> /* frexp, ldexp: in libc, no libm needed */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define CHILD_WATCHDOG_S 120u

/* ----------------------------------------------------------- fixture */

struct zipf;

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	pid_t children[4]; /* still running if a test failed midway */
	struct zipf *zipf; /* freed by teardown, even after a failure */
};

static void zipf_free(struct zipf *z);

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof f->children / sizeof *f->children; i++)
		if (f->children[i] > 0 && kill(f->children[i], SIGKILL) == 0)
			waitpid(f->children[i], NULL, 0);
	if (f->zipf)
		zipf_free(f->zipf);
	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

/* Attach without the background roles, sampling one operation in period. */
static int attach(const char *name, unsigned period, shmc_cache **out)
{
	shmc_opts *o;
	int rc = shmc_opts_create(&o);

	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0)
		rc = shmc_opts_set_sampling(o, period);
	if (rc == 0)
		rc = shmc_open(name, o, 0, out);
	shmc_opts_destroy(o);
	return rc;
}

/* A fresh segment (no sweeper), attached by f->c sampling every period. */
static void open_fresh(struct fixture *f, size_t bytes, unsigned period)
{
	assert_int_equal(tu_open_fresh(f->name, bytes, 0, 0, &f->c), 0);
	shmc_close(f->c);
	f->c = NULL;
	assert_int_equal(attach(f->name, period, &f->c), 0);
}

/* ------------------------------------------------------------- zipf */

/* x^-a for x >= 1 without libm (the tests do not link it): exp(-a ln x)
 * from series, with frexp/ldexp (in libc) for the exponents. Accurate to
 * a few ulps, far beyond what the test needs. */
static double ln_of(double x)
{
	int e;
	double m = frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
	double z = (m - 1) / (m + 1), z2 = z * z, term = z, sum = 0;

	for (int k = 1; k < 80; k += 2) {
		sum += term / k;
		term *= z2;
	}
	return 2 * sum + e * 0.69314718055994530942;
}

static double exp_of(double y)
{
	const double ln2 = 0.69314718055994530942;
	double q = y / ln2;
	int k = (int)(q < 0 ? q - 0.5 : q + 0.5);
	double r = y - k * ln2, term = 1, sum = 1;

	for (int n = 1; n < 30; n++) {
		term *= r / n;
		sum += term;
	}
	return ldexp(sum, k);
}

#define ZIPF_KEYS 100000u
#define ZIPF_THETA 0.99
#define ZIPF_PROCS 2u
#define ZIPF_GETS_PER_PROC 3000000u
#define ZIPF_PERIOD 4u
#define ZIPF_TOP 10u

struct zipf {
	double *cdf;          /* cdf[r] = P(rank <= r) */
	uint32_t *key_of_rank;
	_Atomic uint64_t *drawn; /* shared: draws of each key, all processes */
	const char *name;
};

static void zipf_key(char *buf, uint32_t id)
{
	snprintf(buf, 16, "zk:%06u", id);
}

static uint64_t rank_hash(uint32_t r)
{
	return XXH3_64bits_withSeed(&r, sizeof r, 0x5eed);
}

static int by_rank_hash(const void *a, const void *b)
{
	uint64_t x = rank_hash(*(const uint32_t *)a), y = rank_hash(*(const uint32_t *)b);

	return (x > y) - (x < y);
}

static void zipf_build(struct zipf *z)
{
	double total = 0;

	z->cdf = malloc(ZIPF_KEYS * sizeof *z->cdf);
	z->key_of_rank = malloc(ZIPF_KEYS * sizeof *z->key_of_rank);
	z->drawn = tu_shared_alloc(ZIPF_KEYS * sizeof *z->drawn);
	assert_non_null(z->cdf);
	assert_non_null(z->key_of_rank);
	assert_non_null(z->drawn);
	for (uint32_t r = 0; r < ZIPF_KEYS; r++) {
		total += exp_of(-ZIPF_THETA * ln_of((double)r + 1));
		z->cdf[r] = total;
	}
	/* H(100000, 0.99) = 12.77834 (checked independently) */
	assert_true(total > 12.7773 && total < 12.7793);
	for (uint32_t r = 0; r < ZIPF_KEYS; r++)
		z->cdf[r] /= total;
	z->cdf[ZIPF_KEYS - 1] = 1.0;
	/* Rank r is the key at position r once the ids are ordered by a hash:
	 * the hot keys are scattered, not the first ones stored. */
	for (uint32_t r = 0; r < ZIPF_KEYS; r++)
		z->key_of_rank[r] = r;
	qsort(z->key_of_rank, ZIPF_KEYS, sizeof *z->key_of_rank, by_rank_hash);
}

static void zipf_free(struct zipf *z)
{
	free(z->cdf);
	free(z->key_of_rank);
	if (z->drawn)
		tu_shared_free(z->drawn, ZIPF_KEYS * sizeof *z->drawn);
	free(z);
}

/* The smallest rank whose cdf exceeds u, u in [0, 1). */
static uint32_t zipf_draw(const struct zipf *z, uint64_t *rng)
{
	double u = (double)(tu_rand_next(rng) >> 11) * 0x1.0p-53;
	uint32_t lo = 0, hi = ZIPF_KEYS - 1;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (z->cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static int zipf_reader(unsigned index, void *arg)
{
	const struct zipf *z = arg;
	uint32_t *mine = calloc(ZIPF_KEYS, sizeof *mine);
	uint64_t rng = 0x1234567ull * (index + 1);
	shmc_cache *c;
	char key[16], buf[16];
	size_t vlen;
	int rc;

	if (mine == NULL)
		return 1;
	if ((rc = attach(z->name, ZIPF_PERIOD, &c)) != 0) {
		tu_child_log("attach: %s", shmc_errname(rc));
		return 1;
	}
	for (uint32_t n = 0; n < ZIPF_GETS_PER_PROC; n++) {
		uint32_t id = z->key_of_rank[zipf_draw(z, &rng)];

		zipf_key(key, id);
		rc = shmc_get(c, key, 9, buf, sizeof buf, &vlen);
		if (rc != 0) {
			tu_child_log("get %s: %s", key, shmc_errname(rc));
			return 1;
		}
		mine[id]++;
	}
	for (uint32_t id = 0; id < ZIPF_KEYS; id++)
		if (mine[id])
			atomic_fetch_add(&z->drawn[id], mine[id]);
	shmc_close(c);
	free(mine);
	return 0;
}

/* The id in a reported "zk:NNNNNN" (key bytes are not NUL-terminated). */
static uint32_t key_id(const struct shmc_hotkey *h)
{
	char digits[8] = {0};

	memcpy(digits, h->key + 3, 6);
	return (uint32_t)strtoul(digits, NULL, 10);
}

static void test_obs_hotkeys_top10_under_zipf_from_two_processes_is_exact(void **state)
{
	struct fixture *f = *state;
	struct zipf *z = calloc(1, sizeof *z);
	struct shmc_hotkey hot[ZIPF_TOP];
	uint32_t truth[ZIPF_TOP];
	char key[16];
	size_t n;

	assert_non_null(z);
	f->zipf = z;
	z->name = f->name;
	zipf_build(z);
	open_fresh(f, 32u << 20, 0);
	for (uint32_t id = 0; id < ZIPF_KEYS; id++) {
		zipf_key(key, id);
		assert_int_equal(shmc_set(f->c, key, 9, &id, sizeof id, 0, 0), 0);
	}
	assert_int_equal(tu_fork_run(ZIPF_PROCS, zipf_reader, z, CHILD_WATCHDOG_S), 0);

	/* The true top 10 of what was drawn (by count; no ties expected). */
	for (uint32_t t = 0; t < ZIPF_TOP; t++) {
		uint32_t best = UINT32_MAX;

		for (uint32_t id = 0; id < ZIPF_KEYS; id++) {
			bool taken = false;

			for (uint32_t s = 0; s < t; s++)
				taken |= truth[s] == id;
			if (!taken && (best == UINT32_MAX || z->drawn[id] > z->drawn[best]))
				best = id;
		}
		truth[t] = best;
	}
	/* sanity: the draws follow the distribution (rank 0 holds 7.8%) */
	assert_true(z->drawn[z->key_of_rank[0]] > ZIPF_PROCS * ZIPF_GETS_PER_PROC / 100 * 7);

	assert_int_equal(shmc_hotkeys(f->c, hot, ZIPF_TOP, &n), 0);
	assert_int_equal(n, ZIPF_TOP);
	for (uint32_t i = 0; i < ZIPF_TOP; i++) {
		bool found = false;

		assert_int_equal(hot[i].klen, 9);
		assert_false(hot[i].truncated);
		for (uint32_t t = 0; t < ZIPF_TOP; t++) {
			zipf_key(key, truth[t]);
			found |= memcmp(hot[i].key, key, 9) == 0;
		}
		if (!found)
			fail_msg("reported #%u %.9s (count %llu +- %llu; drawn %llu times) is not in the "
			         "true top 10 (the 10th was drawn %llu times)",
			         i + 1, (const char *)hot[i].key, (unsigned long long)hot[i].count,
			         (unsigned long long)hot[i].error,
			         (unsigned long long)z->drawn[key_id(&hot[i])],
			         (unsigned long long)z->drawn[truth[ZIPF_TOP - 1]]);
		if (i > 0)
			assert_true(hot[i - 1].count >= hot[i].count);
	}
	/* Order: a pair may come out against the true order only if the
	 * reported counts are within the reported errors of each other. */
	for (uint32_t i = 0; i < ZIPF_TOP; i++)
		for (uint32_t j = i + 1; j < ZIPF_TOP; j++) {
			uint32_t a = key_id(&hot[i]), b = key_id(&hot[j]);

			if (z->drawn[a] >= z->drawn[b])
				continue;
			if (hot[i].count - hot[j].count > hot[i].error + hot[j].error)
				fail_msg("#%u (%u, drawn %llu) before #%u (%u, drawn %llu): counts %llu vs "
				         "%llu, errors %llu and %llu",
				         i + 1, a, (unsigned long long)z->drawn[a], j + 1, b,
				         (unsigned long long)z->drawn[b], (unsigned long long)hot[i].count,
				         (unsigned long long)hot[j].count, (unsigned long long)hot[i].error,
				         (unsigned long long)hot[j].error);
		}
	/* Counts are estimates of lookups: scaled by the period, and the
	 * hottest key's is of the order of its recent share (the sketch
	 * halves its counts as it goes, so not of the whole run's). */
	assert_int_equal(hot[0].count % ZIPF_PERIOD, 0);
	assert_true(hot[0].count > hot[ZIPF_TOP - 1].count * 5);
	zipf_free(z);
	f->zipf = NULL;
}

/* ------------------------------------------------------- histograms */

static uint64_t bucket_mid(unsigned i)
{
	uint64_t lo = shmc_latency_bucket_lower(i), hi = shmc_latency_bucket_lower(i + 1);

	return hi > lo + 1 ? lo + (hi - lo) / 2 : lo;
}

/* |mid - v| <= v / 64, in integers. */
static bool within_1_64(uint64_t mid, uint64_t v)
{
	uint64_t d = mid > v ? mid - v : v - mid;

	return d * 64 <= v;
}

static void test_obs_bucket_lower_is_strictly_increasing(void **state)
{
	(void)state;
	assert_int_equal(shmc_latency_bucket_lower(0), 0);
	for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++)
		if (shmc_latency_bucket_lower(i) >= shmc_latency_bucket_lower(i + 1))
			fail_msg("bucket %u starts at %llu, bucket %u at %llu", i,
			         (unsigned long long)shmc_latency_bucket_lower(i), i + 1,
			         (unsigned long long)shmc_latency_bucket_lower(i + 1));
	/* the last bucket reaches past 10 s, the histograms' documented range */
	assert_true(shmc_latency_bucket_lower(SHMC_LATENCY_BUCKETS - 1) > 10000000000ull);
}

static void test_obs_bucket_midpoint_is_within_1_64_of_every_value(void **state)
{
	uint64_t rng = 7;

	(void)state;
	/* Both ends of every bucket (the extremes of the relative error). */
	for (unsigned i = 0; i + 1 < SHMC_LATENCY_BUCKETS; i++) {
		uint64_t lo = shmc_latency_bucket_lower(i), hi = shmc_latency_bucket_lower(i + 1);

		if (!within_1_64(bucket_mid(i), lo) || !within_1_64(bucket_mid(i), hi - 1))
			fail_msg("bucket %u [%llu, %llu): midpoint %llu", i, (unsigned long long)lo,
			         (unsigned long long)hi, (unsigned long long)bucket_mid(i));
	}
	/* Random values, log-uniform up to the last bucket, each looked up in
	 * the public bucket bounds. */
	uint64_t top = shmc_latency_bucket_lower(SHMC_LATENCY_BUCKETS - 1);
	for (int n = 0; n < 200000; n++) {
		unsigned bits = (unsigned)tu_rand_below(&rng, 34) + 1;
		uint64_t v = tu_rand_next(&rng) & ((1ull << bits) - 1);
		unsigned lo = 0, hi = SHMC_LATENCY_BUCKETS - 1;

		if (v >= top)
			continue;
		while (lo < hi) { /* the last bucket whose lower bound is <= v */
			unsigned mid = (lo + hi + 1) / 2;

			if (shmc_latency_bucket_lower(mid) <= v)
				lo = mid;
			else
				hi = mid - 1;
		}
		if (!within_1_64(bucket_mid(lo), v))
			fail_msg("%llu in bucket %u: midpoint %llu", (unsigned long long)v, lo,
			         (unsigned long long)bucket_mid(lo));
	}
}

static int loader_of_key(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
                         uint32_t *ttl_ms)
{
	(void)arg;
	*val = malloc(klen);
	if (*val == NULL)
		return SHMC_ENOMEM;
	memcpy(*val, key, klen);
	*vlen = klen;
	*ttl_ms = 0;
	return 0;
}

static uint64_t hist_total(shmc_cache *c, enum shmc_op op)
{
	uint64_t counts[SHMC_LATENCY_BUCKETS], total = 0;

	assert_int_equal(shmc_latency_histogram(c, op, counts), 0);
	for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++)
		total += counts[i];
	return total;
}

static void check_summary(shmc_cache *c, enum shmc_op op, uint64_t expected)
{
	struct shmc_latency l;

	assert_int_equal(shmc_latency(c, op, &l), 0);
	assert_int_equal(l.count, expected);
	assert_int_equal(hist_total(c, op), expected);
	assert_true(l.p50_ns <= l.p90_ns);
	assert_true(l.p90_ns <= l.p99_ns);
	assert_true(l.p99_ns <= l.p999_ns);
	/* Percentiles are bucket midpoints and max is exact: the p999 bucket
	 * may hold the max, whose midpoint is then up to 1/64 above it. */
	assert_true(l.p999_ns * 64 <= l.max_ns * 65 + 64);
	assert_true(l.max_ns > 0);
	assert_true(l.sum_ns >= expected && l.sum_ns <= l.max_ns * expected);
}

static void test_obs_sampling_period_1_times_every_operation(void **state)
{
	struct fixture *f = *state;
	enum { N = 20000, SETS = 1000, FETCHES = 300 };
	char key[32], buf[64];
	size_t vlen;

	open_fresh(f, 8u << 20, 1);
	for (unsigned i = 0; i < SETS; i++) {
		int kl = snprintf(key, sizeof key, "h:%u", i);

		assert_int_equal(shmc_set(f->c, key, (size_t)kl, "value", 5, 0, 0), 0);
	}
	for (unsigned i = 0; i < N; i++) { /* half hits, half misses */
		int kl = snprintf(key, sizeof key, "h:%u", i % (2 * SETS));
		int rc = shmc_get(f->c, key, (size_t)kl, buf, sizeof buf, &vlen);

		assert_int_equal(rc, i % (2 * SETS) < SETS ? 0 : SHMC_ENOTFOUND);
	}
	check_summary(f->c, SHMC_OP_GET, N);
	check_summary(f->c, SHMC_OP_SET, SETS);
	/* A fetch's own lookup and store are operations of their own (and may
	 * be sampled as such); the fetch is timed as a whole, once. */
	for (unsigned i = 0; i < FETCHES; i++) {
		int kl = snprintf(key, sizeof key, "f:%u", i % 100);

		assert_int_equal(
			shmc_fetch(f->c, key, (size_t)kl, buf, sizeof buf, &vlen, loader_of_key, NULL), 0);
	}
	check_summary(f->c, SHMC_OP_FETCH, FETCHES);
}

static void test_obs_sampling_period_8_times_one_operation_in_8(void **state)
{
	struct fixture *f = *state;
	enum { N = 80000 };
	char buf[8];
	size_t vlen;
	struct shmc_latency l;

	open_fresh(f, 8u << 20, 8);
	for (unsigned i = 0; i < N; i++)
		(void)shmc_get(f->c, "absent", 6, buf, sizeof buf, &vlen);
	assert_int_equal(shmc_latency(f->c, SHMC_OP_GET, &l), 0);
	assert_true(l.count + 1 >= N / 8 && l.count <= N / 8 + 1);
}

static void test_obs_sampling_off_records_nothing(void **state)
{
	struct fixture *f = *state;
	char buf[8];
	size_t vlen, n = 99;
	struct shmc_latency l;
	struct shmc_hotkey hot[4];

	open_fresh(f, 8u << 20, 0);
	assert_int_equal(shmc_set(f->c, "k", 1, "v", 1, 0, 0), 0);
	for (unsigned i = 0; i < 10000; i++)
		assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen), 0);
	for (int op = 0; op < SHMC_NOPS; op++) {
		assert_int_equal(shmc_latency(f->c, (enum shmc_op)op, &l), 0);
		assert_int_equal(l.count, 0);
		assert_int_equal(l.p50_ns, 0);
	}
	assert_int_equal(shmc_hotkeys(f->c, hot, 4, &n), 0);
	assert_int_equal(n, 0);
}

static void test_obs_latency_rejects_bad_arguments(void **state)
{
	struct fixture *f = *state;
	uint64_t counts[SHMC_LATENCY_BUCKETS];
	struct shmc_latency l;
	size_t n;

	open_fresh(f, 8u << 20, 1);
	assert_int_equal(shmc_latency(f->c, SHMC_NOPS, &l), SHMC_EINVAL);
	assert_int_equal(shmc_latency(f->c, SHMC_OP_GET, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_latency_histogram(f->c, SHMC_NOPS, counts), SHMC_EINVAL);
	assert_int_equal(shmc_latency_histogram(NULL, SHMC_OP_GET, counts), SHMC_EINVAL);
	assert_int_equal(shmc_hotkeys(f->c, NULL, 1, &n), SHMC_EINVAL);
	assert_int_equal(shmc_hotkeys(f->c, NULL, 0, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_stats_procs(f->c, NULL, 1, &n), SHMC_EINVAL);
}

/* -------------------------------------------------- per-process stats */

#define PROCS_CHILDREN 3u

struct procs_ctl {
	const char *name;
	_Atomic unsigned ready;
	_Atomic unsigned release[PROCS_CHILDREN];
};

/* Child i: (i + 1) * 1000 gets and (i + 1) * 10 sets, then holds its
 * handle until released. */
static int procs_child(unsigned index, void *arg)
{
	struct procs_ctl *ctl = arg;
	shmc_cache *c;
	char buf[8];
	size_t vlen;
	int rc = attach(ctl->name, 64, &c);

	if (rc != 0) {
		tu_child_log("attach: %s", shmc_errname(rc));
		return 1;
	}
	for (unsigned i = 0; i < (index + 1) * 10; i++)
		if (shmc_set(c, "k", 1, "v", 1, 0, 0) != 0)
			return 1;
	for (unsigned i = 0; i < (index + 1) * 1000; i++)
		if (shmc_get(c, "k", 1, buf, sizeof buf, &vlen) != 0)
			return 1;
	atomic_fetch_add(&ctl->ready, 1);
	while (!atomic_load(&ctl->release[index]))
		tu_sleep_ms(1);
	shmc_close(c);
	return 0;
}

static const struct shmc_proc_stats *proc_entry(const struct shmc_proc_stats *ps, size_t n,
                                                pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (ps[i].pid == (uint64_t)pid)
			return &ps[i];
	return NULL;
}

static uint64_t sum_gets(const struct shmc_proc_stats *ps, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += ps[i].gets;
	return s;
}

static void test_obs_stats_procs_has_one_entry_per_live_process(void **state)
{
	struct fixture *f = *state;
	struct procs_ctl *ctl = tu_shared_alloc(sizeof *ctl);
	struct shmc_proc_stats ps[8];
	struct shmc_stats st;
	pid_t pids[PROCS_CHILDREN];
	char buf[8];
	size_t vlen, n;

	assert_non_null(ctl);
	open_fresh(f, 8u << 20, 64);
	ctl->name = f->name;
	for (unsigned i = 0; i < 500; i++)
		(void)shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen);
	assert_int_equal(tu_fork_start(PROCS_CHILDREN, procs_child, ctl, CHILD_WATCHDOG_S, pids),
	                 PROCS_CHILDREN);
	memcpy(f->children, pids, sizeof pids);
	for (int waited = 0; atomic_load(&ctl->ready) < PROCS_CHILDREN; waited++) {
		assert_true(waited < 20000);
		tu_sleep_ms(1);
	}

	/* cap 0 sizes; a short array gets what fits and the full count */
	assert_int_equal(shmc_stats_procs(f->c, NULL, 0, &n), 0);
	assert_int_equal(n, 1 + PROCS_CHILDREN);
	assert_int_equal(shmc_stats_procs(f->c, ps, 1, &n), 0);
	assert_int_equal(n, 1 + PROCS_CHILDREN);

	assert_int_equal(shmc_stats_procs(f->c, ps, 8, &n), 0);
	assert_int_equal(n, 1 + PROCS_CHILDREN);
	const struct shmc_proc_stats *me = proc_entry(ps, n, getpid());
	assert_non_null(me);
	assert_int_equal(me->gets, 500);
	assert_int_equal(me->misses, 500);
	assert_int_equal(me->threads, 1);
	for (unsigned i = 0; i < PROCS_CHILDREN; i++) {
		const struct shmc_proc_stats *p = proc_entry(ps, n, pids[i]);

		assert_non_null(p);
		assert_int_equal(p->gets, (i + 1) * 1000);
		assert_int_equal(p->hits, (i + 1) * 1000);
		assert_int_equal(p->sets, (i + 1) * 10);
		assert_int_equal(p->threads, 1);
		assert_true(p->attach_unix_ms > 0 && p->attach_unix_ms <= (uint64_t)time(NULL) * 1000 + 1000);
	}
	assert_int_equal(shmc_stats(f->c, &st), 0);
	/* nobody has detached: the host total is exactly the processes' sum */
	assert_true(sum_gets(ps, n) <= st.gets);
	assert_int_equal(sum_gets(ps, n), st.gets);

	/* A process that detaches leaves the table; its counts stay in the
	 * host totals. */
	atomic_store(&ctl->release[0], 1);
	assert_int_equal(tu_wait_child(pids[0], "child 0"), 0);
	f->children[0] = 0;
	assert_int_equal(shmc_stats_procs(f->c, ps, 8, &n), 0);
	assert_int_equal(n, PROCS_CHILDREN);
	assert_null(proc_entry(ps, n, pids[0]));
	assert_int_equal(shmc_stats(f->c, &st), 0);
	assert_true(sum_gets(ps, n) <= st.gets);
	assert_int_equal(st.gets - sum_gets(ps, n), 1000);

	/* A process that dies without detaching leaves it too. */
	assert_int_equal(kill(pids[1], SIGKILL), 0);
	assert_int_equal(waitpid(pids[1], NULL, 0), pids[1]);
	f->children[1] = 0;
	assert_int_equal(shmc_stats_procs(f->c, ps, 8, &n), 0);
	assert_int_equal(n, PROCS_CHILDREN - 1);
	assert_null(proc_entry(ps, n, pids[1]));
	assert_int_equal(shmc_stats(f->c, &st), 0);
	assert_true(sum_gets(ps, n) <= st.gets);

	atomic_store(&ctl->release[2], 1);
	assert_int_equal(tu_wait_child(pids[2], "child 2"), 0);
	memset(f->children, 0, sizeof f->children);
	tu_shared_free(ctl, sizeof *ctl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_obs_hotkeys_top10_under_zipf_from_two_processes_is_exact),
		TEST(test_obs_bucket_lower_is_strictly_increasing),
		TEST(test_obs_bucket_midpoint_is_within_1_64_of_every_value),
		TEST(test_obs_sampling_period_1_times_every_operation),
		TEST(test_obs_sampling_period_8_times_one_operation_in_8),
		TEST(test_obs_sampling_off_records_nothing),
		TEST(test_obs_latency_rejects_bad_arguments),
		TEST(test_obs_stats_procs_has_one_entry_per_live_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
