/*
 * test_uplink_redis.c - the standalone Redis uplink end to end, through the
 * public API only: shmc_open with an uplink URI, shmc_fetch without a
 * loader, shmc_set / shmc_del_flags with SHMC_WRITE_THROUGH and
 * SHMC_WRITE_BEHIND, shmc_stats and shmc_uplink_nodes.
 *
 * Two kinds of server:
 *
 * - A real redis-server of this test's own: the CTest fixture redis_uplink
 *   (tests/uplink/servers.sh start-standalone; SHMC_REDIS_ENV names its env
 *   file), used by no other test. The outage tests SIGKILL it and start it
 *   again themselves (servers.sh restart-node); if an assertion fails while
 *   it is down, the teardown starts it again, so every test begins and ends
 *   with it running.
 *
 * - A fake server (fake_redis.h) on 127.0.0.1 that answers PING (the
 *   uplink's health check) but replies to GET and PTTL with garbage, with
 *   a reply of the wrong type, or not at all.
 *
 * What Redis holds and how often it was asked is checked with the test's
 * own hiredis connections (GET, PTTL, EXISTS, INFO commandstats), never
 * through the code under test. Figures a user cares about (how fast a
 * fetch fails, L1 hit rates during an outage, how soon a breaker closes)
 * are printed; only the bounds the documentation promises are asserted.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include <shmcache.h>

#include "cluster_util.h"
#include "fake_redis.h"
#include "testutil.h"

#define SEGMENT_BYTES (8u << 20)
#define CHILD_WATCHDOG_S 60u
#define HERD 32u

/* ======================================================== the env file */

static struct {
	char host[64];
	uint16_t port;
	char servers_sh[1024];
	char dir[1024];
} env;

static int env_load(void **state)
{
	const char *path = getenv("SHMC_REDIS_ENV");
	char line[2048], port[16] = "";

	(void)state;
	if (!path || !*path) {
		print_error("SHMC_REDIS_ENV is not set: run this test through ctest (fixture "
			    "redis_uplink), or start a server with tests/uplink/servers.sh "
			    "start-standalone DIR and set it to DIR/env\n");
		return -1;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		print_error("cannot open %s: %s (did the fixture's start test fail?)\n", path,
			    strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		if (tc_env_value(line, "SHMC_REDIS_HOST", env.host, sizeof env.host) ||
		    tc_env_value(line, "SHMC_REDIS_PORT", port, sizeof port) ||
		    tc_env_value(line, "SHMC_SERVERS_SH", env.servers_sh, sizeof env.servers_sh))
			continue;
		tc_env_value(line, "SHMC_SERVERS_DIR", env.dir, sizeof env.dir);
	}
	fclose(f);
	env.port = (uint16_t)atoi(port);
	if (!env.host[0] || !env.port || !env.servers_sh[0] || !env.dir[0]) {
		print_error("%s lacks SHMC_REDIS_HOST, SHMC_REDIS_PORT, SHMC_SERVERS_SH or "
			    "SHMC_SERVERS_DIR\n",
			    path);
		return -1;
	}
	return 0;
}

/* ============================================ the test's own connections */

static redisContext *raw_connect(void)
{
	struct timeval tv = {.tv_sec = 1};
	redisContext *rc = redisConnectWithTimeout(env.host, env.port, tv);

	if (!rc || rc->err) {
		if (rc)
			redisFree(rc);
		return NULL;
	}
	tv.tv_sec = 5;
	redisSetTimeout(rc, tv);
	return rc;
}

/* One command; NULL if the server is not there. */
static redisReply *raw_vcmd(const char *fmt, va_list ap)
{
	redisContext *rc = raw_connect();

	if (!rc)
		return NULL;
	redisReply *r = redisvCommand(rc, fmt, ap);
	redisFree(rc);
	return r;
}

static redisReply *raw_cmd(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = raw_vcmd(fmt, ap);
	va_end(ap);
	return r;
}

static void raw_ok(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = raw_vcmd(fmt, ap);
	va_end(ap);
	if (!r || r->type == REDIS_REPLY_ERROR)
		fail_msg("'%s' failed: %s", fmt, r ? r->str : "no server");
	freeReplyObject(r);
}

static long long raw_int(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = raw_vcmd(fmt, ap);
	va_end(ap);
	if (!r || r->type != REDIS_REPLY_INTEGER)
		fail_msg("'%s': no integer reply (%s)", fmt,
			 !r				? "no server"
			 : r->type == REDIS_REPLY_ERROR ? r->str
							: "other type");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

/* The value of key in Redis into buf (NUL-terminated); false if absent. */
static bool raw_get(const char *key, char *buf, size_t cap)
{
	redisReply *r = raw_cmd("GET %s", key);

	if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
		fail_msg("GET %s failed", key);
	bool found = r->type == REDIS_REPLY_STRING;
	if (found) {
		assert_true(r->len < cap);
		memcpy(buf, r->str, r->len);
		buf[r->len] = '\0';
	}
	freeReplyObject(r);
	return found;
}

static bool redis_up(void)
{
	redisReply *r = raw_cmd("PING");
	bool up = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");

	if (r)
		freeReplyObject(r);
	return up;
}

/* calls= of cmdstat_<cmd> in INFO commandstats (0 if not called yet). */
static uint64_t command_calls(const char *cmd)
{
	redisReply *r = raw_cmd("INFO commandstats");
	char needle[64];

	if (!r || r->type != REDIS_REPLY_STRING)
		fail_msg("INFO commandstats failed");
	snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
	const char *p = strstr(r->str, needle);
	uint64_t calls = p ? strtoull(p + strlen(needle), NULL, 10) : 0;
	freeReplyObject(r);
	return calls;
}

/* Sleep until tu_now_ms() reaches at_ms (at once if it has). */
static void sleep_until_ms(uint64_t at_ms)
{
	uint64_t now = tu_now_ms();

	if (now < at_ms)
		tu_sleep_ms((unsigned)(at_ms - now));
}

/* ================================================ the server's process */

/* The server's pid, from its pid file; checked to be a redis-server. */
static pid_t server_pid(void)
{
	char path[1200], comm[64] = "";
	long pid = 0;

	snprintf(path, sizeof path, "%s/node-%u/server.pid", env.dir, (unsigned)env.port);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	assert_true(pid > 0);
	snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof comm, f))
			comm[0] = '\0';
		fclose(f);
	}
	if (strncmp(comm, "redis-server", 12) != 0)
		fail_msg("pid %ld of the pid file is not a redis-server ('%s')", pid, comm);
	return (pid_t)pid;
}

/* Gone: not running (a zombie has no working directory any more). */
static bool process_gone(pid_t pid)
{
	char path[64], target[256];

	snprintf(path, sizeof path, "/proc/%d/cwd", (int)pid);
	return readlink(path, target, sizeof target) < 0;
}

static void server_kill(void)
{
	pid_t pid = server_pid();
	uint64_t until = tu_now_ms() + 5000;

	assert_int_equal(kill(pid, SIGKILL), 0);
	while (!process_gone(pid) || redis_up()) {
		if (tu_now_ms() > until)
			fail_msg("redis-server %d still there 5 s after SIGKILL", (int)pid);
		tu_sleep_ms(5);
	}
}

/* Start the server again (on its port, in its directory); false if it did
 * not come up. */
static bool server_restart(void)
{
	char cmd[2600];

	snprintf(cmd, sizeof cmd, "bash '%s' restart-node '%s' %u >&2", env.servers_sh, env.dir,
		 (unsigned)env.port);
	if (system(cmd) != 0)
		return false;
	for (uint64_t until = tu_now_ms() + 5000; !redis_up(); tu_sleep_ms(10))
		if (tu_now_ms() > until)
			return false;
	return true;
}

