/*
 * test_sweeper.c - making room (sweeper.c): direct reclaim, for when no
 * eviction step is possible. The victim is the probationary log's oldest
 * sealed chunk while that log holds more than its share, else the sealed
 * chunk with the fewest live bytes; its reachable items are unlinked
 * (counted as evictions), the rest of the index is untouched, and
 * overwriting far more than the data area keeps succeeding with every read
 * answering absent or the latest value.
 *
 * Values are self-describing (tests/common/testutil.h), so a read that
 * returns reused or torn memory is detected, not just a crash.
 *
 * The victim order of one eviction step (shmc__evict_step): a sealed chunk
 * whose items have all expired; else one at least half dead, compacted
 * (every live item moved, keeping its reference bit within its log); else
 * the probationary log's oldest chunk while that log holds more than its
 * share (read items promoted to main, the rest evicted leaving a ghost);
 * else the main log's oldest chunk, CLOCK (read items copied forward with
 * the bit cleared, the rest evicted, no ghost). Chunks are built from
 * 16 KiB items, four to a chunk. Writers append to probation only (a key
 * whose ghost is in its bucket enters it marked read), so a chunk of the
 * main log is built as the cache builds one: its four items are set, read,
 * and promoted by an eviction step.
 *
 * The eviction reserve: a writer leaves the last SHMC__EVICTION_RESERVE
 * free chunks to eviction steps (which need room to move what they keep);
 * down to it, it runs an eviction step itself. Tests that need the free
 * chunks down to the reserve fill them as a step's allocations do
 * (t->making_room set), since a writer alone would never get there.
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
#include "tu_verify.h"
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
 * chunk Y: b0..b3 (four live); the overwrites go to a third, open chunk.
 * X is both the oldest probationary chunk (with probation over its share)
 * and the emptiest: the victim of a direct reclaim by either rule, for
 * tests of what happens to a victim. */
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

/* -------------------------------------------------- two logs: helpers */

/* The probationary log's share of the chunks (sweeper.c: S3-FIFO's 10%). */
static uint32_t small_share(const shmc_cache *c)
{
	uint32_t w = c->geo.nchunks / 10;

	return w ? w : 1;
}

static void set_big_ttl(shmc_cache *c, const char *key, char fill, uint32_t ttl_ms)
{
	size_t klen = strlen(key), vlen = BIG_ITEM - SHMC__ITEM_HDR - klen;
	unsigned char *val = malloc(vlen);

	assert_non_null(val);
	memset(val, fill, vlen);
	assert_int_equal(shmc_set(c, key, klen, val, vlen, ttl_ms, 0), 0);
	free(val);
}

static uint16_t *ghost_of(shmc_cache *c, const char *key, uint16_t *fp)
{
	struct shmc__keyref k;

	shmc__keyref_init(c, &k, key, strlen(key));
	if (fp != NULL)
		*fp = shmc__ghost_fp(&k);
	return &c->buckets[k.bucket].ghost;
}

/* Where key's item is, without setting its reference bit (a GET would). */
struct where {
	bool found;
	uint32_t chunk, log;
	uint8_t refbit;
};

static struct where where_is(shmc_cache *c, const char *key)
{
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__keyref k;
	struct shmc__found f;
	struct where w = {0};

	shmc__keyref_init(c, &k, key, strlen(key));
	shmc__rcu_read_enter(c, t);
	if (shmc__index_find(c, &k, &f) == 0) {
		w.found = true;
		w.chunk = shmc__chunk_of(c, shmc__entry_off(f.entry));
		w.log = c->chunks[w.chunk].log;
		w.refbit = f.hdr.refbit;
	}
	shmc__rcu_read_exit(c, t);
	return w;
}

/* Read key (sets its reference bit); it must hold fill. */
static void read_big(shmc_cache *c, const char *key, char fill)
{
	char got;

	assert_int_equal(get_big(c, key, &got), 0);
	assert_int_equal(got, fill);
}

/* Seal the test thread's open chunks (one per log). */
static void seal_open(shmc_cache *c)
{
	shmc__log_thread_done(c, tctx_of(c));
}

static struct shmc_stats stats_now(shmc_cache *c)
{
	struct shmc_stats st;

	assert_int_equal(shmc_stats(c, &st), 0);
	return st;
}

