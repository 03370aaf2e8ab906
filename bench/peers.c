/*
 * peers.c - the other stores shmcache-bench --peers measures, and what it
 * takes to run them: a private directory (mkdtemp, mode 0700), memcached and
 * redis-server started in it listening on unix sockets only (never TCP), the
 * LMDB database in it, every peer loaded with the bench's keys, and one GET
 * (or one pipelined batch of GETs) through each client library.
 *
 * A server is a child of the bench, started and stopped as bench/server.h
 * says (own process group, PR_SET_PDEATHSIG, SIGTERM then SIGKILL). Its
 * stdout and stderr go to a log file in the directory, printed if it fails
 * to start.
 *
 * Each peer is used the way a careful user of it would:
 *   memcached  libmemcached's memcached_get over the ASCII protocol
 *              (memcached's binary protocol is deprecated), blocking I/O,
 *              one server thread per worker process;
 *   redis      hiredis, GET built from an argv (no format string parsed),
 *              blocking; the pipelined variant appends PEER_PIPE_DEPTH GETs
 *              and then reads their replies;
 *   lmdb       one read-only transaction per worker, reset after each GET
 *              and renewed before the next (LMDB's cheap path for many short
 *              reads: no reader slot is taken or freed), mdb_get, and the
 *              value copied out as shmc_get copies it.
 * The libraries for memcached and LMDB are optional at build time
 * (SHMC_BENCH_HAVE_LIBMEMCACHED, SHMC_BENCH_HAVE_LMDB); without one,
 * peers_check says so and --peers fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
#include <libmemcached/memcached.h>
#endif
#ifdef SHMC_BENCH_HAVE_LMDB
#include <lmdb.h>
#endif

#include "bench.h"
#include "server.h"

#define SERVER_START_TIMEOUT_S 10.0
#define SERVER_POLL_NS 10000000L
#define SERVER_LOG_TAIL_BYTES 2048
#define REDIS_LOAD_PIPELINE 1024u /* SETs in flight while loading */
#define MEMCACHED_KEY_MAX 250u	  /* the ASCII protocol's limit */
#define MEMCACHED_DEFAULT_ITEM_MAX ((size_t)1 << 20)
#define MIB ((size_t)1 << 20)
#define DIR_MAX 256

static const struct peer_info {
	const char *name;
	const char *transport;
	const char *protocol; /* NULL: no wire protocol */
	unsigned batch;
} peer_table[PEER_COUNT] = {
	[PEER_MEMCACHED] = { "memcached", "unix-socket", "ascii", 1 },
	[PEER_REDIS] = { "redis", "unix-socket", "resp2", 1 },
	[PEER_REDIS_PIPE] = { "redis-pipe32", "unix-socket", "resp2", PEER_PIPE_DEPTH },
	[PEER_LMDB] = { "lmdb", "in-process", NULL, 1 },
};

_Static_assert(PEER_PIPE_DEPTH == 32, "the name redis-pipe32 says the depth");

const char *peer_name(enum peer p)
{
	return peer_table[p].name;
}

unsigned peer_batch(enum peer p)
{
	return peer_table[p].batch;
}

bool peer_in_process(enum peer p)
{
	return p == PEER_LMDB;
}

const char *peer_transport(enum peer p)
{
	return peer_table[p].transport;
}

const char *peer_protocol(enum peer p)
{
	return peer_table[p].protocol;
}

/* ---------------------------------------------------------------- state */

struct server {
	const char *program; /* as looked up in PATH */
	char path[PATH_MAX]; /* the executable found */
	char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char log[PATH_MAX];
	pid_t pid; /* 0: not running */
	char version[32];
};

struct peers {
	/* "": not created. Short: the sockets' paths must fit in sun_path. */
	char dir[DIR_MAX];
	struct server memcached;
	struct server redis;
	char lmdb_dir[PATH_MAX];
	size_t lmdb_map_bytes;
	unsigned lmdb_max_readers;
	unsigned memcached_threads;
};

