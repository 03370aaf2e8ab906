/*
 * test_uplink_uri.c - the uplink URI parser (uplink_uri.c): every scheme,
 * credentials, the database number, every option with its range, and each
 * kind of malformed URI refused with a message naming the bad part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <shmcache.h>

#include "uplink_uri.h"

#define ERR_CAP 256

/* Parse uri, which must be accepted. */
static struct shmc__uplink_config accept_uri(const char *uri)
{
	struct shmc__uplink_config cfg;
	char err[ERR_CAP] = "untouched";
	int rc = shmc__uplink_uri_parse(uri, &cfg, err, sizeof err);

	if (rc != 0)
		fail_msg("'%s' refused: rc %d, %s", uri, rc, err);
	assert_string_equal(err, "");
	return cfg;
}

/* Parse uri, which must be refused with SHMC_EINVAL and a message that
 * contains every one of the NULL-terminated fragments. */
static void refuse_uri(const char *uri, ...)
{
	struct shmc__uplink_config cfg;
	char err[ERR_CAP] = "";
	int rc;
	va_list ap;

	memset(&cfg, 0xa5, sizeof cfg);
	rc = shmc__uplink_uri_parse(uri, &cfg, err, sizeof err);
	if (rc != SHMC_EINVAL)
		fail_msg("'%s': rc %d, expected SHMC_EINVAL", uri, rc);
	va_start(ap, uri);
	for (const char *frag; (frag = va_arg(ap, const char *));)
		if (!strstr(err, frag))
			fail_msg("'%s': message \"%s\" lacks \"%s\"", uri, err, frag);
	va_end(ap);
	/* a refused URI leaves the configuration as it was */
	for (size_t i = 0; i < sizeof cfg; i++)
		if (((unsigned char *)&cfg)[i] != 0xa5)
			fail_msg("'%s': refused, but byte %zu of the configuration changed", uri,
				 i);
}

#define REFUSE(uri, ...) refuse_uri(uri, __VA_ARGS__, (const char *)NULL)

/* ----------------------------------------------------------- accepted */

static void test_uplink_uri_redis_host_port_defaults(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://cache-1.example.com:6380");

	assert_int_equal(c.kind, SHMC__UPLINK_REDIS);
	assert_int_equal(c.nseeds, 1);
	assert_string_equal(c.seeds[0].host, "cache-1.example.com");
	assert_int_equal(c.seeds[0].port, 6380);
	assert_int_equal(c.db, 0);
	assert_int_equal(c.connect_timeout_ms, 200);
	assert_int_equal(c.command_timeout_ms, 100);
	assert_int_equal(c.ttl_cap_ms, 0);
	assert_false(c.replica_reads);
	assert_int_equal(c.breaker_failures, 5);
	assert_int_equal(c.breaker_open_ms, 1000);
	assert_int_equal(c.health_interval_ms, 1000);
	assert_int_equal(c.batch, 64);
	assert_int_equal(c.write_behind_queue, 4096);
	assert_string_equal(c.user, "");
	assert_string_equal(c.password, "");
}

static void test_uplink_uri_redis_ipv4_and_db(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://127.0.0.1:6379/3");

	assert_string_equal(c.seeds[0].host, "127.0.0.1");
	assert_int_equal(c.seeds[0].port, 6379);
	assert_int_equal(c.db, 3);
	assert_int_equal(accept_uri("redis://h:1/").db, 0);
	assert_int_equal(accept_uri("redis://h:1/0").db, 0);
	assert_int_equal(accept_uri("redis://h:1/2147483647").db, 2147483647u);
}

static void test_uplink_uri_redis_missing_port_is_6379(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://localhost");

	assert_string_equal(c.seeds[0].host, "localhost");
	assert_int_equal(c.seeds[0].port, 6379);
	assert_int_equal(accept_uri("redis://[::1]").seeds[0].port, 6379);
	assert_int_equal(accept_uri("redis://h/5").db, 5);
}

