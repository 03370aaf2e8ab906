/*
 * test_eviction.c - making room under load, and what eviction keeps.
 *
 *  - Continuous overwrite: four writer processes overwrite a working set
 *    ten times the cache's capacity for a few seconds, with values of
 *    random size that carry their own checksum. Every shmc_set succeeds
 *    (memory is made, never refused: DESIGN.md section 5), and a read
 *    answers absent or exactly the latest value. Once with a sweeper
 *    process making room ahead of the writers, once with none (writers
 *    reclaim directly).
 *  - Scan resistance (S3-FIFO): a hot set that fills half the cache and
 *    has been read survives a one-pass scan of five times the cache's
 *    capacity of keys written once and never read.
 *  - Ghost admission: a key evicted from the probationary log and set
 *    again soon enters the main log directly (white-box).
 *  - Zero-copy safety: readers hold shmc_get_ref pointers for 0..5 ms and
 *    check the bytes at the END of the hold, while writers overwrite and
 *    evict and a sweeper process empties chunks.
 *
 * Each test ends with a reaper pass and shmc__verify (tu_verify.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "log.h"
#include "rcu.h"
#include "testutil.h"
#include "tu_verify.h"

#ifdef __SANITIZE_THREAD__
/* TSan cannot model two things these tests do on purpose. (1) jemalloc's
 * fork handlers lock every arena mutex and re-initialise them in the
 * child; TSan still believes them held, so the first allocation by a new
 * thread of a forked child (a child's role thread taking the role) is
 * reported as a double lock. (2) The lease is a robust process-shared
 * mutex: a thread whose pthread_mutex_timedlock returned EOWNERDEAD owns
 * it, but TSan's interceptor records only a return of 0, so the new
 * holder's unlock is reported as an unlock of an unlocked mutex. Both are
 * mutex-misuse reports, not races (races are still reported). They are
 * turned off rather than suppressed: matching a suppression symbolizes
 * the stack, which stalls the new holder for a few hundred milliseconds
 * and would distort the handover times measured here. TSAN_OPTIONS in the
 * environment still overrides this. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "report_mutex_bugs=0";
}
#endif

#define CHUNK_BYTES (64u << 10)
#define CHILD_WATCHDOG_S 120u
#define START_MS 5000u
#define MAX_WRITERS 4u
#define MAX_READERS 2u

/* ------------------------------------------------------- shared state */

struct writer_report {
	uint64_t sets, set_failures, reads, absent, wrong, bytes_written;
	char problem[256];
};

struct reader_report {
	uint64_t holds, checks, mismatches, displaced, not_found;
	uint64_t hold_ns_max;
	char problem[256];
};

struct ev_shared {
	char name[TU_NAME_MAX];
	unsigned nwriters, nreaders;
	unsigned nkeys;          /* per writer (overwrite) or in all (zero-copy) */
	unsigned duration_ms;
	struct tu_hwm *hwm;
	_Atomic unsigned start;  /* barrier: writers and readers */
	_Atomic int stop;
	_Atomic int sweeper_ready;
	_Atomic int sweeper_stop;
	struct writer_report w[MAX_WRITERS];
	struct reader_report r[MAX_READERS];
};

static struct ev_shared *shared_create(const char *name)
{
	struct ev_shared *sh = tu_shared_alloc(sizeof *sh);

	assert_non_null(sh);
	snprintf(sh->name, sizeof sh->name, "%s", name);
	return sh;
}

static shmc_cache *child_open(const char *name, int sweeper)
{
	shmc_opts *o;
	shmc_cache *c = NULL;
	int rc;

	if (shmc_opts_create(&o) != 0)
		return NULL;
	rc = shmc_opts_set_sweeper(o, sweeper);
	if (rc == 0)
		rc = shmc_open(name, o, 0, &c);
	shmc_opts_destroy(o);
	if (rc != 0) {
		tu_child_log("open %s: %s (%s)", name, shmc_errname(rc), shmc_errmsg(NULL));
		return NULL;
	}
	return c;
}

