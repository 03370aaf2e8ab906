/*
 * shmcache-bench.c - prefork load generator for libshmcache.
 *
 * The parent creates a segment, preloads N fixed-size keys, closes its handle
 * and forks P workers that attach by name (the way a prefork server's workers
 * would), so every run also exercises attach. Workers precompute their whole
 * key sequence before a shared start flag is raised, then run a timed loop in
 * which the only work besides the cache operation is reading the next index
 * and, once per 64 operations, two clock reads around a single operation.
 *
 * Every workload also runs on "the floor": a plain, unsynchronised
 * open-addressing table in a shared mapping, hashed with the same XXH3. It
 * does the minimum any shared hash table must do (hash, probe, compare,
 * copy), so ours / floor says how much the cache's safety costs, and the
 * floor's own 2p/1p scaling tells how much of our scaling loss is the
 * machine's (memory bandwidth, shared caches) rather than ours.
 *
 * A separate memory phase fills a fresh 64 MiB segment until it is full and
 * reports the overhead per item, counting every byte that is not payload;
 * then it keeps writing new keys (and overwriting some) under eviction and
 * reports which share of the data area holds payload at steady state. It
 * runs with --value-size and again with 1 KiB values.
 *
 * --trace measures eviction quality instead: see trace.c. --herd
 * (herd.c) measures read-through under expiry, --uplink (uplink.c) the
 * Redis uplink next to redis-benchmark; both take options of their own.
 *
 * --peers runs the GET workloads against other stores as well (memcached,
 * Redis plain and pipelined, LMDB), each in the same run as the floor and
 * ours, through the same workers and key sequences: see peers.c for how
 * each is run and reached.
 *
 * --sampling-overhead measures what the library's own observability costs:
 * the get-zipf workload with every worker's handle sampling one operation
 * in 64 (the library's default: a timed operation feeds the latency
 * histograms and the hot-key sketch) and with sampling off, alternating
 * several times in one run so that drift hits both alike; the medians'
 * ratio on/off is the price (the target is >= 0.97).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Inlined so that the floor needs no extra link dependency; it is the same
 * XXH3_64bits algorithm the library uses. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shmcache.h"

#include "bench.h"

/* ------------------------------------------------------------ constants */

#define SEQ_LEN (1u << 20)            /* precomputed ops per worker (power of 2) */
#define SEQ_MASK (SEQ_LEN - 1u)
#define OP_SET_BIT 0x80000000u        /* sequence entry: do a SET, not a GET */
#define OP_INDEX_MASK 0x7fffffffu     /* sequence entry: the key index */
#define MAX_KEYS ((uint64_t)OP_INDEX_MASK)
#define CLOCK_CHECK_OPS 1024u         /* ops between deadline checks */
#define SAMPLE_EVERY 64u              /* one latency sample per this many ops */
#define SAMPLE_MAX_RATE 64e6          /* per-process ops/s the sample buffer fits */
#define SAMPLE_CAP_MAX (1u << 24)
#define SAMPLE_BUDGET_BYTES ((size_t)512 << 20) /* all workers' samples together */
#define MAX_PROCS_LIST 32
#define MAX_PROCS 1024u
#define MAX_VALUE_SIZE (16u << 20)
#define MIB ((size_t)1 << 20)
#define OVERHEAD_SEGMENT_BYTES (64 * MIB)
#define OVERHEAD_VALUE_SIZES 2        /* --value-size, then OVERHEAD_LARGE_VALUE */
#define OVERHEAD_LARGE_VALUE 1024u
#define STEADY_NEW_KEY_FILLS 4u       /* new keys written past the fill, in fills */
#define STEADY_SAMPLES 9u             /* odd: the median is one of them */
#define STEADY_OVERWRITE_EVERY 8u     /* one steady-state SET in this many overwrites */
#define STEADY_TARGET_PCT 80.0        /* payload share of the data area we aim for */
#define NAME_MAX_LEN 196              /* 200 allowed, minus the ".ovh" suffix */
#define READY_TIMEOUT_S 60.0          /* attach (5 s max) + sequence building */
#define FINISH_GRACE_S 60.0           /* past --seconds before a worker is killed */
#define POLL_NS 2000000L              /* parent's child-polling period */
#define SAMPLING_PERIOD 64u           /* the library's default sampling period */
#define SAMPLING_DEFAULT_RUNS 5u      /* --sampling-overhead without --runs */
#define SAMPLING_TARGET_RATIO 0.97    /* throughput with sampling / without */
#define SAMPLING_LIBRARY_DEFAULT (-1) /* worker opens with default options */
#define PEER_WARM_OPS 1024u           /* untimed GETs a socket peer's worker starts with */

/* ------------------------------------------------------------ workloads */

enum workload { WL_GET_UNIFORM, WL_GET_ZIPF, WL_MIX, WL_SET, WL_COUNT };

static const struct workload_info {
	const char *name;
	bool zipf;            /* zipf-distributed keys, else uniform */
	unsigned set_percent; /* share of operations that are SETs */
} workload_table[WL_COUNT] = {
	[WL_GET_UNIFORM] = { "get-uniform", false, 0 },
	[WL_GET_ZIPF] = { "get-zipf", true, 0 },
	[WL_MIX] = { "mix", true, 10 },
	[WL_SET] = { "set", true, 100 },
};

/* Where a worker's operations go: ours, the floor, or (--peers) peer p as
 * BACKEND_PEER + p. */
enum backend {
	BACKEND_SHMC,
	BACKEND_FLOOR,
	BACKEND_PEER,
	BACKEND_PEER_LAST = BACKEND_PEER + PEER_COUNT - 1,
};

static inline bool backend_is_peer(enum backend backend)
{
	return backend >= BACKEND_PEER;
}

static inline enum peer backend_peer(enum backend backend)
{
	return (enum peer)(backend - BACKEND_PEER);
}

/* --------------------------------------------------------------- config */

struct config {
	uint64_t keys;
	size_t key_size;
	size_t value_size;
	unsigned procs[MAX_PROCS_LIST];
	size_t nprocs;
	double seconds;
	bool workloads[WL_COUNT];
	bool workloads_given;
	double zipf_theta;
	size_t segment_bytes; /* 0 until derived from keys and sizes */
	bool floor;
	bool json;
	bool overhead_only;
	bool overhead;
	unsigned runs;
	bool runs_given;
	bool sampling_overhead;     /* only the sampling on/off comparison */
	bool peers;                 /* only the GET workloads against the peers */
	char name[NAME_MAX_LEN + 1];
	bool trace;                 /* only the eviction-quality traces (trace.c) */
	uint64_t trace_requests;
	uint64_t trace_keys;
	uint64_t trace_cache_items; /* 0 until derived from trace_cache_percent */
	double trace_cache_percent;
	uint64_t seed;
};

/* ----------------------------------------------------------------- zipf */

/* Zipf over ranks [0, n) by Gray et al., "Quickly generating billion-record
 * synthetic databases" (SIGMOD 1994): O(n) setup, O(1) per draw, no table.
 * Valid for 0 <= theta < 1. */
struct zipf {
	uint64_t n;
	double theta, alpha, zetan, eta, half_pow_theta;
};

static void zipf_init(struct zipf *z, uint64_t n, double theta)
{
	double zetan = 0.0;
	for (uint64_t i = 1; i <= n; i++)
		zetan += 1.0 / pow((double)i, theta);
	double zeta2 = 1.0 + pow(0.5, theta);
	z->n = n;
	z->theta = theta;
	z->alpha = 1.0 / (1.0 - theta);
	z->zetan = zetan;
	z->half_pow_theta = pow(0.5, theta);
	z->eta = n > 2 ? (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / zetan)
		       : 1.0;
}

static uint64_t zipf_next(const struct zipf *z, uint64_t *state)
{
	double u = uniform_unit(state);
	double uz = u * z->zetan;
	if (uz < 1.0 || z->n < 2)
		return 0;
	if (uz < 1.0 + z->half_pow_theta)
		return 1;
	uint64_t rank = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
	return rank < z->n ? rank : z->n - 1;
}

/* ---------------------------------------------------------------- clock */

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Cost of one clock_gettime pair: every latency sample includes it, so it
 * is printed next to the results rather than silently subtracted. */
static uint32_t timer_overhead_ns(void)
{
	enum { TRIES = 1001 };
	uint32_t d[TRIES];
	for (int i = 0; i < TRIES; i++) {
		uint64_t t0 = now_ns();
		uint64_t t1 = now_ns();
		d[i] = (uint32_t)(t1 - t0);
	}
	qsort(d, TRIES, sizeof d[0], compare_u32);
	return d[TRIES / 2];
}

/* -------------------------------------------------------------- dataset */

/* Everything workers read but never write. Built before fork, so children
 * share its pages copy-on-write and pay nothing to get it. */
struct dataset {
	uint64_t keys;
	size_t key_size;
	size_t value_size;
	size_t stamp_bytes;         /* leading value bytes that carry the index */
	char *key_bytes;            /* key i at key_bytes + i * key_size */
	unsigned char *value_template;
	uint32_t *rank_to_key;      /* zipf rank -> key index (a permutation) */
	struct zipf zipf;
};

static inline bool value_matches(const struct dataset *ds, const unsigned char *value,
				 size_t vlen, uint64_t i)
{
	return vlen == ds->value_size && memcmp(value, &i, ds->stamp_bytes) == 0;
}

static int dataset_build(struct dataset *ds, const struct config *cfg)
{
	ds->keys = cfg->keys;
	ds->key_size = cfg->key_size;
	ds->value_size = cfg->value_size;
	ds->stamp_bytes = cfg->value_size < sizeof(uint64_t) ? cfg->value_size
							     : sizeof(uint64_t);
	ds->key_bytes = malloc(ds->keys * ds->key_size);
	ds->value_template = malloc(ds->value_size ? ds->value_size : 1);
	ds->rank_to_key = malloc(ds->keys * sizeof(uint32_t));
	if (!ds->key_bytes || !ds->value_template || !ds->rank_to_key) {
		fprintf(stderr, "shmcache-bench: out of memory for %" PRIu64 " keys\n",
			ds->keys);
		return -1;
	}
	for (uint64_t i = 0; i < ds->keys; i++)
		key_format(ds->key_bytes + i * ds->key_size, ds->key_size, i);
	for (size_t j = 0; j < ds->value_size; j++)
		ds->value_template[j] = (unsigned char)(j * 131u + 7u);

	/* Zipf's hottest ranks map to scattered keys: without this the hot set
	 * would be the first keys preloaded, packed next to each other in the
	 * log, and the benchmark would measure that accidental locality. */
	uint64_t rng = xorshift_seed(0x5eedull);
	for (uint64_t i = 0; i < ds->keys; i++)
		ds->rank_to_key[i] = (uint32_t)i;
	for (uint64_t i = ds->keys - 1; i > 0; i--) {
		uint64_t j = range_map(xorshift_next(&rng), i + 1);
		uint32_t t = ds->rank_to_key[i];
		ds->rank_to_key[i] = ds->rank_to_key[j];
		ds->rank_to_key[j] = t;
	}
	zipf_init(&ds->zipf, ds->keys, cfg->zipf_theta);
	return 0;
}

static void dataset_free(struct dataset *ds)
{
	free(ds->key_bytes);
	free(ds->value_template);
	free(ds->rank_to_key);
	memset(ds, 0, sizeof *ds);
}

static inline const char *dataset_key(const struct dataset *ds, uint32_t i)
{
	return ds->key_bytes + (size_t)i * ds->key_size;
}

/* ---------------------------------------------------------------- floor */

/* The floor: linear probing over slots {key, value, used}, capacity twice
 * the keys, no locks, no versions, no expiry. The stride is rounded to 8
 * bytes as any real table would. Shared (MAP_SHARED) so that all workers
 * hit the same memory, as they do with the cache. */
