/*
 * test_faults.c - SIGKILL a process at every named fault point (fault.h)
 * while others keep using the same keys, then check that nothing was lost
 * that should not be, nothing is torn, nobody waited long, and one reaper
 * pass leaves a segment that shmcache verify calls clean.
 *
 * One test per fault point. Each test:
 *   - creates a small segment (1 MiB, 64 KiB chunks) so that chunks are
 *     taken, sealed, retired, reused and evicted within a second;
 *   - starts two live children that run a mixed load (get, get_ref, set,
 *     del, incr) on a handful of shared keys;
 *   - starts the victim: a fork child that sets SHMC_FAULT=<point>:<N> and
 *     execs this program again (see below), opens the segment, and runs a
 *     workload that reaches the point until the library SIGKILLs it;
 *   - keeps running the same load in the parent while the victim lives,
 *     then, once it is dead, runs every kind of operation on the key the
 *     victim was working on (its bucket lock may be held by the dead), and
 *     carries on a little longer;
 *   - stops the children, reads every key (each value whole or absent;
 *     counters equal the sum of the increments that returned 0), runs
 *     shmc__reap_pass() and shmc__verify().
 *
 * Why exec: fault.c reads SHMC_FAULT once per process, on the first pass
 * through any fault point, and a fork child inherits that decision. The
 * parent of these tests passes fault points itself (every operation does),
 * so a plain fork child could never be armed by setenv(). Re-executing the
 * test binary gives the victim a fresh image whose environment already says
 * SHMC_FAULT when it first opens the segment. Everything the victim shares
 * with the test lives in a memfd that survives exec.
 *
 * Values are self-describing (tests/common/testutil.h); counter keys hold
 * decimal integers and are only ever incremented.
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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "fault.h"
#include "handle.h"
#include "sweeper.h"
#include "verify.h"

#include "testutil.h"

#define SEGMENT_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)
#define NKEYS 8u            /* "k-0".."k-7": set, del, get by everyone */
#define NCOUNTERS 4u        /* "c-0".."c-3": only incremented */
#define CHURN_KEYS 560u     /* "u-<n>" of mode churn: about 2/3 of the data */
#define VALUE_CAP 2048u
#define LIVE_VALUE_MAX 1200u
#define NLIVE 2u
#define W_VICTIM 0u          /* writer ids in the high-water marks */
#define W_LIVE0 1u
#define W_PARENT (W_LIVE0 + NLIVE)
#define NWRITERS (W_PARENT + 1u)

#define VICTIM_WATCHDOG_S 40u
#define LIVE_WATCHDOG_S 60u
#define VICTIM_MAX_MS 15000u  /* the victim gives up (exit 3) after this */
#define VICTIM_DEADLINE_MS 20000u /* the parent gives up on the victim */
#define READY_DEADLINE_MS 10000u
#define AFTER_DEATH_MS 400u   /* load kept up after the victim died */
#define LIVE_MAX_MS 45000u    /* a live child never runs longer */
#define OP_LIMIT_NS 1000000000ull

#define VICTIM_ARG "--shmc-fault-victim"

/* ------------------------------------------------------ shared state */

/* Tallies of one live process; written only by it. */
struct op_stats {
	uint64_t ops;
	uint64_t max_ns;     /* longest single call, CLOCK_MONOTONIC */
	uint64_t torn, foreign, never_written;
	uint64_t unexpected; /* return codes the operation does not document */
	uint64_t enospc;     /* part of unexpected */
	int64_t incr_total[NCOUNTERS];
	char first_problem[256];
};

/* What the victim did; written only by the victim, read after its death. */
struct victim_state {
	_Atomic uint64_t ops_done;
	_Atomic int opened;
	int64_t incr_total[NCOUNTERS]; /* increments that returned 0 */
	uint64_t fill_next;            /* "u-<n>" keys started: n < fill_next */
	char last_key[32];             /* key of the operation in progress */
};

struct shared {
	char name[TU_NAME_MAX];
	_Atomic int stop;
	_Atomic unsigned live_ready;
	struct victim_state victim;
	struct op_stats st[NWRITERS]; /* by writer id; the victim's is unused */
};

/* The high-water marks follow the struct, page-aligned, in the same memfd. */
#define HWM_OFFSET ((sizeof(struct shared) + 4095u) & ~(size_t)4095u)
#define SHARED_BYTES (HWM_OFFSET + 4096u)

static struct tu_hwm *hwm_of(struct shared *sh)
{
	return (struct tu_hwm *)((char *)sh + HWM_OFFSET);
}

static struct shared *shared_map(int fd)
{
	void *p = mmap(NULL, SHARED_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------- keys */

static size_t key_k(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "k-%u", i);
}

static size_t key_c(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "c-%u", i);
}

static size_t key_u(char *buf, size_t cap, uint64_t i)
{
	return (size_t)snprintf(buf, cap, "u-%" PRIu64, i);
}

static bool is_counter_key(const char *key)
{
	return key[0] == 'c';
}