/* Start the server again without waiting: the pid of servers.sh. */
static pid_t server_restart_start(void)
{
	char port[16];

	snprintf(port, sizeof port, "%u", (unsigned)env.port);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execlp("bash", "bash", env.servers_sh, "restart-node", env.dir, port, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static bool server_restart_done(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 && redis_up();
}

/* ======================================================== the fake server */

/* The shared fake server (fake_redis.h), answering by command name. */
enum fake_mode {
	FAKE_NORMAL,	  /* GET: "hello", PTTL: -1 */
	FAKE_GARBAGE,	  /* GET: bytes that are not RESP */
	FAKE_GET_INTEGER, /* GET: an integer */
	FAKE_GET_ARRAY,	  /* GET: an array */
	FAKE_STALL,	  /* GET, PTTL, SET, DEL: no answer at all */
};

struct mode_fake {
	struct fake *srv;
	_Atomic int mode;
	_Atomic unsigned pings, gets, sets;
};

static const char *mode_answer(void *arg, int argc, const char **argv, const size_t *argvlen)
{
	struct mode_fake *mf = arg;
	int mode = atomic_load(&mf->mode);
	bool stall = mode == FAKE_STALL;

	(void)argc;
	if (fake_arg_is(argv[0], argvlen[0], "PING")) {
		atomic_fetch_add(&mf->pings, 1);
		return "+PONG\r\n";
	}
	if (fake_arg_is(argv[0], argvlen[0], "GET")) {
		atomic_fetch_add(&mf->gets, 1);
		switch (mode) {
		case FAKE_NORMAL:
			return "$5\r\nhello\r\n";
		case FAKE_GARBAGE:
			return "@@ this is not RESP @@\r\n";
		case FAKE_GET_INTEGER:
			return ":42\r\n";
		case FAKE_GET_ARRAY:
			return "*2\r\n$1\r\na\r\n$1\r\nb\r\n";
		default:
			return STALL;
		}
	}
	if (fake_arg_is(argv[0], argvlen[0], "PTTL"))
		return stall ? STALL : ":-1\r\n";
	if (fake_arg_is(argv[0], argvlen[0], "SET")) {
		atomic_fetch_add(&mf->sets, 1);
		return stall ? STALL : "+OK\r\n";
	}
	if (fake_arg_is(argv[0], argvlen[0], "DEL"))
		return stall ? STALL : ":1\r\n";
	return "+OK\r\n";
}

static struct mode_fake *mode_fake_start(enum fake_mode mode)
{
	struct mode_fake *mf = calloc(1, sizeof *mf);

	assert_non_null(mf);
	atomic_store(&mf->mode, mode);
	mf->srv = fake_start();
	fake_set_answer(mf->srv, mode_answer, mf);
	return mf;
}

static void mode_fake_stop(struct mode_fake *mf)
{
	if (!mf)
		return;
	fake_stop(mf->srv);
	free(mf);
}

/* ============================================================ fixtures */

struct fx {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	struct mode_fake *fake;
	int refused_fd; /* a bound socket that does not listen: connections to
			 * its port are refused */
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);

	if (!fx)
		return -1;
	tu_segname(fx->name, sizeof fx->name, (const char *)*state);
	fx->refused_fd = -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int rc = 0;

	shmc_close(fx->c);
	(void)shmc_unlink(fx->name);
	mode_fake_stop(fx->fake);
	if (fx->refused_fd >= 0)
		close(fx->refused_fd);
	/* A test that failed while the server was down leaves it to us. */
	if (!redis_up() && !server_restart()) {
		print_error("the test's redis-server could not be started again\n");
		rc = -1;
	}
	free(fx);
	return rc;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

/* A port on 127.0.0.1 where connections are refused. */
static uint16_t refused_port(struct fx *fx)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx->refused_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fx->refused_fd >= 0);
	assert_int_equal(bind(fx->refused_fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fx->refused_fd, (struct sockaddr *)&a, &alen), 0);
	return ntohs(a.sin_port);
}

/* The URI of the real server (options: a query string, may be ""). */
static const char *redis_uri(char *buf, size_t cap, const char *options)
{
	snprintf(buf, cap, "redis://127.0.0.1:%u%s%s", (unsigned)env.port, *options ? "?" : "",
		 options);
	return buf;
}

static const char *fake_uri(char *buf, size_t cap, const struct mode_fake *f, const char *options)
{
	snprintf(buf, cap, "redis://127.0.0.1:%u%s%s", (unsigned)f->srv->port, *options ? "?" : "",
		 options);
	return buf;
}

struct seg_opts {
	const char *uri;	  /* NULL: no uplink */
	uint32_t stale_ms;	  /* stale window */
	unsigned jitter_pct;	  /* TTL jitter */
	uint32_t negative_ttl_ms; /* 0: the default */
};

/* A fresh segment fx->name created with o. */
static shmc_cache *open_fresh(struct fx *fx, const struct seg_opts *so)
{
	shmc_opts *o;
	shmc_cache *c = NULL;

	(void)shmc_unlink(fx->name);
	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_size(o, SEGMENT_BYTES), 0);
	if (so->uri)
		assert_int_equal(shmc_opts_set_uplink(o, so->uri), 0);
	assert_int_equal(shmc_opts_set_stale_window(o, so->stale_ms), 0);
	assert_int_equal(shmc_opts_set_ttl_jitter(o, so->jitter_pct), 0);
	if (so->negative_ttl_ms)
		assert_int_equal(shmc_opts_set_negative_ttl(o, so->negative_ttl_ms), 0);
	int rc = shmc_open(fx->name, o, SHMC_CREATE | SHMC_EXCL, &c);
	if (rc)
		fail_msg("shmc_open: %s (%s)", shmc_errname(rc), shmc_errmsg(NULL));
	shmc_opts_destroy(o);
	return c;
}

/* Another handle on the existing segment fx->name (uri may be NULL). */
static shmc_cache *open_more(const struct fx *fx, const char *uri)
{
	shmc_opts *o;
	shmc_cache *c = NULL;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_sweeper(o, 0), 0);
	if (uri)
		assert_int_equal(shmc_opts_set_uplink(o, uri), 0);
	int rc = shmc_open(fx->name, o, 0, &c);
	if (rc)
		fail_msg("shmc_open: %s (%s)", shmc_errname(rc), shmc_errmsg(NULL));
	shmc_opts_destroy(o);
	return c;
}

/* "<segment name>:<suffix>": keys no other test (or run) uses. */
static const char *key_of(const struct fx *fx, char *buf, size_t cap, const char *suffix)
{
	int n = snprintf(buf, cap, "%s:%s", fx->name, suffix);

	if (n < 0 || (size_t)n >= cap)
		fail_msg("key %s:%s is too long", fx->name, suffix);
	return buf;
}

static int fetch(shmc_cache *c, const char *key, char *buf, size_t cap, size_t *vlen)
{
	int rc = shmc_fetch(c, key, strlen(key), buf, cap - 1, vlen, NULL, NULL);

	buf[rc == 0 ? *vlen : 0] = '\0';
	return rc;
}

static void expect_fetch(shmc_cache *c, const char *key, const char *value)
{
	char buf[256];
	size_t vlen;
	int rc = fetch(c, key, buf, sizeof buf, &vlen);

	if (rc)
		fail_msg("fetch %s: %s (%s)", key, shmc_errname(rc), shmc_errmsg(c));
	if (vlen != strlen(value) || memcmp(buf, value, vlen) != 0)
		fail_msg("fetch %s: '%s', expected '%s'", key, buf, value);
}

static int get(shmc_cache *c, const char *key, char *buf, size_t cap)
{
	size_t vlen;
	int rc = shmc_get(c, key, strlen(key), buf, cap - 1, &vlen);

	buf[rc == 0 ? vlen : 0] = '\0';
	return rc;
}

static struct shmc_stats stats_of(shmc_cache *c)
{
	struct shmc_stats st;

	assert_int_equal(shmc_stats(c, &st), 0);
	return st;
}

static void expect_errmsg_has(shmc_cache *c, const char *fragment)
{
	if (!strstr(shmc_errmsg(c), fragment))
		fail_msg("shmc_errmsg is '%s', expected it to say '%s'", shmc_errmsg(c), fragment);
}

/* The node table's entry of process pid for addr; false if none. */
static bool node_of(shmc_cache *c, pid_t pid, const char *addr, struct shmc_uplink_node *out)
{
	struct shmc_uplink_node nodes[64];
	size_t n;

	assert_int_equal(shmc_uplink_nodes(c, nodes, 64, &n), 0);
	for (size_t i = 0; i < n && i < 64; i++)
		if (nodes[i].pid == (uint64_t)pid && !strcmp(nodes[i].addr, addr)) {
			*out = nodes[i];
			return true;
		}
	return false;
}

/* Wait (up to timeout_ms) until this process's entry for addr shows state;
 * returns the milliseconds it took. */
static uint64_t wait_node_state(shmc_cache *c, const char *addr, uint32_t state,
				unsigned timeout_ms)
{
	struct shmc_uplink_node node = {.state = UINT32_MAX};
	uint64_t start = tu_now_ms();

	for (;;) {
		if (node_of(c, getpid(), addr, &node) && node.state == state)
			return tu_now_ms() - start;
		if (tu_now_ms() - start > timeout_ms)
			fail_msg("node %s: state %u after %u ms, expected %u", addr, node.state,
				 timeout_ms, state);
		tu_sleep_ms(2);
	}
}

static const char *server_addr(char *buf, size_t cap)
{
	snprintf(buf, cap, "127.0.0.1:%u", (unsigned)env.port);
	return buf;
}

/* Fetches of key (an L1 hit) per second over ms milliseconds; every one
 * must return value. */
