/*
 * shmcache - the admin tool. One binary, one subcommand per task:
 *
 *   shmcache create NAME [options]      create a segment (fails if it exists)
 *   shmcache info NAME [--json]         parameters, memory, counters, sweeper
 *   shmcache get NAME KEY               value to stdout, raw
 *   shmcache set NAME KEY VALUE|-       store (VALUE - reads stdin)
 *   shmcache del NAME KEY               remove
 *   shmcache dump NAME [FILE|-]         every live item to a dump file
 *   shmcache load NAME [FILE|-]         store every item of a dump file
 *   shmcache verify NAME                check every invariant (read-only)
 *   shmcache destroy NAME               remove a segment's name
 *   shmcache help [COMMAND]
 *
 * Each subcommand is one entry of `commands` (at the bottom): its name, its
 * help text and its function; the dispatcher handles --help for all of them.
 * Adding a subcommand is adding a function and an entry.
 *
 * Exit status: 0 success, 1 the operation failed (a message on stderr names
 * the segment and the library's reason), 2 usage error. docs/shmcache.1 is
 * the manual; docs/dump-format.md specifies the dump file.
 *
 * The tool never takes the sweeper role (it is short-lived; a role holder
 * that exits at once would only make another process take the role over).
 * dump and verify read the segment through a read-only inspection mapping
 * and do not attach; every other subcommand attaches like an application.
 */
#include "shmcache.h"

#include "dump.h"
#include "handle.h"
#include "verify.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* the operation failed */
	EXIT_USAGE = 2,	 /* bad command line */
};

struct command {
	const char *name;
	const char *summary; /* one line of `shmcache help` */
	const char *help;    /* `shmcache NAME --help`: synopsis first */
	/* argv[0] is the command's name; options come in any order with the
	 * operands, and "--" ends the options. Returns an exit status. */
	int (*run)(const struct command *cmd, int argc, char **argv);
};

static const struct command *find_command(const char *name);

/* ------------------------------------------------------------ messages */

static int usage_error(const struct command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "shmcache %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	/* The synopsis is the first line of the help text. */
	const char *end = strchr(cmd->help, '\n');
	fprintf(stderr, "\nusage: %.*s\nTry 'shmcache %s --help'.\n",
		end ? (int)(end - cmd->help) : (int)strlen(cmd->help), cmd->help, cmd->name);
	return EXIT_USAGE;
}

/* A message about something other than the segment (a file, stdout).
 * Returns EXIT_FAILED. */
static int fail(const struct command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "shmcache %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAILED;
}

/* "shmcache CMD: NAME: <code's message> (<details>)", and what to do about
 * the codes an operator can act on. detail is shmc_errmsg() of the failed
 * call. Returns EXIT_FAILED. */
static int segment_failed(const struct command *cmd, const char *name, int rc, const char *detail)
{
	fprintf(stderr, "shmcache %s: %s: %s", cmd->name, name, shmc_strerror(rc));
	if (detail && *detail)
		fprintf(stderr, " (%s)", detail);
	fputc('\n', stderr);
	switch (rc) {
	case SHMC_ENOENT:
		fprintf(stderr, "shmcache %s: create it with 'shmcache create %s'\n", cmd->name,
			name);
		break;
	case SHMC_EVERSION:
		fprintf(stderr,
			"shmcache %s: %s was made by an incompatible libshmcache build; "
			"remove it with 'shmcache destroy %s' and let it be created again\n",
			cmd->name, name, name);
		break;
	case SHMC_ECORRUPT:
		fprintf(stderr,
			"shmcache %s: 'shmcache verify %s' tells more; "
			"'shmcache destroy %s' removes it\n",
			cmd->name, name, name);
		break;
	case SHMC_EPERM:
	case -EACCES:
		fprintf(stderr,
			"shmcache %s: the mode of %s does not let this user read and "
			"write it\n",
			cmd->name, name);
		break;
	default:
		break;
	}
	return EXIT_FAILED;
}

/* A key for a message: printable ASCII as is, anything else as \xNN, at
 * most 64 bytes of it. Keys are binary; a terminal should not get them raw. */
static void print_key(FILE *to, const void *key, size_t klen)
{
	const unsigned char *k = key;
	size_t shown = klen > 64 ? 64 : klen;
	fputc('\'', to);
	for (size_t i = 0; i < shown; i++) {
		if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\' && k[i] != '\'')
			fputc(k[i], to);
		else
			fprintf(to, "\\x%02x", k[i]);
	}
	fputc('\'', to);
	if (shown < klen)
		fprintf(to, "... (%zu bytes)", klen);
}

/* ------------------------------------------------------------- parsing */

/* Decimal digits only: no sign, no blanks, no base prefix. */
static bool parse_u64(const char *s, uint64_t *out)
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
	*out = v;
	return *s == '\0';
}

