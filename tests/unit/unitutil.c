/*
 * unitutil.c - helpers shared by the white-box unit tests; see unitutil.h.
 */
#include "unitutil.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "handle.h"

void uu_segname(char *buf, size_t cap, const char *test)
{
	snprintf(buf, cap, "u.%s.%ld", test, (long)getpid());
}

int uu_create(const char *name, const struct uu_params *p, shmc_cache **out)
{
	shmc_opts *o = NULL;
	int rc;

	(void)shmc_unlink(name);
	rc = shmc_opts_create(&o);
	if (rc != 0)
		return rc;
	rc = shmc_opts_set_sweeper(o, 0);
	if (rc == 0 && p != NULL && p->size_bytes != 0)
		rc = shmc_opts_set_size(o, p->size_bytes);
	if (rc == 0 && p != NULL && p->chunk_bytes != 0)
		rc = shmc_opts_set_chunk_size(o, p->chunk_bytes);
	if (rc == 0 && p != NULL && p->item_bytes != 0)
		rc = shmc_opts_set_item_size(o, p->item_bytes);
	if (rc == 0 && p != NULL && p->max_procs != 0)
		rc = shmc_opts_set_max_procs(o, p->max_procs);
	if (rc == 0 && p != NULL && p->max_threads != 0)
		rc = shmc_opts_set_max_threads(o, p->max_threads);
	if (rc == 0 && p != NULL && p->default_ttl_ms != 0)
		rc = shmc_opts_set_default_ttl(o, p->default_ttl_ms);
	if (rc == 0)
		rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, out);
	shmc_opts_destroy(o);
	return rc;
}

int uu_setup(void **state, const struct uu_params *p)
{
	struct uu_fixture *f = calloc(1, sizeof *f);
	int rc;

	if (f == NULL)
		return -1;
	uu_segname(f->name, sizeof f->name, (const char *)*state);
	rc = uu_create(f->name, p, &f->c);
	if (rc != 0) {
		fprintf(stderr, "setup: creating %s: %s (%s)\n", f->name, shmc_errname(rc),
			shmc_errmsg(NULL));
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int uu_teardown(void **state)
{
	struct uu_fixture *f = *state;

	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	free(f);
	return 0;
}

struct shmc__tctx *uu_tctx(shmc_cache *c)
{
	int err = 0;

	return shmc__tctx_get(c, &err);
}

bool uu_wait_flag(_Atomic int *flag, int value, unsigned timeout_ms, pid_t pid, bool *reaped)
{
	uint64_t deadline = tu_now_ms() + timeout_ms;

	for (unsigned spin = 0; atomic_load(flag) < value; spin++) {
		if (pid > 0 && spin % 64 == 0) {
			int status;

			if (waitpid(pid, &status, WNOHANG) == pid) {
				fprintf(stderr, "child %ld ended before signalling\n", (long)pid);
				if (reaped != NULL)
					*reaped = true;
				return false;
			}
		}
		if (tu_now_ms() > deadline)
			return false;
		if (spin < 1000)
			sched_yield();
		else
			tu_sleep_us(200);
	}
	return true;
}

int uu_kill_child(pid_t pid)
{
	int status;
	pid_t got;

	if (pid <= 0)
		return -1;
	kill(pid, SIGKILL);
	do
		got = waitpid(pid, &status, 0);
	while (got < 0 && errno == EINTR);
	if (got != pid)
		return -1;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return 0;
	if (WIFEXITED(status))
		fprintf(stderr, "child %ld exited (status %d) before it was killed\n", (long)pid,
			WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "child %ld died of signal %d before it was killed\n", (long)pid,
			WTERMSIG(status));
	return -1;
}

void uu_child_sleep_forever(void)
{
	for (;;)
		pause();
}

static char self_path[PATH_MAX];

void uu_record_self(const char *argv0)
{
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);

	if (n > 0) {
		self_path[n] = '\0';
		return;
	}
	if (argv0 != NULL && realpath(argv0, self_path) != NULL)
		return;
	self_path[0] = '\0';
}

const char *uu_self_path(void)
{
	return self_path[0] != '\0' ? self_path : NULL;
}

struct shmc__tctx *tctx_of(shmc_cache *c)
{
	struct shmc__tctx *t = uu_tctx(c);

	if (t == NULL)
		fail_msg("no thread context: %s", shmc_errmsg(c));
	return t;
}
