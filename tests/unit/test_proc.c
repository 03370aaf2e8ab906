/*
 * test_proc.c - process and thread slots (proc.c): attaching takes a slot
 * and its OFD lock, a SIGKILLed process's slot is seen dead and reaped
 * (thread slots released, counters folded, open chunks sealed), bucket
 * locks of dead holders are taken over, and the process limit.
 *
 * Children open the segment themselves, do their part, signal through
 * shared memory and sleep until the parent SIGKILLs them (their alarm()
 * watchdog ends them otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "proc.h"
#include "unitutil.h"

#define SEGMENT_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)
#define MAX_PROCS 8u
#define FEW_PROCS 3u
#define CHILD_WATCHDOG_S 30u
#define SIGNAL_TIMEOUT_MS 10000u
#define TAKEOVER_MS 1000u

static const char LOCKED_KEY[] = "locked-key";

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = MAX_PROCS,
		.max_threads = 32,
	};

	return uu_setup(state, &p);
}

static int setup_few_procs(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = FEW_PROCS,
		.max_threads = 32,
	};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)
#define TEST_FEW(fn)                                                                               \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_few_procs, uu_teardown, (void *)#fn)

/* F_OFD_GETLK on proc slot idx's byte through a fresh open file
 * description: F_UNLCK if nobody holds it. */
static short lock_type_seen(void **state, uint32_t idx)
{
	char path[TU_NAME_MAX + 32];
	struct flock fl = {.l_type = F_WRLCK,
			   .l_whence = SEEK_SET,
			   .l_start = SHMC__OFD_PROC_BASE + (off_t)idx,
			   .l_len = 1};

	snprintf(path, sizeof path, "/shmc.%s", fixture_of(state)->name);
	int fd = shm_open(path, O_RDWR, 0);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
	close(fd);
	return fl.l_type;
}

/* ------------------------------------------------------------ attaching */

static void test_proc_attach_marks_slot_active(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_true(c->proc_idx < MAX_PROCS);
	assert_int_equal(c->procs[c->proc_idx].state, SHMC__PROC_ACTIVE);
	assert_int_equal(c->procs[c->proc_idx].pid, (uint32_t)getpid());
}

static void test_proc_attach_holds_ofd_lock(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(lock_type_seen(state, c->proc_idx), F_WRLCK);
	assert_int_equal(lock_type_seen(state, (c->proc_idx + 1) % MAX_PROCS), F_UNLCK);
}

static void test_proc_alive_true_for_own_slot(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_true(shmc__proc_alive(c, c->proc_idx));
}

/* Through another handle (another open file description) our slot is
 * seen by its lock, not by the "it is us" shortcut. */
static void test_proc_alive_true_for_other_live_handle(void **state)
{
	shmc_cache *c = cache_of(state), *c2 = NULL;

	assert_int_equal(shmc_open(fixture_of(state)->name, NULL, 0, &c2), 0);
	assert_int_not_equal(c2->proc_idx, c->proc_idx);
	assert_true(shmc__proc_alive(c2, c->proc_idx));
	assert_true(shmc__proc_alive(c, c2->proc_idx));
	shmc_close(c2);
}

static void test_proc_alive_false_for_free_slot(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_false(shmc__proc_alive(c, (c->proc_idx + 1) % MAX_PROCS));
}

static void test_proc_close_releases_slot_and_lock(void **state)
{
	shmc_cache *c = cache_of(state), *c2 = NULL;

	assert_int_equal(shmc_open(fixture_of(state)->name, NULL, 0, &c2), 0);
	uint32_t idx = c2->proc_idx;
	tctx_of(c2);
	shmc_close(c2);
	assert_int_equal(c->procs[idx].state, SHMC__PROC_FREE);
	assert_int_equal(lock_type_seen(state, idx), F_UNLCK);
	assert_false(shmc__proc_alive(c, idx));
}

/* ------------------------------------------------ a SIGKILLed child */

