/*
 * shmcache-demo.c - a prefork worker pool sharing one libshmcache segment.
 *
 * The master creates the segment and forks workers that attach to it by name,
 * as nginx or php-fpm workers would. Each worker serves "requests" for keys of
 * Zipf popularity with shmc_fetch(): a hit comes from the shared L1, a miss
 * calls the built-in origin, which plays a remote tier by sleeping. Worker 0
 * also rewrites hot keys (cache-aside updates). Every value names its key, so
 * a worker notices if it is ever handed another key's bytes. The same workers
 * then run against the origin alone, so the speedup is measured in one run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmcache.h>

#define SEGMENT_BYTES ((size_t)64 << 20)
#define MAX_WORKERS 200u /* the segment has 256 process slots */
#define ZIPF_S 0.99
#define SAMPLE_EVERY 16u       /* time one request in this many */
#define SAMPLES_MAX (1u << 20) /* latency samples kept per worker and phase */
#define WRITE_EVERY 100u       /* worker 0 rewrites one of the HOT_KEYS this often */
#define HOT_KEYS 8u
#define KEY_BYTES 24u
#define VALUE_MIN 64u /* room for the key and a tag in every value */
#define VALUE_MAX (64u << 10)

struct config {
	unsigned workers, seconds, keys, value_bytes, origin_latency_us, ttl_ms;
	const char *name, *uplink;
	char default_name[32];
	pid_t master;
};

/* One worker's results. The worker writes them all; the master reads
 * requests while it runs (hence atomic) and the rest after reaping it. */
struct worker_result {
	_Atomic uint64_t requests;
	uint64_t fetch_errors, value_errors, write_errors;
	uint32_t nsamples;
	uint32_t samples_ns[SAMPLES_MAX];
};

/* MAP_SHARED|MAP_ANONYMOUS, mapped before fork(): shared with the workers
 * without a name, and gone with the last of them. */
struct pool {
	atomic_uint ready; /* workers attached, waiting for go */
	atomic_int go;	   /* set by the master: all workers start together */
	atomic_int stop;   /* set by the master: the phase is over */
	_Atomic uint64_t origin_calls;
	struct worker_result workers[];
};

/* The built-in origin: the remote tier a real worker would ask on a miss. */
struct origin {
	struct pool *pool;
	size_t value_bytes;
	unsigned latency_us;
	uint32_t ttl_ms;
};

