/*
 * test_zerocopy.c - shmc_read_begin / shmc_get_ref / shmc_read_end.
 *
 * The multi-process test: a reader process holds a reference to key K inside
 * a read section while three writer processes delete and overwrite K and a
 * working set of other keys; the bytes behind the reference must not change.
 *
 * Why in rounds: memory retired after a reader entered its section cannot be
 * reused until it leaves (DESIGN.md §4), so while one section is held the
 * writers can append at most about one data area's worth of items before
 * every reusable byte is pinned (then they get SHMC_ENOSPC, or wait). To make
 * the log memory turn over many times (bytes_written >= 20 x data_bytes) the
 * reader alternates: an unpinned phase in which the writers churn the log,
 * then a pinned phase in which it holds a fresh reference to K until the
 * writers stall (or have written far more than could ever be reused
 * legitimately). In every pinned phase the held bytes are compared with a
 * private copy every millisecond.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define SEGMENT_BYTES (16u << 20)
#define CHUNK_BYTES (64u << 10)
#define NWRITERS 3u
#define NCHILDREN (NWRITERS + 1u) /* the last child is the reader */
#define WORKING_SET 256u
#define VALUE_MIN_BYTES 500u
#define VALUE_MAX_BYTES 4000u
#define ROUNDS 8u
#define UNPINNED_FACTOR 3u     /* per round, without a reader: x data_bytes */
#define TOTAL_FACTOR 20u       /* over the whole test: x data_bytes */
#define HELD_LIMIT_FACTOR 2u   /* a held section ends after this x data_bytes */
#define STALL_MS 300u          /* no log progress for this long: writers pinned */
#define HOLD_MAX_MS 3000u
#define PHASE_MAX_MS 30000u
#define READER_BUDGET_MS 150000u
#define CHILD_WATCHDOG_S 240u

static const char K[] = "zc-key";
#define KLEN (sizeof K - 1)

struct writer_report {
	uint64_t sets, dels, enospc, errors;
	char problem[256];
};

struct reader_report {
	int failed;                /* setup or progress failure (see problem) */
	unsigned rounds;           /* pinned phases completed */
	uint64_t checks;           /* byte comparisons made while holding */
	uint64_t mismatches;       /* comparisons that differed */
	uint64_t bad_values;       /* K's value failed tu_value_check when taken */
	uint64_t held_written_max; /* most bytes appended during one hold */
	uint64_t data_bytes;
	uint64_t total_written;
	char problem[256];
};

