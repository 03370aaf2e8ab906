/*
 * shmcache.h - the whole public API of libshmcache.
 *
 * libshmcache gives every process on one Linux host a shared L1 cache: a hash
 * table in a POSIX shared-memory segment that unrelated processes attach by
 * name. Reads take no lock; writers publish with single-word commits, so a
 * process killed at any instruction leaves the cache consistent.
 *
 * Conventions
 * -----------
 * - Every function that can fail returns int: 0 on success, a negative
 *   SHMC_E* code on failure. System errors pass through as -errno.
 *   shmc_strerror() and shmc_errname() describe any such code, and
 *   shmc_errmsg() gives a detailed message for the last failure of the
 *   calling thread on a handle.
 * - Handles are opaque. A shmc_cache is shared by all threads of a process;
 *   every operation on it is thread-safe unless said otherwise.
 * - Keys and values are byte strings (binary safe). A key is 1 to
 *   max_key_bytes long (default 250); a value is 0 to max_value_bytes long.
 *
 * Caveats (read these)
 * --------------------
 * - fork(): a handle opened before fork() may be used in the child. The first
 *   operation in the child re-registers it: the child gets its own process
 *   slot and liveness lock and never acts as the parent (if the segment's
 *   name was unlinked or replaced since, that call fails with SHMC_ENOENT:
 *   open the segment anew in the child). Pointers from
 *   shmc_get_ref() obtained before fork() are invalid in the child, and a
 *   read section open across fork() is closed in the child. Do not call
 *   fork() from one thread while another thread of the same process is inside
 *   a libshmcache call on a handle the child will use.
 * - Read sections (shmc_read_begin ... shmc_read_end) hold back memory reuse
 *   host-wide. Keep them short; never sleep or block inside one. A thread
 *   inside a read section may write, but a write that then needs memory does
 *   not wait for other readers and may fail with SHMC_ENOSPC.
 * - A segment is bound to the build's layout: processes built against an
 *   incompatible libshmcache get SHMC_EVERSION instead of sharing it.
 * - Permissions: the segment is created with mode 0600 by default, so only
 *   the creating user can attach. Every attacher, SHMC_RDONLY included, needs
 *   read and write permission (readers register in the segment).
 */
#ifndef SHMCACHE_H
#define SHMCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMC_VERSION_MAJOR 0
#define SHMC_VERSION_MINOR 1
#define SHMC_VERSION_PATCH 0

/*
 * Error codes: X(NAME, value, message). Values lie below -1000 so that they
 * never collide with -errno values passed through from the system.
 */
#define SHMC_ERRNO_MAP(X)                                                        \
	X(ENOTFOUND, -1001, "key not found")                                     \
	X(EEXIST, -1002, "key or segment already exists")                        \
	X(ERANGE, -1003, "buffer too small for the value")                       \
	X(EINVAL, -1004, "invalid argument")                                     \
	X(ETOOBIG, -1005, "key or value too large")                              \
	X(ENOSPC, -1006, "no space left in the segment")                         \
	X(ENOMEM, -1007, "out of process memory")                                \
	X(EPERM, -1008, "permission denied")                                     \
	X(EVERSION, -1009, "segment made by an incompatible build")              \
	X(ECORRUPT, -1010, "segment is corrupted")                               \
	X(ETIMEDOUT, -1011, "timed out")                                         \
	X(EUPLINK, -1012, "remote tier unavailable")                             \
	X(ECLOSED, -1013, "handle is closed")                                    \
	X(ENOTNUM, -1014, "value is not a decimal integer")                      \
	X(EOVERFLOW, -1015, "integer overflow")                                  \
	X(ETOOMANY, -1016, "too many attached processes or threads")             \
	X(ENOENT, -1017, "no segment of that name")

enum shmc_errno {
#define SHMC_ERRNO_ENUM_(name, value, msg) SHMC_##name = (value),
	SHMC_ERRNO_MAP(SHMC_ERRNO_ENUM_)
#undef SHMC_ERRNO_ENUM_
};