static double hit_rate(shmc_cache *c, const char *key, const char *value, unsigned ms)
{
	char buf[256];
	size_t vlen, want = strlen(value);
	uint64_t start = tu_now_ns(), end = start + (uint64_t)ms * 1000000u, n = 0, now;

	do {
		for (int i = 0; i < 256; i++, n++) {
			int rc =
				shmc_fetch(c, key, strlen(key), buf, sizeof buf, &vlen, NULL, NULL);
			if (rc || vlen != want || memcmp(buf, value, want) != 0)
				fail_msg("L1 hit %llu of %s: %s (%s)", (unsigned long long)n, key,
					 shmc_errname(rc), shmc_errmsg(c));
		}
		now = tu_now_ns();
	} while (now < end);
	return (double)n * 1e9 / (double)(now - start);
}

/* =================================================== read-through */

static void test_uplink_redis_fetch_reads_value_set_in_redis(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], kbin[256], buf[256];
	size_t vlen;
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	key_of(fx, k, sizeof k, "plain");
	key_of(fx, kbin, sizeof kbin, "binary");
	raw_ok("SET %s %s", k, "hello from redis");
	raw_ok("SET %s %b", kbin, "a\0b\xff", (size_t)4);

	uint64_t gets = command_calls("get");
	expect_fetch(fx->c, k, "hello from redis");
	assert_int_equal(command_calls("get"), gets + 1);
	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, 1);
	assert_int_equal(st.fills, 1);

	/* installed: the next fetch and a plain get are L1 hits */
	expect_fetch(fx->c, k, "hello from redis");
	assert_int_equal(get(fx->c, k, buf, sizeof buf), 0);
	assert_string_equal(buf, "hello from redis");
	assert_int_equal(command_calls("get"), gets + 1);
	assert_int_equal(stats_of(fx->c).origin_calls, 1);

	/* binary values come back byte for byte */
	assert_int_equal(shmc_fetch(fx->c, kbin, strlen(kbin), buf, sizeof buf, &vlen, NULL, NULL),
			 0);
	assert_int_equal(vlen, 4);
	assert_memory_equal(buf, "a\0b\xff", 4);
}

static void test_uplink_redis_local_ttl_capped_by_remote_pttl(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], buf[256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	key_of(fx, k, sizeof k, "px1500");

	uint64_t set_ms = tu_now_ms();
	raw_ok("SET %s v PX 1500", k);
	expect_fetch(fx->c, k, "v");
	sleep_until_ms(set_ms + 700);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), 0);
	/* the segment's default TTL is "never": only the remote PTTL bounds it */
	sleep_until_ms(set_ms + 1500 + 150);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), SHMC_ENOTFOUND);
}

static void test_uplink_redis_ttl_jitter_never_outlives_remote_pttl(void **state)
{
	struct fx *fx = *state;
	enum { NKEYS = 16 };
	char uri[256], k[NKEYS][256], buf[256], suffix[32];
	fx->c = open_fresh(
		fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, ""), .jitter_pct = 50});

	uint64_t set_ms = tu_now_ms();
	for (int i = 0; i < NKEYS; i++) {
		snprintf(suffix, sizeof suffix, "jitter%d", i);
		raw_ok("SET %s v PX 1000", key_of(fx, k[i], sizeof k[i], suffix));
	}
	for (int i = 0; i < NKEYS; i++)
		expect_fetch(fx->c, k[i], "v");
	/* jitter (+-50%) may shorten a remote-capped TTL, to a third of it at
	 * worst, but never lengthen it */
	sleep_until_ms(set_ms + 250);
	for (int i = 0; i < NKEYS; i++)
		assert_int_equal(get(fx->c, k[i], buf, sizeof buf), 0);
	sleep_until_ms(set_ms + 1000 + 150);
	int alive = 0;
	for (int i = 0; i < NKEYS; i++)
		alive += get(fx->c, k[i], buf, sizeof buf) == 0;
	if (alive)
		fail_msg("%d of %d keys still in L1 150 ms after their remote TTL ended", alive,
			 NKEYS);
}

static void test_uplink_redis_ttl_cap_option_bounds_local_ttl(void **state)
{
	struct fx *fx = *state;
	char uri[256], forever[256], longer[256], buf[256];
	fx->c = open_fresh(fx,
			   &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "ttl_cap_ms=600")});
	key_of(fx, forever, sizeof forever, "no-ttl");
	key_of(fx, longer, sizeof longer, "px60000");
	raw_ok("SET %s v", forever);
	raw_ok("SET %s v PX 60000", longer);

	uint64_t start = tu_now_ms();
	expect_fetch(fx->c, forever, "v");
	expect_fetch(fx->c, longer, "v");
	sleep_until_ms(start + 300);
	assert_int_equal(get(fx->c, forever, buf, sizeof buf), 0);
	assert_int_equal(get(fx->c, longer, buf, sizeof buf), 0);
	sleep_until_ms(start + 600 + 150);
	assert_int_equal(get(fx->c, forever, buf, sizeof buf), SHMC_ENOTFOUND);
	assert_int_equal(get(fx->c, longer, buf, sizeof buf), SHMC_ENOTFOUND);
	assert_int_equal(raw_int("EXISTS %s", forever), 1);
}

static void test_uplink_redis_absent_key_cached_as_negative_entry(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], buf[256];
	size_t vlen;
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, ""),
						  .negative_ttl_ms = 500});
	key_of(fx, k, sizeof k, "absent");

	uint64_t gets = command_calls("get"), start = tu_now_ms();
	assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
	assert_int_equal(command_calls("get"), gets + 1);
	assert_int_equal(stats_of(fx->c).origin_calls, 1);

	/* cached: no remote call, even once the key exists remotely */
	raw_ok("SET %s v", k);
	assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), SHMC_ENOTFOUND);
	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.origin_calls, 1);
	assert_int_equal(st.negative_hits, 1);
	assert_int_equal(command_calls("get"), gets + 1);

	/* until the negative TTL ends */
	sleep_until_ms(start + 500 + 100);
	expect_fetch(fx->c, k, "v");
	assert_int_equal(command_calls("get"), gets + 2);
}

/* ============================================ threads of one process */

/* Threads of one process missing distinct keys at once: each call is run
 * by whoever holds the uplink's queue at that moment (the caller itself,
 * another caller, or the uplink thread), and each must still get its own
 * key's value, with one remote GET per key. */
enum { CROWD_THREADS = 16, CROWD_KEYS = 200, CROWD_MANY_MAX = 16 };

struct crowd {
	struct fx *fx;
	unsigned id;
	unsigned many; /* keys per shmc_fetch_many call; 0: shmc_fetch */
	unsigned wrong;
	char first_wrong[160];
	pthread_t thread;
};

static void crowd_key(const struct fx *fx, char *buf, size_t cap, unsigned thread, unsigned i)
{
	char suffix[32];

	snprintf(suffix, sizeof suffix, "crowd-%u-%u", thread, i);
	key_of(fx, buf, cap, suffix);
}

static void crowd_wrong(struct crowd *w, const char *k, int rc, const char *buf, size_t vlen)
{
	if (!w->wrong++)
		snprintf(w->first_wrong, sizeof w->first_wrong, "%.80s: %s, '%.*s'", k,
			 shmc_errname(rc), rc ? 0 : (int)vlen, buf);
}

/* The crowd's keys w->many at a time, with shmc_fetch_many. */
static void crowd_many(struct crowd *w)
{
	char keys[CROWD_MANY_MAX][256], bufs[CROWD_MANY_MAX][256];
	struct shmc_fetch_item items[CROWD_MANY_MAX];

	for (unsigned i = 0; i < CROWD_KEYS; i += w->many) {
		unsigned n = 0;
		for (; n < w->many && i + n < CROWD_KEYS; n++) {
			crowd_key(w->fx, keys[n], sizeof keys[n], w->id, i + n);
			items[n] = (struct shmc_fetch_item){.key = keys[n],
							    .klen = strlen(keys[n]),
							    .buf = bufs[n],
							    .cap = sizeof bufs[n]};
		}
		shmc_fetch_many(w->fx->c, items, n, NULL, NULL);
		for (unsigned j = 0; j < n; j++)
			if (items[j].rc || items[j].vlen != items[j].klen ||
			    memcmp(bufs[j], keys[j], items[j].vlen) != 0)
				crowd_wrong(w, keys[j], items[j].rc, bufs[j], items[j].vlen);
	}
}

static void *crowd_main(void *arg)
{
	struct crowd *w = arg;
	char k[256], buf[256];
	size_t vlen;

	if (w->many) {
		crowd_many(w);
		return NULL;
	}
	for (unsigned i = 0; i < CROWD_KEYS; i++) {
		crowd_key(w->fx, k, sizeof k, w->id, i);
		int rc = shmc_fetch(w->fx->c, k, strlen(k), buf, sizeof buf, &vlen, NULL, NULL);
		/* the value stored under each key is the key itself */
		if (rc || vlen != strlen(k) || memcmp(buf, k, vlen) != 0)
			crowd_wrong(w, k, rc, buf, vlen);
	}
	return NULL;
}

/* CROWD_THREADS threads fetch their CROWD_KEYS keys, many at a time (0:
 * one by one), all at once. */