struct floor_table {
	unsigned char *slots;
	size_t capacity;
	size_t stride;
	size_t used_offset;
	size_t map_bytes;
	size_t key_size;
	size_t value_size;
};

static inline size_t floor_home(const struct floor_table *f, const void *key)
{
	return (size_t)range_map(XXH3_64bits(key, f->key_size), f->capacity);
}

/* The slot holding key, or the empty slot where it would go. Terminates
 * because the table is never more than half full. */
static inline unsigned char *floor_probe(const struct floor_table *f, const void *key)
{
	size_t i = floor_home(f, key);
	for (;;) {
		unsigned char *slot = f->slots + i * f->stride;
		if (!slot[f->used_offset] || memcmp(slot, key, f->key_size) == 0)
			return slot;
		if (++i == f->capacity)
			i = 0;
	}
}

static inline int floor_get(const struct floor_table *f, const void *key, void *buf,
			    size_t *vlen)
{
	const unsigned char *slot = floor_probe(f, key);
	if (!slot[f->used_offset])
		return SHMC_ENOTFOUND;
	memcpy(buf, slot + f->key_size, f->value_size);
	*vlen = f->value_size;
	return 0;
}

static inline int floor_set(const struct floor_table *f, const void *key, const void *val)
{
	unsigned char *slot = floor_probe(f, key);
	if (!slot[f->used_offset])
		return SHMC_ENOTFOUND; /* workloads only overwrite preloaded keys */
	memcpy(slot + f->key_size, val, f->value_size);
	return 0;
}

static void floor_insert(const struct floor_table *f, const void *key, const void *val)
{
	unsigned char *slot = floor_probe(f, key);
	memcpy(slot, key, f->key_size);
	memcpy(slot + f->key_size, val, f->value_size);
	slot[f->used_offset] = 1;
}

static int floor_create(struct floor_table *f, const struct dataset *ds)
{
	f->key_size = ds->key_size;
	f->value_size = ds->value_size;
	f->used_offset = ds->key_size + ds->value_size;
	f->stride = (f->used_offset + 1 + 7) & ~(size_t)7;
	f->capacity = (size_t)ds->keys * 2;
	if (f->capacity > SIZE_MAX / f->stride) {
		fprintf(stderr, "shmcache-bench: floor table too large\n");
		return -1;
	}
	f->map_bytes = f->capacity * f->stride;
	void *p = mmap(NULL, f->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "shmcache-bench: floor mmap of %zu bytes: %s\n", f->map_bytes,
			strerror(errno));
		f->slots = NULL;
		return -1;
	}
	f->slots = p;

	unsigned char *value = malloc(ds->value_size ? ds->value_size : 1);
	if (!value) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		return -1;
	}
	memcpy(value, ds->value_template, ds->value_size);
	for (uint64_t i = 0; i < ds->keys; i++) {
		value_stamp(value, ds->stamp_bytes, i);
		floor_insert(f, dataset_key(ds, (uint32_t)i), value);
	}
	free(value);
	return 0;
}

static void floor_destroy(struct floor_table *f)
{
	if (f->slots)
		munmap(f->slots, f->map_bytes);
	f->slots = NULL;
}

/* --------------------------------------------------------- control block */

/* Written by worker id only, read by the parent after the worker exited
 * (waitpid orders the accesses). */
struct worker_result {
	uint64_t ops;
	uint64_t misses;
	uint64_t errors;
	uint64_t elapsed_ns;
	uint64_t cpu_ns;        /* CPU time of the timed loop (this thread) */
	uint64_t samples_taken; /* may exceed the buffer: it is then a ring */
	int32_t first_error;
	int32_t pad;
};

/* One per measurement, MAP_SHARED|MAP_ANONYMOUS, created before fork.
 * Latency samples follow the header: worker w owns sample_cap uint32_t. */
struct control {
	atomic_uint ready; /* workers done attaching and precomputing */
	atomic_int go;     /* 0 wait, 1 start, -1 abort */
	unsigned nworkers;
	size_t sample_cap;
	size_t map_bytes;
	size_t samples_offset;
	struct worker_result results[];
};

static inline uint32_t *control_samples(struct control *ctl, unsigned worker)
{
	return (uint32_t *)((char *)ctl + ctl->samples_offset) + (size_t)worker * ctl->sample_cap;
}

static struct control *control_create(unsigned nworkers, double seconds)
{
	double cap_d = seconds * SAMPLE_MAX_RATE / SAMPLE_EVERY + 4096.0;
	size_t cap = cap_d > SAMPLE_CAP_MAX ? SAMPLE_CAP_MAX : (size_t)cap_d;
	size_t budget = SAMPLE_BUDGET_BYTES / sizeof(uint32_t) / nworkers;
	if (cap > budget)
		cap = budget; /* the ring then keeps each worker's latest samples */
	size_t header = sizeof(struct control) + nworkers * sizeof(struct worker_result);
	size_t offset = (header + 63) & ~(size_t)63;
	size_t bytes = offset + (size_t)nworkers * cap * sizeof(uint32_t);
	/* MAP_NORESERVE: pages are only touched as samples are written. */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "shmcache-bench: control mmap: %s\n", strerror(errno));
		return NULL;
	}
	struct control *ctl = p;
	atomic_init(&ctl->ready, 0);
	atomic_init(&ctl->go, 0);
	ctl->nworkers = nworkers;
	ctl->sample_cap = cap;
	ctl->map_bytes = bytes;
	ctl->samples_offset = offset;
	return ctl;
}

static void control_destroy(struct control *ctl)
{
	if (ctl)
		munmap(ctl, ctl->map_bytes);
}

/* --------------------------------------------------------------- signals */

volatile sig_atomic_t bench_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	bench_interrupted = 1;
}

