/*
 * test_fetch.c - read-through (shmc_fetch) across processes: host-wide
 * single-flight, takeover of a dead or late filler, writes winning over a
 * fill in flight, negative caching, stale-while-revalidate, stale-if-error,
 * and loader errors reaching the filler and every waiter.
 *
 * The origin counts its own calls: every loader increments counters in
 * MAP_SHARED memory set up before fork(), so "one origin call" is what the
 * origin saw, not what the library says it did (the library's stats are
 * then checked against it). A loaded value is self-describing (testutil.h)
 * with seq = the loader call that made it, so a caller can tell which fill
 * its value came from and a torn or foreign value is caught.
 *
 * Callers start together: each parks on a futex gate in shared memory and
 * the parent opens it once every caller is parked. Where a test needs
 * waiters to be waiting (not merely started) before the filler proceeds,
 * the parent watches stats.coalesced_waits reach their number.
 *
 * Every test ends with the segment verify-clean (tu_verify.h) and, where no
 * fill can legitimately be left over, no lease record busy and no lease
 * entry in the index.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"
#include "tu_verify.h"

/* White-box, for the lease census only. */
#include "handle.h"
#include "lease.h"

#define VALUE_BYTES 256u
#define BUF_BYTES (128u << 10) /* fits every value a loader here returns */
#define WATCHDOG_S 240u
#define MAX_CHILDREN 64u
#define MAX_THREADS 8u
#define WAIT_MS 60000u	 /* parent's bound on any one step (children hung) */
#define LOADER_WRITER 1u /* writer_id of loaded values */

/* ---------------------------------------------------------------- common */

/* Failures seen in children, for the parent to assert on. */
struct common {
	char name[TU_NAME_MAX];
	_Atomic unsigned problems;
	_Atomic int have_msg;
	char msg[512];
};

static void problem(struct common *cm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct common *cm, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (atomic_fetch_add(&cm->problems, 1) < 8)
		tu_child_log("%s", line);
	if (atomic_exchange(&cm->have_msg, 1) == 0)
		snprintf(cm->msg, sizeof cm->msg, "%s", line);
}

static void assert_no_problems(struct common *cm)
{
	unsigned n = atomic_load(&cm->problems);

	if (n != 0)
		fprintf(stderr, "%u problem(s) in children; first: %s\n", n, cm->msg);
	assert_int_equal(n, 0);
}

/* A gate: callers wait until *word >= want; the parent raises it. */
static void gate_wait(_Atomic uint32_t *word, uint32_t want)
{
	uint32_t v;

	while ((v = atomic_load(word)) < want) {
		struct timespec nap = {0, 20 * 1000000L};

		syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, v, &nap, NULL, 0);
	}
}

static void gate_open(_Atomic uint32_t *word, uint32_t value)
{
	atomic_store(word, value);
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Poll until *ctr >= want; false after timeout_ms. */
static bool wait_count(_Atomic unsigned *ctr, unsigned want, unsigned timeout_ms)
{
	uint64_t end = tu_now_ms() + timeout_ms;

	while (atomic_load(ctr) < want) {
		if (tu_now_ms() > end) {
			fprintf(stderr, "timed out: %u of %u\n", atomic_load(ctr), want);
			return false;
		}
		tu_sleep_us(200);
	}
	return true;
}

/* Poll the host-wide stats until coalesced_waits >= want. */
static bool wait_coalesced(shmc_cache *c, uint64_t want, unsigned timeout_ms)
{
	uint64_t end = tu_now_ms() + timeout_ms;
	struct shmc_stats st;

	for (;;) {
		if (shmc_stats(c, &st) == 0 && st.coalesced_waits >= want)
			return true;
		if (tu_now_ms() > end) {
			fprintf(stderr, "timed out: %" PRIu64 " of %" PRIu64 " waiters joined\n",
				st.coalesced_waits, want);
			return false;
		}
		tu_sleep_us(500);
	}
}

static void atomic_max_u64(_Atomic uint64_t *p, uint64_t v)
{
	uint64_t cur = atomic_load(p);

	while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
		;
}

/* Segment parameters fixed at creation. Zero fields mean the defaults. */
struct seg_cfg {
	size_t size_bytes;
	size_t chunk_bytes;
	uint32_t stale_ms;
	bool set_negative_ttl;
	uint32_t negative_ttl_ms;
};

/* Create name afresh, without the sweeper (nothing here may depend on it). */
static int seg_create(const char *name, const struct seg_cfg *cfg, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc;

	(void)shmc_unlink(name);
	rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0 && cfg->size_bytes)
		rc = shmc_opts_set_size(o, cfg->size_bytes);
	if (rc == 0 && cfg->chunk_bytes)
		rc = shmc_opts_set_chunk_size(o, cfg->chunk_bytes);
	if (rc == 0 && cfg->stale_ms)
		rc = shmc_opts_set_stale_window(o, cfg->stale_ms);
	if (rc == 0 && cfg->set_negative_ttl)
		rc = shmc_opts_set_negative_ttl(o, cfg->negative_ttl_ms);
	if (rc == 0)
		rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, out);
	shmc_opts_destroy(o);
	return rc;
}

/* Attach by name (sweeper off) with this handle's fill timeout (0 = the
 * default). */
static int seg_attach(const char *name, uint32_t fill_timeout_ms, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);

	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0 && fill_timeout_ms)
		rc = shmc_opts_set_fill_timeout(o, fill_timeout_ms);
	if (rc == 0)
		rc = shmc_open(name, o, 0, out);
	shmc_opts_destroy(o);
	return rc;
}

/* A loaded value: malloc'd, seq = the loader call that made it. */
static void *make_value(const void *key, size_t klen, uint64_t seq, size_t bytes)
{
	void *v = malloc(bytes);

	if (v != NULL && tu_value_build(v, bytes, key, klen, LOADER_WRITER, seq, bytes) != bytes) {
		free(v);
		v = NULL;
	}
	return v;
}

/* NULL if val is an intact value of key (then *seq is its seq), else what
 * is wrong with it. hwm may be NULL. */
static const char *value_problem(const void *val, size_t vlen, const void *key, size_t klen,
				 const struct tu_hwm *hwm, uint64_t *seq)
{
	struct tu_value_info info;
	enum tu_verdict v = tu_value_check(val, vlen, key, klen, hwm, &info);

	if (v != TU_OK)
		return tu_verdict_name(v);
	*seq = info.seq;
	return NULL;
}

/* Lease records not FREE and lease entries in the index. */
static void lease_census(shmc_cache *c, unsigned *busy_records, unsigned *index_entries)
{
	*busy_records = 0;
	*index_entries = 0;
	for (uint32_t i = 0; i < c->geo.nleases; i++)
		if (__atomic_load_n(&c->leases[i].state, __ATOMIC_ACQUIRE) != SHMC__LEASE_FREE)
			(*busy_records)++;
	for (uint32_t b = 0; b < c->geo.nbuckets; b++)
		for (int s = 0; s < SHMC__BUCKET_SLOTS; s++) {
			uint64_t e = __atomic_load_n(&c->buckets[b].slot[s], __ATOMIC_ACQUIRE);

			if (e != 0 && !(e & SHMC__ENTRY_ITEM))
				(*index_entries)++;
		}
}

/* ------------------------------------------------------------- fixture */

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	pid_t pids[MAX_CHILDREN]; /* 0 = reaped */
	unsigned npids;
	void *shared;
	size_t shared_bytes;
	struct tu_hwm *hwm;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	if (fx == NULL)
		return -1;
	tu_segname(fx->name, sizeof fx->name, (const char *)*state);
	(void)shmc_unlink(fx->name);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	/* A failed assertion leaves children behind: stop them. */
	for (unsigned i = 0; i < fx->npids; i++)
		if (fx->pids[i] > 0) {
			kill(fx->pids[i], SIGKILL);
			waitpid(fx->pids[i], NULL, 0);
		}
	shmc_close(fx->c);
	(void)shmc_unlink(fx->name);
	tu_shared_free(fx->shared, fx->shared_bytes);
	tu_hwm_destroy(fx->hwm);
	free(fx);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

/* Shared memory for the test, with the segment name in its struct common
 * (which every test's shared struct starts with). */
static void *fx_shared(struct fixture *fx, size_t bytes)
{
	fx->shared = tu_shared_alloc(bytes);
	assert_non_null(fx->shared);
	fx->shared_bytes = bytes;
	snprintf(((struct common *)fx->shared)->name, TU_NAME_MAX, "%s", fx->name);
	return fx->shared;
}

