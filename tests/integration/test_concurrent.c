/*
 * test_concurrent.c - several processes hammer one small segment with mixed
 * get / get_ref / set / del / incr for a few seconds, so that log chunks are
 * retired and reused many times, and every value read is checked for
 * integrity (self-describing values, testutil.h). Afterwards the parent checks
 * the final state: counters equal the sum of all increments, and keys with a
 * single writer hold exactly that writer's last write.
 *
 * Key space: "key-000".."key-511". Keys 0..63 are owned: key k is set and
 * deleted only by process k % NPROCS, so its final state is known exactly.
 * Keys 64..511 are written by everyone. Counters "ctr-0".."ctr-7" are only
 * incremented.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define NPROCS 6u
#define RUN_MS 4000u
#define NKEYS 512u
#define OWNED_KEYS 64u
#define HOT_KEYS 128u
#define NCOUNTERS 8u
#define VALUE_MAX_BYTES 2000u
#define SEGMENT_BYTES (4u << 20)
#define CHUNK_BYTES (64u << 10)
#define CHILD_WATCHDOG_S 90u
#define REUSE_FACTOR 10u
#define RUN_MAX_MS 60000u

/* Last successful operation of the owner on an owned key. */
struct owned_state {
	uint32_t touched; /* 1 once the owner set or deleted it */
	uint32_t deleted; /* last op was a delete (or a del that found nothing) */
	uint32_t writer;
	uint64_t seq;
};

/* One child's tallies; written only by that child. */
struct proc_report {
	uint64_t gets, get_hits, ref_gets, ref_hits, sets, dels, incrs;
	uint64_t torn, foreign, never_written; /* integrity violations */
	uint64_t errors;                       /* unexpected return codes */
	uint64_t enospc;                       /* part of errors */
	int64_t counter_total[NCOUNTERS];
	char first_problem[320];
};

struct shared {
	char name[TU_NAME_MAX];
	struct tu_hwm *hwm;
	_Atomic unsigned start;
	struct owned_state owned[OWNED_KEYS];
	struct proc_report rep[NPROCS];
};

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	struct shared *sh;
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
	f->sh->hwm = tu_hwm_create(NPROCS);
	if (f->sh->hwm == NULL)
		return -1;
	snprintf(f->sh->name, sizeof f->sh->name, "%s", f->name);
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

static size_t key_name(char *buf, size_t cap, unsigned k)
{
	return (size_t)snprintf(buf, cap, "key-%03u", k);
}

static size_t counter_name(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "ctr-%u", i);
}

/* ----------------------------------------------------------- the child */

struct worker {
	unsigned id;
	struct shared *sh;
	struct proc_report *rep;
	shmc_cache *c;
	uint64_t rng;
	uint64_t seq;
	unsigned char *buf;
	unsigned char *val;
};

static void problem(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct worker *w, const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (w->rep->first_problem[0] == '\0')
		snprintf(w->rep->first_problem, sizeof w->rep->first_problem, "%s",
		         line);
	if (w->rep->torn + w->rep->foreign + w->rep->never_written +
	        w->rep->errors <= 5)
		tu_child_log("proc %u: %s", w->id, line);
}

static void classify(struct worker *w, const char *how, const void *val,
                     size_t vlen, const char *key, size_t klen)
{
	struct tu_value_info info = {0};
	enum tu_verdict v = tu_value_check(val, vlen, key, klen, w->sh->hwm, &info);

	switch (v) {
	case TU_OK:
		return;
	case TU_TORN:
		w->rep->torn++;
		break;
	case TU_FOREIGN:
		w->rep->foreign++;
		break;
	case TU_NEVER_WRITTEN:
		w->rep->never_written++;
		break;
	}
	if (v == TU_TORN)
		problem(w, "%s %.*s: TORN value (vlen %zu)", how, (int)klen, key,
		        vlen);
	else
		problem(w, "%s %.*s: %s value (vlen %zu, writer %" PRIu32
		        ", seq %" PRIu64 ", writer's mark %" PRIu64 ")",
		        how, (int)klen, key, tu_verdict_name(v), vlen,
		        info.writer_id, info.seq,
		        info.writer_id < NPROCS
		                ? tu_hwm_get(w->sh->hwm, info.writer_id)
		                : 0);
}

