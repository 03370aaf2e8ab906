/*
 * test_redis_node.c - one Redis node of the uplink (redis_node.c).
 *
 * Two groups:
 *
 * - Against a fake server (fake_redis.h: a thread behind a TCP listener
 *   on 127.0.0.1), which answers every command with the next entry of a
 *   script: garbage, replies of the wrong type, error replies and redirects,
 *   silence, a connection closed mid-reply, no listener at all; the reconnect
 *   back-off, the breaker (opening, failing fast, the half-open probe),
 *   health checks, and the handshake (AUTH, SELECT, READONLY).
 *
 * - Against a real redis-server that the test starts itself on a unix
 *   socket in a fresh temporary directory (and SIGKILLs in the teardown, or
 *   through PR_SET_PDEATHSIG if the test dies): round trips, PTTL, binary
 *   keys and values, a pipeline of 1000 GETs, error replies, requirepass.
 *   A missing redis-server fails the group: scripts/bootstrap installs it,
 *   so its absence is a defect of the machine, not a reason to skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <shmcache.h>

#include "fake_redis.h"
#include "redis_node.h"
#include "uplink_uri.h"

/* ================================================================ time */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Under valgrind everything runs tens of times slower: the bounds on how
 * long fast paths take do not apply there (the bounds on how long a
 * timeout takes do). */
static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/* ======================================================== node helpers */

struct fixture {
	struct fake *fake;
	struct shmc__rnode *node;
	struct shmc__uplink_config cfg;
};

/* The configuration of uri, which must parse. */
static struct shmc__uplink_config config_of(const char *uri)
{
	struct shmc__uplink_config cfg;
	char err[160];

	if (shmc__uplink_uri_parse(uri, &cfg, err, sizeof err))
		fail_msg("'%s': %s", uri, err);
	return cfg;
}

/* A node on the fixture's fake server, with options (a query string,
 * may be ""). */
static struct shmc__rnode *fake_node(struct fixture *fx, const char *options)
{
	char uri[512];

	snprintf(uri, sizeof uri, "redis://127.0.0.1:%u?%s", (unsigned)fx->fake->port, options);
	fx->cfg = config_of(uri);
	assert_null(fx->node);
	fx->node = shmc__rnode_new(&fx->cfg.seeds[0], &fx->cfg);
	assert_non_null(fx->node);
	return fx->node;
}

static int fake_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	if (!fx)
		return -1;
	fx->fake = fake_start();
	*state = fx;
	return 0;
}

static int fake_teardown(void **state)
{
	struct fixture *fx = *state;

	shmc__rnode_free(fx->node);
	fake_stop(fx->fake);
	free(fx);
	return 0;
}

static struct shmc__rop op_get(const char *key)
{
	return (struct shmc__rop){.kind = SHMC__ROP_GET, .key = key, .klen = strlen(key)};
}

static struct shmc__rop op_set(const char *key, const char *val, uint64_t px_ms)
{
	return (struct shmc__rop){.kind = SHMC__ROP_SET,
				  .key = key,
				  .klen = strlen(key),
				  .val = val,
				  .vlen = strlen(val),
				  .px_ms = px_ms};
}

static struct shmc__rop op_del(const char *key)
{
	return (struct shmc__rop){.kind = SHMC__ROP_DEL, .key = key, .klen = strlen(key)};
}

static void ops_release(struct shmc__rop *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ops[i].val_out);
		ops[i].val_out = NULL;
	}
}

static void assert_err_has(const struct shmc__rop *op, const char *frag)
{
	if (!strstr(op->err, frag))
		fail_msg("err \"%s\" lacks \"%s\"", op->err, frag);
}

static void assert_value(const struct shmc__rop *op, const void *val, size_t vlen)
{
	if (op->rc != 0)
		fail_msg("rc %d (%s), expected a value", op->rc, op->err);
	assert_int_equal(op->vlen_out, vlen);
	assert_non_null(op->val_out);
	assert_memory_equal(op->val_out, val, vlen);
}

static struct shmc__rnode_stats stats_of(const struct shmc__rnode *n)
{
	struct shmc__rnode_stats s;

	shmc__rnode_stats(n, &s);
	return s;
}

/* Wait (at most 5 s) until the node accepts requests again (the
 * reconnect back-off is over). */
static void wait_available(struct shmc__rnode *n)
{
	uint64_t until = mono_ms() + 5000;

	while (!shmc__rnode_available(n)) {
		if (mono_ms() > until)
			fail_msg("the node stayed unavailable");
		sleep_ms(2);
	}
}

/* One GET that must succeed with value "v". */
static void get_ok(struct fixture *fx)
{
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "$1\r\nv\r\n", ":-1\r\n");
	assert_int_equal(shmc__rnode_exec(fx->node, &op, 1), 0);
	assert_value(&op, "v", 1);
	ops_release(&op, 1);
}

/* =============================================== fake: good replies */

static void test_redis_node_get_value_and_pttl(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[3] = {op_get("a"), op_get("b"), op_get("c")};

	SCRIPT(fx->fake, "$5\r\nhello\r\n", ":1234\r\n", "$0\r\n\r\n", ":-1\r\n", "$-1\r\n",
	       ":-2\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 3), 0);
	assert_value(&ops[0], "hello", 5);
	assert_int_equal(ops[0].pttl_ms, 1234);
	assert_value(&ops[1], "", 0);
	assert_int_equal(ops[1].pttl_ms, -1);
	assert_int_equal(ops[2].rc, SHMC_ENOTFOUND);
	assert_null(ops[2].val_out);
	assert_log_has(fx->fake, "GET a\nPTTL a\nGET b\nPTTL b\nGET c\nPTTL c\n");
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.ops, 3);
	assert_int_equal(s.errors_connect + s.errors_timeout + s.errors_protocol + s.errors_reply,
			 0);
	ops_release(ops, 3);
}

static void test_redis_node_get_vanished_between_get_and_pttl_is_absent(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "$1\r\nv\r\n", ":-2\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), 0);
	assert_int_equal(op.rc, SHMC_ENOTFOUND);
	assert_null(op.val_out);
	assert_int_equal(op.vlen_out, 0);
}

static void test_redis_node_set_and_del_commands_sent(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[3] = {op_set("k", "val", 1500), op_set("k2", "v2", 0), op_del("k")};

	SCRIPT(fx->fake, "+OK\r\n", "+OK\r\n", ":1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 3), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ops[i].rc, 0);
	assert_log_has(fx->fake, "SET k val PX 1500\nSET k2 v2\nDEL k\n");
}

static void test_redis_node_connects_lazily_once(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");

	sleep_ms(20);
	assert_int_equal(fake_accepts(fx->fake), 0);
	get_ok(fx);
	get_ok(fx);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 1);
	assert_int_equal(stats_of(n).calls, 3);
}

static void test_redis_node_idle_close_reconnects_silently(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");

	get_ok(fx);
	pthread_mutex_lock(&fx->fake->mu);
	fx->fake->want_close_all = true; /* the server's idle timeout */
	pthread_mutex_unlock(&fx->fake->mu);
	fake_poke(fx->fake);
	sleep_ms(50);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 2);
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.errors_connect + s.errors_timeout + s.errors_protocol, 0);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
}