/* Fork n children running fn; returns the index of the first one. */
static unsigned fx_fork(struct fixture *fx, unsigned n, tu_child_fn fn, void *arg)
{
	unsigned first = fx->npids;

	assert_true(fx->npids + n <= MAX_CHILDREN);
	assert_int_equal(tu_fork_start(n, fn, arg, WATCHDOG_S, fx->pids + first), n);
	fx->npids += n;
	return first;
}

/* Wait for every child not reaped yet; returns how many failed. */
static unsigned fx_wait(struct fixture *fx)
{
	unsigned failed = 0;

	for (unsigned i = 0; i < fx->npids; i++) {
		char what[32];

		if (fx->pids[i] == 0)
			continue;
		snprintf(what, sizeof what, "child %u", i);
		if (tu_wait_child(fx->pids[i], what) != 0)
			failed++;
		fx->pids[i] = 0;
	}
	return failed;
}

/* The end of every test: no fill left over (when none may be), then the
 * handle closed and the segment verify-clean. */
static void finish_clean(struct fixture *fx, bool leases_idle)
{
	if (leases_idle) {
		unsigned busy, entries;

		lease_census(fx->c, &busy, &entries);
		if (busy || entries)
			fprintf(stderr,
				"%u lease record(s) busy, %u lease entr(ies) in the index\n", busy,
				entries);
		assert_int_equal(busy, 0);
		assert_int_equal(entries, 0);
	}
	assert_int_equal(shmc_close(fx->c), 0);
	fx->c = NULL;
	assert_int_equal(tu_verify_clean(fx->name, NULL), 0);
}

static struct shmc_stats stats_of(shmc_cache *c)
{
	struct shmc_stats st;

	/* Twice: a dead process met by the first call is reaped by it and
	 * its counters counted by the second. */
	assert_int_equal(shmc_stats(c, &st), 0);
	assert_int_equal(shmc_stats(c, &st), 0);
	return st;
}

/* A caller thread's context. */
struct caller {
	void *sh;
	shmc_cache *c;
	unsigned proc, thread;
};

/* What a child that runs caller threads does. */
struct proc_spec {
	struct common *cm;
	void *sh;
	unsigned nthreads;
	uint32_t fill_timeout_ms;
	void *(*thread_fn)(void *);
};

/* Child body: attach, run spec->nthreads threads, detach. */
static int run_callers(unsigned index, void *arg)
{
	struct proc_spec *ps = arg;
	pthread_t th[MAX_THREADS];
	struct caller w[MAX_THREADS];
	shmc_cache *c = NULL;
	unsigned started = 0;
	int rc = seg_attach(ps->cm->name, ps->fill_timeout_ms, &c);

	if (rc != 0) {
		problem(ps->cm, "proc %u: attach: %s", index, shmc_errname(rc));
		return 1;
	}
	for (unsigned t = 0; t < ps->nthreads && t < MAX_THREADS; t++) {
		w[t] = (struct caller){.sh = ps->sh, .c = c, .proc = index, .thread = t};
		if (pthread_create(&th[t], NULL, ps->thread_fn, &w[t]) != 0) {
			problem(ps->cm, "proc %u: pthread_create failed", index);
			break;
		}
		started++;
	}
	for (unsigned t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	shmc_close(c);
	return started == ps->nthreads ? 0 : 1;
}

/* ------------------------------------------------------------------ herd */

#define HERD_PROCS 32u
#define HERD_THREADS 4u
#define HERD_CALLERS (HERD_PROCS * HERD_THREADS)
#define HERD_ROUNDS 100u
#define HERD_LOADER_MS 50u
#define HERD_KEY "herd-key"

struct herd_shared {
	struct common cm;
	_Atomic uint32_t round;			  /* the start gate: rounds released so far */
	_Atomic unsigned arrived;		  /* callers parked at the gate, over all rounds */
	_Atomic unsigned finished;		  /* fetches returned, over all rounds */
	_Atomic unsigned calls[HERD_ROUNDS + 1];  /* loader calls per round */
	_Atomic unsigned served[HERD_ROUNDS + 1]; /* callers given that round's value */
};

static int herd_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	struct herd_shared *sh = arg;
	uint32_t r = atomic_load(&sh->round);

	atomic_fetch_add(&sh->calls[r], 1);
	tu_sleep_ms(HERD_LOADER_MS);
	*val = make_value(key, klen, r, VALUE_BYTES);
	*vlen = VALUE_BYTES;
	*ttl_ms = 0;
	return *val ? 0 : SHMC_ENOMEM;
}

static void *herd_caller(void *arg)
{
	struct caller *w = arg;
	struct herd_shared *sh = w->sh;
	unsigned char *buf = malloc(BUF_BYTES);

	for (uint32_t r = 1; r <= HERD_ROUNDS; r++) {
		size_t vlen = 0;
		uint64_t seq = 0;
		int rc;
		const char *bad;

		atomic_fetch_add(&sh->arrived, 1);
		gate_wait(&sh->round, r);
		rc = buf ? shmc_fetch(w->c, HERD_KEY, strlen(HERD_KEY), buf, BUF_BYTES, &vlen,
				      herd_loader, sh)
			 : SHMC_ENOMEM;
		if (rc != 0)
			problem(&sh->cm, "round %u proc %u.%u: fetch: %s (%s)", r, w->proc,
				w->thread, shmc_errname(rc), shmc_errmsg(w->c));
		else if ((bad = value_problem(buf, vlen, HERD_KEY, strlen(HERD_KEY), NULL, &seq)))
			problem(&sh->cm, "round %u proc %u.%u: value %s", r, w->proc, w->thread,
				bad);
		else if (seq != r)
			problem(&sh->cm, "round %u proc %u.%u: value of round %" PRIu64, r, w->proc,
				w->thread, seq);
		else
			atomic_fetch_add(&sh->served[r], 1);
		atomic_fetch_add(&sh->finished, 1);
	}
	free(buf);
	return NULL;
}

/* 32 processes x 4 threads miss one key at once, 100 times over: the
 * origin sees exactly one call per round and every caller gets its value. */
static void test_fetch_herd_of_128_callers_calls_loader_once_per_round(void **state)
{
	struct fixture *fx = *state;
	struct herd_shared *sh = fx_shared(fx, sizeof *sh);
	struct proc_spec ps = {
		.cm = &sh->cm, .sh = sh, .nthreads = HERD_THREADS, .thread_fn = herd_caller};
	unsigned bad_rounds = 0;
	uint64_t t0;

	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	fx_fork(fx, HERD_PROCS, run_callers, &ps);
	t0 = tu_now_ms();
	for (uint32_t r = 1; r <= HERD_ROUNDS; r++) {
		assert_true(wait_count(&sh->finished, HERD_CALLERS * (r - 1), WAIT_MS));
		/* The previous round's value must have been stored. */
		if (r > 1)
			assert_int_equal(shmc_del(fx->c, HERD_KEY, strlen(HERD_KEY)), 0);
		assert_true(wait_count(&sh->arrived, HERD_CALLERS * r, WAIT_MS));
		gate_open(&sh->round, r);
	}
	assert_true(wait_count(&sh->finished, HERD_CALLERS * HERD_ROUNDS, WAIT_MS));
	assert_int_equal(fx_wait(fx), 0);
	fprintf(stderr, "herd: %u rounds of %u callers in %" PRIu64 " ms\n", HERD_ROUNDS,
		HERD_CALLERS, tu_now_ms() - t0);
	assert_no_problems(&sh->cm);
	for (uint32_t r = 1; r <= HERD_ROUNDS; r++) {
		unsigned calls = atomic_load(&sh->calls[r]), served = atomic_load(&sh->served[r]);

		if (calls != 1 || served != HERD_CALLERS) {
			if (bad_rounds++ < 5)
				fprintf(stderr, "round %u: %u loader calls, %u of %u served\n", r,
					calls, served, HERD_CALLERS);
		}
	}
	assert_int_equal(bad_rounds, 0);
	assert_int_equal(atomic_load(&sh->calls[0]), 0);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, HERD_ROUNDS);
	assert_int_equal(st.fills, HERD_ROUNDS);
	assert_int_equal(st.lease_takeovers, 0);
	assert_int_equal(st.loader_errors, 0);
	assert_true(st.coalesced_waits > 0);
	fprintf(stderr, "herd: %" PRIu64 " coalesced waits\n", st.coalesced_waits);
	finish_clean(fx, true);
}

/* ------------------------------------- one filler, many waiters (modes) */