static unsigned pick_key(struct worker *w)
{
	if (tu_rand_below(&w->rng, 2) == 0)
		return (unsigned)tu_rand_below(&w->rng, HOT_KEYS);
	return (unsigned)tu_rand_below(&w->rng, NKEYS);
}

/* A key this worker may write: one of its owned keys (1 in 8) or a shared
 * key. */
static unsigned pick_writable_key(struct worker *w)
{
	if (tu_rand_below(&w->rng, 8) == 0) {
		unsigned slots = (OWNED_KEYS - w->id + NPROCS - 1) / NPROCS;

		return w->id + NPROCS * (unsigned)tu_rand_below(&w->rng, slots);
	}
	return OWNED_KEYS + (unsigned)tu_rand_below(&w->rng, NKEYS - OWNED_KEYS);
}

static void op_get(struct worker *w)
{
	char key[16];
	size_t klen = key_name(key, sizeof key, pick_key(w)), vlen = 0;
	int rc = shmc_get(w->c, key, klen, w->buf, 2 * VALUE_MAX_BYTES, &vlen);

	w->rep->gets++;
	if (rc == 0) {
		w->rep->get_hits++;
		classify(w, "get", w->buf, vlen, key, klen);
	} else if (rc != SHMC_ENOTFOUND) {
		w->rep->errors++;
		problem(w, "get %s: %s", key, shmc_errname(rc));
	}
}

static void op_get_ref(struct worker *w)
{
	char key[16];
	size_t klen = key_name(key, sizeof key, pick_key(w)), vlen = 0;
	const void *ref = NULL;
	int rc = shmc_read_begin(w->c);

	if (rc != 0) {
		w->rep->errors++;
		problem(w, "read_begin: %s", shmc_errname(rc));
		return;
	}
	rc = shmc_get_ref(w->c, key, klen, &ref, &vlen);
	w->rep->ref_gets++;
	if (rc == 0) {
		w->rep->ref_hits++;
		classify(w, "get_ref", ref, vlen, key, klen);
	} else if (rc != SHMC_ENOTFOUND) {
		w->rep->errors++;
		problem(w, "get_ref %s: %s", key, shmc_errname(rc));
	}
	rc = shmc_read_end(w->c);
	if (rc != 0) {
		w->rep->errors++;
		problem(w, "read_end: %s", shmc_errname(rc));
	}
}

static void op_set(struct worker *w)
{
	unsigned k = pick_writable_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k);
	size_t len = TU_VALUE_MIN_BYTES +
	             (size_t)tu_rand_below(&w->rng,
	                                   VALUE_MAX_BYTES - TU_VALUE_MIN_BYTES + 1);
	uint64_t seq = ++w->seq;
	int rc;

	tu_value_build(w->val, VALUE_MAX_BYTES, key, klen, w->id, seq, len);
	tu_hwm_publish(w->sh->hwm, w->id, seq); /* before the value is visible */
	rc = shmc_set(w->c, key, klen, w->val, len, 0, 0);
	if (rc == 0) {
		w->rep->sets++;
		if (k < OWNED_KEYS) {
			struct owned_state *o = &w->sh->owned[k];

			o->touched = 1;
			o->deleted = 0;
			o->writer = w->id;
			o->seq = seq;
		}
	} else {
		w->rep->errors++;
		if (rc == SHMC_ENOSPC)
			w->rep->enospc++;
		problem(w, "set %s (%zu bytes): %s", key, len, shmc_errname(rc));
	}
}