/* Flags of shmc_open(). */
#define SHMC_CREATE 0x1 /* create the segment if it does not exist */
#define SHMC_EXCL 0x2   /* with SHMC_CREATE: fail with SHMC_EEXIST if it exists */
#define SHMC_RDONLY 0x4 /* refuse writes through this handle (SHMC_EPERM) */

/* Flags of shmc_set(). */
#define SHMC_NX 0x1            /* store only if the key is absent, else SHMC_EEXIST */
#define SHMC_XX 0x2            /* store only if the key is present, else SHMC_ENOTFOUND */
#define SHMC_WRITE_THROUGH 0x4 /* remote tier first, then L1 (needs an uplink) */
#define SHMC_WRITE_BEHIND 0x8  /* L1 now, remote asynchronously (needs an uplink) */

/* Limits. */
#define SHMC_KEY_MAX 65535u            /* hard ceiling of max_key_bytes */
#define SHMC_DEFAULT_KEY_MAX 250u      /* default max_key_bytes */
#define SHMC_DEFAULT_SIZE (64u << 20)  /* default segment size */
#define SHMC_MIN_SIZE (1u << 20)       /* smallest segment accepted */
#define SHMC_DEFAULT_CHUNK (1u << 20)  /* default log chunk size */
#define SHMC_TTL_JITTER_MAX 50u        /* largest TTL jitter, percent */

typedef struct shmc_cache shmc_cache;
typedef struct shmc_opts shmc_opts;

/* ---------------------------------------------------------------- errors */

/* A static, human-readable message for any code this library returns
 * (SHMC_E* or -errno). Never NULL. Thread-safe. */
const char *shmc_strerror(int err);

/* The symbolic name of a code: "SHMC_ENOTFOUND", "ENOENT" (for -ENOENT),
 * "OK" for 0, "UNKNOWN" otherwise. Never NULL. Thread-safe. */
const char *shmc_errname(int err);

/* A detailed message for the last failure of the calling thread on handle c
 * (for example which header field failed validation). The string belongs to
 * the library and is valid until the calling thread's next call on c.
 * Returns "" if there was no failure; never NULL. c may be NULL: then the
 * message of the calling thread's last failed call that takes no handle
 * (shmc_open, shmc_unlink) is returned. */
const char *shmc_errmsg(const shmc_cache *c);

/* --------------------------------------------------------------- options */

/* Options are read only by shmc_open(); they may be destroyed right after.
 * A shmc_opts is not thread-safe; use one per thread or lock around it. */

/* Allocate options with defaults. Returns 0, SHMC_EINVAL (out NULL) or
 * SHMC_ENOMEM. The caller owns *out and frees it with shmc_opts_destroy(). */
int shmc_opts_create(shmc_opts **out);

/* Free options. NULL is fine. */
void shmc_opts_destroy(shmc_opts *o);

/* Segment size in bytes when it is created (default SHMC_DEFAULT_SIZE, at
 * least SHMC_MIN_SIZE). Ignored when attaching to an existing segment.
 * Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_size(shmc_opts *o, size_t bytes);

/* Permission bits of a new segment (default 0600). Only 0777 bits are
 * accepted. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_mode(shmc_opts *o, unsigned mode);

/* Remote tier (DESIGN section 7), NULL = none; the string is copied:
 *   redis://[user:password@]host:port[/db][?options]
 *   redis+unix://[user:password@]/path/to/socket[?options]
 *   redis-cluster://[user:password@]h1:p1,h2:p2,...[?options]  (seeds)
 * Options: connect_timeout_ms (200), command_timeout_ms (100), ttl_cap_ms
 * (0 = none; a remote item's local TTL never exceeds the key's remaining
 * remote TTL either), replica_reads=0|1, breaker_failures (5),
 * breaker_open_ms (1000), health_interval_ms (1000), batch (64),
 * write_behind_queue (4096), user, password.
 * With an uplink, shmc_open() starts this process's uplink thread;
 * shmc_fetch() with a NULL loader reads through it, SHMC_WRITE_THROUGH and
 * SHMC_WRITE_BEHIND write through it. shmc_open() does not wait for the
 * remote tier: the uplink thread connects in the background and
 * health-checks it (PING every health_interval_ms while idle); an
 * unreachable one makes those calls fail with SHMC_EUPLINK, never
 * shmc_open(). Each node's circuit breaker is visible host-wide through
 * shmc_uplink_nodes(). Returns 0, SHMC_EINVAL (with shmc_errmsg(NULL)
 * naming the bad part of the URI) or SHMC_ENOMEM. */
