/*
 * alloc.h - process-private memory of the library (handles, per-thread
 * contexts; later uplink buffers), from a jemalloc arena of its own so that
 * the library's allocations neither fragment nor contend with the host
 * application's. Never used for the segment: jemalloc's metadata is
 * process-private, so no other process could free what it hands out.
 */
#ifndef SHMC_ALLOC_H
#define SHMC_ALLOC_H

#include <stddef.h>

/* Zeroed memory, or NULL. */
void *shmc__zalloc(size_t bytes);
void shmc__free(void *p);

#endif
