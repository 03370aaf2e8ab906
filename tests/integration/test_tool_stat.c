/*
 * test_tool_stat.c - shmcache-stat, run as a user runs it: the built binary
 * is executed with arguments against a segment this test fills with
 * traffic (in this process, or in a forked child that keeps running while
 * the tool watches), and its exit status, stdout and stderr are checked.
 *
 * The binary is looked for next to this test's executable (both are built
 * at the build directory's root); SHMCACHE_STAT_TOOL overrides the path
 * (for instance with a script that runs it under valgrind).
 *
 * --json output is parsed with tests/common/tu_json.h and checked against
 * the field list of docs/shmcache-stat.1, both ways: every documented field
 * is there with its type, and nothing undocumented is. --prometheus output
 * goes through an exposition-format (0.0.4) validator written here from
 * the format's specification; the validator is itself tested on broken
 * expositions.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <shmcache.h>

#include "handle.h"  /* proc slots: did the tool release its own? */
#include "segment.h" /* SHMC__MAGIC, to fake a segment of another build */
#include "testutil.h"
#include "tu_json.h"
#include "tu_run.h"

#define SEGMENT_BYTES (8u << 20)
#define CHUNK_BYTES (256u << 10)
#define NKEYS 200u /* fewer than the sketch's 256 slots: exact counts */
#define CHILD_WATCHDOG_S 60u

/* ----------------------------------------------------------- fixture */

struct fixture {
	char name[TU_NAME_MAX];
	shmc_cache *c;
	pid_t traffic;                /* a running traffic child, or 0 */
	_Atomic unsigned *traffic_stop; /* shared with it */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	tu_segname(f->name, sizeof f->name, (const char *)*state);
	(void)shmc_unlink(f->name);
	f->traffic_stop = tu_shared_alloc(sizeof *f->traffic_stop);
	if (f->traffic_stop == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static void traffic_stop(struct fixture *f);

static int teardown(void **state)
{
	struct fixture *f = *state;

	traffic_stop(f);
	shmc_close(f->c);
	(void)shmc_unlink(f->name);
	tu_shared_free(f->traffic_stop, sizeof *f->traffic_stop);
	free(f);
	return 0;
}

#define TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)#fn)

/* ------------------------------------------------------- running the tool */

static const char *tool_path(void)
{
	return tu_sibling_program("SHMCACHE_STAT_TOOL", "shmcache-stat");
}

/* Start the tool with args (NULL-terminated), stdin /dev/null; collect it
 * with tool_collect. */
static pid_t tool_spawn(const char *const *args, int *out_fd, int *err_fd)
{
	const struct tu_spawn_opts opts = {.watchdog_s = CHILD_WATCHDOG_S};
	pid_t pid = tu_spawn(tool_path(), "shmcache-stat", args, &opts, out_fd, err_fd);

	assert_true(pid >= 0);
	return pid;
}

static void tool_collect(struct tu_run *r, pid_t pid, int out_fd, int err_fd)
{
	assert_int_equal(tu_collect(r, pid, out_fd, err_fd), 0);
	if (r->status == 127)
		fail_msg("could not run the tool at %s: %s", tool_path(), r->err);
	if (r->term_signal != 0)
		fail_msg("the tool was killed by signal %d; stderr: %s", r->term_signal, r->err);
}

static void tool_runv(struct tu_run *r, const char *const *args)
{
	int out_fd, err_fd;
	pid_t pid = tool_spawn(args, &out_fd, &err_fd);

	tool_collect(r, pid, out_fd, err_fd);
}

#define tool_run(r, ...)                                                          \
	do {                                                                      \
		const char *const args_[] = {__VA_ARGS__, NULL};                  \
		tool_runv((r), args_);                                            \
	} while (0)

static void expect_status(const struct tu_run *r, int status)
{
	if (r->status != status)
		fail_msg("exit status %d, expected %d; stderr: %s", r->status, status, r->err);
}

static void expect_out(const struct tu_run *r, const char *needle)
{
	if (strstr(r->out, needle) == NULL)
		fail_msg("stdout lacks \"%s\":\n%s", needle, r->out);
}

/* ----------------------------------------------------------- traffic */

static shmc_cache *attach(const char *name, unsigned sample_period)
{
	shmc_opts *o;
	shmc_cache *c = NULL;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_sweeper(o, 0), 0);
	assert_int_equal(shmc_opts_set_sampling(o, sample_period), 0);
	assert_int_equal(shmc_open(name, o, 0, &c), 0);
	shmc_opts_destroy(o);
	return c;
}

static size_t key_of(char *buf, size_t cap, unsigned i)
{
	return (size_t)snprintf(buf, cap, "key:%04u", i);
}

/* A fresh segment holding NKEYS keys; f->c then samples every operation. */
static void open_with_keys(struct fixture *f)
{
	char key[32], val[64];

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, 0, &f->c), 0);
	shmc_close(f->c);
	f->c = attach(f->name, 1);
	for (unsigned i = 0; i < NKEYS; i++) {
		size_t kl = key_of(key, sizeof key, i);
		int vl = snprintf(val, sizeof val, "value of %u", i);
		assert_int_equal(shmc_set(f->c, key, kl, val, (size_t)vl, 0, 0), 0);
	}
}

/* Key i is read (NKEYS - i) / 8 + 1 times, key:0000 HOTTEST_READS times
 * (far more, so that it is the hottest whichever of its lookups the sketch
 * takes); plus a few misses. */
#define HOTTEST_READS 400u
static uint64_t read_skewed(shmc_cache *c)
{
	char key[32], buf[64];
	size_t vlen;
	uint64_t gets = 0;

	for (unsigned i = 0; i < NKEYS; i++) {
		size_t kl = key_of(key, sizeof key, i);
		for (unsigned n = 0; n < (i ? (NKEYS - i) / 8 + 1 : HOTTEST_READS); n++, gets++)
			assert_int_equal(shmc_get(c, key, kl, buf, sizeof buf, &vlen), 0);
	}
	for (unsigned i = 0; i < 10; i++, gets++)
		assert_int_equal(shmc_get(c, "absent", 6, buf, sizeof buf, &vlen), SHMC_ENOTFOUND);
	return gets;
}

struct traffic_args {
	const char *name;
	_Atomic unsigned *stop;
};

/* Reads and writes (1 in 16) the keys until told to stop. */
static int traffic_body(unsigned index, void *arg)
{
	const struct traffic_args *a = arg;
	shmc_opts *o;
	shmc_cache *c;
	char key[32], buf[64];
	size_t vlen;
	uint64_t rng = 42;

	(void)index;
	if (shmc_opts_create(&o) || shmc_opts_set_sweeper(o, 0) || shmc_opts_set_sampling(o, 4) ||
	    shmc_open(a->name, o, 0, &c)) {
		tu_child_log("traffic: attach failed: %s", shmc_errmsg(NULL));
		return 1;
	}
	shmc_opts_destroy(o);
	while (!atomic_load(a->stop)) {
		for (unsigned n = 0; n < 1024; n++) {
			unsigned i = (unsigned)(tu_rand_below(&rng, NKEYS) * tu_rand_below(&rng, NKEYS) /
			                        NKEYS);
			size_t kl = key_of(key, sizeof key, i);
			int rc = n % 16 ? shmc_get(c, key, kl, buf, sizeof buf, &vlen)
			                : shmc_set(c, key, kl, "v", 1, 0, 0);
			if (rc) {
				tu_child_log("traffic: %s", shmc_errname(rc));
				return 1;
			}
		}
	}
	shmc_close(c);
	return 0;
}

static void traffic_start(struct fixture *f)
{
	static struct traffic_args args;

	args.name = f->name;
	args.stop = f->traffic_stop;
	atomic_store(f->traffic_stop, 0);
	assert_int_equal(tu_fork_start(1, traffic_body, &args, CHILD_WATCHDOG_S, &f->traffic), 1);
	/* until it has attached and run */
	for (int i = 0; i < 500; i++) {
		struct shmc_stats st;

		assert_int_equal(shmc_stats(f->c, &st), 0);
		if (st.procs_attached >= 2 && st.gets > 100000)
			return;
		tu_sleep_ms(10);
	}
	fail_msg("the traffic child did not get going");
}