int shmc_opts_set_uplink(shmc_opts *o, const char *uri);

/* TTL of items written with ttl_ms 0 (default 0 = never expire).
 * Returns 0 or SHMC_EINVAL (o NULL). */
int shmc_opts_set_default_ttl(shmc_opts *o, uint32_t ttl_ms);

/* Spread every TTL (explicit or default) uniformly over +- percent of itself,
 * 0..SHMC_TTL_JITTER_MAX (default 0), so that keys written together do not
 * expire together. With jitter an item may expire before its ttl_ms. Fixed
 * at creation. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_ttl_jitter(shmc_opts *o, unsigned percent);

/* Largest key accepted, 1..SHMC_KEY_MAX (default 250). Fixed at creation.
 * Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_max_key(shmc_opts *o, size_t bytes);

/* Log chunk size, a power of two from 64 KiB to 64 MiB (default 1 MiB, or
 * smaller so that the segment has at least 64 chunks). A value must fit in a
 * chunk with its key and a 12-byte item header; larger values get
 * SHMC_ETOOBIG. Fixed at creation. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_chunk_size(shmc_opts *o, size_t bytes);

/* Expected average key + value size, used to size the hash index when the
 * segment is created (default 128). Too small wastes index memory; too large
 * makes the index fill (SHMC_ENOSPC) before the data area. Returns 0 or
 * SHMC_EINVAL. */
int shmc_opts_set_item_size(shmc_opts *o, size_t bytes);

/* Slots for attached processes and for threads (default 256 and 1024, or
 * fewer in segments under 4 MiB: size / 16 KiB and size / 4 KiB, at least
 * 16 and 64). Every thread that uses the cache takes a thread slot, and so
 * do the library's own threads (sweeper, refresher, uplink) in a process
 * that runs them. Fixed at creation. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_max_procs(shmc_opts *o, unsigned n);
int shmc_opts_set_max_threads(shmc_opts *o, unsigned n);

/* Run the background roles (sweeper, reaper) in this process when they are
 * free (default on). Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_sweeper(shmc_opts *o, int enabled);

/* TTL of "absent" answers cached by shmc_fetch() (default 1000 ms; 0 = do
 * not cache them). Fixed at creation. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_negative_ttl(shmc_opts *o, uint32_t ttl_ms);

/* Stale window: how long past its TTL an item may still be returned by
 * shmc_fetch() while one background refresh runs (default 0 = none).
 * Fixed at creation. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_stale_window(shmc_opts *o, uint32_t ms);

/* Probabilistic early refresh (XFetch): shmc_fetch() refreshes an item
 * before its TTL with a probability that grows as the TTL nears, scaled by
 * beta times the loader's recent duration (default 0 = off; 1 is the usual
 * choice). Needs a stale window. A property of this handle. Returns 0 or
 * SHMC_EINVAL (negative or not finite). */
int shmc_opts_set_xfetch_beta(shmc_opts *o, double beta);

/* How long a fill may take before its waiters take it over (default 5000
 * ms, at least 1). A property of this handle. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_fill_timeout(shmc_opts *o, uint32_t ms);

/* Sample one in period operations of each thread of this process: its
 * latency goes into the host's histograms and, for lookups, its key into
 * the hot-key sketch. period is a power of two up to 2^20 (default 64), or
 * 0 to sample nothing. A property of this process's handle, not of the
 * segment. Returns 0 or SHMC_EINVAL. */
int shmc_opts_set_sampling(shmc_opts *o, unsigned period);

/* ------------------------------------------------------------- lifecycle */

