/*
 * role.c - background-role leases.
 *
 * Every process that opens a segment with the sweeper enabled starts one
 * thread that waits on the sweeper role's lease, a robust process-shared
 * mutex in the header. Whoever gets it runs the role until its handle is
 * closed. If the holder dies, the kernel marks the mutex and wakes a
 * waiter, whose lock returns EOWNERDEAD: it marks the mutex consistent and
 * resumes from the state the role persists in the header. No daemon is
 * needed; `shmcache serve` is such a process that does nothing else.
 *
 * A waiter blocks in pthread_mutex_timedlock, which nothing can interrupt.
 * So a waiter works only through its own private mapping of the header
 * page and its own context; shmc_close tells it to stop and does not wait
 * (it exits at its next timeout, releasing the lease at once if it had just
 * won it). Only a holder uses the handle, and close joins a holder.
 */
#include "role.h"

#include "alloc.h"
#include "handle.h"
#include "sweeper.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "atomic.h"

#define LEASE_POLL_MS 250 /* a waiter re-checks whether it should stop */

struct shmc__role_thread {
	pthread_mutex_t mu;  /* stop, holding, detached */
	bool stop;
	bool holding;        /* runs the role: uses the handle; close joins */
	bool detached;       /* close left: the thread frees this context */
	struct shmc__header *hdr; /* private mapping of the header page */
	shmc_cache *c;
	pthread_t thread;
};

static void context_free(struct shmc__role_thread *rt)
{
	munmap(rt->hdr, SHMC__HEADER_BYTES);
	pthread_mutex_destroy(&rt->mu);
	shmc__free(rt);
}

/* The thread leaves: free the context if close already left it to us. */
static void *thread_leave(struct shmc__role_thread *rt)
{
	pthread_mutex_lock(&rt->mu);
	bool detached = rt->detached;
	pthread_mutex_unlock(&rt->mu);
	if (detached)
		context_free(rt);
	return NULL;
}

/* Wait for the lease. true = we hold it (and should run the role). */
static bool lease_acquire(struct shmc__role_thread *rt, struct shmc__role *r)
{
	for (;;) {
		pthread_mutex_lock(&rt->mu);
		bool stop = rt->stop;
		pthread_mutex_unlock(&rt->mu);
		if (stop)
			return false;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += LEASE_POLL_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		int rc = pthread_mutex_timedlock(&r->lease, &until);
		if (rc == EOWNERDEAD) {
			/* The holder died: what it persisted is consistent at
			 * every instruction (single-word commits), so resume. */
			pthread_mutex_consistent(&r->lease);
			uatomic_inc(&r->handovers);
			rc = 0;
		}
		if (rc == 0)
			return true;
		if (rc != ETIMEDOUT)
			usleep(LEASE_POLL_MS * 1000); /* ENOTRECOVERABLE etc.: keep trying */
	}
}

static void *role_thread_main(void *arg)
{
	struct shmc__role_thread *rt = arg;
	struct shmc__role *r = &rt->hdr->role[SHMC__ROLE_SWEEPER];
	if (!lease_acquire(rt, r))
		return thread_leave(rt);
	pthread_mutex_lock(&rt->mu);
	bool stop = rt->stop;
	rt->holding = !stop;
	pthread_mutex_unlock(&rt->mu);
	if (!stop) {
		/* From here close joins us, so the handle stays valid. */
		int err = 0;
		struct shmc__tctx *t = shmc__tctx_get(rt->c, &err);
		if (t) {
			uatomic_set(&r->holder_proc, rt->c->proc_idx + 1);
			uatomic_set(&r->holder_pid, (uint32_t)getpid());
			shmc__sweeper_run(rt->c, t, &rt->stop);
			uatomic_set(&r->holder_pid, 0);
			uatomic_set(&r->holder_proc, 0);
			/* Hand over our open chunks now, not at close. */
			shmc__log_thread_done(rt->c, t);
		}
	}
	pthread_mutex_unlock(&r->lease);
	return thread_leave(rt);
}

int shmc__roles_start(shmc_cache *c)
{
	struct shmc__role_thread *rt = shmc__zalloc(sizeof(*rt));
	if (!rt)
		return shmc__fail(c, SHMC_ENOMEM, "role thread context");
	void *hdr = mmap(NULL, SHMC__HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (hdr == MAP_FAILED) {
		shmc__free(rt);
		return shmc__fail(c, -errno, "mapping the header for the role thread: %s",
				  strerror(errno));
	}
	pthread_mutex_init(&rt->mu, NULL);
	rt->hdr = hdr;
	rt->c = c;
	int rc = pthread_create(&rt->thread, NULL, role_thread_main, rt);
	if (rc) {
		context_free(rt);
		return shmc__fail(c, -rc, "starting the role thread: %s", strerror(rc));
	}
	c->roles = rt;
	return 0;
}

void shmc__roles_stop(shmc_cache *c)
{
	struct shmc__role_thread *rt = c->roles;
	if (!rt)
		return;
	c->roles = NULL;
	pthread_mutex_lock(&rt->mu);
	__atomic_store_n(&rt->stop, true, __ATOMIC_RELEASE);
	bool holding = rt->holding;
	rt->detached = !holding;
	pthread_mutex_unlock(&rt->mu);
	if (!holding) {
		pthread_detach(rt->thread);
		return;
	}
	shmc__sweeper_wake(c);
	pthread_join(rt->thread, NULL);
	context_free(rt);
}

void shmc__roles_forget(shmc_cache *c)
{
	/* A copy of the parent's context; its mutex may have been held by a
	 * thread that does not exist here, so it is not touched. */
	if (c->roles)
		munmap(c->roles->hdr, SHMC__HEADER_BYTES);
	shmc__free(c->roles);
	c->roles = NULL;
}