static void assert_verify_clean(void **state)
{
	assert_int_equal(tu_verify_clean(fixture_of(state)->name, NULL), 0);
}

/* One eviction step that must take the sealed probationary chunk holding
 * key[0..3] (all read, and the oldest such chunk, with nothing expired or
 * half dead anywhere) and promote all four to the main log, as it does
 * with read items leaving probation: into the calling thread's open main
 * chunk, which it opens for them, each with a fresh (clear) bit. Returns
 * that chunk. */
static uint32_t step_promotes(shmc_cache *c, const char *const key[4])
{
	uint32_t from = chunk_of_key(c, key[0]);

	assert_int_equal(c->chunks[from].log, SHMC__LOG_SMALL);
	assert_int_equal(c->chunks[from].state, SHMC__CHUNK_SEALED);
	struct shmc_stats st0 = stats_now(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[from].state, SHMC__CHUNK_RETIRED);
	uint32_t to = chunk_of_key(c, key[0]);
	for (int i = 0; i < 4; i++) {
		struct where w = where_is(c, key[i]);

		assert_true(w.found);
		assert_int_equal(w.chunk, to);
		assert_int_equal(w.log, SHMC__LOG_MAIN);
		assert_int_equal(w.refbit, 0);
	}
	assert_int_equal(st1.promotions - st0.promotions, 4);
	assert_int_equal(st1.evictions, st0.evictions);
	return to;
}

/* ----------------------------------------- direct reclaim: the victim */

/* Probation over its share (every chunk is probationary): the oldest
 * probationary chunk X (four live) goes, not the emptier, younger Y (two
 * of its four deleted). */
static void test_sweeper_reclaim_over_share_picks_oldest_probation_chunk(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const x_[] = {"x0", "x1", "x2", "x3"};
	static const char *const y_[] = {"y0", "y1", "y2", "y3"};

	for (int i = 0; i < 4; i++)
		set_big(c, x_[i], 'x');
	for (int i = 0; i < 4; i++)
		set_big(c, y_[i], 'y');
	set_big(c, "z0", 'z'); /* seals Y: three probationary chunks */
	assert_int_equal(shmc_del(c, "y0", 2), 0);
	assert_int_equal(shmc_del(c, "y1", 2), 0);
	uint32_t x = chunk_of_key(c, "x0"), y = chunk_of_key(c, "y2");
	assert_int_equal(c->chunks[x].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[y].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[y].dead == 2 * BIG_ITEM && c->chunks[x].dead == 0);
	assert_true(c->chunks[x].open_seq < c->chunks[y].open_seq);
	assert_true(stats_now(c).chunks_probation > small_share(c));

	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_int_equal(c->chunks[x].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[y].state, SHMC__CHUNK_SEALED);
	for (int i = 0; i < 4; i++)
		assert_false(where_is(c, x_[i]).found);
	read_big(c, "y2", 'y');
	read_big(c, "y3", 'y');
}

/* Probation within its share: its one sealed chunk S (four live, older)
 * stays; the main chunk M, two of whose four were deleted, goes. */
static void test_sweeper_reclaim_within_share_picks_least_live_chunk(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const m[] = {"m0", "m1", "m2", "m3"};
	static const char *const s_[] = {"s0", "s1", "s2", "s3"};

	for (int i = 0; i < 4; i++)
		set_big(c, m[i], 'm');
	for (int i = 0; i < 4; i++)
		set_big(c, s_[i], 's');
	for (int i = 0; i < 4; i++)
		read_big(c, m[i], 'm');
	seal_open(c);
	uint32_t km = step_promotes(c, m);
	seal_open(c);
	assert_int_equal(shmc_del(c, "m0", 2), 0);
	assert_int_equal(shmc_del(c, "m1", 2), 0);
	uint32_t ks = chunk_of_key(c, "s0");
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[ks].open_seq < c->chunks[km].open_seq);
	assert_true(c->chunks[km].dead == 2 * BIG_ITEM && c->chunks[ks].dead == 0);
	assert_true(stats_now(c).chunks_probation <= small_share(c));

	assert_true(shmc__reclaim_direct(c, tctx_of(c)));
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_SEALED);
	assert_false(where_is(c, "m2").found);
	assert_false(where_is(c, "m3").found);
	for (int i = 0; i < 4; i++)
		read_big(c, s_[i], 's');
}