struct peer_conn {
	enum peer kind;
	bool failed; /* a failure was printed: later ones are only counted */
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
	memcached_st *memc;
#endif
	redisContext *redis;
#ifdef SHMC_BENCH_HAVE_LMDB
	MDB_env *env;
	MDB_txn *txn; /* reset between GETs */
	MDB_dbi dbi;
#endif
};

/* ----------------------------------------------------------- programs */

/* The executable called name in PATH (confstr's default path when PATH is
 * unset) into out. The server is then run by that path, so the check and
 * the start agree on which program it is. */
static bool program_find(const char *name, char *out, size_t cap)
{
	const char *path = getenv("PATH");
	char fallback[256];
	if (path == NULL) {
		size_t n = confstr(_CS_PATH, fallback, sizeof fallback);
		path = n > 0 && n <= sizeof fallback ? fallback : "/usr/bin:/bin";
	}
	while (*path) {
		const char *end = strchrnul(path, ':');
		int len = (int)(end - path);
		int n = len > 0 ? snprintf(out, cap, "%.*s/%s", len, path, name)
				: snprintf(out, cap, "./%s", name); /* empty entry: cwd */
		struct stat st;
		if (n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(out, X_OK) == 0)
			return true;
		path = *end ? end + 1 : end;
	}
	return false;
}

int peers_check(void)
{
	char path[PATH_MAX];
	int missing = 0;
#ifndef SHMC_BENCH_HAVE_LIBMEMCACHED
	fprintf(stderr, "shmcache-bench: --peers: memcached: this build has no libmemcached "
			"(install libmemcached-dev, as scripts/bootstrap does, and reconfigure)\n");
	missing++;
#endif
#ifndef SHMC_BENCH_HAVE_LMDB
	fprintf(stderr, "shmcache-bench: --peers: lmdb: this build has no liblmdb "
			"(install liblmdb-dev, as scripts/bootstrap does, and reconfigure)\n");
	missing++;
#endif
	static const char *const servers[] = { "memcached", "redis-server" };
	for (size_t i = 0; i < sizeof servers / sizeof servers[0]; i++) {
		if (!program_find(servers[i], path, sizeof path)) {
			fprintf(stderr, "shmcache-bench: --peers: %s: server not found in PATH "
					"(scripts/bootstrap installs it)\n",
				servers[i]);
			missing++;
		}
	}
	return missing ? -1 : 0;
}

/* -------------------------------------------------------------- servers */

static void sleep_for_ns(long ns)
{
	struct timespec ts = { 0, ns };
	nanosleep(&ts, NULL);
}

