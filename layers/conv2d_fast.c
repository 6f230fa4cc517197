/*
 * conv2d_fast.c - the CPU convolution used by default. Same arithmetic as conv2d.c (the
 * reference), arranged for speed:
 *
 *  - Activations are NHWC: a pixel's channels are contiguous, so a 1x1 convolution reads rows
 *    of the input directly and a 3x3 tap is the same rows shifted by (dy, dx).
 *  - The product is out[P x OC] = A[P x K] * B[K x OC] with K ordered tap-major (k = tap * C + c).
 *    B, the weights, is packed once at load into panels of NR = 32 output channels:
 *    panel[k][32], zero-padded, so the micro-kernel streams it with aligned loads.
 *  - Each task takes a block of MC output pixels, packs A for one tap (KC channels at a time)
 *    into micro-panels of MR pixels (A[k][MR]: the MR values the micro-kernel broadcasts), and
 *    multiplies it with every B panel. A tap whose shifted pixels all fall in the padding packs
 *    to zeros and is skipped: exact, and it removes ~12% of DeepLabV3's work (the ASPP taps at
 *    dilation 24 and 36 on a 65x65 map are mostly outside it).
 *  - The micro-kernel keeps an MR x 32 tile of outputs in registers: 12 x 32 with AVX-512
 *    (24 zmm accumulators), 6 x 32 as two 6 x 16 halves with AVX2+FMA, 4 x 32 in portable C.
 *    The instruction set is chosen at run time, so one binary runs everywhere.
 *  - The output tile starts as bias (+ residual) and accumulates every K block; ReLU last.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "layers_fast.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DL_X86 1
#endif

enum {
    NR = 32,  /* output channels per weight panel and per micro-tile */
    MC = 192, /* output pixels per task */
    KC = 256, /* input channels per packed A block (within one tap) */
    MR_MAX = 12
};

/* ------------------------------------------------------------------ weight packing */

dl_status conv2d_pack(const conv2d *L, conv2d_packed *P)
{
    memset(P, 0, sizeof *P);
    P->C = L->C;
    P->OC = L->OC;
    P->KH = L->KH;
    P->KW = L->KW;
    P->p = L->p;
    P->relu = L->relu;
    P->K = L->KH * L->KW * L->C;
    P->panels = (L->OC + NR - 1) / NR;
    const size_t wn = (size_t)P->panels * P->K * NR;
    P->w = dl_alloc_aligned(wn * sizeof(float), "packed weights");
    P->bias = dl_alloc_aligned((size_t)P->panels * NR * sizeof(float), "packed bias");
    if (!P->w || !P->bias) {
        conv2d_packed_free(P);
        return DL_ENOMEM;
    }
    memset(P->w, 0, wn * sizeof(float));
    memset(P->bias, 0, (size_t)P->panels * NR * sizeof(float));
    /* W[oc][c][ky][kx] -> panel[oc / 32][k = (ky * KW + kx) * C + c][oc % 32] */
    for (int oc = 0; oc < L->OC; oc++) {
        float *panel = P->w + (size_t)(oc / NR) * P->K * NR + oc % NR;
        for (int c = 0; c < L->C; c++)
            for (int ky = 0; ky < L->KH; ky++)
                for (int kx = 0; kx < L->KW; kx++) {
                    const size_t k = (size_t)(ky * L->KW + kx) * L->C + c;
                    panel[k * NR] = L->weight[(((size_t)oc * L->C + c) * L->KH + ky) * L->KW + kx];
                }
        P->bias[oc] = L->bias ? L->bias[oc] : 0.0f;
    }
    return DL_OK;
}

void conv2d_packed_free(conv2d_packed *P)
{
    free(P->w);
    free(P->bias);
    P->w = P->bias = NULL;
}

/* ------------------------------------------------------------------ micro-kernels */

/* C[mr x 32] (rows ldc apart) += A[kc][MR] * B[kc][32]. Full tiles only: callers pad. */
typedef void (*micro_fn)(int kc, const float *A, const float *B, float *C, size_t ldc);

