/*
 * testutil.h - helpers shared by the multi-process integration tests.
 *
 * Segment names: every test uses its own segment, named after the test and
 * the pid ("t.<tag>.<pid>"), so that tests never see each other's data and a
 * leftover from a crashed run never collides with a new one.
 *
 * Self-describing values: the concurrency tests store values that carry their
 * own identity and checksum, so that a reader can tell, from the bytes alone,
 * whether what it got is intact (OK), torn or reused memory (TORN), a valid
 * value of another key (FOREIGN), or a well-formed value for this key that no
 * writer has stored yet (NEVER_WRITTEN). Layout, little-endian host order:
 *
 *   offset  size  field
 *        0     4  magic         TU_VALUE_MAGIC
 *        4     8  key_hash      XXH3_64bits(key)
 *       12     4  writer_id     index of the writing process
 *       16     8  seq           per-writer sequence number, from 1
 *       24     4  payload_len   bytes of payload that follow
 *       28     n  payload       derived from (key_hash, writer_id, seq)
 *     28+n     8  checksum      XXH3_64bits of bytes [0, 28+n)
 *
 * "NEVER_WRITTEN" needs to know how far each writer has got: a writer
 * publishes its seq in a tu_hwm (shared memory, one slot per writer, written
 * only by that writer) BEFORE it stores the value, so any value a reader can
 * see has seq <= the writer's published mark.
 *
 * Children: tests fork children that run plain C checks (never cmocka
 * asserts: a failing assert in a child would unwind into the child's copy of
 * the test runner). A child reports failure through its exit code; a child
 * killed by a signal (including its alarm() watchdog) is a failure.
 */
#ifndef SHMC_TESTUTIL_H
#define SHMC_TESTUTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmcache.h>

/* ------------------------------------------------------------- names */

#define TU_NAME_MAX 256

/* "t.<tag>.<pid>" into buf; characters of tag outside [A-Za-z0-9.-] become
 * '-' (segment names allow only [A-Za-z0-9._-], and we keep '_' out so that
 * the names read the same as the tests). */
void tu_segname(char *buf, size_t cap, const char *tag);

/* "t.<tag>.<pid>.<n>": for tests that need several fresh segments. */
void tu_segname_n(char *buf, size_t cap, const char *tag, unsigned n);

/* "/dev/shm/shmc.<name>": the file behind segment name. */
void tu_shm_path(char *buf, size_t cap, const char *name);

/* Unlink name (ignoring a missing one), then create it with SHMC_CREATE |
 * SHMC_EXCL. size_bytes / chunk_bytes 0 mean the defaults; sweeper < 0 means
 * the default. Returns shmc_open()'s result. */
int tu_open_fresh(const char *name, size_t size_bytes, size_t chunk_bytes,
                  int sweeper, shmc_cache **out);

/* -------------------------------------------------------------- time */

uint64_t tu_now_ns(void);
uint64_t tu_now_ms(void);
void tu_sleep_ms(unsigned ms);
void tu_sleep_us(unsigned us);

/* ---------------------------------------------------------- randomness */

/* splitmix64: deterministic per seed, good enough for test workloads. */
uint64_t tu_rand_next(uint64_t *state);
/* Uniform in [0, n), n > 0. */
uint64_t tu_rand_below(uint64_t *state, uint64_t n);

/* ------------------------------------------------------- shared memory */

/* Zeroed anonymous MAP_SHARED memory, inherited by forked children.
 * Returns NULL on failure. */
void *tu_shared_alloc(size_t bytes);
void tu_shared_free(void *p, size_t bytes);

/* Every caller increments *count and spins (yielding) until n callers have
 * arrived. For starting forked children at the same instant; bounded by the
 * children's alarm() watchdog. */
void tu_barrier_wait(_Atomic unsigned *count, unsigned n);

/* ------------------------------------------------ self-describing values */

