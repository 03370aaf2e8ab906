/*
 * fake_redis.h - a fake Redis server for the uplink tests: a thread behind
 * a TCP listener on 127.0.0.1 that answers each command with the next entry
 * of a script (or an answer function's choice), logs what it was sent, and
 * can stall, close, dribble, reset, or stop listening on demand.
 *
 * The fields of struct fake below the lock are the test's to set under
 * f->mu; the rest belong to the server thread. Failures are cmocka
 * failures: not for forked children.
 */
#ifndef SHMC_TEST_FAKE_REDIS_H
#define SHMC_TEST_FAKE_REDIS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FAKE_MAX_ARGS 8 /* arguments of a command seen by an answer function */
#define FAKE_MAX_CONNS 16
#define FAKE_MAX_SCRIPT 64
#define FAKE_LOG_CAP 16384

/* Script entries: bytes to send as they are, or one of these. */
#define STALL "@STALL"	      /* answer nothing */
#define CLOSE "@CLOSE"	      /* close the connection */
#define CLOSE_AFTER "@CLOSE:" /* prefix: send what follows, then close */
#define DRIBBLE "@DRIBBLE:"   /* prefix: send what follows a byte per 30 ms */

struct fake_conn {
	int fd; /* -1 = free */
	char *buf;
	size_t len, cap;
	size_t received;
};

/* Consulted first for every command, under the server's lock: a reply
 * (or one of the entries above), or NULL to fall through to the auto
 * answers and the script. */
typedef const char *(*fake_answer_fn)(void *arg, int argc, const char **argv,
				      const size_t *argvlen);

struct fake {
	pthread_t thread;
	pthread_mutex_t mu; /* protects everything below but the conns */
	int wake[2];	    /* the test pokes the thread through it */
	uint16_t port;
	bool stop;
	bool want_listening; /* the test's wish ... */
	bool listening;	     /* ... and the thread's state */
	bool want_close_all; /* close every connection (an idle close) */
	bool auto_answer;    /* AUTH/SELECT/READONLY/ASKING: +OK; PING: +PONG */
	const char *script[FAKE_MAX_SCRIPT];
	size_t nscript, next;
	fake_answer_fn answer;	  /* NULL = none */
	void *answer_arg;
	const char *otherwise;	  /* when the script is used up; NULL = stall */
	size_t close_after_bytes; /* reset a connection that sent this much; 0 = off */
	unsigned accepts;
	unsigned commands;
	char log[FAKE_LOG_CAP]; /* one line per command: args, escaped */
	size_t loglen;
	/* the thread's own */
	int listen_fd;
	struct fake_conn conns[FAKE_MAX_CONNS];
};

/* A server on a free port of 127.0.0.1, listening, auto answers on. */
struct fake *fake_start(void);
void fake_stop(struct fake *f);
/* Wake the server thread (after changing a field it acts on). */
void fake_poke(struct fake *f);
/* Open or close the listener (on the same port), and wait until done. */
void fake_set_listening(struct fake *f, bool on);
/* Replace the script with the NULL-terminated replies given. */
void fake_script(struct fake *f, ...);
#define SCRIPT(f, ...) fake_script(f, __VA_ARGS__, (const char *)NULL)
/* The reply once the script is used up (NULL = stall). */
void fake_otherwise(struct fake *f, const char *reply);
void fake_set_answer(struct fake *f, fake_answer_fn fn, void *arg);
/* AUTH/SELECT/READONLY/ASKING answered +OK and PING +PONG, unscripted. */
void fake_auto_answer(struct fake *f, bool on);
unsigned fake_accepts(struct fake *f);
/* A copy of the command log, a line per command (the caller frees it). */
char *fake_log(struct fake *f);
void fake_clear_log(struct fake *f);
void assert_log_has(struct fake *f, const char *line);
void assert_log_lacks(struct fake *f, const char *line);
/* Argument a (alen bytes) is word, ignoring case. */
bool fake_arg_is(const char *a, size_t alen, const char *word);

#endif
