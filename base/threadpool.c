/* threadpool.c - see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
unsigned dl_ftz_enable(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
void dl_ftz_restore(unsigned previous) { _mm_setcsr(previous); }
#elif defined(__aarch64__)
unsigned dl_ftz_enable(void)
{
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr | (1ul << 24))); /* FZ */
    return (unsigned)fpcr;
}
void dl_ftz_restore(unsigned previous) { __asm__ volatile("msr fpcr, %0" ::"r"((unsigned long)previous)); }
#else
unsigned dl_ftz_enable(void) { return 0; }
void dl_ftz_restore(unsigned previous) { (void)previous; }
#endif

struct dl_pool {
    int nthreads;            /* workers + the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    /* the job being run; generation counts jobs so a worker never runs one twice */
    dl_task_fn fn;
    void *ctx;
    int ntasks;
    atomic_int next;         /* next task to hand out */
    int busy;                /* workers still inside the current job */
    unsigned generation;
    int quit;
};

typedef struct worker_arg {
    dl_pool *pool;
    int index;
} worker_arg;

static void run_tasks(dl_pool *p, int thread)
{
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= p->ntasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *argp)
{
    worker_arg arg = *(worker_arg *)argp;
    free(argp);
    dl_pool *p = arg.pool;
    dl_ftz_enable();
    unsigned seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_tasks(p, arg.index);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

dl_pool *dl_pool_create(int threads)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    dl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) {
            a->pool = p;
            a->index = i;
        }
        if (!a || pthread_create(&p->workers[i], NULL, worker_main, a) != 0) {
            free(a);
            p->nthreads = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void dl_pool_free(dl_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int dl_pool_threads(const dl_pool *p) { return p ? p->nthreads : 1; }

void dl_pool_run(dl_pool *p, int ntasks, dl_task_fn fn, void *ctx)
{
    if (ntasks <= 0) return;
    if (!p || p->nthreads == 1 || ntasks == 1) {
        unsigned old = dl_ftz_enable();
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        dl_ftz_restore(old);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    p->busy = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    unsigned old = dl_ftz_enable();
    run_tasks(p, 0);
    dl_ftz_restore(old);

    pthread_mutex_lock(&p->lock);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