static void signals_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: sleeps return early so the parent notices at once,
	 * kills its workers and unlinks its segments. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void signals_default(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* ---------------------------------------------------------------- worker */

/* A worker's private state, in the child only. */
struct worker {
	const struct dataset *ds;
	const struct floor_table *floor_tab;
	shmc_cache *cache;
	struct peer_conn *peer;
	unsigned peer_batch;	     /* GETs per peer_get call */
	unsigned peer_sample_calls;  /* peer_get calls per latency sample */
	uint32_t *seq;
	unsigned char *get_buf; /* private copy-out buffer, hot in L1 (a batch of
				 * values for a pipelined peer) */
	unsigned char *set_buf; /* value pattern, stamped per SET */
	uint32_t *samples;
	size_t sample_cap;
	size_t sample_pos;
	uint64_t samples_taken;
	uint64_t ops;
	uint64_t misses;
	uint64_t errors;
	int first_error;
};

/* Deterministic per (workload, worker, run): ours and the floor replay
 * exactly the same operations. */
static void seq_build(uint32_t *seq, const struct dataset *ds, enum workload wl,
		      uint64_t seed)
{
	const struct workload_info *info = &workload_table[wl];
	uint64_t rng = xorshift_seed(seed);
	for (size_t k = 0; k < SEQ_LEN; k++) {
		uint32_t key;
		if (info->zipf)
			key = ds->rank_to_key[zipf_next(&ds->zipf, &rng)];
		else
			key = (uint32_t)range_map(xorshift_next(&rng), ds->keys);
		bool is_set = info->set_percent >= 100 ||
			      (info->set_percent > 0 &&
			       range_map(xorshift_next(&rng), 100) < info->set_percent);
		seq[k] = key | (is_set ? OP_SET_BIT : 0u);
	}
}

static inline __attribute__((always_inline)) int
op_execute(struct worker *w, enum backend backend, uint32_t code)
{
	const struct dataset *ds = w->ds;
	uint32_t i = code & OP_INDEX_MASK;
	const char *key = dataset_key(ds, i);

	if (code & OP_SET_BIT) {
		value_stamp(w->set_buf, ds->stamp_bytes, i);
		if (backend == BACKEND_SHMC)
			return shmc_set(w->cache, key, ds->key_size, w->set_buf,
					ds->value_size, 0, 0);
		return floor_set(w->floor_tab, key, w->set_buf);
	}

	size_t vlen = 0;
	int rc;
	if (backend == BACKEND_SHMC)
		rc = shmc_get(w->cache, key, ds->key_size, w->get_buf, ds->value_size, &vlen);
	else
		rc = floor_get(w->floor_tab, key, w->get_buf, &vlen);
	if (rc == 0 && !value_matches(ds, w->get_buf, vlen, i))
		rc = BENCH_EBADVALUE;
	return rc;
}

/* Kept out of line: it runs only when something is wrong. */
static __attribute__((noinline, cold)) void tally_failure(struct worker *w, int rc)
{
	if (rc == SHMC_ENOTFOUND) {
		w->misses++;
		return;
	}
	if (w->errors++ == 0)
		w->first_error = rc;
}

static inline __attribute__((always_inline)) void tally(struct worker *w, int rc)
{
	if (rc != 0)
		tally_failure(w, rc);
}

/* The sample buffer becomes a ring when full: the last samples are kept. */
static inline void sample_record(struct worker *w, uint64_t ns)
{
	w->samples[w->sample_pos] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	if (++w->sample_pos == w->sample_cap)
		w->sample_pos = 0;
	w->samples_taken++;
}

/* The hot loop: next op from the precomputed sequence, one timed op in 64,
 * a deadline check every 1024. Inlined per backend so that each loop is
 * straight-line code for one backend. */
static inline __attribute__((always_inline)) void
timed_loop(struct worker *w, enum backend backend, uint64_t deadline_ns)
{
	const uint32_t *seq = w->seq;
	size_t pos = 0;
	uint64_t ops = 0;

	for (;;) {
		for (unsigned group = 0; group < CLOCK_CHECK_OPS / SAMPLE_EVERY; group++) {
			uint64_t t0 = now_ns();
			int rc = op_execute(w, backend, seq[pos]);
			uint64_t t1 = now_ns();
			pos = (pos + 1) & SEQ_MASK;
			sample_record(w, t1 - t0);
			tally(w, rc);
			for (unsigned k = 1; k < SAMPLE_EVERY; k++) {
				tally(w, op_execute(w, backend, seq[pos]));
				pos = (pos + 1) & SEQ_MASK;
			}
		}
		ops += CLOCK_CHECK_OPS;
		if (now_ns() >= deadline_ns)
			break;
	}
	w->ops = ops;
}

static void timed_loop_shmc(struct worker *w, uint64_t deadline_ns)
{
	timed_loop(w, BACKEND_SHMC, deadline_ns);
}

static void timed_loop_floor(struct worker *w, uint64_t deadline_ns)
{
	timed_loop(w, BACKEND_FLOOR, deadline_ns);
}

/* One call to a peer: the n GETs of codes in one round trip, each checked
 * like ours (a miss, another key's value, or the request's failure counted
 * once per GET). */
static void peer_call(struct worker *w, const uint32_t *codes, unsigned n)
{
	const struct dataset *ds = w->ds;
	const char *keys[PEER_BATCH_MAX];
	size_t vlens[PEER_BATCH_MAX];
	if (n == 0 || n > PEER_BATCH_MAX)
		__builtin_unreachable(); /* peer_batch() is 1 or PEER_PIPE_DEPTH */
	for (unsigned k = 0; k < n; k++)
		keys[k] = dataset_key(ds, codes[k] & OP_INDEX_MASK);
	int rc = peer_get(w->peer, n, keys, ds->key_size, w->get_buf, ds->value_size, vlens);
	for (unsigned k = 0; k < n; k++) {
		if (rc != 0)
			tally(w, rc);
		else if (vlens[k] == PEER_MISS)
			tally(w, SHMC_ENOTFOUND);
		else if (!value_matches(ds, w->get_buf + (size_t)k * ds->value_size, vlens[k],
					codes[k] & OP_INDEX_MASK))
			tally(w, BENCH_EBADVALUE);
	}
}

/* The peers' loop: one call per round trip (of peer_batch GETs), one call
 * in peer_sample_calls timed, a deadline check every CLOCK_CHECK_OPS GETs
 * (a multiple of every batch, as SEQ_LEN is). A pipelined call's sample is
 * its whole round trip: the latency each of its GETs sees. */
static void timed_loop_peer(struct worker *w, uint64_t deadline_ns)
{
	const uint32_t *seq = w->seq;
	const unsigned batch = w->peer_batch;
	size_t pos = 0;
	uint64_t ops = 0;
	unsigned until_sample = 0;

	for (;;) {
		for (unsigned done = 0; done < CLOCK_CHECK_OPS; done += batch) {
			if (until_sample == 0) {
				uint64_t t0 = now_ns();
				peer_call(w, seq + pos, batch);
				sample_record(w, now_ns() - t0);
				until_sample = w->peer_sample_calls;
			} else {
				peer_call(w, seq + pos, batch);
			}
			until_sample--;
			pos = (pos + batch) & SEQ_MASK;
		}
		ops += CLOCK_CHECK_OPS;
		if (now_ns() >= deadline_ns)
			break;
	}
	w->ops = ops;
}

/* One untimed GET per key before the start: a freshly forked process takes
 * a minor page fault on its first touch of every page of a shared mapping,
 * and the timed loop should measure the cache, not the page tables. A peer
 * behind a socket has nothing of the kind to warm in the worker: a few
 * round trips set up its connection and buffers. */
static void worker_warm(struct worker *w, enum backend backend)
{
	if (backend_is_peer(backend)) {
		uint64_t n = peer_in_process(backend_peer(backend)) ? w->ds->keys
								    : PEER_WARM_OPS;
		uint32_t codes[PEER_BATCH_MAX];
		for (uint64_t i = 0; i < n; i += w->peer_batch) {
			for (unsigned k = 0; k < w->peer_batch; k++)
				codes[k] = (uint32_t)((i + k) % w->ds->keys);
			peer_call(w, codes, w->peer_batch);
		}
		/* Warm-up failures would not be the run's: start it clean,
		 * but a broken peer still fails every timed call. */
		w->misses = w->errors = 0;
		w->first_error = 0;
		return;
	}
	for (uint64_t i = 0; i < w->ds->keys; i++)
		(void)op_execute(w, backend, (uint32_t)i);
}

struct worker_args {
	const struct dataset *ds;
	const struct floor_table *floor_tab;
	const struct peers *peers;
	const char *segment_name;
	struct control *ctl;
	unsigned id;
	enum workload wl;
	enum backend backend;
	double seconds;
	uint64_t seed;
	int sampling; /* sampling period, or SAMPLING_LIBRARY_DEFAULT */
};

/* Prefork style: attach by name in the child, as a worker would, with the
 * library's default options except, when asked, the sampling period. */
static int worker_attach(const struct worker_args *a, shmc_cache **out)
{
	if (a->sampling == SAMPLING_LIBRARY_DEFAULT)
		return shmc_open(a->segment_name, NULL, 0, out);
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_sampling(o, (unsigned)a->sampling);
	if (rc == 0)
		rc = shmc_open(a->segment_name, o, 0, out);
	shmc_opts_destroy(o);
	return rc;
}

/* Runs in the child. Returns the exit status: 0 = ok (including an abort
 * ordered by the parent), non-zero = this worker failed. */
static int worker_main(const struct worker_args *a)
{
	struct worker w;
	memset(&w, 0, sizeof w);
	w.ds = a->ds;
	w.floor_tab = a->floor_tab;
	w.samples = control_samples(a->ctl, a->id);
	w.sample_cap = a->ctl->sample_cap;
	w.seq = malloc(SEQ_LEN * sizeof(uint32_t));
	w.get_buf = malloc(a->ds->value_size ? a->ds->value_size * PEER_BATCH_MAX : 1);
	w.set_buf = malloc(a->ds->value_size ? a->ds->value_size : 1);
	if (!w.seq || !w.get_buf || !w.set_buf) {
		fprintf(stderr, "shmcache-bench: worker %u: out of memory\n", a->id);
		return 3;
	}
	memcpy(w.set_buf, a->ds->value_template, a->ds->value_size);
	seq_build(w.seq, a->ds, a->wl, a->seed);

	if (a->backend == BACKEND_SHMC) {
		int rc = worker_attach(a, &w.cache);
		if (rc != 0) {
			fprintf(stderr, "shmcache-bench: worker %u: shmc_open(%s): %s (%s) %s\n",
				a->id, a->segment_name, shmc_errname(rc), shmc_strerror(rc),
				shmc_errmsg(NULL));
			return 4;
		}
	}
	if (backend_is_peer(a->backend)) {
		enum peer p = backend_peer(a->backend);
		/* A server that goes away must show as failed requests, not as a
		 * worker killed by a write to its socket. */
		signal(SIGPIPE, SIG_IGN);
		if (peer_connect(a->peers, p, &w.peer) != 0)
			return 4;
		w.peer_batch = peer_batch(p);
		/* A round trip costs microseconds: timing each one adds well under
		 * 1%. In-process, one GET in SAMPLE_EVERY, as for ours. */
		w.peer_sample_calls = peer_in_process(p) ? SAMPLE_EVERY / w.peer_batch : 1;
	}
	worker_warm(&w, a->backend);

	atomic_fetch_add_explicit(&a->ctl->ready, 1, memory_order_release);
	int go;
	while ((go = atomic_load_explicit(&a->ctl->go, memory_order_acquire)) == 0)
		sched_yield();

	if (go > 0) {
		struct timespec cpu0, cpu1;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
		uint64_t start = now_ns();
		uint64_t deadline = start + (uint64_t)(a->seconds * 1e9);
		if (a->backend == BACKEND_SHMC)
			timed_loop_shmc(&w, deadline);
		else if (a->backend == BACKEND_FLOOR)
			timed_loop_floor(&w, deadline);
		else
			timed_loop_peer(&w, deadline);
		struct worker_result *r = &a->ctl->results[a->id];
		r->elapsed_ns = now_ns() - start;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
		r->cpu_ns = (uint64_t)((cpu1.tv_sec - cpu0.tv_sec) * 1000000000LL +
				       (cpu1.tv_nsec - cpu0.tv_nsec));
		r->ops = w.ops;
		r->misses = w.misses;
		r->errors = w.errors;
		r->first_error = w.first_error;
		r->samples_taken = w.samples_taken;
	}
	shmc_close(w.cache);
	peer_disconnect(w.peer);
	free(w.seq);
	free(w.get_buf);
	free(w.set_buf);
	return 0;
}

/* ------------------------------------------------------------- the runs */

struct measurement {
	double ops_per_sec;
	/* Operations per second of the workers' own CPU time: what one
	 * operation costs, whatever share of the CPUs other processes took. */
	double ops_per_cpu_sec;
	double p50_ns;
	double p99_ns;
	uint64_t misses;
	uint64_t errors;
	int first_error;
};

static void sleep_ns(long ns)
{
	struct timespec ts = { 0, ns };
	nanosleep(&ts, NULL);
}

static void report_child_status(unsigned id, pid_t pid, int status)
{
	if (WIFEXITED(status))
		fprintf(stderr, "shmcache-bench: worker %u (pid %d) exited with status %d\n",
			id, (int)pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "shmcache-bench: worker %u (pid %d) killed by signal %d (%s)\n",
			id, (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
}

/* Reaps whichever workers have exited; returns how many failed. */
static unsigned workers_reap(pid_t *pids, unsigned n, unsigned *alive)
{
	unsigned failed = 0;
	for (unsigned i = 0; i < n; i++) {
		int status;
		if (pids[i] <= 0 || waitpid(pids[i], &status, WNOHANG) != pids[i])
			continue;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			report_child_status(i, pids[i], status);
			failed++;
		}
		pids[i] = 0;
		(*alive)--;
	}
	return failed;
}

static void workers_kill(pid_t *pids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
	}
}

/* Waits until every worker is ready (until_ready) or has exited. Returns 0,
 * or -1 after a failure, a timeout or an interrupt (workers then killed). */
static int workers_wait(struct control *ctl, pid_t *pids, unsigned n, unsigned *alive,
			bool until_ready, double timeout_s)
{
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	for (;;) {
		if (workers_reap(pids, n, alive) > 0)
			break;
		if (until_ready ? atomic_load(&ctl->ready) == n : *alive == 0)
			return 0;
		if (bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			break;
		}
		if (now_ns() >= deadline) {
			fprintf(stderr, "shmcache-bench: workers did not %s within %.0f s\n",
				until_ready ? "get ready" : "finish", timeout_s);
			break;
		}
		sleep_ns(POLL_NS);
	}
	atomic_store(&ctl->go, -1);
	workers_kill(pids, n);
	*alive = 0;
	return -1;
}

static double percentile_sorted(const uint32_t *v, size_t n, double q)
{
	if (n == 0)
		return 0.0;
	return v[(size_t)(q * (double)(n - 1))];
}

/* Sums the workers' rates and pools their latency samples. */
static int control_collect(struct control *ctl, struct measurement *m)
{
	size_t total = 0;
	for (unsigned i = 0; i < ctl->nworkers; i++) {
		uint64_t taken = ctl->results[i].samples_taken;
		total += taken < ctl->sample_cap ? (size_t)taken : ctl->sample_cap;
	}
	uint32_t *all = malloc((total ? total : 1) * sizeof(uint32_t));
	if (!all) {
		fprintf(stderr, "shmcache-bench: out of memory for latency samples\n");
		return -1;
	}
	memset(m, 0, sizeof *m);
	size_t at = 0;
	uint64_t all_ops = 0, all_cpu_ns = 0;
	for (unsigned i = 0; i < ctl->nworkers; i++) {
		const struct worker_result *r = &ctl->results[i];
		if (r->elapsed_ns > 0)
			m->ops_per_sec += (double)r->ops * 1e9 / (double)r->elapsed_ns;
		all_ops += r->ops;
		all_cpu_ns += r->cpu_ns;
		m->misses += r->misses;
		if (r->errors > 0 && m->errors == 0)
			m->first_error = r->first_error;
		m->errors += r->errors;
		size_t kept = r->samples_taken < ctl->sample_cap ? (size_t)r->samples_taken
								 : ctl->sample_cap;
		memcpy(all + at, control_samples(ctl, i), kept * sizeof(uint32_t));
		at += kept;
	}
	m->ops_per_cpu_sec = all_cpu_ns ? (double)all_ops * 1e9 / (double)all_cpu_ns : 0.0;
	qsort(all, total, sizeof(uint32_t), compare_u32);
	m->p50_ns = percentile_sorted(all, total, 0.50);
	m->p99_ns = percentile_sorted(all, total, 0.99);
	free(all);
	return 0;
}

/* ----------------------------------------------------------------- bench */

struct scaling {
	bool valid;
	double ours;
	double floor_ratio; /* floor's own scaling; 0 without --floor */
};

/* The memory phase at one value size. */
struct overhead_result {
	bool done;
	size_t value_size;
	uint64_t items;                 /* stored when the fill stopped */
	double bytes_per_item;
	double bytes_per_item_excl_free;
	/* Payload share of the data area at steady state, writing new keys
	 * only (STEADY_INSERT) and with overwrites mixed in (STEADY_OVERWRITE). */
	struct steady_result {
		unsigned samples; /* 0: not measured */
		double live_payload_pct_min;
		double live_payload_pct_median;
	} steady[2];
};

enum { STEADY_INSERT, STEADY_OVERWRITE };

struct bench {
	struct config cfg;
	struct dataset ds;
	struct floor_table floor_tab;
	struct peers *peers; /* --peers: servers running, directory made */
	bool segment_created;
	char overhead_name[NAME_MAX_LEN + 8];
	bool overhead_created;
	uint32_t timer_ns;
	bool saw_failures; /* misses or errors in some run: exit non-zero */
	double ours_ops[WL_COUNT][MAX_PROCS_LIST];
	double floor_ops[WL_COUNT][MAX_PROCS_LIST];
	struct scaling scaling[WL_COUNT];
	struct overhead_result overhead[OVERHEAD_VALUE_SIZES];
};

/* One measurement: fork nprocs workers, start them together, collect. */
static int measure_once(struct bench *b, enum workload wl, enum backend backend,
			unsigned nprocs, unsigned run, int sampling, struct measurement *out)
{
	struct control *ctl = control_create(nprocs, b->cfg.seconds);
	pid_t *pids = calloc(nprocs, sizeof *pids);
	int rc = -1;
	unsigned alive = 0;
	if (!ctl || !pids)
		goto out;

	fflush(NULL); /* children must not flush the parent's buffered output */
	for (unsigned i = 0; i < nprocs; i++) {
		struct worker_args args = {
			.ds = &b->ds,
			.floor_tab = &b->floor_tab,
			.peers = b->peers,
			.segment_name = b->cfg.name,
			.ctl = ctl,
			.id = i,
			.wl = wl,
			.backend = backend,
			.seconds = b->cfg.seconds,
			.seed = ((uint64_t)wl << 48) ^ ((uint64_t)run << 32) ^ (i + 1u),
			.sampling = sampling,
		};
		pid_t pid = fork();
		if (pid == 0) {
			signals_default();
			_exit(worker_main(&args));
		}
		if (pid < 0) {
			fprintf(stderr, "shmcache-bench: fork: %s\n", strerror(errno));
			atomic_store(&ctl->go, -1);
			workers_kill(pids, nprocs);
			goto out;
		}
		pids[i] = pid;
		alive++;
	}

	if (workers_wait(ctl, pids, nprocs, &alive, true, READY_TIMEOUT_S) != 0)
		goto out;
	atomic_store_explicit(&ctl->go, 1, memory_order_release);
	if (workers_wait(ctl, pids, nprocs, &alive, false, b->cfg.seconds + FINISH_GRACE_S) != 0)
		goto out;
	rc = control_collect(ctl, out);
out:
	free(pids);
	control_destroy(ctl);
	return rc;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof v[0], compare_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Repeats a measurement --runs times; each metric is the median of its
 * runs, and misses / errors are summed (any is a failure). */
struct run_set {
	double ops[64], p50[64], p99[64];
	struct measurement agg;
};

static void run_set_add(struct run_set *s, unsigned r, const struct measurement *m)
{
	s->ops[r] = m->ops_per_sec;
	s->p50[r] = m->p50_ns;
	s->p99[r] = m->p99_ns;
	if (m->errors > 0 && s->agg.errors == 0)
		s->agg.first_error = m->first_error;
	s->agg.misses += m->misses;
	s->agg.errors += m->errors;
}

static void run_set_finish(struct run_set *s, unsigned runs)
{
	s->agg.ops_per_sec = median(s->ops, runs);
	s->agg.p50_ns = median(s->p50, runs);
	s->agg.p99_ns = median(s->p99, runs);
}

static void format_rate(char *out, size_t cap, double v)
{
	if (v >= 1e9)
		snprintf(out, cap, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(out, cap, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(out, cap, "%.1fk", v / 1e3);
	else
		snprintf(out, cap, "%.0f", v);
}

static void print_run(const struct bench *b, enum workload wl, unsigned procs,
		      const struct measurement *ours, const struct measurement *fl)
{
	const struct config *cfg = &b->cfg;
	if (cfg->json) {
		printf("{\"workload\":\"%s\",\"procs\":%u,\"ops_per_sec\":%.0f,"
		       "\"p50_ns\":%.0f,\"p99_ns\":%.0f,",
		       workload_table[wl].name, procs, ours->ops_per_sec, ours->p50_ns,
		       ours->p99_ns);
		if (fl)
			printf("\"floor_ops_per_sec\":%.0f,\"ratio_to_floor\":%.4f,",
			       fl->ops_per_sec,
			       fl->ops_per_sec > 0 ? ours->ops_per_sec / fl->ops_per_sec : 0.0);
		else
			printf("\"floor_ops_per_sec\":null,\"ratio_to_floor\":null,");
		printf("\"misses\":%" PRIu64 ",\"key_size\":%zu,\"value_size\":%zu,"
		       "\"keys\":%" PRIu64 ",\"errors\":%" PRIu64 ",",
		       ours->misses, cfg->key_size, cfg->value_size, cfg->keys, ours->errors);
		if (fl)
			printf("\"floor_p50_ns\":%.0f,\"floor_p99_ns\":%.0f,\"floor_misses\":%" PRIu64
			       ",\"floor_errors\":%" PRIu64 ",",
			       fl->p50_ns, fl->p99_ns, fl->misses, fl->errors);
		printf("\"runs\":%u,\"seconds\":%g}\n", cfg->runs, cfg->seconds);
		return;
	}
	char rate[32];
	format_rate(rate, sizeof rate, ours->ops_per_sec);
	printf("%-12s procs=%-3u ops/s=%-8s p50=%.0fns p99=%.0fns", workload_table[wl].name,
	       procs, rate, ours->p50_ns, ours->p99_ns);
	if (fl) {
		format_rate(rate, sizeof rate, fl->ops_per_sec);
		printf("  floor ops/s=%-8s ratio=%.2f", rate,
		       fl->ops_per_sec > 0 ? ours->ops_per_sec / fl->ops_per_sec : 0.0);
	}
	if (ours->misses || ours->errors)
		printf("  misses=%" PRIu64 " errors=%" PRIu64, ours->misses, ours->errors);
	if (ours->errors)
		printf(" (first: %s)", error_name(ours->first_error));
	if (fl && (fl->misses || fl->errors))
		printf("  floor misses=%" PRIu64 " errors=%" PRIu64, fl->misses, fl->errors);
	printf("\n");
	fflush(stdout);
}

/* Scaling from the first to the last entry of --procs: ours against the
 * floor's, whose quotient isolates what the cache adds to the machine's own
 * scaling limits. */
static void compute_scaling(struct bench *b, enum workload wl)
{
	const struct config *cfg = &b->cfg;
	struct scaling *s = &b->scaling[wl];
	size_t last = cfg->nprocs - 1;
	if (cfg->nprocs < 2 || b->ours_ops[wl][0] <= 0)
		return;
	s->valid = true;
	s->ours = b->ours_ops[wl][last] / b->ours_ops[wl][0];
	if (cfg->floor && b->floor_ops[wl][0] > 0)
		s->floor_ratio = b->floor_ops[wl][last] / b->floor_ops[wl][0];
	if (cfg->json)
		return;
	printf("%-12s scaling %up/%up: ours=%.2fx", workload_table[wl].name, cfg->procs[last],
	       cfg->procs[0], s->ours);
	if (s->floor_ratio > 0)
		printf("  floor=%.2fx  relative=%.2f", s->floor_ratio, s->ours / s->floor_ratio);
	printf("\n");
}

static int run_workload(struct bench *b, enum workload wl)
{
	const struct config *cfg = &b->cfg;
	for (size_t p = 0; p < cfg->nprocs; p++) {
		struct run_set ours, fl;
		memset(&ours, 0, sizeof ours);
		memset(&fl, 0, sizeof fl);
		/* Ours and the floor alternate so that drift (thermal, noisy
		 * neighbours) hits both alike. */
		for (unsigned r = 0; r < cfg->runs; r++) {
			struct measurement m;
			if (measure_once(b, wl, BACKEND_SHMC, cfg->procs[p], r, SAMPLING_LIBRARY_DEFAULT,
					 &m) != 0)
				return -1;
			run_set_add(&ours, r, &m);
			if (!cfg->floor)
				continue;
			if (measure_once(b, wl, BACKEND_FLOOR, cfg->procs[p], r,
					 SAMPLING_LIBRARY_DEFAULT, &m) != 0)
				return -1;
			run_set_add(&fl, r, &m);
		}
		run_set_finish(&ours, cfg->runs);
		if (cfg->floor)
			run_set_finish(&fl, cfg->runs);
		b->ours_ops[wl][p] = ours.agg.ops_per_sec;
		b->floor_ops[wl][p] = fl.agg.ops_per_sec;
		if (ours.agg.misses || ours.agg.errors || fl.agg.misses || fl.agg.errors)
			b->saw_failures = true;
		print_run(b, wl, cfg->procs[p], &ours.agg, cfg->floor ? &fl.agg : NULL);
	}
	compute_scaling(b, wl);
	return 0;
}

/* The cost of sampling: get-zipf with SAMPLING_PERIOD and with 0, the two
 * alternating (and swapping which goes first) --runs times; medians. The
 * same key sequences run in both (the seed depends on the run only). */
static int run_sampling_overhead(struct bench *b)
{
	const struct config *cfg = &b->cfg;
	for (size_t p = 0; p < cfg->nprocs; p++) {
		double on[64], off[64], pair[64], on_cpu[64], off_cpu[64];
		struct measurement agg;
		memset(&agg, 0, sizeof agg);
		for (unsigned r = 0; r < cfg->runs; r++) {
			for (int k = 0; k < 2; k++) {
				bool sampling_on = (k == 0) == (r % 2 == 0);
				struct measurement m;
				if (measure_once(b, WL_GET_ZIPF, BACKEND_SHMC, cfg->procs[p], r,
						 sampling_on ? (int)SAMPLING_PERIOD : 0, &m) != 0)
					return -1;
				(sampling_on ? on : off)[r] = m.ops_per_sec;
				(sampling_on ? on_cpu : off_cpu)[r] = m.ops_per_cpu_sec;
				agg.misses += m.misses;
				agg.errors += m.errors;
			}
			pair[r] = off[r] > 0 ? on[r] / off[r] : 0.0;
		}
		if (agg.misses || agg.errors)
			b->saw_failures = true;
		double on_med = median(on, cfg->runs), off_med = median(off, cfg->runs);
		double ratio = off_med > 0 ? on_med / off_med : 0.0;
		double pair_med = median(pair, cfg->runs);
		double pair_min = pair[0], pair_max = pair[cfg->runs - 1]; /* sorted by median() */
		/* Per CPU-second: robust to other processes taking CPU time. */
		double on_cpu_med = median(on_cpu, cfg->runs), off_cpu_med = median(off_cpu, cfg->runs);
		double cpu_ratio = off_cpu_med > 0 ? on_cpu_med / off_cpu_med : 0.0;
		if (cfg->json) {
			printf("{\"sampling_overhead\":true,\"workload\":\"%s\",\"procs\":%u,"
			       "\"period\":%u,\"on_ops_per_sec\":%.0f,\"off_ops_per_sec\":%.0f,"
			       "\"sampling_ratio\":%.4f,\"pair_ratio_median\":%.4f,"
			       "\"pair_ratio_min\":%.4f,\"pair_ratio_max\":%.4f,"
			       "\"on_ops_per_cpu_sec\":%.0f,\"off_ops_per_cpu_sec\":%.0f,"
			       "\"cpu_sampling_ratio\":%.4f,\"target\":%.2f,"
			       "\"target_met\":%s,\"misses\":%" PRIu64 ",\"errors\":%" PRIu64 ","
			       "\"keys\":%" PRIu64 ",\"runs\":%u,\"seconds\":%g}\n",
			       workload_table[WL_GET_ZIPF].name, cfg->procs[p], SAMPLING_PERIOD, on_med,
			       off_med, ratio, pair_med, pair_min, pair_max, on_cpu_med, off_cpu_med,
			       cpu_ratio, SAMPLING_TARGET_RATIO,
			       ratio >= SAMPLING_TARGET_RATIO ? "true" : "false", agg.misses, agg.errors,
			       cfg->keys, cfg->runs, cfg->seconds);
			continue;
		}
		char on_s[32], off_s[32];
		format_rate(on_s, sizeof on_s, on_med);
		format_rate(off_s, sizeof off_s, off_med);
		printf("sampling     procs=%-3u period=%u on ops/s=%-8s off ops/s=%-8s ratio=%.3f "
		       "(target >= %.2f: %s)  per-run ratios: median %.3f, %.3f..%.3f\n",
		       cfg->procs[p], SAMPLING_PERIOD, on_s, off_s, ratio, SAMPLING_TARGET_RATIO,
		       ratio >= SAMPLING_TARGET_RATIO ? "met" : "NOT met", pair_med, pair_min,
		       pair_max);
		format_rate(on_s, sizeof on_s, on_cpu_med);
		format_rate(off_s, sizeof off_s, off_cpu_med);
		printf("             per CPU-second: on ops=%-8s off ops=%-8s ratio=%.3f\n", on_s,
		       off_s, cpu_ratio);
		if (agg.misses || agg.errors)
			printf("             misses=%" PRIu64 " errors=%" PRIu64 "\n", agg.misses,
			       agg.errors);
		fflush(stdout);
	}
	return 0;
}

/* ----------------------------------------------------------------- peers */

/* --peers: the rows of each table, in the order they run in each round:
 * the floor, ours, then every peer. */
#define PEER_ROWS (2u + PEER_COUNT)
#define PEER_ROW_FLOOR 0u
#define PEER_ROW_SHMC 1u

static enum backend peer_row_backend(unsigned row)
{
	if (row == PEER_ROW_FLOOR)
		return BACKEND_FLOOR;
	if (row == PEER_ROW_SHMC)
		return BACKEND_SHMC;
	return (enum backend)(BACKEND_PEER + (row - 2u));
}

static const char *backend_name(enum backend backend)
{
	if (backend == BACKEND_FLOOR)
		return "floor";
	if (backend == BACKEND_SHMC)
		return "libshmcache";
	return peer_name(backend_peer(backend));
}

static void format_ns(char *out, size_t cap, double ns)
{
	if (ns < 10000.0)
		snprintf(out, cap, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(out, cap, "%.1fus", ns / 1e3);
	else
		snprintf(out, cap, "%.2fms", ns / 1e6);
}

static void print_peers_table_head(const struct bench *b, enum workload wl)
{
	const struct config *cfg = &b->cfg;
	if (cfg->json)
		return;
	printf("\npeers, %s: ops/s summed over the worker processes; a server is one more "
	       "process on the same CPUs; %s's p50/p99 are of a whole %u-GET round trip\n",
	       workload_table[wl].name, peer_name(PEER_REDIS_PIPE), PEER_PIPE_DEPTH);
	printf("%-13s %5s %9s %9s %9s  %s\n", "peer", "procs", "ops/s", "p50", "p99",
	       "vs libshmcache");
}

static void print_peer_row(const struct bench *b, enum workload wl, unsigned procs,
			   enum backend backend, const struct measurement *m, double shmc_ops)
{
	const struct config *cfg = &b->cfg;
	double ratio = shmc_ops > 0 ? m->ops_per_sec / shmc_ops : 0.0;
	bool peer = backend_is_peer(backend);
	if (cfg->json) {
		const char *protocol = peer ? peer_protocol(backend_peer(backend)) : NULL;
		printf("{\"peers\":true,\"workload\":\"%s\",\"peer\":\"%s\",\"procs\":%u,"
		       "\"ops_per_sec\":%.0f,\"p50_ns\":%.0f,\"p99_ns\":%.0f,",
		       workload_table[wl].name, backend_name(backend), procs, m->ops_per_sec,
		       m->p50_ns, m->p99_ns);
		if (shmc_ops > 0)
			printf("\"ratio_to_shmc\":%.6f,", ratio);
		else
			printf("\"ratio_to_shmc\":null,");
		printf("\"batch\":%u,\"transport\":\"%s\",",
		       peer ? peer_batch(backend_peer(backend)) : 1u,
		       peer ? peer_transport(backend_peer(backend)) : "shared-memory");
		if (protocol)
			printf("\"protocol\":\"%s\",", protocol);
		else
			printf("\"protocol\":null,");
		printf("\"misses\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"keys\":%" PRIu64
		       ",\"key_size\":%zu,\"value_size\":%zu,\"runs\":%u,\"seconds\":%g}\n",
		       m->misses, m->errors, cfg->keys, cfg->key_size, cfg->value_size, cfg->runs,
		       cfg->seconds);
		return;
	}
	char rate[32], p50[32], p99[32], vs[48];
	format_rate(rate, sizeof rate, m->ops_per_sec);
	format_ns(p50, sizeof p50, m->p50_ns);
	format_ns(p99, sizeof p99, m->p99_ns);
	if (shmc_ops <= 0 || m->ops_per_sec <= 0)
		snprintf(vs, sizeof vs, "-");
	else if (ratio >= 0.1)
		snprintf(vs, sizeof vs, "%.2f", ratio);
	else
		snprintf(vs, sizeof vs, "%.4f (1/%.0f)", ratio, 1.0 / ratio);
	printf("%-13s %5u %9s %9s %9s  %s", backend_name(backend), procs, rate, p50, p99, vs);
	if (m->misses || m->errors)
		printf("  misses=%" PRIu64 " errors=%" PRIu64, m->misses, m->errors);
	if (m->errors)
		printf(" (first: %s)", error_name(m->first_error));
	printf("\n");
	fflush(stdout);
}

/* The GET workloads against the floor, ours and every peer. Within each
 * round every row runs once, one after another, so that drift hits all
 * alike; each row replays the same key sequences (the seed depends on the
 * workload, run and worker only). */
static int run_peers(struct bench *b)
{
	const struct config *cfg = &b->cfg;
	for (int wl = 0; wl < WL_COUNT; wl++) {
		if (!cfg->workloads[wl])
			continue;
		print_peers_table_head(b, (enum workload)wl);
		for (size_t p = 0; p < cfg->nprocs; p++) {
			struct run_set sets[PEER_ROWS];
			memset(sets, 0, sizeof sets);
			for (unsigned r = 0; r < cfg->runs; r++) {
				for (unsigned row = 0; row < PEER_ROWS; row++) {
					if (row == PEER_ROW_FLOOR && !cfg->floor)
						continue;
					struct measurement m;
					enum backend backend = peer_row_backend(row);
					if (measure_once(b, (enum workload)wl, backend,
							 cfg->procs[p], r, SAMPLING_LIBRARY_DEFAULT,
							 &m) != 0)
						return -1;
					run_set_add(&sets[row], r, &m);
				}
			}
			for (unsigned row = 0; row < PEER_ROWS; row++) {
				if (row == PEER_ROW_FLOOR && !cfg->floor)
					continue;
				run_set_finish(&sets[row], cfg->runs);
				if (sets[row].agg.misses || sets[row].agg.errors)
					b->saw_failures = true;
			}
			double shmc_ops = sets[PEER_ROW_SHMC].agg.ops_per_sec;
			for (unsigned row = 0; row < PEER_ROWS; row++) {
				if (row == PEER_ROW_FLOOR && !cfg->floor)
					continue;
				print_peer_row(b, (enum workload)wl, cfg->procs[p],
					       peer_row_backend(row), &sets[row].agg, shmc_ops);
			}
		}
	}
	return 0;
}

/* Loads the peers with the dataset (servers started, database written). */
static int peers_prepare(struct bench *b)
{
	const struct config *cfg = &b->cfg;
	unsigned most_procs = 0;
	for (size_t i = 0; i < cfg->nprocs; i++)
		most_procs = cfg->procs[i] > most_procs ? cfg->procs[i] : most_procs;
	struct peer_data d = {
		.keys = b->ds.keys,
		.key_size = b->ds.key_size,
		.value_size = b->ds.value_size,
		.stamp_bytes = b->ds.stamp_bytes,
		.key_bytes = b->ds.key_bytes,
		.value_template = b->ds.value_template,
		.max_procs = most_procs,
	};
	uint64_t t0 = now_ns();
	if (peers_start(&d, &b->peers) != 0)
		return -1;
	if (!cfg->json) {
		printf("peers started and loaded in %.2f s:\n", (double)(now_ns() - t0) / 1e9);
		peers_describe(b->peers, stdout);
	}
	return 0;
}

/* ----------------------------------------------------------------- setup */

int bench_segment_create(const char *name, const struct segment_spec *spec, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_size(o, spec->segment_bytes);
	if (rc == 0)
		rc = shmc_opts_set_item_size(o, spec->item_bytes);
	if (rc == 0 && spec->key_size > SHMC_DEFAULT_KEY_MAX)
		rc = shmc_opts_set_max_key(o, spec->key_size);
	if (rc == 0 && spec->chunk_bytes)
		rc = shmc_opts_set_chunk_size(o, spec->chunk_bytes);
	if (rc == 0 && spec->max_procs > 256) /* default slots: 256 */
		rc = shmc_opts_set_max_procs(o, spec->max_procs);
	if (rc == 0 && !spec->sweeper)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: options: %s (%s)\n", shmc_errname(rc),
			shmc_strerror(rc));
		shmc_opts_destroy(o);
		return -1;
	}
	rc = shmc_unlink(name);
	if (rc != 0 && rc != SHMC_ENOENT)
		fprintf(stderr, "shmcache-bench: shmc_unlink(%s): %s\n", name, shmc_errname(rc));
	rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, out);
	shmc_opts_destroy(o);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_open(%s, %zu bytes): %s (%s) %s\n", name,
			spec->segment_bytes, shmc_errname(rc), shmc_strerror(rc),
			shmc_errmsg(NULL));
		return -1;
	}
	return 0;
}