/* Prints the end of a server's log, where it says why it stopped. */
static void server_log_print(const struct server *s)
{
	int fd = open(s->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[SERVER_LOG_TAIL_BYTES + 1];
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > SERVER_LOG_TAIL_BYTES ? size - SERVER_LOG_TAIL_BYTES : 0;
	ssize_t n = pread(fd, buf, SERVER_LOG_TAIL_BYTES, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "shmcache-bench: --- end of %s ---\n%s%s--- ---\n", s->log, buf,
		buf[n - 1] == '\n' ? "" : "\n");
}

/* True once something accepts connections on the socket. */
static bool socket_accepts(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	bool ok = connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

/* Waits until the server listens, or it exits, or the timeout. */
static int server_wait_ready(struct server *s)
{
	uint64_t deadline = now_ns() + (uint64_t)(SERVER_START_TIMEOUT_S * 1e9);
	for (;;) {
		if (socket_accepts(s->socket))
			return 0;
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			fprintf(stderr,
				"shmcache-bench: %s exited (%s %d) before listening on %s\n",
				s->program, WIFEXITED(status) ? "status" : "signal",
				WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
				s->socket);
			server_log_print(s);
			return -1;
		}
		if (bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			return -1;
		}
		if (now_ns() >= deadline) {
			fprintf(stderr, "shmcache-bench: %s did not listen on %s within %.0f s\n",
				s->program, s->socket, SERVER_START_TIMEOUT_S);
			server_log_print(s);
			return -1;
		}
		sleep_for_ns(SERVER_POLL_NS);
	}
}

static int server_paths(struct server *s, const char *dir, const char *program,
			const char *socket_name)
{
	s->program = program;
	if (!program_find(program, s->path, sizeof s->path)) {
		fprintf(stderr, "shmcache-bench: --peers: %s: server not found in PATH\n", program);
		return -1;
	}
	int n = snprintf(s->socket, sizeof s->socket, "%s/%s", dir, socket_name);
	if (n < 0 || (size_t)n >= sizeof s->socket) {
		fprintf(stderr, "shmcache-bench: socket path %s/%s is longer than a unix socket "
				"path may be (%zu bytes); set TMPDIR to a shorter directory\n",
			dir, socket_name, sizeof s->socket - 1);
		return -1;
	}
	snprintf(s->log, sizeof s->log, "%s/%s.log", dir, program);
	return 0;
}

/* ------------------------------------------------------------ memcached */

#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED

static memcached_st *memcached_connect(const char *socket_path)
{
	memcached_st *m = memcached_create(NULL);
	if (m == NULL) {
		fprintf(stderr, "shmcache-bench: memcached_create failed\n");
		return NULL;
	}
	memcached_return_t rc = memcached_server_add_unix_socket(m, socket_path);
	if (rc != MEMCACHED_SUCCESS) {
		fprintf(stderr, "shmcache-bench: memcached: adding %s: %s\n", socket_path,
			memcached_strerror(m, rc));
		memcached_free(m);
		return NULL;
	}
	return m;
}

/* memcached sizes its memory with -m (MiB): room for every item at twice a
 * generous per-item cost, so that nothing is evicted (an eviction would
 * show as misses, which fail the run). */
static int memcached_start(struct peers *ps, const struct peer_data *d)
{
	struct server *s = &ps->memcached;
	if (server_paths(s, ps->dir, "memcached", "memcached.sock") != 0)
		return -1;
	if (d->key_size > MEMCACHED_KEY_MAX) {
		fprintf(stderr, "shmcache-bench: memcached: keys of %zu bytes are over its %u-byte "
				"limit\n",
			d->key_size, MEMCACHED_KEY_MAX);
		return -1;
	}
	double want = (double)d->keys * (double)(d->key_size + d->value_size + 96) * 2.0;
	size_t item_max = MEMCACHED_DEFAULT_ITEM_MAX;
	while (item_max < d->key_size + d->value_size + 1024)
		item_max *= 2;
	size_t mem_mib = (size_t)(want / (double)MIB) + 64;
	if (mem_mib < 2 * item_max / MIB)
		mem_mib = 2 * item_max / MIB; /* memcached wants -I at most half of -m */
	char mem_arg[32], threads_arg[16], item_arg[32];
	snprintf(mem_arg, sizeof mem_arg, "%zu", mem_mib);
	snprintf(threads_arg, sizeof threads_arg, "%u", ps->memcached_threads);
	snprintf(item_arg, sizeof item_arg, "%zuk", item_max >> 10);
	/* -s turns TCP and UDP off. memcached refuses to run as root unless
	 * told which user to be. */
	char *argv[20];
	int n = 0;
	argv[n++] = "memcached";
	argv[n++] = "-s";
	argv[n++] = s->socket;
	argv[n++] = "-a";
	argv[n++] = "0600";
	argv[n++] = "-m";
	argv[n++] = mem_arg;
	argv[n++] = "-t";
	argv[n++] = threads_arg;
	argv[n++] = "-I";
	argv[n++] = item_arg;
	argv[n++] = "-c";
	argv[n++] = "256";
	if (geteuid() == 0) {
		argv[n++] = "-u";
		argv[n++] = "root";
	}
	argv[n] = NULL;
	if (bench_server_spawn("", s->path, argv, s->log, &s->pid) != 0 ||
	    server_wait_ready(s) != 0)
		return -1;

	memcached_st *m = memcached_connect(s->socket);
	if (m == NULL)
		return -1;
	int result = -1;
	unsigned char *value = malloc(d->value_size ? d->value_size : 1);
	if (value == NULL) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	memcpy(value, d->value_template, d->value_size);
	for (uint64_t i = 0; i < d->keys; i++) {
		value_stamp(value, d->stamp_bytes, i);
		memcached_return_t rc = memcached_set(m, d->key_bytes + i * d->key_size,
						      d->key_size, (const char *)value,
						      d->value_size, 0, 0);
		if (rc != MEMCACHED_SUCCESS) {
			fprintf(stderr, "shmcache-bench: memcached: loading key %" PRIu64 ": %s\n",
				i, memcached_last_error_message(m));
			goto out;
		}
		if ((i & 4095) == 0 && bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			goto out;
		}
	}
	memcached_return_t rc;
	memcached_stat_st *st = memcached_stat(m, NULL, &rc);
	if (st != NULL) {
		snprintf(s->version, sizeof s->version, "%s", st->version);
		memcached_stat_free(m, st);
	}
	result = 0;
out:
	free(value);
	memcached_free(m);
	return result;
}

#endif /* SHMC_BENCH_HAVE_LIBMEMCACHED */

/* ---------------------------------------------------------------- redis */

static redisContext *redis_connect(const char *socket_path)
{
	redisContext *c = redisConnectUnix(socket_path);
	if (c == NULL || c->err) {
		fprintf(stderr, "shmcache-bench: redis: connecting to %s: %s\n", socket_path,
			c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Reads the version from INFO server into s->version. */
static void redis_version_read(redisContext *c, struct server *s)
{
	redisReply *r = redisCommand(c, "INFO server");
	if (r != NULL && r->type == REDIS_REPLY_STRING) {
		const char *v = strstr(r->str, "redis_version:");
		if (v != NULL) {
			v += strlen("redis_version:");
			snprintf(s->version, sizeof s->version, "%.*s", (int)strcspn(v, "\r\n"), v);
		}
	}
	freeReplyObject(r);
}

static int redis_start(struct peers *ps, const struct peer_data *d)
{
	struct server *s = &ps->redis;
	if (server_paths(s, ps->dir, "redis-server", "redis.sock") != 0)
		return -1;
	/* --port 0: no TCP listener at all. Nothing is ever written to disk;
	 * --dir keeps any file it might write inside our directory. */
	char *argv[] = {
		"redis-server", "--port", "0", "--unixsocket", s->socket, "--unixsocketperm",
		"600", "--save", "", "--appendonly", "no", "--dir", ps->dir, "--daemonize", "no",
		NULL,
	};
	if (bench_server_spawn("", s->path, argv, s->log, &s->pid) != 0 ||
	    server_wait_ready(s) != 0)
		return -1;

	redisContext *c = redis_connect(s->socket);
	if (c == NULL)
		return -1;
	int result = -1;
	unsigned char *value = malloc(REDIS_LOAD_PIPELINE * (d->value_size ? d->value_size : 1));
	if (value == NULL) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	/* Pipelined SETs: one buffer per SET in flight, since hiredis copies
	 * the arguments only when it formats the command (at append). */
	for (uint64_t first = 0; first < d->keys; first += REDIS_LOAD_PIPELINE) {
		uint64_t end = first + REDIS_LOAD_PIPELINE < d->keys ? first + REDIS_LOAD_PIPELINE
								     : d->keys;
		for (uint64_t i = first; i < end; i++) {
			unsigned char *v = value + (i - first) * d->value_size;
			memcpy(v, d->value_template, d->value_size);
			value_stamp(v, d->stamp_bytes, i);
			const char *argv_set[3] = { "SET", d->key_bytes + i * d->key_size,
						    (const char *)v };
			size_t lens[3] = { 3, d->key_size, d->value_size };
			if (redisAppendCommandArgv(c, 3, argv_set, lens) != REDIS_OK) {
				fprintf(stderr, "shmcache-bench: redis: loading: %s\n", c->errstr);
				goto out;
			}
		}
		for (uint64_t i = first; i < end; i++) {
			void *reply = NULL;
			if (redisGetReply(c, &reply) != REDIS_OK) {
				fprintf(stderr, "shmcache-bench: redis: loading: %s\n", c->errstr);
				goto out;
			}
			redisReply *r = reply;
			bool ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
			if (!ok)
				fprintf(stderr, "shmcache-bench: redis: SET of key %" PRIu64
						" answered %s\n",
					i, r->type == REDIS_REPLY_ERROR ? r->str : "not OK");
			freeReplyObject(r);
			if (!ok)
				goto out;
		}
		if (bench_interrupted) {
			fprintf(stderr, "shmcache-bench: interrupted\n");
			goto out;
		}
	}
	redis_version_read(c, s);
	result = 0;
out:
	free(value);
	redisFree(c);
	return result;
}

/* ----------------------------------------------------------------- lmdb */

#ifdef SHMC_BENCH_HAVE_LMDB

static void lmdb_error(const char *what, int rc)
{
	fprintf(stderr, "shmcache-bench: lmdb: %s: %s\n", what, mdb_strerror(rc));
}

static int lmdb_env_open(const struct peers *ps, unsigned flags, MDB_env **out)
{
	MDB_env *env = NULL;
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, ps->lmdb_map_bytes);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(env, ps->lmdb_max_readers);
	if (rc == 0)
		rc = mdb_env_open(env, ps->lmdb_dir, flags, 0600);
	if (rc != 0) {
		lmdb_error(ps->lmdb_dir, rc);
		if (env != NULL)
			mdb_env_close(env);
		return -1;
	}
	*out = env;
	return 0;
}

/* One write transaction. The keys are fixed-width and zero-padded, so
 * index order is LMDB's byte order and MDB_APPEND fills pages in order.
 * The database is a scratch file: no sync. */
static int lmdb_create(struct peers *ps, const struct peer_data *d)
{
	snprintf(ps->lmdb_dir, sizeof ps->lmdb_dir, "%s/lmdb", ps->dir);
	if (mkdir(ps->lmdb_dir, 0700) != 0) {
		fprintf(stderr, "shmcache-bench: mkdir %s: %s\n", ps->lmdb_dir, strerror(errno));
		return -1;
	}
	double want = (double)d->keys * (double)(d->key_size + d->value_size + 64) * 2.0;
	ps->lmdb_map_bytes = (size_t)want + 64 * MIB;
	ps->lmdb_max_readers = d->max_procs + 8;
	MDB_env *env;
	if (lmdb_env_open(ps, MDB_NOSYNC | MDB_NOMETASYNC, &env) != 0)
		return -1;
	int result = -1;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	unsigned char *value = malloc(d->value_size ? d->value_size : 1);
	if (value == NULL) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		goto out;
	}
	if (d->key_size > (size_t)mdb_env_get_maxkeysize(env)) {
		fprintf(stderr,
			"shmcache-bench: lmdb: keys of %zu bytes are over its %d-byte limit\n",
			d->key_size, mdb_env_get_maxkeysize(env));
		goto out;
	}
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, NULL, 0, &dbi);
	if (rc != 0) {
		lmdb_error("write transaction", rc);
		goto out;
	}
	memcpy(value, d->value_template, d->value_size);
	for (uint64_t i = 0; i < d->keys; i++) {
		value_stamp(value, d->stamp_bytes, i);
		MDB_val k = { d->key_size, (void *)(d->key_bytes + i * d->key_size) };
		MDB_val v = { d->value_size, value };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		if (rc != 0) {
			lmdb_error("loading", rc);
			goto out;
		}
	}
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0) {
		lmdb_error("commit", rc);
		goto out;
	}
	result = 0;
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(value);
	/* Closed before the workers fork: an LMDB environment must not be
	 * used across fork(); each worker opens its own. */
	mdb_env_close(env);
	return result;
}