/* A counter's value: decimal, positive (only positive deltas are added). */
static bool counter_value_ok(const unsigned char *v, size_t n, int64_t *out)
{
	int64_t x = 0;

	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	if (out != NULL)
		*out = x;
	return x > 0;
}

/* ------------------------------------------------------------- actors */

/* A process running the live load: a child or the parent. */
struct actor {
	unsigned writer;
	struct shared *sh;
	struct tu_hwm *hwm;
	struct op_stats *st;
	shmc_cache *c;
	uint64_t rng;
	uint64_t seq;
	unsigned char buf[VALUE_CAP];
	unsigned char val[VALUE_CAP];
};

static void problem(struct actor *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct actor *a, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (a->st->first_problem[0] == '\0')
		snprintf(a->st->first_problem, sizeof a->st->first_problem, "%s", line);
	if (a->st->torn + a->st->foreign + a->st->never_written + a->st->unexpected <= 5)
		tu_child_log("writer %u: %s", a->writer, line);
}

static void op_timed(struct actor *a, uint64_t t0)
{
	uint64_t ns = tu_now_ns() - t0;

	a->st->ops++;
	if (ns > a->st->max_ns)
		a->st->max_ns = ns;
}

static void unexpected(struct actor *a, const char *op, const char *key, int rc)
{
	a->st->unexpected++;
	if (rc == SHMC_ENOSPC)
		a->st->enospc++;
	problem(a, "%s %s: unexpected %s (%s)", op, key, shmc_errname(rc),
	        shmc_errmsg(a->c));
}

static void check_value(struct actor *a, const char *how, const char *key, size_t klen,
                        const void *val, size_t vlen)
{
	struct tu_value_info info = {0};
	enum tu_verdict v;

	if (is_counter_key(key)) {
		if (!counter_value_ok(val, vlen, NULL)) {
			a->st->torn++;
			problem(a, "%s %s: counter value is not a positive decimal (vlen %zu)",
			        how, key, vlen);
		}
		return;
	}
	v = tu_value_check(val, vlen, key, klen, a->hwm, &info);
	switch (v) {
	case TU_OK:
		return;
	case TU_TORN:
		a->st->torn++;
		problem(a, "%s %s: TORN value (vlen %zu)", how, key, vlen);
		return;
	case TU_FOREIGN:
		a->st->foreign++;
		break;
	case TU_NEVER_WRITTEN:
		a->st->never_written++;
		break;
	}
	problem(a, "%s %s: %s value (writer %" PRIu32 ", seq %" PRIu64 ")", how, key,
	        tu_verdict_name(v), info.writer_id, info.seq);
}

static void do_get(struct actor *a, const char *key, size_t klen)
{
	size_t vlen = 0;
	uint64_t t0 = tu_now_ns();
	int rc = shmc_get(a->c, key, klen, a->buf, sizeof a->buf, &vlen);

	op_timed(a, t0);
	if (rc == 0)
		check_value(a, "get", key, klen, a->buf, vlen);
	else if (rc != SHMC_ENOTFOUND)
		unexpected(a, "get", key, rc);
}

static void do_get_ref(struct actor *a, const char *key, size_t klen)
{
	const void *ref = NULL;
	size_t vlen = 0;
	uint64_t t0 = tu_now_ns();
	int rc = shmc_read_begin(a->c);

	op_timed(a, t0);
	if (rc != 0) {
		unexpected(a, "read_begin", key, rc);
		return;
	}
	t0 = tu_now_ns();
	rc = shmc_get_ref(a->c, key, klen, &ref, &vlen);
	op_timed(a, t0);
	if (rc == 0)
		check_value(a, "get_ref", key, klen, ref, vlen);
	else if (rc != SHMC_ENOTFOUND)
		unexpected(a, "get_ref", key, rc);
	t0 = tu_now_ns();
	rc = shmc_read_end(a->c);
	op_timed(a, t0);
	if (rc != 0)
		unexpected(a, "read_end", key, rc);
}

static void do_set(struct actor *a, const char *key, size_t klen, size_t len)
{
	uint64_t seq = ++a->seq;
	uint64_t t0;
	int rc;

	tu_value_build(a->val, sizeof a->val, key, klen, a->writer, seq, len);
	tu_hwm_publish(a->hwm, a->writer, seq); /* before the value is visible */
	t0 = tu_now_ns();
	rc = shmc_set(a->c, key, klen, a->val, len, 0, 0);
	op_timed(a, t0);
	if (rc != 0)
		unexpected(a, "set", key, rc);
}

static void do_del(struct actor *a, const char *key, size_t klen)
{
	uint64_t t0 = tu_now_ns();
	int rc = shmc_del(a->c, key, klen);

	op_timed(a, t0);
	if (rc != 0 && rc != SHMC_ENOTFOUND)
		unexpected(a, "del", key, rc);
}

