/*
 * handle.c - the process-local side: opening and closing handles, the
 * per-thread contexts, thread exit, and fork().
 *
 * A thread's first call on a handle claims a thread slot in the segment and
 * records a context (struct shmc__tctx) owned by the handle; later calls
 * find it through a 4-way thread-local cache keyed by the handle's serial,
 * which is never reused, so a closed handle's stale entries never match.
 *
 * fork(): the child must never act as the parent (its OFD lock, its thread
 * slots, its open chunks stay the parent's). pthread_atfork bumps a
 * generation in the child and clears the forking thread's cache; the
 * child's first call then re-registers the handle: a fresh descriptor (a
 * new open file description, so a new OFD lock), a new proc slot, new
 * thread slots. The mapping is inherited and stays valid.
 */
#include "handle.h"

#include "alloc.h"
#include "opts.h"
#include "rcu.h"
#include "role.h"
#include "uplink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

__thread struct shmc__tls_entry shmc__tls[SHMC__TLS_WAYS] SHMC__TLS_MODEL;
static __thread unsigned tls_victim;

uint64_t shmc__fork_gen;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static shmc_cache *registry;
static uint64_t next_serial = 1;
static pthread_key_t exit_key;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

uint64_t shmc__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A header clock this far behind the real one has lost its sweeper. */
#define CLOCK_STALE_MS 500

void shmc__clock_check(shmc_cache *c, uint64_t now)
{
	uint64_t v = uatomic_read(&c->hdr->clock_ms);
	if (v && now > v + CLOCK_STALE_MS)
		uatomic_cmpxchg(&c->hdr->clock_ms, v, 0);
}

static void tctx_release(shmc_cache *c, struct shmc__tctx *t)
{
	shmc__log_thread_done(c, t);
	shmc__thread_slot_release(c, t->slot_idx);
}

/* Drop every thread context of c; release their slots only if they are
 * this process's (not a fork parent's). */
static void tctx_release_all(shmc_cache *c, bool ours)
{
	while (c->tctx_list) {
		struct shmc__tctx *t = c->tctx_list;
		c->tctx_list = t->next;
		if (ours)
			tctx_release(c, t);
		shmc__free(t);
	}
}

/* Thread exit: release this thread's contexts on every live handle. */
static void thread_exit(void *unused)
{
	(void)unused;
	pthread_t self = pthread_self();
	pthread_mutex_lock(&registry_lock);
	for (shmc_cache *c = registry; c; c = c->registry_next) {
		pthread_mutex_lock(&c->lock);
		for (struct shmc__tctx **pp = &c->tctx_list; *pp;) {
			struct shmc__tctx *t = *pp;
			if (pthread_equal(t->thread, self) && c->fork_gen == shmc__fork_gen) {
				*pp = t->next;
				tctx_release(c, t);
				shmc__free(t);
			} else {
				pp = &t->next;
			}
		}
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&registry_lock);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
	for (shmc_cache *c = registry; c; c = c->registry_next) {
		pthread_mutex_lock(&c->lock);
		pthread_mutex_lock(&c->reap_lock);
	}
}

static void atfork_parent(void)
{
	for (shmc_cache *c = registry; c; c = c->registry_next) {
		pthread_mutex_unlock(&c->reap_lock);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&registry_lock);
}

static void atfork_child(void)
{
	shmc__fork_gen++;
	memset(shmc__tls, 0, sizeof(shmc__tls));
	atfork_parent();
}

static void process_init(void)
{
	pthread_key_create(&exit_key, thread_exit);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* In a fork child: drop the parent's identity and take our own. Caller
 * holds c->lock. */
static int reregister_locked(shmc_cache *c)
{
	/* The parent's contexts name the parent's slots: forget them without
	 * touching the slots. */
	tctx_release_all(c, false);
	char path[SHMC__NAME_MAX + 8];
	shmc__segment_path(c->name, path, sizeof(path));
	int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0) {
		/* Unlinked meanwhile: our mapping is still the object, but a
		 * new descriptor is needed for our own liveness lock. */
		return shmc__fail(c, errno == ENOENT ? SHMC_ENOENT : -errno,
				  "re-registering after fork: shm_open %s: %s", path, strerror(errno));
	}
	/* The name must still lead to the object we have mapped. */
	struct stat st, mapped;
	if (fstat(fd, &st) != 0 || fstat(c->fd, &mapped) != 0 || st.st_ino != mapped.st_ino ||
	    st.st_dev != mapped.st_dev) {
		close(fd);
		return shmc__fail(c, SHMC_ENOENT, "re-registering after fork: %s was replaced",
				  path);
	}
	close(c->fd); /* the parent keeps the shared description alive */
	c->fd = fd;
	c->fork_gen = shmc__fork_gen;
	shmc__roles_forget(c);
	shmc__refresher_forget(c);
	shmc__uplink_forget(c);
	int rc = shmc__proc_attach(c);
	if (!rc && c->run_roles)
		rc = shmc__roles_start(c);
	if (!rc)
		rc = shmc__uplink_restart(c);
	return rc;
}

