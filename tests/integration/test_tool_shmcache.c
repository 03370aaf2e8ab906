/*
 * test_tool_shmcache.c - the admin tool, run as a user runs it: the built
 * `shmcache` binary is executed with arguments, its stdin fed and its exit
 * status, stdout and stderr captured. The segments it works on are prepared
 * and checked through the library.
 *
 * The binary is looked for next to this test's executable (both are built at
 * the build directory's root); SHMCACHE_TOOL overrides the path.
 *
 * Dump files are parsed here by an independent reader written from
 * docs/dump-format.md, so a tool and a document that drift apart fail.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "segment.h" /* SHMC__MAGIC, to fake a segment of another build */
#include "testutil.h"
#include "tu_json.h"
#include "tu_run.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define SEGMENT_BYTES (8u << 20)
#define CHUNK_BYTES (256u << 10)
#define LONG_TTL_MS 600000u
#define CHILD_WATCHDOG_S 60u

/* ----------------------------------------------------------- fixture */

struct fixture {
	char name[TU_NAME_MAX];  /* the test's segment */
	char other[TU_NAME_MAX]; /* a second one, for tests that copy between two */
	char dir[64];            /* private directory for dump files */
	shmc_cache *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	tu_segname_n(f->other, sizeof f->other, (const char *)*state, 2);
	(void)shmc_unlink(f->name);
	(void)shmc_unlink(f->other);
	snprintf(f->dir, sizeof f->dir, "/tmp/shmc-tool-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->dir);

	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	(void)shmc_unlink(f->other);
	if (d != NULL) {
		struct dirent *e;
		char path[PATH_MAX];

		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

static void file_path(const struct fixture *f, const char *file, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", f->dir, file);
}

/* ------------------------------------------------------- running the tool */

struct tool_run {
	int status; /* exit code; -1 if killed by a signal */
	unsigned char *out;
	size_t out_len;
	char *err; /* NUL-terminated */
	size_t err_len;
};

static const char *tool_path(void)
{
	return tu_sibling_program("SHMCACHE_TOOL", "shmcache");
}

/* Run the tool with args (NULL-terminated) and in as its stdin (NULL:
 * /dev/null). */
static void tool_runv(struct tool_run *r, const void *in, size_t in_len, const char *const *args)
{
	const struct tu_spawn_opts opts = {
		.in = in,
		.in_len = in_len,
		.watchdog_s = CHILD_WATCHDOG_S,
	};
	struct tu_run run;

	assert_int_equal(tu_run(&run, tool_path(), "shmcache", args, &opts), 0);
	r->status = run.status;
	r->out = (unsigned char *)run.out;
	r->out_len = run.out_len;
	r->err = run.err;
	r->err_len = run.err_len;
	if (r->status == 127)
		fail_msg("could not run the tool at %s: %s", tool_path(), r->err);
}

#define tool_run(r, in, in_len, ...)                                              \
	do {                                                                      \
		const char *const args_[] = {__VA_ARGS__, NULL};                  \
		tool_runv((r), (in), (in_len), args_);                            \
	} while (0)

static void tool_run_free(struct tool_run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}

/* The tool exits with status and says something containing needle on
 * stderr (needle NULL: anything). */
static void expect_status(const struct tool_run *r, int status, const char *needle)
{
	if (r->status != status)
		fail_msg("exit status %d, expected %d; stderr: %s", r->status, status, r->err);
	if (needle != NULL && strstr(r->err, needle) == NULL)
		fail_msg("stderr lacks \"%s\": %s", needle, r->err);
}

/* ------------------------------------------------------------ helpers */

static void open_fresh(struct fixture *f)
{
	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, 0, &f->c), 0);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	unsigned char *buf;

	assert_true(fd >= 0);
	buf = (unsigned char *)tu_slurp_fd(fd, len);
	close(fd);
	assert_non_null(buf);
	return buf;
}

/* Attach without taking the background roles (the tool's runs must not
 * find this process holding them). */
static shmc_cache *attach(const char *name, int flags)
{
	shmc_opts *o;
	shmc_cache *c = NULL;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_sweeper(o, 0), 0);
	assert_int_equal(shmc_open(name, o, flags, &c), 0);
	shmc_opts_destroy(o);
	return c;
}

static uint64_t stat_items(const char *name)
{
	shmc_cache *c = attach(name, 0);
	struct shmc_stats st;

	assert_int_equal(shmc_stats(c, &st), 0);
	shmc_close(c);
	return st.items;
}

/* -------------------------------------------- dump files, per the doc */

struct dump_record {
	const unsigned char *key;
	uint32_t klen;
	const unsigned char *value;
	uint32_t vlen;
	uint32_t ttl_ms;
};

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Parse a dump held in buf as docs/dump-format.md specifies. Fails the
 * test on any deviation; returns the records (pointing into buf). */
static struct dump_record *parse_dump(const unsigned char *buf, size_t len, size_t *count)
{
	size_t cap = 16, n = 0, at = 16;
	struct dump_record *recs = malloc(cap * sizeof *recs);

