/*
 * test_torture.c - mixed load from many processes while the parent SIGKILLs
 * one of them every few milliseconds, for about a minute; then one reaper
 * pass and a full verify.
 *
 * Workers (NWORKERS processes at any time) run get 40% / set 30% / del 10% /
 * incr 10% / get_ref inside read_begin..read_end 10% on NKEYS overlapping
 * keys with self-describing values of 36..1500 bytes (tests/common/
 * testutil.h). One get_ref section in four also stores a new value for the
 * key it holds a reference to and checks that the referenced bytes did not
 * change (the one place where SHMC_ENOSPC is documented: a write inside a
 * read section does not wait for readers).
 *
 * Every tenth key is also a counter: incr may find a self-describing value
 * there (SHMC_ENOTNUM, documented), deletes the key and tries once more.
 * A read of such a key may find a positive decimal integer.
 *
 * The killer (the parent) SIGKILLs a random one of NKILLABLE workers every
 * 2-10 ms and starts a replacement with a writer id never used before, so the per-writer
 * high-water marks stay exact and a NEVER_WRITTEN verdict means a value no
 * writer produced (reused memory that happens to parse). It stops after
 * KILL_PHASE_MS once at least MIN_KILLS kills were made; the survivors are
 * then told to stop and exit cleanly. NOBSERVERS more workers are never
 * killed: a replacement lives some tens of milliseconds, so without them
 * "the survivors" would only have seen the last instants of the run, while
 * the observers meet every lock, chunk and reader slot the dead left.
 *
 * Each worker keeps its tallies directly in shared memory (one record per
 * writer id, written only by that worker), so a SIGKILL loses nothing but
 * the operation in flight. Every operation is timed on CLOCK_MONOTONIC
 * around the single library call.
 *
 * Afterwards one shmc__reap_pass() and shmc__verify(). Asserted: at least
 * MIN_KILLS kills; no single call of any worker took 1 s; no TORN, FOREIGN
 * or NEVER_WRITTEN value; no undocumented return code (SHMC_ENOSPC counts
 * as one outside a read section); no more than an eighth of the chunks left
 * RETIRING by dead claimants; after the pass verify finds no error, no
 * leaked byte, no dead process. The parent also samples, every 10 s, how
 * many chunks are RETIRING, and prints one summary block.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "handle.h"
#include "sweeper.h"
#include "verify.h"

#include "testutil.h"

#define SEGMENT_BYTES (8u << 20)
#define CHUNK_BYTES (64u << 10)
#define NKILLABLE 8u           /* workers the killer picks from */
#define NOBSERVERS 2u          /* workers never killed: they live through it all */
#define NWORKERS (NOBSERVERS + NKILLABLE) /* slots 0..NOBSERVERS-1 are observers */
#define NKEYS 2000u
#define HOT_KEYS 200u          /* half of the picks go to these */
#define COUNTER_EVERY 10u      /* key i is also a counter if i % 10 == 0 */
#define VALUE_MAX 1500u
#define VALUE_CAP 2048u

#define KILL_PHASE_MS 60000u     /* kill for this long ... */
#define MIN_KILLS 500u           /* ... and at least this many times */
#define KILL_PHASE_MAX_MS 120000u /* hard bound on the kill phase */
#define KILL_GAP_MIN_US 2000u
#define KILL_GAP_MAX_US 10000u
#define MAX_WRITERS 24000u       /* writer ids; a worker never reuses one */
#define WORKER_WATCHDOG_S 200u
#define STOP_DEADLINE_MS 15000u  /* survivors must exit by then */
#define WORKER_MAX_MS 170000u    /* a worker never runs longer */
#define OP_LIMIT_NS 1000000000ull
#define MAX_LOGGED_PROBLEMS 30u

