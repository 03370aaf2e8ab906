/*
 * uplink_uri.c - the parser of the uplink URI (see uplink_uri.h for the
 * grammar and the options).
 *
 * Strict on purpose: a configuration string is written once and read by
 * nobody until the remote tier misbehaves, so anything the parser does not
 * understand (an unknown or repeated option, a number with a sign, a space
 * or a suffix, a port out of range, bytes after what the scheme allows) is
 * refused with a message that quotes the offending part, rather than
 * guessed at. The result is built in a local copy and stored only when the
 * whole URI has been accepted, so a failed parse leaves *cfg as it was.
 *
 * Decisions the header leaves open:
 * - The scheme is matched without regard to case (RFC 3986 §3.1); nothing
 *   else is.
 * - A missing port means 6379, as in every Redis client's URI; an empty one
 *   ("host:") is an error.
 * - user and password are percent-decoded (in the authority and in the
 *   options alike); "%00" is refused. A user needs a password ("user@" and
 *   "user:@" are errors); ":password@" authenticates with the password only.
 *   Giving a credential both in the authority and as an option is an error.
 * - Hosts are names of [A-Za-z0-9._-] or, in brackets, IPv6 literals
 *   (checked with inet_pton; zone ids are not supported).
 * - redis+unix:// takes an absolute path; the database number is for
 *   redis:// only (redis+unix:// and redis-cluster:// have no "/db").
 * - replica_reads is accepted for every scheme; only a cluster uses it.
 */
#include "uplink_uri.h"

#include <shmcache.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_PORT 6379
#define TIMEOUT_MAX_MS 600000u

/* The error message, if the caller gave room for one. Always returns
 * SHMC_EINVAL, so that failures read `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errcap, const char *fmt,
						      ...)
{
	if (err && errcap) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err, errcap, fmt, ap);
		va_end(ap);
	}
	return SHMC_EINVAL;
}

/* A piece of the URI, not NUL-terminated. */
struct span {
	const char *p;
	size_t n;
};

static struct span span_of(const char *begin, const char *end)
{
	return (struct span){begin, (size_t)(end - begin)};
}

