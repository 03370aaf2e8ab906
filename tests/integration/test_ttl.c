/*
 * test_ttl.c - expiry: never early, and late by no more than the coarse
 * clock's resolution (plus the polling step of this test).
 */
#include <shmcache.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "testutil.h"

static uint64_t coarse_resolution_ms(void)
{
	struct timespec res;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0)
		return 10;
	return (uint64_t)res.tv_sec * 1000 + ((uint64_t)res.tv_nsec + 999999) / 1000000;
}

/* For several TTLs: the key is readable until ttl_ms have passed since
 * shmc_set returned, and gone soon after. */
static void test_ttl_expiry_never_early_and_within_resolution(void **state)
{
	(void)state;
	char name[TU_NAME_MAX];
	tu_segname(name, sizeof name, "ttl");
	shmc_cache *c;
	assert_int_equal(tu_open_fresh(name, 4u << 20, 0, 0, &c), 0);
	const uint64_t res_ms = coarse_resolution_ms();
	const uint64_t poll_us = 200;

	for (uint32_t ttl = 20; ttl <= 120; ttl += 20) {
		char key[32];
		int klen = snprintf(key, sizeof key, "ttl-%u", ttl);
		assert_int_equal(shmc_set(c, key, (size_t)klen, "v", 1, ttl, 0), 0);
		uint64_t set_ns = tu_now_ns();
		char buf[4];
		size_t n;
		uint64_t gone_ns = 0;
		while (!gone_ns) {
			uint64_t before = tu_now_ns();
			int rc = shmc_get(c, key, (size_t)klen, buf, sizeof buf, &n);
			if (rc == SHMC_ENOTFOUND)
				gone_ns = before;
			else
				assert_int_equal(rc, 0);
			assert_true(before - set_ns < 2000000000ull); /* bounded */
			tu_sleep_us((unsigned)poll_us);
		}
		uint64_t alive_ms = (gone_ns - set_ns) / 1000000;
		printf("ttl %u ms: gone after %llu ms (clock resolution %llu ms)\n", ttl,
		       (unsigned long long)alive_ms, (unsigned long long)res_ms);
		/* Never early: still there ttl ms after the set returned. */
		assert_true(gone_ns - set_ns >= (uint64_t)ttl * 1000000);
		/* Not much late: two clock ticks (one at write, one at read)
		 * and the slack added at write, plus scheduling noise. */
		assert_true(alive_ms <= ttl + 3 * res_ms + 20);
	}
	shmc_close(c);
	shmc_unlink(name);
}

/* With +-50% jitter, 200 keys written together with a 200 ms TTL expire
 * spread over [100, 300] ms, not all at 200. */
static void test_ttl_jitter_spreads_expiry_within_bounds(void **state)
{
	(void)state;
	enum { NKEYS = 200, TTL = 200 };
	char name[TU_NAME_MAX];
	tu_segname(name, sizeof name, "ttl-jitter");
	(void)shmc_unlink(name);
	shmc_opts *o;
	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, 4u << 20), 0);
	assert_int_equal(shmc_opts_set_ttl_jitter(o, 51), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_ttl_jitter(o, 50), 0);
	shmc_cache *c;
	assert_int_equal(shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, &c), 0);
	shmc_opts_destroy(o);

	char key[32];
	uint64_t gone_ms[NKEYS] = {0};
	uint64_t start = tu_now_ns();
	for (int i = 0; i < NKEYS; i++) {
		int klen = snprintf(key, sizeof key, "j-%d", i);
		assert_int_equal(shmc_set(c, key, (size_t)klen, "v", 1, TTL, 0), 0);
	}
	uint64_t written = tu_now_ns();
	for (int left = NKEYS; left > 0;) {
		uint64_t now = tu_now_ns();
		assert_true(now - start < 2000000000ull);
		for (int i = 0; i < NKEYS; i++) {
			if (gone_ms[i])
				continue;
			int klen = snprintf(key, sizeof key, "j-%d", i);
			char buf[4];
			size_t n;
			if (shmc_get(c, key, (size_t)klen, buf, sizeof buf, &n) == SHMC_ENOTFOUND) {
				gone_ms[i] = (now - start) / 1000000 + 1;
				left--;
			}
		}
		tu_sleep_ms(2);
	}
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < NKEYS; i++) {
		lo = gone_ms[i] - 1 < lo ? gone_ms[i] - 1 : lo;
		hi = gone_ms[i] - 1 > hi ? gone_ms[i] - 1 : hi;
	}
	printf("jitter 50%%, ttl %d ms: first expiry at %llu ms, last at %llu ms\n", TTL,
	       (unsigned long long)lo, (unsigned long long)hi);
	assert_true(lo + (written - start) / 1000000 >= TTL / 2);
	assert_true(hi <= TTL * 3 / 2 + 30);
	assert_true(lo < TTL * 8 / 10 && hi > TTL * 12 / 10); /* really spread */
	shmc_close(c);
	shmc_unlink(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ttl_expiry_never_early_and_within_resolution),
		cmocka_unit_test(test_ttl_jitter_spreads_expiry_within_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
