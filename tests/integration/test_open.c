/*
 * test_open.c - attaching to segments across processes: the first-open race
 * (exactly one initialiser, nobody sees a half-built segment), attaching to
 * an existing segment with different options, the fork() rule for inherited
 * handles, and unlink semantics.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define SEGMENT_BYTES (4u << 20)
#define RACE_PROCS 8u
#define RACE_ROUNDS 20u
#define CHILD_WATCHDOG_S 60u

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
};

static int setup_name_only(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	free(f);
	return 0;
}

#define TEST(fn)                                                                \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_name_only, teardown, \
	                                         (void *)#fn)

/* Wait up to timeout_ms for one byte on fd. Returns the byte or -1. */
static int read_byte(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	unsigned char b;
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n != 1 || read(fd, &b, 1) != 1)
		return -1;
	return b;
}

static int write_byte(int fd, unsigned char b)
{
	return write(fd, &b, 1) == 1 ? 0 : -1;
}

/* ------------------------------------------------------ first-open race */

struct race {
	char name[TU_NAME_MAX];
	shmc_opts *opts;
	_Atomic unsigned start;     /* barrier before shmc_open */
	_Atomic unsigned after_nx;  /* barrier after the NX set */
	int open_rc[RACE_PROCS];
	int nx_rc[RACE_PROCS];
	int own_rc[RACE_PROCS];
};

static int race_child(unsigned i, void *arg)
{
	struct race *r = arg;
	shmc_cache *c = NULL;
	unsigned char me = (unsigned char)('A' + i);
	char key[32];
	int n;

	tu_barrier_wait(&r->start, RACE_PROCS);
	r->open_rc[i] = shmc_open(r->name, r->opts, SHMC_CREATE, &c);
	if (r->open_rc[i] == 0)
		r->nx_rc[i] = shmc_set(c, "init-check", 10, &me, 1, 0, SHMC_NX);
	/* every child arrives, so a failed one cannot hang the others */
	tu_barrier_wait(&r->after_nx, RACE_PROCS);
	if (r->open_rc[i] != 0) {
		tu_child_log("shmc_open: %s: %s", shmc_errname(r->open_rc[i]),
		             shmc_errmsg(NULL));
		return 1;
	}
	n = snprintf(key, sizeof key, "child-%u", i);
	r->own_rc[i] = shmc_set(c, key, (size_t)n, &me, 1, 0, 0);
	shmc_close(c);
	return r->own_rc[i] == 0 ? 0 : 1;
}

static void test_open_concurrent_create_initialises_once(void **state)
{
	struct fixture *f = *state;
	struct race *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	for (unsigned round = 0; round < RACE_ROUNDS; round++) {
		unsigned failed, nx_won = 0, nx_eexist = 0, winner = RACE_PROCS;
		shmc_cache *c = NULL;
		char buf[8];
		size_t vlen = 0;

		memset(r, 0, sizeof *r);
		tu_segname_n(r->name, sizeof r->name, "open-race", round);
		(void)shmc_unlink(r->name);
		snprintf(f->name, sizeof f->name, "%s", r->name); /* teardown */
		assert_int_equal(shmc_opts_create(&r->opts), 0);
		assert_int_equal(shmc_opts_set_size(r->opts, SEGMENT_BYTES), 0);

		failed = tu_fork_run(RACE_PROCS, race_child, r, CHILD_WATCHDOG_S);
		shmc_opts_destroy(r->opts);
		r->opts = NULL;

		for (unsigned i = 0; i < RACE_PROCS; i++) {
			if (r->open_rc[i] != 0)
				fprintf(stderr, "round %u child %u: shmc_open = %s\n",
				        round, i, shmc_errname(r->open_rc[i]));
			if (r->nx_rc[i] == 0) {
				nx_won++;
				winner = i;
			} else if (r->nx_rc[i] == SHMC_EEXIST) {
				nx_eexist++;
			}
		}
		assert_int_equal(failed, 0);
		assert_int_equal(nx_won, 1);
		assert_int_equal(nx_eexist, RACE_PROCS - 1);

		/* the winner's NX value survived every later attach */
		assert_int_equal(shmc_open(r->name, NULL, 0, &c), 0);
		f->c = c;
		assert_int_equal(shmc_get(c, "init-check", 10, buf, sizeof buf, &vlen), 0);
		assert_int_equal(vlen, 1);
		assert_int_equal(buf[0], 'A' + (int)winner);
		for (unsigned i = 0; i < RACE_PROCS; i++) {
			char key[32];
			int n = snprintf(key, sizeof key, "child-%u", i);

			assert_int_equal(shmc_get(c, key, (size_t)n, buf, sizeof buf,
			                          &vlen), 0);
			assert_int_equal(vlen, 1);
			assert_int_equal(buf[0], 'A' + (int)i);
		}
		shmc_close(c);
		f->c = NULL;
		assert_int_equal(shmc_unlink(r->name), 0);
	}
	tu_shared_free(r, sizeof *r);
}

