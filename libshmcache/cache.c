/*
 * cache.c - the public operations.
 *
 * Reads: hash, one read section, one bucket line, the item; no lock and no
 * shared store except the item's reference bit when clear.
 *
 * Writes append the new item to the thread's own chunk BEFORE taking the
 * key's bucket lock (appending may wait for a grace period, which must never
 * happen under a lock or inside a read section), then, inside a read
 * section so that items compared against cannot be recycled, lock the
 * primary bucket, decide, publish with one atomic exchange, unlock. An item
 * that loses (NX/XX failure, or a changed value under shmc_incr) is counted
 * dead at once. The replaced item is counted dead after unlock; its chunk
 * is reused only after a grace period.
 */
#include "handle.h"
#include "index.h"
#include "index_read.h"
#include "lease.h"
#include "log.h"
#include "obs.h"
#include "write.h"
#include "rcu.h"
#include "uplink.h"
#include "fault.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atomic.h"

#define MAX_TTL_MS (UINT32_MAX - 1000u)

/* ttl_ms spread uniformly over +- pct percent, so that keys written
 * together do not all expire together. A per-thread xorshift: no shared
 * state, no system call. */
static uint32_t jitter(uint32_t ttl_ms, uint32_t pct)
{
	static __thread uint64_t rng;
	if (!rng)
		rng = (uint64_t)(uintptr_t)&rng ^ (shmc__now_ms() * 0x9e3779b97f4a7c15ull) ^ 1;
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	uint64_t span = (uint64_t)ttl_ms * pct / 100;
	if (!span)
		return ttl_ms;
	uint64_t t = (uint64_t)ttl_ms - span + rng % (2 * span + 1);
	return t ? (uint32_t)(t > UINT32_MAX ? UINT32_MAX : t) : 1;
}

/* The precise clock in ms, rounded up. */
static uint64_t precise_ceil_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ((uint64_t)ts.tv_nsec + 999999) / 1000000;
}

static uint64_t expiry_from(uint64_t now, uint64_t ttl_ms)
{
	/* Items store expiry in 32 bits relative to their chunk's base; a
	 * fresh chunk's base is the coarse clock, a tick behind now at most:
	 * the longest TTLs (near 2^32 ms, 49 days) are capped so they fit. */
	return now + (ttl_ms > MAX_TTL_MS ? MAX_TTL_MS : ttl_ms);
}

uint64_t shmc__expiry_in(uint64_t ttl_ms)
{
	return expiry_from(precise_ceil_ms(), ttl_ms);
}

uint64_t shmc__expiry_for(shmc_cache *c, uint32_t ttl_ms)
{
	if (!ttl_ms)
		ttl_ms = c->geo.default_ttl_ms;
	/* One clock read serves the staleness check and the expiry. */
	uint64_t now = precise_ceil_ms();
	shmc__clock_check(c, now);
	if (!ttl_ms)
		return 0;
	if (c->geo.ttl_jitter_pct)
		ttl_ms = jitter(ttl_ms, c->geo.ttl_jitter_pct);
	return expiry_from(now, (uint64_t)ttl_ms + c->geo.stale_ms);
}

/* Past its TTL (the stored expiry less the stale window, in which only
 * shmc_fetch may still serve it). */
static inline bool expired(const shmc_cache *c, const struct shmc__found *f, uint64_t *now)
{
	if (!f->expire_abs_ms)
		return false;
	if (!*now)
		*now = shmc__clock_ms(c);
	return *now + c->geo.stale_ms >= f->expire_abs_ms;
}

int shmc__append_new(shmc_cache *c, struct shmc__tctx *t, const struct shmc__keyref *k,
		     const void *val, size_t vlen, uint64_t expire, uint64_t *off)
{
	int rc = shmc__log_append(c, t, SHMC__LOG_SMALL, k->key, k->klen, val, vlen, expire, off);
	uint16_t *ghost = &c->buckets[k->bucket].ghost;
	if (rc == 0 && CMM_LOAD_SHARED(*ghost) == shmc__ghost_fp(k)) {
		CMM_STORE_SHARED(*ghost, 0);
		/* Ours until published: a plain store. */
		c->data[*off + offsetof(struct shmc__item_hdr, refbit)] = 1;
	}
	return rc;
}

int shmc__check_key(shmc_cache *c, const void *key, size_t klen)
{
	if (!key || klen == 0)
		return shmc__fail(c, SHMC_EINVAL, "empty or NULL key");
	if (klen > c->geo.max_key_bytes)
		return shmc__fail(c, SHMC_ETOOBIG, "key of %zu bytes exceeds the %u-byte limit", klen,
				  c->geo.max_key_bytes);
	return 0;
}

