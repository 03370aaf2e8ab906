/*
 * proc.h - process and thread slots, liveness, reaping the dead.
 *
 * A process owns proc slot i exactly while it holds an OFD write lock on
 * byte SHMC__OFD_PROC_BASE + i of the segment's file (past EOF). The kernel
 * drops that lock when the process dies, however it dies and in whatever
 * PID namespace, so F_OFD_GETLK tells whether a slot's owner is alive.
 * The lock is also the slot's allocation mutex: whoever takes it owns the
 * slot, and first reaps what a dead previous owner left behind.
 *
 * Each thread that uses a handle owns a thread slot: its RCU reader word,
 * its counters, and the identity recorded in bucket locks and open chunks.
 * A thread slot belongs to the proc slot named in owner_proc.
 */
#ifndef SHMC_PROC_H
#define SHMC_PROC_H

#include "segment.h"

#include <stdbool.h>
#include <stdint.h>

#define SHMC__OFD_INIT_BYTE (1ll << 40)          /* held by the creator during init */
#define SHMC__OFD_PROC_BASE ((1ll << 40) + 64)   /* + proc slot index */

enum { SHMC__PROC_FREE = 0, SHMC__PROC_ACTIVE = 1 };

struct shmc__proc_slot {
	uint32_t state;          /* SHMC__PROC_*; written by the OFD-lock holder */
	uint32_t pid;            /* display only: pids are reused and ns-local */
	uint64_t attach_unix_ms; /* display only */
	/* 1 if this process's readers use full fences (it could not register
	 * for expedited membarrier): a reclaimer that cannot issue membarrier
	 * may then rely on its own fence. Written by the holder at attach. */
	uint32_t readers_fence;
	uint32_t reserved32;
	uint64_t reserved[5];
};
_Static_assert(sizeof(struct shmc__proc_slot) == 64, "one cache line");

struct shmc__thread_slot {
	/* RCU reader word: 0 = quiescent, else the gp_ctr value read on
	 * entering the outermost read section. Owner writes; reclaimers read. */
	uint64_t rcu_ctr;
	/* proc slot + 1 of the owner; 0 = free. Claimed by CAS 0->p; released
	 * (stored 0) by the owner or by a reaper of the dead owner. */
	uint32_t owner_proc;
	/* Bumped on every claim, so a lock word naming this slot can tell
	 * whether the slot still has the same holder. Low 16 bits used. */
	uint32_t gen;
	uint32_t tid;            /* display only */
	uint32_t reserved;
	uint64_t counters[SHMC__NCOUNTERS]; /* owner writes, stats readers sum */
	uint64_t pad[48 - 3 - SHMC__NCOUNTERS];
};
_Static_assert(sizeof(struct shmc__thread_slot) == 384, "six cache lines");

struct shmc_cache;

/* Claim a free proc slot (reaping a dead owner's leftovers first) and set
 * c->proc_idx. Returns 0, SHMC_ETOOMANY or -errno. */
int shmc__proc_attach(struct shmc_cache *c);

/* Release the proc slot (and every thread slot it still owns). */
void shmc__proc_detach(struct shmc_cache *c);

/* true if proc slot idx is held by a live process (or by us). */
bool shmc__proc_alive(struct shmc_cache *c, uint32_t idx);

/* If proc slot idx's owner is dead, reap it: release its thread slots
 * (counters folded, reader words cleared), seal its open chunks, free the
 * slot. Returns true if it was dead and is now reaped. Safe to race with
 * other reapers and with a new owner (the OFD lock decides). */
bool shmc__proc_reap_if_dead(struct shmc_cache *c, uint32_t idx);

/* Reap every dead process; returns how many were reaped. */
uint32_t shmc__reap_dead_procs(struct shmc_cache *c);

/* Claim / release a thread slot for the calling thread. */
int shmc__thread_slot_claim(struct shmc_cache *c, uint32_t *idx);
void shmc__thread_slot_release(struct shmc_cache *c, uint32_t idx);

/* true if the holder recorded in a bucket lock word is gone: its thread slot
 * was released or re-claimed since, or its process is dead (which, with
 * reap, is then reaped). */
bool shmc__lock_holder_dead(struct shmc_cache *c, uint32_t lockword, bool reap);

/* true if the claimant named in a RETIRING chunk state word is gone. */
bool shmc__claimant_gone(struct shmc_cache *c, uint32_t word);

#endif
