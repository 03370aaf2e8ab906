/*
 * segment.c - the shared-memory object: create, attach, validate, unlink.
 *
 * Creation races are settled by O_EXCL: exactly one opener creates the
 * object and initialises it while holding an OFD lock on a byte past EOF;
 * everyone else waits for header.state == READY. If that lock is free while
 * the header is not READY, the creator died mid-way: the segment is
 * reported corrupt rather than waited on forever.
 *
 * Attaching never trusts the segment: the region offsets are recomputed
 * from the parameters and must match exactly, and the parameters must lie
 * within the limits this build accepts. Only then are they copied into the
 * handle, which is all the data path uses.
 */
#include "segment.h"

#include "handle.h"
#include "lease.h"
#include "obs.h"
#include "opts.h"
#include "unodes.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"
#include <xxhash.h>

#define OPEN_WAIT_MS 5000   /* how long to wait for another creator */
#define DEAD_CREATOR_MS 200 /* init lock free this long while INIT = dead */
#define MIN_CHUNK_BYTES (64u << 10)
#define MAX_CHUNK_BYTES (64u << 20)
#define MIN_CHUNKS 64u

uint64_t shmc__layout_signature(void)
{
#define F(type, field) (uint64_t) __builtin_offsetof(type, field)
	const uint64_t facts[] = {
		SHMC__FORMAT_VERSION,
		SHMC__HEADER_BYTES,
		sizeof(struct shmc__header),
		F(struct shmc__header, state),
		F(struct shmc__header, off_data),
		F(struct shmc__header, immutable_sum),
		F(struct shmc__header, gp_ctr),
		F(struct shmc__header, alloc_lock),
		F(struct shmc__header, alloc_rotor),
		F(struct shmc__header, reserved_alloc),
		F(struct shmc__header, chunk_seq),
		F(struct shmc__header, clock_ms),
		F(struct shmc__header, role),
		sizeof(struct shmc__role),
		F(struct shmc__role, cursor),
		SHMC__NROLES,
		F(struct shmc__header, folded),
		sizeof(pthread_mutex_t),
		SHMC__NCOUNTERS,
		sizeof(struct shmc__bucket),
		SHMC__BUCKET_SLOTS,
		SHMC__MAX_PROBE,
		SHMC__ENTRY_ITEM,
		sizeof(struct shmc__item_hdr),
		F(struct shmc__item_hdr, refbit),
		sizeof(struct shmc__chunk),
		F(struct shmc__chunk, retire_gp),
		F(struct shmc__chunk, open_seq),
		F(struct shmc__chunk, expire_max),
		F(struct shmc__chunk, expire_min),
		F(struct shmc__chunk, log),
		F(struct shmc__bucket, ghost),
		sizeof(struct shmc__proc_slot),
		F(struct shmc__proc_slot, readers_fence),
		sizeof(struct shmc__thread_slot),
		F(struct shmc__thread_slot, counters),
		sizeof(struct shmc__obs),
		F(struct shmc__obs, hot),
		F(struct shmc__hot, key),
		SHMC_LATENCY_BUCKETS,
		sizeof(struct shmc__lease),
		F(struct shmc__lease, key_hash),
		F(struct shmc__header, stale_ms),
		F(struct shmc__header, off_unodes),
		sizeof(struct shmc__unode),
		F(struct shmc__unode, addr),
		SHMC__UNODES_PER_PROC,
	};
#undef F
	return XXH64(facts, sizeof(facts), 0x5348434dull);
}

static uint64_t header_sum(const struct shmc__header *h)
{
	struct shmc__header copy;
	memcpy(&copy, h, offsetof(struct shmc__header, immutable_sum));
	copy.state = 0; /* INIT -> READY after summing */
	return XXH64(&copy, offsetof(struct shmc__header, immutable_sum), 0x494d4d55ull);
}

static uint64_t align64(uint64_t v)
{
	return (v + 63) & ~(uint64_t)63;
}

/* Region offsets as a function of the parameters: used to lay out a new
 * segment and to check an existing one. */
struct layout {
	uint64_t off_procs, off_threads, off_obs, off_leases, off_unodes, off_buckets, off_chunks,
		off_data, end;
};

/* Fill leases: a thread fills one key at a time, and rarely do more than
 * half of them fill at once (a fetcher that finds none free loads without
 * one); at least a few dozen. */
static uint32_t leases_for(uint32_t max_threads)
{
	return max_threads < 128 ? 64 : max_threads / 2;
}