/* One worker's tallies, by writer id; written only by that worker. */
struct wstats {
	uint64_t ops;
	uint64_t max_ns;         /* longest single library call */
	uint64_t torn, foreign, never_written;
	uint64_t unexpected;     /* codes the operation does not document */
	uint64_t enospc_other;   /* SHMC_ENOSPC outside a read section (in unexpected) */
	uint64_t enospc_section; /* SHMC_ENOSPC of a set inside a read section (allowed) */
	uint64_t enotnum;        /* incr met a self-describing value (allowed) */
	uint64_t section_sets;   /* sets attempted inside a read section */
	uint32_t clean_exit;     /* 1 once the worker left its loop when told to */
	uint32_t max_op;         /* enum op_kind of max_ns */
	char first_problem[136];
};

struct shared {
	char name[TU_NAME_MAX];
	struct tu_hwm *hwm;
	_Atomic int stop;
	_Atomic unsigned logged_problems;
	struct wstats st[MAX_WRITERS];
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
	tu_segname(f->name, sizeof f->name, "torture");
	(void)shmc_unlink(f->name);
	f->sh = tu_shared_alloc(sizeof *f->sh);
	if (f->sh == NULL)
		return -1;
	f->sh->hwm = tu_hwm_create(MAX_WRITERS);
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

/* ------------------------------------------------------------- worker */

struct worker {
	unsigned id;
	struct shared *sh;
	struct wstats *st;
	shmc_cache *c;
	uint64_t rng;
	uint64_t seq;
	unsigned char buf[VALUE_CAP];
	unsigned char val[VALUE_CAP];
};

static void problem(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct worker *w, const char *fmt, ...)
{
	char line[136];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (w->st->first_problem[0] == '\0')
		snprintf(w->st->first_problem, sizeof w->st->first_problem, "%s", line);
	if (atomic_fetch_add(&w->sh->logged_problems, 1u) < MAX_LOGGED_PROBLEMS)
		tu_child_log("writer %u: %s", w->id, line);
}

enum op_kind {
	OP_GET, OP_SET, OP_DEL, OP_INCR, OP_READ_BEGIN, OP_GET_REF, OP_SECTION_SET,
	OP_READ_END, OP_KINDS
};

static const char *const op_names[OP_KINDS] = {
	"get", "set", "del", "incr", "read_begin", "get_ref", "set in a read section",
	"read_end",
};

static inline void timed(struct worker *w, uint64_t t0, enum op_kind op)
{
	uint64_t ns = tu_now_ns() - t0;

	w->st->ops++;
	if (ns > w->st->max_ns) {
		w->st->max_ns = ns;
		w->st->max_op = op;
	}
}

static void unexpected(struct worker *w, const char *op, const char *key, int rc)
{
	w->st->unexpected++;
	if (rc == SHMC_ENOSPC)
		w->st->enospc_other++;
	problem(w, "%s %s: %s", op, key, shmc_errname(rc));
}

static unsigned pick_key(struct worker *w)
{
	if (tu_rand_below(&w->rng, 2) == 0)
		return (unsigned)tu_rand_below(&w->rng, HOT_KEYS);
	return (unsigned)tu_rand_below(&w->rng, NKEYS);
}

static unsigned pick_counter(struct worker *w)
{
	return COUNTER_EVERY * (unsigned)tu_rand_below(
		&w->rng, tu_rand_below(&w->rng, 2) == 0 ? HOT_KEYS / COUNTER_EVERY
		                                         : NKEYS / COUNTER_EVERY);
}

static size_t key_name(char *buf, size_t cap, unsigned k)
{
	return (size_t)snprintf(buf, cap, "t-%04u", k);
}

/* A counter's value: decimal digits only, positive. */
static bool counter_value(const unsigned char *v, size_t n)
{
	int64_t x = 0;

	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	return x > 0;
}

/* Classify a value read for key k; returns its verdict (TU_OK if fine). */
static enum tu_verdict check_value(struct worker *w, const char *how, unsigned k,
                                   const char *key, size_t klen, const void *val,
                                   size_t vlen, struct tu_value_info *info)
{
	enum tu_verdict v;

	if (k % COUNTER_EVERY == 0 && vlen < TU_VALUE_MIN_BYTES && counter_value(val, vlen))
		return TU_OK;
	v = tu_value_check(val, vlen, key, klen, w->sh->hwm, info);
	switch (v) {
	case TU_OK:
		return v;
	case TU_TORN:
		w->st->torn++;
		problem(w, "%s %s: TORN (vlen %zu)", how, key, vlen);
		return v;
	case TU_FOREIGN:
		w->st->foreign++;
		break;
	case TU_NEVER_WRITTEN:
		w->st->never_written++;
		break;
	}
	problem(w, "%s %s: %s (writer %" PRIu32 " seq %" PRIu64 ")", how, key,
	        tu_verdict_name(v), info != NULL ? info->writer_id : 0,
	        info != NULL ? info->seq : 0);
	return v;
}

static size_t build_value(struct worker *w, const char *key, size_t klen)
{
	size_t len = TU_VALUE_MIN_BYTES +
	             (size_t)tu_rand_below(&w->rng, VALUE_MAX - TU_VALUE_MIN_BYTES + 1);
	uint64_t seq = ++w->seq;

	tu_value_build(w->val, sizeof w->val, key, klen, w->id, seq, len);
	tu_hwm_publish(w->sh->hwm, w->id, seq); /* before the value is visible */
	return len;
}

static void op_get(struct worker *w)
{
	unsigned k = pick_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k), vlen = 0;
	struct tu_value_info info;
	uint64_t t0 = tu_now_ns();
	int rc = shmc_get(w->c, key, klen, w->buf, sizeof w->buf, &vlen);