#define CO_WAITER_PROCS 6u
#define CO_WAITER_THREADS 2u
#define CO_WAITERS (CO_WAITER_PROCS * CO_WAITER_THREADS)
#define CO_KEY "fill-key"
#define CO_MAX_CALLS 8u
#define TOOBIG_CHUNK (64u << 10)
#define TOOBIG_VALUE (100u << 10)

enum co_mode {
	CO_KILL,   /* the filler is SIGKILLed inside its loader */
	CO_LATE,   /* the filler's loader overruns the fill timeout */
	CO_ERROR,  /* the loader returns sh->code */
	CO_TOOBIG, /* the loader returns a value larger than a chunk */
};

struct co_shared {
	struct common cm;
	enum co_mode mode;
	int code;		  /* CO_ERROR: what every loader call returns */
	uint32_t fill_timeout_ms; /* of every handle */
	unsigned first_ms;	  /* CO_LATE: duration of the first loader call */
	unsigned later_ms;	  /* duration of the calls after the first */
	_Atomic unsigned ready;	  /* filler + waiter threads parked */
	_Atomic uint32_t go_filler, go_waiters, inside, release;
	_Atomic unsigned calls;
	_Atomic int filler_pid;
	_Atomic uint64_t call_start_ns[CO_MAX_CALLS];
	_Atomic int filler_rc;
	_Atomic uint64_t filler_seq;
	_Atomic unsigned waiters_ok; /* waiters whose result was the expected one */
	_Atomic uint64_t max_wait_ns;
};

static int co_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		     uint32_t *ttl_ms)
{
	struct co_shared *sh = arg;
	unsigned n = atomic_fetch_add(&sh->calls, 1);
	size_t bytes = sh->mode == CO_TOOBIG ? TOOBIG_VALUE : VALUE_BYTES;

	if (n < CO_MAX_CALLS)
		atomic_store(&sh->call_start_ns[n], tu_now_ns());
	if (n == 0) {
		atomic_store(&sh->filler_pid, (int)getpid());
		gate_open(&sh->inside, 1);
		switch (sh->mode) {
		case CO_KILL:
			tu_sleep_ms(60000); /* the parent kills us meanwhile */
			break;
		case CO_LATE:
			tu_sleep_ms(sh->first_ms);
			break;
		case CO_ERROR:
		case CO_TOOBIG:
			gate_wait(&sh->release, 1);
			break;
		}
	} else {
		tu_sleep_ms(sh->later_ms);
	}
	if (sh->mode == CO_ERROR)
		return sh->code;
	*val = make_value(key, klen, n + 1, bytes);
	*vlen = bytes;
	*ttl_ms = 0;
	return *val ? 0 : SHMC_ENOMEM;
}

/* The first caller: its loader call is the fill the others wait for. */
static int co_filler_main(unsigned index, void *arg)
{
	struct co_shared *sh = arg;
	shmc_cache *c = NULL;
	unsigned char *buf = malloc(BUF_BYTES);
	size_t vlen = 0;
	uint64_t seq = 0;
	int rc = seg_attach(sh->cm.name, sh->fill_timeout_ms, &c);

	(void)index;
	if (rc != 0 || buf == NULL) {
		problem(&sh->cm, "filler: attach: %s", shmc_errname(rc));
		return 1;
	}
	atomic_fetch_add(&sh->ready, 1);
	gate_wait(&sh->go_filler, 1);
	rc = shmc_fetch(c, CO_KEY, strlen(CO_KEY), buf, BUF_BYTES, &vlen, co_loader, sh);
	atomic_store(&sh->filler_rc, rc);
	if (rc == 0) {
		const char *bad = value_problem(buf, vlen, CO_KEY, strlen(CO_KEY), NULL, &seq);

		if (bad)
			problem(&sh->cm, "filler: value %s", bad);
		atomic_store(&sh->filler_seq, seq);
	}
	free(buf);
	shmc_close(c);
	return 0;
}

static void *co_waiter(void *arg)
{
	struct caller *w = arg;
	struct co_shared *sh = w->sh;
	unsigned char *buf = malloc(BUF_BYTES);
	size_t vlen = 0;
	uint64_t seq = 0, t0, waited;
	int rc, want = sh->mode == CO_ERROR ? sh->code : sh->mode == CO_TOOBIG ? SHMC_ETOOBIG : 0;
	const char *bad = NULL;

	atomic_fetch_add(&sh->ready, 1);
	gate_wait(&sh->go_waiters, 1);
	t0 = tu_now_ns();
	rc = buf ? shmc_fetch(w->c, CO_KEY, strlen(CO_KEY), buf, BUF_BYTES, &vlen, co_loader, sh)
		 : SHMC_ENOMEM;
	waited = tu_now_ns() - t0;
	atomic_max_u64(&sh->max_wait_ns, waited);
	if (rc != want)
		problem(&sh->cm,
			"waiter %u.%u: fetch returned %s (%s), want %s, after %" PRIu64 " ms",
			w->proc, w->thread, shmc_errname(rc), shmc_errmsg(w->c), shmc_errname(want),
			waited / 1000000);
	else if (rc == 0 && (bad = value_problem(buf, vlen, CO_KEY, strlen(CO_KEY), NULL, &seq)))
		problem(&sh->cm, "waiter %u.%u: value %s", w->proc, w->thread, bad);
	else if (rc == 0 && seq != 2)
		problem(&sh->cm,
			"waiter %u.%u: value of loader call %" PRIu64 ", want 2 (the "
			"taker's)",
			w->proc, w->thread, seq);
	else
		atomic_fetch_add(&sh->waiters_ok, 1);
	free(buf);
	return NULL;
}

/* Start the filler, let it enter its loader, then start the waiters and
 * wait until all of them wait on its fill. Returns the filler's index in
 * fx->pids. */
static unsigned co_start(struct fixture *fx, struct co_shared *sh, const struct seg_cfg *cfg)
{
	static struct proc_spec ps;
	unsigned filler;

	ps = (struct proc_spec){.cm = &sh->cm,
				.sh = sh,
				.nthreads = CO_WAITER_THREADS,
				.fill_timeout_ms = sh->fill_timeout_ms,
				.thread_fn = co_waiter};
	assert_int_equal(seg_create(fx->name, cfg, &fx->c), 0);
	filler = fx_fork(fx, 1, co_filler_main, sh);
	fx_fork(fx, CO_WAITER_PROCS, run_callers, &ps);
	assert_true(wait_count(&sh->ready, 1 + CO_WAITERS, WAIT_MS));
	gate_open(&sh->go_filler, 1);
	assert_true(wait_count(&sh->inside, 1, WAIT_MS));
	gate_open(&sh->go_waiters, 1);
	assert_true(wait_coalesced(fx->c, CO_WAITERS, WAIT_MS));
	return filler;
}

/* Read the key with shmc_get: its seq, or 0 if absent. */
static uint64_t stored_seq(shmc_cache *c, const char *key)
{
	unsigned char *buf = malloc(BUF_BYTES);
	size_t vlen = 0;
	uint64_t seq = 0;
	int rc;

	assert_non_null(buf);
	rc = shmc_get(c, key, strlen(key), buf, BUF_BYTES, &vlen);
	if (rc == 0)
		assert_null(value_problem(buf, vlen, key, strlen(key), NULL, &seq));
	else
		assert_int_equal(rc, SHMC_ENOTFOUND);
	free(buf);
	return seq;
}

#define KILL_FILL_TIMEOUT_MS 1000u
#define KILL_LATER_MS 20u

/* The filler is SIGKILLed inside its loader: exactly one waiter takes the
 * fill over (detecting the death, not waiting for the deadline), every
 * other waiter gets its value, and nobody waits longer than the fill
 * timeout + 100 ms. */
