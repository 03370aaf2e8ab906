/*
 * uplink.c - shmcache-bench --uplink: what the uplink costs next to the
 * Redis server it talks to.
 *
 * Starts a redis-server of its own on loopback (a unix socket in a private
 * temporary directory, or 127.0.0.1 on a free port), loads --keys keys of
 * --value-size bytes under redis-benchmark's key names ("key:" and twelve
 * digits, so that redis-benchmark -r reads the same data), then measures,
 * in one run:
 *
 *   1. uplink miss throughput: P processes x T threads call shmc_fetch with
 *      no loader (or, with --many K, shmc_fetch_many on K keys), each on
 *      keys deleted from L1 just before, so that every key is a remote
 *      miss; each process's uplink batches and pipelines the misses of its
 *      threads (GET + PTTL per key);
 *   2. redis-benchmark -t get on the same server, with one connection per
 *      uplink (P) and the pipelining depth the uplink's batches had on
 *      average in (1); the ratio (1) / (2) is what the uplink delivers of
 *      what the server can serve the same way (target >= 0.7);
 *      (1) and (2) alternate in --rounds rounds whose medians are reported:
 *      on a shared host the machine's state drifts, and a ratio of two
 *      figures taken far apart would measure the drift;
 *   3. the latency one miss adds: a single thread alternates, in blocks, a
 *      timed shmc_fetch miss and a timed hiredis GET of its own on a
 *      connection of the same type; p50 and p99 of each and their
 *      differences (target: p50 added <= 20 us).
 *
 * --idle-poll holds the kernel's PM QoS CPU latency at 0 for the run, so
 * that idle CPUs poll instead of halting: on a VM, waking a thread on a
 * halted vCPU costs an exit to the hypervisor, which makes both sides wait
 * on round trips; polling, both are bound by CPU instead.
 *
 * The server is stopped at the end, on every failure path and after
 * SIGINT / SIGTERM; it also dies with the bench (PR_SET_PDEATHSIG).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>

#include "shmcache.h"

#include "bench.h"
#include "server.h"

#define UP_KEY_BYTES 16u /* "key:" + 12 digits, redis-benchmark's __rand_int__ */
#define UP_MAX_PROCS 64u
#define UP_MAX_THREADS 256u
#define UP_MAX_KEYS 100000000ull
#define UP_MAX_ROUNDS 15
#define UP_LOAD_PIPELINE 1000u /* SETs per round trip while loading */
#define UP_CHECK_OPS 64u       /* fetches between deadline checks */
#define UP_WARM_FETCHES 16u    /* per thread, before the clock starts */
#define UP_LAT_BLOCK 100u      /* samples of one kind in a row */
#define UP_READY_TIMEOUT_S 30.0
#define UP_SERVER_START_S 10.0
#define UP_SERVER_STOP_S 5.0
#define UP_SEGMENT_BYTES (64u << 20)
#define UP_TIMEOUT_MS 5000  /* the uplink's connect and command timeouts */
#define UP_DEFAULT_BATCH 64 /* the batch option's default (shmcache.h) */
#define UP_RATIO_TARGET 0.7
#define UP_ADDED_P50_TARGET_NS 20000u

enum transport { T_UNIX, T_TCP };

struct up_config {
	enum transport transport;
	uint64_t keys;
	size_t value_size;
	unsigned procs, threads;
	unsigned many;	/* keys per shmc_fetch_many call; 0 = shmc_fetch */
	bool idle_poll; /* idle CPUs poll instead of halting during the run */
	unsigned batch; /* the uplink's batch option (URI), 0 = not given */
	double seconds; /* of (1), all rounds together */
	unsigned rounds;
	uint64_t bench_requests; /* per round; 0 = from --seconds */
	unsigned bench_pipeline; /* 0 = the uplink's average batch */
	unsigned lat_samples;
	bool json;
	char name[200];
	const char *redis_server, *redis_benchmark;
};

/* ---------------------------------------------------------- the server */

struct server {
	const char *program; /* the redis-server run, as given */
	pid_t pid;
	char dir[64];	/* private temporary directory */
	char sock[128]; /* unix socket path (T_UNIX) */
	uint16_t port;	/* TCP port (T_TCP) */
	enum transport transport;
};

static void sleep_us(unsigned us)
{
	struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

static redisContext *server_connect(const struct server *s)
{
	struct timeval tv = {.tv_sec = 1};
	redisContext *c = s->transport == T_UNIX
				  ? redisConnectUnixWithTimeout(s->sock, tv)
				  : redisConnectWithTimeout("127.0.0.1", s->port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	tv.tv_sec = 10;
	redisSetTimeout(c, tv);
	return c;
}

/* A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick).
 * Someone may take it before the server binds it: the caller retries. */
static int free_port(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int rc = -1;
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
		*port = ntohs(a.sin_port);
		rc = 0;
	}
	close(fd);
	return rc;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* Stop the server (TERM, then KILL) and remove its directory. Idempotent. */
static void server_stop(struct server *s)
{
	bench_server_stop("uplink: ", s->program, &s->pid);
	if (s->dir[0]) {
		bench_server_dir_remove(s->dir);
		s->dir[0] = '\0';
	}
}

/* Launch redis-server with the config in s->dir and wait until it answers
 * PING. Returns 0, or -1 with the server stopped (its log is printed). */
static int server_launch(struct server *s, const char *redis_server)
{
	char conf[128], out[128];
	snprintf(conf, sizeof conf, "%s/redis.conf", s->dir);
	snprintf(out, sizeof out, "%s/stdout.log", s->dir);
	char *argv[] = {(char *)redis_server, conf, NULL};
	if (bench_server_spawn("uplink: ", redis_server, argv, out, &s->pid) != 0)
		return -1;
	uint64_t deadline = now_ns() + (uint64_t)(UP_SERVER_START_S * 1e9);
	while (now_ns() < deadline && !bench_interrupted) {
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			break;
		}
		redisContext *c = server_connect(s);
		if (c) {
			redisReply *r = redisCommand(c, "PING");
			bool pong = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
			if (r)
				freeReplyObject(r);
			redisFree(c);
			if (pong)
				return 0;
		}
		sleep_us(10000);
	}
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		bench_server_wait_exit(s->pid, UP_SERVER_STOP_S);
		s->pid = 0;
	}
	char cmd[300];
	fprintf(stderr, "shmcache-bench: uplink: %s did not start; its output:\n", redis_server);
	snprintf(cmd, sizeof cmd, "tail -n 5 '%s' '%s/redis.log' >&2 2>/dev/null", out, s->dir);
	if (system(cmd) != 0) {
		/* nothing more to show */
	}
	return -1;
}

/* A private directory, a config, a server that answers. Returns 0 or -1
 * (nothing left running, the directory removed). */
