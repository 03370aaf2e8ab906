/*
 * proc.c - process and thread slots, liveness, and reaping the dead.
 *
 * Liveness is an OFD lock per proc slot (see proc.h). Reaping a dead
 * process needs no cooperation from it: every structure it could have been
 * in the middle of changing is consistent after any single store, so the
 * reaper only releases what the dead process held: its thread slots (reader
 * words cleared, counters folded into the header) and its open chunks
 * (sealed, so they can be retired once their items die). Bucket locks of
 * the dead are taken over lazily by the next writer that finds them (see
 * shmc__lock_holder_dead).
 */
#include "proc.h"

#include "fault.h"
#include "handle.h"
#include "rcu.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

static int ofd(int fd, int cmd, uint32_t idx, short type, short *held)
{
	struct flock fl = {.l_type = type,
			   .l_whence = SEEK_SET,
			   .l_start = SHMC__OFD_PROC_BASE + (off_t)idx,
			   .l_len = 1};
	if (fcntl(fd, cmd, &fl) != 0)
		return -errno;
	if (held)
		*held = fl.l_type;
	return 0;
}

bool shmc__proc_alive(shmc_cache *c, uint32_t idx)
{
	if (idx == c->proc_idx)
		return true;
	short type = F_UNLCK;
	if (ofd(c->fd, F_OFD_GETLK, idx, F_WRLCK, &type) != 0)
		return true; /* cannot tell: the safe answer */
	return type != F_UNLCK;
}

static void fold_counters(shmc_cache *c, struct shmc__thread_slot *ts)
{
	for (int k = 0; k < SHMC__NCOUNTERS; k++) {
		uint64_t v = uatomic_read(&ts->counters[k]);
		if (v)
			uatomic_add(&c->hdr->folded[k], v);
		uatomic_set(&ts->counters[k], 0);
	}
}

/* Release thread slot idx on behalf of its (live or dead) owner. Counters
 * are folded before the slot is freed so a stats reader never double
 * counts them for long, and never loses them. */
static void thread_slot_free(shmc_cache *c, uint32_t idx)
{
	struct shmc__thread_slot *ts = &c->threads[idx];
	fold_counters(c, ts);
	uatomic_set(&ts->rcu_ctr, 0);
	cmm_smp_mb();
	uatomic_set(&ts->owner_proc, 0);
}

/* Release everything proc slot idx holds. Caller holds idx's OFD lock. */
static void proc_release_locked(shmc_cache *c, uint32_t idx)
{
	for (uint32_t t = 0; t < c->geo.max_threads; t++) {
		if (uatomic_read(&c->threads[t].owner_proc) != idx + 1)
			continue;
		SHMC__FAULT_POINT("reap.thread");
		for (uint32_t k = 0; k < c->geo.nchunks; k++)
			if (uatomic_read(&c->chunks[k].state) == SHMC__CHUNK_OPEN &&
			    uatomic_read(&c->chunks[k].owner) == t + 1)
				shmc__chunk_seal(c, NULL, k);
		thread_slot_free(c, t);
	}
	uatomic_set(&c->procs[idx].state, SHMC__PROC_FREE);
}

bool shmc__proc_reap_if_dead(shmc_cache *c, uint32_t idx)
{
	if (idx >= c->geo.max_procs || idx == c->proc_idx)
		return false;
	/* Taking the lock proves the owner is gone and keeps a new owner out
	 * while we clean; reap_lock keeps our other threads out, which the
	 * OFD lock, shared by every thread using c->fd, does not. */
	pthread_mutex_lock(&c->reap_lock);
	bool was_used = false;
	if (ofd(c->fd, F_OFD_SETLK, idx, F_WRLCK, NULL) == 0) {
		was_used = uatomic_read(&c->procs[idx].state) != SHMC__PROC_FREE;
		proc_release_locked(c, idx);
		ofd(c->fd, F_OFD_SETLK, idx, F_UNLCK, NULL);
	}
	pthread_mutex_unlock(&c->reap_lock);
	return was_used;
}

uint32_t shmc__reap_dead_procs(shmc_cache *c)
{
	uint32_t reaped = 0;
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (uatomic_read(&c->procs[p].state) != SHMC__PROC_FREE)
			reaped += shmc__proc_reap_if_dead(c, p);
	return reaped;
}

