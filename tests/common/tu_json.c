/*
 * tu_json.c - a strict recursive-descent JSON parser (see tu_json.h).
 *
 * Written for tests, so it favours being obviously right over speed: one
 * function per production of RFC 8259's grammar, every input byte checked
 * against the grammar, the first error reported with its byte offset.
 */
#include "tu_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const unsigned char *start, *p, *end;
	int depth;
	char *err;
	size_t cap;
	bool failed;
};

static void *parse_fail(struct parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void *parse_fail(struct parser *ps, const char *fmt, ...)
{
	if (ps->failed)
		return NULL; /* keep the first, innermost message */
	ps->failed = true;
	if (ps->err && ps->cap) {
		int n = snprintf(ps->err, ps->cap, "at byte %zu: ", (size_t)(ps->p - ps->start));
		if (n > 0 && (size_t)n < ps->cap) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(ps->err + n, ps->cap - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return NULL;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static struct tu_json *new_value(struct parser *ps, enum tu_json_type type)
{
	struct tu_json *v = calloc(1, sizeof(*v));
	if (!v)
		return parse_fail(ps, "out of memory");
	v->type = type;
	return v;
}

static bool is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static int hex_value(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Four hex digits after "\u". */
static bool read_hex4(struct parser *ps, unsigned *out)
{
	if (ps->end - ps->p < 4) {
		parse_fail(ps, "\\u needs four hex digits");
		return false;
	}
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hex_value(ps->p[i]);
		if (h < 0) {
			parse_fail(ps, "\\u needs four hex digits");
			return false;
		}
		v = v << 4 | (unsigned)h;
	}
	ps->p += 4;
	*out = v;
	return true;
}

static size_t put_utf8(unsigned char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | cp >> 18);
	o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
	unsigned char b = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (b >= 0xc2 && b <= 0xdf)
		n = 2;
	else if (b >= 0xe0 && b <= 0xef) {
		n = 3;
		if (b == 0xe0)
			lo = 0xa0;
		else if (b == 0xed)
			hi = 0x9f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		n = 4;
		if (b == 0xf0)
			lo = 0x90;
		else if (b == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* A string, starting at its opening quote. The decoded text is never longer
 * than the literal, so one allocation of the remaining input's size is a
 * bound; it is trimmed at the end. */
static bool parse_string(struct parser *ps, char **out, size_t *out_len)
{
	ps->p++; /* the opening quote */
	unsigned char *buf = malloc((size_t)(ps->end - ps->p) + 1);
	if (!buf) {
		parse_fail(ps, "out of memory");
		return false;
	}
	size_t n = 0;
	for (;;) {
		if (ps->p >= ps->end) {
			parse_fail(ps, "unterminated string");
			goto fail;
		}
		unsigned char ch = *ps->p;
		if (ch == '"') {
			ps->p++;
			break;
		}
		if (ch < 0x20) {
			parse_fail(ps, "raw control character 0x%02x in a string", ch);
			goto fail;
		}
		if (ch >= 0x80) {
			size_t len = utf8_sequence(ps->p, ps->end);
			if (!len) {
				parse_fail(ps, "invalid UTF-8 in a string");
				goto fail;
			}
			memcpy(buf + n, ps->p, len);
			n += len;
			ps->p += len;
			continue;
		}
		if (ch != '\\') {
			buf[n++] = ch;
			ps->p++;
			continue;
		}
		ps->p++;
		if (ps->p >= ps->end) {
			parse_fail(ps, "unterminated escape");
			goto fail;
		}
		unsigned char esc = *ps->p++;
		const char *simple = strchr("\"\\/bfnrt", esc);
		if (esc && simple) {
			static const char decoded[] = "\"\\/\b\f\n\r\t";
			buf[n++] = (unsigned char)decoded[simple - "\"\\/bfnrt"];
			continue;
		}
		if (esc != 'u') {
			ps->p--;
			parse_fail(ps, "invalid escape '\\%c'", esc);
			goto fail;
		}
		unsigned cp;
		if (!read_hex4(ps, &cp))
			goto fail;
		if (cp >= 0xdc00 && cp <= 0xdfff) {
			parse_fail(ps, "lone low surrogate \\u%04x", cp);
			goto fail;
		}
		if (cp >= 0xd800 && cp <= 0xdbff) {
			unsigned low;
			if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
				parse_fail(ps, "high surrogate \\u%04x without its low half", cp);
				goto fail;
			}
			ps->p += 2;
			if (!read_hex4(ps, &low))
				goto fail;
			if (low < 0xdc00 || low > 0xdfff) {
				parse_fail(ps, "high surrogate \\u%04x followed by \\u%04x", cp,
					   low);
				goto fail;
			}
			cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
		}
		n += put_utf8(buf + n, cp);
	}
	buf[n] = '\0';
	*out = (char *)buf;
	*out_len = n;
	return true;
fail:
	free(buf);
	return false;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static struct tu_json *parse_number(struct parser *ps)
{
	const unsigned char *begin = ps->p;
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || !is_digit(*ps->p))
		return parse_fail(ps, "a number needs a digit here");
	if (*ps->p == '0') {
		ps->p++;
		if (ps->p < ps->end && is_digit(*ps->p))
			return parse_fail(ps, "leading zero in a number");
	} else {
		while (ps->p < ps->end && is_digit(*ps->p))
			ps->p++;
	}
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (ps->p >= ps->end || !is_digit(*ps->p))
			return parse_fail(ps, "a fraction needs a digit");
		while (ps->p < ps->end && is_digit(*ps->p))
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || !is_digit(*ps->p))
			return parse_fail(ps, "an exponent needs a digit");
		while (ps->p < ps->end && is_digit(*ps->p))
			ps->p++;
	}
	struct tu_json *v = new_value(ps, TU_JSON_NUMBER);
	if (!v)
		return NULL;
	size_t len = (size_t)(ps->p - begin);
	v->number_text = malloc(len + 1);
	if (!v->number_text) {
		free(v);
		return parse_fail(ps, "out of memory");
	}
	memcpy(v->number_text, begin, len);
	v->number_text[len] = '\0';
	v->number = strtod(v->number_text, NULL);
	return v;
}

static struct tu_json *parse_value(struct parser *ps);

/* Elements or members up to the closing bracket; the opening one is
 * consumed by the caller. */
static struct tu_json *parse_container(struct parser *ps, enum tu_json_type type)
{
	unsigned char close = type == TU_JSON_OBJECT ? '}' : ']';
	if (++ps->depth > TU_JSON_MAX_DEPTH)
		return parse_fail(ps, "nested deeper than %d", TU_JSON_MAX_DEPTH);
	struct tu_json *v = new_value(ps, type);
	if (!v)
		return NULL;
	struct tu_json **tail = &v->child;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;) {
		char *name = NULL;
		size_t name_len = 0;
		skip_ws(ps);
		if (type == TU_JSON_OBJECT) {
			if (ps->p >= ps->end || *ps->p != '"') {
				parse_fail(ps, "expected a member name");
				goto fail;
			}
			const unsigned char *at = ps->p;
			if (!parse_string(ps, &name, &name_len))
				goto fail;
			for (struct tu_json *m = v->child; m; m = m->next) {
				if (m->name_len == name_len && !memcmp(m->name, name, name_len)) {
					ps->p = at;
					parse_fail(ps, "duplicate member \"%s\"", name);
					free(name);
					goto fail;
				}
			}
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(name);
				parse_fail(ps, "expected ':'");
				goto fail;
			}
			ps->p++;
		}
		struct tu_json *item = parse_value(ps);
		if (!item) {
			free(name);
			goto fail;
		}
		item->name = name;
		item->name_len = name_len;
		*tail = item;
		tail = &item->next;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			ps->depth--;
			return v;
		}
		parse_fail(ps, "expected ',' or '%c'", close);
		goto fail;
	}
fail:
	tu_json_free(v);
	return NULL;
}