static void test_uplink_uri_redis_port_bounds_accepted(void **state)
{
	(void)state;
	assert_int_equal(accept_uri("redis://h:1").seeds[0].port, 1);
	assert_int_equal(accept_uri("redis://h:65535").seeds[0].port, 65535);
	assert_int_equal(accept_uri("redis://h:06379").seeds[0].port, 6379);
}

static void test_uplink_uri_redis_ipv6_brackets_stripped(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://[::1]:7000/1");

	assert_string_equal(c.seeds[0].host, "::1");
	assert_int_equal(c.seeds[0].port, 7000);
	assert_int_equal(c.db, 1);
	c = accept_uri("redis://[2001:db8::10:1]:6379");
	assert_string_equal(c.seeds[0].host, "2001:db8::10:1");
	c = accept_uri("redis://[::ffff:127.0.0.1]:6379");
	assert_string_equal(c.seeds[0].host, "::ffff:127.0.0.1");
}

static void test_uplink_uri_scheme_case_insensitive(void **state)
{
	(void)state;
	assert_int_equal(accept_uri("REDIS://h:1").kind, SHMC__UPLINK_REDIS);
	assert_int_equal(accept_uri("Redis-Cluster://h:1").kind, SHMC__UPLINK_REDIS_CLUSTER);
	assert_int_equal(accept_uri("redis+UNIX:///s").kind, SHMC__UPLINK_REDIS_UNIX);
}

static void test_uplink_uri_userinfo_user_and_password(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://alice:s3cret@h:1/2");

	assert_string_equal(c.user, "alice");
	assert_string_equal(c.password, "s3cret");
	assert_string_equal(c.seeds[0].host, "h");
	assert_int_equal(c.db, 2);
}

static void test_uplink_uri_userinfo_password_only(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://:pw@h:1");

	assert_string_equal(c.user, "");
	assert_string_equal(c.password, "pw");
}

static void test_uplink_uri_userinfo_empty_is_no_auth(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://:@h:1");

	assert_string_equal(c.user, "");
	assert_string_equal(c.password, "");
}

static void test_uplink_uri_userinfo_percent_decoded(void **state)
{
	(void)state;
	/* %40 '@', %3A ':', %2F '/', %3f '?', %25 '%', %20 ' ' */
	struct shmc__uplink_config c = accept_uri("redis://us%3Aer:p%40ss%2Fw%3f%25d%20x@h:1");

	assert_string_equal(c.user, "us:er");
	assert_string_equal(c.password, "p@ss/w?%d x");
}

static void test_uplink_uri_userinfo_raw_at_in_password_uses_last_at(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://u:p@ss@h:1");

	assert_string_equal(c.user, "u");
	assert_string_equal(c.password, "p@ss");
	assert_string_equal(c.seeds[0].host, "h");
}

static void test_uplink_uri_credentials_as_options(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis://h:1?user=bob&password=a%26b");

	assert_string_equal(c.user, "bob");
	assert_string_equal(c.password, "a&b");
	c = accept_uri("redis://h:1?password=x");
	assert_string_equal(c.user, "");
	assert_string_equal(c.password, "x");
	/* user in the authority, password as an option */
	c = accept_uri("redis://:@h:1?password=x");
	assert_string_equal(c.password, "x");
}

static void test_uplink_uri_credentials_at_maximum_length(void **state)
{
	(void)state;
	char uri[1024], user[128], pass[256];

	memset(user, 'u', 127);
	user[127] = '\0';
	memset(pass, 'p', 255);
	pass[255] = '\0';
	snprintf(uri, sizeof uri, "redis://%s:%s@h:1", user, pass);
	struct shmc__uplink_config c = accept_uri(uri);
	assert_string_equal(c.user, user);
	assert_string_equal(c.password, pass);
}

