/*
 * testutil.h - what the C tests share: a seeded generator, poisoned buffers, and a comparison
 * that prints the worst element and counts failures; for C and for C++ (the tests with kernels).
 * Tolerance: |got - ref| <= 1e-5 * scale + 1e-4 * |ref|, scale = the largest |ref|.
 */
#ifndef DL_TESTUTIL_H
#define DL_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static inline float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

static inline float *randn(size_t n)
{
    float *p = (float *)malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static inline float *poisoned(size_t n)
{
    float *p = (float *)malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* Compares got with ref (n floats): |got - ref| <= abs_tol * scale + rel_tol * |ref| everywhere,
 * scale = the largest |ref| (NaN, e.g. an unwritten poisoned element, fails). Prints the worst
 * element; counts a failure. */
static inline void check_tol(const char *what, const float *got, const double *ref, size_t n, double abs_tol, double rel_tol)
{
    double scale = 0, worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        if (!(err <= abs_tol * scale + rel_tol * fabs(ref[i]))) bad++;
        if (!(err <= worst)) {
            worst = err;
            wi = i;
        }
    }
    printf("%s %-64s worst |diff| %.3g at %zu (got %.7g, ref %.7g), scale %.3g\n", bad ? "FAIL" : "ok  ",
           what, worst, wi, n ? got[wi] : 0.0, n ? ref[wi] : 0.0, scale);
    if (bad) failures++;
}

/* The tolerance of the file's header comment. */
static inline void check(const char *what, const float *got, const double *ref, size_t n)
{
    check_tol(what, got, ref, n, 1e-5, 1e-4);
}

static inline int finish(const char *what)
{
    if (failures) {
        printf("%d %s check(s) FAILED\n", failures, what);
        return 1;
    }
    printf("all %s checks passed\n", what);
    return 0;
}

#endif
