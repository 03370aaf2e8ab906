/*
 * test_verify.c - shmc__verify and `shmcache verify`: clean segments pass,
 * each kind of broken invariant is reported, the tool's exit status says so.
 */
#include "unitutil.h"

#include "handle.h"
#include "index.h"
#include "log.h"
#include "verify.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

static int setup(void **state)
{
	struct uu_params p = {.size_bytes = 4u << 20, .chunk_bytes = 64u << 10};
	return uu_setup(state, &p);
}

static void fill(shmc_cache *c, unsigned n)
{
	char key[32], val[200];
	memset(val, 'v', sizeof val);
	for (unsigned i = 0; i < n; i++) {
		size_t klen = (size_t)snprintf(key, sizeof key, "key-%u", i);
		assert_int_equal(shmc_set(c, key, klen, val, 50 + i % 150, 0, 0), 0);
		if (i % 5 == 0)
			assert_int_equal(shmc_del(c, key, klen), 0);
	}
}

static uint64_t verify_errors(shmc_cache *c)
{
	struct shmc__verify_report r = {0};
	assert_int_equal(shmc__verify(c, &r), 0);
	return r.errors;
}

/* The first non-empty slot of the index. */
static uint64_t *some_slot(shmc_cache *c, uint32_t *bucket)
{
	for (uint32_t b = 0; b < c->geo.nbuckets; b++)
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
			if (c->buckets[b].slot[s]) {
				*bucket = b;
				return &c->buckets[b].slot[s];
			}
	fail_msg("empty index");
	return NULL;
}

static uint64_t *empty_slot_outside(shmc_cache *c, uint32_t avoid)
{
	for (uint32_t b = 0; b < c->geo.nbuckets; b++)
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
			if (b != avoid && !c->buckets[b].slot[s])
				return &c->buckets[b].slot[s];
	fail_msg("full index");
	return NULL;
}

static void test_verify_mixed_writes_clean(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 20000); /* several times the data area: chunks retire and return */
	struct shmc__verify_report r = {0};
	assert_int_equal(shmc__verify(c, &r), 0);
	assert_int_equal(r.errors, 0);
	assert_true(r.items_reachable > 0);
	assert_int_equal(r.bytes_leaked, 0);
	assert_int_equal(r.procs_live, 1);
}

static void test_verify_item_reachable_twice_reported(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 100);
	uint32_t b;
	uint64_t *slot = some_slot(c, &b);
	*empty_slot_outside(c, b) = *slot;
	assert_true(verify_errors(c) > 0);
}

static void test_verify_entry_outside_data_reported(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 100);
	uint32_t b;
	uint64_t *slot = some_slot(c, &b);
	*slot = shmc__entry_make(shmc__entry_tag(*slot), c->geo.data_bytes + 100);
	assert_true(verify_errors(c) > 0);
}

static void test_verify_entry_into_free_chunk_reported(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 100);
	uint32_t free_chunk = UINT32_MAX;
	for (uint32_t k = 0; k < c->geo.nchunks && free_chunk == UINT32_MAX; k++)
		if (c->chunks[k].state == SHMC__CHUNK_FREE)
			free_chunk = k;
	assert_true(free_chunk != UINT32_MAX);
	uint32_t b;
	uint64_t *slot = some_slot(c, &b);
	*slot = shmc__entry_make(shmc__entry_tag(*slot), (uint64_t)free_chunk << c->geo.chunk_shift);
	assert_true(verify_errors(c) > 0);
}

static void test_verify_dead_exceeds_used_reported(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 100);
	uint32_t b;
	uint64_t off = shmc__entry_off(*some_slot(c, &b));
	struct shmc__chunk *ch = &c->chunks[shmc__chunk_of(c, off)];
	ch->dead = ch->used + 1;
	assert_true(verify_errors(c) > 0);
}

static void test_verify_broken_item_chain_reported(void **state)
{
	shmc_cache *c = cache_of(state);
	fill(c, 100);
	uint32_t b;
	uint64_t off = shmc__entry_off(*some_slot(c, &b));
	struct shmc__chunk *ch = &c->chunks[shmc__chunk_of(c, off)];
	ch->used += 3; /* a tail that is not an item */
	assert_true(verify_errors(c) > 0);
}

static int run_tool(const char *args)
{
	char cmd[512];
	/* ctest runs tests in the build directory, where the tool is built. */
	snprintf(cmd, sizeof cmd, "./shmcache %s >/dev/null 2>&1", args);
	int status = system(cmd);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_verify_tool_exit_status_follows_verdict(void **state)
{
	struct uu_fixture *f = fixture_of(state);
	char args[300];
	fill(f->c, 1000);
	snprintf(args, sizeof args, "verify %s", f->name);
	assert_int_equal(run_tool(args), 0);
	uint32_t b;
	uint64_t *slot = some_slot(f->c, &b);
	uint64_t saved = *slot;
	*slot = shmc__entry_make(shmc__entry_tag(saved), f->c->geo.data_bytes + 100);
	assert_int_equal(run_tool(args), 1);
	*slot = saved;
	assert_int_equal(run_tool(args), 0);
	assert_int_equal(run_tool("verify no-such-segment-here"), 1);
	assert_int_equal(run_tool("frobnicate x"), 2);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_verify_mixed_writes_clean),
		TEST(test_verify_item_reachable_twice_reported),
		TEST(test_verify_entry_outside_data_reported),
		TEST(test_verify_entry_into_free_chunk_reported),
		TEST(test_verify_dead_exceeds_used_reported),
		TEST(test_verify_broken_item_chain_reported),
		TEST(test_verify_tool_exit_status_follows_verdict),
	};
	(void)argc;
	(void)argv;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