/* Decimal bytes with an optional k, m or g suffix (binary multiples). */
static bool parse_size(const char *s, uint64_t *out)
{
	char digits[32];
	size_t n = strspn(s, "0123456789");
	if (n == 0 || n >= sizeof(digits))
		return false;
	memcpy(digits, s, n);
	digits[n] = '\0';
	uint64_t v;
	if (!parse_u64(digits, &v))
		return false;
	unsigned shift = 0;
	switch (s[n]) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return false;
	}
	if (shift && s[n + 1] != '\0')
		return false;
	if (v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

static bool parse_octal_mode(const char *s, uint64_t *out)
{
	if (*s == '\0' || strspn(s, "01234567") != strlen(s) || strlen(s) > 4)
		return false;
	*out = strtoull(s, NULL, 8);
	return true;
}

static bool parse_ttl_ms(const char *s, uint32_t *out)
{
	uint64_t v;
	if (!parse_u64(s, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* getopt_long over a command's arguments, with our own messages. The only
 * short option is -q (--quiet), where a command has it. Returns the
 * option's val, -1 after the last option (operands are then
 * argv[optind..argc-1]), or 0 after printing a usage error. */
static int next_option(const struct command *cmd, int argc, char **argv,
		       const struct option *longopts)
{
	bool has_quiet = false;
	for (const struct option *lo = longopts; lo->name; lo++)
		has_quiet |= lo->val == 'q';
	opterr = 0;
	int opt = getopt_long(argc, argv, has_quiet ? ":q" : ":", longopts, NULL);
	if (opt == '?') {
		if (optopt)
			usage_error(cmd, "unknown option '-%c'", optopt);
		else
			usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		return 0;
	}
	if (opt == ':') {
		usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
		return 0;
	}
	return opt;
}

/* Check the operand count: between min and max operands after the options. */
static bool operands_ok(const struct command *cmd, int argc, int min, int max)
{
	int n = argc - optind;
	if (n < min) {
		usage_error(cmd, "missing operand");
		return false;
	}
	if (n > max) {
		usage_error(cmd, "unexpected operand");
		return false;
	}
	return true;
}

/* operands_ok, and the first operand must be a valid segment name: a
 * malformed name is a usage error, not a failed operation. */
static bool segment_operands_ok(const struct command *cmd, int argc, char **argv, int min, int max)
{
	if (!operands_ok(cmd, argc, min, max))
		return false;
	char path[SHMC__NAME_MAX + 8];
	if (shmc__segment_path(argv[optind], path, sizeof(path)) != 0) {
		usage_error(cmd, "bad segment name '%s' (1 to %u bytes of A-Z a-z 0-9 . _ -)",
			    argv[optind], SHMC__NAME_MAX);
		return false;
	}
	return true;
}

/* --------------------------------------------------------------- opening */

/* Attach to an existing segment as the tool does: never create it, never
 * take the background roles. Prints the failure. */
static int attach(const struct command *cmd, const char *name, int flags, shmc_cache **out)
{
	shmc_opts *o;
	int rc = shmc_opts_create(&o);
	if (rc)
		return segment_failed(cmd, name, rc, NULL);
	shmc_opts_set_sweeper(o, 0);
	rc = shmc_open(name, o, flags, out);
	shmc_opts_destroy(o);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	return EXIT_OK;
}

/* --------------------------------------------------------------- create */

enum create_value { VALUE_BYTES, VALUE_OCTAL, VALUE_NUMBER };

/* One option of `create`: how its value is written, what the library
 * accepts (for the error message) and which setter takes it. */
struct create_option {
	const char *name;
	enum create_value kind;
	uint64_t max; /* larger values are refused before the setter sees them */
	const char *accepted;
	int (*apply)(shmc_opts *o, uint64_t v);
};

static int apply_size(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_size(o, (size_t)v);
}
static int apply_mode(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_mode(o, (unsigned)v);
}
static int apply_chunk_size(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_chunk_size(o, (size_t)v);
}
static int apply_item_size(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_item_size(o, (size_t)v);
}
static int apply_max_key(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_max_key(o, (size_t)v);
}
static int apply_default_ttl(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_default_ttl(o, (uint32_t)v);
}
static int apply_ttl_jitter(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_ttl_jitter(o, (unsigned)v);
}
static int apply_max_procs(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_max_procs(o, (unsigned)v);
}
static int apply_max_threads(shmc_opts *o, uint64_t v)
{
	return shmc_opts_set_max_threads(o, (unsigned)v);
}

static const struct create_option create_options[] = {
	{"size", VALUE_BYTES, SIZE_MAX, "at least 1m", apply_size},
	{"mode", VALUE_OCTAL, 0777, "octal permission bits, at most 0777", apply_mode},
	{"chunk-size", VALUE_BYTES, SIZE_MAX, "a power of two from 64k to 64m", apply_chunk_size},
	{"item-size", VALUE_BYTES, SIZE_MAX, "1 to 64m", apply_item_size},
	{"max-key", VALUE_BYTES, SIZE_MAX, "1 to 65535", apply_max_key},
	{"default-ttl", VALUE_NUMBER, UINT32_MAX, "milliseconds, 0 to 4294967295",
	 apply_default_ttl},
	{"ttl-jitter", VALUE_NUMBER, UINT_MAX, "a percentage from 0 to 50", apply_ttl_jitter},
	{"max-procs", VALUE_NUMBER, UINT_MAX, "1 to 65535", apply_max_procs},
	{"max-threads", VALUE_NUMBER, UINT_MAX, "1 to 65535", apply_max_threads},
};
#define N_CREATE_OPTIONS (sizeof(create_options) / sizeof(create_options[0]))

static int cmd_create(const struct command *cmd, int argc, char **argv)
{
	struct option longopts[N_CREATE_OPTIONS + 1];
	for (size_t i = 0; i < N_CREATE_OPTIONS; i++)
		longopts[i] = (struct option){create_options[i].name, required_argument, NULL,
					      (int)(i + 1)};
	longopts[N_CREATE_OPTIONS] = (struct option){0};

	shmc_opts *o;
	int rc = shmc_opts_create(&o);
	if (rc)
		return fail(cmd, "%s", shmc_strerror(rc));
	shmc_opts_set_sweeper(o, 0);
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0) {
		const struct create_option *co = &create_options[opt - 1];
		uint64_t v;
		bool parsed = co->kind == VALUE_BYTES	? parse_size(optarg, &v)
			      : co->kind == VALUE_OCTAL ? parse_octal_mode(optarg, &v)
							: parse_u64(optarg, &v);
		if (!parsed || v > co->max || co->apply(o, v)) {
			shmc_opts_destroy(o);
			return usage_error(cmd, "--%s %s: expected %s", co->name, optarg,
					   co->accepted);
		}
	}
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 1)) {
		shmc_opts_destroy(o);
		return EXIT_USAGE;
	}
	const char *name = argv[optind];
	shmc_cache *c;
	rc = shmc_open(name, o, SHMC_CREATE | SHMC_EXCL, &c);
	shmc_opts_destroy(o);
	if (rc == SHMC_EEXIST)
		return fail(cmd,
			    "%s: a segment of that name already exists (remove it first with "
			    "'shmcache destroy %s')",
			    name, name);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	shmc_close(c);
	return EXIT_OK;
}

/* ----------------------------------------------------------------- info */

/* The figures `info` shows, gathered once for both output formats. */
struct info {
	const char *name;
	struct shmc_stats st;
	struct shmc__geometry geo;
	unsigned mode;
	unsigned owner_uid;
	unsigned creator_uid;
	uint64_t created_unix_ms;
	/* Neither free, live nor dead: the unused ends of sealed chunks
	 * (data - free - live - dead), reclaimed with their chunk. */
	uint64_t bytes_slack;
	double avg_item_bytes;
	double index_load;
};

/* Bumped when a field of `info --json` is renamed or removed (never for an
 * addition). */
#define INFO_JSON_FORMAT 1

/* A minimal JSON writer: nested objects of numbers and strings, indented,
 * commas placed for us. */
struct json_writer {
	FILE *out;
	int depth;
	bool first; /* no member written yet at this depth */
};

static void json_member(struct json_writer *j, const char *key)
{
	fprintf(j->out, "%s\n%*s\"%s\": ", j->first ? "" : ",", 2 * j->depth, "", key);
	j->first = false;
}

static void json_open(struct json_writer *j, const char *key)
{
	if (key)
		json_member(j, key);
	fputc('{', j->out);
	j->depth++;
	j->first = true;
}

static void json_close(struct json_writer *j)
{
	j->depth--;
	fprintf(j->out, "\n%*s}", 2 * j->depth, "");
	j->first = false;
}

static void json_u64(struct json_writer *j, const char *key, uint64_t v)
{
	json_member(j, key);
	fprintf(j->out, "%" PRIu64, v);
}

static void json_double(struct json_writer *j, const char *key, double v)
{
	json_member(j, key);
	fprintf(j->out, "%.6f", v);
}

static void json_string(struct json_writer *j, const char *key, const char *s)
{
	json_member(j, key);
	fputc('"', j->out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(j->out, "\\u%04x", *p);
		else
			fputc(*p, j->out);
	}
	fputc('"', j->out);
}