static int server_start(struct server *s, const struct up_config *cfg)
{
	memset(s, 0, sizeof *s);
	s->transport = cfg->transport;
	s->program = cfg->redis_server;
	snprintf(s->dir, sizeof s->dir, "/tmp/shmc-bench-uplink-XXXXXX");
	if (!mkdtemp(s->dir)) {
		fprintf(stderr, "shmcache-bench: uplink: mkdtemp: %s\n", strerror(errno));
		s->dir[0] = '\0';
		return -1;
	}
	snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
	for (int attempt = 0; attempt < 5 && !bench_interrupted; attempt++) {
		char text[1024], conf[128];
		if (cfg->transport == T_TCP && free_port(&s->port) != 0) {
			fprintf(stderr, "shmcache-bench: uplink: no free port: %s\n",
				strerror(errno));
			break;
		}
		/* No persistence: the data is the bench's own, loaded each run. */
		snprintf(text, sizeof text,
			 "daemonize no\n"
			 "dir %s\n"
			 "logfile %s/redis.log\n"
			 "save \"\"\n"
			 "appendonly no\n"
			 "bind 127.0.0.1\n"
			 "port %u\n"
			 "%s%s%s",
			 s->dir, s->dir, cfg->transport == T_TCP ? (unsigned)s->port : 0u,
			 cfg->transport == T_UNIX ? "unixsocket " : "",
			 cfg->transport == T_UNIX ? s->sock : "",
			 cfg->transport == T_UNIX ? "\nunixsocketperm 700\n" : "");
		snprintf(conf, sizeof conf, "%s/redis.conf", s->dir);
		if (write_file(conf, text) != 0) {
			fprintf(stderr, "shmcache-bench: uplink: writing %s: %s\n", conf,
				strerror(errno));
			break;
		}
		if (server_launch(s, cfg->redis_server) == 0)
			return 0;
		if (cfg->transport == T_UNIX)
			break; /* a private path cannot be taken: retrying will not help */
	}
	server_stop(s);
	return -1;
}

/* ------------------------------------------------------------ the data */

/* Key i (i < 10^12, --keys enforces it), without a terminating NUL. */
static void key_of(char *out, uint64_t i)
{
	memcpy(out, "key:", 4);
	for (unsigned pos = UP_KEY_BYTES - 1; pos >= 4; pos--) {
		out[pos] = (char)('0' + i % 10);
		i /= 10;
	}
}

/* Key i's value: a pattern that starts at a different letter per key. */
static void value_of(unsigned char *out, size_t len, uint64_t i)
{
	for (size_t j = 0; j < len; j++)
		out[j] = (unsigned char)('a' + (i * 7 + j) % 26);
}

static bool value_ok(const unsigned char *v, size_t vlen, size_t want_len, uint64_t i)
{
	if (vlen != want_len)
		return false;
	for (size_t j = 0; j < vlen; j++)
		if (v[j] != (unsigned char)('a' + (i * 7 + j) % 26))
			return false;
	return true;
}

/* SET every key, UP_LOAD_PIPELINE to a round trip. */
static int load_keys(const struct server *s, const struct up_config *cfg)
{
	redisContext *c = server_connect(s);
	unsigned char *val = malloc(cfg->value_size ? cfg->value_size : 1);
	int rc = c && val ? 0 : -1;
	char key[UP_KEY_BYTES];
	for (uint64_t base = 0; rc == 0 && base < cfg->keys && !bench_interrupted;
	     base += UP_LOAD_PIPELINE) {
		uint64_t n =
			cfg->keys - base < UP_LOAD_PIPELINE ? cfg->keys - base : UP_LOAD_PIPELINE;
		for (uint64_t i = base; i < base + n; i++) {
			key_of(key, i);
			value_of(val, cfg->value_size, i);
			redisAppendCommand(c, "SET %b %b", key, (size_t)UP_KEY_BYTES, val,
					   cfg->value_size);
		}
		for (uint64_t i = 0; i < n; i++) {
			redisReply *r = NULL;
			if (redisGetReply(c, (void **)&r) != REDIS_OK || !r ||
			    r->type != REDIS_REPLY_STATUS) {
				fprintf(stderr, "shmcache-bench: uplink: loading keys: %s\n",
					r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
				rc = -1;
			}
			if (r)
				freeReplyObject(r);
			if (rc)
				break;
		}
	}
	if (!c)
		fprintf(stderr, "shmcache-bench: uplink: cannot connect to the server\n");
	if (c)
		redisFree(c);
	free(val);
	return bench_interrupted ? -1 : rc;
}

/* CPU seconds the server has used so far (INFO cpu), or -1. */
static double server_cpu_s(const struct server *s)
{
	redisContext *c = server_connect(s);
	double cpu = -1.0;
	if (!c)
		return cpu;
	redisReply *r = redisCommand(c, "INFO cpu");
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *u = strstr(r->str, "used_cpu_user:"),
			   *k = strstr(r->str, "used_cpu_sys:");
		if (u && k)
			cpu = strtod(u + 14, NULL) + strtod(k + 13, NULL);
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return cpu;
}

/* The "cpu" line of /proc/stat: total and steal ticks. false if unreadable. */
static bool cpu_ticks(uint64_t *total, uint64_t *steal)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7])
		  : 0;
	if (f)
		fclose(f);
	if (n != 8)
		return false;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	*steal = v[7];
	return true;
}

/* CPU seconds of this process's reaped children so far. */
static double children_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* -------------------------------------------- 1. the uplink's throughput */

struct up_slot { /* one thread's results; written only by it */
	uint64_t ops, errors, bad_values;
	int first_error;
};

struct up_shared {
	_Atomic unsigned ready;
	_Atomic int go;
	_Atomic uint64_t deadline_ns;
	_Atomic int have_error;
	char first_error_msg[256];
	struct up_slot slots[]; /* procs x threads */
};

struct up_run {
	const struct up_config *cfg;
	char segment[220];
	char uri[300];
	struct up_shared *sh;
};

struct up_thread {
	const struct up_run *run;
	shmc_cache *c;
	struct up_slot *slot;
	uint64_t seed;
};

static void up_error(struct up_shared *sh, struct up_slot *slot, int rc, const char *msg)
{
	slot->errors++;
	if (!slot->first_error)
		slot->first_error = rc;
	if (atomic_exchange(&sh->have_error, 1) == 0)
		snprintf(sh->first_error_msg, sizeof sh->first_error_msg, "%s: %s", error_name(rc),
			 msg);
}

/* One remote miss: drop the key from L1, fetch it through the uplink. */
static int miss_once(shmc_cache *c, uint64_t i, unsigned char *buf, size_t cap, size_t *vlen)
{
	char key[UP_KEY_BYTES];
	key_of(key, i);
	int rc = shmc_del(c, key, UP_KEY_BYTES);
	if (rc && rc != SHMC_ENOTFOUND)
		return rc;
	return shmc_fetch(c, key, UP_KEY_BYTES, buf, cap, vlen, NULL, NULL);
}

/* cfg->many remote misses in one call: drop the keys from L1, fetch them
 * with shmc_fetch_many. Checks every value; returns the first error. */