/* The checks every write makes before touching the segment. */
static int check_write(shmc_cache *c, const void *key, size_t klen)
{
	int rc = shmc__check_key(c, key, klen);
	if (rc)
		return rc;
	if (c->flags & SHMC_RDONLY)
		return shmc__fail(c, SHMC_EPERM, "handle was opened with SHMC_RDONLY");
	return 0;
}

static inline uint64_t item_bytes(const struct shmc__item_hdr *h)
{
	return SHMC__ITEM_HDR + (uint64_t)h->klen + h->vlen;
}

/* Account a replaced or removed entry dead. Inside a read section, so the
 * item is still readable. */
void shmc__entry_dead(shmc_cache *c, struct shmc__tctx *t, uint64_t e)
{
	struct shmc__item_hdr h;
	shmc__item_hdr_read(c->data + shmc__entry_off(e), &h);
	shmc__log_item_dead(c, t, shmc__entry_off(e), item_bytes(&h));
}

/* Look up inside an open read section. On a hit *f is filled; the expired
 * case counts as a miss. Updates the thread's get counters. */
static int lookup(shmc_cache *c, struct shmc__tctx *t, const struct shmc__keyref *k,
		  struct shmc__found *f)
{
	uint64_t now = 0;
	int rc = shmc__index_find(c, k, f);
	shmc__count(t, SHMC__CTR_gets, 1);
	/* Now and then, make sure the header clock still has a keeper. */
	if (__builtin_expect((t->slot->counters[SHMC__CTR_gets] & 4095) == 0, 0))
		shmc__clock_check(c, shmc__now_ms());
	if (rc == 0 && expired(c, f, &now)) {
		shmc__count(t, SHMC__CTR_expirations, 1);
		rc = SHMC_ENOTFOUND;
	} else if (rc == 0 && f->hdr.kind != SHMC__ITEM_VALUE) {
		rc = SHMC_ENOTFOUND; /* a cached "absent" (shmc_fetch) */
	}
	if (rc == 0) {
		/* No hit counter (hits = gets - misses): one store fewer.
		 * CLOCK bit: a 0->1 store only, so a hot item costs one store
		 * per sweep, and never an atomic RMW. */
		if (!f->hdr.refbit)
			CMM_STORE_SHARED(f->item[offsetof(struct shmc__item_hdr, refbit)], 1);
	} else if (rc == SHMC_ENOTFOUND) {
		shmc__count(t, SHMC__CTR_misses, 1);
	} else {
		shmc__fail(c, rc, "index entry points outside the data area");
	}
	return rc;
}

/* A sampled lookup: its latency and its key. Out of line: rare. */
static __attribute__((noinline, cold)) void sample_lookup(shmc_cache *c,
							  const struct shmc__keyref *k,
							  uint64_t start_ns)
{
	shmc__obs_latency(c, SHMC_OP_GET, shmc__obs_now_ns() - start_ns);
	static __thread unsigned sampled;
	if (++sampled % SHMC__HOT_EVERY == 0)
		shmc__obs_hotkey(c, k->hash, k->key, k->klen);
}

#define TCTX_OR_RETURN(c, t)                                                     \
	int tctx_err_ = 0;                                                       \
	struct shmc__tctx *t = shmc__tctx_get((c), &tctx_err_);                  \
	if (!t)                                                                  \
		return tctx_err_

int shmc_get(shmc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
	if (!c || !vlen || (!buf && cap))
		return c ? shmc__fail(c, SHMC_EINVAL, "NULL argument") : SHMC_EINVAL;
	int rc = shmc__check_key(c, key, klen);
	if (rc)
		return rc;
	TCTX_OR_RETURN(c, t);
	bool sampled = shmc__sample_now(c, t);
	uint64_t start_ns = sampled ? shmc__obs_now_ns() : 0;
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, key, klen);
	struct shmc__found f;
	shmc__rcu_read_enter(c, t);
	SHMC__FAULT_POINT("read.section");
	rc = lookup(c, t, &k, &f);
	if (rc == 0) {
		*vlen = f.hdr.vlen;
		if (f.hdr.vlen > cap)
			rc = SHMC_ERANGE;
		else if (f.hdr.vlen)
			memcpy(buf, f.item + SHMC__ITEM_HDR + klen, f.hdr.vlen);
	}
	shmc__rcu_read_exit(c, t);
	if (__builtin_expect(sampled, 0))
		sample_lookup(c, &k, start_ns);
	if (rc == SHMC_ERANGE)
		shmc__fail(c, rc, "value is %zu bytes, buffer %zu", *vlen, cap);
	return rc;
}

