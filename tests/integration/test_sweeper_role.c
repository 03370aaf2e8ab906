/*
 * test_sweeper_role.c - the background sweeper role across processes.
 *
 * The role's lease is a robust process-shared mutex in the header; every
 * process that opens with the sweeper enabled runs a thread that waits on
 * it. Tested here through shmc_stats() (sweeper_pid, sweeper_handovers)
 * and, white-box, the header clock the holder keeps:
 *  - a SIGKILLed holder is replaced by another waiting process within 1 s,
 *    and each such handover is counted, along a chain of three;
 *  - a holder that closes its handle hands the role over within 100 ms,
 *    and that is not counted as a handover (nobody died);
 *  - every open with the sweeper enabled runs the role when it is free;
 *  - the header clock runs while a sweeper holds the role and the cache is
 *    busy, is 0 while it is idle and once the last sweeper has closed, and
 *    a clock frozen by a killed holder is forgotten;
 *  - with the sweeper running, items expire no earlier than their TTL and
 *    no later than the coarse clock's resolution + 2 ms after it, and the
 *    expiry walk reclaims the memory of expired items nobody reads.
 *
 * Processes: the parent opens the segment with the sweeper off (unless a
 * test says otherwise), so that only the children compete for the role.
 * Children idle with their handle open until told to close or exit.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "handle.h"
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

#define SEGMENT_BYTES (4u << 20)
#define CHUNK_BYTES (64u << 10)
#define MAX_CHILDREN 8u
#define CHILD_WATCHDOG_S 120u
#define START_MS 5000u          /* children attach and one takes the role */
#define HANDOVER_KILL_MS 1000u  /* the spec: a dead holder is replaced in 1 s */
#define HANDOVER_CLOSE_MS 100u  /* the spec: a closing holder, in 100 ms */
#define REPORT_MS 5000u         /* keep watching this long to report a miss */
#define POLL_US 100u

enum child_cmd { CMD_IDLE = 0, CMD_CLOSE, CMD_EXIT };

struct child_state {
	_Atomic int ready;               /* handle open */
	_Atomic int cmd;                 /* enum child_cmd, set by the parent */
	_Atomic int closed;              /* shmc_close returned */
	_Atomic uint64_t close_begin_ns; /* just before shmc_close */
	_Atomic uint64_t close_end_ns;   /* just after */
	_Atomic int failed;
};

struct role_shared {
	char name[TU_NAME_MAX];
	struct child_state child[MAX_CHILDREN];
};

struct child_arg {
	struct role_shared *sh;
	unsigned slot;
};

/* A child: open with the sweeper on (the default), idle until told. */
static int role_child(unsigned index, void *arg)
{
	const struct child_arg *a = arg;
	struct child_state *cs = &a->sh->child[a->slot];
	shmc_cache *c;
	int rc;

	(void)index;
	rc = shmc_open(a->sh->name, NULL, 0, &c);
	if (rc != 0) {
		tu_child_log("open %s: %s (%s)", a->sh->name, shmc_errname(rc), shmc_errmsg(NULL));
		atomic_store(&cs->failed, 1);
		return 1;
	}
	atomic_store(&cs->ready, 1);
	for (;;) {
		int cmd = atomic_load(&cs->cmd);

		if (cmd == CMD_CLOSE && c != NULL) {
			atomic_store(&cs->close_begin_ns, tu_now_ns());
			shmc_close(c);
			atomic_store(&cs->close_end_ns, tu_now_ns());
			atomic_store(&cs->closed, 1);
			c = NULL;
		} else if (cmd == CMD_EXIT) {
			shmc_close(c);
			return 0;
		}
		tu_sleep_us(500);
	}
}

struct crew {
	struct role_shared *sh;
	struct child_arg args[MAX_CHILDREN];
	pid_t pid[MAX_CHILDREN]; /* 0 = slot empty */
	unsigned n;
};

static void crew_init(struct crew *cr, const char *name)
{
	memset(cr, 0, sizeof *cr);
	cr->sh = tu_shared_alloc(sizeof *cr->sh);
	assert_non_null(cr->sh);
	snprintf(cr->sh->name, sizeof cr->sh->name, "%s", name);
}