static int misses_many(struct up_thread *th, uint64_t *rng, struct shmc_fetch_item *items,
		       char (*keys)[UP_KEY_BYTES], unsigned char *bufs, uint64_t *ids)
{
	const struct up_config *cfg = th->run->cfg;
	size_t cap = cfg->value_size ? cfg->value_size : 1;
	for (unsigned k = 0; k < cfg->many; k++) {
		/* K distinct keys: a key twice in one call is one miss and a
		 * hit, and every key here is to be a remote miss */
		bool again;
		do {
			ids[k] = range_map(xorshift_next(rng), cfg->keys);
			again = false;
			for (unsigned j = 0; j < k; j++)
				again |= ids[j] == ids[k];
		} while (again);
		key_of(keys[k], ids[k]);
		int rc = shmc_del(th->c, keys[k], UP_KEY_BYTES);
		if (rc && rc != SHMC_ENOTFOUND)
			return rc;
		items[k] = (struct shmc_fetch_item){
			.key = keys[k], .klen = UP_KEY_BYTES, .buf = bufs + k * cap, .cap = cap};
	}
	shmc_fetch_many(th->c, items, cfg->many, NULL, NULL);
	int first = 0;
	for (unsigned k = 0; k < cfg->many; k++) {
		if (items[k].rc && !first)
			first = items[k].rc;
		else if (!items[k].rc &&
			 !value_ok(items[k].buf, items[k].vlen, cfg->value_size, ids[k]))
			th->slot->bad_values++;
	}
	return first;
}

/* The timed loop of --many: misses_many until the deadline. */
static void many_loop(struct up_thread *th, uint64_t *rng, uint64_t deadline)
{
	const struct up_config *cfg = th->run->cfg;
	struct up_shared *sh = th->run->sh;
	size_t cap = cfg->value_size ? cfg->value_size : 1;
	struct shmc_fetch_item *items = calloc(cfg->many, sizeof *items);
	char(*keys)[UP_KEY_BYTES] = calloc(cfg->many, UP_KEY_BYTES);
	unsigned char *bufs = calloc(cfg->many, cap);
	uint64_t *ids = calloc(cfg->many, sizeof *ids);
	if (!items || !keys || !bufs || !ids)
		up_error(sh, th->slot, SHMC_ENOMEM, "worker buffers");
	else
		while (now_ns() < deadline && !bench_interrupted) {
			int rc = misses_many(th, rng, items, keys, bufs, ids);
			th->slot->ops += cfg->many;
			if (rc)
				up_error(sh, th->slot, rc, shmc_errmsg(th->c));
		}
	free(items);
	free(keys);
	free(bufs);
	free(ids);
}

static void *up_thread_main(void *arg)
{
	struct up_thread *th = arg;
	const struct up_config *cfg = th->run->cfg;
	struct up_shared *sh = th->run->sh;
	size_t cap = cfg->value_size ? cfg->value_size : 1;
	unsigned char *buf = malloc(cap);
	uint64_t rng = xorshift_seed(th->seed);

	if (!buf) {
		up_error(sh, th->slot, SHMC_ENOMEM, "worker buffer");
		atomic_fetch_add(&sh->ready, 1);
		return NULL;
	}
	/* The first fetches connect the uplink: not timed. */
	for (unsigned w = 0; w < UP_WARM_FETCHES; w++) {
		size_t vlen;
		int rc = miss_once(th->c, range_map(xorshift_next(&rng), cfg->keys), buf, cap,
				   &vlen);
		if (rc) {
			up_error(sh, th->slot, rc, shmc_errmsg(th->c));
			break;
		}
	}
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->go) && !bench_interrupted)
		sleep_us(100);
	uint64_t deadline = atomic_load(&sh->deadline_ns);
	if (cfg->many) {
		many_loop(th, &rng, deadline);
		free(buf);
		return NULL;
	}
	for (uint64_t n = 0;; n++) {
		if (n % UP_CHECK_OPS == 0 && (now_ns() >= deadline || bench_interrupted))
			break;
		uint64_t i = range_map(xorshift_next(&rng), cfg->keys);
		size_t vlen = 0;
		int rc = miss_once(th->c, i, buf, cap, &vlen);
		th->slot->ops++;
		if (rc)
			up_error(sh, th->slot, rc, shmc_errmsg(th->c));
		else if (!value_ok(buf, vlen, cfg->value_size, i))
			th->slot->bad_values++;
	}
	free(buf);
	return NULL;
}

static int open_with_uplink(const char *segment, const char *uri, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_uplink(o, uri);
	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0)
		rc = shmc_open(segment, o, 0, out);
	shmc_opts_destroy(o);
	return rc;
}

/* A worker process: its own handle (its own uplink thread and connection),
 * T threads. Exit status. */
static int up_worker(const struct up_run *run, unsigned proc)
{
	const struct up_config *cfg = run->cfg;
	shmc_cache *c = NULL;
	int rc = open_with_uplink(run->segment, run->uri, &c);
	if (rc != 0) {
		fprintf(stderr, "shmcache-bench: uplink worker %u: shmc_open(%s): %s %s\n", proc,
			run->segment, shmc_errname(rc), shmc_errmsg(NULL));
		atomic_fetch_add(&run->sh->ready, cfg->threads);
		return 1;
	}
	pthread_t *tids = calloc(cfg->threads, sizeof *tids);
	struct up_thread *ths = calloc(cfg->threads, sizeof *ths);
	unsigned started = 0;
	for (unsigned t = 0; tids && ths && t < cfg->threads; t++) {
		ths[t] = (struct up_thread){
			.run = run,
			.c = c,
			.slot = &run->sh->slots[proc * cfg->threads + t],
			.seed = ((uint64_t)proc << 32) ^ t ^ 0x5eed,
		};
		if (pthread_create(&tids[t], NULL, up_thread_main, &ths[t]) != 0)
			break;
		started++;
	}
	if (started < cfg->threads) {
		fprintf(stderr, "shmcache-bench: uplink worker %u: started %u of %u threads\n",
			proc, started, cfg->threads);
		atomic_fetch_add(&run->sh->ready, cfg->threads - started);
	}
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	free(ths);
	shmc_close(c);
	return started == cfg->threads ? 0 : 1;
}

/* One round of (1) and (2), or the medians of the rounds' figures with
 * the sums of their counts. */
struct up_round {
	/* 1. throughput */
	double seconds;
	uint64_t ops, errors, bad_values;
	uint64_t origin_calls, uplink_ops, uplink_batches;
	double ops_per_sec, batch_avg;
	double client_cpu_us, server_cpu_us; /* per op: worker processes, server */
	/* 2. redis-benchmark */
	unsigned bench_pipeline, bench_clients;
	uint64_t bench_requests;
	double bench_rps, ratio;
	double bench_client_cpu_us, bench_server_cpu_us; /* per request */
};