static void traffic_stop(struct fixture *f)
{
	if (f->traffic == 0)
		return;
	atomic_store(f->traffic_stop, 1);
	assert_int_equal(tu_wait_child(f->traffic, "traffic"), 0);
	f->traffic = 0;
}

/* ------------------------------------------------------- JSON checks */

enum jtype { J_U64, J_NUM, J_BOOL, J_STR, J_OBJ, J_ARR, J_NUM_OR_NULL, J_U64_OR_NULL, J_OBJ_OR_NULL };

struct jfield {
	const char *name;
	enum jtype type;
};

static const char *const counter_names[] = {
	"gets",          "hits",          "misses",         "sets",
	"deletes",       "incrs",         "expirations",    "evictions",
	"evictions_probation", "evictions_clock", "evictions_direct", "enospc",
	"bytes_written", "promotions",    "sweeper_passes", "sweeper_handovers",
	"fills",
	"coalesced_waits",
	"origin_calls",
	"lease_takeovers",
	"negative_hits",
	"stale_serves",
	"refreshes",
	"loader_errors",
	"stale_if_error",
	"uplink_batches",
	"uplink_ops",
	"uplink_err_connect",
	"uplink_err_timeout",
	"uplink_err_protocol",
	"uplink_err_reply",
	"uplink_fast_fails",
	"uplink_breaker_opens",
	"uplink_redirects",
	"uplink_topology_refreshes",
	"write_behind_queued",
	"write_behind_dropped",
	"write_behind_failed",
};
#define N_COUNTER_NAMES (sizeof counter_names / sizeof *counter_names)

static const struct jfield top_fields[] = {
	{"format", J_U64},     {"name", J_STR},        {"time_unix_ms", J_U64},
	{"cumulative", J_BOOL}, {"interval_s", J_NUM}, {"rates", J_OBJ_OR_NULL},
	{"deltas", J_OBJ_OR_NULL}, {"hit_ratio", J_NUM_OR_NULL}, {"totals", J_OBJ},
	{"latency", J_OBJ},    {"memory", J_OBJ},      {"sweeper", J_OBJ},
	{"attached", J_OBJ},   {"hot_keys", J_ARR},    {"procs", J_ARR},
	{"uplink_nodes", J_ARR},
};

static const struct jfield latency_fields[] = {
	{"source", J_STR},         {"samples", J_U64},        {"p50_ns", J_U64_OR_NULL},
	{"p90_ns", J_U64_OR_NULL}, {"p99_ns", J_U64_OR_NULL}, {"p999_ns", J_U64_OR_NULL},
	{"max_ns", J_U64_OR_NULL}, {"mean_ns", J_NUM_OR_NULL},
};

static const struct jfield memory_fields[] = {
	{"chunks_total", J_U64}, {"chunks_free", J_U64},    {"chunks_open", J_U64},
	{"chunks_sealed", J_U64}, {"chunks_probation", J_U64}, {"chunks_retired", J_U64},
	{"bytes_live", J_U64},   {"bytes_dead", J_U64},     {"bytes_free", J_U64},
	{"data_bytes", J_U64},   {"segment_bytes", J_U64},  {"items", J_U64},
	{"index_slots", J_U64},  {"index_load", J_NUM},     {"avg_item_bytes", J_NUM},
};

static const struct jfield sweeper_fields[] = {
	{"pid", J_U64}, {"passes", J_U64}, {"handovers", J_U64}};
static const struct jfield attached_fields[] = {{"procs", J_U64}, {"threads", J_U64}};
static const struct jfield hot_fields[] = {
	{"key", J_STR}, {"truncated", J_BOOL}, {"count", J_U64}, {"error", J_U64}};
static const struct jfield proc_fields[] = {
	{"pid", J_U64},        {"self", J_BOOL},       {"attach_unix_ms", J_U64},
	{"threads", J_U64},    {"gets", J_U64},        {"hits", J_U64},
	{"misses", J_U64},     {"sets", J_U64},        {"deletes", J_U64},
	{"incrs", J_U64},      {"evictions", J_U64},   {"expirations", J_U64},
	{"enospc", J_U64},     {"bytes_written", J_U64}, {"gets_per_s", J_NUM_OR_NULL},
	{"sets_per_s", J_NUM_OR_NULL},
};
static const struct jfield node_fields[] = {
	{"addr", J_STR}, {"pid", J_U64}, {"state", J_STR}, {"failures", J_U64},
	{"breaker_opens", J_U64},
};

#define CHECK_FIELDS(obj, list, where) check_fields((obj), (list), sizeof(list) / sizeof(*(list)), (where))

static bool type_ok(const struct tu_json *v, enum jtype t)
{
	uint64_t u;

	switch (t) {
	case J_U64:
		return tu_json_u64(v, &u);
	case J_NUM:
		return v->type == TU_JSON_NUMBER;
	case J_BOOL:
		return v->type == TU_JSON_BOOL;
	case J_STR:
		return v->type == TU_JSON_STRING;
	case J_OBJ:
		return v->type == TU_JSON_OBJECT;
	case J_ARR:
		return v->type == TU_JSON_ARRAY;
	case J_NUM_OR_NULL:
		return v->type == TU_JSON_NUMBER || v->type == TU_JSON_NULL;
	case J_U64_OR_NULL:
		return tu_json_u64(v, &u) || v->type == TU_JSON_NULL;
	case J_OBJ_OR_NULL:
		return v->type == TU_JSON_OBJECT || v->type == TU_JSON_NULL;
	}
	return false;
}

/* obj has exactly the fields of list, each of its type. */
static void check_fields(const struct tu_json *obj, const struct jfield *list, size_t n,
                         const char *where)
{
	assert_non_null(obj);
	if (obj->type != TU_JSON_OBJECT)
		fail_msg("%s is not an object", where);
	for (size_t i = 0; i < n; i++) {
		const struct tu_json *v = tu_json_member(obj, list[i].name);

		if (v == NULL)
			fail_msg("%s lacks the documented field %s", where, list[i].name);
		if (!type_ok(v, list[i].type))
			fail_msg("%s.%s has the wrong type (%d)", where, list[i].name, (int)v->type);
	}
	if (tu_json_count(obj) != n)
		fail_msg("%s has %zu fields, %zu documented", where, tu_json_count(obj), n);
}

static void check_counter_object(const struct tu_json *obj, bool integers, const char *where)
{
	assert_non_null(obj);
	assert_int_equal(tu_json_count(obj), N_COUNTER_NAMES);
	for (size_t i = 0; i < N_COUNTER_NAMES; i++) {
		const struct tu_json *v = tu_json_member(obj, counter_names[i]);
		uint64_t u;

		if (v == NULL || (integers ? !tu_json_u64(v, &u) : v->type != TU_JSON_NUMBER))
			fail_msg("%s.%s missing or of the wrong type", where, counter_names[i]);
		if (!integers && v->number < 0)
			fail_msg("%s.%s is negative", where, counter_names[i]);
	}
}