static void op_del(struct worker *w)
{
	unsigned k = pick_writable_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k);
	int rc = shmc_del(w->c, key, klen);

	if (rc == 0 || rc == SHMC_ENOTFOUND) {
		w->rep->dels += rc == 0;
		if (k < OWNED_KEYS) {
			w->sh->owned[k].touched = 1;
			w->sh->owned[k].deleted = 1;
		}
	} else {
		w->rep->errors++;
		problem(w, "del %s: %s", key, shmc_errname(rc));
	}
}

static void op_incr(struct worker *w)
{
	unsigned i = (unsigned)tu_rand_below(&w->rng, NCOUNTERS);
	int64_t delta = 1 + (int64_t)tu_rand_below(&w->rng, 10), out = 0;
	char key[16];
	size_t klen = counter_name(key, sizeof key, i);
	int rc = shmc_incr(w->c, key, klen, delta, &out);

	if (rc == 0) {
		w->rep->incrs++;
		w->rep->counter_total[i] += delta;
	} else {
		w->rep->errors++;
		if (rc == SHMC_ENOSPC)
			w->rep->enospc++;
		problem(w, "incr %s: %s", key, shmc_errname(rc));
	}
}

/* true once the log has been rewritten REUSE_FACTOR (and a bit) times, or
 * RUN_MAX_MS have passed since start_ms. */
static bool log_reused_enough(shmc_cache *c, uint64_t start_ms)
{
	struct shmc_stats st;
	if (tu_now_ms() - start_ms > RUN_MAX_MS || shmc_stats(c, &st) != 0)
		return true;
	return st.bytes_written > (REUSE_FACTOR + 2) * st.data_bytes;
}

static int worker_main(unsigned id, void *arg)
{
	struct shared *sh = arg;
	struct worker w = {
		.id = id,
		.sh = sh,
		.rep = &sh->rep[id],
		.rng = 0x5eed0000ull + id * 7919u,
	};
	uint64_t end_ms;
	int rc;

	w.buf = malloc(2 * VALUE_MAX_BYTES);
	w.val = malloc(VALUE_MAX_BYTES);
	rc = shmc_open(sh->name, NULL, 0, &w.c);
	/* arrive even on failure, so that the others are not held up */
	tu_barrier_wait(&sh->start, NPROCS);
	if (rc != 0 || w.buf == NULL || w.val == NULL) {
		tu_child_log("worker %u: shmc_open: %s: %s", id, shmc_errname(rc),
		             shmc_errmsg(NULL));
		return 1;
	}
	/* Run RUN_MS, and on past it (up to RUN_MAX_MS, for slow sanitizer
	 * builds) until the log has been rewritten REUSE_FACTOR times. */
	uint64_t start_ms = tu_now_ms();
	end_ms = start_ms + RUN_MS;
	while (tu_now_ms() < end_ms || !log_reused_enough(w.c, start_ms)) {
		for (int batch = 0; batch < 64; batch++) {
			unsigned dice = (unsigned)tu_rand_below(&w.rng, 100);

			if (dice < 40)
				op_get(&w);
			else if (dice < 55)
				op_get_ref(&w);
			else if (dice < 80)
				op_set(&w);
			else if (dice < 90)
				op_del(&w);
			else
				op_incr(&w);
		}
	}
	shmc_close(w.c);
	free(w.buf);
	free(w.val);
	return w.rep->torn + w.rep->foreign + w.rep->never_written +
	                       w.rep->errors == 0
	               ? 0
	               : 1;
}

/* ----------------------------------------------------------- the tests */

/* Create the segment, run the workers, reopen it in f->c. Returns the
 * number of children that failed (their reports say why). */
