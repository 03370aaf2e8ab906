/* alloc.c - see alloc.h. */
#include "alloc.h"

#include <jemalloc/jemalloc.h>
#include <pthread.h>

static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static int arena_flags; /* MALLOCX_ARENA(ours), or 0 = default arena */

static void arena_create(void)
{
	unsigned arena;
	size_t len = sizeof(arena);
	if (mallctl("arenas.create", &arena, &len, NULL, 0) == 0)
		arena_flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
}

void *shmc__zalloc(size_t bytes)
{
	pthread_once(&arena_once, arena_create);
	return mallocx(bytes ? bytes : 1, arena_flags | MALLOCX_ZERO);
}

void shmc__free(void *p)
{
	if (p)
		dallocx(p, arena_flags);
}
