/*
 * redis_node.c - one Redis server behind the uplink (see redis_node.h):
 * a blocking hiredis 0.14 connection with our own deadlines, a reconnect
 * back-off, a circuit breaker, health checks and pipelined batches.
 *
 * Deadlines. hiredis 0.14 offers a connect timeout and SO_RCVTIMEO /
 * SO_SNDTIMEO (redisSetTimeout), both per system call: a server that
 * dribbles one byte at a time would stretch a pipeline without bound. So
 * the connection stays blocking (hiredis' own connect-with-timeout) and the
 * socket timeouts stay set as a safety net, but a whole exchange (the write
 * of the pipeline and the read of every reply) runs against one deadline of
 * command_timeout_ms: replies are taken from hiredis' reader
 * (redisGetReplyFromReader), fed by our own reads (read_some). The first
 * read of an exchange blocks, one system call where poll + read would be
 * two; SO_RCVTIMEO ends it RCV_SLACK_MS before the deadline at the latest
 * (the kernel rounds it up to its tick), and from then on the socket is
 * read only after poll() said it is readable within the time left. (A
 * write still blocks until the kernel takes it all or SO_SNDTIMEO expires:
 * a pipeline too big for the socket buffer, sent to a server that stopped
 * reading, can take up to twice command_timeout_ms.)
 *
 * Failures come in two kinds. A failure of the node as a whole (connect
 * error, lost connection, timeout, a reply hiredis cannot parse, or a reply
 * of a type the command cannot produce) leaves the connection in an unknown
 * state: it is dropped, every op of the pipeline fails, the reconnect
 * back-off grows (50 ms doubling to 2 s) and the breaker counts it. An error
 * reply (-ERR ..., MOVED, ASK, TRYAGAIN, CLUSTERDOWN) is an answer: the node
 * is healthy and only that op fails.
 *
 * Breaker. breaker_failures consecutive node failures open it; while open,
 * requests fail without a system call. Once breaker_open_ms have passed it
 * is half-open (shmc__rnode_breaker reports it so): the next exec, command
 * or health check is the probe, which closes it on success and opens it
 * again on failure. The node is used by one thread at a time (uplink.c's
 * exec_lock), so a probe is never in flight while another request asks to
 * pass.
 *
 * Stale connections. Before a request reuses a connection, a zero-timeout
 * poll() checks that the server has not closed it (or sent anything
 * unasked) while it was idle; such a connection is replaced silently: the
 * server's idle timeout is not a failure of the node.
 *
 * SIGPIPE. hiredis writes with write(2), which raises SIGPIPE on a
 * connection the peer has reset, and a library must not kill its host:
 * commands are sent with send(2) and MSG_NOSIGNAL instead (flush_output).
 *
 * Counters (struct shmc__rnode_stats): calls and ops count the pipelines
 * (and shmc__rnode_command calls) sent on a live connection, not health
 * PINGs; errors_connect counts failed connections, lost connections and
 * refused handshakes (AUTH, SELECT, READONLY); errors_timeout, timeouts of
 * exchanges; errors_protocol, garbage and replies of the wrong type;
 * errors_reply, error replies other than redirects and retry answers;
 * fast_fails, ops refused without an attempt: while the breaker is open
 * (as redis_node.h says) and also during the reconnect back-off, which
 * refuses requests the same way while the breaker is still closed.
 *
 * Reconnect back-off. After a node failure no connection is attempted for
 * 50 ms, doubling with each further failure up to 2 s; requests meanwhile
 * fail at once ("reconnect back-off, N ms left, after: <last failure>") and
 * shmc__rnode_available() says false. A half-open probe ignores it; any
 * success clears it.
 *
 * shmc__rnode_command hands fn every reply but an error reply: that one is
 * returned as SHMC_EUPLINK with the server's message in err (counted in
 * errors_reply; the node stays healthy), so fn only parses successes.
 */
#include "redis_node.h"

#include "alloc.h"

#include <shmcache.h>

#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 2000
#define SLOT_COUNT 16384
#define KEY_SHOWN_MAX 32 /* bytes of a key quoted in messages */
#define GET_PTTL_INLINE_KEY_MAX 200 /* longer keys take hiredis' argv formatting */

struct shmc__rnode {
	struct shmc__endpoint ep;
	char name[SHMC__HOST_MAX + 8]; /* "host:port", "[v6]:port" or the path */
	/* settings, from the uplink configuration */
	uint32_t connect_timeout_ms;
	uint32_t command_timeout_ms;
	uint32_t breaker_failures;
	uint32_t breaker_open_ms;
	uint32_t health_interval_ms;
	unsigned db;
	bool readonly;
	char user[sizeof(((struct shmc__uplink_config *)0)->user)];
	char password[sizeof(((struct shmc__uplink_config *)0)->password)];

	redisContext *ctx; /* NULL = not connected */
	/* reconnect back-off: no connection attempt before reconnect_at_ms
	 * (0 = none pending); backoff_ms doubles with each node failure and is
	 * cleared by a success */
	uint32_t backoff_ms;
	uint64_t reconnect_at_ms;
	/* breaker */
	enum shmc__breaker_state breaker; /* CLOSED, OPEN, or HALF_OPEN during a probe */
	uint32_t failures;		  /* consecutive node failures */
	uint64_t opened_at_ms;
	uint64_t last_ok_ms; /* end of the last successful exchange; 0 = none */
	char last_err[160];  /* the last node failure, for back-off messages */