static unsigned run_workload(struct fixture *f)
{
	unsigned failed;
	uint64_t gets = 0, ref_gets = 0, sets = 0, dels = 0, incrs = 0;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, -1, &f->c),
	                 0);
	/* the children attach by name; no handle crosses fork() here
	 * (test_open.c covers inherited handles) */
	assert_int_equal(shmc_close(f->c), 0);
	f->c = NULL;

	failed = tu_fork_run(NPROCS, worker_main, f->sh, CHILD_WATCHDOG_S);

	for (unsigned i = 0; i < NPROCS; i++) {
		const struct proc_report *r = &f->sh->rep[i];

		gets += r->gets;
		ref_gets += r->ref_gets;
		sets += r->sets;
		dels += r->dels;
		incrs += r->incrs;
		if (r->first_problem[0] != '\0')
			fprintf(stderr, "worker %u: %" PRIu64 " torn, %" PRIu64
			        " foreign, %" PRIu64 " never-written, %" PRIu64
			        " errors (%" PRIu64 " ENOSPC); first: %s\n",
			        i, r->torn, r->foreign, r->never_written, r->errors,
			        r->enospc, r->first_problem);
	}
	print_message("workload: %" PRIu64 " gets, %" PRIu64 " get_refs, %" PRIu64
	              " sets, %" PRIu64 " dels, %" PRIu64 " incrs\n",
	              gets, ref_gets, sets, dels, incrs);
	assert_int_equal(shmc_open(f->name, NULL, 0, &f->c), 0);
	return failed;
}

static uint64_t sum_reports(const struct shared *sh, size_t field_offset)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < NPROCS; i++)
		total += *(const uint64_t *)((const char *)&sh->rep[i] + field_offset);
	return total;
}

#define SUM(sh, field) sum_reports((sh), offsetof(struct proc_report, field))

static void test_concurrent_mixed_load_reads_only_intact_values(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(run_workload(f), 0);
	assert_int_equal(SUM(f->sh, torn), 0);
	assert_int_equal(SUM(f->sh, foreign), 0);
	assert_int_equal(SUM(f->sh, never_written), 0);
	assert_int_equal(SUM(f->sh, errors), 0);
	/* the run must actually have read something */
	assert_true(SUM(f->sh, get_hits) > 1000);
	assert_true(SUM(f->sh, ref_hits) > 1000);
}

static void test_concurrent_mixed_load_reuses_log_chunks(void **state)
{
	struct fixture *f = *state;
	struct shmc_stats st;

	(void)run_workload(f);
	assert_int_equal(shmc_stats(f->c, &st), 0);
	print_message("bytes_written %" PRIu64 " = %.1f x data_bytes %" PRIu64
	              ", evictions %" PRIu64 ", enospc %" PRIu64 "\n",
	              st.bytes_written,
	              st.data_bytes ? (double)st.bytes_written / (double)st.data_bytes : 0.0,
	              st.data_bytes, st.evictions, st.enospc);
	assert_true(st.data_bytes > 0);
	assert_true(st.bytes_written > REUSE_FACTOR * st.data_bytes);
	assert_int_equal(SUM(f->sh, enospc), 0);
}

