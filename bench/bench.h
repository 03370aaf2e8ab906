/*
 * bench.h - what shmcache-bench.c (the prefork load generator, the memory
 * phase), trace.c (eviction quality on a replayed trace), herd.c
 * (read-through under expiry), peers.c (the other stores --peers
 * measures) and uplink.c (the Redis uplink against redis-benchmark)
 * share: the random generators, the clock, the key and value format, the
 * bench's own failure codes, the interrupt flag, segment creation, and
 * each mode's entry points.
 */
#ifndef SHMC_BENCH_H
#define SHMC_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shmcache.h"

/* Bytes an item takes in the log besides its key and value: the header the
 * public API documents (shmc_opts_set_chunk_size). */
#define ITEM_HEADER_BYTES 12u

/* Our own failure code, next to the library's: a hit returned bytes that
 * were never stored under that key. */
#define BENCH_EBADVALUE (-2000)
/* A peer's client library or server failed a request (--peers); the
 * peer's own message went to stderr. */
#define BENCH_EPEER (-2001)

static inline const char *error_name(int rc)
{
	if (rc == BENCH_EBADVALUE)
		return "BAD_VALUE (hit returned another key's value)";
	if (rc == BENCH_EPEER)
		return "PEER_ERROR (the peer's client or server failed; see stderr)";
	return shmc_errname(rc);
}

/* Set by SIGINT, SIGTERM and SIGHUP; long loops poll it so that the bench
 * stops early and still unlinks every segment it created. */
extern volatile sig_atomic_t bench_interrupted;

/* --------------------------------------------------------------- random */