static void do_incr(struct actor *a, unsigned i)
{
	char key[16];
	size_t klen = key_c(key, sizeof key, i);
	int64_t delta = 1 + (int64_t)tu_rand_below(&a->rng, 5), out = 0;
	uint64_t t0 = tu_now_ns();
	int rc = shmc_incr(a->c, key, klen, delta, &out);

	op_timed(a, t0);
	if (rc != 0) {
		unexpected(a, "incr", key, rc);
		return;
	}
	a->st->incr_total[i] += delta;
	if (out < delta) {
		a->st->torn++;
		problem(a, "incr %s by %" PRId64 " returned %" PRId64, key, delta, out);
	}
}

static size_t live_value_len(struct actor *a)
{
	return TU_VALUE_MIN_BYTES +
	       (size_t)tu_rand_below(&a->rng, LIVE_VALUE_MAX - TU_VALUE_MIN_BYTES + 1);
}

/* One operation of the live mix on the shared keys. */
static void live_op(struct actor *a)
{
	unsigned dice = (unsigned)tu_rand_below(&a->rng, 100);
	char key[32];
	size_t klen;

	if (dice < 55) {
		unsigned which = (unsigned)tu_rand_below(&a->rng, 100);
		uint64_t filled = __atomic_load_n(&a->sh->victim.fill_next, __ATOMIC_RELAXED);

		if (which < 10 && filled > 0)
			klen = key_u(key, sizeof key, tu_rand_below(&a->rng, filled));
		else if (which < 35)
			klen = key_c(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NCOUNTERS));
		else
			klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
		if (dice < 40)
			do_get(a, key, klen);
		else
			do_get_ref(a, key, klen);
		return;
	}
	if (dice < 90) {
		klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
		if (dice < 80)
			do_set(a, key, klen, live_value_len(a));
		else
			do_del(a, key, klen);
		return;
	}
	do_incr(a, (unsigned)tu_rand_below(&a->rng, NCOUNTERS));
}

static int actor_init(struct actor *a, struct shared *sh, unsigned writer)
{
	memset(a, 0, sizeof *a);
	a->writer = writer;
	a->sh = sh;
	a->hwm = hwm_of(sh);
	a->st = &sh->st[writer];
	a->rng = tu_now_ns() ^ ((uint64_t)getpid() << 32) ^ writer;
	return 0;
}

static int live_main(unsigned index, void *arg)
{
	struct shared *sh = arg;
	struct actor *a = malloc(sizeof *a);
	uint64_t deadline;
	int rc;

	if (a == NULL)
		return 1;
	actor_init(a, sh, W_LIVE0 + index);
	rc = shmc_open(sh->name, NULL, 0, &a->c);
	if (rc != 0) {
		tu_child_log("live %u: shmc_open: %s: %s", index, shmc_errname(rc),
		             shmc_errmsg(NULL));
		return 1;
	}
	atomic_fetch_add(&sh->live_ready, 1u);
	deadline = tu_now_ms() + LIVE_MAX_MS;
	while (!atomic_load(&sh->stop)) {
		if (tu_now_ms() > deadline) {
			tu_child_log("live %u: never told to stop", index);
			break;
		}
		for (int i = 0; i < 16; i++)
			live_op(a);
	}
	shmc_close(a->c);
	rc = a->st->torn + a->st->foreign + a->st->never_written + a->st->unexpected == 0 &&
	                     atomic_load(&sh->stop)
	             ? 0
	             : 1;
	free(a);
	return rc;
}

/* ------------------------------------------------------------ victim */

/* Runs in the re-executed image with SHMC_FAULT set. Returns only if the
 * fault point never fired (exit 3) or setup failed (exit 2). */
