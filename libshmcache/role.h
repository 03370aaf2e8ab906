/*
 * role.h - background roles: one thread per process competes for each
 * role's lease in the header; the holder runs the role.
 */
#ifndef SHMC_ROLE_H
#define SHMC_ROLE_H

struct shmc_cache;

/* Start this process's role thread for c (at open, or in a fork child's
 * re-registration). Maps the header page privately so that a waiting
 * thread never depends on the handle. Returns 0 or an error code. */
int shmc__roles_start(struct shmc_cache *c);

/* Stop it (at close): a holder finishes its tick, releases the lease and
 * is joined, so another process takes over at once; a waiter is told to
 * stop and left to exit on its own (it touches nothing of the handle). */
void shmc__roles_stop(struct shmc_cache *c);

/* In a fork child: the parent's role thread does not exist here. */
void shmc__roles_forget(struct shmc_cache *c);

#endif