static void test_redis_node_empty_batch_does_nothing(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");

	assert_int_equal(shmc__rnode_exec(n, NULL, 0), 0);
	assert_int_equal(fake_accepts(fx->fake), 0);
	assert_int_equal(stats_of(n).calls, 0);
}

/* ============================================ fake: handshake and AUTH */

static void test_redis_node_auth_password_only_sent(void **state)
{
	struct fixture *fx = *state;

	fake_node(fx, "password=s3cret");
	get_ok(fx);
	char *log = fake_log(fx->fake);
	assert_true(strncmp(log, "AUTH s3cret\nGET k\n", 18) == 0);
	free(log);
}

static void test_redis_node_auth_user_and_password_sent(void **state)
{
	struct fixture *fx = *state;

	fake_node(fx, "user=alice&password=pw");
	get_ok(fx);
	char *log = fake_log(fx->fake);
	assert_true(strncmp(log, "AUTH alice pw\nGET k\n", 20) == 0);
	free(log);
}

static void test_redis_node_no_auth_without_password(void **state)
{
	struct fixture *fx = *state;

	fake_node(fx, "");
	get_ok(fx);
	assert_log_lacks(fx->fake, "AUTH");
}

static void test_redis_node_select_and_readonly_sent(void **state)
{
	struct fixture *fx = *state;
	char uri[256];

	snprintf(uri, sizeof uri, "redis://:pw@127.0.0.1:%u/7", (unsigned)fx->fake->port);
	fx->cfg = config_of(uri);
	fx->node = shmc__rnode_new(&fx->cfg.seeds[0], &fx->cfg);
	assert_non_null(fx->node);
	shmc__rnode_set_readonly(fx->node, true);
	get_ok(fx);
	char *log = fake_log(fx->fake);
	assert_true(strncmp(log, "AUTH pw\nSELECT 7\nREADONLY\nGET k\n", 32) == 0);
	free(log);
}

static void test_redis_node_auth_refused_fails_node(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "password=bad");
	struct shmc__rop op = op_get("k");

	fake_auto_answer(fx->fake, false);
	SCRIPT(fx->fake, "-WRONGPASS invalid username-password pair\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_int_equal(op.rc, SHMC_EUPLINK);
	assert_err_has(&op, "AUTH refused: WRONGPASS invalid username-password pair");
	assert_int_equal(stats_of(n).errors_connect, 1);
	assert_log_lacks(fx->fake, "GET");
}

/* ============================================ fake: bad replies */

static void test_redis_node_garbage_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[2] = {op_get("a"), op_get("b")};

	SCRIPT(fx->fake, "!!! not redis\r\n", ":1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 2), SHMC_EUPLINK);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ops[i].rc, SHMC_EUPLINK);
		assert_null(ops[i].val_out);
		assert_err_has(&ops[i], "protocol error");
	}
	assert_int_equal(stats_of(n).errors_protocol, 1);
	/* the connection was dropped: the next request makes a new one */
	wait_available(n);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 2);
}

static void test_redis_node_get_array_reply_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[2] = {op_get("k"), op_get("other")};

	/* the second op was answered well: it fails with the pipeline */
	SCRIPT(fx->fake, "*1\r\n$1\r\na\r\n", ":-1\r\n", "$1\r\nv\r\n", ":-1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 2), SHMC_EUPLINK);
	assert_int_equal(ops[0].rc, SHMC_EUPLINK);
	assert_err_has(&ops[0], "GET k: reply of type array, expected string or nil");
	assert_int_equal(ops[1].rc, SHMC_EUPLINK);
	assert_null(ops[1].val_out);
	assert_err_has(&ops[1], "GET k: reply of type array");
	assert_int_equal(stats_of(n).errors_protocol, 1);
	wait_available(n);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 2);
}

static void test_redis_node_first_op_value_freed_when_later_op_bad(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[2] = {op_get("good"), op_get("bad")};

	/* the first op's value was taken before the second failed: freed */
	SCRIPT(fx->fake, "$4\r\nvvvv\r\n", ":-1\r\n", ":5\r\n", ":-1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 2), SHMC_EUPLINK);
	assert_null(ops[0].val_out);
	assert_int_equal(ops[0].vlen_out, 0);
	assert_int_equal(ops[0].rc, SHMC_EUPLINK);
	assert_err_has(&ops[0], "GET bad: reply of type integer, expected string or nil");
}

static void test_redis_node_pttl_string_reply_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "$1\r\nv\r\n", "$2\r\n10\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "PTTL k: reply of type string, expected integer");
	assert_null(op.val_out);
	assert_int_equal(stats_of(n).errors_protocol, 1);
}

static void test_redis_node_pttl_below_minus_two_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "$1\r\nv\r\n", ":-7\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "PTTL k: -7");
}

static void test_redis_node_set_integer_reply_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_set("k", "v", 0);

	SCRIPT(fx->fake, ":1\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "SET k: reply of type integer, expected status OK");
	assert_int_equal(stats_of(n).errors_protocol, 1);
}

static void test_redis_node_set_other_status_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_set("k", "v", 0);

	SCRIPT(fx->fake, "+QUEUED\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "SET k: reply of type status ('QUEUED'), expected status OK");
}

static void test_redis_node_del_string_reply_is_protocol_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_del("k");

	SCRIPT(fx->fake, "$1\r\n1\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "DEL k: reply of type string, expected integer");
}

static void test_redis_node_binary_key_shown_escaped(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = {.kind = SHMC__ROP_GET, .key = "a\0b\n", .klen = 4};

	SCRIPT(fx->fake, "*0\r\n", ":-1\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "GET a\\x00b\\x0a: reply of type array");
}

/* ============================================ fake: error replies */

static void test_redis_node_error_reply_fails_only_its_op(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[3] = {op_get("a"), op_set("b", "x", 0), op_get("c")};

	SCRIPT(fx->fake, "$1\r\n1\r\n", ":-1\r\n",
	       "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
	       "$1\r\n3\r\n", ":-1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 3), 0);
	assert_value(&ops[0], "1", 1);
	assert_int_equal(ops[1].rc, SHMC_EUPLINK);
	assert_string_equal(ops[1].err,
			    "WRONGTYPE Operation against a key holding the wrong kind of value");
	assert_value(&ops[2], "3", 1);
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.errors_reply, 1);
	assert_int_equal(s.errors_protocol + s.errors_connect + s.errors_timeout, 0);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	/* the connection is kept */
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 1);
	ops_release(ops, 3);
}

static void test_redis_node_get_error_reply_with_pttl_error(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "-NOAUTH Authentication required.\r\n",
	       "-NOAUTH Authentication required.\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), 0);
	assert_int_equal(op.rc, SHMC_EUPLINK);
	assert_string_equal(op.err, "NOAUTH Authentication required.");
	assert_int_equal(stats_of(n).errors_reply, 1);
}

