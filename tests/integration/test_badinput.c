/*
 * test_badinput.c - what the library does with bad arguments, bad names,
 * missing or existing segments, foreign and damaged segments, and attachers
 * without permission. Damage is done through the segment's file in /dev/shm
 * (header: bytes 0..7 magic, 8..15 layout signature); every open of a damaged
 * segment runs in a forked child so that a crash is reported as a failure of
 * the test instead of killing the runner.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "testutil.h"

#define SEGMENT_BYTES (4u << 20)
#define SMALL_CHUNK (64u << 10)
#define MAX_KEY 32u
#define NOBODY_ID 65534
#define GARBAGE_SEEDS 200u

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	shmc_opts *o = NULL;
	int rc;

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	if (shmc_opts_create(&o) != 0)
		return -1;
	shmc_opts_set_size(o, SEGMENT_BYTES);
	shmc_opts_set_chunk_size(o, SMALL_CHUNK);
	shmc_opts_set_max_key(o, MAX_KEY);
	rc = shmc_open(f->name, o, SHMC_CREATE | SHMC_EXCL, &f->c);
	shmc_opts_destroy(o);
	if (rc != 0) {
		fprintf(stderr, "setup: shmc_open(%s) = %s: %s\n", f->name,
		        shmc_errname(rc), shmc_errmsg(NULL));
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

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
	char path[TU_NAME_MAX + 32];

	shmc_close(f->c);
	if (shmc_unlink(f->name) != 0) {
		/* a damaged or hand-made file may not unlink through the API */
		tu_shm_path(path, sizeof path, f->name);
		(void)unlink(path);
	}
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)
#define TEST_NAMED(fn)                                                          \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_name_only, teardown, \
	                                         (void *)#fn)

static shmc_cache *cache_of(void **state)
{
	return ((struct fixture *)*state)->c;
}

/* ------------------------------------------------------ keys and values */

