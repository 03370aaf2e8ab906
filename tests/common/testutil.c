/*
 * testutil.c - helpers for the integration tests: unique segment names,
 * self-describing values, shared memory and fork/wait with watchdogs.
 * See testutil.h for the value format and the rules for children.
 *
 * xxhash is used header-only (XXH_INLINE_ALL) so that the test executables do
 * not depend on how the library links libxxhash.
 */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ------------------------------------------------------------- names */

static void copy_tag(char *dst, size_t cap, const char *tag)
{
	size_t i = 0;

	for (; tag[i] != '\0' && i + 1 < cap; i++) {
		char ch = tag[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		         (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
		dst[i] = ok ? ch : '-';
	}
	dst[i] = '\0';
}

void tu_segname(char *buf, size_t cap, const char *tag)
{
	char clean[160];

	copy_tag(clean, sizeof clean, tag);
	snprintf(buf, cap, "t.%s.%ld", clean, (long)getpid());
}

void tu_segname_n(char *buf, size_t cap, const char *tag, unsigned n)
{
	char clean[160];

	copy_tag(clean, sizeof clean, tag);
	snprintf(buf, cap, "t.%s.%ld.%u", clean, (long)getpid(), n);
}

void tu_shm_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "/dev/shm/shmc.%s", name);
}

int tu_open_fresh(const char *name, size_t size_bytes, size_t chunk_bytes,
                  int sweeper, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc;

	(void)shmc_unlink(name);
	rc = shmc_opts_create(&o);
	if (rc != 0)
		return rc;
	if (size_bytes != 0 && (rc = shmc_opts_set_size(o, size_bytes)) != 0)
		goto out;
	if (chunk_bytes != 0 && (rc = shmc_opts_set_chunk_size(o, chunk_bytes)) != 0)
		goto out;
	if (sweeper >= 0 && (rc = shmc_opts_set_sweeper(o, sweeper)) != 0)
		goto out;
	rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, out);
out:
	shmc_opts_destroy(o);
	return rc;
}

/* -------------------------------------------------------------- time */

uint64_t tu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tu_now_ms(void)
{
	return tu_now_ns() / 1000000u;
}

void tu_sleep_us(unsigned us)
{
	struct timespec ts = {
		.tv_sec = us / 1000000u,
		.tv_nsec = (long)(us % 1000000u) * 1000L,
	};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void tu_sleep_ms(unsigned ms)
{
	tu_sleep_us(ms * 1000u);
}

/* ---------------------------------------------------------- randomness */

uint64_t tu_rand_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t tu_rand_below(uint64_t *state, uint64_t n)
{
	return tu_rand_next(state) % n;
}

/* ------------------------------------------------------- shared memory */

void *tu_shared_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void tu_shared_free(void *p, size_t bytes)
{
	if (p != NULL)
		munmap(p, bytes);
}

void tu_barrier_wait(_Atomic unsigned *count, unsigned n)
{
	atomic_fetch_add(count, 1u);
	while (atomic_load(count) < n)
		sched_yield();
}

/* ------------------------------------------------ self-describing values */

#define OFF_MAGIC 0u
#define OFF_KEY_HASH 4u
#define OFF_WRITER 12u
#define OFF_SEQ 16u
#define OFF_PAYLOAD_LEN 24u

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, sizeof v);
}

static void put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, sizeof v);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t payload_seed(uint64_t key_hash, uint32_t writer_id, uint64_t seq)
{
	return key_hash ^ ((uint64_t)writer_id * 0xd6e8feb86659fd93ull) ^
	       (seq * 0xa0761d6478bd642full);
}

static void payload_fill(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t state = seed;
	size_t i = 0;

	while (i < n) {
		uint64_t r = tu_rand_next(&state);
		size_t take = n - i < 8 ? n - i : 8;

		memcpy(p + i, &r, take);
		i += take;
	}
}

/* 1 if the n payload bytes at p are the ones seed derives. */
static int payload_matches(const unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t state = seed;
	size_t i = 0;

	while (i < n) {
		uint64_t r = tu_rand_next(&state);
		size_t take = n - i < 8 ? n - i : 8;

		if (memcmp(p + i, &r, take) != 0)
			return 0;
		i += take;
	}
	return 1;
}

struct tu_hwm *tu_hwm_create(unsigned nwriters)
{
	size_t bytes = sizeof(struct tu_hwm) + nwriters * sizeof(_Atomic uint64_t);
	struct tu_hwm *h = tu_shared_alloc(bytes);

	if (h != NULL) {
		h->nwriters = nwriters;
		for (unsigned w = 0; w < nwriters; w++)
			atomic_init(&h->marks[w], 0);
	}
	return h;
}

void tu_hwm_destroy(struct tu_hwm *h)
{
	if (h != NULL)
		tu_shared_free(h, sizeof(struct tu_hwm) +
		                      h->nwriters * sizeof(_Atomic uint64_t));
}

void tu_hwm_publish(struct tu_hwm *h, unsigned writer, uint64_t seq)
{
	/* seq_cst: the mark must be visible before the value store that
	 * follows it in this process becomes visible to anyone. */
	atomic_store(&h->marks[writer], seq);
}

uint64_t tu_hwm_get(const struct tu_hwm *h, unsigned writer)
{
	return atomic_load(&((struct tu_hwm *)h)->marks[writer]);
}

uint64_t tu_key_hash(const void *key, size_t klen)
{
	return XXH3_64bits(key, klen);
}