#endif /* SHMC_BENCH_HAVE_LMDB */

/* ---------------------------------------------------------------- peers */

void peers_stop(struct peers *ps)
{
	if (ps == NULL)
		return;
	bench_server_stop("", ps->memcached.program, &ps->memcached.pid);
	bench_server_stop("", ps->redis.program, &ps->redis.pid);
	if (ps->dir[0] != '\0')
		bench_server_dir_remove(ps->dir);
	free(ps);
}

int peers_start(const struct peer_data *d, struct peers **out)
{
	if (peers_check() != 0)
		return -1;
	struct peers *ps = calloc(1, sizeof *ps);
	if (ps == NULL) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		return -1;
	}
	ps->memcached_threads = d->max_procs;
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(ps->dir, sizeof ps->dir, "%s/shmcache-bench.XXXXXX",
			 tmp && *tmp ? tmp : "/tmp");
	if (n < 0 || (size_t)n >= sizeof ps->dir || mkdtemp(ps->dir) == NULL) {
		fprintf(stderr, "shmcache-bench: private directory %s: %s\n", ps->dir,
			n < 0 || (size_t)n >= sizeof ps->dir ? "path too long" : strerror(errno));
		ps->dir[0] = '\0';
		peers_stop(ps);
		return -1;
	}
	int rc = 0;
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
	rc = memcached_start(ps, d);