/* ------------------------------------------------ eviction step order */

/* A: a0..a3 (oldest, all live); B: b0..b3 with b0 and b1 overwritten (half
 * dead); C: c0..c3 with a 30 ms TTL, all expired. Three steps take C
 * (expired first, though the youngest), then B (compaction, nothing
 * lost), then A (oldest of probation: unread, evicted). */
static void test_sweeper_evict_step_order_expired_then_half_dead_then_oldest(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const a[] = {"a0", "a1", "a2", "a3"};
	static const char *const b[] = {"b0", "b1", "b2", "b3"};
	static const char *const cc[] = {"c0", "c1", "c2", "c3"};
	char fill;

	for (int i = 0; i < 4; i++)
		set_big(c, a[i], 'a');
	for (int i = 0; i < 4; i++)
		set_big(c, b[i], 'b');
	for (int i = 0; i < 4; i++)
		set_big_ttl(c, cc[i], 'c', 30);
	set_big(c, "b0", 'B');
	set_big(c, "b1", 'B');
	uint32_t ka = chunk_of_key(c, "a0"), kb = chunk_of_key(c, "b2"), kc = chunk_of_key(c, "c0");
	assert_int_equal(c->chunks[ka].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[kb].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[kc].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[kb].dead * 2 == c->chunks[kb].used);
	assert_true(c->chunks[ka].open_seq < c->chunks[kb].open_seq &&
		    c->chunks[kb].open_seq < c->chunks[kc].open_seq);
	tu_sleep_ms(80); /* c0..c3 expire */

	/* 1: the wholly expired chunk, its items counted as expirations. */
	struct shmc_stats st0 = stats_now(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[kc].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[ka].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->chunks[kb].state, SHMC__CHUNK_SEALED);
	for (int i = 0; i < 4; i++)
		assert_false(where_is(c, cc[i]).found);
	assert_int_equal(st1.expirations - st0.expirations, 4);
	assert_int_equal(st1.evictions, st0.evictions);

	/* 2: the half-dead chunk, compacted: nothing lost. */
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st2 = stats_now(c);
	assert_int_equal(c->chunks[kb].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[ka].state, SHMC__CHUNK_SEALED);
	assert_int_equal(st2.evictions, st1.evictions);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(get_big(c, b[i], &fill), 0);
		assert_int_equal(fill, i < 2 ? 'B' : 'b');
	}

	/* 3: the oldest probationary chunk: unread, so evicted. */
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st3 = stats_now(c);
	assert_int_equal(c->chunks[ka].state, SHMC__CHUNK_RETIRED);
	for (int i = 0; i < 4; i++)
		assert_false(where_is(c, a[i]).found);
	assert_int_equal(st3.evictions - st2.evictions, 4);
	assert_int_equal(st3.evictions_probation - st2.evictions_probation, 4);
	assert_int_equal(st3.evictions_direct, st0.evictions_direct);
	assert_verify_clean(state);
}

/* A main-log chunk m0..m3, m0 and m1 overwritten (half dead), m2 read:
 * compaction moves m2 and m3 within main, m2 keeping its reference bit
 * and m3 its clear one; nothing is evicted or promoted. */
static void test_sweeper_evict_step_compacts_half_dead_main_chunk_keeping_refbits(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const m[] = {"m0", "m1", "m2", "m3"};

	for (int i = 0; i < 4; i++)
		set_big(c, m[i], 'm');
	for (int i = 0; i < 4; i++)
		read_big(c, m[i], 'm');
	seal_open(c);
	uint32_t km = step_promotes(c, m);
	read_big(c, "m2", 'm');
	set_big(c, "m0", 'M');
	set_big(c, "m1", 'M');
	seal_open(c);
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[km].dead * 2 == c->chunks[km].used);
	assert_int_equal(where_is(c, "m2").refbit, 1);
	assert_int_equal(where_is(c, "m3").refbit, 0);

	struct shmc_stats st0 = stats_now(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_RETIRED);
	struct where w2 = where_is(c, "m2"), w3 = where_is(c, "m3");
	assert_true(w2.found && w3.found);
	assert_int_not_equal(w2.chunk, km);
	assert_int_not_equal(w3.chunk, km);
	assert_int_equal(w2.log, SHMC__LOG_MAIN);
	assert_int_equal(w3.log, SHMC__LOG_MAIN);
	assert_int_equal(w2.refbit, 1);
	assert_int_equal(w3.refbit, 0);
	assert_int_equal(st1.evictions, st0.evictions);
	assert_int_equal(st1.promotions, st0.promotions);
	assert_int_equal(st1.items, st0.items);
	read_big(c, "m0", 'M');
	read_big(c, "m1", 'M');
	read_big(c, "m2", 'm');
	read_big(c, "m3", 'm');
	assert_verify_clean(state);
}