static void info_json(const struct info *in)
{
	const struct shmc_stats *st = &in->st;
	char mode[8];
	snprintf(mode, sizeof(mode), "%04o", in->mode);
	struct json_writer jw = {.out = stdout}, *j = &jw;
	json_open(j, NULL);
	json_u64(j, "format", INFO_JSON_FORMAT);
	json_string(j, "name", in->name);

	json_open(j, "parameters");
	json_u64(j, "segment_bytes", in->geo.segment_bytes);
	json_u64(j, "data_bytes", in->geo.data_bytes);
	json_u64(j, "chunk_bytes", in->geo.chunk_bytes);
	json_u64(j, "chunks", in->geo.nchunks);
	json_u64(j, "index_buckets", in->geo.nbuckets);
	json_u64(j, "index_slots", st->index_slots);
	json_u64(j, "max_key_bytes", in->geo.max_key_bytes);
	json_u64(j, "max_value_bytes", (uint64_t)in->geo.chunk_bytes - SHMC__ITEM_HDR - 1);
	json_u64(j, "default_ttl_ms", in->geo.default_ttl_ms);
	json_u64(j, "ttl_jitter_pct", in->geo.ttl_jitter_pct);
	json_u64(j, "max_procs", in->geo.max_procs);
	json_u64(j, "max_threads", in->geo.max_threads);
	json_string(j, "mode", mode);
	json_u64(j, "owner_uid", in->owner_uid);
	json_u64(j, "creator_uid", in->creator_uid);
	json_u64(j, "created_unix_ms", in->created_unix_ms);
	json_close(j);

	json_open(j, "memory");
	json_u64(j, "chunks_total", st->chunks_total);
	json_u64(j, "chunks_free", st->chunks_free);
	json_u64(j, "chunks_open", st->chunks_open);
	json_u64(j, "chunks_sealed", st->chunks_sealed);
	json_u64(j, "chunks_retired", st->chunks_retired);
	json_u64(j, "bytes_live", st->bytes_live);
	json_u64(j, "bytes_free", st->bytes_free);
	json_u64(j, "bytes_dead", st->bytes_dead);
	json_u64(j, "bytes_slack", in->bytes_slack);
	json_u64(j, "items", st->items);
	json_double(j, "avg_item_bytes", in->avg_item_bytes);
	json_double(j, "index_load", in->index_load);
	json_close(j);

	json_open(j, "counters");
	json_u64(j, "gets", st->gets);
	json_u64(j, "hits", st->hits);
	json_u64(j, "misses", st->misses);
	json_u64(j, "sets", st->sets);
	json_u64(j, "deletes", st->deletes);
	json_u64(j, "incrs", st->incrs);
	json_u64(j, "expirations", st->expirations);
	json_u64(j, "evictions", st->evictions);
	json_u64(j, "evictions_probation", st->evictions_probation);
	json_u64(j, "evictions_clock", st->evictions_clock);
	json_u64(j, "evictions_direct", st->evictions_direct);
	json_u64(j, "enospc", st->enospc);
	json_u64(j, "bytes_written", st->bytes_written);
	json_close(j);

	json_open(j, "attachment");
	json_u64(j, "procs_attached", st->procs_attached);
	json_u64(j, "threads_attached", st->threads_attached);
	json_close(j);

	json_open(j, "sweeper");
	json_u64(j, "pid", st->sweeper_pid);
	json_u64(j, "handovers", st->sweeper_handovers);
	json_u64(j, "passes", st->sweeper_passes);
	json_u64(j, "promotions", st->promotions);
	json_u64(j, "chunks_probation", st->chunks_probation);
	json_close(j);

	json_close(j);
	fputc('\n', j->out);
}

/* "123456 bytes (120.6 KiB)": exact, and a size a person reads at a glance. */
static const char *human_bytes(uint64_t bytes, char *buf, size_t cap)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (bytes < 1024) {
		snprintf(buf, cap, "%" PRIu64 " bytes", bytes);
		return buf;
	}
	double v = (double)bytes / 1024;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, "%" PRIu64 " bytes (%.1f %s)", bytes, v, units[u]);
	return buf;
}

static const char *ttl_text(uint32_t ttl_ms, char *buf, size_t cap)
{
	if (!ttl_ms)
		return "none";
	snprintf(buf, cap, "%" PRIu32 " ms", ttl_ms);
	return buf;
}