static void test_fetch_filler_killed_in_loader_one_waiter_takes_over(void **state)
{
	struct fixture *fx = *state;
	struct co_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned filler;
	uint64_t kill_ns, first_ns, second_ns;
	int status;

	sh->mode = CO_KILL;
	sh->fill_timeout_ms = KILL_FILL_TIMEOUT_MS;
	sh->later_ms = KILL_LATER_MS;
	filler = co_start(fx, sh, &(struct seg_cfg){0});
	assert_int_equal(atomic_load(&sh->filler_pid), fx->pids[filler]);
	kill_ns = tu_now_ns();
	assert_int_equal(kill(fx->pids[filler], SIGKILL), 0);
	assert_int_equal(waitpid(fx->pids[filler], &status, 0), fx->pids[filler]);
	fx->pids[filler] = 0;
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);

	first_ns = atomic_load(&sh->call_start_ns[0]);
	second_ns = atomic_load(&sh->call_start_ns[1]);
	fprintf(stderr,
		"kill: killed %" PRIu64 " ms into the fill, taken over %" PRIu64
		" ms after the kill; longest wait %" PRIu64 " ms\n",
		(kill_ns - first_ns) / 1000000, (second_ns - kill_ns) / 1000000,
		atomic_load(&sh->max_wait_ns) / 1000000);
	assert_int_equal(atomic_load(&sh->calls), 2);
	assert_int_equal(atomic_load(&sh->waiters_ok), CO_WAITERS);
	assert_true(atomic_load(&sh->max_wait_ns) <= (KILL_FILL_TIMEOUT_MS + 100) * 1000000ull);
	/* Death detected, not the deadline waited out: the kill came early
	 * in the fill and the takeover before the dead filler's deadline. */
	assert_true(kill_ns - first_ns < KILL_FILL_TIMEOUT_MS / 2 * 1000000ull);
	assert_true(second_ns > kill_ns);
	assert_true(second_ns - first_ns < KILL_FILL_TIMEOUT_MS * 1000000ull);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.lease_takeovers, 1);
	assert_int_equal(st.origin_calls, 2);
	assert_int_equal(stored_seq(fx->c, CO_KEY), 2);
	finish_clean(fx, true);
}

#define LATE_FILL_TIMEOUT_MS 500u
#define LATE_FIRST_MS 700u /* returns while the taker's call is under way */
#define LATE_LATER_MS 350u /* the taker finishes well inside its own deadline */

/* The filler's loader overruns the fill timeout: exactly one waiter takes
 * the fill over; the late filler, returning while the taker still loads,
 * hands its result to its own caller only and must not end the taker's
 * fill: every waiter gets the taker's value and the origin sees exactly
 * two calls. */
static void test_fetch_late_filler_one_takeover_waiters_get_takers_value(void **state)
{
	struct fixture *fx = *state;
	struct co_shared *sh = fx_shared(fx, sizeof *sh);

	sh->mode = CO_LATE;
	sh->fill_timeout_ms = LATE_FILL_TIMEOUT_MS;
	sh->first_ms = LATE_FIRST_MS;
	sh->later_ms = LATE_LATER_MS;
	co_start(fx, sh, &(struct seg_cfg){0});
	assert_int_equal(fx_wait(fx), 0);
	fprintf(stderr, "late: %u loader calls; longest wait %" PRIu64 " ms\n",
		atomic_load(&sh->calls), atomic_load(&sh->max_wait_ns) / 1000000);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->calls), 2);
	assert_int_equal(atomic_load(&sh->filler_rc), 0);
	assert_int_equal(atomic_load(&sh->filler_seq), 1);
	assert_int_equal(atomic_load(&sh->waiters_ok), CO_WAITERS);
	assert_true(atomic_load(&sh->max_wait_ns) <=
		    (LATE_FILL_TIMEOUT_MS + LATE_LATER_MS + 300) * 1000000ull);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.lease_takeovers, 1);
	assert_int_equal(st.origin_calls, 2);
	assert_int_equal(stored_seq(fx->c, CO_KEY), 2);
	finish_clean(fx, true);
}

/* The loader fails with code: the filler and every waiter get code; the
 * origin is called once; nothing is cached (an error is not an absence). */
static void run_loader_error(struct fixture *fx, int code)
{
	struct co_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned char buf[VALUE_BYTES];
	size_t vlen = 0;

	sh->mode = CO_ERROR;
	sh->code = code;
	co_start(fx, sh, &(struct seg_cfg){0});
	gate_open(&sh->release, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->calls), 1);
	assert_int_equal(atomic_load(&sh->filler_rc), code);
	assert_int_equal(atomic_load(&sh->waiters_ok), CO_WAITERS);
	assert_int_equal(stored_seq(fx->c, CO_KEY), 0);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, 1);
	assert_int_equal(st.coalesced_waits, CO_WAITERS);
	assert_int_equal(st.loader_errors, 1);
	assert_int_equal(st.items, 0);
	/* Not cached: the next fetch asks the origin again. */
	assert_int_equal(
		shmc_fetch(fx->c, CO_KEY, strlen(CO_KEY), buf, sizeof buf, &vlen, co_loader, sh),
		code);
	assert_int_equal(atomic_load(&sh->calls), 2);
	finish_clean(fx, true);
}

static void test_fetch_loader_euplink_reaches_filler_and_every_waiter(void **state)
{
	run_loader_error(*state, SHMC_EUPLINK);
}

static void test_fetch_loader_eio_reaches_filler_and_every_waiter(void **state)
{
	run_loader_error(*state, -EIO);
}

/* The loader says "absent": filler and waiters get SHMC_ENOTFOUND from one
 * origin call, and the absence is cached. */
static void test_fetch_loader_absent_reaches_every_waiter_and_is_cached(void **state)
{
	struct fixture *fx = *state;
	struct co_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned char buf[VALUE_BYTES];
	size_t vlen = 0;

	sh->mode = CO_ERROR;
	sh->code = SHMC_ENOTFOUND;
	co_start(fx, sh, &(struct seg_cfg){0});
	gate_open(&sh->release, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->calls), 1);
	assert_int_equal(atomic_load(&sh->filler_rc), SHMC_ENOTFOUND);
	assert_int_equal(atomic_load(&sh->waiters_ok), CO_WAITERS);
	assert_int_equal(
		shmc_fetch(fx->c, CO_KEY, strlen(CO_KEY), buf, sizeof buf, &vlen, co_loader, sh),
		SHMC_ENOTFOUND);
	assert_int_equal(atomic_load(&sh->calls), 1);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, 1);
	assert_int_equal(st.loader_errors, 0);
	assert_int_equal(st.negative_hits, 1);
	finish_clean(fx, true);
}

/* The loader returns a value larger than the segment's chunk: the filler
 * and every waiter get SHMC_ETOOBIG, and nothing is cached. */
static void test_fetch_loader_value_over_chunk_etoobig_for_all_nothing_cached(void **state)
{
	struct fixture *fx = *state;
	struct co_shared *sh = fx_shared(fx, sizeof *sh);
	struct seg_cfg cfg = {.size_bytes = 4u << 20, .chunk_bytes = TOOBIG_CHUNK};

	sh->mode = CO_TOOBIG;
	co_start(fx, sh, &cfg);
	gate_open(&sh->release, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->calls), 1);
	assert_int_equal(atomic_load(&sh->filler_rc), SHMC_ETOOBIG);
	assert_int_equal(atomic_load(&sh->waiters_ok), CO_WAITERS);
	assert_int_equal(stored_seq(fx->c, CO_KEY), 0);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, 1);
	assert_int_equal(st.items, 0);
	assert_int_equal(st.bytes_live, 0);
	finish_clean(fx, true);
}

/* ----------------------------------------------- writes during a fill */

#define RACE_KEY "race-key"
#define RACE_WAITER_THREADS 2u
#define RACE_SET_SEQ 99u

struct race_shared {
	struct common cm;
	_Atomic unsigned ready;
	_Atomic uint32_t go_waiters, inside, release;
	_Atomic unsigned calls;
	_Atomic int filler_rc;
	_Atomic uint64_t filler_seq;
	_Atomic unsigned waiters_ok; /* waiters given the set's value */
};

static int race_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	struct race_shared *sh = arg;
	unsigned n = atomic_fetch_add(&sh->calls, 1);

	gate_open(&sh->inside, 1);
	gate_wait(&sh->release, 1);
	*val = make_value(key, klen, n + 1, VALUE_BYTES);
	*vlen = VALUE_BYTES;
	*ttl_ms = 0;
	return *val ? 0 : SHMC_ENOMEM;
}

static int race_filler_main(unsigned index, void *arg)
{
	struct race_shared *sh = arg;
	shmc_cache *c = NULL;
	unsigned char buf[VALUE_BYTES];
	size_t vlen = 0;
	uint64_t seq = 0;
	int rc = seg_attach(sh->cm.name, 0, &c);

	(void)index;
	if (rc != 0) {
		problem(&sh->cm, "filler: attach: %s", shmc_errname(rc));
		return 1;
	}
	rc = shmc_fetch(c, RACE_KEY, strlen(RACE_KEY), buf, sizeof buf, &vlen, race_loader, sh);
	atomic_store(&sh->filler_rc, rc);
	if (rc == 0) {
		const char *bad = value_problem(buf, vlen, RACE_KEY, strlen(RACE_KEY), NULL, &seq);

		if (bad)
			problem(&sh->cm, "filler: value %s", bad);
		atomic_store(&sh->filler_seq, seq);
	}
	shmc_close(c);
	return 0;
}