/* Attach to (or create) the segment called name. name is 1..200 bytes of
 * [A-Za-z0-9._-]; the shared-memory object is "/shmc.<name>".
 * o may be NULL for defaults. flags: SHMC_CREATE, SHMC_EXCL, SHMC_RDONLY.
 *
 * Concurrent first openers race safely: exactly one creates and initialises;
 * the others wait (up to 5 s) until the segment is ready. Attaching to an
 * existing segment uses the segment's own parameters (size, chunk size,
 * limits, default TTL); the layout options in o are then ignored.
 *
 * Returns 0 and *out, or:
 *   SHMC_EINVAL    bad name, flags or NULL out
 *   SHMC_ENOENT    no such segment and no SHMC_CREATE
 *   SHMC_EEXIST    SHMC_CREATE|SHMC_EXCL and it exists
 *   SHMC_EPERM     the caller may not read and write the segment
 *   SHMC_EVERSION  made by an incompatible build (magic or layout signature)
 *   SHMC_ECORRUPT  header fails validation, truncated, or creator died
 *                  during initialisation (shmc_unlink() and recreate)
 *   SHMC_ETIMEDOUT another process is still initialising it after 5 s
 *   SHMC_ETOOMANY  every process slot is taken by a live process
 *   SHMC_ENOMEM, -errno (shm_open, ftruncate, mmap failures)
 * shmc_errmsg(NULL) tells the details. Thread-safe. The caller owns *out and
 * releases it with shmc_close(). */
int shmc_open(const char *name, const shmc_opts *o, int flags, shmc_cache **out);

/* Detach: releases this process's slots (the segment and its data stay).
 * NULL is fine. No other thread may use c during or after the call.
 * Returns 0. */
int shmc_close(shmc_cache *c);

/* Remove the segment's name. Attached processes keep working on it; the
 * memory goes away when the last one detaches. Returns 0, SHMC_ENOENT,
 * SHMC_EINVAL (bad name), SHMC_EPERM or -errno. */
int shmc_unlink(const char *name);

/* ------------------------------------------------------------ operations */

/* Copy the value of key into buf (cap bytes). *vlen receives the value's
 * length. Never blocks, never takes a lock, never writes shared memory on a
 * hit except the item's reference bit when clear.
 * Returns 0, SHMC_ENOTFOUND (absent or expired), SHMC_ERANGE (cap too small:
 * *vlen holds the size needed, buf unchanged), SHMC_EINVAL (NULL c, key,
 * vlen, or buf with cap > 0; klen 0), SHMC_ETOOBIG (klen over the limit),
 * SHMC_ECORRUPT (the index points outside the data area). Thread-safe. */
int shmc_get(shmc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
             size_t *vlen);

/* Store key -> val for ttl_ms milliseconds (0 = the default TTL; the default
 * default is "never"). Without TTL jitter the item never expires before
 * ttl_ms has passed, and at most one coarse-clock tick (about 4 ms) after. flags: SHMC_NX or SHMC_XX (not both);
 * SHMC_WRITE_THROUGH / SHMC_WRITE_BEHIND need an uplink.
 * Returns 0, SHMC_EEXIST (NX and present), SHMC_ENOTFOUND (XX and absent),
 * SHMC_EINVAL, SHMC_ETOOBIG (key or value over the limit), SHMC_ENOSPC (no
 * log memory can be freed, or the index bucket and its neighbours are full),
 * SHMC_EPERM (read-only handle), SHMC_EUPLINK (write-through without an
 * uplink), SHMC_ECORRUPT (the key's bucket points outside the data area).
 * On failure the previous value, if any, is untouched.
 * Thread-safe; writers of the same key serialise on its bucket lock. */
int shmc_set(shmc_cache *c, const void *key, size_t klen, const void *val,
             size_t vlen, uint32_t ttl_ms, int flags);

/* Remove key. Returns 0, SHMC_ENOTFOUND, SHMC_EINVAL, SHMC_ETOOBIG,
 * SHMC_EPERM, SHMC_ECORRUPT. Thread-safe. A fill of key in flight
 * (shmc_fetch) stores nothing. */