static void info_text(const struct info *in)
{
	const struct shmc_stats *st = &in->st;
	char b1[64], b2[64], b3[64];
	printf("segment %s (/dev/shm/shmc.%s)\n", in->name, in->name);
	time_t created = (time_t)(in->created_unix_ms / 1000);
	struct tm tm;
	char when[64] = "?";
	if (gmtime_r(&created, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("  created           %s by uid %u\n", when, in->creator_uid);
	printf("  mode              %04o, owner uid %u\n", in->mode, in->owner_uid);
	printf("  size              %s\n", human_bytes(in->geo.segment_bytes, b1, sizeof(b1)));
	printf("  data area         %s in %" PRIu32 " chunks of %s\n",
	       human_bytes(in->geo.data_bytes, b1, sizeof(b1)), in->geo.nchunks,
	       human_bytes(in->geo.chunk_bytes, b2, sizeof(b2)));
	printf("  index             %" PRIu32 " buckets, %" PRIu64 " slots\n", in->geo.nbuckets,
	       st->index_slots);
	printf("  largest key       %" PRIu32 " bytes\n", in->geo.max_key_bytes);
	printf("  largest value     %" PRIu64 " bytes (with a 1-byte key)\n",
	       (uint64_t)in->geo.chunk_bytes - SHMC__ITEM_HDR - 1);
	printf("  default TTL       %s, jitter %" PRIu32 "%%\n",
	       ttl_text(in->geo.default_ttl_ms, b1, sizeof(b1)), in->geo.ttl_jitter_pct);
	printf("  slots             %" PRIu32 " processes, %" PRIu32 " threads\n",
	       in->geo.max_procs, in->geo.max_threads);
	printf("memory\n");
	printf("  chunks            %" PRIu64 " total: %" PRIu64 " free (%" PRIu64
	       " of them retired, awaiting readers), %" PRIu64 " open, %" PRIu64 " sealed\n",
	       st->chunks_total, st->chunks_free, st->chunks_retired, st->chunks_open,
	       st->chunks_sealed);
	printf("  live bytes        %s\n", human_bytes(st->bytes_live, b1, sizeof(b1)));
	printf("  free bytes        %s\n", human_bytes(st->bytes_free, b2, sizeof(b2)));
	printf("  dead bytes        %s (overwritten or deleted, awaiting compaction)\n",
	       human_bytes(st->bytes_dead, b3, sizeof(b3)));
	printf("  slack bytes       %s (unused ends of sealed chunks)\n",
	       human_bytes(in->bytes_slack, b3, sizeof(b3)));
	printf("  items             %" PRIu64 ", %.1f bytes on average (header, key, value)\n",
	       st->items, in->avg_item_bytes);
	printf("  index load        %.1f%%\n", 100 * in->index_load);
	printf("counters\n");
	printf("  gets              %" PRIu64 " (hits %" PRIu64 ", misses %" PRIu64 ")\n", st->gets,
	       st->hits, st->misses);
	printf("  sets              %" PRIu64 ", deletes %" PRIu64 ", incrs %" PRIu64 "\n",
	       st->sets, st->deletes, st->incrs);
	printf("  expirations       %" PRIu64 ", refused (ENOSPC) %" PRIu64 "\n", st->expirations,
	       st->enospc);
	printf("  evictions         %" PRIu64 " (probation %" PRIu64 ", clock %" PRIu64
	       ", direct %" PRIu64 ")\n",
	       st->evictions, st->evictions_probation, st->evictions_clock, st->evictions_direct);
	printf("  bytes written     %s\n", human_bytes(st->bytes_written, b1, sizeof(b1)));
	printf("attached\n");
	printf("  processes         %" PRIu64 " (this tool included)\n", st->procs_attached);
	printf("  threads           %" PRIu64 "\n", st->threads_attached);
	printf("sweeper\n");
	if (st->sweeper_pid)
		printf("  held by pid       %" PRIu64 "\n", st->sweeper_pid);
	else
		printf("  held by           nobody\n");
	printf("  passes            %" PRIu64 ", handovers %" PRIu64 "\n", st->sweeper_passes,
	       st->sweeper_handovers);
	printf("  promotions        %" PRIu64 ", probationary chunks %" PRIu64 "\n", st->promotions,
	       st->chunks_probation);
}

static int cmd_info(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	bool json = false;
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		json = true;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;

	struct info in = {.name = argv[optind]};
	shmc_cache *c;
	if (attach(cmd, in.name, SHMC_RDONLY, &c))
		return EXIT_FAILED;
	int rc = shmc_stats(c, &in.st);
	if (rc) {
		int status = segment_failed(cmd, in.name, rc, shmc_errmsg(c));
		shmc_close(c);
		return status;
	}
	in.geo = c->geo;
	in.creator_uid = c->hdr->creator_uid;
	in.created_unix_ms = c->hdr->created_unix_ms;
	struct stat sb;
	if (fstat(c->fd, &sb) == 0) {
		in.mode = sb.st_mode & 0777;
		in.owner_uid = sb.st_uid;
	}
	shmc_close(c);

	const struct shmc_stats *st = &in.st;
	uint64_t accounted = st->bytes_free + st->bytes_live + st->bytes_dead;
	in.bytes_slack = st->data_bytes > accounted ? st->data_bytes - accounted : 0;
	in.avg_item_bytes = st->items ? (double)st->bytes_live / (double)st->items : 0;
	in.index_load = st->index_slots ? (double)st->items / (double)st->index_slots : 0;
	if (json)
		info_json(&in);
	else
		info_text(&in);
	if (fflush(stdout) || ferror(stdout))
		return fail(cmd, "writing to stdout: %s", strerror(errno));
	return EXIT_OK;
}

/* ------------------------------------------------------- get, set, del */

static int cmd_get(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{0}};
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 2, 2))
		return EXIT_USAGE;
	const char *name = argv[optind], *key = argv[optind + 1];
	if (!*key)
		return usage_error(cmd, "KEY must not be empty");
	shmc_cache *c;
	if (attach(cmd, name, SHMC_RDONLY, &c))
		return EXIT_FAILED;

	size_t cap = 4096, vlen = 0;
	unsigned char *buf = malloc(cap);
	int rc = buf ? shmc_get(c, key, strlen(key), buf, cap, &vlen) : SHMC_ENOMEM;
	/* The value may grow again between the two calls: retry while it does. */
	while (rc == SHMC_ERANGE) {
		free(buf);
		cap = vlen;
		buf = malloc(cap);
		rc = buf ? shmc_get(c, key, strlen(key), buf, cap, &vlen) : SHMC_ENOMEM;
	}
	int status = EXIT_OK;
	if (rc == SHMC_ENOTFOUND) {
		fprintf(stderr, "shmcache %s: %s: key ", cmd->name, name);
		print_key(stderr, key, strlen(key));
		fprintf(stderr, " not found\n");
		status = EXIT_FAILED;
	} else if (rc) {
		status = segment_failed(cmd, name, rc, shmc_errmsg(c));
	} else if (fwrite(buf, 1, vlen, stdout) != vlen || fflush(stdout)) {
		status = fail(cmd, "writing to stdout: %s", strerror(errno));
	}
	free(buf);
	shmc_close(c);
	return status;
}

/* Read all of stdin, refusing more than limit bytes (the segment would
 * refuse them anyway, and a runaway pipe must not exhaust memory). */
static int read_stdin(const struct command *cmd, size_t limit, unsigned char **out, size_t *len)
{
	size_t cap = 64 << 10, n = 0;
	unsigned char *buf = malloc(cap);
	if (!buf)
		return fail(cmd, "reading stdin: %s", strerror(ENOMEM));
	for (;;) {
		if (n == cap) {
			if (cap > limit) {
				free(buf);
				return fail(cmd, "value on stdin exceeds %zu bytes, the limit",
					    limit);
			}
			unsigned char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				return fail(cmd, "reading stdin: %s", strerror(ENOMEM));
			}
			buf = bigger;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n, stdin);
		n += got;
		if (got == 0) {
			if (ferror(stdin)) {
				free(buf);
				return fail(cmd, "reading stdin: %s", strerror(errno));
			}
			break;
		}
	}
	*out = buf;
	*len = n;
	return EXIT_OK;
}

static int cmd_set(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{"ttl", required_argument, NULL, 't'}, {0}};
	uint32_t ttl_ms = 0;
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		if (!parse_ttl_ms(optarg, &ttl_ms))
			return usage_error(cmd, "--ttl %s: expected milliseconds, 0 to 4294967295",
					   optarg);
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 3, 3))
		return EXIT_USAGE;
	const char *name = argv[optind], *key = argv[optind + 1], *arg = argv[optind + 2];
	if (!*key)
		return usage_error(cmd, "KEY must not be empty");
	shmc_cache *c;
	if (attach(cmd, name, 0, &c))
		return EXIT_FAILED;

	unsigned char *from_stdin = NULL;
	const void *value = arg;
	size_t vlen = strlen(arg);
	if (!strcmp(arg, "-")) {
		if (read_stdin(cmd, c->geo.chunk_bytes, &from_stdin, &vlen)) {
			shmc_close(c);
			return EXIT_FAILED;
		}
		value = from_stdin;
	}
	int rc = shmc_set(c, key, strlen(key), value, vlen, ttl_ms, 0);
	int status = rc ? segment_failed(cmd, name, rc, shmc_errmsg(c)) : EXIT_OK;
	free(from_stdin);
	shmc_close(c);
	return status;
}

static int cmd_del(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{0}};
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 2, 2))
		return EXIT_USAGE;
	const char *name = argv[optind], *key = argv[optind + 1];
	if (!*key)
		return usage_error(cmd, "KEY must not be empty");
	shmc_cache *c;
	if (attach(cmd, name, 0, &c))
		return EXIT_FAILED;
	int rc = shmc_del(c, key, strlen(key));
	int status = EXIT_OK;
	if (rc == SHMC_ENOTFOUND) {
		fprintf(stderr, "shmcache %s: %s: key ", cmd->name, name);
		print_key(stderr, key, strlen(key));
		fprintf(stderr, " not found\n");
		status = EXIT_FAILED;
	} else if (rc) {
		status = segment_failed(cmd, name, rc, shmc_errmsg(c));
	}
	shmc_close(c);
	return status;
}