static void test_redis_node_moved_parsed(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[4] = {op_get("a"), op_set("b", "v", 0), op_del("c"), op_get("d")};

	SCRIPT(fx->fake, "-MOVED 3999 127.0.0.1:6381\r\n", ":-2\r\n",
	       "-MOVED 16383 redis-7.example.com:7000\r\n", "-MOVED 0 ::1:7001\r\n",
	       "-MOVED 12 :7002\r\n", ":-2\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 4), 0);
	assert_int_equal(ops[0].rc, SHMC__ROP_MOVED);
	assert_int_equal(ops[0].slot, 3999);
	assert_string_equal(ops[0].redirect_to.host, "127.0.0.1");
	assert_int_equal(ops[0].redirect_to.port, 6381);
	assert_string_equal(ops[0].err, "MOVED 3999 127.0.0.1:6381");
	assert_int_equal(ops[1].rc, SHMC__ROP_MOVED);
	assert_int_equal(ops[1].slot, 16383);
	assert_string_equal(ops[1].redirect_to.host, "redis-7.example.com");
	assert_int_equal(ops[1].redirect_to.port, 7000);
	assert_int_equal(ops[2].rc, SHMC__ROP_MOVED);
	assert_int_equal(ops[2].slot, 0);
	assert_string_equal(ops[2].redirect_to.host, "::1");
	assert_int_equal(ops[2].redirect_to.port, 7001);
	/* no host: the node that answered */
	assert_int_equal(ops[3].rc, SHMC__ROP_MOVED);
	assert_int_equal(ops[3].slot, 12);
	assert_string_equal(ops[3].redirect_to.host, "127.0.0.1");
	assert_int_equal(ops[3].redirect_to.port, 7002);
	assert_int_equal(stats_of(n).errors_reply, 0);
}

static void test_redis_node_ask_parsed_and_asking_sent(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, "-ASK 5000 10.1.2.3:7005\r\n", ":-2\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), 0);
	assert_int_equal(op.rc, SHMC__ROP_ASK);
	assert_int_equal(op.slot, 5000);
	assert_string_equal(op.redirect_to.host, "10.1.2.3");
	assert_int_equal(op.redirect_to.port, 7005);

	/* the retry at the named node carries ASKING before each command */
	struct shmc__rop retry[2] = {op_get("k"), op_set("s", "v", 0)};
	retry[0].asking = retry[1].asking = true;
	fake_clear_log(fx->fake);
	SCRIPT(fx->fake, "$1\r\nv\r\n", ":99\r\n", "+OK\r\n");
	assert_int_equal(shmc__rnode_exec(n, retry, 2), 0);
	assert_value(&retry[0], "v", 1);
	assert_int_equal(retry[0].pttl_ms, 99);
	assert_int_equal(retry[1].rc, 0);
	assert_log_has(fx->fake, "ASKING\nGET k\nASKING\nPTTL k\nASKING\nSET s v\n");
	ops_release(retry, 2);
}

static void test_redis_node_asking_refused_fails_op(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_del("k");

	fake_auto_answer(fx->fake, false);
	op.asking = true;
	SCRIPT(fx->fake, "-ERR This instance has cluster support disabled\r\n", ":0\r\n");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), 0);
	assert_int_equal(op.rc, SHMC_EUPLINK);
	assert_string_equal(op.err, "ERR This instance has cluster support disabled");
}

static void test_redis_node_tryagain_and_clusterdown_parsed(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[3] = {op_get("a"), op_set("b", "v", 10), op_del("c")};

	SCRIPT(fx->fake, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n", ":-2\r\n",
	       "-CLUSTERDOWN The cluster is down\r\n", "-TRYAGAIN\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 3), 0);
	assert_int_equal(ops[0].rc, SHMC__ROP_TRYAGAIN);
	assert_string_equal(ops[0].err, "TRYAGAIN Multiple keys request during rehashing of slot");
	assert_int_equal(ops[1].rc, SHMC__ROP_CLUSTERDOWN);
	assert_string_equal(ops[1].err, "CLUSTERDOWN The cluster is down");
	assert_int_equal(ops[2].rc, SHMC__ROP_TRYAGAIN);
	assert_int_equal(stats_of(n).errors_reply, 0);
}

static void test_redis_node_malformed_redirect_is_error_reply(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop ops[5] = {op_del("a"), op_del("b"), op_del("c"), op_del("d"), op_del("e")};

	SCRIPT(fx->fake, "-MOVED 16384 h:1\r\n", "-MOVED x h:1\r\n", "-ASK 1 h:0\r\n",
	       "-ASK 1 nohost\r\n", "-MOVEDX 1 h:1\r\n");
	assert_int_equal(shmc__rnode_exec(n, ops, 5), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(ops[i].rc, SHMC_EUPLINK);
		assert_err_has(&ops[i], "malformed redirect: ");
	}
	assert_int_equal(ops[4].rc, SHMC_EUPLINK);
	assert_string_equal(ops[4].err, "MOVEDX 1 h:1");
	assert_int_equal(stats_of(n).errors_reply, 5);
}

/* ============================================ fake: connection failures */

static void test_redis_node_stall_times_out(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "command_timeout_ms=150");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, STALL, STALL);
	uint64_t t0 = mono_ms();
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	uint64_t took = mono_ms() - t0;
	assert_true(took >= 145);
	if (took > 150 + 350)
		fail_msg("a stalled exchange took %llu ms with a 150 ms timeout",
			 (unsigned long long)took);
	assert_err_has(&op, "timed out after 150 ms");
	assert_int_equal(stats_of(n).errors_timeout, 1);
	/* the late reply must not be taken for the next request's */
	wait_available(n);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 2);
}

static void test_redis_node_stall_mid_reply_times_out(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "command_timeout_ms=100");
	struct shmc__rop op = op_get("k");

	/* half a bulk string, then silence */
	SCRIPT(fx->fake, "$10\r\nabc", STALL);
	uint64_t t0 = mono_ms();
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	uint64_t took = mono_ms() - t0;
	assert_true(took >= 95 && took <= 100 + 350);
	assert_err_has(&op, "timed out after 100 ms");
}

static void test_redis_node_dribbling_server_times_out(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "command_timeout_ms=100");
	struct shmc__rop op = op_get("k");

	/* every read gets a byte well within the timeout: only a deadline on
	 * the whole exchange stops it */
	SCRIPT(fx->fake, DRIBBLE "$20\r\naaaaaaaaaaaaaaaaaaaa\r\n", ":-1\r\n");
	uint64_t t0 = mono_ms();
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	uint64_t took = mono_ms() - t0;
	if (took < 95 || took > 100 + 350)
		fail_msg("took %llu ms with a 100 ms timeout", (unsigned long long)took);
	assert_err_has(&op, "timed out after 100 ms");
}

static void test_redis_node_close_mid_reply_fails(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	SCRIPT(fx->fake, CLOSE_AFTER "$10\r\nabc");
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "connection closed by the server");
	assert_int_equal(stats_of(n).errors_connect, 1);
	assert_null(op.val_out);
}

static void test_redis_node_close_before_reply_fails(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_set("k", "v", 0);

	SCRIPT(fx->fake, CLOSE);
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "connection closed by the server");
}

static void test_redis_node_connection_refused(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct shmc__rop op = op_get("k");

	fake_set_listening(fx->fake, false);
	uint64_t t0 = mono_ms();
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_true(mono_ms() - t0 < 150);
	assert_err_has(&op, "connect: Connection refused");
	assert_err_has(&op, "127.0.0.1:");
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.errors_connect, 1);
	assert_int_equal(s.calls, 0);
}

