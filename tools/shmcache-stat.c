/*
 * shmcache-stat - live statistics of a libshmcache segment, top-style.
 *
 *   shmcache-stat [options] NAME
 *
 * Every interval the tool takes a snapshot (shmc_stats, shmc_stats_procs,
 * the three raw latency histograms, the hot keys, the uplink breakers of
 * every process from shmc_uplink_nodes) and reports the
 * difference from the previous one: rates per second, the hit ratio of the
 * interval, and latency percentiles computed from the histogram deltas, so
 * that a latency spike shows in the interval it happened instead of being
 * diluted into the whole history. An operation with no sample in the
 * interval falls back to its cumulative histogram, and every report says
 * which of the two it shows. --once reports the cumulative totals at once;
 * --prometheus prints them in the text exposition format for a textfile
 * collector.
 *
 * The tool attaches like an application but read-only (SHMC_RDONLY), never
 * creates the segment, never takes the sweeper role and samples nothing
 * (period 0), so watching a cache does not change what it measures, except
 * for the process slot the tool occupies while attached (it counts in
 * "procs attached" and is marked in the per-process table).
 *
 * Counters are monotonic except at the instant a process detaches (its
 * counts move from its slots to the host totals); a counter that appears
 * to go backwards counts as 0 for that interval.
 *
 * Exit status: 0 success (also when stopped by SIGINT or SIGTERM, or when
 * the reader of stdout goes away), 1 the segment could not be attached or
 * read, or stdout could not be written, 2 usage error. docs/shmcache-stat.1
 * is the manual and lists the stable JSON and Prometheus names.
 */
#include "shmcache.h"

#include "obs.h"     /* SHMC__HOT_SLOTS: how many keys the sketch can report */
#include "segment.h" /* shmc__segment_path: the rule for segment names */

#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isnan, isfinite, NAN: macros, no libm */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* could not attach, read or write */
	EXIT_USAGE = 2,  /* bad command line */
};

/* Bumped when a field of the JSON output is renamed, removed or changes
 * meaning (never for an addition). */
#define JSON_FORMAT 1

#define INTERVAL_MIN_S 0.01
#define INTERVAL_MAX_S 86400.0
#define HOT_IN_FULL_VIEW 10                 /* hot keys under the full view */
#define NODES_IN_FULL_VIEW 10               /* breakers under the full view */
#define HOT_MAX SHMC__HOT_SLOTS             /* the sketch holds no more */
#define KEY_TEXT_MAX (SHMC_HOTKEY_MAX * 4 + 1) /* every byte as \xNN */

/* The operations reported, by their names in every output format. An
 * operation the library adds is reported once it has a name here (and in
 * docs/shmcache-stat.1); until then it is skipped. */
static const char *const op_names[SHMC_NOPS] = {
	[SHMC_OP_GET] = "get",
	[SHMC_OP_SET] = "set",
	[SHMC_OP_FETCH] = "fetch",
};

/* ------------------------------------------------------------ signals */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* No SA_RESTART: the interval sleep returns at once on a signal. SIGPIPE
 * is ignored so that a reader that goes away (`| head -1`) shows as EPIPE
 * on a write, and the handle is still closed. */
static void signals_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------- config */

struct config {
	const char *name;
	double interval_s;
	uint64_t count; /* intervals to report; 0 = until stopped */
	bool interval_given, count_given;
	bool once;
	bool json;
	bool prometheus;
	bool hot_only;
	bool procs_only;
	bool nodes_only;
	unsigned hot_k; /* keys shown */
};

static const char usage_text[] =
	"usage: shmcache-stat [options] NAME\n"
	"\n"
	"Live statistics of libshmcache segment NAME: rates, hit ratio, latency\n"
	"percentiles, memory, the sweeper, attached processes and the hottest keys,\n"
	"refreshed every interval. Rates and latencies cover the last interval.\n"
	"\n"
	"  -i, --interval SECONDS   refresh period (default 1; fractions allowed, 0.01..86400)\n"
	"  -n, --count COUNT        stop after COUNT intervals (default: until interrupted)\n"
	"      --once               print the cumulative totals once and exit\n"
	"      --json               one JSON object per interval, each on one line\n"
	"      --prometheus         Prometheus text exposition (format 0.0.4) of the\n"
	"                           cumulative totals, once, then exit\n"
	"      --hot [K]            only the hot-key table, K keys (default 20, at most 256)\n"
	"      --procs              only the per-process table\n"
	"      --nodes              only the uplink breakers: each process's remote nodes\n"
	"  -h, --help               this text\n"
	"  -V, --version            the version\n"
	"\n"
	"Exit status: 0 success or interrupted, 1 the segment could not be attached\n"
	"or read, 2 usage error. See shmcache-stat(1).\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("shmcache-stat: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nusage: shmcache-stat [options] NAME\nTry 'shmcache-stat --help'.\n", stderr);
	return EXIT_USAGE;
}

static bool parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return false;
	uint64_t v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*s != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= INTERVAL_MIN_S && v <= INTERVAL_MAX_S))
		return false;
	*out = v;
	return true;
}

static bool is_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* Does argv[from..] hold an operand (a word that is neither an option nor
 * the value of one)? Decides whether a number after --hot is K or NAME. */
static bool operand_follows(int argc, char **argv, int from)
{
	for (int i = from; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--"))
			return i + 1 < argc;
		if (a[0] != '-' || a[1] == '\0')
			return true;
		if (!strcmp(a, "-i") || !strcmp(a, "-n") || !strcmp(a, "--interval") ||
		    !strcmp(a, "--count"))
			i++;
	}
	return false;
}

/* The value of the option in arg, whose name is `spelled` bytes long:
 * inline after '=' (long) or after the letter (short), else the next
 * argument. */