enum { MR_GENERIC = 4 };
static void micro_generic(int kc, const float *A, const float *B, float *C, size_t ldc)
{
    float acc[MR_GENERIC][NR];
    for (int r = 0; r < MR_GENERIC; r++) memcpy(acc[r], C + r * ldc, sizeof acc[r]);
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR_GENERIC; r++) {
            const float a = A[k * MR_GENERIC + r];
            for (int j = 0; j < NR; j++) acc[r][j] += a * B[k * NR + j];
        }
    for (int r = 0; r < MR_GENERIC; r++) memcpy(C + r * ldc, acc[r], sizeof acc[r]);
}

#ifdef DL_X86
enum { MR_AVX2 = 6, MR_AVX512 = 12 };

/* The row loops below are unrolled by pragma: GCC at -O2 otherwise keeps the accumulator array
 * in memory, a load and a store around every FMA (measured: 47 instead of ~190 GFLOP/s). */

/* Two passes of a 6 x 16 tile (12 ymm accumulators + 2 for B + 1 broadcast = 15 of 16). */
__attribute__((target("avx2,fma"))) static void micro_avx2(int kc, const float *A, const float *B,
                                                            float *C, size_t ldc)
{
#pragma GCC unroll 2
    for (int half = 0; half < 2; half++) {
        const float *b = B + 16 * half;
        float *c = C + 16 * half;
        __m256 acc[MR_AVX2][2];
#pragma GCC unroll 6
        for (int r = 0; r < MR_AVX2; r++) {
            acc[r][0] = _mm256_loadu_ps(c + r * ldc);
            acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
        }
        for (int k = 0; k < kc; k++) {
            const __m256 b0 = _mm256_load_ps(b + k * NR), b1 = _mm256_load_ps(b + k * NR + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR_AVX2; r++) {
                const __m256 a = _mm256_broadcast_ss(A + k * MR_AVX2 + r);
                acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR_AVX2; r++) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        }
    }
}

