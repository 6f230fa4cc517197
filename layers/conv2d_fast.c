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
 *  - The epilogue is fused: a tile's first K block starts from the bias (+ the residual), its
 *    last stores through the ReLU, so no pass over the output is made outside the micro-kernel.
 *    Output channels are walked 256 at a time, so the outputs being accumulated stay in L2.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
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

/* What a micro-kernel does around the product. The first K block of a tile starts from the
 * bias (+ the residual rows) instead of loading C; the last one applies the ReLU as it stores.
 * So each output is written once per K block and never read or written by a separate pass. */
typedef struct epilogue {
    const float *bias; /* the panel's 32 biases */
    const float *res;  /* first: the residual rows of the tile (ldr apart), or NULL */
    size_t ldr;
    int first, relu;
} epilogue;

/* C[MR x 32] (rows ldc apart) (=|+=) A * B[kc][32], where row r of A is rows[r][0 .. kc).
 * Full tiles only: callers pass a padded tile for partial ones. */
typedef void (*micro_fn)(int kc, const float *const *rows, const float *B, float *C, size_t ldc,
                         const epilogue *e);

enum { MR_GENERIC = 4 };
static void micro_generic(int kc, const float *const *rows, const float *B, float *C, size_t ldc,
                          const epilogue *e)
{
    float acc[MR_GENERIC][NR];
    for (int r = 0; r < MR_GENERIC; r++)
        for (int j = 0; j < NR; j++)
            acc[r][j] = e->first ? e->bias[j] + (e->res ? e->res[r * e->ldr + j] : 0.0f) : C[r * ldc + j];
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR_GENERIC; r++) {
            const float a = rows[r][k];
            for (int j = 0; j < NR; j++) acc[r][j] += a * B[k * NR + j];
        }
    for (int r = 0; r < MR_GENERIC; r++)
        for (int j = 0; j < NR; j++) C[r * ldc + j] = e->relu && acc[r][j] < 0.0f ? 0.0f : acc[r][j];
}

#ifdef DL_X86
enum { MR_AVX2 = 6, MR_AVX512 = 12 };

/* The row loops below are unrolled by pragma: GCC at -O2 otherwise keeps the accumulator array
 * in memory, a load and a store around every FMA (measured: 47 instead of ~150 GFLOP/s).
 * Unrolled, the MR row pointers live in registers and each broadcast is one load
 * (base + k * 4 addressing). */

/* Two passes of a 6 x 16 tile (12 ymm accumulators + 2 for B + 1 broadcast = 15 of 16). */
__attribute__((target("avx2,fma"))) static void micro_avx2(int kc, const float *const *rows, const float *B,
                                                            float *C, size_t ldc, const epilogue *e)
{
    const float *a[MR_AVX2];
#pragma GCC unroll 6
    for (int r = 0; r < MR_AVX2; r++) a[r] = rows[r];
#pragma GCC unroll 2
    for (int half = 0; half < 2; half++) {
        const float *b = B + 16 * half;
        float *c = C + 16 * half;
        __m256 acc[MR_AVX2][2];
        if (e->first) {
            const __m256 b0 = _mm256_loadu_ps(e->bias + 16 * half), b1 = _mm256_loadu_ps(e->bias + 16 * half + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR_AVX2; r++) {
                acc[r][0] = e->res ? _mm256_add_ps(b0, _mm256_loadu_ps(e->res + r * e->ldr + 16 * half)) : b0;
                acc[r][1] = e->res ? _mm256_add_ps(b1, _mm256_loadu_ps(e->res + r * e->ldr + 16 * half + 8)) : b1;
            }
        } else {
#pragma GCC unroll 6
            for (int r = 0; r < MR_AVX2; r++) {
                acc[r][0] = _mm256_loadu_ps(c + r * ldc);
                acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
            }
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
        const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int r = 0; r < MR_AVX2; r++) {
            _mm256_storeu_ps(c + r * ldc, e->relu ? _mm256_max_ps(acc[r][0], zero) : acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, e->relu ? _mm256_max_ps(acc[r][1], zero) : acc[r][1]);
        }
    }
}

