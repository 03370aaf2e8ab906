/*
 * test_index.c - the bucket hash table (index.c): key references, insert /
 * find / replace / remove, overflow into neighbour buckets (linear probing
 * at bucket granularity), and bounds checks on entries read from the
 * segment (a scribbled slot or item yields SHMC_ECORRUPT, never a crash).
 *
 * Keys that share a primary bucket are found by brute force over generated
 * keys (the hash is XXH3, the bucket its low 32 bits mapped onto nbuckets).
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
#include "unitutil.h"

#define SEGMENT_BYTES (4u << 20)
#define CHUNK_BYTES (64u << 10)
#define KEY_CAP 32
#define MAX_SEARCH 20000000u

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = 16,
		.max_threads = 64,
	};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

/* ---------------------------------------------------------------- helpers */

/* Append an item (never expiring) to this thread's chunk; its offset. */
static uint64_t append(shmc_cache *c, const char *key, const char *val)
{
	uint64_t off = UINT64_MAX;

	assert_int_equal(
		shmc__log_append(c, tctx_of(c), SHMC__LOG_SMALL, key, strlen(key), val, strlen(val), 0, &off), 0);
	return off;
}

static int insert(shmc_cache *c, const struct shmc__keyref *k, uint64_t off)
{
	struct shmc__tctx *t = tctx_of(c);
	int rc;

	shmc__bucket_lock(c, t, k->bucket);
	rc = shmc__index_insert_locked(c, k, off);
	shmc__bucket_unlock(c, t, k->bucket);
	return rc;
}

static int find(shmc_cache *c, const struct shmc__keyref *k, struct shmc__found *f)
{
	struct shmc__tctx *t = tctx_of(c);
	int rc;

	shmc__rcu_read_enter(c, t);
	rc = shmc__index_find(c, k, f);
	shmc__rcu_read_exit(c, t);
	return rc;
}

/* Locked replace / remove of a key known to be present, as a writer does
 * them; each returns the entry it displaced. */
static uint64_t replace(shmc_cache *c, const struct shmc__keyref *k, uint64_t off)
{
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__found f = {0};
	uint64_t prev;

	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, k->bucket);
	assert_int_equal(shmc__index_find(c, k, &f), 0);
	prev = shmc__index_replace_locked(c, k, &f, off);
	shmc__bucket_unlock(c, t, k->bucket);
	shmc__rcu_read_exit(c, t);
	return prev;
}

static uint64_t remove_key(shmc_cache *c, const struct shmc__keyref *k)
{
	struct shmc__tctx *t = tctx_of(c);
	struct shmc__found f = {0};
	uint64_t prev;

	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, k->bucket);
	assert_int_equal(shmc__index_find(c, k, &f), 0);
	prev = shmc__index_remove_locked(c, k, &f);
	shmc__bucket_unlock(c, t, k->bucket);
	shmc__rcu_read_exit(c, t);
	return prev;
}

/* Bucket number of a slot pointer. */
static uint32_t bucket_of_slot(shmc_cache *c, const uint64_t *slot)
{
	ptrdiff_t d = (const unsigned char *)slot - (const unsigned char *)c->buckets;

	return (uint32_t)(d / (ptrdiff_t)sizeof(struct shmc__bucket));
}

static uint32_t next_bucket(shmc_cache *c, uint32_t b, uint32_t n)
{
	return (uint32_t)(((uint64_t)b + n) % c->geo.nbuckets);
}

/* n keys ("col-<i>") that share one primary bucket, returned in *bucket. */
static void colliding_keys(shmc_cache *c, unsigned n, char keys[][KEY_CAP], uint32_t *bucket)
{
	struct shmc__keyref k;
	unsigned got = 0;

	for (uint32_t i = 0; i < MAX_SEARCH && got < n; i++) {
		char key[KEY_CAP];

		snprintf(key, sizeof key, "col-%u", i);
		shmc__keyref_init(c, &k, key, strlen(key));
		if (got == 0)
			*bucket = k.bucket;
		if (k.bucket == *bucket)
			snprintf(keys[got++], KEY_CAP, "%s", key);
	}
	if (got < n)
		fail_msg("found only %u keys for bucket %u", got, *bucket);
}