	assert_non_null(recs);
	assert_true(len >= 16 + 20);
	assert_memory_equal(buf, "SHMCDUMP", 8);
	assert_int_equal(le32(buf + 8), 1);
	assert_int_equal(le32(buf + 12), 0);
	for (;;) {
		uint32_t klen, vlen;

		assert_true(at + 4 <= len);
		klen = le32(buf + at);
		if (klen == 0)
			break;
		assert_true(at + 12 <= len);
		vlen = le32(buf + at + 4);
		assert_true(at + 12 + (size_t)klen + vlen <= len);
		if (n == cap) {
			cap *= 2;
			recs = realloc(recs, cap * sizeof *recs);
			assert_non_null(recs);
		}
		recs[n].klen = klen;
		recs[n].vlen = vlen;
		recs[n].ttl_ms = le32(buf + at + 8);
		recs[n].key = buf + at + 12;
		recs[n].value = buf + at + 12 + klen;
		n++;
		at += 12 + (size_t)klen + vlen;
	}
	/* end marker: zero, count, XXH64 of everything before the checksum */
	assert_int_equal(len, at + 20);
	assert_int_equal(le64(buf + at + 4), n);
	assert_int_equal(le64(buf + at + 12), XXH64(buf, at + 12, 0));
	*count = n;
	return recs;
}

static const struct dump_record *find_record(const struct dump_record *recs, size_t n,
                                             const void *key, size_t klen)
{
	for (size_t i = 0; i < n; i++)
		if (recs[i].klen == klen && memcmp(recs[i].key, key, klen) == 0)
			return &recs[i];
	return NULL;
}

/* --------------------------------------------------- a binary data set */

#define N_ITEMS 12

struct item {
	unsigned char key[300];
	size_t klen;
	unsigned char *value;
	size_t vlen;
	uint32_t ttl_ms;
};

static void fill_random(unsigned char *p, size_t n, uint64_t *rng)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)tu_rand_next(rng);
}

/* Keys and values with NUL bytes, high bytes, an empty value, a long key
 * and a value of 40 KB; every other item has a TTL. */
static struct item *make_items(void)
{
	struct item *it = calloc(N_ITEMS, sizeof *it);
	uint64_t rng = 42;

	assert_non_null(it);
	for (unsigned i = 0; i < N_ITEMS; i++) {
		size_t vlen;

		switch (i) {
		case 0:
			memcpy(it[i].key, "plain", 5);
			it[i].klen = 5;
			break;
		case 1:
			memcpy(it[i].key, "\0lead", 5);
			it[i].klen = 5;
			break;
		case 2:
			memcpy(it[i].key, "mid\0dle\0", 8);
			it[i].klen = 8;
			break;
		case 3:
			it[i].klen = 200; /* random bytes, NULs likely */
			fill_random(it[i].key, it[i].klen, &rng);
			it[i].key[0] = 0;
			break;
		default:
			it[i].klen = (size_t)snprintf((char *)it[i].key, sizeof it[i].key,
			                              "k\xff%u", i);
			it[i].key[it[i].klen++] = 0; /* trailing NUL */
			break;
		}
		vlen = i == 0 ? 0 : i == 1 ? 1 : i == 2 ? 40000 : 10 + 97 * i;
		it[i].value = malloc(vlen + 1);
		assert_non_null(it[i].value);
		fill_random(it[i].value, vlen, &rng);
		if (i == 1)
			it[i].value[0] = 0; /* a value that is one NUL byte */
		it[i].vlen = vlen;
		it[i].ttl_ms = i % 2 ? LONG_TTL_MS : 0;
	}
	return it;
}

static void free_items(struct item *it)
{
	for (unsigned i = 0; i < N_ITEMS; i++)
		free(it[i].value);
	free(it);
}

static void store_items(shmc_cache *c, const struct item *it)
{
	for (unsigned i = 0; i < N_ITEMS; i++)
		assert_int_equal(shmc_set(c, it[i].key, it[i].klen, it[i].value, it[i].vlen,
		                          it[i].ttl_ms, 0),
		                 0);
}

static void expect_items(const char *name, const struct item *it)
{
	shmc_cache *c;
	unsigned char *buf = malloc(65536);

	assert_non_null(buf);
	c = attach(name, SHMC_RDONLY);
	for (unsigned i = 0; i < N_ITEMS; i++) {
		size_t vlen = 0;

		assert_int_equal(shmc_get(c, it[i].key, it[i].klen, buf, 65536, &vlen), 0);
		assert_int_equal(vlen, it[i].vlen);
		assert_memory_equal(buf, it[i].value, vlen);
	}
	shmc_close(c);
	free(buf);
}

/* Every item is in the dump with its value, and a TTL only if it has one. */
static void expect_dump_holds(const struct dump_record *recs, size_t n, const struct item *it)
{
	assert_int_equal(n, N_ITEMS);
	for (unsigned i = 0; i < N_ITEMS; i++) {
		const struct dump_record *r = find_record(recs, n, it[i].key, it[i].klen);

		assert_non_null(r);
		assert_int_equal(r->vlen, it[i].vlen);
		assert_memory_equal(r->value, it[i].value, it[i].vlen);
		if (it[i].ttl_ms == 0) {
			assert_int_equal(r->ttl_ms, 0);
		} else {
			/* what is left: a little less than given, plus at most
			 * the coarse clock's slack */
			assert_true(r->ttl_ms > it[i].ttl_ms - 60000);
			assert_true(r->ttl_ms <= it[i].ttl_ms + 100);
		}
	}
}

/* ------------------------------------------------------- help, usage */

static const char *const all_commands[] = {"create", "info",    "get",   "set",  "del",
                                           "dump",   "load",    "verify", "destroy", "serve",
                                           "help"};
#define N_COMMANDS (sizeof all_commands / sizeof all_commands[0])

