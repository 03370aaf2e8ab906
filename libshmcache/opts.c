/*
 * opts.c - options for shmc_open(). Setters validate eagerly so that a bad
 * value is reported where it is set, not later at open.
 */
#include "opts.h"
#include "uplink.h"

#include "shmcache.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CHUNK (64u << 10)
#define MAX_CHUNK (64u << 20)

void shmc__opts_slots(const struct shmc_opts *o, unsigned *procs, unsigned *threads)
{
	size_t procs_auto = o->size_bytes / (16u << 10), threads_auto = o->size_bytes / (4u << 10);
	*procs = o->max_procs ? o->max_procs
			      : (unsigned)(procs_auto < 16 ? 16 : procs_auto > 256 ? 256 : procs_auto);
	*threads = o->max_threads ? o->max_threads
				  : (unsigned)(threads_auto < 64    ? 64
					       : threads_auto > 1024 ? 1024
								     : threads_auto);
}

void shmc__opts_defaults(struct shmc_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size_bytes = SHMC_DEFAULT_SIZE;
	o->mode = 0600;
	o->max_key_bytes = SHMC_DEFAULT_KEY_MAX;
	o->item_bytes = 128;
	o->max_procs = 0;   /* automatic: see shmc__opts_slots() */
	o->max_threads = 0;
	o->sweeper = 1;
	o->sample_period = SHMC__DEFAULT_SAMPLE_PERIOD;
	o->negative_ttl_ms = SHMC__DEFAULT_NEGATIVE_TTL_MS;
	o->fill_timeout_ms = SHMC__DEFAULT_FILL_TIMEOUT_MS;
}

int shmc_opts_create(shmc_opts **out)
{
	if (!out)
		return SHMC_EINVAL;
	struct shmc_opts *o = malloc(sizeof(*o));
	if (!o)
		return SHMC_ENOMEM;
	shmc__opts_defaults(o);
	*out = o;
	return 0;
}

void shmc_opts_destroy(shmc_opts *o)
{
	if (!o)
		return;
	free(o->uplink_uri);
	free(o);
}

int shmc_opts_set_size(shmc_opts *o, size_t bytes)
{
	if (!o || bytes < SHMC_MIN_SIZE || bytes > (1ull << 46))
		return SHMC_EINVAL;
	o->size_bytes = bytes;
	return 0;
}

int shmc_opts_set_mode(shmc_opts *o, unsigned mode)
{
	if (!o || (mode & ~0777u))
		return SHMC_EINVAL;
	o->mode = mode;
	return 0;
}

int shmc_opts_set_uplink(shmc_opts *o, const char *uri)
{
	if (!o)
		return SHMC_EINVAL;
	char *copy = NULL;
	if (uri) {
		int rc = shmc__uplink_check_uri(uri);
		if (rc)
			return rc;
		copy = strdup(uri);
		if (!copy)
			return SHMC_ENOMEM;
	}
	free(o->uplink_uri);
	o->uplink_uri = copy;
	return 0;
}

int shmc_opts_set_default_ttl(shmc_opts *o, uint32_t ttl_ms)
{
	if (!o)
		return SHMC_EINVAL;
	o->default_ttl_ms = ttl_ms;
	return 0;
}

int shmc_opts_set_ttl_jitter(shmc_opts *o, unsigned percent)
{
	if (!o || percent > SHMC_TTL_JITTER_MAX)
		return SHMC_EINVAL;
	o->ttl_jitter_pct = percent;
	return 0;
}

int shmc_opts_set_max_key(shmc_opts *o, size_t bytes)
{
	if (!o || bytes < 1 || bytes > SHMC_KEY_MAX)
		return SHMC_EINVAL;
	o->max_key_bytes = bytes;
	return 0;
}

int shmc_opts_set_chunk_size(shmc_opts *o, size_t bytes)
{
	if (!o || bytes < MIN_CHUNK || bytes > MAX_CHUNK || (bytes & (bytes - 1)))
		return SHMC_EINVAL;
	o->chunk_bytes = bytes;
	return 0;
}

int shmc_opts_set_item_size(shmc_opts *o, size_t bytes)
{
	if (!o || bytes < 1 || bytes > MAX_CHUNK)
		return SHMC_EINVAL;
	o->item_bytes = bytes;
	return 0;
}

int shmc_opts_set_max_procs(shmc_opts *o, unsigned n)
{
	if (!o || n < 1 || n > 65535)
		return SHMC_EINVAL;
	o->max_procs = n;
	return 0;
}

int shmc_opts_set_max_threads(shmc_opts *o, unsigned n)
{
	if (!o || n < 1 || n > 65535)
		return SHMC_EINVAL;
	o->max_threads = n;
	return 0;
}

int shmc_opts_set_sweeper(shmc_opts *o, int enabled)
{
	if (!o)
		return SHMC_EINVAL;
	o->sweeper = enabled != 0;
	return 0;
}

int shmc_opts_set_sampling(shmc_opts *o, unsigned period)
{
	if (!o || period > (1u << 20) || (period & (period - 1)))
		return SHMC_EINVAL;
	o->sample_period = period;
	return 0;
}

int shmc_opts_set_negative_ttl(shmc_opts *o, uint32_t ttl_ms)
{
	if (!o)
		return SHMC_EINVAL;
	o->negative_ttl_ms = ttl_ms;
	return 0;
}

int shmc_opts_set_stale_window(shmc_opts *o, uint32_t ms)
{
	if (!o)
		return SHMC_EINVAL;
	o->stale_ms = ms;
	return 0;
}

int shmc_opts_set_xfetch_beta(shmc_opts *o, double beta)
{
	if (!o || !(beta >= 0.0) || beta > 1e6)
		return SHMC_EINVAL;
	o->xfetch_beta = beta;
	return 0;
}

int shmc_opts_set_fill_timeout(shmc_opts *o, uint32_t ms)
{
	if (!o || ms == 0)
		return SHMC_EINVAL;
	o->fill_timeout_ms = ms;
	return 0;
}
