/* opts.h - the options object (process-local). */
#ifndef SHMC_OPTS_H
#define SHMC_OPTS_H

#include <stddef.h>
#include <stdint.h>

#define SHMC__DEFAULT_SAMPLE_PERIOD 64u
#define SHMC__DEFAULT_NEGATIVE_TTL_MS 1000u
#define SHMC__DEFAULT_FILL_TIMEOUT_MS 5000u

struct shmc_opts {
	size_t size_bytes;
	unsigned mode;
	char *uplink_uri;
	uint32_t default_ttl_ms;
	unsigned ttl_jitter_pct;
	size_t max_key_bytes;
	size_t chunk_bytes; /* 0 = automatic */
	size_t item_bytes;  /* expected key + value size */
	unsigned max_procs;
	unsigned max_threads;
	int sweeper;
	unsigned sample_period; /* 0 = no sampling */
	uint32_t negative_ttl_ms;
	uint32_t stale_ms;
	double xfetch_beta;     /* 0 = no early refresh */
	uint32_t fill_timeout_ms;
};

void shmc__opts_defaults(struct shmc_opts *o);

/* The process and thread slots a new segment gets: what was set, or by
 * default 256 and 1024, fewer in segments under 4 MiB so that slots do not
 * crowd out the data (size / 16 KiB and size / 4 KiB, at least 16 and 64). */
void shmc__opts_slots(const struct shmc_opts *o, unsigned *procs, unsigned *threads);

#endif