/* ----------------------------------------------------------- dump files */

/* The format (docs/dump-format.md), every integer little-endian:
 *
 *   header  magic "SHMCDUMP" | version u32 = 1 | flags u32 = 0
 *   record  klen u32 (1..65535) | vlen u32 | ttl_ms u32 (0 = none) | key | value
 *   end     klen u32 = 0 | record count u64 | XXH64 u64
 *
 * The XXH64 (seed 0) covers every byte before it. Nothing may follow. */
static const unsigned char DUMP_MAGIC[8] = {'S', 'H', 'M', 'C', 'D', 'U', 'M', 'P'};
#define DUMP_VERSION 1u
#define DUMP_HEADER_BYTES 16u
#define DUMP_RECORD_HEADER_BYTES 12u
/* A value always fits in one chunk, and chunks are at most 64 MiB: a larger
 * length can only be damage (and must not become a huge allocation). */
#define DUMP_MAX_VALUE_BYTES (64u << 20)

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

struct dump_writer {
	FILE *out;
	XXH64_state_t hash;
	uint64_t records;
	uint64_t bytes;
	int error; /* errno of the first failed write, 0 if none */
};

static void dump_put(struct dump_writer *w, const void *p, size_t n)
{
	XXH64_update(&w->hash, p, n);
	w->bytes += n;
	if (!w->error && fwrite(p, 1, n, w->out) != n)
		w->error = errno ? errno : EIO;
}

static int dump_record(void *arg, const struct shmc__dump_item *item)
{
	struct dump_writer *w = arg;
	unsigned char rec[DUMP_RECORD_HEADER_BYTES];
	put_u32(rec, (uint32_t)item->klen);
	put_u32(rec + 4, (uint32_t)item->vlen);
	put_u32(rec + 8, item->ttl_left_ms);
	dump_put(w, rec, sizeof(rec));
	dump_put(w, item->key, item->klen);
	dump_put(w, item->value, item->vlen);
	w->records++;
	return w->error ? -w->error : 0; /* a failed write stops the walk */
}

static void dump_header(struct dump_writer *w)
{
	unsigned char hdr[DUMP_HEADER_BYTES];
	memcpy(hdr, DUMP_MAGIC, sizeof(DUMP_MAGIC));
	put_u32(hdr + 8, DUMP_VERSION);
	put_u32(hdr + 12, 0);
	dump_put(w, hdr, sizeof(hdr));
}

static void dump_end(struct dump_writer *w)
{
	unsigned char end[12];
	put_u32(end, 0);
	put_u64(end + 4, w->records);
	dump_put(w, end, sizeof(end));
	unsigned char sum[8];
	put_u64(sum, XXH64_digest(&w->hash));
	dump_put(w, sum, sizeof(sum));
}

/* Where a dump goes: stdout, straight into an existing non-regular file
 * (a FIFO, /dev/null: renaming over those would replace them), or a
 * temporary file renamed over path once complete, so that path never holds
 * a half-written dump. */
struct dump_target {
	const char *path; /* NULL for stdout */
	char *tmp_path;	  /* NULL unless writing through a temporary */
	FILE *f;
};

static int target_open(const struct command *cmd, struct dump_target *t, const char *path)
{
	memset(t, 0, sizeof(*t));
	if (!path || !strcmp(path, "-")) {
		if (isatty(STDOUT_FILENO))
			return usage_error(cmd, "refusing to write a binary dump to a terminal "
						"(give a FILE or redirect stdout)");
		t->f = stdout;
		return EXIT_OK;
	}
	t->path = path;
	struct stat sb;
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		t->f = fopen(path, "wb");
		if (!t->f)
			return fail(cmd, "%s: %s", path, strerror(errno));
		return EXIT_OK;
	}
	size_t n = strlen(path) + sizeof(".XXXXXX");
	t->tmp_path = malloc(n);
	if (!t->tmp_path)
		return fail(cmd, "%s: %s", path, strerror(ENOMEM));
	snprintf(t->tmp_path, n, "%s.XXXXXX", path);
	/* mkstemp creates it 0600: a dump holds the cache's data, readable by
	 * the segment's users only unless the operator says otherwise. */
	int fd = mkstemp(t->tmp_path);
	if (fd < 0 || !(t->f = fdopen(fd, "wb"))) {
		int e = errno;
		if (fd >= 0) {
			close(fd);
			unlink(t->tmp_path);
		}
		free(t->tmp_path);
		t->tmp_path = NULL;
		return fail(cmd, "%s: %s", path, strerror(e));
	}
	return EXIT_OK;
}

/* Finish the target: flush, and either publish the temporary file (ok) or
 * remove it. Returns 0, or errno of the failure. */
static int target_close(struct dump_target *t, bool ok)
{
	int err = 0;
	if (fflush(t->f) != 0)
		err = errno;
	if (ok && !err && t->tmp_path && fsync(fileno(t->f)) != 0)
		err = errno;
	if (t->f != stdout && fclose(t->f) != 0 && !err)
		err = errno;
	if (t->tmp_path) {
		if (ok && !err && rename(t->tmp_path, t->path) != 0)
			err = errno;
		if (!ok || err)
			unlink(t->tmp_path);
		free(t->tmp_path);
	}
	return err;
}

static int cmd_dump(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{"quiet", no_argument, NULL, 'q'}, {0}};
	bool quiet = false;
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		quiet = true;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 2))
		return EXIT_USAGE;
	const char *name = argv[optind];
	const char *path = optind + 1 < argc ? argv[optind + 1] : NULL;

	/* Open the segment first: a missing one leaves no file behind. */
	shmc_cache *c;
	int rc = shmc__inspect_open(name, &c);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	struct dump_target target;
	int status = target_open(cmd, &target, path);
	if (status) {
		shmc_close(c);
		return status;
	}
	const char *where = path && strcmp(path, "-") != 0 ? path : "stdout";

	struct dump_writer w = {.out = target.f};
	XXH64_reset(&w.hash, 0);
	dump_header(&w);
	struct shmc__dump_counts counts = {0};
	rc = w.error ? -w.error : shmc__dump_walk(c, dump_record, &w, &counts);
	shmc_close(c);
	if (!rc)
		dump_end(&w);
	int err = target_close(&target, rc == 0 && !w.error);
	if (rc == SHMC_ENOMEM)
		return segment_failed(cmd, name, rc, "copying items out");
	if (rc || w.error || err) {
		int first = w.error ? w.error : err ? err : -rc;
		return fail(cmd, "writing %s: %s", where, strerror(first));
	}
	if (!quiet) {
		fprintf(stderr, "shmcache dump: %s: %" PRIu64 " items, %" PRIu64 " bytes to %s",
			name, counts.items, w.bytes, where);
		if (counts.expired || counts.unstable)
			fprintf(stderr,
				" (skipped %" PRIu64 " expired, %" PRIu64
				" rewritten during the dump)",
				counts.expired, counts.unstable);
		fputc('\n', stderr);
	}
	if (counts.corrupt)
		fprintf(stderr,
			"shmcache dump: %s: %" PRIu64 " index entries failed bounds "
			"checks and were skipped; run 'shmcache verify %s'\n",
			name, counts.corrupt, name);
	return EXIT_OK;
}