/* Every documented field, with its type, and nothing else. */
static void check_json_schema(const struct tu_json *j)
{
	const struct tu_json *rates, *lat, *hot, *procs, *e;
	static const char *const ops[] = {"get", "set", "fetch"};

	CHECK_FIELDS(j, top_fields, "object");
	check_counter_object(tu_json_member(j, "totals"), true, "totals");
	rates = tu_json_member(j, "rates");
	if (rates->type == TU_JSON_OBJECT) {
		check_counter_object(rates, false, "rates");
		check_counter_object(tu_json_member(j, "deltas"), true, "deltas");
	}
	lat = tu_json_member(j, "latency");
	assert_int_equal(tu_json_count(lat), 3);
	for (size_t i = 0; i < 3; i++) {
		const struct tu_json *op = tu_json_member(lat, ops[i]);
		const char *src;

		CHECK_FIELDS(op, latency_fields, ops[i]);
		src = tu_json_member(op, "source")->string;
		assert_true(!strcmp(src, "interval") || !strcmp(src, "cumulative"));
	}
	CHECK_FIELDS(tu_json_member(j, "memory"), memory_fields, "memory");
	CHECK_FIELDS(tu_json_member(j, "sweeper"), sweeper_fields, "sweeper");
	CHECK_FIELDS(tu_json_member(j, "attached"), attached_fields, "attached");
	hot = tu_json_member(j, "hot_keys");
	for (e = hot->child; e != NULL; e = e->next)
		CHECK_FIELDS(e, hot_fields, "hot_keys[]");
	procs = tu_json_member(j, "procs");
	for (e = procs->child; e != NULL; e = e->next)
		CHECK_FIELDS(e, proc_fields, "procs[]");
	for (e = tu_json_member(j, "uplink_nodes")->child; e != NULL; e = e->next) {
		const char *st;

		CHECK_FIELDS(e, node_fields, "uplink_nodes[]");
		st = tu_json_member(e, "state")->string;
		assert_true(!strcmp(st, "closed") || !strcmp(st, "open") || !strcmp(st, "half-open"));
	}
}

static uint64_t ju64(const struct tu_json *j, const char *path)
{
	const struct tu_json *v = tu_json_path(j, path);
	uint64_t u;

	if (v == NULL || !tu_json_u64(v, &u))
		fail_msg("%s is not an unsigned integer", path);
	return u;
}

static double jnum(const struct tu_json *j, const char *path)
{
	const struct tu_json *v = tu_json_path(j, path);

	if (v == NULL || v->type != TU_JSON_NUMBER)
		fail_msg("%s is not a number", path);
	return v->number;
}

static struct tu_json *parse_line(const char *line, size_t len)
{
	char err[160];
	struct tu_json *j = tu_json_parse(line, len, err, sizeof err);

	if (j == NULL)
		fail_msg("not JSON (%s): %.*s", err, (int)len, line);
	return j;
}

static void check_latency_order(const struct tu_json *j, const char *op)
{
	char path[64];
	uint64_t p50, p90, p99, p999;

	snprintf(path, sizeof path, "latency.%s.p50_ns", op);
	p50 = ju64(j, path);
	snprintf(path, sizeof path, "latency.%s.p90_ns", op);
	p90 = ju64(j, path);
	snprintf(path, sizeof path, "latency.%s.p99_ns", op);
	p99 = ju64(j, path);
	snprintf(path, sizeof path, "latency.%s.p999_ns", op);
	p999 = ju64(j, path);
	assert_true(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999);
}

/* ------------------------------------------ Prometheus exposition 0.0.4 */

/* A family declared by # HELP / # TYPE. */
struct pfamily {
	char name[160];
	char type[16];
	bool help, typed, sampled;
};

/* One histogram series: the labels other than le. */
struct phist {
	int family; /* index in pstate.fam */
	char labels[256];
	double last_le;
	double last_count;
	int buckets;
	bool inf_seen, sum_seen, count_seen;
	double inf_count, count;
};

struct pstate {
	struct pfamily fam[128];
	size_t nfam;
	struct phist hist[32];
	size_t nhist;
	char (*series)[600]; /* name{labels}, to find duplicates */
	size_t nseries, series_cap;
	int current; /* family whose samples run now, -1 none */
	unsigned line;
	char err[256];
};

static bool pfail(struct pstate *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool pfail(struct pstate *p, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->err, sizeof p->err, "line %u: ", p->line);

	va_start(ap, fmt);
	vsnprintf(p->err + n, sizeof p->err - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static int pfamily_find(struct pstate *p, const char *name)
{
	for (size_t i = 0; i < p->nfam; i++)
		if (!strcmp(p->fam[i].name, name))
			return (int)i;
	return -1;
}

static const char *scan_name(const char *s, bool colon_ok)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
	      (colon_ok && *s == ':')))
		return NULL;
	for (s++; (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
	          *s == '_' || (colon_ok && *s == ':');
	     s++)
		;
	return s;
}

/* A sample value: a Go ParseFloat-style number, or +Inf, -Inf, NaN. */
static bool parse_value(const char *s, size_t n, double *out)
{
	char buf[64];
	char *end;

	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (!strcmp(buf, "+Inf")) {
		*out = INFINITY;
		return true;
	}
	if (!strcmp(buf, "-Inf")) {
		*out = -INFINITY;
		return true;
	}
	if (!strcmp(buf, "NaN")) {
		*out = NAN;
		return true;
	}
	if (strspn(buf, "0123456789+-.eE") != n)
		return false;
	errno = 0;
	*out = strtod(buf, &end);
	return errno == 0 && *end == '\0';
}

static bool pcomment(struct pstate *p, const char *line)
{
	char kind[8], name[160];
	int used = 0;
	int fi;

	if (sscanf(line, "# %7s %159s %n", kind, name, &used) < 2 ||
	    (strcmp(kind, "HELP") && strcmp(kind, "TYPE")))
		return true; /* any other comment */
	if (line[2 + strlen(kind)] != ' ' || scan_name(name, true) == NULL ||
	    *scan_name(name, true) != '\0')
		return pfail(p, "bad %s line", kind);
	fi = pfamily_find(p, name);
	if (fi < 0) {
		if (p->nfam == sizeof p->fam / sizeof *p->fam)
			return pfail(p, "too many families");
		fi = (int)p->nfam++;
		snprintf(p->fam[fi].name, sizeof p->fam[fi].name, "%s", name);
	}
	struct pfamily *f = &p->fam[fi];
	if (f->sampled)
		return pfail(p, "%s for %s after its samples", kind, name);
	if (!strcmp(kind, "HELP")) {
		if (f->help)
			return pfail(p, "second HELP for %s", name);
		f->help = true;
		if (line[used] == '\0')
			return pfail(p, "empty HELP for %s", name);
		return true;
	}
	if (f->typed)
		return pfail(p, "second TYPE for %s", name);
	f->typed = true;
	snprintf(f->type, sizeof f->type, "%s", line + used);
	if (strcmp(f->type, "counter") && strcmp(f->type, "gauge") && strcmp(f->type, "histogram") &&
	    strcmp(f->type, "summary") && strcmp(f->type, "untyped"))
		return pfail(p, "unknown TYPE '%s'", f->type);
	if (!strcmp(f->type, "counter") && !ends_with(name, "_total"))
		return pfail(p, "counter %s does not end in _total", name);
	if (strcmp(f->type, "counter") && ends_with(name, "_total"))
		return pfail(p, "%s %s ends in _total", f->type, name);
	return true;
}

/* Parse {a="x",b="y"} at *s into canonical "a=x,b=y" without le (into
 * rest) and le's value (into le, "" if none). */
static bool plabels(struct pstate *p, const char **s, char *rest, size_t rest_cap, char *le,
                    size_t le_cap)
{
	const char *c = *s;
	char seen[16][64];
	size_t nseen = 0, at = 0;

	rest[0] = le[0] = '\0';
	if (*c != '{')
		return true;
	c++;
	while (*c != '}') {
		const char *end = scan_name(c, false);
		char lname[64], value[128];
		size_t vn = 0;

		if (end == NULL || (size_t)(end - c) >= sizeof lname)
			return pfail(p, "bad label name");
		memcpy(lname, c, (size_t)(end - c));
		lname[end - c] = '\0';
		for (size_t i = 0; i < nseen; i++)
			if (!strcmp(seen[i], lname))
				return pfail(p, "label %s twice", lname);
		if (nseen < 16)
			snprintf(seen[nseen++], sizeof seen[0], "%s", lname);
		c = end;
		if (*c++ != '=' || *c++ != '"')
			return pfail(p, "label %s: expected =\"", lname);
		while (*c != '"') {
			if (*c == '\0' || *c == '\n')
				return pfail(p, "unterminated label value");
			if (*c == '\\') {
				c++;
				if (*c != '\\' && *c != '"' && *c != 'n')
					return pfail(p, "bad escape in label value");
			}
			if (vn + 1 < sizeof value)
				value[vn++] = *c;
			c++;
		}
		value[vn] = '\0';
		c++;
		if (!strcmp(lname, "le"))
			snprintf(le, le_cap, "%s", value);
		else
			at += (size_t)snprintf(rest + at, rest_cap - at, "%s%s=%s", at ? "," : "", lname,
			                       value);
		if (*c == ',')
			c++;
		else if (*c != '}')
			return pfail(p, "expected , or }");
	}
	*s = c + 1;
	return true;
}