static void test_concurrent_incr_counters_equal_sum_of_increments(void **state)
{
	struct fixture *f = *state;
	unsigned bad = 0;

	assert_int_equal(run_workload(f), 0);
	for (unsigned i = 0; i < NCOUNTERS; i++) {
		int64_t expected = 0, got = 0;
		char key[16], buf[32];
		size_t klen = counter_name(key, sizeof key, i), vlen = 0;
		int rc;

		for (unsigned p = 0; p < NPROCS; p++)
			expected += f->sh->rep[p].counter_total[i];
		rc = shmc_get(f->c, key, klen, buf, sizeof buf - 1, &vlen);
		if (rc == 0) {
			buf[vlen] = '\0';
			got = strtoll(buf, NULL, 10);
		}
		if (rc != 0 || got != expected) {
			fprintf(stderr, "%s: expected %" PRId64 ", got %s (%s)\n", key,
			        expected, rc == 0 ? buf : "-", shmc_errname(rc));
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

static void test_concurrent_single_writer_keys_hold_last_write(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = malloc(2 * VALUE_MAX_BYTES);
	unsigned wrong = 0, lost = 0, checked = 0;
	struct shmc_stats st;

	assert_non_null(buf);
	assert_int_equal(run_workload(f), 0);
	assert_int_equal(shmc_stats(f->c, &st), 0);
	for (unsigned k = 0; k < OWNED_KEYS; k++) {
		const struct owned_state *o = &f->sh->owned[k];
		struct tu_value_info info = {0};
		char key[16];
		size_t klen = key_name(key, sizeof key, k), vlen = 0;
		int rc = shmc_get(f->c, key, klen, buf, 2 * VALUE_MAX_BYTES, &vlen);

		if (!o->touched) {
			if (rc != SHMC_ENOTFOUND) {
				fprintf(stderr, "%s: never written but get = %s\n", key,
				        shmc_errname(rc));
				wrong++;
			}
			continue;
		}
		checked++;
		if (o->deleted) {
			if (rc != SHMC_ENOTFOUND) {
				fprintf(stderr, "%s: last op was a delete but get = %s\n",
				        key, shmc_errname(rc));
				wrong++;
			}
			continue;
		}
		if (rc == SHMC_ENOTFOUND) {
			/* only CLOCK eviction may drop a live item */
			fprintf(stderr, "%s: last write (writer %" PRIu32 ", seq %" PRIu64
			        ") is gone\n", key, o->writer, o->seq);
			lost++;
			continue;
		}
		if (rc != 0 ||
		    tu_value_check(buf, vlen, key, klen, f->sh->hwm, &info) != TU_OK ||
		    info.writer_id != o->writer || info.seq != o->seq) {
			fprintf(stderr, "%s: expected (writer %" PRIu32 ", seq %" PRIu64
			        "), get = %s, found (writer %" PRIu32 ", seq %" PRIu64
			        ")\n", key, o->writer, o->seq, shmc_errname(rc),
			        info.writer_id, info.seq);
			wrong++;
		}
	}
	free(buf);
	print_message("owned keys: %u checked, %u wrong, %u lost (evictions %" PRIu64
	              ")\n", checked, wrong, lost, st.evictions);
	assert_true(checked > OWNED_KEYS / 2);
	assert_int_equal(wrong, 0);
	/* a lost last write is acceptable only as a counted eviction */
	if (lost > 0)
		assert_true(st.evictions >= lost);
}

static void test_concurrent_shared_keys_hold_written_values(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = malloc(2 * VALUE_MAX_BYTES);
	unsigned bad = 0, present = 0;

	assert_non_null(buf);
	assert_int_equal(run_workload(f), 0);
	for (unsigned k = OWNED_KEYS; k < NKEYS; k++) {
		char key[16];
		size_t klen = key_name(key, sizeof key, k), vlen = 0;
		int rc = shmc_get(f->c, key, klen, buf, 2 * VALUE_MAX_BYTES, &vlen);
		enum tu_verdict v;

		if (rc == SHMC_ENOTFOUND)
			continue;
		if (rc != 0) {
			fprintf(stderr, "%s: get = %s\n", key, shmc_errname(rc));
			bad++;
			continue;
		}
		present++;
		v = tu_value_check(buf, vlen, key, klen, f->sh->hwm, NULL);
		if (v != TU_OK) {
			fprintf(stderr, "%s: final value is %s\n", key, tu_verdict_name(v));
			bad++;
		}
	}
	free(buf);
	print_message("shared keys: %u present, %u bad\n", present, bad);
	assert_true(present > 0);
	assert_int_equal(bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_concurrent_mixed_load_reads_only_intact_values),
		TEST(test_concurrent_mixed_load_reuses_log_chunks),
		TEST(test_concurrent_incr_counters_equal_sum_of_increments),
		TEST(test_concurrent_single_writer_keys_hold_last_write),
		TEST(test_concurrent_shared_keys_hold_written_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
