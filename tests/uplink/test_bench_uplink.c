/*
 * test_bench_uplink.c - shmcache-bench --uplink, a short run as a smoke
 * test: it starts its own redis-server, measures the uplink, runs
 * redis-benchmark, and must print one JSON object holding every figure
 * (present, and nonzero where a run that measured anything cannot give
 * zero), exit 0, and leave no server and no directory behind.
 *
 * The binary is looked for next to this test's executable (both are built
 * at the build directory's root); SHMCACHE_BENCH overrides the path. It
 * needs redis-server and redis-benchmark in PATH (scripts/bootstrap
 * installs them): without them the run fails, and so does this test.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
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

#define BENCH_WATCHDOG_S 240

static const char *bench_path(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("SHMCACHE_BENCH");

	if (env)
		return env;
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
	if (n <= 0)
		return "./shmcache-bench";
	path[n] = '\0';
	char *slash = strrchr(path, '/');
	snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "shmcache-bench");
	return path;
}

static char *slurp(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	char *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	buf[st.st_size] = '\0';
	return buf;
}

/* Run the bench with args; its exit status, stdout and stderr. */
static int bench_run(const char *const *args, char **out, char **err)
{
	const char *argv[32] = {"shmcache-bench"};
	size_t n = 1;

	for (; args[n - 1] && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	int out_fd = memfd_create("bench-stdout", 0), err_fd = memfd_create("bench-stderr", 0);
	assert_true(out_fd >= 0 && err_fd >= 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_child_init(BENCH_WATCHDOG_S);
		dup2(out_fd, STDOUT_FILENO);
		dup2(err_fd, STDERR_FILENO);
		execv(bench_path(), (char *const *)argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", bench_path(), strerror(errno));
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	*out = slurp(out_fd);
	*err = slurp(err_fd);
	close(out_fd);
	close(err_fd);
	if (!WIFEXITED(status))
		fail_msg("the bench was killed by signal %d; stderr: %s", WTERMSIG(status), *err);
	return WEXITSTATUS(status);
}

static const struct tu_json *field(const struct tu_json *obj, const char *name)
{
	const struct tu_json *v = tu_json_member(obj, name);

	if (!v)
		fail_msg("field \"%s\" missing", name);
	return v;
}

static double number(const struct tu_json *obj, const char *name)
{
	const struct tu_json *v = field(obj, name);

	if (v->type != TU_JSON_NUMBER)
		fail_msg("field \"%s\" is not a number", name);
	return v->number;
}

/* Run the bench with args (ending in --json); it must succeed and print
 * one JSON value on stdout, nothing else. The caller frees all three. */
static struct tu_json *run_json(const char *const *args, char **out, char **err)
{
	int status = bench_run(args, out, err);
	if (status != 0)
		fail_msg("exit status %d; stdout: %s; stderr: %s", status, *out, *err);
	char perr[160];
	struct tu_json *j = tu_json_parse(*out, strlen(*out), perr, sizeof perr);
	if (!j)
		fail_msg("stdout is not one JSON value (%s): %s", perr, *out);
	return j;
}

static void test_bench_uplink_short_run_reports_every_figure(void **state)
{
	(void)state;
	char name[TU_NAME_MAX];
	tu_segname(name, sizeof name, "bench-uplink");
	/* clang-format off */
	const char *args[] = {"--uplink", "--seconds", "0.4", "--rounds", "2", "--keys", "2000",
			      "--procs", "2", "--threads", "4", "--latency-samples", "300",
			      "--bench-requests", "20000", "--name", name, "--json", NULL};
	/* clang-format on */
	char *out, *err;
	struct tu_json *j = run_json(args, &out, &err);
	assert_int_equal(j->type, TU_JSON_OBJECT);
	assert_true(field(j, "uplink")->boolean);
	assert_true(field(j, "ok")->boolean);
	assert_string_equal(field(j, "transport")->string, "unix");

	/* Measured: nonzero in any run that measured something. */
	static const char *const nonzero[] = {
		"uplink_misses",
		"uplink_ops_per_sec",
		"uplink_batch_avg",
		"uplink_origin_calls",
		"uplink_remote_ops",
		"uplink_round_trips",
		"uplink_client_cpu_us_per_op",
		"uplink_server_cpu_us_per_op",
		"bench_client_cpu_us_per_op",
		"bench_server_cpu_us_per_op",
		"bench_pipeline",
		"bench_clients",
		"bench_requests",
		"bench_rps",
		"ratio",
		"latency_samples",
		"uplink_p50_ns",
		"uplink_p99_ns",
		"raw_p50_ns",
		"raw_p99_ns",
		"server_pid",
	};
	for (size_t i = 0; i < sizeof nonzero / sizeof nonzero[0]; i++)
		if (number(j, nonzero[i]) <= 0)
			fail_msg("field \"%s\" is %g, expected > 0", nonzero[i],
				 number(j, nonzero[i]));
	/* Differences of two percentiles: any sign, zero included. */
	(void)number(j, "added_p50_ns");
	(void)number(j, "added_p99_ns");
	/* A share of the host's CPU time, or -1 where /proc/stat says nothing. */
	double steal = number(j, "host_steal_pct");
	assert_true(steal == -1.0 || (steal >= 0.0 && steal <= 100.0));
	assert_int_equal(field(j, "ratio_ok")->type, TU_JSON_BOOL);
	assert_int_equal(field(j, "latency_ok")->type, TU_JSON_BOOL);

	/* Every miss was a remote one, and nothing failed. */
	assert_true(number(j, "uplink_origin_calls") >= number(j, "uplink_misses"));
	assert_true(number(j, "uplink_p99_ns") >= number(j, "uplink_p50_ns"));
	assert_int_equal((int)number(j, "errors"), 0);
	assert_int_equal((int)number(j, "bad_values"), 0);
	assert_int_equal((int)number(j, "procs"), 2);
	assert_int_equal((int)number(j, "threads"), 4);
	assert_int_equal((int)number(j, "bench_clients"), 2);

	/* Two rounds of (1) and (2), each with its figures. */
	assert_int_equal((int)number(j, "rounds"), 2);
	const struct tu_json *rounds = field(j, "per_round");
	assert_int_equal(rounds->type, TU_JSON_ARRAY);
	assert_int_equal(tu_json_count(rounds), 2);
	for (const struct tu_json *r = rounds->child; r; r = r->next) {
		assert_int_equal(r->type, TU_JSON_OBJECT);
		static const char *const per_round[] = {
			"uplink_misses",  "uplink_ops_per_sec", "uplink_batch_avg",
			"bench_pipeline", "bench_rps",		"ratio",
		};
		for (size_t i = 0; i < sizeof per_round / sizeof per_round[0]; i++)
			if (number(r, per_round[i]) <= 0)
				fail_msg("a round's \"%s\" is %g, expected > 0", per_round[i],
					 number(r, per_round[i]));
	}

	/* Its server is gone, with its directory; so is the segment. */
	pid_t server = (pid_t)number(j, "server_pid");
	char comm[64] = "", path[64];
	snprintf(path, sizeof path, "/proc/%ld/comm", (long)server);
	FILE *f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof comm, f))
			comm[0] = '\0';
		fclose(f);
	}
	if (strncmp(comm, "redis-server", 12) == 0)
		fail_msg("redis-server %ld still runs after the bench exited", (long)server);
	const struct tu_json *dir = field(j, "server_dir");
	assert_int_equal(dir->type, TU_JSON_STRING);
	struct stat st;
	if (stat(dir->string, &st) == 0)
		fail_msg("the server's directory %s is still there", dir->string);
	tu_shm_path(path, sizeof path, name);
	assert_int_not_equal(stat(path, &st), 0);

	tu_json_free(j);
	free(out);
	free(err);
}