static void test_tool_help_lists_every_command(void **state)
{
	struct tool_run r;

	(void)state;
	tool_run(&r, NULL, 0, "help");
	expect_status(&r, 0, NULL);
	for (size_t i = 0; i < N_COMMANDS; i++) {
		char line[32];

		snprintf(line, sizeof line, "\n  %s ", all_commands[i]);
		if (strstr((char *)r.out, line) == NULL)
			fail_msg("help does not list %s: %s", all_commands[i], r.out);
	}
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "--help");
	expect_status(&r, 0, NULL);
	assert_non_null(strstr((char *)r.out, "commands:"));
	tool_run_free(&r);
}

static void test_tool_command_help_prints_usage_and_succeeds(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_COMMANDS; i++) {
		struct tool_run r;
		char synopsis[64];

		snprintf(synopsis, sizeof synopsis, "usage: shmcache %s", all_commands[i]);
		tool_run(&r, NULL, 0, all_commands[i], "--help");
		expect_status(&r, 0, NULL);
		if (strncmp((char *)r.out, synopsis, strlen(synopsis)) != 0)
			fail_msg("%s --help printed: %s", all_commands[i], r.out);
		tool_run_free(&r);
		/* -h too, and after the operands */
		tool_run(&r, NULL, 0, all_commands[i], "some-name", "-h");
		expect_status(&r, 0, NULL);
		assert_int_equal(strncmp((char *)r.out, synopsis, strlen(synopsis)), 0);
		tool_run_free(&r);
	}
}

static void test_tool_bad_command_lines_exit_2(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;

	tool_run(&r, NULL, 0, "frobnicate");
	expect_status(&r, 2, "unknown command");
	tool_run_free(&r);

	/* no command at all */
	{
		const char *const none[] = {NULL};
		tool_runv(&r, NULL, 0, none);
		expect_status(&r, 2, "usage");
		tool_run_free(&r);
	}

	tool_run(&r, NULL, 0, "create");
	expect_status(&r, 2, "missing operand");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--size", "12q");
	expect_status(&r, 2, "--size");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--chunk-size", "1000");
	expect_status(&r, 2, "power of two");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--mode", "0800");
	expect_status(&r, 2, "--mode");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--ttl-jitter", "51");
	expect_status(&r, 2, "--ttl-jitter");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--size");
	expect_status(&r, 2, "needs a value");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "info", f->name, "--bogus");
	expect_status(&r, 2, "unknown option");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "get", f->name);
	expect_status(&r, 2, "missing operand");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "get", f->name, "a", "b");
	expect_status(&r, 2, "unexpected operand");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "get", f->name, "");
	expect_status(&r, 2, "empty");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "info", "no/slashes");
	expect_status(&r, 2, "bad segment name");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "set", f->name, "k", "v", "--ttl", "-5");
	expect_status(&r, 2, "--ttl");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "set", f->name, "k", "v", "--ttl", "4294967296");
	expect_status(&r, 2, "--ttl");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "load", f->name, "--ttl", "soon");
	expect_status(&r, 2, "--ttl");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "dump", f->name, "a", "b");
	expect_status(&r, 2, "unexpected operand");
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "help", "frobnicate");
	expect_status(&r, 2, "unknown command");
	tool_run_free(&r);

	/* none of that created anything */
	assert_int_equal(shmc_open(f->name, NULL, 0, &f->c), SHMC_ENOENT);
}

/* ------------------------------------------------------ create, info */

static void test_tool_create_applies_every_option(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	struct tu_json *j;
	char err[256];
	uint64_t v;
	struct stat st;
	char path[TU_NAME_MAX + 32];

	tool_run(&r, NULL, 0, "create", f->name, "--size", "4m", "--mode", "0640",
	         "--chunk-size", "128k", "--item-size", "200", "--max-key", "1000",
	         "--default-ttl", "90000", "--ttl-jitter", "10", "--max-procs", "32",
	         "--max-threads", "64");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);

	tu_shm_path(path, sizeof path, f->name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(st.st_size, 4u << 20);

	tool_run(&r, NULL, 0, "info", f->name, "--json");
	expect_status(&r, 0, NULL);
	j = tu_json_parse((char *)r.out, r.out_len, err, sizeof err);
	if (j == NULL)
		fail_msg("info --json: %s\n%s", err, r.out);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.segment_bytes"), &v));
	assert_int_equal(v, 4u << 20);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.chunk_bytes"), &v));
	assert_int_equal(v, 128u << 10);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.max_key_bytes"), &v));
	assert_int_equal(v, 1000);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.default_ttl_ms"), &v));
	assert_int_equal(v, 90000);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.ttl_jitter_pct"), &v));
	assert_int_equal(v, 10);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.max_procs"), &v));
	assert_int_equal(v, 32);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.max_threads"), &v));
	assert_int_equal(v, 64);
	assert_string_equal(tu_json_path(j, "parameters.mode")->string, "0640");
	tu_json_free(j);
	tool_run_free(&r);
}

static void test_tool_create_existing_segment_fails(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	size_t vlen;
	char buf[8];

	open_fresh(f);
	assert_int_equal(shmc_set(f->c, "keep", 4, "me", 2, 0, 0), 0);
	tool_run(&r, NULL, 0, "create", f->name, "--size", "2m");
	expect_status(&r, 1, "already exists");
	assert_non_null(strstr(r.err, f->name));
	tool_run_free(&r);
	/* untouched */
	assert_int_equal(shmc_get(f->c, "keep", 4, buf, sizeof buf, &vlen), 0);
}