int shmc_read_begin(shmc_cache *c)
{
	if (!c)
		return SHMC_EINVAL;
	TCTX_OR_RETURN(c, t);
	shmc__rcu_read_enter(c, t);
	return 0;
}

int shmc_read_end(shmc_cache *c)
{
	if (!c)
		return SHMC_EINVAL;
	TCTX_OR_RETURN(c, t);
	if (!t->read_depth)
		return shmc__fail(c, SHMC_EINVAL, "shmc_read_end without shmc_read_begin");
	shmc__rcu_read_exit(c, t);
	return 0;
}

int shmc_get_ref(shmc_cache *c, const void *key, size_t klen, const void **val, size_t *vlen)
{
	if (!c || !val || !vlen)
		return c ? shmc__fail(c, SHMC_EINVAL, "NULL argument") : SHMC_EINVAL;
	int rc = shmc__check_key(c, key, klen);
	if (rc)
		return rc;
	TCTX_OR_RETURN(c, t);
	if (!t->read_depth)
		return shmc__fail(c, SHMC_EINVAL, "shmc_get_ref outside a read section");
	bool sampled = shmc__sample_now(c, t);
	uint64_t start_ns = sampled ? shmc__obs_now_ns() : 0;
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, key, klen);
	struct shmc__found f;
	rc = lookup(c, t, &k, &f);
	if (rc == 0) {
		*val = f.item + SHMC__ITEM_HDR + klen;
		*vlen = f.hdr.vlen;
	}
	if (__builtin_expect(sampled, 0))
		sample_lookup(c, &k, start_ns);
	return rc;
}

/* What a write does once it holds the bucket lock and has looked the key
 * up: decides, publishes, and returns the displaced entry (0 = none). */
enum write_mode { WRITE_SET, WRITE_INCR };

struct write_req {
	int flags;               /* SHMC_NX / SHMC_XX */
	uint64_t off;            /* the new item */
	uint64_t expect_entry;   /* WRITE_INCR: the entry the value came from */
	enum write_mode mode;
};

static int publish_locked(shmc_cache *c, const struct shmc__keyref *k, struct write_req *w,
			  uint64_t *displaced)
{
	struct shmc__found f;
	uint64_t now = 0;
	*displaced = 0;
	int rc = shmc__index_find(c, k, &f);
	if (rc && rc != SHMC_ENOTFOUND)
		return shmc__fail(c, rc, "index entry points outside the data area");
	bool present = rc == 0 && !expired(c, &f, &now) && f.hdr.kind == SHMC__ITEM_VALUE;
	if (w->mode == WRITE_INCR && (rc == 0 ? f.entry : 0) != w->expect_entry)
		return SHMC_EAGAIN_INTERNAL;
	if ((w->flags & SHMC_NX) && present)
		return shmc__fail(c, SHMC_EEXIST, "key exists (SHMC_NX)");
	if ((w->flags & SHMC_XX) && !present)
		return shmc__fail(c, SHMC_ENOTFOUND, "key absent (SHMC_XX)");
	/* This write wins over a fill of the key in flight. */
	shmc__lease_cancel_locked(c, k);
	if (rc == 0) {
		/* An overwrite keeps its key's standing: if the old item was
		 * read or had reached main, the new one is marked read, so
		 * leaving probation promotes it. Ours until published. */
		uint32_t old_log =
			uatomic_read(&c->chunks[shmc__chunk_of(c, shmc__entry_off(f.entry))].log);
		if (f.hdr.refbit || old_log == SHMC__LOG_MAIN)
			c->data[w->off + offsetof(struct shmc__item_hdr, refbit)] = 1;
		*displaced = shmc__index_replace_locked(c, k, &f, w->off);
		return 0;
	}
	rc = shmc__index_insert_locked(c, k, w->off);
	if (rc)
		return shmc__fail(c, rc, "index full: bucket %u and the %d after it have no free slot",
				  k->bucket, SHMC__MAX_PROBE);
	return 0;
}

/* Lock, publish, unlock, inside a read section; then account what was
 * displaced or, on failure, the new item itself. */