struct up_result {
	unsigned rounds;
	double steal_pct; /* of the host's CPU time during (1) and (2); -1 unknown */
	struct up_round round[UP_MAX_ROUNDS];
	struct up_round all;
	/* 3. latency */
	unsigned lat_samples;
	uint64_t up_p50_ns, up_p99_ns, raw_p50_ns, raw_p99_ns;
	int64_t added_p50_ns, added_p99_ns;
};

static int stats_of(shmc_cache *c, struct shmc_stats *st)
{
	int rc = shmc_stats(c, st);
	if (rc)
		fprintf(stderr, "shmcache-bench: uplink: shmc_stats: %s\n", shmc_errname(rc));
	return rc;
}

static int measure_throughput(struct up_run *run, double seconds, const struct server *srv,
			      shmc_cache *watch, struct up_round *res)
{
	const struct up_config *cfg = run->cfg;
	unsigned nworkers = cfg->procs * cfg->threads;
	size_t sh_bytes = sizeof(struct up_shared) + (size_t)nworkers * sizeof(struct up_slot);
	struct shmc_stats before, after;
	int failed = 0;

	run->sh = mmap(NULL, sh_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (run->sh == MAP_FAILED) {
		fprintf(stderr, "shmcache-bench: uplink: mmap: %s\n", strerror(errno));
		return -1;
	}
	if (stats_of(watch, &before) != 0) {
		munmap(run->sh, sh_bytes);
		return -1;
	}
	pid_t *pids = calloc(cfg->procs, sizeof *pids);
	if (!pids) {
		munmap(run->sh, sh_bytes);
		return -1;
	}
	fflush(NULL);
	for (unsigned p = 0; p < cfg->procs; p++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(up_worker(run, p));
		pids[p] = pid;
		if (pid < 0) {
			fprintf(stderr, "shmcache-bench: uplink: fork: %s\n", strerror(errno));
			atomic_fetch_add(&run->sh->ready, cfg->threads);
			failed = 1;
		}
	}
	uint64_t ready_by = now_ns() + (uint64_t)(UP_READY_TIMEOUT_S * 1e9);
	while (atomic_load(&run->sh->ready) < nworkers && now_ns() < ready_by && !bench_interrupted)
		sleep_us(1000);
	if (atomic_load(&run->sh->ready) < nworkers)
		failed = 1;
	double client0 = children_cpu_s(), server0 = server_cpu_s(srv);
	uint64_t start = now_ns();
	atomic_store(&run->sh->deadline_ns, start + (uint64_t)(seconds * 1e9));
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
	double client1 = children_cpu_s(), server1 = server_cpu_s(srv);
	free(pids);
	for (unsigned w = 0; w < nworkers; w++) {
		const struct up_slot *s = &run->sh->slots[w];
		res->ops += s->ops;
		res->errors += s->errors;
		res->bad_values += s->bad_values;
	}
	if (atomic_load(&run->sh->have_error))
		fprintf(stderr, "shmcache-bench: uplink: first failure: %s\n",
			run->sh->first_error_msg);
	munmap(run->sh, sh_bytes);
	run->sh = NULL;
	/* The workers have closed their handles: their uplink threads'
	 * counters are in the host totals now. */
	if (stats_of(watch, &after) != 0)
		return -1;
	res->origin_calls = after.origin_calls - before.origin_calls;
	res->uplink_ops = after.uplink_ops - before.uplink_ops;
	res->uplink_batches = after.uplink_batches - before.uplink_batches;
	res->ops_per_sec = res->seconds > 0 ? (double)res->ops / res->seconds : 0.0;
	res->batch_avg =
		res->uplink_batches ? (double)res->uplink_ops / (double)res->uplink_batches : 0.0;
	/* The workers' warm-up is in the client figure too: a few fetches. */
	if (res->ops) {
		res->client_cpu_us = (client1 - client0) * 1e6 / (double)res->ops;
		res->server_cpu_us = server0 >= 0 && server1 >= 0
					     ? (server1 - server0) * 1e6 / (double)res->ops
					     : 0.0;
	}
	return failed || res->errors || res->bad_values || bench_interrupted ? -1 : 0;
}

/* ------------------------------------------------- 2. redis-benchmark */

/* Run redis-benchmark -q and take "GET: <rps> requests per second" from
 * its output. Returns 0 and *rps, or -1. */
static int run_redis_benchmark(const struct server *s, const struct up_config *cfg,
			       struct up_round *res)
{
	char pipeline[16], clients[16], requests[24], keys[24], port[8];
	snprintf(pipeline, sizeof pipeline, "%u", res->bench_pipeline);
	snprintf(clients, sizeof clients, "%u", res->bench_clients);
	snprintf(requests, sizeof requests, "%" PRIu64, res->bench_requests);
	snprintf(keys, sizeof keys, "%" PRIu64, cfg->keys);
	snprintf(port, sizeof port, "%u", (unsigned)s->port);
	const char *argv[24];
	int n = 0;
	argv[n++] = cfg->redis_benchmark;
	if (s->transport == T_UNIX) {
		argv[n++] = "-s";
		argv[n++] = s->sock;
	} else {
		argv[n++] = "-h";
		argv[n++] = "127.0.0.1";
		argv[n++] = "-p";
		argv[n++] = port;
	}
	const char *rest[] = {"-t", "get",    "-P", pipeline, "-c", clients,
			      "-n", requests, "-r", keys,     "-q", NULL};
	for (int i = 0; rest[i]; i++)
		argv[n++] = rest[i];
	argv[n] = NULL;

	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		fprintf(stderr, "shmcache-bench: uplink: pipe: %s\n", strerror(errno));
		return -1;
	}
	double client0 = children_cpu_s(), server0 = server_cpu_s(s);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "shmcache-bench: uplink: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fds[1], STDOUT_FILENO);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (in >= 0)
			dup2(in, STDIN_FILENO);
		execvp(argv[0], (char *const *)argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap + 1);
	ssize_t got;
	while (out && (got = read(fds[0], out + len, cap - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR && !bench_interrupted)
				continue;
			break;
		}
		len += (size_t)got;
		if (len == cap) /* keep the tail: the result comes last */
			len = 0;
	}
	close(fds[0]);
	int status = 0;
	if (bench_interrupted)
		kill(pid, SIGTERM);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	double client1 = children_cpu_s(), server1 = server_cpu_s(s);
	res->bench_client_cpu_us = (client1 - client0) * 1e6 / (double)res->bench_requests;
	res->bench_server_cpu_us = server0 >= 0 && server1 >= 0
					   ? (server1 - server0) * 1e6 / (double)res->bench_requests
					   : 0.0;
	if (!out)
		return -1;
	out[len] = '\0';
	int rc = -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		/* -q prints progress lines ending in '\r', then the result */
		const char *hit = NULL, *p = out;
		while ((p = strstr(p, "GET: ")) != NULL) {
			const char *num = p + 5;
			char *end;
			double v = strtod(num, &end);
			if (end != num && strncmp(end, " requests per second", 20) == 0) {
				res->bench_rps = v;
				hit = p;
			}
			p = num;
		}
		rc = hit && res->bench_rps > 0 ? 0 : -1;
	}
	if (rc)
		fprintf(stderr,
			"shmcache-bench: uplink: %s failed (status %d) or printed no GET "
			"result; its output: %.300s\n",
			cfg->redis_benchmark, WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
	free(out);
	return rc;
}