int shmc_del(shmc_cache *c, const void *key, size_t klen);

/* shmc_del() with flags: SHMC_WRITE_THROUGH deletes the key in the remote
 * tier first (if that fails, SHMC_EUPLINK and L1 is untouched);
 * SHMC_WRITE_BEHIND queues the remote delete after the local one. The
 * return code otherwise reports the local delete (SHMC_ENOTFOUND if the
 * key was not in L1, even though the remote delete was done). */
int shmc_del_flags(shmc_cache *c, const void *key, size_t klen, int flags);

/* Add delta to the decimal integer stored at key and store the result (as
 * decimal ASCII); an absent key counts as 0 and is created with the default
 * TTL; a present key keeps its expiry. *out (may be NULL) receives the new
 * value. Returns 0, SHMC_ENOTNUM (value is not a decimal int64),
 * SHMC_EOVERFLOW (result out of int64 range; nothing stored), SHMC_EINVAL,
 * SHMC_ETOOBIG, SHMC_ENOSPC, SHMC_EPERM. Atomic host-wide. Thread-safe. */
int shmc_incr(shmc_cache *c, const void *key, size_t klen, int64_t delta,
              int64_t *out);

/* ------------------------------------------------------ zero-copy reads */

/* Enter a read section on the calling thread. Sections nest; each
 * shmc_read_begin() needs one shmc_read_end() on the same thread.
 * Returns 0, SHMC_EINVAL (c NULL), SHMC_ETOOMANY (no free thread slot). */
int shmc_read_begin(shmc_cache *c);

/* Inside a read section: *val points at the value in shared memory and *vlen
 * is its length. The bytes stay valid and unchanged until the outermost
 * shmc_read_end() of the calling thread, whatever other processes write or
 * delete meanwhile. Do not write through *val.
 * Returns 0, SHMC_ENOTFOUND, SHMC_EINVAL (no read section on this thread,
 * NULL arguments), SHMC_ETOOBIG, SHMC_ECORRUPT. Thread-safe. */
int shmc_get_ref(shmc_cache *c, const void *key, size_t klen, const void **val,
                 size_t *vlen);

/* Leave a read section. Returns 0 or SHMC_EINVAL (not in a section). */
int shmc_read_end(shmc_cache *c);

/* ---------------------------------------------------------- read-through */

/* A loader returns 0 with *val allocated by malloc(3) (the library frees it
 * with free(3)), *vlen and *ttl_ms set (0 = default), SHMC_ENOTFOUND for
 * "absent", or another negative code for an error. */
typedef int (*shmc_loader_fn)(void *arg, const void *key, size_t klen, void **val,
                              size_t *vlen, uint32_t *ttl_ms);

/* Read-through. L1 first; on a miss exactly one caller on the host runs the
 * loader (loader NULL = the uplink) while every other caller of the same
 * key, in any process, waits for its result instead of going to the
 * origin:
 *  - the first caller to miss installs a fill lease for the key; the others
 *    wait on it (a futex in the segment) for at most the fill timeout
 *    (shmc_opts_set_fill_timeout, default 5 s);
 *  - the filler stores the value with the TTL the loader returned and wakes
 *    them; each returns the value;
 *  - if the filler dies or overruns its deadline, exactly one waiter takes
 *    the lease over and runs the loader itself;
 *  - a shmc_set() or shmc_del() of the key while a fill is in flight wins:
 *    the fill's result is returned to its caller but not stored.
 * Negative caching: a loader's SHMC_ENOTFOUND is cached as "absent" for the
 * segment's negative TTL (shmc_opts_set_negative_ttl, default 1 s): later
 * fetches return SHMC_ENOTFOUND at once without calling the loader (plain
 * shmc_get also reports SHMC_ENOTFOUND).
 * Stale-while-revalidate: in a segment created with a stale window
 * (shmc_opts_set_stale_window), an item past its TTL but inside the window
 * is returned at once and one refresh per host runs in the background, on a
 * library thread of the process that found it stale, with the loader and
 * arg of that call: arg must then stay valid until shmc_close(). If the
 * refresh fails, the stale value keeps being served (stale-if-error) until
 * the window ends. shmc_get() never returns a stale item.
 * Returns what shmc_get() returns, plus: the loader's own error codes (also
 * to every waiter of that fill); SHMC_ETOOBIG if the loaded value cannot be
 * stored (nothing is cached, waiters get the same code); SHMC_ETIMEDOUT if
 * a fill took longer than the fill timeout and could not be taken over;
 * SHMC_EUPLINK when loader is NULL and no uplink is configured. A full
 * cache (SHMC_ENOSPC) still returns the loaded value; a read-only handle
 * returns it without storing it. Thread-safe, process-safe. */
