/*
 * conv2d_bf16.c - the bf16 micro-kernel of the CPU convolutions: AVX512_BF16's vdpbf16ps.
 *
 * vdpbf16ps zmm takes 32 bf16 values from each source, multiplies them in pairs and adds each
 * pair's two products to one of 16 fp32 lanes: acc[j] += a[2j] * b[2j] + a[2j + 1] * b[2j + 1].
 * One instruction does 32 multiply-adds where an fp32 FMA does 16, and on this project's AMD EPYC
 * both issue two per cycle (a loop of independent vdpbf16ps measures 445 GFLOP/s on one core,
 * against 225 for vfmadd231ps).
 *
 * So K is consumed two at a time: the weights are packed as B[k / 2][32 output channels][2],
 * and one 32-bit broadcast of A[r][k .. k + 1] (a pair of bf16 from the row) meets, in every
 * lane j, the pair B[k][j], B[k + 1][j]. The tile is the fp32 kernel's 12 x 32: 24 zmm
 * accumulators, 2 for B, one broadcast. Products of bf16 values are exact in fp32; the sums
 * are fp32, so the only rounding beyond fp32's is that of the inputs and weights to bf16
 * (8 significant bits: a relative error of at most 2^-9 each).
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "conv2d_micro.h"
#include "layers_fast.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* B is streamed from L2 (the micro-tile's rows stay in L1 while the panels pass); the hardware
 * prefetcher alone left the loads of B waiting (the most samples in the loop, perf annotate).
 * 12 pairs of K (24 rows of B, 1.5 KB) ahead: 0-7% faster on tool_convbench's layers (the best
 * of six interleaved runs; 8 and 16 ahead did less). */
enum { MR = 12, PF_AHEAD = 24 };

__attribute__((target("avx512f,avx512bf16"))) static void micro_bf16(int kc, const uint16_t *const *rows,
                                                                      const uint16_t *B, float *C, size_t ldc,
                                                                      const epilogue *e)
{
    __m512 acc[MR][2];
    const uint16_t *a[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) a[r] = rows[r];
    if (e->res) /* added after the K loop: fetched during it (as in conv2d_fast.c's micro_avx512) */
        for (int r = 0; r < MR; r++) {
            _mm_prefetch((const char *)(e->res + r * e->ldr), _MM_HINT_T0);
            _mm_prefetch((const char *)(e->res + r * e->ldr + 16), _MM_HINT_T0);
        }
    if (e->first) {
        const __m512 b0 = _mm512_loadu_ps(e->bias), b1 = _mm512_loadu_ps(e->bias + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) acc[r][0] = b0, acc[r][1] = b1;
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            acc[r][0] = _mm512_loadu_ps(C + r * ldc);
            acc[r][1] = _mm512_loadu_ps(C + r * ldc + 16);
        }
    }
    for (int k = 0; k < kc; k += 2) {
        _mm_prefetch((const char *)(B + (k + PF_AHEAD) * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(B + (k + PF_AHEAD) * NR + 32), _MM_HINT_T0);
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(B + k * NR));
        const __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(B + k * NR + 32));
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, a[r] + k, sizeof pair);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    if (e->res) {
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(e->res + r * e->ldr));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(e->res + r * e->ldr + 16));
        }
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(C + r * ldc, e->relu ? _mm512_max_ps(acc[r][0], zero) : acc[r][0]);
        _mm512_storeu_ps(C + r * ldc + 16, e->relu ? _mm512_max_ps(acc[r][1], zero) : acc[r][1]);
    }
}

__attribute__((target("avx512f,avx512bf16"))) static void round_row_avx512(const float *src, int n, uint16_t *dst)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = bf16_of(src[i]);
    if (n & 1) dst[n] = 0;
}

static int have_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

micro_bf16_fn conv2d_bf16_micro(void) { return have_bf16() ? micro_bf16 : NULL; }

void bf16_round_row(const float *src, int n, uint16_t *dst)
{
    static int fast = -1;
    if (fast < 0) fast = have_bf16();
    if (fast) {
        round_row_avx512(src, n, dst);
        return;
    }
    for (int i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
    if (n & 1) dst[n] = 0;
}
#else
micro_bf16_fn conv2d_bf16_micro(void) { return NULL; }

void bf16_round_row(const float *src, int n, uint16_t *dst)
{
    for (int i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
    if (n & 1) dst[n] = 0;
}
#endif

/* ------------------------------------------------------------------ the peak */

static double thread_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 24 independent chains: enough to cover the latency on two pipes. Values stay finite. */
__attribute__((target("avx512f"))) static double peak_fma(long iters)
{
    __m512 acc[24];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    const double t0 = thread_seconds();
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    const double t = thread_seconds() - t0;
    volatile float sink = 0;
    for (int i = 0; i < 24; i++) sink += _mm512_reduce_add_ps(acc[i]);
    (void)sink;
    return 24.0 * 16 * 2 * (double)iters / t / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) static double peak_bf16(long iters)
{
    __m512 acc[24];
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    const double t0 = thread_seconds();
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    const double t = thread_seconds() - t0;
    volatile float sink = 0;
    for (int i = 0; i < 24; i++) sink += _mm512_reduce_add_ps(acc[i]);
    (void)sink;
    return 24.0 * 32 * 2 * (double)iters / t / 1e9;
}

double conv2d_peak_gflops(int bf16)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || (bf16 && !have_bf16())) return 0.0;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) { /* ~10 ms each at ~3 GHz; the best of three */
        const double g = bf16 ? peak_bf16(400000) : peak_fma(400000);
        if (g > best) best = g;
    }
    return best;
}
#else
double conv2d_peak_gflops(int bf16)
{
    (void)bf16;
    return 0.0;
}
#endif