static void value_of(char *buf, size_t cap, const char *key)
{
	snprintf(buf, cap, "value-of-%s", key);
}

static void set_key(shmc_cache *c, const char *key)
{
	char val[64];

	value_of(val, sizeof val, key);
	assert_int_equal(shmc_set(c, key, strlen(key), val, strlen(val), 0, 0), 0);
}

/* 0 if key holds its value_of(); else the shmc_get code or -1 (wrong bytes). */
static int check_key(shmc_cache *c, const char *key)
{
	char expect[64], buf[64];
	size_t vlen = 0;
	int rc;

	value_of(expect, sizeof expect, key);
	rc = shmc_get(c, key, strlen(key), buf, sizeof buf, &vlen);
	if (rc != 0)
		return rc;
	return vlen == strlen(expect) && memcmp(buf, expect, vlen) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ key refs */

static void test_index_keyref_bucket_within_range(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	char key[KEY_CAP];
	uint32_t lowest = UINT32_MAX, highest = 0;

	for (unsigned i = 0; i < 100000; i++) {
		snprintf(key, sizeof key, "range-%u", i);
		shmc__keyref_init(c, &k, key, strlen(key));
		assert_true(k.bucket < c->geo.nbuckets);
		lowest = k.bucket < lowest ? k.bucket : lowest;
		highest = k.bucket > highest ? k.bucket : highest;
	}
	/* The mapping covers the table, not a corner of it. */
	assert_true(lowest < c->geo.nbuckets / 16);
	assert_true(highest > c->geo.nbuckets - c->geo.nbuckets / 16);
}

static void test_index_keyref_tag_is_hash_top_bits(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	char key[KEY_CAP];

	for (unsigned i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "tag-%u", i);
		shmc__keyref_init(c, &k, key, strlen(key));
		assert_true(k.hash == tu_key_hash(key, strlen(key)));
		assert_int_equal(k.tag, (uint16_t)(k.hash >> 48));
		assert_ptr_equal(k.key, key);
		assert_int_equal(k.klen, strlen(key));
	}
}

/* --------------------------------------------------- insert/find/replace */

static void test_index_insert_then_find_returns_item(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};
	uint64_t off = append(c, "alpha", "one");

	shmc__keyref_init(c, &k, "alpha", 5);
	assert_int_equal(insert(c, &k, off), 0);
	assert_int_equal(find(c, &k, &f), 0);
	assert_true(shmc__entry_off(f.entry) == off);
	assert_int_equal(shmc__entry_tag(f.entry), k.tag);
	assert_ptr_equal(f.item, c->data + off);
	assert_int_equal(f.hdr.klen, 5);
	assert_int_equal(f.hdr.vlen, 3);
	assert_int_equal(bucket_of_slot(c, f.slot), k.bucket);
	assert_true(*f.slot == f.entry);
}

static void test_index_find_absent_key_enotfound(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};

	set_key(c, "present");
	shmc__keyref_init(c, &k, "absent", 6);
	assert_int_equal(find(c, &k, &f), SHMC_ENOTFOUND);
}

static void test_index_replace_returns_previous_entry(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	uint64_t off1 = append(c, "beta", "first"), off2 = append(c, "beta", "second"), prev;

	shmc__keyref_init(c, &k, "beta", 4);
	assert_int_equal(insert(c, &k, off1), 0);
	prev = replace(c, &k, off2);
	assert_true(prev == shmc__entry_make(k.tag, off1));
}

static void test_index_replace_makes_new_item_found(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};
	uint64_t off1 = append(c, "gamma", "first"), off2 = append(c, "gamma", "second!");

	shmc__keyref_init(c, &k, "gamma", 5);
	assert_int_equal(insert(c, &k, off1), 0);
	replace(c, &k, off2);
	assert_int_equal(find(c, &k, &f), 0);
	assert_true(shmc__entry_off(f.entry) == off2);
	assert_int_equal(f.hdr.vlen, 7);
	assert_memory_equal(f.item + SHMC__ITEM_HDR + 5, "second!", 7);
}

