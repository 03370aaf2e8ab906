/*
 * test_basic.c - single-process behaviour of the public operations:
 * get/set/del/incr semantics and flags, TTLs, stats counters, read-only
 * handles and the error-code tables. Each test gets a fresh segment named
 * after itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define SEGMENT_BYTES (4u << 20)

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
};

/* *state arrives as the test's name (cmocka prestate), leaves as a fixture. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	if (tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c) != 0) {
		fprintf(stderr, "setup: shmc_open(%s): %s\n", f->name,
		        shmc_errmsg(NULL));
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	free(f);
	return 0;
}

/* Tests that manage their own segments get only a name. */
static int setup_name_only(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	*state = f;
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)
#define TEST_NAMED(fn)                                                          \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_name_only, teardown, \
	                                         (void *)#fn)

static shmc_cache *cache_of(void **state)
{
	return ((struct fixture *)*state)->c;
}

/* Set key (a C string) to the bytes of val (a C string, no NUL). */
static int set_str(shmc_cache *c, const char *key, const char *val)
{
	return shmc_set(c, key, strlen(key), val, strlen(val), 0, 0);
}

/* Assert that key (C string) holds exactly the bytes of expected. */
static void assert_value_str(shmc_cache *c, const char *key, const char *expected)
{
	char buf[256];
	size_t vlen = 0;

	assert_int_equal(shmc_get(c, key, strlen(key), buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, strlen(expected));
	assert_memory_equal(buf, expected, vlen);
}

static void assert_absent(shmc_cache *c, const void *key, size_t klen)
{
	char buf[64];
	size_t vlen = 0;

	assert_int_equal(shmc_get(c, key, klen, buf, sizeof buf, &vlen),
	                 SHMC_ENOTFOUND);
}

/* ------------------------------------------------------------ get / set */

static void test_basic_set_then_get_returns_value(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "alpha", "one two three"), 0);
	assert_value_str(c, "alpha", "one two three");
}

static void test_basic_get_missing_key_enotfound(void **state)
{
	assert_absent(cache_of(state), "never-set", 9);
}

static void test_basic_binary_key_with_nul_is_distinct_key(void **state)
{
	shmc_cache *c = cache_of(state);
	static const char key_a[] = {'a', '\0', 'b', '\0', 'c'};
	static const char key_b[] = {'a', '\0', 'b', '\0', 'd'};
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, key_a, sizeof key_a, "A", 1, 0, 0), 0);
	assert_int_equal(shmc_set(c, key_b, sizeof key_b, "B", 1, 0, 0), 0);
	assert_int_equal(shmc_set(c, "a", 1, "short", 5, 0, 0), 0);

	assert_int_equal(shmc_get(c, key_a, sizeof key_a, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 1);
	assert_int_equal(buf[0], 'A');
	assert_int_equal(shmc_get(c, key_b, sizeof key_b, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 1);
	assert_int_equal(buf[0], 'B');
	assert_value_str(c, "a", "short");
}

static void test_basic_binary_value_with_nul_roundtrips(void **state)
{
	shmc_cache *c = cache_of(state);
	unsigned char val[512], buf[600];
	size_t vlen = 0;

	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (unsigned char)(i * 7u); /* includes many 0 bytes */
	assert_int_equal(shmc_set(c, "bin", 3, val, sizeof val, 0, 0), 0);
	assert_int_equal(shmc_get(c, "bin", 3, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, sizeof val);
	assert_memory_equal(buf, val, sizeof val);
}

static void test_basic_zero_length_value_roundtrips(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[8] = "xxxxxxx";
	size_t vlen = 12345;

	assert_int_equal(shmc_set(c, "empty", 5, "", 0, 0, 0), 0);
	assert_int_equal(shmc_get(c, "empty", 5, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 0);
}

static void test_basic_overwrite_replaces_value(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "k", "first value, rather long"), 0);
	assert_int_equal(set_str(c, "k", "second"), 0);
	assert_value_str(c, "k", "second");
	assert_int_equal(set_str(c, "k", "third and longer than the second one"), 0);
	assert_value_str(c, "k", "third and longer than the second one");
}

static void test_basic_get_small_buffer_erange_reports_size(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[8], pristine[8];
	size_t vlen = 0;

	memset(buf, 0x5a, sizeof buf);
	memcpy(pristine, buf, sizeof buf);
	assert_int_equal(set_str(c, "k", "0123456789abcdef"), 0);
	assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, &vlen), SHMC_ERANGE);
	assert_int_equal(vlen, 16);
	assert_memory_equal(buf, pristine, sizeof buf);
}

