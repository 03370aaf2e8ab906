/*
 * test_threads.c - one handle shared by many threads of one process: mixed
 * get/set/del/incr/get_ref on overlapping keys with self-describing values,
 * and thread exit releasing thread slots. This is the test the TSan build
 * exists for (threads, not processes, are what it can see).
 */
#include <shmcache.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define NTHREADS 6
#define NKEYS 256
#define OPS_PER_THREAD 40000

struct shared {
	shmc_cache *c;
	struct tu_hwm *hwm;
	_Atomic unsigned start;
	_Atomic unsigned long bad;
	_Atomic long long counter_total;
};

struct worker {
	struct shared *s;
	unsigned id;
};

static void key_of(unsigned i, char *k, size_t *klen)
{
	*klen = (size_t)snprintf(k, 32, "thr-key-%u", i);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *s = w->s;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (w->id + 1);
	unsigned char val[1200], buf[1200];
	uint64_t seq = 0;
	long long mine = 0;

	tu_barrier_wait(&s->start, NTHREADS);
	for (unsigned op = 0; op < OPS_PER_THREAD; op++) {
		char k[32];
		size_t klen, vlen;
		key_of((unsigned)tu_rand_below(&rng, NKEYS), k, &klen);
		unsigned dice = (unsigned)tu_rand_below(&rng, 100);
		if (dice < 55) {
			int rc = shmc_get(s->c, k, klen, buf, sizeof buf, &vlen);
			if (rc == 0 && tu_value_check(buf, vlen, k, klen, s->hwm, NULL) != TU_OK)
				s->bad++;
			else if (rc != 0 && rc != SHMC_ENOTFOUND)
				s->bad++;
		} else if (dice < 85) {
			size_t total = TU_VALUE_MIN_BYTES + (size_t)tu_rand_below(&rng, 1000);
			tu_hwm_publish(s->hwm, w->id, ++seq);
			size_t n = tu_value_build(val, sizeof val, k, klen, w->id, seq, total);
			if (shmc_set(s->c, k, klen, val, n, 0, 0) != 0)
				s->bad++;
		} else if (dice < 90) {
			int rc = shmc_del(s->c, k, klen);
			if (rc != 0 && rc != SHMC_ENOTFOUND)
				s->bad++;
		} else if (dice < 95) {
			if (shmc_incr(s->c, "thr-counter", 11, 1, NULL) != 0)
				s->bad++;
			else
				mine++;
		} else {
			const void *ref;
			if (shmc_read_begin(s->c) != 0) {
				s->bad++;
				continue;
			}
			int rc = shmc_get_ref(s->c, k, klen, &ref, &vlen);
			if (rc == 0 && tu_value_check(ref, vlen, k, klen, s->hwm, NULL) != TU_OK)
				s->bad++;
			shmc_read_end(s->c);
		}
	}
	s->counter_total += mine;
	return NULL;
}

static void test_threads_mixed_load_values_intact_and_counter_exact(void **state)
{
	(void)state;
	char name[TU_NAME_MAX];
	tu_segname(name, sizeof name, "threads");
	struct shared s = {0};
	assert_int_equal(tu_open_fresh(name, 4u << 20, 64u << 10, 0, &s.c), 0);
	s.hwm = tu_hwm_create(NTHREADS);
	assert_non_null(s.hwm);

	pthread_t th[NTHREADS];
	struct worker w[NTHREADS];
	for (unsigned i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){.s = &s, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);

	assert_int_equal(s.bad, 0);
	char num[32];
	size_t n;
	assert_int_equal(shmc_get(s.c, "thr-counter", 11, num, sizeof num - 1, &n), 0);
	num[n] = 0;
	assert_int_equal(strtoll(num, NULL, 10), s.counter_total);

	/* Every worker thread has exited: only the main thread holds a slot. */
	struct shmc_stats st;
	assert_int_equal(shmc_stats(s.c, &st), 0);
	assert_int_equal(st.threads_attached, 1);
	assert_true(st.sets > 0);

	shmc_close(s.c);
	shmc_unlink(name);
	tu_hwm_destroy(s.hwm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_mixed_load_values_intact_and_counter_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