static void test_index_remove_returns_previous_entry(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	uint64_t off = append(c, "delta", "x"), prev;

	shmc__keyref_init(c, &k, "delta", 5);
	assert_int_equal(insert(c, &k, off), 0);
	prev = remove_key(c, &k);
	assert_true(prev == shmc__entry_make(k.tag, off));
}

static void test_index_remove_makes_key_unfindable(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};
	uint64_t off = append(c, "epsilon", "x");

	shmc__keyref_init(c, &k, "epsilon", 7);
	assert_int_equal(insert(c, &k, off), 0);
	remove_key(c, &k);
	assert_int_equal(find(c, &k, &f), SHMC_ENOTFOUND);
	for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
		assert_true(c->buckets[k.bucket].slot[s] == 0);
}

/* ------------------------------------------------- overflow to neighbours */

static void test_index_full_bucket_eighth_key_goes_to_next_bucket(void **state)
{
	shmc_cache *c = cache_of(state);
	char keys[8][KEY_CAP];
	struct shmc__keyref k;
	struct shmc__found f = {0};
	uint32_t b;

	colliding_keys(c, 8, keys, &b);
	for (int i = 0; i < 8; i++)
		set_key(c, keys[i]);
	for (int i = 0; i < 7; i++) {
		shmc__keyref_init(c, &k, keys[i], strlen(keys[i]));
		assert_int_equal(find(c, &k, &f), 0);
		assert_int_equal(bucket_of_slot(c, f.slot), b);
	}
	shmc__keyref_init(c, &k, keys[7], strlen(keys[7]));
	assert_int_equal(k.bucket, b);
	assert_int_equal(find(c, &k, &f), 0);
	assert_int_equal(bucket_of_slot(c, f.slot), next_bucket(c, b, 1));
}

static void test_index_full_bucket_raises_probe(void **state)
{
	shmc_cache *c = cache_of(state);
	char keys[8][KEY_CAP];
	uint32_t b;

	colliding_keys(c, 8, keys, &b);
	for (int i = 0; i < 7; i++)
		set_key(c, keys[i]);
	assert_int_equal(c->buckets[b].probe, 0);
	set_key(c, keys[7]);
	assert_int_equal(c->buckets[b].probe, 1);
}

static void test_index_full_bucket_all_keys_findable(void **state)
{
	shmc_cache *c = cache_of(state);
	char keys[8][KEY_CAP];
	uint32_t b;

	colliding_keys(c, 8, keys, &b);
	for (int i = 0; i < 8; i++)
		set_key(c, keys[i]);
	for (int i = 0; i < 8; i++)
		if (check_key(c, keys[i]) != 0)
			fail_msg("%s: %d", keys[i], check_key(c, keys[i]));
}

/* Nine keys of one primary: seven there, two in the next bucket. Removing
 * one of the two leaves the eight others findable. */
static void test_index_neighbour_remove_keeps_others_findable(void **state)
{
	shmc_cache *c = cache_of(state);
	char keys[9][KEY_CAP];
	struct shmc__keyref k;
	struct shmc__found f = {0};
	uint32_t b;

	colliding_keys(c, 9, keys, &b);
	for (int i = 0; i < 9; i++)
		set_key(c, keys[i]);
	shmc__keyref_init(c, &k, keys[7], strlen(keys[7]));
	assert_int_equal(find(c, &k, &f), 0);
	assert_int_equal(bucket_of_slot(c, f.slot), next_bucket(c, b, 1));
	assert_int_equal(shmc_del(c, keys[7], strlen(keys[7])), 0);
	assert_int_equal(check_key(c, keys[7]), SHMC_ENOTFOUND);
	for (int i = 0; i < 9; i++)
		if (i != 7 && check_key(c, keys[i]) != 0)
			fail_msg("%s: %d after removing %s", keys[i], check_key(c, keys[i]),
				 keys[7]);
}

/* A key of the neighbour bucket itself still finds a slot there and both
 * primaries' keys stay findable. */