struct child_info {
	char name[TU_NAME_MAX];
	_Atomic int ready;
	uint32_t proc_idx;
	uint32_t slot_idx;
	uint32_t chunk; /* its open chunk, index */
	uint32_t lock_id;
	uint32_t bucket; /* LOCKED_KEY's bucket, locked (lock mode) */
	int lock_bucket; /* set by the parent: lock LOCKED_KEY's bucket */
	uint64_t counters[SHMC__NCOUNTERS];
};

/* Child: open, do some sets and gets (or lock a bucket), report, sleep. */
static int worker_child(unsigned index, void *arg)
{
	struct child_info *ci = arg;
	shmc_cache *c = NULL;
	char key[32], buf[64];
	size_t vlen;

	(void)index;
	if (shmc_open(ci->name, NULL, 0, &c) != 0) {
		tu_child_log("shmc_open: %s", shmc_errmsg(NULL));
		return 1;
	}
	for (unsigned i = 0; i < 5; i++) {
		size_t klen = (size_t)snprintf(key, sizeof key, "child-%u", i);

		if (shmc_set(c, key, klen, "v", 1, 0, 0) != 0)
			return 1;
	}
	for (unsigned i = 0; i < 7; i++) {
		size_t klen = (size_t)snprintf(key, sizeof key, "child-%u", i);

		(void)shmc_get(c, key, klen, buf, sizeof buf, &vlen);
	}
	struct shmc__tctx *t = uu_tctx(c);
	if (t == NULL || t->open[SHMC__LOG_SMALL].chunk == 0)
		return 1;
	ci->proc_idx = c->proc_idx;
	ci->slot_idx = t->slot_idx;
	ci->chunk = t->open[SHMC__LOG_SMALL].chunk - 1;
	ci->lock_id = t->lock_id;
	memcpy(ci->counters, t->slot->counters, sizeof ci->counters);
	if (ci->lock_bucket) {
		struct shmc__keyref k;

		shmc__keyref_init(c, &k, LOCKED_KEY, sizeof LOCKED_KEY - 1);
		shmc__bucket_lock(c, t, k.bucket);
		ci->bucket = k.bucket;
	}
	atomic_store(&ci->ready, 1);
	uu_child_sleep_forever();
}

static struct child_info *child_start(void **state, int lock_bucket, pid_t *pid)
{
	struct child_info *ci = tu_shared_alloc(sizeof *ci);

	assert_non_null(ci);
	snprintf(ci->name, sizeof ci->name, "%s", fixture_of(state)->name);
	ci->lock_bucket = lock_bucket;
	assert_int_equal(tu_fork_start(1, worker_child, ci, CHILD_WATCHDOG_S, pid), 1);
	if (!uu_wait_flag(&ci->ready, 1, SIGNAL_TIMEOUT_MS, *pid, NULL)) {
		uu_kill_child(*pid);
		fail_msg("the child never got ready");
	}
	return ci;
}

static void child_done(struct child_info *ci)
{
	tu_shared_free(ci, sizeof *ci);
}

static void test_proc_killed_child_detected_dead(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	bool alive_before = shmc__proc_alive(c, ci->proc_idx);
	assert_int_equal(uu_kill_child(pid), 0);
	assert_true(alive_before);
	assert_false(shmc__proc_alive(c, ci->proc_idx));
	/* Nobody has reaped it yet: the slot still says ACTIVE. */
	assert_int_equal(c->procs[ci->proc_idx].state, SHMC__PROC_ACTIVE);
	child_done(ci);
}

static void test_proc_reap_live_child_returns_false(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	bool reaped = shmc__proc_reap_if_dead(c, ci->proc_idx);
	uint32_t st = c->procs[ci->proc_idx].state;
	uint32_t owner = c->threads[ci->slot_idx].owner_proc;
	assert_int_equal(uu_kill_child(pid), 0);
	assert_false(reaped);
	assert_int_equal(st, SHMC__PROC_ACTIVE);
	assert_int_equal(owner, ci->proc_idx + 1);
	child_done(ci);
}

static void test_proc_reap_dead_child_frees_proc_slot(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	assert_true(shmc__proc_reap_if_dead(c, ci->proc_idx));
	assert_int_equal(c->procs[ci->proc_idx].state, SHMC__PROC_FREE);
	assert_int_equal(lock_type_seen(state, ci->proc_idx), F_UNLCK);
	assert_false(shmc__proc_reap_if_dead(c, ci->proc_idx)); /* once */
	child_done(ci);
}

