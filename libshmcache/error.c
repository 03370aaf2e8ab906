/*
 * error.c - error names and messages, generated from SHMC_ERRNO_MAP, and the
 * per-thread detailed message of the last failure.
 *
 * Codes are ours (SHMC_E*, below -1000) or -errno passed through from the
 * system. The detailed message is thread-local and kept per handle, so
 * shmc_errmsg(c) never shows (nor loses to) another handle's failure.
 */
#include "handle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The last failure message per handle, per thread: a few slots keyed by
 * handle serial (0 = shmc_open), reused round-robin. */
#define ERR_WAYS 4
struct err_slot {
	uint64_t serial;
	bool set;
	char msg[256];
};
static __thread struct err_slot tls_err[ERR_WAYS];
static __thread unsigned tls_err_victim;

static struct err_slot *err_slot_of(uint64_t serial)
{
	for (int i = 0; i < ERR_WAYS; i++)
		if (tls_err[i].set && tls_err[i].serial == serial)
			return &tls_err[i];
	return NULL;
}

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
	struct err_slot *e = err_slot_of(c ? c->serial : 0);
	return e ? e->msg : "";
}

int shmc__fail(const shmc_cache *c, int err, const char *fmt, ...)
{
	uint64_t serial = c ? c->serial : 0;
	struct err_slot *e = err_slot_of(serial);
	if (!e) {
		e = &tls_err[tls_err_victim++ % ERR_WAYS];
		e->serial = serial;
		e->set = true;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return err;
}
