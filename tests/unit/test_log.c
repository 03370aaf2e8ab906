/*
 * test_log.c - the allocator (log.c): appends into the thread's own chunk,
 * the size limit, chunk retirement when every byte is dead, reuse only after
 * an RCU grace period, and item expiry stored relative to the chunk base.
 *
 * Grace-period tests fill the segment so that the one retired chunk is the
 * only one the allocator could hand out next, with a reader thread (its own
 * thread context) holding a read section; the allocator must then refuse
 * (it waits up to its 2 s limit, then SHMC_ENOSPC) until the reader leaves.
 * They allocate as an eviction step does (t->making_room): a writer's
 * allocation leaves the last SHMC__EVICTION_RESERVE free chunks to eviction
 * steps and runs steps of its own when low (test_sweeper.c tests that), so
 * only a step's allocation can be down to one chunk it could take. (A
 * writer inside a read section, which no step ever is, is the exception:
 * its own section holds the one chunk, so it never gets to the reserve.)
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#include "unitutil.h"

#define SEGMENT_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)
#define ITEM_BYTES (16u << 10) /* four to a chunk */
#define KEY_LEN 7u	       /* "k-00000" */
#define VAL_LEN (ITEM_BYTES - SHMC__ITEM_HDR - KEY_LEN)
#define ITEMS_PER_CHUNK (CHUNK_BYTES / ITEM_BYTES)
#define READER_TIMEOUT_MS 30000u
#define SLACK_MS 50u /* coarse clock resolution, generously */

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = 8,
		.max_threads = 16,
	};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

static unsigned char value_buf[VAL_LEN];

/* Append a 16 KiB item "k-<i>" (never expiring) for thread t. */
static int append_item(shmc_cache *c, struct shmc__tctx *t, unsigned i, uint64_t *off)
{
	char key[16];

	snprintf(key, sizeof key, "k-%05u", i % 100000u);
	return shmc__log_append(c, t, SHMC__LOG_SMALL, key, KEY_LEN, value_buf, VAL_LEN, 0, off);
}

/* append_item() as an eviction step's allocation (t->making_room set): it
 * may take the eviction reserve, and it runs no eviction step itself (these
 * items are never published, so a step would retire any chunk it took).
 * The grace-period tests need every chunk handed out. */
static int append_item_as_step(shmc_cache *c, struct shmc__tctx *t, unsigned i, uint64_t *off)
{
	bool was = t->making_room;

	t->making_room = true;
	int rc = append_item(c, t, i, off);
	t->making_room = was;
	return rc;
}

/* --------------------------------------------------------------- appends */

static void test_log_append_advances_used(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off1, off2;

	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "a", 1, "xyz", 3, 0, &off1), 0);
	uint32_t k = t->open[SHMC__LOG_SMALL].chunk - 1;
	assert_true(off1 == (uint64_t)k << c->geo.chunk_shift);
	assert_true(c->chunks[k].used == SHMC__ITEM_HDR + 4);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_OPEN);
	assert_int_equal(c->chunks[k].owner, t->slot_idx + 1);
	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "bb", 2, "0123456789", 10, 0, &off2), 0);
	assert_int_equal(t->open[SHMC__LOG_SMALL].chunk - 1, k);
	assert_true(off2 == off1 + SHMC__ITEM_HDR + 4);
	assert_true(c->chunks[k].used == 2 * SHMC__ITEM_HDR + 4 + 12);
	assert_true(t->open[SHMC__LOG_SMALL].used == c->chunks[k].used);
}

static void test_log_append_writes_item_bytes(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__item_hdr h;
	uint64_t off;

	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "key", 3, "value", 5, 0, &off), 0);
	memcpy(&h, c->data + off, sizeof h);
	assert_int_equal(h.klen, 3);
	assert_int_equal(h.vlen, 5);
	assert_int_equal(h.expire_rel, 0);
	assert_int_equal(h.refbit, 0);
	assert_int_equal(h.kind, SHMC__ITEM_VALUE);
	assert_memory_equal(c->data + off + SHMC__ITEM_HDR, "keyvalue", 8);
}

