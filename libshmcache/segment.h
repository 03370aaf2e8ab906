/*
 * segment.h - the shared-memory object and its header.
 *
 * Segment layout (every region starts 64-byte aligned; offsets are relative
 * to the start of the mapping, never pointers):
 *
 *   [header 4 KiB][proc slots][thread slots][histograms, hot keys]
 *   [fill leases][uplink nodes][buckets][chunk table][data]
 *
 * The header's first 16 bytes (magic, layout signature) never move, so any
 * build can tell a foreign segment apart. Everything a process needs for
 * address arithmetic is copied from the header into its handle once, after
 * validation, and never re-read: a later scribble on the header cannot send
 * a process outside its mapping.
 */
#ifndef SHMC_SEGMENT_H
#define SHMC_SEGMENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SHMC__MAGIC 0x3143414d48535f00ull /* "\0_SHMAC1" little-endian */
#define SHMC__FORMAT_VERSION 1u
#define SHMC__HEADER_BYTES 4096u
#define SHMC__NAME_MAX 200u

/* header.state */
enum {
	SHMC__SEG_INIT = 1,  /* being initialised by its creator */
	SHMC__SEG_READY = 2, /* fully built; immutable fields are final */
};

/* Counters kept per thread slot and folded into the header when a slot is
 * released. Order is part of the layout signature. */
#define SHMC__COUNTER_MAP(X)                                                     \
	X(gets) X(misses) X(sets) X(deletes) X(incrs) X(expirations)             \
	X(evicted_probation) X(evicted_clock) X(evicted_direct) X(enospc)        \
	X(bytes_written) X(items_added) X(items_removed) X(promotions)           \
	X(fills) X(coalesced_waits) X(origin_calls) X(lease_takeovers)           \
	X(negative_hits) X(stale_serves) X(refreshes) X(loader_errors)           \
	X(stale_if_error)                                                         \
	X(uplink_batches) X(uplink_ops) X(uplink_err_connect)                     \
	X(uplink_err_timeout) X(uplink_err_protocol) X(uplink_err_reply)          \
	X(uplink_fast_fails) X(uplink_breaker_opens) X(uplink_redirects)          \
	X(uplink_topology_refreshes) X(write_behind_queued)                       \
	X(write_behind_dropped) X(write_behind_failed)

/* A background role's lease and its persisted state. Whoever holds the
 * lease (a robust, process-shared mutex) runs the role; when the holder
 * dies the kernel hands the mutex to a waiter with EOWNERDEAD, and the new
 * holder resumes from the fields below. */
enum { SHMC__ROLE_SWEEPER = 0, SHMC__NROLES = 1 };

struct shmc__role {
	pthread_mutex_t lease;
	uint32_t holder_pid;   /* display only; 0 = nobody holds it */
	uint32_t wake;         /* futex word: bumped to wake the holder early */
	uint64_t handovers;    /* times taken from a dead holder */
	uint64_t passes;       /* passes completed */
	uint64_t cursor;       /* sweeper: where the expiry walk resumes */
	uint32_t holder_proc;  /* proc slot + 1 of the holder: tells a dead one */
	uint32_t reserved32;
	uint64_t reserved[3];
};

enum shmc__counter {
#define SHMC__COUNTER_ENUM_(n) SHMC__CTR_##n,
	SHMC__COUNTER_MAP(SHMC__COUNTER_ENUM_)
#undef SHMC__COUNTER_ENUM_
	SHMC__NCOUNTERS
};