#endif
	if (rc == 0)
		rc = redis_start(ps, d);
#ifdef SHMC_BENCH_HAVE_LMDB
	if (rc == 0)
		rc = lmdb_create(ps, d);
#endif
	if (rc != 0) {
		peers_stop(ps);
		return -1;
	}
	*out = ps;
	return 0;
}

void peers_describe(const struct peers *ps, FILE *out)
{
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
	fprintf(out, "  memcached %s: libmemcached %s, ASCII protocol, unix socket, -t %u (server "
		     "threads)\n",
		ps->memcached.version[0] ? ps->memcached.version : "(version unknown)",
		LIBMEMCACHED_VERSION_STRING, ps->memcached_threads);
#endif
	fprintf(out, "  redis %s: hiredis %d.%d.%d, RESP2, unix socket; redis-pipe32: %u GETs "
		     "per round trip\n",
		ps->redis.version[0] ? ps->redis.version : "(version unknown)", HIREDIS_MAJOR,
		HIREDIS_MINOR, HIREDIS_PATCH, PEER_PIPE_DEPTH);
#ifdef SHMC_BENCH_HAVE_LMDB
	fprintf(out, "  lmdb %d.%d.%d: in each worker, a read-only transaction renewed per GET, "
		     "mdb_get, copy out\n",
		MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH);
#endif
}