static struct phist *phist_get(struct pstate *p, int family, const char *labels)
{
	for (size_t i = 0; i < p->nhist; i++)
		if (p->hist[i].family == family && !strcmp(p->hist[i].labels, labels))
			return &p->hist[i];
	if (p->nhist == sizeof p->hist / sizeof *p->hist)
		return NULL;
	struct phist *h = &p->hist[p->nhist++];
	memset(h, 0, sizeof *h);
	h->family = family;
	snprintf(h->labels, sizeof h->labels, "%s", labels);
	h->last_le = -INFINITY;
	return h;
}

static bool psample(struct pstate *p, const char *line)
{
	const char *s = scan_name(line, true);
	char name[160], labels[256], le[128], fname[160], key[600];
	const char *suffix = NULL;
	double value;
	int fi;

	if (s == NULL || (size_t)(s - line) >= sizeof name)
		return pfail(p, "bad metric name");
	memcpy(name, line, (size_t)(s - line));
	name[s - line] = '\0';
	if (!plabels(p, &s, labels, sizeof labels, le, sizeof le))
		return false;
	if (*s++ != ' ')
		return pfail(p, "expected a space before the value");
	const char *v = s;
	while (*s != '\0' && *s != ' ')
		s++;
	if (!parse_value(v, (size_t)(s - v), &value))
		return pfail(p, "bad value '%.*s'", (int)(s - v), v);
	if (*s == ' ') { /* optional timestamp: an integer */
		s++;
		if (*s == '-')
			s++;
		if (*s == '\0' || strspn(s, "0123456789") != strlen(s))
			return pfail(p, "bad timestamp");
	}

	/* Which family: the name itself, or a histogram's _bucket/_sum/_count. */
	snprintf(fname, sizeof fname, "%s", name);
	fi = pfamily_find(p, fname);
	if (fi < 0 || strcmp(p->fam[fi].type, "histogram") == 0) {
		static const char *const suffixes[] = {"_bucket", "_sum", "_count"};

		fi = -1;
		for (size_t i = 0; i < 3 && fi < 0; i++) {
			if (!ends_with(name, suffixes[i]))
				continue;
			snprintf(fname, sizeof fname, "%.*s", (int)(strlen(name) - strlen(suffixes[i])),
			         name);
			fi = pfamily_find(p, fname);
			if (fi >= 0 && strcmp(p->fam[fi].type, "histogram") && strcmp(p->fam[fi].type, "summary"))
				fi = -1;
			else if (fi >= 0)
				suffix = suffixes[i];
		}
	}
	if (fi < 0)
		return pfail(p, "sample %s of no declared family", name);
	struct pfamily *f = &p->fam[fi];
	if (!f->help || !f->typed)
		return pfail(p, "sample %s before its family's HELP and TYPE", name);
	if (f->sampled && p->current != fi)
		return pfail(p, "samples of %s are not grouped together", f->name);
	f->sampled = true;
	p->current = fi;

	snprintf(key, sizeof key, "%s{%s%s%s}", name, labels, le[0] ? ",le=" : "", le);
	for (size_t i = 0; i < p->nseries; i++)
		if (!strcmp(p->series[i], key))
			return pfail(p, "series %s twice", key);
	if (p->nseries == p->series_cap) {
		p->series_cap = p->series_cap ? 2 * p->series_cap : 64;
		p->series = realloc(p->series, p->series_cap * sizeof *p->series);
		if (p->series == NULL)
			return pfail(p, "out of memory");
	}
	snprintf(p->series[p->nseries++], sizeof *p->series, "%s", key);

	if (!strcmp(f->type, "counter") && !(value >= 0))
		return pfail(p, "counter %s is %g", name, value);
	if (strcmp(f->type, "histogram") != 0) {
		if (le[0])
			return pfail(p, "le label outside a histogram");
		return true;
	}
	if (suffix == NULL)
		return pfail(p, "histogram sample %s without _bucket, _sum or _count", name);
	struct phist *h = phist_get(p, fi, labels);
	if (h == NULL)
		return pfail(p, "too many histogram series");
	if (!strcmp(suffix, "_bucket")) {
		double bound;

		if (!le[0] || !parse_value(le, strlen(le), &bound) || isnan(bound))
			return pfail(p, "bucket without a valid le");
		if (h->inf_seen)
			return pfail(p, "bucket after le=\"+Inf\"");
		if (!(bound > h->last_le))
			return pfail(p, "le %s not above the previous bound", le);
		if (value < h->last_count)
			return pfail(p, "bucket le=%s count %g below the previous %g", le, value,
			             h->last_count);
		if (value < 0 || value != (double)(uint64_t)value)
			return pfail(p, "bucket count %g is not a whole number", value);
		h->last_le = bound;
		h->last_count = value;
		h->buckets++;
		if (isinf(bound)) {
			h->inf_seen = true;
			h->inf_count = value;
		}
	} else if (le[0]) {
		return pfail(p, "le on %s", name);
	} else if (!strcmp(suffix, "_sum")) {
		h->sum_seen = true;
	} else {
		h->count_seen = true;
		h->count = value;
	}
	return true;
}

/* NULL if text is a valid exposition; else why not (static buffer). */
static const char *prom_validate(const char *text)
{
	static char why[256];
	struct pstate *p = calloc(1, sizeof *p);
	const char *line = text;
	bool ok = true;

	assert_non_null(p);
	p->current = -1;
	if (text[0] == '\0' || text[strlen(text) - 1] != '\n') {
		snprintf(why, sizeof why, "empty, or does not end in a newline");
		free(p);
		return why;
	}
	while (ok && *line) {
		const char *nl = strchr(line, '\n');
		char buf[1024];
		size_t n = (size_t)(nl - line);

		p->line++;
		if (n >= sizeof buf) {
			ok = pfail(p, "line too long");
			break;
		}
		memcpy(buf, line, n);
		buf[n] = '\0';
		if (n == 0)
			ok = pfail(p, "empty line");
		else if (buf[0] == '#')
			ok = pcomment(p, buf);
		else
			ok = psample(p, buf);
		line = nl + 1;
	}
	for (size_t i = 0; ok && i < p->nhist; i++) {
		const struct phist *h = &p->hist[i];

		if (!h->inf_seen)
			ok = pfail(p, "%s{%s} has no le=\"+Inf\" bucket", p->fam[h->family].name, h->labels);
		else if (!h->count_seen || !h->sum_seen)
			ok = pfail(p, "%s{%s} lacks _sum or _count", p->fam[h->family].name, h->labels);
		else if (h->inf_count != h->count)
			ok = pfail(p, "%s{%s}: +Inf bucket %g != _count %g", p->fam[h->family].name, h->labels,
			           h->inf_count, h->count);
	}
	for (size_t i = 0; ok && i < p->nfam; i++)
		if (!p->fam[i].help || !p->fam[i].typed)
			ok = pfail(p, "family %s lacks HELP or TYPE", p->fam[i].name);
	if (!ok)
		snprintf(why, sizeof why, "%s", p->err);
	free(p->series);
	free(p);
	return ok ? NULL : why;
}

/* The value of the sample written exactly as "series value". */
static double prom_sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
		if (!strncmp(line, series, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		if (strchr(line, '\n') == NULL)
			break;
	}
	fail_msg("no sample %s", series);
	return 0;
}

/* ------------------------------------------------------------- tests */