static void test_proc_reap_dead_child_frees_thread_slots(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	assert_int_equal(c->threads[ci->slot_idx].owner_proc, ci->proc_idx + 1);
	shmc__proc_reap_if_dead(c, ci->proc_idx);
	assert_int_equal(c->threads[ci->slot_idx].owner_proc, 0);
	assert_true(c->threads[ci->slot_idx].rcu_ctr == 0);
	for (uint32_t i = 0; i < c->geo.max_threads; i++)
		assert_int_not_equal(c->threads[i].owner_proc, ci->proc_idx + 1);
	child_done(ci);
}

static void test_proc_reap_dead_child_folds_counters(void **state)
{
	shmc_cache *c = cache_of(state);
	uint64_t before[SHMC__NCOUNTERS];
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	memcpy(before, c->hdr->folded, sizeof before);
	assert_true(ci->counters[SHMC__CTR_gets] == 7);
	assert_true(ci->counters[SHMC__CTR_misses] == 2);
	assert_true(ci->counters[SHMC__CTR_sets] == 5);
	shmc__proc_reap_if_dead(c, ci->proc_idx);
	for (int k = 0; k < SHMC__NCOUNTERS; k++)
		if (c->hdr->folded[k] - before[k] != ci->counters[k])
			fail_msg("counter %d: folded %llu, the child had %llu", k,
				 (unsigned long long)(c->hdr->folded[k] - before[k]),
				 (unsigned long long)ci->counters[k]);
	for (int k = 0; k < SHMC__NCOUNTERS; k++)
		assert_true(c->threads[ci->slot_idx].counters[k] == 0);
	child_done(ci);
}

/* Host-wide totals keep a dead process's work after it is reaped. */
static void test_proc_reap_dead_child_stats_keep_counts(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc_stats before, after;
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(shmc_stats(c, &before), 0);
	assert_int_equal(uu_kill_child(pid), 0);
	shmc__proc_reap_if_dead(c, ci->proc_idx);
	assert_int_equal(shmc_stats(c, &after), 0);
	assert_true(after.gets == before.gets);
	assert_true(after.sets == before.sets);
	assert_true(after.items == before.items);
	assert_true(after.procs_attached == before.procs_attached - 1);
	child_done(ci);
}

static void test_proc_reap_dead_child_seals_open_chunk(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	assert_int_equal(c->chunks[ci->chunk].state, SHMC__CHUNK_OPEN);
	shmc__proc_reap_if_dead(c, ci->proc_idx);
	assert_int_equal(c->chunks[ci->chunk].state, SHMC__CHUNK_SEALED);
	child_done(ci);
}

#if defined(SHMC_FAULT_POINTS) && SHMC_FAULT_POINTS
/* Two threads of one process reaping the same dead process. The OFD lock
 * belongs to the open file description both threads use, so it does not
 * keep them apart: without more, the second would free the dead thread
 * slots while the first is still sealing chunks by owner, and once a new
 * process took one of those slots and opened a chunk, the first would
 * seal that live chunk. So a reaper held inside the reap keeps the other
 * out until it is done. */
static _Atomic int reaper_held, reaper_release;

static void hold_first_reaper(const char *point)
{
	(void)point;
	if (atomic_exchange(&reaper_held, 1) != 0)
		return; /* only the first pass is held */
	for (int ms = 0; ms < 10000 && !atomic_load(&reaper_release); ms++)
		usleep(1000);
}

struct reaper {
	shmc_cache *c;
	uint32_t idx;
	bool reaped;
	_Atomic int done;
	pthread_t thread;
};

static void *reaper_main(void *arg)
{
	struct reaper *r = arg;

	r->reaped = shmc__proc_reap_if_dead(r->c, r->idx);
	atomic_store(&r->done, 1);
	return NULL;
}

