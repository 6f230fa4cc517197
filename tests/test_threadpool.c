/*
 * test_threadpool.c - base/threadpool.c: every task of every job runs exactly once, on a thread
 * index inside the pool, and dl_pool_run returns only when all of them are done; through the
 * spinning hand-over (jobs back to back), the sleeping one (a pause longer than the spin between
 * jobs), spinning turned off, one-task jobs, a pool with more threads than cores (no spinning),
 * and a pool freed while its workers spin or sleep.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "threadpool.h"

enum { MAX_TASKS = 300 };

typedef struct job {
    atomic_int ran[MAX_TASKS];
    atomic_int bad_thread;
    int threads;
} job;

static void task(void *ctx, int t, int thread)
{
    job *J = ctx;
    if (thread < 0 || thread >= J->threads) atomic_fetch_add(&J->bad_thread, 1);
    if (t % 7 == 0) /* a little uneven work */
        for (volatile int i = 0; i < 2000; i++) {}
    atomic_fetch_add(&J->ran[t], 1);
}

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* jobs jobs on a pool of `threads`, pausing `pause` microseconds every `every` jobs */
static void run(const char *what, int threads, int spin, int jobs, int every, long pause)
{
    dl_pool *pool = dl_pool_create(threads);
    dl_pool_set_spin(pool, spin);
    job *J = calloc(1, sizeof *J);
    if (!pool || !J) {
        printf("FAIL %s: out of memory\n", what);
        failures++;
        return;
    }
    J->threads = dl_pool_threads(pool);
    long wrong = 0, unfinished = 0;
    for (int j = 0; j < jobs; j++) {
        const int n = 1 + (int)((unsigned)(j * 2654435761u) % MAX_TASKS);
        for (int t = 0; t < MAX_TASKS; t++) atomic_store(&J->ran[t], 0);
        dl_pool_run(pool, n, task, J);
        /* right after the return: each of the n tasks exactly once, none beyond */
        for (int t = 0; t < MAX_TASKS; t++) {
            const int r = atomic_load(&J->ran[t]);
            if (r == 0 && t < n) unfinished++;
            else if (r != (t < n)) wrong++;
        }
        if (every > 0 && j % every == every - 1) pause_us(pause);
    }
    const int bad = atomic_load(&J->bad_thread);
    const int ok = wrong == 0 && unfinished == 0 && bad == 0;
    printf("%s %-58s %d jobs: %ld tasks run twice or beyond n, %ld not run by the return, %d on a bad thread index\n",
           ok ? "ok  " : "FAIL", what, jobs, wrong, unfinished, bad);
    if (!ok) failures++;
    dl_pool_free(pool);
    free(J);
}

int main(void)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    run("2 threads, back to back (the spinning hand-over)", 2, 1, 20000, 0, 0);
    run("2 threads, a 300 us pause every 3 jobs (the sleeping one)", 2, 1, 3000, 3, 300);
    run("2 threads, pauses around the spin's length", 2, 1, 3000, 1, 90);
    run("2 threads, spinning off (dl_pool_set_spin), back to back", 2, 0, 5000, 0, 0);
    run("one thread", 1, 1, 2000, 0, 0);
    char what[80];
    snprintf(what, sizeof what, "%ld threads, more than the %ld cores (no spinning)", 2 * cores + 1, cores);
    run(what, (int)(2 * cores + 1), 1, 2000, 50, 200);
    /* freed right after a job (workers spinning) and after a pause (workers asleep) */
    for (int i = 0; i < 50; i++) {
        dl_pool *pool = dl_pool_create(3);
        job *J = calloc(1, sizeof *J);
        J->threads = 3;
        dl_pool_run(pool, 10, task, J);
        if (i % 2) pause_us(300);
        dl_pool_free(pool);
        free(J);
    }
    printf("ok   50 pools freed while their workers spin or sleep\n");
    return finish("thread pool");
}