/* Reads a dump, checking it as it goes. Every byte read is hashed and, when
 * the input cannot be read twice (a pipe), copied to a spool file. */
struct dump_reader {
	FILE *in;
	const char *what; /* the file's name for messages */
	XXH64_state_t hash;
	uint64_t offset;    /* bytes read so far */
	FILE *spool;	    /* NULL unless spooling */
	unsigned char *buf; /* key and value of the current record */
	size_t cap;
	char error[256]; /* why the file was refused */
};

enum read_result { READ_OK, READ_EOF, READ_FAILED };

/* Read exactly n bytes. READ_EOF if the input ended first (after any bytes),
 * READ_FAILED with r->error set on an I/O error. */
static enum read_result read_exact(struct dump_reader *r, void *p, size_t n)
{
	size_t got = fread(p, 1, n, r->in);
	XXH64_update(&r->hash, p, got);
	r->offset += got;
	if (r->spool && got && fwrite(p, 1, got, r->spool) != got) {
		snprintf(r->error, sizeof(r->error), "spooling %s to a temporary file: %s", r->what,
			 strerror(errno));
		return READ_FAILED;
	}
	if (got == n)
		return READ_OK;
	if (ferror(r->in)) {
		snprintf(r->error, sizeof(r->error), "reading %s: %s", r->what, strerror(errno));
		return READ_FAILED;
	}
	return READ_EOF;
}

/* Called for every record of an intact dump; nonzero stops the read. */
typedef int (*dump_record_fn)(void *arg, uint64_t index, const unsigned char *key, uint32_t klen,
			      const unsigned char *value, uint32_t vlen, uint32_t ttl_ms);

#define DUMP_REFUSED (-1)

static int refuse(struct dump_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int refuse(struct dump_reader *r, const char *fmt, ...)
{
	int n = snprintf(r->error, sizeof(r->error), "%s: ", r->what);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->error + n, sizeof(r->error) - (size_t)n, fmt, ap);
	va_end(ap);
	return DUMP_REFUSED;
}

/* Read a whole dump, calling on_record (if not NULL) for each record as it
 * is read. Returns 0 when the file is complete and intact, DUMP_REFUSED
 * (r->error says why) when it is not or cannot be read, or on_record's
 * nonzero result. A refusal can come after records were handed out: check
 * a file with on_record NULL before acting on it. */
static int read_dump(struct dump_reader *r, dump_record_fn on_record, void *arg)
{
	unsigned char hdr[DUMP_HEADER_BYTES];
	XXH64_reset(&r->hash, 0);
	r->offset = 0;
	enum read_result res = read_exact(r, hdr, sizeof(hdr));
	if (res == READ_FAILED)
		return DUMP_REFUSED;
	if (res == READ_EOF && r->offset == 0)
		return refuse(r, "empty, not a dump");
	if (res == READ_EOF || memcmp(hdr, DUMP_MAGIC, sizeof(DUMP_MAGIC)) != 0)
		return refuse(r, "not a shmcache dump (bad magic)");
	if (get_u32(hdr + 8) != DUMP_VERSION)
		return refuse(r, "dump format version %" PRIu32 ", this shmcache reads version %u",
			      get_u32(hdr + 8), DUMP_VERSION);
	if (get_u32(hdr + 12) != 0)
		return refuse(r, "unknown header flags 0x%" PRIx32 " (made by a newer shmcache?)",
			      get_u32(hdr + 12));

	for (uint64_t index = 0;; index++) {
		uint64_t at = r->offset;
		unsigned char rec[DUMP_RECORD_HEADER_BYTES];
		res = read_exact(r, rec, 4);
		if (res == READ_FAILED)
			return DUMP_REFUSED;
		if (res == READ_EOF)
			return refuse(r,
				      "truncated: ends at byte %" PRIu64 " after %" PRIu64
				      " records, without the end marker",
				      r->offset, index);
		uint32_t klen = get_u32(rec);
		if (klen == 0) {
			unsigned char end[16];
			res = read_exact(r, end, 8);
			/* The checksum covers everything before it. */
			uint64_t computed = XXH64_digest(&r->hash);
			if (res == READ_OK)
				res = read_exact(r, end + 8, 8);
			if (res == READ_FAILED)
				return DUMP_REFUSED;
			if (res == READ_EOF)
				return refuse(r, "truncated inside the end marker at byte %" PRIu64,
					      at);
			uint64_t count = get_u64(end), stored = get_u64(end + 8);
			if (stored != computed)
				return refuse(r,
					      "corrupted: checksum %016" PRIx64
					      " does not match the content (%016" PRIx64 ")",
					      stored, computed);
			if (count != index)
				return refuse(r,
					      "corrupted: end marker counts %" PRIu64
					      " records, the file holds %" PRIu64,
					      count, index);
			if (fgetc(r->in) != EOF)
				return refuse(
					r, "corrupted: data after the end marker at byte %" PRIu64,
					r->offset);
			return 0;
		}
		res = read_exact(r, rec + 4, 8);
		if (res == READ_FAILED)
			return DUMP_REFUSED;
		if (res == READ_EOF)
			return refuse(r, "truncated inside record %" PRIu64 " at byte %" PRIu64,
				      index, at);
		uint32_t vlen = get_u32(rec + 4), ttl_ms = get_u32(rec + 8);
		if (klen > SHMC_KEY_MAX || vlen > DUMP_MAX_VALUE_BYTES)
			return refuse(r,
				      "corrupted: record %" PRIu64 " at byte %" PRIu64
				      " has a %" PRIu32 "-byte key and a %" PRIu32 "-byte value",
				      index, at, klen, vlen);
		size_t bytes = (size_t)klen + vlen;
		if (bytes > r->cap) {
			unsigned char *buf = realloc(r->buf, bytes);
			if (!buf)
				return refuse(r, "record %" PRIu64 ": %s", index, strerror(ENOMEM));
			r->buf = buf;
			r->cap = bytes;
		}
		res = read_exact(r, r->buf, bytes);
		if (res == READ_FAILED)
			return DUMP_REFUSED;
		if (res == READ_EOF)
			return refuse(r, "truncated inside record %" PRIu64 " at byte %" PRIu64,
				      index, at);
		if (on_record) {
			int rc = on_record(arg, index, r->buf, klen, r->buf + klen, vlen, ttl_ms);
			if (rc)
				return rc;
		}
	}
}

struct load_state {
	const struct command *cmd;
	const char *name;
	shmc_cache *c;
	bool ttl_override;
	uint32_t ttl_ms;
	uint64_t stored;
};

