/*
 * shmcache-demo.c - a prefork worker pool sharing one libshmcache segment in
 * front of a remote tier.
 *
 * The master creates the segment and forks workers that attach to it by name,
 * as nginx or php-fpm workers would. Each worker serves "requests" for keys of
 * Zipf popularity. A hit comes from the shared L1; a miss reads through with
 * shmc_fetch(), which makes one origin call per key for the whole host however
 * many workers missed it. The remote tier is Redis (--uplink: the master loads
 * the key set into it first, and the workers read through the library's
 * uplink) or a built-in origin that plays one by sleeping. Meanwhile:
 *  - worker 0 updates a few popular keys, through to Redis (SHMC_WRITE_THROUGH);
 *  - the most popular key has a short L1 TTL, so it expires again and again
 *    under load: each expiry must cost one origin call, not one per worker;
 *  - shmcache-stat (--stat) shows the segment live.
 * Every value names its key, so a worker notices if it is ever handed another
 * key's bytes. The same workers then send every request straight to the
 * origin, so the speedup is measured in one run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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

#include "demo/origin.h"
#include "demo/workload.h"

#define SEGMENT_BYTES ((size_t)64 << 20)
#define MAX_WORKERS 200u /* the segment has 256 process slots */
#define ZIPF_S 0.99
#define SAMPLE_EVERY 16u       /* time one request in this many */
#define SAMPLES_MAX (1u << 20) /* latency samples kept per worker and phase */
#define HOT_RANK 0u	       /* the key with the short L1 TTL: the most popular */
#define WRITE_EVERY 100u       /* worker 0 updates a key this often */
#define WRITE_KEYS 8u	       /* ... one of the ranks 1..WRITE_KEYS */
#define UPLINK_COMMAND_TIMEOUT_MS 1000u
#define STAT_GRACE_MS 2000u /* for shmcache-stat's last report after the phase */

struct config {
	unsigned workers, seconds, keys, value_bytes, origin_latency_us, ttl_ms, hot_ttl_ms;
	const char *name, *uplink, *stat_path;
	char default_name[32];
	char worker_uplink[2048]; /* --uplink plus the demo's options */
	pid_t master;
};

/* One worker's results. The worker writes them all; the master reads
 * requests while it runs (hence atomic) and the rest after reaping it. */
struct worker_result {
	_Atomic uint64_t requests;
	uint64_t misses;     /* requests that found their key absent or expired in L1 */
	uint64_t hot_misses; /* ... of them for the hot key */
	uint64_t writes, last_write;
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
	/* The hot key's origin calls. A call that starts less than its TTL
	 * after the previous one cannot follow an expiry: it is a duplicate,
	 * what a herd would cause. */
	_Atomic uint64_t hot_loads, hot_duplicates, hot_last_load_ns;
	struct worker_result workers[];
};

/* A shmc_fetch() loader over a worker's own origin connection: every key
 * with the built-in origin, and the hot key with Redis too (the uplink
 * gives a key the TTL Redis has for it, and counts its calls for all keys
 * together; this gives the hot key its own short TTL and counts its calls). */
struct loader {
	struct origin *origin;
	struct pool *pool; /* NULL: not the hot key */
	size_t value_bytes;
	uint32_t ttl_ms;
};

/* One worker process. */
struct worker {
	const struct config *cfg;
	struct pool *pool;
	struct worker_result *r;
	unsigned idx;
	shmc_cache *c;	       /* NULL in the baseline: straight to the origin */
	struct origin *origin; /* this worker's own connection */
	bool redis;
	struct loader keys, hot;
	const double *cdf;
	char *buf; /* value_bytes */
};