	timed(w, t0, OP_GET);
	if (rc == 0)
		(void)check_value(w, "get", k, key, klen, w->buf, vlen, &info);
	else if (rc != SHMC_ENOTFOUND)
		unexpected(w, "get", key, rc);
}

static void op_set(struct worker *w)
{
	unsigned k = pick_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k);
	size_t len = build_value(w, key, klen);
	uint64_t t0 = tu_now_ns();
	int rc = shmc_set(w->c, key, klen, w->val, len, 0, 0);

	timed(w, t0, OP_SET);
	if (rc != 0)
		unexpected(w, "set", key, rc);
}

static void op_del(struct worker *w)
{
	unsigned k = pick_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k);
	uint64_t t0 = tu_now_ns();
	int rc = shmc_del(w->c, key, klen);

	timed(w, t0, OP_DEL);
	if (rc != 0 && rc != SHMC_ENOTFOUND)
		unexpected(w, "del", key, rc);
}

static void op_incr(struct worker *w)
{
	unsigned k = pick_counter(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k);
	int64_t delta = 1 + (int64_t)tu_rand_below(&w->rng, 10), out = 0;
	uint64_t t0 = tu_now_ns();
	int rc = shmc_incr(w->c, key, klen, delta, &out);

	timed(w, t0, OP_INCR);
	if (rc == SHMC_ENOTNUM) {
		/* a self-describing value lives there: reset the counter */
		w->st->enotnum++;
		t0 = tu_now_ns();
		rc = shmc_del(w->c, key, klen);
		timed(w, t0, OP_DEL);
		if (rc != 0 && rc != SHMC_ENOTFOUND)
			unexpected(w, "del", key, rc);
		t0 = tu_now_ns();
		rc = shmc_incr(w->c, key, klen, delta, &out);
		timed(w, t0, OP_INCR);
		if (rc == SHMC_ENOTNUM) { /* someone stored a value meanwhile */
			w->st->enotnum++;
			return;
		}
	}
	if (rc != 0) {
		unexpected(w, "incr", key, rc);
		return;
	}
	if (out < delta) {
		w->st->torn++;
		problem(w, "incr %s by %" PRId64 " returned %" PRId64, key, delta, out);
	}
}