static int load_record(void *arg, uint64_t index, const unsigned char *key, uint32_t klen,
		       const unsigned char *value, uint32_t vlen, uint32_t ttl_ms)
{
	struct load_state *ls = arg;
	int rc = shmc_set(ls->c, key, klen, value, vlen, ls->ttl_override ? ls->ttl_ms : ttl_ms, 0);
	if (rc) {
		fprintf(stderr, "shmcache %s: %s: record %" PRIu64 ", key ", ls->cmd->name,
			ls->name, index);
		print_key(stderr, key, klen);
		fprintf(stderr, ": %s (%s); %" PRIu64 " records were stored before it\n",
			shmc_strerror(rc), shmc_errmsg(ls->c), ls->stored);
		return EXIT_FAILED;
	}
	ls->stored++;
	return 0;
}

static int cmd_load(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"ttl", required_argument, NULL, 't'}, {"quiet", no_argument, NULL, 'q'}, {0}};
	struct load_state ls = {.cmd = cmd};
	bool quiet = false;
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0) {
		if (opt == 'q') {
			quiet = true;
		} else {
			if (!parse_ttl_ms(optarg, &ls.ttl_ms))
				return usage_error(cmd,
						   "--ttl %s: expected milliseconds, "
						   "0 to 4294967295",
						   optarg);
			ls.ttl_override = true;
		}
	}
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 2))
		return EXIT_USAGE;
	ls.name = argv[optind];
	const char *path = optind + 1 < argc ? argv[optind + 1] : "-";
	bool from_stdin = !strcmp(path, "-");

	if (attach(cmd, ls.name, 0, &ls.c))
		return EXIT_FAILED;
	FILE *input = from_stdin ? stdin : fopen(path, "rb");
	if (!input) {
		int e = errno;
		shmc_close(ls.c);
		return fail(cmd, "%s: %s", path, strerror(e));
	}
	struct dump_reader r = {.in = input, .what = from_stdin ? "stdin" : path};

	/* Check the whole file before storing anything, so that a truncated
	 * or damaged dump leaves the segment untouched: read it once to check,
	 * then again (from the start, or from a spool of a pipe) to store. */
	struct stat sb;
	off_t start = -1;
	FILE *spool = NULL;
	if (fstat(fileno(input), &sb) == 0 && S_ISREG(sb.st_mode))
		start = ftello(input);
	if (start < 0 && !(spool = tmpfile()))
		snprintf(r.error, sizeof(r.error), "creating a temporary file: %s",
			 strerror(errno));
	r.spool = spool;
	int rc = r.error[0] ? DUMP_REFUSED : read_dump(&r, NULL, NULL);
	if (!rc) {
		FILE *again = spool ? spool : input;
		if (fflush(again) != 0 || fseeko(again, spool ? 0 : start, SEEK_SET) != 0) {
			snprintf(r.error, sizeof(r.error), "rereading %s: %s", r.what,
				 strerror(errno));
			rc = DUMP_REFUSED;
		} else {
			r.in = again;
			r.spool = NULL;
			rc = read_dump(&r, load_record, &ls);
		}
	}
	int status = EXIT_OK;
	if (rc == DUMP_REFUSED) {
		fprintf(stderr, "shmcache %s: %s: %s\n", cmd->name, ls.name, r.error);
		if (ls.stored)
			fprintf(stderr,
				"shmcache %s: %s: %" PRIu64 " records were stored before "
				"the file changed under us\n",
				cmd->name, ls.name, ls.stored);
		else
			fprintf(stderr, "shmcache %s: %s: nothing was stored\n", cmd->name,
				ls.name);
		status = EXIT_FAILED;
	} else if (rc) {
		status = EXIT_FAILED; /* load_record said why */
	} else if (!quiet) {
		fprintf(stderr, "shmcache %s: %s: %" PRIu64 " items stored from %s\n", cmd->name,
			ls.name, ls.stored, r.what);
	}
	shmc_close(ls.c);
	if (input != stdin)
		fclose(input);
	if (spool)
		fclose(spool);
	free(r.buf);
	return status;
}

/* ------------------------------------------------------ verify, destroy */

static void print_line(void *arg, const char *line)
{
	(void)arg;
	printf("%s\n", line);
}

static int cmd_verify(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{0}};
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;
	const char *name = argv[optind];
	shmc_cache *c;
	int rc = shmc__inspect_open(name, &c);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	struct shmc__verify_report r = {.emit = print_line};
	rc = shmc__verify(c, &r);
	shmc_close(c);
	if (rc)
		return segment_failed(cmd, name, rc, NULL);
	printf("items reachable   %llu (%llu bytes)\n", (unsigned long long)r.items_reachable,
	       (unsigned long long)r.bytes_reachable);
	printf("chunks            free %llu, open %llu, sealed %llu, retiring %llu, retired %llu\n",
	       (unsigned long long)r.chunks_free, (unsigned long long)r.chunks_open,
	       (unsigned long long)r.chunks_sealed, (unsigned long long)r.chunks_retiring,
	       (unsigned long long)r.chunks_retired);
	printf("processes         %llu live, %llu dead awaiting the reaper\n",
	       (unsigned long long)r.procs_live, (unsigned long long)r.procs_dead);
	printf("threads           %llu live\n", (unsigned long long)r.threads_live);
	printf("locks of the dead %llu\n", (unsigned long long)r.locks_held_by_dead);
	printf("leaked log bytes  %llu (unreachable, not yet counted dead)\n",
	       (unsigned long long)r.bytes_leaked);
	printf("violations        %llu\n", (unsigned long long)r.errors);
	printf("%s\n", r.errors ? "FAILED" : "OK");
	return r.errors ? EXIT_FAILED : EXIT_OK;
}

static int cmd_destroy(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{0}};
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;
	const char *name = argv[optind];
	int rc = shmc_unlink(name);
	if (rc == SHMC_ENOENT)
		return fail(cmd, "%s: no segment of that name", name);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	return EXIT_OK;
}

/* ---------------------------------------------------------------- serve */

/* Hold the background roles for NAME until told to stop. The signals are
 * blocked before the library starts its role thread (which inherits the
 * mask), so they arrive only where sigtimedwait() takes them. */
static int cmd_serve(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{"quiet", no_argument, NULL, 'q'}, {0}};
	bool quiet = false;
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		if (opt == 'q')
			quiet = true;
	if (opt == 0 || !segment_operands_ok(cmd, argc, argv, 1, 1))
		return EXIT_USAGE;
	const char *name = argv[optind];
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	shmc_cache *c;
	int rc = shmc_open(name, NULL, 0, &c);
	if (rc)
		return segment_failed(cmd, name, rc, shmc_errmsg(NULL));
	uint64_t shown = UINT64_MAX;
	for (;;) {
		struct shmc_stats st;
		if (!quiet && shmc_stats(c, &st) == 0 && st.sweeper_pid != shown) {
			shown = st.sweeper_pid;
			if (shown == (uint64_t)getpid())
				fprintf(stderr, "shmcache serve: %s: holding the sweeper role\n", name);
			else if (shown)
				fprintf(stderr, "shmcache serve: %s: standing by (process %llu holds "
						"the sweeper role)\n", name, (unsigned long long)shown);
		}
		struct timespec poll = {1, 0};
		int sig = sigtimedwait(&stop, NULL, &poll);
		if (sig > 0) {
			if (!quiet)
				fprintf(stderr, "shmcache serve: %s: signal %d, releasing the roles\n",
					name, sig);
			break;
		}
	}
	shmc_close(c);
	return EXIT_OK;
}