/* Start a child in slot and wait until its handle is open. */
static void crew_spawn(struct crew *cr, unsigned slot)
{
	struct child_state *cs = &cr->sh->child[slot];
	uint64_t deadline;

	assert_true(slot < MAX_CHILDREN);
	memset(cs, 0, sizeof *cs);
	cr->args[slot] = (struct child_arg){.sh = cr->sh, .slot = slot};
	assert_int_equal(tu_fork_start(1, role_child, &cr->args[slot], CHILD_WATCHDOG_S,
	                               &cr->pid[slot]), 1);
	if (slot >= cr->n)
		cr->n = slot + 1;
	deadline = tu_now_ms() + START_MS;
	while (!atomic_load(&cs->ready)) {
		if (atomic_load(&cs->failed) || tu_now_ms() > deadline)
			fail_msg("child in slot %u (pid %ld) did not open the segment", slot,
			         (long)cr->pid[slot]);
		tu_sleep_us(200);
	}
}

static int crew_slot_of(const struct crew *cr, uint64_t pid)
{
	for (unsigned i = 0; i < cr->n; i++)
		if (cr->pid[i] > 0 && (uint64_t)cr->pid[i] == pid)
			return (int)i;
	return -1;
}

/* SIGKILL the child in slot and reap it. */
static void crew_kill(struct crew *cr, unsigned slot)
{
	int status;
	pid_t got;

	kill(cr->pid[slot], SIGKILL);
	do
		got = waitpid(cr->pid[slot], &status, 0);
	while (got < 0 && errno == EINTR);
	assert_int_equal(got, cr->pid[slot]);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	cr->pid[slot] = 0;
}

/* Tell every remaining child to close and exit; returns how many failed. */
static unsigned crew_finish(struct crew *cr)
{
	unsigned failed = 0;

	for (unsigned i = 0; i < cr->n; i++)
		if (cr->pid[i] > 0)
			atomic_store(&cr->sh->child[i].cmd, CMD_EXIT);
	for (unsigned i = 0; i < cr->n; i++) {
		char what[32];

		if (cr->pid[i] <= 0)
			continue;
		snprintf(what, sizeof what, "child in slot %u", i);
		failed += tu_wait_child(cr->pid[i], what) != 0;
		cr->pid[i] = 0;
	}
	tu_shared_free(cr->sh, sizeof *cr->sh);
	cr->sh = NULL;
	return failed;
}

static struct shmc_stats stats_of(shmc_cache *c)
{
	struct shmc_stats st;

	assert_int_equal(shmc_stats(c, &st), 0);
	return st;
}

/* Poll until the role is held by a child of the crew other than the one in
 * slot `not_slot` (-1: any) that has not closed its handle, or until
 * timeout_ms. Returns the holder's slot, or -1; *seen_ns gets the time the
 * holder was first seen (just after the stats read that showed it). */
static int wait_holder(shmc_cache *c, const struct crew *cr, int not_slot, unsigned timeout_ms,
                       uint64_t *seen_ns)
{
	uint64_t deadline = tu_now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		struct shmc_stats st = stats_of(c);
		/* After the read: the holder it names took over before now, so
		 * now - start bounds the handover time from above. */
		uint64_t now = tu_now_ns();
		int slot = crew_slot_of(cr, st.sweeper_pid);

		if (slot >= 0 && slot != not_slot && !atomic_load(&cr->sh->child[slot].closed)) {
			if (seen_ns != NULL)
				*seen_ns = now;
			return slot;
		}
		if (now > deadline)
			return -1;
		tu_sleep_us(POLL_US);
	}
}

static shmc_cache *open_parent(const char *name, int sweeper)
{
	shmc_cache *c;
	int rc = tu_open_fresh(name, SEGMENT_BYTES, CHUNK_BYTES, sweeper, &c);

	if (rc != 0)
		fail_msg("creating %s: %s (%s)", name, shmc_errname(rc), shmc_errmsg(NULL));
	return c;
}