static void test_redis_node_connect_timeout(void **state)
{
	(void)state;
	/* a listener whose accept queue is full: the SYN goes unanswered */
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), filler[4];
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 0), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	for (int i = 0; i < 4; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		(void)connect(filler[i], (struct sockaddr *)&a, sizeof a);
	}
	sleep_ms(50);
	char uri[128];
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%u?connect_timeout_ms=120",
		 (unsigned)ntohs(a.sin_port));
	struct shmc__uplink_config cfg = config_of(uri);
	struct shmc__rnode *n = shmc__rnode_new(&cfg.seeds[0], &cfg);
	struct shmc__rop op = op_get("k");
	uint64_t t0 = mono_ms();
	int rc = shmc__rnode_exec(n, &op, 1);
	uint64_t took = mono_ms() - t0;
	struct shmc__rnode_stats s = stats_of(n);
	shmc__rnode_free(n);
	for (int i = 0; i < 4; i++)
		close(filler[i]);
	close(l);
	assert_int_equal(rc, SHMC_EUPLINK);
	assert_err_has(&op, "connect: timed out after 120 ms");
	assert_true(took >= 115 && took <= 120 + 350);
	assert_int_equal(s.errors_connect, 1);
}

static void test_redis_node_reset_during_write_survives_sigpipe(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "command_timeout_ms=2000");
	size_t big = 32u << 20;
	char *val = malloc(big + 1);
	struct sigaction dfl = {.sa_handler = SIG_DFL}, old;

	assert_non_null(val);
	memset(val, 'x', big);
	val[big] = '\0';
	/* SIGPIPE's default action kills: it must never reach us */
	sigaction(SIGPIPE, &dfl, &old);
	pthread_mutex_lock(&fx->fake->mu);
	fx->fake->close_after_bytes = 1u << 20;
	pthread_mutex_unlock(&fx->fake->mu);
	struct shmc__rop op = {
		.kind = SHMC__ROP_SET, .key = "k", .klen = 1, .val = val, .vlen = big};
	int rc = shmc__rnode_exec(n, &op, 1);
	sigaction(SIGPIPE, &old, NULL);
	free(val);
	assert_int_equal(rc, SHMC_EUPLINK);
	assert_int_equal(op.rc, SHMC_EUPLINK);
	assert_err_has(&op, "connection lost");
	sigset_t pending;
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
}

/* ============================================ fake: back-off and breaker */

static void test_redis_node_backoff_after_failure(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=100");
	struct shmc__rop op = op_get("k");

	fake_set_listening(fx->fake, false);
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	fake_set_listening(fx->fake, true);
	/* within the back-off: refused without an attempt */
	assert_false(shmc__rnode_available(n));
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "reconnect back-off");
	assert_err_has(&op, "Connection refused");
	assert_int_equal(fake_accepts(fx->fake), 0);
	assert_int_equal(stats_of(n).errors_connect, 1);
	assert_int_equal(stats_of(n).fast_fails, 1);
	/* it ends (50 ms for the first failure) */
	uint64_t t0 = mono_ms();
	wait_available(n);
	assert_true(mono_ms() - t0 <= 50 + 100);
	get_ok(fx);
	assert_int_equal(fake_accepts(fx->fake), 1);
}

static void test_redis_node_backoff_doubles(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=100");
	struct shmc__rop op = op_get("k");
	uint64_t waited[4];

	fake_set_listening(fx->fake, false);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
		assert_err_has(&op, "Connection refused");
		uint64_t t0 = mono_ms();
		wait_available(n);
		waited[i] = mono_ms() - t0;
	}
	/* 50, 100, 200, 400 ms */
	for (int i = 0; i < 4; i++) {
		uint64_t want = 50u << i;
		if (waited[i] + 5 < want || waited[i] > want + 100)
			fail_msg("back-off %d lasted %llu ms, expected about %llu", i,
				 (unsigned long long)waited[i], (unsigned long long)want);
	}
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
}

/* Fail the node (garbage replies) until its breaker opens. */
static void open_breaker(struct fixture *fx, unsigned failures)
{
	struct shmc__rnode *n = fx->node;
	struct shmc__rop op = op_get("k");

	fake_otherwise(fx->fake, "!garbage\r\n");
	for (unsigned i = 0; i < failures; i++) {
		assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
		wait_available(n);
		assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
		assert_err_has(&op, "protocol error");
	}
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_OPEN);
	fake_otherwise(fx->fake, NULL);
}

static void test_redis_node_breaker_opens_after_n_failures(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=3&breaker_open_ms=5000");

	open_breaker(fx, 3);
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.breaker_opens, 1);
	assert_int_equal(s.errors_protocol, 3);
	assert_int_equal(fake_accepts(fx->fake), 3);
	assert_false(shmc__rnode_available(n));
}

static void test_redis_node_breaker_success_resets_count(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=2&breaker_open_ms=5000");
	struct shmc__rop op = op_get("k");

	/* failure, success, failure: never two in a row */
	for (int i = 0; i < 3; i++) {
		SCRIPT(fx->fake, "!x\r\n");
		wait_available(n);
		assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
		wait_available(n);
		get_ok(fx);
	}
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	assert_int_equal(stats_of(n).breaker_opens, 0);
}

static void test_redis_node_breaker_open_fails_fast(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=3&breaker_open_ms=60000");
	enum { EXECS = 10000, BATCH = 4 };
	struct shmc__rop ops[BATCH] = {op_get("a"), op_set("b", "v", 0), op_del("c"), op_get("d")};

	open_breaker(fx, 3);
	fake_clear_log(fx->fake);
	unsigned accepts = fake_accepts(fx->fake);
	struct shmc__rnode_stats before = stats_of(n);
	uint64_t t0 = mono_us();
	for (int i = 0; i < EXECS; i++) {
		assert_int_equal(shmc__rnode_exec(n, ops, BATCH), SHMC_EUPLINK);
		assert_int_equal(ops[0].rc, SHMC_EUPLINK);
	}
	uint64_t took_us = mono_us() - t0;
	for (int i = 0; i < BATCH; i++) {
		assert_int_equal(ops[i].rc, SHMC_EUPLINK);
		assert_err_has(&ops[i], "breaker open");
	}
	/* no connection attempt, nothing sent */
	assert_int_equal(fake_accepts(fx->fake), accepts);
	assert_log_lacks(fx->fake, "GET");
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.fast_fails - before.fast_fails, (uint64_t)EXECS * BATCH);
	assert_int_equal(s.calls, before.calls);
	assert_int_equal(s.errors_connect, before.errors_connect);
	/* a refusal costs no system call: well under a microsecond or two,
	 * against tens of microseconds for a loopback connect */
	if (!under_valgrind() && took_us > (uint64_t)EXECS * 10)
		fail_msg("%d fast fails took %llu us", EXECS, (unsigned long long)took_us);
	print_message("fast fail: %.3f us per exec of %d ops\n", (double)took_us / EXECS, BATCH);
	/* so does a command */
	char err[160];
	assert_int_equal(shmc__rnode_command(n, 1, (const char *[]){"PING"}, (const size_t[]){4},
					     NULL, NULL, err, sizeof err),
			 SHMC_EUPLINK);
	assert_non_null(strstr(err, "breaker open"));
	assert_int_equal(fake_accepts(fx->fake), accepts);
}