static void test_basic_get_null_buffer_zero_cap_erange_reports_size(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t vlen = 0;

	assert_int_equal(set_str(c, "k", "0123456789"), 0);
	assert_int_equal(shmc_get(c, "k", 1, NULL, 0, &vlen), SHMC_ERANGE);
	assert_int_equal(vlen, 10);
}

/* ------------------------------------------------------------- NX / XX */

static void test_basic_set_nx_on_present_eexist_keeps_value(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "k", "original"), 0);
	assert_int_equal(shmc_set(c, "k", 1, "new", 3, 0, SHMC_NX), SHMC_EEXIST);
	assert_value_str(c, "k", "original");
}

static void test_basic_set_nx_on_absent_stores(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_set(c, "k", 1, "added", 5, 0, SHMC_NX), 0);
	assert_value_str(c, "k", "added");
}

static void test_basic_set_xx_on_absent_enotfound_stores_nothing(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, SHMC_XX), SHMC_ENOTFOUND);
	assert_absent(c, "k", 1);
}

static void test_basic_set_xx_on_present_replaces(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "k", "old"), 0);
	assert_int_equal(shmc_set(c, "k", 1, "replaced", 8, 0, SHMC_XX), 0);
	assert_value_str(c, "k", "replaced");
}

static void test_basic_set_nx_and_xx_together_einval(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, SHMC_NX | SHMC_XX),
	                 SHMC_EINVAL);
	assert_absent(c, "k", 1);
}

/* ------------------------------------------------------------------ del */

static void test_basic_del_then_get_enotfound(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "k", "v"), 0);
	assert_int_equal(shmc_del(c, "k", 1), 0);
	assert_absent(c, "k", 1);
}

static void test_basic_del_absent_enotfound(void **state)
{
	assert_int_equal(shmc_del(cache_of(state), "nope", 4), SHMC_ENOTFOUND);
}

static void test_basic_del_twice_second_enotfound(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(set_str(c, "k", "v"), 0);
	assert_int_equal(shmc_del(c, "k", 1), 0);
	assert_int_equal(shmc_del(c, "k", 1), SHMC_ENOTFOUND);
}

/* ----------------------------------------------------------------- incr */

static void test_basic_incr_absent_creates_with_delta(void **state)
{
	shmc_cache *c = cache_of(state);
	int64_t out = 0;

	assert_int_equal(shmc_incr(c, "ctr", 3, 5, &out), 0);
	assert_int_equal(out, 5);
}

static void test_basic_incr_stores_decimal_ascii(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_incr(c, "ctr", 3, -42, NULL), 0);
	assert_value_str(c, "ctr", "-42");
}

static void test_basic_incr_existing_decimal_adds(void **state)
{
	shmc_cache *c = cache_of(state);
	int64_t out = 0;

	assert_int_equal(set_str(c, "ctr", "41"), 0);
	assert_int_equal(shmc_incr(c, "ctr", 3, 1, &out), 0);
	assert_int_equal(out, 42);
	assert_value_str(c, "ctr", "42");
}

static void test_basic_incr_negative_delta_subtracts(void **state)
{
	shmc_cache *c = cache_of(state);
	int64_t out = 0;

	assert_int_equal(set_str(c, "ctr", "10"), 0);
	assert_int_equal(shmc_incr(c, "ctr", 3, -25, &out), 0);
	assert_int_equal(out, -15);
}

static void test_basic_incr_non_numeric_enotnum_keeps_value(void **state)
{
	shmc_cache *c = cache_of(state);
	int64_t out = 777;

	assert_int_equal(set_str(c, "ctr", "abc"), 0);
	assert_int_equal(shmc_incr(c, "ctr", 3, 1, &out), SHMC_ENOTNUM);
	assert_value_str(c, "ctr", "abc");
}

static void test_basic_incr_past_int64_max_eoverflow_keeps_value(void **state)
{
	shmc_cache *c = cache_of(state);
	char max[32];

	snprintf(max, sizeof max, "%" PRId64, INT64_MAX);
	assert_int_equal(set_str(c, "ctr", max), 0);
	assert_int_equal(shmc_incr(c, "ctr", 3, 1, NULL), SHMC_EOVERFLOW);
	assert_value_str(c, "ctr", max);
}