static void test_badinput_empty_key_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[16];
	size_t vlen = 0;
	const void *ref = NULL;

	assert_int_equal(shmc_get(c, "k", 0, buf, sizeof buf, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_set(c, "k", 0, "v", 1, 0, 0), SHMC_EINVAL);
	assert_int_equal(shmc_del(c, "k", 0), SHMC_EINVAL);
	assert_int_equal(shmc_incr(c, "k", 0, 1, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, "k", 0, &ref, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_read_end(c), 0);
}

static void test_badinput_key_over_max_etoobig(void **state)
{
	shmc_cache *c = cache_of(state);
	char key[MAX_KEY + 1], buf[16];
	size_t vlen = 0;

	memset(key, 'k', sizeof key);
	assert_int_equal(shmc_set(c, key, sizeof key, "v", 1, 0, 0), SHMC_ETOOBIG);
	assert_int_equal(shmc_get(c, key, sizeof key, buf, sizeof buf, &vlen),
	                 SHMC_ETOOBIG);
	assert_int_equal(shmc_del(c, key, sizeof key), SHMC_ETOOBIG);
	assert_int_equal(shmc_incr(c, key, sizeof key, 1, NULL), SHMC_ETOOBIG);
}

static void test_badinput_key_of_exactly_max_works(void **state)
{
	shmc_cache *c = cache_of(state);
	char key[MAX_KEY], buf[16];
	size_t vlen = 0;

	memset(key, 'k', sizeof key);
	key[MAX_KEY - 1] = 'z';
	assert_int_equal(shmc_set(c, key, sizeof key, "val", 3, 0, 0), 0);
	assert_int_equal(shmc_get(c, key, sizeof key, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 3);
	assert_memory_equal(buf, "val", 3);
	assert_int_equal(shmc_del(c, key, sizeof key), 0);
}

static void test_badinput_value_over_chunk_etoobig(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t big = 70u << 10;
	char *val = calloc(1, big);
	char buf[16];
	size_t vlen = 0;

	assert_non_null(val);
	assert_int_equal(shmc_set(c, "big", 3, val, big, 0, 0), SHMC_ETOOBIG);
	assert_int_equal(shmc_get(c, "big", 3, buf, sizeof buf, &vlen),
	                 SHMC_ENOTFOUND);
	free(val);
}

static void test_badinput_value_over_chunk_keeps_previous_value(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t big = 70u << 10;
	char *val = calloc(1, big);
	char buf[16];
	size_t vlen = 0;

	assert_non_null(val);
	assert_int_equal(shmc_set(c, "k", 1, "old", 3, 0, 0), 0);
	assert_int_equal(shmc_set(c, "k", 1, val, big, 0, 0), SHMC_ETOOBIG);
	assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 3);
	assert_memory_equal(buf, "old", 3);
	free(val);
}

static void test_badinput_value_fitting_chunk_stores(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t len = 60000; /* 64 KiB chunk minus ample room for headers */
	unsigned char *val = malloc(len), *buf = malloc(len);
	size_t vlen = 0;

	assert_non_null(val);
	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		val[i] = (unsigned char)(i * 31u + 7u);
	assert_int_equal(shmc_set(c, "fits", 4, val, len, 0, 0), 0);
	assert_int_equal(shmc_get(c, "fits", 4, buf, len, &vlen), 0);
	assert_int_equal(vlen, len);
	assert_memory_equal(buf, val, len);
	free(val);
	free(buf);
}

/* ------------------------------------------------------ NULL arguments */

static void test_badinput_null_handle_einval(void **state)
{
	char buf[16];
	size_t vlen = 0;
	const void *ref = NULL;
	struct shmc_stats st;

	(void)state;
	assert_int_equal(shmc_get(NULL, "k", 1, buf, sizeof buf, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_set(NULL, "k", 1, "v", 1, 0, 0), SHMC_EINVAL);
	assert_int_equal(shmc_del(NULL, "k", 1), SHMC_EINVAL);
	assert_int_equal(shmc_incr(NULL, "k", 1, 1, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_read_begin(NULL), SHMC_EINVAL);
	assert_int_equal(shmc_get_ref(NULL, "k", 1, &ref, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_read_end(NULL), SHMC_EINVAL);
	assert_int_equal(shmc_stats(NULL, &st), SHMC_EINVAL);
}

static void test_badinput_null_key_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[16];
	size_t vlen = 0;

	assert_int_equal(shmc_get(c, NULL, 1, buf, sizeof buf, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_set(c, NULL, 1, "v", 1, 0, 0), SHMC_EINVAL);
	assert_int_equal(shmc_del(c, NULL, 1), SHMC_EINVAL);
	assert_int_equal(shmc_incr(c, NULL, 1, 1, NULL), SHMC_EINVAL);
}

static void test_badinput_get_null_vlen_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	char buf[16];

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, NULL), SHMC_EINVAL);
}

static void test_badinput_get_null_buf_with_cap_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_get(c, "k", 1, NULL, 16, &vlen), SHMC_EINVAL);
}

static void test_badinput_get_ref_null_out_einval(void **state)
{
	shmc_cache *c = cache_of(state);
	const void *ref = NULL;
	size_t vlen = 0;

	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_read_begin(c), 0);
	assert_int_equal(shmc_get_ref(c, "k", 1, NULL, &vlen), SHMC_EINVAL);
	assert_int_equal(shmc_get_ref(c, "k", 1, &ref, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_read_end(c), 0);
}

/* -------------------------------------------------------------- options */

static void test_badinput_opts_out_of_range_einval(void **state)
{
	shmc_opts *o = NULL;

	(void)state;
	assert_int_equal(shmc_opts_create(NULL), SHMC_EINVAL);
	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, SHMC_MIN_SIZE - 1), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_chunk_size(o, 32u << 10), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_chunk_size(o, 100000), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_chunk_size(o, (size_t)128 << 20), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_max_key(o, 0), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_max_key(o, (size_t)SHMC_KEY_MAX + 1),
	                 SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_mode(o, 01000), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_uplink(o, "ftp://example"), SHMC_EINVAL);
	assert_int_equal(shmc_opts_set_default_ttl(NULL, 5), SHMC_EINVAL);
	shmc_opts_destroy(o);
}

/* ------------------------------------------------------ names and flags */