static void test_log_append_full_chunk_opens_next(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off;

	for (unsigned i = 0; i < ITEMS_PER_CHUNK; i++)
		assert_int_equal(append_item(c, t, i, &off), 0);
	uint32_t first = t->open[SHMC__LOG_SMALL].chunk - 1;
	assert_true(c->chunks[first].used == CHUNK_BYTES);
	assert_int_equal(append_item(c, t, 99, &off), 0);
	assert_int_not_equal(t->open[SHMC__LOG_SMALL].chunk - 1, first);
	assert_int_equal(c->chunks[first].state, SHMC__CHUNK_SEALED);
	assert_true(off == (uint64_t)(t->open[SHMC__LOG_SMALL].chunk - 1) << c->geo.chunk_shift);
}

static void test_log_append_item_larger_than_chunk_etoobig(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	size_t vlen = CHUNK_BYTES - SHMC__ITEM_HDR - 4 + 1;
	unsigned char *val = calloc(1, vlen);
	uint64_t off;

	assert_non_null(val);
	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "kkkk", 4, val, vlen, 0, &off), SHMC_ETOOBIG);
	free(val);
}

static void test_log_append_item_filling_chunk_fits(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	size_t vlen = CHUNK_BYTES - SHMC__ITEM_HDR - 4;
	unsigned char *val = calloc(1, vlen);
	uint64_t off;

	assert_non_null(val);
	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "kkkk", 4, val, vlen, 0, &off), 0);
	assert_true(c->chunks[t->open[SHMC__LOG_SMALL].chunk - 1].used == CHUNK_BYTES);
	free(val);
}

static void test_log_set_value_larger_than_chunk_etoobig(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t vlen = CHUNK_BYTES;
	unsigned char *val = calloc(1, vlen);

	assert_non_null(val);
	assert_int_equal(shmc_set(c, "big", 3, val, vlen, 0, 0), SHMC_ETOOBIG);
	free(val);
}

/* ------------------------------------------------------------ retirement */

static void test_log_seal_all_dead_chunk_retires(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off1, off2, gp_before = c->hdr->gp_ctr;

	assert_int_equal(append_item(c, t, 1, &off1), 0);
	assert_int_equal(append_item(c, t, 2, &off2), 0);
	uint32_t k = t->open[SHMC__LOG_SMALL].chunk - 1;
	shmc__log_item_dead(c, t, off1, ITEM_BYTES);
	shmc__log_item_dead(c, t, off2, ITEM_BYTES);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_OPEN); /* open: not yet */
	shmc__log_thread_done(c, t);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_RETIRED);
	assert_true(c->chunks[k].retire_gp > gp_before);
	assert_true(c->chunks[k].retire_gp == c->hdr->gp_ctr);
}

static void test_log_last_item_dead_after_seal_retires(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off1, off2, gp_before = c->hdr->gp_ctr;

	assert_int_equal(append_item(c, t, 1, &off1), 0);
	assert_int_equal(append_item(c, t, 2, &off2), 0);
	uint32_t k = t->open[SHMC__LOG_SMALL].chunk - 1;
	shmc__chunk_seal(c, t, k);
	t->open[SHMC__LOG_SMALL].chunk = 0; /* the chunk is no longer this thread's */
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_SEALED);
	shmc__log_item_dead(c, t, off1, ITEM_BYTES);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[k].retire_gp == 0);
	shmc__log_item_dead(c, t, off2, ITEM_BYTES);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_RETIRED);
	assert_true(c->chunks[k].retire_gp > gp_before);
}

static void test_log_seal_with_live_items_stays_sealed(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off1, off2;

	assert_int_equal(append_item(c, t, 1, &off1), 0);
	assert_int_equal(append_item(c, t, 2, &off2), 0);
	uint32_t k = t->open[SHMC__LOG_SMALL].chunk - 1;
	shmc__log_item_dead(c, t, off1, ITEM_BYTES);
	shmc__log_thread_done(c, t);
	assert_int_equal(c->chunks[k].state, SHMC__CHUNK_SEALED);
	assert_true(c->chunks[k].dead == ITEM_BYTES);
}

/* ---------------------------------------------------------- grace period */