static void test_basic_incr_below_int64_min_eoverflow_keeps_value(void **state)
{
	shmc_cache *c = cache_of(state);
	char min[32];

	snprintf(min, sizeof min, "%" PRId64, INT64_MIN);
	assert_int_equal(set_str(c, "ctr", min), 0);
	assert_int_equal(shmc_incr(c, "ctr", 3, -1, NULL), SHMC_EOVERFLOW);
	assert_value_str(c, "ctr", min);
}

/* ------------------------------------------------------------------ TTL */

static void test_basic_ttl_expires_after_deadline(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 50, 0), 0);
	assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, &vlen), 0);
	tu_sleep_ms(150);
	assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
}

static void test_basic_no_ttl_outlives_short_ttl(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_set(c, "forever", 7, "v", 1, 0, 0), 0);
	tu_sleep_ms(150);
	assert_value_str(c, "forever", "v");
}

static void test_basic_default_ttl_applies_to_ttl_zero(void **state)
{
	struct fixture *f = *state;
	shmc_opts *o = NULL;
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, SEGMENT_BYTES), 0);
	assert_int_equal(shmc_opts_set_default_ttl(o, 50), 0);
	assert_int_equal(shmc_open(f->name, o, SHMC_CREATE | SHMC_EXCL, &f->c), 0);
	shmc_opts_destroy(o);

	assert_int_equal(shmc_set(f->c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen), 0);
	tu_sleep_ms(150);
	assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen),
	                 SHMC_ENOTFOUND);
}

/* ---------------------------------------------------------------- stats */

static void test_basic_stats_count_known_sequence(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc_stats st;
	char buf[32];
	size_t vlen;

	assert_int_equal(set_str(c, "a", "1"), 0);                /* set 1 */
	assert_int_equal(set_str(c, "b", "2"), 0);                /* set 2 */
	assert_int_equal(set_str(c, "c", "3"), 0);                /* set 3 */
	assert_int_equal(shmc_get(c, "a", 1, buf, sizeof buf, &vlen), 0); /* hit */
	assert_int_equal(shmc_get(c, "b", 1, buf, sizeof buf, &vlen), 0); /* hit */
	assert_int_equal(shmc_get(c, "x", 1, buf, sizeof buf, &vlen),
	                 SHMC_ENOTFOUND);                            /* miss */
	assert_int_equal(shmc_del(c, "c", 1), 0);                 /* delete */
	assert_int_equal(shmc_del(c, "y", 1), SHMC_ENOTFOUND);   /* not counted */
	assert_int_equal(shmc_get(c, "c", 1, buf, sizeof buf, &vlen),
	                 SHMC_ENOTFOUND);                            /* miss */

	memset(&st, 0xff, sizeof st);
	assert_int_equal(shmc_stats(c, &st), 0);
	assert_int_equal(st.gets, 4);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.sets, 3);
	assert_int_equal(st.deletes, 1);
	assert_int_equal(st.items, 2);
}

static void test_basic_stats_incr_counts_set_and_incr(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc_stats st;

	assert_int_equal(shmc_incr(c, "n", 1, 1, NULL), 0);
	assert_int_equal(shmc_incr(c, "n", 1, 1, NULL), 0);
	assert_int_equal(shmc_stats(c, &st), 0);
	assert_int_equal(st.incrs, 2);
	assert_int_equal(st.sets, 2);
	assert_int_equal(st.items, 1);
}

static void test_basic_stats_null_out_einval(void **state)
{
	assert_int_equal(shmc_stats(cache_of(state), NULL), SHMC_EINVAL);
}

/* ------------------------------------------------------------ read-only */

static void test_basic_rdonly_handle_reads_but_refuses_writes(void **state)
{
	struct fixture *f = *state;
	char buf[16];
	size_t vlen = 0;
	int64_t out = 0;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c), 0);
	assert_int_equal(set_str(f->c, "k", "value"), 0);
	assert_int_equal(set_str(f->c, "n", "1"), 0);
	assert_int_equal(shmc_close(f->c), 0);
	f->c = NULL;

	assert_int_equal(shmc_open(f->name, NULL, SHMC_RDONLY, &f->c), 0);
	assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 5);
	assert_memory_equal(buf, "value", 5);
	assert_int_equal(shmc_set(f->c, "k", 1, "x", 1, 0, 0), SHMC_EPERM);
	assert_int_equal(shmc_set(f->c, "new", 3, "x", 1, 0, 0), SHMC_EPERM);
	assert_int_equal(shmc_del(f->c, "k", 1), SHMC_EPERM);
	assert_int_equal(shmc_incr(f->c, "n", 1, 1, &out), SHMC_EPERM);
	/* nothing changed */
	assert_value_str(f->c, "k", "value");
	assert_value_str(f->c, "n", "1");
}