int shmc_fetch(shmc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
               size_t *vlen, shmc_loader_fn loader, void *arg);

/* One key of shmc_fetch_many(): the caller sets key, klen, buf and cap. */
struct shmc_fetch_item {
	const void *key;
	size_t klen;
	void *buf;   /* the value is copied here */
	size_t cap;
	size_t vlen; /* out: the value's length (also with SHMC_ERANGE) */
	int rc;      /* out: what shmc_fetch() would have returned for this key */
};

/* shmc_fetch() for n keys at once, with the same guarantees per key. With
 * loader NULL and an uplink, the misses this call fills go to the remote
 * tier together, as one pipelined batch: n misses cost one round trip and
 * one wait instead of n (a key another caller is already filling is
 * waited for, as shmc_fetch() would). Longer calls go out a batch at a
 * time, so that one call never holds more fill leases than one batch's
 * (the uplink's batch option, and at most an eighth of the segment's
 * lease records, which every process's misses share). With a loader, or
 * without an uplink, the keys are fetched one after the other. Each item's
 * rc and vlen say how its key went (an invalid key or buffer fails that
 * item only).
 * Returns the number of items whose rc is 0, or, with no item touched,
 * SHMC_EINVAL (c NULL, items NULL with n > 0, n > INT_MAX) or the error
 * that registering the calling thread met (as any call can).
 * Thread-safe, process-safe. */
int shmc_fetch_many(shmc_cache *c, struct shmc_fetch_item *items, size_t n,
                    shmc_loader_fn loader, void *arg);

/* ----------------------------------------------------------------- stats */

/* Host-wide totals. Counters are summed over every attached thread plus the
 * totals folded in from detached ones; they are monotonic except items and
 * the byte gauges. Fields are only ever appended. */
