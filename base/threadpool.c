/* threadpool.c - see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Between two jobs a thread first spins for this long, then sleeps on the condition variable.
 * A forward pass is ~190 jobs (every layer, Winograd's three phases), often a millisecond apart:
 * on this project's VM a sleeping thread took tens of microseconds to wake, per job, on the
 * critical path (the helper starting late, the caller waking after it). Not done when the pool
 * has more threads than the machine has cores, where a spinning thread would hold one back, nor
 * with DEEPLAB_SPIN=0 (a machine shared with other busy processes). deeplab bench, bf16, two
 * threads, four interleaved pairs: median 668-681 ms spinning, 683-754 sleeping. */
enum { SPIN_NS = 100000 };

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins while *v == value, for up to SPIN_NS; returns whether it changed. */
static int spin_while_uint(atomic_uint *v, unsigned value)
{
    const long long end = now_ns() + SPIN_NS;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (atomic_load_explicit(v, memory_order_acquire) != value) return 1;
            cpu_relax();
        }
        if (now_ns() > end) return 0;
    }
}

static int spin_while_positive(atomic_int *v)
{
    const long long end = now_ns() + SPIN_NS;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (atomic_load_explicit(v, memory_order_acquire) <= 0) return 1;
            cpu_relax();
        }
        if (now_ns() > end) return 0;
    }
}

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
    atomic_int busy;         /* workers still inside the current job */
    atomic_uint generation;  /* written under the lock; read by spinning threads without it */
    int quit;
    atomic_int spin;         /* threads spin between jobs ... */
    int spin_allowed;        /* ... which they may (no more threads than cores, no DEEPLAB_SPIN=0) */
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
    for (;;) {
        if (!atomic_load_explicit(&p->spin, memory_order_relaxed) || !spin_while_uint(&p->generation, seen)) {
            pthread_mutex_lock(&p->lock);
            while (!p->quit && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->lock);
            const int quit = p->quit;
            pthread_mutex_unlock(&p->lock);
            if (quit) break;
        }
        seen = atomic_load(&p->generation);
        run_tasks(p, arg.index);
        if (atomic_fetch_sub(&p->busy, 1) == 1) { /* the last one out wakes the caller if it sleeps */
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
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
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *spin = getenv("DEEPLAB_SPIN"); /* DEEPLAB_SPIN=0: always sleep between jobs */
    p->spin_allowed = cores > 0 && threads <= cores && !(spin && !strcmp(spin, "0"));
    atomic_store(&p->spin, p->spin_allowed);
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

void dl_pool_set_spin(dl_pool *p, int spin)
{
    if (p) atomic_store(&p->spin, spin && p->spin_allowed);
}

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
    atomic_store(&p->busy, p->nthreads - 1);
    atomic_fetch_add(&p->generation, 1); /* after the job's fields: a spinning worker reads them next */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    unsigned old = dl_ftz_enable();
    run_tasks(p, 0);
    dl_ftz_restore(old);

    if (atomic_load_explicit(&p->spin, memory_order_relaxed) && spin_while_positive(&p->busy)) return;
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