static void test_redis_node_breaker_half_open_probe_closes(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=2&breaker_open_ms=150");

	open_breaker(fx, 2);
	uint64_t opened = mono_ms();
	assert_false(shmc__rnode_available(n));
	while (shmc__rnode_breaker(n) == SHMC__BREAKER_OPEN) {
		assert_true(mono_ms() - opened < 2000);
		sleep_ms(2);
	}
	assert_true(mono_ms() - opened >= 145);
	/* the open period is over: half-open, one probe may go */
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_HALF_OPEN);
	assert_true(shmc__rnode_available(n));
	/* the server is back; the probe (this exec) closes the breaker */
	get_ok(fx);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	assert_true(shmc__rnode_available(n));
	get_ok(fx);
	assert_int_equal(stats_of(n).breaker_opens, 1);
}

static void test_redis_node_breaker_failed_probe_reopens(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=2&breaker_open_ms=100");
	struct shmc__rop op = op_get("k");

	open_breaker(fx, 2);
	fake_set_listening(fx->fake, false);
	while (shmc__rnode_breaker(n) != SHMC__BREAKER_HALF_OPEN)
		sleep_ms(2);
	/* one failure is enough to open it again */
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "Connection refused");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_OPEN);
	assert_int_equal(stats_of(n).breaker_opens, 2);
	assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
	assert_err_has(&op, "breaker open");
	/* and the next probe, once the server is back, closes it */
	fake_set_listening(fx->fake, true);
	while (shmc__rnode_breaker(n) != SHMC__BREAKER_HALF_OPEN)
		sleep_ms(2);
	get_ok(fx);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
}

static void test_redis_node_breaker_opens_on_timeouts(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n =
		fake_node(fx, "breaker_failures=2&breaker_open_ms=5000&command_timeout_ms=30");
	struct shmc__rop op = op_get("k");

	for (int i = 0; i < 2; i++) {
		SCRIPT(fx->fake, STALL, STALL);
		wait_available(n);
		assert_int_equal(shmc__rnode_exec(n, &op, 1), SHMC_EUPLINK);
		assert_err_has(&op, "timed out after 30 ms");
	}
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_OPEN);
	assert_int_equal(stats_of(n).errors_timeout, 2);
}

static void test_redis_node_error_replies_never_open_breaker(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "breaker_failures=1");
	struct shmc__rop op = op_del("k");

	fake_otherwise(fx->fake, "-ERR nope\r\n");
	for (int i = 0; i < 20; i++) {
		assert_int_equal(shmc__rnode_exec(n, &op, 1), 0);
		assert_int_equal(op.rc, SHMC_EUPLINK);
	}
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	assert_int_equal(stats_of(n).errors_reply, 20);
}

/* ============================================ fake: health */

static void test_redis_node_health_pings_after_interval(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "health_interval_ms=100");

	get_ok(fx);
	fake_clear_log(fx->fake);
	shmc__rnode_health(n); /* just exchanged: nothing due */
	sleep_ms(20);
	assert_log_lacks(fx->fake, "PING");
	sleep_ms(100);
	shmc__rnode_health(n);
	assert_log_has(fx->fake, "PING\n");
	fake_clear_log(fx->fake);
	shmc__rnode_health(n); /* the PING was an exchange */
	sleep_ms(20);
	assert_log_lacks(fx->fake, "PING");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
}

static void test_redis_node_health_failure_feeds_breaker(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "health_interval_ms=1&breaker_failures=2");

	fake_auto_answer(fx->fake, false);
	fake_otherwise(fx->fake, "-LOADING Redis is loading the dataset in memory\r\n");
	shmc__rnode_health(n);
	assert_int_equal(stats_of(n).errors_reply, 1);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	wait_available(n);
	shmc__rnode_health(n);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_OPEN);
}

static void test_redis_node_health_is_half_open_probe(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n =
		fake_node(fx, "breaker_failures=1&breaker_open_ms=100&health_interval_ms=600000");

	open_breaker(fx, 1);
	unsigned accepts = fake_accepts(fx->fake);
	fake_clear_log(fx->fake);
	shmc__rnode_health(n); /* still open: no probe */
	assert_int_equal(fake_accepts(fx->fake), accepts);
	while (shmc__rnode_breaker(n) != SHMC__BREAKER_HALF_OPEN)
		sleep_ms(2);
	shmc__rnode_health(n);
	assert_log_has(fx->fake, "PING\n");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	get_ok(fx);
}

/* ============================================ fake: command */

struct seen_reply {
	int type;
	long long integer;
	char str[64];
};

static int take_reply(void *arg, const struct redisReply *r)
{
	struct seen_reply *s = arg;

	s->type = r->type;
	s->integer = r->integer;
	snprintf(s->str, sizeof s->str, "%.*s", r->str ? (int)r->len : 0, r->str ? r->str : "");
	return r->type == REDIS_REPLY_ARRAY ? 0 : SHMC_EINVAL;
}

static void test_redis_node_command_hands_reply_to_fn(void **state)
{
	struct fixture *fx = *state;
	struct shmc__rnode *n = fake_node(fx, "");
	struct seen_reply seen = {0};
	char err[160];
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	const size_t argvlen[2] = {7, 5};

	SCRIPT(fx->fake, "*0\r\n", ":7\r\n", "-ERR unknown command\r\n", "!junk\r\n");
	assert_int_equal(
		shmc__rnode_command(n, 2, argv, argvlen, take_reply, &seen, err, sizeof err), 0);
	assert_int_equal(seen.type, REDIS_REPLY_ARRAY);
	assert_log_has(fx->fake, "CLUSTER SLOTS\n");
	/* fn's verdict is the result */
	assert_int_equal(
		shmc__rnode_command(n, 2, argv, argvlen, take_reply, &seen, err, sizeof err),
		SHMC_EINVAL);
	assert_int_equal(seen.integer, 7);
	/* an error reply: fn is not called */
	seen.type = 0;
	assert_int_equal(
		shmc__rnode_command(n, 2, argv, argvlen, take_reply, &seen, err, sizeof err),
		SHMC_EUPLINK);
	assert_int_equal(seen.type, 0);
	assert_string_equal(err, "ERR unknown command");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	/* garbage: a failure of the node */
	assert_int_equal(
		shmc__rnode_command(n, 2, argv, argvlen, take_reply, &seen, err, sizeof err),
		SHMC_EUPLINK);
	assert_non_null(strstr(err, "protocol error"));
	assert_int_equal(stats_of(n).errors_protocol, 1);
}

/* ======================================================= real redis */

struct redis_proc {
	pid_t pid;
	char dir[64];
	char sock[128];
	char logpath[128];
};

/* redis-server in PATH, into buf; false if there is none. */
static bool find_redis_server(char *buf, size_t cap)
{
	const char *path = getenv("PATH");
	char *copy = strdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
	bool found = false;

	for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(buf, cap, "%s/redis-server", *dir ? dir : ".");
		found = access(buf, X_OK) == 0;
	}
	free(copy);
	return found;
}

static void print_log_tail(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		print_message("  redis: %s", line);
	fclose(f);
}

static void redis_stop(struct redis_proc *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGKILL);
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
		r->pid = 0;
	}
	if (r->dir[0]) {
		unlink(r->sock);
		unlink(r->logpath);
		if (rmdir(r->dir) < 0)
			print_message("warning: %s left behind: %s\n", r->dir, strerror(errno));
		r->dir[0] = '\0';
	}
}