/* Every documented field of info --json, by name and type. */
static const char *const info_number_fields[] = {
	"format",
	"parameters.segment_bytes", "parameters.data_bytes", "parameters.chunk_bytes",
	"parameters.chunks", "parameters.index_buckets", "parameters.index_slots",
	"parameters.max_key_bytes", "parameters.max_value_bytes", "parameters.default_ttl_ms",
	"parameters.ttl_jitter_pct", "parameters.max_procs", "parameters.max_threads",
	"parameters.owner_uid", "parameters.creator_uid", "parameters.created_unix_ms",
	"memory.chunks_total", "memory.chunks_free", "memory.chunks_open", "memory.chunks_sealed",
	"memory.chunks_retired", "memory.bytes_live", "memory.bytes_free", "memory.bytes_dead",
	"memory.bytes_slack", "memory.items",
	"memory.avg_item_bytes", "memory.index_load",
	"counters.gets", "counters.hits", "counters.misses", "counters.sets", "counters.deletes",
	"counters.incrs", "counters.expirations", "counters.evictions",
	"counters.evictions_probation", "counters.evictions_clock", "counters.evictions_direct",
	"counters.enospc", "counters.bytes_written",
	"attachment.procs_attached", "attachment.threads_attached",
	"sweeper.pid", "sweeper.handovers", "sweeper.passes", "sweeper.promotions",
	"sweeper.chunks_probation",
};

