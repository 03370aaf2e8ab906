/*
 * fault.h - named fault points for crash tests.
 *
 * Built with -DSHMC_FAULT_POINTS=ON, SHMC__FAULT_POINT("name") kills the
 * calling process with SIGKILL at the N-th time it passes point "name" when
 * the environment says SHMC_FAULT=name or SHMC_FAULT=name:N (default N = 1).
 * In normal builds the macro compiles to nothing.
 *
 * Points: set.appended, incr.appended, write.locked, write.published,
 * write.unlocked, del.locked, del.removed, read.section, chunk.take,
 * chunk.sealed, retire.claimed, evict.claimed, evict.item, compact.claimed
 * (each has a test in tests/torture/test_faults.c), and reap.thread.
 *
 * White-box tests can also run a function of their own at a point
 * (shmc__fault_set_hook), to hold a thread there while another acts
 * (tests/unit/test_proc.c does so at reap.thread).
 */
#ifndef SHMC_FAULT_H
#define SHMC_FAULT_H

#include <stdbool.h>

/* true if this build has fault points compiled in. */
bool shmc__fault_points_built(void);

#if defined(SHMC_FAULT_POINTS) && SHMC_FAULT_POINTS
void shmc__fault_hit(const char *name);
/* Call fn(name) at every pass through point name in this process, before
 * any armed kill; fn NULL removes the hook. One hook at a time. */
void shmc__fault_set_hook(const char *name, void (*fn)(const char *name));
#define SHMC__FAULT_POINT(name) shmc__fault_hit(name)
#else
#define SHMC__FAULT_POINT(name) ((void)0)
#endif

#endif