struct reader {
	shmc_cache *c;
	pthread_t thread;
	_Atomic int inside;  /* 1 once in the section */
	_Atomic int release; /* set by the test: leave the section */
	unsigned linger_ms;  /* after release, stay inside this long */
	uint64_t ctr;	     /* the reader word it published */
	int rc;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct shmc__tctx *t;

	r->rc = shmc_read_begin(r->c);
	if (r->rc != 0) {
		atomic_store(&r->inside, -1);
		return NULL;
	}
	t = uu_tctx(r->c);
	r->ctr = t->slot->rcu_ctr;
	atomic_store(&r->inside, 1);
	uu_wait_flag(&r->release, 1, READER_TIMEOUT_MS, 0, NULL);
	if (r->linger_ms)
		tu_sleep_ms(r->linger_ms);
	r->rc = shmc_read_end(r->c);
	return NULL;
}

static void reader_start(struct reader *r, shmc_cache *c)
{
	r->c = c;
	assert_int_equal(pthread_create(&r->thread, NULL, reader_main, r), 0);
	assert_true(uu_wait_flag(&r->inside, 1, READER_TIMEOUT_MS, 0, NULL));
	assert_true(r->ctr != 0);
}

static void reader_stop(struct reader *r)
{
	atomic_store(&r->release, 1);
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	assert_int_equal(r->rc, 0);
}

/* Fill the segment, as an eviction step's allocations (the reserve
 * included): the first chunk gets items that all die (it retires when
 * sealed), every other chunk gets live items. Returns the retired chunk.
 * If reader is non-NULL it is started right after the retirement. */
static uint32_t fill_but_one_retired(shmc_cache *c, struct shmc__tctx *t, struct reader *reader)
{
	uint64_t offs[ITEMS_PER_CHUNK], off;
	unsigned item = 0;

	for (unsigned i = 0; i < ITEMS_PER_CHUNK; i++)
		assert_int_equal(append_item_as_step(c, t, item++, &offs[i]), 0);
	uint32_t retired = t->open[SHMC__LOG_SMALL].chunk - 1;
	for (unsigned i = 0; i < ITEMS_PER_CHUNK; i++)
		shmc__log_item_dead(c, t, offs[i], ITEM_BYTES);
	/* The next append seals (and so retires) it and opens another. */
	assert_int_equal(append_item_as_step(c, t, item++, &off), 0);
	assert_int_equal(c->chunks[retired].state, SHMC__CHUNK_RETIRED);
	if (reader != NULL)
		reader_start(reader, c);
	for (unsigned n = 1; n < ITEMS_PER_CHUNK * (c->geo.nchunks - 1); n++)
		assert_int_equal(append_item_as_step(c, t, item++, &off), 0);
	/* Every chunk but the retired one is in use (the reserve too) and the
	 * open one is full. */
	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		if (k != retired && c->chunks[k].state != SHMC__CHUNK_OPEN &&
		    c->chunks[k].state != SHMC__CHUNK_SEALED)
			fail_msg("chunk %u in state %u", k, c->chunks[k].state);
	assert_true(t->open[SHMC__LOG_SMALL].used == CHUNK_BYTES);
	return retired;
}

static void test_log_retired_chunk_not_reused_while_older_reader(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	struct reader r = {0};
	uint64_t off;

	reader_start(&r, c); /* before the retirement */
	uint32_t retired = fill_but_one_retired(c, t, NULL);
	assert_true(c->chunks[retired].retire_gp > r.ctr);
	assert_int_equal(append_item_as_step(c, t, 1000, &off), SHMC_ENOSPC);
	assert_int_equal(c->chunks[retired].state, SHMC__CHUNK_RETIRED);
	reader_stop(&r);
}

static void test_log_retired_chunk_reused_after_reader_leaves(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	struct reader r = {0};
	uint64_t off;

	reader_start(&r, c);
	uint32_t retired = fill_but_one_retired(c, t, NULL);
	reader_stop(&r);
	assert_int_equal(append_item_as_step(c, t, 1000, &off), 0);
	assert_int_equal(t->open[SHMC__LOG_SMALL].chunk - 1, retired);
	assert_int_equal(c->chunks[retired].state, SHMC__CHUNK_OPEN);
	assert_true(off == (uint64_t)retired << c->geo.chunk_shift);
}