static inline uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* xorshift64*: fast, and good enough to pick keys. state must not be 0. */
static inline uint64_t xorshift_next(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static inline uint64_t xorshift_seed(uint64_t seed)
{
	uint64_t s = splitmix64(&seed);
	return s ? s : 1;
}

/* Uniform in [0, n) without a division (Lemire's multiply-shift). */
static inline uint64_t range_map(uint64_t x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

/* Uniform in [0, 1), 53 random bits. */
static inline double uniform_unit(uint64_t *state)
{
	return (double)(xorshift_next(state) >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------- clock */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ----------------------------------------------------------------- keys */

/* Key i = "k" followed by i in decimal, zero-padded to key_size bytes (no
 * terminating NUL). The caller makes sure i has at most key_size - 1
 * digits. Written digit by digit: the trace formats one key per request. */
static inline void key_format(char *out, size_t key_size, uint64_t i)
{
	out[0] = 'k';
	for (size_t pos = key_size - 1; pos >= 1; pos--) {
		out[pos] = (char)('0' + i % 10);
		i /= 10;
	}
}

/* Value of key i: a fixed pattern whose first stamp_bytes bytes are the
 * index, so a GET can check it got its own key's value at the cost of one
 * short compare, and a SET can build the value by stamping 8 bytes into a
 * copy of the pattern. */
static inline void value_stamp(unsigned char *value, size_t stamp_bytes, uint64_t i)
{
	memcpy(value, &i, stamp_bytes);
}

static inline unsigned decimal_digits(uint64_t v)
{
	unsigned d = 1;
	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* ------------------------------------------------------------- segments */

struct segment_spec {
	size_t segment_bytes;
	size_t item_bytes;  /* expected key + value: sizes the index */
	size_t key_size;    /* raises the key limit when over the default */
	size_t chunk_bytes; /* 0: the library's choice */
	unsigned max_procs; /* process slots; 256 (the default) or fewer: the default */
	bool sweeper;	    /* run the background roles in this process */
};

/* Unlinks any leftover of the same name, then creates name exclusively.
 * Returns 0 and *out, or -1 after printing why. */
int bench_segment_create(const char *name, const struct segment_spec *spec, shmc_cache **out);

/* ----------------------------------------------------------- trace mode */

struct trace_config {
	uint64_t requests;    /* Zipf requests per trace */
	uint64_t keys;	      /* distinct keys the Zipf requests draw from */
	uint64_t cache_items; /* items of key_size + value_size the data area is sized for */
	double zipf_theta;
	size_t key_size;
	size_t value_size;
	uint64_t seed; /* of the Zipf draws and of the rank -> key permutation */
	bool json;
	const char *segment_name; /* the bench's name; the trace appends ".trc" */
};

/* Replays a Zipf trace and the same trace with a one-pass scan through a
 * fresh segment each (cache-aside, one process) and through an exact LRU of
 * the same average size, and prints both miss ratios. Returns 0, or -1 if
 * the cache failed an operation, returned a wrong value or the run was
 * interrupted (the figures printed so far stand). */
int trace_run(const struct trace_config *tc);

/* Option parsing, shared by every mode. */

/* A decimal unsigned integer in [min, max] (the whole string; no sign):
 * 0 and *out, or -1. */
int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* A number in [min, max] (the whole string): 0 and *out, or -1. */
int bench_parse_double(const char *s, double min, double max, double *out);

/* A segment name the library accepts, of at most max_len bytes (modes
 * that add suffixes leave room for them). */
bool bench_name_valid(const char *s, size_t max_len);

/* Report a bad value for option; returns -1. */
int bench_bad_value(const char *option, const char *value);

/* After getopt_long: -1 (reported) if an operand is left, else 0. */
int bench_no_operands(int argc, char **argv);

/* ------------------------------------------------------------ herd mode */

/* shmcache-bench --herd (herd.c): read-through under expiry, shmc_fetch
 * against a naive get / load / set loop. Parses argv itself (its own
 * options; --herd --help lists them). Returns the exit status. */
int herd_main(int argc, char **argv);

/* ----------------------------------------------------------- peers mode */

/* The stores shmcache-bench --peers runs the GET workload against, next to
 * the floor and libshmcache (peers.c). Servers run on unix sockets in a
 * private directory, started and stopped by the bench. */
enum peer {
	PEER_MEMCACHED,  /* memcached, libmemcached, ASCII protocol, one GET per round trip */
	PEER_REDIS,      /* redis-server, hiredis, one GET per round trip */
	PEER_REDIS_PIPE, /* the same, PEER_PIPE_DEPTH GETs pipelined per round trip */
	PEER_LMDB,       /* LMDB in this process: a read-only transaction and mdb_get */
	PEER_COUNT,
};

#define PEER_PIPE_DEPTH 32u
#define PEER_BATCH_MAX PEER_PIPE_DEPTH
#define PEER_MISS SIZE_MAX /* vlens[i] of a key the peer does not hold */

/* What the peers are loaded with: key i at key_bytes + i * key_size, its
 * value the template stamped with i (value_stamp). */
struct peer_data {
	uint64_t keys;
	size_t key_size;
	size_t value_size;
	size_t stamp_bytes;
	const char *key_bytes;
	const unsigned char *value_template;
	unsigned max_procs; /* most worker processes that will connect at once */
};

struct peers;	  /* the servers, their sockets, the private directory */
struct peer_conn; /* one worker's connection to one peer */

const char *peer_name(enum peer p);
/* GETs per call of peer_get (per round trip). */
unsigned peer_batch(enum peer p);
/* True for a peer that runs inside the worker (no socket, no server). */
bool peer_in_process(enum peer p);
/* "unix-socket" or "in-process"; the protocol on the wire, or NULL. */
const char *peer_transport(enum peer p);
const char *peer_protocol(enum peer p);

/* Whether every peer's client library was built in and every server is in
 * PATH. Prints each one missing. Returns 0, or -1 if any is missing. */
int peers_check(void);

/* Makes a private directory, starts the servers on unix sockets in it,
 * creates the LMDB database there and loads every peer with d's keys.
 * Call before forking the workers. Returns 0 and *out, or -1 after
 * printing why, having stopped whatever it started. */
int peers_start(const struct peer_data *d, struct peers **out);

/* One line per peer: server and client versions, how it is reached. */
void peers_describe(const struct peers *ps, FILE *out);

/* Stops the servers (SIGTERM, SIGKILL after a grace period), removes the
 * directory. NULL is fine. In the process that called peers_start only. */
void peers_stop(struct peers *ps);

/* In a worker, after fork. Returns 0 and *out, or -1 after printing why. */
int peer_connect(const struct peers *ps, enum peer p, struct peer_conn **out);

/* n (at most peer_batch) GETs of keys[i] (klen bytes each) in one round
 * trip: value i is copied to vals + i * cap (at most cap bytes) and its
 * full length stored in vlens[i], or PEER_MISS. Returns 0, or BENCH_EPEER
 * when the request failed (the first failure of a connection is printed). */
int peer_get(struct peer_conn *c, unsigned n, const char *const *keys, size_t klen,
	     unsigned char *vals, size_t cap, size_t *vlens);

void peer_disconnect(struct peer_conn *c);

/* ---------------------------------------------------------- uplink mode */

/* shmcache-bench --uplink (uplink.c): the Redis uplink against
 * redis-benchmark on a redis-server of its own. Parses argv itself
 * (--uplink --help lists its options). Returns the exit status. */
int uplink_main(int argc, char **argv);

#endif /* SHMC_BENCH_H */
