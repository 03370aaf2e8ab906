/*
 * herd.c - shmcache-bench --herd: read-through under expiry.
 *
 * P worker processes x T threads hammer a few hot keys whose short TTL
 * makes them expire again and again under load; on a miss the value comes
 * from a simulated origin that sleeps a configurable latency. The same load
 * runs twice in one invocation, each time on a fresh segment:
 *
 *   fetch  shmc_fetch() with the origin as its loader: one origin call per
 *          key per expiry host-wide, everyone else waits for it;
 *   naive  the usual cache-aside loop: shmc_get(), on a miss call the origin
 *          and shmc_set() the result: every caller that misses in the
 *          origin's latency window calls the origin (the thundering herd).
 *
 * The origin counts its calls in shared memory and groups them into
 * expiries: a call for a key opens a new expiry unless another call for the
 * same key opened one less than TTL / 2 before (the value of an expiry
 * lives a whole TTL, so two calls that close together are the same herd).
 * Reported per variant: origin calls per expiry, and p50 / p99 / p99.9 /
 * max latency of every operation (clock read before and after each one,
 * into per-thread log-linear histograms), throughput and the library's
 * read-through counters. TTL should be several times the origin latency.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
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

#include "shmcache.h"

#include "bench.h"

#define HERD_MAX_PROCS 256u
#define HERD_MAX_THREADS 64u
#define HERD_MAX_WORKERS 1024u /* procs x threads */
#define HERD_MAX_KEYS 4096u
#define HERD_KEY_BYTES 16u /* "herd-" + index, zero-padded */
#define HERD_HIST_SUB 16u  /* buckets per power of two */
#define HERD_HIST_BUCKETS (64u * HERD_HIST_SUB)
#define HERD_CHECK_OPS 256u /* ops between deadline checks */
#define HERD_READY_TIMEOUT_S 30.0
#define HERD_SEGMENT_BYTES (64u << 20)

enum herd_variant { HERD_FETCH, HERD_NAIVE, HERD_NVARIANTS };

static const char *const variant_name[HERD_NVARIANTS] = {"fetch", "naive"};

struct herd_config {
	unsigned procs, threads, keys;
	uint32_t ttl_ms;
	uint32_t stale_ms; /* stale window of the segment (0 = none) */
	uint64_t origin_latency_us;
	uint64_t think_us; /* pause after each operation */
	size_t value_size;
	double seconds;
	bool variants[HERD_NVARIANTS];
	bool json;
	char name[200];
};

/* One worker thread's results; written only by it. */
struct herd_slot {
	uint64_t ops;
	uint64_t errors;
	uint64_t bad_values;
	uint64_t hist[HERD_HIST_BUCKETS];
};

/* Shared by the parent and its workers (MAP_SHARED, set up before fork). */
struct herd_shared {
	_Atomic unsigned ready;
	_Atomic int go;
	_Atomic uint64_t deadline_ns;
	_Atomic uint64_t origin_calls;
	_Atomic uint64_t expiries;
	_Atomic uint64_t epoch_open_ns[HERD_MAX_KEYS]; /* when the key's last expiry opened */
	int first_error;
	char first_error_msg[160];
	_Atomic int have_error;
	struct herd_slot slots[]; /* procs x threads */
};

struct herd_run {
	const struct herd_config *cfg;
	enum herd_variant variant;
	struct herd_shared *sh;
	size_t sh_bytes;
	char segment[220];
};

/* ------------------------------------------------------------ histogram */

static unsigned hist_index(uint64_t ns)
{
	if (ns < HERD_HIST_SUB)
		return (unsigned)ns;
	unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)(ns >> (msb - 4)) & (HERD_HIST_SUB - 1);
	unsigned idx = (msb - 3) * HERD_HIST_SUB + sub;
	return idx < HERD_HIST_BUCKETS ? idx : HERD_HIST_BUCKETS - 1;
}