static const char *option_value(int argc, char **argv, int *i, const char *arg, size_t spelled)
{
	if (arg[spelled] == '=' && arg[1] == '-')
		return arg + spelled + 1;
	if (arg[spelled] != '\0' && arg[1] != '-')
		return arg + spelled;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

/* Options and the one operand in any order; "--" ends the options. Returns
 * -1 to go on, or an exit status (help, version, usage error). */
static int config_parse(int argc, char **argv, struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->interval_s = 1.0;
	cfg->hot_k = HOT_IN_FULL_VIEW;
	bool options_done = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (options_done || a[0] != '-' || a[1] == '\0') {
			if (cfg->name)
				return usage_error("unexpected operand '%s'", a);
			cfg->name = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			options_done = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return EXIT_OK;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("shmcache-stat %d.%d.%d\n", SHMC_VERSION_MAJOR, SHMC_VERSION_MINOR,
			       SHMC_VERSION_PATCH);
			return EXIT_OK;
		} else if (!strncmp(a, "-i", 2) || !strcmp(a, "--interval") ||
			   !strncmp(a, "--interval=", 11)) {
			const char *v = option_value(argc, argv, &i, a, a[1] == '-' ? 10 : 2);
			if (!v)
				return usage_error("option '%s' needs a value", a);
			if (!parse_seconds(v, &cfg->interval_s))
				return usage_error("--interval %s: expected seconds from %g to %g", v,
						   INTERVAL_MIN_S, INTERVAL_MAX_S);
			cfg->interval_given = true;
		} else if (!strncmp(a, "-n", 2) || !strcmp(a, "--count") ||
			   !strncmp(a, "--count=", 8)) {
			const char *v = option_value(argc, argv, &i, a, a[1] == '-' ? 7 : 2);
			if (!v)
				return usage_error("option '%s' needs a value", a);
			if (!parse_count(v, 1, UINT64_MAX, &cfg->count))
				return usage_error("--count %s: expected a whole number, at least 1", v);
			cfg->count_given = true;
		} else if (!strcmp(a, "--once")) {
			cfg->once = true;
		} else if (!strcmp(a, "--json")) {
			cfg->json = true;
		} else if (!strcmp(a, "--prometheus")) {
			cfg->prometheus = true;
		} else if (!strcmp(a, "--procs")) {
			cfg->procs_only = true;
		} else if (!strcmp(a, "--nodes")) {
			cfg->nodes_only = true;
		} else if (!strcmp(a, "--hot") || !strncmp(a, "--hot=", 6)) {
			uint64_t k = SHMC_HOTKEYS_DEFAULT;
			const char *v = a[5] == '=' ? a + 6 : NULL;
			/* "--hot 5 NAME": 5 is K; "--hot 5" alone: 5 is NAME. */
			if (!v && i + 1 < argc && is_digits(argv[i + 1]) &&
			    (cfg->name || operand_follows(argc, argv, i + 2)))
				v = argv[++i];
			if (v && !parse_count(v, 1, HOT_MAX, &k))
				return usage_error("--hot %s: expected a number of keys from 1 to %d",
						   v, HOT_MAX);
			cfg->hot_only = true;
			cfg->hot_k = (unsigned)k;
		} else {
			return usage_error("unknown option '%s'", a);
		}
	}
	if (!cfg->name)
		return usage_error("missing segment NAME");
	char path[SHMC__NAME_MAX + 16];
	if (shmc__segment_path(cfg->name, path, sizeof path))
		return usage_error("'%s' is not a segment name (1 to %u bytes of [A-Za-z0-9._-])",
				   cfg->name, SHMC__NAME_MAX);
	if (cfg->json && cfg->prometheus)
		return usage_error("--json and --prometheus exclude each other");
	if (cfg->prometheus && (cfg->hot_only || cfg->procs_only || cfg->nodes_only))
		return usage_error("--hot, --procs and --nodes select tables of the text output; "
				   "--prometheus exports every metric");
	if ((cfg->once || cfg->prometheus) && (cfg->interval_given || cfg->count_given))
		return usage_error("%s prints once: it takes no --interval or --count",
				   cfg->prometheus ? "--prometheus" : "--once");
	return -1;
}

/* ---------------------------------------------------------- snapshots */

struct snapshot {
	uint64_t mono_ns;
	uint64_t unix_ms;
	struct shmc_stats st;
	uint64_t hist[SHMC_NOPS][SHMC_LATENCY_BUCKETS];
	struct shmc_latency lat[SHMC_NOPS]; /* for the exact sum and max */
	struct shmc_proc_stats *procs;
	size_t nprocs;
	struct shmc_hotkey hot[HOT_MAX];
	size_t nhot;
	struct shmc_uplink_node *nodes;
	size_t nnodes;
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void snapshot_free(struct snapshot *s)
{
	if (s) {
		free(s->procs);
		free(s->nodes);
		free(s);
	}
}

/* Returns 0 or the failed call's code (*what names it). */
static int snapshot_take(shmc_cache *c, size_t hot_cap, struct snapshot **out,
			 const char **what)
{
	struct snapshot *s = calloc(1, sizeof *s);
	if (!s) {
		*what = "memory for a snapshot";
		return SHMC_ENOMEM;
	}
	int rc;
	s->mono_ns = clock_ns(CLOCK_MONOTONIC);
	s->unix_ms = clock_ns(CLOCK_REALTIME) / 1000000u;
	if ((rc = shmc_stats(c, &s->st)) != 0) {
		*what = "shmc_stats";
		goto fail;
	}
	for (int op = 0; op < SHMC_NOPS; op++) {
		if ((rc = shmc_latency_histogram(c, (enum shmc_op)op, s->hist[op])) != 0 ||
		    (rc = shmc_latency(c, (enum shmc_op)op, &s->lat[op])) != 0) {
			*what = "shmc_latency";
			goto fail;
		}
	}
	/* Processes come and go between the sizing call and the filling one:
	 * leave room, and keep what fits. */
	size_t n = 0;
	if ((rc = shmc_stats_procs(c, NULL, 0, &n)) != 0) {
		*what = "shmc_stats_procs";
		goto fail;
	}
	size_t cap = n + 16;
	s->procs = calloc(cap, sizeof *s->procs);
	if (!s->procs) {
		rc = SHMC_ENOMEM;
		*what = "memory for a snapshot";
		goto fail;
	}
	if ((rc = shmc_stats_procs(c, s->procs, cap, &n)) != 0) {
		*what = "shmc_stats_procs";
		goto fail;
	}
	s->nprocs = n < cap ? n : cap;
	if ((rc = shmc_hotkeys(c, s->hot, hot_cap, &s->nhot)) != 0) {
		*what = "shmc_hotkeys";
		goto fail;
	}
	/* Uplinks start and stop between the two calls as processes do. */
	if ((rc = shmc_uplink_nodes(c, NULL, 0, &n)) != 0) {
		*what = "shmc_uplink_nodes";
		goto fail;
	}
	cap = n + 16;
	s->nodes = calloc(cap, sizeof *s->nodes);
	if (!s->nodes) {
		rc = SHMC_ENOMEM;
		*what = "memory for a snapshot";
		goto fail;
	}
	if ((rc = shmc_uplink_nodes(c, s->nodes, cap, &n)) != 0) {
		*what = "shmc_uplink_nodes";
		goto fail;
	}
	s->nnodes = n < cap ? n : cap;
	*out = s;
	return 0;
fail:
	snapshot_free(s);
	return rc;
}

/* ------------------------------------------------------------ figures */

/* The cumulative counters reported as totals and rates, in output order.
 * The JSON names are these; the Prometheus names are in prom_counters. */
struct counter_def {
	const char *name;
	size_t offset; /* in struct shmc_stats */
};

#define COUNTER(field) {#field, offsetof(struct shmc_stats, field)}
static const struct counter_def counters[] = {
	COUNTER(gets),
	COUNTER(hits),
	COUNTER(misses),
	COUNTER(sets),
	COUNTER(deletes),
	COUNTER(incrs),
	COUNTER(expirations),
	COUNTER(evictions),
	COUNTER(evictions_probation),
	COUNTER(evictions_clock),
	COUNTER(evictions_direct),
	COUNTER(enospc),
	COUNTER(bytes_written),
	COUNTER(promotions),
	COUNTER(sweeper_passes),
	COUNTER(sweeper_handovers),
	COUNTER(fills),
	COUNTER(coalesced_waits),
	COUNTER(origin_calls),
	COUNTER(lease_takeovers),
	COUNTER(negative_hits),
	COUNTER(stale_serves),
	COUNTER(refreshes),
	COUNTER(loader_errors),
	COUNTER(stale_if_error),
	COUNTER(uplink_batches),
	COUNTER(uplink_ops),
	COUNTER(uplink_err_connect),
	COUNTER(uplink_err_timeout),
	COUNTER(uplink_err_protocol),
	COUNTER(uplink_err_reply),
	COUNTER(uplink_fast_fails),
	COUNTER(uplink_breaker_opens),
	COUNTER(uplink_redirects),
	COUNTER(uplink_topology_refreshes),
	COUNTER(write_behind_queued),
	COUNTER(write_behind_dropped),
	COUNTER(write_behind_failed),
};
#undef COUNTER
#define N_COUNTERS (sizeof(counters) / sizeof(counters[0]))

static uint64_t stat_field(const struct shmc_stats *st, size_t offset)
{
	uint64_t v;
	memcpy(&v, (const char *)st + offset, sizeof v);
	return v;
}

/* cur - prev, or 0 if the counter went backwards (a detaching process's
 * counts in flight between its slots and the host totals). */
static uint64_t delta(uint64_t cur, uint64_t prev)
{
	return cur > prev ? cur - prev : 0;
}

/* The midpoint of the bucket holding the q-quantile: the rule of
 * shmc_latency(), so that cumulative figures match the library's. */
static uint64_t hist_percentile(const uint64_t *counts, uint64_t total, double q)
{
	uint64_t rank = (uint64_t)(q * (double)(total - 1)), seen = 0;
	for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++) {
		seen += counts[i];
		if (seen > rank) {
			uint64_t lo = shmc_latency_bucket_lower(i);
			uint64_t hi = shmc_latency_bucket_lower(i + 1);
			return hi > lo + 1 ? lo + (hi - lo) / 2 : lo;
		}
	}
	return shmc_latency_bucket_lower(SHMC_LATENCY_BUCKETS - 1);
}

