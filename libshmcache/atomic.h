/*
 * atomic.h - liburcu's atomics and barriers for words in the segment, and
 * their ThreadSanitizer build.
 *
 * liburcu 0.13 implements uatomic_* and cmm_* with inline assembly, which
 * TSan cannot see: every publication through them would look like a race.
 * Under TSan only, the same names map onto compiler builtins with at least
 * the ordering liburcu documents, so the TSan build checks the same code.
 */
#ifndef SHMC_ATOMIC_H
#define SHMC_ATOMIC_H

#include <urcu/arch.h>
#include <urcu/compiler.h>
#include <urcu/system.h>
#include <urcu/uatomic.h>

/* Happens-before edges that TSan cannot see by itself (orderings made inside
 * uninstrumented code, such as liburcu's queues and grace periods): a
 * TSAN_RELEASE(addr) happens before every later TSAN_ACQUIRE(addr). */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#define TSAN_RELEASE(addr) __tsan_release(addr)
#else
#define TSAN_ACQUIRE(addr) ((void)(addr))
#define TSAN_RELEASE(addr) ((void)(addr))
#endif

#if defined(__SANITIZE_THREAD__)
#undef uatomic_read
#undef uatomic_set
#undef uatomic_xchg
#undef uatomic_cmpxchg
#undef uatomic_add_return
#undef uatomic_add
#undef cmm_smp_mb
#undef cmm_smp_rmb
#undef cmm_smp_wmb
#undef CMM_LOAD_SHARED
#undef CMM_STORE_SHARED
#define uatomic_read(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define uatomic_set(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define uatomic_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define uatomic_cmpxchg(p, old, new)                                             \
	__extension__({                                                          \
		__typeof__(*(p)) expected_ = (old);                              \
		__atomic_compare_exchange_n((p), &expected_, (new), 0,           \
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
		expected_;                                                       \
	})
#define uatomic_add_return(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define uatomic_add(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST))
/* TSan does not model fences (GCC rejects them under -fsanitize=thread);
 * every shared access above is already acquire/release or stronger. */
#define cmm_smp_mb() cmm_barrier()
#define cmm_smp_rmb() cmm_barrier()
#define cmm_smp_wmb() cmm_barrier()
#define CMM_LOAD_SHARED(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define CMM_STORE_SHARED(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#endif

#endif
