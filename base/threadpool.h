/*
 * threadpool.h - a fixed set of worker threads that run "task i of n" loops.
 *
 *     dl_pool *pool = dl_pool_create(0);            // one thread per online core
 *     dl_pool_run(pool, ntasks, fn, ctx);           // fn(ctx, task, thread) for task in [0, ntasks)
 *
 * The calling thread works too; dl_pool_run returns when every task is done. Tasks are handed
 * out one at a time from a shared counter, so uneven tasks balance themselves. Every thread that
 * runs tasks has subnormal floats flushed to zero (random-weight networks produce them, and they
 * make x86 arithmetic many times slower). A NULL pool runs everything on the calling thread.
 */
#ifndef DL_THREADPOOL_H
#define DL_THREADPOOL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dl_pool dl_pool;
typedef void (*dl_task_fn)(void *ctx, int task, int thread);

dl_pool *dl_pool_create(int threads); /* threads <= 0: one per online core; NULL if out of memory */
void dl_pool_free(dl_pool *pool);
int dl_pool_threads(const dl_pool *pool); /* 1 for NULL */
/* Whether the threads spin briefly between jobs before sleeping (the default where the pool has
 * no more threads than there are cores, unless DEEPLAB_SPIN=0): on for the network's pool, whose
 * ~190 jobs a forward pass wait on each other; off for a pool that runs beside it. */
void dl_pool_set_spin(dl_pool *pool, int spin);
void dl_pool_run(dl_pool *pool, int ntasks, dl_task_fn fn, void *ctx);

/* Flush-to-zero / denormals-are-zero on the calling thread; returns the previous state for
 * dl_ftz_restore. No-op where the CPU has no such mode. */
unsigned dl_ftz_enable(void);
void dl_ftz_restore(unsigned previous);

#ifdef __cplusplus
}
#endif
#endif