struct phase {
	uint64_t requests, misses, hot_misses, writes, last_write, errors;
	uint64_t hot_loads, hot_duplicates;
	double seconds, p50_us, p99_us;
	struct shmc_stats before, after; /* host-wide, with L1 only */
	bool stat_failed;
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

/* ------------------------------------------------------------ the workers */

static void hot_load_count(struct pool *pool, uint32_t ttl_ms)
{
	uint64_t now = now_ns(), prev = atomic_exchange(&pool->hot_last_load_ns, now);
	atomic_fetch_add(&pool->hot_loads, 1);
	if (prev && now - prev < (uint64_t)ttl_ms * 1000000u)
		atomic_fetch_add(&pool->hot_duplicates, 1);
}

/* shmc_loader_fn: the slow path behind an L1 miss. */
static int origin_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
			 uint32_t *ttl_ms)
{
	struct loader *l = arg;
	if (l->pool)
		hot_load_count(l->pool, l->ttl_ms);
	char *v = malloc(l->value_bytes); /* the library frees it with free() */
	if (!v)
		return SHMC_ENOMEM;
	int rc = origin_get(l->origin, key, klen, v, l->value_bytes, vlen);
	if (rc) {
		free(v);
		return rc;
	}
	*val = v;
	*ttl_ms = l->ttl_ms;
	return 0;
}

/* One request through the L1. A hit is served from shared memory; a miss
 * goes to shmc_fetch(), which looks again, then either makes the host's one
 * origin call for the key or waits for the worker making it. (shmc_fetch()
 * alone would do; looking first lets the demo count the misses.) */
static int request_cached(struct worker *w, const char *key, size_t klen, bool hot, size_t *vlen)
{
	int rc = shmc_get(w->c, key, klen, w->buf, w->cfg->value_bytes, vlen);
	if (rc != SHMC_ENOTFOUND)
		return rc;
	w->r->misses++;
	w->r->hot_misses += hot;
	if (hot)
		return shmc_fetch(w->c, key, klen, w->buf, w->cfg->value_bytes, vlen, origin_loader,
				  &w->hot);
	if (w->redis) /* NULL loader: read through the uplink */
		return shmc_fetch(w->c, key, klen, w->buf, w->cfg->value_bytes, vlen, NULL, NULL);
	return shmc_fetch(w->c, key, klen, w->buf, w->cfg->value_bytes, vlen, origin_loader,
			  &w->keys);
}

/* The rank worker 0's update number gen goes to: 1..WRITE_KEYS, or fewer
 * if there are fewer keys. 0 (the hot key, whose L1 TTL a write would
 * change): no update. */
static unsigned write_rank(const struct config *cfg, uint64_t gen)
{
	unsigned ranks = cfg->keys - 1 < WRITE_KEYS ? cfg->keys - 1 : WRITE_KEYS;
	return ranks ? 1 + (unsigned)(gen % ranks) : HOT_RANK;
}

/* Worker 0's update number gen of one of the keys 1..WRITE_KEYS. With
 * Redis it goes through (SHMC_WRITE_THROUGH: Redis first, then the L1, so
 * that both hold the new value, without expiry); the built-in origin keeps
 * nothing, so there it goes to the L1 alone (cache-aside). In the baseline
 * it goes straight to the origin. */
static int key_write(struct worker *w, uint64_t gen, char key[KEY_BYTES])
{
	char tag[24];
	size_t klen = key_name(key, write_rank(w->cfg, gen));
	snprintf(tag, sizeof(tag), "w%" PRIu64, gen);
	value_fill(w->buf, w->cfg->value_bytes, key, klen, tag);
	if (!w->c)
		return origin_set(w->origin, key, klen, w->buf, w->cfg->value_bytes);
	if (w->redis)
		return shmc_set(w->c, key, klen, w->buf, w->cfg->value_bytes, 0,
				SHMC_WRITE_THROUGH);
	return shmc_set(w->c, key, klen, w->buf, w->cfg->value_bytes, w->cfg->ttl_ms, 0);
}

/* Says what went wrong the first time (the first error says enough). */
static void request_failed(struct worker *w, uint64_t *count, const char *what, const char *key,
			   int rc)
{
	if ((*count)++ != 0)
		return;
	const char *detail = !rc ? "" : w->c ? shmc_errmsg(w->c) : origin_error(w->origin);
	fprintf(stderr, "worker %u: %s %s: %s%s%s\n", w->idx, what, key,
		rc ? shmc_strerror(rc) : "wrong value", *detail ? ": " : "", detail);
}

