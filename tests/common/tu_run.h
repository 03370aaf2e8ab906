/*
 * tu_run.h - running one of the built programs (the shmcache tool, the
 * stat tool, the bench) from a test and capturing what it says.
 *
 * The program's stdout and stderr go to memory files rather than pipes, so
 * that it can never block on a full pipe whatever it writes, and a test can
 * read what it has written so far while it still runs. The child arms a
 * watchdog (tu_child_init) before exec, so a hung program dies instead of
 * hanging the suite.
 *
 * These return codes instead of asserting, like the rest of tests/common:
 * each test decides how to fail and what to say.
 */
#ifndef SHMC_TU_RUN_H
#define SHMC_TU_RUN_H

#include <stddef.h>
#include <sys/types.h>

/* What a finished program left. Owned by the caller: tu_run_free. */
struct tu_run {
	int status;	 /* exit code; -1 if killed by a signal */
	int term_signal; /* the signal that killed it; 0 if it exited */
	char *out;	 /* NUL-terminated (output may itself hold NULs) */
	size_t out_len;
	char *err; /* NUL-terminated */
	size_t err_len;
};

/* How to start the program; a zeroed struct means /dev/null as stdin, the
 * inherited PATH and no watchdog. */
struct tu_spawn_opts {
	const void *in; /* the whole of its stdin; NULL: /dev/null */
	size_t in_len;
	const char *path_env; /* replaces PATH; NULL: inherited */
	unsigned watchdog_s;  /* alarm() armed in the child; 0: none */
};

/* The path of a program built next to the running test: $env_var if it is
 * set, else <directory of /proc/self/exe>/name. The result may live in a
 * static buffer that the next call overwrites. */
const char *tu_sibling_program(const char *env_var, const char *name);

/* The whole of fd, read from offset 0, NUL-terminated; *len excludes the
 * NUL. Returns malloc'd memory (the caller frees it), or NULL on failure. */
char *tu_slurp_fd(int fd, size_t *len);

/* Start path with argv[0] = name and args (NULL-terminated, at most 30)
 * after it. *out_fd and *err_fd receive the memory files behind its stdout
 * and stderr: pass them to tu_collect. A failed exec is reported on its
 * stderr and exits 127. opts may be NULL. Returns the child's pid, or -1
 * (nothing started, no descriptor left open). */
pid_t tu_spawn(const char *path, const char *name, const char *const *args,
	       const struct tu_spawn_opts *opts, int *out_fd, int *err_fd);

/* Wait for pid and fill r with its status and output; closes out_fd and
 * err_fd in every case. Returns 0, or -1 if the wait or a read failed (r
 * then holds nothing to free). */
int tu_collect(struct tu_run *r, pid_t pid, int out_fd, int err_fd);

/* tu_spawn + tu_collect: run the program to its end. */
int tu_run(struct tu_run *r, const char *path, const char *name, const char *const *args,
	   const struct tu_spawn_opts *opts);

/* Free r's output and zero it. */
void tu_run_free(struct tu_run *r);

#endif /* SHMC_TU_RUN_H */
