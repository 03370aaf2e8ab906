/*
 * fetch.c - read-through: shmc_fetch with host-wide single-flight (fill
 * leases, lease.h), negative caching and stale-while-revalidate.
 *
 * A fetch looks the key up; a fresh value returns at once. On a miss the
 * fetcher takes the key's bucket lock and either joins the key's lease (and
 * waits on it) or claims one (and fills). A filler appends the loaded item
 * before locking, then publishes it by turning its lease entry into the
 * item's entry, if that entry is still there and still its own: a write of
 * the key removed it (the write wins), a waiter that took the fill over
 * owns it now. Waiters then look the key up again; an error or "absent"
 * reaches them through the lease record.
 *
 * A stale hit (past the TTL, inside the stale window) returns the value
 * and queues one refresh on this process's refresher thread, under a lease
 * claimed for it, so the host runs one refresh per expiry. A failed
 * refresh leaves the stale value and its lease in place, ownerless, for a
 * cooling-down second: stale serves meanwhile count as stale-if-error, and
 * a caller that really misses takes the lease over at once.
 *
 * shmc_fetch_many takes the same steps for many keys, but claims the leases
 * of all its misses before loading any, so that their remote GETs go to
 * the uplink as one batch.
 */
#include "alloc.h"
#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "lease.h"
#include "log.h"
#include "obs.h"
#include "rcu.h"
#include "uplink.h"
#include "write.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atomic.h"

#define FETCH_ROUNDS 4             /* looks before loading without a lease */
#define REFRESH_COOLDOWN_MS 1000   /* after a failed refresh */
#define REFRESH_QUEUE_MAX 1024     /* pending refreshes per process */
#define LEASE_KEEP_MS (1u << 30)   /* deadline of a lease its filler keeps
				    * (see lease_keep): never reached */

/* One shmc_fetch call. */
struct fetch {
	shmc_cache *c;
	struct shmc__tctx *t;
	struct shmc__keyref k;
	void *buf;
	size_t cap;
	size_t *vlen;
	shmc_loader_fn loader;
	void *arg;
	uint64_t seen_entry; /* index entry of the item look() last found */
};

/* What a look-up found. */
enum found { FOUND_NOTHING, FOUND_FRESH, FOUND_STALE, FOUND_ABSENT };

/* Look the key up inside a read section, copying a value out (*rc =
 * SHMC_ERANGE if it does not fit). *soft receives the item's soft expiry
 * (0 = none). Counts like a shmc_get. */
static enum found look(struct fetch *f, int *rc, uint64_t *soft)
{
	shmc_cache *c = f->c;
	struct shmc__found fd;
	*rc = 0;
	*soft = 0;
	int r = shmc__index_find(c, &f->k, &fd);
	shmc__count(f->t, SHMC__CTR_gets, 1);
	if (r != 0) {
		if (r != SHMC_ENOTFOUND)
			*rc = shmc__fail(c, r, "index entry points outside the data area");
		shmc__count(f->t, SHMC__CTR_misses, 1);
		return FOUND_NOTHING;
	}
	uint64_t now = shmc__clock_ms(c), hard = fd.expire_abs_ms;
	if (hard && now >= hard) {
		shmc__count(f->t, SHMC__CTR_expirations, 1);
		shmc__count(f->t, SHMC__CTR_misses, 1);
		return FOUND_NOTHING;
	}
	if (!fd.hdr.refbit)
		CMM_STORE_SHARED(fd.item[offsetof(struct shmc__item_hdr, refbit)], 1);
	if (fd.hdr.kind == SHMC__ITEM_NEGATIVE) {
		shmc__count(f->t, SHMC__CTR_misses, 1);
		return FOUND_ABSENT;
	}
	f->seen_entry = fd.entry;
	*f->vlen = fd.hdr.vlen;
	if (fd.hdr.vlen > f->cap)
		*rc = SHMC_ERANGE;
	else if (fd.hdr.vlen)
		memcpy(f->buf, fd.item + SHMC__ITEM_HDR + f->k.klen, fd.hdr.vlen);
	if (hard && c->geo.stale_ms) {
		*soft = hard - c->geo.stale_ms;
		if (now >= *soft)
			return FOUND_STALE;
	}
	return FOUND_FRESH;
}