static void crowd_run(struct fx *fx, unsigned many)
{
	struct crowd crowd[CROWD_THREADS];
	char uri[256], k[256];

	/* What is checked is who gets which answer, not how fast: a timeout
	 * far above a round trip, so that a slow run (valgrind runs one
	 * thread at a time) is not a failed one. */
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri,
								   "command_timeout_ms=5000")});
	for (unsigned t = 0; t < CROWD_THREADS; t++)
		for (unsigned i = 0; i < CROWD_KEYS; i++) {
			crowd_key(fx, k, sizeof k, t, i);
			raw_ok("SET %s %s", k, k);
		}
	uint64_t gets = command_calls("get");
	for (unsigned t = 0; t < CROWD_THREADS; t++) {
		crowd[t] = (struct crowd){.fx = fx, .id = t, .many = many};
		assert_int_equal(pthread_create(&crowd[t].thread, NULL, crowd_main, &crowd[t]), 0);
	}
	unsigned wrong = 0;
	for (unsigned t = 0; t < CROWD_THREADS; t++) {
		pthread_join(crowd[t].thread, NULL);
		if (crowd[t].wrong)
			print_error("thread %u: %u wrong, first: %s\n", t, crowd[t].wrong,
				    crowd[t].first_wrong);
		wrong += crowd[t].wrong;
	}
	struct shmc_stats st = stats_of(fx->c);
	print_message("%u threads x %u misses, %u per call: %llu remote batches\n", CROWD_THREADS,
		      CROWD_KEYS, many ? many : 1, (unsigned long long)st.uplink_batches);
	assert_int_equal(wrong, 0);
	assert_int_equal(command_calls("get") - gets, CROWD_THREADS * CROWD_KEYS);
}

static void test_uplink_redis_threads_of_one_process_each_get_their_own_value(void **state)
{
	crowd_run(*state, 0);
}

/* The same with shmc_fetch_many: a caller's requests share batches with
 * other callers' and wake one another's (uplink.c); none may wait for an
 * answer that only its own later request would pass on. */
static void test_uplink_redis_threads_fetch_many_at_once_each_get_their_own_values(void **state)
{
	crowd_run(*state, 8);
}

/* ======================================================= keys in Redis */

enum { MANY_KEYS = 10 };

/* Keys "<name>:many<i>", each holding its own name in Redis. */
static void many_keys(const struct fx *fx, char keys[][256], unsigned n)
{
	char suffix[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(suffix, sizeof suffix, "many%u", i);
		key_of(fx, keys[i], 256, suffix);
		raw_ok("SET %s %s", keys[i], keys[i]);
	}
}

static void expect_item(const struct shmc_fetch_item *it, int rc, const char *value)
{
	if (it->rc != rc)
		fail_msg("item %.*s: %s, expected %s", (int)it->klen, (const char *)it->key,
			 shmc_errname(it->rc), shmc_errname(rc));
	if (value && (it->vlen != strlen(value) || memcmp(it->buf, value, it->vlen) != 0))
		fail_msg("item %.*s: '%.*s', expected '%s'", (int)it->klen, (const char *)it->key,
			 (int)it->vlen, (const char *)it->buf, value);
}

/* ========================================================== the herd */

/* HERD processes ask for the same keys at once (each key's value is its
 * name), each in its own order: one key with shmc_fetch, or MANY_KEYS
 * with one shmc_fetch_many. The fill leases make it one remote GET per
 * key; nobody waits for itself or for another forever. */
struct herd {
	_Atomic unsigned ready;
	_Atomic unsigned right;
	char name[TU_NAME_MAX];
	char uri[256];
	unsigned nkeys; /* 1: shmc_fetch; else shmc_fetch_many */
	char keys[MANY_KEYS][256];
};

static int herd_child(unsigned index, void *arg)
{
	struct herd *h = arg;
	shmc_opts *o;
	shmc_cache *c;
	char bufs[MANY_KEYS][256];
	struct shmc_fetch_item items[MANY_KEYS];

	if (shmc_opts_create(&o) || shmc_opts_set_sweeper(o, 0) ||
	    shmc_opts_set_uplink(o, h->uri) || shmc_open(h->name, o, 0, &c)) {
		tu_child_log("open: %s", shmc_errmsg(NULL));
		return 1;
	}
	shmc_opts_destroy(o);
	for (unsigned i = 0; i < h->nkeys; i++) {
		/* 3 is prime to MANY_KEYS: every order a rotation of another */
		const char *k = h->keys[(i * 3 + index) % h->nkeys];
		items[i] = (struct shmc_fetch_item){
			.key = k, .klen = strlen(k), .buf = bufs[i], .cap = sizeof bufs[i]};
	}
	tu_barrier_wait(&h->ready, HERD);
	if (h->nkeys == 1)
		items[0].rc = shmc_fetch(c, items[0].key, items[0].klen, bufs[0], sizeof bufs[0],
					 &items[0].vlen, NULL, NULL);
	else
		shmc_fetch_many(c, items, h->nkeys, NULL, NULL);
	unsigned wrong = 0;
	for (unsigned i = 0; i < h->nkeys; i++)
		if (items[i].rc || items[i].vlen != items[i].klen ||
		    memcmp(items[i].buf, items[i].key, items[i].klen) != 0) {
			tu_child_log("%s: %s (%s)", (const char *)items[i].key,
				     shmc_errname(items[i].rc), shmc_errmsg(c));
			wrong++;
		}
	if (!wrong)
		atomic_fetch_add(&h->right, 1);
	shmc_close(c);
	return wrong ? 1 : 0;
}

static void herd_run(struct fx *fx, unsigned nkeys)
{
	struct herd *h = tu_shared_alloc(sizeof *h);
	pid_t pids[HERD];

	assert_non_null(h);
	fx->c = open_fresh(fx, &(struct seg_opts){0});
	snprintf(h->name, sizeof h->name, "%s", fx->name);
	redis_uri(h->uri, sizeof h->uri, "");
	h->nkeys = nkeys;
	many_keys(fx, h->keys, nkeys);

	uint64_t gets = command_calls("get");
	assert_int_equal(tu_fork_start(HERD, herd_child, h, CHILD_WATCHDOG_S, pids), HERD);
	assert_int_equal(tu_fork_wait(HERD, pids), 0);
	uint64_t remote_gets = command_calls("get") - gets;
	struct shmc_stats st = stats_of(fx->c);
	print_message("herd of %u processes x %u key(s): %llu remote GET, %llu origin calls, "
		      "%llu coalesced waits\n",
		      HERD, nkeys, (unsigned long long)remote_gets,
		      (unsigned long long)st.origin_calls, (unsigned long long)st.coalesced_waits);
	assert_int_equal(atomic_load(&h->right), HERD);
	assert_int_equal(remote_gets, nkeys);
	assert_int_equal(st.origin_calls, nkeys);
	tu_shared_free(h, sizeof *h);
}

static void test_uplink_redis_herd_of_32_processes_makes_one_get(void **state)
{
	herd_run(*state, 1);
}

static void test_uplink_redis_fetch_many_herd_of_32_processes_one_get_per_key(void **state)
{
	herd_run(*state, MANY_KEYS);
}

/* ========================================================= fetch_many */