static void test_proc_reapers_in_one_process_take_turns(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);
	struct reaper first = {.c = c, .idx = ci->proc_idx}, second = first;

	assert_int_equal(uu_kill_child(pid), 0);
	atomic_store(&reaper_held, 0);
	atomic_store(&reaper_release, 0);
	shmc__fault_set_hook("reap.thread", hold_first_reaper);
	assert_int_equal(pthread_create(&first.thread, NULL, reaper_main, &first), 0);
	for (int ms = 0; ms < 5000 && !atomic_load(&reaper_held); ms++)
		usleep(1000);
	bool held = atomic_load(&reaper_held);
	if (held)
		assert_int_equal(pthread_create(&second.thread, NULL, reaper_main, &second), 0);
	/* Long enough for an unhindered reap to finish many times over. */
	for (int ms = 0; ms < 300 && held && !atomic_load(&second.done); ms++)
		usleep(1000);
	bool overtaken = atomic_load(&second.done);
	atomic_store(&reaper_release, 1);
	pthread_join(first.thread, NULL);
	if (held)
		pthread_join(second.thread, NULL);
	shmc__fault_set_hook("reap.thread", NULL);

	assert_true(held);
	assert_false(overtaken);
	assert_true(first.reaped);
	assert_false(second.reaped);
	assert_int_equal(c->chunks[ci->chunk].state, SHMC__CHUNK_SEALED);
	assert_int_equal(c->threads[ci->slot_idx].owner_proc, 0);
	child_done(ci);
}
#endif

/* The dead child's items stay readable after it is reaped. */
static void test_proc_reap_dead_child_items_stay(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[8];
	size_t vlen;
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	shmc__proc_reap_if_dead(c, ci->proc_idx);
	assert_int_equal(shmc_get(c, "child-0", 7, buf, sizeof buf, &vlen), 0);
	assert_int_equal(shmc_get(c, "child-4", 7, buf, sizeof buf, &vlen), 0);
	child_done(ci);
}

/* ------------------------------------------------------ lock holders */

struct thread_id {
	shmc_cache *c;
	uint32_t lock_id, slot_idx;
	_Atomic int ready;
	_Atomic int release;
	int wait_for_release;
	pthread_t thread;
};

static void *id_thread(void *arg)
{
	struct thread_id *ti = arg;
	struct shmc__tctx *t = uu_tctx(ti->c);

	if (t != NULL) {
		ti->lock_id = t->lock_id;
		ti->slot_idx = t->slot_idx;
	}
	atomic_store(&ti->ready, 1);
	if (ti->wait_for_release)
		uu_wait_flag(&ti->release, 1, SIGNAL_TIMEOUT_MS, 0, NULL);
	return NULL; /* thread exit releases its slot */
}

static void id_thread_start(struct thread_id *ti, shmc_cache *c, int wait_for_release)
{
	ti->c = c;
	ti->wait_for_release = wait_for_release;
	assert_int_equal(pthread_create(&ti->thread, NULL, id_thread, ti), 0);
	assert_true(uu_wait_flag(&ti->ready, 1, SIGNAL_TIMEOUT_MS, 0, NULL));
	assert_int_not_equal(ti->lock_id, 0);
}

static void id_thread_join(struct thread_id *ti)
{
	atomic_store(&ti->release, 1);
	assert_int_equal(pthread_join(ti->thread, NULL), 0);
}

static void test_proc_lock_holder_released_thread_dead(void **state)
{
	shmc_cache *c = cache_of(state);
	struct thread_id ti = {0};

	id_thread_start(&ti, c, 0);
	id_thread_join(&ti);
	assert_int_equal(c->threads[ti.slot_idx].owner_proc, 0);
	assert_true(shmc__lock_holder_dead(c, ti.lock_id, true));
}

static void test_proc_lock_holder_live_thread_alive(void **state)
{
	shmc_cache *c = cache_of(state);
	struct thread_id ti = {0};

	assert_false(shmc__lock_holder_dead(c, tctx_of(c)->lock_id, true));
	id_thread_start(&ti, c, 1);
	bool dead = shmc__lock_holder_dead(c, ti.lock_id, true);
	id_thread_join(&ti);
	assert_false(dead);
}

/* A slot released and claimed again by another thread: the old holder's
 * lock word names a generation that is gone. */