static void op_get_ref(struct worker *w)
{
	unsigned k = pick_key(w);
	char key[16];
	size_t klen = key_name(key, sizeof key, k), vlen = 0;
	const void *ref = NULL;
	struct tu_value_info before = {0}, after = {0};
	uint64_t t0 = tu_now_ns();
	int rc = shmc_read_begin(w->c);

	timed(w, t0, OP_READ_BEGIN);
	if (rc != 0) {
		unexpected(w, "read_begin", key, rc);
		return;
	}
	t0 = tu_now_ns();
	rc = shmc_get_ref(w->c, key, klen, &ref, &vlen);
	timed(w, t0, OP_GET_REF);
	if (rc == 0) {
		enum tu_verdict v = check_value(w, "get_ref", k, key, klen, ref, vlen, &before);

		if (v == TU_OK && vlen >= TU_VALUE_MIN_BYTES && tu_rand_below(&w->rng, 4) == 0) {
			/* Replace the value while holding a reference to the old
			 * one: the old bytes must stay as they were. */
			size_t len = build_value(w, key, klen);

			w->st->section_sets++;
			t0 = tu_now_ns();
			rc = shmc_set(w->c, key, klen, w->val, len, 0, 0);
			timed(w, t0, OP_SECTION_SET);
			if (rc == SHMC_ENOSPC)
				w->st->enospc_section++;
			else if (rc != 0)
				unexpected(w, "set in read section", key, rc);
			if (check_value(w, "get_ref after set", k, key, klen, ref, vlen, &after) ==
			            TU_OK &&
			    (after.writer_id != before.writer_id || after.seq != before.seq)) {
				w->st->torn++;
				problem(w, "get_ref %s: referenced value changed under the section", key);
			}
		}
	} else if (rc != SHMC_ENOTFOUND) {
		unexpected(w, "get_ref", key, rc);
	}
	t0 = tu_now_ns();
	rc = shmc_read_end(w->c);
	timed(w, t0, OP_READ_END);
	if (rc != 0)
		unexpected(w, "read_end", key, rc);
}

static int worker_main(struct shared *sh, unsigned id)
{
	struct worker *w = calloc(1, sizeof *w);
	uint64_t deadline;
	int rc;

	if (w == NULL)
		return 1;
	w->id = id;
	w->sh = sh;
	w->st = &sh->st[id];
	w->rng = 0x7047757265ull ^ ((uint64_t)id * 0x9e3779b97f4a7c15ull);
	rc = shmc_open(sh->name, NULL, 0, &w->c);
	if (rc != 0) {
		w->st->unexpected++;
		problem(w, "shmc_open: %s: %s", shmc_errname(rc), shmc_errmsg(NULL));
		return 1;
	}
	deadline = tu_now_ms() + WORKER_MAX_MS;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		if (tu_now_ms() > deadline) {
			problem(w, "never told to stop");
			break;
		}
		for (int batch = 0; batch < 32; batch++) {
			unsigned dice = (unsigned)tu_rand_below(&w->rng, 100);

			if (dice < 40)
				op_get(w);
			else if (dice < 70)
				op_set(w);
			else if (dice < 80)
				op_del(w);
			else if (dice < 90)
				op_incr(w);
			else
				op_get_ref(w);
		}
	}
	shmc_close(w->c);
	w->st->clean_exit = atomic_load(&sh->stop) ? 1 : 0;
	free(w);
	return 0;
}

/* ------------------------------------------------------------- killer */

#define SAMPLE_EVERY_MS 10000u
#define MAX_SAMPLES (KILL_PHASE_MAX_MS / SAMPLE_EVERY_MS + 1)

struct crew {
	struct shared *sh;
	shmc_cache *c;           /* the parent's handle, for white-box samples */
	unsigned retiring[MAX_SAMPLES]; /* chunks in RETIRING every 10 s */
	unsigned nsamples;
	pid_t pid[NWORKERS];
	unsigned id[NWORKERS];
	unsigned next_id;
	unsigned kills;
	unsigned unexpected_exits;
	unsigned fork_failures;
};

/* Start a worker with a fresh writer id in slot. A slot whose fork failed
 * holds pid 0 and is never signalled: kill() of 0 or -1 would reach far
 * more than our workers. */
static void spawn(struct crew *cr, unsigned slot)
{
	unsigned id = cr->next_id++;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		tu_child_init(WORKER_WATCHDOG_S);
		_exit(worker_main(cr->sh, id));
	}
	if (pid < 0) {
		fprintf(stderr, "fork: %s\n", strerror(errno));
		cr->fork_failures++;
		pid = 0;
	}
	cr->pid[slot] = pid;
	cr->id[slot] = id;
}