static int erange(struct fetch *f)
{
	return shmc__fail(f->c, SHMC_ERANGE, "value is %zu bytes, buffer %zu", *f->vlen, f->cap);
}

/* Remove our lease entry from the index (the fill stores nothing). */
static void drop_entry(struct fetch *f, uint64_t entry)
{
	shmc_cache *c = f->c;
	shmc__bucket_lock(c, f->t, f->k.bucket);
	uint64_t *slot = shmc__index_slot_of_locked(c, &f->k, entry);
	if (slot)
		uatomic_cmpxchg(slot, entry, 0);
	shmc__bucket_unlock(c, f->t, f->k.bucket);
}

/* Store a loaded value (or, kind NEGATIVE, an "absent") through lease idx:
 * only if its entry is still in the index and the lease still ours. A
 * stale item of the key, if any, is replaced. Returns 0 if stored, else
 * SHMC__LEASE_RETRY (the entry is then gone from the index). */
static int store_through_lease(struct fetch *f, uint32_t idx, uint64_t entry, const void *val,
			       size_t len, uint64_t expire, uint8_t kind)
{
	shmc_cache *c = f->c;
	struct shmc__tctx *t = f->t;
	uint64_t off, bytes = SHMC__ITEM_HDR + f->k.klen + (uint64_t)len;
	if (shmc__append_new(c, t, &f->k, val, len, expire, &off) != 0) {
		drop_entry(f, entry);
		return SHMC__LEASE_RETRY;
	}
	c->data[off + offsetof(struct shmc__item_hdr, kind)] = kind; /* ours until published */
	uint64_t displaced = 0;
	bool stored = false;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, f->k.bucket);
	uint64_t *slot = shmc__index_slot_of_locked(c, &f->k, entry);
	if (slot && shmc__claim_owner(uatomic_read(&c->leases[idx].claim)) == t->lock_id) {
		struct shmc__found old;
		if (shmc__index_find(c, &f->k, &old) == 0) {
			displaced = shmc__index_replace_locked(c, &f->k, &old, off);
			uatomic_xchg(slot, 0);
		} else {
			uatomic_xchg(slot, shmc__entry_make(f->k.tag, off));
		}
		stored = true;
	}
	shmc__bucket_unlock(c, t, f->k.bucket);
	if (!stored)
		shmc__log_item_dead(c, t, off, bytes);
	else if (displaced)
		shmc__entry_dead(c, t, displaced);
	else
		shmc__count(t, SHMC__CTR_items_added, 1);
	shmc__rcu_read_exit(c, t);
	if (stored)
		shmc__count(t, SHMC__CTR_sets, 1);
	return stored ? 0 : SHMC__LEASE_RETRY;
}

/* A loader's error, as the caller sees it: the uplink records its own,
 * more precise message (which node, what went wrong). */
static int loader_failed(struct fetch *f, int rc)
{
	if (f->loader == shmc__uplink_loader || f->loader == shmc__uplink_answer_loader)
		return rc;
	return shmc__fail(f->c, rc, "loader failed: %s", shmc_strerror(rc));
}

/* Fold one origin call's duration into the average XFetch scales by (kept
 * with relaxed stores: a lost update costs nothing). */
static void loader_timed(shmc_cache *c, uint64_t ns)
{
	uint64_t avg = uatomic_read(&c->loader_avg_ns);
	uatomic_set(&c->loader_avg_ns, avg ? avg - avg / 8 + ns / 8 : ns);
}

/* One origin call: counted, and timed for XFetch. *val is the caller's to
 * free. Returns the loader's code. */
static int origin_call(struct fetch *f, void **val, size_t *len, uint32_t *ttl)
{
	shmc_cache *c = f->c;
	*val = NULL;
	*len = 0;
	*ttl = 0;
	shmc__count(f->t, SHMC__CTR_origin_calls, 1);
	uint64_t t0 = shmc__obs_now_ns();
	int rc = f->loader(f->arg, f->k.key, f->k.klen, val, len, ttl);
	/* An answer fetched beforehand (shmc_fetch_many) took no time here:
	 * its batch was timed. */
	if (f->loader != shmc__uplink_answer_loader)
		loader_timed(c, shmc__obs_now_ns() - t0);
	return rc;
}