struct shmc__header {
	/* Immutable once state is READY; written by the creator only. */
	uint64_t magic;            /* SHMC__MAGIC */
	uint64_t layout_sig;       /* shmc__layout_signature() of the creator */
	uint32_t state;            /* SHMC__SEG_*; release-stored READY last */
	uint32_t creator_uid;
	uint64_t segment_bytes;    /* == ftruncate size */
	uint64_t created_unix_ms;
	uint32_t chunk_bytes;      /* power of two */
	uint32_t nchunks;
	uint32_t nbuckets;
	uint32_t max_procs;
	uint32_t max_threads;
	uint32_t max_key_bytes;
	uint32_t default_ttl_ms;
	uint32_t ttl_jitter_pct;   /* TTLs spread by +- this percentage */
	uint64_t off_procs;
	uint64_t off_threads;
	uint64_t off_buckets;
	uint64_t off_chunks;
	uint64_t off_data;
	uint64_t off_obs;          /* struct shmc__obs (obs.h) */
	uint64_t off_leases;       /* nleases struct shmc__lease (lease.h) */
	uint32_t nleases;
	uint32_t negative_ttl_ms;  /* TTL of cached "absent" answers */
	uint32_t stale_ms;         /* stale window past an item's TTL */
	uint32_t nunodes;          /* entries of the uplink node table */
	uint64_t off_unodes;       /* nunodes struct shmc__unode (unodes.h) */
	uint64_t reserved_immutable[7];
	/* XXH64 of every immutable field above (this one counted as 0):
	 * catches a scribble that leaves the geometry plausible. */
	uint64_t immutable_sum;

	/* RCU grace-period counter: starts at 1, incremented (full barrier) by
	 * every retirement. Read by readers on section entry. Own line. */
	_Alignas(64) uint64_t gp_ctr;

	/* Chunk allocator: a robust process-shared mutex serialises chunk
	 * state changes FREE->OPEN and RETIRED->FREE. alloc_rotor is where the
	 * next scan starts: a hint, any value is safe. */
	_Alignas(64) pthread_mutex_t alloc_lock;
	uint32_t alloc_rotor;
	uint32_t reserved_alloc; /* unused; keeps the layout */
	uint64_t chunk_seq; /* chunks opened so far (under alloc_lock): ages */

	/* Coarse clock: CLOCK_MONOTONIC milliseconds, stored every tick (2 ms)
	 * by the sweeper while the cache is busy, so that readers check
	 * expiry without a clock call; 0 when no sweeper keeps it (idle, or
	 * none runs: readers then read the clock). It only ever lags real
	 * time, so items expire late, never early. Own line: written often,
	 * read by every GET of an item with a TTL. */
	_Alignas(64) uint64_t clock_ms;

	/* Background roles: one lease each (see role.h). */
	_Alignas(64) struct shmc__role role[SHMC__NROLES];

	/* Counters of released thread slots (atomic adds by the releaser). */
	_Alignas(64) uint64_t folded[SHMC__NCOUNTERS];
};
_Static_assert(sizeof(struct shmc__header) <= SHMC__HEADER_BYTES, "header fits");
_Static_assert(__builtin_offsetof(struct shmc__header, layout_sig) == 8,
	       "signature position is fixed forever");

/* XXH64 of the format version and the size and field offsets of every shared
 * struct: two builds share a segment only if they agree on all of them. */
uint64_t shmc__layout_signature(void);

#endif

#ifndef SHMC_SEGMENT_FUNCS
#define SHMC_SEGMENT_FUNCS
struct shmc_cache;
struct shmc_opts;

/* Build "/shmc.<name>" into path (size >= SHMC__NAME_MAX + 8). Returns 0 or
 * SHMC_EINVAL for a name that is empty, too long or has a byte outside
 * [A-Za-z0-9._-]. */
int shmc__segment_path(const char *name, char *path, size_t cap);

/* Internal open flag: map read-only, for inspection tools (verify). */
#define SHMC__INSPECT 0x100

/* Create or attach (per SHMC_CREATE / SHMC_EXCL, or SHMC__INSPECT) and
 * validate; on success
 * c->fd, c->base, the region pointers and c->geo are set. */
int shmc__segment_open(struct shmc_cache *c, const char *name,
		       const struct shmc_opts *o, int flags);

/* Unmap and close what shmc__segment_open() set up. */
void shmc__segment_close(struct shmc_cache *c);
#endif
