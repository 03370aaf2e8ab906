/*
 * shmcache - the admin tool. One binary, one subcommand per task.
 *
 *   shmcache verify NAME    check every invariant of a segment (read-only)
 *   shmcache destroy NAME   remove a segment's name
 *
 * Exit status: 0 success (verify: no violation), 1 violation or operation
 * failed, 2 usage error.
 */
#include "shmcache.h"
#include "verify.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *to)
{
	fprintf(to, "usage: shmcache <command> [args]\n"
		    "\n"
		    "commands:\n"
		    "  verify NAME    walk segment NAME and check every invariant; read-only,\n"
		    "                 safe on a live segment; exit 1 on any violation\n"
		    "  destroy NAME   remove segment NAME (attached processes keep it until\n"
		    "                 they detach)\n"
		    "  help           this text\n");
	return to == stderr ? 2 : 0;
}

static void print_line(void *arg, const char *line)
{
	(void)arg;
	printf("%s\n", line);
}

static int cmd_verify(const char *name)
{
	shmc_cache *c;
	int rc = shmc__inspect_open(name, &c);
	if (rc) {
		fprintf(stderr, "shmcache verify: %s: %s (%s)\n", name, shmc_strerror(rc),
			shmc_errmsg(NULL));
		return 1;
	}
	struct shmc__verify_report r = {.emit = print_line};
	rc = shmc__verify(c, &r);
	shmc_close(c);
	if (rc) {
		fprintf(stderr, "shmcache verify: %s\n", shmc_strerror(rc));
		return 1;
	}
	printf("items reachable   %llu (%llu bytes)\n", (unsigned long long)r.items_reachable,
	       (unsigned long long)r.bytes_reachable);
	printf("chunks            free %llu, open %llu, sealed %llu, retiring %llu, retired %llu\n",
	       (unsigned long long)r.chunks_free, (unsigned long long)r.chunks_open,
	       (unsigned long long)r.chunks_sealed, (unsigned long long)r.chunks_retiring,
	       (unsigned long long)r.chunks_retired);
	printf("processes         %llu live, %llu dead awaiting the reaper\n",
	       (unsigned long long)r.procs_live, (unsigned long long)r.procs_dead);
	printf("threads           %llu live\n", (unsigned long long)r.threads_live);
	printf("locks of the dead %llu\n", (unsigned long long)r.locks_held_by_dead);
	printf("leaked log bytes  %llu (unreachable, not yet counted dead)\n",
	       (unsigned long long)r.bytes_leaked);
	printf("violations        %llu\n", (unsigned long long)r.errors);
	printf("%s\n", r.errors ? "FAILED" : "OK");
	return r.errors ? 1 : 0;
}

static int cmd_destroy(const char *name)
{
	int rc = shmc_unlink(name);
	if (rc) {
		fprintf(stderr, "shmcache destroy: %s: %s\n", name, shmc_strerror(rc));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
		return usage(stdout);
	if (argc != 3)
		return usage(stderr);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argv[2]);
	if (!strcmp(cmd, "destroy"))
		return cmd_destroy(argv[2]);
	fprintf(stderr, "shmcache: unknown command '%s'\n", cmd);
	return usage(stderr);
}