/* After the loader returned: keep lease idx for the store and the wake-up,
 * or learn that a waiter took it over while the loader ran late. Keeping
 * it moves its deadline out of reach (only our death lets a waiter take
 * it now), so that exactly one of us stores, drops the entry and
 * finishes the record. false: the lease is the taker's; this fill must
 * not touch it. */
static bool lease_keep(shmc_cache *c, struct shmc__tctx *t, uint32_t idx)
{
	struct shmc__lease *l = &c->leases[idx];
	uint64_t claim = uatomic_read(&l->claim);
	while (shmc__claim_owner(claim) == t->lock_id) {
		uint64_t keep = shmc__claim_make(t->lock_id, shmc__now_ms() + LEASE_KEEP_MS);
		uint64_t seen = uatomic_cmpxchg(&l->claim, claim, keep);
		if (seen == claim)
			return true;
		claim = seen;
	}
	return false;
}

/* Run the loader under lease idx (owned by the caller) and store what it
 * returned. *val is the caller's to free. Returns the loader's code;
 * *kept says whether the lease was still ours (then the caller finishes
 * it with *lease_result), or taken over (the result is the caller's only). */
static int load_and_store(struct fetch *f, uint32_t idx, uint64_t entry, void **val, size_t *len,
			  int *lease_result, bool *kept)
{
	shmc_cache *c = f->c;
	uint32_t ttl;
	int rc = origin_call(f, val, len, &ttl);
	bool rdonly = c->flags & SHMC_RDONLY;
	*kept = lease_keep(c, f->t, idx);
	if (rc == 0) {
		if (SHMC__ITEM_HDR + f->k.klen + (uint64_t)*len > c->geo.chunk_bytes) {
			if (*kept)
				drop_entry(f, entry);
			*lease_result = SHMC_ETOOBIG;
			return shmc__fail(c, SHMC_ETOOBIG,
					  "loaded value of %zu bytes exceeds the limit of %zu for this key",
					  *len, (size_t)(c->geo.chunk_bytes - SHMC__ITEM_HDR - f->k.klen));
		}
		shmc__count(f->t, SHMC__CTR_fills, 1);
		if (!*kept)
			return 0;
		*lease_result = rdonly ? SHMC__LEASE_RETRY
				       : store_through_lease(f, idx, entry, *val, *len,
							     shmc__expiry_for(c, ttl), SHMC__ITEM_VALUE);
		if (rdonly)
			drop_entry(f, entry);
		return 0;
	}
	if (rc == SHMC_ENOTFOUND) {
		shmc__count(f->t, SHMC__CTR_fills, 1);
		if (*kept && c->geo.negative_ttl_ms && !rdonly)
			store_through_lease(f, idx, entry, NULL, 0,
					    shmc__expiry_in(c->geo.negative_ttl_ms), SHMC__ITEM_NEGATIVE);
		else if (*kept)
			drop_entry(f, entry);
		*lease_result = SHMC_ENOTFOUND;
		return rc;
	}
	shmc__count(f->t, SHMC__CTR_loader_errors, 1);
	if (*kept)
		drop_entry(f, entry);
	*lease_result = rc;
	return loader_failed(f, rc);
}

/* Hand a loaded value to the caller. */
static int deliver(struct fetch *f, int rc, void *val, size_t len)
{
	if (rc == 0) {
		*f->vlen = len;
		if (len > f->cap)
			rc = erange(f);
		else if (len)
			memcpy(f->buf, val, len);
	}
	free(val);
	return rc;
}

/* Fill under lease idx, which the caller owns; wake its waiters. */
static int fill(struct fetch *f, uint32_t idx, uint64_t entry)
{
	void *val;
	size_t len;
	int lease_result;
	bool kept;
	int rc = load_and_store(f, idx, entry, &val, &len, &lease_result, &kept);
	if (kept)
		shmc__lease_finish(f->c, idx, lease_result);
	return deliver(f, rc, val, len);
}

/* No lease to be had (none free, index full, read-only handle, or the
 * key keeps vanishing): load for this caller alone and try a plain set. */