/* --------------------------------------------- 3. latency of one miss */

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static uint64_t percentile(uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);
	return v[i < n ? i : n - 1];
}

static int measure_latency(const struct up_run *run, const struct server *s, struct up_result *res)
{
	const struct up_config *cfg = run->cfg;
	unsigned n = cfg->lat_samples;
	uint64_t *up = calloc(n, sizeof *up), *raw = calloc(n, sizeof *raw);
	size_t cap = cfg->value_size ? cfg->value_size : 1;
	unsigned char *buf = malloc(cap);
	shmc_cache *c = NULL;
	redisContext *rc_raw = server_connect(s);
	int rc = open_with_uplink(run->segment, run->uri, &c);
	uint64_t rng = xorshift_seed(0x1a7e);
	unsigned nup = 0, nraw = 0;
	char key[UP_KEY_BYTES];

	if (rc)
		fprintf(stderr, "shmcache-bench: uplink: shmc_open(%s): %s %s\n", run->segment,
			shmc_errname(rc), shmc_errmsg(NULL));
	if (!rc && (!up || !raw || !buf || !rc_raw)) {
		fprintf(stderr, "shmcache-bench: uplink: latency: %s\n",
			rc_raw ? "out of memory" : "cannot connect to the server");
		rc = -1;
	}
	/* Warm both paths (connections made, code and data hot). */
	for (unsigned w = 0; !rc && w < UP_WARM_FETCHES; w++) {
		size_t vlen;
		uint64_t i = range_map(xorshift_next(&rng), cfg->keys);
		key_of(key, i);
		redisReply *r = redisCommand(rc_raw, "GET %b", key, (size_t)UP_KEY_BYTES);
		if (!r || r->type != REDIS_REPLY_STRING)
			rc = -1;
		if (r)
			freeReplyObject(r);
		if (!rc)
			rc = miss_once(c, i, buf, cap, &vlen);
	}
	while (!rc && (nup < n || nraw < n) && !bench_interrupted) {
		for (unsigned b = 0; !rc && b < UP_LAT_BLOCK && nup < n; b++) {
			uint64_t i = range_map(xorshift_next(&rng), cfg->keys);
			size_t vlen = 0;
			key_of(key, i);
			rc = shmc_del(c, key, UP_KEY_BYTES);
			if (rc == SHMC_ENOTFOUND)
				rc = 0;
			uint64_t t0 = now_ns();
			if (!rc)
				rc = shmc_fetch(c, key, UP_KEY_BYTES, buf, cap, &vlen, NULL, NULL);
			uint64_t t1 = now_ns();
			if (!rc && !value_ok(buf, vlen, cfg->value_size, i))
				rc = BENCH_EBADVALUE;
			if (rc)
				fprintf(stderr,
					"shmcache-bench: uplink: latency: shmc_fetch: %s %s\n",
					error_name(rc),
					rc == BENCH_EBADVALUE ? "" : shmc_errmsg(c));
			up[nup++] = t1 - t0;
		}
		for (unsigned b = 0; !rc && b < UP_LAT_BLOCK && nraw < n; b++) {
			uint64_t i = range_map(xorshift_next(&rng), cfg->keys);
			key_of(key, i);
			uint64_t t0 = now_ns();
			redisReply *r = redisCommand(rc_raw, "GET %b", key, (size_t)UP_KEY_BYTES);
			uint64_t t1 = now_ns();
			if (!r || r->type != REDIS_REPLY_STRING ||
			    !value_ok((const unsigned char *)r->str, r->len, cfg->value_size, i)) {
				fprintf(stderr, "shmcache-bench: uplink: latency: GET: %s\n",
					r ? "wrong reply" : rc_raw->errstr);
				rc = -1;
			}
			if (r)
				freeReplyObject(r);
			raw[nraw++] = t1 - t0;
		}
	}
	if (!rc && !bench_interrupted) {
		qsort(up, n, sizeof *up, compare_u64);
		qsort(raw, n, sizeof *raw, compare_u64);
		res->lat_samples = n;
		res->up_p50_ns = percentile(up, n, 0.50);
		res->up_p99_ns = percentile(up, n, 0.99);
		res->raw_p50_ns = percentile(raw, n, 0.50);
		res->raw_p99_ns = percentile(raw, n, 0.99);
		res->added_p50_ns = (int64_t)res->up_p50_ns - (int64_t)res->raw_p50_ns;
		res->added_p99_ns = (int64_t)res->up_p99_ns - (int64_t)res->raw_p99_ns;
	}
	if (rc_raw)
		redisFree(rc_raw);
	shmc_close(c);
	free(up);
	free(raw);
	free(buf);
	return rc || bench_interrupted ? -1 : 0;
}

/* -------------------------------------------------------------- report */

static void print_round_json(const struct up_round *r)
{
	printf("{\"seconds\":%.3f,\"uplink_misses\":%" PRIu64 ",\"uplink_ops_per_sec\":%.0f,"
	       "\"uplink_batch_avg\":%.2f,\"uplink_client_cpu_us_per_op\":%.2f,"
	       "\"uplink_server_cpu_us_per_op\":%.2f,\"bench_pipeline\":%u,\"bench_rps\":%.0f,"
	       "\"bench_client_cpu_us_per_op\":%.2f,\"bench_server_cpu_us_per_op\":%.2f,"
	       "\"ratio\":%.3f}",
	       r->seconds, r->ops, r->ops_per_sec, r->batch_avg, r->client_cpu_us, r->server_cpu_us,
	       r->bench_pipeline, r->bench_rps, r->bench_client_cpu_us, r->bench_server_cpu_us,
	       r->ratio);
}

static void print_round_row(const char *label, const struct up_round *r)
{
	printf("%-7s %11.0f %6.1f %8.2f %8.2f | %4u %11.0f %8.2f %8.2f | %6.3f\n", label,
	       r->ops_per_sec, r->batch_avg, r->client_cpu_us, r->server_cpu_us, r->bench_pipeline,
	       r->bench_rps, r->bench_client_cpu_us, r->bench_server_cpu_us, r->ratio);
}