struct shmc__tctx *shmc__tctx_slow(shmc_cache *c, int *err)
{
	pthread_mutex_lock(&c->lock);
	if (c->fork_gen != shmc__fork_gen) {
		*err = reregister_locked(c);
		if (*err) {
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
	}
	pthread_t self = pthread_self();
	struct shmc__tctx *t = c->tctx_list;
	while (t && !pthread_equal(t->thread, self))
		t = t->next;
	if (!t) {
		t = shmc__zalloc(sizeof(*t));
		if (!t) {
			pthread_mutex_unlock(&c->lock);
			*err = shmc__fail(c, SHMC_ENOMEM, "thread context");
			return NULL;
		}
		uint32_t idx;
		*err = shmc__thread_slot_claim(c, &idx);
		if (*err) {
			pthread_mutex_unlock(&c->lock);
			shmc__free(t);
			return NULL;
		}
		t->slot_idx = idx;
		t->slot = &c->threads[idx];
		t->lock_id = ((uatomic_read(&t->slot->gen) & 0xffffu) << 16) | (idx + 1);
		t->thread = self;
		/* Threads start their sampling countdowns at different
		 * points, so that a sample is not always the n-th call. */
		t->sample_countdown = c->sample_period ? 1 + (idx * 2654435761u) % c->sample_period
						       : UINT32_MAX;
		t->next = c->tctx_list;
		c->tctx_list = t;
		pthread_setspecific(exit_key, (void *)1);
	}
	pthread_mutex_unlock(&c->lock);
	unsigned way = tls_victim++ % SHMC__TLS_WAYS;
	shmc__tls[way].serial = c->serial;
	shmc__tls[way].tctx = t;
	return t;
}

int shmc_open(const char *name, const shmc_opts *o, int flags, shmc_cache **out)
{
	struct shmc_opts defaults;
	if (!o) {
		shmc__opts_defaults(&defaults);
		o = &defaults;
	}
	if (!out || !name || (flags & ~(SHMC_CREATE | SHMC_EXCL | SHMC_RDONLY)) ||
	    ((flags & SHMC_EXCL) && !(flags & SHMC_CREATE)))
		return shmc__fail(NULL, SHMC_EINVAL, "bad arguments to shmc_open");
	pthread_once(&process_once, process_init);

	shmc_cache *c = shmc__zalloc(sizeof(*c));
	if (!c)
		return shmc__fail(NULL, SHMC_ENOMEM, "handle");
	c->fd = -1;
	c->flags = flags;
	c->fork_gen = shmc__fork_gen;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->reap_lock, NULL);
	/* Before the role thread starts: it looks its context up by serial,
	 * and serial 0 matches an empty thread-local way (no context). */
	pthread_mutex_lock(&registry_lock);
	c->serial = next_serial++;
	pthread_mutex_unlock(&registry_lock);

	c->fence_readers = !shmc__rcu_process_init();
	c->run_roles = o->sweeper && !(flags & SHMC_RDONLY);
	c->sample_period = o->sample_period;
	c->fill_timeout_ms = o->fill_timeout_ms;
	c->xfetch_beta = o->xfetch_beta;
	bool attached = false;
	int rc = shmc__segment_open(c, name, o, flags);
	if (!rc) {
		rc = shmc__proc_attach(c);
		attached = rc == 0;
	}
	if (!rc && o->uplink_uri)
		rc = (c->uplink_uri = strdup(o->uplink_uri)) != NULL
			     ? shmc__uplink_start(c, c->uplink_uri)
			     : shmc__fail(c, SHMC_ENOMEM, "uplink URI");
	if (!rc && c->run_roles)
		rc = shmc__roles_start(c);
	if (rc) {
		/* Re-tag the message as shmc_open's: the handle never existed. */
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", shmc_errmsg(c));
		shmc__uplink_stop(c);
		tctx_release_all(c, attached);
		if (attached)
			shmc__proc_detach(c);
		free(c->uplink_uri);
		shmc__segment_close(c);
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->reap_lock);
		shmc__free(c);
		return shmc__fail(NULL, rc, "%s", msg);
	}
	pthread_mutex_lock(&registry_lock);
	c->registry_next = registry;
	registry = c;
	pthread_mutex_unlock(&registry_lock);
	*out = c;
	return 0;
}

int shmc_close(shmc_cache *c)
{
	if (!c)
		return 0;
	pthread_mutex_lock(&registry_lock);
	for (shmc_cache **pp = &registry; *pp; pp = &(*pp)->registry_next)
		if (*pp == c) {
			*pp = c->registry_next;
			break;
		}
	pthread_mutex_unlock(&registry_lock);

	bool ours = c->fork_gen == shmc__fork_gen;
	/* Threads first: a role holder, the refresher and the uplink thread
	 * still use their contexts. */
	if (ours) {
		shmc__roles_stop(c);
		shmc__refresher_stop(c);
		shmc__uplink_stop(c);
	} else {
		shmc__roles_forget(c);
		shmc__refresher_forget(c);
		shmc__uplink_forget(c);
	}
	tctx_release_all(c, ours);
	/* Only the process that registered the slot may release it: a fork
	 * child that never used the handle owns nothing. */
	if (ours)
		shmc__proc_detach(c);
	for (int i = 0; i < SHMC__TLS_WAYS; i++)
		if (shmc__tls[i].serial == c->serial)
			shmc__tls[i].serial = 0;
	shmc__segment_close(c);
	free(c->uplink_uri);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->reap_lock);
	shmc__free(c);
	return 0;
}