/* Creates the benchmark segment and stores every key once. The handle is
 * closed afterwards: workers attach on their own, and the parent keeps no
 * background threads alive across fork(). */
static int segment_preload(struct bench *b)
{
	const struct config *cfg = &b->cfg;
	const struct dataset *ds = &b->ds;
	unsigned most_procs = 0;
	for (size_t i = 0; i < cfg->nprocs; i++)
		most_procs = cfg->procs[i] > most_procs ? cfg->procs[i] : most_procs;
	struct segment_spec spec = {
		.segment_bytes = cfg->segment_bytes,
		.item_bytes = cfg->key_size + cfg->value_size,
		.key_size = cfg->key_size,
		.max_procs = most_procs + 8,
		.sweeper = true,
	};
	shmc_cache *c = NULL;
	if (bench_segment_create(cfg->name, &spec, &c) != 0)
		return -1;
	b->segment_created = true;

	unsigned char *value = malloc(ds->value_size ? ds->value_size : 1);
	int result = -1;
	if (!value) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	memcpy(value, ds->value_template, ds->value_size);
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < ds->keys; i++) {
		value_stamp(value, ds->stamp_bytes, i);
		int rc = shmc_set(c, dataset_key(ds, (uint32_t)i), ds->key_size, value,
				  ds->value_size, 0, 0);
		if (rc != 0) {
			fprintf(stderr,
				"shmcache-bench: preload: shmc_set(key %" PRIu64 " of %" PRIu64
				"): %s (%s) %s\n",
				i, ds->keys, shmc_errname(rc), shmc_strerror(rc), shmc_errmsg(c));
			goto out;
		}
		if ((i & 4095) == 0 && bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			goto out;
		}
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	struct shmc_stats st;
	int rc = shmc_stats(c, &st);
	if (rc == 0 && st.items != ds->keys)
		fprintf(stderr, "shmcache-bench: warning: %" PRIu64 " keys stored but stats say %" PRIu64
				" items\n", ds->keys, st.items);
	if (!cfg->json)
		printf("preloaded %" PRIu64 " keys in %.2f s (%.2fM sets/s)\n", ds->keys, secs,
		       secs > 0 ? (double)ds->keys / secs / 1e6 : 0.0);
	result = 0;
out:
	free(value);
	shmc_close(c);
	return result;
}