static void print_result(const struct up_config *cfg, const struct server *s,
			 const struct up_result *res, bool ok)
{
	const struct up_round *r = &res->all;
	bool ratio_ok = r->ratio >= UP_RATIO_TARGET;
	bool lat_ok = res->added_p50_ns <= (int64_t)UP_ADDED_P50_TARGET_NS;
	if (cfg->json) {
		printf("{\"uplink\":true,\"transport\":\"%s\",\"keys\":%" PRIu64
		       ",\"key_size\":%u,\"value_size\":%zu,\"procs\":%u,\"threads\":%u,"
		       "\"keys_per_call\":%u,\"idle_poll\":%s,"
		       "\"batch_max\":%u,\"rounds\":%u,\"seconds\":%.3f,"
		       "\"uplink_misses\":%" PRIu64 ",\"uplink_ops_per_sec\":%.0f,"
		       "\"uplink_batch_avg\":%.2f,\"uplink_origin_calls\":%" PRIu64
		       ",\"uplink_remote_ops\":%" PRIu64 ",\"uplink_round_trips\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"bad_values\":%" PRIu64
		       ",\"uplink_client_cpu_us_per_op\":%.2f,\"uplink_server_cpu_us_per_op\":%.2f,"
		       "\"bench_client_cpu_us_per_op\":%.2f,\"bench_server_cpu_us_per_op\":%.2f,"
		       "\"bench_pipeline\":%u,\"bench_clients\":%u,\"bench_requests\":%" PRIu64
		       ",\"bench_rps\":%.0f,\"ratio\":%.3f,\"ratio_target\":%.2f,\"ratio_ok\":%s,"
		       "\"host_steal_pct\":%.1f,",
		       cfg->transport == T_UNIX ? "unix" : "tcp", cfg->keys, UP_KEY_BYTES,
		       cfg->value_size, cfg->procs, cfg->threads, cfg->many ? cfg->many : 1,
		       cfg->idle_poll ? "true" : "false",
		       cfg->batch ? cfg->batch : UP_DEFAULT_BATCH, res->rounds, r->seconds, r->ops,
		       r->ops_per_sec, r->batch_avg, r->origin_calls, r->uplink_ops,
		       r->uplink_batches, r->errors, r->bad_values, r->client_cpu_us,
		       r->server_cpu_us, r->bench_client_cpu_us, r->bench_server_cpu_us,
		       r->bench_pipeline, r->bench_clients, r->bench_requests, r->bench_rps,
		       r->ratio, UP_RATIO_TARGET, ratio_ok ? "true" : "false", res->steal_pct);
		printf("\"per_round\":[");
		for (unsigned i = 0; i < res->rounds; i++) {
			if (i)
				printf(",");
			print_round_json(&res->round[i]);
		}
		printf("],\"latency_samples\":%u,\"uplink_p50_ns\":%" PRIu64
		       ",\"uplink_p99_ns\":%" PRIu64 ",\"raw_p50_ns\":%" PRIu64
		       ",\"raw_p99_ns\":%" PRIu64 ",\"added_p50_ns\":%" PRId64
		       ",\"added_p99_ns\":%" PRId64 ",\"added_p50_target_ns\":%u,"
		       "\"latency_ok\":%s,\"server_pid\":%ld,\"server_dir\":\"%s\",\"ok\":%s}\n",
		       res->lat_samples, res->up_p50_ns, res->up_p99_ns, res->raw_p50_ns,
		       res->raw_p99_ns, res->added_p50_ns, res->added_p99_ns,
		       UP_ADDED_P50_TARGET_NS, lat_ok ? "true" : "false", (long)s->pid, s->dir,
		       ok ? "true" : "false");
		return;
	}
	printf("\nthroughput of misses, %u connection%s each, %s (CPU per op in us)%s\n",
	       cfg->procs, cfg->procs == 1 ? "" : "s", cfg->many ? "shmc_fetch_many" : "shmc_fetch",
	       cfg->idle_poll ? ", idle CPUs poll" : "");
	printf("%-7s %11s %6s %8s %8s | %4s %11s %8s %8s | %6s\n", "", "uplink", "", "client",
	       "server", "", "redis-bench", "client", "server", "");
	printf("%-7s %11s %6s %8s %8s | %4s %11s %8s %8s | %6s\n", "round", "ops/s", "batch",
	       "CPU/op", "CPU/op", "-P", "GET/s", "CPU/op", "CPU/op", "ratio");
	for (unsigned i = 0; i < res->rounds; i++) {
		char label[16];
		snprintf(label, sizeof label, "%u", i + 1);
		print_round_row(label, &res->round[i]);
	}
	print_round_row("median", r);
	printf("ratio uplink / redis-benchmark (median of the rounds): %.3f (target >= %.2f: "
	       "%s)\n",
	       r->ratio, UP_RATIO_TARGET, ratio_ok ? "met" : "missed");
	printf("remote share: %" PRIu64 " origin calls for %" PRIu64 " fetches; %" PRIu64
	       " ops in %" PRIu64 " round trips\n",
	       r->origin_calls, r->ops, r->uplink_ops, r->uplink_batches);
	if (res->steal_pct >= 0)
		printf("host steal during the rounds: %.1f%% of CPU time%s\n", res->steal_pct,
		       res->steal_pct >= 5.0 ? " (figures measure the host too)" : "");
	printf("\n%-34s %12s %8s\n", "latency of one miss", "p50 us", "p99 us");
	printf("%-34s %12.1f %8.1f\n", "uplink (shmc_fetch)", (double)res->up_p50_ns / 1e3,
	       (double)res->up_p99_ns / 1e3);
	printf("%-34s %12.1f %8.1f\n", "raw hiredis GET, same transport",
	       (double)res->raw_p50_ns / 1e3, (double)res->raw_p99_ns / 1e3);
	printf("%-34s %12.1f %8.1f\n", "added by the uplink", (double)res->added_p50_ns / 1e3,
	       (double)res->added_p99_ns / 1e3);
	printf("added p50 target <= %.1f us: %s (%u samples each)\n",
	       (double)UP_ADDED_P50_TARGET_NS / 1e3, lat_ok ? "met" : "missed", res->lat_samples);
}

/* -------------------------------------------------------------- options */