static int slot_of(const struct crew *cr, pid_t pid)
{
	for (unsigned i = 0; i < NWORKERS; i++)
		if (pid > 0 && cr->pid[i] == pid)
			return (int)i;
	return -1;
}

static void report_exit(const struct crew *cr, unsigned slot, int status, const char *when)
{
	if (WIFSIGNALED(status))
		fprintf(stderr, "worker %u (pid %ld) %s: killed by signal %d%s\n", cr->id[slot],
		        (long)cr->pid[slot], when, WTERMSIG(status),
		        WTERMSIG(status) == SIGALRM ? " (watchdog)" : "");
	else
		fprintf(stderr, "worker %u (pid %ld) %s: exited with %d\n", cr->id[slot],
		        (long)cr->pid[slot], when, WEXITSTATUS(status));
}

/* Replace workers that died without being killed (a crash, a watchdog). */
static void reap_unexpected(struct crew *cr)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int slot = slot_of(cr, pid);

		if (slot < 0)
			continue;
		report_exit(cr, (unsigned)slot, status, "died on its own");
		cr->unexpected_exits++;
		spawn(cr, (unsigned)slot);
	}
}

static unsigned chunks_retiring(shmc_cache *c)
{
	unsigned n = 0;

	for (uint32_t k = 0; k < c->geo.nchunks; k++)
		n += shmc__chunk_state(__atomic_load_n(&c->chunks[k].state, __ATOMIC_ACQUIRE)) ==
		     SHMC__CHUNK_RETIRING;
	return n;
}

static void kill_phase(struct crew *cr)
{
	uint64_t rng = tu_now_ns() ^ (uint64_t)getpid();
	uint64_t start = tu_now_ms();

	for (;;) {
		uint64_t elapsed = tu_now_ms() - start;
		unsigned slot;
		int status = 0;
		pid_t got;

		if (elapsed >= (uint64_t)cr->nsamples * SAMPLE_EVERY_MS && cr->nsamples < MAX_SAMPLES)
			cr->retiring[cr->nsamples++] = chunks_retiring(cr->c);
		if ((elapsed >= KILL_PHASE_MS && cr->kills >= MIN_KILLS) ||
		    elapsed >= KILL_PHASE_MAX_MS ||
		    cr->next_id + NWORKERS + 1 >= MAX_WRITERS) /* ids this round may take */
			break;
		tu_sleep_us(KILL_GAP_MIN_US +
		            (unsigned)tu_rand_below(&rng, KILL_GAP_MAX_US - KILL_GAP_MIN_US + 1));
		reap_unexpected(cr);
		slot = NOBSERVERS + (unsigned)tu_rand_below(&rng, NKILLABLE);
		if (cr->pid[slot] <= 0) {
			spawn(cr, slot);
			continue;
		}
		if (kill(cr->pid[slot], SIGKILL) != 0) {
			fprintf(stderr, "kill %ld: %s\n", (long)cr->pid[slot], strerror(errno));
			cr->unexpected_exits++;
		}
		do
			got = waitpid(cr->pid[slot], &status, 0);
		while (got < 0 && errno == EINTR);
		if (got == cr->pid[slot] && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
			cr->kills++;
		} else {
			report_exit(cr, slot, status, "before its kill");
			cr->unexpected_exits++;
		}
		spawn(cr, slot);
	}
}