/* --------------------------------------------------------- error tables */

static void test_basic_errname_names_every_code(void **state)
{
	(void)state;
#define CHECK_NAME_(name, value, msg)                                          \
	assert_string_equal(shmc_errname(SHMC_##name), "SHMC_" #name);         \
	assert_int_equal(SHMC_##name, value);
	SHMC_ERRNO_MAP(CHECK_NAME_)
#undef CHECK_NAME_
}

static void test_basic_strerror_describes_every_code(void **state)
{
	(void)state;
#define CHECK_MSG_(name, value, msg)                                           \
	do {                                                                   \
		const char *s_ = shmc_strerror(SHMC_##name);                   \
		assert_non_null(s_);                                           \
		assert_true(strlen(s_) > 0);                                   \
	} while (0);
	SHMC_ERRNO_MAP(CHECK_MSG_)
#undef CHECK_MSG_
}

static void test_basic_errname_passes_errno_through(void **state)
{
	(void)state;
	assert_string_equal(shmc_errname(-ENOENT), "ENOENT");
	assert_non_null(shmc_strerror(-ENOENT));
	assert_true(strlen(shmc_strerror(-ENOENT)) > 0);
	assert_non_null(shmc_strerror(-EACCES));
	assert_true(strlen(shmc_strerror(-EACCES)) > 0);
}

static void test_basic_errname_ok_and_unknown(void **state)
{
	(void)state;
	assert_string_equal(shmc_errname(0), "OK");
	assert_string_equal(shmc_errname(-999999), "UNKNOWN");
	assert_string_equal(shmc_errname(12345), "UNKNOWN");
	assert_non_null(shmc_strerror(0));
	assert_non_null(shmc_strerror(-999999));
	assert_non_null(shmc_strerror(12345));
}

static void test_basic_close_null_returns_zero(void **state)
{
	(void)state;
	assert_int_equal(shmc_close(NULL), 0);
	shmc_opts_destroy(NULL); /* documented as fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_basic_set_then_get_returns_value),
		TEST(test_basic_get_missing_key_enotfound),
		TEST(test_basic_binary_key_with_nul_is_distinct_key),
		TEST(test_basic_binary_value_with_nul_roundtrips),
		TEST(test_basic_zero_length_value_roundtrips),
		TEST(test_basic_overwrite_replaces_value),
		TEST(test_basic_get_small_buffer_erange_reports_size),
		TEST(test_basic_get_null_buffer_zero_cap_erange_reports_size),
		TEST(test_basic_set_nx_on_present_eexist_keeps_value),
		TEST(test_basic_set_nx_on_absent_stores),
		TEST(test_basic_set_xx_on_absent_enotfound_stores_nothing),
		TEST(test_basic_set_xx_on_present_replaces),
		TEST(test_basic_set_nx_and_xx_together_einval),
		TEST(test_basic_del_then_get_enotfound),
		TEST(test_basic_del_absent_enotfound),
		TEST(test_basic_del_twice_second_enotfound),
		TEST(test_basic_incr_absent_creates_with_delta),
		TEST(test_basic_incr_stores_decimal_ascii),
		TEST(test_basic_incr_existing_decimal_adds),
		TEST(test_basic_incr_negative_delta_subtracts),
		TEST(test_basic_incr_non_numeric_enotnum_keeps_value),
		TEST(test_basic_incr_past_int64_max_eoverflow_keeps_value),
		TEST(test_basic_incr_below_int64_min_eoverflow_keeps_value),
		TEST(test_basic_ttl_expires_after_deadline),
		TEST(test_basic_no_ttl_outlives_short_ttl),
		TEST_NAMED(test_basic_default_ttl_applies_to_ttl_zero),
		TEST(test_basic_stats_count_known_sequence),
		TEST(test_basic_stats_incr_counts_set_and_incr),
		TEST(test_basic_stats_null_out_einval),
		TEST_NAMED(test_basic_rdonly_handle_reads_but_refuses_writes),
		TEST(test_basic_errname_names_every_code),
		TEST(test_basic_strerror_describes_every_code),
		TEST(test_basic_errname_passes_errno_through),
		TEST(test_basic_errname_ok_and_unknown),
		TEST(test_basic_close_null_returns_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