/* Answers PING on its socket. */
static bool redis_answers(const char *sock)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectUnixWithTimeout(sock, tv);
	bool ok = false;

	if (c && !c->err) {
		redisReply *r = redisCommand(c, "PING");
		/* with requirepass, a NOAUTH error also says it is up */
		ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
		if (r)
			freeReplyObject(r);
	}
	if (c)
		redisFree(c);
	return ok;
}

/* Start redis-server on a unix socket in a fresh directory; wait until it
 * answers. requirepass may be NULL. Returns 0 or -1 (with a message). */
static int redis_start(struct redis_proc *r, const char *requirepass)
{
	char exe[4096];

	memset(r, 0, sizeof *r);
	if (!find_redis_server(exe, sizeof exe)) {
		print_error("redis-server is not in PATH (%s); scripts/bootstrap installs it: "
			    "its absence is a defect of this machine, not a reason to skip\n",
			    getenv("PATH") ? getenv("PATH") : "");
		return -1;
	}
	snprintf(r->dir, sizeof r->dir, "/tmp/shmc-rnode.XXXXXX");
	if (!mkdtemp(r->dir)) {
		print_error("mkdtemp: %s\n", strerror(errno));
		r->dir[0] = '\0';
		return -1;
	}
	snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
	snprintf(r->logpath, sizeof r->logpath, "%s/redis.log", r->dir);
	const char *argv[20] = {exe,	"--port",	"0",  "--unixsocket",	  r->sock, "--save",
				"",	"--appendonly", "no", "--daemonize",	  "no",	   "--dir",
				r->dir, "--logfile",	"",   "--unixsocketperm", "700"};
	int argc = 17;
	if (requirepass) {
		argv[argc++] = "--requirepass";
		argv[argc++] = requirepass;
	}
	argv[argc] = NULL;
	pid_t parent = getpid();
	r->pid = fork();
	if (r->pid < 0) {
		print_error("fork: %s\n", strerror(errno));
		redis_stop(r);
		return -1;
	}
	if (r->pid == 0) {
		/* if this test dies without its teardown, so does the server */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(r->logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	uint64_t until = mono_ms() + 10000;
	while (!redis_answers(r->sock)) {
		int status;
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			r->pid = 0;
			print_error("redis-server exited (status 0x%x) before answering\n", status);
			print_log_tail(r->logpath);
			redis_stop(r);
			return -1;
		}
		if (mono_ms() > until) {
			print_error("redis-server did not answer within 10 s\n");
			print_log_tail(r->logpath);
			redis_stop(r);
			return -1;
		}
		sleep_ms(10);
	}
	return 0;
}

struct real {
	struct redis_proc redis;
	struct shmc__rnode *node;
	struct shmc__rnode *node2;
	struct shmc__uplink_config cfg;
};

static struct real *real_of(void **state)
{
	return *state;
}

/* A node on the server, with options (a query string, may be ""). */
static struct shmc__rnode *real_node(struct real *rs, const char *options)
{
	char uri[512];

	snprintf(uri, sizeof uri,
		 "redis+unix://%s?command_timeout_ms=5000&connect_timeout_ms=5000%s%s",
		 rs->redis.sock, *options ? "&" : "", options);
	rs->cfg = config_of(uri);
	struct shmc__rnode *n = shmc__rnode_new(&rs->cfg.seeds[0], &rs->cfg);
	assert_non_null(n);
	return n;
}

static int real_setup_with(void **state, const char *requirepass)
{
	struct real *rs = calloc(1, sizeof *rs);

	if (!rs)
		return -1;
	if (redis_start(&rs->redis, requirepass)) {
		free(rs); /* redis_start cleaned up after itself */
		return -1;
	}
	*state = rs;
	return 0;
}

static int real_setup(void **state)
{
	return real_setup_with(state, NULL);
}

static int real_setup_auth(void **state)
{
	return real_setup_with(state, "hunter2");
}

static int real_teardown(void **state)
{
	struct real *rs = *state;

	if (!rs)
		return 0;
	shmc__rnode_free(rs->node);
	shmc__rnode_free(rs->node2);
	redis_stop(&rs->redis);
	free(rs);
	*state = NULL;
	return 0;
}

static void test_redis_node_real_set_get_del_round_trip(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	struct shmc__rop set = op_set("rt:key", "value-1", 0);
	struct shmc__rop get = op_get("rt:key"), del = op_del("rt:key");

	assert_int_equal(shmc__rnode_exec(n, &set, 1), 0);
	assert_int_equal(set.rc, 0);
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_value(&get, "value-1", 7);
	assert_int_equal(get.pttl_ms, -1);
	ops_release(&get, 1);
	assert_int_equal(shmc__rnode_exec(n, &del, 1), 0);
	assert_int_equal(del.rc, 0);
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_int_equal(get.rc, SHMC_ENOTFOUND);
	assert_null(get.val_out);
	/* DEL of an absent key is fine too */
	assert_int_equal(shmc__rnode_exec(n, &del, 1), 0);
	assert_int_equal(del.rc, 0);
	/* mixed in one pipeline, applied in order */
	struct shmc__rop mix[4] = {op_set("rt:a", "1", 0), op_get("rt:a"), op_del("rt:a"),
				   op_get("rt:a")};
	assert_int_equal(shmc__rnode_exec(n, mix, 4), 0);
	assert_int_equal(mix[0].rc, 0);
	assert_value(&mix[1], "1", 1);
	assert_int_equal(mix[2].rc, 0);
	assert_int_equal(mix[3].rc, SHMC_ENOTFOUND);
	ops_release(mix, 4);
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.errors_connect + s.errors_timeout + s.errors_protocol + s.errors_reply,
			 0);
}

static void test_redis_node_real_pttl_reported(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	struct shmc__rop set = op_set("ttl:key", "v", 60000), get = op_get("ttl:key");

	assert_int_equal(shmc__rnode_exec(n, &set, 1), 0);
	assert_int_equal(set.rc, 0);
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_value(&get, "v", 1);
	assert_true(get.pttl_ms > 55000 && get.pttl_ms <= 60000);
	ops_release(&get, 1);

	/* a key that expires is gone */
	struct shmc__rop brief = op_set("ttl:brief", "v", 30);
	assert_int_equal(shmc__rnode_exec(n, &brief, 1), 0);
	sleep_ms(80);
	get = op_get("ttl:brief");
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_int_equal(get.rc, SHMC_ENOTFOUND);
}

static void test_redis_node_real_binary_keys_and_values(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	static const char key[] = "bin\0key\r\n\xff";
	char val[1024];

	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (char)(i * 7); /* NULs, CR, LF, high bytes */
	struct shmc__rop set = {.kind = SHMC__ROP_SET,
				.key = key,
				.klen = sizeof key - 1,
				.val = val,
				.vlen = sizeof val,
				.px_ms = 100000};
	struct shmc__rop get = {.kind = SHMC__ROP_GET, .key = key, .klen = sizeof key - 1};
	struct shmc__rop other = {.kind = SHMC__ROP_GET, .key = "bin", .klen = 3};

	assert_int_equal(shmc__rnode_exec(n, &set, 1), 0);
	assert_int_equal(set.rc, 0);
	struct shmc__rop both[2] = {get, other};
	assert_int_equal(shmc__rnode_exec(n, both, 2), 0);
	assert_value(&both[0], val, sizeof val);
	assert_true(both[0].pttl_ms > 0);
	/* the key is not cut at its NUL */
	assert_int_equal(both[1].rc, SHMC_ENOTFOUND);
	ops_release(both, 2);
	/* an empty value is a value */
	struct shmc__rop set_empty = {
		.kind = SHMC__ROP_SET, .key = "bin:empty", .klen = 9, .val = "", .vlen = 0};
	struct shmc__rop get_empty = op_get("bin:empty");
	assert_int_equal(shmc__rnode_exec(n, &set_empty, 1), 0);
	assert_int_equal(shmc__rnode_exec(n, &get_empty, 1), 0);
	assert_int_equal(get_empty.rc, 0);
	assert_int_equal(get_empty.vlen_out, 0);
	ops_release(&get_empty, 1);
}