static uint64_t hist_lower(unsigned idx)
{
	if (idx < HERD_HIST_SUB)
		return idx;
	unsigned msb = idx / HERD_HIST_SUB + 3, sub = idx % HERD_HIST_SUB;
	return (uint64_t)(HERD_HIST_SUB + sub) << (msb - 4);
}

/* The value at quantile q: the midpoint of its bucket (within 3%). */
static uint64_t hist_quantile(const uint64_t *h, uint64_t total, double q)
{
	if (total == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)total), seen = 0;
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < HERD_HIST_BUCKETS; i++) {
		seen += h[i];
		if (seen > want) {
			uint64_t lo = hist_lower(i), hi = hist_lower(i + 1);
			return i + 1 < HERD_HIST_BUCKETS ? lo + (hi - lo) / 2 : lo;
		}
	}
	return 0;
}

static uint64_t hist_max(const uint64_t *h)
{
	for (unsigned i = HERD_HIST_BUCKETS; i-- > 0;)
		if (h[i])
			return i + 1 < HERD_HIST_BUCKETS ? hist_lower(i + 1) : hist_lower(i);
	return 0;
}

/* --------------------------------------------------------------- origin */

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !bench_interrupted)
		;
}

static void herd_error(struct herd_shared *sh, int rc, const char *what)
{
	if (atomic_exchange(&sh->have_error, 1) == 0) {
		sh->first_error = rc;
		snprintf(sh->first_error_msg, sizeof sh->first_error_msg, "%s", what);
	}
}

/* The key's index from its name (the keys are ours). */
static unsigned key_index(const void *key, size_t klen)
{
	const char *k = key;
	unsigned v = 0;
	for (size_t i = 5; i < klen; i++)
		v = v * 10 + (unsigned)(k[i] - '0');
	return v;
}

static void key_name(char *out, unsigned i)
{
	memcpy(out, "herd-", 5);
	key_format(out + 4, HERD_KEY_BYTES - 4, i); /* "k" lands on the '-' */
	out[4] = '-';
}

/* The simulated origin: counts the call, groups it into an expiry, sleeps
 * the origin latency, returns the key's value (the key repeated). */
static int origin_load(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	struct herd_run *run = arg;
	const struct herd_config *cfg = run->cfg;
	struct herd_shared *sh = run->sh;
	unsigned k = key_index(key, klen);
	uint64_t now = now_ns(), window = (uint64_t)cfg->ttl_ms * 1000000u / 2;

	atomic_fetch_add(&sh->origin_calls, 1);
	if (k < HERD_MAX_KEYS) {
		uint64_t open = atomic_load(&sh->epoch_open_ns[k]);
		while (open == 0 || now >= open + window) {
			if (atomic_compare_exchange_weak(&sh->epoch_open_ns[k], &open, now)) {
				atomic_fetch_add(&sh->expiries, 1);
				break;
			}
		}
	}
	sleep_ns(cfg->origin_latency_us * 1000u);
	unsigned char *v = malloc(cfg->value_size ? cfg->value_size : 1);
	if (!v)
		return SHMC_ENOMEM;
	for (size_t i = 0; i < cfg->value_size; i++)
		v[i] = ((const unsigned char *)key)[i % klen];
	*val = v;
	*vlen = cfg->value_size;
	*ttl_ms = cfg->ttl_ms;
	return 0;
}

/* -------------------------------------------------------------- workers */

struct herd_thread {
	struct herd_run *run;
	shmc_cache *c;
	struct herd_slot *slot;
	uint64_t seed;
};

/* Cache-aside without coordination: get, else load and set. */
static int naive_fetch(struct herd_run *run, shmc_cache *c, const char *key, void *buf, size_t cap,
		       size_t *vlen)
{
	int rc = shmc_get(c, key, HERD_KEY_BYTES, buf, cap, vlen);
	if (rc != SHMC_ENOTFOUND)
		return rc;
	void *val = NULL;
	uint32_t ttl = 0;
	rc = origin_load(run, key, HERD_KEY_BYTES, &val, vlen, &ttl);
	if (rc == 0) {
		rc = shmc_set(c, key, HERD_KEY_BYTES, val, *vlen, ttl, 0);
		if (rc == 0 && *vlen <= cap)
			memcpy(buf, val, *vlen);
	}
	free(val);
	return rc;
}