static void test_proc_lock_holder_reclaimed_slot_dead(void **state)
{
	shmc_cache *c = cache_of(state);
	struct thread_id a = {0}, b = {0};

	tctx_of(c);
	id_thread_start(&a, c, 0);
	id_thread_join(&a);
	id_thread_start(&b, c, 1);
	bool same_slot = a.slot_idx == b.slot_idx;
	bool a_dead = shmc__lock_holder_dead(c, a.lock_id, true);
	bool b_dead = shmc__lock_holder_dead(c, b.lock_id, true);
	id_thread_join(&b);
	if (!same_slot)
		skip(); /* the slot search did not hand the slot out again */
	assert_int_not_equal(a.lock_id, b.lock_id);
	assert_true(a_dead);
	assert_false(b_dead);
}

static void test_proc_lock_holder_live_child_alive(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_info *ci = child_start(state, 0, &pid);

	bool dead = shmc__lock_holder_dead(c, ci->lock_id, true);
	assert_int_equal(uu_kill_child(pid), 0);
	assert_false(dead);
	assert_true(shmc__lock_holder_dead(c, ci->lock_id, true));
	child_done(ci);
}

static void test_proc_lock_holder_garbage_word_dead(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_true(shmc__lock_holder_dead(c, 0xffffu, true));	   /* slot 65534 */
	assert_true(shmc__lock_holder_dead(c, 0x12340000u, true)); /* slot "-1" */
	assert_true(shmc__lock_holder_dead(c, c->geo.max_threads + 1, true));
}

/* ------------------------------------------------ bucket lock takeover */

struct writer {
	shmc_cache *c;
	pthread_t thread;
	_Atomic int done;
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	w->rc = shmc_set(w->c, LOCKED_KEY, sizeof LOCKED_KEY - 1, "after", 5, 0, 0);
	atomic_store(&w->done, 1);
	return NULL;
}

