/*
 * tu_run.c - running a built program from a test and capturing its output.
 * See tu_run.h.
 */
#include "tu_run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define ARGV_MAX 32

const char *tu_sibling_program(const char *env_var, const char *name)
{
	static char path[PATH_MAX];
	const char *env = getenv(env_var);
	ssize_t n;
	char *slash;

	if (env != NULL)
		return env;
	n = readlink("/proc/self/exe", path, sizeof path - 16);
	if (n <= 0) {
		snprintf(path, sizeof path, "./%s", name);
		return path;
	}
	path[n] = '\0';
	slash = strrchr(path, '/');
	snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "%s", name);
	return path;
}

char *tu_slurp_fd(int fd, size_t *len)
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

/* A memory file holding in, positioned at its start; -1 on failure. */
static int stdin_file(const void *in, size_t in_len)
{
	int fd = memfd_create("tu-stdin", 0);

	if (fd < 0)
		return -1;
	if (write(fd, in, in_len) != (ssize_t)in_len || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void close_all(int in_fd, int out_fd, int err_fd)
{
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
}

pid_t tu_spawn(const char *path, const char *name, const char *const *args,
	       const struct tu_spawn_opts *opts, int *out_fd, int *err_fd)
{
	static const struct tu_spawn_opts defaults;
	const char *argv[ARGV_MAX];
	int in_fd = -1;
	size_t n = 0;
	pid_t pid;

	if (opts == NULL)
		opts = &defaults;
	argv[n++] = name;
	for (; args[n - 1] != NULL && n < ARGV_MAX - 1; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;

	*out_fd = memfd_create("tu-stdout", 0);
	*err_fd = memfd_create("tu-stderr", 0);
	if (opts->in != NULL)
		in_fd = stdin_file(opts->in, opts->in_len);
	if (*out_fd < 0 || *err_fd < 0 || (opts->in != NULL && in_fd < 0)) {
		close_all(in_fd, *out_fd, *err_fd);
		return -1;
	}

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		tu_child_init(opts->watchdog_s);
		if (in_fd < 0)
			in_fd = open("/dev/null", O_RDONLY);
		dup2(in_fd, STDIN_FILENO);
		dup2(*out_fd, STDOUT_FILENO);
		dup2(*err_fd, STDERR_FILENO);
		if (opts->path_env != NULL)
			setenv("PATH", opts->path_env, 1);
		execv(path, (char *const *)argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	if (in_fd >= 0)
		close(in_fd);
	if (pid < 0) {
		close_all(-1, *out_fd, *err_fd);
		return -1;
	}
	return pid;
}

int tu_collect(struct tu_run *r, pid_t pid, int out_fd, int err_fd)
{
	int status;

	memset(r, 0, sizeof *r);
	if (waitpid(pid, &status, 0) != pid) {
		close_all(-1, out_fd, err_fd);
		return -1;
	}
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	r->out = tu_slurp_fd(out_fd, &r->out_len);
	r->err = tu_slurp_fd(err_fd, &r->err_len);
	close_all(-1, out_fd, err_fd);
	if (r->out == NULL || r->err == NULL) {
		tu_run_free(r);
		return -1;
	}
	return 0;
}

int tu_run(struct tu_run *r, const char *path, const char *name, const char *const *args,
	   const struct tu_spawn_opts *opts)
{
	int out_fd, err_fd;
	pid_t pid = tu_spawn(path, name, args, opts, &out_fd, &err_fd);

	if (pid < 0) {
		memset(r, 0, sizeof *r);
		return -1;
	}
	return tu_collect(r, pid, out_fd, err_fd);
}

void tu_run_free(struct tu_run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}