static void test_index_overflow_shares_neighbour_with_its_own_keys(void **state)
{
	shmc_cache *c = cache_of(state);
	char keys[8][KEY_CAP], own[KEY_CAP] = "";
	struct shmc__keyref k;
	uint32_t b;

	colliding_keys(c, 8, keys, &b);
	for (uint32_t i = 0; i < MAX_SEARCH && own[0] == '\0'; i++) {
		char key[KEY_CAP];

		snprintf(key, sizeof key, "own-%u", i);
		shmc__keyref_init(c, &k, key, strlen(key));
		if (k.bucket == next_bucket(c, b, 1))
			snprintf(own, sizeof own, "%s", key);
	}
	assert_true(own[0] != '\0');
	for (int i = 0; i < 8; i++)
		set_key(c, keys[i]);
	set_key(c, own);
	for (int i = 0; i < 8; i++)
		assert_int_equal(check_key(c, keys[i]), 0);
	assert_int_equal(check_key(c, own), 0);
}

/* The primary and all SHMC__MAX_PROBE neighbours full: SHMC_ENOSPC. */
static void test_index_all_neighbours_full_insert_enospc(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	uint64_t off = append(c, "zeta", "v");

	shmc__keyref_init(c, &k, "zeta", 4);
	/* Fill with entries of another tag (never compared with our key). */
	for (uint32_t n = 0; n <= SHMC__MAX_PROBE; n++)
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++)
			c->buckets[next_bucket(c, k.bucket, n)].slot[s] =
				shmc__entry_make((uint16_t)(k.tag + 1), off);
	assert_int_equal(insert(c, &k, off), SHMC_ENOSPC);
	/* One free slot at the far end is enough. */
	c->buckets[next_bucket(c, k.bucket, SHMC__MAX_PROBE)].slot[3] = 0;
	assert_int_equal(insert(c, &k, off), 0);
	struct shmc__found f = {0};
	assert_int_equal(find(c, &k, &f), 0);
}

/* ------------------------------------------------- hostile slot contents */

/* A slot of key's primary bucket, with key's tag, pointing at off. */
static void plant_entry(shmc_cache *c, const struct shmc__keyref *k, uint64_t off)
{
	c->buckets[k->bucket].slot[0] = shmc__entry_make(k->tag, off);
}

static void test_index_entry_outside_data_area_find_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	const uint64_t offs[] = {
		c->geo.data_bytes,
		c->geo.data_bytes + 64,
		c->geo.data_bytes + c->geo.chunk_bytes,
		SHMC__ENTRY_OFF_MASK,
		c->geo.data_bytes - 4,		  /* header crosses the end */
		(uint64_t)c->geo.chunk_bytes - 1, /* header crosses a chunk end */
	};
	struct shmc__keyref k;
	struct shmc__found f = {0};

	shmc__keyref_init(c, &k, "hostile", 7);
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		plant_entry(c, &k, offs[i]);
		if (find(c, &k, &f) != SHMC_ECORRUPT)
			fail_msg("offset %llu: not SHMC_ECORRUPT", (unsigned long long)offs[i]);
	}
}

static void test_index_entry_outside_data_area_get_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	char buf[64];
	size_t vlen = 0;

	shmc__keyref_init(c, &k, "hostile", 7);
	plant_entry(c, &k, c->geo.data_bytes + 4096);
	assert_int_equal(shmc_get(c, "hostile", 7, buf, sizeof buf, &vlen), SHMC_ECORRUPT);
}

static void test_index_entry_outside_data_area_get_ref_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	const void *val = NULL;
	size_t vlen = 0;

	shmc__keyref_init(c, &k, "hostile", 7);
	plant_entry(c, &k, SHMC__ENTRY_OFF_MASK);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, "hostile", 7, &val, &vlen), SHMC_ECORRUPT);
	assert_int_equal(shmc_read_end(c), 0);
}

static void test_index_entry_outside_data_area_set_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;

	shmc__keyref_init(c, &k, "hostile", 7);
	plant_entry(c, &k, c->geo.data_bytes + 4096);
	assert_int_equal(shmc_set(c, "hostile", 7, "v", 1, 0, 0), SHMC_ECORRUPT);
	assert_int_equal(shmc_del(c, "hostile", 7), SHMC_ECORRUPT);
	/* The bucket lock was released on the way out. */
	assert_int_equal(c->buckets[k.bucket].lock, 0);
}

