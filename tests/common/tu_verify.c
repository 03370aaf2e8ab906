/*
 * tu_verify.c - reap, then verify a segment; see tu_verify.h.
 */
#include "tu_verify.h"

#include <stdio.h>
#include <string.h>

#include <shmcache.h>

#include "handle.h"
#include "sweeper.h"
#include "verify.h"

static void emit_line(void *arg, const char *line)
{
	fprintf(stderr, "  verify %s: %s\n", (const char *)arg, line);
}

int tu_verify_clean(const char *name, struct tu_verify_summary *out)
{
	shmc_opts *o = NULL;
	shmc_cache *c = NULL, *inspect = NULL;
	struct shmc__reap_result rr;
	struct shmc__verify_report r;
	int rc, err = 0;

	rc = shmc_opts_create(&o);
	if (rc == 0)
		rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0)
		rc = shmc_open(name, o, 0, &c);
	shmc_opts_destroy(o);
	if (rc != 0) {
		fprintf(stderr, "verify %s: open: %s (%s)\n", name, shmc_errname(rc),
		        shmc_errmsg(NULL));
		return rc;
	}
	struct shmc__tctx *t = shmc__tctx_get(c, &err);
	if (t == NULL) {
		fprintf(stderr, "verify %s: no thread context: %s\n", name, shmc_errname(err));
		shmc_close(c);
		return err ? err : SHMC_ENOMEM;
	}
	rc = shmc__reap_pass(c, t, &rr);
	if (rc != 0) {
		fprintf(stderr, "verify %s: reap pass: %s\n", name, shmc_errname(rc));
		shmc_close(c);
		return rc;
	}
	rc = shmc__inspect_open(name, &inspect);
	if (rc != 0) {
		fprintf(stderr, "verify %s: inspect open: %s\n", name, shmc_errname(rc));
		shmc_close(c);
		return rc;
	}
	memset(&r, 0, sizeof r);
	r.emit = emit_line;
	r.emit_arg = (void *)name;
	rc = shmc__verify(inspect, &r);
	shmc_close(inspect);
	/* Our own handle is live while verify runs (one live process,
	 * one live thread): that is expected, not a finding. */
	shmc_close(c);
	if (rc != 0) {
		fprintf(stderr, "verify %s: %s\n", name, shmc_errname(rc));
		return rc;
	}
	if (out != NULL) {
		*out = (struct tu_verify_summary){
			.errors = r.errors,
			.procs_dead = r.procs_dead,
			.locks_held_by_dead = r.locks_held_by_dead,
			.bytes_leaked = r.bytes_leaked,
			.items_reachable = r.items_reachable,
			.chunks_free = r.chunks_free,
			.chunks_open = r.chunks_open,
			.chunks_sealed = r.chunks_sealed,
			.chunks_retiring = r.chunks_retiring,
			.chunks_retired = r.chunks_retired,
		};
	}
	if (r.errors || r.procs_dead || r.locks_held_by_dead || r.bytes_leaked) {
		fprintf(stderr,
		        "verify %s: NOT clean: errors %llu, procs_dead %llu, "
		        "locks_held_by_dead %llu, bytes_leaked %llu (reap pass: procs %u, "
		        "locks %u, retirements %u, leaked bytes recovered %llu)\n",
		        name, (unsigned long long)r.errors, (unsigned long long)r.procs_dead,
		        (unsigned long long)r.locks_held_by_dead,
		        (unsigned long long)r.bytes_leaked, rr.procs_reaped, rr.locks_released,
		        rr.retirements_finished, (unsigned long long)rr.leaked_bytes_recovered);
		return -1;
	}
	return 0;
}
