/*
 * rcu.h - cross-process RCU.
 *
 * liburcu's flavours keep their reader registries in process-private
 * memory, so they cannot see readers in other processes; this grace period
 * is ours, built on liburcu's atomics and barriers.
 *
 * Reader (outermost section only; inner ones just count depth):
 *   slot->rcu_ctr = gp_ctr (acquire load); barrier; ... reads ...;
 *   barrier; slot->rcu_ctr = 0
 * where "barrier" is a compiler barrier if this process registered for
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED, and a full fence otherwise.
 *
 * Reclaimer: unlink (atomic RMW on the index), R = ++gp_ctr (full barrier),
 * stamp the memory with R. It may be reused once a grace period for R has
 * elapsed: after a global membarrier (or fence), every live reader word is
 * 0 or >= R (a reader that read R did so after the unlinks, and its index
 * loads are ordered after that read).
 */
#ifndef SHMC_RCU_H
#define SHMC_RCU_H

#include <stdbool.h>
#include <stdint.h>

struct shmc_cache;
struct shmc__tctx;

/* Register this process for expedited global membarrier (once). Returns
 * true if readers may use compiler barriers only. SHMC_NO_MEMBARRIER=1 in
 * the environment forces the fence fallback (for tests). */
bool shmc__rcu_process_init(void);

void shmc__rcu_read_enter(struct shmc_cache *c, struct shmc__tctx *t);
void shmc__rcu_read_exit(struct shmc_cache *c, struct shmc__tctx *t);

/* Start a grace period: returns the stamp R for memory unlinked before the
 * call. */
uint64_t shmc__rcu_retire_stamp(struct shmc_cache *c);

/* The oldest live reader word, capped at the epoch when the call began:
 * memory stamped R is reusable iff R <= shmc__rcu_oldest_reader(c). Issues the global barrier, scans every
 * thread slot, and reaps dead processes whose readers hold it back.
 * With no active reader it returns that epoch. On barrier failure it
 * returns 0 (nothing is safe). */
uint64_t shmc__rcu_oldest_reader(struct shmc_cache *c);

/* Wait until memory stamped `stamp` is reusable, up to timeout_ms. The
 * caller must not be inside a read section. Returns true if it is. */
bool shmc__rcu_wait(struct shmc_cache *c, uint64_t stamp, unsigned timeout_ms);

#endif
