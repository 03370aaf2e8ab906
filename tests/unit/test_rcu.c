/*
 * test_rcu.c - cross-process RCU (rcu.c): reader words, nesting, the
 * oldest-reader scan, dead readers, and the membarrier / fence choice.
 *
 * Readers in other processes are forked children that open the segment
 * themselves. The membarrier registration is made once per process (and
 * survives fork()), so the tests of a process's first registration run in
 * a fresh copy of this executable: fork, adjust the environment (or the
 * seccomp filter) in the child, then exec this program in a child mode
 * ("--child <mode> <segment>") that reports through its exit code.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"
#include "rcu.h"
#include "unitutil.h"

#define SEGMENT_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)
#define CHILD_WATCHDOG_S 30u
#define SIGNAL_TIMEOUT_MS 10000u

/* Exit codes of child modes. */
#define CHILD_YES 0   /* the property holds */
#define CHILD_NO 1    /* it does not */
#define CHILD_SETUP 2 /* the child could not run the check */
#define CHILD_SKIP 77 /* this kernel cannot run the check */

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static int setup(void **state)
{
	static const struct uu_params p = {
		.size_bytes = SEGMENT_BYTES,
		.chunk_bytes = CHUNK_BYTES,
		.max_procs = 8,
		.max_threads = 16,
	};

	return uu_setup(state, &p);
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, uu_teardown, (void *)#fn)

static int membarrier_cmd(int cmd)
{
	return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

/* ------------------------------------------------------- this process */

static void test_rcu_no_readers_oldest_is_current_epoch(void **state)
{
	shmc_cache *c = cache_of(state);

	tctx_of(c); /* a registered but quiescent thread */
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
}

static void test_rcu_inside_section_oldest_is_reader_ctr(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);

	shmc__rcu_retire_stamp(c); /* so the counter is not the initial 1 */
	assert_int_equal(shmc_read_begin(c), 0);
	uint64_t ctr = t->slot->rcu_ctr;
	uint64_t oldest = shmc__rcu_oldest_reader(c);
	assert_int_equal(shmc_read_end(c), 0);
	assert_true(ctr == c->hdr->gp_ctr);
	assert_true(oldest == ctr);
}

static void test_rcu_section_end_clears_reader_word(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);

	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_true(t->slot->rcu_ctr == 0);
	assert_int_equal(t->read_depth, 0);
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
}

static void test_rcu_nested_sections_hold_until_outermost_end(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);

	assert_int_equal(shmc_read_begin(c), 0);
	uint64_t ctr = t->slot->rcu_ctr;
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(t->read_depth, 2);
	assert_int_equal(shmc_read_end(c), 0);
	assert_int_equal(t->read_depth, 1);
	assert_true(shmc__rcu_oldest_reader(c) == ctr);
	assert_int_equal(shmc_read_end(c), 0);
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
}

/* An inner section does not republish the (newer) counter. */
static void test_rcu_inner_section_keeps_outer_ctr(void **state)
{
	shmc_cache *c = cache_of(state);
	struct shmc__tctx *t = tctx_of(c);

	assert_int_equal(shmc_read_begin(c), 0);
	uint64_t outer = t->slot->rcu_ctr;
	shmc__rcu_retire_stamp(c);
	assert_int_equal(shmc_read_begin(c), 0);
	uint64_t inner = t->slot->rcu_ctr;
	assert_int_equal(shmc_read_end(c), 0);
	assert_int_equal(shmc_read_end(c), 0);
	assert_true(inner == outer);
	assert_true(c->hdr->gp_ctr > outer);
}

static void test_rcu_read_end_without_begin_einval(void **state)
{
	shmc_cache *c = cache_of(state);

	assert_int_equal(shmc_read_end(c), SHMC_EINVAL);
	assert_int_equal(tctx_of(c)->read_depth, 0);
}

static void test_rcu_retire_stamp_advances_counter(void **state)
{
	shmc_cache *c = cache_of(state);
	uint64_t before = c->hdr->gp_ctr;

	uint64_t r = shmc__rcu_retire_stamp(c);
	assert_true(r == before + 1);
	assert_true(c->hdr->gp_ctr == r);
}