/* A 12 x 32 tile: 24 zmm accumulators, 2 for B, one broadcast register. */
__attribute__((target("avx512f"))) static void micro_avx512(int kc, const float *const *rows, const float *B,
                                                             float *C, size_t ldc, const epilogue *e)
{
    __m512 acc[MR_AVX512][2];
    const float *a[MR_AVX512];
#pragma GCC unroll 12
    for (int r = 0; r < MR_AVX512; r++) a[r] = rows[r];
    if (e->first) {
        const __m512 b0 = _mm512_loadu_ps(e->bias), b1 = _mm512_loadu_ps(e->bias + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) {
            acc[r][0] = e->res ? _mm512_add_ps(b0, _mm512_loadu_ps(e->res + r * e->ldr)) : b0;
            acc[r][1] = e->res ? _mm512_add_ps(b1, _mm512_loadu_ps(e->res + r * e->ldr + 16)) : b1;
        }
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) {
            acc[r][0] = _mm512_loadu_ps(C + r * ldc);
            acc[r][1] = _mm512_loadu_ps(C + r * ldc + 16);
        }
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
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < MR_AVX512; r++) {
        _mm512_storeu_ps(C + r * ldc, e->relu ? _mm512_max_ps(acc[r][0], zero) : acc[r][0]);
        _mm512_storeu_ps(C + r * ldc + 16, e->relu ? _mm512_max_ps(acc[r][1], zero) : acc[r][1]);
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

/* Taps whose row pointers a task computes: all of them, or one "tap" of im2col rows for small C. */
static int taps_of(const conv2d_packed *P) { return P->C < SMALL_C ? 1 : P->KH * P->KW; }

size_t conv2d_fast_scratch_floats(const conv2d_packed *P)
{
    /* Small C: the im2col rows of a task's pixels (MC x K, rounded up to whole micro-tiles).
     * Then, always: the row pointers of every tap (as floats' worth of space), the first and
     * last live tap of every micro-tile, and a padded tile. */
    const size_t im2col = P->C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const size_t pointers = (size_t)taps_of(P) * (MC + MR_MAX) * sizeof(const float *) / sizeof(float);
    return im2col + pointers + 2 * (MC + MR_MAX) + (size_t)MR_MAX * NR + 32;
}

/* ------------------------------------------------------------------ the convolution */

enum { OC_CHUNK = 8 }; /* panels (256 output channels) whose outputs stay in L2 across K blocks */

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

/* Row of pixel p in an NHWC tensor, from channel c. */
static float *pixel_row(const nhwc *t, int OH, int OW, int p, int c)
{
    const int n = p / (OH * OW), q = p % (OH * OW);
    return t->data + n * t->ldn + (size_t)q * t->ldp + c;
}

/* One K block of the micro-tile of pixels [p, p + rows) and one panel of channels: (=|+=) A*B,
 * with the epilogue's first/relu. A full tile whose rows are one stride apart in the output
 * (and in the residual) is done in place; a partial one (at the end of the pixels or of the
 * channels, or straddling two images) through a padded copy. */
static void tile_update(const fast_job *J, int kb, const float *const *a, const float *B, int p, int rows,
                        int ocs, int first, int relu, float *tile)
{
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr, ncols = ocs + NR <= P->OC ? NR : P->OC - ocs;
    const int img = J->OH * J->OW;
    epilogue e = {P->bias + ocs, NULL, 0, first, relu};
    if (rows == mr && ncols == NR && p / img == (p + rows - 1) / img) {
        if (first && J->res) {
            e.res = pixel_row(J->res, J->OH, J->OW, p, ocs);
            e.ldr = J->res->ldp;
        }
        J->isa.micro(kb, a, B, pixel_row(&J->out, J->OH, J->OW, p, ocs), J->out.ldp, &e);
        return;
    }
    for (int r = 0; r < mr; r++) {
        const float *src = r < rows ? pixel_row(&J->out, J->OH, J->OW, p + r, ocs) : NULL;
        const float *res = r < rows && J->res ? pixel_row(J->res, J->OH, J->OW, p + r, ocs) : NULL;
        for (int j = 0; j < NR; j++) {
            float v = 0.0f;
            if (src && j < ncols) v = first ? e.bias[j] + (res ? res[j] : 0.0f) : src[j];
            tile[r * NR + j] = v;
        }
    }
    e.first = 0; /* the padded tile already holds the starting values */
    J->isa.micro(kb, a, B, tile, NR, &e);
    for (int r = 0; r < rows; r++)
        memcpy(pixel_row(&J->out, J->OH, J->OW, p + r, ocs), tile + r * NR, sizeof(float) * (size_t)ncols);
}

static void fast_task(void *ctx, int task, int thread)
{
    const fast_job *J = ctx;
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr, C = P->C, ntaps = taps_of(P);
    const int kc_tap = C < SMALL_C ? P->K : C; /* K values per tap (per im2col row for small C) */
    const int tp = task / J->tiles_oc, to = task % J->tiles_oc;
    const int p0 = tp * MC, mc = p0 + MC < J->P_total ? MC : J->P_total - p0;
    const int tiles = (mc + mr - 1) / mr, stride = tiles * mr;
    const int panel0 = to * J->panels_per_task;
    const int panel1 = panel0 + J->panels_per_task < P->panels ? panel0 + J->panels_per_task : P->panels;

    /* per thread: [im2col rows (small C)] [row pointers per tap] [first, last live tap] [tile] */
    float *mem = J->scratch + (size_t)thread * J->scratch_floats;
    float *im2col = mem;
    const size_t im2col_floats = C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const float **rows = (const float **)(void *)(mem + im2col_floats);
    short *first_tap = (short *)(void *)(rows + (size_t)ntaps * (MC + MR_MAX)), *last_tap = first_tap + MC + MR_MAX;
    float *tile = (float *)(((uintptr_t)(last_tap + MC + MR_MAX) + 63) & ~(uintptr_t)63);

    /* Where every pixel's taps land (NULL: padding), and for every micro-tile the first and the
     * last tap that reads anything: its first K block starts from the bias, its last applies
     * the ReLU. */
    for (int t = 0; t < tiles; t++) first_tap[t] = last_tap[t] = -1;
    for (int tap = 0; tap < ntaps; tap++)
        for (int i = 0; i < stride; i++) {
            const float *src;
            if (C < SMALL_C) { /* im2col: row i holds the K values output pixel p0 + i sees */
                float *row = im2col + (size_t)i * P->K;
                for (int k = 0; k < P->KH * P->KW; k++) {
                    const float *x = i < mc ? tap_row(J, p0 + i, k / P->KW, k % P->KW) : NULL;
                    if (x) memcpy(row + k * C, x, sizeof(float) * (size_t)C);
                    else memset(row + k * C, 0, sizeof(float) * (size_t)C);
                }
                src = i < mc ? row : NULL;
            } else {
                src = i < mc ? tap_row(J, p0 + i, tap / P->KW, tap % P->KW) : NULL;
            }
            rows[(size_t)tap * stride + i] = src;
            if (src) {
                if (first_tap[i / mr] < 0) first_tap[i / mr] = (short)tap;
                last_tap[i / mr] = (short)tap;
            }
        }

    /* A tile no tap reaches (padding wider than the kernel's reach) is bias (+ residual) alone. */
    for (int t = 0; t < tiles; t++) {
        if (first_tap[t] >= 0) continue;
        for (int i = t * mr; i < mc && i < (t + 1) * mr; i++) {
            float *o = pixel_row(&J->out, J->OH, J->OW, p0 + i, 0);
            const float *r = J->res ? pixel_row(J->res, J->OH, J->OW, p0 + i, 0) : NULL;
            for (int oc = panel0 * NR; oc < panel1 * NR && oc < P->OC; oc++) {
                const float v = P->bias[oc] + (r ? r[oc] : 0.0f);
                o[oc] = P->relu && v < 0.0f ? 0.0f : v;
            }
        }
    }

    const float *a[MR_MAX];
    for (int c0 = panel0; c0 < panel1; c0 += OC_CHUNK) { /* a chunk of panels at a time */
        const int c1 = c0 + OC_CHUNK < panel1 ? c0 + OC_CHUNK : panel1;
        for (int tap = 0; tap < ntaps; tap++)
            for (int k0 = 0; k0 < kc_tap; k0 += KC) {
                const int kb = k0 + KC < kc_tap ? KC : kc_tap - k0;
                for (int panel = c0; panel < c1; panel++) {
                    const float *B = P->w + ((size_t)panel * P->K + (size_t)tap * kc_tap + k0) * NR;
                    for (int t = 0; t < tiles; t++) {
                        if (tap < first_tap[t] || tap > last_tap[t]) continue;
                        const float *const *rt = rows + (size_t)tap * stride + t * mr;
                        int any = 0;
                        for (int r = 0; r < mr; r++) any |= (a[r] = rt[r] ? rt[r] + k0 : zeros) != zeros;
                        if (!any) continue; /* every pixel of the tile reads padding for this tap */
                        const int first = tap == first_tap[t] && k0 == 0;
                        const int last = tap == last_tap[t] && k0 + kb == kc_tap;
                        tile_update(J, kb, a, B, p0 + t * mr, mc - t * mr < mr ? mc - t * mr : mr, panel * NR,
                                    first, last && P->relu, tile);
                    }
                }
            }
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