static bool span_eq(struct span s, const char *lit)
{
	return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* Quoted in messages: at most 64 bytes of s, then "...". */
#define QUOTE_MAX 64
#define QFMT "'%.*s%s'"
#define QARG(s)                                                                                    \
	(int)((s).n > QUOTE_MAX ? QUOTE_MAX : (s).n), (s).p, ((s).n > QUOTE_MAX ? "..." : "")

/* Strict unsigned decimal: digits only (no sign, space or suffix), value in
 * [min, max]. */
static bool parse_number(struct span s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (s.n == 0 || s.n > 20)
		return false;
	for (size_t i = 0; i < s.n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		unsigned d = (unsigned)(s.p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s into out (cap bytes with the NUL). what names the part
 * in messages. */
static int decode_credential(struct span s, char *out, size_t cap, const char *what, char *err,
			     size_t errcap)
{
	size_t n = 0;

	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];
		if (c == '%') {
			int hi = s.n - i < 3 ? -1 : hex_digit(s.p[i + 1]);
			int lo = s.n - i < 3 ? -1 : hex_digit(s.p[i + 2]);
			if (hi < 0 || lo < 0)
				return fail(err, errcap, "bad percent-encoding in the %s", what);
			c = (char)(hi * 16 + lo);
			if (c == '\0')
				return fail(err, errcap, "the %s contains %%00", what);
			i += 2;
		} else if ((unsigned char)c <= ' ' || c == 0x7f) {
			return fail(err, errcap, "the %s contains a space or a control character",
				    what);
		}
		if (n + 1 >= cap)
			return fail(err, errcap, "the %s is longer than %zu bytes", what, cap - 1);
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

/* Which credentials were given, and where, to refuse doubles. */
struct seen {
	bool user, password;
	uint32_t options; /* bit i: options[i] was given */
};

/* "user:password" (the part before '@'). */
static int parse_userinfo(struct span s, struct shmc__uplink_config *cfg, struct seen *seen,
			  char *err, size_t errcap)
{
	const char *colon = memchr(s.p, ':', s.n);
	int rc;

	if (!colon)
		/* not quoted: it may well be a password */
		return fail(err, errcap,
			    "the credentials before '@' have no ':' "
			    "(write user:password@ or :password@)");
	struct span user = span_of(s.p, colon), pass = span_of(colon + 1, s.p + s.n);
	if ((rc = decode_credential(user, cfg->user, sizeof cfg->user, "user", err, errcap)) ||
	    (rc = decode_credential(pass, cfg->password, sizeof cfg->password, "password", err,
				    errcap)))
		return rc;
	seen->user = user.n > 0;
	seen->password = pass.n > 0;
	return 0;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* "host[:port]" or "[v6][:port]" (a whole seed) into ep. */
static int parse_hostport(struct span s, struct shmc__endpoint *ep, char *err, size_t errcap)
{
	struct span host, port = {NULL, 0};
	bool has_port = false;

	if (s.n == 0)
		return fail(err, errcap, "empty host");
	if (s.p[0] == '[') {
		const char *close = memchr(s.p, ']', s.n);
		if (!close)
			return fail(err, errcap, "IPv6 address " QFMT " has no closing ']'",
				    QARG(s));
		host = span_of(s.p + 1, close);
		const char *after = close + 1, *end = s.p + s.n;
		if (after < end) {
			if (*after != ':')
				return fail(err, errcap, "garbage " QFMT " after ']'",
					    QARG(span_of(after, end)));
			has_port = true;
			port = span_of(after + 1, end);
		}
		if (host.n == 0)
			return fail(err, errcap, "empty host");
		char v6[INET6_ADDRSTRLEN + 1];
		unsigned char addr[16];
		if (host.n >= sizeof v6)
			return fail(err, errcap, "IPv6 address " QFMT " is not valid", QARG(host));
		memcpy(v6, host.p, host.n);
		v6[host.n] = '\0';
		if (inet_pton(AF_INET6, v6, addr) != 1)
			return fail(err, errcap, "IPv6 address " QFMT " is not valid", QARG(host));
	} else {
		const char *colon = memchr(s.p, ':', s.n);
		host = colon ? span_of(s.p, colon) : s;
		if (colon) {
			has_port = true;
			port = span_of(colon + 1, s.p + s.n);
		}
		if (host.n == 0)
			return fail(err, errcap, "empty host");
		for (size_t i = 0; i < host.n; i++)
			if (!host_char(host.p[i]))
				return fail(err, errcap,
					    "host " QFMT " has a character outside [A-Za-z0-9._-] "
					    "(IPv6 addresses go in brackets)",
					    QARG(host));
		if (host.n >= SHMC__HOST_MAX)
			return fail(err, errcap, "host " QFMT " is longer than %d bytes",
				    QARG(host), SHMC__HOST_MAX - 1);
	}
	uint64_t portnum = DEFAULT_PORT;
	if (has_port && !parse_number(port, 1, 65535, &portnum))
		return fail(err, errcap, "port " QFMT " is not 1..65535", QARG(port));
	memcpy(ep->host, host.p, host.n);
	ep->host[host.n] = '\0';
	ep->port = (uint16_t)portnum;
	return 0;
}

/* The numeric options: name, where it goes, range. */
struct num_option {
	const char *name;
	size_t offset; /* of a uint32_t in struct shmc__uplink_config */
	uint32_t min, max;
};

#define NUM_OPTION(field, lo, hi)                                                                  \
	{                                                                                          \
#field, offsetof(struct shmc__uplink_config, field), lo, hi                        \
	}

static const struct num_option num_options[] = {
	NUM_OPTION(connect_timeout_ms, 1, TIMEOUT_MAX_MS),
	NUM_OPTION(command_timeout_ms, 1, TIMEOUT_MAX_MS),
	/* 0 = no cap; at most what a uint32_t of milliseconds holds (49 days) */
	NUM_OPTION(ttl_cap_ms, 0, UINT32_MAX),
	NUM_OPTION(breaker_failures, 1, 1000),
	NUM_OPTION(breaker_open_ms, 1, TIMEOUT_MAX_MS),
	NUM_OPTION(health_interval_ms, 1, TIMEOUT_MAX_MS),
	NUM_OPTION(batch, 1, 4096),
	NUM_OPTION(write_behind_queue, 1, 1000000),
};
#define NUM_OPTIONS (sizeof num_options / sizeof num_options[0])
/* Bits of struct seen.options past the numeric ones. */
#define OPT_BIT_REPLICA_READS (1u << NUM_OPTIONS)

/* One "name=value" of the query string. */
static int parse_option(struct span opt, struct shmc__uplink_config *cfg, struct seen *seen,
			char *err, size_t errcap)
{
	const char *eq = memchr(opt.p, '=', opt.n);

	if (opt.n == 0)
		return fail(err, errcap, "empty option (a stray '&' or '?')");
	if (!eq)
		return fail(err, errcap, "option " QFMT " has no '=value'", QARG(opt));
	struct span name = span_of(opt.p, eq), value = span_of(eq + 1, opt.p + opt.n);

	for (size_t i = 0; i < NUM_OPTIONS; i++) {
		const struct num_option *o = &num_options[i];
		if (!span_eq(name, o->name))
			continue;
		if (seen->options & (1u << i))
			return fail(err, errcap, "option '%s' given twice", o->name);
		seen->options |= 1u << i;
		uint64_t v;
		if (!parse_number(value, o->min, o->max, &v))
			return fail(err, errcap, "%s " QFMT " is not %u..%u", o->name, QARG(value),
				    (unsigned)o->min, (unsigned)o->max);
		uint32_t v32 = (uint32_t)v;
		memcpy((char *)cfg + o->offset, &v32, sizeof v32);
		return 0;
	}
	if (span_eq(name, "replica_reads")) {
		if (seen->options & OPT_BIT_REPLICA_READS)
			return fail(err, errcap, "option 'replica_reads' given twice");
		seen->options |= OPT_BIT_REPLICA_READS;
		if (!span_eq(value, "0") && !span_eq(value, "1"))
			return fail(err, errcap, "replica_reads " QFMT " is not 0 or 1",
				    QARG(value));
		cfg->replica_reads = value.p[0] == '1';
		return 0;
	}
	if (span_eq(name, "user") || span_eq(name, "password")) {
		bool is_user = name.p[0] == 'u';
		bool *given = is_user ? &seen->user : &seen->password;
		if (*given)
			return fail(err, errcap, "the %s is given twice",
				    is_user ? "user" : "password");
		*given = true;
		if (value.n == 0)
			return fail(err, errcap, "option '%s' is empty",
				    is_user ? "user" : "password");
		return is_user ? decode_credential(value, cfg->user, sizeof cfg->user, "user", err,
						   errcap)
			       : decode_credential(value, cfg->password, sizeof cfg->password,
						   "password", err, errcap);
	}
	return fail(err, errcap, "unknown option " QFMT, QARG(name));
}

static int parse_query(struct span q, struct shmc__uplink_config *cfg, struct seen *seen, char *err,
		       size_t errcap)
{
	const char *p = q.p, *end = q.p + q.n;

	if (q.n == 0)
		return 0; /* "host:port?" */
	for (;;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		int rc = parse_option(span_of(p, stop), cfg, seen, err, errcap);
		if (rc)
			return rc;
		if (!amp)
			return 0;
		p = amp + 1;
	}
}

static void set_defaults(struct shmc__uplink_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->nseeds = 1;
	cfg->connect_timeout_ms = 200;
	cfg->command_timeout_ms = 100;
	cfg->ttl_cap_ms = 0;
	cfg->replica_reads = false;
	cfg->breaker_failures = 5;
	cfg->breaker_open_ms = 1000;
	cfg->health_interval_ms = 1000;
	cfg->batch = 64;
	cfg->write_behind_queue = 4096;
}

static const struct {
	const char *prefix;
	enum shmc__uplink_kind kind;
} schemes[] = {
	{"redis://", SHMC__UPLINK_REDIS},
	{"redis+unix://", SHMC__UPLINK_REDIS_UNIX},
	{"redis-cluster://", SHMC__UPLINK_REDIS_CLUSTER},
};

/* The server part of a redis:// URI: "host[:port][/db]". */
static int parse_redis(struct span s, struct shmc__uplink_config *cfg, char *err, size_t errcap)
{
	/* the path starts at the first '/' after the host (brackets hold no '/') */
	const char *slash = memchr(s.p, '/', s.n);
	struct span hostport = slash ? span_of(s.p, slash) : s;
	int rc = parse_hostport(hostport, &cfg->seeds[0], err, errcap);

	if (rc)
		return rc;
	if (slash) {
		struct span db = span_of(slash + 1, s.p + s.n);
		uint64_t v = 0;
		if (db.n && !parse_number(db, 0, INT32_MAX, &v))
			return fail(err, errcap, "db " QFMT " is not 0..%d", QARG(db), INT32_MAX);
		cfg->db = (unsigned)v;
	}
	return 0;
}

static int parse_unix(struct span s, struct shmc__uplink_config *cfg, char *err, size_t errcap)
{
	if (s.n == 0)
		return fail(err, errcap, "empty socket path");
	if (s.p[0] != '/')
		return fail(err, errcap, "socket path " QFMT " is not absolute", QARG(s));
	if (s.n >= SHMC__UNIX_PATH_MAX)
		return fail(err, errcap, "socket path " QFMT " is longer than %d bytes", QARG(s),
			    SHMC__UNIX_PATH_MAX - 1);
	for (size_t i = 0; i < s.n; i++)
		if ((unsigned char)s.p[i] < ' ' || s.p[i] == 0x7f)
			return fail(err, errcap, "socket path has a control character");
	memcpy(cfg->seeds[0].host, s.p, s.n);
	cfg->seeds[0].host[s.n] = '\0';
	cfg->seeds[0].port = 0;
	return 0;
}

static int parse_cluster(struct span s, struct shmc__uplink_config *cfg, char *err, size_t errcap)
{
	const char *p = s.p, *end = s.p + s.n;
	const char *slash = memchr(s.p, '/', s.n);

	if (slash)
		return fail(err, errcap, "garbage " QFMT " after the seeds (a cluster has no db)",
			    QARG(span_of(slash, end)));
	cfg->nseeds = 0;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		if (cfg->nseeds == SHMC__UPLINK_MAX_SEEDS)
			return fail(err, errcap, "more than %d seed nodes", SHMC__UPLINK_MAX_SEEDS);
		if (stop == p)
			return fail(err, errcap, "empty seed node (seed %u)", cfg->nseeds + 1);
		int rc = parse_hostport(span_of(p, stop), &cfg->seeds[cfg->nseeds], err, errcap);
		if (rc)
			return rc;
		cfg->nseeds++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int shmc__uplink_uri_parse(const char *uri, struct shmc__uplink_config *cfg, char *err,
			   size_t errcap)
{
	struct shmc__uplink_config c;
	struct seen seen = {0};
	const char *rest = NULL;
	int rc;

	if (err && errcap)
		err[0] = '\0';
	if (!uri || !cfg)
		return fail(err, errcap, "no URI");
	set_defaults(&c);
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		size_t n = strlen(schemes[i].prefix);
		if (strncasecmp(uri, schemes[i].prefix, n) == 0) {
			c.kind = schemes[i].kind;
			rest = uri + n;
			break;
		}
	}
	if (!rest) {
		const char *sep = strstr(uri, "://");
		struct span whole = {uri, strlen(uri)};
		if (strncasecmp(uri, "memcached://", 12) == 0)
			return fail(err, errcap, "memcached:// is not supported by this build");
		if (!sep)
			return fail(err, errcap,
				    "no scheme in " QFMT
				    " (redis://, redis+unix:// or redis-cluster://)",
				    QARG(whole));
		return fail(err, errcap,
			    "unknown scheme " QFMT " (redis://, redis+unix:// or redis-cluster://)",
			    QARG(span_of(uri, sep + 3)));
	}

	/* query string */
	const char *end = rest + strlen(rest);
	const char *qmark = strchr(rest, '?');
	struct span body = span_of(rest, qmark ? qmark : end);
	/* the scheme-specific part: [userinfo@]servers; userinfo ends at the
	 * last '@' before the path (credentials must percent-encode '/') */
	const char *slash = memchr(body.p, '/', body.n);
	const char *authority_end = slash ? slash : body.p + body.n;
	const char *at = NULL;
	for (const char *q = body.p; q < authority_end; q++)
		if (*q == '@')
			at = q;
	if (at) {
		if ((rc = parse_userinfo(span_of(body.p, at), &c, &seen, err, errcap)))
			return rc;
		body = span_of(at + 1, body.p + body.n);
	}

	switch (c.kind) {
	case SHMC__UPLINK_REDIS:
		rc = parse_redis(body, &c, err, errcap);
		break;
	case SHMC__UPLINK_REDIS_UNIX:
		rc = parse_unix(body, &c, err, errcap);
		break;
	case SHMC__UPLINK_REDIS_CLUSTER:
		rc = parse_cluster(body, &c, err, errcap);
		break;
	}
	if (rc)
		return rc;
	if (qmark && (rc = parse_query(span_of(qmark + 1, end), &c, &seen, err, errcap)))
		return rc;
	if (c.user[0] && !c.password[0])
		return fail(err, errcap, "user '%s' has no password", c.user);
	*cfg = c;
	return 0;
}
