/*
 * workload.c - key names, Zipf popularity and self-identifying values for
 * the demo's workers (see workload.h).
 */
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t key_name(char *key, unsigned rank)
{
	return (size_t)snprintf(key, KEY_BYTES, "demo:key:%u", rank);
}

double *zipf_cdf(unsigned n, double s)
{
	double *cdf = malloc(n * sizeof(*cdf)), sum = 0;
	for (unsigned i = 0; cdf && i < n; i++) {
		sum += pow(i + 1.0, -s);
		cdf[i] = sum;
	}
	for (unsigned i = 0; cdf && i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

unsigned zipf_draw(const double *cdf, unsigned n, uint64_t *rng)
{
	*rng ^= *rng << 13; /* xorshift64: cheap next to even a cache hit */
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	double u = (double)(*rng >> 11) * 0x1.0p-53;
	unsigned lo = 0, hi = n - 1;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void value_fill(char *buf, size_t vlen, const char *key, size_t klen, const char *tag)
{
	int head = snprintf(buf, vlen, "%.*s|%s|", (int)klen, key, tag);
	memset(buf + head, 'x', vlen - (size_t)head - 1);
	buf[vlen - 1] = '#';
}

bool value_ok(const char *buf, size_t vlen, size_t want, const char *key, size_t klen)
{
	return vlen == want && vlen > klen && memcmp(buf, key, klen) == 0 && buf[klen] == '|' &&
	       buf[vlen - 1] == '#';
}

bool value_has_tag(const char *buf, size_t vlen, size_t klen, const char *tag)
{
	size_t n = strlen(tag);
	return vlen > klen + n + 2 && memcmp(buf + klen + 1, tag, n) == 0 &&
	       buf[klen + 1 + n] == '|';
}
