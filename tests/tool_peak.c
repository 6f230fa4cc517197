/*
 * tool_peak.c - the fp32 FMA peak of one core, the floor bench/RESULTS.md divides by: 24
 * independent AVX-512 FMA chains (enough to cover the FMA latency on two pipes), timed on the
 * thread's CPU clock. Prints GFLOP/s. A development tool, not a test:
 *     build/tests/tool_peak
 */
#include <stdio.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

__attribute__((target("avx512f"))) static double peak_avx512(long iters)
{
    __m512 acc[24];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    const double t0 = cpu_seconds();
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    const double t = cpu_seconds() - t0;
    float sink = 0, lane[16];
    for (int i = 0; i < 24; i++) {
        _mm512_storeu_ps(lane, acc[i]);
        sink += lane[0];
    }
    if (sink == 12345.0f) printf("(%g)\n", sink); /* keeps the chains alive */
    return 24.0 * 16 * 2 * (double)iters / t / 1e9;
}

int main(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        printf("tool_peak: no AVX-512 on this CPU\n");
        return 1;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        const double g = peak_avx512(50 * 1000 * 1000);
        if (g > best) best = g;
    }
    printf("fp32 AVX-512 FMA peak, one core: %.1f GFLOP/s (best of 5)\n", best);
    return 0;
}
#else
int main(void)
{
    printf("tool_peak: x86-64 only\n");
    return 1;
}
#endif