static void *race_waiter(void *arg)
{
	struct caller *w = arg;
	struct race_shared *sh = w->sh;
	unsigned char buf[VALUE_BYTES];
	size_t vlen = 0;
	uint64_t seq = 0;
	const char *bad = NULL;
	int rc;

	atomic_fetch_add(&sh->ready, 1);
	gate_wait(&sh->go_waiters, 1);
	rc = shmc_fetch(w->c, RACE_KEY, strlen(RACE_KEY), buf, sizeof buf, &vlen, race_loader, sh);
	if (rc != 0)
		problem(&sh->cm, "waiter %u: fetch: %s", w->thread, shmc_errname(rc));
	else if ((bad = value_problem(buf, vlen, RACE_KEY, strlen(RACE_KEY), NULL, &seq)))
		problem(&sh->cm, "waiter %u: value %s", w->thread, bad);
	else if (seq != RACE_SET_SEQ)
		problem(&sh->cm, "waiter %u: got the fill's value (seq %" PRIu64 "), not the set's",
			w->thread, seq);
	else
		atomic_fetch_add(&sh->waiters_ok, 1);
	return NULL;
}

/* A shmc_del of the key while its fill is in flight wins: the filler's
 * caller still gets the loaded value, but it is not stored. */
static void test_fetch_del_during_fill_value_returned_not_stored(void **state)
{
	struct fixture *fx = *state;
	struct race_shared *sh = fx_shared(fx, sizeof *sh);

	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	fx_fork(fx, 1, race_filler_main, sh);
	assert_true(wait_count(&sh->inside, 1, WAIT_MS));
	/* Nothing stored yet, so "not found"; the fill is cancelled all the same. */
	assert_int_equal(shmc_del(fx->c, RACE_KEY, strlen(RACE_KEY)), SHMC_ENOTFOUND);
	gate_open(&sh->release, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->filler_rc), 0);
	assert_int_equal(atomic_load(&sh->filler_seq), 1);
	assert_int_equal(atomic_load(&sh->calls), 1);
	assert_int_equal(stored_seq(fx->c, RACE_KEY), 0);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.items, 0);
	finish_clean(fx, true);
}

/* A shmc_set of the key while its fill is in flight wins: the filler's
 * caller gets the loaded value, the key keeps the set's value, and the
 * fill's waiters get the set's value too. */
static void test_fetch_set_during_fill_set_value_wins(void **state)
{
	struct fixture *fx = *state;
	struct race_shared *sh = fx_shared(fx, sizeof *sh);
	struct proc_spec ps = {
		.cm = &sh->cm, .sh = sh, .nthreads = RACE_WAITER_THREADS, .thread_fn = race_waiter};
	unsigned char v[VALUE_BYTES];

	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	fx_fork(fx, 1, run_callers, &ps);
	assert_true(wait_count(&sh->ready, RACE_WAITER_THREADS, WAIT_MS));
	fx_fork(fx, 1, race_filler_main, sh);
	assert_true(wait_count(&sh->inside, 1, WAIT_MS));
	gate_open(&sh->go_waiters, 1);
	assert_true(wait_coalesced(fx->c, RACE_WAITER_THREADS, WAIT_MS));
	assert_int_equal(tu_value_build(v, sizeof v, RACE_KEY, strlen(RACE_KEY), LOADER_WRITER,
					RACE_SET_SEQ, sizeof v),
			 sizeof v);
	assert_int_equal(shmc_set(fx->c, RACE_KEY, strlen(RACE_KEY), v, sizeof v, 0, 0), 0);
	gate_open(&sh->release, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(atomic_load(&sh->filler_rc), 0);
	assert_int_equal(atomic_load(&sh->filler_seq), 1);
	assert_int_equal(atomic_load(&sh->calls), 1);
	assert_int_equal(atomic_load(&sh->waiters_ok), RACE_WAITER_THREADS);
	assert_int_equal(stored_seq(fx->c, RACE_KEY), RACE_SET_SEQ);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.items, 1);
	finish_clean(fx, true);
}

/* ------------------------------------------------------ negative caching */

#define NEG_KEY "neg-key"
#define NEG_DEFAULT_TTL_MS 1000u

struct neg_shared {
	struct common cm;
	_Atomic unsigned calls;
};

static int absent_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			 uint32_t *ttl_ms)
{
	struct neg_shared *sh = arg;

	(void)key, (void)klen, (void)val, (void)vlen, (void)ttl_ms;
	atomic_fetch_add(&sh->calls, 1);
	return SHMC_ENOTFOUND;
}

static int value_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			uint32_t *ttl_ms)
{
	struct neg_shared *sh = arg;
	unsigned n = atomic_fetch_add(&sh->calls, 1);

	*val = make_value(key, klen, n + 1, VALUE_BYTES);
	*vlen = VALUE_BYTES;
	*ttl_ms = 0;
	return *val ? 0 : SHMC_ENOMEM;
}

/* Another process's fetch within the negative TTL: absent, origin untouched. */
static int neg_child_main(unsigned index, void *arg)
{
	struct neg_shared *sh = arg;
	shmc_cache *c = NULL;
	unsigned char buf[VALUE_BYTES];
	size_t vlen = 0;
	int rc = seg_attach(sh->cm.name, 0, &c);

	(void)index;
	if (rc != 0) {
		problem(&sh->cm, "attach: %s", shmc_errname(rc));
		return 1;
	}
	rc = shmc_fetch(c, NEG_KEY, strlen(NEG_KEY), buf, sizeof buf, &vlen, absent_loader, sh);
	if (rc != SHMC_ENOTFOUND)
		problem(&sh->cm, "fetch of a cached absence: %s", shmc_errname(rc));
	rc = shmc_get(c, NEG_KEY, strlen(NEG_KEY), buf, sizeof buf, &vlen);
	if (rc != SHMC_ENOTFOUND)
		problem(&sh->cm, "get of a cached absence: %s", shmc_errname(rc));
	shmc_close(c);
	return 0;
}

/* The loader's "absent" is cached host-wide for the (default) negative TTL,
 * is "not found" to shmc_get, expires, and is replaced by a set. */