/* -------------------------------------------------------------- overhead */

/* Key i with a value whose first bytes are i, as the load phases write. */
static int overhead_set(shmc_cache *c, char *key, size_t key_size, unsigned char *value,
			size_t value_size, uint64_t i)
{
	key_format(key, key_size, i);
	value_stamp(value, value_size < sizeof i ? value_size : sizeof i, i);
	return shmc_set(c, key, key_size, value, value_size, 0, 0);
}

/* Which share of the data area is payload: key and value bytes of
 * reachable items. */
static int live_payload_read(shmc_cache *c, double *pct, double *items)
{
	struct shmc_stats st;
	int rc = shmc_stats(c, &st);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_stats: %s\n", shmc_errname(rc));
		return -1;
	}
	double headers = (double)ITEM_HEADER_BYTES * (double)st.items;
	*pct = 100.0 * ((double)st.bytes_live - headers) / (double)st.data_bytes;
	*items = (double)st.items;
	return 0;
}

/* Keeps writing past the fill: STEADY_NEW_KEY_FILLS times as many new keys
 * as the fill stored, and, with overwrites, between them one SET in
 * STEADY_OVERWRITE_EVERY that rewrites one of the last half-fill keys
 * (likely still live, so its old copy becomes garbage the log must
 * reclaim). Over the second half, when the log has been rewritten at least
 * twice, it samples which share of the data area is payload: key and value
 * bytes of reachable items. *next_key advances past the keys written. */
