/*
 * origin.h - the remote tier behind the demo's L1: a Redis server reached
 * over hiredis, or a built-in stand-in that answers after a configurable
 * delay and keeps nothing. The workers use it for their baseline (every
 * request straight to the origin) and for the loaders they give
 * shmc_fetch(); the master uses it to load the key set into Redis first.
 *
 * A struct origin is one process's connection: open one after fork(),
 * never share one across processes or threads.
 */
#ifndef DEMO_ORIGIN_H
#define DEMO_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

struct origin;

struct origin_config {
	const char *uri;     /* redis://[[user]:password@]host[:port][/db] or
			      * redis+unix://[[user]:password@]/path, a ?query is
			      * ignored; NULL = the built-in origin */
	unsigned latency_us; /* the built-in origin's round trip */
	size_t value_bytes;  /* the built-in origin's values */
};

/* Connects (Redis: with AUTH and SELECT as the URI says). Returns 0 and
 * *out, or -1 with a message in err. */
int origin_open(const struct origin_config *cfg, struct origin **out, char *err, size_t errcap);

/* Closes the connection; NULL is fine. */
void origin_close(struct origin *o);

/* "Redis" or "the built-in origin", for messages. */
const char *origin_name(const struct origin *o);
bool origin_is_redis(const struct origin *o);

/* GET key into buf (cap bytes), *vlen its length. Returns 0,
 * SHMC_ENOTFOUND (no such key), SHMC_ERANGE (cap too small) or SHMC_EUPLINK
 * (the server failed or refused; origin_error() says how). */
int origin_get(struct origin *o, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen);

/* SET key to val with no expiry. The built-in origin keeps nothing: it only
 * takes its round trip. Returns 0 or SHMC_EUPLINK. */
int origin_set(struct origin *o, const char *key, size_t klen, const char *val, size_t vlen);

/* Stores the original value (tag "origin") of keys 0..nkeys-1, pipelined;
 * the built-in origin needs nothing. Returns 0 or SHMC_EUPLINK. */
int origin_keys_load(struct origin *o, unsigned nkeys, size_t value_bytes);

/* Deletes keys 0..nkeys-1, pipelined. Returns 0 or SHMC_EUPLINK. */
int origin_keys_delete(struct origin *o, unsigned nkeys);

/* What the last failed call met; "" if none. */
const char *origin_error(const struct origin *o);

#endif