/* GET keys of every length class the request formatting treats apart
 * (one to four length digits, at and past the longest key formatted
 * inline) in one pipeline, each after its SET: every value comes back. */
static void test_redis_node_real_get_keys_of_every_length(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	static const size_t lens[] = {1, 9, 10, 99, 100, 199, 200, 201, 999, 1000, 4000};
	enum { NLENS = sizeof lens / sizeof lens[0] };
	static char keys[NLENS][4000], vals[NLENS][32];
	struct shmc__rop ops[2 * NLENS];

	for (size_t i = 0; i < NLENS; i++) {
		for (size_t j = 0; j < lens[i]; j++)
			keys[i][j] = (char)(j % 3 ? 'a' + (i + j) % 26 : '\r'); /* CRs inside */
		snprintf(vals[i], sizeof vals[i], "len-%zu", lens[i]);
		ops[2 * i] = (struct shmc__rop){.kind = SHMC__ROP_SET,
						.key = keys[i],
						.klen = lens[i],
						.val = vals[i],
						.vlen = strlen(vals[i]),
						.px_ms = 100000};
		ops[2 * i + 1] =
			(struct shmc__rop){.kind = SHMC__ROP_GET, .key = keys[i], .klen = lens[i]};
	}
	assert_int_equal(shmc__rnode_exec(n, ops, 2 * NLENS), 0);
	for (size_t i = 0; i < NLENS; i++) {
		assert_int_equal(ops[2 * i].rc, 0);
		assert_value(&ops[2 * i + 1], vals[i], strlen(vals[i]));
		assert_true(ops[2 * i + 1].pttl_ms > 0 && ops[2 * i + 1].pttl_ms <= 100000);
	}
	ops_release(ops, 2 * NLENS);
}

static void test_redis_node_real_pipeline_of_1000_gets(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	enum { N = 1000 };
	static char keys[N][24], vals[N][40];
	static struct shmc__rop ops[N];

	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "pipe:%d", i);
		snprintf(vals[i], sizeof vals[i], "value-%d-%0*d", i, i % 17, 0);
		ops[i] = op_set(keys[i], vals[i], i % 2 ? 0 : 100000);
	}
	/* every third key is left absent */
	for (int i = 0; i < N; i += 3)
		ops[i] = op_del(keys[i]);
	assert_int_equal(shmc__rnode_exec(n, ops, N), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(ops[i].rc, 0);
	for (int i = 0; i < N; i++)
		ops[i] = op_get(keys[i]);
	uint64_t calls = stats_of(n).calls;
	assert_int_equal(shmc__rnode_exec(n, ops, N), 0);
	assert_int_equal(stats_of(n).calls, calls + 1);
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0) {
			assert_int_equal(ops[i].rc, SHMC_ENOTFOUND);
			continue;
		}
		assert_value(&ops[i], vals[i], strlen(vals[i]));
		if (i % 2)
			assert_int_equal(ops[i].pttl_ms, -1);
		else
			assert_true(ops[i].pttl_ms > 0 && ops[i].pttl_ms <= 100000);
	}
	ops_release(ops, N);
	assert_int_equal(stats_of(n).ops, 2 * N);
}

static int list_len(void *arg, const struct redisReply *r)
{
	*(long long *)arg = r->integer;
	return r->type == REDIS_REPLY_INTEGER ? 0 : SHMC_EINVAL;
}

static void test_redis_node_real_error_reply_keeps_node(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	const char *argv[3] = {"RPUSH", "err:list", "x"};
	const size_t argvlen[3] = {5, 8, 1};
	long long len = 0;
	char err[160];

	assert_int_equal(shmc__rnode_command(n, 3, argv, argvlen, list_len, &len, err, sizeof err),
			 0);
	assert_int_equal(len, 1);
	struct shmc__rop ops[2] = {op_get("err:list"), op_get("err:absent")};
	assert_int_equal(shmc__rnode_exec(n, ops, 2), 0);
	assert_int_equal(ops[0].rc, SHMC_EUPLINK);
	assert_err_has(&ops[0], "WRONGTYPE");
	assert_int_equal(ops[1].rc, SHMC_ENOTFOUND);
	/* ASKING on a server without cluster support: an error reply */
	struct shmc__rop ask = op_get("err:absent");
	ask.asking = true;
	assert_int_equal(shmc__rnode_exec(n, &ask, 1), 0);
	assert_int_equal(ask.rc, SHMC_EUPLINK);
	assert_err_has(&ask, "cluster support disabled");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	assert_int_equal(stats_of(n).errors_reply, 2);
}

static void test_redis_node_real_select_db(void **state)
{
	struct real *rs = real_of(state);
	char uri[256];

	rs->node = real_node(rs, "");
	snprintf(uri, sizeof uri, "redis+unix://%s?command_timeout_ms=5000", rs->redis.sock);
	/* db is for redis:// only; a node takes it from the configuration */
	struct shmc__uplink_config cfg = config_of(uri);
	cfg.db = 3;
	rs->node2 = shmc__rnode_new(&cfg.seeds[0], &cfg);
	struct shmc__rop set = op_set("db:key", "in-3", 0), get = op_get("db:key");
	assert_int_equal(shmc__rnode_exec(rs->node2, &set, 1), 0);
	assert_int_equal(set.rc, 0);
	assert_int_equal(shmc__rnode_exec(rs->node, &get, 1), 0);
	assert_int_equal(get.rc, SHMC_ENOTFOUND);
	assert_int_equal(shmc__rnode_exec(rs->node2, &get, 1), 0);
	assert_value(&get, "in-3", 4);
	ops_release(&get, 1);
}

static void test_redis_node_real_server_gone_then_back(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "breaker_failures=1&breaker_open_ms=50");
	struct shmc__rop get = op_get("gone:key");

	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	redis_stop(&rs->redis);
	assert_int_equal(shmc__rnode_exec(n, &get, 1), SHMC_EUPLINK);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_OPEN);
	assert_true(strstr(get.err, "connect") || strstr(get.err, "closed"));
	assert_int_equal(redis_start(&rs->redis, NULL), 0);
	shmc__rnode_free(n);
	/* the new server has a new socket path: a new node */
	n = rs->node = real_node(rs, "breaker_failures=1&breaker_open_ms=50");
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_int_equal(get.rc, SHMC_ENOTFOUND);
}