static void *herd_thread_main(void *arg)
{
	struct herd_thread *th = arg;
	struct herd_run *run = th->run;
	const struct herd_config *cfg = run->cfg;
	struct herd_shared *sh = run->sh;
	struct herd_slot *slot = th->slot;
	size_t cap = cfg->value_size ? cfg->value_size : 1;
	unsigned char *buf = malloc(cap);
	char(*keys)[HERD_KEY_BYTES] = malloc((size_t)cfg->keys * HERD_KEY_BYTES);
	uint64_t rng = xorshift_seed(th->seed);

	if (!buf || !keys) {
		herd_error(sh, SHMC_ENOMEM, "worker out of memory");
		free(buf);
		free(keys);
		atomic_fetch_add(&sh->ready, 1);
		return NULL;
	}
	for (unsigned i = 0; i < cfg->keys; i++)
		key_name(keys[i], i);
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->go) && !bench_interrupted)
		sleep_ns(100000);
	uint64_t deadline = atomic_load(&sh->deadline_ns);
	for (uint64_t n = 0;; n++) {
		if (n % HERD_CHECK_OPS == 0 && (now_ns() >= deadline || bench_interrupted))
			break;
		const char *key = keys[range_map(xorshift_next(&rng), cfg->keys)];
		size_t vlen = 0;
		uint64_t t0 = now_ns();
		int rc = run->variant == HERD_FETCH ? shmc_fetch(th->c, key, HERD_KEY_BYTES, buf,
								 cap, &vlen, origin_load, run)
						    : naive_fetch(run, th->c, key, buf, cap, &vlen);
		uint64_t t1 = now_ns();
		slot->hist[hist_index(t1 - t0)]++;
		if (cfg->think_us)
			sleep_ns(cfg->think_us * 1000u);
		slot->ops++;
		if (rc != 0) {
			slot->errors++;
			herd_error(sh, rc,
				   run->variant == HERD_FETCH ? "shmc_fetch" : "get/load/set");
		} else if (vlen != cfg->value_size ||
			   (vlen &&
			    memcmp(buf, key, vlen < HERD_KEY_BYTES ? vlen : HERD_KEY_BYTES))) {
			slot->bad_values++;
			herd_error(sh, BENCH_EBADVALUE, "value of another key");
		}
	}
	free(buf);
	free(keys);
	return NULL;
}

/* A worker process: attach by name, run the threads. Exit status. */
static int herd_worker(struct herd_run *run, unsigned proc)
{
	const struct herd_config *cfg = run->cfg;
	shmc_cache *c = NULL;
	int rc = shmc_open(run->segment, NULL, 0, &c);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: herd worker %u: shmc_open(%s): %s %s\n", proc,
			run->segment, shmc_errname(rc), shmc_errmsg(NULL));
		herd_error(run->sh, rc, "shmc_open");
		for (unsigned t = 0; t < cfg->threads; t++)
			atomic_fetch_add(&run->sh->ready, 1);
		return 1;
	}
	pthread_t tids[HERD_MAX_THREADS];
	struct herd_thread ths[HERD_MAX_THREADS];
	unsigned started = 0;
	for (unsigned t = 0; t < cfg->threads; t++) {
		ths[t] = (struct herd_thread){
			.run = run,
			.c = c,
			.slot = &run->sh->slots[proc * cfg->threads + t],
			.seed = ((uint64_t)run->variant << 40) ^ ((uint64_t)proc << 20) ^ t,
		};
		if (pthread_create(&tids[t], NULL, herd_thread_main, &ths[t]) != 0) {
			herd_error(run->sh, -EAGAIN, "pthread_create");
			atomic_fetch_add(&run->sh->ready, cfg->threads - t);
			break;
		}
		started++;
	}
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	shmc_close(c);
	return started == cfg->threads ? 0 : 1;
}

/* --------------------------------------------------------------- parent */