struct phase {
	uint64_t requests, errors, origin_calls;
	double seconds, p50_us, p99_us;
	struct shmc_stats before, after; /* host-wide, with L1 only */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* cdf[i] = P(rank <= i) under Zipf(s) over n ranks, computed once so that a
 * request costs a binary search rather than a pow(). */
static double *zipf_cdf(unsigned n, double s)
{
	double *cdf = malloc(n * sizeof(*cdf)), sum = 0;
	for (unsigned i = 0; cdf && i < n; i++) {
		sum += pow(i + 1.0, -s);
		cdf[i] = sum;
	}
	for (unsigned i = 0; cdf && i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

static unsigned zipf_draw(const double *cdf, unsigned n, uint64_t *rng)
{
	*rng ^= *rng << 13; /* xorshift64: cheap next to even a cache hit */
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	double u = (double)(*rng >> 11) * 0x1.0p-53;
	unsigned lo = 0, hi = n - 1;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A value is "<key>|<tag>|xxx...#": it names its key, so a reader can tell
 * another key's bytes, and ends with '#', so it can tell a short copy. */
static void value_fill(char *buf, size_t vlen, const char *key, size_t klen, const char *tag)
{
	int head = snprintf(buf, vlen, "%.*s|%s|", (int)klen, key, tag);
	memset(buf + head, 'x', vlen - (size_t)head - 1);
	buf[vlen - 1] = '#';
}

static bool value_ok(const char *buf, size_t vlen, size_t want, const char *key, size_t klen)
{
	return vlen == want && memcmp(buf, key, klen) == 0 && buf[klen] == '|' &&
	       buf[vlen - 1] == '#';
}

/* shmc_loader_fn: the slow path behind every L1 miss. */
static int origin_load(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	struct origin *o = arg;
	struct timespec delay = {o->latency_us / 1000000u, (long)(o->latency_us % 1000000u) * 1000};
	while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
		;
	atomic_fetch_add_explicit(&o->pool->origin_calls, 1, memory_order_relaxed);
	char *v = malloc(o->value_bytes); /* the library frees it with free() */
	if (!v)
		return SHMC_ENOMEM;
	value_fill(v, o->value_bytes, key, klen, "origin");
	*val = v;
	*vlen = o->value_bytes;
	*ttl_ms = o->ttl_ms; /* short by default, so keys expire and refill during the run */
	return 0;
}

/* One request: through the L1 when c is set, else straight to the origin
 * (the baseline: what every request would cost without the cache). */
static int request_serve(shmc_cache *c, struct origin *o, const char *key, size_t klen, char *buf,
			 size_t *vlen)
{
	if (c)
		return shmc_fetch(c, key, klen, buf, o->value_bytes, vlen, origin_load, o);
	void *val = NULL;
	uint32_t ttl_ms;
	int rc = origin_load(o, key, klen, &val, vlen, &ttl_ms);
	if (rc == 0)
		memcpy(buf, val, *vlen);
	free(val);
	return rc;
}

/* Cache-aside update: the application changed a hot key in its database and
 * stores the new value in L1 itself. */
static int hot_key_update(shmc_cache *c, const struct origin *o, uint64_t gen, char *buf)
{
	char key[KEY_BYTES], tag[24];
	int klen = snprintf(key, sizeof(key), "key:%u", (unsigned)(gen % HOT_KEYS));
	snprintf(tag, sizeof(tag), "w%" PRIu64, gen);
	value_fill(buf, o->value_bytes, key, (size_t)klen, tag);
	return shmc_set(c, key, (size_t)klen, buf, o->value_bytes, o->ttl_ms, 0);
}

static void worker_serve(const struct config *cfg, struct pool *pool, unsigned idx,
			 const double *cdf, shmc_cache *c)
{
	struct worker_result *r = &pool->workers[idx];
	struct origin o = {pool, cfg->value_bytes, cfg->origin_latency_us, cfg->ttl_ms};
	uint64_t rng = (0x9E3779B97F4A7C15ull * (idx + 1)) ^ (uint64_t)getpid();
	char key[KEY_BYTES], *buf = malloc(cfg->value_bytes);
	for (uint64_t n = 1; buf && !atomic_load_explicit(&pool->stop, memory_order_relaxed); n++) {
		int klen = snprintf(key, sizeof(key), "key:%u", zipf_draw(cdf, cfg->keys, &rng));
		bool timed = n % SAMPLE_EVERY == 0 && r->nsamples < SAMPLES_MAX;
		uint64_t t0 = timed ? now_ns() : 0;
		size_t vlen = 0;
		int rc = request_serve(c, &o, key, (size_t)klen, buf, &vlen);
		if (timed) {
			uint64_t ns = now_ns() - t0; /* a 4 s request saturates, never wraps */
			r->samples_ns[r->nsamples++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
		}
		if (rc && r->fetch_errors++ == 0) /* the first error says enough */
			fprintf(stderr, "worker %u: fetch %s: %s\n", idx, key, shmc_strerror(rc));
		if (!rc && !value_ok(buf, vlen, cfg->value_bytes, key, (size_t)klen))
			r->value_errors++;
		if (c && idx == 0 && n % WRITE_EVERY == 0 &&
		    hot_key_update(c, &o, n / WRITE_EVERY, buf) != 0)
			r->write_errors++;
		atomic_store_explicit(&r->requests, n, memory_order_relaxed);
	}
	r->fetch_errors += !buf;
	free(buf);
}

/* The child after fork(): attach by name as a prefork worker does, wait for
 * the common start, serve until told to stop, detach. Never returns. */
static void worker_main(const struct config *cfg, const shmc_opts *opts, struct pool *pool,
			unsigned idx, const double *cdf, shmc_cache *inherited, bool cached)
{
	/* The master's handle came along with fork(); closing it frees only our
	 * copy: the library leaves the master's process slot alone. */
	shmc_close(inherited);
	signal(SIGINT, SIG_IGN); /* on ^C the master stops the pool itself */
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGTERM); /* and if it is SIGKILLed, we go too */
	if (getppid() != cfg->master)
		_exit(1);
	shmc_cache *c = NULL;
	int rc = cached ? shmc_open(cfg->name, opts, 0, &c) : 0;
	if (rc) {
		fprintf(stderr, "worker %u: shmc_open %s: %s (%s)\n", idx, cfg->name,
			shmc_strerror(rc), shmc_errmsg(NULL));
		_exit(1);
	}
	atomic_fetch_add(&pool->ready, 1);
	while (!atomic_load(&pool->go) && !atomic_load(&pool->stop))
		usleep(100);
	worker_serve(cfg, pool, idx, cdf, c);
	shmc_close(c);
	_exit(0);
}

/* Has any worker exited? WNOWAIT leaves it for workers_reap() to report. */
static bool worker_exited(void)
{
	siginfo_t info = {0};
	return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

/* Waits for every worker; returns how many did not exit cleanly. A signal
 * meanwhile kills the rest rather than letting them finish. */
static unsigned workers_reap(const pid_t *pids, unsigned n)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < n; i++) {
		int status = 0;
		pid_t got;
		while ((got = waitpid(pids[i], &status, 0)) < 0 && errno == EINTR)
			for (unsigned j = i; interrupted && j < n; j++)
				kill(pids[j], SIGTERM);
		if (got == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			continue;
		bad++;
		if (!interrupted)
			fprintf(stderr, "demo: worker %u (pid %d) %s %d\n", i, (int)pids[i],
				WIFSIGNALED(status) ? "died of signal" : "exited with",
				WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
	return bad;
}

/* Starts the workers together, then prints a line a second until the phase
 * ends. c NULL: the baseline, which has no L1 to report on. */
static void phase_watch(const struct config *cfg, struct pool *pool, shmc_cache *c,
			struct phase *ph)
{
	struct shmc_stats prev = {0}, cur;
	uint64_t prev_requests = 0, prev_origin = 0, t0 = now_ns();
	if (c)
		shmc_stats(c, &prev);
	ph->before = prev;
	atomic_store(&pool->go, 1);
	for (unsigned s = 1; s <= cfg->seconds && !interrupted && !worker_exited(); s++) {
		uint64_t at = t0 + s * 1000000000ull, requests = 0;
		struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
		if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
			break; /* a signal */
		for (unsigned i = 0; i < cfg->workers; i++)
			requests += atomic_load_explicit(&pool->workers[i].requests,
							 memory_order_relaxed);
		uint64_t origin = atomic_load(&pool->origin_calls);
		printf("%4us %10" PRIu64 "  ", s, requests - prev_requests);
		if (c && shmc_stats(c, &cur) == 0) {
			uint64_t gets = cur.gets - prev.gets, hits = cur.hits - prev.hits;
			printf("%6.1f%% %10" PRIu64 " %8" PRIu64 " %9.1f %6" PRIu64 "\n",
			       gets ? 100.0 * (double)hits / (double)gets : 0.0,
			       origin - prev_origin, cur.items, (double)cur.bytes_live / (1 << 20),
			       cur.procs_attached);
			prev = cur;
		} else {
			printf("%7s %10" PRIu64 "\n", "-", origin - prev_origin);
		}
		fflush(stdout);
		prev_requests = requests;
		prev_origin = origin;
	}
	ph->seconds = (double)(now_ns() - t0) / 1e9;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Pools the workers' latency samples into p50 and p99, in microseconds. */
static void phase_latency(const struct pool *pool, unsigned n, struct phase *ph)
{
	size_t total = 0, at = 0;
	for (unsigned i = 0; i < n; i++)
		total += pool->workers[i].nsamples;
	uint32_t *all = total ? malloc(total * sizeof(*all)) : NULL;
	for (unsigned i = 0; all && i < n; i++) {
		memcpy(all + at, pool->workers[i].samples_ns,
		       pool->workers[i].nsamples * sizeof(*all));
		at += pool->workers[i].nsamples;
	}
	if (all) {
		size_t p50 = (total - 1) / 2, p99 = (total - 1) * 99 / 100;
		qsort(all, total, sizeof(*all), cmp_u32);
		ph->p50_us = all[p50] / 1e3;
		ph->p99_us = all[p99] / 1e3;
	}
	free(all);
}

/* One phase: fork the pool, watch it, stop it, reap it, add up its results.
 * cached false: the baseline, no L1. Returns 0, or -1 if anything failed. */
static int phase_run(const struct config *cfg, const shmc_opts *opts, struct pool *pool,
		     shmc_cache *c, bool cached, const double *cdf, struct phase *ph)
{
	memset(pool, 0, sizeof(*pool));
	for (unsigned i = 0; i < cfg->workers; i++) /* samples are simply overwritten */
		memset(&pool->workers[i], 0, offsetof(struct worker_result, samples_ns));
	memset(ph, 0, sizeof(*ph));
	pid_t pids[MAX_WORKERS];
	unsigned spawned = 0;
	fflush(stdout); /* or the children would print our buffered lines again */
	for (; spawned < cfg->workers; spawned++) {
		if ((pids[spawned] = fork()) < 0) {
			perror("demo: fork");
			break;
		}
		if (pids[spawned] == 0)
			worker_main(cfg, opts, pool, spawned, cdf, c, cached);
	}
	while (atomic_load(&pool->ready) < spawned && !interrupted && !worker_exited())
		usleep(1000);
	if (atomic_load(&pool->ready) == cfg->workers && !interrupted)
		phase_watch(cfg, pool, cached ? c : NULL, ph);
	atomic_store(&pool->stop, 1);
	unsigned bad = workers_reap(pids, spawned) + (cfg->workers - spawned);
	if (cached)
		shmc_stats(c, &ph->after); /* the detached workers' counts are folded in */
	for (unsigned i = 0; i < cfg->workers; i++) {
		const struct worker_result *r = &pool->workers[i];
		uint64_t errors = r->fetch_errors + r->value_errors + r->write_errors;
		if (errors)
			fprintf(stderr,
				"demo: worker %u: %" PRIu64 " fetch, %" PRIu64 " value, %" PRIu64
				" write errors\n",
				i, r->fetch_errors, r->value_errors, r->write_errors);
		ph->requests += r->requests;
		ph->errors += errors;
	}
	ph->origin_calls = atomic_load(&pool->origin_calls);
	phase_latency(pool, cfg->workers, ph);
	return bad || ph->errors ? -1 : 0;
}

static void summary_print(const struct phase *l1, const struct phase *base)
{
	uint64_t gets = l1->after.gets - l1->before.gets, hits = l1->after.hits - l1->before.hits;
	double l1_rate = (double)l1->requests / l1->seconds;
	double base_rate = (double)base->requests / base->seconds;
	printf("\nsummary\n  with L1     %11" PRIu64 " requests %10.0f req/s  p50 %7.1f us  "
	       "p99 %7.1f us\n",
	       l1->requests, l1_rate, l1->p50_us, l1->p99_us);
	printf("              L1 hit ratio %.2f%% (%" PRIu64 " of %" PRIu64 " gets)\n",
	       gets ? 100.0 * (double)hits / (double)gets : 0.0, hits, gets);
	printf("              %" PRIu64 " origin calls for %" PRIu64 " requests that missed L1\n"
	       "              (%" PRIu64 " waited for another worker's fill of the same key)\n",
	       l1->origin_calls, l1->after.misses - l1->before.misses,
	       l1->after.coalesced_waits - l1->before.coalesced_waits);
	printf("  origin only %11" PRIu64 " requests %10.0f req/s  p50 %7.1f us  p99 %7.1f us\n",
	       base->requests, base_rate, base->p50_us, base->p99_us);
	printf("  speedup     %.1fx throughput, %.0fx lower p50 latency\n",
	       base_rate > 0 ? l1_rate / base_rate : 0.0,
	       l1->p50_us > 0 ? base->p50_us / l1->p50_us : 0.0);
}

/* Unlinks a leftover of the same name, then creates the segment. The
 * workers load from the built-in origin: an uplink URI is checked, then
 * set aside with a note. */
static int segment_create(struct config *cfg, shmc_opts *opts, shmc_cache **out)
{
	int rc = cfg->uplink ? shmc_opts_set_uplink(opts, cfg->uplink) : 0;
	if (rc) {
		fprintf(stderr, "demo: --uplink %s: %s (%s)\n", cfg->uplink, shmc_strerror(rc),
			shmc_errmsg(NULL));
		return rc;
	}
	if (cfg->uplink) {
		printf("note: --uplink %s: the demo's workers load from its built-in origin;\n"
		       "      serving them from a remote tier is not implemented yet\n",
		       cfg->uplink);
		cfg->uplink = NULL;
		shmc_opts_set_uplink(opts, NULL);
	}
	shmc_opts_set_size(opts, SEGMENT_BYTES);
	shmc_unlink(cfg->name); /* SHMC_ENOENT is the usual answer */
	rc = shmc_open(cfg->name, opts, SHMC_CREATE | SHMC_EXCL, out);
	if (rc)
		fprintf(stderr, "demo: creating segment %s: %s (%s)\n", cfg->name,
			shmc_strerror(rc), shmc_errmsg(NULL));
	return rc;
}

/* The numeric options: a field of struct config, its range and its help. */
static const struct {
	const char *name;
	size_t field;
	unsigned lo, hi;
	const char *help;
} num_opts[] = {
	{"workers", offsetof(struct config, workers), 1, MAX_WORKERS, "worker processes (4)"},
	{"seconds", offsetof(struct config, seconds), 1, 3600, "length of each phase (10)"},
	{"keys", offsetof(struct config, keys), 1, 10000000, "distinct keys (10000)"},
	{"value-size", offsetof(struct config, value_bytes), VALUE_MIN, VALUE_MAX,
	 "value bytes (200)"},
	{"origin-latency-us", offsetof(struct config, origin_latency_us), 0, 10000000,
	 "simulated remote-tier latency (500)"},
	{"ttl-ms", offsetof(struct config, ttl_ms), 0, UINT32_MAX,
	 "TTL of loaded values, 0 = none (5000)"},
};
#define NUM_OPTS (sizeof(num_opts) / sizeof(num_opts[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: shmcache-demo [options]\n");
	for (size_t i = 0; i < NUM_OPTS; i++)
		fprintf(f, "  --%-17s N     %s, %u..%u\n", num_opts[i].name, num_opts[i].help,
			num_opts[i].lo, num_opts[i].hi);
	fprintf(f, "  --%-17s NAME  segment name (demo.<pid>)\n", "name");
	fprintf(f, "  --%-17s URI   remote tier (checked; the workers use the built-in origin)\n",
		"uplink");
}

/* Returns -1 to go on, else the exit status. */
static int config_parse(int argc, char **argv, struct config *cfg)
{
	struct option longopts[NUM_OPTS + 4] = {{0}};
	for (size_t i = 0; i < NUM_OPTS; i++)
		longopts[i] = (struct option){num_opts[i].name, required_argument, NULL, (int)i};
	longopts[NUM_OPTS] = (struct option){"name", required_argument, NULL, 'n'};
	longopts[NUM_OPTS + 1] = (struct option){"uplink", required_argument, NULL, 'u'};
	longopts[NUM_OPTS + 2] = (struct option){"help", no_argument, NULL, 'h'};
	*cfg = (struct config){4, 10, 10000, 200, 500, 5000, NULL, NULL, "", getpid()};
	snprintf(cfg->default_name, sizeof(cfg->default_name), "demo.%d", (int)cfg->master);
	cfg->name = cfg->default_name;
	for (int opt; (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
		switch (opt) {
		case 'n':
			cfg->name = optarg;
			continue;
		case 'u':
			cfg->uplink = optarg;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		case '?':
			usage(stderr);
			return 2;
		}
		char *end;
		errno = 0;
		unsigned long v = strtoul(optarg, &end, 10);
		if (errno || end == optarg || *end || v < num_opts[opt].lo ||
		    v > num_opts[opt].hi) {
			fprintf(stderr, "demo: --%s needs an integer from %u to %u\n",
				num_opts[opt].name, num_opts[opt].lo, num_opts[opt].hi);
			return 2;
		}
		*(unsigned *)((char *)cfg + num_opts[opt].field) = (unsigned)v;
	}
	if (optind < argc)
		usage(stderr);
	return optind < argc ? 2 : -1;
}

/* Both phases on the created segment; returns the exit status. */
static int demo_run(const struct config *cfg, const shmc_opts *opts, struct pool *pool,
		    shmc_cache *c, const double *cdf)
{
	printf("segment %s, %zu MiB: %u workers attach by name; %u keys, Zipf(%.2f), %u-byte "
	       "values, origin %u us, TTL %u ms\n\nwith L1, %u s\n"
	       "    t      req/s   L1 hit   origin/s    items  live MiB  procs\n",
	       cfg->name, SEGMENT_BYTES >> 20, cfg->workers, cfg->keys, ZIPF_S, cfg->value_bytes,
	       cfg->origin_latency_us, cfg->ttl_ms, cfg->seconds);
	struct phase l1, base;
	if (phase_run(cfg, opts, pool, c, true, cdf, &l1) != 0 || interrupted)
		return 1; /* a failed run has nothing to compare with */
	printf("\norigin only (no L1), same %u workers, %u s\n"
	       "    t      req/s            origin/s\n",
	       cfg->workers, cfg->seconds);
	if (phase_run(cfg, opts, pool, c, false, cdf, &base) != 0 || interrupted)
		return 1;
	summary_print(&l1, &base);
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg;
	int status = config_parse(argc, argv, &cfg);
	if (status >= 0)
		return status;
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: waits must wake */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	size_t pool_bytes = sizeof(struct pool) + cfg.workers * sizeof(struct worker_result);
	struct pool *pool = mmap(NULL, pool_bytes, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	double *cdf = zipf_cdf(cfg.keys, ZIPF_S);
	shmc_opts *opts = NULL;
	shmc_cache *c = NULL;
	status = 1;
	if (pool == MAP_FAILED || !cdf || shmc_opts_create(&opts) != 0)
		fprintf(stderr, "demo: out of memory\n");
	else if (segment_create(&cfg, opts, &c) == 0)
		status = demo_run(&cfg, opts, pool, c, cdf);
	if (c) {
		shmc_close(c);
		shmc_unlink(cfg.name);
	}
	shmc_opts_destroy(opts);
	if (pool != MAP_FAILED)
		munmap(pool, pool_bytes);
	free(cdf);
	if (interrupted)
		fprintf(stderr, "demo: interrupted; workers stopped, segment %s unlinked\n",
			cfg.name);
	return interrupted ? 130 : status;
}