static void test_tool_info_json_has_every_documented_field(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	struct tu_json *j;
	char err[256], buf[4];
	size_t vlen;
	uint64_t items, live, free_bytes, dead, slack, data, slots;
	const struct tu_json *name, *load, *avg;

	open_fresh(f);
	for (int i = 0; i < 100; i++) {
		char key[16];
		int n = snprintf(key, sizeof key, "key%d", i);
		assert_int_equal(shmc_set(f->c, key, (size_t)n, "0123456789", 10, 0, 0), 0);
	}
	assert_int_equal(shmc_get(f->c, "nope", 4, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);

	tool_run(&r, NULL, 0, "info", "--json", f->name);
	expect_status(&r, 0, NULL);
	j = tu_json_parse((char *)r.out, r.out_len, err, sizeof err);
	if (j == NULL)
		fail_msg("info --json: %s\n%s", err, r.out);
	for (size_t i = 0; i < sizeof info_number_fields / sizeof *info_number_fields; i++) {
		const struct tu_json *v = tu_json_path(j, info_number_fields[i]);
		if (v == NULL || v->type != TU_JSON_NUMBER)
			fail_msg("info --json: no number %s", info_number_fields[i]);
	}
	name = tu_json_member(j, "name");
	assert_non_null(name);
	assert_string_equal(name->string, f->name);
	assert_int_equal(tu_json_path(j, "parameters.mode")->type, TU_JSON_STRING);

	assert_true(tu_json_u64(tu_json_path(j, "memory.items"), &items));
	assert_int_equal(items, 100);
	assert_true(tu_json_u64(tu_json_path(j, "counters.misses"), &items));
	assert_true(items >= 1);
	assert_true(tu_json_u64(tu_json_path(j, "memory.bytes_live"), &live));
	assert_int_equal(live, 100 * (12 + 5 + 10) - 10 * 1); /* key0..key9 are a byte shorter */
	assert_true(tu_json_u64(tu_json_path(j, "memory.bytes_free"), &free_bytes));
	assert_true(tu_json_u64(tu_json_path(j, "memory.bytes_dead"), &dead));
	assert_true(tu_json_u64(tu_json_path(j, "memory.bytes_slack"), &slack));
	assert_true(tu_json_u64(tu_json_path(j, "parameters.data_bytes"), &data));
	assert_int_equal(dead, 0); /* nothing was overwritten */
	assert_int_equal(slack, data - free_bytes - live - dead);
	assert_true(tu_json_u64(tu_json_path(j, "parameters.index_slots"), &slots));
	load = tu_json_path(j, "memory.index_load");
	assert_true(load->number > 0.99 * 100.0 / (double)slots &&
	            load->number < 1.01 * 100.0 / (double)slots);
	avg = tu_json_path(j, "memory.avg_item_bytes");
	assert_true(avg->number > 26.8 && avg->number < 27.0);
	tu_json_free(j);
	tool_run_free(&r);
}

static void test_tool_info_text_shows_every_section(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	static const char *const sections[] = {"segment ",   "\nmemory\n",  "\ncounters\n",
	                                       "\nattached\n", "\nsweeper\n", "dead bytes",
	                                       "slack bytes", "index load"};

	open_fresh(f);
	tool_run(&r, NULL, 0, "info", f->name);
	expect_status(&r, 0, NULL);
	for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
		if (strstr((char *)r.out, sections[i]) == NULL)
			fail_msg("info lacks \"%s\":\n%s", sections[i], r.out);
	tool_run_free(&r);
}

/* --------------------------------------------------- get, set, del */

static void test_tool_set_get_del_round_trip(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	char buf[32];
	size_t vlen;

	open_fresh(f);
	tool_run(&r, NULL, 0, "set", f->name, "greeting", "hello world");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(shmc_get(f->c, "greeting", 8, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 11);
	assert_memory_equal(buf, "hello world", 11);

	tool_run(&r, NULL, 0, "get", f->name, "greeting");
	expect_status(&r, 0, NULL);
	assert_int_equal(r.out_len, 11); /* raw: no newline added */
	assert_memory_equal(r.out, "hello world", 11);
	tool_run_free(&r);

	/* a key and a value that look like options, after "--" */
	tool_run(&r, NULL, 0, "set", f->name, "--", "-k", "-v");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(shmc_get(f->c, "-k", 2, buf, sizeof buf, &vlen), 0);
	assert_memory_equal(buf, "-v", 2);

	tool_run(&r, NULL, 0, "del", f->name, "greeting");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(shmc_get(f->c, "greeting", 8, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
}

static void test_tool_get_absent_key_exits_1_not_found(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;

	open_fresh(f);
	tool_run(&r, NULL, 0, "get", f->name, "absent");
	expect_status(&r, 1, "not found");
	assert_int_equal(r.out_len, 0);
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "del", f->name, "absent");
	expect_status(&r, 1, "not found");
	tool_run_free(&r);
}

static void test_tool_set_from_stdin_is_binary_safe(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	unsigned char value[70000], buf[70000];
	uint64_t rng = 7;
	size_t vlen;

	open_fresh(f);
	fill_random(value, sizeof value, &rng);
	value[0] = 0;
	value[sizeof value - 1] = 0;
	tool_run(&r, value, sizeof value, "set", f->name, "blob", "-");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(shmc_get(f->c, "blob", 4, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, sizeof value);
	assert_memory_equal(buf, value, sizeof value);

	tool_run(&r, NULL, 0, "get", f->name, "blob");
	expect_status(&r, 0, NULL);
	assert_int_equal(r.out_len, sizeof value);
	assert_memory_equal(r.out, value, sizeof value);
	tool_run_free(&r);

	/* an empty stdin is an empty value */
	tool_run(&r, "", 0, "set", f->name, "empty", "-");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(shmc_get(f->c, "empty", 5, buf, sizeof buf, &vlen), 0);
	assert_int_equal(vlen, 0);
}

static void test_tool_set_too_big_value_fails(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	size_t n = CHUNK_BYTES + 1;
	unsigned char *value = calloc(1, n);

	assert_non_null(value);
	open_fresh(f);
	tool_run(&r, value, n, "set", f->name, "huge", "-");
	expect_status(&r, 1, f->name);
	tool_run_free(&r);
	free(value);
}

static void test_tool_set_ttl_expires(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;

	open_fresh(f);
	tool_run(&r, NULL, 0, "set", f->name, "brief", "x", "--ttl", "50");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	tu_sleep_ms(200);
	tool_run(&r, NULL, 0, "get", f->name, "brief");
	expect_status(&r, 1, "not found");
	tool_run_free(&r);
}

/* ------------------------------------------- segments that are not there */

static void test_tool_missing_segment_fails_with_its_name(void **state)
{
	struct fixture *f = *state;
	static const char *const cmds[] = {"info", "get", "set", "del", "dump",
	                                   "load", "verify", "destroy"};
	char dump[PATH_MAX];

	file_path(f, "never-written", dump, sizeof dump);
	for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
		struct tool_run r;

		if (!strcmp(cmds[i], "get") || !strcmp(cmds[i], "del"))
			tool_run(&r, NULL, 0, cmds[i], f->name, "k");
		else if (!strcmp(cmds[i], "set"))
			tool_run(&r, NULL, 0, cmds[i], f->name, "k", "v");
		else if (!strcmp(cmds[i], "dump") || !strcmp(cmds[i], "load"))
			tool_run(&r, NULL, 0, cmds[i], f->name, dump);
		else
			tool_run(&r, NULL, 0, cmds[i], f->name);
		if (r.status != 1 || strstr(r.err, f->name) == NULL ||
		    strstr(r.err, "no segment") == NULL)
			fail_msg("%s on a missing segment: status %d, stderr: %s", cmds[i],
			         r.status, r.err);
		tool_run_free(&r);
	}
	/* the failed dump left no file behind */
	assert_int_equal(access(dump, F_OK), -1);
}

static void test_tool_segment_of_another_build_fails_clearly(void **state)
{
	struct fixture *f = *state;
	static const char *const cmds[] = {"info", "get", "dump", "verify"};
	char path[TU_NAME_MAX + 32];
	unsigned char header[8192] = {0};
	uint64_t magic = SHMC__MAGIC, foreign_sig = 0x0123456789abcdefull;

	/* A segment that carries our magic but another layout signature:
	 * what a different build of the library leaves behind. */
	memcpy(header, &magic, 8);
	memcpy(header + 8, &foreign_sig, 8);
	header[16] = 2; /* READY */
	tu_shm_path(path, sizeof path, f->name);
	write_file(path, header, sizeof header);

	for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
		struct tool_run r;

		if (!strcmp(cmds[i], "get"))
			tool_run(&r, NULL, 0, cmds[i], f->name, "k");
		else if (!strcmp(cmds[i], "dump"))
			tool_run(&r, NULL, 0, cmds[i], f->name, "/dev/null");
		else
			tool_run(&r, NULL, 0, cmds[i], f->name);
		if (r.status != 1 || strstr(r.err, "incompatible") == NULL ||
		    strstr(r.err, f->name) == NULL)
			fail_msg("%s on a foreign segment: status %d, stderr: %s", cmds[i],
			         r.status, r.err);
		tool_run_free(&r);
	}
}

/* ----------------------------------------------------------- dump, load */

static void test_tool_dump_load_round_trip_keeps_binary_items_and_ttls(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	char dump[PATH_MAX], again[PATH_MAX];
	struct tool_run r;
	unsigned char *buf;
	size_t len, n;
	struct dump_record *recs;

	open_fresh(f);
	store_items(f->c, items);
	/* expired items are not dumped */
	assert_int_equal(shmc_set(f->c, "short-lived", 11, "gone", 4, 1, 0), 0);
	tu_sleep_ms(30);
	shmc_close(f->c);
	f->c = NULL;

	file_path(f, "cache.dump", dump, sizeof dump);
	tool_run(&r, NULL, 0, "dump", f->name, dump);
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	buf = read_file(dump, &len);
	recs = parse_dump(buf, len, &n);
	expect_dump_holds(recs, n, items);
	assert_null(find_record(recs, n, "short-lived", 11));
	free(recs);
	free(buf);

	tool_run(&r, NULL, 0, "destroy", f->name);
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "create", f->name, "--size", "8m", "--chunk-size", "256k");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	tool_run(&r, NULL, 0, "load", f->name, dump);
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	expect_items(f->name, items);
	assert_int_equal(stat_items(f->name), N_ITEMS);

	/* the TTLs came back: a second dump shows them again */
	file_path(f, "again.dump", again, sizeof again);
	tool_run(&r, NULL, 0, "dump", "--quiet", f->name, again);
	expect_status(&r, 0, NULL);
	assert_int_equal(r.err_len, 0);
	tool_run_free(&r);
	buf = read_file(again, &len);
	recs = parse_dump(buf, len, &n);
	expect_dump_holds(recs, n, items);
	free(recs);
	free(buf);
	free_items(items);
}

static void test_tool_dump_to_stdout_loads_from_stdin(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	struct tool_run r, out;
	shmc_cache *other;
	size_t n;
	struct dump_record *recs;

	open_fresh(f);
	store_items(f->c, items);
	assert_int_equal(tu_open_fresh(f->other, SEGMENT_BYTES, CHUNK_BYTES, 0, &other), 0);
	shmc_close(other);

	tool_run(&out, NULL, 0, "dump", f->name, "-");
	expect_status(&out, 0, NULL);
	recs = parse_dump(out.out, out.out_len, &n);
	expect_dump_holds(recs, n, items);
	free(recs);

	tool_run(&r, out.out, out.out_len, "load", f->other);
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	expect_items(f->other, items);
	tool_run_free(&out);
	free_items(items);
}

static void test_tool_load_ttl_option_replaces_dumped_ttls(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	struct tool_run out, r;
	shmc_cache *other;

	open_fresh(f);
	store_items(f->c, items);
	assert_int_equal(tu_open_fresh(f->other, SEGMENT_BYTES, CHUNK_BYTES, 0, &other), 0);

	tool_run(&out, NULL, 0, "dump", f->name);
	expect_status(&out, 0, NULL);
	tool_run(&r, out.out, out.out_len, "load", f->other, "-", "--ttl", "50");
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	assert_int_equal(stat_items(f->other), N_ITEMS);
	tu_sleep_ms(200);
	for (unsigned i = 0; i < N_ITEMS; i++) {
		char buf[1];
		size_t vlen;
		assert_int_equal(shmc_get(other, items[i].key, items[i].klen, buf, 0, &vlen),
		                 SHMC_ENOTFOUND);
	}
	shmc_close(other);
	tool_run_free(&out);
	free_items(items);
}

/* A dump that is cut short or damaged is refused, and nothing of it is
 * stored. */
static void expect_load_refused(struct fixture *f, const unsigned char *data, size_t len,
                                const char *why, const char *what)
{
	char path[PATH_MAX];
	struct tool_run r;

	file_path(f, "bad.dump", path, sizeof path);
	write_file(path, data, len);
	tool_run(&r, NULL, 0, "load", f->other, path);
	if (r.status != 1 || strstr(r.err, why) == NULL || strstr(r.err, "nothing was stored") == NULL)
		fail_msg("load of %s: status %d, stderr: %s", what, r.status, r.err);
	tool_run_free(&r);
	/* through a pipe too, where the tool cannot reread its input */
	tool_run(&r, data, len, "load", f->other, "-");
	if (r.status != 1 || strstr(r.err, why) == NULL)
		fail_msg("load of %s from stdin: status %d, stderr: %s", what, r.status, r.err);
	tool_run_free(&r);
	assert_int_equal(stat_items(f->other), 0);
}

static void test_tool_load_truncated_dump_is_refused(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	struct tool_run out;
	shmc_cache *other;
	size_t n, at, cuts[6];
	struct dump_record *recs;

	open_fresh(f);
	store_items(f->c, items);
	assert_int_equal(tu_open_fresh(f->other, SEGMENT_BYTES, CHUNK_BYTES, 0, &other), 0);
	shmc_close(other);
	tool_run(&out, NULL, 0, "dump", f->name);
	expect_status(&out, 0, NULL);
	recs = parse_dump(out.out, out.out_len, &n);
	at = (size_t)(recs[1].key - out.out); /* the second record's key */
	free(recs);

	cuts[0] = 0;                 /* empty */
	cuts[1] = 10;                /* inside the header */
	cuts[2] = 16;                /* header only */
	cuts[3] = at + 1;            /* inside a record */
	cuts[4] = out.out_len - 20;  /* every record, no end marker */
	cuts[5] = out.out_len - 1;   /* inside the checksum */
	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
		char what[64];
		snprintf(what, sizeof what, "a dump cut at byte %zu", cuts[i]);
		expect_load_refused(f, out.out, cuts[i],
		                    i == 0 ? "empty" : i == 1 ? "not a shmcache dump" : "truncated",
		                    what);
	}
	tool_run_free(&out);
	free_items(items);
}