static void layout_compute(uint32_t max_procs, uint32_t max_threads, uint32_t nbuckets,
			   uint32_t nchunks, uint32_t chunk_bytes, struct layout *l)
{
	l->off_procs = SHMC__HEADER_BYTES;
	l->off_threads = align64(l->off_procs + (uint64_t)max_procs * sizeof(struct shmc__proc_slot));
	l->off_obs = align64(l->off_threads + (uint64_t)max_threads * sizeof(struct shmc__thread_slot));
	l->off_leases = align64(l->off_obs + sizeof(struct shmc__obs));
	l->off_unodes = align64(l->off_leases +
				(uint64_t)leases_for(max_threads) * sizeof(struct shmc__lease));
	l->off_buckets = align64(l->off_unodes +
				 (uint64_t)shmc__unodes_for(max_procs) * sizeof(struct shmc__unode));
	l->off_chunks = align64(l->off_buckets + (uint64_t)nbuckets * sizeof(struct shmc__bucket));
	l->off_data = (l->off_chunks + (uint64_t)nchunks * sizeof(struct shmc__chunk) + 4095) &
		      ~(uint64_t)4095;
	l->end = l->off_data + (uint64_t)nchunks * chunk_bytes;
}

int shmc__segment_path(const char *name, char *path, size_t cap)
{
	if (!name)
		return SHMC_EINVAL;
	size_t n = strlen(name);
	if (n == 0 || n > SHMC__NAME_MAX || cap < n + 7)
		return SHMC_EINVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			 (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		if (!ok)
			return SHMC_EINVAL;
	}
	snprintf(path, cap, "/shmc.%s", name);
	return 0;
}

static int errno_code(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
		return SHMC_EPERM;
	case ENOENT:
		return SHMC_ENOENT;
	case EEXIST:
		return SHMC_EEXIST;
	case ENOMEM:
		return SHMC_ENOMEM;
	default:
		return -e;
	}
}

static int ofd_lock(int fd, off_t byte, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

static bool ofd_held_by_other(int fd, off_t byte)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return true; /* cannot tell: assume alive, the safe side */
	return fl.l_type != F_UNLCK;
}

static uint64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Parameters of a new segment from the options. */
/* Chunks and buckets for a segment of size bytes with chunk_bytes chunks:
 * each chunk costs its bytes, its table entry and the index slots for the
 * items it is expected to hold. */
static int plan_with_chunk(const struct shmc_opts *o, uint32_t chunk, struct shmc__header *h,
			   struct layout *l)
{
	uint64_t size = o->size_bytes;
	struct layout fixed;
	layout_compute(o->max_procs, o->max_threads, 0, 0, chunk, &fixed);
	if (fixed.off_chunks + 4096 >= size)
		return SHMC_EINVAL;
	uint64_t avail = size - fixed.off_chunks - 4096;
	double items_per_chunk = (double)chunk / (double)(o->item_bytes + SHMC__ITEM_HDR);
	double index_per_chunk =
		items_per_chunk / (SHMC__BUCKET_SLOTS * SHMC__INDEX_LOAD) * sizeof(struct shmc__bucket);
	uint64_t nchunks =
		(uint64_t)((double)avail / ((double)chunk + sizeof(struct shmc__chunk) + index_per_chunk));
	for (; nchunks > 0; nchunks--) {
		uint64_t nb = (uint64_t)((double)nchunks * index_per_chunk / sizeof(struct shmc__bucket)) + 1;
		if (nb < SHMC__MAX_PROBE)
			nb = SHMC__MAX_PROBE;
		if (nb > UINT32_MAX || nchunks > UINT32_MAX)
			return SHMC_EINVAL;
		layout_compute(o->max_procs, o->max_threads, (uint32_t)nb, (uint32_t)nchunks, chunk, l);
		if (l->end <= size) {
			h->nbuckets = (uint32_t)nb;
			h->nchunks = (uint32_t)nchunks;
			h->chunk_bytes = chunk;
			return 0;
		}
	}
	return SHMC_EINVAL;
}

/* Parameters of a new segment from the options. Without an explicit chunk
 * size, chunks shrink (down to 64 KiB) until there are at least
 * MIN_CHUNKS of them, so that one writer's open chunk is a small share. */