/* A probationary chunk s0..s3, s0 and s1 overwritten, s2 read: compaction
 * keeps both live items; the read one graduates to main (a promotion,
 * with a fresh bit), the unread one stays on probation. */
static void test_sweeper_evict_step_compacts_half_dead_probation_chunk_promoting_read(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const s_[] = {"s0", "s1", "s2", "s3"};

	for (int i = 0; i < 4; i++)
		set_big(c, s_[i], 's');
	uint32_t ks = chunk_of_key(c, "s0");
	assert_int_equal(c->chunks[ks].log, SHMC__LOG_SMALL);
	read_big(c, "s2", 's');
	set_big(c, "s0", 'S');
	set_big(c, "s1", 'S');
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_SEALED);

	struct shmc_stats st0 = stats_now(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_RETIRED);
	struct where w2 = where_is(c, "s2"), w3 = where_is(c, "s3");
	assert_true(w2.found && w3.found);
	assert_int_equal(w2.log, SHMC__LOG_MAIN);
	assert_int_equal(w2.refbit, 0);
	assert_int_equal(w3.log, SHMC__LOG_SMALL);
	assert_int_equal(w3.refbit, 0);
	assert_int_equal(st1.promotions - st0.promotions, 1);
	assert_int_equal(st1.evictions, st0.evictions);
	read_big(c, "s2", 's');
	read_big(c, "s3", 's');
	assert_verify_clean(state);
}

/* Main chunk M (oldest of all), then probationary chunks P (p0..p3, p0
 * and p2 read) and as many more as the probation share, all sealed: the
 * probationary log is over its share, so the step takes P, not the older
 * M. p0 and p2 are promoted to main with a fresh bit; p1 and p3 are
 * evicted, each leaving its ghost, which marks p1 read when it is set
 * again (it enters probation, and will leave it by promotion). */
static void test_sweeper_evict_step_over_share_probation_promotes_read_evicts_rest(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const m[] = {"m0", "m1", "m2", "m3"};
	static const char *const p[] = {"p0", "p1", "p2", "p3"};
	const uint32_t share = small_share(c);
	uint16_t fp1, fp3;
	uint16_t *g1 = ghost_of(c, "p1", &fp1), *g3 = ghost_of(c, "p3", &fp3);

	assert_true(g1 != g3); /* distinct buckets: each keeps its ghost */
	for (int i = 0; i < 4; i++)
		set_big(c, m[i], 'm');
	for (int i = 0; i < 4; i++)
		read_big(c, m[i], 'm');
	seal_open(c);
	uint32_t km = step_promotes(c, m);
	for (int i = 0; i < 4; i++)
		set_big(c, p[i], 'p');
	for (uint32_t j = 0; j < share; j++)
		for (int i = 0; i < 4; i++) {
			char key[16];

			snprintf(key, sizeof key, "f%u-%d", j, i);
			set_big(c, key, 'f');
		}
	seal_open(c);
	uint32_t kp = chunk_of_key(c, "p0");
	assert_true(c->chunks[km].open_seq < c->chunks[kp].open_seq);
	read_big(c, "p0", 'p');
	read_big(c, "p2", 'p');
	assert_int_not_equal(*g1, fp1);
	assert_int_not_equal(*g3, fp3);

	struct shmc_stats st0 = stats_now(c);
	assert_int_equal(st0.chunks_probation, share + 1); /* over its share */
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[kp].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_SEALED);
	for (int i = 0; i < 4; i += 2) {
		struct where w = where_is(c, p[i]);

		assert_true(w.found);
		assert_int_equal(w.log, SHMC__LOG_MAIN);
		assert_int_equal(w.refbit, 0);
		read_big(c, p[i], 'p');
	}
	assert_false(where_is(c, "p1").found);
	assert_false(where_is(c, "p3").found);
	assert_int_equal(*g1, fp1);
	assert_int_equal(*g3, fp3);
	assert_int_equal(st1.promotions - st0.promotions, 2);
	assert_int_equal(st1.evictions - st0.evictions, 2);
	assert_int_equal(st1.evictions_probation - st0.evictions_probation, 2);

	/* Asked for again: on probation but marked read, the ghost spent. */
	set_big(c, "p1", 'P');
	struct where w1 = where_is(c, "p1");
	assert_int_equal(w1.log, SHMC__LOG_SMALL);
	assert_int_equal(w1.refbit, 1);
	assert_int_equal(*g1, 0);
	assert_verify_clean(state);
}