/* Tell the survivors to stop; returns how many did not exit cleanly. */
static unsigned stop_survivors(struct crew *cr)
{
	uint64_t deadline = tu_now_ms() + STOP_DEADLINE_MS;
	bool done[NWORKERS] = {false};
	unsigned left = NWORKERS, failed = 0;

	atomic_store(&cr->sh->stop, 1);
	while (left > 0) {
		for (unsigned i = 0; i < NWORKERS; i++) {
			int status;
			pid_t got;

			if (done[i])
				continue;
			if (cr->pid[i] <= 0) { /* its fork failed: counted already */
				done[i] = true;
				left--;
				continue;
			}
			got = waitpid(cr->pid[i], &status, WNOHANG);
			if (got == 0 && tu_now_ms() < deadline)
				continue;
			if (got == 0) {
				fprintf(stderr, "worker %u did not stop: killing it\n", cr->id[i]);
				kill(cr->pid[i], SIGKILL);
				waitpid(cr->pid[i], &status, 0);
				failed++;
			} else if (got < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
			           !cr->sh->st[cr->id[i]].clean_exit) {
				if (got > 0)
					report_exit(cr, i, status, "when told to stop");
				failed++;
			}
			done[i] = true;
			left--;
		}
		tu_sleep_ms(1);
	}
	return failed;
}

/* ------------------------------------------------------------- the test */

static void verify_emit(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "  verify: %s\n", line);
}