static int load_alone(struct fetch *f)
{
	shmc_cache *c = f->c;
	void *val;
	size_t len;
	uint32_t ttl;
	int rc = origin_call(f, &val, &len, &ttl);
	if (rc == 0 && !(c->flags & SHMC_RDONLY)) {
		int st = shmc_set(c, f->k.key, f->k.klen, val, len, ttl, 0);
		if (st && st != SHMC_ENOSPC) {
			free(val);
			return st;
		}
	} else if (rc && rc != SHMC_ENOTFOUND) {
		shmc__count(f->t, SHMC__CTR_loader_errors, 1);
		rc = loader_failed(f, rc);
	}
	return deliver(f, rc, val, len);
}

/* ------------------------------------------------------------- refreshes */

struct refresh_job {
	struct refresh_job *next;
	uint32_t idx;
	uint64_t entry;
	shmc_loader_fn loader;
	void *arg;
	size_t klen;
	unsigned char key[];
};

struct shmc__refresher {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	uint32_t queued;
	struct refresh_job *head, *tail;
	pthread_t thread;
	shmc_cache *c;
};

/* Refresh one key under its lease, on the refresher thread. */
static void refresh_run(shmc_cache *c, struct shmc__tctx *t, struct refresh_job *job)
{
	struct shmc__lease *l = &c->leases[job->idx];
	uint64_t claim = uatomic_read(&l->claim);
	/* Ours only if the fetcher that queued it still holds it. */
	if (uatomic_read(&l->state) != SHMC__LEASE_FILLING ||
	    uatomic_cmpxchg(&l->claim, claim,
			    shmc__claim_make(t->lock_id, shmc__now_ms() + c->fill_timeout_ms)) != claim)
		return;
	struct fetch f = {.c = c, .t = t, .loader = job->loader, .arg = job->arg};
	shmc__keyref_init(c, &f.k, job->key, job->klen);
	shmc__count(t, SHMC__CTR_refreshes, 1);
	void *val;
	size_t len;
	uint32_t ttl;
	int rc = origin_call(&f, &val, &len, &ttl);
	if (!lease_keep(c, t, job->idx)) {
		/* Overran its deadline and a caller that really missed took
		 * the lease over: the key is the taker's to fill now. */
		free(val);
		return;
	}
	bool fits = SHMC__ITEM_HDR + job->klen + (uint64_t)len <= c->geo.chunk_bytes;
	if (rc == 0 && fits) {
		int st = store_through_lease(&f, job->idx, job->entry, val, len,
					     shmc__expiry_for(c, ttl), SHMC__ITEM_VALUE);
		shmc__lease_finish(c, job->idx, st);
	} else if (rc == SHMC_ENOTFOUND) {
		int st = c->geo.negative_ttl_ms
				 ? store_through_lease(&f, job->idx, job->entry, NULL, 0,
						       shmc__expiry_in(c->geo.negative_ttl_ms),
						       SHMC__ITEM_NEGATIVE)
				 : SHMC__LEASE_RETRY;
		if (st)
			drop_entry(&f, job->entry);
		shmc__lease_finish(c, job->idx, SHMC_ENOTFOUND);
	} else {
		/* Stale-if-error: keep the stale value; leave the lease in the
		 * index, ownerless, so no refresh starts for a while (a caller
		 * that really misses takes it over at once). */
		shmc__count(t, SHMC__CTR_loader_errors, 1);
		uatomic_set(&l->claim, shmc__claim_make(0, shmc__now_ms() + REFRESH_COOLDOWN_MS));
	}
	free(val);
}

