/*
 * workload.h - what the demo's workers ask for, and how they tell a right
 * answer from a wrong one: key names, Zipf popularity, values that name
 * their key.
 */
#ifndef DEMO_WORKLOAD_H
#define DEMO_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_BYTES 32u	    /* room for "demo:key:" and any rank */
#define VALUE_MIN_BYTES 64u /* room for the key and a tag in every value */
#define VALUE_MAX_BYTES (64u << 10)

/* "demo:key:<rank>" into key (KEY_BYTES); returns its length. Rank 0 is
 * the most popular key. The prefix keeps the demo's keys apart from other
 * data on a Redis server it is pointed at. */
size_t key_name(char *key, unsigned rank);

/* cdf[i] = P(rank <= i) under Zipf(s) over n ranks, computed once so that
 * a draw costs a binary search rather than a pow(). NULL if out of memory;
 * the caller frees it. */
double *zipf_cdf(unsigned n, double s);

/* A rank in [0, n) drawn from cdf; *rng is the caller's xorshift64 state
 * (never 0). */
unsigned zipf_draw(const double *cdf, unsigned n, uint64_t *rng);

/* A value is "<key>|<tag>|xxx...#", vlen bytes (at least VALUE_MIN_BYTES):
 * it names its key, so a reader can tell another key's bytes, carries a tag
 * saying who wrote it ("origin" for the original, "w<n>" for the writer's
 * n-th update), and ends with '#', so a reader can tell a short copy. */
void value_fill(char *buf, size_t vlen, const char *key, size_t klen, const char *tag);

/* Is buf (vlen bytes) a whole value of this key, want bytes long? */
bool value_ok(const char *buf, size_t vlen, size_t want, const char *key, size_t klen);

/* Does value buf (of a key klen bytes long) carry tag? */
bool value_has_tag(const char *buf, size_t vlen, size_t klen, const char *tag);

#endif