struct shmc_stats {
	/* operations */
	uint64_t gets;        /* shmc_get / shmc_get_ref / shmc_fetch lookups */
	uint64_t hits;
	uint64_t misses;      /* absent or expired */
	uint64_t sets;        /* successful stores (set, incr) */
	uint64_t deletes;     /* successful deletes */
	uint64_t incrs;       /* successful increments */
	uint64_t expirations; /* expired items found by readers or writers */
	uint64_t evictions;   /* live items dropped to make room */
	uint64_t enospc;      /* writes refused with SHMC_ENOSPC */
	uint64_t bytes_written; /* item bytes appended to the log */
	/* memory */
	uint64_t items;        /* reachable items */
	uint64_t bytes_live;   /* header + key + value bytes of reachable items */
	uint64_t bytes_free;   /* bytes in free chunks and unused tails of open chunks */
	uint64_t data_bytes;   /* size of the data area */
	uint64_t segment_bytes;
	uint64_t chunks_total;
	uint64_t chunks_free;
	uint64_t chunks_open;
	uint64_t chunks_sealed;
	uint64_t index_slots;  /* capacity of the hash index */
	/* attachment */
	uint64_t procs_attached;
	uint64_t threads_attached;
	/* background roles */
	uint64_t sweeper_pid;       /* pid of the process holding the sweeper
				     * role (in its own pid namespace), 0 if
				     * no process holds it */
	uint64_t sweeper_handovers; /* times the role was taken from a dead holder */
	uint64_t sweeper_passes;    /* sweeper passes completed */
	uint64_t promotions;        /* items moved from the probationary log to main */
	uint64_t chunks_probation;  /* open or sealed chunks of the probationary log */
	/* evictions by cause (they sum to evictions) */
	uint64_t evictions_probation; /* left the probationary log unread */
	uint64_t evictions_clock;     /* main log: not read since CLOCK's last pass */
	uint64_t evictions_direct;    /* a writer found no free chunk at all */
	uint64_t bytes_dead;          /* bytes of unreachable items not yet reclaimed */
	uint64_t chunks_retired;      /* emptied, waiting for readers' grace period */
	/* read-through (shmc_fetch) */
	uint64_t fills;           /* fills completed by a filler (origin calls that returned) */
	uint64_t coalesced_waits; /* fetches that waited for another caller's fill */
	uint64_t origin_calls;    /* loader (or uplink) calls, refreshes included */
	uint64_t lease_takeovers; /* fills taken over from a dead or late filler */
	uint64_t negative_hits;   /* fetches answered "absent" from a cached negative */
	uint64_t stale_serves;    /* fetches answered with a stale value */
	uint64_t refreshes;       /* background refreshes run */
	uint64_t loader_errors;   /* loader calls that failed (not "absent") */
	uint64_t stale_if_error;  /* stale serves while the last refresh had failed */
	/* the uplink (remote tier), summed over every process's uplink thread */
	uint64_t uplink_batches;      /* pipelined round trips (remote calls) */
	uint64_t uplink_ops;          /* operations in them: batch size = ops / batches */
	uint64_t uplink_err_connect;  /* connection failures */
	uint64_t uplink_err_timeout;  /* round trips past command_timeout_ms */
	uint64_t uplink_err_protocol; /* garbage or wrong reply types */
	uint64_t uplink_err_reply;    /* error replies from the server */
	uint64_t uplink_fast_fails;   /* operations refused while a breaker was open */
	uint64_t uplink_breaker_opens;/* times a node's breaker opened */
	uint64_t uplink_redirects;    /* cluster MOVED and ASK */
	uint64_t uplink_topology_refreshes; /* cluster slot-map reloads */
	uint64_t write_behind_queued;
	uint64_t write_behind_dropped; /* queue full or handle closing */
	uint64_t write_behind_failed;  /* the remote tier refused them */
	uint64_t reserved2[8];
};

/* Fill *out with host-wide totals. Reads every thread slot and reaps any
 * dead process it meets (so procs_attached counts live ones); costs
 * microseconds, not for the hot path. Returns 0 or SHMC_EINVAL.
 * Thread-safe. (The struct is used with its tag: C does not let a typedef
 * and a function share the name shmc_stats.) */
int shmc_stats(shmc_cache *c, struct shmc_stats *out);

/* One attached process's share of the counters (its live threads plus
 * those it has released). */
struct shmc_proc_stats {
	uint64_t pid;          /* in its own pid namespace; display only */
	uint64_t attach_unix_ms;
	uint64_t threads;      /* threads with a slot */
	uint64_t gets, hits, misses, sets, deletes, incrs;
	uint64_t evictions, expirations, enospc, bytes_written;
	uint64_t reserved[8];
};

/* Per-process breakdown: fills out[0..min(cap, *n)) and sets *n to the
 * number of attached live processes (call with cap 0 to size the array).
 * Counts of threads that have exited stay with their process; those of
 * dead processes are in shmc_stats() totals only. Returns 0 or
 * SHMC_EINVAL. Thread-safe. */
int shmc_stats_procs(shmc_cache *c, struct shmc_proc_stats *out, size_t cap, size_t *n);

/* ------------------------------------------------------- latency, hot keys */

/* Operations whose latency is sampled. */
enum shmc_op {
	SHMC_OP_GET = 0,
	SHMC_OP_SET = 1,
	SHMC_OP_FETCH = 2,
	SHMC_OP_UPLINK = 3, /* one pipelined round trip of the uplink thread */
	SHMC_NOPS = 4
};