static int steady_state_measure(const struct config *cfg, shmc_cache *c, size_t value_size,
				uint64_t *next_key_io, uint64_t key_space, uint64_t fill_items,
				bool overwrites, char *key, unsigned char *value,
				struct steady_result *out)
{
	uint64_t next_key = *next_key_io;
	uint64_t new_keys = fill_items * STEADY_NEW_KEY_FILLS;
	uint64_t sample_every = new_keys / 2 / STEADY_SAMPLES;
	if (sample_every == 0 || key_space - next_key < new_keys) {
		if (!cfg->json)
			printf("  steady state: skipped (too few items fit, or too few distinct "
			       "keys of this size)\n");
		return 0;
	}
	uint64_t recent = fill_items / 2;
	uint64_t second_half = next_key + new_keys / 2, end_key = next_key + new_keys;
	double live_pct[STEADY_SAMPLES], items[STEADY_SAMPLES];
	unsigned taken = 0;
	uint64_t rng = xorshift_seed(next_key), sets = 0, enospc = 0, t0 = now_ns();
	while (next_key < end_key) {
		bool fresh = !overwrites || ++sets % STEADY_OVERWRITE_EVERY != 0;
		sets += !overwrites;
		uint64_t i = fresh ? next_key++
				   : next_key - 1 - range_map(xorshift_next(&rng), recent);
		int rc = overhead_set(c, key, cfg->key_size, value, value_size, i);
		if (rc == SHMC_ENOSPC) {
			enospc++;
		} else if (rc != 0) {
			fprintf(stderr, "shmcache-bench: steady state: shmc_set(key %" PRIu64
					"): %s (%s) %s\n",
				i, shmc_errname(rc), shmc_strerror(rc), shmc_errmsg(c));
			return -1;
		}
		bool sample_due = fresh && next_key > second_half &&
				  (next_key - second_half) % sample_every == 0 &&
				  taken < STEADY_SAMPLES;
		if (sample_due) {
			if (live_payload_read(c, &live_pct[taken], &items[taken]) != 0)
				return -1;
			taken++;
		}
		if ((sets & 4095) == 0 && bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			return -1;
		}
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	*next_key_io = next_key;
	out->samples = taken;
	out->live_payload_pct_median = median(live_pct, taken);
	out->live_payload_pct_min = live_pct[0]; /* median() sorted them */
	if (cfg->json)
		return 0;
	struct shmc_stats st;
	int rc = shmc_stats(c, &st);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_stats: %s\n", shmc_errname(rc));
		return -1;
	}
	if (overwrites)
		printf("  steady state with overwrites: %" PRIu64 " more SETs (%" PRIu64
		       " new keys, 1 in %u an overwrite) in %.1f s; evictions=%" PRIu64
		       " enospc=%" PRIu64 "\n",
		       sets, new_keys, STEADY_OVERWRITE_EVERY, secs, st.evictions, enospc);
	else
		printf("  steady state, new keys only: %" PRIu64 " more SETs in %.1f s; "
		       "evictions=%" PRIu64 " enospc=%" PRIu64 "\n",
		       sets, secs, st.evictions, enospc);
	printf("  live_payload_pct=%.1f min, %.1f median of %u samples (key+value bytes of "
	       "reachable items / data area; items median %.0f)%s\n",
	       out->live_payload_pct_min, out->live_payload_pct_median, taken, median(items, taken),
	       overwrites ? "" : (out->live_payload_pct_min >= STEADY_TARGET_PCT
					  ? "; target >= 80%: met"
					  : "; target >= 80%: MISSED"));
	/* Where the rest goes, to tell packing from headroom from garbage. */
	double data = (double)st.data_bytes, headers = (double)ITEM_HEADER_BYTES * (double)st.items;
	printf("  at the end: payload %.1f%%, item headers %.1f%%, free %.1f%%, garbage not yet "
	       "reclaimed %.1f%% of the data area\n",
	       100.0 * ((double)st.bytes_live - headers) / data, 100.0 * headers / data,
	       100.0 * (double)st.bytes_free / data,
	       100.0 * (data - (double)st.bytes_live - (double)st.bytes_free) / data);
	return 0;
}

/* The memory phase at one value size, in a fresh 64 MiB segment. It first
 * fills it with distinct keys until it is full and divides every byte that
 * is not payload by the items that fit; whichever comes first (ENOSPC, or
 * the first eviction if the writer reclaims instead of failing) ends the
 * fill. The fill runs with the sweeper off, so that "full" does not depend
 * on when a background thread runs. Then it re-attaches with the default
 * options, as a deployment runs (with the sweeper, when the library has
 * one, and the headroom it keeps free), and measures the steady state under
 * eviction. */
static int overhead_measure(struct bench *b, size_t value_size, struct overhead_result *ov)
{
	const struct config *cfg = &b->cfg;
	size_t item = cfg->key_size + value_size;
	shmc_cache *c = NULL;
	unsigned char *value = malloc(value_size ? value_size : 1);
	char *key = malloc(cfg->key_size);
	int result = -1;
	if (!value || !key) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	snprintf(b->overhead_name, sizeof b->overhead_name, "%s.ovh", cfg->name);
	struct segment_spec spec = {
		.segment_bytes = OVERHEAD_SEGMENT_BYTES,
		.item_bytes = item,
		.key_size = cfg->key_size,
		.sweeper = false,
	};
	if (bench_segment_create(b->overhead_name, &spec, &c) != 0)
		goto out;
	b->overhead_created = true;

	for (size_t j = 0; j < value_size; j++)
		value[j] = (unsigned char)(j * 131u + 7u);
	/* No layout can hold more items than this: a fill past it means the
	 * cache is silently dropping items. */
	uint64_t limit = OVERHEAD_SEGMENT_BYTES / (item ? item : 1) + 1;
	uint64_t key_space = cfg->key_size - 1 >= 19 ? UINT64_MAX
						     : (uint64_t)pow(10.0, (double)(cfg->key_size - 1));
	const char *stop = NULL;
	struct shmc_stats st;
	uint64_t next_key = 0;
	for (; !stop; next_key++) {
		if (next_key >= key_space) {
			stop = "ran out of distinct keys of this key size";
			break;
		}
		if (next_key >= limit) {
			stop = "more items than the segment can hold (items are being dropped)";
			break;
		}
		int rc = overhead_set(c, key, cfg->key_size, value, value_size, next_key);
		if (rc == SHMC_ENOSPC) {
			stop = "SHMC_ENOSPC";
		} else if (rc != 0) {
			fprintf(stderr, "shmcache-bench: overhead: shmc_set(key %" PRIu64 "): %s (%s) %s\n",
				next_key, shmc_errname(rc), shmc_strerror(rc), shmc_errmsg(c));
			goto out;
		} else if ((next_key & 1023) == 1023) {
			if (bench_interrupted) {
				fprintf(stderr, "shmcache-bench: interrupted\n");
				goto out;
			}
			rc = shmc_stats(c, &st);
			if (rc == 0 && st.evictions > 0)
				stop = "first eviction";
		}
	}
	int rc = shmc_stats(c, &st);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_stats: %s\n", shmc_errname(rc));
		goto out;
	}
	if (st.items == 0) {
		fprintf(stderr, "shmcache-bench: overhead: no item stored\n");
		goto out;
	}

	double payload = (double)st.items * (double)item;
	ov->done = true;
	ov->value_size = value_size;
	ov->items = st.items;
	ov->bytes_per_item = ((double)st.segment_bytes - payload) / (double)st.items;
	ov->bytes_per_item_excl_free =
		((double)st.segment_bytes - (double)st.bytes_free - payload) / (double)st.items;
	if (!cfg->json) {
		printf("overhead: segment=%" PRIu64 " bytes (data %" PRIu64 ", index slots %" PRIu64
		       "), item=%zu+%zu bytes, items=%" PRIu64 " (stopped at: %s)\n",
		       st.segment_bytes, st.data_bytes, st.index_slots, cfg->key_size, value_size,
		       st.items, stop);
		printf("  bytes_live=%" PRIu64 " bytes_free=%" PRIu64 " evictions=%" PRIu64 "\n",
		       st.bytes_live, st.bytes_free, st.evictions);
		printf("  overhead_bytes_per_item=%.1f (every non-payload byte of the segment)\n",
		       ov->bytes_per_item);
		printf("  overhead_bytes_per_item_excl_free=%.1f (free bytes not counted)\n",
		       ov->bytes_per_item_excl_free);
	}
	shmc_close(c);
	rc = shmc_open(b->overhead_name, NULL, 0, &c);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: shmc_open(%s): %s (%s) %s\n", b->overhead_name,
			shmc_errname(rc), shmc_strerror(rc), shmc_errmsg(NULL));
		c = NULL;
		goto out;
	}
	result = steady_state_measure(cfg, c, value_size, &next_key, key_space, st.items, false,
				      key, value, &ov->steady[STEADY_INSERT]);
	if (result == 0)
		result = steady_state_measure(cfg, c, value_size, &next_key, key_space, st.items,
					      true, key, value, &ov->steady[STEADY_OVERWRITE]);
out:
	shmc_close(c);
	if (b->overhead_created && shmc_unlink(b->overhead_name) == 0)
		b->overhead_created = false;
	free(value);
	free(key);
	return result;
}