static void test_tool_load_corrupted_dump_is_refused(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	struct tool_run out;
	shmc_cache *other;
	unsigned char *copy;
	size_t n, value_at, len;
	struct dump_record *recs;

	open_fresh(f);
	store_items(f->c, items);
	assert_int_equal(tu_open_fresh(f->other, SEGMENT_BYTES, CHUNK_BYTES, 0, &other), 0);
	shmc_close(other);
	tool_run(&out, NULL, 0, "dump", f->name);
	expect_status(&out, 0, NULL);
	len = out.out_len;
	recs = parse_dump(out.out, len, &n);
	value_at = (size_t)(recs[n / 2].value - out.out);
	assert_true(recs[n / 2].vlen > 0);
	copy = malloc(len + 1);
	assert_non_null(copy);

	/* one flipped bit in a value: only the checksum can tell */
	memcpy(copy, out.out, len);
	copy[value_at] ^= 0x10;
	expect_load_refused(f, copy, len, "checksum", "a flipped value bit");

	/* a key length no key can have */
	memcpy(copy, out.out, len);
	memset(copy + (recs[n / 2].key - out.out) - 12, 0xff, 4);
	expect_load_refused(f, copy, len, "corrupted", "an impossible key length");

	/* a wrong record count in the end marker */
	memcpy(copy, out.out, len);
	copy[len - 16] ^= 1;
	expect_load_refused(f, copy, len, "corrupted", "a wrong count");

	/* another format */
	memcpy(copy, out.out, len);
	copy[0] = 'X';
	expect_load_refused(f, copy, len, "not a shmcache dump", "a bad magic");
	memcpy(copy, out.out, len);
	copy[8] = 2;
	expect_load_refused(f, copy, len, "version", "a future version");

	/* a byte after the end marker */
	memcpy(copy, out.out, len);
	copy[len] = 0;
	expect_load_refused(f, copy, len + 1, "after the end marker", "a trailing byte");

	free(copy);
	free(recs);
	tool_run_free(&out);
	free_items(items);
}