static void test_uplink_uri_unix_path(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri("redis+unix:///var/run/redis/redis.sock");

	assert_int_equal(c.kind, SHMC__UPLINK_REDIS_UNIX);
	assert_int_equal(c.nseeds, 1);
	assert_string_equal(c.seeds[0].host, "/var/run/redis/redis.sock");
	assert_int_equal(c.seeds[0].port, 0);
	assert_int_equal(c.db, 0);
}

static void test_uplink_uri_unix_credentials_and_options(void **state)
{
	(void)state;
	struct shmc__uplink_config c =
		accept_uri("redis+unix://me:pw@/tmp/r.sock?command_timeout_ms=50");

	assert_string_equal(c.user, "me");
	assert_string_equal(c.password, "pw");
	assert_string_equal(c.seeds[0].host, "/tmp/r.sock");
	assert_int_equal(c.command_timeout_ms, 50);
}

static void test_uplink_uri_unix_path_at_maximum_length(void **state)
{
	(void)state;
	char uri[256], path[SHMC__UNIX_PATH_MAX];

	memset(path, 'a', sizeof path - 1);
	path[0] = '/';
	path[sizeof path - 1] = '\0'; /* 107 bytes: the most sun_path holds */
	snprintf(uri, sizeof uri, "redis+unix://%s", path);
	assert_string_equal(accept_uri(uri).seeds[0].host, path);
}

static void test_uplink_uri_cluster_seeds(void **state)
{
	(void)state;
	struct shmc__uplink_config c =
		accept_uri("redis-cluster://10.0.0.1:7000,node-b:7001,[fe80::1]:7002,node-d");

	assert_int_equal(c.kind, SHMC__UPLINK_REDIS_CLUSTER);
	assert_int_equal(c.nseeds, 4);
	assert_string_equal(c.seeds[0].host, "10.0.0.1");
	assert_int_equal(c.seeds[0].port, 7000);
	assert_string_equal(c.seeds[1].host, "node-b");
	assert_int_equal(c.seeds[1].port, 7001);
	assert_string_equal(c.seeds[2].host, "fe80::1");
	assert_int_equal(c.seeds[2].port, 7002);
	assert_string_equal(c.seeds[3].host, "node-d");
	assert_int_equal(c.seeds[3].port, 6379);
}

static void test_uplink_uri_cluster_maximum_seeds(void **state)
{
	(void)state;
	char uri[1024] = "redis-cluster://";

	for (int i = 0; i < SHMC__UPLINK_MAX_SEEDS; i++)
		snprintf(uri + strlen(uri), sizeof uri - strlen(uri), "%sn%d:%d", i ? "," : "", i,
			 7000 + i);
	struct shmc__uplink_config c = accept_uri(uri);
	assert_int_equal(c.nseeds, SHMC__UPLINK_MAX_SEEDS);
	assert_string_equal(c.seeds[15].host, "n15");
	assert_int_equal(c.seeds[15].port, 7015);
}

static void test_uplink_uri_cluster_credentials_and_replica_reads(void **state)
{
	(void)state;
	struct shmc__uplink_config c =
		accept_uri("redis-cluster://:pw@a:1,b:2?replica_reads=1&batch=16");

	assert_string_equal(c.password, "pw");
	assert_int_equal(c.nseeds, 2);
	assert_true(c.replica_reads);
	assert_int_equal(c.batch, 16);
	assert_false(accept_uri("redis-cluster://a:1?replica_reads=0").replica_reads);
}