static int victim_main(const char *mode, int fd)
{
	struct shared *sh = shared_map(fd);
	struct actor *a = malloc(sizeof *a);
	struct victim_state *vs;
	uint64_t deadline;
	int rc;

	if (sh == NULL || a == NULL)
		return 2;
	vs = &sh->victim;
	actor_init(a, sh, W_VICTIM);
	a->st = &sh->st[W_VICTIM]; /* scratch: nobody checks the victim's tallies */
	rc = shmc_open(sh->name, NULL, 0, &a->c);
	if (rc != 0) {
		tu_child_log("victim: shmc_open: %s: %s", shmc_errname(rc), shmc_errmsg(NULL));
		return 2;
	}
	atomic_store(&vs->opened, 1);
	deadline = tu_now_ms() + VICTIM_MAX_MS;
	for (uint64_t i = 0; tu_now_ms() < deadline; i++) {
		char key[32];
		size_t klen;

		if (strcmp(mode, "set") == 0) {
			/* A few keys overwritten again and again: chunks are
			 * taken, sealed, and retired by their last overwrite. */
			klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
			memcpy(vs->last_key, key, klen + 1);
			if (i % 8 == 7)
				do_get(a, key, klen);
			else
				do_set(a, key, klen, 200 + (size_t)tu_rand_below(&a->rng, 1301));
		} else if (strcmp(mode, "incr") == 0) {
			unsigned c = (unsigned)tu_rand_below(&a->rng, NCOUNTERS);
			int64_t delta = 1 + (int64_t)tu_rand_below(&a->rng, 5);

			klen = key_c(key, sizeof key, c);
			memcpy(vs->last_key, key, klen + 1);
			if (shmc_incr(a->c, key, klen, delta, NULL) == 0)
				vs->incr_total[c] += delta;
		} else if (strcmp(mode, "del") == 0) {
			/* set then del the same key, so deletes find it */
			klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
			memcpy(vs->last_key, key, klen + 1);
			do_set(a, key, klen, 200 + (size_t)tu_rand_below(&a->rng, 800));
			(void)shmc_del(a->c, key, klen);
		} else if (strcmp(mode, "get") == 0) {
			klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
			memcpy(vs->last_key, key, klen + 1);
			do_get(a, key, klen);
		} else if (strcmp(mode, "fill") == 0) {
			/* Keys never overwritten: the data area fills and
			 * writers must evict. */
			if (i % 4 == 3) {
				klen = key_k(key, sizeof key, (unsigned)tu_rand_below(&a->rng, NKEYS));
			} else {
				klen = key_u(key, sizeof key, vs->fill_next);
				__atomic_store_n(&vs->fill_next, vs->fill_next + 1, __ATOMIC_RELAXED);
			}
			memcpy(vs->last_key, key, klen + 1);
			do_set(a, key, klen, 900 + (size_t)tu_rand_below(&a->rng, 601));
		} else if (strcmp(mode, "churn") == 0) {
			/* A working set of most of the data area overwritten
			 * at random: chunks die partly, and free room comes
			 * only from compacting the mostly dead ones. */
			klen = key_u(key, sizeof key, tu_rand_below(&a->rng, CHURN_KEYS));
			memcpy(vs->last_key, key, klen + 1);
			do_set(a, key, klen, 900 + (size_t)tu_rand_below(&a->rng, 601));
		} else {
			tu_child_log("victim: unknown mode %s", mode);
			return 2;
		}
		atomic_fetch_add(&vs->ops_done, 1);
	}
	tu_child_log("victim: survived %" PRIu64 " operations: %s never fired",
	             atomic_load(&vs->ops_done), getenv("SHMC_FAULT"));
	return 3;
}

/* ---------------------------------------------------------- fixture */

struct fixture {
	char name[TU_NAME_MAX];
	int fd;
	struct shared *sh;
	shmc_cache *c;
	/* Children still to be waited for (0 = none), so that a failed
	 * assert in the parent never leaves them running. */
	pid_t live[NLIVE];
	pid_t victim;
};

static int setup(void **state)
{
	const char *test = *state;
	struct fixture *f = calloc(1, sizeof *f);
	struct tu_hwm *h;

	if (f == NULL)
		return -1;
	/* "test_faults_<point>_<expectation>" -> "faults-<...>" */
	tu_segname(f->name, sizeof f->name, test + strlen("test_"));
	(void)shmc_unlink(f->name);
	f->fd = memfd_create("shmc-faults", 0); /* no CLOEXEC: the victim execs */
	if (f->fd < 0 || ftruncate(f->fd, (off_t)SHARED_BYTES) != 0)
		return -1;
	f->sh = shared_map(f->fd);
	if (f->sh == NULL)
		return -1;
	snprintf(f->sh->name, sizeof f->sh->name, "%s", f->name);
	h = hwm_of(f->sh);
	h->nwriters = NWRITERS;
	for (unsigned w = 0; w < NWRITERS; w++)
		atomic_init(&h->marks[w], 0);
	*state = f;
	return 0;
}

static void reap_leftover(pid_t pid, bool kill_now)
{
	uint64_t deadline = tu_now_ms() + 5000u;
	int status;

	if (pid <= 0)
		return;
	if (kill_now)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (tu_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return;
		}
		tu_sleep_ms(1);
	}
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	atomic_store(&f->sh->stop, 1);
	reap_leftover(f->victim, true);
	for (unsigned i = 0; i < NLIVE; i++)
		reap_leftover(f->live[i], false);
	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	munmap(f->sh, SHARED_BYTES);
	close(f->fd);
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

/* -------------------------------------------------------- the runner */

struct fault_case {
	const char *point;
	const char *mode; /* the victim's workload */
	unsigned nmin, nmax; /* N of SHMC_FAULT=<point>:<N>, drawn per run */
	size_t segment_bytes; /* 0: SEGMENT_BYTES */
};

struct fault_outcome {
	unsigned n;
	int victim_status;
	bool victim_timed_out;
	uint64_t victim_ops;
	uint64_t life_at_death, life_at_end; /* chunk allocations, summed */
	int alloc_trylock;
	unsigned live_failed;
	uint64_t final_checked, final_bad;
	unsigned counters_wrong;
	struct shmc__reap_result reap;
	struct shmc__verify_report before, after;
	struct shmc_stats stats;
	uint32_t sealed_dead; /* after the reaper pass */
	uint32_t orphans_at_death; /* RETIRING chunks whose claimant is gone */
	/* The same after the reaper pass. Not every RETIRING chunk: this
	 * process's own sweeper may be emptying one at that moment. */
	uint32_t orphans_after;
};

