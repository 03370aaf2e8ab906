/*
 * consumer.c - a program built against an installed libshmcache, the way a
 * user's would be: only <shmcache.h> and the installed library. It creates
 * the segment named by its argument, stores a value, reads it back, and
 * removes the segment; it prints "consumer: ok" and exits 0 only if every
 * step did what the header promises.
 */
#include <stdio.h>
#include <string.h>

#include <shmcache.h>

static int fail(const char *what, int rc, const char *detail)
{
	fprintf(stderr, "consumer: %s: %s (%s)%s%s\n", what, shmc_errname(rc), shmc_strerror(rc),
		*detail ? ": " : "", detail);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: consumer SEGMENT-NAME\n");
		return 2;
	}
	const char *name = argv[1], key[] = "packaging", val[] = "installed and linked";
	shmc_opts *o = NULL;
	shmc_cache *c = NULL;
	int rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_size(o, (size_t)4 << 20);
	if (rc == 0)
		rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, &c);
	shmc_opts_destroy(o);
	if (rc)
		return fail("open", rc, shmc_errmsg(NULL));
	char buf[64];
	size_t vlen = 0;
	int status = 0;
	if ((rc = shmc_set(c, key, strlen(key), val, strlen(val), 0, 0)) != 0)
		status = fail("set", rc, shmc_errmsg(c));
	else if ((rc = shmc_get(c, key, strlen(key), buf, sizeof(buf), &vlen)) != 0)
		status = fail("get", rc, shmc_errmsg(c));
	else if (vlen != strlen(val) || memcmp(buf, val, vlen) != 0)
		status = fail("get", 0, "the value read back differs from the value stored");
	shmc_close(c);
	if ((rc = shmc_unlink(name)) != 0)
		status = fail("unlink", rc, shmc_errmsg(NULL));
	if (status == 0)
		printf("consumer: ok (libshmcache %d.%d.%d, %s)\n", SHMC_VERSION_MAJOR,
		       SHMC_VERSION_MINOR, SHMC_VERSION_PATCH, shmc_errname(SHMC_ENOTFOUND));
	return status;
}
