/*
 * error.c - error names and messages, generated from SHMC_ERRNO_MAP, and the
 * per-thread detailed message of the last failure.
 *
 * Codes are ours (SHMC_E*, below -1000) or -errno passed through from the
 * system. The detailed message is thread-local and tagged with the serial of
 * the handle that failed, so shmc_errmsg(c) never shows another handle's
 * failure.
 */
#include "handle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static __thread char tls_errmsg[256];
static __thread uint64_t tls_err_serial; /* 0 = shmc_open, else the handle's */
static __thread int tls_err_set;

const char *shmc_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define SHMC_STRERROR_CASE_(name, value, msg)                                    \
	case SHMC_##name:                                                        \
		return msg;
		SHMC_ERRNO_MAP(SHMC_STRERROR_CASE_)
#undef SHMC_STRERROR_CASE_
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

const char *shmc_errname(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define SHMC_ERRNAME_CASE_(name, value, msg)                                     \
	case SHMC_##name:                                                        \
		return "SHMC_" #name;
		SHMC_ERRNO_MAP(SHMC_ERRNAME_CASE_)
#undef SHMC_ERRNAME_CASE_
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		const char *name = strerrorname_np(-err);
		if (name)
			return name;
	}
	return "UNKNOWN";
}

const char *shmc_errmsg(const shmc_cache *c)
{
	uint64_t serial = c ? c->serial : 0;
	if (!tls_err_set || tls_err_serial != serial)
		return "";
	return tls_errmsg;
}

int shmc__fail(const shmc_cache *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tls_errmsg, sizeof(tls_errmsg), fmt, ap);
	va_end(ap);
	tls_err_serial = c ? c->serial : 0;
	tls_err_set = 1;
	return err;
}