static bool literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static struct tu_json *parse_value(struct parser *ps)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return parse_fail(ps, "expected a value, found the end");
	unsigned char ch = *ps->p;
	struct tu_json *v;
	switch (ch) {
	case '{':
		ps->p++;
		return parse_container(ps, TU_JSON_OBJECT);
	case '[':
		ps->p++;
		return parse_container(ps, TU_JSON_ARRAY);
	case '"':
		v = new_value(ps, TU_JSON_STRING);
		if (v && !parse_string(ps, &v->string, &v->string_len)) {
			free(v);
			return NULL;
		}
		return v;
	case 't':
	case 'f':
		if (!literal(ps, ch == 't' ? "true" : "false"))
			return parse_fail(ps, "invalid literal");
		v = new_value(ps, TU_JSON_BOOL);
		if (v)
			v->boolean = ch == 't';
		return v;
	case 'n':
		if (!literal(ps, "null"))
			return parse_fail(ps, "invalid literal");
		return new_value(ps, TU_JSON_NULL);
	default:
		if (ch == '-' || is_digit(ch))
			return parse_number(ps);
		return parse_fail(ps, "unexpected character 0x%02x", ch);
	}
}

struct tu_json *tu_json_parse(const char *text, size_t len, char *err, size_t cap)
{
	struct parser ps = {
		.start = (const unsigned char *)text,
		.p = (const unsigned char *)text,
		.end = (const unsigned char *)text + len,
		.err = err,
		.cap = cap,
	};
	if (err && cap)
		err[0] = '\0';
	struct tu_json *v = parse_value(&ps);
	if (!v)
		return NULL;
	skip_ws(&ps);
	if (ps.p != ps.end) {
		parse_fail(&ps, "data after the value");
		tu_json_free(v);
		return NULL;
	}
	return v;
}

void tu_json_free(struct tu_json *v)
{
	while (v) {
		struct tu_json *next = v->next;
		tu_json_free(v->child);
		free(v->name);
		free(v->number_text);
		free(v->string);
		free(v);
		v = next;
	}
}

const struct tu_json *tu_json_member(const struct tu_json *v, const char *name)
{
	if (!v || v->type != TU_JSON_OBJECT)
		return NULL;
	size_t n = strlen(name);
	for (const struct tu_json *m = v->child; m; m = m->next)
		if (m->name_len == n && !memcmp(m->name, name, n))
			return m;
	return NULL;
}

const struct tu_json *tu_json_path(const struct tu_json *v, const char *path)
{
	char part[128];
	while (v && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, path, n);
		part[n] = '\0';
		v = tu_json_member(v, part);
		path += n;
		if (*path == '.')
			path++;
	}
	return v;
}

bool tu_json_u64(const struct tu_json *v, uint64_t *out)
{
	if (!v || v->type != TU_JSON_NUMBER)
		return false;
	uint64_t x = 0;
	for (const char *p = v->number_text; *p; p++) {
		if (!is_digit((unsigned char)*p))
			return false;
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

size_t tu_json_count(const struct tu_json *v)
{
	size_t n = 0;
	if (v && (v->type == TU_JSON_ARRAY || v->type == TU_JSON_OBJECT))
		for (const struct tu_json *c = v->child; c; c = c->next)
			n++;
	return n;
}