static void test_fetch_absent_cached_for_negative_ttl_then_reloaded(void **state)
{
	struct fixture *fx = *state;
	struct neg_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned char buf[VALUE_BYTES], v[VALUE_BYTES];
	size_t vlen = 0, klen = strlen(NEG_KEY);
	uint64_t cached_ms, seq = 0;
	struct shmc_stats st;

	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	assert_int_equal(
		shmc_fetch(fx->c, NEG_KEY, klen, buf, sizeof buf, &vlen, absent_loader, sh),
		SHMC_ENOTFOUND);
	cached_ms = tu_now_ms();
	assert_int_equal(atomic_load(&sh->calls), 1);

	/* Within the TTL, from another process and from this one. */
	fx_fork(fx, 1, neg_child_main, sh);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	assert_int_equal(
		shmc_fetch(fx->c, NEG_KEY, klen, buf, sizeof buf, &vlen, absent_loader, sh),
		SHMC_ENOTFOUND);
	assert_int_equal(shmc_get(fx->c, NEG_KEY, klen, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
	assert_true(tu_now_ms() - cached_ms < NEG_DEFAULT_TTL_MS); /* else inconclusive */
	assert_int_equal(atomic_load(&sh->calls), 1);
	st = stats_of(fx->c);
	assert_int_equal(st.negative_hits, 2);
	assert_int_equal(st.origin_calls, 1);

	/* Past the TTL: the origin is asked again (and says absent again). */
	while (tu_now_ms() < cached_ms + NEG_DEFAULT_TTL_MS + 50)
		tu_sleep_ms(5);
	assert_int_equal(
		shmc_fetch(fx->c, NEG_KEY, klen, buf, sizeof buf, &vlen, absent_loader, sh),
		SHMC_ENOTFOUND);
	assert_int_equal(atomic_load(&sh->calls), 2);

	/* A set replaces the cached absence (it counts as absent for NX). */
	assert_int_equal(tu_value_build(v, sizeof v, NEG_KEY, klen, LOADER_WRITER, 77, sizeof v),
			 sizeof v);
	assert_int_equal(shmc_set(fx->c, NEG_KEY, klen, v, sizeof v, 0, SHMC_NX), 0);
	assert_int_equal(stored_seq(fx->c, NEG_KEY), 77);
	assert_int_equal(shmc_fetch(fx->c, NEG_KEY, klen, buf, sizeof buf, &vlen, value_loader, sh),
			 0);
	assert_null(value_problem(buf, vlen, NEG_KEY, klen, NULL, &seq));
	assert_int_equal(seq, 77);
	assert_int_equal(atomic_load(&sh->calls), 2);
	st = stats_of(fx->c);
	assert_int_equal(st.items, 1);
	assert_int_equal(st.negative_hits, 2);
	finish_clean(fx, true);
}

/* ------------------------------------- stale-while-revalidate, -if-error */

#define SWR_PROCS 4u
#define SWR_THREADS 2u
#define SWR_KEY "swr-key"
#define SWR_MAX_CALLS 1024u
#define SWR_PAUSE_US 2000u /* between a caller's fetches (paced runs) */
#define CLOCK_SLACK_MS 10u /* coarse clock and rounding of expiries */

enum stale_kind {
	STALE_REVALIDATE, /* the loader always succeeds */
	STALE_IF_ERROR,	  /* fails from its second call: stale until the window ends */
	STALE_RECOVER,	  /* fails on its second call only */
};

struct stale_shared {
	struct common cm;
	enum stale_kind kind;
	unsigned ttl_ms, window_ms, loader_ms, run_ms;
	unsigned pause_us;  /* 0: flat out (nothing recorded, no timing judged) */
	struct tu_hwm *hwm; /* seq of the last value the loader returned */
	_Atomic unsigned ready;
	_Atomic uint32_t go;
	_Atomic uint64_t start_ns; /* when the gate opened */
	_Atomic unsigned calls, in_flight, max_in_flight;
	_Atomic uint64_t call_start_ns[SWR_MAX_CALLS + 1]; /* by call number, from 1 */
	_Atomic uint64_t call_end_ns[SWR_MAX_CALLS + 1];
	_Atomic unsigned fetches, stale_phase, after_window; /* STALE_IF_ERROR phases */
	_Atomic uint64_t max_seq;			     /* newest value any caller got */
	_Atomic uint64_t max_fast_ns; /* slowest fetch but each caller's first */
};

static int stale_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			uint32_t *ttl_ms)
{
	struct stale_shared *sh = arg;
	unsigned n = atomic_fetch_add(&sh->calls, 1) + 1, inflight;
	bool fail = (sh->kind == STALE_IF_ERROR && n >= 2) || (sh->kind == STALE_RECOVER && n == 2);
	int rc = 0;

	inflight = atomic_fetch_add(&sh->in_flight, 1) + 1;
	if (inflight > atomic_load(&sh->max_in_flight))
		atomic_store(&sh->max_in_flight, inflight);
	if (n <= SWR_MAX_CALLS)
		atomic_store(&sh->call_start_ns[n], tu_now_ns());
	tu_sleep_ms(sh->loader_ms);
	if (fail) {
		rc = SHMC_EUPLINK;
	} else {
		tu_hwm_publish(sh->hwm, LOADER_WRITER, n);
		*val = make_value(key, klen, n, VALUE_BYTES);
		*vlen = VALUE_BYTES;
		*ttl_ms = sh->ttl_ms;
		rc = *val ? 0 : SHMC_ENOMEM;
	}
	if (n <= SWR_MAX_CALLS)
		atomic_store(&sh->call_end_ns[n], tu_now_ns());
	atomic_fetch_sub(&sh->in_flight, 1);
	return rc;
}

struct fetch_rec {
	uint64_t start_ns, end_ns;
	uint64_t seq;
	int rc;
};

/* Judge one fetch of a caller (first = its first fetch, made at the gate
 * when nothing was cached yet). */
static void stale_judge(struct stale_shared *sh, const struct caller *w, const struct fetch_rec *f,
			bool first)
{
	uint64_t took = f->end_ns - f->start_ns;
	/* The first value's hard expiry, as the origin saw it: the store
	 * follows the loader's return by microseconds. */
	uint64_t hard_ns = atomic_load(&sh->call_end_ns[1]) +
			   (uint64_t)(sh->ttl_ms + sh->window_ms) * 1000000u;
	bool in_window = f->end_ns + 2 * CLOCK_SLACK_MS * 1000000ull < hard_ns;
	bool past_window = f->start_ns > hard_ns + 100 * 1000000ull;

	if (f->rc == 0)
		atomic_max_u64(&sh->max_seq, f->seq);
	if (sh->kind == STALE_IF_ERROR && !in_window) {
		/* Window over (or ending): absent or the origin's error. */
		bool ok = f->rc == SHMC_EUPLINK || f->rc == SHMC_ENOTFOUND ||
			  (!past_window && f->rc == 0 && f->seq == 1);

		if (!ok)
			problem(&sh->cm,
				"caller %u.%u: %s (seq %" PRIu64 ") %" PRId64
				" ms after the stale window",
				w->proc, w->thread, shmc_errname(f->rc), f->seq,
				((int64_t)f->start_ns - (int64_t)hard_ns) / 1000000);
		if (past_window)
			atomic_fetch_add(&sh->after_window, 1);
		return;
	}
	if (f->rc != 0) {
		problem(&sh->cm, "caller %u.%u: fetch: %s", w->proc, w->thread,
			shmc_errname(f->rc));
		return;
	}
	if (sh->kind == STALE_IF_ERROR) {
		if (f->seq != 1)
			problem(&sh->cm, "caller %u.%u: seq %" PRIu64 " from a failing origin",
				w->proc, w->thread, f->seq);
		if (f->start_ns > atomic_load(&sh->call_end_ns[1]) +
					  (uint64_t)(sh->ttl_ms + CLOCK_SLACK_MS) * 1000000u)
			atomic_fetch_add(&sh->stale_phase, 1);
	}
	/* A fetch that waited for the origin took most of a loader call. */
	if (!first) {
		atomic_max_u64(&sh->max_fast_ns, took);
		if (took >= (uint64_t)sh->loader_ms / 2 * 1000000u)
			problem(&sh->cm,
				"caller %u.%u: fetch took %" PRIu64 " ms (waited for the origin)",
				w->proc, w->thread, took / 1000000);
	}
}

static void *stale_caller(void *arg)
{
	struct caller *w = arg;
	struct stale_shared *sh = w->sh;
	bool flat_out = sh->pause_us == 0;
	size_t cap = flat_out ? 1 : (size_t)sh->run_ms * 1000 / sh->pause_us + 16, n = 0;
	struct fetch_rec *recs = calloc(cap, sizeof *recs);
	unsigned char buf[VALUE_BYTES];
	uint64_t end_ns, last_seq = 0, flat_fetches = 0;

	atomic_fetch_add(&sh->ready, 1);
	gate_wait(&sh->go, 1);
	end_ns = atomic_load(&sh->start_ns) + (uint64_t)sh->run_ms * 1000000u;
	while (recs != NULL && n < cap && tu_now_ns() < end_ns) {
		struct fetch_rec *f = &recs[flat_out ? 0 : n++];
		size_t vlen = 0;
		const char *bad;

		f->start_ns = tu_now_ns();
		f->rc = shmc_fetch(w->c, SWR_KEY, strlen(SWR_KEY), buf, sizeof buf, &vlen,
				   stale_loader, sh);
		f->end_ns = tu_now_ns();
		if (f->rc == 0) {
			bad = value_problem(buf, vlen, SWR_KEY, strlen(SWR_KEY), sh->hwm, &f->seq);
			if (bad)
				problem(&sh->cm, "caller %u.%u: value %s", w->proc, w->thread, bad);
			else if (f->seq < last_seq)
				problem(&sh->cm,
					"caller %u.%u: seq went back from %" PRIu64 " to %" PRIu64,
					w->proc, w->thread, last_seq, f->seq);
			else
				last_seq = f->seq;
		}
		if (flat_out) {
			if (f->rc != 0)
				problem(&sh->cm, "caller %u.%u: fetch: %s", w->proc, w->thread,
					shmc_errname(f->rc));
			else
				atomic_max_u64(&sh->max_seq, f->seq);
			flat_fetches++;
		} else {
			tu_sleep_us(sh->pause_us);
		}
	}
	if (recs == NULL)
		problem(&sh->cm, "caller %u.%u: out of memory", w->proc, w->thread);
	/* Judged after the run: the first fill's end is known by now. */
	for (size_t i = 0; i < n; i++)
		stale_judge(sh, w, &recs[i], i == 0);
	atomic_fetch_add(&sh->fetches, (unsigned)(flat_out ? flat_fetches : n));
	free(recs);
	return NULL;
}

/* Create the segment with a stale window, run nprocs x nthreads callers
 * for run_ms. */
static void stale_run(struct fixture *fx, struct stale_shared *sh, unsigned nprocs,
		      unsigned nthreads)
{
	static struct proc_spec ps;

	ps = (struct proc_spec){
		.cm = &sh->cm, .sh = sh, .nthreads = nthreads, .thread_fn = stale_caller};
	fx->hwm = tu_hwm_create(LOADER_WRITER + 1);
	assert_non_null(fx->hwm);
	sh->hwm = fx->hwm;
	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){.stale_ms = sh->window_ms}, &fx->c),
			 0);
	fx_fork(fx, nprocs, run_callers, &ps);
	assert_true(wait_count(&sh->ready, nprocs * nthreads, WAIT_MS));
	atomic_store(&sh->start_ns, tu_now_ns());
	gate_open(&sh->go, 1);
	assert_int_equal(fx_wait(fx), 0);
}

