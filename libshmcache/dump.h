/*
 * dump.h - a read-only walk over every live item (behind `shmcache dump`).
 */
#ifndef SHMC_DUMP_H
#define SHMC_DUMP_H

#include <stddef.h>
#include <stdint.h>

struct shmc_cache;

/* One item as the walk copied it. key and value point into a buffer of the
 * walk's that is valid only during the callback. */
struct shmc__dump_item {
	const unsigned char *key;
	size_t klen;
	const unsigned char *value;
	size_t vlen;
	uint32_t ttl_left_ms; /* milliseconds until it expires; 0 = never */
};

/* What the walk met. */
struct shmc__dump_counts {
	uint64_t items;	   /* handed to the callback */
	uint64_t expired;  /* skipped: reachable but past their expiry */
	uint64_t unstable; /* skipped: their slot or chunk changed under every attempt */
	uint64_t corrupt;  /* skipped: a stable entry failing the bounds checks
			    * (`shmcache verify` tells more) */
};

/* Return 0 to go on; anything else stops the walk and is returned by it. */
typedef int (*shmc__dump_fn)(void *arg, const struct shmc__dump_item *item);

/* Call fn for every reachable, unexpired value item of the segment behind
 * c, in index order. c should come from shmc__inspect_open(): the walk only
 * reads, takes no lock and joins no read section, so it never holds back a
 * writer or memory reuse, and it copies each item out and checks that the
 * copy is intact before using it.
 *
 * Not a snapshot: an item written or removed during the walk may or may not
 * be seen, and a key removed and stored again while the walk runs may be
 * met twice (once per index slot it occupied; the later copy is the newer).
 *
 * Returns 0, fn's nonzero result, or SHMC_ENOMEM. *counts (may be NULL) is
 * filled in every case. */
int shmc__dump_walk(struct shmc_cache *c, shmc__dump_fn fn, void *arg,
		    struct shmc__dump_counts *counts);

#endif