/* Probationary chunk S (older, within its share) and main chunk M (m0..m3,
 * m1 and m3 read), both sealed: the step takes M by CLOCK. m1 and m3 are
 * copied forward within main with the bit cleared; m0 and m2 are evicted
 * and, leaving main, leave no ghost. S is untouched. */
static void test_sweeper_evict_step_main_clock_copies_read_forward_bit_cleared(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const s_[] = {"s0", "s1", "s2", "s3"};
	static const char *const m[] = {"m0", "m1", "m2", "m3"};

	/* m0..m3 are set first, so that theirs is the oldest probationary
	 * chunk, which the step promoting them takes; M is opened by that
	 * step, after S. */
	for (int i = 0; i < 4; i++)
		set_big(c, m[i], 'm');
	for (int i = 0; i < 4; i++)
		set_big(c, s_[i], 's');
	for (int i = 0; i < 4; i++)
		read_big(c, m[i], 'm');
	seal_open(c);
	uint32_t km = step_promotes(c, m);
	seal_open(c);
	uint32_t ks = chunk_of_key(c, "s0");
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[ks].open_seq < c->chunks[km].open_seq);
	read_big(c, "m1", 'm');
	read_big(c, "m3", 'm');
	struct shmc_stats st0 = stats_now(c);
	assert_true(st0.chunks_probation <= small_share(c)); /* within its share */

	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[km].state, SHMC__CHUNK_RETIRED);
	assert_int_equal(c->chunks[ks].state, SHMC__CHUNK_SEALED);
	for (int i = 1; i < 4; i += 2) {
		struct where w = where_is(c, m[i]);

		assert_true(w.found);
		assert_int_not_equal(w.chunk, km);
		assert_int_equal(w.log, SHMC__LOG_MAIN);
		assert_int_equal(w.refbit, 0);
	}
	for (int i = 0; i < 4; i += 2) {
		assert_false(where_is(c, m[i]).found);
		assert_int_equal(*ghost_of(c, m[i], NULL), 0);
	}
	assert_int_equal(st1.evictions - st0.evictions, 2);
	assert_int_equal(st1.evictions_clock - st0.evictions_clock, 2);
	assert_int_equal(st1.promotions, st0.promotions);
	read_big(c, "m1", 'm');
	read_big(c, "m3", 'm');
	for (int i = 0; i < 4; i++)
		read_big(c, s_[i], 's');
	assert_verify_clean(state);
}

/* g0..g3, never read, evicted from probation: each leaves its ghost. Set
 * again, g1 enters probation marked read (its ghost spent), so that when
 * its chunk leaves probation it is promoted though nobody read it since;
 * h0..h2, unread, in the same chunk, are evicted. */
