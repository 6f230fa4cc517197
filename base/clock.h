/* clock.h - the one clock: monotonic seconds, for timing layers, photos and benchmarks. */
#ifndef DL_CLOCK_H
#define DL_CLOCK_H

#include <time.h>

static inline double dl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
