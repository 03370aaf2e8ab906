/*
 * cache-aside.c - the cache-aside pattern with libshmcache.
 * The application owns its data and the cache only remembers answers. A read
 * tries the cache and, on a miss, computes the value and stores it with a TTL;
 * a write changes the source, then deletes the cached copy, so that no process
 * on the host keeps serving the old value until its TTL runs out.
 *   usage: cache-aside [NAME]
 */
#include <stdio.h>
#include <string.h>

#include <shmcache.h>

#define PROFILE_TTL_MS 30000u /* the staleness bound if an invalidation is ever missed */

struct app {
	shmc_cache *cache;
	const char *user_name; /* the source of truth, a database in real life */
	unsigned cache_errors; /* a service would export this as a metric */
};

/* A cache call failed: its code's name and message, and the detail of the
 * handle's last failure (of shmc_open or shmc_unlink while cache is NULL). */
static void cache_warn(struct app *app, const char *what, int rc)
{
	const char *detail = shmc_errmsg(app->cache);
	fprintf(stderr, "cache-aside: %s: %s (%s)%s%s\n", what, shmc_errname(rc), shmc_strerror(rc),
		*detail ? ": " : "", detail);
	app->cache_errors++;
}

/* A read. The cache is an optimisation: when it fails, the answer still comes
 * from the source, only more slowly. Returns the value's length. */
static size_t profile_get(struct app *app, unsigned id, char *buf, size_t cap)
{
	char key[32];
	size_t klen = (size_t)snprintf(key, sizeof(key), "profile:%u", id), vlen = 0;
	int rc = shmc_get(app->cache, key, klen, buf, cap, &vlen);
	if (rc == 0) {
		printf("%s: hit  %.*s\n", key, (int)vlen, buf);
		return vlen;
	}
	if (rc != SHMC_ENOTFOUND) /* e.g. SHMC_ERANGE: a bigger value is stored under the key */
		cache_warn(app, key, rc);
	snprintf(buf, cap, "{\"id\":%u,\"name\":\"%s\"}", id, app->user_name); /* the slow part */
	vlen = strlen(buf);
	rc = shmc_set(app->cache, key, klen, buf, vlen, PROFILE_TTL_MS, 0);
	if (rc) /* e.g. SHMC_ENOSPC: served all the same, just not cached */
		cache_warn(app, key, rc);
	printf("%s: miss %.*s (%s for %u ms)\n", key, (int)vlen, buf, rc ? "not cached" : "cached",
	       PROFILE_TTL_MS);
	return vlen;
}

/* A write: the source first, then the cached copy. Deleting it rather than
 * storing the new value means that two racing writers cannot leave the older
 * value cached; a reader that computed from the old source just before may
 * still store it, and the TTL bounds that. */
static void profile_rename(struct app *app, unsigned id, const char *name)
{
	char key[32];
	size_t klen = (size_t)snprintf(key, sizeof(key), "profile:%u", id);
	app->user_name = name;
	int rc = shmc_del(app->cache, key, klen);
	if (rc == 0 || rc == SHMC_ENOTFOUND) /* not cached is just as invalidated */
		printf("%s: invalidated (%s)\n", key, shmc_errname(rc));
	else
		cache_warn(app, key, rc);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "cache-aside-example";
	char buf[256];
	struct app app = {.cache = NULL, .user_name = "Ada"};
	shmc_opts *o = NULL;
	int rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_size(o, 4u << 20); /* used only by the creator */
	if (rc == 0)
		rc = shmc_open(name, o, SHMC_CREATE, &app.cache);
	shmc_opts_destroy(o);
	if (rc) {
		cache_warn(&app, name, rc);
		return 1;
	}
	profile_get(&app, 42, buf, sizeof(buf)); /* miss: computed and stored */
	profile_get(&app, 42, buf, sizeof(buf)); /* hit */
	profile_rename(&app, 42, "Grace");
	profile_get(&app, 42, buf, sizeof(buf)); /* miss: the new name */
	profile_get(&app, 42, buf, sizeof(buf)); /* hit */
	shmc_close(app.cache);
	app.cache = NULL;
	if ((rc = shmc_unlink(name)) != 0) /* a service would keep it warm for its next run */
		cache_warn(&app, name, rc);
	return app.cache_errors ? 1 : 0;
}
