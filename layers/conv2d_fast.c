/*
 * conv2d_fast.c - the CPU convolution used by default. Same arithmetic as conv2d.c (the
 * reference), arranged for speed:
 *
 *  - Activations are NHWC: a pixel's channels are contiguous, so a 1x1 convolution reads rows
 *    of the input directly and a 3x3 tap is the same rows shifted by (dy, dx).
 *  - The product is out[P x OC] = A[P x K] * B[K x OC] with K ordered tap-major (k = tap * C + c).
 *    B, the weights, is packed once at load into panels of NR = 32 output channels:
 *    panel[k][32], zero-padded, so the micro-kernel streams it with aligned loads.
 *  - A is never copied for the big layers ("indirect" GEMM): for each tap, a micro-tile of MR
 *    output pixels gets MR pointers to the input rows it reads, or to a row of zeros where the
 *    shifted pixel falls in the padding. A micro-tile whose MR rows are all padding for a tap
 *    is skipped: exact, and it removes most of the ASPP work at dilations 24 and 36, whose taps
 *    mostly land outside a 65x65 map. Layers with few input channels (the 3-channel stem) pack
 *    plain im2col rows first, every tap in one row, and point at those.
 *  - The micro-kernel keeps an MR x 32 tile of outputs in registers: 12 x 32 with AVX-512
 *    (24 zmm accumulators), 6 x 32 as two 6 x 16 halves with AVX2+FMA, 4 x 32 in portable C.
 *    The instruction set is chosen at run time, so one binary runs everywhere.
 *  - The output tile starts as bias (+ residual), accumulates every K block, and gets its ReLU
 *    last.
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
    NR = 32,     /* output channels per weight panel and per micro-tile */
    MC = 192,    /* output pixels per task */
    KC = 256,    /* input channels per K block (within one tap) */
    MR_MAX = 12,
    SMALL_C = 64 /* below this many input channels, pack im2col rows (all taps in one block) */
};

/* The row that padding pixels point at: KC zeros. */
static const float zeros[KC] __attribute__((aligned(64)));

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

/* C[MR x 32] (rows ldc apart) += A * B[kc][32], where row r of A is rows[r][0 .. kc).
 * Full tiles only: callers pass a padded tile for partial ones. */
typedef void (*micro_fn)(int kc, const float *const *rows, const float *B, float *C, size_t ldc);

enum { MR_GENERIC = 4 };
static void micro_generic(int kc, const float *const *rows, const float *B, float *C, size_t ldc)
{
    float acc[MR_GENERIC][NR];
    for (int r = 0; r < MR_GENERIC; r++) memcpy(acc[r], C + r * ldc, sizeof acc[r]);
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR_GENERIC; r++) {
            const float a = rows[r][k];
            for (int j = 0; j < NR; j++) acc[r][j] += a * B[k * NR + j];
        }
    for (int r = 0; r < MR_GENERIC; r++) memcpy(C + r * ldc, acc[r], sizeof acc[r]);
}

#ifdef DL_X86
enum { MR_AVX2 = 6, MR_AVX512 = 12 };

/* The row loops below are unrolled by pragma: GCC at -O2 otherwise keeps the accumulator array
 * in memory, a load and a store around every FMA (measured: 47 instead of ~150 GFLOP/s).
 * Unrolled, the MR row pointers live in registers and each broadcast is one load
 * (base + k * 4 addressing). */

/* Two passes of a 6 x 16 tile (12 ymm accumulators + 2 for B + 1 broadcast = 15 of 16). */
__attribute__((target("avx2,fma"))) static void micro_avx2(int kc, const float *const *rows,
                                                            const float *B, float *C, size_t ldc)
{
    const float *a[MR_AVX2];
#pragma GCC unroll 6
    for (int r = 0; r < MR_AVX2; r++) a[r] = rows[r];
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
                const __m256 x = _mm256_broadcast_ss(a[r] + k);
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR_AVX2; r++) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        }
    }
}