struct zc_shared {
	char name[TU_NAME_MAX];
	struct tu_hwm *hwm;
	_Atomic unsigned start;
	_Atomic int stop;
	struct writer_report w[NWRITERS];
	struct reader_report r;
};

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	struct zc_shared *sh;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	f->sh = tu_shared_alloc(sizeof *f->sh);
	if (f->sh == NULL)
		return -1;
	f->sh->hwm = tu_hwm_create(NWRITERS);
	if (f->sh->hwm == NULL)
		return -1;
	snprintf(f->sh->name, sizeof f->sh->name, "%s", f->name);
	if (tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, -1, &f->c) != 0) {
		fprintf(stderr, "setup: shmc_open(%s): %s\n", f->name,
		        shmc_errmsg(NULL));
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
	tu_hwm_destroy(f->sh->hwm);
	tu_shared_free(f->sh, sizeof *f->sh);
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

static shmc_cache *cache_of(void **state)
{
	return ((struct fixture *)*state)->c;
}

/* --------------------------------------------------- writers and reader */

static int writer_main(unsigned id, struct zc_shared *sh)
{
	struct writer_report *rep = &sh->w[id];
	unsigned char *val = malloc(VALUE_MAX_BYTES);
	uint64_t rng = 0xc0ffee00ull + id * 104729u, seq = 0;
	shmc_cache *c = NULL;
	int rc = shmc_open(sh->name, NULL, 0, &c);

	tu_barrier_wait(&sh->start, NCHILDREN);
	if (rc != 0 || val == NULL) {
		snprintf(rep->problem, sizeof rep->problem, "shmc_open: %s",
		         shmc_errname(rc));
		return 1;
	}
	while (!atomic_load(&sh->stop)) {
		char key[16];
		const char *kp = key;
		size_t klen, len;
		unsigned dice = (unsigned)tu_rand_below(&rng, 100);

		if (dice < 12) {
			kp = K;
			klen = KLEN;
		} else {
			klen = (size_t)snprintf(key, sizeof key, "w-%03u",
			                        (unsigned)tu_rand_below(&rng, WORKING_SET));
		}
		if (dice % 5 == 0) {
			rc = shmc_del(c, kp, klen);
			if (rc == 0)
				rep->dels++;
			else if (rc != SHMC_ENOTFOUND)
				goto error;
			continue;
		}
		len = VALUE_MIN_BYTES +
		      (size_t)tu_rand_below(&rng, VALUE_MAX_BYTES - VALUE_MIN_BYTES + 1);
		tu_value_build(val, VALUE_MAX_BYTES, kp, klen, id, ++seq, len);
		tu_hwm_publish(sh->hwm, id, seq);
		rc = shmc_set(c, kp, klen, val, len, 0, 0);
		if (rc == 0) {
			rep->sets++;
		} else if (rc == SHMC_ENOSPC) {
			/* a reader's section pins memory: retry later */
			rep->enospc++;
			tu_sleep_us(200);
		} else {
			goto error;
		}
		continue;
	error:
		rep->errors++;
		if (rep->problem[0] == '\0')
			snprintf(rep->problem, sizeof rep->problem, "%s %.*s: %s",
			         kp == K ? "K" : "op", (int)klen, kp, shmc_errname(rc));
	}
	shmc_close(c);
	free(val);
	return rep->errors == 0 ? 0 : 1;
}

static uint64_t bytes_written(shmc_cache *c)
{
	struct shmc_stats st;

	if (shmc_stats(c, &st) != 0)
		return 0;
	return st.bytes_written;
}

static int reader_fail(struct reader_report *r, const char *msg)
{
	r->failed = 1;
	if (r->problem[0] == '\0')
		snprintf(r->problem, sizeof r->problem, "%s", msg);
	return 1;
}

/* Wait, outside any section, until the writers have appended `target` more
 * bytes. Returns 0, or -1 if they do not get there in PHASE_MAX_MS. */
static int unpinned_phase(shmc_cache *c, uint64_t target)
{
	uint64_t from = bytes_written(c), deadline = tu_now_ms() + PHASE_MAX_MS;

	while (bytes_written(c) - from < target) {
		if (tu_now_ms() > deadline)
			return -1;
		tu_sleep_ms(5);
	}
	return 0;
}

/* One pinned phase: take a reference to K and hold it while the writers
 * run, comparing its bytes with a private copy every millisecond. */
static int pinned_phase(shmc_cache *c, struct zc_shared *sh, unsigned char *copy)
{
	struct reader_report *r = &sh->r;
	const void *ref = NULL;
	size_t vlen = 0;
	uint64_t deadline = tu_now_ms() + PHASE_MAX_MS;
	uint64_t held_from, last_progress, last_written, hold_end;
	int rc;

	for (;;) {
		if (shmc_read_begin(c) != 0)
			return reader_fail(r, "shmc_read_begin failed");
		rc = shmc_get_ref(c, K, KLEN, &ref, &vlen);
		if (rc == 0)
			break;
		shmc_read_end(c);
		if (rc != SHMC_ENOTFOUND)
			return reader_fail(r, "shmc_get_ref(K) failed");
		if (tu_now_ms() > deadline)
			return reader_fail(r, "K never present for a pinned phase");
		tu_sleep_us(100);
	}
	if (vlen > VALUE_MAX_BYTES) {
		shmc_read_end(c);
		return reader_fail(r, "K's length is out of range");
	}
	memcpy(copy, ref, vlen);
	if (tu_value_check(copy, vlen, K, KLEN, sh->hwm, NULL) != TU_OK)
		r->bad_values++;

	held_from = last_written = bytes_written(c);
	last_progress = tu_now_ms();
	hold_end = last_progress + HOLD_MAX_MS;
	for (unsigned tick = 1;; tick++) {
		uint64_t now, written;

		tu_sleep_ms(1);
		r->checks++;
		if (memcmp(ref, copy, vlen) != 0) {
			r->mismatches++;
			tu_child_log("round %u: held bytes of K changed after %" PRIu64
			             " bytes written (%s now)", r->rounds,
			             bytes_written(c) - held_from,
			             tu_verdict_name(tu_value_check(ref, vlen, K, KLEN,
			                                            sh->hwm, NULL)));
			break;
		}
		if (tick % 10 != 0)
			continue;
		now = tu_now_ms();
		written = bytes_written(c);
		if (written != last_written) {
			last_written = written;
			last_progress = now;
		}
		if (written - held_from >= HELD_LIMIT_FACTOR * r->data_bytes ||
		    now - last_progress >= STALL_MS || now >= hold_end)
			break;
	}
	if (last_written - held_from > r->held_written_max)
		r->held_written_max = last_written - held_from;
	if (shmc_read_end(c) != 0)
		return reader_fail(r, "shmc_read_end failed");
	r->rounds++;
	return 0;
}

static int reader_main(struct zc_shared *sh)
{
	struct reader_report *r = &sh->r;
	unsigned char *copy = malloc(VALUE_MAX_BYTES);
	shmc_cache *c = NULL;
	struct shmc_stats st;
	uint64_t budget_end;
	int rc = shmc_open(sh->name, NULL, 0, &c);

	tu_barrier_wait(&sh->start, NCHILDREN);
	if (rc != 0 || copy == NULL || shmc_stats(c, &st) != 0 || st.data_bytes == 0) {
		atomic_store(&sh->stop, 1);
		return reader_fail(r, "reader could not open the segment");
	}
	r->data_bytes = st.data_bytes;
	budget_end = tu_now_ms() + READER_BUDGET_MS;
	for (unsigned round = 0; round < ROUNDS && !r->failed; round++) {
		if (unpinned_phase(c, UNPINNED_FACTOR * r->data_bytes) != 0) {
			reader_fail(r, "writers made too little progress with no "
			               "reader holding a section");
			break;
		}
		if (pinned_phase(c, sh, copy) != 0 || r->mismatches != 0)
			break;
		if (tu_now_ms() > budget_end) {
			reader_fail(r, "time budget exceeded");
			break;
		}
	}
	atomic_store(&sh->stop, 1);
	r->total_written = bytes_written(c);
	shmc_close(c);
	free(copy);
	return r->failed || r->mismatches != 0 ? 1 : 0;
}

static int zc_child(unsigned index, void *arg)
{
	struct zc_shared *sh = arg;

	if (index < NWRITERS)
		return writer_main(index, sh);
	return reader_main(sh);
}

/* Run writers and reader against f's segment; fails the test if any child
 * crashed, hung or could not do its part. */
static void run_held_reference_scenario(struct fixture *f)
{
	struct zc_shared *sh = f->sh;
	unsigned failed;

	/* children attach by name; no handle crosses fork() here
	 * (test_open.c covers inherited handles) */
	assert_int_equal(shmc_close(f->c), 0);
	f->c = NULL;
	failed = tu_fork_run(NCHILDREN, zc_child, sh, CHILD_WATCHDOG_S);
	assert_int_equal(shmc_open(f->name, NULL, 0, &f->c), 0);

	for (unsigned i = 0; i < NWRITERS; i++)
		if (sh->w[i].problem[0] != '\0')
			fprintf(stderr, "writer %u: %s\n", i, sh->w[i].problem);
	if (sh->r.problem[0] != '\0')
		fprintf(stderr, "reader: %s\n", sh->r.problem);
	print_message("rounds %u, checks %" PRIu64 ", mismatches %" PRIu64
	              ", written %.1f x data area (max %.2f x during one hold)\n",
	              sh->r.rounds, sh->r.checks, sh->r.mismatches,
	              sh->r.data_bytes ? (double)sh->r.total_written / (double)sh->r.data_bytes : 0.0,
	              sh->r.data_bytes ? (double)sh->r.held_written_max / (double)sh->r.data_bytes : 0.0);
	for (unsigned i = 0; i < NWRITERS; i++)
		print_message("writer %u: %" PRIu64 " sets, %" PRIu64 " dels, %" PRIu64
		              " ENOSPC\n", i, sh->w[i].sets, sh->w[i].dels,
		              sh->w[i].enospc);
	/* mismatches make the reader exit 1; check them first for a clear
	 * message */
	assert_int_equal(sh->r.mismatches, 0);
	assert_int_equal(sh->r.failed, 0);
	assert_int_equal(failed, 0);
	assert_int_equal(sh->r.rounds, ROUNDS);
}

static void test_zerocopy_held_ref_survives_log_reuse(void **state)
{
	struct fixture *f = *state;

	run_held_reference_scenario(f);
	assert_true(f->sh->r.checks > 0);
	assert_true(f->sh->r.total_written >= TOTAL_FACTOR * f->sh->r.data_bytes);
}

static void test_zerocopy_held_ref_was_an_intact_value(void **state)
{
	struct fixture *f = *state;

	run_held_reference_scenario(f);
	assert_int_equal(f->sh->r.bad_values, 0);
}

static void test_zerocopy_held_section_pins_retired_memory(void **state)
{
	struct fixture *f = *state;

	/* Everything retired after the reader entered stays pinned, so one
	 * held section can never let the log take in much more than one data
	 * area; more means memory a reader may still see was reused. */
	run_held_reference_scenario(f);
	assert_true(f->sh->r.held_written_max <
	            HELD_LIMIT_FACTOR * f->sh->r.data_bytes);
}

/* ------------------------------------------------ single-process rules */

static void test_zerocopy_get_ref_returns_stored_bytes(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "zero\0copy", 9, 0, 0), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, "k", 1, &ref, &vlen), 0);
	assert_int_equal(vlen, 9);
	assert_memory_equal(ref, "zero\0copy", 9);
	assert_int_equal(shmc_read_end(c), 0);
}