/* -------------------------------------- attaching with different options */

struct attach_report {
	char name[TU_NAME_MAX];
	int open_rc;
	int stats_rc;
	struct shmc_stats st;
	int long_key_rc;   /* set of a 40-byte key (creator's max_key is 32) */
	int get_rc;        /* get of the creator's key */
	char got[8];
	size_t got_len;
};

static int attach_child(unsigned i, void *arg)
{
	struct attach_report *a = arg;
	shmc_opts *o = NULL;
	shmc_cache *c = NULL;
	char long_key[40];

	(void)i;
	if (shmc_opts_create(&o) != 0)
		return 1;
	shmc_opts_set_size(o, 4 * SEGMENT_BYTES);
	shmc_opts_set_chunk_size(o, 256u << 10);
	shmc_opts_set_max_key(o, 250);
	a->open_rc = shmc_open(a->name, o, SHMC_CREATE, &c);
	shmc_opts_destroy(o);
	if (a->open_rc != 0)
		return 1;
	a->stats_rc = shmc_stats(c, &a->st);
	memset(long_key, 'L', sizeof long_key);
	a->long_key_rc = shmc_set(c, long_key, sizeof long_key, "v", 1, 0, 0);
	a->get_rc = shmc_get(c, "k", 1, a->got, sizeof a->got, &a->got_len);
	shmc_close(c);
	return 0;
}

/* Create f->name with (SEGMENT_BYTES, 64 KiB chunks, max_key 32) in this
 * process, then attach from a child with other options. */
static void attach_with_other_options(struct fixture *f, struct attach_report *a,
                                      struct shmc_stats *orig)
{
	shmc_opts *o = NULL;
	pid_t pid;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, SEGMENT_BYTES), 0);
	assert_int_equal(shmc_opts_set_chunk_size(o, 64u << 10), 0);
	assert_int_equal(shmc_opts_set_max_key(o, 32), 0);
	assert_int_equal(shmc_open(f->name, o, SHMC_CREATE | SHMC_EXCL, &f->c), 0);
	shmc_opts_destroy(o);
	assert_int_equal(shmc_set(f->c, "k", 1, "orig", 4, 0, 0), 0);
	assert_int_equal(shmc_stats(f->c, orig), 0);

	snprintf(a->name, sizeof a->name, "%s", f->name);
	tu_fork_start(1, attach_child, a, CHILD_WATCHDOG_S, &pid);
	assert_int_equal(tu_wait_child(pid, "attach child"), 0);
	assert_int_equal(a->open_rc, 0);
	assert_int_equal(a->stats_rc, 0);
}

static void test_open_existing_segment_keeps_its_size(void **state)
{
	struct attach_report *a = tu_shared_alloc(sizeof *a);
	struct shmc_stats orig;

	assert_non_null(a);
	attach_with_other_options(*state, a, &orig);
	assert_int_equal(a->st.segment_bytes, orig.segment_bytes);
	assert_int_equal(a->st.data_bytes, orig.data_bytes);
	tu_shared_free(a, sizeof *a);
}

static void test_open_existing_segment_keeps_its_chunk_size(void **state)
{
	struct attach_report *a = tu_shared_alloc(sizeof *a);
	struct shmc_stats orig;

	assert_non_null(a);
	attach_with_other_options(*state, a, &orig);
	assert_int_equal(a->st.chunks_total, orig.chunks_total);
	tu_shared_free(a, sizeof *a);
}

static void test_open_existing_segment_keeps_its_max_key(void **state)
{
	struct attach_report *a = tu_shared_alloc(sizeof *a);
	struct shmc_stats orig;

	assert_non_null(a);
	attach_with_other_options(*state, a, &orig);
	assert_string_equal(shmc_errname(a->long_key_rc), "SHMC_ETOOBIG");
	tu_shared_free(a, sizeof *a);
}