static void test_stat_once_shows_every_section(void **state)
{
	struct fixture *f = *state;
	static const char *const sections[] = {
		"cumulative since the segment was created", "operations", "hit ratio", "evictions",
		"expirations", "latency", "p99.9", "memory", "chunks", "dead", "index load",
		"sweeper", "attached", "hot keys", "key:0000",
		"breakers     none (no attached process uses an uplink)",
	};
	struct tu_run r;

	open_with_keys(f);
	read_skewed(f->c);
	tool_run(&r, "--once", f->name);
	expect_status(&r, 0);
	for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
		expect_out(&r, sections[i]);
	/* not a terminal: no screen control */
	assert_null(strchr(r.out, '\033'));
	tu_run_free(&r);
}

static void test_stat_once_json_matches_the_library(void **state)
{
	struct fixture *f = *state;
	struct shmc_stats st;
	struct shmc_latency lat;
	struct tu_run r;
	struct tu_json *j;
	uint64_t gets;

	open_with_keys(f);
	gets = read_skewed(f->c);
	tool_run(&r, "--once", "--json", f->name);
	expect_status(&r, 0);
	assert_non_null(memchr(r.out, '\n', r.out_len));
	assert_int_equal(strchr(r.out, '\n') - r.out + 1, (long)r.out_len); /* one line */
	j = parse_line(r.out, r.out_len - 1);
	check_json_schema(j);

	assert_int_equal(shmc_stats(f->c, &st), 0);
	assert_int_equal(ju64(j, "format"), 1);
	assert_string_equal(tu_json_member(j, "name")->string, f->name);
	assert_true(tu_json_member(j, "cumulative")->boolean);
	assert_int_equal(tu_json_member(j, "rates")->type, TU_JSON_NULL);
	assert_int_equal(ju64(j, "totals.gets"), gets);
	assert_int_equal(ju64(j, "totals.gets"), st.gets);
	assert_int_equal(ju64(j, "totals.misses"), 10);
	assert_int_equal(ju64(j, "totals.sets"), NKEYS);
	assert_true(fabs(jnum(j, "hit_ratio") - (double)(gets - 10) / (double)gets) < 1e-6);
	assert_int_equal(ju64(j, "memory.items"), NKEYS);
	assert_int_equal(ju64(j, "memory.items"), st.items);
	assert_int_equal(ju64(j, "memory.index_slots"), st.index_slots);
	assert_true(fabs(jnum(j, "memory.index_load") - (double)st.items / (double)st.index_slots) <
	            1e-6);
	assert_true(fabs(jnum(j, "memory.avg_item_bytes") - (double)st.bytes_live / (double)st.items) <
	            0.06);
	assert_int_equal(ju64(j, "memory.chunks_free") + ju64(j, "memory.chunks_open") +
	                     ju64(j, "memory.chunks_sealed"),
	                 ju64(j, "memory.chunks_total"));
	/* this process and the tool */
	assert_int_equal(ju64(j, "attached.procs"), 2);
	assert_int_equal(tu_json_count(tu_json_member(j, "procs")), 2);

	/* Cumulative percentiles are the library's, to the nanosecond. */
	assert_int_equal(shmc_latency(f->c, SHMC_OP_GET, &lat), 0);
	assert_string_equal(tu_json_path(j, "latency.get.source")->string, "cumulative");
	assert_int_equal(ju64(j, "latency.get.samples"), lat.count);
	assert_int_equal(lat.count, gets); /* sampling period 1 */
	assert_int_equal(ju64(j, "latency.get.p50_ns"), lat.p50_ns);
	assert_int_equal(ju64(j, "latency.get.p90_ns"), lat.p90_ns);
	assert_int_equal(ju64(j, "latency.get.p99_ns"), lat.p99_ns);
	assert_int_equal(ju64(j, "latency.get.p999_ns"), lat.p999_ns);
	assert_int_equal(ju64(j, "latency.get.max_ns"), lat.max_ns);
	assert_int_equal(ju64(j, "latency.fetch.samples"), 0);
	assert_int_equal(tu_json_path(j, "latency.fetch.p50_ns")->type, TU_JSON_NULL);

	/* The hot keys are the library's, in its order; key:0000 first. */
	struct shmc_hotkey lib[10];
	size_t nlib, i = 0;
	char text[16];
	assert_int_equal(shmc_hotkeys(f->c, lib, 10, &nlib), 0);
	const struct tu_json *hot = tu_json_member(j, "hot_keys");
	assert_int_equal(tu_json_count(hot), nlib);
	assert_true(nlib > 1);
	for (const struct tu_json *e = hot->child; e != NULL; e = e->next, i++) {
		snprintf(text, sizeof text, "%.*s", (int)lib[i].klen, (const char *)lib[i].key);
		assert_string_equal(tu_json_member(e, "key")->string, text);
		assert_int_equal(ju64(e, "count"), lib[i].count);
		assert_int_equal(ju64(e, "error"), lib[i].error);
		assert_false(tu_json_member(e, "truncated")->boolean);
	}
	assert_string_equal(tu_json_member(hot->child, "key")->string, "key:0000");
	tu_json_free(j);
	tu_run_free(&r);
}

static void test_stat_json_intervals_have_documented_fields_and_rates(void **state)
{
	struct fixture *f = *state;
	struct tu_run r;
	struct tu_json *lines[2];
	const char *at;
	uint64_t sets = 0;

	open_with_keys(f);
	traffic_start(f);
	tool_run(&r, "--json", "-n", "2", "-i", "0.2", f->name);
	expect_status(&r, 0);
	at = r.out;
	for (int i = 0; i < 2; i++) {
		const char *nl = strchr(at, '\n');

		if (nl == NULL)
			fail_msg("expected 2 lines, got:\n%s", r.out);
		lines[i] = parse_line(at, (size_t)(nl - at));
		at = nl + 1;
	}
	if (*at != '\0')
		fail_msg("more than 2 lines:\n%s", r.out);

	for (int i = 0; i < 2; i++) {
		const struct tu_json *j = lines[i], *e;
		double secs, gets_rate;
		unsigned selves = 0, traffic_seen = 0;

		check_json_schema(j);
		assert_false(tu_json_member(j, "cumulative")->boolean);
		/* Readings keep a steady cadence (each deadline is the previous
		 * one plus the interval), so one late reading shortens the next
		 * interval; rates use the measured time. */
		secs = jnum(j, "interval_s");
		if (!(secs > 0.02 && secs < 5.0))
			fail_msg("interval %d lasted %f s", i, secs);
		gets_rate = jnum(j, "rates.gets");
		assert_true(gets_rate > 0);
		/* rate = delta / interval */
		assert_true(fabs(gets_rate - (double)ju64(j, "deltas.gets") / secs) <= 0.01 * gets_rate);
		sets += ju64(j, "deltas.sets");
		assert_true(jnum(j, "hit_ratio") >= 0 && jnum(j, "hit_ratio") <= 1);
		assert_true(ju64(j, "totals.gets") >= ju64(j, "deltas.gets"));
		/* The traffic samples 1 lookup in 4: an interval with enough of
		 * them has samples, and reports from them. */
		if (ju64(j, "deltas.gets") >= 64) {
			assert_string_equal(tu_json_path(j, "latency.get.source")->string, "interval");
			assert_true(ju64(j, "latency.get.samples") > 0);
		}
		check_latency_order(j, "get");
		check_latency_order(j, "set");
		/* The traffic sets only existing keys. */
		assert_int_equal(ju64(j, "memory.items"), NKEYS);
		assert_true(ju64(j, "attached.procs") >= 3);
		assert_true(tu_json_count(tu_json_member(j, "hot_keys")) > 0);
		for (e = tu_json_member(j, "procs")->child; e != NULL; e = e->next) {
			selves += tu_json_member(e, "self")->boolean;
			if (ju64(e, "pid") == (uint64_t)f->traffic) {
				traffic_seen++;
				assert_true(ju64(e, "gets") > 0);
				assert_true(jnum(e, "gets_per_s") > 0);
			}
		}
		assert_int_equal(selves, 1);
		assert_int_equal(traffic_seen, 1);
	}
	assert_true(sets > 0);
	assert_true(ju64(lines[1], "time_unix_ms") > ju64(lines[0], "time_unix_ms"));
	assert_true(ju64(lines[1], "totals.gets") > ju64(lines[0], "totals.gets"));
	tu_json_free(lines[0]);
	tu_json_free(lines[1]);
	tu_run_free(&r);
}

