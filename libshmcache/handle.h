/*
 * handle.h - the process-local side: the handle, per-thread contexts, and
 * the helpers every module uses. Nothing here lives in shared memory.
 */
#ifndef SHMC_HANDLE_H
#define SHMC_HANDLE_H

#include "shmcache.h"

#include "index.h"
#include "log.h"
#include "proc.h"
#include "segment.h"

#include "atomic.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Geometry validated at attach and copied here; the hot path never trusts
 * the header again. */
struct shmc__geometry {
	uint64_t segment_bytes;
	uint64_t data_bytes;
	uint32_t chunk_bytes;
	uint32_t chunk_shift;
	uint32_t nchunks;
	uint32_t nbuckets;
	uint32_t max_procs;
	uint32_t max_threads;
	uint32_t max_key_bytes;
	uint32_t default_ttl_ms;
	uint32_t ttl_jitter_pct;
	uint32_t nleases;
	uint32_t negative_ttl_ms;
	uint32_t stale_ms;
	uint32_t nunodes;
};

/* A thread's open chunk of one log. */
struct shmc__open_chunk {
	uint32_t chunk;        /* chunk index + 1, 0 = none */
	uint64_t used;         /* private copy of chunks[chunk-1].used */
	uint64_t base_ms;
	uint64_t expire_max;   /* private copies of chunks[chunk-1].expire_* */
	uint64_t expire_min;
};

/* One per (thread, handle). Owned by the handle; reached through a small
 * thread-local cache keyed by the handle's serial. */
struct shmc__tctx {
	struct shmc__thread_slot *slot;
	uint32_t slot_idx;
	uint32_t lock_id;      /* value this thread stores in bucket locks */
	uint32_t read_depth;   /* nesting of read sections */
	bool making_room;      /* inside an eviction step: a chunk opened now
				* must not start another one */
	uint32_t sample_countdown; /* operations until the next sampled one */
	struct shmc__open_chunk open[SHMC__NLOGS];
	pthread_t thread;
	struct shmc__tctx *next; /* in cache->tctx_list, under cache->lock */
};

struct shmc_cache {
	uint64_t serial;         /* process-unique, never reused */
	uint64_t fork_gen;       /* shmc__fork_gen when last registered */
	char name[SHMC__NAME_MAX + 8];
	int fd;
	int flags;               /* SHMC_RDONLY etc. */
	bool fence_readers;      /* membarrier unavailable: readers fence */

	unsigned char *base;     /* the mapping */
	struct shmc__header *hdr;
	struct shmc__proc_slot *procs;
	struct shmc__thread_slot *threads;
	struct shmc__bucket *buckets;
	struct shmc__chunk *chunks;
	unsigned char *data;
	struct shmc__obs *obs;
	struct shmc__lease *leases;
	struct shmc__unode *unodes; /* the uplink node table (unodes.h) */
	uint32_t sample_period;  /* 0 = no sampling (this process's choice) */
	uint32_t fill_timeout_ms;
	double xfetch_beta;      /* 0 = no early refresh */
	uint64_t loader_avg_ns;  /* recent loader duration (fetch.c) */
	struct shmc__refresher *refresher; /* fetch.c; started on first use */
	char *uplink_uri;        /* NULL = no remote tier */
	struct shmc__uplink *uplink; /* uplink.c: this process's uplink thread */
	struct shmc__uplink *uplink_forgotten; /* the fork parent's (not ours) */
	struct shmc__geometry geo;
	uint32_t proc_idx;

	pthread_mutex_t lock;    /* tctx_list, re-registration after fork */
	/* Serializes this handle's reapers (proc.c). An OFD lock belongs to
	 * the open file description, so two threads sharing fd would both
	 * "hold" a dead slot's lock at once; without this, one could free the
	 * dead thread slots, a new process claim one and open a chunk, and the
	 * other seal that live chunk as the dead thread's. Taken after lock. */
	pthread_mutex_t reap_lock;
	struct shmc__tctx *tctx_list;
	bool run_roles;          /* opened with the sweeper enabled */
	struct shmc__role_thread *roles; /* this process's role thread (role.c) */
	struct shmc_cache *registry_next; /* in the process-wide registry */
};

/* Internal only, never returned to callers: retry the operation. */
#define SHMC_EAGAIN_INTERNAL (-1999)

/* Bumped in every fork child; a handle whose fork_gen differs re-registers. */
extern uint64_t shmc__fork_gen;

/* Record a detailed message for shmc_errmsg(c) and return err. */
int shmc__fail(const shmc_cache *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The calling thread's context for c, creating it (and claiming a thread
 * slot) on first use. NULL with the error recorded in *err. */
struct shmc__tctx *shmc__tctx_slow(shmc_cache *c, int *err);

#define SHMC__TLS_WAYS 4
struct shmc__tls_entry {
	uint64_t serial;
	struct shmc__tctx *tctx;
};
/* initial-exec: a direct %fs access on every call instead of a
 * __tls_get_addr call; 64 bytes fit glibc's static TLS surplus even when
 * the library is loaded with dlopen(). */
#define SHMC__TLS_MODEL __attribute__((tls_model("initial-exec")))
extern __thread struct shmc__tls_entry shmc__tls[SHMC__TLS_WAYS] SHMC__TLS_MODEL;

static inline struct shmc__tctx *shmc__tctx_get(shmc_cache *c, int *err)
{
	for (int i = 0; i < SHMC__TLS_WAYS; i++)
		if (shmc__tls[i].serial == c->serial)
			return shmc__tls[i].tctx;
	return shmc__tctx_slow(c, err);
}

/* Counter bump by the slot's owner thread: a plain store, no RMW, no
 * shared line written by anyone else. */
static inline void shmc__count(struct shmc__tctx *t, enum shmc__counter k, uint64_t n)
{
	uint64_t *p = &t->slot->counters[k];
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* fetch.c: stop the process's refresher thread (at close), or forget the
 * parent's (in a fork child). */
void shmc__refresher_stop(shmc_cache *c);
void shmc__refresher_forget(shmc_cache *c);

/* Coarse monotonic milliseconds (vDSO, no system call). */
uint64_t shmc__now_ms(void);

/* The segment's coarse clock for expiry checks: the sweeper's copy in the
 * header when one keeps it (a load, no clock call), else the clock. Never
 * ahead of shmc__now_ms(). */
static inline uint64_t shmc__clock_ms(const shmc_cache *c)
{
	uint64_t v = CMM_LOAD_SHARED(c->hdr->clock_ms);
	return v ? v : shmc__now_ms();
}

/* Forget a header clock that has not moved for a long while (its sweeper
 * died and no process took the role over), so that readers fall back to
 * the real clock. Called now and then by readers and by every writer. */
void shmc__clock_check(shmc_cache *c, uint64_t now);

/* true if this operation is to be sampled (timed, its key sketched): one
 * in c->sample_period per thread. A private countdown, no shared store. */
static inline bool shmc__sample_now(const shmc_cache *c, struct shmc__tctx *t)
{
	if (__builtin_expect(--t->sample_countdown != 0, 1))
		return false;
	t->sample_countdown = c->sample_period ? c->sample_period : UINT32_MAX;
	return c->sample_period != 0;
}

/* Chunk a data offset falls in. */
static inline uint32_t shmc__chunk_of(const shmc_cache *c, uint64_t off)
{
	return (uint32_t)(off >> c->geo.chunk_shift);
}

#endif
