/*
 * rcu.c - cross-process RCU: reader words in thread slots, a global grace
 * period counter in the header, and membarrier to keep readers fence-free.
 *
 * Why this is safe (Dekker between one reader and one reclaimer):
 *   reader:    store slot = g;  [barrier R];  load index
 *   reclaimer: unlink (RMW);    R = ++gp;     [barrier W];  load slot
 * Barrier W is membarrier(GLOBAL_EXPEDITED), which executes a full fence on
 * every CPU running a registered process, so either the reclaimer sees the
 * reader's word (and waits for it), or the reader's index load comes after
 * the unlink and cannot reach the unlinked memory. Readers of processes that
 * could not register use a real fence for barrier R instead.
 */
#include "rcu.h"

#include "handle.h"

#include <linux/membarrier.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>
#include "atomic.h"

static int membarrier(int cmd)
{
	return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool registered;

static void register_once(void)
{
	const char *off = getenv("SHMC_NO_MEMBARRIER");
	if (off && *off && *off != '0')
		return;
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
	    !(cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
		return;
	registered = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}

bool shmc__rcu_process_init(void)
{
	pthread_once(&init_once, register_once);
	return registered;
}

void shmc__rcu_read_enter(shmc_cache *c, struct shmc__tctx *t)
{
	if (t->read_depth++)
		return;
	uint64_t g = uatomic_read(&c->hdr->gp_ctr);
	cmm_smp_rmb(); /* acquire: the index loads below come after it */
	uatomic_set(&t->slot->rcu_ctr, g);
	if (c->fence_readers)
		cmm_smp_mb();
	else
		cmm_barrier();
}

void shmc__rcu_read_exit(shmc_cache *c, struct shmc__tctx *t)
{
	if (--t->read_depth)
		return;
	if (c->fence_readers)
		cmm_smp_mb();
	else
		cmm_barrier();
	uatomic_set(&t->slot->rcu_ctr, 0);
}

uint64_t shmc__rcu_retire_stamp(shmc_cache *c)
{
	return uatomic_add_return(&c->hdr->gp_ctr, 1);
}

/* true if some live process's readers rely on membarrier (no fences). */
static bool fence_free_readers_exist(shmc_cache *c)
{
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (uatomic_read(&c->procs[p].state) != SHMC__PROC_FREE &&
		    !uatomic_read(&c->procs[p].readers_fence) && shmc__proc_alive(c, p))
			return true;
	return false;
}

/* Order our earlier unlinks before every reader's later loads. Any process
 * may issue the expedited barrier, but only if the kernel has it; without
 * it the (slow) classic global barrier does the same job. If neither is
 * allowed here (seccomp), our own fence is enough as long as every reader
 * fences too. */
static bool global_barrier(shmc_cache *c)
{
	cmm_smp_mb();
	if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0)
		return true;
	if (membarrier(MEMBARRIER_CMD_GLOBAL) == 0)
		return true;
	return !fence_free_readers_exist(c);
}

uint64_t shmc__rcu_oldest_reader(shmc_cache *c)
{
	/* Memory stamped after this read is not covered by the barrier and
	 * the scan below (a reader may enter after we pass its slot): the
	 * answer never exceeds it. */
	uint64_t gp_before = uatomic_read(&c->hdr->gp_ctr);
	cmm_smp_mb();
	if (!global_barrier(c)) {
		/* No way to order the fence-free readers that exist: report
		 * nothing reusable. */
		return 0;
	}
	uint64_t oldest = UINT64_MAX;
	for (uint32_t i = 0; i < c->geo.max_threads; i++) {
		struct shmc__thread_slot *ts = &c->threads[i];
		uint64_t ctr = uatomic_read(&ts->rcu_ctr);
		if (ctr == 0 || ctr >= oldest)
			continue;
		uint32_t owner = uatomic_read(&ts->owner_proc);
		if (owner && owner - 1 < c->geo.max_procs && owner - 1 != c->proc_idx &&
		    !shmc__proc_alive(c, owner - 1)) {
			/* A dead reader holds nothing: reap its process and
			 * skip it. */
			shmc__proc_reap_if_dead(c, owner - 1);
			continue;
		}
		oldest = ctr;
	}
	cmm_smp_mb();
	return oldest < gp_before ? oldest : gp_before;
}

bool shmc__rcu_wait(shmc_cache *c, uint64_t stamp, unsigned timeout_ms)
{
	uint64_t start = shmc__now_ms();
	for (unsigned spin = 0;; spin++) {
		if (stamp <= shmc__rcu_oldest_reader(c))
			return true;
		if (shmc__now_ms() - start > timeout_ms)
			return false;
		if (spin < 16)
			sched_yield();
		else
			usleep(spin < 64 ? 50 : 500);
	}
}