static void test_stat_interval_text_repeats_without_screen_control(void **state)
{
	struct fixture *f = *state;
	struct tu_run r;
	unsigned headers = 0;

	open_with_keys(f);
	traffic_start(f);
	tool_run(&r, "-n", "2", "--interval=0.1", f->name);
	expect_status(&r, 0);
	for (const char *at = r.out; (at = strstr(at, "interval 0.")) != NULL; at++)
		headers++;
	assert_int_equal(headers, 2);
	expect_out(&r, "/s");
	assert_null(strchr(r.out, '\033'));
	tu_run_free(&r);
}

static void test_stat_prometheus_output_is_a_valid_exposition(void **state)
{
	struct fixture *f = *state;
	struct shmc_stats st;
	struct shmc_latency lat;
	struct tu_run r;
	const char *why;
	char series[512];

	open_with_keys(f);
	traffic_start(f);
	traffic_stop(f);
	read_skewed(f->c);
	tool_run(&r, "--prometheus", f->name);
	expect_status(&r, 0);
	why = prom_validate(r.out);
	if (why != NULL)
		fail_msg("invalid exposition: %s\n%s", why, r.out);

	/* The figures are the library's. */
	assert_int_equal(shmc_stats(f->c, &st), 0);
	snprintf(series, sizeof series, "shmcache_gets_total{segment=\"%s\"}", f->name);
	assert_true(prom_sample(r.out, series) == (double)st.gets);
	snprintf(series, sizeof series, "shmcache_items{segment=\"%s\"}", f->name);
	assert_true(prom_sample(r.out, series) == (double)NKEYS);
	snprintf(series, sizeof series, "shmcache_evictions_total{segment=\"%s\",cause=\"clock\"}",
	         f->name);
	assert_true(prom_sample(r.out, series) == (double)st.evictions_clock);
	assert_int_equal(shmc_latency(f->c, SHMC_OP_GET, &lat), 0);
	snprintf(series, sizeof series, "shmcache_op_latency_seconds_count{segment=\"%s\",op=\"get\"}",
	         f->name);
	assert_true(prom_sample(r.out, series) == (double)lat.count);
	snprintf(series, sizeof series,
	         "shmcache_op_latency_seconds_bucket{segment=\"%s\",op=\"get\",le=\"+Inf\"}", f->name);
	assert_true(prom_sample(r.out, series) == (double)lat.count);
	/* the 1-2-5 bounds are there, 100 ns to 10 s */
	snprintf(series, sizeof series,
	         "shmcache_op_latency_seconds_bucket{segment=\"%s\",op=\"set\",le=\"1e-07\"}", f->name);
	(void)prom_sample(r.out, series);
	snprintf(series, sizeof series,
	         "shmcache_op_latency_seconds_bucket{segment=\"%s\",op=\"fetch\",le=\"10\"}", f->name);
	assert_true(prom_sample(r.out, series) == 0);
	snprintf(series, sizeof series, "shmcache_op_latency_seconds_sum{segment=\"%s\",op=\"get\"}",
	         f->name);
	assert_true(fabs(prom_sample(r.out, series) - (double)lat.sum_ns / 1e9) < 1e-6);
	tu_run_free(&r);
}

static void test_stat_exposition_validator_rejects_broken_text(void **state)
{
	static const char *const bad[] = {
		/* no newline at the end */
		"# HELP a_total x\n# TYPE a_total counter\na_total 1",
		/* sample before its TYPE */
		"# HELP a_total x\na_total 1\n# TYPE a_total counter\n",
		/* no HELP */
		"# TYPE a_total counter\na_total 1\n",
		/* counter not named _total */
		"# HELP a x\n# TYPE a counter\na 1\n",
		/* gauge named _total */
		"# HELP a_total x\n# TYPE a_total gauge\na_total 1\n",
		/* bad label syntax */
		"# HELP g x\n# TYPE g gauge\ng{a=\"1\" 1\n",
		"# HELP g x\n# TYPE g gauge\ng{a=1} 1\n",
		/* bad value */
		"# HELP g x\n# TYPE g gauge\ng one\n",
		/* duplicate series */
		"# HELP g x\n# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"1\"} 2\n",
		/* families interleaved */
		"# HELP g x\n# TYPE g gauge\n# HELP h x\n# TYPE h gauge\ng 1\nh 1\ng{a=\"2\"} 1\n",
		/* histogram: decreasing buckets */
		"# HELP l x\n# TYPE l histogram\nl_bucket{le=\"1\"} 5\nl_bucket{le=\"2\"} 4\n"
		"l_bucket{le=\"+Inf\"} 5\nl_sum 1\nl_count 5\n",
		/* histogram: bounds out of order */
		"# HELP l x\n# TYPE l histogram\nl_bucket{le=\"2\"} 1\nl_bucket{le=\"1\"} 1\n"
		"l_bucket{le=\"+Inf\"} 1\nl_sum 1\nl_count 1\n",
		/* histogram: no +Inf */
		"# HELP l x\n# TYPE l histogram\nl_bucket{le=\"1\"} 1\nl_sum 1\nl_count 1\n",
		/* histogram: +Inf != _count */
		"# HELP l x\n# TYPE l histogram\nl_bucket{le=\"+Inf\"} 2\nl_sum 1\nl_count 3\n",
		/* histogram: no _sum */
		"# HELP l x\n# TYPE l histogram\nl_bucket{le=\"+Inf\"} 2\nl_count 2\n",
	};
	static const char *const good =
		"# HELP a_total x y\n# TYPE a_total counter\na_total{s=\"q\\\"\"} 1\n"
		"# HELP l x\n# TYPE l histogram\nl_bucket{op=\"g\",le=\"1e-07\"} 1\n"
		"l_bucket{op=\"g\",le=\"0.5\"} 1\nl_bucket{op=\"g\",le=\"+Inf\"} 2\nl_sum{op=\"g\"} 0.3\n"
		"l_count{op=\"g\"} 2\n# a comment\n# HELP g x\n# TYPE g gauge\ng -1.5e3 1700000000\n";

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (prom_validate(bad[i]) == NULL)
			fail_msg("validator accepted:\n%s", bad[i]);
	const char *why = prom_validate(good);
	if (why != NULL)
		fail_msg("validator refused a good exposition: %s", why);
}