static void test_badinput_bad_segment_name_einval(void **state)
{
	char long_name[301];
	shmc_cache *c = NULL;

	(void)state;
	memset(long_name, 'n', 300);
	long_name[300] = '\0';
	assert_int_equal(shmc_open("", NULL, SHMC_CREATE, &c), SHMC_EINVAL);
	assert_int_equal(shmc_open("a/b", NULL, SHMC_CREATE, &c), SHMC_EINVAL);
	assert_int_equal(shmc_open(long_name, NULL, SHMC_CREATE, &c), SHMC_EINVAL);
	assert_int_equal(shmc_open("sp ace", NULL, SHMC_CREATE, &c), SHMC_EINVAL);
	assert_int_equal(shmc_open(NULL, NULL, SHMC_CREATE, &c), SHMC_EINVAL);
}

static void test_badinput_unlink_bad_name_einval(void **state)
{
	char long_name[301];

	(void)state;
	memset(long_name, 'n', 300);
	long_name[300] = '\0';
	assert_int_equal(shmc_unlink(""), SHMC_EINVAL);
	assert_int_equal(shmc_unlink("a/b"), SHMC_EINVAL);
	assert_int_equal(shmc_unlink(long_name), SHMC_EINVAL);
}

static void test_badinput_open_null_out_einval(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(shmc_open(f->name, NULL, SHMC_CREATE, NULL), SHMC_EINVAL);
}

static void test_badinput_open_unknown_flag_einval(void **state)
{
	struct fixture *f = *state;
	shmc_cache *c = NULL;
	int rc = shmc_open(f->name, NULL, SHMC_CREATE | 0x100, &c);

	if (rc == 0)
		shmc_close(c);
	assert_string_equal(shmc_errname(rc), "SHMC_EINVAL");
}

static void test_badinput_open_missing_without_create_enoent(void **state)
{
	struct fixture *f = *state;
	shmc_cache *c = NULL;
	int rc = shmc_open(f->name, NULL, 0, &c);

	if (rc == 0)
		shmc_close(c);
	assert_string_equal(shmc_errname(rc), "SHMC_ENOENT");
}

static void test_badinput_open_create_excl_existing_eexist(void **state)
{
	struct fixture *f = *state;
	shmc_cache *second = NULL;
	int rc;

	/* the fixture's handle created it; close it so that only the
	 * segment, not a second handle in this process, is in play */
	assert_int_equal(shmc_close(f->c), 0);
	f->c = NULL;
	rc = shmc_open(f->name, NULL, SHMC_CREATE | SHMC_EXCL, &second);
	if (rc == 0)
		shmc_close(second);
	assert_string_equal(shmc_errname(rc), "SHMC_EEXIST");
}

/* -------------------------------------------------- damaged segments */

/* Result of an open run in a forked child. */
struct child_open {
	const char *name;
	int flags;
	int rc; /* written by the child */
};

static int child_open_fn(unsigned index, void *arg)
{
	struct child_open *co = arg;
	shmc_cache *c = NULL;

	(void)index;
	co->rc = shmc_open(co->name, NULL, co->flags, &c);
	if (co->rc == 0)
		shmc_close(c);
	return 0;
}

/* Run shmc_open(name, NULL, flags) in a child with a watchdog. Returns 0 if
 * the child exited normally (rc in *rc), -1 if it crashed or hung. */
static int open_in_child(const char *name, int flags, unsigned watchdog_s,
                         int *rc)
{
	struct child_open *co = tu_shared_alloc(sizeof *co);
	pid_t pid;
	int ok;

	if (co == NULL)
		return -1;
	co->name = name;
	co->flags = flags;
	co->rc = 1; /* not a possible result */
	tu_fork_start(1, child_open_fn, co, watchdog_s, &pid);
	ok = tu_wait_child(pid, "shmc_open child");
	*rc = co->rc;
	tu_shared_free(co, sizeof *co);
	return ok;
}

/* Create name as a valid segment with no handle left open. */
static void make_segment(const char *name)
{
	shmc_cache *c = NULL;

	assert_int_equal(tu_open_fresh(name, SEGMENT_BYTES, SMALL_CHUNK, 0, &c), 0);
	assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), 0);
	assert_int_equal(shmc_close(c), 0);
}