/* The reader leaves while the allocator waits: the allocation completes. */
static void test_log_allocation_waits_for_reader_then_succeeds(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	struct reader r = {.linger_ms = 300};
	uint64_t off;

	reader_start(&r, c);
	uint32_t retired = fill_but_one_retired(c, t, NULL);
	atomic_store(&r.release, 1); /* it leaves 300 ms from now */
	uint64_t t0 = tu_now_ms();
	int rc = append_item_as_step(c, t, 1000, &off);
	uint64_t waited = tu_now_ms() - t0;
	assert_int_equal(pthread_join(r.thread, NULL), 0);
	assert_int_equal(rc, 0);
	assert_int_equal(t->open[SHMC__LOG_SMALL].chunk - 1, retired);
	assert_true(waited >= 200);
}

/* The caller's own read section: no waiting for itself, SHMC_ENOSPC now. */
static void test_log_writer_inside_read_section_enospc_without_wait(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off;

	/* The section starts before the retirement, so it holds the chunk. */
	shmc__rcu_read_enter(c, t);
	fill_but_one_retired(c, t, NULL);
	uint64_t t0 = tu_now_ms();
	int rc = append_item(c, t, 1000, &off);
	uint64_t took = tu_now_ms() - t0;
	shmc__rcu_read_exit(c, t);
	assert_int_equal(rc, SHMC_ENOSPC);
	assert_true(took < 1000);
}

/* rcu.h: memory stamped R may be reused once "every live reader word is 0
 * or >= R". A reader that entered after the retirement published a word
 * >= R: it cannot hold the retired memory, so it must not block its reuse. */
static void test_log_reader_entered_after_retirement_does_not_block_reuse(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	struct reader r = {0};
	uint64_t off;

	uint32_t retired = fill_but_one_retired(c, t, &r);
	assert_true(r.ctr >= c->chunks[retired].retire_gp);
	int rc = append_item_as_step(c, t, 1000, &off);
	reader_stop(&r);
	if (rc != 0)
		fail_msg("reader word %llu >= retire stamp %llu, yet allocation got %s",
			 (unsigned long long)r.ctr,
			 (unsigned long long)c->chunks[retired].retire_gp, shmc_errname(rc));
	assert_int_equal(t->open[SHMC__LOG_SMALL].chunk - 1, retired);
}

/* ---------------------------------------------------------------- expiry */

static void found_item(shmc_cache *c, const char *key, struct shmc__found *f)
{
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__keyref k;

	shmc__keyref_init(c, &k, key, strlen(key));
	shmc__rcu_read_enter(c, t);
	int rc = shmc__index_find(c, &k, f);
	shmc__rcu_read_exit(c, t);
	assert_int_equal(rc, 0);
}

static void test_log_expiry_stored_relative_to_chunk_base(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__found f = {0};

	assert_int_equal(shmc_set(c, "ttl", 3, "v", 1, 5000, 0), 0);
	found_item(c, "ttl", &f);
	const struct shmc__chunk *ch = &c->chunks[shmc__chunk_of(c, shmc__entry_off(f.entry))];
	assert_true(f.hdr.expire_rel != 0);
	assert_true(f.expire_abs_ms == ch->base_ms + f.hdr.expire_rel);
	assert_true(shmc__item_expiry(ch, &f.hdr) == f.expire_abs_ms);
}

static void test_log_expiry_matches_ttl(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__found f = {0};

	uint64_t before = shmc__now_ms();
	assert_int_equal(shmc_set(c, "ttl", 3, "v", 1, 5000, 0), 0);
	uint64_t after = shmc__now_ms();
	found_item(c, "ttl", &f);
	const struct shmc__chunk *ch = &c->chunks[shmc__chunk_of(c, shmc__entry_off(f.entry))];
	uint64_t expire = ch->base_ms + f.hdr.expire_rel;
	if (expire < before + 5000 || expire > after + 5000 + SLACK_MS)
		fail_msg("expiry %llu outside [%llu, %llu]", (unsigned long long)expire,
			 (unsigned long long)(before + 5000),
			 (unsigned long long)(after + 5000 + SLACK_MS));
}