static uint64_t chunk_life_sum(shmc_cache *c)
{
	uint64_t sum = 0;

	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		sum += __atomic_load_n(&c->chunks[k].life, __ATOMIC_ACQUIRE);
	return sum;
}

static uint32_t orphaned_retirements(shmc_cache *c)
{
	uint32_t n = 0;

	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		uint32_t w = __atomic_load_n(&c->chunks[k].state, __ATOMIC_ACQUIRE);

		if (shmc__chunk_state(w) == SHMC__CHUNK_RETIRING && shmc__claimant_gone(c, w))
			n++;
	}
	return n;
}

/* Sealed chunks with every byte counted dead, yet not retired: a reaper
 * seals a dead owner's chunk without trying to retire it, and the audit of
 * the reaper pass skips chunks whose accounting balances, so such a chunk
 * waits for an evictor. Printed for diagnosis, not asserted. */
static uint32_t sealed_all_dead(shmc_cache *c)
{
	uint32_t n = 0;

	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];

		if (__atomic_load_n(&ch->state, __ATOMIC_ACQUIRE) == SHMC__CHUNK_SEALED &&
		    __atomic_load_n(&ch->dead, __ATOMIC_ACQUIRE) >=
		            __atomic_load_n(&ch->used, __ATOMIC_ACQUIRE))
			n++;
	}
	return n;
}

static void verify_emit(void *arg, const char *line)
{
	fprintf(stderr, "  verify[%s]: %s\n", (const char *)arg, line);
}

static pid_t victim_start(struct fixture *f, const struct fault_case *fc, unsigned n)
{
	char spec[96], fdarg[16];
	pid_t pid;

	snprintf(spec, sizeof spec, "%s:%u", fc->point, n);
	snprintf(fdarg, sizeof fdarg, "%d", f->fd);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		tu_child_init(VICTIM_WATCHDOG_S); /* the alarm survives exec */
		setenv("SHMC_FAULT", spec, 1);
		execl("/proc/self/exe", "test_faults", VICTIM_ARG, fc->mode, fdarg, (char *)NULL);
		tu_child_log("victim: exec: %s", strerror(errno));
		_exit(2);
	}
	return pid;
}

/* Every kind of operation on the key the victim was working on: whatever
 * it held there (bucket lock, half-written item) must not stop us. */
static void ops_on_victim_key(struct actor *a, const char *key)
{
	size_t klen = strlen(key);

	if (klen == 0)
		return;
	if (is_counter_key(key)) {
		do_incr(a, (unsigned)(key[2] - '0'));
		do_get(a, key, klen);
		do_get_ref(a, key, klen);
		do_incr(a, (unsigned)(key[2] - '0'));
		return;
	}
	do_get(a, key, klen);
	do_get_ref(a, key, klen);
	do_set(a, key, klen, live_value_len(a));
	do_get(a, key, klen);
	do_del(a, key, klen);
	do_set(a, key, klen, live_value_len(a));
	do_get(a, key, klen);
}

/* Read one key in the final state: whole or absent. */
static void final_check_key(struct actor *a, struct fault_outcome *out, const char *key,
                            size_t klen)
{
	size_t vlen = 0;
	uint64_t before = a->st->torn + a->st->foreign + a->st->never_written + a->st->unexpected;
	int rc = shmc_get(a->c, key, klen, a->buf, sizeof a->buf, &vlen);

	out->final_checked++;
	if (rc == 0)
		check_value(a, "final get", key, klen, a->buf, vlen);
	else if (rc != SHMC_ENOTFOUND)
		unexpected(a, "final get", key, rc);
	if (a->st->torn + a->st->foreign + a->st->never_written + a->st->unexpected != before)
		out->final_bad++;
}

static void run_fault_case(struct fixture *f, const struct fault_case *fc,
                           struct fault_outcome *out)
{
	struct shared *sh = f->sh;
	struct actor *a = malloc(sizeof *a);
	pid_t victim;
	uint64_t seed = tu_now_ns() ^ (uint64_t)getpid();
	uint64_t deadline;
	pid_t got = 0;
	int err = 0;
	struct shmc__tctx *t;

	assert_non_null(a);
	memset(out, 0, sizeof *out);
	assert_true(shmc__fault_points_built());
	assert_null(getenv("SHMC_FAULT")); /* only the victim is armed */
	out->n = fc->nmin + (unsigned)tu_rand_below(&seed, fc->nmax - fc->nmin + 1);

	assert_int_equal(tu_open_fresh(f->name, fc->segment_bytes ? fc->segment_bytes : SEGMENT_BYTES,
				       CHUNK_BYTES, -1, &f->c), 0);
	actor_init(a, sh, W_PARENT);
	a->c = f->c;
	for (unsigned i = 0; i < NKEYS; i++) {
		char key[16];
		size_t klen = key_k(key, sizeof key, i);

		do_set(a, key, klen, live_value_len(a));
	}