/* One operation's latency as reported: from the interval's histogram
 * delta when the interval has samples, else from the cumulative one. */
struct lat_view {
	bool interval;    /* false: cumulative */
	uint64_t samples; /* in the histogram used */
	uint64_t p50_ns, p90_ns, p99_ns, p999_ns;
	uint64_t max_ns;  /* cumulative: exact; interval: its top bucket's midpoint */
	double mean_ns;
};

static void lat_view_make(const struct snapshot *cur, const struct snapshot *prev, int op,
			  struct lat_view *v)
{
	uint64_t d[SHMC_LATENCY_BUCKETS], total = 0;
	memset(v, 0, sizeof *v);
	if (prev) {
		for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++) {
			d[i] = delta(cur->hist[op][i], prev->hist[op][i]);
			total += d[i];
		}
	}
	const uint64_t *h = d;
	if (total) {
		v->interval = true;
		uint64_t dsum = delta(cur->lat[op].sum_ns, prev->lat[op].sum_ns);
		v->mean_ns = (double)dsum / (double)total;
		v->max_ns = hist_percentile(d, total, 1.0);
	} else {
		h = cur->hist[op];
		for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++)
			total += h[i];
		v->max_ns = cur->lat[op].max_ns;
		v->mean_ns = total ? (double)cur->lat[op].sum_ns / (double)total : 0;
	}
	v->samples = total;
	if (!total)
		return;
	v->p50_ns = hist_percentile(h, total, 0.50);
	v->p90_ns = hist_percentile(h, total, 0.90);
	v->p99_ns = hist_percentile(h, total, 0.99);
	v->p999_ns = hist_percentile(h, total, 0.999);
}

/* What one report shows: the interval between prev and cur, or (prev
 * NULL) the totals since the segment was created. */
struct report {
	const struct config *cfg;
	const struct snapshot *cur, *prev;
	double seconds;              /* interval length; 0 when cumulative */
	uint64_t delta[N_COUNTERS];  /* over the interval, or the totals */
	struct lat_view lat[SHMC_NOPS];
	double hit_ratio;            /* NAN: no lookups */
	double index_load;
	double avg_item_bytes;
};

static uint64_t report_counter(const struct report *r, const char *name)
{
	for (size_t k = 0; k < N_COUNTERS; k++)
		if (!strcmp(counters[k].name, name))
			return r->delta[k];
	return 0;
}

static double report_rate(const struct report *r, const char *name)
{
	return r->seconds > 0 ? (double)report_counter(r, name) / r->seconds : 0;
}

static void report_make(struct report *r, const struct config *cfg, const struct snapshot *cur,
			const struct snapshot *prev)
{
	memset(r, 0, sizeof *r);
	r->cfg = cfg;
	r->cur = cur;
	r->prev = prev;
	if (prev)
		r->seconds = (double)(cur->mono_ns - prev->mono_ns) / 1e9;
	for (size_t k = 0; k < N_COUNTERS; k++) {
		uint64_t now = stat_field(&cur->st, counters[k].offset);
		r->delta[k] = prev ? delta(now, stat_field(&prev->st, counters[k].offset)) : now;
	}
	for (int op = 0; op < SHMC_NOPS; op++)
		lat_view_make(cur, prev, op, &r->lat[op]);
	uint64_t gets = report_counter(r, "gets"), hits = report_counter(r, "hits");
	r->hit_ratio = gets ? (double)(hits < gets ? hits : gets) / (double)gets : NAN;
	const struct shmc_stats *st = &cur->st;
	r->index_load = st->index_slots ? (double)st->items / (double)st->index_slots : 0;
	r->avg_item_bytes = st->items ? (double)st->bytes_live / (double)st->items : 0;
}

/* The previous snapshot's entry of the same process (pid and attach time
 * both match: a recycled pid is another process). */
static const struct shmc_proc_stats *proc_before(const struct snapshot *prev,
						 const struct shmc_proc_stats *p)
{
	if (!prev)
		return NULL;
	for (size_t i = 0; i < prev->nprocs; i++)
		if (prev->procs[i].pid == p->pid &&
		    prev->procs[i].attach_unix_ms == p->attach_unix_ms)
			return &prev->procs[i];
	return NULL;
}

/* A key for a terminal or a JSON string: printable ASCII as is, any
 * other byte and the backslash as \xNN, so the text maps back to the
 * bytes exactly. out holds KEY_TEXT_MAX bytes. */
static const char *key_text(const struct shmc_hotkey *h, char *out)
{
	size_t at = 0;
	for (size_t i = 0; i < h->klen && i < SHMC_HOTKEY_MAX; i++) {
		unsigned char b = h->key[i];
		if (b >= 0x20 && b < 0x7f && b != '\\')
			out[at++] = (char)b;
		else
			at += (size_t)snprintf(out + at, KEY_TEXT_MAX - at, "\\x%02x", b);
	}
	out[at] = '\0';
	return out;
}

/* A breaker state as every output names it. */
static const char *breaker_name(uint32_t state)
{
	switch (state) {
	case SHMC_BREAKER_CLOSED:
		return "closed";
	case SHMC_BREAKER_OPEN:
		return "open";
	case SHMC_BREAKER_HALF_OPEN:
		return "half-open";
	default:
		return "unknown";
	}
}

#define N_BREAKER_STATES 3

/* A node's address for a terminal: bytes outside printable ASCII (a
 * socket path may hold any) become '?'. out holds SHMC_UPLINK_ADDR_MAX. */
static const char *addr_text(const char *addr, char *out)
{
	size_t i = 0;
	for (; addr[i] && i + 1 < SHMC_UPLINK_ADDR_MAX; i++)
		out[i] = (unsigned char)addr[i] >= 0x20 && (unsigned char)addr[i] < 0x7f ? addr[i]
											 : '?';
	out[i] = '\0';
	return out;
}

/* ------------------------------------------------------- text output */

/* Short human figures. Each call takes the next of a few static buffers,
 * so that several fit in one printf. */
static char *fmt_buf(void)
{
	static char ring[24][40];
	static unsigned next;
	return ring[next++ % 24];
}

