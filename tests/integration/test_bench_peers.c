/*
 * test_bench_peers.c - a smoke test of `shmcache-bench --peers`: the built
 * bench is run for a fraction of a second per measurement with --json, and
 * its output must hold one row per peer (the floor, libshmcache, memcached,
 * redis, redis-pipe32, lmdb) for 1 and for 2 processes, each with a
 * positive rate and no miss or error. The bench starts memcached and
 * redis-server itself, so they must be installed (scripts/bootstrap); a
 * bench that cannot find one must say which and fail, which the second test
 * checks with a PATH that holds neither.
 *
 * Speed is not judged here: the rates only have to be there.
 *
 * The binary is looked for next to this test's executable (both are built
 * at the build directory's root); SHMCACHE_BENCH overrides the path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tu_json.h"
#include "tu_run.h"

#define CHILD_WATCHDOG_S 240u /* the bench's servers die with it (PDEATHSIG) */
#define NPROCS 2u

static const char *const peer_names[] = {
	"floor", "libshmcache", "memcached", "redis", "redis-pipe32", "lmdb",
};
#define NPEERS (sizeof peer_names / sizeof peer_names[0])

/* ------------------------------------------------------- running the bench */

static const char *bench_path(void)
{
	return tu_sibling_program("SHMCACHE_BENCH", "shmcache-bench");
}

/* Runs the bench with args (NULL-terminated), PATH replaced by path_env
 * unless NULL; stdin is /dev/null. */
static void bench_runv(struct tu_run *r, const char *path_env, const char *const *args)
{
	const struct tu_spawn_opts opts = {
		.path_env = path_env,
		.watchdog_s = CHILD_WATCHDOG_S,
	};

	assert_int_equal(tu_run(r, bench_path(), "shmcache-bench", args, &opts), 0);
	if (r->status == 127)
		fail_msg("could not run the bench at %s: %s", bench_path(), r->err);
	if (r->term_signal != 0)
		fail_msg("the bench was killed by signal %d; stderr: %s", r->term_signal, r->err);
}

/* ------------------------------------------------------------------ rows */

static int peer_index(const struct tu_json *row)
{
	const struct tu_json *v = tu_json_member(row, "peer");

	if (v == NULL || v->type != TU_JSON_STRING)
		return -1;
	for (size_t i = 0; i < NPEERS; i++)
		if (strcmp(v->string, peer_names[i]) == 0)
			return (int)i;
	return -1;
}

static double number_of(const struct tu_json *row, const char *name, const char *line)
{
	const struct tu_json *v = tu_json_member(row, name);

	if (v == NULL || v->type != TU_JSON_NUMBER)
		fail_msg("row without a number \"%s\": %s", name, line);
	return v->number;
}

/* Checks one --json line: a peers row of a known peer and procs, with a
 * positive rate and latency and no miss or error; counts it in seen. */
static void row_check(const char *line, size_t len, unsigned seen[NPEERS][NPROCS + 1])
{
	char err[256];
	struct tu_json *row = tu_json_parse(line, len, err, sizeof err);
	const struct tu_json *flag;
	uint64_t procs, misses, errors;
	int peer;

	if (row == NULL)
		fail_msg("not JSON (%s): %.*s", err, (int)len, line);
	flag = tu_json_member(row, "peers");
	if (flag == NULL || flag->type != TU_JSON_BOOL || !flag->boolean)
		fail_msg("not a peers row: %.*s", (int)len, line);
	peer = peer_index(row);
	if (peer < 0)
		fail_msg("unknown peer: %.*s", (int)len, line);
	if (!tu_json_u64(tu_json_member(row, "procs"), &procs) || procs < 1 || procs > NPROCS)
		fail_msg("bad procs: %.*s", (int)len, line);
	if (!(number_of(row, "ops_per_sec", line) > 0))
		fail_msg("no operations: %.*s", (int)len, line);
	if (!(number_of(row, "p50_ns", line) > 0) ||
	    !(number_of(row, "p99_ns", line) >= number_of(row, "p50_ns", line)))
		fail_msg("no latency: %.*s", (int)len, line);
	if (!(number_of(row, "ratio_to_shmc", line) > 0))
		fail_msg("no ratio to libshmcache: %.*s", (int)len, line);
	if (!tu_json_u64(tu_json_member(row, "misses"), &misses) ||
	    !tu_json_u64(tu_json_member(row, "errors"), &errors) || misses || errors)
		fail_msg("misses or errors: %.*s", (int)len, line);
	seen[peer][procs]++;
	tu_json_free(row);
}

/* ----------------------------------------------------------------- tests */

static void test_bench_peers_json_has_every_peer_for_1_and_2_procs(void **state)
{
	struct tu_run r;
	unsigned seen[NPEERS][NPROCS + 1];
	const char *line;

	(void)state;
	memset(seen, 0, sizeof seen);
	bench_runv(&r, NULL,
		   (const char *const[]){ "--peers", "--json", "--seconds", "0.2", "--keys",
					  "10000", "--procs", "1,2", NULL });
	if (r.status != 0)
		fail_msg("exit status %d; stderr: %s", r.status, r.err);
	for (line = r.out; *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (len > 0)
			row_check(line, len, seen);
		line += len + (end != NULL);
	}
	for (size_t p = 0; p < NPEERS; p++)
		for (unsigned procs = 1; procs <= NPROCS; procs++)
			if (seen[p][procs] != 1)
				fail_msg("%u rows for %s at %u procs, expected 1; stdout:\n%s",
					 seen[p][procs], peer_names[p], procs, r.out);
	tu_run_free(&r);
}

static void test_bench_peers_missing_servers_fail_naming_them(void **state)
{
	char dir[] = "/tmp/t.bench-peers.XXXXXX";
	struct tu_run r;

	(void)state;
	assert_non_null(mkdtemp(dir)); /* PATH: a directory with no server in it */
	bench_runv(&r, dir,
		   (const char *const[]){ "--peers", "--json", "--seconds", "0.2", "--keys",
					  "1000", NULL });
	assert_int_equal(rmdir(dir), 0);
	if (r.status != 1)
		fail_msg("exit status %d, expected 1; stderr: %s", r.status, r.err);
	if (strstr(r.err, "memcached") == NULL || strstr(r.err, "redis-server") == NULL)
		fail_msg("stderr names not both servers: %s", r.err);
	if (r.out_len != 0)
		fail_msg("rows printed without every peer: %s", r.out);
	tu_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bench_peers_json_has_every_peer_for_1_and_2_procs),
		cmocka_unit_test(test_bench_peers_missing_servers_fail_naming_them),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
