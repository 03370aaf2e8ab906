/*
 * test_sweeper.c - making room (sweeper.c): direct reclaim by writers that
 * find no free chunk. The victim is the sealed chunk with the fewest live
 * bytes; its reachable items are unlinked (counted as evictions), the rest
 * of the index is untouched, and overwriting far more than the data area
 * keeps succeeding with every read answering absent or the latest value.
 *
 * Values are self-describing (tests/common/testutil.h), so a read that
 * returns reused or torn memory is detected, not just a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handle.h"
#include "index.h"
/* shmc__index_find() moved to an inline header; older trees declare it in
 * index.h. */
#include "index_read.h"
#include "log.h"
#include "rcu.h"
#include "sweeper.h"
#include "unitutil.h"

#define SEGMENT_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)
#define NKEYS 4000u
#define PASSES 5u
#define VALUE_MIN TU_VALUE_MIN_BYTES
#define VALUE_MAX 1600u
#define BIG_ITEM (16u << 10) /* four to a chunk */

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
	};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

/* ------------------------------------------------- overwrite workload */

struct workload {
	uint64_t latest[NKEYS]; /* seq of the last successful set, 0 = none */
	uint64_t sets, failed_sets, reads, absent, wrong;
	uint64_t bytes_written;
	int first_fail_rc;
	char problem[256];
};

static size_t key_of(char *key, size_t cap, unsigned i)
{
	return (size_t)snprintf(key, cap, "sw-%05u", i);
}

/* Read key i back: absent, or the latest value written. */
static void check_one(shmc_cache *c, struct workload *w, unsigned i, unsigned char *buf)
{
	char key[32];
	size_t klen = key_of(key, sizeof key, i), vlen = 0;
	struct tu_value_info info;
	int rc = shmc_get(c, key, klen, buf, VALUE_MAX, &vlen);

	w->reads++;
	if (rc == SHMC_ENOTFOUND) {
		w->absent++;
		return;
	}
	enum tu_verdict v = rc == 0 ? tu_value_check(buf, vlen, key, klen, NULL, &info) : TU_TORN;
	if (rc == 0 && v == TU_OK && info.seq == w->latest[i])
		return;
	w->wrong++;
	if (w->problem[0] == '\0')
		snprintf(w->problem, sizeof w->problem,
			 "%s: rc %s, verdict %s, seq %llu, latest %llu", key, shmc_errname(rc),
			 tu_verdict_name(v),
			 rc == 0 && v != TU_TORN ? (unsigned long long)info.seq : 0ull,
			 (unsigned long long)w->latest[i]);
}

/* PASSES passes over NKEYS keys in random order, values of random size;
 * after each set one random key is read back, after each pass all keys. */
static void run_workload(shmc_cache *c, struct workload *w)
{
	unsigned char *val = malloc(VALUE_MAX), *buf = malloc(VALUE_MAX);
	uint64_t rng = 0x5eed5eedull, seq = 0;

	assert_non_null(val);
	assert_non_null(buf);
	memset(w, 0, sizeof *w);
	for (unsigned pass = 0; pass < PASSES; pass++) {
		for (unsigned n = 0; n < NKEYS; n++) {
			unsigned i = (unsigned)tu_rand_below(&rng, NKEYS);
			char key[32];
			size_t klen = key_of(key, sizeof key, i);
			size_t len =
				VALUE_MIN + (size_t)tu_rand_below(&rng, VALUE_MAX - VALUE_MIN + 1);

			tu_value_build(val, VALUE_MAX, key, klen, 0, ++seq, len);
			int rc = shmc_set(c, key, klen, val, len, 0, 0);
			if (rc == 0) {
				w->sets++;
				w->latest[i] = seq;
				w->bytes_written += SHMC__ITEM_HDR + klen + len;
			} else if (w->failed_sets++ == 0) {
				w->first_fail_rc = rc;
				snprintf(w->problem, sizeof w->problem, "set %s: %s (%s)", key,
					 shmc_errname(rc), shmc_errmsg(c));
			}
			check_one(c, w, (unsigned)tu_rand_below(&rng, NKEYS), buf);
		}
		for (unsigned i = 0; i < NKEYS; i++)
			check_one(c, w, i, buf);
	}
	free(val);
	free(buf);
}

static void test_sweeper_overwrites_beyond_capacity_keep_succeeding(void **state)
{
	shmc_cache *c = cache_of(state);
	struct workload *w = calloc(1, sizeof *w);

	assert_non_null(w);
	run_workload(c, w);
	if (w->failed_sets != 0)
		fail_msg("%llu of %u sets failed; first: %s", (unsigned long long)w->failed_sets,
			 PASSES * NKEYS, w->problem);
	/* The data area was overwritten several times over. */
	assert_true(w->bytes_written > 4 * c->geo.data_bytes);
	free(w);
}

static void test_sweeper_overwrites_beyond_capacity_count_evictions(void **state)
{
	shmc_cache *c = cache_of(state);
	struct workload *w = calloc(1, sizeof *w);
	struct shmc_stats st;

	assert_non_null(w);
	run_workload(c, w);
	assert_int_equal(shmc_stats(c, &st), 0);
	assert_true(st.evictions > 0);
	/* Not everything fits: some keys were evicted, and so read absent. */
	assert_true(w->absent > 0);
	free(w);
}