static int open_segment_file(const char *name)
{
	char path[TU_NAME_MAX + 32];

	tu_shm_path(path, sizeof path, name);
	return open(path, O_RDWR);
}

/* Flip every bit of the 8 header bytes at offset. */
static void flip_header_word(const char *name, off_t offset)
{
	unsigned char word[8];
	int fd = open_segment_file(name);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, word, sizeof word, offset), sizeof word);
	for (size_t i = 0; i < sizeof word; i++)
		word[i] = (unsigned char)~word[i];
	assert_int_equal(pwrite(fd, word, sizeof word, offset), sizeof word);
	close(fd);
}

static void test_badinput_other_layout_signature_eversion(void **state)
{
	struct fixture *f = *state;
	int rc = 0;

	make_segment(f->name);
	flip_header_word(f->name, 8);
	assert_int_equal(open_in_child(f->name, 0, 20, &rc), 0);
	assert_string_equal(shmc_errname(rc), "SHMC_EVERSION");
}

static void test_badinput_bad_magic_eversion(void **state)
{
	struct fixture *f = *state;
	int rc = 0;

	make_segment(f->name);
	flip_header_word(f->name, 0);
	assert_int_equal(open_in_child(f->name, 0, 20, &rc), 0);
	assert_string_equal(shmc_errname(rc), "SHMC_EVERSION");
}

static void test_badinput_bad_magic_with_create_eversion(void **state)
{
	struct fixture *f = *state;
	int rc = 0;

	/* SHMC_CREATE must not "repair" a foreign segment by reinitialising it */
	make_segment(f->name);
	flip_header_word(f->name, 0);
	assert_int_equal(open_in_child(f->name, SHMC_CREATE, 20, &rc), 0);
	assert_string_equal(shmc_errname(rc), "SHMC_EVERSION");
}

static void test_badinput_truncated_segment_ecorrupt(void **state)
{
	struct fixture *f = *state;
	int fd, rc = 0;

	make_segment(f->name);
	fd = open_segment_file(f->name);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	assert_int_equal(open_in_child(f->name, 0, 20, &rc), 0);
	assert_string_equal(shmc_errname(rc), "SHMC_ECORRUPT");
}

/* Shared between the garbage test's parent and its children. */
struct garbage_run {
	char name[TU_NAME_MAX];
	uint64_t seed;
	int rc; /* written by the child */
};

static int child_garbage_open_fn(unsigned index, void *arg)
{
	struct garbage_run *g = arg;
	shmc_cache *c = NULL;
	char key[16], buf[64];
	size_t vlen;

	(void)index;
	g->rc = shmc_open(g->name, NULL, 0, &c);
	if (g->rc == 0) {
		/* if it was accepted, using it must not crash either */
		for (int i = 0; i < 64; i++) {
			int n = snprintf(key, sizeof key, "k%d", i);

			(void)shmc_get(c, key, (size_t)n, buf, sizeof buf, &vlen);
			(void)shmc_set(c, key, (size_t)n, "v", 1, 0, 0);
		}
		shmc_close(c);
	}
	return 0;
}

/* For GARBAGE_SEEDS seeds: make a valid segment, overwrite header bytes
 * [from, 4096) with random bytes, open it in a child. Every open must fail
 * with SHMC_ECORRUPT or SHMC_EVERSION, and no child may crash or hang. */
