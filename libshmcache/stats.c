/*
 * stats.c - host-wide totals.
 *
 * Counters live in thread slots, each written only by its owner with plain
 * stores; a reader sums every slot plus what released slots folded into the
 * header. A slot being released may be counted twice or not at all for an
 * instant (its values move to the header); totals are approximate at that
 * instant and exact again right after. Memory figures come from the chunk
 * table.
 */
#include "handle.h"

#include <string.h>
#include "atomic.h"

int shmc_stats(shmc_cache *c, struct shmc_stats *out)
{
	if (!c || !out)
		return SHMC_EINVAL;
	uint64_t ctr[SHMC__NCOUNTERS];
	for (int k = 0; k < SHMC__NCOUNTERS; k++)
		ctr[k] = uatomic_read(&c->hdr->folded[k]);
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < c->geo.max_threads; i++) {
		struct shmc__thread_slot *ts = &c->threads[i];
		if (!uatomic_read(&ts->owner_proc))
			continue;
		out->threads_attached++;
		for (int k = 0; k < SHMC__NCOUNTERS; k++)
			ctr[k] += uatomic_read(&ts->counters[k]);
	}
	/* Count live processes only; a dead one found here is reaped now, so
	 * its slots and counters are accounted for by the next call (an
	 * inspection handle maps read-only and only looks). */
	bool inspect = c->flags & SHMC__INSPECT;
	for (uint32_t p = 0; p < c->geo.max_procs; p++)
		if (uatomic_read(&c->procs[p].state) != SHMC__PROC_FREE &&
		    (inspect ? shmc__proc_alive(c, p) : !shmc__proc_reap_if_dead(c, p)))
			out->procs_attached++;

	out->gets = ctr[SHMC__CTR_gets];
	out->misses = ctr[SHMC__CTR_misses];
	out->hits = out->gets > out->misses ? out->gets - out->misses : 0;
	out->sets = ctr[SHMC__CTR_sets];
	out->deletes = ctr[SHMC__CTR_deletes];
	out->incrs = ctr[SHMC__CTR_incrs];
	out->expirations = ctr[SHMC__CTR_expirations];
	out->evictions_probation = ctr[SHMC__CTR_evicted_probation];
	out->evictions_clock = ctr[SHMC__CTR_evicted_clock];
	out->evictions_direct = ctr[SHMC__CTR_evicted_direct];
	out->evictions = out->evictions_probation + out->evictions_clock + out->evictions_direct;
	out->enospc = ctr[SHMC__CTR_enospc];
	out->bytes_written = ctr[SHMC__CTR_bytes_written];
	out->promotions = ctr[SHMC__CTR_promotions];
	out->fills = ctr[SHMC__CTR_fills];
	out->coalesced_waits = ctr[SHMC__CTR_coalesced_waits];
	out->origin_calls = ctr[SHMC__CTR_origin_calls];
	out->lease_takeovers = ctr[SHMC__CTR_lease_takeovers];
	out->negative_hits = ctr[SHMC__CTR_negative_hits];
	out->stale_serves = ctr[SHMC__CTR_stale_serves];
	out->refreshes = ctr[SHMC__CTR_refreshes];
	out->loader_errors = ctr[SHMC__CTR_loader_errors];
	out->stale_if_error = ctr[SHMC__CTR_stale_if_error];
	out->uplink_batches = ctr[SHMC__CTR_uplink_batches];
	out->uplink_ops = ctr[SHMC__CTR_uplink_ops];
	out->uplink_err_connect = ctr[SHMC__CTR_uplink_err_connect];
	out->uplink_err_timeout = ctr[SHMC__CTR_uplink_err_timeout];
	out->uplink_err_protocol = ctr[SHMC__CTR_uplink_err_protocol];
	out->uplink_err_reply = ctr[SHMC__CTR_uplink_err_reply];
	out->uplink_fast_fails = ctr[SHMC__CTR_uplink_fast_fails];
	out->uplink_breaker_opens = ctr[SHMC__CTR_uplink_breaker_opens];
	out->uplink_redirects = ctr[SHMC__CTR_uplink_redirects];
	out->uplink_topology_refreshes = ctr[SHMC__CTR_uplink_topology_refreshes];
	out->write_behind_queued = ctr[SHMC__CTR_write_behind_queued];
	out->write_behind_dropped = ctr[SHMC__CTR_write_behind_dropped];
	out->write_behind_failed = ctr[SHMC__CTR_write_behind_failed];
	const struct shmc__role *sweeper = &c->hdr->role[SHMC__ROLE_SWEEPER];
	/* A holder killed with no process to take over leaves its pid
	 * behind: report it only while its process lives. */
	uint32_t holder = uatomic_read(&sweeper->holder_proc);
	if (holder && holder - 1 < c->geo.max_procs && shmc__proc_alive(c, holder - 1))
		out->sweeper_pid = uatomic_read(&sweeper->holder_pid);
	out->sweeper_handovers = uatomic_read(&sweeper->handovers);
	out->sweeper_passes = uatomic_read(&sweeper->passes);
	uint64_t added = ctr[SHMC__CTR_items_added], removed = ctr[SHMC__CTR_items_removed];
	out->items = added > removed ? added - removed : 0;

	out->segment_bytes = c->geo.segment_bytes;
	out->data_bytes = c->geo.data_bytes;
	out->chunks_total = c->geo.nchunks;
	out->index_slots = (uint64_t)c->geo.nbuckets * SHMC__BUCKET_SLOTS;
	for (uint32_t k = 0; k < c->geo.nchunks; k++) {
		struct shmc__chunk *ch = &c->chunks[k];
		uint32_t st = uatomic_read(&ch->state);
		uint64_t used = uatomic_read(&ch->used), dead = uatomic_read(&ch->dead);
		switch (st) {
		case SHMC__CHUNK_FREE:
			out->chunks_free++;
			out->bytes_free += c->geo.chunk_bytes;
			break;
		case SHMC__CHUNK_OPEN:
			out->chunks_open++;
			out->chunks_probation += uatomic_read(&ch->log) == SHMC__LOG_SMALL;
			out->bytes_free += c->geo.chunk_bytes - (used < c->geo.chunk_bytes ? used : c->geo.chunk_bytes);
			out->bytes_live += used > dead ? used - dead : 0;
			out->bytes_dead += dead < used ? dead : used;
			break;
		case SHMC__CHUNK_SEALED:
			out->chunks_sealed++;
			out->chunks_probation += uatomic_read(&ch->log) == SHMC__LOG_SMALL;
			out->bytes_live += used > dead ? used - dead : 0;
			out->bytes_dead += dead < used ? dead : used;
			break;
		default: /* retiring or retired: free after a grace period */
			out->chunks_free++;
			out->chunks_retired++;
			out->bytes_free += c->geo.chunk_bytes;
			break;
		}
	}
	return 0;
}

