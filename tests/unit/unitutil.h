/*
 * unitutil.h - helpers shared by the white-box unit tests (tests/unit/).
 *
 * Every unit test runs on a segment of its own, "u.<test>.<pid>", created by
 * its setup and unlinked by its teardown, so a test never sees another's
 * data and a leftover of a crashed run never collides with a new run.
 *
 * Children: tests that need another process fork one with tu_fork_start()
 * (tests/common/testutil.h: default crash handlers and an alarm() watchdog
 * in the child). A child never uses cmocka asserts; it reports through its
 * exit code and through a struct uu_child_report in shared memory. A child
 * that has to die "mid-way" signals the parent and then sleeps until the
 * parent SIGKILLs it (uu_kill_child); its watchdog ends it otherwise.
 */
#ifndef SHMC_UNITUTIL_H
#define SHMC_UNITUTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmcache.h>

#include "testutil.h"

struct shmc__tctx;

/* Segment parameters; 0 means the library default. */
struct uu_params {
	size_t size_bytes;
	size_t chunk_bytes;
	size_t item_bytes;
	unsigned max_procs;
	unsigned max_threads;
	uint32_t default_ttl_ms;
};

/* What every unit test's setup builds. */
struct uu_fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
};

/* "u.<test>.<pid>" into buf. test must be a valid segment name fragment
 * (the test function names are: [a-z0-9_]). */
void uu_segname(char *buf, size_t cap, const char *test);

/* Unlink name (a missing one is fine), then create it with SHMC_CREATE |
 * SHMC_EXCL and parameters p (NULL = all defaults), sweeper off. Returns
 * shmc_open()'s result. */
int uu_create(const char *name, const struct uu_params *p, shmc_cache **out);

/* Setup/teardown bodies: *state holds the test's name on entry (cmocka
 * prestate) and the struct uu_fixture afterwards. */
int uu_setup(void **state, const struct uu_params *p);
int uu_teardown(void **state);

/* The calling thread's context for c (claims a thread slot on first use);
 * NULL on failure. */
struct shmc__tctx *uu_tctx(shmc_cache *c);

/* The same, failing the current test if there is none. */
struct shmc__tctx *tctx_of(shmc_cache *c);

/* The fixture uu_setup() left in *state, and its handle. */
static inline struct uu_fixture *fixture_of(void **state)
{
	return *state;
}

static inline shmc_cache *cache_of(void **state)
{
	return fixture_of(state)->c;
}

/* Spin (yielding, then sleeping) until *flag >= value or timeout_ms has
 * passed. Returns true if the value was reached. If pid > 0 and that child
 * has exited meanwhile, returns false at once (the child is then reaped:
 * do not wait for it again; *reaped is set to true if reaped is non-NULL). */
bool uu_wait_flag(_Atomic int *flag, int value, unsigned timeout_ms, pid_t pid, bool *reaped);

/* SIGKILL child pid and reap it. Returns 0 if it died of that SIGKILL
 * (not of something else first, such as its watchdog), -1 otherwise. */
int uu_kill_child(pid_t pid);

/* Block the calling child until it is killed (its watchdog bounds it). */
void uu_child_sleep_forever(void) __attribute__((noreturn));

/* Path of the running test executable, for children that must exec a
 * fresh copy of it (recorded by uu_record_self(); NULL if unknown). */
void uu_record_self(const char *argv0);
const char *uu_self_path(void);

#endif /* SHMC_UNITUTIL_H */