static void test_uplink_redis_fetch_many_sends_the_misses_in_one_batch(void **state)
{
	struct fx *fx = *state;
	char uri[256], keys[MANY_KEYS][256], absent[256], bufs[MANY_KEYS + 4][256], small[4];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	many_keys(fx, keys, MANY_KEYS);
	key_of(fx, absent, sizeof absent, "many-absent");
	expect_fetch(fx->c, keys[3], keys[3]); /* an L1 hit below */

	struct shmc_fetch_item items[MANY_KEYS + 4];
	for (unsigned i = 0; i < MANY_KEYS; i++)
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = strlen(keys[i]), .buf = bufs[i], .cap = 256};
	/* the same key twice, an absent key, an empty key, a short buffer */
	items[MANY_KEYS] = (struct shmc_fetch_item){
		.key = keys[5], .klen = strlen(keys[5]), .buf = bufs[MANY_KEYS], .cap = 256};
	items[MANY_KEYS + 1] = (struct shmc_fetch_item){
		.key = absent, .klen = strlen(absent), .buf = bufs[MANY_KEYS + 1], .cap = 256};
	items[MANY_KEYS + 2] = (struct shmc_fetch_item){
		.key = "", .klen = 0, .buf = bufs[MANY_KEYS + 2], .cap = 256};
	items[MANY_KEYS + 3] = (struct shmc_fetch_item){
		.key = keys[7], .klen = strlen(keys[7]), .buf = small, .cap = sizeof small};

	struct shmc_stats st0 = stats_of(fx->c);
	uint64_t gets = command_calls("get");
	int ok = shmc_fetch_many(fx->c, items, MANY_KEYS + 4, NULL, NULL);
	struct shmc_stats st1 = stats_of(fx->c);

	for (unsigned i = 0; i < MANY_KEYS; i++)
		expect_item(&items[i], 0, keys[i]);
	expect_item(&items[MANY_KEYS], 0, keys[5]);
	expect_item(&items[MANY_KEYS + 1], SHMC_ENOTFOUND, NULL);
	expect_item(&items[MANY_KEYS + 2], SHMC_EINVAL, NULL);
	expect_item(&items[MANY_KEYS + 3], SHMC_ERANGE, NULL);
	assert_int_equal(items[MANY_KEYS + 3].vlen, strlen(keys[7]));
	assert_int_equal(ok, MANY_KEYS + 1);
	/* the 9 missing keys and the absent one: one GET each, one batch */
	print_message("%u items: %llu remote GET in %llu batch(es)\n", MANY_KEYS + 4,
		      (unsigned long long)(command_calls("get") - gets),
		      (unsigned long long)(st1.uplink_batches - st0.uplink_batches));
	assert_int_equal(command_calls("get") - gets, MANY_KEYS);
	assert_int_equal(st1.uplink_batches - st0.uplink_batches, 1);
	assert_int_equal(st1.origin_calls - st0.origin_calls, MANY_KEYS);

	/* installed, the absent one as absent: no remote call the second time */
	ok = shmc_fetch_many(fx->c, items, MANY_KEYS + 4, NULL, NULL);
	assert_int_equal(ok, MANY_KEYS + 1);
	for (unsigned i = 0; i < MANY_KEYS; i++)
		expect_item(&items[i], 0, keys[i]);
	expect_item(&items[MANY_KEYS + 1], SHMC_ENOTFOUND, NULL);
	assert_int_equal(command_calls("get") - gets, MANY_KEYS);

	assert_int_equal(shmc_fetch_many(NULL, items, 1, NULL, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_fetch_many(fx->c, NULL, 1, NULL, NULL), SHMC_EINVAL);
	assert_int_equal(shmc_fetch_many(fx->c, NULL, 0, NULL, NULL), 0);
}

/* A call longer than the uplink's batch holds one batch of leases at a
 * time: 10 keys with batch=4 go out in 3 round trips. */
static void test_uplink_redis_fetch_many_longer_than_a_batch_goes_a_batch_at_a_time(void **state)
{
	struct fx *fx = *state;
	char uri[256], keys[MANY_KEYS][256], bufs[MANY_KEYS][256];
	struct shmc_fetch_item items[MANY_KEYS];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "batch=4")});
	many_keys(fx, keys, MANY_KEYS);
	for (unsigned i = 0; i < MANY_KEYS; i++)
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = strlen(keys[i]), .buf = bufs[i], .cap = 256};
	struct shmc_stats st0 = stats_of(fx->c);
	uint64_t gets = command_calls("get");
	assert_int_equal(shmc_fetch_many(fx->c, items, MANY_KEYS, NULL, NULL), MANY_KEYS);
	struct shmc_stats st1 = stats_of(fx->c);
	for (unsigned i = 0; i < MANY_KEYS; i++)
		expect_item(&items[i], 0, keys[i]);
	assert_int_equal(command_calls("get") - gets, MANY_KEYS);
	assert_int_equal(st1.uplink_batches - st0.uplink_batches, 3);
	assert_int_equal(st1.uplink_ops - st0.uplink_ops, MANY_KEYS);
}

static unsigned many_loader_calls;

static int many_loader(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	(void)arg;
	many_loader_calls++;
	*val = malloc(klen);
	if (!*val)
		return SHMC_ENOMEM;
	memcpy(*val, key, klen);
	*vlen = klen;
	*ttl_ms = 0;
	return 0;
}

static void test_uplink_redis_fetch_many_with_a_loader_calls_it_per_missing_key(void **state)
{
	struct fx *fx = *state;
	char uri[256], keys[4][256], bufs[4][256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	struct shmc_fetch_item items[4];
	for (unsigned i = 0; i < 4; i++) {
		snprintf(bufs[i], sizeof bufs[i], "loader%u", i);
		key_of(fx, keys[i], sizeof keys[i], bufs[i]);
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = strlen(keys[i]), .buf = bufs[i], .cap = 256};
	}
	uint64_t gets = command_calls("get");
	many_loader_calls = 0;
	assert_int_equal(shmc_fetch_many(fx->c, items, 4, many_loader, NULL), 4);
	for (unsigned i = 0; i < 4; i++)
		expect_item(&items[i], 0, keys[i]);
	assert_int_equal(many_loader_calls, 4);
	assert_int_equal(command_calls("get"), gets);
}

static void test_uplink_redis_fetch_many_server_killed_every_miss_fails(void **state)
{
	struct fx *fx = *state;
	char uri[256], keys[MANY_KEYS][256], bufs[MANY_KEYS][256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri,
								   "command_timeout_ms=500")});
	many_keys(fx, keys, MANY_KEYS);
	expect_fetch(fx->c, keys[0], keys[0]); /* a hit survives the outage */
	struct shmc_fetch_item items[MANY_KEYS];
	for (unsigned i = 0; i < MANY_KEYS; i++)
		items[i] = (struct shmc_fetch_item){
			.key = keys[i], .klen = strlen(keys[i]), .buf = bufs[i], .cap = 256};

	server_kill();
	uint64_t t0 = tu_now_ms();
	assert_int_equal(shmc_fetch_many(fx->c, items, MANY_KEYS, NULL, NULL), 1);
	uint64_t took = tu_now_ms() - t0;
	print_message("%u keys, redis-server killed: %llu ms\n", MANY_KEYS,
		      (unsigned long long)took);
	expect_item(&items[0], 0, keys[0]);
	for (unsigned i = 1; i < MANY_KEYS; i++)
		expect_item(&items[i], SHMC_EUPLINK, NULL);
	expect_errmsg_has(fx->c, "remote tier");
	/* one failed batch, not one timeout per key */
	assert_true(took < 2 * 500);
	/* nothing was cached: once the server is back (empty: loaded again),
	 * the values come */
	assert_true(server_restart());
	many_keys(fx, keys, MANY_KEYS);
	for (uint64_t until = tu_now_ms() + 5000;
	     shmc_fetch_many(fx->c, items, MANY_KEYS, NULL, NULL) != MANY_KEYS; tu_sleep_ms(50))
		if (tu_now_ms() > until)
			fail_msg("fetch_many still failing 5 s after the restart");
	for (unsigned i = 0; i < MANY_KEYS; i++)
		expect_item(&items[i], 0, keys[i]);
}

/* ======================================================== the outage */

struct timing {
	unsigned n;
	uint64_t sum_ns, max_ns;
};

static void timing_add(struct timing *t, uint64_t ns)
{
	t->n++;
	t->sum_ns += ns;
	if (ns > t->max_ns)
		t->max_ns = ns;
}

static double timing_mean_us(const struct timing *t)
{
	return t->n ? (double)t->sum_ns / t->n / 1e3 : 0;
}

static void test_uplink_redis_server_killed_fetches_fail_fast_once_breaker_open(void **state)
{
	struct fx *fx = *state;
	enum { COMMAND_TIMEOUT_MS = 500 };
	char uri[256], k[256], addr[64], buf[256], suffix[32];
	size_t vlen;
	fx->c = open_fresh(
		fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri,
							"command_timeout_ms=500&breaker_failures=3&"
							"breaker_open_ms=5000")});
	server_addr(addr, sizeof addr);
	raw_ok("SET %s v", key_of(fx, k, sizeof k, "warm"));
	expect_fetch(fx->c, k, "v");
	wait_node_state(fx->c, addr, SHMC_BREAKER_CLOSED, 1000);

	server_kill();
	uint64_t opens = stats_of(fx->c).uplink_breaker_opens, deadline = tu_now_ms() + 5000;
	struct timing before = {0}, after = {0};
	unsigned i = 0;
	/* until the breaker opens: failures feed it (the reconnect back-off
	 * refuses some at once meanwhile) */
	while (stats_of(fx->c).uplink_breaker_opens == opens) {
		if (tu_now_ms() > deadline)
			fail_msg("the breaker did not open within 5 s of the kill");
		snprintf(suffix, sizeof suffix, "miss%u", i++);
		key_of(fx, k, sizeof k, suffix);
		uint64_t t0 = tu_now_ns();
		int rc = fetch(fx->c, k, buf, sizeof buf, &vlen);
		timing_add(&before, tu_now_ns() - t0);
		if (rc != SHMC_EUPLINK)
			fail_msg("fetch during the outage: %s, expected SHMC_EUPLINK",
				 shmc_errname(rc));
		expect_errmsg_has(fx->c, "remote tier");
		tu_sleep_ms(10);
	}
	wait_node_state(fx->c, addr, SHMC_BREAKER_OPEN, 1000);
	struct shmc_uplink_node node;
	assert_true(node_of(fx->c, getpid(), addr, &node));
	assert_true(node.failures >= 3);
	assert_int_equal(node.breaker_opens, 1);

	uint64_t fast_fails = stats_of(fx->c).uplink_fast_fails;
	for (unsigned j = 0; j < 200; j++) {
		snprintf(suffix, sizeof suffix, "miss%u", i++);
		key_of(fx, k, sizeof k, suffix);
		uint64_t t0 = tu_now_ns();
		int rc = fetch(fx->c, k, buf, sizeof buf, &vlen);
		timing_add(&after, tu_now_ns() - t0);
		assert_int_equal(rc, SHMC_EUPLINK);
		expect_errmsg_has(fx->c, "breaker open");
	}
	print_message("failing fetches with redis-server killed (command timeout %d ms):\n"
		      "  before the breaker opened: %u fetches, mean %.1f us, max %.1f us\n"
		      "  with the breaker open:     %u fetches, mean %.1f us, max %.1f us\n",
		      COMMAND_TIMEOUT_MS, before.n, timing_mean_us(&before), before.max_ns / 1e3,
		      after.n, timing_mean_us(&after), after.max_ns / 1e3);
	/* open: refused without touching the network, in microseconds (the
	 * mean; the slowest may have lost the CPU for a while, but none waited
	 * for anything near a timeout) */
	assert_true(stats_of(fx->c).uplink_fast_fails >= fast_fails + 200);
	assert_true(timing_mean_us(&after) < 5000);
	assert_true(after.max_ns < (uint64_t)COMMAND_TIMEOUT_MS * 1000000u / 2);

	assert_true(server_restart());
}