/* One refresh per expiry, from the origin's own timeline: loader calls
 * never overlap, and call k starts no earlier than version k-1's TTL after
 * it was loaded (an earlier start is a second refresh of the same expiry)
 * nor, when max_gap_ms is not 0, later than max_gap_ms after (a missed
 * expiry). */
static void check_refresh_gaps(struct stale_shared *sh, unsigned max_gap_ms)
{
	unsigned calls = atomic_load(&sh->calls), bad = 0;

	assert_true(calls <= SWR_MAX_CALLS);
	assert_int_equal(atomic_load(&sh->max_in_flight), 1);
	for (unsigned k = 2; k <= calls; k++) {
		int64_t gap_ms = ((int64_t)atomic_load(&sh->call_start_ns[k]) -
				  (int64_t)atomic_load(&sh->call_end_ns[k - 1])) /
				 1000000;
		bool early = gap_ms < (int64_t)sh->ttl_ms - (int64_t)CLOCK_SLACK_MS;
		bool late = max_gap_ms && gap_ms > (int64_t)max_gap_ms;

		if ((early || late) && bad++ < 5)
			fprintf(stderr,
				"refresh %u started %" PRId64 " ms after version %u was "
				"loaded (TTL %u ms)\n",
				k, gap_ms, k - 1, sh->ttl_ms);
	}
	assert_int_equal(bad, 0);
}

#define SWR_TTL_MS 200u
#define SWR_WINDOW_MS 2000u
#define SWR_LOADER_MS 200u
#define SWR_RUN_MS 3200u

/* Callers in several processes fetch continuously across many soft
 * expiries: after the first fill no fetch waits for the origin (none joins
 * a fill, and none takes half a loader call), every
 * value is an intact version never older than one seen before, and each
 * expiry causes exactly one refresh: refreshes never overlap, none starts
 * before its version's TTL is over, and none is missed. */
static void test_fetch_stale_while_revalidate_one_refresh_per_expiry_no_waits(void **state)
{
	struct fixture *fx = *state;
	struct stale_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned calls;
	uint64_t end_ns;

	sh->kind = STALE_REVALIDATE;
	sh->ttl_ms = SWR_TTL_MS;
	sh->window_ms = SWR_WINDOW_MS;
	sh->loader_ms = SWR_LOADER_MS;
	sh->run_ms = SWR_RUN_MS;
	sh->pause_us = SWR_PAUSE_US;
	stale_run(fx, sh, SWR_PROCS, SWR_THREADS);
	end_ns = atomic_load(&sh->start_ns) + (uint64_t)SWR_RUN_MS * 1000000u;
	calls = atomic_load(&sh->calls);
	fprintf(stderr,
		"swr: %u fetches, %u loader calls (%u expiries refreshed), slowest "
		"fetch after the first fill %" PRIu64 " us\n",
		atomic_load(&sh->fetches), calls, calls - 1, atomic_load(&sh->max_fast_ns) / 1000);
	assert_no_problems(&sh->cm);
	/* ~ run / (TTL + loader): enough expiries for the gaps to mean something. */
	assert_true(calls >= 5);
	check_refresh_gaps(sh, SWR_TTL_MS + 150);
	/* The last version did not expire long before the end unrefreshed. */
	assert_true(end_ns <
		    atomic_load(&sh->call_end_ns[calls]) + (SWR_TTL_MS + 150) * 1000000ull);
	assert_int_equal(atomic_load(&sh->max_seq), calls);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, calls);
	assert_int_equal(st.refreshes, calls - 1);
	assert_int_equal(st.loader_errors, 0);
	assert_int_equal(st.lease_takeovers, 0);
	assert_true(st.coalesced_waits < SWR_PROCS * SWR_THREADS); /* the first fill's only */
	assert_true(st.stale_serves > 0);
	/* A refresh queued as the callers closed is abandoned with its lease. */
	finish_clean(fx, false);
}

#define BUSY_PROCS 4u
#define BUSY_THREADS 4u
#define BUSY_TTL_MS 20u
#define BUSY_LOADER_MS 1u
#define BUSY_RUN_MS 2500u

/* The same with 16 callers fetching flat out on a single key with a short
 * TTL: every refresh completes while many callers are between seeing the
 * item stale and asking for a refresh. None of them may start a second
 * refresh of a value just refreshed. (Timing is not judged: the callers
 * oversubscribe the CPUs.) */
static void test_fetch_stale_refresh_once_per_expiry_under_contention(void **state)
{
	struct fixture *fx = *state;
	struct stale_shared *sh = fx_shared(fx, sizeof *sh);
	unsigned calls;

	sh->kind = STALE_REVALIDATE;
	sh->ttl_ms = BUSY_TTL_MS;
	sh->window_ms = SWR_WINDOW_MS;
	sh->loader_ms = BUSY_LOADER_MS;
	sh->run_ms = BUSY_RUN_MS;
	sh->pause_us = 0;
	stale_run(fx, sh, BUSY_PROCS, BUSY_THREADS);
	calls = atomic_load(&sh->calls);
	fprintf(stderr, "swr under contention: %u fetches, %u loader calls\n",
		atomic_load(&sh->fetches), calls);
	assert_no_problems(&sh->cm);
	assert_true(calls >= 10);
	check_refresh_gaps(sh, 0);

	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, calls);
	assert_int_equal(st.refreshes, calls - 1);
	finish_clean(fx, false);
}

#define SIE_TTL_MS 200u
#define SIE_WINDOW_MS 1000u
#define SIE_LOADER_MS 200u

/* The origin fails after the first fill: fetches keep returning the stale
 * value, at once, until the stale window ends, then the origin's error (or
 * absent); stats.stale_if_error counts the stale serves. */
static void test_fetch_stale_if_error_serves_stale_until_window_end(void **state)
{
	struct fixture *fx = *state;
	struct stale_shared *sh = fx_shared(fx, sizeof *sh);

	sh->kind = STALE_IF_ERROR;
	sh->ttl_ms = SIE_TTL_MS;
	sh->window_ms = SIE_WINDOW_MS;
	sh->loader_ms = SIE_LOADER_MS;
	sh->run_ms = SIE_TTL_MS + SIE_WINDOW_MS + 700;
	sh->pause_us = SWR_PAUSE_US;
	stale_run(fx, sh, SWR_PROCS, SWR_THREADS);
	fprintf(stderr,
		"stale-if-error: %u fetches, %u in the stale phase, %u after the window, "
		"%u loader calls\n",
		atomic_load(&sh->fetches), atomic_load(&sh->stale_phase),
		atomic_load(&sh->after_window), atomic_load(&sh->calls));
	assert_no_problems(&sh->cm);
	assert_true(atomic_load(&sh->stale_phase) > 0);
	assert_true(atomic_load(&sh->after_window) > 0);
	assert_true(atomic_load(&sh->calls) >= 2);

	struct shmc_stats st = stats_of(fx->c);
	fprintf(stderr,
		"stale-if-error: stats stale_serves %" PRIu64 " stale_if_error %" PRIu64
		" loader_errors %" PRIu64 "\n",
		st.stale_serves, st.stale_if_error, st.loader_errors);
	assert_true(st.stale_if_error > 0);
	assert_true(st.loader_errors >= 1);
	assert_true(st.stale_serves >= st.stale_if_error);
	finish_clean(fx, false);
}

#define RECOVER_WINDOW_MS 3000u

/* A failed refresh holds further refreshes off for a cooling-down second
 * only (fetch.c): when the origin is back, a refresh after the cool-down
 * replaces the stale value well before the window ends, and no fetch waits. */