/* A 12 x 32 tile: 24 zmm accumulators, 2 for B, one broadcast register. */
__attribute__((target("avx512f"))) static void micro_avx512(int kc, const float *const *rows,
                                                             const float *B, float *C, size_t ldc)
{
    __m512 acc[MR_AVX512][2];
    const float *a[MR_AVX512];
#pragma GCC unroll 12
    for (int r = 0; r < MR_AVX512; r++) {
        a[r] = rows[r];
        acc[r][0] = _mm512_loadu_ps(C + r * ldc);
        acc[r][1] = _mm512_loadu_ps(C + r * ldc + 16);
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(B + k * NR), b1 = _mm512_load_ps(B + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) {
            const __m512 x = _mm512_set1_ps(a[r][k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
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

static isa isa_named(const char *name)
{
#ifdef DL_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f")) return (isa){"avx512", MR_AVX512, micro_avx512};
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (isa){"avx2", MR_AVX2, micro_avx2};
#endif
    if (!strcmp(name, "generic")) return (isa){"generic", MR_GENERIC, micro_generic};
    return (isa){NULL, 0, NULL};
}

/* The best this CPU has, unless DEEPLAB_ISA (generic|avx2|avx512) asks for a lesser one. */
static isa pick_isa(void)
{
    const char *order[] = {"avx512", "avx2", "generic"}, *force = getenv("DEEPLAB_ISA");
    int start = 0;
    for (int i = 0; force && i < 3; i++)
        if (!strcmp(force, order[i])) start = i;
    for (int i = start; i < 3; i++) {
        isa s = isa_named(order[i]);
        if (s.micro) return s;
    }
    return isa_named("generic");
}

static isa the_isa;

const char *conv2d_fast_isa(void)
{
    if (!the_isa.micro) the_isa = pick_isa();
    return the_isa.name;
}

int conv2d_fast_set_isa(const char *name)
{
    isa s = isa_named(name);
    if (!s.micro) return -1;
    the_isa = s;
    return 0;
}

size_t conv2d_fast_scratch_floats(const conv2d_packed *P)
{
    /* Small C: the im2col rows of a task's pixels (MC x K, rounded up to whole micro-tiles).
     * Then, always: the row pointers of a task (as floats' worth of space) and a padded tile. */
    const size_t im2col = P->C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const size_t pointers = (MC + MR_MAX) * sizeof(const float *) / sizeof(float);
    return im2col + pointers + (size_t)MR_MAX * NR + 32;
}

/* ------------------------------------------------------------------ the convolution */

typedef struct fast_job {
    const conv2d_packed *P;
    nhwc in, out;
    const nhwc *res;
    int OH, OW, P_total, tiles_p, tiles_oc, panels_per_task;
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

/* Output row (the task's channel range starts at ocs) of pixel p. */
static float *out_row(const fast_job *J, int p, int ocs)
{
    const int n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
    return J->out.data + n * J->out.ldn + (size_t)q * J->out.ldp + ocs;
}

/* C += A * B for the micro-tile of pixels [p, p + rows) and one panel of channels. A full
 * tile whose rows are one stride apart in the output is updated in place; a partial one (at
 * the end of the pixels or of the channels, or straddling two images) through a padded copy. */
static void tile_update(const fast_job *J, int kb, const float *const *a, const float *B, int p, int rows,
                        int ocs, float *tile)
{
    const int mr = J->isa.mr, ncols = ocs + NR <= J->P->OC ? NR : J->P->OC - ocs;
    const int img = J->OH * J->OW;
    if (rows == mr && ncols == NR && p / img == (p + rows - 1) / img) {
        J->isa.micro(kb, a, B, out_row(J, p, ocs), J->out.ldp);
        return;
    }
    for (int r = 0; r < mr; r++) {
        const float *src = r < rows ? out_row(J, p + r, ocs) : NULL;
        for (int j = 0; j < NR; j++) tile[r * NR + j] = src && j < ncols ? src[j] : 0.0f;
    }
    J->isa.micro(kb, a, B, tile, NR);
    for (int r = 0; r < rows; r++) memcpy(out_row(J, p + r, ocs), tile + r * NR, sizeof(float) * (size_t)ncols);
}

static void fast_task(void *ctx, int task, int thread)
{
    const fast_job *J = ctx;
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr, C = P->C;
    const int tp = task / J->tiles_oc, to = task % J->tiles_oc;
    const int p0 = tp * MC, mc = p0 + MC < J->P_total ? MC : J->P_total - p0;
    const int tiles = (mc + mr - 1) / mr;
    const int panel0 = to * J->panels_per_task;
    const int panel1 = panel0 + J->panels_per_task < P->panels ? panel0 + J->panels_per_task : P->panels;
    const int oc0 = panel0 * NR, oc1 = panel1 * NR < P->OC ? panel1 * NR : P->OC;

    /* per thread: [im2col rows (small C)] [row pointers] [padded tile] */
    float *mem = J->scratch + (size_t)thread * J->scratch_floats;
    float *im2col = mem;
    const size_t im2col_floats = C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const float **rows = (const float **)(void *)(mem + im2col_floats);
    float *tile = (float *)(((uintptr_t)(rows + MC + MR_MAX) + 63) & ~(uintptr_t)63);

    /* the output rows of this task start as bias (+ residual) */
    for (int i = 0; i < mc; i++) {
        const int p = p0 + i, n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
        float *o = out_row(J, p, 0);
        const float *r = J->res ? J->res->data + n * J->res->ldn + (size_t)q * J->res->ldp : NULL;
        for (int oc = oc0; oc < oc1; oc++) o[oc] = P->bias[oc] + (r ? r[oc] : 0.0f);
    }

    if (C < SMALL_C) {
        /* im2col: row i holds the K values (every tap, every channel) output pixel p0 + i sees */
        for (int i = 0; i < tiles * mr; i++) {
            float *row = im2col + (size_t)i * P->K;
            rows[i] = row;
            for (int tap = 0; tap < P->KH * P->KW; tap++) {
                const float *src = i < mc ? tap_row(J, p0 + i, tap / P->KW, tap % P->KW) : NULL;
                if (src) memcpy(row + tap * C, src, sizeof(float) * (size_t)C);
                else memset(row + tap * C, 0, sizeof(float) * (size_t)C);
            }
        }
        for (int panel = panel0; panel < panel1; panel++)
            for (int t = 0; t < tiles; t++)
                tile_update(J, P->K, rows + t * mr, P->w + (size_t)panel * P->K * NR, p0 + t * mr,
                            mc - t * mr < mr ? mc - t * mr : mr, panel * NR, tile);
    } else {
        for (int tap = 0; tap < P->KH * P->KW; tap++) {
            /* where each pixel's tap lands; a tile with every row in the padding is skipped */
            unsigned char live[MC / 4 + 1];
            for (int t = 0; t < tiles; t++) {
                live[t] = 0;
                for (int r = 0; r < mr; r++) {
                    const int i = t * mr + r;
                    const float *src = i < mc ? tap_row(J, p0 + i, tap / P->KW, tap % P->KW) : NULL;
                    rows[i] = src;
                    live[t] |= src != NULL;
                }
            }
            for (int c0 = 0; c0 < C; c0 += KC) {
                const int kb = c0 + KC < C ? KC : C - c0;
                const float *a[MR_MAX];
                for (int panel = panel0; panel < panel1; panel++) {
                    const float *B = P->w + ((size_t)panel * P->K + (size_t)tap * C + c0) * NR;
                    for (int t = 0; t < tiles; t++) {
                        if (!live[t]) continue;
                        for (int r = 0; r < mr; r++) a[r] = rows[t * mr + r] ? rows[t * mr + r] + c0 : zeros;
                        tile_update(J, kb, a, B, p0 + t * mr, mc - t * mr < mr ? mc - t * mr : mr, panel * NR, tile);
                    }
                }
            }
        }
    }

    if (P->relu)
        for (int i = 0; i < mc; i++) {
            float *o = out_row(J, p0 + i, 0);
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