/* ----------------------------------------------------------------- help */

static void list_commands(FILE *to);

static int cmd_help(const struct command *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {{0}};
	int opt;
	while ((opt = next_option(cmd, argc, argv, longopts)) > 0)
		;
	if (opt == 0 || !operands_ok(cmd, argc, 0, 1))
		return EXIT_USAGE;
	if (optind < argc) {
		const struct command *about = find_command(argv[optind]);
		if (!about)
			return usage_error(cmd, "unknown command '%s'", argv[optind]);
		printf("usage: %s", about->help);
		return EXIT_OK;
	}
	list_commands(stdout);
	return EXIT_OK;
}

/* ------------------------------------------------------------- dispatch */

static const struct command commands[] = {
	{"create", "create a segment",
	 "shmcache create NAME [options]\n"
	 "\n"
	 "Create segment NAME with the given parameters; fails if it exists.\n"
	 "BYTES take a k, m or g suffix (binary multiples).\n"
	 "\n"
	 "  --size BYTES         segment size (default 64m, at least 1m)\n"
	 "  --mode OCTAL         permission bits (default 0600)\n"
	 "  --chunk-size BYTES   log chunk: a power of two, 64k..64m; a value must\n"
	 "                       fit in one (default 1m, smaller for small segments)\n"
	 "  --item-size BYTES    expected key + value size; sizes the index (default 128)\n"
	 "  --max-key BYTES      largest key, 1..65535 (default 250)\n"
	 "  --default-ttl MS     TTL of items stored without one (default 0: never expire)\n"
	 "  --ttl-jitter PCT     spread every TTL by +- PCT percent, 0..50 (default 0)\n"
	 "  --max-procs N        process slots, 1..65535 (default 256)\n"
	 "  --max-threads N      thread slots, 1..65535 (default 1024)\n",
	 cmd_create},
	{"info", "show parameters, memory, counters and the sweeper",
	 "shmcache info NAME [--json]\n"
	 "\n"
	 "Show segment NAME's parameters, memory use, counters and sweeper state.\n"
	 "\n"
	 "  --json   one JSON object; the field names are stable (see shmcache(1))\n",
	 cmd_info},
	{"get", "write a key's value to stdout",
	 "shmcache get NAME KEY\n"
	 "\n"
	 "Write the value of KEY in segment NAME to stdout, raw (no newline added).\n"
	 "Exits 1 with \"not found\" on stderr if KEY is absent or expired.\n",
	 cmd_get},
	{"set", "store a value",
	 "shmcache set NAME KEY VALUE [--ttl MS]\n"
	 "\n"
	 "Store VALUE under KEY in segment NAME. VALUE '-' reads the value from\n"
	 "stdin (binary-safe). Put '--' before a KEY or VALUE that starts with '-'.\n"
	 "\n"
	 "  --ttl MS   expire after MS milliseconds (default 0: the segment's default TTL)\n",
	 cmd_set},
	{"del", "remove a key",
	 "shmcache del NAME KEY\n"
	 "\n"
	 "Remove KEY from segment NAME. Exits 1 with \"not found\" if it is absent.\n",
	 cmd_del},
	{"dump", "write every live item to a dump file",
	 "shmcache dump NAME [FILE|-] [-q|--quiet]\n"
	 "\n"
	 "Write every live item of segment NAME (key, value, remaining TTL) to FILE,\n"
	 "or to stdout if FILE is '-' or absent, in the format of\n"
	 "docs/dump-format.md. Reads the segment without attaching or locking; items\n"
	 "written during the dump may or may not be included. FILE is replaced only\n"
	 "once the dump is complete.\n"
	 "\n"
	 "  -q, --quiet   no summary on stderr\n",
	 cmd_dump},
	{"load", "store every item of a dump file",
	 "shmcache load NAME [FILE|-] [--ttl MS] [-q|--quiet]\n"
	 "\n"
	 "Store every record of dump FILE (stdin if '-' or absent) in segment NAME,\n"
	 "each with its remaining TTL counted from now. The whole file is checked\n"
	 "first: a truncated or damaged dump is refused and nothing is stored.\n"
	 "\n"
	 "  --ttl MS      store every item with this TTL instead (0: the segment's default)\n"
	 "  -q, --quiet   no summary on stderr\n",
	 cmd_load},
	{"verify", "check every invariant of a segment (read-only)",
	 "shmcache verify NAME\n"
	 "\n"
	 "Walk segment NAME and check every invariant; read-only and safe on a live\n"
	 "segment. Exits 1 on any violation.\n",
	 cmd_verify},
	{"destroy", "remove a segment",
	 "shmcache destroy NAME\n"
	 "\n"
	 "Remove segment NAME. Processes attached to it keep it until they detach.\n",
	 cmd_destroy},
	{"serve", "hold the background roles (sweeper) until stopped",
	 "shmcache serve NAME [-q|--quiet]\n"
	 "\n"
	 "Attach to segment NAME and run its background roles (the sweeper: clock,\n"
	 "eviction ahead of writers, expiry, reaping the dead) for hosts whose\n"
	 "workers are short-lived. Any process attached with the sweeper enabled\n"
	 "may hold a role; serve is one that does nothing else and stays. Runs until\n"
	 "SIGINT, SIGTERM or SIGHUP, then detaches, handing the roles to another\n"
	 "attached process at once. Reports on stderr when it takes the role.\n"
	 "\n"
	 "  -q, --quiet   report nothing\n",
	 cmd_serve},
	{"help", "list the commands, or describe one",
	 "shmcache help [COMMAND]\n"
	 "\n"
	 "List the commands, or show the help of COMMAND.\n",
	 cmd_help},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void list_commands(FILE *to)
{
	fprintf(to, "usage: shmcache COMMAND [ARGS]   (shmcache COMMAND --help for its options)\n"
		    "\n"
		    "commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(to, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(to, "\n"
		    "Exit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

/* --help or -h among the options (before any "--"). */
static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		list_commands(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
		list_commands(stdout);
		return EXIT_OK;
	}
	if (!strcmp(name, "--version")) {
		printf("shmcache %d.%d.%d\n", SHMC_VERSION_MAJOR, SHMC_VERSION_MINOR,
		       SHMC_VERSION_PATCH);
		return EXIT_OK;
	}
	const struct command *cmd = find_command(name);
	if (!cmd) {
		fprintf(stderr, "shmcache: unknown command '%s'\n\n", name);
		list_commands(stderr);
		return EXIT_USAGE;
	}
	if (wants_help(argc - 1, argv + 1)) {
		printf("usage: %s", cmd->help);
		return EXIT_OK;
	}
	return cmd->run(cmd, argc - 1, argv + 1);
}