static void check_header_garbage(struct fixture *f, size_t from)
{
	struct garbage_run *g = tu_shared_alloc(sizeof *g);
	unsigned char garbage[4096];
	size_t glen = sizeof garbage - from;
	unsigned crashed = 0, accepted = 0, ecorrupt = 0, eversion = 0;

	assert_non_null(g);
	snprintf(g->name, sizeof g->name, "%s", f->name);
	for (unsigned seed = 1; seed <= GARBAGE_SEEDS; seed++) {
		uint64_t rng = seed * 0x9e3779b97f4a7c15ull + from;
		pid_t pid;
		int fd;

		make_segment(g->name);
		for (size_t i = 0; i < glen; i += 8) {
			uint64_t r = tu_rand_next(&rng);

			memcpy(garbage + i, &r, 8);
		}
		fd = open_segment_file(g->name);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, garbage, glen, (off_t)from), (ssize_t)glen);
		close(fd);

		g->seed = seed;
		g->rc = 1;
		tu_fork_start(1, child_garbage_open_fn, g, 20, &pid);
		if (tu_wait_child(pid, "garbage open child") != 0) {
			fprintf(stderr, "seed %u: shmc_open crashed or hung\n", seed);
			crashed++;
			break; /* fail fast: later seeds would only repeat it */
		}
		if (g->rc == SHMC_ECORRUPT) {
			ecorrupt++;
		} else if (g->rc == SHMC_EVERSION) {
			eversion++;
		} else {
			fprintf(stderr, "seed %u: shmc_open returned %s (%s), "
			        "expected SHMC_ECORRUPT or SHMC_EVERSION\n",
			        seed, shmc_errname(g->rc), shmc_strerror(g->rc));
			accepted++;
			break;
		}
	}
	print_message("garbage in header bytes %zu..4095: %u ECORRUPT, %u EVERSION, %u other, "
	              "%u crashed\n", from, ecorrupt, eversion, accepted, crashed);
	tu_shared_free(g, sizeof *g);
	assert_int_equal(crashed, 0);
	assert_int_equal(accepted, 0);
	assert_int_equal(ecorrupt + eversion, GARBAGE_SEEDS);
}

static void test_badinput_header_garbage_rejected_without_crash(void **state)
{
	/* magic, layout signature and the first fields intact */
	check_header_garbage(*state, 64);
}

static void test_badinput_header_fields_garbage_rejected_without_crash(void **state)
{
	/* only magic and layout signature intact */
	check_header_garbage(*state, 16);
}

static void test_badinput_zero_size_file_fails_within_timeout(void **state)
{
	struct fixture *f = *state;
	char path[TU_NAME_MAX + 32];
	uint64_t start_ms, took_ms;
	int fd, rc = 0;

	tu_shm_path(path, sizeof path, f->name);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);

	start_ms = tu_now_ms();
	assert_int_equal(open_in_child(f->name, 0, 30, &rc), 0);
	took_ms = tu_now_ms() - start_ms;
	print_message("zero-size segment: %s after %llu ms\n", shmc_errname(rc),
	              (unsigned long long)took_ms);
	assert_true(rc == SHMC_ETIMEDOUT || rc == SHMC_ECORRUPT);
	assert_true(took_ms <= 10000);
}

/* ----------------------------------------------------------- permission */

struct perm_run {
	char name[TU_NAME_MAX];
	int flags;
	int rc;        /* shmc_open's result in the child */
	int dropped;   /* 1 once the child runs as nobody */
	int rw_ok;     /* 1 if set+get worked after a successful open */
};

static int child_as_nobody_fn(unsigned index, void *arg)
{
	struct perm_run *p = arg;
	shmc_cache *c = NULL;
	char buf[8];
	size_t vlen = 0;

	(void)index;
	if (setgroups(0, NULL) != 0 || setgid(NOBODY_ID) != 0 ||
	    setuid(NOBODY_ID) != 0) {
		tu_child_log("cannot drop to uid/gid %d: %s", NOBODY_ID,
		             strerror(errno));
		return 1;
	}
	p->dropped = 1;
	p->rc = shmc_open(p->name, NULL, p->flags, &c);
	if (p->rc == 0) {
		p->rw_ok = shmc_set(c, "n", 1, "x", 1, 0, 0) == 0 &&
		           shmc_get(c, "n", 1, buf, sizeof buf, &vlen) == 0 &&
		           vlen == 1 && buf[0] == 'x';
		shmc_close(c);
	}
	return 0;
}

/* Create the segment with mode, then open it as nobody with flags. */
static void open_as_nobody(const char *name, unsigned mode, int flags,
                           struct perm_run *p)
{
	shmc_opts *o = NULL;
	shmc_cache *c = NULL;
	pid_t pid;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, SEGMENT_BYTES), 0);
	assert_int_equal(shmc_opts_set_mode(o, mode), 0);
	assert_int_equal(shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, &c), 0);
	shmc_opts_destroy(o);
	assert_int_equal(shmc_close(c), 0);

	snprintf(p->name, sizeof p->name, "%s", name);
	p->flags = flags;
	p->rc = 1;
	tu_fork_start(1, child_as_nobody_fn, p, 20, &pid);
	assert_int_equal(tu_wait_child(pid, "nobody child"), 0);
	assert_int_equal(p->dropped, 1);
}