static void print_summary(const struct bench *b)
{
	const struct config *cfg = &b->cfg;
	if (!cfg->json)
		return;
	printf("{\"summary\":true,\"scaling\":{");
	bool first = true;
	for (int wl = 0; wl < WL_COUNT; wl++) {
		const struct scaling *s = &b->scaling[wl];
		if (!s->valid)
			continue;
		printf("%s\"%s\":{\"ours\":%.4f,", first ? "" : ",", workload_table[wl].name,
		       s->ours);
		if (s->floor_ratio > 0)
			printf("\"floor\":%.4f,\"relative\":%.4f,", s->floor_ratio,
			       s->ours / s->floor_ratio);
		else
			printf("\"floor\":null,\"relative\":null,");
		printf("\"from_procs\":%u,\"to_procs\":%u}", cfg->procs[0],
		       cfg->procs[cfg->nprocs - 1]);
		first = false;
	}
	printf("},");
	const struct overhead_result *ov = &b->overhead[0];
	if (ov->done)
		printf("\"overhead_bytes_per_item\":%.2f,\"overhead_bytes_per_item_excl_free\":%.2f,"
		       "\"overhead_items\":%" PRIu64 ",",
		       ov->bytes_per_item, ov->bytes_per_item_excl_free, ov->items);
	else
		printf("\"overhead_bytes_per_item\":null,\"overhead_bytes_per_item_excl_free\":null,"
		       "\"overhead_items\":null,");
	/* Every value size's figures, the first repeated from the fields above. */
	printf("\"memory\":[");
	for (int k = 0; k < OVERHEAD_VALUE_SIZES && b->overhead[k].done; k++) {
		ov = &b->overhead[k];
		printf("%s{\"value_size\":%zu,\"overhead_items\":%" PRIu64
		       ",\"overhead_bytes_per_item\":%.2f,"
		       "\"overhead_bytes_per_item_excl_free\":%.2f,",
		       k ? "," : "", ov->value_size, ov->items, ov->bytes_per_item,
		       ov->bytes_per_item_excl_free);
		const struct steady_result *in = &ov->steady[STEADY_INSERT];
		const struct steady_result *ow = &ov->steady[STEADY_OVERWRITE];
		if (in->samples)
			printf("\"steady_samples\":%u,\"live_payload_pct_min\":%.2f,"
			       "\"live_payload_pct_median\":%.2f,\"target_met\":%s,",
			       in->samples, in->live_payload_pct_min, in->live_payload_pct_median,
			       in->live_payload_pct_min >= STEADY_TARGET_PCT ? "true" : "false");
		else
			printf("\"steady_samples\":0,\"live_payload_pct_min\":null,"
			       "\"live_payload_pct_median\":null,\"target_met\":null,");
		if (ow->samples)
			printf("\"overwrite_every\":%u,\"overwrite_live_payload_pct_min\":%.2f,"
			       "\"overwrite_live_payload_pct_median\":%.2f}",
			       STEADY_OVERWRITE_EVERY, ow->live_payload_pct_min,
			       ow->live_payload_pct_median);
		else
			printf("\"overwrite_every\":%u,\"overwrite_live_payload_pct_min\":null,"
			       "\"overwrite_live_payload_pct_median\":null}",
			       STEADY_OVERWRITE_EVERY);
	}
	printf("],");
	printf("\"timer_overhead_ns\":%u}\n", b->timer_ns);
}

static void print_header(const struct bench *b)
{
	const struct config *cfg = &b->cfg;
	if (cfg->json)
		return;
	printf("shmcache-bench: keys=%" PRIu64 " key=%zuB value=%zuB segment=%zuMiB "
	       "zipf=%.2f seconds=%g runs=%u name=%s\n",
	       cfg->keys, cfg->key_size, cfg->value_size, cfg->segment_bytes / MIB, cfg->zipf_theta,
	       cfg->seconds, cfg->runs, cfg->name);
	printf("latency: 1 op in %u timed; each sample includes ~%uns of clock_gettime\n",
	       SAMPLE_EVERY, b->timer_ns);
}

static int bench_run(struct bench *b)
{
	const struct config *cfg = &b->cfg;
	if (cfg->trace) {
		struct trace_config tc = {
			.requests = cfg->trace_requests,
			.keys = cfg->trace_keys,
			.cache_items = cfg->trace_cache_items,
			.zipf_theta = cfg->zipf_theta,
			.key_size = cfg->key_size,
			.value_size = cfg->value_size,
			.seed = cfg->seed,
			.json = cfg->json,
			.segment_name = cfg->name,
		};
		return trace_run(&tc) == 0 ? 0 : 1;
	}
	b->timer_ns = timer_overhead_ns();
	if (cfg->peers) {
		/* Before anything is built: a missing peer fails the run at once. */
		if (peers_check() != 0) {
			fprintf(stderr,
				"shmcache-bench: --peers needs every peer; none is left out\n");
			return 1;
		}
		print_header(b);
		if (dataset_build(&b->ds, cfg) != 0 || segment_preload(b) != 0)
			return 1;
		if (cfg->floor && floor_create(&b->floor_tab, &b->ds) != 0)
			return 1;
		if (peers_prepare(b) != 0 || run_peers(b) != 0)
			return 1;
		if (b->saw_failures) {
			fprintf(stderr, "shmcache-bench: FAILED: some runs had misses or errors\n");
			return 1;
		}
		return 0;
	}
	if (cfg->sampling_overhead) {
		print_header(b);
		if (dataset_build(&b->ds, cfg) != 0 || segment_preload(b) != 0)
			return 1;
		if (run_sampling_overhead(b) != 0)
			return 1;
		if (b->saw_failures) {
			fprintf(stderr, "shmcache-bench: FAILED: some runs had misses or errors\n");
			return 1;
		}
		return 0;
	}
	if (!cfg->overhead_only) {
		print_header(b);
		if (dataset_build(&b->ds, cfg) != 0)
			return 1;
		if (segment_preload(b) != 0)
			return 1;
		if (cfg->floor && floor_create(&b->floor_tab, &b->ds) != 0)
			return 1;
		for (int wl = 0; wl < WL_COUNT; wl++) {
			if (cfg->workloads[wl] && run_workload(b, (enum workload)wl) != 0)
				return 1;
		}
	}
	if (cfg->overhead || cfg->overhead_only) {
		size_t value_sizes[OVERHEAD_VALUE_SIZES] = { cfg->value_size,
							     OVERHEAD_LARGE_VALUE };
		for (int k = 0; k < OVERHEAD_VALUE_SIZES; k++) {
			if (k > 0 && value_sizes[k] == cfg->value_size)
				break;
			if (overhead_measure(b, value_sizes[k], &b->overhead[k]) != 0)
				return 1;
		}
	}
	print_summary(b);
	if (b->saw_failures) {
		fprintf(stderr, "shmcache-bench: FAILED: some runs had misses or errors\n");
		return 1;
	}
	return 0;
}

/* Every segment we created is unlinked, whatever happened. */
static void bench_cleanup(struct bench *b)
{
	if (b->segment_created) {
		int rc = shmc_unlink(b->cfg.name);
		if (rc != 0 && rc != SHMC_ENOENT)
			fprintf(stderr, "shmcache-bench: shmc_unlink(%s): %s\n", b->cfg.name,
				shmc_errname(rc));
	}
	if (b->overhead_created)
		shmc_unlink(b->overhead_name);
	peers_stop(b->peers);
	b->peers = NULL;
	floor_destroy(&b->floor_tab);
	dataset_free(&b->ds);
}

/* --------------------------------------------------------------- options */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: shmcache-bench [options]\n"
		"\n"
		"Prefork load generator for libshmcache: forks worker processes that attach\n"
		"a preloaded segment by name and hammer it, next to a plain unsynchronised\n"
		"hash table in shared memory (the floor) doing the same work.\n"
		"\n"
		"  --keys N           keys preloaded (default 100000)\n"
		"  --key-size B       key bytes, \"k\" + zero-padded index (default 16)\n"
		"  --value-size B     value bytes (default 100)\n"
		"  --procs LIST       worker counts to run, comma-separated (default 1,2)\n"
		"  --seconds S        timed seconds per run (default 3)\n"
		"  --workload LIST    get-uniform,get-zipf,mix,set or all (default all)\n"
		"                     mix = 90%% GET / 10%% SET; set = 100%% SET of existing\n"
		"                     keys; mix and set draw zipf keys\n"
		"  --zipf THETA       zipf skew, 0 <= THETA < 1 (default 0.99)\n"
		"  --size BYTES       segment size, K/M/G suffixes (default\n"
		"                     keys*(key+value+64)*2 rounded up to MiB, >= 64 MiB)\n"
		"  --floor            also run the floor and print ratios (default)\n"
		"  --no-floor         skip the floor\n"
		"  --runs R           repeat each measurement R times, report medians (1)\n"
		"  --name NAME        segment name (default bench.<pid>)\n"
		"  --overhead         only the memory phase: overhead per item when full, and\n"
		"                     payload share of the data area at steady state under\n"
		"                     eviction, for --value-size and for 1 KiB values\n"
		"  --no-overhead      skip the memory phase run after the workloads\n"
		"  --trace            only measure eviction quality: replay a zipf trace and\n"
		"                     the same with a one-pass scan through the cache and\n"
		"                     through an exact LRU of the cache's average item count,\n"
		"                     and print both miss ratios (uses --zipf, --key-size,\n"
		"                     --value-size)\n"
		"  --trace-requests N zipf requests per trace (default 10000000)\n"
		"  --trace-keys N     distinct zipf keys (default 1000000)\n"
		"  --trace-cache-items N|P%%\n"
		"                     items the cache's data area is sized for, or a\n"
		"                     percentage of --trace-keys (default 10%%)\n"
		"  --seed N           seed of the trace (default 1)\n"
		"  --sampling-overhead\n"
		"                     only measure what the library's sampling costs: the\n"
		"                     get-zipf workload with every worker's handle sampling\n"
		"                     1 op in %u (the default) and with sampling off,\n"
		"                     alternating --runs times (default %u), for each\n"
		"                     --procs; prints both medians and their ratio\n"
		"                     on/off (target >= %.2f), by the clock and per\n"
		"                     CPU-second of the workers (robust to a busy host)\n"
		"  --peers            only the GET workloads (get-zipf unless --workload says\n"
		"                     get-uniform or both) against other stores, each next\n"
		"                     to the floor and libshmcache (shmc_get into a buffer)\n"
		"                     in the same run, for each --procs:\n"
		"                       memcached     libmemcached, ASCII protocol\n"
		"                       redis         hiredis, one GET per round trip\n"
		"                       redis-pipe32  hiredis, %u GETs pipelined per round trip\n"
		"                       lmdb          liblmdb in the worker: read-only\n"
		"                                     transaction + mdb_get per GET\n"
		"                     memcached and redis-server are started by the bench on\n"
		"                     unix sockets (never TCP) in a private temporary\n"
		"                     directory ($TMPDIR or /tmp), which also holds the LMDB\n"
		"                     database, and are stopped at the end; a missing\n"
		"                     library or server is named and the bench exits 1.\n"
		"                     Prints peer, procs, ops/s, p50, p99 and ops/s relative\n"
		"                     to libshmcache at the same procs. Latency: every round\n"
		"                     trip timed for a socket peer (a pipelined sample is the\n"
		"                     whole batch's round trip), 1 op in %u for the others\n"
		"  --herd             read-through under expiry (options: --herd --help)\n"
		"  --uplink           the Redis uplink next to redis-benchmark on a\n"
		"                     redis-server of its own (options: --uplink --help)\n"
		"  --json             one JSON object per run, then a summary object (with\n"
		"                     --trace: one per trace, no summary; with --peers: one\n"
		"                     per peer and procs, no summary);\n"
		"                     nothing else on stdout\n"
		"  -h, --help         this text\n"
		"\n"
		"Throughput is summed over workers; p50/p99 come from 1 op in %u timed\n"
		"(the sample includes one clock_gettime). Scaling is last/first --procs.\n"
		"Exit status: 0 ok, 1 failure or any miss/error, 2 usage.\n",
		SAMPLING_PERIOD, SAMPLING_DEFAULT_RUNS, SAMPLING_TARGET_RATIO, PEER_PIPE_DEPTH,
		SAMPLE_EVERY, SAMPLE_EVERY);
}

int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || *s == '-' || *s == '\0')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int bench_parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

/* N, or P% (0 < P <= 100): sets one of *count and *percent, zeroes the
 * other. */