	struct shmc__rnode_stats stats;
};

/* What made a node fail as a whole. */
enum node_failure {
	FAIL_CONNECT,  /* connect, handshake refused, connection lost */
	FAIL_TIMEOUT,  /* no (whole) answer within the deadline */
	FAIL_PROTOCOL, /* garbage, or a reply the command cannot produce */
	FAIL_REPLY,    /* an error reply to a health check (-LOADING, ...) */
};

/* ---------------------------------------------------------------- time */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000u;
}

static struct timeval timeval_of_ms(uint32_t ms)
{
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* ------------------------------------------------------------ messages */

__attribute__((format(printf, 3, 4))) static void put_err(char *err, size_t cap, const char *fmt,
							  ...)
{
	va_list ap;

	if (!err || !cap)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* A key as messages show it: printable ASCII as is, other bytes as \xNN,
 * at most KEY_SHOWN_MAX bytes of it, then "...". */
static void show_key(char *out, size_t cap, const void *key, size_t klen)
{
	const unsigned char *k = key;
	size_t n = 0;

	for (size_t i = 0; i < klen && i < KEY_SHOWN_MAX; i++) {
		int w = (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\')
				? snprintf(out + n, cap - n, "%c", k[i])
				: snprintf(out + n, cap - n, "\\x%02x", k[i]);
		if (w < 0 || (size_t)w >= cap - n) {
			out[n] = '\0';
			return;
		}
		n += (size_t)w;
	}
	if (klen > KEY_SHOWN_MAX)
		snprintf(out + n, cap - n, "...");
}

static const char *reply_type_name(int type)
{
	switch (type) {
	case REDIS_REPLY_STRING:
		return "string";
	case REDIS_REPLY_ARRAY:
		return "array";
	case REDIS_REPLY_INTEGER:
		return "integer";
	case REDIS_REPLY_NIL:
		return "nil";
	case REDIS_REPLY_STATUS:
		return "status";
	case REDIS_REPLY_ERROR:
		return "error";
	default:
		return "unknown";
	}
}

static void endpoint_name(char *out, size_t cap, const struct shmc__endpoint *ep)
{
	if (ep->port == 0)
		snprintf(out, cap, "%s", ep->host);
	else if (strchr(ep->host, ':'))
		snprintf(out, cap, "[%s]:%u", ep->host, (unsigned)ep->port);
	else
		snprintf(out, cap, "%s:%u", ep->host, (unsigned)ep->port);
}

/* ---------------------------------------------------- connection state */

static void drop_connection(struct shmc__rnode *n)
{
	if (n->ctx) {
		redisFree(n->ctx);
		n->ctx = NULL;
	}
}

/* The node failed as a whole: drop the connection, count, back off, feed
 * the breaker. why is what every op's err will say. */
static void node_failed(struct shmc__rnode *n, enum node_failure kind, const char *why)
{
	uint64_t now = now_ms();

	drop_connection(n);
	switch (kind) {
	case FAIL_CONNECT:
		n->stats.errors_connect++;
		break;
	case FAIL_TIMEOUT:
		n->stats.errors_timeout++;
		break;
	case FAIL_PROTOCOL:
		n->stats.errors_protocol++;
		break;
	case FAIL_REPLY:
		n->stats.errors_reply++;
		break;
	}
	snprintf(n->last_err, sizeof n->last_err, "%s", why);
	n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2 : BACKOFF_FIRST_MS;
	if (n->backoff_ms > BACKOFF_MAX_MS)
		n->backoff_ms = BACKOFF_MAX_MS;
	n->reconnect_at_ms = now + n->backoff_ms;
	if (n->failures < UINT32_MAX)
		n->failures++;
	if (n->breaker == SHMC__BREAKER_HALF_OPEN ||
	    (n->breaker == SHMC__BREAKER_CLOSED && n->failures >= n->breaker_failures)) {
		n->breaker = SHMC__BREAKER_OPEN;
		n->opened_at_ms = now;
		n->stats.breaker_opens++;
	}
}

static void node_ok(struct shmc__rnode *n)
{
	n->failures = 0;
	n->backoff_ms = 0;
	n->reconnect_at_ms = 0;
	n->breaker = SHMC__BREAKER_CLOSED;
	n->last_ok_ms = now_ms();
}

static bool open_period_over(const struct shmc__rnode *n, uint64_t now)
{
	return now - n->opened_at_ms >= n->breaker_open_ms;
}

/* May a request go now? If not, why (for every op's err). An open breaker
 * whose period is over turns half-open: this request is the probe, and it
 * ignores the reconnect back-off. */
static bool admit(struct shmc__rnode *n, char *why, size_t cap)
{
	uint64_t now;

	switch (n->breaker) {
	case SHMC__BREAKER_OPEN:
		now = now_ms();
		if (!open_period_over(n, now)) {
			put_err(why, cap, "breaker open (%s)", n->name);
			return false;
		}
		n->breaker = SHMC__BREAKER_HALF_OPEN;
		return true;
	case SHMC__BREAKER_HALF_OPEN:
		return true;
	case SHMC__BREAKER_CLOSED:
		break;
	}
	if (n->ctx || !n->reconnect_at_ms)
		return true;
	now = now_ms();
	if (now >= n->reconnect_at_ms)
		return true;
	put_err(why, cap, "reconnect back-off, %u ms left, after: %s",
		(unsigned)(n->reconnect_at_ms - now), n->last_err);
	return false;
}

/* --------------------------------------------------------------- I/O */

/* Milliseconds left before deadline_ns, rounded up; 0 if it has passed. */
static int ms_left(uint64_t deadline_ns)
{
	uint64_t now = now_ns();

	if (now >= deadline_ns)
		return 0;
	uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Why hiredis' reader gave up on the bytes it was fed: garbage, or no
 * memory for the reply (both count as protocol failures). */
static enum node_failure reader_failure(struct shmc__rnode *n, char *why, size_t cap)
{
	put_err(why, cap, "protocol error: %s (%s)", n->ctx->errstr, n->name);
	return FAIL_PROTOCOL;
}

/* Write the pending commands (hiredis' output buffer) before the deadline.
 * send(2) with MSG_NOSIGNAL, not hiredis' write(2): on a connection the
 * peer has reset that fails with EPIPE instead of raising SIGPIPE, which
 * a library must not do to its host, and costs no signal-mask calls. */
static int flush_output(struct shmc__rnode *n, uint64_t deadline_ns, uint32_t budget_ms,
			enum node_failure *kind, char *why, size_t cap)
{
	redisContext *c = n->ctx;
	size_t len = sdslen(c->obuf), sent = 0;
	int rc = 0;

	while (sent < len) {
		ssize_t k = send(c->fd, c->obuf + sent, len - sent, MSG_NOSIGNAL);
		if (k > 0) {
			sent += (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			put_err(why, cap, "connection lost: %s (%s)", strerror(errno), n->name);
			*kind = FAIL_CONNECT;
			rc = SHMC_EUPLINK;
			break;
		}
		/* The socket's send timeout expired, or it is non-blocking. */
		int left = ms_left(deadline_ns);
		struct pollfd p = {.fd = c->fd, .events = POLLOUT};
		int r = left ? poll(&p, 1, left) : 0;
		if (r == 0) {
			put_err(why, cap, "timed out after %u ms (%s)", (unsigned)budget_ms,
				n->name);
			*kind = FAIL_TIMEOUT;
			rc = SHMC_EUPLINK;
			break;
		}
		if (r < 0 && errno != EINTR) {
			put_err(why, cap, "poll: %s (%s)", strerror(errno), n->name);
			*kind = FAIL_CONNECT;
			rc = SHMC_EUPLINK;
			break;
		}
	}
	/* Sent bytes leave the buffer (after a failure the connection is
	 * dropped with whatever is left). */
	if (sent == len)
		sdsclear(c->obuf);
	else if (sent)
		sdsrange(c->obuf, (ssize_t)sent, -1);
	return rc;
}

/* How long before the command timeout SO_RCVTIMEO ends a blocking read:
 * more than the two ticks the kernel may round it up by (10 ms each at
 * HZ=100). Commands with a timeout shorter than twice this always poll. */
#define RCV_SLACK_MS 25u

static bool blocking_first_read(const struct shmc__rnode *n)
{
	return n->command_timeout_ms > 2 * RCV_SLACK_MS;
}

/* Read what the socket has into hiredis' reader, waiting until deadline_ns
 * at the latest (the first read of an exchange, with all of budget_ms
 * left, blocks under SO_RCVTIMEO; later ones poll first). 0, or
 * SHMC_EUPLINK with *kind and why. */
static int read_some(struct shmc__rnode *n, uint64_t deadline_ns, uint32_t budget_ms,
		     enum node_failure *kind, char *why, size_t cap)
{
	int fd = n->ctx->fd, left = ms_left(deadline_ns);
	if ((uint32_t)left < budget_ms || !blocking_first_read(n)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = left ? poll(&p, 1, left) : 0;
		if (r == 0) {
			put_err(why, cap, "timed out after %u ms (%s)", (unsigned)budget_ms,
				n->name);
			*kind = FAIL_TIMEOUT;
			return SHMC_EUPLINK;
		}
		if (r < 0 && errno != EINTR) {
			put_err(why, cap, "poll: %s (%s)", strerror(errno), n->name);
			*kind = FAIL_CONNECT;
			return SHMC_EUPLINK;
		}
		if (r < 0)
			return 0;
	}
	char buf[16384];
	ssize_t got = recv(fd, buf, sizeof buf, 0);
	if (got > 0) {
		if (redisReaderFeed(n->ctx->reader, buf, (size_t)got) != REDIS_OK) {
			put_err(why, cap, "out of memory reading a reply (%s)", n->name);
			*kind = FAIL_PROTOCOL;
			return SHMC_EUPLINK;
		}
		return 0;
	}
	if (got == 0) {
		put_err(why, cap, "connection closed by the server (%s)", n->name);
		*kind = FAIL_CONNECT;
		return SHMC_EUPLINK;
	}
	/* EAGAIN: the blocking read's SO_RCVTIMEO expired, short of the
	 * deadline; the poll waits out the rest. */
	if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	put_err(why, cap, "connection lost: %s (%s)", strerror(errno), n->name);
	*kind = FAIL_CONNECT;
	return SHMC_EUPLINK;
}

/* The next reply, before the deadline. The caller frees it. */
static int read_reply(struct shmc__rnode *n, uint64_t deadline_ns, uint32_t budget_ms,
		      redisReply **out, enum node_failure *kind, char *why, size_t cap)
{
	for (;;) {
		void *reply = NULL;

		if (redisGetReplyFromReader(n->ctx, &reply) != REDIS_OK) {
			*kind = reader_failure(n, why, cap);
			return SHMC_EUPLINK;
		}
		if (reply) {
			*out = reply;
			return 0;
		}
		if (read_some(n, deadline_ns, budget_ms, kind, why, cap))
			return SHMC_EUPLINK;
	}
}

/* true if an idle connection was closed by the server, or carries bytes
 * nobody asked for: either way it cannot be used. */
static bool connection_stale(const struct shmc__rnode *n)
{
	struct pollfd p = {.fd = n->ctx->fd, .events = POLLIN | POLLRDHUP};

	return poll(&p, 1, 0) != 0;
}

static bool status_is(const redisReply *r, const char *status)
{
	return r->type == REDIS_REPLY_STATUS && r->len == strlen(status) &&
	       memcmp(r->str, status, r->len) == 0;
}

/* Connect and run the handshake (AUTH, SELECT, READONLY). */
static int connect_node(struct shmc__rnode *n, char *why, size_t cap)
{
	struct timeval tv = timeval_of_ms(n->connect_timeout_ms);
	uint64_t start = now_ns();
	redisContext *c = n->ep.port ? redisConnectWithTimeout(n->ep.host, n->ep.port, tv)
				     : redisConnectUnixWithTimeout(n->ep.host, tv);

	if (!c || c->err) {
		if (!c)
			put_err(why, cap, "connect: out of memory (%s)", n->name);
		else if (now_ns() - start >= (uint64_t)n->connect_timeout_ms * 1000000u)
			put_err(why, cap, "connect: timed out after %u ms (%s)",
				(unsigned)n->connect_timeout_ms, n->name);
		else
			put_err(why, cap, "connect: %s (%s)", c->errstr, n->name);
		if (c)
			redisFree(c);
		node_failed(n, FAIL_CONNECT, why);
		return SHMC_EUPLINK;
	}
	n->ctx = c;
	struct timeval rcv = timeval_of_ms(blocking_first_read(n)
						   ? n->command_timeout_ms - RCV_SLACK_MS
						   : n->command_timeout_ms);
	if (redisSetTimeout(c, timeval_of_ms(n->command_timeout_ms)) != REDIS_OK ||
	    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv) != 0) {
		put_err(why, cap, "connect: %s (%s)", c->err ? c->errstr : strerror(errno),
			n->name);
		node_failed(n, FAIL_CONNECT, why);
		return SHMC_EUPLINK;
	}
	if (n->ep.port)
		redisEnableKeepAlive(c); /* best effort */

	/* the handshake, pipelined */
	const char *names[3];
	unsigned nsteps = 0;
	if (n->password[0]) {
		/* AUTH [user] password */
		const char *argv[3] = {"AUTH", n->user, n->password};
		size_t argvlen[3] = {4, strlen(n->user), strlen(n->password)};
		if (!n->user[0]) {
			argv[1] = argv[2];
			argvlen[1] = argvlen[2];
		}
		redisAppendCommandArgv(c, n->user[0] ? 3 : 2, argv, argvlen);
		names[nsteps++] = "AUTH";
	}
	if (n->db) {
		char db[16];
		int len = snprintf(db, sizeof db, "%u", n->db);
		redisAppendCommandArgv(c, 2, (const char *[]){"SELECT", db},
				       (const size_t[]){6, (size_t)len});
		names[nsteps++] = "SELECT";
	}
	if (n->readonly) {
		redisAppendCommandArgv(c, 1, (const char *[]){"READONLY"}, (const size_t[]){8});
		names[nsteps++] = "READONLY";
	}
	if (!nsteps)
		return 0;
	if (c->err) {
		put_err(why, cap, "connect: %s (%s)", c->errstr, n->name);
		node_failed(n, FAIL_CONNECT, why);
		return SHMC_EUPLINK;
	}
	uint64_t deadline = now_ns() + (uint64_t)n->command_timeout_ms * 1000000u;
	enum node_failure kind = FAIL_CONNECT;
	if (flush_output(n, deadline, n->command_timeout_ms, &kind, why, cap)) {
		node_failed(n, kind, why);
		return SHMC_EUPLINK;
	}
	for (unsigned i = 0; i < nsteps; i++) {
		redisReply *r;
		if (read_reply(n, deadline, n->command_timeout_ms, &r, &kind, why, cap)) {
			node_failed(n, kind, why);
			return SHMC_EUPLINK;
		}
		bool ok = status_is(r, "OK");
		if (!ok && r->type == REDIS_REPLY_ERROR) {
			put_err(why, cap, "%s refused: %.*s (%s)", names[i], (int)r->len, r->str,
				n->name);
			kind = FAIL_CONNECT;
		} else if (!ok) {
			put_err(why, cap, "%s: reply of type %s, expected status OK (%s)", names[i],
				reply_type_name(r->type), n->name);
			kind = FAIL_PROTOCOL;
		}
		freeReplyObject(r);
		if (!ok) {
			node_failed(n, kind, why);
			return SHMC_EUPLINK;
		}
	}
	return 0;
}

/* A usable connection, made if needed. On failure the node has failed. */
static int ensure_connected(struct shmc__rnode *n, char *why, size_t cap)
{
	if (n->ctx && connection_stale(n))
		drop_connection(n); /* idle close: not a failure of the node */
	if (n->ctx)
		return 0;
	return connect_node(n, why, cap);
}

/* ------------------------------------------------------- public: setup */

struct shmc__rnode *shmc__rnode_new(const struct shmc__endpoint *ep,
				    const struct shmc__uplink_config *cfg)
{
	struct shmc__rnode *n = shmc__zalloc(sizeof *n);

	if (!n)
		return NULL;
	n->ep = *ep;
	n->ep.host[sizeof n->ep.host - 1] = '\0';
	endpoint_name(n->name, sizeof n->name, &n->ep);
	n->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1;
	n->command_timeout_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms : 1;
	n->breaker_failures = cfg->breaker_failures ? cfg->breaker_failures : 1;
	n->breaker_open_ms = cfg->breaker_open_ms;
	n->health_interval_ms = cfg->health_interval_ms;
	n->db = cfg->kind == SHMC__UPLINK_REDIS_CLUSTER ? 0 : cfg->db;
	snprintf(n->user, sizeof n->user, "%s", cfg->user);
	snprintf(n->password, sizeof n->password, "%s", cfg->password);
	n->breaker = SHMC__BREAKER_CLOSED;
	return n;
}

void shmc__rnode_free(struct shmc__rnode *n)
{
	if (!n)
		return;
	drop_connection(n);
	/* the password is not left behind in freed memory */
	memset(n->password, 0, sizeof n->password);
	shmc__free(n);
}

void shmc__rnode_set_readonly(struct shmc__rnode *n, bool on)
{
	if (n->readonly == on)
		return;
	n->readonly = on;
	drop_connection(n); /* the next connection's handshake says it */
}

const struct shmc__endpoint *shmc__rnode_endpoint(const struct shmc__rnode *n)
{
	return &n->ep;
}

const char *shmc__rnode_name(const struct shmc__rnode *n)
{
	return n->name;
}

uint32_t shmc__rnode_failures(const struct shmc__rnode *n)
{
	return n->failures;
}

void shmc__rnode_stats(const struct shmc__rnode *n, struct shmc__rnode_stats *out)
{
	*out = n->stats;
}

/* ------------------------------------------------------- public: breaker */

bool shmc__rnode_available(struct shmc__rnode *n)
{
	switch (n->breaker) {
	case SHMC__BREAKER_OPEN:
		return open_period_over(n, now_ms());
	case SHMC__BREAKER_HALF_OPEN:
		return true;
	case SHMC__BREAKER_CLOSED:
		break;
	}
	return n->ctx || !n->reconnect_at_ms || now_ms() >= n->reconnect_at_ms;
}

enum shmc__breaker_state shmc__rnode_breaker(const struct shmc__rnode *n)
{
	if (n->breaker == SHMC__BREAKER_OPEN && open_period_over(n, now_ms()))
		return SHMC__BREAKER_HALF_OPEN;
	return n->breaker;
}

/* ------------------------------------------------------------ the ops */

static void op_reset(struct shmc__rop *op)
{
	op->rc = 0;
	op->val_out = NULL;
	op->vlen_out = 0;
	op->pttl_ms = -1;
	op->slot = 0;
	memset(&op->redirect_to, 0, sizeof op->redirect_to);
	op->err[0] = '\0';
}

static void fail_all(struct shmc__rop *ops, size_t nops, const char *why)
{
	for (size_t i = 0; i < nops; i++) {
		free(ops[i].val_out);
		ops[i].val_out = NULL;
		ops[i].vlen_out = 0;
		ops[i].rc = SHMC_EUPLINK;
		snprintf(ops[i].err, sizeof ops[i].err, "%s", why);
	}
}

static bool starts_with_word(const redisReply *r, const char *word)
{
	size_t w = strlen(word);

	return r->len >= w && memcmp(r->str, word, w) == 0 && (r->len == w || r->str[w] == ' ');
}

/* "<slot> <host>:<port>" of a MOVED or ASK into op. The host may be empty
 * ("MOVED 3999 :6380", Redis 7 when it does not know its address): the
 * node that answered. */
static bool parse_redirect(const struct shmc__rnode *n, const char *s, size_t len,
			   struct shmc__rop *op)
{
	const char *end = s + len, *sp = memchr(s, ' ', len);
	unsigned long slot = 0;

	if (!sp || sp == s || sp - s > 5)
		return false;
	for (const char *p = s; p < sp; p++) {
		if (*p < '0' || *p > '9')
			return false;
		slot = slot * 10 + (unsigned long)(*p - '0');
	}
	if (slot >= SLOT_COUNT)
		return false;
	const char *addr = sp + 1, *colon = NULL;
	for (const char *p = addr; p < end; p++)
		if (*p == ':')
			colon = p;
	if (!colon || end - colon - 1 < 1 || end - colon - 1 > 5)
		return false;
	unsigned long port = 0;
	for (const char *p = colon + 1; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port == 0 || port > 65535)
		return false;
	const char *host = addr, *host_end = colon;
	if (host_end - host >= 2 && host[0] == '[' && host_end[-1] == ']') {
		host++;
		host_end--;
	}
	size_t hlen = (size_t)(host_end - host);
	if (hlen >= sizeof op->redirect_to.host)
		return false;
	for (size_t i = 0; i < hlen; i++)
		if ((unsigned char)host[i] <= ' ')
			return false;
	if (hlen) {
		memcpy(op->redirect_to.host, host, hlen);
		op->redirect_to.host[hlen] = '\0';
	} else {
		snprintf(op->redirect_to.host, sizeof op->redirect_to.host, "%s", n->ep.host);
	}
	op->redirect_to.port = (uint16_t)port;
	op->slot = (uint16_t)slot;
	return true;
}

/* An error reply to op: a redirect, a retry answer or an error. Only the
 * first error reply of an op counts. */
static void op_error_reply(struct shmc__rnode *n, struct shmc__rop *op, const redisReply *r)
{
	if (op->rc)
		return;
	snprintf(op->err, sizeof op->err, "%.*s", (int)r->len, r->str);
	if (starts_with_word(r, "MOVED") || starts_with_word(r, "ASK")) {
		bool moved = r->str[1] == 'O';
		size_t skip = moved ? 6 : 4;
		if (r->len > skip && parse_redirect(n, r->str + skip, r->len - skip, op)) {
			op->rc = moved ? SHMC__ROP_MOVED : SHMC__ROP_ASK;
			return;
		}
		snprintf(op->err, sizeof op->err, "malformed redirect: %.*s", (int)r->len, r->str);
	} else if (starts_with_word(r, "TRYAGAIN")) {
		op->rc = SHMC__ROP_TRYAGAIN;
		return;
	} else if (starts_with_word(r, "CLUSTERDOWN")) {
		op->rc = SHMC__ROP_CLUSTERDOWN;
		return;
	}
	op->rc = SHMC_EUPLINK;
	n->stats.errors_reply++;
}

/* A reply of a type the command cannot produce: a protocol failure. */
static int wrong_type(struct shmc__rnode *n, const struct shmc__rop *op, const char *cmd,
		      const redisReply *r, const char *expected, char *why, size_t cap)
{
	char key[KEY_SHOWN_MAX * 4 + 4];

	show_key(key, sizeof key, op->key, op->klen);
	if (r->type == REDIS_REPLY_STATUS)
		put_err(why, cap, "%s %s: reply of type status ('%.*s'), expected %s (%s)", cmd,
			key, (int)(r->len > 32 ? 32 : r->len), r->str, expected, n->name);
	else
		put_err(why, cap, "%s %s: reply of type %s, expected %s (%s)", cmd, key,
			reply_type_name(r->type), expected, n->name);
	return SHMC_EUPLINK;
}

/* Decimal digits of v at p; returns the end. */
static char *put_decimal(char *p, size_t v)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = digits[--n];
	return p;
}

/* Append "GET key" and "PTTL key" as one piece of RESP, the bytes
 * redisAppendCommandArgv would produce for each, formatted on the stack:
 * a GET is the uplink's most frequent operation, and hiredis' argv path
 * allocates and frees a string per command. Keys over
 * GET_PTTL_INLINE_KEY_MAX bytes return false (the caller formats them). */
static bool append_get_pttl(redisContext *c, const void *key, size_t klen)
{
#define PUT_LITERAL(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)
	char buf[2 * GET_PTTL_INLINE_KEY_MAX + 64], *p = buf;

	if (klen > GET_PTTL_INLINE_KEY_MAX)
		return false;
	p = PUT_LITERAL(p, "*2\r\n$3\r\nGET\r\n$");
	p = put_decimal(p, klen);
	p = PUT_LITERAL(p, "\r\n");
	memcpy(p, key, klen);
	p += klen;
	p = PUT_LITERAL(p, "\r\n*2\r\n$4\r\nPTTL\r\n$");
	p = put_decimal(p, klen);
	p = PUT_LITERAL(p, "\r\n");
	memcpy(p, key, klen);
	p += klen;
	p = PUT_LITERAL(p, "\r\n");
#undef PUT_LITERAL
	redisAppendFormattedCommand(c, buf, (size_t)(p - buf));
	return true;
}

/* Append op's commands. */
static void append_op(redisContext *c, const struct shmc__rop *op)
{
	static const char *const asking[1] = {"ASKING"};
	static const size_t asking_len[1] = {6};

	switch (op->kind) {
	case SHMC__ROP_GET:
		if (!op->asking && append_get_pttl(c, op->key, op->klen))
			break;
		if (op->asking)
			redisAppendCommandArgv(c, 1, (const char **)asking, asking_len);
		redisAppendCommandArgv(c, 2, (const char *[]){"GET", op->key},
				       (const size_t[]){3, op->klen});
		if (op->asking)
			redisAppendCommandArgv(c, 1, (const char **)asking, asking_len);
		redisAppendCommandArgv(c, 2, (const char *[]){"PTTL", op->key},
				       (const size_t[]){4, op->klen});
		break;
	case SHMC__ROP_SET: {
		char px[24];
		int pxlen = snprintf(px, sizeof px, "%llu", (unsigned long long)op->px_ms);
		if (op->asking)
			redisAppendCommandArgv(c, 1, (const char **)asking, asking_len);
		redisAppendCommandArgv(
			c, op->px_ms ? 5 : 3,
			(const char *[]){"SET", op->key, op->val ? op->val : "", "PX", px},
			(const size_t[]){3, op->klen, op->vlen, 2, (size_t)pxlen});
		break;
	}
	case SHMC__ROP_DEL:
		if (op->asking)
			redisAppendCommandArgv(c, 1, (const char **)asking, asking_len);
		redisAppendCommandArgv(c, 2, (const char *[]){"DEL", op->key},
				       (const size_t[]){3, op->klen});
		break;
	}
}

/* Read and check op's replies (in the order append_op sent them). A
 * non-zero return is a failure of the node (why says it, *kind how to count
 * it); op's own outcome is in op->rc. */
static int take_op(struct shmc__rnode *n, struct shmc__rop *op, uint64_t deadline,
		   enum node_failure *kind, char *why, size_t cap)
{
	unsigned ncmds = op->kind == SHMC__ROP_GET ? 2 : 1;
	unsigned per_cmd = op->asking ? 2 : 1; /* [ASKING,] command */
	unsigned total = ncmds * per_cmd;
	redisReply *r[4] = {NULL, NULL, NULL, NULL};
	int rc = 0;

	for (unsigned i = 0; i < total && !rc; i++)
		rc = read_reply(n, deadline, n->command_timeout_ms, &r[i], kind, why, cap);
	if (rc)
		goto out;
	*kind = FAIL_PROTOCOL; /* what a bad reply below is */
	if (op->asking) {
		for (unsigned i = 0; i < total && !rc; i += 2) {
			if (r[i]->type == REDIS_REPLY_ERROR)
				op_error_reply(n, op, r[i]);
			else if (!status_is(r[i], "OK"))
				rc = wrong_type(n, op, "ASKING", r[i], "status OK", why, cap);
		}
		if (rc)
			goto out;
	}
	redisReply *cmd = r[per_cmd - 1];
	redisReply *pttl = r[2 * per_cmd - 1]; /* GET only: its PTTL */
	switch (op->kind) {
	case SHMC__ROP_GET:
		if (cmd->type == REDIS_REPLY_ERROR)
			op_error_reply(n, op, cmd);
		else if (cmd->type != REDIS_REPLY_STRING && cmd->type != REDIS_REPLY_NIL) {
			rc = wrong_type(n, op, "GET", cmd, "string or nil", why, cap);
			break;
		}
		if (pttl->type == REDIS_REPLY_ERROR) {
			op_error_reply(n, op, pttl);
		} else if (pttl->type != REDIS_REPLY_INTEGER) {
			rc = wrong_type(n, op, "PTTL", pttl, "integer", why, cap);
			break;
		} else if (pttl->integer < -2) {
			char key[KEY_SHOWN_MAX * 4 + 4];
			show_key(key, sizeof key, op->key, op->klen);
			put_err(why, cap, "PTTL %s: %lld, expected -2 or more (%s)", key,
				pttl->integer, n->name);
			rc = SHMC_EUPLINK;
			break;
		}
		if (op->rc)
			break;
		/* nil, or the key vanished between GET and PTTL: absent */
		if (cmd->type == REDIS_REPLY_NIL || pttl->integer == -2) {
			op->rc = SHMC_ENOTFOUND;
			break;
		}
		op->val_out = malloc(cmd->len ? cmd->len : 1);
		if (!op->val_out) {
			op->rc = SHMC_ENOMEM;
			snprintf(op->err, sizeof op->err, "out of memory for a value of %zu bytes",
				 cmd->len);
			break;
		}
		memcpy(op->val_out, cmd->str, cmd->len);
		op->vlen_out = cmd->len;
		op->pttl_ms = pttl->integer;
		break;
	case SHMC__ROP_SET:
		if (cmd->type == REDIS_REPLY_ERROR)
			op_error_reply(n, op, cmd);
		else if (!status_is(cmd, "OK"))
			rc = wrong_type(n, op, "SET", cmd, "status OK", why, cap);
		break;
	case SHMC__ROP_DEL:
		if (cmd->type == REDIS_REPLY_ERROR)
			op_error_reply(n, op, cmd);
		else if (cmd->type != REDIS_REPLY_INTEGER)
			rc = wrong_type(n, op, "DEL", cmd, "integer", why, cap);
		break;
	}
out:
	for (unsigned i = 0; i < total; i++)
		if (r[i])
			freeReplyObject(r[i]);
	return rc;
}

/* ----------------------------------------------------- public: requests */

int shmc__rnode_exec(struct shmc__rnode *n, struct shmc__rop *ops, size_t nops)
{
	char why[sizeof ops[0].err];
	enum node_failure kind = FAIL_CONNECT;

	for (size_t i = 0; i < nops; i++)
		op_reset(&ops[i]);
	if (!nops)
		return 0;
	if (!admit(n, why, sizeof why)) {
		n->stats.fast_fails += nops;
		fail_all(ops, nops, why);
		return SHMC_EUPLINK;
	}
	if (ensure_connected(n, why, sizeof why)) {
		fail_all(ops, nops, why);
		return SHMC_EUPLINK;
	}
	n->stats.calls++;
	n->stats.ops += nops;
	uint64_t deadline = now_ns() + (uint64_t)n->command_timeout_ms * 1000000u;
	for (size_t i = 0; i < nops; i++)
		append_op(n->ctx, &ops[i]);
	/* appending fails only for want of memory; the buffer may then hold a
	 * partial command, so the connection goes too */
	if (n->ctx->err) {
		put_err(why, sizeof why, "out of memory for the pipeline (%s)", n->name);
		drop_connection(n);
		fail_all(ops, nops, why);
		return SHMC_EUPLINK;
	}
	int rc = flush_output(n, deadline, n->command_timeout_ms, &kind, why, sizeof why);
	for (size_t i = 0; i < nops && !rc; i++)
		rc = take_op(n, &ops[i], deadline, &kind, why, sizeof why);
	if (rc) {
		node_failed(n, kind, why);
		fail_all(ops, nops, why);
		return SHMC_EUPLINK;
	}
	node_ok(n);
	return 0;
}

int shmc__rnode_command(struct shmc__rnode *n, int argc, const char **argv, const size_t *argvlen,
			int (*fn)(void *arg, const struct redisReply *reply), void *arg, char *err,
			size_t errcap)
{
	char why[160];
	enum node_failure kind = FAIL_CONNECT;
	redisReply *reply = NULL;

	put_err(err, errcap, "%s", "");
	if (!admit(n, why, sizeof why)) {
		n->stats.fast_fails++;
		put_err(err, errcap, "%s", why);
		return SHMC_EUPLINK;
	}
	if (ensure_connected(n, why, sizeof why)) {
		put_err(err, errcap, "%s", why);
		return SHMC_EUPLINK;
	}
	n->stats.calls++;
	uint64_t deadline = now_ns() + (uint64_t)n->command_timeout_ms * 1000000u;
	if (redisAppendCommandArgv(n->ctx, argc, argv, argvlen) != REDIS_OK) {
		put_err(err, errcap, "out of memory for the command (%s)", n->name);
		drop_connection(n);
		return SHMC_EUPLINK;
	}
	if (flush_output(n, deadline, n->command_timeout_ms, &kind, why, sizeof why) ||
	    read_reply(n, deadline, n->command_timeout_ms, &reply, &kind, why, sizeof why)) {
		node_failed(n, kind, why);
		put_err(err, errcap, "%s", why);
		return SHMC_EUPLINK;
	}
	node_ok(n);
	int rc;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* an answer, not a failure of the node; fn sees only the
		 * replies the command can succeed with */
		n->stats.errors_reply++;
		put_err(err, errcap, "%.*s", (int)reply->len, reply->str);
		rc = SHMC_EUPLINK;
	} else {
		rc = fn(arg, reply);
	}
	freeReplyObject(reply);
	return rc;
}

/* ------------------------------------------------------- public: health */

/* PING on the node's connection (made if needed); feeds the breaker. */
static void ping(struct shmc__rnode *n)
{
	char why[160];
	enum node_failure kind = FAIL_CONNECT;
	redisReply *reply = NULL;

	if (ensure_connected(n, why, sizeof why))
		return;
	uint64_t deadline = now_ns() + (uint64_t)n->command_timeout_ms * 1000000u;
	if (redisAppendCommandArgv(n->ctx, 1, (const char *[]){"PING"}, (const size_t[]){4}) !=
	    REDIS_OK) {
		drop_connection(n);
		return;
	}
	if (flush_output(n, deadline, n->command_timeout_ms, &kind, why, sizeof why) ||
	    read_reply(n, deadline, n->command_timeout_ms, &reply, &kind, why, sizeof why)) {
		node_failed(n, kind, why);
		return;
	}
	bool pong = status_is(reply, "PONG");
	if (reply->type == REDIS_REPLY_ERROR) /* -LOADING, -MASTERDOWN, -NOAUTH... */
		put_err(why, sizeof why, "PING: %.*s (%s)", (int)reply->len, reply->str, n->name);
	else if (!pong)
		put_err(why, sizeof why, "PING: reply of type %s, expected status PONG (%s)",
			reply_type_name(reply->type), n->name);
	kind = reply->type == REDIS_REPLY_ERROR ? FAIL_REPLY : FAIL_PROTOCOL;
	freeReplyObject(reply);
	if (pong)
		node_ok(n);
	else
		node_failed(n, kind, why);
}

void shmc__rnode_health(struct shmc__rnode *n)
{
	uint64_t now = now_ms();

	switch (n->breaker) {
	case SHMC__BREAKER_OPEN:
		if (!open_period_over(n, now))
			return;
		n->breaker = SHMC__BREAKER_HALF_OPEN; /* this PING is the probe */
		ping(n);
		return;
	case SHMC__BREAKER_HALF_OPEN:
		ping(n);
		return;
	case SHMC__BREAKER_CLOSED:
		break;
	}
	if (n->last_ok_ms && now - n->last_ok_ms < n->health_interval_ms)
		return;
	if (!n->ctx && n->reconnect_at_ms && now < n->reconnect_at_ms)
		return;
	ping(n);
}