static void test_torture_sigkill_under_mixed_load_keeps_segment_consistent(void **state)
{
	struct fixture *f = *state;
	struct crew cr = {.sh = f->sh};
	char samples[MAX_SAMPLES * 8] = "";
	struct shmc__reap_result rr;
	struct shmc__verify_report vr = {.emit = verify_emit}, pre = {.emit = NULL};
	struct shmc_stats stats;
	uint64_t ops = 0, torn = 0, foreign = 0, never = 0, unexp = 0, enospc_other = 0;
	uint64_t enospc_section = 0, section_sets = 0, enotnum = 0;
	uint64_t max_ns_all = 0, max_ns_survivors = 0, max_ns_observers = 0, observer_ops = 0;
	uint32_t max_op_all = 0;
	unsigned survivors_failed, shown = 0;
	uint64_t t_start = tu_now_ms();
	struct shmc__tctx *t;
	int err = 0;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, -1, &f->c), 0);
	cr.c = f->c;
	for (unsigned i = 0; i < NWORKERS; i++)
		spawn(&cr, i);
	kill_phase(&cr);
	survivors_failed = stop_survivors(&cr);

	for (unsigned id = 0; id < cr.next_id; id++) {
		const struct wstats *s = &f->sh->st[id];

		ops += s->ops;
		torn += s->torn;
		foreign += s->foreign;
		never += s->never_written;
		unexp += s->unexpected;
		enospc_other += s->enospc_other;
		enospc_section += s->enospc_section;
		section_sets += s->section_sets;
		enotnum += s->enotnum;
		if (s->max_ns > max_ns_all) {
			max_ns_all = s->max_ns;
			max_op_all = s->max_op;
		}
		if (s->first_problem[0] != '\0' && shown++ < 10)
			fprintf(stderr, "writer %u: first problem: %s\n", id, s->first_problem);
	}
	for (unsigned i = 0; i < NWORKERS; i++) {
		const struct wstats *s = &f->sh->st[cr.id[i]];

		if (s->max_ns > max_ns_survivors)
			max_ns_survivors = s->max_ns;
		if (i < NOBSERVERS) {
			observer_ops += s->ops;
			if (s->max_ns > max_ns_observers)
				max_ns_observers = s->max_ns;
		}
	}

	for (unsigned i = 0; i < cr.nsamples; i++)
		snprintf(samples + strlen(samples), sizeof samples - strlen(samples), "%s%u",
		         i ? " " : "", cr.retiring[i]);

	t = shmc__tctx_get(f->c, &err);
	assert_non_null(t);
	/* What the dead left behind, before the pass. */
	assert_int_equal(shmc__verify(f->c, &pre), 0);
	assert_int_equal(shmc__reap_pass(f->c, t, &rr), 0);
	assert_int_equal(shmc__verify(f->c, &vr), 0);
	assert_int_equal(shmc_stats(f->c, &stats), 0);

	printf("==== torture summary ====\n"
	       "  run time                     %.1f s\n"
	       "  kills                        %u (workers started %u, unexpected exits %u, failed forks %u)\n"
	       "  total ops                    %" PRIu64 "\n"
	       "  longest op, survivors        %.3f ms (observers: %.3f ms over %" PRIu64 " ops)\n"
	       "  longest op, all workers      %.3f ms (%s)\n"
	       "  TORN                         %" PRIu64 "\n"
	       "  FOREIGN                      %" PRIu64 "\n"
	       "  NEVER_WRITTEN                %" PRIu64 "\n"
	       "  unexpected errors            %" PRIu64 " (of which SHMC_ENOSPC outside a read section: %" PRIu64 ")\n"
	       "  ENOSPC in read sections      %" PRIu64 " of %" PRIu64 " sets inside a section (allowed)\n"
	       "  ENOTNUM on incr              %" PRIu64 " (allowed)\n"
	       "  segment: evictions %" PRIu64 ", enospc %" PRIu64 ", items %" PRIu64 ", bytes_written %" PRIu64 "\n"
	       "  before the reap pass: procs_dead %" PRIu64 ", locks_held_by_dead %" PRIu64
	       ", bytes_leaked %" PRIu64 ", chunks retiring (claimant dead) %" PRIu64 " of %" PRIu64 "\n"
	       "  chunks RETIRING every %us    %s\n"
	       "  reap pass: procs %u, locks %u, retirements %u, leaked bytes recovered %" PRIu64 "\n"
	       "  verify: errors %" PRIu64 ", bytes_leaked %" PRIu64 ", procs_dead %" PRIu64
	       ", locks_held_by_dead %" PRIu64 ", chunks free/open/sealed/retiring/retired %" PRIu64
	       "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n"
	       "=========================\n",
	       (double)(tu_now_ms() - t_start) / 1000.0, cr.kills, cr.next_id,
	       cr.unexpected_exits, cr.fork_failures, ops, (double)max_ns_survivors / 1e6,
	       (double)max_ns_observers / 1e6, observer_ops,
	       (double)max_ns_all / 1e6, op_names[max_op_all < OP_KINDS ? max_op_all : 0], torn, foreign, never, unexp, enospc_other,
	       enospc_section, section_sets, enotnum, stats.evictions, stats.enospc, stats.items,
	       stats.bytes_written, pre.procs_dead, pre.locks_held_by_dead, pre.bytes_leaked,
	       pre.chunks_retiring, stats.chunks_total, SAMPLE_EVERY_MS / 1000u, samples,
	       rr.procs_reaped, rr.locks_released, rr.retirements_finished,
	       rr.leaked_bytes_recovered, vr.errors, vr.bytes_leaked, vr.procs_dead,
	       vr.locks_held_by_dead, vr.chunks_free, vr.chunks_open, vr.chunks_sealed,
	       vr.chunks_retiring, vr.chunks_retired);
	fflush(stdout);

	assert_true(cr.kills >= MIN_KILLS);
	assert_int_equal(cr.unexpected_exits, 0);
	assert_int_equal(cr.fork_failures, 0);
	assert_int_equal(survivors_failed, 0);
	assert_true(ops > 100000);
	assert_true(max_ns_survivors < OP_LIMIT_NS);
	assert_true(max_ns_all < OP_LIMIT_NS);
	assert_int_equal(torn, 0);
	assert_int_equal(foreign, 0);
	assert_int_equal(never, 0);
	assert_int_equal(unexp, 0);
	/* Capacity survives the deaths: writers must not return SHMC_ENOSPC
	 * while memory can be freed (DESIGN.md section 5), so chunks whose
	 * retirement a dead claimant left unfinished must not pile up waiting
	 * for an explicit reaper pass. Every worker has stopped here, so each
	 * RETIRING chunk is such an orphan. */
	assert_true(pre.chunks_retiring <= stats.chunks_total / 8);
	assert_int_equal(vr.errors, 0);
	assert_int_equal(vr.bytes_leaked, 0);
	assert_int_equal(vr.procs_dead, 0);
	assert_int_equal(vr.locks_held_by_dead, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate_setup_teardown(
			test_torture_sigkill_under_mixed_load_keeps_segment_consistent, setup,
			teardown, NULL),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