/* A later item of the same chunk keeps the same base: its offset from the
 * base grows with the clock. */
static void test_log_expiry_later_item_same_base(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__found f1 = {0}, f2 = {0};

	assert_int_equal(shmc_set(c, "ttl1", 4, "v", 1, 1000, 0), 0);
	tu_sleep_ms(30);
	assert_int_equal(shmc_set(c, "ttl2", 4, "v", 1, 1000, 0), 0);
	found_item(c, "ttl1", &f1);
	found_item(c, "ttl2", &f2);
	assert_int_equal(shmc__chunk_of(c, shmc__entry_off(f1.entry)),
			 shmc__chunk_of(c, shmc__entry_off(f2.entry)));
	assert_true(f2.hdr.expire_rel >= f1.hdr.expire_rel + 20);
	assert_true(f2.expire_abs_ms >= f1.expire_abs_ms + 20);
}

static void test_log_no_ttl_expire_rel_zero(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__found f = {0};

	assert_int_equal(shmc_set(c, "forever", 7, "v", 1, 0, 0), 0);
	found_item(c, "forever", &f);
	assert_int_equal(f.hdr.expire_rel, 0);
	assert_true(f.expire_abs_ms == 0);
}

/* An expiry the open chunk's base cannot express in 32 bits goes to a
 * fresh chunk (whose base is now). */
static void test_log_expiry_beyond_chunk_range_opens_fresh_chunk(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);
	uint64_t off1, off2, now = shmc__now_ms();

	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "a", 1, "v", 1, 0, &off1), 0);
	uint32_t k1 = t->open[SHMC__LOG_SMALL].chunk - 1;
	/* Pretend the chunk was opened 100 s ago. */
	t->open[SHMC__LOG_SMALL].base_ms -= 100000;
	c->chunks[k1].base_ms -= 100000;
	uint64_t expire = now + UINT32_MAX - 50000;
	assert_int_equal(shmc__log_append(c, t, SHMC__LOG_SMALL, "b", 1, "v", 1, expire, &off2), 0);
	uint32_t k2 = t->open[SHMC__LOG_SMALL].chunk - 1;
	assert_int_not_equal(k2, k1);
	struct shmc__item_hdr h;
	memcpy(&h, c->data + off2, sizeof h);
	assert_true(c->chunks[k2].base_ms + h.expire_rel == expire);
}

/* ttl_ms is a uint32_t: its largest value is a valid TTL (about 49.7 days)
 * and must be stored like any other. */
static void test_log_max_ttl_item_stored(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[8];
	size_t vlen = 0;

	int rc = shmc_set(c, "long", 4, "v", 1, UINT32_MAX, 0);
	if (rc != 0)
		fail_msg("shmc_set(ttl_ms = UINT32_MAX): %s (%s)", shmc_errname(rc),
			 shmc_errmsg(c));
	assert_int_equal(shmc_get(c, "long", 4, buf, sizeof buf, &vlen), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_log_append_advances_used),
		TEST(test_log_append_writes_item_bytes),
		TEST(test_log_append_full_chunk_opens_next),
		TEST(test_log_append_item_larger_than_chunk_etoobig),
		TEST(test_log_append_item_filling_chunk_fits),
		TEST(test_log_set_value_larger_than_chunk_etoobig),
		TEST(test_log_seal_all_dead_chunk_retires),
		TEST(test_log_last_item_dead_after_seal_retires),
		TEST(test_log_seal_with_live_items_stays_sealed),
		TEST(test_log_retired_chunk_not_reused_while_older_reader),
		TEST(test_log_retired_chunk_reused_after_reader_leaves),
		TEST(test_log_allocation_waits_for_reader_then_succeeds),
		TEST(test_log_writer_inside_read_section_enospc_without_wait),
		TEST(test_log_reader_entered_after_retirement_does_not_block_reuse),
		TEST(test_log_expiry_stored_relative_to_chunk_base),
		TEST(test_log_expiry_matches_ttl),
		TEST(test_log_expiry_later_item_same_base),
		TEST(test_log_no_ttl_expire_rel_zero),
		TEST(test_log_expiry_beyond_chunk_range_opens_fresh_chunk),
		TEST(test_log_max_ttl_item_stored),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