static void finish_and_verify(shmc_cache *c, struct crew *cr, const char *name)
{
	assert_int_equal(crew_finish(cr), 0);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

/* ------------------------------------------------------------ handover */

#define KILL_ROUNDS 3u
#define CREW_SIZE 3u

static void test_sweeper_role_killed_holder_replaced_within_1s(void **state)
{
	char name[TU_NAME_MAX];
	struct crew cr;

	(void)state;
	tu_segname(name, sizeof name, "role-kill");
	shmc_cache *c = open_parent(name, 0);
	crew_init(&cr, name);
	for (unsigned i = 0; i < CREW_SIZE; i++)
		crew_spawn(&cr, i);
	int holder = wait_holder(c, &cr, -1, START_MS, NULL);
	assert_true(holder >= 0);
	uint64_t handovers0 = stats_of(c).sweeper_handovers;
	assert_int_equal(handovers0, 0);

	for (unsigned round = 0; round < KILL_ROUNDS; round++) {
		uint64_t before = stats_of(c).sweeper_handovers, seen_ns = 0;
		pid_t victim = cr.pid[holder];
		uint64_t kill_ns = tu_now_ns();

		crew_kill(&cr, (unsigned)holder);
		int next = wait_holder(c, &cr, holder, REPORT_MS, &seen_ns);
		if (next < 0)
			fail_msg("round %u: nobody took the role over from pid %ld within %u ms "
			         "(sweeper_pid %" PRIu64 ")",
			         round, (long)victim, REPORT_MS, stats_of(c).sweeper_pid);
		printf("handover %u: pid %ld killed, pid %ld took over after %.3f ms\n", round,
		       (long)victim, (long)cr.pid[next], (double)(seen_ns - kill_ns) / 1e6);
		assert_true(seen_ns - kill_ns <= (uint64_t)HANDOVER_KILL_MS * 1000000u);
		/* Exactly one handover per death. */
		assert_int_equal(stats_of(c).sweeper_handovers, before + 1);
		holder = next;
		/* Keep two waiters behind the holder for the next round. */
		crew_spawn(&cr, CREW_SIZE + round);
	}
	assert_int_equal(stats_of(c).sweeper_handovers, KILL_ROUNDS);
	finish_and_verify(c, &cr, name);
}

static void test_sweeper_role_closed_holder_hands_over_within_100ms_uncounted(void **state)
{
	char name[TU_NAME_MAX];
	struct crew cr;

	(void)state;
	tu_segname(name, sizeof name, "role-close");
	shmc_cache *c = open_parent(name, 0);
	crew_init(&cr, name);
	for (unsigned i = 0; i < CREW_SIZE; i++)
		crew_spawn(&cr, i);
	int holder = wait_holder(c, &cr, -1, START_MS, NULL);
	assert_true(holder >= 0);

	/* Two clean handovers: 3 -> 2 -> 1 sweeper-enabled processes. */
	for (unsigned round = 0; round < CREW_SIZE - 1; round++) {
		struct child_state *cs = &cr.sh->child[holder];
		uint64_t before = stats_of(c).sweeper_handovers, seen_ns = 0;

		atomic_store(&cs->cmd, CMD_CLOSE);
		int next = wait_holder(c, &cr, holder, REPORT_MS, &seen_ns);
		if (next < 0)
			fail_msg("round %u: nobody took the role over from closing pid %ld "
			         "(sweeper_pid %" PRIu64 ")",
			         round, (long)cr.pid[holder], stats_of(c).sweeper_pid);
		uint64_t begin = atomic_load(&cs->close_begin_ns);
		assert_true(begin != 0 && begin <= seen_ns);
		for (uint64_t deadline = tu_now_ms() + REPORT_MS;
		     !atomic_load(&cs->closed) && tu_now_ms() < deadline;)
			tu_sleep_us(POLL_US);
		assert_true(atomic_load(&cs->closed));
		printf("clean handover %u: pid %ld closed (shmc_close took %.3f ms), pid %ld took "
		       "over %.3f ms after the close began\n",
		       round, (long)cr.pid[holder],
		       (double)(atomic_load(&cs->close_end_ns) - begin) / 1e6, (long)cr.pid[next],
		       (double)(seen_ns - begin) / 1e6);
		assert_true(seen_ns - begin <= (uint64_t)HANDOVER_CLOSE_MS * 1000000u);
		/* A release is not a death. */
		assert_int_equal(stats_of(c).sweeper_handovers, before);
		holder = next;
	}
	/* The last one closes too: nobody holds the role. */
	struct child_state *last = &cr.sh->child[holder];
	atomic_store(&last->cmd, CMD_CLOSE);
	uint64_t deadline = tu_now_ms() + REPORT_MS;
	while (!atomic_load(&last->closed) && tu_now_ms() < deadline)
		tu_sleep_us(POLL_US);
	assert_true(atomic_load(&last->closed));
	struct shmc_stats st = stats_of(c);
	assert_int_equal(st.sweeper_pid, 0);
	assert_int_equal(st.sweeper_handovers, 0);
	finish_and_verify(c, &cr, name);
}

/* Every open with the sweeper enabled runs the role when it is free, from
 * the first instant its handle exists (the role thread starts inside
 * shmc_open). Many rounds, since a start-up race loses only now and then. */
#define OPEN_ROUNDS 400u

static void test_sweeper_role_every_open_takes_free_role(void **state)
{
	char name[TU_NAME_MAX];
	unsigned missed = 0;

	(void)state;
	tu_segname(name, sizeof name, "role-open");
	shmc_cache *c = open_parent(name, 0);
	for (unsigned i = 0; i < OPEN_ROUNDS; i++) {
		shmc_cache *s;
		bool held = false;

		assert_int_equal(shmc_open(name, NULL, 0, &s), 0);
		for (uint64_t deadline = tu_now_ms() + 1000; tu_now_ms() < deadline;) {
			if (stats_of(c).sweeper_pid == (uint64_t)getpid()) {
				held = true;
				break;
			}
			tu_sleep_us(POLL_US);
		}
		if (!held && missed++ == 0)
			fprintf(stderr, "open %u: the free role was not taken within 1 s\n", i);
		shmc_close(s);
		assert_int_equal(stats_of(c).sweeper_pid, 0);
	}
	printf("%u of %u opens did not take the free role\n", missed, OPEN_ROUNDS);
	assert_int_equal(missed, 0);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

/* ----------------------------------------------------------- the clock */

static uint64_t real_ms(void)
{
	return tu_now_ns() / 1000000u;
}

static uint64_t header_clock(shmc_cache *c)
{
	return __atomic_load_n(&c->hdr->clock_ms, __ATOMIC_ACQUIRE);
}

/* Keep the cache busy (gets) for ms milliseconds, checking the header
 * clock after each: never ahead of real time. Returns the last value seen
 * (0 if it was 0 throughout); *first gets the first nonzero value and
 * *max_lag the largest lag behind real time while it was nonzero. */
static uint64_t busy_for(shmc_cache *c, unsigned ms, uint64_t *first, uint64_t *max_lag)
{
	uint64_t deadline = real_ms() + ms, last = 0;
	char buf[8];
	size_t n;

	*first = 0;
	*max_lag = 0;
	while (real_ms() < deadline) {
		(void)shmc_get(c, "nothing", 7, buf, sizeof buf, &n);
		uint64_t v = header_clock(c), now = real_ms();
		if (v > now)
			fail_msg("header clock %" PRIu64 " is ahead of real time %" PRIu64, v, now);
		if (v) {
			if (!*first)
				*first = v;
			if (now - v > *max_lag)
				*max_lag = now - v;
		}
		last = v;
		tu_sleep_us(200);
	}
	return last;
}

static void test_sweeper_role_header_clock_runs_while_busy_and_stops_with_last_sweeper(void **state)
{
	char name[TU_NAME_MAX];
	struct crew cr;
	uint64_t first, last, lag;

	(void)state;
	tu_segname(name, sizeof name, "role-clock");
	shmc_cache *c = open_parent(name, 0);
	crew_init(&cr, name);
	crew_spawn(&cr, 0);
	crew_spawn(&cr, 1);
	int holder = wait_holder(c, &cr, -1, START_MS, NULL);
	assert_true(holder >= 0);

	/* Busy: the holder keeps the clock; it advances with real time. */
	(void)busy_for(c, 300, &first, &lag); /* let the holder see traffic */
	last = busy_for(c, 500, &first, &lag);
	printf("busy: header clock advanced %" PRIu64 " ms in 500 ms, lag at most %" PRIu64
	       " ms\n", last - first, lag);
	assert_true(first != 0 && last != 0);
	assert_true(last - first >= 250);

	/* Idle: no operation for a while, the holder stops keeping it. */
	uint64_t idle_deadline = real_ms() + 2000;
	while (header_clock(c) != 0 && real_ms() < idle_deadline)
		tu_sleep_ms(5);
	assert_int_equal(header_clock(c), 0);

	/* Busy again: it resumes. */
	uint64_t t0 = real_ms();
	while (header_clock(c) == 0 && real_ms() < t0 + 2000)
		(void)busy_for(c, 5, &first, &lag);
	printf("idle -> busy: header clock back after %" PRIu64 " ms\n", real_ms() - t0);
	assert_true(header_clock(c) != 0);

	/* The holder closes: the other process keeps the clock running. */
	atomic_store(&cr.sh->child[holder].cmd, CMD_CLOSE);
	int next = wait_holder(c, &cr, holder, REPORT_MS, NULL);
	assert_true(next >= 0);
	(void)busy_for(c, 300, &first, &lag);
	last = busy_for(c, 300, &first, &lag);
	assert_true(first != 0 && last - first >= 150);

	/* The last sweeper closes: the clock is 0 when its close returns,
	 * and stays 0 however busy the cache is. */
	struct child_state *cs = &cr.sh->child[next];
	atomic_store(&cs->cmd, CMD_CLOSE);
	while (!atomic_load(&cs->closed))
		(void)busy_for(c, 1, &first, &lag);
	assert_int_equal(header_clock(c), 0);
	last = busy_for(c, 300, &first, &lag);
	assert_int_equal(first, 0);
	assert_int_equal(last, 0);
	assert_int_equal(stats_of(c).sweeper_pid, 0);
	finish_and_verify(c, &cr, name);
}

/* The only sweeper is SIGKILLed while the cache is busy: its last clock
 * value stays in the header. The cache must not go on trusting it, or
 * items would never expire: writers forget a clock that has not moved for
 * 500 ms. A 50 ms item set after the death, with a writer busy on other
 * keys, is gone within that limit plus a generous margin. */
static void test_sweeper_role_killed_last_holder_clock_is_forgotten(void **state)
{
	char name[TU_NAME_MAX];
	struct crew cr;
	uint64_t first, lag;
	char buf[8];
	size_t n;

	(void)state;
	tu_segname(name, sizeof name, "role-frozen");
	shmc_cache *c = open_parent(name, 0);
	crew_init(&cr, name);
	crew_spawn(&cr, 0);
	assert_int_equal(wait_holder(c, &cr, -1, START_MS, NULL), 0);
	(void)busy_for(c, 300, &first, &lag);
	assert_true(header_clock(c) != 0);
	crew_kill(&cr, 0);
	uint64_t frozen = header_clock(c);
	assert_true(frozen != 0);

	assert_int_equal(shmc_set(c, "ttl", 3, "v", 1, 50, 0), 0);
	uint64_t set_ms = real_ms(), gone_ms = 0;
	while (!gone_ms && real_ms() < set_ms + 5000) {
		int rc = shmc_get(c, "ttl", 3, buf, sizeof buf, &n);
		assert_int_equal(shmc_set(c, "other", 5, "v", 1, 0, 0), 0);
		if (rc == SHMC_ENOTFOUND)
			gone_ms = real_ms();
		else
			assert_int_equal(rc, 0);
		tu_sleep_us(200);
	}
	printf("only sweeper killed: header clock frozen at %" PRIu64 ", now %" PRIu64
	       "; a 50 ms item was gone after %" PRIu64 " ms\n",
	       frozen, header_clock(c), gone_ms ? gone_ms - set_ms : 0);
	assert_true(gone_ms != 0);
	assert_true(gone_ms - set_ms <= 50 + 500 + 1000);
	finish_and_verify(c, &cr, name);
}

/* ------------------------------------------------------------- expiry */

static uint64_t coarse_resolution_ns(void)
{
	struct timespec res;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0)
		return 10000000u;
	return (uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec;
}

/* The parent holds the role. For TTLs of 20..120 ms: the key is never
 * absent before its TTL has passed since shmc_set was called, and never
 * present later than resolution + 2 ms after the TTL since it returned.
 * Both bounds are measured soundly: an absence counts as early only if
 * the get that saw it ended before the TTL had passed since the set
 * began; a presence counts as late only if the get that saw it began
 * after the bound had passed since the set ended. */
static void test_sweeper_role_expiry_never_early_and_within_resolution(void **state)
{
	char name[TU_NAME_MAX];
	const uint64_t res_ns = coarse_resolution_ns();

	(void)state;
	tu_segname(name, sizeof name, "role-ttl");
	shmc_cache *c = open_parent(name, 1);
	for (uint64_t deadline = tu_now_ms() + START_MS;
	     stats_of(c).sweeper_pid != (uint64_t)getpid(); tu_sleep_ms(1))
		assert_true(tu_now_ms() < deadline);

	for (uint32_t ttl = 20; ttl <= 120; ttl += 20) {
		char key[32], buf[4];
		int klen = snprintf(key, sizeof key, "ttl-%u", ttl);
		size_t n;
		uint64_t set_begin = tu_now_ns();
		assert_int_equal(shmc_set(c, key, (size_t)klen, "v", 1, ttl, 0), 0);
		uint64_t set_end = tu_now_ns();
		uint64_t last_present_begin = set_end, absent_begin = 0, absent_end = 0;

		while (!absent_end) {
			uint64_t before = tu_now_ns();
			int rc = shmc_get(c, key, (size_t)klen, buf, sizeof buf, &n);
			uint64_t after = tu_now_ns();

			if (rc == SHMC_ENOTFOUND) {
				absent_begin = before;
				absent_end = after;
			} else {
				assert_int_equal(rc, 0);
				last_present_begin = before;
			}
			assert_true(before - set_end < 2000000000ull);
			tu_sleep_us(200);
		}
		uint64_t ttl_ns = (uint64_t)ttl * 1000000u;
		uint64_t late_ns = last_present_begin > set_end + ttl_ns
		                           ? last_present_begin - set_end - ttl_ns
		                           : 0;
		printf("ttl %3u ms: absent after %.3f ms, last seen present %.3f ms after the "
		       "TTL (bound %.3f ms)\n",
		       ttl, (double)(absent_begin - set_end) / 1e6, (double)late_ns / 1e6,
		       (double)(res_ns + 2000000u) / 1e6);
		/* Never early. */
		assert_true(absent_end - set_begin >= ttl_ns);
		/* Not late by more than the clock's resolution + 2 ms. */
		assert_true(late_ns <= res_ns + 2000000u);
	}
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

/* A writer process fills several chunks with items of 100..300 ms TTLs
 * and leaves (sealing its chunks); nobody reads them. The sweeper's expiry
 * walk (every chunk within 10 s) unlinks every one: expirations count
 * them, the item count falls to 0, and their memory comes back. */
#define EXPIRE_ITEMS 2000u
#define EXPIRE_VALUE 400u
#define EXPIRE_WALK_MS 11000u

struct writer_arg {
	char name[TU_NAME_MAX];
};

static int ttl_writer(unsigned index, void *arg)
{
	const struct writer_arg *a = arg;
	unsigned char val[EXPIRE_VALUE];
	shmc_opts *o;
	shmc_cache *c;
	int rc;

	(void)index;
	memset(val, 'x', sizeof val);
	if (shmc_opts_create(&o) != 0 || shmc_opts_set_sweeper(o, 0) != 0)
		return 1;
	rc = shmc_open(a->name, o, 0, &c);
	shmc_opts_destroy(o);
	if (rc != 0) {
		tu_child_log("open: %s", shmc_errname(rc));
		return 1;
	}
	for (unsigned i = 0; i < EXPIRE_ITEMS; i++) {
		char key[32];
		int klen = snprintf(key, sizeof key, "exp-%u", i);

		rc = shmc_set(c, key, (size_t)klen, val, sizeof val, 100 + i % 201, 0);
		if (rc != 0) {
			tu_child_log("set %s: %s (%s)", key, shmc_errname(rc), shmc_errmsg(c));
			return 1;
		}
	}
	shmc_close(c);
	return 0;
}

static void test_sweeper_role_expiry_walk_reclaims_unread_items(void **state)
{
	char name[TU_NAME_MAX];
	struct writer_arg wa;
	pid_t pid;

	(void)state;
	tu_segname(name, sizeof name, "role-walk");
	shmc_cache *c = open_parent(name, 1);
	for (uint64_t deadline = tu_now_ms() + START_MS;
	     stats_of(c).sweeper_pid != (uint64_t)getpid(); tu_sleep_ms(1))
		assert_true(tu_now_ms() < deadline);
	snprintf(wa.name, sizeof wa.name, "%s", name);
	assert_int_equal(tu_fork_start(1, ttl_writer, &wa, CHILD_WATCHDOG_S, &pid), 1);
	assert_int_equal(tu_wait_child(pid, "ttl writer"), 0);
	uint64_t written_ms = tu_now_ms();

	struct shmc_stats st = stats_of(c);
	printf("written: %" PRIu64 " items, %" PRIu64 " live bytes, %" PRIu64 " sealed chunks, "
	       "%" PRIu64 " expirations\n",
	       st.items, st.bytes_live, st.chunks_sealed, st.expirations);
	assert_true(st.chunks_sealed >= 4); /* several chunks to walk */
	uint64_t expirations0 = st.expirations;
	assert_true(expirations0 + st.items >= EXPIRE_ITEMS);

	while ((st = stats_of(c)).items != 0 && tu_now_ms() < written_ms + EXPIRE_WALK_MS)
		tu_sleep_ms(20);
	printf("after %" PRIu64 " ms: %" PRIu64 " items, %" PRIu64 " live bytes, %" PRIu64
	       " free chunks of %" PRIu64 ", %" PRIu64 " expirations, %" PRIu64 " gets\n",
	       tu_now_ms() - written_ms, st.items, st.bytes_live, st.chunks_free,
	       st.chunks_total, st.expirations, st.gets);
	assert_int_equal(st.gets, 0); /* nobody read them */
	assert_int_equal(st.items, 0);
	assert_int_equal(st.expirations, EXPIRE_ITEMS);
	assert_int_equal(st.bytes_live, 0);
	assert_int_equal(st.chunks_sealed, 0);
	/* Every chunk is free again (or retired, awaiting its grace period). */
	assert_int_equal(st.chunks_free, st.chunks_total);
	shmc_close(c);
	assert_int_equal(tu_verify_clean(name, NULL), 0);
	shmc_unlink(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sweeper_role_killed_holder_replaced_within_1s),
		cmocka_unit_test(test_sweeper_role_closed_holder_hands_over_within_100ms_uncounted),
		cmocka_unit_test(test_sweeper_role_every_open_takes_free_role),
		cmocka_unit_test(test_sweeper_role_header_clock_runs_while_busy_and_stops_with_last_sweeper),
		cmocka_unit_test(test_sweeper_role_killed_last_holder_clock_is_forgotten),
		cmocka_unit_test(test_sweeper_role_expiry_never_early_and_within_resolution),
		cmocka_unit_test(test_sweeper_role_expiry_walk_reclaims_unread_items),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