#define TU_VALUE_MAGIC 0x31564453u /* "SDV1" */
#define TU_VALUE_HEADER_BYTES 28u
#define TU_VALUE_TRAILER_BYTES 8u
#define TU_VALUE_MIN_BYTES (TU_VALUE_HEADER_BYTES + TU_VALUE_TRAILER_BYTES)

enum tu_verdict {
	TU_OK = 0,
	TU_TORN,          /* bad length, checksum, magic or payload */
	TU_FOREIGN,       /* intact, but written for another key */
	TU_NEVER_WRITTEN, /* intact, right key, (writer, seq) not yet produced */
};

/* What an intact value says about itself (filled by tu_value_check when the
 * verdict is not TU_TORN). */
struct tu_value_info {
	uint64_t key_hash;
	uint32_t writer_id;
	uint64_t seq;
	uint32_t payload_len;
};

/* Per-writer high-water marks in shared memory. */
struct tu_hwm {
	unsigned nwriters;
	_Atomic uint64_t marks[]; /* marks[w]: written only by writer w */
};

/* Allocate marks for nwriters writers (all 0) in shared memory. */
struct tu_hwm *tu_hwm_create(unsigned nwriters);
void tu_hwm_destroy(struct tu_hwm *h);
/* Writer w announces that it is about to store a value with seq. Must be
 * called BEFORE the store; seq must not decrease. Release ordering. */
void tu_hwm_publish(struct tu_hwm *h, unsigned writer, uint64_t seq);
/* Highest seq writer w has announced. Acquire ordering. */
uint64_t tu_hwm_get(const struct tu_hwm *h, unsigned writer);

uint64_t tu_key_hash(const void *key, size_t klen);

/* Build the value of (key, writer, seq) of exactly total_bytes bytes
 * (>= TU_VALUE_MIN_BYTES, <= cap) into buf. Returns total_bytes, or 0 if it
 * does not fit or is too short. */
size_t tu_value_build(void *buf, size_t cap, const void *key, size_t klen,
                      uint32_t writer_id, uint64_t seq, size_t total_bytes);

/* Classify the value read for key. hwm may be NULL (then NEVER_WRITTEN is
 * never returned). info may be NULL. */
enum tu_verdict tu_value_check(const void *val, size_t vlen, const void *key,
                               size_t klen, const struct tu_hwm *hwm,
                               struct tu_value_info *info);

const char *tu_verdict_name(enum tu_verdict v);

/* --------------------------------------------------------------- forking */

/* The body of a child: returns 0 on success, anything else on failure. */
typedef int (*tu_child_fn)(unsigned index, void *arg);

/* Call first thing in any forked child: restores default handlers for the
 * crash signals (the test runner's handlers must not run in a child) and
 * arms an alarm(watchdog_s) so that the child cannot hang. */
void tu_child_init(unsigned watchdog_s);

/* Fork n children; child i runs tu_child_init(watchdog_s), then fn(i, arg),
 * then _exit(0 if fn returned 0, else 1). pids[i] receives each child's pid,
 * or -1 where fork failed. Flushes stdio first. Returns the number of
 * children started. */
unsigned tu_fork_start(unsigned n, tu_child_fn fn, void *arg,
                       unsigned watchdog_s, pid_t *pids);

/* Wait for one child. Returns 0 if it exited with status 0; otherwise prints
 * why (exit code or signal) to stderr and returns -1. pid -1 is a failure. */
int tu_wait_child(pid_t pid, const char *what);

/* Wait for the n children of tu_fork_start. Returns how many failed (exit
 * code != 0, killed by a signal, or never started). */
unsigned tu_fork_wait(unsigned n, const pid_t *pids);

/* tu_fork_start + tu_fork_wait: returns how many of the n children failed. */
unsigned tu_fork_run(unsigned n, tu_child_fn fn, void *arg, unsigned watchdog_s);

/* Report a failure from inside a child (to stderr, prefixed with the pid). */
void tu_child_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SHMC_TESTUTIL_H */