static void test_zerocopy_get_ref_missing_key_enotfound(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, "absent", 6, &ref, &vlen), SHMC_ENOTFOUND);
	assert_int_equal(shmc_read_end(c), 0);
}

static void test_zerocopy_nested_sections_keep_ref_until_outermost_end(void **state)
{
	shmc_cache *c = cache_of(state);
	unsigned char v1[1000], v2[1000], copy[1000], filler[1500];
	const void *ref = NULL;
	size_t vlen = 0;
	struct shmc_stats st;
	uint64_t churn;
	int rc;

	memset(v1, 0x11, sizeof v1);
	memset(v2, 0x22, sizeof v2);
	memset(filler, 0x33, sizeof filler);
	assert_int_equal(shmc_set(c, K, KLEN, v1, sizeof v1, 0, 0), 0);

	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, K, KLEN, &ref, &vlen), 0);
	assert_int_equal(vlen, sizeof v1);
	memcpy(copy, ref, vlen);
	assert_int_equal(shmc_read_end(c), 0); /* inner: still inside outer */

	/* retire K's item and churn the log from this thread, offering twice
	 * the data area, so that K's memory would be reused if the outer
	 * section did not pin it; inside a section such writes may fail with
	 * SHMC_ENOSPC once everything is pinned, which is fine */
	assert_int_equal(shmc_del(c, K, KLEN), 0);
	assert_int_equal(shmc_stats(c, &st), 0);
	churn = 2 * st.data_bytes / sizeof filler;
	for (uint64_t i = 0, enospc_run = 0; i < churn && enospc_run < 1000; i++) {
		char key[16];
		int n = snprintf(key, sizeof key, "fill-%u", (unsigned)(i % 500));
		rc = shmc_set(c, key, (size_t)n, filler, sizeof filler, 0, 0);

		assert_true(rc == 0 || rc == SHMC_ENOSPC);
		enospc_run = rc == SHMC_ENOSPC ? enospc_run + 1 : 0;
	}
	rc = shmc_set(c, K, KLEN, v2, sizeof v2, 0, 0);
	assert_true(rc == 0 || rc == SHMC_ENOSPC);
	assert_memory_equal(ref, copy, sizeof v1);
	assert_memory_equal(ref, v1, sizeof v1);
	assert_int_equal(shmc_read_end(c), 0); /* outermost */
}