struct holder {
	shmc_cache *c;
	pthread_t thread;
	_Atomic int inside;
	_Atomic int release;
	uint64_t ctr;
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;

	if (shmc_read_begin(h->c) != 0) {
		atomic_store(&h->inside, -1);
		return NULL;
	}
	h->ctr = uu_tctx(h->c)->slot->rcu_ctr;
	atomic_store(&h->inside, 1);
	uu_wait_flag(&h->release, 1, SIGNAL_TIMEOUT_MS, 0, NULL);
	shmc_read_end(h->c);
	return NULL;
}

static void holder_start(struct holder *h, shmc_cache *c)
{
	h->c = c;
	assert_int_equal(pthread_create(&h->thread, NULL, holder_main, h), 0);
	assert_true(uu_wait_flag(&h->inside, 1, SIGNAL_TIMEOUT_MS, 0, NULL));
}

static void holder_stop(struct holder *h)
{
	atomic_store(&h->release, 1);
	assert_int_equal(pthread_join(h->thread, NULL), 0);
}

static void test_rcu_oldest_is_minimum_over_readers(void **state)
{
	shmc_cache *c = cache_of(state);
	struct holder a = {0}, b = {0};

	holder_start(&a, c);
	shmc__rcu_retire_stamp(c);
	holder_start(&b, c);
	assert_true(b.ctr > a.ctr);
	assert_true(shmc__rcu_oldest_reader(c) == a.ctr);
	holder_stop(&a);
	assert_true(shmc__rcu_oldest_reader(c) == b.ctr);
	holder_stop(&b);
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
}

/* ---------------------------------------------------- readers elsewhere */

struct child_reader {
	char name[TU_NAME_MAX];
	_Atomic int inside;
	uint64_t ctr;
	uint32_t proc_idx;
	uint32_t slot_idx;
};

/* Child: open, enter a read section, report, wait to be killed. */
static int reader_child(unsigned index, void *arg)
{
	struct child_reader *r = arg;
	shmc_cache *c = NULL;

	(void)index;
	if (shmc_open(r->name, NULL, 0, &c) != 0 || shmc_read_begin(c) != 0) {
		tu_child_log("open/read_begin: %s", shmc_errmsg(NULL));
		return 1;
	}
	struct shmc__tctx *t = uu_tctx(c);
	r->ctr = t->slot->rcu_ctr;
	r->proc_idx = c->proc_idx;
	r->slot_idx = t->slot_idx;
	atomic_store(&r->inside, 1);
	uu_child_sleep_forever();
}

static struct child_reader *child_reader_start(void **state, pid_t *pid)
{
	struct child_reader *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	snprintf(r->name, sizeof r->name, "%s", fixture_of(state)->name);
	shmc__rcu_retire_stamp(cache_of(state)); /* a counter value of its own */
	assert_int_equal(tu_fork_start(1, reader_child, r, CHILD_WATCHDOG_S, pid), 1);
	if (!uu_wait_flag(&r->inside, 1, SIGNAL_TIMEOUT_MS, *pid, NULL)) {
		uu_kill_child(*pid);
		fail_msg("the child never entered its read section");
	}
	return r;
}

static void test_rcu_live_child_reader_holds_grace_period(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_reader *r = child_reader_start(state, &pid);

	uint64_t oldest = shmc__rcu_oldest_reader(c);
	int killed = uu_kill_child(pid);
	assert_true(r->ctr != 0);
	assert_true(oldest == r->ctr);
	assert_int_equal(killed, 0);
	tu_shared_free(r, sizeof *r);
}