struct herd_result {
	uint64_t ops, errors, bad_values;
	uint64_t origin_calls, expiries;
	uint64_t p50_ns, p99_ns, p999_ns, max_ns;
	double seconds;
	struct shmc_stats st;
};

static int segment_create(const struct herd_run *run, shmc_cache **out)
{
	const struct herd_config *cfg = run->cfg;
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);
	/* The parent keeps no background thread across fork(); the workers
	 * open with the defaults, so one of them runs the sweeper. */
	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0)
		rc = shmc_opts_set_size(o, HERD_SEGMENT_BYTES);
	if (rc == 0 && cfg->stale_ms)
		rc = shmc_opts_set_stale_window(o, cfg->stale_ms);
	if (rc == 0) {
		shmc_unlink(run->segment);
		rc = shmc_open(run->segment, o, SHMC_CREATE | SHMC_EXCL, out);
	}
	shmc_opts_destroy(o);
	if (rc != 0)
		fprintf(stderr, "shmcache-bench: herd: shmc_open(%s): %s %s\n", run->segment,
			shmc_errname(rc), shmc_errmsg(NULL));
	return rc;
}

static int herd_measure(struct herd_run *run, struct herd_result *res)
{
	const struct herd_config *cfg = run->cfg;
	unsigned nworkers = cfg->procs * cfg->threads;
	shmc_cache *c = NULL;
	int failed = 0;

	memset(res, 0, sizeof *res);
	memset(run->sh, 0, run->sh_bytes);
	snprintf(run->segment, sizeof run->segment, "%s.%s", cfg->name, variant_name[run->variant]);
	if (segment_create(run, &c) != 0)
		return -1;
	pid_t *pids = calloc(cfg->procs, sizeof *pids);
	if (!pids) {
		shmc_close(c);
		shmc_unlink(run->segment);
		return -1;
	}
	fflush(NULL);
	for (unsigned p = 0; p < cfg->procs; p++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(herd_worker(run, p));
		pids[p] = pid;
		if (pid < 0) {
			fprintf(stderr, "shmcache-bench: herd: fork: %s\n", strerror(errno));
			atomic_fetch_add(&run->sh->ready, cfg->threads);
			failed = 1;
		}
	}
	uint64_t ready_by = now_ns() + (uint64_t)(HERD_READY_TIMEOUT_S * 1e9);
	while (atomic_load(&run->sh->ready) < nworkers && now_ns() < ready_by && !bench_interrupted)
		sleep_ns(1000000);
	uint64_t start = now_ns();
	atomic_store(&run->sh->deadline_ns, start + (uint64_t)(cfg->seconds * 1e9));
	atomic_store(&run->sh->go, 1);
	for (unsigned p = 0; p < cfg->procs; p++) {
		int status;
		if (pids[p] <= 0)
			continue;
		while (waitpid(pids[p], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	res->seconds = (double)(now_ns() - start) / 1e9;
	free(pids);

	static uint64_t hist[HERD_HIST_BUCKETS];
	memset(hist, 0, sizeof hist);
	for (unsigned w = 0; w < nworkers; w++) {
		const struct herd_slot *s = &run->sh->slots[w];
		res->ops += s->ops;
		res->errors += s->errors;
		res->bad_values += s->bad_values;
		for (unsigned i = 0; i < HERD_HIST_BUCKETS; i++)
			hist[i] += s->hist[i];
	}
	res->origin_calls = atomic_load(&run->sh->origin_calls);
	res->expiries = atomic_load(&run->sh->expiries);
	res->p50_ns = hist_quantile(hist, res->ops, 0.50);
	res->p99_ns = hist_quantile(hist, res->ops, 0.99);
	res->p999_ns = hist_quantile(hist, res->ops, 0.999);
	res->max_ns = hist_max(hist);
	shmc_stats(c, &res->st);
	shmc_close(c);
	shmc_unlink(run->segment);
	if (atomic_load(&run->sh->have_error))
		fprintf(stderr, "shmcache-bench: herd %s: first failure: %s: %s\n",
			variant_name[run->variant], run->sh->first_error_msg,
			error_name(run->sh->first_error));
	return failed || res->errors || res->bad_values || bench_interrupted ? -1 : 0;
}

static double per_expiry(const struct herd_result *r)
{
	return r->expiries ? (double)r->origin_calls / (double)r->expiries : 0.0;
}

static void herd_print(const struct herd_config *cfg, enum herd_variant v,
		       const struct herd_result *r)
{
	if (cfg->json) {
		printf("{\"herd\":true,\"variant\":\"%s\",\"procs\":%u,\"threads\":%u,\"keys\":%u,"
		       "\"ttl_ms\":%" PRIu32 ",\"stale_ms\":%" PRIu32
		       ",\"origin_latency_us\":%" PRIu64 ",\"think_us\":%" PRIu64
		       ",\"value_size\":%zu,\"seconds\":%.3f,\"ops\":%" PRIu64
		       ",\"ops_per_sec\":%.0f,"
		       "\"origin_calls\":%" PRIu64 ",\"expiries\":%" PRIu64
		       ",\"origin_calls_per_expiry\":%.3f,\"p50_ns\":%" PRIu64
		       ",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"bad_values\":%" PRIu64
		       ",\"lib_origin_calls\":%" PRIu64 ",\"lib_fills\":%" PRIu64
		       ",\"lib_coalesced_waits\":%" PRIu64 ",\"lib_lease_takeovers\":%" PRIu64
		       ",\"lib_stale_serves\":%" PRIu64 ",\"lib_refreshes\":%" PRIu64 "}\n",
		       variant_name[v], cfg->procs, cfg->threads, cfg->keys, cfg->ttl_ms,
		       cfg->stale_ms, cfg->origin_latency_us, cfg->think_us, cfg->value_size,
		       r->seconds, r->ops, (double)r->ops / r->seconds, r->origin_calls,
		       r->expiries, per_expiry(r), r->p50_ns, r->p99_ns, r->p999_ns, r->max_ns,
		       r->errors, r->bad_values, r->st.origin_calls, r->st.fills,
		       r->st.coalesced_waits, r->st.lease_takeovers, r->st.stale_serves,
		       r->st.refreshes);
		return;
	}
	printf("%-6s %11.0f %12" PRIu64 " %9" PRIu64 " %12.2f %9.1f %9.1f %9.1f %9.1f %10" PRIu64
	       "\n",
	       variant_name[v], (double)r->ops / r->seconds, r->origin_calls, r->expiries,
	       per_expiry(r), (double)r->p50_ns / 1e3, (double)r->p99_ns / 1e3,
	       (double)r->p999_ns / 1e3, (double)r->max_ns / 1e3, r->st.coalesced_waits);
}

/* -------------------------------------------------------------- options */

static void herd_usage(FILE *out)
{
	fprintf(out,
		"usage: shmcache-bench --herd [options]\n"
		"\n"
		"Read-through under expiry: P processes x T threads fetch a few hot keys whose\n"
		"short TTL makes them expire under load; misses go to a simulated origin that\n"
		"sleeps --origin-latency-us. Runs the load with shmc_fetch (one origin call per\n"
		"key per expiry host-wide) and with a naive get / load / set loop, one after\n"
		"the other, and prints origin calls per expiry and operation latency for each.\n"
		"\n"
		"  --procs N              worker processes (default 4)\n"
		"  --threads N            threads per worker (default 4)\n"
		"  --keys N               hot keys (default 8)\n"
		"  --ttl-ms MS            TTL of a loaded value (default 50)\n"
		"  --origin-latency-us US origin latency (default 2000)\n"
		"  --stale-ms MS          stale window of the segment (default 0: none)\n"
		"  --think-us US          pause after each operation (default 0: flat out;\n"
		"                         with more threads than CPUs, latency tails then\n"
		"                         measure the scheduler)\n"
		"  --value-size B         value bytes (default 100)\n"
		"  --seconds S            timed seconds per variant (default 3)\n"
		"  --variant LIST         fetch,naive or all (default all)\n"
		"  --name NAME            segment name prefix (default bench.herd.<pid>)\n"
		"  --json                 one JSON object per variant, then a summary\n"
		"  -h, --help             this text\n"
		"\n"
		"An expiry is a group of origin calls for one key less than TTL/2 apart.\n"
		"Latency: every operation is timed (two clock reads); percentiles are bucket\n"
		"midpoints (within 3%%). Exit status: 0 ok, 1 failure, 2 usage.\n");
}

static int herd_parse(int argc, char **argv, struct herd_config *cfg)
{
	enum {
		O_HERD = 256,
		O_PROCS,
		O_THREADS,
		O_KEYS,
		O_TTL,
		O_LATENCY,
		O_STALE,
		O_THINK,
		O_VALUE,
		O_SECONDS,
		O_VARIANT,
		O_NAME,
		O_JSON,
	};
	static const struct option longopts[] = {
		{"herd", no_argument, NULL, O_HERD},
		{"procs", required_argument, NULL, O_PROCS},
		{"threads", required_argument, NULL, O_THREADS},
		{"keys", required_argument, NULL, O_KEYS},
		{"ttl-ms", required_argument, NULL, O_TTL},
		{"origin-latency-us", required_argument, NULL, O_LATENCY},
		{"stale-ms", required_argument, NULL, O_STALE},
		{"think-us", required_argument, NULL, O_THINK},
		{"value-size", required_argument, NULL, O_VALUE},
		{"seconds", required_argument, NULL, O_SECONDS},
		{"variant", required_argument, NULL, O_VARIANT},
		{"name", required_argument, NULL, O_NAME},
		{"json", no_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	*cfg = (struct herd_config){.procs = 4,
				    .threads = 4,
				    .keys = 8,
				    .ttl_ms = 50,
				    .origin_latency_us = 2000,
				    .value_size = 100,
				    .seconds = 3.0,
				    .variants = {true, true}};
	snprintf(cfg->name, sizeof cfg->name, "bench.herd.%ld", (long)getpid());
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint64_t v = 0;
		const char *bad = NULL;
		switch (opt) {
		case O_HERD:
			break;
		case O_PROCS:
			if (bench_parse_u64(optarg, 1, HERD_MAX_PROCS, &v))
				bad = "--procs";
			cfg->procs = (unsigned)v;
			break;
		case O_THREADS:
			if (bench_parse_u64(optarg, 1, HERD_MAX_THREADS, &v))
				bad = "--threads";
			cfg->threads = (unsigned)v;
			break;
		case O_KEYS:
			if (bench_parse_u64(optarg, 1, HERD_MAX_KEYS, &v))
				bad = "--keys";
			cfg->keys = (unsigned)v;
			break;
		case O_TTL:
			if (bench_parse_u64(optarg, 2, 3600000, &v))
				bad = "--ttl-ms";
			cfg->ttl_ms = (uint32_t)v;
			break;
		case O_LATENCY:
			if (bench_parse_u64(optarg, 0, 10000000, &v))
				bad = "--origin-latency-us";
			cfg->origin_latency_us = v;
			break;
		case O_STALE:
			if (bench_parse_u64(optarg, 0, 3600000, &v))
				bad = "--stale-ms";
			cfg->stale_ms = (uint32_t)v;
			break;
		case O_THINK:
			if (bench_parse_u64(optarg, 0, 10000000, &v))
				bad = "--think-us";
			cfg->think_us = v;
			break;
		case O_VALUE:
			if (bench_parse_u64(optarg, 0, 1u << 20, &v))
				bad = "--value-size";
			cfg->value_size = (size_t)v;
			break;
		case O_SECONDS:
			if (bench_parse_double(optarg, 0.05, 86400, &cfg->seconds))
				bad = "--seconds";
			break;
		case O_VARIANT:
			cfg->variants[HERD_FETCH] =
				strstr(optarg, "fetch") || !strcmp(optarg, "all");
			cfg->variants[HERD_NAIVE] =
				strstr(optarg, "naive") || !strcmp(optarg, "all");
			if (!cfg->variants[HERD_FETCH] && !cfg->variants[HERD_NAIVE])
				bad = "--variant";
			break;
		case O_NAME:
			if (!bench_name_valid(optarg, 190))
				bad = "--name";
			else
				snprintf(cfg->name, sizeof cfg->name, "%s", optarg);
			break;
		case O_JSON:
			cfg->json = true;
			break;
		case 'h':
			herd_usage(stdout);
			exit(0);
		default:
			herd_usage(stderr);
			return -1;
		}
		if (bad)
			return bench_bad_value(bad, optarg);
	}
	if (bench_no_operands(argc, argv) != 0)
		return -1;
	if (cfg->procs * cfg->threads > HERD_MAX_WORKERS) {
		fprintf(stderr, "shmcache-bench: --procs x --threads over %u\n", HERD_MAX_WORKERS);
		return -1;
	}
	return 0;
}

int herd_main(int argc, char **argv)
{
	struct herd_config cfg;
	if (herd_parse(argc, argv, &cfg) != 0)
		return 2;
	unsigned nworkers = cfg.procs * cfg.threads;
	struct herd_run run = {.cfg = &cfg};
	run.sh_bytes = sizeof(struct herd_shared) + (size_t)nworkers * sizeof(struct herd_slot);
	run.sh =
		mmap(NULL, run.sh_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (run.sh == MAP_FAILED) {
		fprintf(stderr, "shmcache-bench: herd: mmap: %s\n", strerror(errno));
		return 1;
	}
	if (!cfg.json) {
		printf("herd: %u procs x %u threads, %u hot keys, TTL %" PRIu32
		       " ms, stale window %" PRIu32 " ms, origin latency %" PRIu64
		       " us, think %" PRIu64 " us, value %zu B, %.1f s per variant\n",
		       cfg.procs, cfg.threads, cfg.keys, cfg.ttl_ms, cfg.stale_ms,
		       cfg.origin_latency_us, cfg.think_us, cfg.value_size, cfg.seconds);
		printf("%-6s %11s %12s %9s %12s %9s %9s %9s %9s %10s\n", "", "ops/s",
		       "origin calls", "expiries", "calls/expiry", "p50 us", "p99 us", "p99.9 us",
		       "max us", "coalesced");
	}
	struct herd_result res[HERD_NVARIANTS];
	bool ran[HERD_NVARIANTS] = {false, false};
	int rc = 0;
	for (int v = 0; v < HERD_NVARIANTS && !bench_interrupted; v++) {
		if (!cfg.variants[v])
			continue;
		run.variant = (enum herd_variant)v;
		if (herd_measure(&run, &res[v]) != 0)
			rc = 1;
		ran[v] = true;
		herd_print(&cfg, (enum herd_variant)v, &res[v]);
	}
	if (ran[HERD_FETCH] && ran[HERD_NAIVE]) {
		double f = per_expiry(&res[HERD_FETCH]), n = per_expiry(&res[HERD_NAIVE]);
		if (cfg.json)
			printf("{\"herd_summary\":true,\"fetch_origin_calls_per_expiry\":%.3f,"
			       "\"naive_origin_calls_per_expiry\":%.3f,\"origin_call_reduction\":%."
			       "2f,"
			       "\"fetch_p99_ns\":%" PRIu64 ",\"naive_p99_ns\":%" PRIu64
			       ",\"ok\":%s}\n",
			       f, n, f > 0 ? n / f : 0.0, res[HERD_FETCH].p99_ns,
			       res[HERD_NAIVE].p99_ns, rc == 0 ? "true" : "false");
		else
			printf("origin calls per expiry: fetch %.2f, naive %.2f (%.1fx fewer with "
			       "shmc_fetch)\n",
			       f, n, f > 0 ? n / f : 0.0);
	}
	munmap(run.sh, run.sh_bytes);
	if (bench_interrupted)
		fprintf(stderr, "shmcache-bench: herd: interrupted\n");
	return rc;
}