static void worker_serve(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct worker_result *r = w->r;
	uint64_t rng = (0x9E3779B97F4A7C15ull * (w->idx + 1)) ^ (uint64_t)getpid();
	char key[KEY_BYTES];
	for (uint64_t n = 1; !atomic_load_explicit(&w->pool->stop, memory_order_relaxed); n++) {
		unsigned rank = zipf_draw(w->cdf, cfg->keys, &rng);
		size_t klen = key_name(key, rank), vlen = 0;
		bool timed = n % SAMPLE_EVERY == 0 && r->nsamples < SAMPLES_MAX;
		uint64_t t0 = timed ? now_ns() : 0;
		int rc = w->c ? request_cached(w, key, klen, rank == HOT_RANK, &vlen)
			      : origin_get(w->origin, key, klen, w->buf, cfg->value_bytes, &vlen);
		if (timed) {
			uint64_t ns = now_ns() - t0; /* a 4 s request saturates, never wraps */
			r->samples_ns[r->nsamples++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
		}
		if (rc)
			request_failed(w, &r->fetch_errors, w->c ? "fetch" : "GET", key, rc);
		else if (!value_ok(w->buf, vlen, cfg->value_bytes, key, klen))
			request_failed(w, &r->value_errors, "value of", key, 0);
		if (w->idx == 0 && n % WRITE_EVERY == 0 &&
		    write_rank(cfg, n / WRITE_EVERY) != HOT_RANK) {
			uint64_t gen = n / WRITE_EVERY;
			if ((rc = key_write(w, gen, key)) != 0) {
				request_failed(w, &r->write_errors, "write of", key, rc);
			} else {
				r->writes++;
				r->last_write = gen;
			}
		}
		atomic_store_explicit(&r->requests, n, memory_order_relaxed);
	}
}

/* The child after fork(): attach by name as a prefork worker does, open its
 * own origin connection, wait for the common start, serve until told to
 * stop, detach. Never returns. */
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
	struct worker w = {.cfg = cfg,
			   .pool = pool,
			   .r = &pool->workers[idx],
			   .idx = idx,
			   .redis = cfg->uplink != NULL,
			   .cdf = cdf};
	struct origin_config ocfg = {cfg->uplink, cfg->origin_latency_us, cfg->value_bytes};
	char err[512];
	if (origin_open(&ocfg, &w.origin, err, sizeof(err)) != 0) {
		fprintf(stderr, "worker %u: %s\n", idx, err);
		_exit(1);
	}
	int rc = cached ? shmc_open(cfg->name, opts, 0, &w.c) : 0;
	if (rc) {
		fprintf(stderr, "worker %u: shmc_open %s: %s (%s)\n", idx, cfg->name,
			shmc_strerror(rc), shmc_errmsg(NULL));
		_exit(1);
	}
	w.keys = (struct loader){w.origin, NULL, cfg->value_bytes, cfg->ttl_ms};
	w.hot = (struct loader){w.origin, pool, cfg->value_bytes, cfg->hot_ttl_ms};
	if (!(w.buf = malloc(cfg->value_bytes))) {
		fprintf(stderr, "worker %u: out of memory\n", idx);
		_exit(1);
	}
	atomic_fetch_add(&pool->ready, 1);
	while (!atomic_load(&pool->go) && !atomic_load(&pool->stop))
		usleep(100);
	worker_serve(&w);
	shmc_close(w.c);
	origin_close(w.origin);
	free(w.buf);
	_exit(0);
}

/* ------------------------------------------------------- the master's children */

