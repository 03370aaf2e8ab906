/*
 * unodes.c - the uplink node table (see unodes.h): uplink threads claim an
 * entry per remote node and mirror its breaker there; shmc_uplink_nodes
 * reads the live entries.
 *
 * Writers are few and slow (a breaker changes state at most a few times a
 * second) and readers are monitoring calls, so the table is a plain array
 * scanned end to end, with no index. Strings are copied byte by byte with
 * relaxed atomic accesses: a reader may race with the owner's rewrite and
 * then throws its copy away (the sequence lock says so), but never reads a
 * byte while it is being written in a way the compiler could tear.
 */
#include "unodes.h"

#include "handle.h"

#include <sched.h>
#include <string.h>
#include "atomic.h"

#define READ_TRIES 64 /* copies of one entry before giving up on it */

static uint64_t owner_word(const struct shmc__tctx *t)
{
	return (uint64_t)(t->slot_idx + 1) << 32 | uatomic_read(&t->slot->gen);
}

/* Is owner (an entry's owner word) a live thread? *proc receives its
 * process slot. */
static bool owner_live(shmc_cache *c, uint64_t owner, uint32_t *proc)
{
	uint32_t slot1 = (uint32_t)(owner >> 32), gen = (uint32_t)owner;
	if (slot1 == 0 || slot1 > c->geo.max_threads)
		return false;
	struct shmc__thread_slot *ts = &c->threads[slot1 - 1];
	uint32_t p1 = uatomic_read(&ts->owner_proc);
	if (p1 == 0 || p1 > c->geo.max_procs || uatomic_read(&ts->gen) != gen)
		return false;
	if (!shmc__proc_alive(c, p1 - 1))
		return false;
	*proc = p1 - 1;
	return true;
}

static void write_begin(struct shmc__unode *e)
{
	/* A writer that died mid-way left seq odd: keep it odd. */
	uatomic_set(&e->seq, uatomic_read(&e->seq) | 1u);
	cmm_smp_wmb();
}

static void write_end(struct shmc__unode *e)
{
	cmm_smp_wmb();
	uatomic_set(&e->seq, uatomic_read(&e->seq) + 1u);
}

/* addr into e, cut to fit with "..." at the end. */
static void write_addr(struct shmc__unode *e, const char *addr)
{
	size_t n = strlen(addr);
	char buf[SHMC__UNODE_ADDR];
	if (n < sizeof buf) {
		memcpy(buf, addr, n + 1);
	} else {
		memcpy(buf, addr, sizeof buf - 4);
		memcpy(buf + sizeof buf - 4, "...", 4);
	}
	for (size_t i = 0; i < sizeof buf; i++)
		__atomic_store_n(&e->addr[i], buf[i], __ATOMIC_RELAXED);
}

int32_t shmc__unode_claim(shmc_cache *c, struct shmc__tctx *t, const char *addr)
{
	uint64_t mine = owner_word(t);
	struct shmc__unode *table = c->unodes;
	for (uint32_t i = 0; i < c->geo.nunodes; i++) {
		struct shmc__unode *e = &table[i];
		uint64_t w = uatomic_read(&e->owner);
		uint32_t proc;
		if (w != 0 && owner_live(c, w, &proc))
			continue;
		if (uatomic_cmpxchg(&e->owner, w, mine) != w)
			continue;
		write_begin(e);
		uatomic_set(&e->state, SHMC_BREAKER_CLOSED);
		uatomic_set(&e->failures, 0);
		uatomic_set(&e->breaker_opens, 0);
		write_addr(e, addr);
		uatomic_set(&e->written_by, mine);
		write_end(e);
		return (int32_t)i;
	}
	return -1;
}

void shmc__unode_publish(shmc_cache *c, struct shmc__tctx *t, uint32_t idx, uint32_t state,
			 uint32_t failures, uint64_t breaker_opens)
{
	if (idx >= c->geo.nunodes)
		return;
	struct shmc__unode *e = &c->unodes[idx];
	if (uatomic_read(&e->owner) != owner_word(t))
		return;
	write_begin(e);
	uatomic_set(&e->state, state);
	uatomic_set(&e->failures, failures);
	uatomic_set(&e->breaker_opens, breaker_opens);
	write_end(e);
}

void shmc__unode_release(shmc_cache *c, struct shmc__tctx *t, uint32_t idx)
{
	if (idx < c->geo.nunodes)
		uatomic_cmpxchg(&c->unodes[idx].owner, owner_word(t), 0);
}

/* A consistent copy of entry e, owned by the live owner word w, into out.
 * false if the entry changed owner or kept changing while read. */
static bool entry_read(const struct shmc__unode *e, uint64_t w, struct shmc_uplink_node *out)
{
	for (int tries = 0; tries < READ_TRIES; tries++) {
		uint32_t s1 = uatomic_read(&e->seq);
		if (s1 & 1u) {
			sched_yield();
			continue;
		}
		cmm_smp_rmb();
		uint32_t state = uatomic_read(&e->state), failures = uatomic_read(&e->failures);
		uint64_t opens = uatomic_read(&e->breaker_opens);
		uint64_t by = uatomic_read(&e->written_by);
		char addr[SHMC__UNODE_ADDR];
		for (size_t i = 0; i < sizeof addr; i++)
			addr[i] = __atomic_load_n(&e->addr[i], __ATOMIC_RELAXED);
		cmm_smp_rmb();
		if (uatomic_read(&e->seq) != s1)
			continue;
		if (by != w || uatomic_read(&e->owner) != w)
			return false; /* claimed by a new owner that has not written yet */
		addr[sizeof addr - 1] = '\0';
		memset(out->addr, 0, sizeof out->addr);
		memcpy(out->addr, addr, strlen(addr));
		out->state = state <= SHMC_BREAKER_HALF_OPEN ? state : SHMC_BREAKER_OPEN;
		out->failures = failures;
		out->breaker_opens = opens;
		return true;
	}
	return false;
}

int shmc_uplink_nodes(shmc_cache *c, struct shmc_uplink_node *out, size_t cap, size_t *n)
{
	if (!c || !n || (!out && cap))
		return SHMC_EINVAL;
	size_t found = 0;
	for (uint32_t i = 0; i < c->geo.nunodes; i++) {
		const struct shmc__unode *e = &c->unodes[i];
		uint64_t w = uatomic_read(&e->owner);
		uint32_t proc;
		if (w == 0 || !owner_live(c, w, &proc))
			continue;
		struct shmc_uplink_node node;
		memset(&node, 0, sizeof node);
		if (!entry_read(e, w, &node))
			continue;
		node.pid = uatomic_read(&c->procs[proc].pid);
		if (found < cap)
			out[found] = node;
		found++;
	}
	*n = found;
	return 0;
}