/* A writer rewrites a few keys nonstop with large values in the smallest
 * segment, so that chunks are compacted and reused every few microseconds,
 * while the dump copies items out of them: every value in the dump must
 * still be one the writer stored, whole. (Without the dump walk's re-checks
 * after the copy, this test finds a torn value in most runs.) */
struct churn {
	char name[TU_NAME_MAX];
	_Atomic unsigned started;
	_Atomic int stop;
	struct tu_hwm *hwm;
};

#define CHURN_KEYS 40u
#define CHURN_VALUE_MAX 30000u
#define CHURN_DUMPS 60

static int churn_writer(unsigned index, void *arg)
{
	struct churn *ch = arg;
	shmc_opts *o;
	shmc_cache *c;
	unsigned char value[TU_VALUE_MIN_BYTES + CHURN_VALUE_MAX];
	uint64_t rng = 1 + index, seq = 0;

	if (shmc_opts_create(&o) || shmc_opts_set_sweeper(o, 0) || shmc_open(ch->name, o, 0, &c)) {
		tu_child_log("open %s: %s", ch->name, shmc_errmsg(NULL));
		return 1;
	}
	shmc_opts_destroy(o);
	tu_barrier_wait(&ch->started, 2);
	while (!atomic_load(&ch->stop)) {
		char key[16];
		unsigned k = (unsigned)tu_rand_below(&rng, CHURN_KEYS);
		int klen = snprintf(key, sizeof key, "churn%u", k);
		size_t len = TU_VALUE_MIN_BYTES + (size_t)tu_rand_below(&rng, CHURN_VALUE_MAX);
		int rc;

		tu_hwm_publish(ch->hwm, index, ++seq);
		tu_value_build(value, sizeof value, key, (size_t)klen, index, seq, len);
		rc = shmc_set(c, key, (size_t)klen, value, len, 0, 0);
		if (rc && rc != SHMC_ENOSPC) {
			tu_child_log("set: %s", shmc_errname(rc));
			return 1;
		}
	}
	shmc_close(c);
	return 0;
}

static void test_tool_dump_during_writes_holds_only_intact_values(void **state)
{
	struct fixture *f = *state;
	struct churn *ch = tu_shared_alloc(sizeof *ch);
	pid_t pid;
	shmc_cache *c;

	assert_non_null(ch);
	snprintf(ch->name, sizeof ch->name, "%s", f->name);
	ch->hwm = tu_hwm_create(1);
	assert_non_null(ch->hwm);
	assert_int_equal(tu_open_fresh(f->name, SHMC_MIN_SIZE, 64u << 10, 0, &c), 0);
	shmc_close(c);
	assert_int_equal(tu_fork_start(1, churn_writer, ch, CHILD_WATCHDOG_S, &pid), 1);
	tu_barrier_wait(&ch->started, 2);

	for (int round = 0; round < CHURN_DUMPS; round++) {
		struct tool_run r;
		struct dump_record *recs;
		size_t n;

		tool_run(&r, NULL, 0, "dump", f->name);
		expect_status(&r, 0, NULL);
		recs = parse_dump(r.out, r.out_len, &n);
		assert_true(n > 0);
		for (size_t i = 0; i < n; i++) {
			enum tu_verdict v = tu_value_check(recs[i].value, recs[i].vlen, recs[i].key,
			                                   recs[i].klen, ch->hwm, NULL);
			if (v != TU_OK)
				fail_msg("round %d record %zu: %s", round, i, tu_verdict_name(v));
		}
		free(recs);
		tool_run_free(&r);
	}
	atomic_store(&ch->stop, 1);
	assert_int_equal(tu_wait_child(pid, "churn writer"), 0);
	tu_hwm_destroy(ch->hwm);
	tu_shared_free(ch, sizeof *ch);
}

/* ------------------------------------------------------ verify, destroy */