/* Has any worker exited? WNOWAIT leaves it for workers_reap() to report. */
static bool worker_exited(const pid_t *pids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		siginfo_t info = {0};
		if (waitid(P_PID, (id_t)pids[i], &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    info.si_pid != 0)
			return true;
	}
	return false;
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

/* shmcache-stat, run on the segment in the foreground for the L1 phase: a
 * report a second, in place of the demo's own line. */
struct stat_view {
	pid_t pid; /* 0: not running */
	bool failed;
};

static void stat_start(const struct config *cfg, struct stat_view *v)
{
	char count[16];
	snprintf(count, sizeof(count), "%u", cfg->seconds);
	fflush(stdout); /* or the child would print our buffered lines again */
	*v = (struct stat_view){0};
	pid_t pid = fork();
	if (pid < 0) {
		perror("demo: fork for shmcache-stat");
		v->failed = true;
		return;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != cfg->master)
			_exit(1);
		execl(cfg->stat_path, cfg->stat_path, "--interval", "1", "--count", count,
		      cfg->name, (char *)NULL);
		fprintf(stderr, "demo: cannot run %s: %s\n", cfg->stat_path, strerror(errno));
		_exit(127);
	}
	v->pid = pid;
}

/* Reaps shmcache-stat if it has exited, or, with wait_ms, once it exits
 * within that time, else stops it. A report it could not make is an
 * error of the demo's: it says so. */