static void test_rcu_dead_child_reader_does_not_hold_grace_period(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_reader *r = child_reader_start(state, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	assert_true(c->threads[r->slot_idx].rcu_ctr == r->ctr); /* left behind */
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
	tu_shared_free(r, sizeof *r);
}

static void test_rcu_dead_child_reader_slot_reaped(void **state)
{
	shmc_cache *c = cache_of(state);
	pid_t pid;
	struct child_reader *r = child_reader_start(state, &pid);

	assert_int_equal(uu_kill_child(pid), 0);
	shmc__rcu_oldest_reader(c);
	assert_true(c->threads[r->slot_idx].rcu_ctr == 0);
	assert_int_equal(c->threads[r->slot_idx].owner_proc, 0);
	assert_int_equal(c->procs[r->proc_idx].state, SHMC__PROC_FREE);
	tu_shared_free(r, sizeof *r);
}

/* A dead reader with a newer counter than a live one changes nothing. */
static void test_rcu_dead_child_behind_live_reader_oldest_is_live(void **state)
{
	shmc_cache *c = cache_of(state);
	struct holder h = {0};
	pid_t pid;

	holder_start(&h, c);
	struct child_reader *r = child_reader_start(state, &pid);
	assert_int_equal(uu_kill_child(pid), 0);
	assert_true(r->ctr > h.ctr);
	assert_true(shmc__rcu_oldest_reader(c) == h.ctr);
	holder_stop(&h);
	assert_true(shmc__rcu_oldest_reader(c) == c->hdr->gp_ctr); /* no reader: the epoch */
	tu_shared_free(r, sizeof *r);
}

/* ------------------------------------------------ membarrier or fences */

/* Fork; in the child run prepare() (may be NULL), then exec this program
 * as "--child <mode> <segment>". Returns the child's exit code, or -1 if it
 * died of a signal. */
static int run_exec_child(const char *mode, const char *segment, void (*prepare)(void))
{
	const char *self = uu_self_path();
	pid_t pid;
	int status;

	assert_non_null(self);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_child_init(CHILD_WATCHDOG_S); /* the alarm survives exec */
		if (prepare != NULL)
			prepare();
		execl(self, self, "--child", mode, segment, (char *)NULL);
		_exit(CHILD_SETUP);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail_msg("waitpid: %s", strerror(errno));
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "exec child (%s) died of signal %d\n", mode, WTERMSIG(status));
	return -1;
}

static void env_no_membarrier(void)
{
	setenv("SHMC_NO_MEMBARRIER", "1", 1);
}

static void env_default(void)
{
	unsetenv("SHMC_NO_MEMBARRIER");
}

/* A fresh process with SHMC_NO_MEMBARRIER=1 before its first shmc_open
 * makes its readers fence. */
static void test_rcu_no_membarrier_env_readers_fence(void **state)
{
	int rc = run_exec_child("fences", fixture_of(state)->name, env_no_membarrier);

	assert_int_equal(rc, CHILD_YES);
}

/* Without the variable, on a kernel that has GLOBAL_EXPEDITED, readers of
 * a fresh process do not fence. */
static void test_rcu_membarrier_available_readers_do_not_fence(void **state)
{
	int cmds = membarrier_cmd(MEMBARRIER_CMD_QUERY);

	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
	    !(cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
		skip();
	int rc = run_exec_child("fences", fixture_of(state)->name, env_default);
	assert_int_equal(rc, CHILD_NO);
}

/* fork() without exec: the registration state is the parent's. The child
 * setting SHMC_NO_MEMBARRIER then changes nothing, and must not need to:
 * either its readers fence or the kernel still has its registration. */
static int fork_env_child(unsigned index, void *arg)
{
	const char *name = arg;
	shmc_cache *c = NULL;

	(void)index;
	setenv("SHMC_NO_MEMBARRIER", "1", 1);
	if (shmc_open(name, NULL, 0, &c) != 0)
		return CHILD_SETUP;
	int regs = membarrier_cmd(MEMBARRIER_CMD_GET_REGISTRATIONS);
	bool fences = c->fence_readers;
	shmc_close(c);
	if (fences)
		return CHILD_YES;
	if (regs < 0)
		return CHILD_SKIP;
	return (regs & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) ? CHILD_YES : CHILD_NO;
}

static void test_rcu_fork_child_readers_fence_or_stay_registered(void **state)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_child_init(CHILD_WATCHDOG_S);
		int rc = fork_env_child(0, fixture_of(state)->name);
		fflush(NULL);
		_exit(rc);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail_msg("waitpid: %s", strerror(errno));
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == CHILD_SKIP)
		skip();
	assert_int_equal(WEXITSTATUS(status), CHILD_YES);
}

/* Where membarrier does not exist at all (old kernels, seccomp profiles
 * that refuse it), DESIGN.md §4 says readers use a full fence; writers
 * must still be able to reuse memory. A fresh process behind a seccomp
 * filter that fails membarrier with ENOSYS overwrites a working set four
 * times the data area: every set must succeed. */