static void up_usage(FILE *out)
{
	fprintf(out,
		"usage: shmcache-bench --uplink [options]\n"
		"\n"
		"The Redis uplink next to the server it talks to. Starts a redis-server of its\n"
		"own on loopback, loads --keys keys, and measures in one run: (1) uplink miss\n"
		"throughput, --procs processes x --threads threads calling shmc_fetch on keys\n"
		"just deleted from L1 (every call a remote miss, batched by each process's\n"
		"uplink thread); (2) redis-benchmark -t get on the same server with one\n"
		"connection per process and the uplink's average batch as -P, and the ratio\n"
		"(1)/(2) (target >= %.2f), (1) and (2) alternating in --rounds rounds whose\n"
		"medians are reported; (3) p50/p99 of one miss through the uplink and of\n"
		"a raw hiredis GET on the same transport, and the difference (target p50\n"
		"<= %u us). The server is stopped at the end.\n"
		"\n"
		"  --transport unix|tcp  unix socket (default) or 127.0.0.1 on a free port\n"
		"  --keys N              keys loaded (default 100000)\n"
		"  --value-size B        value bytes (default 100)\n"
		"  --procs N             worker processes, one uplink each (default 2)\n"
		"  --threads N           threads per worker process (default 16)\n"
		"  --many K              each thread calls shmc_fetch_many on K keys at a time\n"
		"                        (one batch per call) instead of shmc_fetch on one\n"
		"  --batch N             the uplink's batch option (default %u)\n"
		"  --idle-poll           hold /dev/cpu_dma_latency at 0 during the run (root):\n"
		"                        idle CPUs poll instead of halting, so that waking a\n"
		"                        thread costs no exit from a halted (virtual) CPU and\n"
		"                        both sides are bound by CPU, not by wake-up latency\n"
		"  --seconds S           timed seconds of (1), all rounds (default 6)\n"
		"  --rounds R            (1) then (2), R times; medians reported (default 3)\n"
		"  --bench-requests N    requests of (2) per round (default 300000 per second\n"
		"                        of (1) in a round)\n"
		"  --bench-pipeline N    -P of (2) (default: the uplink's average batch in (1))\n"
		"  --latency-samples N   samples of each kind in (3) (default 20000)\n"
		"  --redis-server PATH   default redis-server (from PATH)\n"
		"  --redis-benchmark PATH  default redis-benchmark (from PATH)\n"
		"  --name NAME           segment name (default bench.uplink.<pid>)\n"
		"  --json                one JSON object with every figure\n"
		"  -h, --help            this text\n"
		"\n"
		"Keys are \"key:\" and 12 digits, the names redis-benchmark -r reads. Exit\n"
		"status: 0 ok (targets are reported, not enforced), 1 failure, 2 usage.\n",
		UP_RATIO_TARGET, UP_ADDED_P50_TARGET_NS / 1000, UP_DEFAULT_BATCH);
}