static void test_sweeper_evict_step_ghost_readmitted_key_promoted_unread(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char *const g[] = {"g0", "g1", "g2", "g3"};
	static const char *const h[] = {"h0", "h1", "h2"};
	uint16_t fp1;
	uint16_t *g1 = ghost_of(c, "g1", &fp1);

	for (int i = 0; i < 4; i++)
		assert_true(i == 1 || ghost_of(c, g[i], NULL) != g1); /* g1's ghost stays */
	for (int i = 0; i < 4; i++)
		set_big(c, g[i], 'g');
	seal_open(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	assert_false(where_is(c, "g1").found);
	assert_int_equal(*g1, fp1);

	set_big(c, "g1", 'G');
	for (int i = 0; i < 3; i++)
		set_big(c, h[i], 'h');
	seal_open(c);
	struct where w = where_is(c, "g1");
	assert_int_equal(w.log, SHMC__LOG_SMALL);
	assert_int_equal(w.refbit, 1);
	assert_int_equal(*g1, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(chunk_of_key(c, h[i]), w.chunk);

	struct shmc_stats st0 = stats_now(c);
	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[w.chunk].state, SHMC__CHUNK_RETIRED);
	struct where wp = where_is(c, "g1");
	assert_true(wp.found);
	assert_int_equal(wp.log, SHMC__LOG_MAIN);
	assert_int_equal(wp.refbit, 0);
	for (int i = 0; i < 3; i++)
		assert_false(where_is(c, h[i]).found);
	assert_int_equal(st1.promotions - st0.promotions, 1);
	assert_int_equal(st1.evictions_probation - st0.evictions_probation, 3);
	read_big(c, "g1", 'G');
	assert_verify_clean(state);
}

/* ----------------------------------------------- the eviction reserve */

#define RESERVE_READ_KEY "r001" /* in the oldest chunk; read, so kept */

static uint32_t free_chunks(const shmc_cache *c)
{
	uint32_t n = 0;

	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		n += c->chunks[k].state == SHMC__CHUNK_FREE;
	return n;
}

/* Set r000, r001, ... until exactly SHMC__EVICTION_RESERVE chunks are
 * free and the test thread's open (probationary) chunk is full; then read
 * RESERVE_READ_KEY. The sets allocate as an eviction step does
 * (t->making_room): a writer alone never gets down to the reserve, since
 * it runs a step of its own whenever it leaves fewer than
 * shmc__free_critical() free. Nothing is evicted on the way. Returns the
 * oldest chunk, which holds r000..r003. */
static uint32_t fill_down_to_reserve(shmc_cache *c)
{
	struct shmc__tctx *t = tctx_of(c);
	unsigned n = 4 * (c->geo.nchunks - SHMC__EVICTION_RESERVE);
	char key[16];

	t->making_room = true;
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof key, "r%03u", i);
		set_big(c, key, 'r');
	}
	t->making_room = false;
	assert_int_equal(free_chunks(c), SHMC__EVICTION_RESERVE);
	assert_true(t->open[SHMC__LOG_SMALL].used == CHUNK_BYTES);
	assert_int_equal(stats_now(c).evictions, 0);
	read_big(c, RESERVE_READ_KEY, 'r');
	uint32_t oldest = chunk_of_key(c, "r000");
	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		if (c->chunks[k].state == SHMC__CHUNK_SEALED)
			assert_true(c->chunks[oldest].open_seq <= c->chunks[k].open_seq);
	return oldest;
}

/* Free chunks down to the reserve, nothing waiting for a grace period: a
 * writer that needs a chunk does not take one of the reserve but runs an
 * eviction step, which takes the oldest probationary chunk by policy (the
 * read item promoted, not evicted outright); the set succeeds and the
 * reserve is still there afterwards. */
static void test_sweeper_writer_at_reserve_runs_eviction_step(void **state)
{
	shmc_cache *c = cache_of(state);
	uint32_t oldest = fill_down_to_reserve(c);
	struct shmc_stats st0 = stats_now(c);

	set_big(c, "w", 'w');
	struct shmc_stats st1 = stats_now(c);
	read_big(c, "w", 'w');
	uint32_t st = c->chunks[oldest].state;
	assert_true(st == SHMC__CHUNK_RETIRED || st == SHMC__CHUNK_FREE);
	struct where kept = where_is(c, RESERVE_READ_KEY);
	assert_true(kept.found);
	assert_int_equal(kept.log, SHMC__LOG_MAIN);
	for (int i = 0; i < 4; i++) {
		char key[16];

		snprintf(key, sizeof key, "r%03d", i);
		assert_int_equal(where_is(c, key).found, strcmp(key, RESERVE_READ_KEY) == 0);
	}
	assert_true(st1.promotions - st0.promotions >= 1);
	assert_true(st1.evictions_probation - st0.evictions_probation >= 3);
	assert_int_equal(st1.evictions_direct, st0.evictions_direct);
	if (free_chunks(c) < SHMC__EVICTION_RESERVE)
		fail_msg("%u free chunks after the set, reserve %u", free_chunks(c),
			 SHMC__EVICTION_RESERVE);
	assert_verify_clean(state);
}