static void test_open_existing_segment_keeps_its_data(void **state)
{
	struct attach_report *a = tu_shared_alloc(sizeof *a);
	struct shmc_stats orig;

	assert_non_null(a);
	attach_with_other_options(*state, a, &orig);
	assert_int_equal(a->get_rc, 0);
	assert_int_equal(a->got_len, 4);
	assert_memory_equal(a->got, "orig", 4);
	tu_shared_free(a, sizeof *a);
}

/* ------------------------------------------------------------ fork rule */

/* What a fork scenario observed; filled in shared memory. */
struct fork_report {
	/* child */
	int child_get_rc;
	char child_got[16];
	size_t child_got_len;
	int child_set_rc;
	/* parent, while the child lives (child is parked on a pipe) */
	int parent_saw_ready;
	int parent_stats_rc;
	uint64_t procs_while_child;
	int parent_get_child_key_rc;
	int parent_set_rc;
	/* parent, after the child has exited */
	int child_ok;
	int after_get_rc;
	int after_set_rc;
	int after_get_child_key_rc;
	uint64_t procs_after;
};

/* Parent opens f->name, sets "parent-key", forks. The child uses the
 * inherited handle (get + set), reports ready through a pipe and waits for
 * the parent's go, then closes the handle if close_in_child and exits. */
static void run_fork_scenario(struct fixture *f, struct fork_report *r,
                              int close_in_child)
{
	int ready[2], go[2];
	char buf[16];
	size_t vlen;
	pid_t pid;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c), 0);
	assert_int_equal(shmc_set(f->c, "parent-key", 10, "from-parent", 11, 0, 0), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_child_init(CHILD_WATCHDOG_S);
		close(ready[0]);
		close(go[1]);
		r->child_get_rc = shmc_get(f->c, "parent-key", 10, r->child_got,
		                           sizeof r->child_got, &r->child_got_len);
		r->child_set_rc = shmc_set(f->c, "child-key", 9, "from-child", 10, 0, 0);
		write_byte(ready[1], 'r');
		(void)read_byte(go[0], CHILD_WATCHDOG_S * 1000);
		if (close_in_child)
			shmc_close(f->c);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);

	r->parent_saw_ready = read_byte(ready[0], 30000) == 'r';
	if (r->parent_saw_ready) {
		struct shmc_stats st;

		r->parent_stats_rc = shmc_stats(f->c, &st);
		r->procs_while_child = st.procs_attached;
		r->parent_get_child_key_rc =
			shmc_get(f->c, "child-key", 9, buf, sizeof buf, &vlen);
		r->parent_set_rc = shmc_set(f->c, "parent-2", 8, "p2", 2, 0, 0);
	}
	write_byte(go[1], 'g');
	r->child_ok = tu_wait_child(pid, "fork-rule child") == 0;
	close(ready[0]);
	close(go[1]);

	r->after_get_rc = shmc_get(f->c, "parent-key", 10, buf, sizeof buf, &vlen);
	r->after_set_rc = shmc_set(f->c, "parent-3", 8, "p3", 2, 0, 0);
	r->after_get_child_key_rc = shmc_get(f->c, "child-key", 9, buf, sizeof buf, &vlen);
	assert_true(r->parent_saw_ready);
	assert_true(r->child_ok);
}

static void test_open_fork_child_reads_inherited_handle(void **state)
{
	struct fork_report *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	run_fork_scenario(*state, r, 1);
	assert_string_equal(shmc_errname(r->child_get_rc), "OK");
	assert_int_equal(r->child_got_len, 11);
	assert_memory_equal(r->child_got, "from-parent", 11);
	tu_shared_free(r, sizeof *r);
}

static void test_open_fork_child_writes_visible_to_parent(void **state)
{
	struct fork_report *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	run_fork_scenario(*state, r, 1);
	assert_string_equal(shmc_errname(r->child_set_rc), "OK");
	assert_string_equal(shmc_errname(r->parent_get_child_key_rc), "OK");
	tu_shared_free(r, sizeof *r);
}

static void test_open_fork_counts_both_processes_while_child_lives(void **state)
{
	struct fork_report *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	run_fork_scenario(*state, r, 1);
	assert_int_equal(r->parent_stats_rc, 0);
	assert_int_equal(r->procs_while_child, 2);
	tu_shared_free(r, sizeof *r);
}