static void test_zerocopy_get_ref_in_inner_section_after_inner_end_ok(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	/* after an inner end the thread is still in a section */
	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_int_equal(shmc_get_ref(c, "k", 1, &ref, &vlen), 0);
	assert_int_equal(shmc_read_end(c), 0);
}

static void test_zerocopy_read_end_without_begin_einval(void **state)
{
	assert_int_equal(shmc_read_end(cache_of(state)), SHMC_EINVAL);
}

static void test_zerocopy_read_end_once_too_often_einval(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_int_equal(shmc_read_end(c), SHMC_EINVAL);
}

static void test_zerocopy_get_ref_without_section_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_get_ref(c, "k", 1, &ref, &vlen), SHMC_EINVAL);
}

static void test_zerocopy_get_ref_after_section_ended_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_int_equal(shmc_get_ref(c, "k", 1, &ref, &vlen), SHMC_EINVAL);
}

struct other_thread {
	shmc_cache *c;
	int get_ref_rc;
	int read_end_rc;
};

static void *other_thread_main(void *arg)
{
	struct other_thread *t = arg;
	const void *ref = NULL;
	size_t vlen = 0;

	t->get_ref_rc = shmc_get_ref(t->c, "k", 1, &ref, &vlen);
	t->read_end_rc = shmc_read_end(t->c);
	return NULL;
}

static void test_zerocopy_section_belongs_to_its_thread(void **state)
{
	shmc_cache *c = cache_of(state);
	struct other_thread t = {.c = c};
	pthread_t th;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(pthread_create(&th, NULL, other_thread_main, &t), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_string_equal(shmc_errname(t.get_ref_rc), "SHMC_EINVAL");
	assert_string_equal(shmc_errname(t.read_end_rc), "SHMC_EINVAL");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_zerocopy_get_ref_returns_stored_bytes),
		TEST(test_zerocopy_get_ref_missing_key_enotfound),
		TEST(test_zerocopy_nested_sections_keep_ref_until_outermost_end),
		TEST(test_zerocopy_get_ref_in_inner_section_after_inner_end_ok),
		TEST(test_zerocopy_read_end_without_begin_einval),
		TEST(test_zerocopy_read_end_once_too_often_einval),
		TEST(test_zerocopy_get_ref_without_section_einval),
		TEST(test_zerocopy_get_ref_after_section_ended_einval),
		TEST(test_zerocopy_section_belongs_to_its_thread),
		TEST(test_zerocopy_held_ref_survives_log_reuse),
		TEST(test_zerocopy_held_ref_was_an_intact_value),
		TEST(test_zerocopy_held_section_pins_retired_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
