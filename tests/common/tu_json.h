/*
 * tu_json.h - a small strict JSON parser for tests that check a tool's
 * --json output.
 *
 * Strict means RFC 8259 and nothing more: one value with optional
 * whitespace around it, no trailing commas, no comments, no leading zeros,
 * no NaN or Infinity, only the escapes the RFC defines (\u surrogates must
 * pair), no raw control characters or invalid UTF-8 in strings. It also
 * refuses duplicate member names, which the RFC allows but which no output
 * of ours should ever contain. Nesting is limited to TU_JSON_MAX_DEPTH.
 */
#ifndef SHMC_TU_JSON_H
#define SHMC_TU_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TU_JSON_MAX_DEPTH 64

enum tu_json_type {
	TU_JSON_NULL,
	TU_JSON_BOOL,
	TU_JSON_NUMBER,
	TU_JSON_STRING,
	TU_JSON_ARRAY,
	TU_JSON_OBJECT,
};

struct tu_json {
	enum tu_json_type type;
	char *name;	       /* member name inside an object (decoded), else NULL */
	size_t name_len;       /* bytes of name (it may contain NUL) */
	bool boolean;	       /* TU_JSON_BOOL */
	double number;	       /* TU_JSON_NUMBER */
	char *number_text;     /* TU_JSON_NUMBER: the literal as written */
	char *string;	       /* TU_JSON_STRING: decoded UTF-8, NUL-terminated */
	size_t string_len;     /* bytes of string (it may contain NUL) */
	struct tu_json *child; /* ARRAY, OBJECT: first element or member */
	struct tu_json *next;  /* next sibling */
};

/* Parse text[0, len). Returns the value (free with tu_json_free) or NULL,
 * with a message naming the byte offset in err (cap bytes) when err is not
 * NULL. */
struct tu_json *tu_json_parse(const char *text, size_t len, char *err, size_t cap);

void tu_json_free(struct tu_json *v);

/* The member called name of object v; NULL if v is not an object or has
 * no such member. */
const struct tu_json *tu_json_member(const struct tu_json *v, const char *name);

/* Follow dot-separated member names from v ("memory.items"). */
const struct tu_json *tu_json_path(const struct tu_json *v, const char *path);

/* v as an exact unsigned 64-bit integer: true only for a number written as
 * a non-negative integer literal (no fraction, no exponent) that fits. */
bool tu_json_u64(const struct tu_json *v, uint64_t *out);

/* Number of elements of an array or members of an object, 0 otherwise. */
size_t tu_json_count(const struct tu_json *v);

#endif /* SHMC_TU_JSON_H */