static void test_uplink_uri_every_option_set(void **state)
{
	(void)state;
	struct shmc__uplink_config c = accept_uri(
		"redis://h:1?connect_timeout_ms=250&command_timeout_ms=75&ttl_cap_ms=30000"
		"&replica_reads=1&breaker_failures=3&breaker_open_ms=500&health_interval_ms=2000"
		"&batch=128&write_behind_queue=100000&user=u&password=p");

	assert_int_equal(c.connect_timeout_ms, 250);
	assert_int_equal(c.command_timeout_ms, 75);
	assert_int_equal(c.ttl_cap_ms, 30000);
	assert_true(c.replica_reads);
	assert_int_equal(c.breaker_failures, 3);
	assert_int_equal(c.breaker_open_ms, 500);
	assert_int_equal(c.health_interval_ms, 2000);
	assert_int_equal(c.batch, 128);
	assert_int_equal(c.write_behind_queue, 100000);
	assert_string_equal(c.user, "u");
	assert_string_equal(c.password, "p");
}

static void test_uplink_uri_option_range_bounds_accepted(void **state)
{
	(void)state;
	struct shmc__uplink_config lo =
		accept_uri("redis://h:1?connect_timeout_ms=1&command_timeout_ms=1&ttl_cap_ms=0"
			   "&breaker_failures=1&breaker_open_ms=1&health_interval_ms=1&batch=1"
			   "&write_behind_queue=1");
	struct shmc__uplink_config hi =
		accept_uri("redis://h:1?connect_timeout_ms=600000&command_timeout_ms=600000"
			   "&ttl_cap_ms=4294967295&breaker_failures=1000&breaker_open_ms=600000"
			   "&health_interval_ms=600000&batch=4096&write_behind_queue=1000000");

	assert_int_equal(lo.connect_timeout_ms, 1);
	assert_int_equal(lo.command_timeout_ms, 1);
	assert_int_equal(lo.ttl_cap_ms, 0);
	assert_int_equal(lo.breaker_failures, 1);
	assert_int_equal(lo.breaker_open_ms, 1);
	assert_int_equal(lo.health_interval_ms, 1);
	assert_int_equal(lo.batch, 1);
	assert_int_equal(lo.write_behind_queue, 1);
	assert_int_equal(hi.connect_timeout_ms, 600000);
	assert_int_equal(hi.command_timeout_ms, 600000);
	assert_int_equal(hi.ttl_cap_ms, 4294967295u);
	assert_int_equal(hi.breaker_failures, 1000);
	assert_int_equal(hi.breaker_open_ms, 600000);
	assert_int_equal(hi.health_interval_ms, 600000);
	assert_int_equal(hi.batch, 4096);
	assert_int_equal(hi.write_behind_queue, 1000000);
}

static void test_uplink_uri_empty_query_accepted(void **state)
{
	(void)state;
	assert_int_equal(accept_uri("redis://h:1?").batch, 64);
	assert_int_equal(accept_uri("redis://h:1/2?").db, 2);
}

static void test_uplink_uri_null_err_buffer_allowed(void **state)
{
	(void)state;
	struct shmc__uplink_config c;

	assert_int_equal(shmc__uplink_uri_parse("redis://h:1", &c, NULL, 0), 0);
	assert_int_equal(shmc__uplink_uri_parse("bogus", &c, NULL, 0), SHMC_EINVAL);
}

static void test_uplink_uri_err_truncated_to_errcap(void **state)
{
	(void)state;
	struct shmc__uplink_config c;
	char err[8];

	memset(err, 'x', sizeof err);
	assert_int_equal(shmc__uplink_uri_parse("redis://h:99999", &c, err, sizeof err),
			 SHMC_EINVAL);
	assert_int_equal(strlen(err), sizeof err - 1);
	assert_memory_equal(err, "port '9", 7);
}

/* ----------------------------------------------------------- refused */

static void test_uplink_uri_null_refused(void **state)
{
	(void)state;
	struct shmc__uplink_config c;
	char err[ERR_CAP];

	assert_int_equal(shmc__uplink_uri_parse(NULL, &c, err, sizeof err), SHMC_EINVAL);
	assert_string_equal(err, "no URI");
}