	assert_int_equal(tu_fork_start(NLIVE, live_main, sh, LIVE_WATCHDOG_S, f->live), NLIVE);
	deadline = tu_now_ms() + READY_DEADLINE_MS;
	while (atomic_load(&sh->live_ready) < NLIVE && tu_now_ms() < deadline)
		tu_sleep_ms(1);

	victim = f->victim = victim_start(f, fc, out->n);
	assert_true(victim > 0);
	deadline = tu_now_ms() + VICTIM_DEADLINE_MS;
	while (got == 0) {
		for (int i = 0; i < 16; i++)
			live_op(a);
		got = waitpid(victim, &out->victim_status, WNOHANG);
		if (got < 0 && errno == EINTR)
			got = 0;
		if (got == 0 && tu_now_ms() > deadline) {
			kill(victim, SIGKILL);
			got = waitpid(victim, &out->victim_status, 0);
			out->victim_timed_out = true;
		}
	}
	assert_int_equal(got, victim);
	f->victim = 0;
	out->victim_ops = atomic_load(&sh->victim.ops_done);
	out->life_at_death = chunk_life_sum(f->c);
	out->orphans_at_death = orphaned_retirements(f->c);

	/* The dead may hold the lock of this key's bucket. */
	ops_on_victim_key(a, sh->victim.last_key);
	deadline = tu_now_ms() + AFTER_DEATH_MS;
	while (tu_now_ms() < deadline)
		for (int i = 0; i < 16; i++)
			live_op(a);

	atomic_store(&sh->stop, 1);
	out->live_failed = tu_fork_wait(NLIVE, f->live);
	memset(f->live, 0, sizeof f->live);
	/* The allocator keeps allocating after the death (chunk.take dies
	 * holding its robust mutex: the next allocation recovers it). */
	out->life_at_end = chunk_life_sum(f->c);

	/* Final state: every value whole or absent; counters exact. */
	for (unsigned i = 0; i < NKEYS; i++) {
		char key[16];
		size_t klen = key_k(key, sizeof key, i);

		final_check_key(a, out, key, klen);
	}
	for (uint64_t i = 0; i < sh->victim.fill_next; i++) {
		char key[32];
		size_t klen = key_u(key, sizeof key, i);

		final_check_key(a, out, key, klen);
	}
	for (unsigned i = 0; i < NCOUNTERS; i++) {
		char key[16];
		size_t klen = key_c(key, sizeof key, i);

		final_check_key(a, out, key, klen);
	}

	/* The robust allocator mutex is consistent and free. A live sweeper
	 * takes it for microseconds at a time (EBUSY then): look again, for
	 * up to a second; a lock left by the dead would stay taken. */
	for (int tries = 0; tries < 1000; tries++) {
		out->alloc_trylock = pthread_mutex_trylock(&f->c->hdr->alloc_lock);
		if (out->alloc_trylock != EBUSY)
			break;
		tu_sleep_us(1000);
	}
	if (out->alloc_trylock == 0 || out->alloc_trylock == EOWNERDEAD)
		pthread_mutex_unlock(&f->c->hdr->alloc_lock);

	t = shmc__tctx_get(f->c, &err);
	assert_non_null(t);
	out->before.emit = NULL;
	assert_int_equal(shmc__verify(f->c, &out->before), 0);
	assert_int_equal(shmc__reap_pass(f->c, t, &out->reap), 0);
	out->sealed_dead = sealed_all_dead(f->c);
	out->orphans_after = orphaned_retirements(f->c);
	out->after.emit = verify_emit;
	out->after.emit_arg = (void *)fc->point;
	assert_int_equal(shmc__verify(f->c, &out->after), 0);

	/* Counters: exact, unless eviction dropped one (then an increment may
	 * restart from 0, never go beyond the sum). shmc_stats() reaps the
	 * dead, so it comes after the reaper pass and verify. */
	assert_int_equal(shmc_stats(f->c, &out->stats), 0);
	for (unsigned i = 0; i < NCOUNTERS; i++) {
		char key[16];
		size_t klen = key_c(key, sizeof key, i), vlen = 0;
		int64_t expected = sh->victim.incr_total[i], found = 0;
		int rc;

		for (unsigned w = W_LIVE0; w < NWRITERS; w++)
			expected += sh->st[w].incr_total[i];
		rc = shmc_get(f->c, key, klen, a->buf, sizeof a->buf, &vlen);
		if (rc == 0)
			(void)counter_value_ok(a->buf, vlen, &found);
		if (out->stats.evictions == 0 ? found != expected : found > expected) {
			fprintf(stderr, "%s: expected %" PRId64 ", found %" PRId64 " (%s), %" PRIu64
			        " evictions\n", key, expected, found, shmc_errname(rc),
			        out->stats.evictions);
			out->counters_wrong++;
		}
	}