static const char *fmt_count(double v)
{
	char *b = fmt_buf();
	if (v >= 1e9)
		snprintf(b, 40, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(b, 40, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, 40, "%.1fk", v / 1e3);
	else if (v >= 100 || v == (double)(uint64_t)v)
		snprintf(b, 40, "%.0f", v);
	else
		snprintf(b, 40, "%.1f", v);
	return b;
}

static const char *fmt_bytes(double v)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	char *b = fmt_buf();
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(b, 40, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return b;
}

static const char *fmt_ns(uint64_t ns)
{
	char *b = fmt_buf();
	if (ns < 1000)
		snprintf(b, 40, "%" PRIu64 "ns", ns);
	else if (ns < 1000000)
		snprintf(b, 40, "%.2fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(b, 40, "%.2fms", (double)ns / 1e6);
	else
		snprintf(b, 40, "%.2fs", (double)ns / 1e9);
	return b;
}

static const char *fmt_pct(double ratio)
{
	char *b = fmt_buf();
	if (isnan(ratio))
		snprintf(b, 40, "-");
	else
		snprintf(b, 40, "%.1f%%", 100 * ratio);
	return b;
}

/* "3d04h", "2h05m", "4m07s", "12s": how long a process has been attached. */
static const char *fmt_age(uint64_t now_ms, uint64_t since_ms)
{
	char *b = fmt_buf();
	uint64_t s = now_ms > since_ms ? (now_ms - since_ms) / 1000 : 0;
	if (s >= 86400)
		snprintf(b, 40, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(b, 40, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(b, 40, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(b, 40, "%" PRIu64 "s", s);
	return b;
}

/* A counter over the report: "12.3k/s" over an interval, the plain total
 * when cumulative. */
static const char *fmt_counter(const struct report *r, const char *name)
{
	if (!r->prev)
		return fmt_count((double)report_counter(r, name));
	char *b = fmt_buf();
	snprintf(b, 40, "%s/s", fmt_count(report_rate(r, name)));
	return b;
}

static void text_header(const struct report *r)
{
	char when[64] = "?";
	time_t t = (time_t)(r->cur->unix_ms / 1000);
	struct tm tm;
	if (localtime_r(&t, &tm))
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	if (r->prev)
		printf("shmcache-stat %s  %s  interval %.2f s (rates per second)\n",
		       r->cfg->name, when, r->seconds);
	else
		printf("shmcache-stat %s  %s  cumulative since the segment was created\n",
		       r->cfg->name, when);
}

static void text_operations(const struct report *r)
{
	printf("operations   gets %s  hit ratio %s  sets %s  deletes %s  incrs %s\n",
	       fmt_counter(r, "gets"), fmt_pct(r->hit_ratio), fmt_counter(r, "sets"),
	       fmt_counter(r, "deletes"), fmt_counter(r, "incrs"));
	printf("             expirations %s  evictions %s (probation %s, clock %s, direct %s)\n",
	       fmt_counter(r, "expirations"), fmt_counter(r, "evictions"),
	       fmt_counter(r, "evictions_probation"), fmt_counter(r, "evictions_clock"),
	       fmt_counter(r, "evictions_direct"));
	const char *written = r->prev ? fmt_bytes(report_rate(r, "bytes_written"))
				      : fmt_bytes((double)report_counter(r, "bytes_written"));
	printf("             refused (ENOSPC) %s  written %s%s  promotions %s\n",
	       fmt_counter(r, "enospc"), written, r->prev ? "/s" : "",
	       fmt_counter(r, "promotions"));
	printf("read-through fills %s  coalesced waits %s  origin calls %s  takeovers %s\n",
	       fmt_counter(r, "fills"), fmt_counter(r, "coalesced_waits"),
	       fmt_counter(r, "origin_calls"), fmt_counter(r, "lease_takeovers"));
	printf("             negative hits %s  stale serves %s (if error %s)  refreshes %s  "
	       "loader errors %s\n",
	       fmt_counter(r, "negative_hits"), fmt_counter(r, "stale_serves"),
	       fmt_counter(r, "stale_if_error"), fmt_counter(r, "refreshes"),
	       fmt_counter(r, "loader_errors"));
	printf("uplink       round trips %s  ops %s  errors: connect %s timeout %s protocol %s "
	       "reply %s\n",
	       fmt_counter(r, "uplink_batches"), fmt_counter(r, "uplink_ops"),
	       fmt_counter(r, "uplink_err_connect"), fmt_counter(r, "uplink_err_timeout"),
	       fmt_counter(r, "uplink_err_protocol"), fmt_counter(r, "uplink_err_reply"));
	printf("             fast fails %s  breaker opens %s  redirects %s  topology refreshes %s  "
	       "write-behind queued %s dropped %s failed %s\n",
	       fmt_counter(r, "uplink_fast_fails"), fmt_counter(r, "uplink_breaker_opens"),
	       fmt_counter(r, "uplink_redirects"), fmt_counter(r, "uplink_topology_refreshes"),
	       fmt_counter(r, "write_behind_queued"), fmt_counter(r, "write_behind_dropped"),
	       fmt_counter(r, "write_behind_failed"));
}

static void text_latency(const struct report *r)
{
	printf("latency      %-6s %8s %8s %8s %8s %8s %8s  %s\n", "op", "samples", "p50", "p90",
	       "p99", "p99.9", "max", "from");
	for (int op = 0; op < SHMC_NOPS; op++) {
		if (!op_names[op])
			continue;
		const struct lat_view *v = &r->lat[op];
		const char *from = v->interval ? "interval"
				   : r->prev   ? "cumulative (none this interval)"
					       : "cumulative";
		if (!v->samples) {
			printf("             %-6s %8s %8s %8s %8s %8s %8s  %s\n", op_names[op], "0", "-",
			       "-", "-", "-", "-", "no samples yet");
			continue;
		}
		printf("             %-6s %8s %8s %8s %8s %8s %8s  %s\n", op_names[op],
		       fmt_count((double)v->samples), fmt_ns(v->p50_ns), fmt_ns(v->p90_ns),
		       fmt_ns(v->p99_ns), fmt_ns(v->p999_ns), fmt_ns(v->max_ns), from);
	}
}

static void text_memory(const struct report *r)
{
	const struct shmc_stats *st = &r->cur->st;
	printf("memory       chunks %" PRIu64 ": %" PRIu64 " free (%" PRIu64 " retired), %" PRIu64
	       " open, %" PRIu64 " sealed (%" PRIu64 " of these probationary)\n",
	       st->chunks_total, st->chunks_free, st->chunks_retired, st->chunks_open,
	       st->chunks_sealed, st->chunks_probation);
	printf("             live %s, dead %s, free %s of %s\n", fmt_bytes((double)st->bytes_live),
	       fmt_bytes((double)st->bytes_dead), fmt_bytes((double)st->bytes_free),
	       fmt_bytes((double)st->data_bytes));
	printf("             items %" PRIu64 ", %.1f B/item, index load %.1f%% of %" PRIu64
	       " slots\n",
	       st->items, r->avg_item_bytes, 100 * r->index_load, st->index_slots);
}

static void text_sweeper(const struct report *r)
{
	const struct shmc_stats *st = &r->cur->st;
	char holder[40];
	if (st->sweeper_pid)
		snprintf(holder, sizeof holder, "pid %" PRIu64, st->sweeper_pid);
	else
		snprintf(holder, sizeof holder, "no holder");
	printf("sweeper      %s, passes %" PRIu64, holder, st->sweeper_passes);
	if (r->prev)
		printf(" (+%" PRIu64 ")", report_counter(r, "sweeper_passes"));
	printf(", handovers %" PRIu64 "\n", st->sweeper_handovers);
	printf("attached     %" PRIu64 " processes (this tool included), %" PRIu64 " threads\n",
	       st->procs_attached, st->threads_attached);
}

static void text_hot(const struct report *r, size_t k, bool titled)
{
	const struct snapshot *s = r->cur;
	size_t n = s->nhot < k ? s->nhot : k;
	if (titled)
		printf("hot keys     %s\n",
		       n ? "estimated lookups (sampled; may overestimate by up to 'error')"
			 : "none sampled yet");
	else
		printf("hot keys of %s: %s\n", r->cfg->name,
		       n ? "estimated lookups (sampled; may overestimate by up to 'error')"
			 : "none sampled yet");
	if (!n)
		return;
	printf("  %4s %12s %10s  %s\n", "rank", "lookups", "error", "key");
	for (size_t i = 0; i < n; i++) {
		char text[KEY_TEXT_MAX];
		const struct shmc_hotkey *h = &s->hot[i];
		printf("  %4zu %12" PRIu64 " %10" PRIu64 "  %s%s\n", i + 1, h->count, h->error,
		       key_text(h, text), h->truncated ? " [truncated]" : "");
	}
}

static void text_procs(const struct report *r)
{
	const struct snapshot *s = r->cur;
	pid_t self = getpid();
	printf("processes of %s: %zu attached, %s\n", r->cfg->name, s->nprocs,
	       r->prev ? "rates over the interval" : "totals since each attached");
	if (r->prev)
		printf("  %8s %7s %8s %9s %7s %9s %9s %9s %9s\n", "pid", "threads", "attached",
		       "gets/s", "hit", "sets/s", "dels/s", "evict/s", "expire/s");
	else
		printf("  %8s %7s %8s %9s %7s %9s %9s %9s %9s\n", "pid", "threads", "attached",
		       "gets", "hit", "sets", "deletes", "evictions", "expired");
	for (size_t i = 0; i < s->nprocs; i++) {
		const struct shmc_proc_stats *p = &s->procs[i];
		const struct shmc_proc_stats *b = proc_before(r->prev, p);
		uint64_t gets = p->gets, hits = p->hits, sets = p->sets, dels = p->deletes,
			 ev = p->evictions, ex = p->expirations;
		if (r->prev && b) {
			gets = delta(gets, b->gets);
			hits = delta(hits, b->hits);
			sets = delta(sets, b->sets);
			dels = delta(dels, b->deletes);
			ev = delta(ev, b->evictions);
			ex = delta(ex, b->expirations);
		}
		double hit = gets ? (double)(hits < gets ? hits : gets) / (double)gets : NAN;
		printf("  %8" PRIu64 " %7" PRIu64 " %8s ", p->pid, p->threads,
		       fmt_age(s->unix_ms, p->attach_unix_ms));
		if (r->prev && !b)
			printf("%9s %7s %9s %9s %9s %9s", "new", "-", "-", "-", "-", "-");
		else if (r->prev)
			printf("%9s %7s %9s %9s %9s %9s", fmt_count((double)gets / r->seconds),
			       fmt_pct(hit), fmt_count((double)sets / r->seconds),
			       fmt_count((double)dels / r->seconds), fmt_count((double)ev / r->seconds),
			       fmt_count((double)ex / r->seconds));
		else
			printf("%9s %7s %9s %9s %9s %9s", fmt_count((double)gets), fmt_pct(hit),
			       fmt_count((double)sets), fmt_count((double)dels), fmt_count((double)ev),
			       fmt_count((double)ex));
		printf("%s\n", p->pid == (uint64_t)self ? "  (this tool)" : "");
	}
}

/* The breakers of every process's uplink: a count by state, then up to
 * limit entries, those not closed first. */
static void text_nodes(const struct report *r, size_t limit, bool titled)
{
	const struct snapshot *s = r->cur;
	size_t by_state[N_BREAKER_STATES] = {0};
	for (size_t i = 0; i < s->nnodes; i++)
		if (s->nodes[i].state < N_BREAKER_STATES)
			by_state[s->nodes[i].state]++;
	if (titled)
		printf("breakers     ");
	else
		printf("uplink breakers of %s: ", r->cfg->name);
	if (!s->nnodes) {
		printf("none (no attached process uses an uplink)\n");
		return;
	}
	printf("%zu (one per process and remote node): %zu closed, %zu open, %zu half-open\n",
	       s->nnodes, by_state[SHMC_BREAKER_CLOSED], by_state[SHMC_BREAKER_OPEN],
	       by_state[SHMC_BREAKER_HALF_OPEN]);
	printf("  %8s %-9s %8s %6s  %s\n", "pid", "state", "failures", "opens", "node");
	static const uint32_t order[] = {SHMC_BREAKER_OPEN, SHMC_BREAKER_HALF_OPEN,
					 SHMC_BREAKER_CLOSED, UINT32_MAX};
	size_t shown = 0;
	for (size_t o = 0; o < sizeof order / sizeof order[0]; o++)
		for (size_t i = 0; i < s->nnodes && shown < limit; i++) {
			const struct shmc_uplink_node *n = &s->nodes[i];
			bool other = n->state >= N_BREAKER_STATES;
			if (order[o] == UINT32_MAX ? !other : n->state != order[o])
				continue;
			char addr[SHMC_UPLINK_ADDR_MAX];
			printf("  %8" PRIu64 " %-9s %8" PRIu32 " %6" PRIu64 "  %s\n", n->pid,
			       breaker_name(n->state), n->failures, n->breaker_opens,
			       addr_text(n->addr, addr));
			shown++;
		}
	if (shown < s->nnodes)
		printf("  ... %zu more (--nodes lists them all)\n", s->nnodes - shown);
}

static void text_report(const struct report *r)
{
	const struct config *cfg = r->cfg;
	if (cfg->hot_only || cfg->procs_only || cfg->nodes_only) {
		bool first = true;
		if (cfg->hot_only) {
			text_hot(r, cfg->hot_k, false);
			first = false;
		}
		if (cfg->procs_only) {
			if (!first)
				putchar('\n');
			text_procs(r);
			first = false;
		}
		if (cfg->nodes_only) {
			if (!first)
				putchar('\n');
			text_nodes(r, SIZE_MAX, false);
		}
		return;
	}
	text_header(r);
	text_operations(r);
	text_latency(r);
	text_memory(r);
	text_sweeper(r);
	text_nodes(r, NODES_IN_FULL_VIEW, true);
	text_hot(r, HOT_IN_FULL_VIEW, true);
}

/* ------------------------------------------------------- JSON output */

/* A one-line JSON writer: commas are placed for us. */
struct jw {
	FILE *out;
	bool first[16]; /* no element written yet at this depth */
	int depth;
};

static void jw_sep(struct jw *j)
{
	if (!j->first[j->depth])
		fputc(',', j->out);
	j->first[j->depth] = false;
}

static void jw_key(struct jw *j, const char *key)
{
	jw_sep(j);
	fprintf(j->out, "\"%s\":", key); /* our own keys: nothing to escape */
}

static void jw_open(struct jw *j, const char *key, char bracket)
{
	if (key)
		jw_key(j, key);
	else if (j->depth >= 0)
		jw_sep(j);
	fputc(bracket, j->out);
	j->first[++j->depth] = true;
}

static void jw_close(struct jw *j, char bracket)
{
	j->depth--;
	fputc(bracket, j->out);
}

static void jw_u64(struct jw *j, const char *key, uint64_t v)
{
	jw_key(j, key);
	fprintf(j->out, "%" PRIu64, v);
}

/* Finite numbers only; NAN (undefined, such as a hit ratio without
 * lookups) is written as null. */
static void jw_num(struct jw *j, const char *key, double v, int decimals)
{
	jw_key(j, key);
	if (isfinite(v))
		fprintf(j->out, "%.*f", decimals, v);
	else
		fputs("null", j->out);
}

static void jw_bool(struct jw *j, const char *key, bool v)
{
	jw_key(j, key);
	fputs(v ? "true" : "false", j->out);
}

static void jw_null(struct jw *j, const char *key)
{
	jw_key(j, key);
	fputs("null", j->out);
}

/* s is ASCII (segment names, key_text()): only '"', '\\' and controls
 * need escaping. */
static void jw_str(struct jw *j, const char *key, const char *s)
{
	jw_key(j, key);
	fputc('"', j->out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->out, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(j->out, "\\u%04x", *p);
		else
			fputc(*p, j->out);
	}
	fputc('"', j->out);
}

static void json_report(const struct report *r)
{
	const struct snapshot *s = r->cur;
	const struct shmc_stats *st = &s->st;
	struct jw jw = {.out = stdout, .depth = -1}, *j = &jw;

	jw_open(j, NULL, '{');
	jw_u64(j, "format", JSON_FORMAT);
	jw_str(j, "name", r->cfg->name);
	jw_u64(j, "time_unix_ms", s->unix_ms);
	jw_bool(j, "cumulative", r->prev == NULL);
	jw_num(j, "interval_s", r->seconds, 6);

	if (r->prev) {
		jw_open(j, "rates", '{');
		for (size_t k = 0; k < N_COUNTERS; k++)
			jw_num(j, counters[k].name, (double)r->delta[k] / r->seconds, 3);
		jw_close(j, '}');
		jw_open(j, "deltas", '{');
		for (size_t k = 0; k < N_COUNTERS; k++)
			jw_u64(j, counters[k].name, r->delta[k]);
		jw_close(j, '}');
	} else {
		jw_null(j, "rates");
		jw_null(j, "deltas");
	}
	jw_num(j, "hit_ratio", r->hit_ratio, 6);
	jw_open(j, "totals", '{');
	for (size_t k = 0; k < N_COUNTERS; k++)
		jw_u64(j, counters[k].name, stat_field(st, counters[k].offset));
	jw_close(j, '}');

	jw_open(j, "latency", '{');
	for (int op = 0; op < SHMC_NOPS; op++) {
		if (!op_names[op])
			continue;
		const struct lat_view *v = &r->lat[op];
		jw_open(j, op_names[op], '{');
		jw_str(j, "source", v->interval ? "interval" : "cumulative");
		jw_u64(j, "samples", v->samples);
		if (v->samples) {
			jw_u64(j, "p50_ns", v->p50_ns);
			jw_u64(j, "p90_ns", v->p90_ns);
			jw_u64(j, "p99_ns", v->p99_ns);
			jw_u64(j, "p999_ns", v->p999_ns);
			jw_u64(j, "max_ns", v->max_ns);
			jw_num(j, "mean_ns", v->mean_ns, 1);
		} else {
			static const char *const none[] = {"p50_ns", "p90_ns",  "p99_ns",
							   "p999_ns", "max_ns", "mean_ns"};
			for (size_t k = 0; k < sizeof(none) / sizeof(none[0]); k++)
				jw_null(j, none[k]);
		}
		jw_close(j, '}');
	}
	jw_close(j, '}');

	jw_open(j, "memory", '{');
	jw_u64(j, "chunks_total", st->chunks_total);
	jw_u64(j, "chunks_free", st->chunks_free);
	jw_u64(j, "chunks_open", st->chunks_open);
	jw_u64(j, "chunks_sealed", st->chunks_sealed);
	jw_u64(j, "chunks_probation", st->chunks_probation);
	jw_u64(j, "chunks_retired", st->chunks_retired);
	jw_u64(j, "bytes_live", st->bytes_live);
	jw_u64(j, "bytes_dead", st->bytes_dead);
	jw_u64(j, "bytes_free", st->bytes_free);
	jw_u64(j, "data_bytes", st->data_bytes);
	jw_u64(j, "segment_bytes", st->segment_bytes);
	jw_u64(j, "items", st->items);
	jw_u64(j, "index_slots", st->index_slots);
	jw_num(j, "index_load", r->index_load, 6);
	jw_num(j, "avg_item_bytes", r->avg_item_bytes, 1);
	jw_close(j, '}');

	jw_open(j, "sweeper", '{');
	jw_u64(j, "pid", st->sweeper_pid);
	jw_u64(j, "passes", st->sweeper_passes);
	jw_u64(j, "handovers", st->sweeper_handovers);
	jw_close(j, '}');

	jw_open(j, "attached", '{');
	jw_u64(j, "procs", st->procs_attached);
	jw_u64(j, "threads", st->threads_attached);
	jw_close(j, '}');

	jw_open(j, "hot_keys", '[');
	size_t nhot = s->nhot < r->cfg->hot_k ? s->nhot : r->cfg->hot_k;
	for (size_t i = 0; i < nhot; i++) {
		char text[KEY_TEXT_MAX];
		jw_open(j, NULL, '{');
		jw_str(j, "key", key_text(&s->hot[i], text));
		jw_bool(j, "truncated", s->hot[i].truncated);
		jw_u64(j, "count", s->hot[i].count);
		jw_u64(j, "error", s->hot[i].error);
		jw_close(j, '}');
	}
	jw_close(j, ']');

	jw_open(j, "procs", '[');
	pid_t self = getpid();
	for (size_t i = 0; i < s->nprocs; i++) {
		const struct shmc_proc_stats *p = &s->procs[i];
		const struct shmc_proc_stats *b = proc_before(r->prev, p);
		jw_open(j, NULL, '{');
		jw_u64(j, "pid", p->pid);
		jw_bool(j, "self", p->pid == (uint64_t)self);
		jw_u64(j, "attach_unix_ms", p->attach_unix_ms);
		jw_u64(j, "threads", p->threads);
		jw_u64(j, "gets", p->gets);
		jw_u64(j, "hits", p->hits);
		jw_u64(j, "misses", p->misses);
		jw_u64(j, "sets", p->sets);
		jw_u64(j, "deletes", p->deletes);
		jw_u64(j, "incrs", p->incrs);
		jw_u64(j, "evictions", p->evictions);
		jw_u64(j, "expirations", p->expirations);
		jw_u64(j, "enospc", p->enospc);
		jw_u64(j, "bytes_written", p->bytes_written);
		if (b) {
			jw_num(j, "gets_per_s", (double)delta(p->gets, b->gets) / r->seconds, 3);
			jw_num(j, "sets_per_s", (double)delta(p->sets, b->sets) / r->seconds, 3);
		} else {
			jw_null(j, "gets_per_s");
			jw_null(j, "sets_per_s");
		}
		jw_close(j, '}');
	}
	jw_close(j, ']');

	jw_open(j, "uplink_nodes", '[');
	for (size_t i = 0; i < s->nnodes; i++) {
		const struct shmc_uplink_node *n = &s->nodes[i];
		jw_open(j, NULL, '{');
		jw_str(j, "addr", n->addr);
		jw_u64(j, "pid", n->pid);
		jw_str(j, "state", breaker_name(n->state));
		jw_u64(j, "failures", n->failures);
		jw_u64(j, "breaker_opens", n->breaker_opens);
		jw_close(j, '}');
	}
	jw_close(j, ']');

	jw_close(j, '}');
	fputc('\n', j->out);
}

/* ------------------------------------------------- Prometheus output */

/* Upper bounds of the exported histogram buckets: 1-2-5 from 100 ns to
 * 10 s. A raw bucket counts under the first bound that all its values are
 * at or below, so a bound is exact to within one raw bucket (1/32 of the
 * value). */
static const uint64_t prom_bounds_ns[] = {
	100,        200,        500,        1000,       2000,        5000,       10000,
	20000,      50000,      100000,     200000,     500000,      1000000,    2000000,
	5000000,    10000000,   20000000,   50000000,   100000000,   200000000,  500000000,
	1000000000, 2000000000, 5000000000, 10000000000,
};
#define N_PROM_BOUNDS (sizeof(prom_bounds_ns) / sizeof(prom_bounds_ns[0]))

struct prom_counter {
	const char *name;  /* family name, "_total" included */
	const char *field; /* counters[] name */
	const char *help;
};

static const struct prom_counter prom_counters[] = {
	{"shmcache_gets_total", "gets", "Lookups (shmc_get, shmc_get_ref, shmc_fetch)."},
	{"shmcache_hits_total", "hits", "Lookups that found the key."},
	{"shmcache_misses_total", "misses", "Lookups that found the key absent or expired."},
	{"shmcache_sets_total", "sets", "Successful stores (set, incr)."},
	{"shmcache_deletes_total", "deletes", "Successful deletes."},
	{"shmcache_incrs_total", "incrs", "Successful increments."},
	{"shmcache_expirations_total", "expirations", "Expired items found by readers or writers."},
	{"shmcache_enospc_total", "enospc", "Writes refused for lack of space (SHMC_ENOSPC)."},
	{"shmcache_written_bytes_total", "bytes_written", "Item bytes appended to the log."},
	{"shmcache_promotions_total", "promotions",
	 "Items moved from the probationary log to the main log."},
	{"shmcache_sweeper_passes_total", "sweeper_passes", "Sweeper passes completed."},
	{"shmcache_sweeper_handovers_total", "sweeper_handovers",
	 "Times the sweeper role was taken over from a dead holder."},
	{"shmcache_fills_total", "fills", "Fills completed by a filler (origin calls that returned)."},
	{"shmcache_coalesced_waits_total", "coalesced_waits", "Fetches that waited for another caller's fill."},
	{"shmcache_origin_calls_total", "origin_calls", "Loader or uplink calls, refreshes included."},
	{"shmcache_lease_takeovers_total", "lease_takeovers", "Fills taken over from a dead or late filler."},
	{"shmcache_negative_hits_total", "negative_hits", "Fetches answered absent from a cached negative."},
	{"shmcache_stale_serves_total", "stale_serves", "Fetches answered with a stale value."},
	{"shmcache_refreshes_total", "refreshes", "Background refreshes run."},
	{"shmcache_loader_errors_total", "loader_errors", "Loader calls that failed (not absent)."},
	{"shmcache_stale_if_error_total", "stale_if_error", "Stale serves while the last refresh had failed."},
	{"shmcache_uplink_batches_total", "uplink_batches", "Uplink pipelined round trips."},
	{"shmcache_uplink_ops_total", "uplink_ops", "Operations in uplink round trips."},
	{"shmcache_uplink_err_connect_total", "uplink_err_connect", "Uplink connection failures."},
	{"shmcache_uplink_err_timeout_total", "uplink_err_timeout", "Uplink round trips past the command timeout."},
	{"shmcache_uplink_err_protocol_total", "uplink_err_protocol", "Uplink replies that were garbage or of the wrong type."},
	{"shmcache_uplink_err_reply_total", "uplink_err_reply", "Error replies from the remote tier."},
	{"shmcache_uplink_fast_fails_total", "uplink_fast_fails", "Uplink operations refused while a breaker was open or in back-off."},
	{"shmcache_uplink_breaker_opens_total", "uplink_breaker_opens", "Times a node's circuit breaker opened."},
	{"shmcache_uplink_redirects_total", "uplink_redirects", "Redis Cluster MOVED and ASK redirects."},
	{"shmcache_uplink_topology_refreshes_total", "uplink_topology_refreshes", "Redis Cluster slot-map reloads."},
	{"shmcache_write_behind_queued_total", "write_behind_queued", "Write-behind operations queued."},
	{"shmcache_write_behind_dropped_total", "write_behind_dropped", "Write-behind operations dropped (queue full or closing)."},
	{"shmcache_write_behind_failed_total", "write_behind_failed", "Write-behind operations the remote tier refused."},
};

static void prom_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_gauge(const char *seg, const char *name, const char *help, double v)
{
	prom_family(name, "gauge", help);
	printf("%s{segment=\"%s\"} %.17g\n", name, seg, v);
}

/* A label value: backslash, double quote and newline escaped as the
 * exposition format says; other bytes outside printable ASCII (a socket
 * path may hold any, and label values must be UTF-8) become '?'. */
static void prom_label_value(const char *in, char *out, size_t cap)
{
	size_t at = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && at + 3 < cap; p++) {
		if (*p == '\\' || *p == '"') {
			out[at++] = '\\';
			out[at++] = (char)*p;
		} else if (*p == '\n') {
			out[at++] = '\\';
			out[at++] = 'n';
		} else {
			out[at++] = *p >= 0x20 && *p < 0x7f ? (char)*p : '?';
		}
	}
	out[at] = '\0';
}

/* Breakers by node and state, summed over processes: one series per node
 * and state, so that the label set stays small and unique whatever the
 * number of processes. Nodes are told apart by their label, which is what
 * must be unique. */
#define PROM_LABEL_MAX (2 * SHMC_UPLINK_ADDR_MAX + 4)
static void prom_breakers(const char *seg, const struct snapshot *s)
{
	prom_family("shmcache_uplink_breakers", "gauge",
		    "Attached processes whose uplink's circuit breaker for a remote node is in "
		    "a state (closed, open, half-open).");
	char (*label)[PROM_LABEL_MAX] = calloc(s->nnodes ? s->nnodes : 1, sizeof *label);
	if (!label)
		return; /* the family without samples: still a valid exposition */
	for (size_t i = 0; i < s->nnodes; i++)
		prom_label_value(s->nodes[i].addr, label[i], sizeof label[i]);
	for (size_t i = 0; i < s->nnodes; i++) {
		bool seen_before = false;
		for (size_t k = 0; k < i && !seen_before; k++)
			seen_before = !strcmp(label[k], label[i]);
		if (seen_before)
			continue;
		uint64_t by_state[N_BREAKER_STATES] = {0};
		for (size_t k = i; k < s->nnodes; k++)
			if (!strcmp(label[k], label[i]) && s->nodes[k].state < N_BREAKER_STATES)
				by_state[s->nodes[k].state]++;
		for (uint32_t st = 0; st < N_BREAKER_STATES; st++)
			printf("shmcache_uplink_breakers{segment=\"%s\",node=\"%s\",state=\"%s\"} "
			       "%" PRIu64 "\n",
			       seg, label[i], breaker_name(st), by_state[st]);
	}
	free(label);
}

static void prometheus_report(const struct report *r)
{
	const char *seg = r->cfg->name; /* [A-Za-z0-9._-]: no escaping needed */
	const struct snapshot *s = r->cur;
	const struct shmc_stats *st = &s->st;

	for (size_t k = 0; k < sizeof(prom_counters) / sizeof(prom_counters[0]); k++) {
		const struct prom_counter *pc = &prom_counters[k];
		prom_family(pc->name, "counter", pc->help);
		printf("%s{segment=\"%s\"} %" PRIu64 "\n", pc->name, seg,
		       report_counter(r, pc->field));
	}
	prom_family("shmcache_evictions_total", "counter",
		    "Live items dropped to make room, by cause: probation (left the "
		    "probationary log unread), clock (not read since the last CLOCK pass), "
		    "direct (a writer found no free chunk).");
	printf("shmcache_evictions_total{segment=\"%s\",cause=\"probation\"} %" PRIu64 "\n", seg,
	       st->evictions_probation);
	printf("shmcache_evictions_total{segment=\"%s\",cause=\"clock\"} %" PRIu64 "\n", seg,
	       st->evictions_clock);
	printf("shmcache_evictions_total{segment=\"%s\",cause=\"direct\"} %" PRIu64 "\n", seg,
	       st->evictions_direct);

	prom_gauge(seg, "shmcache_items", "Reachable items.", (double)st->items);
	prom_gauge(seg, "shmcache_live_bytes", "Header, key and value bytes of reachable items.",
		   (double)st->bytes_live);
	prom_gauge(seg, "shmcache_dead_bytes", "Bytes of unreachable items not yet reclaimed.",
		   (double)st->bytes_dead);
	prom_gauge(seg, "shmcache_free_bytes",
		   "Bytes in free chunks and in the unused tails of open chunks.",
		   (double)st->bytes_free);
	prom_gauge(seg, "shmcache_data_bytes", "Size of the data area.", (double)st->data_bytes);
	prom_gauge(seg, "shmcache_segment_bytes", "Size of the shared-memory segment.",
		   (double)st->segment_bytes);
	prom_family("shmcache_chunks", "gauge",
		    "Log chunks by state (free includes retired chunks awaiting readers).");
	printf("shmcache_chunks{segment=\"%s\",state=\"free\"} %" PRIu64 "\n", seg, st->chunks_free);
	printf("shmcache_chunks{segment=\"%s\",state=\"open\"} %" PRIu64 "\n", seg, st->chunks_open);
	printf("shmcache_chunks{segment=\"%s\",state=\"sealed\"} %" PRIu64 "\n", seg,
	       st->chunks_sealed);
	prom_gauge(seg, "shmcache_chunks_retired",
		   "Chunks emptied and waiting for readers' grace period.",
		   (double)st->chunks_retired);
	prom_gauge(seg, "shmcache_chunks_probation",
		   "Open or sealed chunks of the probationary log.", (double)st->chunks_probation);
	prom_gauge(seg, "shmcache_index_slots", "Capacity of the hash index.",
		   (double)st->index_slots);
	prom_gauge(seg, "shmcache_index_load_ratio", "Items per index slot.", r->index_load);
	prom_gauge(seg, "shmcache_procs_attached",
		   "Live attached processes (the exporting tool included).",
		   (double)st->procs_attached);
	prom_gauge(seg, "shmcache_threads_attached", "Threads holding a slot.",
		   (double)st->threads_attached);
	prom_gauge(seg, "shmcache_sweeper_pid",
		   "Pid of the sweeper role's holder (0: none), in its pid namespace.",
		   (double)st->sweeper_pid);
	prom_breakers(seg, s);

	prom_family("shmcache_op_latency_seconds", "histogram",
		    "Latency of sampled operations (one in the sampling period per thread).");
	for (int op = 0; op < SHMC_NOPS; op++) {
		if (!op_names[op])
			continue;
		uint64_t per_bound[N_PROM_BOUNDS] = {0}, total = 0;
		for (unsigned i = 0; i < SHMC_LATENCY_BUCKETS; i++) {
			uint64_t n = s->hist[op][i];
			total += n;
			if (!n || i + 1 == SHMC_LATENCY_BUCKETS)
				continue; /* the last raw bucket is open-ended: +Inf only */
			uint64_t top = shmc_latency_bucket_lower(i + 1) - 1;
			for (size_t b = 0; b < N_PROM_BOUNDS; b++)
				if (top <= prom_bounds_ns[b]) {
					per_bound[b] += n;
					break;
				}
		}
		uint64_t cum = 0;
		for (size_t b = 0; b < N_PROM_BOUNDS; b++) {
			cum += per_bound[b];
			printf("shmcache_op_latency_seconds_bucket{segment=\"%s\",op=\"%s\",le=\"%g\"} "
			       "%" PRIu64 "\n",
			       seg, op_names[op], (double)prom_bounds_ns[b] / 1e9, cum);
		}
		printf("shmcache_op_latency_seconds_bucket{segment=\"%s\",op=\"%s\",le=\"+Inf\"} "
		       "%" PRIu64 "\n",
		       seg, op_names[op], total);
		printf("shmcache_op_latency_seconds_sum{segment=\"%s\",op=\"%s\"} %.9f\n", seg,
		       op_names[op], (double)s->lat[op].sum_ns / 1e9);
		printf("shmcache_op_latency_seconds_count{segment=\"%s\",op=\"%s\"} %" PRIu64 "\n",
		       seg, op_names[op], total);
	}
}

/* --------------------------------------------------------------- main */

/* One line naming the segment and the reason, with what to do for the
 * codes an operator can act on. */
static int attach_failed(const char *name, int rc, const char *detail)
{
	const char *hint = "";
	switch (rc) {
	case SHMC_ENOENT:
		hint = "; is the application running? ('shmcache create' makes one)";
		break;
	case SHMC_EVERSION:
		hint = "; use the shmcache-stat of the build that made it";
		break;
	case SHMC_ECORRUPT:
		hint = "; 'shmcache verify' tells more";
		break;
	case SHMC_EPERM:
	case -EACCES:
		hint = "; its mode does not let this user read and write it";
		break;
	default:
		break;
	}
	fprintf(stderr, "shmcache-stat: %s: %s", name, shmc_strerror(rc));
	if (detail && *detail)
		fprintf(stderr, " (%s)", detail);
	fprintf(stderr, "%s\n", hint);
	return EXIT_FAILED;
}

/* Flush stdout. Returns -1 if the reader went away (quiet), 1 on any
 * other write error (reported), 0 otherwise. */
static int output_flush(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	if (errno == EPIPE)
		return -1;
	fprintf(stderr, "shmcache-stat: writing to stdout: %s\n", strerror(errno));
	return 1;
}

/* Sleep until deadline_ns (CLOCK_MONOTONIC); false if a stop signal came. */
static bool sleep_until(uint64_t deadline_ns)
{
	struct timespec ts = {(time_t)(deadline_ns / 1000000000u),
			      (long)(deadline_ns % 1000000000u)};
	while (!stop_requested) {
		int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		if (rc == 0)
			return !stop_requested;
		if (rc != EINTR)
			return false;
	}
	return false;
}

static int run(const struct config *cfg, shmc_cache *c)
{
	size_t hot_cap = cfg->hot_k > HOT_IN_FULL_VIEW ? cfg->hot_k : HOT_IN_FULL_VIEW;
	const char *what = "";
	struct snapshot *prev = NULL, *cur = NULL;
	struct report r;
	int rc = snapshot_take(c, hot_cap, &prev, &what);
	if (rc)
		return attach_failed(cfg->name, rc, what);

	if (cfg->once || cfg->prometheus) {
		report_make(&r, cfg, prev, NULL);
		if (cfg->prometheus)
			prometheus_report(&r);
		else if (cfg->json)
			json_report(&r);
		else
			text_report(&r);
		snapshot_free(prev);
		return output_flush() > 0 ? EXIT_FAILED : EXIT_OK;
	}

	bool screen = !cfg->json && isatty(STDOUT_FILENO);
	if (screen) /* one write per screen: no flicker */
		setvbuf(stdout, NULL, _IOFBF, 1u << 16);
	uint64_t period_ns = (uint64_t)(cfg->interval_s * 1e9 + 0.5);
	uint64_t deadline = prev->mono_ns;
	int status = EXIT_OK;
	for (uint64_t done = 0; !cfg->count || done < cfg->count; done++) {
		deadline += period_ns;
		if (!sleep_until(deadline))
			break;
		rc = snapshot_take(c, hot_cap, &cur, &what);
		if (rc) {
			status = attach_failed(cfg->name, rc, what);
			break;
		}
		report_make(&r, cfg, cur, prev);
		if (screen)
			fputs("\033[H\033[2J", stdout);
		else if (done && !cfg->json)
			putchar('\n');
		if (cfg->json)
			json_report(&r);
		else
			text_report(&r);
		snapshot_free(prev);
		prev = cur;
		cur = NULL;
		int out = output_flush();
		if (out) {
			status = out > 0 ? EXIT_FAILED : EXIT_OK;
			break;
		}
		/* A slow terminal or a stopped process: skip the missed
		 * refreshes instead of bursting to catch up. */
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (deadline + period_ns < now)
			deadline = now;
	}
	snapshot_free(prev);
	return status;
}

int main(int argc, char **argv)
{
	struct config cfg;
	int status = config_parse(argc, argv, &cfg);
	if (status >= 0)
		return status;
	signals_install();

	shmc_opts *o;
	int rc = shmc_opts_create(&o);
	if (rc)
		return attach_failed(cfg.name, rc, NULL);
	shmc_opts_set_sweeper(o, 0);
	shmc_opts_set_sampling(o, 0);
	shmc_cache *c;
	rc = shmc_open(cfg.name, o, SHMC_RDONLY, &c);
	shmc_opts_destroy(o);
	if (rc)
		return attach_failed(cfg.name, rc, shmc_errmsg(NULL));
	status = run(&cfg, c);
	shmc_close(c);
	return status;
}