static void test_uplink_uri_unknown_scheme_refused(void **state)
{
	(void)state;
	REFUSE("http://h:1", "unknown scheme 'http://'");
	REFUSE("rediss://h:1", "unknown scheme 'rediss://'");
	REFUSE("redis-sentinel://h:1", "unknown scheme 'redis-sentinel://'");
	REFUSE("redis:/h:1", "no scheme", "redis:/h:1");
	REFUSE("h:6379", "no scheme");
	REFUSE("", "no scheme");
}

static void test_uplink_uri_memcached_not_supported(void **state)
{
	(void)state;
	REFUSE("memcached://h1:11211,h2:11211", "memcached:// is not supported by this build");
}

static void test_uplink_uri_empty_host_refused(void **state)
{
	(void)state;
	REFUSE("redis://", "empty host");
	REFUSE("redis://:6379", "empty host");
	REFUSE("redis:///0", "empty host");
	REFUSE("redis://[]:6379", "empty host");
	REFUSE("redis://:pw@:6379", "empty host");
	REFUSE("redis://?batch=1", "empty host");
}

static void test_uplink_uri_bad_port_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:0", "port '0' is not 1..65535");
	REFUSE("redis://h:65536", "port '65536' is not 1..65535");
	REFUSE("redis://h:99999", "port '99999' is not 1..65535");
	REFUSE("redis://h:99999999999999999999999", "port '99999999999999999999999'");
	REFUSE("redis://h:", "port '' is not 1..65535");
	REFUSE("redis://h:63x9", "port '63x9'");
	REFUSE("redis://h:+6379", "port '+6379'");
	REFUSE("redis://h:-1", "port '-1'");
	REFUSE("redis://h: 6379", "port ' 6379'");
	REFUSE("redis://h:6379 ", "port '6379 '");
	REFUSE("redis://h:1:2", "port '1:2'");
	REFUSE("redis://[::1]:0", "port '0'");
	REFUSE("redis-cluster://a:1,b:70000", "port '70000'");
}

static void test_uplink_uri_bad_host_refused(void **state)
{
	(void)state;
	REFUSE("redis://h st:1", "host 'h st'", "character");
	REFUSE("redis://::1:6379", "empty host");
	REFUSE("redis://fe80::1:6379", "port '");
	REFUSE("redis://[::1:6379", "no closing ']'");
	REFUSE("redis://[not-v6]:1", "IPv6 address 'not-v6' is not valid");
	REFUSE("redis://[fe80::1%25eth0]:1", "IPv6 address");
	REFUSE("redis://[::1]x:6379", "garbage 'x:6379' after ']'");
	REFUSE("redis://h\t:1", "host");
}

static void test_uplink_uri_long_host_refused(void **state)
{
	(void)state;
	char uri[512] = "redis://";
	size_t at = strlen(uri);

	memset(uri + at, 'a', SHMC__HOST_MAX);
	memcpy(uri + at + SHMC__HOST_MAX, ":1", 3);
	REFUSE(uri, "is longer than 255 bytes");
	/* 255 bytes fit */
	uri[at + SHMC__HOST_MAX - 1] = ':';
	uri[at + SHMC__HOST_MAX] = '1';
	uri[at + SHMC__HOST_MAX + 1] = '\0';
	assert_int_equal(strlen(accept_uri(uri).seeds[0].host), SHMC__HOST_MAX - 1);
}

static void test_uplink_uri_bad_db_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:1/x", "db 'x' is not 0..2147483647");
	REFUSE("redis://h:1/-1", "db '-1'");
	REFUSE("redis://h:1/2147483648", "db '2147483648'");
	REFUSE("redis://h:1/0/1", "db '0/1'");
	REFUSE("redis://h:1/1 ", "db '1 '");
	REFUSE("redis://h:1/1#frag", "db '1#frag'");
}

static void test_uplink_uri_trailing_garbage_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:6379#x", "port '6379#x'");
	REFUSE("redis-cluster://a:1,b:2/0", "garbage '/0' after the seeds");
	REFUSE("redis://[::1]:1]", "port '1]'");
}