static void test_uplink_redis_server_killed_l1_hits_and_stale_values_still_served(void **state)
{
	struct fx *fx = *state;
	char uri[256], hot[256], stale[256], buf[256];
	fx->c = open_fresh(
		fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, ""), .stale_ms = 30000});
	key_of(fx, hot, sizeof hot, "hot");
	key_of(fx, stale, sizeof stale, "stale");
	raw_ok("SET %s %s", hot, "hot value");
	uint64_t set_ms = tu_now_ms();
	raw_ok("SET %s %s PX 400", stale, "old value");
	expect_fetch(fx->c, hot, "hot value");
	expect_fetch(fx->c, stale, "old value");

	uint64_t origin_calls = stats_of(fx->c).origin_calls;
	double up_rate = hit_rate(fx->c, hot, "hot value", 200);
	server_kill();
	double down_rate = hit_rate(fx->c, hot, "hot value", 200);
	assert_int_equal(stats_of(fx->c).origin_calls, origin_calls); /* all from L1 */
	print_message("L1 hits (shmc_fetch of a cached key): %.0f/s with redis up, %.0f/s with "
		      "it killed\n",
		      up_rate, down_rate);
	assert_int_equal(get(fx->c, hot, buf, sizeof buf), 0);
	assert_string_equal(buf, "hot value");

	/* past its TTL, inside the stale window: served by fetch, not by get */
	sleep_until_ms(set_ms + 550);
	assert_int_equal(get(fx->c, stale, buf, sizeof buf), SHMC_ENOTFOUND);
	struct shmc_stats st0 = stats_of(fx->c);
	expect_fetch(fx->c, stale, "old value");
	assert_int_equal(stats_of(fx->c).stale_serves, st0.stale_serves + 1);
	/* its background refresh fails (the server is down) ... */
	for (uint64_t until = tu_now_ms() + 3000;
	     stats_of(fx->c).loader_errors == st0.loader_errors; tu_sleep_ms(5))
		if (tu_now_ms() > until)
			fail_msg("the refresh of the stale item did not fail within 3 s");
	/* ... and the stale value is still served, counted as stale-if-error
	 * once the failed refresh's lease is cooling down (at once, but the
	 * refresher sets it just after counting the error) */
	for (uint64_t until = tu_now_ms() + 1000;
	     stats_of(fx->c).stale_if_error == st0.stale_if_error; tu_sleep_ms(1)) {
		expect_fetch(fx->c, stale, "old value");
		if (tu_now_ms() > until)
			fail_msg("stale serves after the failed refresh not counted as "
				 "stale-if-error");
	}
	assert_true(stats_of(fx->c).stale_serves >= st0.stale_serves + 2);
	assert_int_equal(get(fx->c, stale, buf, sizeof buf), SHMC_ENOTFOUND);

	assert_true(server_restart());
}

static void test_uplink_redis_server_killed_write_through_fails_write_behind_counted(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], through[256], behind[256], buf[256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	raw_ok("SET %s v", key_of(fx, k, sizeof k, "warm"));
	expect_fetch(fx->c, k, "v");
	key_of(fx, through, sizeof through, "through");
	key_of(fx, behind, sizeof behind, "behind");

	server_kill();
	/* write-through: the remote tier first, so nothing is written */
	assert_int_equal(shmc_set(fx->c, through, strlen(through), "t", 1, 0, SHMC_WRITE_THROUGH),
			 SHMC_EUPLINK);
	expect_errmsg_has(fx->c, "remote tier");
	assert_int_equal(get(fx->c, through, buf, sizeof buf), SHMC_ENOTFOUND);

	/* write-behind: the local write stands, the remote one fails, counted */
	struct shmc_stats st0 = stats_of(fx->c);
	assert_int_equal(shmc_set(fx->c, behind, strlen(behind), "b", 1, 0, SHMC_WRITE_BEHIND), 0);
	assert_int_equal(get(fx->c, behind, buf, sizeof buf), 0);
	assert_string_equal(buf, "b");
	for (uint64_t until = tu_now_ms() + 3000;
	     stats_of(fx->c).write_behind_failed == st0.write_behind_failed; tu_sleep_ms(5))
		if (tu_now_ms() > until)
			fail_msg("write_behind_failed did not move within 3 s");
	struct shmc_stats st1 = stats_of(fx->c);
	assert_int_equal(st1.write_behind_queued, st0.write_behind_queued + 1);
	assert_int_equal(st1.write_behind_failed, st0.write_behind_failed + 1);
	assert_int_equal(st1.write_behind_dropped, st0.write_behind_dropped);

	assert_true(server_restart());
	assert_false(raw_get(behind, buf, sizeof buf)); /* lost, as counted */
}

static void
test_uplink_redis_server_restarted_breaker_closes_within_two_health_intervals(void **state)
{
	struct fx *fx = *state;
	enum { HEALTH_MS = 200 };
	char uri[256], k[256], addr[64];
	/* While open, the breaker probes every breaker_open_ms: the same
	 * period as the health checks here. */
	fx->c = open_fresh(
		fx,
		&(struct seg_opts){.uri = redis_uri(uri, sizeof uri,
						    "health_interval_ms=200&breaker_open_ms=200&"
						    "breaker_failures=2")});
	server_addr(addr, sizeof addr);
	raw_ok("SET %s v", key_of(fx, k, sizeof k, "k"));
	expect_fetch(fx->c, k, "v");

	server_kill();
	/* no traffic: the health checks alone notice */
	uint64_t open_ms = wait_node_state(fx->c, addr, SHMC_BREAKER_OPEN, 3000);
	/* from the first moment the server answers this test's PING */
	pid_t restarting = server_restart_start();
	for (uint64_t until = tu_now_ms() + 10000; !redis_up(); tu_sleep_ms(1))
		if (tu_now_ms() > until)
			fail_msg("the server did not answer within 10 s of its restart");
	uint64_t close_ms = wait_node_state(fx->c, addr, SHMC_BREAKER_CLOSED, 3000);
	assert_true(server_restart_done(restarting));
	print_message("breaker (health checks every %d ms): open %llu ms after the kill, closed "
		      "%llu ms after the server answered again\n",
		      HEALTH_MS, (unsigned long long)open_ms, (unsigned long long)close_ms);
	assert_true(close_ms <= 2 * HEALTH_MS);
	struct shmc_uplink_node node;
	assert_true(node_of(fx->c, getpid(), addr, &node));
	assert_int_equal(node.failures, 0);
	assert_true(node.breaker_opens >= 1);
	raw_ok("SET %s w", k);
	assert_int_equal(shmc_del(fx->c, k, strlen(k)), 0);
	expect_fetch(fx->c, k, "w");
}

/* ============================================== breakers per process */

struct node_child {
	_Atomic unsigned ready;
	char name[TU_NAME_MAX];
	char uri[256];
};

static int node_child(unsigned index, void *arg)
{
	struct node_child *nc = arg;
	shmc_opts *o;
	shmc_cache *c;
	char buf[16];
	size_t vlen;

	(void)index;
	if (shmc_opts_create(&o) || shmc_opts_set_sweeper(o, 0) ||
	    shmc_opts_set_uplink(o, nc->uri) || shmc_open(nc->name, o, 0, &c)) {
		tu_child_log("open: %s", shmc_errmsg(NULL));
		return 1;
	}
	shmc_opts_destroy(o);
	int rc = shmc_fetch(c, "k", 1, buf, sizeof buf, &vlen, NULL, NULL);
	if (rc != SHMC_EUPLINK) {
		tu_child_log("fetch: %s, expected SHMC_EUPLINK", shmc_errname(rc));
		return 1;
	}
	atomic_store(&nc->ready, 1);
	for (;;)
		pause(); /* until the parent kills it */
}