static int plan_new(const struct shmc_opts *o, struct shmc__header *h, struct layout *l)
{
	uint32_t chunk = (uint32_t)(o->chunk_bytes ? o->chunk_bytes : SHMC_DEFAULT_CHUNK);
	int rc = plan_with_chunk(o, chunk, h, l);
	while (!o->chunk_bytes && chunk > MIN_CHUNK_BYTES && (rc || h->nchunks < MIN_CHUNKS)) {
		chunk >>= 1;
		rc = plan_with_chunk(o, chunk, h, l);
	}
	if (rc)
		return rc;
	h->segment_bytes = o->size_bytes;
	h->max_procs = o->max_procs;
	h->max_threads = o->max_threads;
	h->max_key_bytes = (uint32_t)o->max_key_bytes;
	h->default_ttl_ms = o->default_ttl_ms;
	h->ttl_jitter_pct = o->ttl_jitter_pct;
	h->negative_ttl_ms = o->negative_ttl_ms;
	h->stale_ms = o->stale_ms;
	return 0;
}

static int init_new(shmc_cache *c, const struct shmc_opts *opts)
{
	struct shmc_opts eff = *opts;
	const struct shmc_opts *o = &eff;
	shmc__opts_slots(opts, &eff.max_procs, &eff.max_threads);
	struct shmc__header plan = {0};
	struct layout l;
	int rc = plan_new(o, &plan, &l);
	if (rc)
		return shmc__fail(c, rc, "segment of %zu bytes too small for %u procs and %u threads",
				  o->size_bytes, o->max_procs, o->max_threads);
	if (ftruncate(c->fd, (off_t)plan.segment_bytes) != 0)
		return shmc__fail(c, errno_code(errno), "ftruncate: %s", strerror(errno));
	void *base = mmap(NULL, plan.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (base == MAP_FAILED)
		return shmc__fail(c, errno_code(errno), "mmap: %s", strerror(errno));
	c->base = base;

	struct shmc__header *h = base;
	*h = plan;
	h->magic = SHMC__MAGIC;
	h->layout_sig = shmc__layout_signature();
	h->state = SHMC__SEG_INIT;
	h->creator_uid = (uint32_t)geteuid();
	h->created_unix_ms = unix_ms();
	h->off_procs = l.off_procs;
	h->off_threads = l.off_threads;
	h->off_buckets = l.off_buckets;
	h->off_chunks = l.off_chunks;
	h->off_data = l.off_data;
	h->off_obs = l.off_obs;
	h->off_leases = l.off_leases;
	h->nleases = leases_for(h->max_threads);
	h->off_unodes = l.off_unodes;
	h->nunodes = shmc__unodes_for(h->max_procs);
	h->gp_ctr = 1;
	h->immutable_sum = header_sum(h);

	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(&h->alloc_lock, &ma);
	for (int r = 0; r < SHMC__NROLES && !rc; r++)
		rc = pthread_mutex_init(&h->role[r].lease, &ma);
	pthread_mutexattr_destroy(&ma);
	if (!rc)
		rc = shmc__obs_init((struct shmc__obs *)((unsigned char *)base + l.off_obs));
	if (rc)
		return shmc__fail(c, -rc, "pthread_mutex_init: %s", strerror(rc));
	/* Everything else starts as zero bytes from ftruncate: free slots,
	 * empty buckets, FREE chunks. Publish last. */
	uatomic_set(&h->state, SHMC__SEG_READY);
	cmm_smp_mb();
	return 0;
}

/* Wait until the segment has a READY header, or decide it never will. */
/* Judge a header that no creator is writing any more. Returns 0 (ready),
 * 1 (not yet built: wait) or an error. */
static int judge_header(shmc_cache *c, const struct shmc__header *h)
{
	if (h->magic == 0 && h->layout_sig == 0 && h->state == 0)
		return 1; /* sized by its creator, header not yet written */
	if (h->magic != SHMC__MAGIC)
		return shmc__fail(c, SHMC_EVERSION, "bad magic %016llx: not a segment of this library",
				  (unsigned long long)h->magic);
	if (h->layout_sig != shmc__layout_signature())
		return shmc__fail(c, SHMC_EVERSION, "layout signature %016llx, this build has %016llx",
				  (unsigned long long)h->layout_sig,
				  (unsigned long long)shmc__layout_signature());
	if (h->state == SHMC__SEG_READY)
		return 0;
	if (h->state == SHMC__SEG_INIT)
		return 1;
	return shmc__fail(c, SHMC_ECORRUPT, "bad header state %u", h->state);
}

/* Wait until the segment has a READY header, or decide it never will.
 * While the creator holds the init lock its half-written header is not
 * judged at all. */
static int wait_ready(shmc_cache *c, struct stat *st)
{
	uint64_t start = shmc__now_ms(), unheld_since = 0;
	for (;;) {
		bool creator_alive = ofd_held_by_other(c->fd, SHMC__OFD_INIT_BYTE);
		if (fstat(c->fd, st) != 0)
			return shmc__fail(c, -errno, "fstat: %s", strerror(errno));
		if (!creator_alive && st->st_size > 0) {
			struct shmc__header h;
			if ((uint64_t)st->st_size < SHMC__HEADER_BYTES ||
			    pread(c->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
				return shmc__fail(c, SHMC_ECORRUPT,
						  "segment of %lld bytes is shorter than a header",
						  (long long)st->st_size);
			int rc = judge_header(c, &h);
			if (rc <= 0)
				return rc;
		}
		uint64_t now = shmc__now_ms();
		if (creator_alive) {
			unheld_since = 0;
		} else if (!unheld_since) {
			unheld_since = now;
		} else if (now - unheld_since > DEAD_CREATOR_MS) {
			return shmc__fail(c, SHMC_ECORRUPT,
					  "segment was never initialised (its creator died); "
					  "unlink it and create it again");
		}
		if (now - start > OPEN_WAIT_MS)
			return shmc__fail(c, SHMC_ETIMEDOUT, "segment still initialising after %d ms",
					  OPEN_WAIT_MS);
		usleep(1000);
	}
}

/* Check an existing READY header against the file and this build's limits,
 * then copy the geometry into the handle. */
static int validate(shmc_cache *c, const struct shmc__header *h, uint64_t file_bytes)
{
	const char *bad = NULL;
	uint32_t chunk = h->chunk_bytes;
	if (h->immutable_sum != header_sum(h))
		bad = "checksum of the immutable fields";
	else if (h->segment_bytes != file_bytes)
		bad = "segment_bytes differs from the object's size (truncated?)";
	else if (chunk < MIN_CHUNK_BYTES || chunk > MAX_CHUNK_BYTES || (chunk & (chunk - 1)))
		bad = "chunk_bytes";
	else if (h->nchunks == 0)
		bad = "nchunks";
	else if (h->nbuckets < SHMC__MAX_PROBE)
		bad = "nbuckets";
	else if (h->max_procs == 0 || h->max_procs > 65535)
		bad = "max_procs";
	else if (h->max_threads == 0 || h->max_threads > 65535)
		bad = "max_threads";
	else if (h->max_key_bytes == 0 || h->max_key_bytes > SHMC_KEY_MAX)
		bad = "max_key_bytes";
	else if (h->ttl_jitter_pct > SHMC_TTL_JITTER_MAX)
		bad = "ttl_jitter_pct";
	if (!bad) {
		struct layout l;
		layout_compute(h->max_procs, h->max_threads, h->nbuckets, h->nchunks, chunk, &l);
		if (h->off_procs != l.off_procs || h->off_threads != l.off_threads ||
		    h->off_obs != l.off_obs || h->off_leases != l.off_leases ||
		    h->nleases != leases_for(h->max_threads) || h->off_unodes != l.off_unodes ||
		    h->nunodes != shmc__unodes_for(h->max_procs) || h->off_buckets != l.off_buckets ||
		    h->off_chunks != l.off_chunks ||
		    h->off_data != l.off_data)
			bad = "region offsets";
		else if (l.end > file_bytes)
			bad = "data area extends past the end of the segment";
		else if ((uint64_t)h->nchunks * chunk > SHMC__ENTRY_OFF_MASK)
			bad = "data area too large";
	}
	if (bad)
		return shmc__fail(c, SHMC_ECORRUPT, "header field invalid: %s", bad);

	struct shmc__geometry *g = &c->geo;
	g->segment_bytes = file_bytes;
	g->chunk_bytes = chunk;
	g->chunk_shift = (uint32_t)__builtin_ctz(chunk);
	g->nchunks = h->nchunks;
	g->data_bytes = (uint64_t)h->nchunks * chunk;
	g->nbuckets = h->nbuckets;
	g->max_procs = h->max_procs;
	g->max_threads = h->max_threads;
	g->max_key_bytes = h->max_key_bytes;
	g->default_ttl_ms = h->default_ttl_ms;
	g->ttl_jitter_pct = h->ttl_jitter_pct;
	g->nleases = h->nleases;
	g->negative_ttl_ms = h->negative_ttl_ms;
	g->stale_ms = h->stale_ms;
	g->nunodes = h->nunodes;

	c->hdr = (struct shmc__header *)c->base;
	c->procs = (struct shmc__proc_slot *)(c->base + h->off_procs);
	c->threads = (struct shmc__thread_slot *)(c->base + h->off_threads);
	c->buckets = (struct shmc__bucket *)(c->base + h->off_buckets);
	c->chunks = (struct shmc__chunk *)(c->base + h->off_chunks);
	c->obs = (struct shmc__obs *)(c->base + h->off_obs);
	c->leases = (struct shmc__lease *)(c->base + h->off_leases);
	c->unodes = (struct shmc__unode *)(c->base + h->off_unodes);
	c->data = c->base + h->off_data;
	return 0;
}

static int attach_existing(shmc_cache *c, int flags)
{
	int prot = (flags & SHMC__INSPECT) ? PROT_READ : PROT_READ | PROT_WRITE;
	struct stat st;
	int rc = wait_ready(c, &st);
	if (rc)
		return rc;
	uint64_t bytes = (uint64_t)st.st_size;
	void *base = mmap(NULL, bytes, prot, MAP_SHARED, c->fd, 0);
	if (base == MAP_FAILED)
		return shmc__fail(c, errno_code(errno), "mmap: %s", strerror(errno));
	c->base = base;
	c->geo.segment_bytes = bytes;
	/* The header may change under us only through its mutable part; the
	 * immutable fields are final once READY was observed. */
	struct shmc__header h;
	memcpy(&h, base, sizeof(h));
	return validate(c, &h, bytes);
}

int shmc__segment_open(shmc_cache *c, const char *name, const struct shmc_opts *o, int flags)
{
	char path[SHMC__NAME_MAX + 8];
	if (shmc__segment_path(name, path, sizeof(path)))
		return shmc__fail(c, SHMC_EINVAL, "bad segment name (1..%u bytes of [A-Za-z0-9._-])",
				  SHMC__NAME_MAX);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->fd = -1;

	for (int attempt = 0; attempt < 100; attempt++) {
		if (flags & SHMC_CREATE) {
			c->fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, o->mode);
			if (c->fd >= 0) {
				/* umask may have cleared bits the caller asked for. */
				if (fchmod(c->fd, o->mode) != 0 ||
				    ofd_lock(c->fd, SHMC__OFD_INIT_BYTE, F_WRLCK) != 0) {
					int e = errno;
					shm_unlink(path);
					return shmc__fail(c, errno_code(e), "%s: %s", path, strerror(e));
				}
				int rc = init_new(c, o);
				if (rc) {
					shm_unlink(path);
					return rc;
				}
				ofd_lock(c->fd, SHMC__OFD_INIT_BYTE, F_UNLCK);
				struct shmc__header h;
				memcpy(&h, c->base, sizeof(h));
				return validate(c, &h, h.segment_bytes);
			}
			if (errno != EEXIST)
				return shmc__fail(c, errno_code(errno), "shm_open %s: %s", path,
						  strerror(errno));
			if (flags & SHMC_EXCL)
				return shmc__fail(c, SHMC_EEXIST, "segment %s already exists", name);
		}
		c->fd = shm_open(path, ((flags & SHMC__INSPECT) ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
		if (c->fd >= 0)
			return attach_existing(c, flags);
		if (errno == ENOENT && (flags & SHMC_CREATE))
			continue; /* unlinked between our two opens: create again */
		int e = errno;
		if (e == ENOENT)
			return shmc__fail(c, SHMC_ENOENT, "no segment named %s", name);
		return shmc__fail(c, errno_code(e), "shm_open %s: %s", path, strerror(e));
	}
	return shmc__fail(c, SHMC_ETIMEDOUT, "segment %s keeps vanishing while opened", name);
}

void shmc__segment_close(shmc_cache *c)
{
	if (c->base)
		munmap(c->base, c->geo.segment_bytes);
	if (c->fd >= 0)
		close(c->fd);
	c->base = NULL;
	c->fd = -1;
}

int shmc_unlink(const char *name)
{
	char path[SHMC__NAME_MAX + 8];
	if (shmc__segment_path(name, path, sizeof(path)))
		return shmc__fail(NULL, SHMC_EINVAL, "bad segment name");
	if (shm_unlink(path) != 0)
		return shmc__fail(NULL, errno_code(errno), "shm_unlink %s: %s", path, strerror(errno));
	return 0;
}
