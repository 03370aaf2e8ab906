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
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "tu_json.h"

#define CHILD_WATCHDOG_S 240u /* the bench's servers die with it (PDEATHSIG) */
#define NPROCS 2u

static const char *const peer_names[] = {
	"floor", "libshmcache", "memcached", "redis", "redis-pipe32", "lmdb",
};
#define NPEERS (sizeof peer_names / sizeof peer_names[0])

/* ------------------------------------------------------- running the bench */

struct bench_run {
	int status; /* exit code; -1 if killed by a signal */
	char *out;  /* NUL-terminated */
	size_t out_len;
	char *err;  /* NUL-terminated */
	size_t err_len;
};

static const char *bench_path(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("SHMCACHE_BENCH");
	ssize_t n;
	char *slash;

	if (env != NULL)
		return env;
	n = readlink("/proc/self/exe", path, sizeof path - 16);
	if (n <= 0)
		return "./shmcache-bench";
	path[n] = '\0';
	slash = strrchr(path, '/');
	snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "shmcache-bench");
	return path;
}

static char *slurp_fd(int fd, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fstat(fd, &st) != 0 || lseek(fd, 0, SEEK_SET) != 0)
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		return NULL;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*len = got;
	return buf;
}

/* Runs the bench with args (NULL-terminated), PATH replaced by path_env
 * unless NULL; stdout and stderr go to memory files, stdin is /dev/null. */
static void bench_runv(struct bench_run *r, const char *path_env, const char *const *args)
{
	const char *argv[32];
	size_t n = 0;
	int out_fd, err_fd, status;
	pid_t pid;

	argv[n++] = "shmcache-bench";
	for (; args[n - 1] != NULL && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	out_fd = memfd_create("bench-stdout", 0);
	err_fd = memfd_create("bench-stderr", 0);
	assert_true(out_fd >= 0 && err_fd >= 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);

		tu_child_init(CHILD_WATCHDOG_S);
		dup2(in, STDIN_FILENO);
		dup2(out_fd, STDOUT_FILENO);
		dup2(err_fd, STDERR_FILENO);
		if (path_env != NULL)
			setenv("PATH", path_env, 1);
		execv(bench_path(), (char *const *)argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", bench_path(), strerror(errno));
		_exit(127);
	}
	memset(r, 0, sizeof *r);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->out = slurp_fd(out_fd, &r->out_len);
	r->err = slurp_fd(err_fd, &r->err_len);
	assert_non_null(r->out);
	assert_non_null(r->err);
	close(out_fd);
	close(err_fd);
	if (r->status == 127)
		fail_msg("could not run the bench at %s: %s", bench_path(), r->err);
	if (!WIFEXITED(status))
		fail_msg("the bench was killed by signal %d; stderr: %s", WTERMSIG(status), r->err);
}

static void bench_run_free(struct bench_run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
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
	struct bench_run r;
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
	bench_run_free(&r);
}

static void test_bench_peers_missing_servers_fail_naming_them(void **state)
{
	char dir[] = "/tmp/t.bench-peers.XXXXXX";
	struct bench_run r;

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
	bench_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bench_peers_json_has_every_peer_for_1_and_2_procs),
		cmocka_unit_test(test_bench_peers_missing_servers_fail_naming_them),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