static void writer_start(struct writer *w, shmc_cache *c)
{
	w->c = c;
	assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

/* Wait for the writer up to ms; if it is still stuck, free the lock word
 * by hand so that it can finish, and report false. */
static bool writer_finish(struct writer *w, uint32_t *lock, unsigned ms)
{
	bool done = uu_wait_flag(&w->done, 1, ms, 0, NULL);

	if (!done)
		__atomic_store_n(lock, 0, __ATOMIC_SEQ_CST);
	pthread_join(w->thread, NULL);
	return done;
}

static void test_proc_dead_holder_bucket_lock_taken_over(void **state)
{
	shmc_cache *c = cache_of(state);
	struct writer w = {0};
	pid_t pid;
	struct child_info *ci = child_start(state, 1, &pid);
	uint32_t *lock = &c->buckets[ci->bucket].lock;

	assert_int_equal(*lock, ci->lock_id);
	assert_int_equal(uu_kill_child(pid), 0);
	uint64_t t0 = tu_now_ms();
	writer_start(&w, c);
	bool done = writer_finish(&w, lock, TAKEOVER_MS);
	uint64_t took = tu_now_ms() - t0;
	if (!done)
		fail_msg("shmc_set still blocked on the dead holder's lock after %u ms",
			 TAKEOVER_MS);
	assert_int_equal(w.rc, 0);
	assert_true(took < TAKEOVER_MS);
	assert_int_equal(*lock, 0);
	char buf[8];
	size_t vlen;
	assert_int_equal(shmc_get(c, LOCKED_KEY, sizeof LOCKED_KEY - 1, buf, sizeof buf, &vlen), 0);
	assert_memory_equal(buf, "after", 5);
	child_done(ci);
}

static void test_proc_live_holder_bucket_lock_not_taken_over(void **state)
{
	shmc_cache *c = cache_of(state);
	struct writer w = {0};
	pid_t pid;
	struct child_info *ci = child_start(state, 1, &pid);
	uint32_t *lock = &c->buckets[ci->bucket].lock;

	writer_start(&w, c);
	bool early = uu_wait_flag(&w.done, 1, 300, 0, NULL);
	uint32_t held_by = __atomic_load_n(lock, __ATOMIC_SEQ_CST);
	assert_int_equal(uu_kill_child(pid), 0); /* now it may proceed */
	bool done = writer_finish(&w, lock, TAKEOVER_MS);
	assert_false(early);
	assert_int_equal(held_by, ci->lock_id);
	assert_true(done);
	assert_int_equal(w.rc, 0);
	child_done(ci);
}

/* ----------------------------------------------------------- the limit */

static void test_proc_max_procs_exhausted_etoomany(void **state)
{
	pid_t pids[FEW_PROCS - 1];
	struct child_info *ci[FEW_PROCS - 1];
	shmc_cache *extra = NULL;

	for (unsigned i = 0; i < FEW_PROCS - 1; i++)
		ci[i] = child_start(state, 0, &pids[i]);
	int rc = shmc_open(fixture_of(state)->name, NULL, 0, &extra);
	for (unsigned i = 0; i < FEW_PROCS - 1; i++) {
		assert_int_equal(uu_kill_child(pids[i]), 0);
		child_done(ci[i]);
	}
	if (rc == 0)
		shmc_close(extra);
	assert_int_equal(rc, SHMC_ETOOMANY);
}

static void test_proc_max_procs_dead_child_slot_reused(void **state)
{
	pid_t pids[FEW_PROCS - 1];
	struct child_info *ci[FEW_PROCS - 1];
	shmc_cache *extra = NULL;

	for (unsigned i = 0; i < FEW_PROCS - 1; i++)
		ci[i] = child_start(state, 0, &pids[i]);
	assert_int_equal(uu_kill_child(pids[0]), 0);
	/* No sweeper: its thread would claim the released thread slot. */
	shmc_opts *o;
	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_sweeper(o, 0), 0);
	int rc = shmc_open(fixture_of(state)->name, o, 0, &extra);
	shmc_opts_destroy(o);
	uint32_t idx = rc == 0 ? extra->proc_idx : UINT32_MAX;
	for (unsigned i = 1; i < FEW_PROCS - 1; i++)
		assert_int_equal(uu_kill_child(pids[i]), 0);
	assert_int_equal(rc, 0);
	assert_int_equal(idx, ci[0]->proc_idx);
	/* The dead owner's thread slot was released on the way. */
	assert_int_not_equal(extra->threads[ci[0]->slot_idx].owner_proc, ci[0]->proc_idx + 1);
	shmc_close(extra);
	for (unsigned i = 0; i < FEW_PROCS - 1; i++)
		child_done(ci[i]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_proc_attach_marks_slot_active),
		TEST(test_proc_attach_holds_ofd_lock),
		TEST(test_proc_alive_true_for_own_slot),
		TEST(test_proc_alive_true_for_other_live_handle),
		TEST(test_proc_alive_false_for_free_slot),
		TEST(test_proc_close_releases_slot_and_lock),
		TEST(test_proc_killed_child_detected_dead),
		TEST(test_proc_reap_live_child_returns_false),
		TEST(test_proc_reap_dead_child_frees_proc_slot),
		TEST(test_proc_reap_dead_child_frees_thread_slots),
		TEST(test_proc_reap_dead_child_folds_counters),
		TEST(test_proc_reap_dead_child_stats_keep_counts),
		TEST(test_proc_reap_dead_child_seals_open_chunk),
		TEST(test_proc_reap_dead_child_items_stay),
#if defined(SHMC_FAULT_POINTS) && SHMC_FAULT_POINTS
		TEST(test_proc_reapers_in_one_process_take_turns),
#endif
		TEST(test_proc_lock_holder_released_thread_dead),
		TEST(test_proc_lock_holder_live_thread_alive),
		TEST(test_proc_lock_holder_reclaimed_slot_dead),
		TEST(test_proc_lock_holder_live_child_alive),
		TEST(test_proc_lock_holder_garbage_word_dead),
		TEST(test_proc_dead_holder_bucket_lock_taken_over),
		TEST(test_proc_live_holder_bucket_lock_not_taken_over),
		TEST_FEW(test_proc_max_procs_exhausted_etoomany),
		TEST_FEW(test_proc_max_procs_dead_child_slot_reused),
	};

	(void)argc;
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