/* A 12 x 32 tile: 24 zmm accumulators, 2 for B, broadcasts folded into the FMAs. */
__attribute__((target("avx512f"))) static void micro_avx512(int kc, const float *A, const float *B,
                                                             float *C, size_t ldc)
{
    __m512 acc[MR_AVX512][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR_AVX512; r++) {
        acc[r][0] = _mm512_loadu_ps(C + r * ldc);
        acc[r][1] = _mm512_loadu_ps(C + r * ldc + 16);
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(B + k * NR), b1 = _mm512_load_ps(B + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) {
            const __m512 a = _mm512_set1_ps(A[k * MR_AVX512 + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR_AVX512; r++) {
        _mm512_storeu_ps(C + r * ldc, acc[r][0]);
        _mm512_storeu_ps(C + r * ldc + 16, acc[r][1]);
    }
}
#endif

typedef struct isa {
    const char *name;
    int mr;
    micro_fn micro;
} isa;

static isa pick_isa(void)
{
    const char *force = getenv("DEEPLAB_ISA"); /* for tests and benchmarks: generic|avx2|avx512 */
#ifdef DL_X86
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f");
    const int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (has512 && (!force || !strcmp(force, "avx512"))) return (isa){"avx512", MR_AVX512, micro_avx512};
    if (has2 && (!force || !strcmp(force, "avx2") || !strcmp(force, "avx512"))) return (isa){"avx2", MR_AVX2, micro_avx2};
#endif
    (void)force;
    return (isa){"generic", MR_GENERIC, micro_generic};
}

static isa the_isa;

const char *conv2d_fast_isa(void)
{
    if (!the_isa.micro) the_isa = pick_isa();
    return the_isa.name;
}

int conv2d_fast_set_isa(const char *name)
{
    isa want = {"generic", MR_GENERIC, micro_generic};
#ifdef DL_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f")) want = (isa){"avx512", MR_AVX512, micro_avx512};
    else if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = (isa){"avx2", MR_AVX2, micro_avx2};
    else if (strcmp(name, "generic")) return -1;
#else
    if (strcmp(name, "generic")) return -1;
#endif
    the_isa = want;
    return 0;
}

/* Channels per packed A block. Small C (the 3-channel stem): every tap in one block, as the
 * reference does. Otherwise one tap at a time, KC channels per block, so that padding-only taps
 * can be skipped. */
static int kblock_of(const conv2d_packed *P) { return P->C < 64 ? P->K : (P->C < KC ? P->C : KC); }

size_t conv2d_fast_scratch_floats(const conv2d_packed *P)
{
    /* the packed A block, rounded up to whole micro-panels, then a 64-byte aligned padded tile */
    return (size_t)(MC + MR_MAX) * kblock_of(P) + (size_t)MR_MAX * NR + 16;
}

/* ------------------------------------------------------------------ the convolution */

typedef struct fast_job {
    const conv2d_packed *P;
    nhwc in, out;
    const nhwc *res;
    int OH, OW, P_total, tiles_p, tiles_oc, panels_per_task;
    int kblock; /* channels per A block; == K when all taps are packed together */
    float *scratch;
    size_t scratch_floats; /* per thread */
    isa isa;
} fast_job;

/* Input row (all C channels) of output pixel p shifted by tap (ky, kx); NULL in the padding. */
static const float *tap_row(const fast_job *J, int p, int ky, int kx)
{
    const conv2d_packed *P = J->P;
    const int n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
    const int iy = q / J->OW * P->p.stride - P->p.pad + ky * P->p.dilation;
    const int ix = q % J->OW * P->p.stride - P->p.pad + kx * P->p.dilation;
    if (iy < 0 || iy >= J->in.h || ix < 0 || ix >= J->in.w) return NULL;
    return J->in.data + n * J->in.ldn + ((size_t)iy * J->in.w + ix) * J->in.ldp;
}

/* Packs A for pixels [p0, p0 + mc) and K range [k0, k0 + kb) into micro-panels of mr rows:
 * Ap[panel][k][mr]. Returns 0 if every value is padding (the block can be skipped). */
static int pack_a(const fast_job *J, int p0, int mc, int k0, int kb, int mr, float *Ap)
{
    const int C = J->P->C;
    const int panels = (mc + mr - 1) / mr;
    int any = 0;
    memset(Ap, 0, sizeof(float) * (size_t)panels * kb * mr);
    for (int i = 0; i < mc; i++) {
        float *dst = Ap + (size_t)(i / mr) * kb * mr + i % mr;
        for (int k = 0; k < kb;) {
            /* the run of channels of one tap starting at k0 + k */
            const int kk = k0 + k, tap = kk / C, c = kk % C;
            const int run = C - c < kb - k ? C - c : kb - k;
            const float *src = tap_row(J, p0 + i, tap / J->P->KW, tap % J->P->KW);
            if (src) {
                any = 1;
                for (int j = 0; j < run; j++) dst[(size_t)(k + j) * mr] = src[c + j];
            }
            k += run;
        }
    }
    return any;
}

static void fast_task(void *ctx, int task, int thread)
{
    const fast_job *J = ctx;
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr;
    const int tp = task / J->tiles_oc, to = task % J->tiles_oc;
    const int p0 = tp * MC, mc = p0 + MC < J->P_total ? MC : J->P_total - p0;
    const int panel0 = to * J->panels_per_task;
    const int panel1 = panel0 + J->panels_per_task < P->panels ? panel0 + J->panels_per_task : P->panels;
    const int oc0 = panel0 * NR, oc1 = panel1 * NR < P->OC ? panel1 * NR : P->OC;
    float *Ap = J->scratch + (size_t)thread * J->scratch_floats;
    float *tile = Ap + (size_t)(MC + MR_MAX) * J->kblock;
    tile = (float *)(((uintptr_t)tile + 63) & ~(uintptr_t)63);

    /* the output rows of this task start as bias (+ residual) */
    for (int i = 0; i < mc; i++) {
        const int p = p0 + i, n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
        float *o = J->out.data + n * J->out.ldn + (size_t)q * J->out.ldp;
        const float *r = J->res ? J->res->data + n * J->res->ldn + (size_t)q * J->res->ldp : NULL;
        for (int oc = oc0; oc < oc1; oc++) o[oc] = P->bias[oc] + (r ? r[oc] : 0.0f);
    }

    for (int k0 = 0; k0 < P->K; k0 += J->kblock) {
        const int kb = k0 + J->kblock < P->K ? J->kblock : P->K - k0;
        if (!pack_a(J, p0, mc, k0, kb, mr, Ap)) continue; /* all padding: contributes nothing */
        for (int panel = panel0; panel < panel1; panel++) {
            const float *B = P->w + ((size_t)panel * P->K + k0) * NR;
            const int ocs = panel * NR, ncols = ocs + NR <= P->OC ? NR : P->OC - ocs;
            for (int i = 0; i < mc; i += mr) {
                const float *A = Ap + (size_t)(i / mr) * kb * mr;
                const int p = p0 + i, rows = i + mr <= mc ? mr : mc - i;
                /* Rows of a tile are consecutive pixels: one stride apart only within one image
                 * and one contiguous output; otherwise go through the padded tile. */
                const int n = p / (J->OH * J->OW), n_last = (p + rows - 1) / (J->OH * J->OW);
                float *o = J->out.data + n * J->out.ldn + (size_t)(p % (J->OH * J->OW)) * J->out.ldp + ocs;
                if (rows == mr && ncols == NR && n == n_last) {
                    J->isa.micro(kb, A, B, o, J->out.ldp);
                    continue;
                }
                for (int r = 0; r < mr; r++) {
                    float *src = NULL;
                    if (r < rows) {
                        const int pr = p + r, nr = pr / (J->OH * J->OW);
                        src = J->out.data + nr * J->out.ldn + (size_t)(pr % (J->OH * J->OW)) * J->out.ldp + ocs;
                    }
                    for (int j = 0; j < NR; j++) tile[r * NR + j] = src && j < ncols ? src[j] : 0.0f;
                }
                J->isa.micro(kb, A, B, tile, NR);
                for (int r = 0; r < rows; r++) {
                    const int pr = p + r, nr = pr / (J->OH * J->OW);
                    float *dst = J->out.data + nr * J->out.ldn + (size_t)(pr % (J->OH * J->OW)) * J->out.ldp + ocs;
                    memcpy(dst, tile + r * NR, sizeof(float) * (size_t)ncols);
                }
            }
        }
    }

    if (P->relu)
        for (int i = 0; i < mc; i++) {
            const int p = p0 + i, n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
            float *o = J->out.data + n * J->out.ldn + (size_t)q * J->out.ldp;
            for (int oc = oc0; oc < oc1; oc++) o[oc] = o[oc] > 0.0f ? o[oc] : 0.0f;
        }
}

void conv2d_fast(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                 dl_pool *pool)
{
    if (!the_isa.micro) the_isa = pick_isa();
    fast_job J = {.P = P, .in = in, .out = out, .res = residual, .scratch = scratch, .isa = the_isa};
    J.OH = out.h;
    J.OW = out.w;
    J.P_total = in.n * out.h * out.w;
    J.tiles_p = (J.P_total + MC - 1) / MC;
    J.kblock = kblock_of(P);
    J.scratch_floats = conv2d_fast_scratch_floats(P);
    /* Few pixel blocks (small maps, the 1x1 pooled map): split the output channels too, so
     * every thread gets work. */
    const int want = 4 * dl_pool_threads(pool);
    J.tiles_oc = J.tiles_p >= want ? 1 : (want + J.tiles_p - 1) / J.tiles_p;
    if (J.tiles_oc > P->panels) J.tiles_oc = P->panels;
    J.panels_per_task = (P->panels + J.tiles_oc - 1) / J.tiles_oc;
    J.tiles_oc = (P->panels + J.panels_per_task - 1) / J.panels_per_task;
    dl_pool_run(pool, J.tiles_p * J.tiles_oc, fast_task, &J);
}