static void test_open_fork_parent_keeps_working(void **state)
{
	struct fork_report *r = tu_shared_alloc(sizeof *r);

	assert_non_null(r);
	run_fork_scenario(*state, r, 1);
	assert_string_equal(shmc_errname(r->parent_set_rc), "OK");
	assert_string_equal(shmc_errname(r->after_get_rc), "OK");
	assert_string_equal(shmc_errname(r->after_set_rc), "OK");
	assert_string_equal(shmc_errname(r->after_get_child_key_rc), "OK");
	tu_shared_free(r, sizeof *r);
}

static void test_open_fork_child_close_releases_only_its_slot(void **state)
{
	struct fixture *f = *state;
	struct fork_report *r = tu_shared_alloc(sizeof *r);
	struct shmc_stats st;

	assert_non_null(r);
	run_fork_scenario(f, r, 1);
	assert_int_equal(shmc_stats(f->c, &st), 0);
	assert_int_equal(st.procs_attached, 1);
	tu_shared_free(r, sizeof *r);
}

static void test_open_fork_child_exit_without_close_is_reaped(void **state)
{
	struct fixture *f = *state;
	struct fork_report *r = tu_shared_alloc(sizeof *r);
	struct shmc_stats st = {0};
	uint64_t deadline_ms;

	assert_non_null(r);
	run_fork_scenario(f, r, 0);
	/* the reaper (sweeper role, held by this process) notices the dead
	 * child through its liveness lock; give it a bounded time */
	deadline_ms = tu_now_ms() + 10000;
	do {
		assert_int_equal(shmc_stats(f->c, &st), 0);
		if (st.procs_attached == 1)
			break;
		tu_sleep_ms(20);
	} while (tu_now_ms() < deadline_ms);
	assert_int_equal(st.procs_attached, 1);
	tu_shared_free(r, sizeof *r);
}

/* ------------------------------------------------------ unlink, reopen */

static void test_open_after_unlink_without_create_enoent(void **state)
{
	struct fixture *f = *state;
	shmc_cache *again = NULL;
	int rc;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c), 0);
	assert_int_equal(shmc_unlink(f->name), 0);
	rc = shmc_open(f->name, NULL, 0, &again);
	if (rc == 0)
		shmc_close(again);
	assert_string_equal(shmc_errname(rc), "SHMC_ENOENT");
}

static void test_open_unlink_keeps_attached_handle_working(void **state)
{
	struct fixture *f = *state;
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c), 0);
	assert_int_equal(shmc_set(f->c, "k", 1, "before", 6, 0, 0), 0);
	assert_int_equal(shmc_unlink(f->name), 0);
	assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 6);
	assert_memory_equal(buf, "before", 6);
	assert_int_equal(shmc_set(f->c, "k2", 2, "after", 5, 0, 0), 0);
	assert_int_equal(shmc_get(f->c, "k2", 2, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 5);
	assert_memory_equal(buf, "after", 5);
}

static void test_open_unlink_missing_enoent(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(shmc_unlink(f->name), SHMC_ENOENT);
}

static void test_open_reopen_after_close_keeps_data(void **state)
{
	struct fixture *f = *state;
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, 0, -1, &f->c), 0);
	assert_int_equal(shmc_set(f->c, "warm", 4, "still-here", 10, 0, 0), 0);
	assert_int_equal(shmc_close(f->c), 0);
	f->c = NULL;
	assert_int_equal(shmc_open(f->name, NULL, 0, &f->c), 0);
	assert_int_equal(shmc_get(f->c, "warm", 4, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 10);
	assert_memory_equal(buf, "still-here", 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_open_concurrent_create_initialises_once),
		TEST(test_open_existing_segment_keeps_its_size),
		TEST(test_open_existing_segment_keeps_its_chunk_size),
		TEST(test_open_existing_segment_keeps_its_max_key),
		TEST(test_open_existing_segment_keeps_its_data),
		TEST(test_open_fork_child_reads_inherited_handle),
		TEST(test_open_fork_child_writes_visible_to_parent),
		TEST(test_open_fork_counts_both_processes_while_child_lives),
		TEST(test_open_fork_parent_keeps_working),
		TEST(test_open_fork_child_close_releases_only_its_slot),
		TEST(test_open_fork_child_exit_without_close_is_reaped),
		TEST(test_open_after_unlink_without_create_enoent),
		TEST(test_open_unlink_keeps_attached_handle_working),
		TEST(test_open_unlink_missing_enoent),
		TEST(test_open_reopen_after_close_keeps_data),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