static void test_sweeper_overwrites_beyond_capacity_reads_latest_or_absent(void **state)
{
	shmc_cache *c = cache_of(state);
	struct workload *w = calloc(1, sizeof *w);

	assert_non_null(w);
	run_workload(c, w);
	if (w->wrong != 0)
		fail_msg("%llu of %llu reads were neither absent nor the latest value; first: %s",
			 (unsigned long long)w->wrong, (unsigned long long)w->reads, w->problem);
	/* Recently written keys survive: not everything was evicted. */
	assert_true(w->absent < w->reads);
	free(w);
}

/* -------------------------------------------------------- direct reclaim */

static void test_sweeper_reclaim_without_sealed_chunk_returns_false(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0); /* one OPEN chunk */
	assert_false(shmc__reclaim_direct(c, tctx_of(c)));
}

/* Big items, four to a chunk. */
static void set_big(shmc_cache *c, const char *key, char fill)
{
	size_t klen = strlen(key), vlen = BIG_ITEM - SHMC__ITEM_HDR - klen;
	unsigned char *val = malloc(vlen);

	assert_non_null(val);
	memset(val, fill, vlen);
	assert_int_equal(shmc_set(c, key, klen, val, vlen, 0, 0), 0);
	free(val);
}

static int get_big(shmc_cache *c, const char *key, char *fill)
{
	unsigned char *buf = malloc(BIG_ITEM);
	size_t vlen = 0;
	int rc;

	assert_non_null(buf);
	rc = shmc_get(c, key, strlen(key), buf, BIG_ITEM, &vlen);
	if (rc == 0)
		*fill = (char)buf[0];
	free(buf);
	return rc;
}

static uint32_t chunk_of_key(shmc_cache *c, const char *key)
{
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__keyref k;
	struct shmc__found f = {0};

	shmc__keyref_init(c, &k, key, strlen(key));
	shmc__rcu_read_enter(c, t);
	int rc = shmc__index_find(c, &k, &f);
	shmc__rcu_read_exit(c, t);
	assert_int_equal(rc, 0);
	return shmc__chunk_of(c, shmc__entry_off(f.entry));
}

/* Chunk X: a0..a3, of which a0 and a1 are then overwritten (two live);
 * chunk Y: b0..b3 (four live); the overwrites go to a third, open chunk. */
static void build_two_sealed(shmc_cache *c, uint32_t *x, uint32_t *y)
{
	static const char *const a[] = {"a0", "a1", "a2", "a3"};
	static const char *const b[] = {"b0", "b1", "b2", "b3"};

	for (int i = 0; i < 4; i++)
		set_big(c, a[i], 'a');
	for (int i = 0; i < 4; i++)
		set_big(c, b[i], 'b');
	set_big(c, "a0", 'A');
	set_big(c, "a1", 'A');
	*x = chunk_of_key(c, "a2");
	*y = chunk_of_key(c, "b0");
	assert_int_equal(chunk_of_key(c, "a3"), *x);
	assert_int_not_equal(*x, *y);
	assert_int_equal(c->chunks[*x].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[*y].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[*x].dead == 2 * BIG_ITEM);
}

static void test_sweeper_reclaim_picks_least_live_chunk(void **state)
{
	shmc_cache *c = cache_of(state);
	uint32_t x, y;

	build_two_sealed(c, &x, &y);
	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_int_equal(c->chunks[x].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[y].state, SHMC__CHUNK_SEALED);
}

static void test_sweeper_reclaim_unlinks_only_victim_items(void **state)
{
	shmc_cache *c = cache_of(state);
	uint32_t x, y;
	char fill;

	build_two_sealed(c, &x, &y);
	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_int_equal(get_big(c, "a2", &fill), SHMC_ENOTFOUND);
	assert_int_equal(get_big(c, "a3", &fill), SHMC_ENOTFOUND);
	/* The newer copies of a0 and a1 live elsewhere. */
	assert_int_equal(get_big(c, "a0", &fill), 0);
	assert_int_equal(fill, 'A');
	assert_int_equal(get_big(c, "a1", &fill), 0);
	assert_int_equal(fill, 'A');
	const char *const b[] = {"b0", "b1", "b2", "b3"};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(get_big(c, b[i], &fill), 0);
		assert_int_equal(fill, 'b');
	}
}

static void test_sweeper_reclaim_counts_evictions(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc_stats before, after;
	uint32_t x, y;

	build_two_sealed(c, &x, &y);
	assert_int_equal(shmc_stats(c, &before), 0);
	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_int_equal(shmc_stats(c, &after), 0);
	assert_true(after.evictions - before.evictions == 2);
	assert_true(before.items - after.items == 2);
}

/* The retired victim is reusable at once when nobody reads. */
static void test_sweeper_reclaimed_chunk_stamped_for_reuse(void **state)
{
	shmc_cache *c = cache_of(state);
	uint32_t x, y;
	uint64_t gp_before;

	build_two_sealed(c, &x, &y);
	gp_before = c->hdr->gp_ctr;
	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_true(c->chunks[x].retire_gp > gp_before);
	assert_true(c->chunks[x].retire_gp <= shmc__rcu_oldest_reader(c));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_sweeper_overwrites_beyond_capacity_keep_succeeding),
		TEST(test_sweeper_overwrites_beyond_capacity_count_evictions),
		TEST(test_sweeper_overwrites_beyond_capacity_reads_latest_or_absent),
		TEST(test_sweeper_reclaim_without_sealed_chunk_returns_false),
		TEST(test_sweeper_reclaim_picks_least_live_chunk),
		TEST(test_sweeper_reclaim_unlinks_only_victim_items),
		TEST(test_sweeper_reclaim_counts_evictions),
		TEST(test_sweeper_reclaimed_chunk_stamped_for_reuse),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
