/*
 * test_error.c - error codes, names and messages (error.c): the X-macro's
 * codes, the -errno passthrough, and the per-handle, per-thread detailed
 * message of shmc_errmsg().
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handle.h"
#include "unitutil.h"

#define SEGMENT_BYTES (4u << 20)

struct code {
	int value;
	const char *name;    /* "SHMC_<NAME>" */
	const char *message; /* the X-macro's message */
};

static const struct code codes[] = {
#define CODE_(name, value, msg) {SHMC_##name, "SHMC_" #name, msg},
	SHMC_ERRNO_MAP(CODE_)
#undef CODE_
};
#define NCODES (sizeof codes / sizeof codes[0])

static int setup(void **state)
{
	static const struct uu_params p = {.size_bytes = SEGMENT_BYTES};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

/* A second handle on the fixture's segment (its own proc slot). */
static shmc_cache *open_second(void **state)
{
	shmc_cache *c2 = NULL;
	int rc = shmc_open(((struct uu_fixture *)*state)->name, NULL, 0, &c2);

	assert_int_equal(rc, 0);
	assert_non_null(c2);
	return c2;
}

/* Makes c fail with a recorded message (an empty key: SHMC_EINVAL). */
static void make_fail(shmc_cache *c)
{
	size_t vlen;

	assert_int_equal(shmc_get(c, "", 0, NULL, 0, &vlen), SHMC_EINVAL);
}

/* ------------------------------------------------------------ the codes */

static void test_error_codes_below_minus_1000(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++) {
		if (codes[i].value >= -1000)
			fail_msg("%s = %d is not below -1000", codes[i].name, codes[i].value);
	}
}

static void test_error_codes_distinct_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++)
		for (size_t j = i + 1; j < NCODES; j++)
			if (codes[i].value == codes[j].value)
				fail_msg("%s and %s share the value %d", codes[i].name,
					 codes[j].name, codes[i].value);
}

static void test_error_errname_gives_shmc_prefixed_name(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++)
		assert_string_equal(shmc_errname(codes[i].value), codes[i].name);
}

static void test_error_strerror_nonempty_message(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++) {
		const char *m = shmc_strerror(codes[i].value);

		assert_non_null(m);
		if (m[0] == '\0')
			fail_msg("shmc_strerror(%s) is empty", codes[i].name);
		assert_string_equal(m, codes[i].message);
	}
}

static void test_error_zero_named_ok(void **state)
{
	(void)state;
	assert_string_equal(shmc_errname(0), "OK");
	assert_true(shmc_strerror(0)[0] != '\0');
}

static void test_error_unknown_code_named_unknown(void **state)
{
	(void)state;
	assert_string_equal(shmc_errname(-999999), "UNKNOWN");
	assert_string_equal(shmc_errname(12345), "UNKNOWN");
	assert_non_null(shmc_strerror(-999999));
	assert_true(shmc_strerror(-999999)[0] != '\0');
}

/* ------------------------------------------------------ -errno passthrough */

static void test_error_errno_passthrough_name(void **state)
{
	(void)state;
	assert_string_equal(shmc_errname(-ENOENT), "ENOENT");
	assert_string_equal(shmc_errname(-EAGAIN), "EAGAIN");
	assert_string_equal(shmc_errname(-EMFILE), "EMFILE");
}