static void *refresher_main(void *arg)
{
	struct shmc__refresher *r = arg;
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(r->c, &err);
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->head && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		struct refresh_job *job = r->head;
		if (!job)
			break;
		r->head = job->next;
		if (!r->head)
			r->tail = NULL;
		r->queued--;
		bool stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (t && !stop)
			refresh_run(r->c, t, job);
		/* Not run (closing): its lease is abandoned; waiters or the
		 * sweeper take it over. */
		free(job);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* The process's refresher, started on first use. Caller holds c->lock. */
static struct shmc__refresher *refresher_get_locked(shmc_cache *c)
{
	if (c->refresher)
		return c->refresher;
	struct shmc__refresher *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->c = c;
	if (pthread_create(&r->thread, NULL, refresher_main, r) != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	c->refresher = r;
	return r;
}

void shmc__refresher_stop(shmc_cache *c)
{
	struct shmc__refresher *r = c->refresher;
	if (!r)
		return;
	c->refresher = NULL;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void shmc__refresher_forget(shmc_cache *c)
{
	/* The parent's thread does not exist in a fork child; its queue and
	 * mutex are copies that nobody will ever serve. */
	c->refresher = NULL;
}

/* A stale (or nearly stale) hit: queue one host-wide refresh of the key
 * unless one is already under way. */
static void refresh_async(struct fetch *f)
{
	shmc_cache *c = f->c;
	if (!f->loader || (c->flags & SHMC_RDONLY))
		return;
	uint64_t entry = 0;
	int rc;
	shmc__rcu_read_enter(c, f->t);
	shmc__bucket_lock(c, f->t, f->k.bucket);
	struct shmc__found cur;
	uint64_t *slot = NULL;
	if (shmc__index_find(c, &f->k, &cur) != 0 || cur.entry != f->seen_entry) {
		/* Replaced since look() saw it stale: refreshed (its lease
		 * already gone from the index) or written. Refreshing again
		 * would be a second origin call for the same expiry. */
		rc = SHMC_EEXIST;
	} else if ((slot = shmc__lease_find_locked(c, &f->k)) != NULL) {
		/* Under way, or cooling down after a failure: once the
		 * cool-down is over, the first stale serve takes the lease
		 * and refreshes again (without it, only a sweeper's lease
		 * reaping or the window's end would ever retry). */
		uint64_t e = uatomic_read(slot);
		struct shmc__lease *l = &c->leases[shmc__lease_index(e)];
		uint64_t claim = uatomic_read(&l->claim), now = shmc__now_ms();
		rc = SHMC_EEXIST;
		if (!shmc__claim_owner(claim)) {
			uint64_t mine = shmc__claim_make(f->t->lock_id, now + c->fill_timeout_ms);
			shmc__count(f->t, SHMC__CTR_stale_if_error, 1);
			if (shmc__claim_expired(claim, now) &&
			    uatomic_read(&l->state) == SHMC__LEASE_FILLING &&
			    uatomic_cmpxchg(&l->claim, claim, mine) == claim) {
				entry = e;
				rc = 0;
			}
		}
	} else {
		rc = shmc__lease_claim_locked(c, f->t, &f->k, f->t->lock_id,
					      shmc__now_ms() + c->fill_timeout_ms, &entry);
	}
	shmc__bucket_unlock(c, f->t, f->k.bucket);
	shmc__rcu_read_exit(c, f->t);
	if (rc)
		return;
	uint32_t idx = shmc__lease_index(entry);
	struct refresh_job *job = malloc(sizeof(*job) + f->k.klen);
	pthread_mutex_lock(&c->lock);
	struct shmc__refresher *r = job ? refresher_get_locked(c) : NULL;
	pthread_mutex_unlock(&c->lock);
	bool queued = false;
	if (r) {
		*job = (struct refresh_job){
			.idx = idx, .entry = entry, .loader = f->loader, .arg = f->arg, .klen = f->k.klen};
		memcpy(job->key, f->k.key, f->k.klen);
		pthread_mutex_lock(&r->mu);
		if (!r->stop && r->queued < REFRESH_QUEUE_MAX) {
			if (r->tail)
				r->tail->next = job;
			else
				r->head = job;
			r->tail = job;
			r->queued++;
			queued = true;
			pthread_cond_signal(&r->cv);
		}
		pthread_mutex_unlock(&r->mu);
	}
	if (!queued) {
		free(job);
		drop_entry(f, entry);
		shmc__lease_finish(c, idx, SHMC__LEASE_RETRY);
	}
}

/* XFetch (Vattani et al.): refresh a fresh item early with probability
 * rising as its soft expiry nears, scaled by beta times the loader's
 * average duration, so that the refresh is usually done before anyone
 * sees the item stale. */
static bool xfetch_due(shmc_cache *c, uint64_t soft)
{
	if (c->xfetch_beta <= 0.0 || !soft)
		return false;
	static __thread uint64_t rng;
	if (!rng)
		rng = (uint64_t)(uintptr_t)&rng * 0x9e3779b97f4a7c15ull | 1;
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	double u = ((double)(rng >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
	double delta_ms = (double)uatomic_read(&c->loader_avg_ns) / 1e6;
	double gap = (double)soft - (double)shmc__clock_ms(c);
	return delta_ms * c->xfetch_beta * -log(u) >= gap;
}

/* ------------------------------------------------------------ shmc_fetch */

/* A caller waits on lease idx, which it joined. Returns 0 to look again,
 * 1 if it took the fill over, or the code to return. */
static int wait_on(struct fetch *f, uint32_t idx)
{
	shmc_cache *c = f->c;
	shmc__count(f->t, SHMC__CTR_coalesced_waits, 1);
	uint32_t timeout = c->fill_timeout_ms;
	int w = shmc__lease_wait(c, f->t, idx, timeout, 2 * timeout);
	if (w == 1) {
		shmc__count(f->t, SHMC__CTR_lease_takeovers, 1);
		return 1;
	}
	int result = w == SHMC__LEASE_DONE ? (int)uatomic_read(&c->leases[idx].result) : w;
	shmc__lease_leave(c, idx);
	if (result == 0 || result == SHMC__LEASE_RETRY)
		return 0;
	if (result == SHMC_ENOTFOUND)
		return SHMC_ENOTFOUND;
	if (result == SHMC_ETIMEDOUT)
		return shmc__fail(c, result, "fill of this key still running after %u ms",
				  2 * timeout);
	return shmc__fail(c, result, "the fill this call waited for failed: %s",
			  shmc_strerror(result));
}

/* What look() found, returned to the caller; FOUND_NOTHING (no error)
 * leaves *done false: the key is to be filled. */
static int serve_found(struct fetch *f, enum found what, int rc, uint64_t soft, bool *done)
{
	shmc_cache *c = f->c;
	*done = true;
	switch (what) {
	case FOUND_FRESH:
		if (xfetch_due(c, soft))
			refresh_async(f);
		return rc == SHMC_ERANGE ? erange(f) : rc;
	case FOUND_STALE:
		shmc__count(f->t, SHMC__CTR_stale_serves, 1);
		refresh_async(f);
		return rc == SHMC_ERANGE ? erange(f) : rc;
	case FOUND_ABSENT:
		shmc__count(f->t, SHMC__CTR_negative_hits, 1);
		return shmc__fail(c, SHMC_ENOTFOUND, "key not found (cached as absent)");
	case FOUND_NOTHING:
		break;
	}
	*done = rc != 0;
	return rc;
}

/* A miss: what to do about the key's fill. */
enum miss_next {
	LOOK_AGAIN, /* stored meanwhile */
	JOINED,     /* *idx: another caller's fill, joined (we are a waiter) */
	CLAIMED,    /* *idx, *entry: our fill */
	ALONE,      /* no lease to be had */
	FILLING     /* another caller's fill, not joined (may_join false) */
};

static enum miss_next join_or_claim(struct fetch *f, bool may_join, uint32_t *idx,
				    uint64_t *entry)
{
	shmc_cache *c = f->c;
	struct shmc__tctx *t = f->t;
	enum miss_next next;
	struct shmc__found fd;
	uint64_t *slot;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, f->k.bucket);
	if (shmc__index_find(c, &f->k, &fd) == 0 &&
	    (!fd.expire_abs_ms || shmc__clock_ms(c) < fd.expire_abs_ms)) {
		next = LOOK_AGAIN;
	} else if ((slot = shmc__lease_find_locked(c, &f->k)) != NULL) {
		next = FILLING;
		if (may_join) {
			*idx = shmc__lease_index(uatomic_read(slot));
			/* Before unlock, and a full barrier: see lease.c. */
			(void)uatomic_add_return(&c->leases[*idx].waiters, 1);
			next = JOINED;
		}
	} else if (shmc__lease_claim_locked(c, t, &f->k, t->lock_id,
					    shmc__now_ms() + c->fill_timeout_ms, entry) == 0) {
		*idx = shmc__lease_index(*entry);
		next = CLAIMED;
	} else {
		next = ALONE;
	}
	shmc__bucket_unlock(c, t, f->k.bucket);
	shmc__rcu_read_exit(c, t);
	return next;
}

static int fetch_run(struct fetch *f)
{
	shmc_cache *c = f->c;
	struct shmc__tctx *t = f->t;
	for (int round = 0; round < FETCH_ROUNDS; round++) {
		int rc;
		uint64_t soft;
		bool done;
		shmc__rcu_read_enter(c, t);
		enum found what = look(f, &rc, &soft);
		shmc__rcu_read_exit(c, t);
		rc = serve_found(f, what, rc, soft, &done);
		if (done)
			return rc;
		if (!f->loader)
			return shmc__fail(c, SHMC_EUPLINK, "no loader and no uplink configured");
		if (c->flags & SHMC_RDONLY)
			return load_alone(f);

		uint64_t entry = 0;
		uint32_t idx = 0;
		switch (join_or_claim(f, true, &idx, &entry)) {
		case LOOK_AGAIN:
			continue;
		case CLAIMED:
			return fill(f, idx, entry);
		case ALONE:
		case FILLING:
			return load_alone(f);
		case JOINED:
			break;
		}
		rc = wait_on(f, idx);
		if (rc == 1) {
			/* Took it over: fill, then leave as the waiter we were. */
			entry = shmc__lease_entry(f->k.tag, idx, uatomic_read(&c->leases[idx].gen));
			rc = fill(f, idx, entry);
			shmc__lease_leave(c, idx);
			return rc;
		}
		if (rc != 0)
			return rc;
	}
	return load_alone(f);
}

int shmc_fetch(shmc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
	       shmc_loader_fn loader, void *arg)
{
	if (!c || !vlen || (!buf && cap))
		return c ? shmc__fail(c, SHMC_EINVAL, "NULL argument") : SHMC_EINVAL;
	int rc = shmc__check_key(c, key, klen);
	if (rc)
		return rc;
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(c, &err);
	if (!t)
		return err;
	bool sampled = shmc__sample_now(c, t);
	uint64_t start_ns = sampled ? shmc__obs_now_ns() : 0;
	if (!loader && c->uplink) {
		loader = shmc__uplink_loader;
		arg = c;
	}
	struct fetch f = {
		.c = c, .t = t, .buf = buf, .cap = cap, .vlen = vlen, .loader = loader, .arg = arg};
	shmc__keyref_init(c, &f.k, key, klen);
	rc = fetch_run(&f);
	if (sampled)
		shmc__obs_latency(c, SHMC_OP_FETCH, shmc__obs_now_ns() - start_ns);
	return rc;
}

/* ------------------------------------------------------- shmc_fetch_many */

/* One key of a shmc_fetch_many call, and where it stands. */
struct many_key {
	struct fetch f;
	uint32_t idx;     /* claimed: the lease of our fill */
	uint64_t entry;
	bool claimed;     /* our fill, whose GET goes in the call's batch */
	bool done;        /* item->rc is final */
};

static int check_item(shmc_cache *c, const struct shmc_fetch_item *it)
{
	if (!it->buf && it->cap)
		return shmc__fail(c, SHMC_EINVAL, "NULL buffer with a capacity");
	return shmc__check_key(c, it->key, it->klen);
}

/* Without the uplink, or with a loader of the caller's (which takes one
 * key at a time), or short of memory: one shmc_fetch per key. Returns how
 * many succeeded. */
static size_t fetch_each(shmc_cache *c, struct shmc_fetch_item *items, size_t n,
			 shmc_loader_fn loader, void *arg)
{
	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		struct shmc_fetch_item *it = &items[i];
		it->vlen = 0;
		it->rc = shmc_fetch(c, it->key, it->klen, it->buf, it->cap, &it->vlen, loader, arg);
		ok += it->rc == 0;
	}
	return ok;
}

/* How many keys of a shmc_fetch_many call hold fill leases at a time: one
 * uplink batch, and never more than an eighth of the host's lease records
 * (every other caller's misses need them too). */
static size_t many_chunk(shmc_cache *c)
{
	size_t batch = shmc__uplink_batch(c), share = c->geo.nleases / 8;
	if (!share)
		share = 1;
	return batch < share ? batch : share;
}

/* items[0..n), n no more than many_chunk: their misses go to the remote
 * tier in one batch. First every key is looked up and, if missing, its
 * fill lease claimed (a key another caller is filling is left for the
 * end, where it is waited for as shmc_fetch would, with no lease of ours
 * held any more); then one shmc__uplink_get_many; then each claimed key is
 * filled with its answer, exactly as shmc_fetch fills (the answer
 * standing in for the loader's result). Returns how many succeeded. */
static size_t fetch_chunk(shmc_cache *c, struct shmc__tctx *t, struct shmc_fetch_item *items,
			  size_t n, struct many_key *keys, struct shmc__uplink_answer *answers)
{
	memset(keys, 0, n * sizeof(*keys));
	memset(answers, 0, n * sizeof(*answers));
	size_t nclaimed = 0;
	for (size_t i = 0; i < n; i++) {
		struct shmc_fetch_item *it = &items[i];
		struct many_key *mk = &keys[i];
		it->vlen = 0;
		it->rc = check_item(c, it);
		if (it->rc) {
			mk->done = true;
			continue;
		}
		mk->f = (struct fetch){.c = c, .t = t, .buf = it->buf, .cap = it->cap,
				       .vlen = &it->vlen, .loader = shmc__uplink_loader, .arg = c};
		shmc__keyref_init(c, &mk->f.k, it->key, it->klen);
		int rc;
		uint64_t soft;
		shmc__rcu_read_enter(c, t);
		enum found what = look(&mk->f, &rc, &soft);
		shmc__rcu_read_exit(c, t);
		it->rc = serve_found(&mk->f, what, rc, soft, &mk->done);
		if (mk->done || (c->flags & SHMC_RDONLY))
			continue;
		if (join_or_claim(&mk->f, false, &mk->idx, &mk->entry) == CLAIMED) {
			mk->claimed = true;
			answers[nclaimed].op.key = it->key;
			answers[nclaimed].op.klen = it->klen;
			nclaimed++;
		}
	}
	uint64_t t0 = shmc__obs_now_ns();
	bool answered = nclaimed && shmc__uplink_get_many(c, answers, nclaimed) == 0;
	if (answered)
		loader_timed(c, shmc__obs_now_ns() - t0);
	size_t a = 0, ok = 0;
	for (size_t i = 0; i < n; i++) {
		struct many_key *mk = &keys[i];
		if (mk->claimed) {
			/* Unanswered (no memory for the batch): this key's own
			 * GET, as shmc_fetch would send it. */
			if (answered) {
				mk->f.loader = shmc__uplink_answer_loader;
				mk->f.arg = &answers[a++];
			}
			items[i].rc = fill(&mk->f, mk->idx, mk->entry);
			mk->done = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!keys[i].done)
			items[i].rc = fetch_run(&keys[i].f);
		ok += items[i].rc == 0;
	}
	return ok;
}

int shmc_fetch_many(shmc_cache *c, struct shmc_fetch_item *items, size_t n, shmc_loader_fn loader,
		    void *arg)
{
	if (!c)
		return SHMC_EINVAL;
	if (!items && n)
		return shmc__fail(c, SHMC_EINVAL, "NULL items");
	if (n > INT_MAX)
		return shmc__fail(c, SHMC_EINVAL, "%zu items: at most INT_MAX per call", n);
	int err = 0;
	struct shmc__tctx *t = shmc__tctx_get(c, &err);
	if (!t)
		return err;
	if (loader || !c->uplink || !n)
		return (int)fetch_each(c, items, n, loader, arg);
	size_t chunk = many_chunk(c);
	if (chunk > n)
		chunk = n;
	struct many_key *keys = shmc__zalloc(chunk * sizeof(*keys));
	struct shmc__uplink_answer *answers = shmc__zalloc(chunk * sizeof(*answers));
	size_t ok = 0;
	if (keys && answers) {
		for (size_t i = 0; i < n; i += chunk)
			ok += fetch_chunk(c, t, items + i, n - i < chunk ? n - i : chunk, keys,
					  answers);
	} else {
		ok = fetch_each(c, items, n, NULL, NULL);
	}
	shmc__free(keys);
	shmc__free(answers);
	return (int)ok;
}