/* Host-wide latency summary of one operation, from a log-linear histogram
 * of sampled calls (one in shmc_opts_set_sampling()'s period per thread).
 * Percentiles are bucket midpoints: within 1.6% of the true sampled
 * value. count is the number of samples, not of calls. */
struct shmc_latency {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
};
int shmc_latency(shmc_cache *c, enum shmc_op op, struct shmc_latency *out);

/* The raw histogram for exporters: bucket i counts samples of latency in
 * [shmc_latency_bucket_lower(i), shmc_latency_bucket_lower(i + 1)) ns;
 * the last bucket is open-ended. Fills counts[0..SHMC_LATENCY_BUCKETS). */
#define SHMC_LATENCY_BUCKETS 960
uint64_t shmc_latency_bucket_lower(unsigned i);
int shmc_latency_histogram(shmc_cache *c, enum shmc_op op, uint64_t counts[SHMC_LATENCY_BUCKETS]);

/* Hot keys: a space-saving sketch of sampled lookups, host-wide. count is
 * an estimate of the lookups of the key (sampled count times the sampling
 * period) that overestimates by at most error. Keys longer than
 * SHMC_HOTKEY_MAX are shown truncated. */
#define SHMC_HOTKEY_MAX 64
#define SHMC_HOTKEYS_DEFAULT 20
struct shmc_hotkey {
	unsigned char key[SHMC_HOTKEY_MAX];
	size_t klen;       /* bytes in key */
	int truncated;     /* the real key is longer */
	uint64_t count;
	uint64_t error;
};

/* The hottest keys, hottest first: fills out[0..*n) with *n <= cap.
 * Returns 0 or SHMC_EINVAL. Thread-safe. */
int shmc_hotkeys(shmc_cache *c, struct shmc_hotkey *out, size_t cap, size_t *n);

/* ---------------------------------------------------------- uplink nodes */

/* States of the circuit breaker a process's uplink keeps for each remote
 * node (see shmc_opts_set_uplink: breaker_failures, breaker_open_ms). */
enum shmc_breaker_state {
	SHMC_BREAKER_CLOSED = 0,    /* requests go to the node */
	SHMC_BREAKER_OPEN = 1,      /* requests fail at once with SHMC_EUPLINK */
	SHMC_BREAKER_HALF_OPEN = 2, /* breaker_open_ms are over: the next request
				     * or health check is the probe, which
				     * closes it (success) or opens it again */
};

#define SHMC_UPLINK_ADDR_MAX 128

/* One remote node as one process's uplink thread sees it. */
struct shmc_uplink_node {
	char addr[SHMC_UPLINK_ADDR_MAX]; /* "host:port", "[v6 address]:port" or the
					  * unix socket path, NUL-terminated; one
					  * longer than 87 bytes is cut and ends
					  * in "..." */
	uint64_t pid;           /* the process (in its own pid namespace;
				 * display only) */
	uint32_t state;         /* enum shmc_breaker_state */
	uint32_t failures;      /* consecutive failures of the node (connect,
				 * timeout, garbage); 0 after a success */
	uint64_t breaker_opens; /* times this process's breaker of the node
				 * opened */
	uint64_t reserved[4];
};

/* The breakers of the host: one entry per remote node per attached
 * process that uses an uplink (each such process keeps its own
 * connections and breakers). Fills out[0..min(cap, *n)) and sets *n to the
 * number of entries (call with cap 0 to size the array), in no particular
 * order. Works on any handle, one without an uplink included.
 * An uplink thread publishes its nodes' states in the segment when they
 * change, within about 50 ms; a node is listed from the uplink's start (a
 * cluster's nodes as they are discovered) until its process closes the
 * handle or dies. The segment has room for 4 entries per process slot
 * (shmc_opts_set_max_procs), at least 64; nodes beyond that are not
 * listed. Returns 0 or SHMC_EINVAL. Thread-safe. */
int shmc_uplink_nodes(shmc_cache *c, struct shmc_uplink_node *out, size_t cap, size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* SHMCACHE_H */
