/*
 * origin.c - the demo's remote tier: Redis over hiredis, or the built-in
 * stand-in (see origin.h).
 *
 * The library's uplink has its own connections; these are the demo's: the
 * master's, to load the key set, and each worker's, for the baseline and
 * for the loader of the hot key. They read the same URI as the uplink
 * (which the library has already validated), so both talk to one server.
 */
#include "origin.h"

#include "workload.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <shmcache.h>

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 2000
#define PIPELINE_DEPTH 512 /* commands sent before their replies are read */

struct origin {
	redisContext *redis; /* NULL: the built-in origin */
	unsigned latency_us;
	size_t value_bytes;
	char error[256];
};

/* Where a redis:// or redis+unix:// URI points. */
struct redis_address {
	char host[256]; /* or the socket path */
	int port;	/* 0: host is a unix socket */
	unsigned db;
	char user[128], password[256];
};

static int fail(char *err, size_t errcap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errcap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
	return -1;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* Copies s[0..n) into out (cap bytes), decoding %XX. */
static int credential_copy(const char *s, size_t n, char *out, size_t cap)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int hi = n - i < 3 ? -1 : hex_digit(s[i + 1]);
			int lo = n - i < 3 ? -1 : hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (len + 1 >= cap)
			return -1;
		out[len++] = (char)c;
	}
	out[len] = '\0';
	return 0;
}

/* user=...&password=... in the query string (other options are the
 * uplink's). */
static int query_credentials(const char *q, struct redis_address *a)
{
	while (q && *q) {
		const char *end = strchr(q, '&');
		size_t n = end ? (size_t)(end - q) : strlen(q);
		if (n > 5 && strncmp(q, "user=", 5) == 0 &&
		    credential_copy(q + 5, n - 5, a->user, sizeof(a->user)) != 0)
			return -1;
		if (n > 9 && strncmp(q, "password=", 9) == 0 &&
		    credential_copy(q + 9, n - 9, a->password, sizeof(a->password)) != 0)
			return -1;
		q = end ? end + 1 : NULL;
	}
	return 0;
}

static int address_parse(const char *uri, struct redis_address *a, char *err, size_t errcap)
{
	memset(a, 0, sizeof(*a));
	const char *rest;
	bool unix_socket = false;
	if (strncasecmp(uri, "redis://", 8) == 0) {
		rest = uri + 8;
	} else if (strncasecmp(uri, "redis+unix://", 13) == 0) {
		rest = uri + 13;
		unix_socket = true;
	} else {
		return fail(err, errcap,
			    "the demo talks to one Redis server: redis://host:port or "
			    "redis+unix:///path, not %s",
			    uri);
	}
	const char *query = strchr(rest, '?');
	size_t len = query ? (size_t)(query - rest) : strlen(rest);
	const char *slash = memchr(rest, '/', len), *at = NULL;
	for (const char *p = rest; p < (slash ? slash : rest + len); p++)
		if (*p == '@')
			at = p;
	if (at) {
		const char *colon = memchr(rest, ':', (size_t)(at - rest));
		if (!colon ||
		    credential_copy(rest, (size_t)(colon - rest), a->user, sizeof(a->user)) != 0 ||
		    credential_copy(colon + 1, (size_t)(at - colon - 1), a->password,
				    sizeof(a->password)) != 0)
			return fail(err, errcap, "bad credentials in %s", uri);
		len -= (size_t)(at + 1 - rest);
		rest = at + 1;
		slash = memchr(rest, '/', len);
	}
	if (query && query_credentials(query + 1, a) != 0)
		return fail(err, errcap, "bad credentials in %s", uri);
	if (unix_socket) {
		if (len == 0 || rest[0] != '/' || len >= sizeof(a->host))
			return fail(err, errcap, "no absolute socket path in %s", uri);
		memcpy(a->host, rest, len);
		return 0;
	}
	size_t hostport = slash ? (size_t)(slash - rest) : len;
	const char *colon = NULL;
	if (hostport && rest[0] == '[') { /* [IPv6]:port */
		const char *close = memchr(rest, ']', hostport);
		if (!close)
			return fail(err, errcap, "unclosed '[' in %s", uri);
		colon = close + 1 < rest + hostport && close[1] == ':' ? close + 1 : NULL;
		memcpy(a->host, rest + 1, (size_t)(close - rest - 1));
	} else {
		colon = memchr(rest, ':', hostport);
		size_t hlen = colon ? (size_t)(colon - rest) : hostport;
		if (hlen == 0 || hlen >= sizeof(a->host))
			return fail(err, errcap, "no host in %s", uri);
		memcpy(a->host, rest, hlen);
	}
	a->port = colon ? atoi(colon + 1) : 6379;
	if (a->port <= 0 || a->port > 65535)
		return fail(err, errcap, "bad port in %s", uri);
	if (slash && slash + 1 < rest + len)
		a->db = (unsigned)strtoul(slash + 1, NULL, 10);
	return 0;
}