static void test_redis_node_real_requirepass_auth(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "password=hunter2");
	struct shmc__rop set = op_set("auth:key", "secret-value", 0), get = op_get("auth:key");

	assert_int_equal(shmc__rnode_exec(n, &set, 1), 0);
	assert_int_equal(set.rc, 0);
	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_value(&get, "secret-value", 12);
	ops_release(&get, 1);

	/* AUTH user password (Redis 6 ACL: the default user) */
	rs->node2 = real_node(rs, "user=default&password=hunter2");
	assert_int_equal(shmc__rnode_exec(rs->node2, &get, 1), 0);
	assert_value(&get, "secret-value", 12);
	ops_release(&get, 1);
}

static void test_redis_node_real_requirepass_without_auth_is_error_reply(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "");
	struct shmc__rop get = op_get("auth:key");

	assert_int_equal(shmc__rnode_exec(n, &get, 1), 0);
	assert_int_equal(get.rc, SHMC_EUPLINK);
	assert_err_has(&get, "NOAUTH");
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
}

static void test_redis_node_real_wrong_password_fails_node(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "password=wrong");
	struct shmc__rop get = op_get("auth:key");

	assert_int_equal(shmc__rnode_exec(n, &get, 1), SHMC_EUPLINK);
	assert_int_equal(get.rc, SHMC_EUPLINK);
	assert_err_has(&get, "AUTH refused: WRONGPASS");
	assert_int_equal(stats_of(n).errors_connect, 1);
}

static void test_redis_node_real_health_ping(void **state)
{
	struct real *rs = real_of(state);
	struct shmc__rnode *n = rs->node = real_node(rs, "health_interval_ms=1");

	shmc__rnode_health(n); /* connects and PINGs */
	struct shmc__rnode_stats s = stats_of(n);
	assert_int_equal(s.errors_connect + s.errors_timeout + s.errors_protocol + s.errors_reply,
			 0);
	assert_int_equal(shmc__rnode_breaker(n), SHMC__BREAKER_CLOSED);
	assert_string_equal(shmc__rnode_endpoint(n)->host, rs->redis.sock);
	assert_int_equal(shmc__rnode_endpoint(n)->port, 0);
}

#define FAKE_TEST(fn) cmocka_unit_test_setup_teardown(fn, fake_setup, fake_teardown)
#define REAL_TEST(fn) cmocka_unit_test_setup_teardown(fn, real_setup, real_teardown)
#define AUTH_TEST(fn) cmocka_unit_test_setup_teardown(fn, real_setup_auth, real_teardown)

int main(void)
{
	const struct CMUnitTest fake_tests[] = {
		FAKE_TEST(test_redis_node_get_value_and_pttl),
		FAKE_TEST(test_redis_node_get_vanished_between_get_and_pttl_is_absent),
		FAKE_TEST(test_redis_node_set_and_del_commands_sent),
		FAKE_TEST(test_redis_node_connects_lazily_once),
		FAKE_TEST(test_redis_node_idle_close_reconnects_silently),
		FAKE_TEST(test_redis_node_empty_batch_does_nothing),
		FAKE_TEST(test_redis_node_auth_password_only_sent),
		FAKE_TEST(test_redis_node_auth_user_and_password_sent),
		FAKE_TEST(test_redis_node_no_auth_without_password),
		FAKE_TEST(test_redis_node_select_and_readonly_sent),
		FAKE_TEST(test_redis_node_auth_refused_fails_node),
		FAKE_TEST(test_redis_node_garbage_is_protocol_error),
		FAKE_TEST(test_redis_node_get_array_reply_is_protocol_error),
		FAKE_TEST(test_redis_node_first_op_value_freed_when_later_op_bad),
		FAKE_TEST(test_redis_node_pttl_string_reply_is_protocol_error),
		FAKE_TEST(test_redis_node_pttl_below_minus_two_is_protocol_error),
		FAKE_TEST(test_redis_node_set_integer_reply_is_protocol_error),
		FAKE_TEST(test_redis_node_set_other_status_is_protocol_error),
		FAKE_TEST(test_redis_node_del_string_reply_is_protocol_error),
		FAKE_TEST(test_redis_node_binary_key_shown_escaped),
		FAKE_TEST(test_redis_node_error_reply_fails_only_its_op),
		FAKE_TEST(test_redis_node_get_error_reply_with_pttl_error),
		FAKE_TEST(test_redis_node_moved_parsed),
		FAKE_TEST(test_redis_node_ask_parsed_and_asking_sent),
		FAKE_TEST(test_redis_node_asking_refused_fails_op),
		FAKE_TEST(test_redis_node_tryagain_and_clusterdown_parsed),
		FAKE_TEST(test_redis_node_malformed_redirect_is_error_reply),
		FAKE_TEST(test_redis_node_stall_times_out),
		FAKE_TEST(test_redis_node_stall_mid_reply_times_out),
		FAKE_TEST(test_redis_node_dribbling_server_times_out),
		FAKE_TEST(test_redis_node_close_mid_reply_fails),
		FAKE_TEST(test_redis_node_close_before_reply_fails),
		FAKE_TEST(test_redis_node_connection_refused),
		cmocka_unit_test(test_redis_node_connect_timeout),
		FAKE_TEST(test_redis_node_reset_during_write_survives_sigpipe),
		FAKE_TEST(test_redis_node_backoff_after_failure),
		FAKE_TEST(test_redis_node_backoff_doubles),
		FAKE_TEST(test_redis_node_breaker_opens_after_n_failures),
		FAKE_TEST(test_redis_node_breaker_success_resets_count),
		FAKE_TEST(test_redis_node_breaker_open_fails_fast),
		FAKE_TEST(test_redis_node_breaker_half_open_probe_closes),
		FAKE_TEST(test_redis_node_breaker_failed_probe_reopens),
		FAKE_TEST(test_redis_node_breaker_opens_on_timeouts),
		FAKE_TEST(test_redis_node_error_replies_never_open_breaker),
		FAKE_TEST(test_redis_node_health_pings_after_interval),
		FAKE_TEST(test_redis_node_health_failure_feeds_breaker),
		FAKE_TEST(test_redis_node_health_is_half_open_probe),
		FAKE_TEST(test_redis_node_command_hands_reply_to_fn),
	};
	const struct CMUnitTest real_tests[] = {
		REAL_TEST(test_redis_node_real_set_get_del_round_trip),
		REAL_TEST(test_redis_node_real_pttl_reported),
		REAL_TEST(test_redis_node_real_binary_keys_and_values),
		REAL_TEST(test_redis_node_real_get_keys_of_every_length),
		REAL_TEST(test_redis_node_real_pipeline_of_1000_gets),
		REAL_TEST(test_redis_node_real_error_reply_keeps_node),
		REAL_TEST(test_redis_node_real_select_db),
		REAL_TEST(test_redis_node_real_server_gone_then_back),
		REAL_TEST(test_redis_node_real_health_ping),
		AUTH_TEST(test_redis_node_real_requirepass_auth),
		AUTH_TEST(test_redis_node_real_requirepass_without_auth_is_error_reply),
		AUTH_TEST(test_redis_node_real_wrong_password_fails_node),
	};
	int failed =
		cmocka_run_group_tests_name("redis_node (fake server)", fake_tests, NULL, NULL);

	failed += cmocka_run_group_tests_name("redis_node (redis-server)", real_tests, NULL, NULL);
	return failed ? 1 : 0;
}