static void test_fetch_stale_if_error_refresh_retried_after_cooldown(void **state)
{
	struct fixture *fx = *state;
	struct stale_shared *sh = fx_shared(fx, sizeof *sh);

	sh->kind = STALE_RECOVER;
	sh->ttl_ms = SIE_TTL_MS;
	sh->window_ms = RECOVER_WINDOW_MS;
	sh->loader_ms = SIE_LOADER_MS;
	sh->run_ms = SIE_TTL_MS + RECOVER_WINDOW_MS - 500;
	sh->pause_us = SWR_PAUSE_US;
	stale_run(fx, sh, SWR_PROCS, SWR_THREADS);
	fprintf(stderr, "recover: %u fetches, %u loader calls, newest version served %" PRIu64 "\n",
		atomic_load(&sh->fetches), atomic_load(&sh->calls), atomic_load(&sh->max_seq));
	assert_no_problems(&sh->cm);
	assert_true(atomic_load(&sh->max_seq) >= 3);
	finish_clean(fx, false);
}

/* ------------------------------------------------ 1,000 keys missed at once */

#define MANY_KEYS 1000u
#define MANY_PROCS 8u
#define MANY_THREADS 4u
#define MANY_LOADER_US 2000u

struct many_shared {
	struct common cm;
	_Atomic unsigned ready;
	_Atomic uint32_t go;
	_Atomic unsigned total;
	_Atomic unsigned calls[MANY_KEYS];
	_Atomic unsigned served;
};

static size_t many_key(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "many-%04u", i);
}

static int many_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	struct many_shared *sh = arg;
	char name[16];
	unsigned i;

	snprintf(name, sizeof name, "%.*s", (int)klen, (const char *)key);
	if (sscanf(name, "many-%4u", &i) != 1 || i >= MANY_KEYS)
		return -EINVAL;
	atomic_fetch_add(&sh->calls[i], 1);
	atomic_fetch_add(&sh->total, 1);
	tu_sleep_us(MANY_LOADER_US);
	*val = make_value(key, klen, 1, VALUE_BYTES);
	*vlen = VALUE_BYTES;
	*ttl_ms = 0;
	return *val ? 0 : SHMC_ENOMEM;
}

static void *many_caller(void *arg)
{
	struct caller *w = arg;
	struct many_shared *sh = w->sh;
	unsigned order[MANY_KEYS];
	uint64_t rng = 0x5eed0000u + w->proc; /* the same order in each thread of a process */
	unsigned char buf[VALUE_BYTES];

	for (unsigned i = 0; i < MANY_KEYS; i++)
		order[i] = i;
	for (unsigned i = MANY_KEYS - 1; i > 0; i--) {
		unsigned j = (unsigned)tu_rand_below(&rng, i + 1), tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}
	atomic_fetch_add(&sh->ready, 1);
	gate_wait(&sh->go, 1);
	/* The process's threads split its order between them. */
	for (unsigned i = w->thread; i < MANY_KEYS; i += MANY_THREADS) {
		char key[16];
		size_t klen = many_key(key, sizeof key, order[i]), vlen = 0;
		uint64_t seq = 0;
		const char *bad;
		int rc = shmc_fetch(w->c, key, klen, buf, sizeof buf, &vlen, many_loader, sh);

		if (rc != 0)
			problem(&sh->cm, "%s: fetch: %s (%s)", key, shmc_errname(rc),
				shmc_errmsg(w->c));
		else if ((bad = value_problem(buf, vlen, key, klen, NULL, &seq)))
			problem(&sh->cm, "%s: value %s", key, bad);
		else
			atomic_fetch_add(&sh->served, 1);
	}
	return NULL;
}

/* 8 processes, each fetching all of 1,000 missing keys in its own order
 * with 4 threads: the origin sees exactly one call per key. */
static void test_fetch_1000_keys_from_8_processes_one_origin_call_each(void **state)
{
	struct fixture *fx = *state;
	struct many_shared *sh = fx_shared(fx, sizeof *sh);
	struct proc_spec ps = {
		.cm = &sh->cm, .sh = sh, .nthreads = MANY_THREADS, .thread_fn = many_caller};
	unsigned wrong = 0;

	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	fx_fork(fx, MANY_PROCS, run_callers, &ps);
	assert_true(wait_count(&sh->ready, MANY_PROCS * MANY_THREADS, WAIT_MS));
	gate_open(&sh->go, 1);
	assert_int_equal(fx_wait(fx), 0);
	assert_no_problems(&sh->cm);
	for (unsigned i = 0; i < MANY_KEYS; i++)
		if (atomic_load(&sh->calls[i]) != 1 && wrong++ < 5)
			fprintf(stderr, "many-%04u: %u loader calls\n", i,
				atomic_load(&sh->calls[i]));
	assert_int_equal(wrong, 0);
	assert_int_equal(atomic_load(&sh->total), MANY_KEYS);
	assert_int_equal(atomic_load(&sh->served), MANY_PROCS * MANY_KEYS);

	struct shmc_stats st = stats_of(fx->c);
	fprintf(stderr, "many: %" PRIu64 " coalesced waits\n", st.coalesced_waits);
	assert_int_equal(st.origin_calls, MANY_KEYS);
	assert_int_equal(st.fills, MANY_KEYS);
	assert_int_equal(st.items, MANY_KEYS);
	assert_int_equal(st.lease_takeovers, 0);
	finish_clean(fx, true);
}

/* shmc_fetch_many without an uplink: a loader of the caller's is called
 * once per missing key, one key after the other, and what it loads is
 * stored like shmc_fetch's; without a loader every key fails alone. */
static void test_fetch_many_without_uplink_loader_per_missing_key(void **state)
{
	struct fixture *fx = *state;
	static struct neg_shared sh;
	enum { N = 6 };
	char keys[N][16];
	unsigned char bufs[N][VALUE_BYTES];
	struct shmc_fetch_item items[N];

	memset(&sh, 0, sizeof sh);
	assert_int_equal(seg_create(fx->name, &(struct seg_cfg){0}, &fx->c), 0);
	for (unsigned i = 0; i < N; i++) {
		size_t klen = (size_t)snprintf(keys[i], sizeof keys[i], "fm-%u", i);
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = klen, .buf = bufs[i], .cap = VALUE_BYTES};
	}
	unsigned char small[8];
	items[N - 1].buf = small; /* its value does not fit */
	items[N - 1].cap = sizeof small;

	/* no loader, no uplink: each item fails, nothing is left behind */
	assert_int_equal(shmc_fetch_many(fx->c, items, N, NULL, NULL), 0);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(items[i].rc, SHMC_EUPLINK);

	assert_int_equal(shmc_fetch_many(fx->c, items, N, value_loader, &sh), N - 1);
	assert_int_equal(atomic_load(&sh.calls), N);
	for (unsigned i = 0; i < N - 1; i++) {
		uint64_t seq;
		const char *bad = items[i].rc ? shmc_errname(items[i].rc)
					      : value_problem(bufs[i], items[i].vlen, keys[i],
							      items[i].klen, NULL, &seq);
		if (bad)
			fail_msg("%s: %s", keys[i], bad);
	}
	assert_int_equal(items[N - 1].rc, SHMC_ERANGE);
	assert_int_equal(items[N - 1].vlen, VALUE_BYTES);

	/* stored: the second call is all hits (the short buffer still short) */
	assert_int_equal(shmc_fetch_many(fx->c, items, N, value_loader, &sh), N - 1);
	assert_int_equal(atomic_load(&sh.calls), N);
	assert_int_equal(stats_of(fx->c).origin_calls, N);
	finish_clean(fx, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_fetch_herd_of_128_callers_calls_loader_once_per_round),
		TEST(test_fetch_filler_killed_in_loader_one_waiter_takes_over),
		TEST(test_fetch_late_filler_one_takeover_waiters_get_takers_value),
		TEST(test_fetch_del_during_fill_value_returned_not_stored),
		TEST(test_fetch_set_during_fill_set_value_wins),
		TEST(test_fetch_absent_cached_for_negative_ttl_then_reloaded),
		TEST(test_fetch_stale_while_revalidate_one_refresh_per_expiry_no_waits),
		TEST(test_fetch_stale_refresh_once_per_expiry_under_contention),
		TEST(test_fetch_stale_if_error_serves_stale_until_window_end),
		TEST(test_fetch_stale_if_error_refresh_retried_after_cooldown),
		TEST(test_fetch_1000_keys_from_8_processes_one_origin_call_each),
		TEST(test_fetch_many_without_uplink_loader_per_missing_key),
		TEST(test_fetch_loader_euplink_reaches_filler_and_every_waiter),
		TEST(test_fetch_loader_eio_reaches_filler_and_every_waiter),
		TEST(test_fetch_loader_absent_reaches_every_waiter_and_is_cached),
		TEST(test_fetch_loader_value_over_chunk_etoobig_for_all_nothing_cached),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