/* ---------------------------------------------------------- connections */

int peer_connect(const struct peers *ps, enum peer p, struct peer_conn **out)
{
	struct peer_conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		fprintf(stderr, "shmcache-bench: out of memory\n");
		return -1;
	}
	c->kind = p;
	int rc = -1;
	switch (p) {
	case PEER_MEMCACHED:
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
		c->memc = memcached_connect(ps->memcached.socket);
		rc = c->memc ? 0 : -1;
#endif
		break;
	case PEER_REDIS:
	case PEER_REDIS_PIPE:
		c->redis = redis_connect(ps->redis.socket);
		rc = c->redis ? 0 : -1;
		break;
	case PEER_LMDB:
#ifdef SHMC_BENCH_HAVE_LMDB
		if (lmdb_env_open(ps, MDB_RDONLY, &c->env) != 0)
			break;
		rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->txn);
		if (rc == 0)
			rc = mdb_dbi_open(c->txn, NULL, 0, &c->dbi);
		if (rc != 0) {
			lmdb_error("read transaction", rc);
			rc = -1;
			break;
		}
		mdb_txn_reset(c->txn);
#endif
		break;
	case PEER_COUNT: break;
	}
	if (rc != 0) {
		peer_disconnect(c);
		return -1;
	}
	*out = c;
	return 0;
}

void peer_disconnect(struct peer_conn *c)
{
	if (c == NULL)
		return;
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
	if (c->memc)
		memcached_free(c->memc);
#endif
	redisFree(c->redis);
#ifdef SHMC_BENCH_HAVE_LMDB
	if (c->txn)
		mdb_txn_abort(c->txn);
	if (c->env)
		mdb_env_close(c->env);
#endif
	free(c);
}