static int write_commit(shmc_cache *c, struct shmc__tctx *t, const struct shmc__keyref *k,
			struct write_req *w, uint64_t item_size)
{
	uint64_t displaced;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, k->bucket);
	SHMC__FAULT_POINT("write.locked");
	int rc = publish_locked(c, k, w, &displaced);
	SHMC__FAULT_POINT("write.published");
	shmc__bucket_unlock(c, t, k->bucket);
	SHMC__FAULT_POINT("write.unlocked");
	if (rc)
		shmc__log_item_dead(c, t, w->off, item_size);
	else if (displaced)
		shmc__entry_dead(c, t, displaced);
	else
		shmc__count(t, SHMC__CTR_items_added, 1);
	shmc__rcu_read_exit(c, t);
	if (rc == SHMC_ENOSPC)
		shmc__count(t, SHMC__CTR_enospc, 1);
	return rc;
}

int shmc_set(shmc_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
	     uint32_t ttl_ms, int flags)
{
	if (!c || (!val && vlen))
		return c ? shmc__fail(c, SHMC_EINVAL, "NULL argument") : SHMC_EINVAL;
	int rc = check_write(c, key, klen);
	if (rc)
		return rc;
	if ((flags & ~(SHMC_NX | SHMC_XX | SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND)) ||
	    (flags & (SHMC_NX | SHMC_XX)) == (SHMC_NX | SHMC_XX) ||
	    (flags & (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND)) ==
		    (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND))
		return shmc__fail(c, SHMC_EINVAL, "bad flags 0x%x", (unsigned)flags);
	if ((flags & (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND)) && !c->uplink)
		return shmc__fail(c, SHMC_EUPLINK, "write-through/behind needs an uplink");
	if (vlen > c->geo.chunk_bytes - SHMC__ITEM_HDR - klen)
		return shmc__fail(c, SHMC_ETOOBIG, "value of %zu bytes exceeds the limit of %zu for this key",
				  vlen, (size_t)(c->geo.chunk_bytes - SHMC__ITEM_HDR - klen));
	/* Write-through: the remote tier first; if it refuses, L1 is left as
	 * it was. (NX/XX apply to L1 only.) */
	if (flags & SHMC_WRITE_THROUGH) {
		rc = shmc__uplink_set(c, key, klen, val, vlen, ttl_ms ? ttl_ms : c->geo.default_ttl_ms,
				      true);
		if (rc)
			return rc;
	}
	TCTX_OR_RETURN(c, t);
	bool sampled = shmc__sample_now(c, t);
	uint64_t start_ns = sampled ? shmc__obs_now_ns() : 0;

	uint64_t expire = shmc__expiry_for(c, ttl_ms);
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, key, klen);
	struct write_req w = {.flags = flags, .mode = WRITE_SET};
	rc = shmc__append_new(c, t, &k, val, vlen, expire, &w.off);
	if (rc)
		return rc;
	SHMC__FAULT_POINT("set.appended");
	rc = write_commit(c, t, &k, &w, SHMC__ITEM_HDR + klen + vlen);
	if (!rc)
		shmc__count(t, SHMC__CTR_sets, 1);
	if (!rc && (flags & SHMC_WRITE_BEHIND))
		shmc__uplink_set(c, key, klen, val, vlen, ttl_ms ? ttl_ms : c->geo.default_ttl_ms,
				 false);
	if (sampled)
		shmc__obs_latency(c, SHMC_OP_SET, shmc__obs_now_ns() - start_ns);
	return rc;
}

int shmc_del(shmc_cache *c, const void *key, size_t klen)
{
	return shmc_del_flags(c, key, klen, 0);
}