static void test_badinput_other_user_mode_0600_eperm(void **state)
{
	struct fixture *f = *state;
	struct perm_run *p;

	if (geteuid() != 0) {
		print_message("skipped: needs root to create as root and attach as "
		              "nobody (CI runs as root)\n");
		skip();
	}
	p = tu_shared_alloc(sizeof *p);
	assert_non_null(p);
	open_as_nobody(f->name, 0600, 0, p);
	assert_string_equal(shmc_errname(p->rc), "SHMC_EPERM");
	tu_shared_free(p, sizeof *p);
}

static void test_badinput_other_user_rdonly_on_0644_eperm(void **state)
{
	struct fixture *f = *state;
	struct perm_run *p;

	if (geteuid() != 0) {
		print_message("skipped: needs root to create as root and attach as "
		              "nobody (CI runs as root)\n");
		skip();
	}
	/* readers register in the segment, so read permission is not enough */
	p = tu_shared_alloc(sizeof *p);
	assert_non_null(p);
	open_as_nobody(f->name, 0644, SHMC_RDONLY, p);
	assert_string_equal(shmc_errname(p->rc), "SHMC_EPERM");
	tu_shared_free(p, sizeof *p);
}

static void test_badinput_other_user_mode_0666_attaches(void **state)
{
	struct fixture *f = *state;
	struct perm_run *p;

	if (geteuid() != 0) {
		print_message("skipped: needs root to create as root and attach as "
		              "nobody (CI runs as root)\n");
		skip();
	}
	p = tu_shared_alloc(sizeof *p);
	assert_non_null(p);
	open_as_nobody(f->name, 0666, 0, p);
	assert_string_equal(shmc_errname(p->rc), "OK");
	assert_int_equal(p->rw_ok, 1);
	tu_shared_free(p, sizeof *p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_badinput_empty_key_einval),
		TEST(test_badinput_key_over_max_etoobig),
		TEST(test_badinput_key_of_exactly_max_works),
		TEST(test_badinput_value_over_chunk_etoobig),
		TEST(test_badinput_value_over_chunk_keeps_previous_value),
		TEST(test_badinput_value_fitting_chunk_stores),
		TEST_NAMED(test_badinput_null_handle_einval),
		TEST(test_badinput_null_key_einval),
		TEST(test_badinput_get_null_vlen_einval),
		TEST(test_badinput_get_null_buf_with_cap_einval),
		TEST(test_badinput_get_ref_null_out_einval),
		TEST_NAMED(test_badinput_opts_out_of_range_einval),
		TEST_NAMED(test_badinput_bad_segment_name_einval),
		TEST_NAMED(test_badinput_unlink_bad_name_einval),
		TEST_NAMED(test_badinput_open_null_out_einval),
		TEST_NAMED(test_badinput_open_unknown_flag_einval),
		TEST_NAMED(test_badinput_open_missing_without_create_enoent),
		TEST(test_badinput_open_create_excl_existing_eexist),
		TEST_NAMED(test_badinput_other_layout_signature_eversion),
		TEST_NAMED(test_badinput_bad_magic_eversion),
		TEST_NAMED(test_badinput_bad_magic_with_create_eversion),
		TEST_NAMED(test_badinput_truncated_segment_ecorrupt),
		TEST_NAMED(test_badinput_header_garbage_rejected_without_crash),
		TEST_NAMED(test_badinput_header_fields_garbage_rejected_without_crash),
		TEST_NAMED(test_badinput_zero_size_file_fails_within_timeout),
		TEST_NAMED(test_badinput_other_user_mode_0600_eperm),
		TEST_NAMED(test_badinput_other_user_rdonly_on_0644_eperm),
		TEST_NAMED(test_badinput_other_user_mode_0666_attaches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