static void test_error_errno_passthrough_message(void **state)
{
	(void)state;
	assert_string_equal(shmc_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(shmc_strerror(-EMFILE), strerror(EMFILE));
}

/* errno values never collide with ours: SHMC_ENOENT is not -ENOENT. */
static void test_error_shmc_enoent_differs_from_errno_enoent(void **state)
{
	(void)state;
	assert_int_not_equal(SHMC_ENOENT, -ENOENT);
	assert_string_equal(shmc_errname(SHMC_ENOENT), "SHMC_ENOENT");
	assert_string_equal(shmc_errname(-ENOENT), "ENOENT");
}

/* ------------------------------------------------------------ shmc_errmsg */

static void test_error_errmsg_after_failure_nonempty(void **state)
{
	shmc_cache *c = cache_of(state);

	make_fail(c);
	assert_true(shmc_errmsg(c)[0] != '\0');
}

static void test_error_errmsg_without_failure_empty(void **state)
{
	shmc_cache *c2 = open_second(state);

	assert_string_equal(shmc_errmsg(c2), "");
	shmc_close(c2);
}

static void test_error_errmsg_failure_on_a_not_shown_for_b(void **state)
{
	shmc_cache *a = cache_of(state);
	shmc_cache *b = open_second(state);

	make_fail(a);
	assert_true(shmc_errmsg(a)[0] != '\0');
	assert_string_equal(shmc_errmsg(b), "");
	shmc_close(b);
}

/* shmc_errmsg(NULL) is the message of the last failed call without a
 * handle (shmc_open, shmc_unlink): a handle's failure does not change it. */
static void test_error_errmsg_handle_failure_not_shown_for_open(void **state)
{
	shmc_cache *a = cache_of(state);
	char before[512];

	snprintf(before, sizeof before, "%s", shmc_errmsg(NULL));
	make_fail(a);
	assert_string_equal(shmc_errmsg(NULL), before);
}

static void test_error_errmsg_failed_open_shown_for_null(void **state)
{
	shmc_cache *c2 = NULL;

	(void)state;
	assert_int_equal(shmc_open("u.no-such-segment.0", NULL, 0, &c2), SHMC_ENOENT);
	assert_true(shmc_errmsg(NULL)[0] != '\0');
}

/* The header promises the message of "the last failure of the calling
 * thread on handle c", valid until the thread's next call on c: a later
 * failure on another handle must not erase it. */
static void test_error_errmsg_survives_failure_on_other_handle(void **state)
{
	shmc_cache *a = cache_of(state);
	shmc_cache *b = open_second(state);
	char msg_a[256];

	make_fail(a);
	snprintf(msg_a, sizeof msg_a, "%s", shmc_errmsg(a));
	assert_true(msg_a[0] != '\0');
	make_fail(b);
	assert_string_equal(shmc_errmsg(a), msg_a);
	shmc_close(b);
}

struct thread_probe {
	shmc_cache *c;
	char seen[256];
};

static void *read_errmsg_thread(void *arg)
{
	struct thread_probe *p = arg;

	snprintf(p->seen, sizeof p->seen, "%s", shmc_errmsg(p->c));
	return NULL;
}

static void test_error_errmsg_other_thread_sees_empty(void **state)
{
	struct thread_probe p = {.c = cache_of(state)};
	pthread_t th;

	make_fail(p.c);
	assert_true(shmc_errmsg(p.c)[0] != '\0');
	assert_int_equal(pthread_create(&th, NULL, read_errmsg_thread, &p), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_string_equal(p.seen, "");
	/* ... and this thread still has its own. */
	assert_true(shmc_errmsg(p.c)[0] != '\0');
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_error_codes_below_minus_1000),
		TEST(test_error_codes_distinct_values),
		TEST(test_error_errname_gives_shmc_prefixed_name),
		TEST(test_error_strerror_nonempty_message),
		TEST(test_error_zero_named_ok),
		TEST(test_error_unknown_code_named_unknown),
		TEST(test_error_errno_passthrough_name),
		TEST(test_error_errno_passthrough_message),
		TEST(test_error_shmc_enoent_differs_from_errno_enoent),
		TEST(test_error_errmsg_after_failure_nonempty),
		TEST(test_error_errmsg_without_failure_empty),
		TEST(test_error_errmsg_failure_on_a_not_shown_for_b),
		TEST(test_error_errmsg_handle_failure_not_shown_for_open),
		TEST(test_error_errmsg_failed_open_shown_for_null),
		TEST(test_error_errmsg_survives_failure_on_other_handle),
		TEST(test_error_errmsg_other_thread_sees_empty),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