static void test_uplink_uri_credentials_refused(void **state)
{
	(void)state;
	REFUSE("redis://alice@h:1", "credentials before '@' have no ':'");
	REFUSE("redis://s3cret@h:1", "user:password@"); /* the secret is not quoted: */
	{
		struct shmc__uplink_config c;
		char err[ERR_CAP];
		shmc__uplink_uri_parse("redis://s3cret@h:1", &c, err, sizeof err);
		assert_null(strstr(err, "s3cret"));
	}
	REFUSE("redis://alice:@h:1", "user 'alice' has no password");
	REFUSE("redis://h:1?user=alice", "user 'alice' has no password");
	REFUSE("redis://:p%4@h:1", "bad percent-encoding in the password");
	REFUSE("redis://:p%zz@h:1", "bad percent-encoding in the password");
	REFUSE("redis://u%g0:p@h:1", "bad percent-encoding in the user");
	REFUSE("redis://:a%00b@h:1", "password contains %00");
	REFUSE("redis://:a b@h:1", "password contains a space");
	REFUSE("redis://:pw@h:1?password=other", "password is given twice");
	REFUSE("redis://u:pw@h:1?user=v", "user is given twice");
	REFUSE("redis://h:1?password=a&password=b", "password is given twice");
	REFUSE("redis://h:1?password=", "option 'password' is empty");
	REFUSE("redis://h:1?password=%4", "bad percent-encoding in the password");
}

static void test_uplink_uri_long_credentials_refused(void **state)
{
	(void)state;
	char uri[1024], user[129], pass[257];

	memset(user, 'u', 128);
	user[128] = '\0';
	memset(pass, 'p', 256);
	pass[256] = '\0';
	snprintf(uri, sizeof uri, "redis://%s:pw@h:1", user);
	REFUSE(uri, "user is longer than 127 bytes");
	snprintf(uri, sizeof uri, "redis://:%s@h:1", pass);
	REFUSE(uri, "password is longer than 255 bytes");
	snprintf(uri, sizeof uri, "redis://h:1?password=%s", pass);
	REFUSE(uri, "password is longer than 255 bytes");
}

static void test_uplink_uri_unix_path_refused(void **state)
{
	(void)state;
	char uri[256], path[SHMC__UNIX_PATH_MAX + 1];

	REFUSE("redis+unix://", "empty socket path");
	REFUSE("redis+unix://?batch=1", "empty socket path");
	REFUSE("redis+unix://tmp/r.sock", "socket path 'tmp/r.sock' is not absolute");
	REFUSE("redis+unix://localhost/tmp/r.sock", "is not absolute");
	REFUSE("redis+unix://u@/tmp/s", "credentials before '@' have no ':'");
	memset(path, 'a', sizeof path - 1);
	path[0] = '/';
	path[sizeof path - 1] = '\0'; /* 108 bytes: one too many */
	snprintf(uri, sizeof uri, "redis+unix://%s", path);
	REFUSE(uri, "socket path", "is longer than 107 bytes");
	REFUSE("redis+unix:///tmp/a\x01", "control character");
}

static void test_uplink_uri_cluster_seeds_refused(void **state)
{
	(void)state;
	char uri[1024] = "redis-cluster://";

	REFUSE("redis-cluster://", "empty seed node (seed 1)");
	REFUSE("redis-cluster://a:1,,b:2", "empty seed node (seed 2)");
	REFUSE("redis-cluster://a:1,", "empty seed node (seed 2)");
	REFUSE("redis-cluster://,a:1", "empty seed node (seed 1)");
	REFUSE("redis-cluster://a:1,:2", "empty host");
	for (int i = 0; i <= SHMC__UPLINK_MAX_SEEDS; i++)
		snprintf(uri + strlen(uri), sizeof uri - strlen(uri), "%sn%d:%d", i ? "," : "", i,
			 7000 + i);
	REFUSE(uri, "more than 16 seed nodes");
}