static void test_uplink_redis_nodes_list_each_process_breaker(void **state)
{
	struct fx *fx = *state;
	struct node_child *nc = tu_shared_alloc(sizeof *nc);
	char uri[256], k[256], addr[64], refused[64];
	struct shmc_uplink_node node, nodes[8];
	size_t n;
	pid_t child;

	assert_non_null(nc);
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	server_addr(addr, sizeof addr);
	raw_ok("SET %s v", key_of(fx, k, sizeof k, "k"));
	expect_fetch(fx->c, k, "v");
	wait_node_state(fx->c, addr, SHMC_BREAKER_CLOSED, 1000);
	assert_true(node_of(fx->c, getpid(), addr, &node));
	assert_int_equal(node.failures, 0);
	assert_int_equal(node.breaker_opens, 0);

	/* another process, whose node refuses connections */
	uint16_t port = refused_port(fx);
	snprintf(refused, sizeof refused, "127.0.0.1:%u", (unsigned)port);
	snprintf(nc->name, sizeof nc->name, "%s", fx->name);
	snprintf(nc->uri, sizeof nc->uri, "redis://%s?breaker_failures=1&breaker_open_ms=60000",
		 refused);
	assert_int_equal(tu_fork_start(1, node_child, nc, CHILD_WATCHDOG_S, &child), 1);
	for (uint64_t until = tu_now_ms() + 5000; !atomic_load(&nc->ready); tu_sleep_ms(2))
		if (tu_now_ms() > until) {
			kill(child, SIGKILL);
			tu_wait_child(child, "node child");
			fail_msg("the child did not get its fetch refused");
		}
	/* its entry, seen from a handle without an uplink */
	shmc_cache *watcher = open_more(fx, NULL);
	bool seen = false;
	for (uint64_t until = tu_now_ms() + 1000; !seen && tu_now_ms() < until; tu_sleep_ms(2))
		seen = node_of(watcher, child, refused, &node) && node.state == SHMC_BREAKER_OPEN;
	assert_true(seen);
	assert_int_equal(node.failures, 1);
	assert_int_equal(node.breaker_opens, 1);
	assert_int_equal(shmc_uplink_nodes(watcher, NULL, 0, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(shmc_uplink_nodes(watcher, nodes, 1, &n), 0);
	assert_int_equal(n, 2);

	/* a second uplink in this process: an entry of its own, until closed */
	shmc_cache *second = open_more(fx, uri);
	for (uint64_t until = tu_now_ms() + 1000; tu_now_ms() < until; tu_sleep_ms(2)) {
		assert_int_equal(shmc_uplink_nodes(watcher, NULL, 0, &n), 0);
		if (n == 3)
			break;
	}
	assert_int_equal(n, 3);
	shmc_close(second);
	assert_int_equal(shmc_uplink_nodes(watcher, NULL, 0, &n), 0);
	assert_int_equal(n, 2);

	/* a dead process's entries are not listed */
	kill(child, SIGKILL);
	assert_int_not_equal(tu_wait_child(child, "node child"), 0);
	assert_false(node_of(watcher, child, refused, &node));
	assert_int_equal(shmc_uplink_nodes(watcher, nodes, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(nodes[0].addr, addr);
	assert_int_equal(nodes[0].pid, (uint64_t)getpid());
	shmc_close(watcher);
	tu_shared_free(nc, sizeof *nc);
}

/* ================================================= misbehaving servers */

static void fake_open(struct fx *fx, enum fake_mode mode, const char *options)
{
	char uri[256];

	fx->fake = mode_fake_start(mode);
	fx->c = open_fresh(fx,
			   &(struct seg_opts){.uri = fake_uri(uri, sizeof uri, fx->fake, options)});
	/* connected: the uplink's first health check has been answered */
	for (uint64_t until = tu_now_ms() + 2000; !atomic_load(&fx->fake->pings); tu_sleep_ms(2))
		if (tu_now_ms() > until)
			fail_msg("the uplink never connected to the fake server");
}

/* A reply the uplink cannot use fails the fetch with SHMC_EUPLINK and a
 * message naming the problem; the handle keeps working, and the node is
 * used again once it behaves. */
static void bad_reply_case(struct fx *fx, enum fake_mode mode, const char *what)
{
	char k[256], buf[256], name[64];
	size_t vlen;

	fake_open(fx, mode, "command_timeout_ms=1000");
	snprintf(name, sizeof name, "127.0.0.1:%u", (unsigned)fx->fake->srv->port);
	key_of(fx, k, sizeof k, "k");
	assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_EUPLINK);
	expect_errmsg_has(fx->c, what);
	expect_errmsg_has(fx->c, name);
	print_message("%s\n", shmc_errmsg(fx->c));
	struct shmc_stats st = stats_of(fx->c);
	assert_int_equal(st.uplink_err_protocol, 1);
	assert_int_equal(st.loader_errors, 1);

	assert_int_equal(shmc_set(fx->c, "local", 5, "x", 1, 0, 0), 0);
	assert_int_equal(get(fx->c, "local", buf, sizeof buf), 0);
	atomic_store(&fx->fake->mode, FAKE_NORMAL);
	tu_sleep_ms(150); /* the reconnect back-off after a failure: 50 ms */
	expect_fetch(fx->c, k, "hello");
}

static void test_uplink_redis_fake_garbage_reply_fails_with_protocol_error(void **state)
{
	bad_reply_case(*state, FAKE_GARBAGE, "protocol error");
}

static void test_uplink_redis_fake_integer_reply_to_get_fails_naming_the_type(void **state)
{
	bad_reply_case(*state, FAKE_GET_INTEGER, "reply of type integer, expected string or nil");
}

static void test_uplink_redis_fake_array_reply_to_get_fails_naming_the_type(void **state)
{
	bad_reply_case(*state, FAKE_GET_ARRAY, "reply of type array, expected string or nil");
}

static void test_uplink_redis_fake_stall_returns_within_command_timeout(void **state)
{
	struct fx *fx = *state;
	enum { TIMEOUT_MS = 300, MARGIN_MS = 200 };
	char k[256], buf[256];
	size_t vlen;

	fake_open(fx, FAKE_STALL, "command_timeout_ms=300");
	key_of(fx, k, sizeof k, "k");
	uint64_t t0 = tu_now_ms();
	assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_EUPLINK);
	uint64_t took = tu_now_ms() - t0;
	print_message("stalled server: fetch failed after %llu ms (%s)\n", (unsigned long long)took,
		      shmc_errmsg(fx->c));
	expect_errmsg_has(fx->c, "timed out after 300 ms");
	assert_true(took + 1 >= TIMEOUT_MS);
	assert_true(took <= TIMEOUT_MS + MARGIN_MS);
	assert_int_equal(stats_of(fx->c).uplink_err_timeout, 1);
	assert_int_equal(atomic_load(&fx->fake->gets), 1);
}

static void test_uplink_redis_fake_stall_opens_breaker_then_fetches_fail_fast(void **state)
{
	struct fx *fx = *state;
	enum { TIMEOUT_MS = 200 };
	char k[256], buf[256], suffix[32], name[64];
	size_t vlen;
	struct timing before = {0}, after = {0};

	fake_open(fx, FAKE_STALL,
		  "command_timeout_ms=200&breaker_failures=2&breaker_open_ms=60000&"
		  "health_interval_ms=60000");
	snprintf(name, sizeof name, "127.0.0.1:%u", (unsigned)fx->fake->srv->port);
	for (unsigned i = 0; i < 2; i++) {
		snprintf(suffix, sizeof suffix, "slow%u", i);
		key_of(fx, k, sizeof k, suffix);
		tu_sleep_ms(100); /* past the reconnect back-off: each one reaches the node */
		uint64_t t0 = tu_now_ns();
		assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_EUPLINK);
		timing_add(&before, tu_now_ns() - t0);
		expect_errmsg_has(fx->c, "timed out");
	}
	wait_node_state(fx->c, name, SHMC_BREAKER_OPEN, 1000);
	for (unsigned i = 0; i < 100; i++) {
		snprintf(suffix, sizeof suffix, "fast%u", i);
		key_of(fx, k, sizeof k, suffix);
		uint64_t t0 = tu_now_ns();
		assert_int_equal(fetch(fx->c, k, buf, sizeof buf, &vlen), SHMC_EUPLINK);
		timing_add(&after, tu_now_ns() - t0);
		expect_errmsg_has(fx->c, "breaker open");
	}
	print_message("stalled server (command timeout %d ms): %u fetches before the breaker "
		      "opened, mean %.1f ms; %u with it open, mean %.1f us, max %.1f us\n",
		      TIMEOUT_MS, before.n, timing_mean_us(&before) / 1e3, after.n,
		      timing_mean_us(&after), after.max_ns / 1e3);
	assert_true(before.sum_ns / before.n >= (uint64_t)(TIMEOUT_MS - 1) * 1000000u);
	assert_true(timing_mean_us(&after) < 5000);
	assert_true(after.max_ns < (uint64_t)TIMEOUT_MS * 1000000u / 2);
	/* nothing reached the node while it was open */
	assert_int_equal(atomic_load(&fx->fake->gets), 2);
}

static void test_uplink_redis_write_behind_queue_full_drops_are_counted(void **state)
{
	struct fx *fx = *state;
	enum { QUEUE = 4, WRITES = 50 };
	char k[256], buf[256], suffix[32];

	/* The server takes the first SET and never answers: the uplink thread
	 * waits the command timeout (1 s) on it while the writes pile up, far
	 * longer than the burst takes, so exactly QUEUE are accepted. */
	fake_open(fx, FAKE_STALL,
		  "command_timeout_ms=1000&write_behind_queue=4&health_interval_ms=60000");
	struct shmc_stats st0 = stats_of(fx->c);
	for (unsigned i = 0; i < WRITES; i++) {
		snprintf(suffix, sizeof suffix, "wb%u", i);
		key_of(fx, k, sizeof k, suffix);
		assert_int_equal(shmc_set(fx->c, k, strlen(k), "v", 1, 0, SHMC_WRITE_BEHIND), 0);
	}
	struct shmc_stats st1 = stats_of(fx->c);
	assert_int_equal(st1.write_behind_queued - st0.write_behind_queued, QUEUE);
	assert_int_equal(st1.write_behind_dropped - st0.write_behind_dropped, WRITES - QUEUE);
	for (unsigned i = 0; i < WRITES; i++) {
		snprintf(suffix, sizeof suffix, "wb%u", i);
		assert_int_equal(get(fx->c, key_of(fx, k, sizeof k, suffix), buf, sizeof buf), 0);
	}
	/* the accepted ones fail: timed out, then refused in the back-off */
	for (uint64_t until = tu_now_ms() + 5000;
	     stats_of(fx->c).write_behind_failed - st0.write_behind_failed < QUEUE; tu_sleep_ms(10))
		if (tu_now_ms() > until)
			fail_msg("the queued writes did not fail within 5 s");
	assert_int_equal(stats_of(fx->c).write_behind_failed - st0.write_behind_failed, QUEUE);
}

/* ============================================================ writes */

static void test_uplink_redis_write_through_set_lands_in_redis_with_px_ttl(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], forever[256], buf[256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	key_of(fx, k, sizeof k, "through");
	key_of(fx, forever, sizeof forever, "forever");

	assert_int_equal(shmc_set(fx->c, k, strlen(k), "through", 7, 5000, SHMC_WRITE_THROUGH), 0);
	assert_true(raw_get(k, buf, sizeof buf));
	assert_string_equal(buf, "through");
	long long pttl = raw_int("PTTL %s", k);
	assert_true(pttl > 4000 && pttl <= 5000);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), 0);
	assert_string_equal(buf, "through");

	/* ttl 0 and no default TTL: no expiry on either side */
	assert_int_equal(shmc_set(fx->c, forever, strlen(forever), "f", 1, 0, SHMC_WRITE_THROUGH),
			 0);
	assert_int_equal(raw_int("PTTL %s", forever), -1);
}