/* --many: each worker thread's misses go out K at a time, so a process
 * with one thread still sends batches of more than one key. */
static void test_bench_uplink_many_batches_the_keys_of_one_call(void **state)
{
	(void)state;
	char name[TU_NAME_MAX];
	tu_segname(name, sizeof name, "bench-uplink-many");
	/* clang-format off */
	const char *args[] = {"--uplink", "--seconds", "0.4", "--rounds", "1", "--keys", "2000",
			      "--procs", "2", "--threads", "1", "--many", "4",
			      "--latency-samples", "100", "--bench-requests", "20000",
			      "--name", name, "--json", NULL};
	/* clang-format on */
	char *out, *err;
	struct tu_json *j = run_json(args, &out, &err);
	assert_true(field(j, "ok")->boolean);
	assert_int_equal((int)number(j, "keys_per_call"), 4);
	assert_int_equal((int)number(j, "threads"), 1);
	assert_int_equal((int)number(j, "errors"), 0);
	assert_int_equal((int)number(j, "bad_values"), 0);
	assert_true(number(j, "uplink_misses") > 0);
	assert_true(number(j, "uplink_origin_calls") >= number(j, "uplink_misses"));
	/* one shmc_fetch would make batches of one key here */
	if (number(j, "uplink_batch_avg") < 2.0)
		fail_msg("average batch %.2f, expected about 4", number(j, "uplink_batch_avg"));
	tu_json_free(j);
	free(out);
	free(err);
}

static void test_bench_uplink_bad_option_is_usage_error(void **state)
{
	(void)state;
	const char *args[] = {"--uplink", "--transport", "pigeon", NULL};
	char *out, *err;

	assert_int_equal(bench_run(args, &out, &err), 2);
	assert_non_null(strstr(err, "--transport"));
	free(out);
	free(err);

	/* a call's keys are distinct: no more of them than there are keys */
	const char *more[] = {"--uplink", "--keys", "3", "--many", "4", NULL};
	assert_int_equal(bench_run(more, &out, &err), 2);
	assert_non_null(strstr(err, "--many"));
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bench_uplink_short_run_reports_every_figure),
		cmocka_unit_test(test_bench_uplink_many_batches_the_keys_of_one_call),
		cmocka_unit_test(test_bench_uplink_bad_option_is_usage_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