static struct timeval ms_timeval(unsigned ms)
{
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* Runs one command and checks that its reply is not an error. */
static int command_ok(redisContext *redis, int argc, const char **argv, char *err, size_t errcap)
{
	redisReply *reply = redisCommandArgv(redis, argc, argv, NULL);
	if (!reply)
		return fail(err, errcap, "%s: %s", argv[0], redis->errstr);
	int rc = reply->type == REDIS_REPLY_ERROR
			 ? fail(err, errcap, "%s: %.*s", argv[0], (int)reply->len, reply->str)
			 : 0;
	freeReplyObject(reply);
	return rc;
}

static int redis_connect(const char *uri, redisContext **out, char *err, size_t errcap)
{
	struct redis_address a;
	if (address_parse(uri, &a, err, errcap) != 0)
		return -1;
	struct timeval tv = ms_timeval(CONNECT_TIMEOUT_MS);
	redisContext *redis = a.port ? redisConnectWithTimeout(a.host, a.port, tv)
				     : redisConnectUnixWithTimeout(a.host, tv);
	if (!redis)
		return fail(err, errcap, "connecting to %s: out of memory", uri);
	if (redis->err) {
		fail(err, errcap, "connecting to %s: %s", uri, redis->errstr);
		redisFree(redis);
		return -1;
	}
	redisSetTimeout(redis, ms_timeval(COMMAND_TIMEOUT_MS));
	char db[16];
	snprintf(db, sizeof(db), "%u", a.db);
	int rc = 0;
	if (a.password[0] && a.user[0])
		rc = command_ok(redis, 3, (const char *[]){"AUTH", a.user, a.password}, err,
				errcap);
	else if (a.password[0])
		rc = command_ok(redis, 2, (const char *[]){"AUTH", a.password}, err, errcap);
	if (rc == 0 && a.db)
		rc = command_ok(redis, 2, (const char *[]){"SELECT", db}, err, errcap);
	if (rc == 0)
		rc = command_ok(redis, 1, (const char *[]){"PING"}, err, errcap);
	if (rc != 0) {
		size_t n = strlen(err);
		snprintf(err + n, errcap - n, " (Redis at %s)", uri);
		redisFree(redis);
		return -1;
	}
	*out = redis;
	return 0;
}

int origin_open(const struct origin_config *cfg, struct origin **out, char *err, size_t errcap)
{
	struct origin *o = calloc(1, sizeof(*o));
	if (!o)
		return fail(err, errcap, "out of memory");
	o->latency_us = cfg->latency_us;
	o->value_bytes = cfg->value_bytes;
	if (cfg->uri && redis_connect(cfg->uri, &o->redis, err, errcap) != 0) {
		free(o);
		return -1;
	}
	*out = o;
	return 0;
}

void origin_close(struct origin *o)
{
	if (!o)
		return;
	if (o->redis)
		redisFree(o->redis);
	free(o);
}

const char *origin_name(const struct origin *o)
{
	return o->redis ? "Redis" : "the built-in origin";
}

bool origin_is_redis(const struct origin *o)
{
	return o->redis != NULL;
}

const char *origin_error(const struct origin *o)
{
	return o->error;
}

/* The built-in origin's round trip. */
static void builtin_delay(const struct origin *o)
{
	struct timespec delay = {o->latency_us / 1000000u, (long)(o->latency_us % 1000000u) * 1000};
	while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
		;
}

/* A connection that failed stays failed: hiredis cannot resume a stream
 * cut in the middle. */
static int redis_failed(struct origin *o, const char *what, const redisReply *reply)
{
	if (reply)
		snprintf(o->error, sizeof(o->error), "%s: Redis replied %.*s", what,
			 reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 16,
			 reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected type");
	else
		snprintf(o->error, sizeof(o->error), "%s: %s", what, o->redis->errstr);
	return SHMC_EUPLINK;
}

int origin_get(struct origin *o, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen)
{
	if (!o->redis) {
		builtin_delay(o);
		*vlen = o->value_bytes;
		if (cap < o->value_bytes)
			return SHMC_ERANGE;
		value_fill(buf, o->value_bytes, key, klen, "origin");
		return 0;
	}
	redisReply *reply = redisCommand(o->redis, "GET %b", key, klen);
	if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
		int rc = redis_failed(o, "GET", reply);
		if (reply)
			freeReplyObject(reply);
		return rc;
	}
	int rc = 0;
	if (reply->type == REDIS_REPLY_NIL) {
		rc = SHMC_ENOTFOUND;
	} else {
		*vlen = reply->len;
		if (reply->len > cap)
			rc = SHMC_ERANGE;
		else
			memcpy(buf, reply->str, reply->len);
	}
	freeReplyObject(reply);
	return rc;
}

int origin_set(struct origin *o, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (!o->redis) {
		builtin_delay(o);
		return 0;
	}
	redisReply *reply = redisCommand(o->redis, "SET %b %b", key, klen, val, vlen);
	int rc = reply && reply->type == REDIS_REPLY_STATUS ? 0 : redis_failed(o, "SET", reply);
	if (reply)
		freeReplyObject(reply);
	return rc;
}

/* Reads n pipelined replies; each must not be an error. */
static int replies_check(struct origin *o, const char *what, unsigned n)
{
	int rc = 0;
	for (unsigned i = 0; i < n; i++) {
		void *reply = NULL;
		if (redisGetReply(o->redis, &reply) != REDIS_OK)
			return redis_failed(o, what, NULL);
		redisReply *r = reply;
		if (rc == 0 && r->type == REDIS_REPLY_ERROR)
			rc = redis_failed(o, what, r);
		freeReplyObject(r);
	}
	return rc;
}

int origin_keys_load(struct origin *o, unsigned nkeys, size_t value_bytes)
{
	if (!o->redis)
		return 0;
	char key[KEY_BYTES], *val = malloc(value_bytes);
	if (!val) {
		snprintf(o->error, sizeof(o->error), "out of memory");
		return SHMC_ENOMEM;
	}
	int rc = 0;
	for (unsigned first = 0; rc == 0 && first < nkeys; first += PIPELINE_DEPTH) {
		unsigned n = nkeys - first < PIPELINE_DEPTH ? nkeys - first : PIPELINE_DEPTH;
		for (unsigned i = 0; i < n; i++) {
			size_t klen = key_name(key, first + i);
			value_fill(val, value_bytes, key, klen, "origin");
			redisAppendCommand(o->redis, "SET %b %b", key, klen, val, value_bytes);
		}
		rc = replies_check(o, "SET", n);
	}
	free(val);
	return rc;
}

int origin_keys_delete(struct origin *o, unsigned nkeys)
{
	if (!o->redis)
		return 0;
	char key[KEY_BYTES];
	int rc = 0;
	for (unsigned first = 0; rc == 0 && first < nkeys; first += PIPELINE_DEPTH) {
		unsigned n = nkeys - first < PIPELINE_DEPTH ? nkeys - first : PIPELINE_DEPTH;
		for (unsigned i = 0; i < n; i++) {
			size_t klen = key_name(key, first + i);
			redisAppendCommand(o->redis, "DEL %b", key, klen);
		}
		rc = replies_check(o, "DEL", n);
	}
	return rc;
}