int shmc_stats_procs(shmc_cache *c, struct shmc_proc_stats *out, size_t cap, size_t *n)
{
	if (!c || !n || (!out && cap))
		return SHMC_EINVAL;
	size_t found = 0;
	for (uint32_t p = 0; p < c->geo.max_procs; p++) {
		struct shmc__proc_slot *ps = &c->procs[p];
		if (uatomic_read(&ps->state) == SHMC__PROC_FREE || !shmc__proc_alive(c, p))
			continue;
		if (found < cap) {
			uint64_t ctr[SHMC__NCOUNTERS] = {0};
			struct shmc_proc_stats *o = &out[found];
			memset(o, 0, sizeof(*o));
			o->pid = uatomic_read(&ps->pid);
			o->attach_unix_ms = uatomic_read(&ps->attach_unix_ms);
			for (uint32_t i = 0; i < c->geo.max_threads; i++) {
				struct shmc__thread_slot *ts = &c->threads[i];
				if (uatomic_read(&ts->owner_proc) != p + 1)
					continue;
				o->threads++;
				for (int k = 0; k < SHMC__NCOUNTERS; k++)
					ctr[k] += uatomic_read(&ts->counters[k]);
			}
			o->gets = ctr[SHMC__CTR_gets];
			o->misses = ctr[SHMC__CTR_misses];
			o->hits = o->gets > o->misses ? o->gets - o->misses : 0;
			o->sets = ctr[SHMC__CTR_sets];
			o->deletes = ctr[SHMC__CTR_deletes];
			o->incrs = ctr[SHMC__CTR_incrs];
			o->evictions = ctr[SHMC__CTR_evicted_probation] + ctr[SHMC__CTR_evicted_clock] +
				       ctr[SHMC__CTR_evicted_direct];
			o->expirations = ctr[SHMC__CTR_expirations];
			o->enospc = ctr[SHMC__CTR_enospc];
			o->bytes_written = ctr[SHMC__CTR_bytes_written];
		}
		found++;
	}
	*n = found;
	return 0;
}