int shmc__proc_attach(shmc_cache *c)
{
	/* No reap_lock: c->fd is new (shmc_open, or re-registration in a fork
	 * child) and no other thread uses it before this returns. */
	for (uint32_t i = 0; i < c->geo.max_procs; i++) {
		int rc = ofd(c->fd, F_OFD_SETLK, i, F_WRLCK, NULL);
		if (rc == -EAGAIN || rc == -EACCES)
			continue;
		if (rc)
			return shmc__fail(c, rc, "F_OFD_SETLK: %s", strerror(-rc));
		/* Ours. A previous owner that died without detaching left its
		 * slots behind: release them before reuse. */
		if (uatomic_read(&c->procs[i].state) != SHMC__PROC_FREE)
			proc_release_locked(c, i);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		c->procs[i].pid = (uint32_t)getpid();
		c->procs[i].readers_fence = c->fence_readers;
		c->procs[i].attach_unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		uatomic_set(&c->procs[i].state, SHMC__PROC_ACTIVE);
		c->proc_idx = i;
		return 0;
	}
	return shmc__fail(c, SHMC_ETOOMANY, "all %u process slots are held by live processes",
			  c->geo.max_procs);
}

void shmc__proc_detach(shmc_cache *c)
{
	proc_release_locked(c, c->proc_idx);
	ofd(c->fd, F_OFD_SETLK, c->proc_idx, F_UNLCK, NULL);
}

int shmc__thread_slot_claim(shmc_cache *c, uint32_t *idx)
{
	/* Start the search at a per-process spot so that processes do not all
	 * race for slot 0. */
	uint32_t n = c->geo.max_threads;
	uint32_t start = (c->proc_idx * 4) % n;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < n; k++) {
			uint32_t i = (start + k) % n;
			struct shmc__thread_slot *ts = &c->threads[i];
			uint32_t owner = uatomic_read(&ts->owner_proc);
			if (owner == 0 && uatomic_cmpxchg(&ts->owner_proc, 0, c->proc_idx + 1) == 0) {
				uatomic_set(&ts->gen, ts->gen + 1);
				ts->tid = (uint32_t)syscall(SYS_gettid);
				uatomic_set(&ts->rcu_ctr, 0);
				*idx = i;
				return 0;
			}
		}
		/* Every slot taken: free the ones of dead processes, once. */
		shmc__reap_dead_procs(c);
	}
	return shmc__fail(c, SHMC_ETOOMANY, "all %u thread slots are in use", n);
}

void shmc__thread_slot_release(shmc_cache *c, uint32_t idx)
{
	thread_slot_free(c, idx);
}

bool shmc__lock_holder_dead(shmc_cache *c, uint32_t lockword, bool reap)
{
	uint32_t slot = (lockword & 0xffffu) - 1;
	uint32_t gen = lockword >> 16;
	if (slot >= c->geo.max_threads)
		return true; /* garbage: nobody can legitimately hold it */
	struct shmc__thread_slot *ts = &c->threads[slot];
	uint32_t owner = uatomic_read(&ts->owner_proc);
	if (owner == 0 || (uatomic_read(&ts->gen) & 0xffffu) != gen)
		return true;
	if (owner - 1 >= c->geo.max_procs)
		return true;
	if (shmc__proc_alive(c, owner - 1))
		return false;
	if (reap)
		shmc__proc_reap_if_dead(c, owner - 1);
	return true;
}

bool shmc__claimant_gone(shmc_cache *c, uint32_t word)
{
	uint32_t slot1 = (word >> 4) & 0xffffu, gen12 = word >> 20;
	if (slot1 == 0 || slot1 > c->geo.max_threads)
		return true;
	struct shmc__thread_slot *ts = &c->threads[slot1 - 1];
	uint32_t owner = uatomic_read(&ts->owner_proc);
	if (owner == 0 || (uatomic_read(&ts->gen) & 0xfffu) != gen12 || owner - 1 >= c->geo.max_procs)
		return true;
	return !shmc__proc_alive(c, owner - 1);
}
