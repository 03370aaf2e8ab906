/*
 * server.h - a server process the bench starts for one run (--peers,
 * --uplink) and stops before it exits: its life cycle, not its protocol.
 *
 * A server is a child of the bench in its own process group, so that a
 * terminal's ^C reaches only the bench, which then stops it in order:
 * SIGTERM, and SIGKILL after a grace period. The kernel kills it if the
 * bench dies first (PR_SET_PDEATHSIG). Its stdout and stderr go to a log
 * file, in the private directory the mode made for it, which
 * bench_server_dir_remove removes with everything in it.
 *
 * Messages go to stderr as "shmcache-bench: <who>...", who being "" or a
 * mode's prefix such as "uplink: ". Call these only in the process that
 * started the server (it alone may wait for it).
 */
#ifndef SHMC_BENCH_SERVER_H
#define SHMC_BENCH_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

/* Forks and execs argv (argv[0] is only the name shown in ps; program is
 * looked up in PATH unless it has a '/'), stdin from /dev/null, stdout and
 * stderr appended to nothing but log_path (created or truncated, 0600).
 * Returns 0 with *pid set, or -1 with nothing started (the reason printed).
 * The caller waits for the server to answer in its own way. */
int bench_server_spawn(const char *who, const char *program, char *const *argv,
		       const char *log_path, pid_t *pid);

/* Waits up to timeout_s for pid to exit; true if it did and was reaped (or
 * is no child of ours). */
bool bench_server_wait_exit(pid_t pid, double timeout_s);

/* SIGTERM, then SIGKILL if *pid has not exited within the grace period
 * (said on stderr, naming program), and reaps it; *pid becomes 0.
 * Nothing to do if *pid <= 0: safe to call on every path. */
void bench_server_stop(const char *who, const char *program, pid_t *pid);

/* Removes dir and everything under it (without following symlinks); what
 * cannot be removed is said on stderr and left. */
void bench_server_dir_remove(const char *dir);

#endif