static void test_uplink_uri_unknown_option_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:1?timeout=5", "unknown option 'timeout'");
	REFUSE("redis://h:1?batch=4&Batch=4", "unknown option 'Batch'");
	REFUSE("redis://h:1?db=1", "unknown option 'db'");
	REFUSE("redis://h:1?=5", "unknown option ''");
}

static void test_uplink_uri_duplicate_option_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:1?batch=4&batch=4", "option 'batch' given twice");
	REFUSE("redis://h:1?replica_reads=1&replica_reads=0", "option 'replica_reads' given twice");
	REFUSE("redis://h:1?ttl_cap_ms=1&connect_timeout_ms=5&ttl_cap_ms=1",
	       "option 'ttl_cap_ms' given twice");
}

static void test_uplink_uri_malformed_option_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:1?batch", "option 'batch' has no '=value'");
	REFUSE("redis://h:1?batch=4&", "empty option");
	REFUSE("redis://h:1?&batch=4", "empty option");
	REFUSE("redis://h:1?batch=4&&command_timeout_ms=5", "empty option");
	REFUSE("redis://h:1??batch=4", "unknown option '?batch'");
}

static void test_uplink_uri_option_numbers_strict(void **state)
{
	(void)state;
	REFUSE("redis://h:1?batch=", "batch '' is not 1..4096");
	REFUSE("redis://h:1?batch=+4", "batch '+4' is not 1..4096");
	REFUSE("redis://h:1?batch=-4", "batch '-4'");
	REFUSE("redis://h:1?batch=4x", "batch '4x'");
	REFUSE("redis://h:1?batch= 4", "batch ' 4'");
	REFUSE("redis://h:1?batch=0x10", "batch '0x10'");
	REFUSE("redis://h:1?batch=1e3", "batch '1e3'");
	REFUSE("redis://h:1?batch=4.0", "batch '4.0'");
	REFUSE("redis://h:1?command_timeout_ms=18446744073709551616",
	       "command_timeout_ms '18446744073709551616'");
	REFUSE("redis://h:1?replica_reads=true", "replica_reads 'true' is not 0 or 1");
	REFUSE("redis://h:1?replica_reads=", "replica_reads '' is not 0 or 1");
	REFUSE("redis://h:1?replica_reads=01", "replica_reads '01'");
}

static void test_uplink_uri_option_ranges_refused(void **state)
{
	(void)state;
	REFUSE("redis://h:1?connect_timeout_ms=0", "connect_timeout_ms '0' is not 1..600000");
	REFUSE("redis://h:1?connect_timeout_ms=600001", "connect_timeout_ms '600001'");
	REFUSE("redis://h:1?command_timeout_ms=0", "command_timeout_ms '0' is not 1..600000");
	REFUSE("redis://h:1?command_timeout_ms=600001", "command_timeout_ms '600001'");
	REFUSE("redis://h:1?ttl_cap_ms=4294967296", "ttl_cap_ms '4294967296' is not 0..4294967295");
	REFUSE("redis://h:1?breaker_failures=0", "breaker_failures '0' is not 1..1000");
	REFUSE("redis://h:1?breaker_failures=1001", "breaker_failures '1001'");
	REFUSE("redis://h:1?breaker_open_ms=0", "breaker_open_ms '0' is not 1..600000");
	REFUSE("redis://h:1?breaker_open_ms=600001", "breaker_open_ms '600001'");
	REFUSE("redis://h:1?health_interval_ms=0", "health_interval_ms '0' is not 1..600000");
	REFUSE("redis://h:1?health_interval_ms=600001", "health_interval_ms '600001'");
	REFUSE("redis://h:1?batch=0", "batch '0' is not 1..4096");
	REFUSE("redis://h:1?batch=4097", "batch '4097'");
	REFUSE("redis://h:1?write_behind_queue=0", "write_behind_queue '0' is not 1..1000000");
	REFUSE("redis://h:1?write_behind_queue=1000001", "write_behind_queue '1000001'");
}