/* Write an item header (and as much of the key as fits) at the end of the
 * last chunk: at data offset data_bytes - room. */
static uint64_t plant_item(shmc_cache *c, const struct shmc__keyref *k, uint64_t room,
			   uint32_t vlen)
{
	uint64_t off = c->geo.data_bytes - room;
	struct shmc__item_hdr h = {
		.vlen = vlen, .klen = (uint16_t)k->klen, .kind = SHMC__ITEM_VALUE};
	uint64_t key_room = room - SHMC__ITEM_HDR;

	memcpy(c->data + off, &h, sizeof h);
	memcpy(c->data + off + SHMC__ITEM_HDR, k->key,
	       k->klen < key_room ? k->klen : (size_t)key_room);
	return off;
}

static void test_index_item_value_crossing_chunk_end_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};
	char buf[64];
	size_t vlen = 0;

	shmc__keyref_init(c, &k, "hostile", 7);
	/* header + key fit, the value claims 30 bytes where 21 remain */
	plant_entry(c, &k, plant_item(c, &k, SHMC__ITEM_HDR + 7 + 21, 30));
	assert_int_equal(find(c, &k, &f), SHMC_ECORRUPT);
	assert_int_equal(shmc_get(c, "hostile", 7, buf, sizeof buf, &vlen), SHMC_ECORRUPT);
}

static void test_index_item_huge_vlen_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};

	shmc__keyref_init(c, &k, "hostile", 7);
	plant_entry(c, &k, plant_item(c, &k, 4096, UINT32_MAX));
	assert_int_equal(find(c, &k, &f), SHMC_ECORRUPT);
}

static void test_index_item_key_crossing_chunk_end_ecorrupt(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};
	char buf[64];
	size_t vlen = 0;

	shmc__keyref_init(c, &k, "hostile", 7);
	/* header fits, the 7-byte key has 3 bytes left */
	plant_entry(c, &k, plant_item(c, &k, SHMC__ITEM_HDR + 3, 0));
	assert_int_equal(find(c, &k, &f), SHMC_ECORRUPT);
	assert_int_equal(shmc_get(c, "hostile", 7, buf, sizeof buf, &vlen), SHMC_ECORRUPT);
}

/* A scribbled probe count costs time (clamped), not safety. */
static void test_index_scribbled_probe_find_bounded(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__keyref k;
	struct shmc__found f = {0};

	shmc__keyref_init(c, &k, "probe", 5);
	c->buckets[k.bucket].probe = UINT16_MAX;
	assert_int_equal(find(c, &k, &f), SHMC_ENOTFOUND);
	set_key(c, "probe");
	assert_int_equal(check_key(c, "probe"), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_index_keyref_bucket_within_range),
		TEST(test_index_keyref_tag_is_hash_top_bits),
		TEST(test_index_insert_then_find_returns_item),
		TEST(test_index_find_absent_key_enotfound),
		TEST(test_index_replace_returns_previous_entry),
		TEST(test_index_replace_makes_new_item_found),
		TEST(test_index_remove_returns_previous_entry),
		TEST(test_index_remove_makes_key_unfindable),
		TEST(test_index_full_bucket_eighth_key_goes_to_next_bucket),
		TEST(test_index_full_bucket_raises_probe),
		TEST(test_index_full_bucket_all_keys_findable),
		TEST(test_index_neighbour_remove_keeps_others_findable),
		TEST(test_index_overflow_shares_neighbour_with_its_own_keys),
		TEST(test_index_all_neighbours_full_insert_enospc),
		TEST(test_index_entry_outside_data_area_find_ecorrupt),
		TEST(test_index_entry_outside_data_area_get_ecorrupt),
		TEST(test_index_entry_outside_data_area_get_ref_ecorrupt),
		TEST(test_index_entry_outside_data_area_set_ecorrupt),
		TEST(test_index_item_value_crossing_chunk_end_ecorrupt),
		TEST(test_index_item_huge_vlen_ecorrupt),
		TEST(test_index_item_key_crossing_chunk_end_ecorrupt),
		TEST(test_index_scribbled_probe_find_bounded),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