static void test_stat_hot_table_escapes_binary_keys_and_marks_truncated_ones(void **state)
{
	struct fixture *f = *state;
	static const unsigned char binary[] = {'b', 0x01, '\\', 0xff, 'z'};
	char longkey[100], buf[16];
	size_t vlen;
	struct tu_run r;

	assert_int_equal(tu_open_fresh(f->name, SEGMENT_BYTES, CHUNK_BYTES, 0, &f->c), 0);
	shmc_close(f->c);
	f->c = attach(f->name, 1);
	memset(longkey, 'L', sizeof longkey);
	/* In runs: the sketch takes one sampled lookup in a few, so keys read
	 * in alternation could be taken unevenly. */
	for (int i = 0; i < 40; i++)
		shmc_get(f->c, binary, sizeof binary, buf, sizeof buf, &vlen);
	for (int i = 0; i < 40; i++)
		shmc_get(f->c, longkey, sizeof longkey, buf, sizeof buf, &vlen);
	for (int i = 0; i < 8; i++)
		shmc_get(f->c, "plain", 5, buf, sizeof buf, &vlen);

	tool_run(&r, "--hot", "2", "--once", f->name);
	expect_status(&r, 0);
	expect_out(&r, "b\\x01\\x5c\\xffz");
	expect_out(&r, "LLLL [truncated]");
	assert_null(strstr(r.out, "plain"));       /* only K = 2 keys */
	assert_null(strstr(r.out, "memory"));      /* only the table */
	for (const unsigned char *p = (const unsigned char *)r.out; *p; p++)
		assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f));
	tu_run_free(&r);

	/* --hot without K: 20 keys at most, so "plain" is there (and one
	 * interval's refresh); "--hot=K" works */
	tool_run(&r, "-n", "1", "-i", "0.05", "--hot", f->name);
	expect_status(&r, 0);
	expect_out(&r, "plain");
	tu_run_free(&r);
	tool_run(&r, "--once", "--json", "--hot=1", f->name);
	expect_status(&r, 0);
	struct tu_json *j = parse_line(r.out, r.out_len - 1);
	const struct tu_json *hot = tu_json_member(j, "hot_keys");
	assert_int_equal(tu_json_count(hot), 1);
	tu_json_free(j);
	tu_run_free(&r);

	tool_run(&r, "--once", "--json", "--hot", "3", f->name);
	expect_status(&r, 0);
	j = parse_line(r.out, r.out_len - 1);
	hot = tu_json_member(j, "hot_keys");
	assert_int_equal(tu_json_count(hot), 3);
	for (const struct tu_json *e = hot->child; e != NULL; e = e->next) {
		const char *k = tu_json_member(e, "key")->string;

		if (k[0] == 'L') {
			assert_int_equal(strlen(k), SHMC_HOTKEY_MAX);
			assert_true(tu_json_member(e, "truncated")->boolean);
		} else if (k[0] == 'b') {
			assert_string_equal(k, "b\\x01\\x5c\\xffz");
		}
	}
	tu_json_free(j);
	tu_run_free(&r);
}

static void test_stat_procs_table_lists_each_process(void **state)
{
	struct fixture *f = *state;
	struct tu_run r;
	char pid[32];

	open_with_keys(f);
	traffic_start(f);
	snprintf(pid, sizeof pid, " %ld ", (long)f->traffic);
	tool_run(&r, "--procs", "--once", f->name);
	expect_status(&r, 0);
	expect_out(&r, "3 attached");
	expect_out(&r, pid);
	snprintf(pid, sizeof pid, " %ld ", (long)getpid());
	expect_out(&r, pid);
	expect_out(&r, "(this tool)");
	assert_null(strstr(r.out, "hot keys"));
	tu_run_free(&r);

	tool_run(&r, "--procs", "-n", "1", "-i", "0.1", f->name);
	expect_status(&r, 0);
	expect_out(&r, "gets/s");
	tu_run_free(&r);
}

static void test_stat_missing_segment_exits_1_with_one_line_naming_it(void **state)
{
	struct fixture *f = *state;
	struct tu_run r;
	static const char *const modes[] = {"--once", "--json", "--prometheus", "--hot"};

	for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
		tool_run(&r, modes[i], f->name);
		expect_status(&r, 1);
		if (strstr(r.err, f->name) == NULL || strstr(r.err, "no segment") == NULL)
			fail_msg("stderr: %s", r.err);
		/* one line */
		assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)r.err_len);
		assert_int_equal(r.out_len, 0);
		tu_run_free(&r);
	}
}

static void test_stat_segment_of_another_build_exits_1_naming_it(void **state)
{
	struct fixture *f = *state;
	char path[TU_NAME_MAX + 32];
	unsigned char header[8192] = {0};
	uint64_t magic = SHMC__MAGIC, foreign_sig = 0x0123456789abcdefull;
	struct tu_run r;
	FILE *fp;

	/* our magic, another layout signature: what another build leaves */
	memcpy(header, &magic, 8);
	memcpy(header + 8, &foreign_sig, 8);
	header[16] = 2; /* READY */
	tu_shm_path(path, sizeof path, f->name);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(header, 1, sizeof header, fp), sizeof header);
	assert_int_equal(fclose(fp), 0);

	tool_run(&r, "--once", f->name);
	expect_status(&r, 1);
	if (strstr(r.err, f->name) == NULL || strstr(r.err, "incompatible") == NULL)
		fail_msg("stderr: %s", r.err);
	assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)r.err_len);
	tu_run_free(&r);

	/* garbage: not ours at all */
	memset(header, 0x5a, sizeof header);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(header, 1, sizeof header, fp), sizeof header);
	assert_int_equal(fclose(fp), 0);
	tool_run(&r, "--json", f->name);
	expect_status(&r, 1);
	if (strstr(r.err, f->name) == NULL)
		fail_msg("stderr: %s", r.err);
	tu_run_free(&r);
}

static void test_stat_bad_command_lines_exit_2(void **state)
{
	struct fixture *f = *state;
	const char *const *cases[] = {
		(const char *const[]){NULL},
		(const char *const[]){"--bogus", f->name, NULL},
		(const char *const[]){"-x", f->name, NULL},
		(const char *const[]){f->name, "other", NULL},
		(const char *const[]){"-i", "0", f->name, NULL},
		(const char *const[]){"-i", "abc", f->name, NULL},
		(const char *const[]){"-i", "-1", f->name, NULL},
		(const char *const[]){"-i", NULL},
		(const char *const[]){"-n", "0", f->name, NULL},
		(const char *const[]){"-n", "2x", f->name, NULL},
		(const char *const[]){"--count", NULL},
		(const char *const[]){"--hot=0", f->name, NULL},
		(const char *const[]){"--hot=999", f->name, NULL},
		(const char *const[]){"--json", "--prometheus", f->name, NULL},
		(const char *const[]){"--prometheus", "--hot", f->name, NULL},
		(const char *const[]){"--prometheus", "--nodes", f->name, NULL},
		(const char *const[]){"--prometheus", "-n", "2", f->name, NULL},
		(const char *const[]){"--once", "-i", "2", f->name, NULL},
		(const char *const[]){"--once", "bad/name", NULL},
	};

	open_with_keys(f);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct tu_run r;

		tool_runv(&r, cases[i]);
		if (r.status != 2 || strstr(r.err, "usage: shmcache-stat") == NULL)
			fail_msg("case %zu (%s ...): status %d, stderr: %s", i,
			         cases[i][0] ? cases[i][0] : "(none)", r.status, r.err);
		assert_int_equal(r.out_len, 0);
		tu_run_free(&r);
	}
}

static void test_stat_help_and_version_exit_0(void **state)
{
	struct tu_run r;

	(void)state;
	tool_run(&r, "--help");
	expect_status(&r, 0);
	expect_out(&r, "usage: shmcache-stat");
	expect_out(&r, "--prometheus");
	tu_run_free(&r);
	tool_run(&r, "-V");
	expect_status(&r, 0);
	expect_out(&r, "shmcache-stat ");
	tu_run_free(&r);
}

/* A port on 127.0.0.1 that refuses connections: bound, never listening.
 * *fd keeps it bound; the caller closes it. */
static uint16_t refused_port(int *fd)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*fd >= 0);
	assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &alen), 0);
	return ntohs(a.sin_port);
}

static shmc_cache *attach_uplink(const char *name, const char *uri)
{
	shmc_opts *o;
	shmc_cache *c = NULL;

	assert_int_equal(shmc_opts_create(&o), 0);
	assert_int_equal(shmc_opts_set_sweeper(o, 0), 0);
	assert_int_equal(shmc_opts_set_uplink(o, uri), 0);
	assert_int_equal(shmc_open(name, o, 0, &c), 0);
	shmc_opts_destroy(o);
	return c;
}

/* The library's entry for addr, waiting (up to 2 s) for it to show state. */
static void wait_breaker(shmc_cache *c, const char *addr, uint32_t state)
{
	for (int i = 0; i < 1000; i++) {
		struct shmc_uplink_node nodes[8];
		size_t n;

		assert_int_equal(shmc_uplink_nodes(c, nodes, 8, &n), 0);
		for (size_t k = 0; k < n && k < 8; k++)
			if (!strcmp(nodes[k].addr, addr) && nodes[k].state == state)
				return;
		tu_sleep_ms(2);
	}
	fail_msg("no breaker of %s in state %u", addr, state);
}