static void problem(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (buf[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

/* The sweeper process: holds the role (or waits for it) and nothing else. */
static int sweeper_child(unsigned index, void *arg)
{
	struct ev_shared *sh = arg;
	shmc_cache *c = child_open(sh->name, 1);

	(void)index;
	if (c == NULL)
		return 1;
	atomic_store(&sh->sweeper_ready, 1);
	while (!atomic_load(&sh->sweeper_stop))
		tu_sleep_ms(1);
	shmc_close(c);
	return 0;
}

static pid_t sweeper_start(shmc_cache *c, struct ev_shared *sh)
{
	pid_t pid;
	struct shmc_stats st;

	assert_int_equal(tu_fork_start(1, sweeper_child, sh, CHILD_WATCHDOG_S, &pid), 1);
	for (uint64_t deadline = tu_now_ms() + START_MS;; tu_sleep_ms(1)) {
		assert_int_equal(shmc_stats(c, &st), 0);
		if (st.sweeper_pid == (uint64_t)pid)
			break;
		if (tu_now_ms() > deadline)
			fail_msg("the sweeper process %ld did not take the role (holder %" PRIu64 ")",
			         (long)pid, st.sweeper_pid);
	}
	return pid;
}

static void sweeper_stop(struct ev_shared *sh, pid_t pid)
{
	atomic_store(&sh->sweeper_stop, 1);
	assert_int_equal(tu_wait_child(pid, "sweeper"), 0);
}

static struct shmc_stats stats_of(shmc_cache *c)
{
	struct shmc_stats st;

	assert_int_equal(shmc_stats(c, &st), 0);
	return st;
}

/* Where key's item is, white-box, without touching its reference bit (a
 * GET would set it and so change what eviction does with it). */
struct located {
	bool found;
	uint32_t chunk;
	uint32_t log;
	uint8_t refbit;
};

static struct located locate(shmc_cache *c, const char *key, size_t klen)
{
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(c, &err);
	struct shmc__keyref k;
	struct shmc__found f;
	struct located l = {0};

	assert_non_null(t);
	shmc__keyref_init(c, &k, key, klen);
	shmc__rcu_read_enter(c, t);
	if (shmc__index_find(c, &k, &f) == 0) {
		uint64_t off = shmc__entry_off(f.entry);

		l.found = true;
		l.chunk = shmc__chunk_of(c, off);
		l.log = uatomic_read(&c->chunks[l.chunk].log);
		l.refbit = f.hdr.refbit;
	}
	shmc__rcu_read_exit(c, t);
	return l;
}

/* ------------------------------------------------ continuous overwrite */

#define OW_SEGMENT_BYTES (4u << 20)
#define OW_WRITERS 4u
#define OW_DURATION_MS 5000u
#define OW_FACTOR 10u /* working set : capacity */
#define OW_VALUE_MAX 2048u

static size_t ow_key(char *buf, size_t cap, unsigned writer, unsigned i)
{
	return (size_t)snprintf(buf, cap, "ow-%u-%06u", writer, i);
}

/* Writer w owns keys ow-w-*: a read of one of them answers absent or the
 * last value w stored. */
static int ow_writer(unsigned w, void *arg)
{
	struct ev_shared *sh = arg;
	struct writer_report *rep = &sh->w[w];
	uint64_t *latest = calloc(sh->nkeys, sizeof *latest);
	unsigned char *val = malloc(OW_VALUE_MAX), *buf = malloc(OW_VALUE_MAX);
	uint64_t rng = 0x0e7e0000u + w, seq = 0;
	shmc_cache *c = child_open(sh->name, 0);

	if (c == NULL || latest == NULL || val == NULL || buf == NULL)
		return 1;
	tu_barrier_wait(&sh->start, sh->nwriters + 1);
	uint64_t end = tu_now_ms() + sh->duration_ms;
	while (tu_now_ms() < end) {
		for (int burst = 0; burst < 64; burst++) {
			char key[32];
			unsigned i = (unsigned)tu_rand_below(&rng, sh->nkeys);
			size_t klen = ow_key(key, sizeof key, w, i);
			size_t len = TU_VALUE_MIN_BYTES +
			             (size_t)tu_rand_below(&rng, OW_VALUE_MAX - TU_VALUE_MIN_BYTES + 1);
			tu_value_build(val, OW_VALUE_MAX, key, klen, w, ++seq, len);
			int rc = shmc_set(c, key, klen, val, len, 0, 0);
			if (rc == 0) {
				rep->sets++;
				latest[i] = seq;
				rep->bytes_written += SHMC__ITEM_HDR + klen + len;
			} else {
				rep->set_failures++;
				problem(rep->problem, sizeof rep->problem, "set %s (%zu bytes): %s (%s)",
				        key, len, shmc_errname(rc), shmc_errmsg(c));
			}

			unsigned j = (unsigned)tu_rand_below(&rng, sh->nkeys);
			size_t vlen = 0;
			struct tu_value_info info;
			klen = ow_key(key, sizeof key, w, j);
			rc = shmc_get(c, key, klen, buf, OW_VALUE_MAX, &vlen);
			rep->reads++;
			if (rc == SHMC_ENOTFOUND) {
				rep->absent++;
				continue;
			}
			enum tu_verdict v = rc == 0 ? tu_value_check(buf, vlen, key, klen, NULL, &info)
			                            : TU_TORN;
			if (rc == 0 && v == TU_OK && info.writer_id == w && info.seq == latest[j])
				continue;
			rep->wrong++;
			problem(rep->problem, sizeof rep->problem,
			        "get %s: %s, verdict %s, seq %" PRIu64 ", latest %" PRIu64, key,
			        shmc_errname(rc), tu_verdict_name(v),
			        rc == 0 && v != TU_TORN ? info.seq : 0, latest[j]);
		}
	}
	shmc_close(c);
	free(latest);
	free(val);
	free(buf);
	return 0;
}

static void run_overwrite(const char *tag, bool with_sweeper)
{
	char name[TU_NAME_MAX];
	shmc_cache *c;
	pid_t sweeper = -1, pids[OW_WRITERS];

	tu_segname(name, sizeof name, tag);
	assert_int_equal(tu_open_fresh(name, OW_SEGMENT_BYTES, CHUNK_BYTES, 0, &c), 0);
	struct ev_shared *sh = shared_create(name);
	struct shmc_stats st0 = stats_of(c);
	/* Item: 12-byte header, ~11-byte key, a value of 36..2048 bytes. */
	uint64_t avg_item = SHMC__ITEM_HDR + 11 + (TU_VALUE_MIN_BYTES + OW_VALUE_MAX) / 2;
	sh->nwriters = OW_WRITERS;
	sh->nkeys = (unsigned)(OW_FACTOR * st0.data_bytes / avg_item / OW_WRITERS);
	sh->duration_ms = OW_DURATION_MS;
	if (with_sweeper)
		sweeper = sweeper_start(c, sh);

	assert_int_equal(tu_fork_start(OW_WRITERS, ow_writer, sh, CHILD_WATCHDOG_S, pids),
	                 OW_WRITERS);
	tu_barrier_wait(&sh->start, OW_WRITERS + 1);
	uint64_t passes0 = stats_of(c).sweeper_passes;
	unsigned failed = tu_fork_wait(OW_WRITERS, pids);
	struct shmc_stats st = stats_of(c);
	if (with_sweeper) {
		assert_int_equal(st.sweeper_pid, (uint64_t)sweeper);
		sweeper_stop(sh, sweeper);
	}

	uint64_t sets = 0, failures = 0, reads = 0, absent = 0, wrong = 0, bytes = 0;
	for (unsigned w = 0; w < OW_WRITERS; w++) {
		const struct writer_report *r = &sh->w[w];

		sets += r->sets;
		failures += r->set_failures;
		reads += r->reads;
		absent += r->absent;
		wrong += r->wrong;
		bytes += r->bytes_written;
		if (r->problem[0] != '\0')
			fprintf(stderr, "writer %u: first problem: %s\n", w, r->problem);
	}
	printf("%s: %u keys x %u writers (%.1f x the %" PRIu64 "-byte data area), %" PRIu64
	       " sets, %" PRIu64 " failed, %" PRIu64 " reads (%" PRIu64 " absent, %" PRIu64
	       " wrong), %.1f MiB written; evictions %" PRIu64 " (probation %" PRIu64
	       ", clock %" PRIu64 ", direct %" PRIu64 "), enospc %" PRIu64
	       ", sweeper passes %" PRIu64 "\n",
	       tag, sh->nkeys, OW_WRITERS,
	       (double)sh->nkeys * OW_WRITERS * (double)avg_item / (double)st.data_bytes,
	       st.data_bytes, sets, failures, reads, absent, wrong, (double)bytes / 1048576.0,
	       st.evictions, st.evictions_probation, st.evictions_clock, st.evictions_direct,
	       st.enospc, st.sweeper_passes - passes0);
	assert_int_equal(failed, 0);
	assert_int_equal(failures, 0);
	assert_int_equal(st.enospc, 0);
	assert_int_equal(wrong, 0);
	assert_true(bytes > 2 * st.data_bytes); /* the log turned over */
	assert_true(st.evictions > 0);
	assert_true(absent > 0);
	if (with_sweeper)
		assert_true(st.sweeper_passes > passes0);
	else
		assert_true(st.sweeper_pid == 0 && st.sweeper_passes == 0);
	tu_shared_free(sh, sizeof *sh);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

static void test_eviction_overwrite_10x_capacity_with_sweeper_never_enospc(void **state)
{
	(void)state;
	run_overwrite("ev-ow-sweeper", true);
}

static void test_eviction_overwrite_10x_capacity_without_sweeper_never_enospc(void **state)
{
	(void)state;
	run_overwrite("ev-ow-direct", false);
}

/* ---------------------------------------------------- scan resistance */

#define SCAN_SEGMENT_BYTES (8u << 20)
#define SCAN_VALUE 500u
#define SCAN_HOT_SHARE 0.5  /* of the data area */
#define SCAN_FACTOR 5u      /* scan bytes : data area */
#define SCAN_HOT_READS 3u

static size_t hot_key(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "hot-%07u", i);
}

/* 1 if hot key i holds its value (seq i + 1), 0 if absent; fails the test
 * on a wrong value. */
static int hot_present(shmc_cache *c, unsigned i, unsigned char *buf)
{
	char key[32];
	size_t klen = hot_key(key, sizeof key, i), vlen = 0;
	struct tu_value_info info;
	int rc = shmc_get(c, key, klen, buf, SCAN_VALUE, &vlen);

	if (rc == SHMC_ENOTFOUND)
		return 0;
	assert_int_equal(rc, 0);
	assert_int_equal(tu_value_check(buf, vlen, key, klen, NULL, &info), TU_OK);
	assert_int_equal(info.seq, i + 1);
	return 1;
}

static void run_scan(const char *tag, int sweeper)
{
	char name[TU_NAME_MAX];
	shmc_cache *c;
	unsigned char val[SCAN_VALUE], buf[SCAN_VALUE];

	tu_segname(name, sizeof name, tag);
	assert_int_equal(tu_open_fresh(name, SCAN_SEGMENT_BYTES, CHUNK_BYTES, sweeper, &c), 0);
	if (sweeper)
		for (uint64_t deadline = tu_now_ms() + START_MS;
		     stats_of(c).sweeper_pid != (uint64_t)getpid(); tu_sleep_ms(1))
			assert_true(tu_now_ms() < deadline);
	struct shmc_stats st = stats_of(c);
	const uint64_t item = SHMC__ITEM_HDR + 11 + SCAN_VALUE; /* both kinds of key */
	const unsigned nhot = (unsigned)(SCAN_HOT_SHARE * (double)st.data_bytes / (double)item);

	/* The hot set, read a few times over. */
	for (unsigned i = 0; i < nhot; i++) {
		char key[32];
		size_t klen = hot_key(key, sizeof key, i);

		tu_value_build(val, sizeof val, key, klen, 0, i + 1, SCAN_VALUE);
		assert_int_equal(shmc_set(c, key, klen, val, SCAN_VALUE, 0, 0), 0);
	}
	for (unsigned r = 0; r < SCAN_HOT_READS; r++)
		for (unsigned i = 0; i < nhot; i++)
			assert_int_equal(hot_present(c, i, buf), 1);

	/* The scan: new keys, each written once, never read. */
	uint64_t scanned = 0;
	for (unsigned i = 0; scanned < SCAN_FACTOR * st.data_bytes; i++) {
		char key[32];
		size_t klen = (size_t)snprintf(key, sizeof key, "scn-%07u", i);

		tu_value_build(val, sizeof val, key, klen, 1, i + 1, SCAN_VALUE);
		int rc = shmc_set(c, key, klen, val, SCAN_VALUE, 0, 0);
		if (rc != 0)
			fail_msg("scan set %s: %s (%s)", key, shmc_errname(rc), shmc_errmsg(c));
		scanned += SHMC__ITEM_HDR + klen + SCAN_VALUE;
	}

	/* Where the hot set is, white-box, before reading it again. */
	unsigned in_main = 0;
	for (unsigned i = 0; i < nhot; i++) {
		char key[32];
		size_t klen = hot_key(key, sizeof key, i);
		struct located l = locate(c, key, klen);

		in_main += l.found && l.log == SHMC__LOG_MAIN;
	}
	unsigned survived = 0;
	for (unsigned i = 0; i < nhot; i++)
		survived += (unsigned)hot_present(c, i, buf);
	st = stats_of(c);
	printf("%s: hot set %u items (%.0f%% of the data area); after a scan of %.1f x the data "
	       "area, %u survive (%.1f%%), %u in the main log; promotions %" PRIu64
	       ", evictions %" PRIu64 " (probation %" PRIu64 ", clock %" PRIu64 ", direct %" PRIu64
	       "), probation chunks %" PRIu64 " of %" PRIu64 "\n",
	       tag, nhot, 100.0 * (double)nhot * (double)item / (double)st.data_bytes,
	       (double)scanned / (double)st.data_bytes, survived,
	       100.0 * survived / nhot, in_main, st.promotions, st.evictions,
	       st.evictions_probation, st.evictions_clock, st.evictions_direct,
	       st.chunks_probation, st.chunks_total);
	/* Close (stopping an in-process sweeper) before asserting: a failure
	 * must not leave a role thread running into the next test. */
	shmc_close(c);
	int verify = tu_verify_clean(name, NULL);
	shmc_unlink(name);
	assert_true(st.evictions > 0);
	assert_true(st.promotions >= (uint64_t)nhot * 9 / 10);
	assert_true(survived * 10 >= nhot * 9);
	assert_true(in_main >= survived * 9 / 10);
	assert_int_equal(st.enospc, 0);
	assert_int_equal(verify, 0);
}

static void test_eviction_scan_keeps_read_hot_set_with_sweeper(void **state)
{
	(void)state;
	run_scan("ev-scan-sweeper", 1);
}

static void test_eviction_scan_keeps_read_hot_set_without_sweeper(void **state)
{
	(void)state;
	run_scan("ev-scan-direct", 0);
}

/* --------------------------------------------------- ghost admission */

#define GHOST_SEGMENT_BYTES (4u << 20)

/* Set key with a small value; returns where it went. */
static struct located set_small(shmc_cache *c, const char *key)
{
	size_t klen = strlen(key);

	assert_int_equal(shmc_set(c, key, klen, "value", 5, 0, 0), 0);
	return locate(c, key, klen);
}

static void test_eviction_key_evicted_from_probation_is_promoted_when_set_again(void **state)
{
	char name[TU_NAME_MAX];
	shmc_cache *c;
	static const char K[] = "ghost-key";
	unsigned char val[SCAN_VALUE];
	struct shmc__keyref kk;

	(void)state;
	tu_segname(name, sizeof name, "ev-ghost");
	assert_int_equal(tu_open_fresh(name, GHOST_SEGMENT_BYTES, CHUNK_BYTES, 0, &c), 0);
	shmc__keyref_init(c, &kk, K, sizeof K - 1);
	uint16_t *ghost = &c->buckets[kk.bucket].ghost;
	const uint16_t fp = shmc__ghost_fp(&kk);

	struct located l = set_small(c, K);
	assert_true(l.found);
	assert_int_equal(l.log, SHMC__LOG_SMALL); /* new keys start on probation */
	assert_int_not_equal(__atomic_load_n(ghost, __ATOMIC_RELAXED), fp);

	/* Keys never read push K out of probation. None of them shares K's
	 * primary bucket, so the bucket's ghost can only be K's. */
	struct shmc_stats st = stats_of(c);
	uint64_t written = 0;
	unsigned i = 0;
	for (; locate(c, K, sizeof K - 1).found; i++) {
		char key[32];
		size_t klen = (size_t)snprintf(key, sizeof key, "push-%07u", i);
		struct shmc__keyref kr;

		shmc__keyref_init(c, &kr, key, klen);
		if (kr.bucket == kk.bucket)
			continue;
		tu_value_build(val, sizeof val, key, klen, 0, i + 1, sizeof val);
		assert_int_equal(shmc_set(c, key, klen, val, sizeof val, 0, 0), 0);
		written += SHMC__ITEM_HDR + klen + sizeof val;
		assert_true(written < 4 * st.data_bytes);
	}
	printf("ghost: %s evicted after %u more keys (%.2f x the data area)\n", K, i,
	       (double)written / (double)st.data_bytes);
	assert_int_equal(__atomic_load_n(ghost, __ATOMIC_RELAXED), fp);

	/* Asked for again soon: it has proved it comes back. Writers write
	 * only to probation, so it enters there already marked read, which
	 * promotes it when its chunk leaves probation; the ghost is spent. */
	l = set_small(c, K);
	assert_true(l.found);
	assert_int_equal(l.log, SHMC__LOG_SMALL);
	assert_int_equal(l.refbit, 1);
	assert_int_equal(__atomic_load_n(ghost, __ATOMIC_RELAXED), 0);

	/* A key without a ghost still starts on probation. */
	static const char F[] = "fresh-key";
	struct shmc__keyref kf;
	shmc__keyref_init(c, &kf, F, sizeof F - 1);
	assert_int_not_equal(__atomic_load_n(&c->buckets[kf.bucket].ghost, __ATOMIC_RELAXED),
	                     shmc__ghost_fp(&kf));
	l = set_small(c, F);
	assert_true(l.found);
	assert_int_equal(l.log, SHMC__LOG_SMALL);
	assert_int_equal(l.refbit, 0);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

/* ------------------------------------------------ zero-copy safety */

#define ZC_SEGMENT_BYTES (16u << 20)
#define ZC_WRITERS 2u
#define ZC_READERS 2u
#define ZC_DURATION_MS 5000u
#define ZC_FACTOR 3u       /* working set : capacity */
#define ZC_VALUE_MAX 2048u
#define ZC_HOLD_MAX_US 5000u
#define ZC_HELD_MAX 4u

static size_t zc_key(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "zc-%06u", i);
}

static int zc_writer(unsigned w, void *arg)
{
	struct ev_shared *sh = arg;
	struct writer_report *rep = &sh->w[w];
	unsigned char *val = malloc(ZC_VALUE_MAX);
	uint64_t rng = 0x2c000000u + w, seq = 0;
	shmc_cache *c = child_open(sh->name, 0);

	if (c == NULL || val == NULL)
		return 1;
	tu_barrier_wait(&sh->start, sh->nwriters + sh->nreaders + 1);
	while (!atomic_load(&sh->stop)) {
		char key[32];
		size_t klen = zc_key(key, sizeof key, (unsigned)tu_rand_below(&rng, sh->nkeys));
		size_t len = TU_VALUE_MIN_BYTES +
		             (size_t)tu_rand_below(&rng, ZC_VALUE_MAX - TU_VALUE_MIN_BYTES + 1);

		tu_value_build(val, ZC_VALUE_MAX, key, klen, w, ++seq, len);
		tu_hwm_publish(sh->hwm, w, seq);
		int rc = shmc_set(c, key, klen, val, len, 0, 0);
		if (rc == 0) {
			rep->sets++;
			rep->bytes_written += SHMC__ITEM_HDR + klen + len;
		} else {
			rep->set_failures++;
			problem(rep->problem, sizeof rep->problem, "set %s: %s (%s)", key,
			        shmc_errname(rc), shmc_errmsg(c));
		}
	}
	shmc_close(c);
	free(val);
	return 0;
}

struct held {
	const void *ptr;
	size_t len;
	char key[32];
	size_t klen;
	unsigned char copy[ZC_VALUE_MAX];
};

static int zc_reader(unsigned index, void *arg)
{
	struct ev_shared *sh = arg;
	unsigned r = index - sh->nwriters;
	struct reader_report *rep = &sh->r[r];
	struct held *held = calloc(ZC_HELD_MAX, sizeof *held);
	uint64_t rng = 0x7ead0000u + r;
	shmc_cache *c = child_open(sh->name, 0);

	if (c == NULL || held == NULL)
		return 1;
	tu_barrier_wait(&sh->start, sh->nwriters + sh->nreaders + 1);
	while (!atomic_load(&sh->stop)) {
		unsigned want = 1 + (unsigned)tu_rand_below(&rng, ZC_HELD_MAX), n = 0;

		if (shmc_read_begin(c) != 0)
			return 1;
		uint64_t begin = tu_now_ns();
		for (unsigned i = 0; i < want; i++) {
			struct held *h = &held[n];

			h->klen = zc_key(h->key, sizeof h->key,
			                 (unsigned)tu_rand_below(&rng, sh->nkeys));
			int rc = shmc_get_ref(c, h->key, h->klen, &h->ptr, &h->len);
			if (rc == SHMC_ENOTFOUND) {
				rep->not_found++;
				continue;
			}
			if (rc != 0 || h->len > ZC_VALUE_MAX) {
				rep->mismatches++;
				problem(rep->problem, sizeof rep->problem, "get_ref %s: %s, %zu bytes",
				        h->key, shmc_errname(rc), h->len);
				continue;
			}
			memcpy(h->copy, h->ptr, h->len);
			n++;
		}
		tu_sleep_us((unsigned)tu_rand_below(&rng, ZC_HOLD_MAX_US + 1));
		/* The end of the hold: the bytes must still be the value. */
		for (unsigned i = 0; i < n; i++) {
			struct held *h = &held[i];
			enum tu_verdict v = tu_value_check(h->ptr, h->len, h->key, h->klen, sh->hwm,
			                                   NULL);
			const void *now_ptr = NULL;
			size_t now_len = 0;

			rep->checks++;
			if (v != TU_OK || memcmp(h->copy, h->ptr, h->len) != 0) {
				rep->mismatches++;
				problem(rep->problem, sizeof rep->problem,
				        "%s held %.3f ms: verdict %s, bytes %s", h->key,
				        (double)(tu_now_ns() - begin) / 1e6, tu_verdict_name(v),
				        memcmp(h->copy, h->ptr, h->len) ? "changed" : "unchanged");
			}
			/* Did the writers or the sweeper move on meanwhile? */
			if (shmc_get_ref(c, h->key, h->klen, &now_ptr, &now_len) != 0 ||
			    now_ptr != h->ptr)
				rep->displaced++;
		}
		uint64_t held_ns = tu_now_ns() - begin;
		if (held_ns > rep->hold_ns_max)
			rep->hold_ns_max = held_ns;
		rep->holds++;
		if (shmc_read_end(c) != 0)
			return 1;
	}
	shmc_close(c);
	free(held);
	return 0;
}

static int zc_child(unsigned index, void *arg)
{
	const struct ev_shared *sh = arg;

	return index < sh->nwriters ? zc_writer(index, arg) : zc_reader(index, arg);
}

static void test_eviction_zero_copy_refs_intact_to_end_of_hold(void **state)
{
	char name[TU_NAME_MAX];
	shmc_cache *c;
	pid_t pids[ZC_WRITERS + ZC_READERS];

	(void)state;
	tu_segname(name, sizeof name, "ev-zerocopy");
	assert_int_equal(tu_open_fresh(name, ZC_SEGMENT_BYTES, CHUNK_BYTES, 0, &c), 0);
	struct ev_shared *sh = shared_create(name);
	struct shmc_stats st = stats_of(c);
	uint64_t avg_item = SHMC__ITEM_HDR + 9 + (TU_VALUE_MIN_BYTES + ZC_VALUE_MAX) / 2;
	sh->nwriters = ZC_WRITERS;
	sh->nreaders = ZC_READERS;
	sh->nkeys = (unsigned)(ZC_FACTOR * st.data_bytes / avg_item);
	sh->hwm = tu_hwm_create(ZC_WRITERS);
	assert_non_null(sh->hwm);
	pid_t sweeper = sweeper_start(c, sh);

	assert_int_equal(tu_fork_start(ZC_WRITERS + ZC_READERS, zc_child, sh, CHILD_WATCHDOG_S,
	                               pids),
	                 ZC_WRITERS + ZC_READERS);
	tu_barrier_wait(&sh->start, ZC_WRITERS + ZC_READERS + 1);
	uint64_t passes0 = stats_of(c).sweeper_passes;
	tu_sleep_ms(ZC_DURATION_MS);
	atomic_store(&sh->stop, 1);
	unsigned failed = tu_fork_wait(ZC_WRITERS + ZC_READERS, pids);
	st = stats_of(c);
	assert_int_equal(st.sweeper_pid, (uint64_t)sweeper);
	sweeper_stop(sh, sweeper);

	uint64_t sets = 0, set_failures = 0, bytes = 0;
	uint64_t holds = 0, checks = 0, mismatches = 0, displaced = 0, hold_max = 0;
	for (unsigned w = 0; w < ZC_WRITERS; w++) {
		sets += sh->w[w].sets;
		set_failures += sh->w[w].set_failures;
		bytes += sh->w[w].bytes_written;
		if (sh->w[w].problem[0] != '\0')
			fprintf(stderr, "writer %u: first problem: %s\n", w, sh->w[w].problem);
	}
	for (unsigned r = 0; r < ZC_READERS; r++) {
		holds += sh->r[r].holds;
		checks += sh->r[r].checks;
		mismatches += sh->r[r].mismatches;
		displaced += sh->r[r].displaced;
		if (sh->r[r].hold_ns_max > hold_max)
			hold_max = sh->r[r].hold_ns_max;
		if (sh->r[r].problem[0] != '\0')
			fprintf(stderr, "reader %u: first problem: %s\n", r, sh->r[r].problem);
	}
	printf("zero-copy: %" PRIu64 " holds (longest %.3f ms), %" PRIu64 " references checked "
	       "at the end of their hold, %" PRIu64 " mismatches, %" PRIu64
	       " displaced while held; writers: %" PRIu64 " sets (%" PRIu64 " failed), %.1f x "
	       "the data area; evictions %" PRIu64 ", sweeper passes %" PRIu64 "\n",
	       holds, (double)hold_max / 1e6, checks, mismatches, displaced, sets, set_failures,
	       (double)bytes / (double)st.data_bytes, st.evictions,
	       st.sweeper_passes - passes0);
	assert_int_equal(failed, 0);
	assert_int_equal(mismatches, 0);
	assert_int_equal(set_failures, 0);
	assert_true(checks >= 200);
	assert_true(displaced > 0);  /* references outlived their items */
	assert_true(st.evictions > 0);
	assert_true(st.sweeper_passes > passes0);
	tu_hwm_destroy(sh->hwm);
	tu_shared_free(sh, sizeof *sh);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eviction_overwrite_10x_capacity_with_sweeper_never_enospc),
		cmocka_unit_test(test_eviction_overwrite_10x_capacity_without_sweeper_never_enospc),
		cmocka_unit_test(test_eviction_scan_keeps_read_hot_set_with_sweeper),
		cmocka_unit_test(test_eviction_scan_keeps_read_hot_set_without_sweeper),
		cmocka_unit_test(test_eviction_key_evicted_from_probation_is_promoted_when_set_again),
		cmocka_unit_test(test_eviction_zero_copy_refs_intact_to_end_of_hold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