static void test_uplink_uri_long_value_quoted_shortened(void **state)
{
	(void)state;
	char uri[512] = "redis://h:1?batch=";

	memset(uri + strlen(uri), '7', 200);
	REFUSE(uri, "batch '7777777777", "...' is not 1..4096");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uplink_uri_redis_host_port_defaults),
		cmocka_unit_test(test_uplink_uri_redis_ipv4_and_db),
		cmocka_unit_test(test_uplink_uri_redis_missing_port_is_6379),
		cmocka_unit_test(test_uplink_uri_redis_port_bounds_accepted),
		cmocka_unit_test(test_uplink_uri_redis_ipv6_brackets_stripped),
		cmocka_unit_test(test_uplink_uri_scheme_case_insensitive),
		cmocka_unit_test(test_uplink_uri_userinfo_user_and_password),
		cmocka_unit_test(test_uplink_uri_userinfo_password_only),
		cmocka_unit_test(test_uplink_uri_userinfo_empty_is_no_auth),
		cmocka_unit_test(test_uplink_uri_userinfo_percent_decoded),
		cmocka_unit_test(test_uplink_uri_userinfo_raw_at_in_password_uses_last_at),
		cmocka_unit_test(test_uplink_uri_credentials_as_options),
		cmocka_unit_test(test_uplink_uri_credentials_at_maximum_length),
		cmocka_unit_test(test_uplink_uri_unix_path),
		cmocka_unit_test(test_uplink_uri_unix_credentials_and_options),
		cmocka_unit_test(test_uplink_uri_unix_path_at_maximum_length),
		cmocka_unit_test(test_uplink_uri_cluster_seeds),
		cmocka_unit_test(test_uplink_uri_cluster_maximum_seeds),
		cmocka_unit_test(test_uplink_uri_cluster_credentials_and_replica_reads),
		cmocka_unit_test(test_uplink_uri_every_option_set),
		cmocka_unit_test(test_uplink_uri_option_range_bounds_accepted),
		cmocka_unit_test(test_uplink_uri_empty_query_accepted),
		cmocka_unit_test(test_uplink_uri_null_err_buffer_allowed),
		cmocka_unit_test(test_uplink_uri_err_truncated_to_errcap),
		cmocka_unit_test(test_uplink_uri_null_refused),
		cmocka_unit_test(test_uplink_uri_unknown_scheme_refused),
		cmocka_unit_test(test_uplink_uri_memcached_not_supported),
		cmocka_unit_test(test_uplink_uri_empty_host_refused),
		cmocka_unit_test(test_uplink_uri_bad_port_refused),
		cmocka_unit_test(test_uplink_uri_bad_host_refused),
		cmocka_unit_test(test_uplink_uri_long_host_refused),
		cmocka_unit_test(test_uplink_uri_bad_db_refused),
		cmocka_unit_test(test_uplink_uri_trailing_garbage_refused),
		cmocka_unit_test(test_uplink_uri_credentials_refused),
		cmocka_unit_test(test_uplink_uri_long_credentials_refused),
		cmocka_unit_test(test_uplink_uri_unix_path_refused),
		cmocka_unit_test(test_uplink_uri_cluster_seeds_refused),
		cmocka_unit_test(test_uplink_uri_unknown_option_refused),
		cmocka_unit_test(test_uplink_uri_duplicate_option_refused),
		cmocka_unit_test(test_uplink_uri_malformed_option_refused),
		cmocka_unit_test(test_uplink_uri_option_numbers_strict),
		cmocka_unit_test(test_uplink_uri_option_ranges_refused),
		cmocka_unit_test(test_uplink_uri_long_value_quoted_shortened),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