/* Free chunks down to the reserve: an eviction step still takes one of
 * them to move what it keeps into, rather than evicting another chunk
 * outright to make room. */
static void test_sweeper_evict_step_takes_reserve(void **state)
{
	shmc_cache *c = cache_of(state);
	uint32_t oldest = fill_down_to_reserve(c);
	struct shmc_stats st0 = stats_now(c);

	assert_true(shmc__evict_step(c, tctx_of(c)));
	struct shmc_stats st1 = stats_now(c);
	assert_int_equal(c->chunks[oldest].state, SHMC__CHUNK_RETIRED);
	struct where kept = where_is(c, RESERVE_READ_KEY);
	assert_true(kept.found);
	assert_int_equal(kept.log, SHMC__LOG_MAIN);
	assert_int_equal(c->chunks[kept.chunk].state, SHMC__CHUNK_OPEN);
	assert_int_equal(free_chunks(c), SHMC__EVICTION_RESERVE - 1);
	assert_int_equal(st1.promotions - st0.promotions, 1);
	assert_int_equal(st1.evictions_probation - st0.evictions_probation, 3);
	assert_int_equal(st1.evictions_direct, st0.evictions_direct);
	assert_verify_clean(state);
}

/* The sweeper's low watermark and a writer's critical level count the
 * reserve in: both ask for room before only the reserve is left. */
static void test_sweeper_watermarks_above_reserve(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_true(shmc__free_critical(c) > SHMC__EVICTION_RESERVE);
	assert_true(shmc__free_low(c) > shmc__free_critical(c));
}

/* A writer alone, overwriting several times what fits, never leaves fewer
 * free chunks than the reserve (nobody reads, so nothing waits for a
 * grace period). */
static void test_sweeper_writer_never_takes_reserve(void **state)
{
	shmc_cache *c = cache_of(state);
	unsigned n = 3 * 4 * c->geo.nchunks;

	for (unsigned i = 0; i < n; i++) {
		char key[16];

		snprintf(key, sizeof key, "n%04u", i);
		set_big(c, key, 'n');
		if (free_chunks(c) < SHMC__EVICTION_RESERVE)
			fail_msg("%u free chunks after set %u, reserve %u", free_chunks(c), i,
				 SHMC__EVICTION_RESERVE);
	}
	assert_true(stats_now(c).evictions > 0);
	assert_int_equal(stats_now(c).evictions_direct, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_sweeper_overwrites_beyond_capacity_keep_succeeding),
		TEST(test_sweeper_overwrites_beyond_capacity_count_evictions),
		TEST(test_sweeper_overwrites_beyond_capacity_reads_latest_or_absent),
		TEST(test_sweeper_reclaim_without_sealed_chunk_returns_false),
		TEST(test_sweeper_reclaim_over_share_picks_oldest_probation_chunk),
		TEST(test_sweeper_reclaim_within_share_picks_least_live_chunk),
		TEST(test_sweeper_reclaim_unlinks_only_victim_items),
		TEST(test_sweeper_reclaim_counts_evictions),
		TEST(test_sweeper_reclaimed_chunk_stamped_for_reuse),
		TEST(test_sweeper_evict_step_order_expired_then_half_dead_then_oldest),
		TEST(test_sweeper_evict_step_compacts_half_dead_main_chunk_keeping_refbits),
		TEST(test_sweeper_evict_step_compacts_half_dead_probation_chunk_promoting_read),
		TEST(test_sweeper_evict_step_over_share_probation_promotes_read_evicts_rest),
		TEST(test_sweeper_evict_step_main_clock_copies_read_forward_bit_cleared),
		TEST(test_sweeper_evict_step_ghost_readmitted_key_promoted_unread),
		TEST(test_sweeper_writer_at_reserve_runs_eviction_step),
		TEST(test_sweeper_evict_step_takes_reserve),
		TEST(test_sweeper_watermarks_above_reserve),
		TEST(test_sweeper_writer_never_takes_reserve),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