	{
		uint64_t max_ns = 0, ops = 0, torn = 0, foreign = 0, never = 0, unexp = 0;

		for (unsigned w = W_LIVE0; w < NWRITERS; w++) {
			const struct op_stats *s = &sh->st[w];

			ops += s->ops;
			torn += s->torn;
			foreign += s->foreign;
			never += s->never_written;
			unexp += s->unexpected;
			if (s->max_ns > max_ns)
				max_ns = s->max_ns;
			if (s->first_problem[0] != '\0')
				fprintf(stderr, "writer %u: first problem: %s\n", w, s->first_problem);
		}
		printf("[fault %-15s N=%-3u] victim: %s %d after %" PRIu64 " ops; others: %" PRIu64
		       " ops, longest %.3f ms, torn %" PRIu64 " foreign %" PRIu64
		       " never-written %" PRIu64 " unexpected %" PRIu64 "\n",
		       fc->point, out->n,
		       WIFSIGNALED(out->victim_status) ? "signal" : "exit",
		       WIFSIGNALED(out->victim_status) ? WTERMSIG(out->victim_status)
		                                       : WEXITSTATUS(out->victim_status),
		       out->victim_ops, ops, (double)max_ns / 1e6, torn, foreign, never, unexp);
		printf("    orphaned retirements at death %" PRIu32
		       "; chunk allocations after death %" PRIu64 "; verify before reap: procs_dead %" PRIu64
		       " locks_held_by_dead %" PRIu64 " bytes_leaked %" PRIu64 " errors %" PRIu64
		       "; reap: procs %u locks %u retirements %u leaked_recovered %" PRIu64
		       "; verify after: errors %" PRIu64 " bytes_leaked %" PRIu64 " procs_dead %" PRIu64
		       " locks_held_by_dead %" PRIu64 "; evictions %" PRIu64
		       "; fully dead sealed chunks left %" PRIu32 "\n",
		       out->orphans_at_death, out->life_at_end - out->life_at_death,
		       out->before.procs_dead,
		       out->before.locks_held_by_dead, out->before.bytes_leaked, out->before.errors,
		       out->reap.procs_reaped, out->reap.locks_released,
		       out->reap.retirements_finished, out->reap.leaked_bytes_recovered,
		       out->after.errors, out->after.bytes_leaked, out->after.procs_dead,
		       out->after.locks_held_by_dead, out->stats.evictions,
		       out->sealed_dead);
		fflush(stdout);

		/* The victim attached and died by the fault point (possibly
		 * inside its first operation: a writer's first chunk can start
		 * a compaction walk). */
		assert_false(out->victim_timed_out);
		assert_true(WIFSIGNALED(out->victim_status));
		assert_int_equal(WTERMSIG(out->victim_status), SIGKILL);
		assert_int_equal(atomic_load(&sh->victim.opened), 1);
		/* Everyone else carried on, quickly, and read only whole values. */
		assert_int_equal(out->live_failed, 0);
		assert_true(ops > 1000);
		assert_true(max_ns < OP_LIMIT_NS);
		assert_int_equal(torn, 0);
		assert_int_equal(foreign, 0);
		assert_int_equal(never, 0);
		assert_int_equal(unexp, 0);
		assert_int_equal(out->final_bad, 0);
		assert_int_equal(out->counters_wrong, 0);
		assert_true(out->life_at_end > out->life_at_death);
		assert_int_equal(out->alloc_trylock, 0);
		/* One reaper pass leaves nothing behind. */
		assert_int_equal(out->after.errors, 0);
		assert_int_equal(out->after.bytes_leaked, 0);
		assert_int_equal(out->after.procs_dead, 0);
		assert_int_equal(out->after.locks_held_by_dead, 0);
	}
	free(a);
}

/* ---------------------------------------------------------- the tests */

#define FAULT_TEST_SIZED(fn, point_, mode_, nmin_, nmax_, bytes_)                \
	static void fn(void **state)                                             \
	{                                                                        \
		static const struct fault_case fc = {                            \
			.point = point_, .mode = mode_, .nmin = nmin_, .nmax = nmax_, \
			.segment_bytes = bytes_                                  \
		};                                                               \
		struct fault_outcome out;                                        \
		run_fault_case(*state, &fc, &out);                               \
		check_##fn(&out);                                                \
	}
#define FAULT_TEST(fn, point_, mode_, nmin_, nmax_) FAULT_TEST_SIZED(fn, point_, mode_, nmin_, nmax_, 0)

/* Point-specific expectations beyond the common ones in run_fault_case. */

static void check_test_faults_set_appended_item_reclaimed(const struct fault_outcome *o)
{
	/* the appended, never published item is counted dead by the audit */
	assert_int_equal(o->after.bytes_leaked, 0);
}

static void check_test_faults_incr_appended_counter_exact(const struct fault_outcome *o)
{
	/* no eviction, so the check above was for the exact sum (the case
	 * runs in a segment big enough that a loaded machine's slow grace
	 * periods never force one) */
	assert_int_equal(o->stats.evictions, 0);
	assert_int_equal(o->counters_wrong, 0);
}