size_t tu_value_build(void *buf, size_t cap, const void *key, size_t klen,
                      uint32_t writer_id, uint64_t seq, size_t total_bytes)
{
	unsigned char *p = buf;
	uint64_t key_hash = tu_key_hash(key, klen);
	size_t payload_len;

	if (total_bytes < TU_VALUE_MIN_BYTES || total_bytes > cap ||
	    total_bytes - TU_VALUE_MIN_BYTES > UINT32_MAX)
		return 0;
	payload_len = total_bytes - TU_VALUE_MIN_BYTES;
	put32(p + OFF_MAGIC, TU_VALUE_MAGIC);
	put64(p + OFF_KEY_HASH, key_hash);
	put32(p + OFF_WRITER, writer_id);
	put64(p + OFF_SEQ, seq);
	put32(p + OFF_PAYLOAD_LEN, (uint32_t)payload_len);
	payload_fill(p + TU_VALUE_HEADER_BYTES, payload_len,
	             payload_seed(key_hash, writer_id, seq));
	put64(p + TU_VALUE_HEADER_BYTES + payload_len,
	      XXH3_64bits(p, TU_VALUE_HEADER_BYTES + payload_len));
	return total_bytes;
}

enum tu_verdict tu_value_check(const void *val, size_t vlen, const void *key,
                               size_t klen, const struct tu_hwm *hwm,
                               struct tu_value_info *info)
{
	const unsigned char *p = val;
	struct tu_value_info vi;
	size_t body;

	if (p == NULL || vlen < TU_VALUE_MIN_BYTES)
		return TU_TORN;
	vi.payload_len = get32(p + OFF_PAYLOAD_LEN);
	if ((size_t)vi.payload_len != vlen - TU_VALUE_MIN_BYTES)
		return TU_TORN;
	body = TU_VALUE_HEADER_BYTES + vi.payload_len;
	if (get64(p + body) != XXH3_64bits(p, body))
		return TU_TORN;
	if (get32(p + OFF_MAGIC) != TU_VALUE_MAGIC)
		return TU_TORN;
	vi.key_hash = get64(p + OFF_KEY_HASH);
	vi.writer_id = get32(p + OFF_WRITER);
	vi.seq = get64(p + OFF_SEQ);
	if (!payload_matches(p + TU_VALUE_HEADER_BYTES, vi.payload_len,
	                     payload_seed(vi.key_hash, vi.writer_id, vi.seq)))
		return TU_TORN;
	if (info != NULL)
		*info = vi;
	if (vi.key_hash != tu_key_hash(key, klen))
		return TU_FOREIGN;
	if (hwm != NULL &&
	    (vi.writer_id >= hwm->nwriters || vi.seq == 0 ||
	     vi.seq > tu_hwm_get(hwm, vi.writer_id)))
		return TU_NEVER_WRITTEN;
	return TU_OK;
}

const char *tu_verdict_name(enum tu_verdict v)
{
	switch (v) {
	case TU_OK:
		return "OK";
	case TU_TORN:
		return "TORN";
	case TU_FOREIGN:
		return "FOREIGN";
	case TU_NEVER_WRITTEN:
		return "NEVER_WRITTEN";
	}
	return "?";
}

/* --------------------------------------------------------------- forking */

void tu_child_init(unsigned watchdog_s)
{
	static const int crash_signals[] = {
		SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGALRM,
	};
	sigset_t none;

	for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
		signal(crash_signals[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	alarm(watchdog_s);
}

void tu_child_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "[child %ld] ", (long)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	fflush(stderr);
}

unsigned tu_fork_start(unsigned n, tu_child_fn fn, void *arg,
                       unsigned watchdog_s, pid_t *pids)
{
	unsigned started = 0;

	fflush(NULL);
	for (unsigned i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			int rc;

			tu_child_init(watchdog_s);
			rc = fn(i, arg);
			fflush(NULL);
			_exit(rc == 0 ? 0 : 1);
		}
		pids[i] = pid < 0 ? -1 : pid;
		if (pid > 0)
			started++;
		else
			fprintf(stderr, "fork of child %u failed: %s\n", i,
			        strerror(errno));
	}
	return started;
}

int tu_wait_child(pid_t pid, const char *what)
{
	int status;
	pid_t got;

	if (pid <= 0) {
		fprintf(stderr, "%s: never started\n", what);
		return -1;
	}
	do
		got = waitpid(pid, &status, 0);
	while (got < 0 && errno == EINTR);
	if (got != pid) {
		fprintf(stderr, "%s (pid %ld): waitpid failed: %s\n", what,
		        (long)pid, strerror(errno));
		return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		fprintf(stderr, "%s (pid %ld): exited with status %d\n", what,
		        (long)pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "%s (pid %ld): killed by signal %d (%s)%s\n", what,
		        (long)pid, WTERMSIG(status), strsignal(WTERMSIG(status)),
		        WTERMSIG(status) == SIGALRM ? " - watchdog expired" : "");
	return -1;
}

unsigned tu_fork_wait(unsigned n, const pid_t *pids)
{
	unsigned failed = 0;

	for (unsigned i = 0; i < n; i++) {
		char what[32];

		snprintf(what, sizeof what, "child %u", i);
		if (tu_wait_child(pids[i], what) != 0)
			failed++;
	}
	return failed;
}

unsigned tu_fork_run(unsigned n, tu_child_fn fn, void *arg, unsigned watchdog_s)
{
	pid_t *pids = calloc(n ? n : 1, sizeof *pids);
	unsigned failed;

	if (pids == NULL)
		return n;
	tu_fork_start(n, fn, arg, watchdog_s, pids);
	failed = tu_fork_wait(n, pids);
	free(pids);
	return failed;
}