static int up_parse(int argc, char **argv, struct up_config *cfg)
{
	enum {
		O_UPLINK = 256,
		O_TRANSPORT,
		O_KEYS,
		O_VALUE,
		O_PROCS,
		O_THREADS,
		O_BATCH,
		O_MANY,
		O_IDLE_POLL,
		O_SECONDS,
		O_ROUNDS,
		O_REQUESTS,
		O_PIPELINE,
		O_SAMPLES,
		O_SERVER,
		O_BENCHMARK,
		O_NAME,
		O_JSON,
	};
	static const struct option longopts[] = {
		{"uplink", no_argument, NULL, O_UPLINK},
		{"transport", required_argument, NULL, O_TRANSPORT},
		{"keys", required_argument, NULL, O_KEYS},
		{"value-size", required_argument, NULL, O_VALUE},
		{"procs", required_argument, NULL, O_PROCS},
		{"threads", required_argument, NULL, O_THREADS},
		{"batch", required_argument, NULL, O_BATCH},
		{"many", required_argument, NULL, O_MANY},
		{"idle-poll", no_argument, NULL, O_IDLE_POLL},
		{"seconds", required_argument, NULL, O_SECONDS},
		{"rounds", required_argument, NULL, O_ROUNDS},
		{"bench-requests", required_argument, NULL, O_REQUESTS},
		{"bench-pipeline", required_argument, NULL, O_PIPELINE},
		{"latency-samples", required_argument, NULL, O_SAMPLES},
		{"redis-server", required_argument, NULL, O_SERVER},
		{"redis-benchmark", required_argument, NULL, O_BENCHMARK},
		{"name", required_argument, NULL, O_NAME},
		{"json", no_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	*cfg = (struct up_config){.transport = T_UNIX,
				  .keys = 100000,
				  .value_size = 100,
				  .procs = 2,
				  .threads = 16,
				  .seconds = 6.0,
				  .rounds = 3,
				  .lat_samples = 20000,
				  .redis_server = "redis-server",
				  .redis_benchmark = "redis-benchmark"};
	snprintf(cfg->name, sizeof cfg->name, "bench.uplink.%ld", (long)getpid());
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint64_t v = 0;
		const char *bad = NULL;
		switch (opt) {
		case O_UPLINK:
			break;
		case O_TRANSPORT:
			if (!strcmp(optarg, "unix"))
				cfg->transport = T_UNIX;
			else if (!strcmp(optarg, "tcp"))
				cfg->transport = T_TCP;
			else
				bad = "--transport";
			break;
		case O_KEYS:
			if (bench_parse_u64(optarg, 1, UP_MAX_KEYS, &v))
				bad = "--keys";
			cfg->keys = v;
			break;
		case O_VALUE:
			if (bench_parse_u64(optarg, 0, 1u << 20, &v))
				bad = "--value-size";
			cfg->value_size = (size_t)v;
			break;
		case O_PROCS:
			if (bench_parse_u64(optarg, 1, UP_MAX_PROCS, &v))
				bad = "--procs";
			cfg->procs = (unsigned)v;
			break;
		case O_THREADS:
			if (bench_parse_u64(optarg, 1, UP_MAX_THREADS, &v))
				bad = "--threads";
			cfg->threads = (unsigned)v;
			break;
		case O_BATCH:
			if (bench_parse_u64(optarg, 1, 4096, &v))
				bad = "--batch";
			cfg->batch = (unsigned)v;
			break;
		case O_MANY:
			if (bench_parse_u64(optarg, 0, 4096, &v))
				bad = "--many";
			cfg->many = (unsigned)v;
			break;
		case O_IDLE_POLL:
			cfg->idle_poll = true;
			break;
		case O_SECONDS:
			if (bench_parse_double(optarg, 0.05, 3600, &cfg->seconds))
				bad = "--seconds";
			break;
		case O_ROUNDS:
			if (bench_parse_u64(optarg, 1, UP_MAX_ROUNDS, &v))
				bad = "--rounds";
			cfg->rounds = (unsigned)v;
			break;
		case O_REQUESTS:
			if (bench_parse_u64(optarg, 1000, 1000000000, &v))
				bad = "--bench-requests";
			cfg->bench_requests = v;
			break;
		case O_PIPELINE:
			if (bench_parse_u64(optarg, 1, 4096, &v))
				bad = "--bench-pipeline";
			cfg->bench_pipeline = (unsigned)v;
			break;
		case O_SAMPLES:
			if (bench_parse_u64(optarg, 100, 10000000, &v))
				bad = "--latency-samples";
			cfg->lat_samples = (unsigned)v;
			break;
		case O_SERVER:
			cfg->redis_server = optarg;
			break;
		case O_BENCHMARK:
			cfg->redis_benchmark = optarg;
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
			up_usage(stdout);
			exit(0);
		default:
			up_usage(stderr);
			return -1;
		}
		if (bad)
			return bench_bad_value(bad, optarg);
	}
	if (bench_no_operands(argc, argv) != 0)
		return -1;
	if (cfg->many > cfg->keys) {
		fprintf(stderr,
			"shmcache-bench: uplink: --many %u: a call's keys are distinct, and there "
			"are only %" PRIu64 " (--keys)\n",
			cfg->many, cfg->keys);
		return -1;
	}
	return 0;
}

/* ----------------------------------------------------------------- main */

static double median_of(double *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) /* insertion sort: a few rounds */
		for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* res->all: the sums of the rounds' counts, the medians of their rates,
 * costs and ratios. */
static void rounds_summarize(struct up_result *res)
{
	struct up_round *all = &res->all;
	double v[UP_MAX_ROUNDS];
	unsigned n = res->rounds;

	memset(all, 0, sizeof *all);
	for (unsigned i = 0; i < n; i++) {
		const struct up_round *r = &res->round[i];
		all->seconds += r->seconds;
		all->ops += r->ops;
		all->errors += r->errors;
		all->bad_values += r->bad_values;
		all->origin_calls += r->origin_calls;
		all->uplink_ops += r->uplink_ops;
		all->uplink_batches += r->uplink_batches;
		all->bench_requests += r->bench_requests;
		all->bench_clients = r->bench_clients;
	}
#define MEDIAN_OF(field)                                                                           \
	do {                                                                                       \
		for (unsigned i = 0; i < n; i++)                                                   \
			v[i] = (double)res->round[i].field;                                        \
		all->field = median_of(v, n);                                                      \
	} while (0)
	MEDIAN_OF(ops_per_sec);
	MEDIAN_OF(batch_avg);
	MEDIAN_OF(client_cpu_us);
	MEDIAN_OF(server_cpu_us);
	MEDIAN_OF(bench_rps);
	MEDIAN_OF(bench_client_cpu_us);
	MEDIAN_OF(bench_server_cpu_us);
	MEDIAN_OF(ratio);
#undef MEDIAN_OF
	for (unsigned i = 0; i < n; i++)
		v[i] = res->round[i].bench_pipeline;
	all->bench_pipeline = (unsigned)(median_of(v, n) + 0.5);
}

static int uplink_run(const struct up_config *cfg, struct server *srv, struct up_result *res)
{
	struct up_run run = {.cfg = cfg};
	shmc_cache *watch = NULL;

	if (server_start(srv, cfg) != 0)
		return -1;
	/* Timeouts far above any answer's time: on a busy host a scheduling
	 * stall must not turn into a failed run (the uplink's own timeouts
	 * are not what is measured here). */
	if (srv->transport == T_UNIX)
		snprintf(run.uri, sizeof run.uri, "redis+unix://%s", srv->sock);
	else
		snprintf(run.uri, sizeof run.uri, "redis://127.0.0.1:%u", (unsigned)srv->port);
	snprintf(run.uri + strlen(run.uri), sizeof run.uri - strlen(run.uri),
		 "?command_timeout_ms=%u&connect_timeout_ms=%u", UP_TIMEOUT_MS, UP_TIMEOUT_MS);
	if (cfg->batch)
		snprintf(run.uri + strlen(run.uri), sizeof run.uri - strlen(run.uri), "&batch=%u",
			 cfg->batch);
	if (!cfg->json)
		printf("uplink: redis-server pid %ld on %s; loading %" PRIu64
		       " keys of %u + %zu bytes\n",
		       (long)srv->pid, run.uri, cfg->keys, UP_KEY_BYTES, cfg->value_size);
	if (load_keys(srv, cfg) != 0)
		return -1;
	snprintf(run.segment, sizeof run.segment, "%s", cfg->name);
	struct segment_spec spec = {.segment_bytes = UP_SEGMENT_BYTES,
				    .item_bytes = UP_KEY_BYTES + cfg->value_size,
				    .key_size = UP_KEY_BYTES};
	if (bench_segment_create(run.segment, &spec, &watch) != 0)
		return -1;
	int rc = 0;
	double seconds = cfg->seconds / cfg->rounds;
	uint64_t requests =
		cfg->bench_requests ? cfg->bench_requests : (uint64_t)(seconds * 300000.0) + 1000;
	uint64_t total0 = 0, steal0 = 0, total1 = 0, steal1 = 0;
	bool ticks = cpu_ticks(&total0, &steal0);
	for (unsigned i = 0; i < cfg->rounds && rc == 0; i++) {
		struct up_round *r = &res->round[i];
		if (!cfg->json)
			printf("uplink: round %u: (1) %u procs x %u threads x %u keys per call, "
			       "%.1f s of misses\n",
			       i + 1, cfg->procs, cfg->threads, cfg->many ? cfg->many : 1, seconds);
		rc = measure_throughput(&run, seconds, srv, watch, r);
		if (rc)
			break;
		unsigned depth = (unsigned)(r->batch_avg + 0.5);
		r->bench_pipeline = cfg->bench_pipeline ? cfg->bench_pipeline : depth ? depth : 1;
		r->bench_clients = cfg->procs;
		r->bench_requests = requests;
		if (!cfg->json)
			printf("uplink: round %u: (2) redis-benchmark -t get -P %u -c %u -n "
			       "%" PRIu64 " -r %" PRIu64 "\n",
			       i + 1, r->bench_pipeline, r->bench_clients, r->bench_requests,
			       cfg->keys);
		rc = run_redis_benchmark(srv, cfg, r);
		r->ratio = r->bench_rps > 0 ? r->ops_per_sec / r->bench_rps : 0.0;
		res->rounds = i + 1;
	}
	if (rc == 0)
		rounds_summarize(res);
	/* A virtual machine's host may take its CPUs away: then every figure
	 * above measures the host too. */
	res->steal_pct = ticks && cpu_ticks(&total1, &steal1) && total1 > total0
				 ? 100.0 * (double)(steal1 - steal0) / (double)(total1 - total0)
				 : -1.0;
	if (rc == 0) {
		if (!cfg->json)
			printf("uplink: (3) latency, %u samples of each\n", cfg->lat_samples);
		rc = measure_latency(&run, srv, res);
	}
	shmc_close(watch);
	shmc_unlink(run.segment);
	return rc;
}

/* --idle-poll: while the returned descriptor is open, the kernel keeps
 * idle CPUs out of any sleep state with an exit latency above 0 (PM QoS),
 * that is, they poll. -1 with a message if that cannot be had. */
static int idle_poll_hold(void)
{
	int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
	int32_t zero = 0;
	if (fd < 0 || write(fd, &zero, sizeof zero) != (ssize_t)sizeof zero) {
		fprintf(stderr, "shmcache-bench: uplink: --idle-poll: /dev/cpu_dma_latency: %s\n",
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int uplink_main(int argc, char **argv)
{
	struct up_config cfg;
	if (up_parse(argc, argv, &cfg) != 0)
		return 2;
	int qos_fd = cfg.idle_poll ? idle_poll_hold() : -1;
	if (cfg.idle_poll && qos_fd < 0)
		return 1;
	struct server srv = {0};
	struct up_result res = {0};
	int rc = uplink_run(&cfg, &srv, &res);
	if (qos_fd >= 0)
		close(qos_fd);
	/* A failed run's figures are printed as JSON only, with ok false. */
	if (cfg.json || rc == 0)
		print_result(&cfg, &srv, &res, rc == 0);
	server_stop(&srv);
	if (bench_interrupted)
		fprintf(stderr, "shmcache-bench: uplink: interrupted\n");
	return rc == 0 && !bench_interrupted ? 0 : 1;
}