/* The first failure of a connection is printed; the rest only counted. */
static __attribute__((cold, format(printf, 2, 3))) int peer_fail(struct peer_conn *c,
								  const char *fmt, ...)
{
	if (!c->failed) {
		c->failed = true;
		va_list ap;
		va_start(ap, fmt);
		fprintf(stderr, "shmcache-bench: %s (pid %d): ", peer_name(c->kind), (int)getpid());
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	return BENCH_EPEER;
}

static inline void value_copy(unsigned char *dst, size_t cap, const void *src, size_t len,
			      size_t *vlen)
{
	memcpy(dst, src, len < cap ? len : cap);
	*vlen = len;
}

static int redis_get(struct peer_conn *c, unsigned n, const char *const *keys, size_t klen,
		     unsigned char *vals, size_t cap, size_t *vlens)
{
	redisContext *rc = c->redis;
	for (unsigned i = 0; i < n; i++) {
		const char *argv[2] = { "GET", keys[i] };
		size_t lens[2] = { 3, klen };
		if (redisAppendCommandArgv(rc, 2, argv, lens) != REDIS_OK)
			return peer_fail(c, "%s", rc->errstr);
	}
	int result = 0;
	for (unsigned i = 0; i < n; i++) {
		void *reply = NULL;
		if (redisGetReply(rc, &reply) != REDIS_OK)
			return peer_fail(c, "%s", rc->errstr);
		redisReply *r = reply;
		if (r->type == REDIS_REPLY_STRING)
			value_copy(vals + (size_t)i * cap, cap, r->str, (size_t)r->len, &vlens[i]);
		else if (r->type == REDIS_REPLY_NIL)
			vlens[i] = PEER_MISS;
		else
			result = peer_fail(c, "GET answered %s",
					   r->type == REDIS_REPLY_ERROR ? r->str : "no string");
		freeReplyObject(r);
	}
	return result;
}

int peer_get(struct peer_conn *c, unsigned n, const char *const *keys, size_t klen,
	     unsigned char *vals, size_t cap, size_t *vlens)
{
	switch (c->kind) {
	case PEER_MEMCACHED: {
#ifdef SHMC_BENCH_HAVE_LIBMEMCACHED
		for (unsigned i = 0; i < n; i++) {
			size_t len = 0;
			uint32_t flags = 0;
			memcached_return_t rc;
			char *v = memcached_get(c->memc, keys[i], klen, &len, &flags, &rc);
			if (v != NULL) {
				value_copy(vals + (size_t)i * cap, cap, v, len, &vlens[i]);
				free(v);
			} else if (rc == MEMCACHED_NOTFOUND) {
				vlens[i] = PEER_MISS;
			} else {
				return peer_fail(c, "%s", memcached_last_error_message(c->memc));
			}
		}
		return 0;
#else
		break;
#endif
	}
	case PEER_REDIS:
	case PEER_REDIS_PIPE: return redis_get(c, n, keys, klen, vals, cap, vlens);
	case PEER_LMDB: {
#ifdef SHMC_BENCH_HAVE_LMDB
		for (unsigned i = 0; i < n; i++) {
			int rc = mdb_txn_renew(c->txn);
			if (rc != 0)
				return peer_fail(c, "mdb_txn_renew: %s", mdb_strerror(rc));
			MDB_val k = { klen, (void *)keys[i] }, v;
			rc = mdb_get(c->txn, c->dbi, &k, &v);
			if (rc == 0)
				value_copy(vals + (size_t)i * cap, cap, v.mv_data, v.mv_size,
					   &vlens[i]);
			mdb_txn_reset(c->txn);
			if (rc == MDB_NOTFOUND)
				vlens[i] = PEER_MISS;
			else if (rc != 0)
				return peer_fail(c, "mdb_get: %s", mdb_strerror(rc));
		}
		return 0;
#else
		break;
#endif
	}
	case PEER_COUNT: break;
	}
	return peer_fail(c, "not built in");
}