static const struct tu_json *json_node(const struct tu_json *j, const char *addr)
{
	for (const struct tu_json *e = tu_json_member(j, "uplink_nodes")->child; e; e = e->next)
		if (!strcmp(tu_json_member(e, "addr")->string, addr))
			return e;
	fail_msg("uplink_nodes has no %s", addr);
	return NULL;
}

static void test_stat_uplink_breakers_shown_in_text_json_and_prometheus(void **state)
{
	struct fixture *f = *state;
	int fd_open, fd_closed;
	char open_addr[32], closed_addr[32], uri[128], series[512], line[128];
	char buf[8];
	size_t vlen;
	struct tu_run r;

	open_with_keys(f);
	/* Two uplinks, each to a port that refuses connections: one opens its
	 * breaker at the first failure, the other would need 1000. */
	snprintf(open_addr, sizeof open_addr, "127.0.0.1:%u", (unsigned)refused_port(&fd_open));
	snprintf(closed_addr, sizeof closed_addr, "127.0.0.1:%u", (unsigned)refused_port(&fd_closed));
	snprintf(uri, sizeof uri, "redis://%s?breaker_failures=1&breaker_open_ms=600000", open_addr);
	shmc_cache *up_open = attach_uplink(f->name, uri);
	snprintf(uri, sizeof uri, "redis://%s?breaker_failures=1000", closed_addr);
	shmc_cache *up_closed = attach_uplink(f->name, uri);
	assert_int_equal(shmc_fetch(up_open, "k", 1, buf, sizeof buf, &vlen, NULL, NULL),
	                 SHMC_EUPLINK);
	wait_breaker(f->c, open_addr, SHMC_BREAKER_OPEN);
	wait_breaker(f->c, closed_addr, SHMC_BREAKER_CLOSED);

	tool_run(&r, "--once", f->name);
	expect_status(&r, 0);
	expect_out(&r, "breakers     2 (one per process and remote node): 1 closed, 1 open, 0 half-open");
	snprintf(line, sizeof line, "%8ld open ", (long)getpid());
	expect_out(&r, line);
	expect_out(&r, open_addr);
	expect_out(&r, closed_addr);
	expect_out(&r, "hot keys");
	tu_run_free(&r);

	tool_run(&r, "--nodes", "--once", f->name);
	expect_status(&r, 0);
	expect_out(&r, "uplink breakers of ");
	expect_out(&r, open_addr);
	assert_null(strstr(r.out, "hot keys"));
	assert_null(strstr(r.out, "operations"));
	tu_run_free(&r);

	tool_run(&r, "--once", "--json", f->name);
	expect_status(&r, 0);
	struct tu_json *j = parse_line(r.out, r.out_len - 1);
	check_json_schema(j);
	assert_int_equal(tu_json_count(tu_json_member(j, "uplink_nodes")), 2);
	const struct tu_json *e = json_node(j, open_addr);
	assert_string_equal(tu_json_member(e, "state")->string, "open");
	assert_int_equal(ju64(e, "pid"), (uint64_t)getpid());
	assert_int_equal(ju64(e, "failures"), 1);
	assert_int_equal(ju64(e, "breaker_opens"), 1);
	e = json_node(j, closed_addr);
	assert_string_equal(tu_json_member(e, "state")->string, "closed");
	assert_true(ju64(e, "failures") >= 1);
	assert_int_equal(ju64(e, "breaker_opens"), 0);
	tu_json_free(j);
	tu_run_free(&r);

	tool_run(&r, "--prometheus", f->name);
	expect_status(&r, 0);
	const char *why = prom_validate(r.out);
	if (why != NULL)
		fail_msg("invalid exposition: %s\n%s", why, r.out);
	static const char *const states[] = {"closed", "open", "half-open"};
	for (int k = 0; k < 3; k++) {
		snprintf(series, sizeof series,
		         "shmcache_uplink_breakers{segment=\"%s\",node=\"%s\",state=\"%s\"}",
		         f->name, open_addr, states[k]);
		assert_true(prom_sample(r.out, series) == (k == 1 ? 1.0 : 0.0));
		snprintf(series, sizeof series,
		         "shmcache_uplink_breakers{segment=\"%s\",node=\"%s\",state=\"%s\"}",
		         f->name, closed_addr, states[k]);
		assert_true(prom_sample(r.out, series) == (k == 0 ? 1.0 : 0.0));
	}
	tu_run_free(&r);

	/* closed handles leave no breaker behind */
	shmc_close(up_open);
	shmc_close(up_closed);
	close(fd_open);
	close(fd_closed);
	tool_run(&r, "--nodes", "--once", f->name);
	expect_status(&r, 0);
	expect_out(&r, "none (no attached process uses an uplink)");
	tu_run_free(&r);
}

/* The slot of the process with pid, if it still holds one. */
static bool holds_proc_slot(shmc_cache *c, pid_t pid)
{
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (__atomic_load_n(&c->procs[p].state, __ATOMIC_ACQUIRE) != SHMC__PROC_FREE &&
		    __atomic_load_n(&c->procs[p].pid, __ATOMIC_RELAXED) == (uint32_t)pid)
			return true;
	return false;
}

static void test_stat_sigterm_and_sigint_close_the_handle_and_exit_0(void **state)
{
	struct fixture *f = *state;
	static const int sigs[] = {SIGTERM, SIGINT};

	open_with_keys(f);
	for (size_t i = 0; i < 2; i++) {
		const char *const args[] = {"--json", "-i", "0.05", f->name, NULL};
		int out_fd, err_fd;
		pid_t pid = tool_spawn(args, &out_fd, &err_fd);
		struct tu_run r;
		struct stat st;
		int waited = 0;

		/* until it has attached and reported twice */
		while (fstat(out_fd, &st) == 0 && waited < 10000) {
			char *text;
			size_t len;
			unsigned lines = 0;

			if (st.st_size > 0 && (text = tu_slurp_fd(out_fd, &len)) != NULL) {
				for (size_t k = 0; k < len; k++)
					lines += text[k] == '\n';
				free(text);
			}
			if (lines >= 2)
				break;
			tu_sleep_ms(10);
			waited += 10;
		}
		assert_true(holds_proc_slot(f->c, pid));
		assert_int_equal(kill(pid, sigs[i]), 0);
		tool_collect(&r, pid, out_fd, err_fd);
		expect_status(&r, 0);
		assert_int_equal(r.err_len, 0);
		/* every line it wrote is whole */
		assert_true(r.out_len > 0 && r.out[r.out_len - 1] == '\n');
		for (char *line = r.out; *line;) {
			char *nl = strchr(line, '\n');
			struct tu_json *j = parse_line(line, (size_t)(nl - line));

			tu_json_free(j);
			line = nl + 1;
		}
		/* closed, not just dead: the slot is free without any reaping */
		assert_false(holds_proc_slot(f->c, pid));
		tu_run_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_stat_once_shows_every_section),
		TEST(test_stat_once_json_matches_the_library),
		TEST(test_stat_json_intervals_have_documented_fields_and_rates),
		TEST(test_stat_interval_text_repeats_without_screen_control),
		TEST(test_stat_prometheus_output_is_a_valid_exposition),
		TEST(test_stat_exposition_validator_rejects_broken_text),
		TEST(test_stat_hot_table_escapes_binary_keys_and_marks_truncated_ones),
		TEST(test_stat_procs_table_lists_each_process),
		TEST(test_stat_uplink_breakers_shown_in_text_json_and_prometheus),
		TEST(test_stat_missing_segment_exits_1_with_one_line_naming_it),
		TEST(test_stat_segment_of_another_build_exits_1_naming_it),
		TEST(test_stat_bad_command_lines_exit_2),
		TEST(test_stat_help_and_version_exit_0),
		TEST(test_stat_sigterm_and_sigint_close_the_handle_and_exit_0),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