static void test_tool_verify_clean_segment_succeeds(void **state)
{
	struct fixture *f = *state;
	struct item *items = make_items();
	struct tool_run r;

	open_fresh(f);
	store_items(f->c, items);
	tool_run(&r, NULL, 0, "verify", f->name);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr((char *)r.out, "\nOK\n"));
	tool_run_free(&r);
	free_items(items);
}

static void test_tool_destroy_removes_segment(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	char path[TU_NAME_MAX + 32];

	open_fresh(f);
	shmc_close(f->c);
	f->c = NULL;
	tool_run(&r, NULL, 0, "destroy", f->name);
	expect_status(&r, 0, NULL);
	tool_run_free(&r);
	tu_shm_path(path, sizeof path, f->name);
	assert_int_equal(access(path, F_OK), -1);
	tool_run(&r, NULL, 0, "destroy", f->name);
	expect_status(&r, 1, "no segment");
	tool_run_free(&r);
}

/* The sweeper pid the segment reports, polled until it equals want or
 * timeout_ms passes. */
static uint64_t await_sweeper_pid(shmc_cache *c, uint64_t want, unsigned timeout_ms)
{
	struct shmc_stats st = {0};
	for (unsigned waited = 0; waited <= timeout_ms; waited += 10) {
		assert_int_equal(shmc_stats(c, &st), 0);
		if (st.sweeper_pid == want)
			break;
		tu_sleep_us(10000);
	}
	return st.sweeper_pid;
}

/* serve takes the sweeper role (the test's own handle runs no sweeper),
 * and SIGTERM makes it release the role and exit 0. */
static void test_tool_serve_holds_the_role_until_signalled(void **state)
{
	struct fixture *f = *state;
	open_fresh(f);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(tool_path(), "shmcache", "serve", "--quiet", f->name, (char *)NULL);
		_exit(127);
	}
	uint64_t holder = await_sweeper_pid(f->c, (uint64_t)pid, 5000);
	if (holder != (uint64_t)pid)
		kill(pid, SIGKILL);
	assert_int_equal(holder, (uint64_t)pid);
	assert_int_equal(kill(pid, SIGTERM), 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Released on the way out, not left to a reaper. */
	assert_int_equal(await_sweeper_pid(f->c, 0, 1000), 0);
	struct shmc_stats st;
	assert_int_equal(shmc_stats(f->c, &st), 0);
	assert_int_equal(st.sweeper_handovers, 0);
}

static void test_tool_serve_missing_segment_fails(void **state)
{
	struct fixture *f = *state;
	struct tool_run r;
	tool_run(&r, NULL, 0, "serve", f->name);
	expect_status(&r, 1, f->name);
	tool_run_free(&r);
}

/* --------------------------------------------- the test's JSON parser */

/* The checks above are only as strict as the parser: make sure it refuses
 * what is not JSON. */
static void test_tool_json_parser_refuses_malformed_text(void **state)
{
	static const char *const bad[] = {
		"", "{", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "+1",
		"-", "1e", "NaN", "Infinity", "tru", "\"abc", "\"a\tb\"", "\"\\x\"",
		"\"\\ud800\"", "\"\\udc00\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", "{} {}",
		"{\"a\":1,\"a\":2}", "[1 2]", "'a'", "{\"a\":1}x",
	};
	static const char *const good[] = {
		"{}", "[]", "0", "-0.5e+3", "\"\\u00e9\\ud83d\\ude00\\u0000\"", " [true,false,null] ",
		"{\"a\":{\"b\":[1,{\"c\":\"d\"}]}}", "\"\xc3\xa9\xf0\x9f\x98\x80\"",
	};
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct tu_json *j = tu_json_parse(bad[i], strlen(bad[i]), err, sizeof err);
		if (j != NULL)
			fail_msg("parser accepted %s", bad[i]);
	}
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct tu_json *j = tu_json_parse(good[i], strlen(good[i]), err, sizeof err);
		if (j == NULL)
			fail_msg("parser refused %s: %s", good[i], err);
		tu_json_free(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_tool_help_lists_every_command),
		TEST(test_tool_command_help_prints_usage_and_succeeds),
		TEST(test_tool_bad_command_lines_exit_2),
		TEST(test_tool_create_applies_every_option),
		TEST(test_tool_create_existing_segment_fails),
		TEST(test_tool_info_json_has_every_documented_field),
		TEST(test_tool_info_text_shows_every_section),
		TEST(test_tool_set_get_del_round_trip),
		TEST(test_tool_get_absent_key_exits_1_not_found),
		TEST(test_tool_set_from_stdin_is_binary_safe),
		TEST(test_tool_set_too_big_value_fails),
		TEST(test_tool_set_ttl_expires),
		TEST(test_tool_missing_segment_fails_with_its_name),
		TEST(test_tool_segment_of_another_build_fails_clearly),
		TEST(test_tool_dump_load_round_trip_keeps_binary_items_and_ttls),
		TEST(test_tool_dump_to_stdout_loads_from_stdin),
		TEST(test_tool_load_ttl_option_replaces_dumped_ttls),
		TEST(test_tool_load_truncated_dump_is_refused),
		TEST(test_tool_load_corrupted_dump_is_refused),
		TEST(test_tool_dump_during_writes_holds_only_intact_values),
		TEST(test_tool_verify_clean_segment_succeeds),
		TEST(test_tool_destroy_removes_segment),
		TEST(test_tool_serve_holds_the_role_until_signalled),
		TEST(test_tool_serve_missing_segment_fails),
		TEST(test_tool_json_parser_refuses_malformed_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