static void test_uplink_redis_write_through_del_removes_key_in_redis(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], remote_only[256], buf[256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	key_of(fx, k, sizeof k, "cached");
	key_of(fx, remote_only, sizeof remote_only, "remote-only");
	raw_ok("SET %s v", k);
	raw_ok("SET %s v", remote_only);
	expect_fetch(fx->c, k, "v");

	assert_int_equal(shmc_del_flags(fx->c, k, strlen(k), SHMC_WRITE_THROUGH), 0);
	assert_int_equal(raw_int("EXISTS %s", k), 0);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), SHMC_ENOTFOUND);
	/* absent from L1: reported so, but deleted remotely all the same */
	assert_int_equal(
		shmc_del_flags(fx->c, remote_only, strlen(remote_only), SHMC_WRITE_THROUGH),
		SHMC_ENOTFOUND);
	assert_int_equal(raw_int("EXISTS %s", remote_only), 0);
}

static void test_uplink_redis_write_behind_lands_in_redis_eventually(void **state)
{
	struct fx *fx = *state;
	char uri[256], k[256], buf[256];
	fx->c = open_fresh(fx, &(struct seg_opts){.uri = redis_uri(uri, sizeof uri, "")});
	key_of(fx, k, sizeof k, "behind");

	struct shmc_stats st0 = stats_of(fx->c);
	assert_int_equal(shmc_set(fx->c, k, strlen(k), "behind", 6, 3000, SHMC_WRITE_BEHIND), 0);
	assert_int_equal(get(fx->c, k, buf, sizeof buf), 0);
	assert_string_equal(buf, "behind");
	for (uint64_t until = tu_now_ms() + 2000; !raw_get(k, buf, sizeof buf); tu_sleep_ms(2))
		if (tu_now_ms() > until)
			fail_msg("the write-behind SET did not reach Redis within 2 s");
	assert_string_equal(buf, "behind");
	long long pttl = raw_int("PTTL %s", k);
	assert_true(pttl > 0 && pttl <= 3000);

	assert_int_equal(shmc_del_flags(fx->c, k, strlen(k), SHMC_WRITE_BEHIND), 0);
	for (uint64_t until = tu_now_ms() + 2000; raw_int("EXISTS %s", k); tu_sleep_ms(2))
		if (tu_now_ms() > until)
			fail_msg("the write-behind DEL did not reach Redis within 2 s");
	struct shmc_stats st1 = stats_of(fx->c);
	assert_int_equal(st1.write_behind_queued, st0.write_behind_queued + 2);
	assert_int_equal(st1.write_behind_dropped, st0.write_behind_dropped);
	assert_int_equal(st1.write_behind_failed, st0.write_behind_failed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_uplink_redis_fetch_reads_value_set_in_redis),
		TEST(test_uplink_redis_local_ttl_capped_by_remote_pttl),
		TEST(test_uplink_redis_ttl_jitter_never_outlives_remote_pttl),
		TEST(test_uplink_redis_ttl_cap_option_bounds_local_ttl),
		TEST(test_uplink_redis_absent_key_cached_as_negative_entry),
		TEST(test_uplink_redis_herd_of_32_processes_makes_one_get),
		TEST(test_uplink_redis_threads_of_one_process_each_get_their_own_value),
		TEST(test_uplink_redis_threads_fetch_many_at_once_each_get_their_own_values),
		TEST(test_uplink_redis_fetch_many_sends_the_misses_in_one_batch),
		TEST(test_uplink_redis_fetch_many_longer_than_a_batch_goes_a_batch_at_a_time),
		TEST(test_uplink_redis_fetch_many_with_a_loader_calls_it_per_missing_key),
		TEST(test_uplink_redis_fetch_many_server_killed_every_miss_fails),
		TEST(test_uplink_redis_fetch_many_herd_of_32_processes_one_get_per_key),
		TEST(test_uplink_redis_server_killed_fetches_fail_fast_once_breaker_open),
		TEST(test_uplink_redis_server_killed_l1_hits_and_stale_values_still_served),
		TEST(test_uplink_redis_server_killed_write_through_fails_write_behind_counted),
		TEST(test_uplink_redis_server_restarted_breaker_closes_within_two_health_intervals),
		TEST(test_uplink_redis_nodes_list_each_process_breaker),
		TEST(test_uplink_redis_fake_garbage_reply_fails_with_protocol_error),
		TEST(test_uplink_redis_fake_integer_reply_to_get_fails_naming_the_type),
		TEST(test_uplink_redis_fake_array_reply_to_get_fails_naming_the_type),
		TEST(test_uplink_redis_fake_stall_returns_within_command_timeout),
		TEST(test_uplink_redis_fake_stall_opens_breaker_then_fetches_fail_fast),
		TEST(test_uplink_redis_write_behind_queue_full_drops_are_counted),
		TEST(test_uplink_redis_write_through_set_lands_in_redis_with_px_ttl),
		TEST(test_uplink_redis_write_through_del_removes_key_in_redis),
		TEST(test_uplink_redis_write_behind_lands_in_redis_eventually),
	};

	/* SHMC_TEST_FILTER=pattern (cmocka's, with * and ?) runs the matching
	 * tests only: the threaded ones under TSan, say, which cannot follow
	 * a forked child that starts threads. */
	const char *filter = getenv("SHMC_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, env_load, NULL);
}