static int parse_count_or_percent(const char *s, uint64_t *count, double *percent)
{
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '%') {
		char *number = strndup(s, n - 1);
		int rc = number ? bench_parse_double(number, 1e-9, 100.0, percent) : -1;
		free(number);
		*count = 0;
		return rc;
	}
	*percent = 0.0;
	return bench_parse_u64(s, 1, UINT32_MAX, count);
}

/* BYTES with an optional binary suffix K, M or G. */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -1;
	}
	if (*end != '\0' || v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)v << shift;
	return 0;
}

static int parse_procs(const char *s, struct config *cfg)
{
	char *copy = strdup(s), *save = NULL;
	int rc = copy ? 0 : -1;
	cfg->nprocs = 0;
	for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && rc == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (cfg->nprocs == MAX_PROCS_LIST || bench_parse_u64(tok, 1, MAX_PROCS, &v) != 0)
			rc = -1;
		else
			cfg->procs[cfg->nprocs++] = (unsigned)v;
	}
	free(copy);
	return rc == 0 && cfg->nprocs > 0 ? 0 : -1;
}

static int parse_workloads(const char *s, struct config *cfg)
{
	char *copy = strdup(s), *save = NULL;
	int rc = copy ? 0 : -1;
	bool any = false;
	memset(cfg->workloads, 0, sizeof cfg->workloads);
	for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && rc == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		bool known = false;
		for (int wl = 0; wl < WL_COUNT; wl++) {
			if (strcmp(tok, "all") == 0 || strcmp(tok, workload_table[wl].name) == 0) {
				cfg->workloads[wl] = true;
				known = any = true;
			}
		}
		if (!known) {
			fprintf(stderr, "shmcache-bench: unknown workload '%s'\n", tok);
			rc = -1;
		}
	}
	free(copy);
	return rc == 0 && any ? 0 : -1;
}

bool bench_name_valid(const char *s, size_t max_len)
{
	size_t n = strlen(s);
	if (n == 0 || n > max_len)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		if (!ok)
			return false;
	}
	return true;
}

/* Checks the options against each other and derives the segment size. */
static int config_finish(struct config *cfg)
{
	if (cfg->name[0] == '\0')
		snprintf(cfg->name, sizeof cfg->name, "bench.%ld", (long)getpid());
	if (cfg->sampling_overhead && !cfg->runs_given)
		cfg->runs = SAMPLING_DEFAULT_RUNS;
	if (cfg->peers) {
		if (cfg->trace || cfg->sampling_overhead || cfg->overhead_only) {
			fprintf(stderr, "shmcache-bench: --peers runs alone: not with --trace, "
					"--sampling-overhead or --overhead\n");
			return -1;
		}
		if (!cfg->workloads_given) {
			memset(cfg->workloads, 0, sizeof cfg->workloads);
			cfg->workloads[WL_GET_ZIPF] = true;
		}
		for (int wl = 0; wl < WL_COUNT; wl++) {
			if (cfg->workloads[wl] && workload_table[wl].set_percent > 0) {
				fprintf(stderr, "shmcache-bench: --peers runs GET workloads only "
						"(get-zipf, get-uniform), not '%s'\n",
					workload_table[wl].name);
				return -1;
			}
		}
	}
	if (cfg->trace_cache_items == 0) {
		double items = (double)cfg->trace_keys * cfg->trace_cache_percent / 100.0;
		cfg->trace_cache_items = items < 1.0 ? 1 : (uint64_t)llround(items);
	}
	if (cfg->key_size - 1 < decimal_digits(cfg->keys - 1)) {
		fprintf(stderr, "shmcache-bench: --key-size %zu cannot hold %" PRIu64
				" distinct keys (need %u bytes)\n",
			cfg->key_size, cfg->keys, decimal_digits(cfg->keys - 1) + 1);
		return -1;
	}
	if (cfg->segment_bytes == 0) {
		double want = (double)cfg->keys *
			      (double)(cfg->key_size + cfg->value_size + 64) * 2.0;
		double rounded = ceil(want / (double)MIB) * (double)MIB;
		if (rounded > (double)(SIZE_MAX / 2)) {
			fprintf(stderr, "shmcache-bench: derived segment size too large\n");
			return -1;
		}
		cfg->segment_bytes = (size_t)rounded;
		if (cfg->segment_bytes < 64 * MIB)
			cfg->segment_bytes = 64 * MIB;
	}
	return 0;
}

static int config_parse(int argc, char **argv, struct config *cfg)
{
	enum {
		OPT_KEYS = 256, OPT_KEY_SIZE, OPT_VALUE_SIZE, OPT_PROCS, OPT_SECONDS,
		OPT_WORKLOAD, OPT_ZIPF, OPT_SIZE, OPT_FLOOR, OPT_NO_FLOOR, OPT_JSON,
		OPT_RUNS, OPT_NAME, OPT_OVERHEAD, OPT_NO_OVERHEAD, OPT_TRACE,
		OPT_TRACE_REQUESTS, OPT_TRACE_KEYS, OPT_TRACE_CACHE_ITEMS, OPT_SEED,
		OPT_SAMPLING_OVERHEAD, OPT_PEERS,
	};
	static const struct option longopts[] = {
		{ "keys", required_argument, NULL, OPT_KEYS },
		{ "key-size", required_argument, NULL, OPT_KEY_SIZE },
		{ "value-size", required_argument, NULL, OPT_VALUE_SIZE },
		{ "procs", required_argument, NULL, OPT_PROCS },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "workload", required_argument, NULL, OPT_WORKLOAD },
		{ "zipf", required_argument, NULL, OPT_ZIPF },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "floor", no_argument, NULL, OPT_FLOOR },
		{ "no-floor", no_argument, NULL, OPT_NO_FLOOR },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "runs", required_argument, NULL, OPT_RUNS },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "overhead", no_argument, NULL, OPT_OVERHEAD },
		{ "no-overhead", no_argument, NULL, OPT_NO_OVERHEAD },
		{ "trace", no_argument, NULL, OPT_TRACE },
		{ "trace-requests", required_argument, NULL, OPT_TRACE_REQUESTS },
		{ "trace-keys", required_argument, NULL, OPT_TRACE_KEYS },
		{ "trace-cache-items", required_argument, NULL, OPT_TRACE_CACHE_ITEMS },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "sampling-overhead", no_argument, NULL, OPT_SAMPLING_OVERHEAD },
		{ "peers", no_argument, NULL, OPT_PEERS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	memset(cfg, 0, sizeof *cfg);
	cfg->keys = 100000;
	cfg->key_size = 16;
	cfg->value_size = 100;
	cfg->procs[0] = 1;
	cfg->procs[1] = 2;
	cfg->nprocs = 2;
	cfg->seconds = 3.0;
	for (int wl = 0; wl < WL_COUNT; wl++)
		cfg->workloads[wl] = true;
	cfg->zipf_theta = 0.99;
	cfg->floor = true;
	cfg->overhead = true;
	cfg->runs = 1;
	cfg->trace_requests = 10000000;
	cfg->trace_keys = 1000000;
	cfg->trace_cache_percent = 10.0;
	cfg->seed = 1;

	int opt;
	uint64_t v;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		const char *bad = NULL;
		switch (opt) {
		case OPT_KEYS:
			if (bench_parse_u64(optarg, 1, MAX_KEYS, &cfg->keys) != 0)
				bad = "--keys";
			break;
		case OPT_KEY_SIZE:
			if (bench_parse_u64(optarg, 2, SHMC_KEY_MAX, &v) != 0)
				bad = "--key-size";
			cfg->key_size = (size_t)v;
			break;
		case OPT_VALUE_SIZE:
			if (bench_parse_u64(optarg, 0, MAX_VALUE_SIZE, &v) != 0)
				bad = "--value-size";
			cfg->value_size = (size_t)v;
			break;
		case OPT_PROCS:
			if (parse_procs(optarg, cfg) != 0)
				bad = "--procs";
			break;
		case OPT_SECONDS:
			if (bench_parse_double(optarg, 0.01, 86400.0, &cfg->seconds) != 0)
				bad = "--seconds";
			break;
		case OPT_WORKLOAD:
			if (parse_workloads(optarg, cfg) != 0)
				bad = "--workload";
			cfg->workloads_given = true;
			break;
		case OPT_ZIPF:
			if (bench_parse_double(optarg, 0.0, 0.9999, &cfg->zipf_theta) != 0)
				bad = "--zipf";
			break;
		case OPT_SIZE:
			if (parse_size(optarg, &cfg->segment_bytes) != 0 ||
			    cfg->segment_bytes < SHMC_MIN_SIZE)
				bad = "--size";
			break;
		case OPT_FLOOR: cfg->floor = true; break;
		case OPT_NO_FLOOR: cfg->floor = false; break;
		case OPT_JSON: cfg->json = true; break;
		case OPT_RUNS:
			if (bench_parse_u64(optarg, 1, 64, &v) != 0)
				bad = "--runs";
			cfg->runs = (unsigned)v;
			cfg->runs_given = true;
			break;
		case OPT_NAME:
			if (!bench_name_valid(optarg, NAME_MAX_LEN))
				bad = "--name";
			else
				snprintf(cfg->name, sizeof cfg->name, "%s", optarg);
			break;
		case OPT_OVERHEAD: cfg->overhead_only = true; break;
		case OPT_NO_OVERHEAD: cfg->overhead = false; break;
		case OPT_TRACE: cfg->trace = true; break;
		case OPT_SAMPLING_OVERHEAD: cfg->sampling_overhead = true; break;
		case OPT_PEERS: cfg->peers = true; break;
		case OPT_TRACE_REQUESTS:
			if (bench_parse_u64(optarg, 3, UINT32_MAX, &cfg->trace_requests) != 0)
				bad = "--trace-requests";
			break;
		case OPT_TRACE_KEYS:
			if (bench_parse_u64(optarg, 1, UINT32_MAX, &cfg->trace_keys) != 0)
				bad = "--trace-keys";
			break;
		case OPT_TRACE_CACHE_ITEMS:
			if (parse_count_or_percent(optarg, &cfg->trace_cache_items,
						   &cfg->trace_cache_percent) != 0)
				bad = "--trace-cache-items";
			break;
		case OPT_SEED:
			if (bench_parse_u64(optarg, 0, UINT64_MAX, &cfg->seed) != 0)
				bad = "--seed";
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (bad)
			return bench_bad_value(bad, optarg);
	}
	if (bench_no_operands(argc, argv) != 0)
		return -1;
	return config_finish(cfg);
}

int bench_bad_value(const char *option, const char *value)
{
	fprintf(stderr, "shmcache-bench: bad value for %s: '%s'\n", option, value);
	return -1;
}

int bench_no_operands(int argc, char **argv)
{
	if (optind >= argc)
		return 0;
	fprintf(stderr, "shmcache-bench: unexpected argument '%s'\n", argv[optind]);
	return -1;
}

int main(int argc, char **argv)
{
	static struct bench b; /* large; zero-initialised */
	/* --herd and --uplink take options of their own: see herd.c and
	 * uplink.c. */
	for (int i = 1; i < argc; i++) {
		bool herd = strcmp(argv[i], "--herd") == 0;
		if (herd || strcmp(argv[i], "--uplink") == 0) {
			setvbuf(stdout, NULL, _IOLBF, 0);
			signals_install();
			return herd ? herd_main(argc, argv) : uplink_main(argc, argv);
		}
	}
	if (config_parse(argc, argv, &b.cfg) != 0)
		return 2;
	/* Line-buffered even into a pipe: results and stderr diagnostics stay
	 * in order, and each JSON object reaches a reader whole. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	signals_install();
	int rc = bench_run(&b);
	bench_cleanup(&b);
	return rc;
}
