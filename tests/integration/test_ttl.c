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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ttl_expiry_never_early_and_within_resolution),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
