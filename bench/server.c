/*
 * server.c - starting, stopping and cleaning up after a server process of
 * the bench's own (bench/server.h); shared by --peers (memcached,
 * redis-server) and --uplink (redis-server). How a server is configured and
 * how the bench tells that it answers stay with each mode.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SERVER_STOP_GRACE_S 5.0
#define SERVER_POLL_NS 10000000L

int bench_server_spawn(const char *who, const char *program, char *const *argv,
		       const char *log_path, pid_t *pid)
{
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log_fd < 0) {
		fprintf(stderr, "shmcache-bench: %s%s: %s\n", who, log_path, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	fflush(NULL); /* the child must not flush our buffered output */
	pid_t child = fork();
	if (child < 0) {
		fprintf(stderr, "shmcache-bench: %sfork: %s\n", who, strerror(errno));
		close(log_fd);
		return -1;
	}
	if (child == 0) {
		/* Its own group: ^C goes to the bench, which stops the server
		 * itself. Killed with the bench if the bench dies first; the
		 * getppid check covers a bench that died before the prctl. */
		setpgid(0, 0);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(126);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		int in = open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
		    dup2(log_fd, STDERR_FILENO) < 0)
			_exit(126);
		close_range(3, ~0u, 0);
		execvp(program, argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", program, strerror(errno));
		_exit(127);
	}
	close(log_fd);
	*pid = child;
	return 0;
}

bool bench_server_wait_exit(pid_t pid, double timeout_s)
{
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	for (;;) {
		int status;
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid || (got < 0 && errno == ECHILD))
			return true;
		if (now_ns() >= deadline)
			return false;
		struct timespec ts = {0, SERVER_POLL_NS};
		nanosleep(&ts, NULL);
	}
}

void bench_server_stop(const char *who, const char *program, pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	if (!bench_server_wait_exit(*pid, SERVER_STOP_GRACE_S)) {
		fprintf(stderr,
			"shmcache-bench: %s%s (pid %d) ignored SIGTERM for %.0f s; "
			"killing it\n",
			who, program, (int)*pid, SERVER_STOP_GRACE_S);
		kill(*pid, SIGKILL);
		int status;
		while (waitpid(*pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	*pid = 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
		fprintf(stderr, "shmcache-bench: removing %s: %s\n", path, strerror(errno));
	return 0; /* go on: remove what can be removed */
}

void bench_server_dir_remove(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