static void check_test_faults_write_locked_lock_taken_over(const struct fault_outcome *o)
{
	assert_int_equal(o->after.locks_held_by_dead, 0);
}

static void check_test_faults_write_published_value_whole(const struct fault_outcome *o)
{
	assert_int_equal(o->final_bad, 0);
}

static void check_test_faults_write_unlocked_displaced_reclaimed(const struct fault_outcome *o)
{
	assert_int_equal(o->after.bytes_leaked, 0);
}

static void check_test_faults_del_locked_lock_taken_over(const struct fault_outcome *o)
{
	assert_int_equal(o->after.locks_held_by_dead, 0);
}

static void check_test_faults_del_removed_item_reclaimed(const struct fault_outcome *o)
{
	assert_int_equal(o->after.bytes_leaked, 0);
}

static void check_test_faults_read_section_grace_periods_continue(const struct fault_outcome *o)
{
	/* chunks were reused after the reader died inside its section */
	assert_true(o->life_at_end > o->life_at_death);
}

static void check_test_faults_chunk_take_allocator_recovers(const struct fault_outcome *o)
{
	assert_true(o->life_at_end > o->life_at_death);
	assert_int_equal(o->alloc_trylock, 0);
}

static void check_test_faults_chunk_sealed_chunk_reclaimed(const struct fault_outcome *o)
{
	assert_int_equal(o->after.bytes_leaked, 0);
}

static void check_test_faults_retire_claimed_retirement_finished(const struct fault_outcome *o)
{
	/* the dead claimant's chunk does not stay RETIRING (whoever
	 * finishes it: a writer or the reaper pass) */
	assert_int_equal(o->orphans_after, 0);
}

static void check_test_faults_evict_claimed_eviction_finished(const struct fault_outcome *o)
{
	assert_int_equal(o->orphans_after, 0);
}

static void check_test_faults_evict_item_eviction_finished(const struct fault_outcome *o)
{
	assert_int_equal(o->orphans_after, 0);
}

/* A compactor killed after claiming its chunk: the chunk is taken over
 * (its live items moved or evicted) and nothing stays RETIRING. */
static void check_test_faults_compact_claimed_compaction_finished(const struct fault_outcome *o)
{
	assert_int_equal(o->orphans_after, 0);
}

FAULT_TEST(test_faults_set_appended_item_reclaimed, "set.appended", "set", 20, 60)
FAULT_TEST_SIZED(test_faults_incr_appended_counter_exact, "incr.appended", "incr", 20, 60, 8u << 20)
FAULT_TEST(test_faults_write_locked_lock_taken_over, "write.locked", "set", 20, 60)
FAULT_TEST(test_faults_write_published_value_whole, "write.published", "set", 20, 60)
FAULT_TEST(test_faults_write_unlocked_displaced_reclaimed, "write.unlocked", "set", 20, 60)
FAULT_TEST(test_faults_del_locked_lock_taken_over, "del.locked", "del", 20, 60)
FAULT_TEST(test_faults_del_removed_item_reclaimed, "del.removed", "del", 10, 40)
FAULT_TEST(test_faults_read_section_grace_periods_continue, "read.section", "get", 50, 300)
FAULT_TEST(test_faults_chunk_take_allocator_recovers, "chunk.take", "set", 2, 5)
FAULT_TEST(test_faults_chunk_sealed_chunk_reclaimed, "chunk.sealed", "set", 1, 4)
FAULT_TEST(test_faults_retire_claimed_retirement_finished, "retire.claimed", "set", 1, 4)
FAULT_TEST(test_faults_evict_claimed_eviction_finished, "evict.claimed", "fill", 1, 3)
FAULT_TEST(test_faults_evict_item_eviction_finished, "evict.item", "fill", 5, 40)
FAULT_TEST(test_faults_compact_claimed_compaction_finished, "compact.claimed", "churn", 1, 3)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_faults_set_appended_item_reclaimed),
		TEST(test_faults_incr_appended_counter_exact),
		TEST(test_faults_write_locked_lock_taken_over),
		TEST(test_faults_write_published_value_whole),
		TEST(test_faults_write_unlocked_displaced_reclaimed),
		TEST(test_faults_del_locked_lock_taken_over),
		TEST(test_faults_del_removed_item_reclaimed),
		TEST(test_faults_read_section_grace_periods_continue),
		TEST(test_faults_chunk_take_allocator_recovers),
		TEST(test_faults_chunk_sealed_chunk_reclaimed),
		TEST(test_faults_retire_claimed_retirement_finished),
		TEST(test_faults_evict_claimed_eviction_finished),
		TEST(test_faults_evict_item_eviction_finished),
		TEST(test_faults_compact_claimed_compaction_finished),
	};

	if (argc == 4 && strcmp(argv[1], VICTIM_ARG) == 0)
		return victim_main(argv[2], atoi(argv[3]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