static void seccomp_deny_membarrier(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};

	env_default();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		_exit(CHILD_SKIP);
}

static void test_rcu_without_membarrier_memory_still_reused(void **state)
{
	/* Every attached process must fence for this to be safe: this one's
	 * readers rely on membarrier, so it detaches while the child runs. */
	struct uu_fixture *f = fixture_of(state);
	shmc_close(f->c);
	f->c = NULL;
	int rc = run_exec_child("overwrite", f->name, seccomp_deny_membarrier);

	if (rc == CHILD_SKIP)
		skip();
	assert_int_equal(rc, CHILD_YES);
}

/* ----------------------------------------------------------- child modes */

/* "fences": CHILD_YES if a fresh handle's readers fence. */
static int child_fences(const char *name)
{
	shmc_cache *c = NULL;

	if (shmc_open(name, NULL, 0, &c) != 0) {
		tu_child_log("shmc_open: %s", shmc_errmsg(NULL));
		return CHILD_SETUP;
	}
	bool fences = c->fence_readers;
	shmc_close(c);
	return fences ? CHILD_YES : CHILD_NO;
}

/* "overwrite": CHILD_YES if 4 x data_bytes of overwrites all succeed. */
static int child_overwrite(const char *name)
{
	shmc_cache *c = NULL;
	char key[32], val[1000];

	if (membarrier_cmd(MEMBARRIER_CMD_QUERY) != -1 || errno != ENOSYS)
		return CHILD_SKIP; /* the filter did not take */
	if (shmc_open(name, NULL, 0, &c) != 0) {
		tu_child_log("shmc_open: %s", shmc_errmsg(NULL));
		return CHILD_SETUP;
	}
	if (!c->fence_readers) {
		tu_child_log("membarrier refused, yet readers do not fence");
		return CHILD_NO;
	}
	memset(val, 'o', sizeof val);
	uint64_t total = 4 * c->geo.data_bytes, written = 0;
	for (unsigned i = 0; written < total; i++) {
		size_t klen = (size_t)snprintf(key, sizeof key, "ow-%u", i % 300);
		int rc = shmc_set(c, key, klen, val, sizeof val, 0, 0);

		if (rc != 0) {
			tu_child_log("set %u (%llu of %llu bytes written): %s (%s)", i,
				     (unsigned long long)written, (unsigned long long)total,
				     shmc_errname(rc), shmc_errmsg(c));
			shmc_close(c);
			return CHILD_NO;
		}
		written += SHMC__ITEM_HDR + klen + sizeof val;
	}
	shmc_close(c);
	return CHILD_YES;
}

static int child_main(const char *mode, const char *name)
{
	if (strcmp(mode, "fences") == 0)
		return child_fences(name);
	if (strcmp(mode, "overwrite") == 0)
		return child_overwrite(name);
	return CHILD_SETUP;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		TEST(test_rcu_no_readers_oldest_is_current_epoch),
		TEST(test_rcu_inside_section_oldest_is_reader_ctr),
		TEST(test_rcu_section_end_clears_reader_word),
		TEST(test_rcu_nested_sections_hold_until_outermost_end),
		TEST(test_rcu_inner_section_keeps_outer_ctr),
		TEST(test_rcu_read_end_without_begin_einval),
		TEST(test_rcu_retire_stamp_advances_counter),
		TEST(test_rcu_oldest_is_minimum_over_readers),
		TEST(test_rcu_live_child_reader_holds_grace_period),
		TEST(test_rcu_dead_child_reader_does_not_hold_grace_period),
		TEST(test_rcu_dead_child_reader_slot_reaped),
		TEST(test_rcu_dead_child_behind_live_reader_oldest_is_live),
		TEST(test_rcu_no_membarrier_env_readers_fence),
		TEST(test_rcu_membarrier_available_readers_do_not_fence),
		TEST(test_rcu_fork_child_readers_fence_or_stay_registered),
		TEST(test_rcu_without_membarrier_memory_still_reused),
	};

	if (argc == 4 && strcmp(argv[1], "--child") == 0)
		return child_main(argv[2], argv[3]);
	uu_record_self(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