int shmc_del_flags(shmc_cache *c, const void *key, size_t klen, int flags)
{
	if (!c)
		return SHMC_EINVAL;
	int rc = check_write(c, key, klen);
	if (rc)
		return rc;
	if (flags & ~(SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND) ||
	    (flags & (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND)) ==
		    (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND))
		return shmc__fail(c, SHMC_EINVAL, "bad flags 0x%x", (unsigned)flags);
	if ((flags & (SHMC_WRITE_THROUGH | SHMC_WRITE_BEHIND)) && !c->uplink)
		return shmc__fail(c, SHMC_EUPLINK, "write-through/behind needs an uplink");
	/* Remote first (through) or after (behind); a remote delete of a key
	 * absent here still happens. */
	if (flags & SHMC_WRITE_THROUGH) {
		rc = shmc__uplink_del(c, key, klen, true);
		if (rc)
			return rc;
	} else if (flags & SHMC_WRITE_BEHIND) {
		shmc__uplink_del(c, key, klen, false);
	}

	TCTX_OR_RETURN(c, t);
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, key, klen);
	struct shmc__found f;
	uint64_t removed = 0, now = 0;
	shmc__rcu_read_enter(c, t);
	shmc__bucket_lock(c, t, k.bucket);
	SHMC__FAULT_POINT("del.locked");
	shmc__lease_cancel_locked(c, &k); /* wins over a fill in flight */
	rc = shmc__index_find(c, &k, &f);
	if (rc == 0) {
		/* An expired item (or a cached "absent") is removed too, but
		 * reported absent. */
		rc = expired(c, &f, &now) || f.hdr.kind != SHMC__ITEM_VALUE ? SHMC_ENOTFOUND : 0;
		removed = shmc__index_remove_locked(c, &k, &f);
		SHMC__FAULT_POINT("del.removed");
	}
	shmc__bucket_unlock(c, t, k.bucket);
	if (removed) {
		shmc__entry_dead(c, t, removed);
		shmc__count(t, SHMC__CTR_items_removed, 1);
	}
	shmc__rcu_read_exit(c, t);
	if (rc == 0)
		shmc__count(t, SHMC__CTR_deletes, 1);
	else if (rc == SHMC_ENOTFOUND)
		shmc__fail(c, rc, "key not found");
	else
		shmc__fail(c, rc, "index entry points outside the data area");
	return rc;
}

/* Parse a decimal int64 exactly (optional '-', digits only). */
static bool parse_i64(const unsigned char *p, size_t n, int64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	char buf[21];
	memcpy(buf, p, n);
	buf[n] = 0;
	size_t i = buf[0] == '-';
	if (i == n)
		return false;
	for (size_t j = i; j < n; j++)
		if (buf[j] < '0' || buf[j] > '9')
			return false;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

int shmc_incr(shmc_cache *c, const void *key, size_t klen, int64_t delta, int64_t *out)
{
	if (!c)
		return SHMC_EINVAL;
	int rc = check_write(c, key, klen);
	if (rc)
		return rc;
	TCTX_OR_RETURN(c, t);
	struct shmc__keyref k;
	shmc__keyref_init(c, &k, key, klen);

	/* Optimistic: read the current value without the lock, append the
	 * result, then publish only if the key still holds what was read. */
	for (;;) {
		struct shmc__found f;
		uint64_t now = 0, entry = 0;
		int64_t cur = 0, next;
		bool live = false;
		shmc__rcu_read_enter(c, t);
		rc = shmc__index_find(c, &k, &f);
		if (rc == 0) {
			entry = f.entry;
			live = !expired(c, &f, &now) && f.hdr.kind == SHMC__ITEM_VALUE;
			if (live && !parse_i64(f.item + SHMC__ITEM_HDR + klen, f.hdr.vlen, &cur))
				rc = SHMC_ENOTNUM;
		} else if (rc == SHMC_ENOTFOUND) {
			rc = 0;
		}
		shmc__rcu_read_exit(c, t);
		if (rc == SHMC_ENOTNUM)
			return shmc__fail(c, rc, "value is not a decimal int64");
		if (rc)
			return shmc__fail(c, rc, "index entry points outside the data area");
		if (__builtin_add_overflow(cur, delta, &next))
			return shmc__fail(c, SHMC_EOVERFLOW, "%" PRId64 " + %" PRId64 " overflows int64",
					  cur, delta);
		/* A live key keeps its expiry; a new (or expired) one gets the
		 * default TTL. */
		uint64_t expire = live ? f.expire_abs_ms : shmc__expiry_for(c, 0);
		char text[24];
		int n = snprintf(text, sizeof(text), "%" PRId64, next);
		struct write_req w = {.mode = WRITE_INCR, .expect_entry = entry};
		rc = shmc__append_new(c, t, &k, text, (size_t)n, expire, &w.off);
		if (rc)
			return rc;
		SHMC__FAULT_POINT("incr.appended");
		rc = write_commit(c, t, &k, &w, SHMC__ITEM_HDR + klen + (uint64_t)n);
		if (rc == SHMC_EAGAIN_INTERNAL)
			continue;
		if (rc)
			return rc;
		shmc__count(t, SHMC__CTR_incrs, 1);
		shmc__count(t, SHMC__CTR_sets, 1);
		if (out)
			*out = next;
		return 0;
	}
}