static void stat_reap(struct stat_view *v, unsigned wait_ms)
{
	if (!v->pid)
		return;
	int status = 0;
	pid_t got = 0;
	for (unsigned ms = 0; (got = waitpid(v->pid, &status, WNOHANG)) == 0 && ms < wait_ms;
	     ms += 10)
		usleep(10000);
	if (got == 0 && !wait_ms)
		return; /* still running */
	if (got == 0) {
		kill(v->pid, SIGTERM); /* it exits 0 on SIGTERM */
		while ((got = waitpid(v->pid, &status, 0)) < 0 && errno == EINTR)
			;
	}
	if (got == v->pid && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		v->failed = true;
		fprintf(stderr, "demo: shmcache-stat %s %d\n",
			WIFSIGNALED(status) ? "died of signal" : "exited with",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
	v->pid = 0;
}

/* ------------------------------------------------------------- the phases */

/* Starts the workers together, then until the phase ends shows
 * shmcache-stat or prints a line a second of its own. c NULL: the
 * baseline, which has no L1 to report on. */
static void phase_watch(const struct config *cfg, struct pool *pool, const pid_t *pids,
			shmc_cache *c, struct phase *ph)
{
	struct shmc_stats prev = {0}, cur;
	uint64_t prev_requests = 0, t0 = now_ns();
	struct stat_view stat = {0};
	if (c) {
		shmc_stats(c, &prev);
		if (cfg->stat_path)
			stat_start(cfg, &stat);
	}
	ph->before = prev;
	atomic_store(&pool->go, 1);
	for (unsigned s = 1;
	     s <= cfg->seconds && !interrupted && !worker_exited(pids, cfg->workers); s++) {
		uint64_t at = t0 + s * 1000000000ull, requests = 0;
		struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
		if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
			break; /* a signal */
		for (unsigned i = 0; i < cfg->workers; i++)
			requests += atomic_load_explicit(&pool->workers[i].requests,
							 memory_order_relaxed);
		bool have_stats = c && shmc_stats(c, &cur) == 0;
		stat_reap(&stat, 0);
		if (!stat.pid) { /* else shmcache-stat reports this second */
			printf("%4us %10" PRIu64, s, requests - prev_requests);
			if (have_stats)
				printf("  %6.1f%% %10" PRIu64 " %8" PRIu64 " %9.1f %6" PRIu64,
				       cur.gets > prev.gets
					       ? 100.0 * (double)(cur.hits - prev.hits) /
							 (double)(cur.gets - prev.gets)
					       : 0.0,
				       cur.origin_calls - prev.origin_calls, cur.items,
				       (double)cur.bytes_live / (1 << 20), cur.procs_attached);
			printf("\n");
			fflush(stdout);
		}
		if (have_stats)
			prev = cur;
		prev_requests = requests;
	}
	/* The workers keep serving while shmcache-stat makes its last report. */
	stat_reap(&stat, interrupted ? 1 : STAT_GRACE_MS);
	ph->stat_failed = stat.failed;
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
 * cached false: the baseline, no L1. Returns 0, or -1 if anything failed
 * (a worker, or its requests). */
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
	while (atomic_load(&pool->ready) < spawned && !interrupted && !worker_exited(pids, spawned))
		usleep(1000);
	if (atomic_load(&pool->ready) == cfg->workers && !interrupted)
		phase_watch(cfg, pool, pids, cached ? c : NULL, ph);
	atomic_store(&pool->stop, 1);
	unsigned bad = workers_reap(pids, spawned) + (cfg->workers - spawned);
	if (cached)
		shmc_stats(c, &ph->after); /* the detached workers' counts are folded in */
	for (unsigned i = 0; i < cfg->workers; i++) {
		const struct worker_result *r = &pool->workers[i];
		uint64_t errors = r->fetch_errors + r->value_errors + r->write_errors;
		if (errors)
			fprintf(stderr,
				"demo: worker %u: %" PRIu64 " request, %" PRIu64
				" wrong-value, %" PRIu64 " write errors\n",
				i, r->fetch_errors, r->value_errors, r->write_errors);
		ph->requests += r->requests;
		ph->misses += r->misses;
		ph->hot_misses += r->hot_misses;
		ph->writes += r->writes;
		ph->last_write = r->last_write > ph->last_write ? r->last_write : ph->last_write;
		ph->errors += errors;
	}
	ph->hot_loads = atomic_load(&pool->hot_loads);
	ph->hot_duplicates = atomic_load(&pool->hot_duplicates);
	phase_latency(pool, cfg->workers, ph);
	return bad || ph->errors || ph->stat_failed ? -1 : 0;
}

/* After the L1 phase with Redis: Redis and the L1 must both hold worker
 * 0's last update, written through. Returns the number of errors (0..2). */
static unsigned writes_check(const struct config *cfg, struct origin *origin, shmc_cache *c,
			     uint64_t last_write)
{
	char key[KEY_BYTES], tag[24];
	size_t klen = key_name(key, write_rank(cfg, last_write)), vlen = 0;
	snprintf(tag, sizeof(tag), "w%" PRIu64, last_write);
	char *buf = malloc(cfg->value_bytes);
	unsigned errors = 0;
	int rc = buf ? origin_get(origin, key, klen, buf, cfg->value_bytes, &vlen) : SHMC_ENOMEM;
	if (rc || !value_ok(buf, vlen, cfg->value_bytes, key, klen) ||
	    !value_has_tag(buf, vlen, klen, tag)) {
		fprintf(stderr, "demo: write-through: Redis does not hold update %s of %s (%s)\n",
			tag, key, rc ? shmc_strerror(rc) : "another value");
		errors++;
	}
	rc = buf ? shmc_get(c, key, klen, buf, cfg->value_bytes, &vlen) : SHMC_ENOMEM;
	if (rc || !value_ok(buf, vlen, cfg->value_bytes, key, klen) ||
	    !value_has_tag(buf, vlen, klen, tag)) {
		fprintf(stderr, "demo: write-through: the L1 does not hold update %s of %s (%s)\n",
			tag, key, rc ? shmc_strerror(rc) : "another value");
		errors++;
	}
	free(buf);
	return errors;
}

/* ---------------------------------------------------------------- summary */

/* A latency for the summary: "850 ns", "12.3 us", "4.2 ms". */
static const char *latency_text(double us, char *buf, size_t cap)
{
	if (us < 1)
		snprintf(buf, cap, "%.0f ns", us * 1e3);
	else if (us < 1000)
		snprintf(buf, cap, "%.1f us", us);
	else
		snprintf(buf, cap, "%.1f ms", us / 1e3);
	return buf;
}

static void phase_line(const char *label, const struct phase *ph)
{
	char p50[24], p99[24];
	printf("  %-16s %10" PRIu64 " requests %10.0f req/s   p50 %9s   p99 %9s\n", label,
	       ph->requests, (double)ph->requests / ph->seconds,
	       latency_text(ph->p50_us, p50, sizeof(p50)),
	       latency_text(ph->p99_us, p99, sizeof(p99)));
}

static void summary_print(const struct config *cfg, const char *origin, const struct phase *l1,
			  const struct phase *base)
{
	double l1_rate = (double)l1->requests / l1->seconds;
	double base_rate = (double)base->requests / base->seconds;
	uint64_t calls = l1->after.origin_calls - l1->before.origin_calls;
	uint64_t waits = l1->after.coalesced_waits - l1->before.coalesced_waits;
	printf("\nsummary: %u workers, %u keys (Zipf %.2f), %u-byte values; remote tier: %s%s%s\n",
	       cfg->workers, cfg->keys, ZIPF_S, cfg->value_bytes, origin, cfg->uplink ? " at " : "",
	       cfg->uplink ? cfg->uplink : "");
	phase_line("with L1", l1);
	printf("    L1 hit ratio   %.2f%% (%" PRIu64 " requests missed)\n",
	       l1->requests ? 100.0 * (double)(l1->requests - l1->misses) / (double)l1->requests
			    : 0.0,
	       l1->misses);
	printf("    origin calls   %" PRIu64 " for those %" PRIu64 " misses (herd savings: %" PRIu64
	       " requests waited for another worker's call)\n",
	       calls, l1->misses, waits);
	printf("    hot key        demo:key:%u, L1 TTL %u ms: %" PRIu64 " origin calls for %" PRIu64
	       " requests that found it expired,\n"
	       "                   %" PRIu64 " of them beyond one per expiry\n",
	       HOT_RANK, cfg->hot_ttl_ms, l1->hot_loads, l1->hot_misses, l1->hot_duplicates);
	if (cfg->uplink)
		printf("    writes         %" PRIu64
		       " written through to Redis (SHMC_WRITE_THROUGH); "
		       "Redis and L1 hold the last\n",
		       l1->writes);
	else
		printf("    writes         %" PRIu64 " to the L1 (cache-aside: the built-in origin "
		       "keeps nothing)\n",
		       l1->writes);
	printf("    errors         %" PRIu64 "\n", l1->errors);
	phase_line(cfg->uplink ? "Redis only" : "origin only", base);
	printf("    errors         %" PRIu64 "\n", base->errors);
	printf("  speedup          %.1fx the throughput, %.0fx lower p50 latency with L1\n",
	       base_rate > 0 ? l1_rate / base_rate : 0.0,
	       l1->p50_us > 0 ? base->p50_us / l1->p50_us : 0.0);
}

/* ------------------------------------------------------------------ setup */

/* The workers' uplink: --uplink plus, unless it sets them itself, the L1
 * TTL of what it loads (ttl_cap_ms: Redis keeps the keys without expiry,
 * the L1 for --ttl-ms) and a command timeout that rides out a busy host. */
static int uplink_uri_make(struct config *cfg)
{
	const char *uri = cfg->uplink;
	char *out = cfg->worker_uplink;
	size_t cap = sizeof(cfg->worker_uplink), len = strlen(uri);
	const char *sep = !strchr(uri, '?')			       ? "?"
			  : uri[len - 1] == '?' || uri[len - 1] == '&' ? ""
								       : "&";
	int n = snprintf(out, cap, "%s", uri);
	if (cfg->ttl_ms && !strstr(uri, "ttl_cap_ms=") && n >= 0 && (size_t)n < cap) {
		n += snprintf(out + n, cap - (size_t)n, "%sttl_cap_ms=%u", sep, cfg->ttl_ms);
		sep = "&";
	}
	if (!strstr(uri, "command_timeout_ms=") && n >= 0 && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, "%scommand_timeout_ms=%u", sep,
			      UPLINK_COMMAND_TIMEOUT_MS);
	if (n < 0 || (size_t)n >= cap) {
		fprintf(stderr, "demo: --uplink: the URI is too long\n");
		return -1;
	}
	return 0;
}

/* Unlinks a leftover of the same name, then creates the segment. The
 * master needs no uplink; the workers' options get theirs. */
static int segment_create(struct config *cfg, shmc_opts *opts, shmc_cache **out)
{
	shmc_opts_set_size(opts, SEGMENT_BYTES);
	shmc_unlink(cfg->name); /* SHMC_ENOENT is the usual answer */
	int rc = shmc_open(cfg->name, opts, SHMC_CREATE | SHMC_EXCL, out);
	if (rc) {
		fprintf(stderr, "demo: creating segment %s: %s (%s)\n", cfg->name,
			shmc_strerror(rc), shmc_errmsg(NULL));
		return rc;
	}
	if (cfg->uplink && (rc = shmc_opts_set_uplink(opts, cfg->worker_uplink)) != 0)
		fprintf(stderr, "demo: --uplink %s: %s (%s)\n", cfg->uplink, shmc_strerror(rc),
			shmc_errmsg(NULL));
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
	{"value-size", offsetof(struct config, value_bytes), VALUE_MIN_BYTES, VALUE_MAX_BYTES,
	 "value bytes (200)"},
	{"ttl-ms", offsetof(struct config, ttl_ms), 0, UINT32_MAX,
	 "L1 TTL of loaded values, 0 = none (5000)"},
	{"hot-ttl-ms", offsetof(struct config, hot_ttl_ms), 1, UINT32_MAX,
	 "L1 TTL of the hottest key, demo:key:0 (250)"},
	{"origin-latency-us", offsetof(struct config, origin_latency_us), 0, 10000000,
	 "the built-in origin's latency (500)"},
};
#define NUM_OPTS (sizeof(num_opts) / sizeof(num_opts[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: shmcache-demo [options]\n");
	for (size_t i = 0; i < NUM_OPTS; i++)
		fprintf(f, "  --%-17s N     %s, %u..%u\n", num_opts[i].name, num_opts[i].help,
			num_opts[i].lo, num_opts[i].hi);
	fprintf(f,
		"  --%-17s URI   Redis as the remote tier: redis://host:port[/db] or\n"
		"%28sredis+unix:///path; the demo sets demo:key:0..N-1 there\n"
		"%28sand deletes them at the end (default: the built-in origin)\n",
		"uplink", "", "");
	fprintf(f, "  --%-17s PATH  run shmcache-stat (PATH) live during the L1 phase\n", "stat");
	fprintf(f, "  --%-17s NAME  segment name (demo.<pid>)\n", "name");
}

/* Returns -1 to go on, else the exit status. */
static int config_parse(int argc, char **argv, struct config *cfg)
{
	struct option longopts[NUM_OPTS + 5] = {{0}};
	for (size_t i = 0; i < NUM_OPTS; i++)
		longopts[i] = (struct option){num_opts[i].name, required_argument, NULL, (int)i};
	longopts[NUM_OPTS] = (struct option){"name", required_argument, NULL, 'n'};
	longopts[NUM_OPTS + 1] = (struct option){"uplink", required_argument, NULL, 'u'};
	longopts[NUM_OPTS + 2] = (struct option){"stat", required_argument, NULL, 's'};
	longopts[NUM_OPTS + 3] = (struct option){"help", no_argument, NULL, 'h'};
	*cfg = (struct config){.workers = 4,
			       .seconds = 10,
			       .keys = 10000,
			       .value_bytes = 200,
			       .origin_latency_us = 500,
			       .ttl_ms = 5000,
			       .hot_ttl_ms = 250,
			       .master = getpid()};
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
		case 's':
			cfg->stat_path = optarg;
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
	if (optind < argc) {
		fprintf(stderr, "demo: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (cfg->uplink && uplink_uri_make(cfg) != 0)
		return 2;
	return -1;
}

/* ------------------------------------------------------------------- main */

/* Loads the key set into Redis, runs both phases on the created segment,
 * checks the write-through, prints the summary. Returns the exit status. */
static int demo_run(const struct config *cfg, const shmc_opts *opts, struct pool *pool,
		    shmc_cache *c, struct origin *origin, const double *cdf)
{
	const char *tier = origin_name(origin);
	printf("segment %s, %zu MiB: %u workers attach by name; %u keys, Zipf(%.2f), %u-byte "
	       "values\n",
	       cfg->name, SEGMENT_BYTES >> 20, cfg->workers, cfg->keys, ZIPF_S, cfg->value_bytes);
	if (cfg->uplink) {
		uint64_t t0 = now_ns();
		if (origin_keys_load(origin, cfg->keys, cfg->value_bytes) != 0) {
			fprintf(stderr, "demo: loading the keys into Redis: %s\n",
				origin_error(origin));
			return 1;
		}
		printf("remote tier: Redis at %s, %u keys loaded in %.2f s; the workers read\n"
		       "  through the uplink (L1 TTL %u ms), worker 0 writes through to Redis\n",
		       cfg->uplink, cfg->keys, (double)(now_ns() - t0) / 1e9, cfg->ttl_ms);
	} else {
		printf("remote tier: the built-in origin, %u us a call (L1 TTL %u ms); worker 0\n"
		       "  writes to the L1 (cache-aside)\n",
		       cfg->origin_latency_us, cfg->ttl_ms);
	}
	printf("hot key demo:key:%u expires every %u ms\n\nwith L1, %u s%s\n", HOT_RANK,
	       cfg->hot_ttl_ms, cfg->seconds,
	       cfg->stat_path ? ": shmcache-stat, every second" : "");
	if (!cfg->stat_path)
		printf("    t      req/s   L1 hit   origin/s    items  live MiB  procs\n");
	struct phase l1, base;
	int l1_failed = phase_run(cfg, opts, pool, c, true, cdf, &l1);
	if (interrupted || (l1_failed && l1.requests == 0))
		return 1; /* nothing to compare with */
	if (cfg->uplink && l1.last_write)
		l1.errors += writes_check(cfg, origin, c, l1.last_write);
	printf("\n%s only (no L1), same %u workers, %u s\n    t      req/s\n",
	       cfg->uplink ? "Redis" : "origin", cfg->workers, cfg->seconds);
	int base_failed = phase_run(cfg, opts, pool, c, false, cdf, &base);
	if (interrupted || (base_failed && base.requests == 0))
		return 1;
	summary_print(cfg, tier, &l1, &base);
	return l1_failed || base_failed || l1.errors ? 1 : 0;
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
	struct origin_config ocfg = {cfg.uplink, cfg.origin_latency_us, cfg.value_bytes};
	struct origin *origin = NULL;
	shmc_opts *opts = NULL;
	shmc_cache *c = NULL;
	char err[512];
	status = 1;
	if (pool == MAP_FAILED || !cdf || shmc_opts_create(&opts) != 0)
		fprintf(stderr, "demo: out of memory\n");
	else if (origin_open(&ocfg, &origin, err, sizeof(err)) != 0)
		fprintf(stderr, "demo: %s\n", err);
	else if (segment_create(&cfg, opts, &c) == 0)
		status = demo_run(&cfg, opts, pool, c, origin, cdf);
	if (c) {
		shmc_close(c);
		shmc_unlink(cfg.name);
	}
	if (origin && origin_is_redis(origin) && origin_keys_delete(origin, cfg.keys) != 0) {
		fprintf(stderr, "demo: deleting the keys from Redis: %s\n", origin_error(origin));
		status = 1;
	}
	origin_close(origin);
	shmc_opts_destroy(opts);
	if (pool != MAP_FAILED)
		munmap(pool, pool_bytes);
	free(cdf);
	if (interrupted)
		fprintf(stderr, "demo: interrupted; workers stopped, segment %s unlinked%s\n",
			cfg.name, cfg.uplink ? ", keys deleted from Redis" : "");
	return interrupted ? 130 : status;
}
