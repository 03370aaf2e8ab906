/*
 * prefork-worker.c - a prefork pool sharing one libshmcache segment: the master
 * creates it and forks workers (as nginx or php-fpm do); each opens it by name
 * and serves requests with shmc_fetch(), whose loader stands in for a slow
 * origin and runs once per key for the whole host. Usage: prefork-worker [NAME]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmcache.h>

#define WORKERS 4u
#define KEYS 8u
#define REQUESTS 40u /* per worker, cycling over the KEYS keys */
#define VALUE_CAP 64u

/* Says which call failed: the code's name and message, and the library's detail. */
static int fail(const char *who, const char *what, int rc, const char *detail)
{
	fprintf(stderr, "%s: %s: %s (%s)%s%s\n", who, what, shmc_errname(rc), shmc_strerror(rc),
		*detail ? ": " : "", detail);
	return 1;
}

/* shmc_loader_fn: runs on a miss, in whichever worker won the fill. */
static int origin_load(void *arg, const void *key, size_t klen, void **val, size_t *vlen,
		       uint32_t *ttl_ms)
{
	char *v = malloc(VALUE_CAP);
	if (!v)
		return SHMC_ENOMEM;
	usleep(2000); /* the origin is slow: the reason to cache it */
	snprintf(v, VALUE_CAP, "value of %.*s", (int)klen, (const char *)key);
	*val = v; /* the library frees it with free() */
	*vlen = strlen(v);
	*ttl_ms = 60000;
	++*(size_t *)arg; /* loads by this worker */
	return 0;
}

/* A worker, after fork(): it opens the segment by name for itself; closing the
 * handle c inherited from the master releases only the child's copy of it. */
static int worker_run(const char *name, unsigned idx, shmc_cache *c)
{
	shmc_close(c);
	int rc = shmc_open(name, NULL, 0, &c);
	if (rc)
		return fail("worker", "open", rc, shmc_errmsg(NULL));
	char key[16], buf[VALUE_CAP];
	size_t vlen = 0, loads = 0, errors = 0;
	for (unsigned r = 0; r < REQUESTS; r++) {
		int klen = snprintf(key, sizeof(key), "item:%u", (idx + r) % KEYS);
		rc = shmc_fetch(c, key, (size_t)klen, buf, sizeof(buf), &vlen, origin_load, &loads);
		if (rc)
			errors += fail("worker", key, rc, shmc_errmsg(c));
	}
	printf("worker %u (pid %d): %u requests, %zu origin loads, %zu errors; %s = %.*s\n", idx,
	       (int)getpid(), REQUESTS, loads, errors, key, rc ? 0 : (int)vlen, buf);
	shmc_close(c);
	return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "prefork-example";
	shmc_opts *o = NULL;
	shmc_cache *c = NULL;
	/* The workers run the sweeper: the master starts no thread, so it forks safely. */
	int failed = 0, rc = shmc_opts_create(&o);
	if (rc == 0 && (rc = shmc_opts_set_sweeper(o, 0)) == 0)
		rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, &c);
	shmc_opts_destroy(o);
	if (rc)
		return fail("master", name, rc, shmc_errmsg(NULL));
	fflush(stdout); /* or each worker would print the master's buffered output again */
	for (unsigned i = 0; i < WORKERS; i++) {
		pid_t pid = fork();
		if (pid == 0)
			exit(worker_run(name, i, c));
		if (pid < 0)
			failed += fail("master", "fork", -errno, "");
	}
	for (int status; wait(&status) > 0;)
		failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	struct shmc_stats st;
	if ((rc = shmc_stats(c, &st)) != 0)
		failed += fail("master", "stats", rc, shmc_errmsg(c));
	else
		printf("master: %llu origin calls for %u keys\n",
		       (unsigned long long)st.origin_calls, KEYS);
	shmc_close(c);
	if ((rc = shmc_unlink(name)) != 0) /* else the segment would outlive every process */
		failed += fail("master", "unlink", rc, shmc_errmsg(NULL));
	return failed ? 1 : 0;
}
