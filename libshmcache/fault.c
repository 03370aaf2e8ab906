/* fault.c - see fault.h. */
#include "fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool shmc__fault_points_built(void)
{
#if defined(SHMC_FAULT_POINTS) && SHMC_FAULT_POINTS
	return true;
#else
	return false;
#endif
}

#if defined(SHMC_FAULT_POINTS) && SHMC_FAULT_POINTS
static char armed_name[64];
static long armed_at;   /* kill on this hit; 0 = disarmed */
static long hits;
static pid_t parsed_by; /* a fork child parses its own environment again */

static void parse_env(void)
{
	armed_at = 0;
	hits = 0;
	const char *spec = getenv("SHMC_FAULT");
	if (!spec || !*spec)
		return;
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n == 0 || n >= sizeof(armed_name))
		return;
	memcpy(armed_name, spec, n);
	armed_name[n] = 0;
	armed_at = colon ? strtol(colon + 1, NULL, 10) : 1;
}

static char hook_name[64];
static void (*_Atomic hook_fn)(const char *name);

void shmc__fault_set_hook(const char *name, void (*fn)(const char *name))
{
	hook_fn = NULL;
	if (fn) {
		snprintf(hook_name, sizeof(hook_name), "%s", name);
		hook_fn = fn;
	}
}

void shmc__fault_hit(const char *name)
{
	void (*fn)(const char *) = hook_fn;
	if (fn && strcmp(name, hook_name) == 0)
		fn(name);
	pid_t pid = getpid();
	if (__atomic_exchange_n(&parsed_by, pid, __ATOMIC_ACQ_REL) != pid)
		parse_env();
	if (armed_at <= 0 || strcmp(name, armed_name) != 0)
		return;
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED) == armed_at)
		raise(SIGKILL);
}
#endif
