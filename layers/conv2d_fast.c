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
 *    The instruction set is chosen at run time, so one binary runs everywhere. Within a K block
 *    the loop over micro-tiles is outside the loop over weight panels: a tile's rows stay in L1
 *    while the panels stream from L2 (the other way round, twelve rows came from L2 for every
 *    panel: bf16 1x1 layers ran at 224-292 instead of 326-354 GFLOP/s on one core).
 *  - The epilogue is fused: a tile's first K block starts from the bias, its last adds the
 *    residual and stores through the ReLU, so no pass over the output is made outside the
 *    micro-kernel. (The residual is added last, not first: loaded first, its cache misses held
 *    up all 24 accumulator chains at the start of every tile; layer3's conv3 ran at 163 instead
 *    of 201 GFLOP/s.) Output channels are walked 256 at a time, so the outputs being
 *    accumulated stay in L2.
 *  - bf16 (CONV_DIRECT_BF16): the same loops; before each K block the rows it reads are rounded
 *    to bf16 into a per-thread buffer (a few percent of the work), and the AVX512_BF16
 *    micro-kernel of conv2d_bf16.c multiplies them with weights packed as bf16 pairs. A kernel
 *    with several taps (ASPP's 3x3 at dilations 24 and 36) would round every input row once per
 *    tap, nine times: its whole input is rounded once instead, into a bf16 copy the row pointers
 *    point into (tool_convbench's share of samples in rounding 4.3 -> 1.9%; ASPP rates 24 and 36 on
 *    one thread, best of four: 78.7 -> 77.6 and 57.9 -> 55.7 ms).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "conv2d_micro.h"
#include "layers.h"
#include "layers_fast.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DL_X86 1
#endif

enum {
    MC = 192,    /* output pixels per task */
    SMALL_C = 64 /* below this many input channels, pack im2col rows (all taps in one block) */
};

/* The rows that padding pixels point at: KC zeros. */
const float conv2d_zeros[KC] __attribute__((aligned(64)));
const uint16_t conv2d_zeros_bf16[KC_BF16] __attribute__((aligned(64)));

/* Taps whose row pointers a task computes: all of them, or one "tap" of im2col rows for small C. */
static int taps_of(const conv2d_packed *P) { return P->C < SMALL_C ? 1 : P->KH * P->KW; }
/* K values per tap (per im2col row for small C); bf16 rounds it up to even (whole pairs). */
static int kc_tap_of(const conv2d_packed *P) { return P->C < SMALL_C ? P->K : P->C; }
static int kc_tap2_of(const conv2d_packed *P) { return (kc_tap_of(P) + 1) & ~1; }
/* bf16 with several taps over the input itself: the input is rounded once, before the tasks. */
static int rounds_input_once(const conv2d_packed *P) { return P->kernel == CONV_DIRECT_BF16 && taps_of(P) > 1; }

/* ------------------------------------------------------------------ weight packing */

int conv2d_bf16_available(void) { return conv2d_current_isa().micro_bf16 != NULL; }

int conv2d_kernel_fits(const conv2d *L, conv_kernel kernel)
{
    const int wino = L->KH == 3 && L->KW == 3 && L->p.stride == 1;
    switch (kernel) {
    case CONV_DIRECT: return 1;
    case CONV_WINOGRAD: return wino;
    case CONV_DIRECT_BF16: return conv2d_bf16_available();
    case CONV_WINOGRAD_BF16: return wino && conv2d_bf16_available();
    }
    return 0;
}

conv_kernel conv2d_choose_kernel(const conv2d *L, int bf16)
{
    const int wino = L->KH == 3 && L->KW == 3 && L->p.stride == 1 && L->p.dilation <= 12;
    if (bf16) return wino ? CONV_WINOGRAD_BF16 : CONV_DIRECT_BF16;
    return wino ? CONV_WINOGRAD : CONV_DIRECT;
}

const char *conv2d_kernel_name(conv_kernel kernel)
{
    static const char *const names[] = {"direct", "winograd", "direct-bf16", "winograd-bf16"};
    return (unsigned)kernel < 4 ? names[kernel] : "?";
}

static int is_bf16(conv_kernel k) { return k == CONV_DIRECT_BF16 || k == CONV_WINOGRAD_BF16; }

dl_status conv2d_pack(const conv2d *L, conv2d_packed *P) { return conv2d_pack_kernel(L, CONV_DIRECT, P); }

dl_status conv2d_pack_kernel(const conv2d *L, conv_kernel kernel, conv2d_packed *P)
{
    memset(P, 0, sizeof *P);
    if (!conv2d_kernel_fits(L, kernel)) {
        if (is_bf16(kernel) && !conv2d_bf16_available())
            return dl_fail(DL_EUNAVAILABLE, "bf16 needs a CPU with AVX512_BF16 (and the avx512 micro-kernels): "
                                            "this one has %s", conv2d_fast_isa());
        return dl_fail(DL_EUSAGE, "the %s kernel runs 3x3 stride-1 convolutions only, not %dx%d stride %d",
                       conv2d_kernel_name(kernel), L->KH, L->KW, L->p.stride);
    }
    P->C = L->C;
    P->OC = L->OC;
    P->KH = L->KH;
    P->KW = L->KW;
    P->p = L->p;
    P->relu = L->relu;
    P->kernel = kernel;
    P->K = L->KH * L->KW * L->C;
    P->panels = (L->OC + NR - 1) / NR;
    P->bias = dl_alloc_aligned((size_t)P->panels * NR * sizeof(float), "packed bias");
    if (!P->bias) return DL_ENOMEM;
    memset(P->bias, 0, (size_t)P->panels * NR * sizeof(float));
    for (int oc = 0; oc < L->OC; oc++) P->bias[oc] = L->bias ? L->bias[oc] : 0.0f;
    if (kernel == CONV_WINOGRAD || kernel == CONV_WINOGRAD_BF16) {
        dl_status s = conv2d_winograd_pack(L, P);
        if (s != DL_OK) conv2d_packed_free(P);
        return s;
    }
    const int bf16 = kernel == CONV_DIRECT_BF16, kc_tap = kc_tap_of(P), kc_tap2 = kc_tap2_of(P);
    P->K2 = taps_of(P) * kc_tap2;
    const size_t wn = (size_t)P->panels * (bf16 ? P->K2 : P->K) * NR;
    void *w = dl_alloc_aligned(wn * (bf16 ? sizeof(uint16_t) : sizeof(float)), "packed weights");
    if (!w) {
        conv2d_packed_free(P);
        return DL_ENOMEM;
    }
    memset(w, 0, wn * (bf16 ? sizeof(uint16_t) : sizeof(float)));
    if (bf16) P->wb = w;
    else P->w = w;
    /* fp32: W[oc][c][ky][kx] -> panel[oc / 32][k = (ky * KW + kx) * C + c][oc % 32];
     * bf16: k -> k2 = tap * kc_tap2 + (k within the tap), stored as pairs [k2 / 2][oc % 32][k2 % 2] */
    for (int oc = 0; oc < L->OC; oc++)
        for (int c = 0; c < L->C; c++)
            for (int ky = 0; ky < L->KH; ky++)
                for (int kx = 0; kx < L->KW; kx++) {
                    const float v = L->weight[(((size_t)oc * L->C + c) * L->KH + ky) * L->KW + kx];
                    const size_t k = (size_t)(ky * L->KW + kx) * L->C + c;
                    if (!bf16) {
                        P->w[((size_t)(oc / NR) * P->K + k) * NR + oc % NR] = v;
                        continue;
                    }
                    const size_t k2 = k / kc_tap * kc_tap2 + k % kc_tap;
                    P->wb[(size_t)(oc / NR) * P->K2 * NR + k2 / 2 * 2 * NR + (size_t)(oc % NR) * 2 + k2 % 2] = bf16_of(v);
                }
    return DL_OK;
}

void conv2d_packed_free(conv2d_packed *P)
{
    free(P->w);
    free(P->wb);
    free(P->bias);
    P->w = P->bias = NULL;
    P->wb = NULL;
}

/* ------------------------------------------------------------------ micro-kernels */

enum { MR_GENERIC = 4 };
static void micro_generic(int kc, const float *const *rows, const float *B, float *C, size_t ldc,
                          const epilogue *e)
{
    float acc[MR_GENERIC][NR];
    for (int r = 0; r < MR_GENERIC; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = e->first ? e->bias[j] : C[r * ldc + j];
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR_GENERIC; r++) {
            const float a = rows[r][k];
            for (int j = 0; j < NR; j++) acc[r][j] += a * B[k * NR + j];
        }
    for (int r = 0; r < MR_GENERIC; r++)
        for (int j = 0; j < NR; j++) {
            const float v = acc[r][j] + (e->res ? e->res[r * e->ldr + j] : 0.0f);
            C[r * ldc + j] = e->relu && v < 0.0f ? 0.0f : v;
        }
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
            for (int r = 0; r < MR_AVX2; r++) acc[r][0] = b0, acc[r][1] = b1;
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
        if (e->res) {
#pragma GCC unroll 6
            for (int r = 0; r < MR_AVX2; r++) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(e->res + r * e->ldr + 16 * half));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(e->res + r * e->ldr + 16 * half + 8));
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
    if (e->res) /* added after the K loop: fetched during it (its rows are 4 KB apart, no prefetcher follows) */
        for (int r = 0; r < MR_AVX512; r++) {
            _mm_prefetch((const char *)(e->res + r * e->ldr), _MM_HINT_T0);
            _mm_prefetch((const char *)(e->res + r * e->ldr + 16), _MM_HINT_T0);
        }
    if (e->first) {
        const __m512 b0 = _mm512_loadu_ps(e->bias), b1 = _mm512_loadu_ps(e->bias + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) acc[r][0] = b0, acc[r][1] = b1;
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
    if (e->res) {
#pragma GCC unroll 12
        for (int r = 0; r < MR_AVX512; r++) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(e->res + r * e->ldr));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(e->res + r * e->ldr + 16));
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

static conv_isa isa_named(const char *name)
{
#ifdef DL_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f"))
        return (conv_isa){"avx512", MR_AVX512, micro_avx512, conv2d_bf16_micro()};
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (conv_isa){"avx2", MR_AVX2, micro_avx2, NULL};
#endif
    if (!strcmp(name, "generic")) return (conv_isa){"generic", MR_GENERIC, micro_generic, NULL};
    return (conv_isa){NULL, 0, NULL, NULL};
}

/* The best this CPU has, unless DEEPLAB_ISA (generic|avx2|avx512) asks for a lesser one. */
static conv_isa pick_isa(void)
{
    const char *order[] = {"avx512", "avx2", "generic"}, *force = getenv("DEEPLAB_ISA");
    int start = 0;
    for (int i = 0; force && i < 3; i++)
        if (!strcmp(force, order[i])) start = i;
    for (int i = start; i < 3; i++) {
        conv_isa s = isa_named(order[i]);
        if (s.micro) return s;
    }
    return isa_named("generic");
}

static conv_isa the_isa;

conv_isa conv2d_current_isa(void)
{
    if (!the_isa.micro) the_isa = pick_isa();
    return the_isa;
}

const char *conv2d_fast_isa(void) { return conv2d_current_isa().name; }

int conv2d_fast_set_isa(const char *name)
{
    conv_isa s = isa_named(name);
    if (!s.micro) return -1;
    the_isa = s;
    return 0;
}

/* Per-thread scratch of the direct kernel. Small C: the im2col rows of a task's pixels (MC x K,
 * rounded up to whole micro-tiles). Then, always: the row pointers of every tap (as floats'
 * worth of space), the first and last live tap of every micro-tile, a padded tile, and for bf16
 * the current K block of the task's rows rounded to bf16 (unless the whole input is). */
static size_t direct_scratch_floats(const conv2d_packed *P)
{
    const size_t im2col = P->C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const size_t pointers = (size_t)taps_of(P) * (MC + MR_MAX) * sizeof(const float *) / sizeof(float);
    const size_t rows_bf16 = P->kernel == CONV_DIRECT_BF16 && !rounds_input_once(P)
        ? (size_t)(MC + MR_MAX) * KC_BF16 / 2 + 16 : 0;
    return im2col + pointers + 2 * (MC + MR_MAX) + (size_t)MR_MAX * NR + 32 + rows_bf16;
}

/* The input rounded to bf16 (rounds_input_once): n x h x w pixels of kc_tap2 values. */
static size_t input_bf16_floats(const conv2d_packed *P, int n, int h, int w)
{
    return rounds_input_once(P) ? ((size_t)n * h * w * kc_tap2_of(P) / 2 + 15) & ~(size_t)15 : 0;
}

size_t conv2d_fast_scratch_floats(const conv2d_packed *P, int n, int h, int w, int threads)
{
    if (P->kernel == CONV_WINOGRAD || P->kernel == CONV_WINOGRAD_BF16)
        return conv2d_winograd_scratch_floats(P, n, h, w);
    return (((direct_scratch_floats(P) + 15) & ~(size_t)15)) * (size_t)(threads > 0 ? threads : 1) +
           input_bf16_floats(P, n, h, w);
}

/* ------------------------------------------------------------------ the convolution */

enum { OC_CHUNK = 8 }; /* panels (256 output channels) whose outputs stay in L2 across K blocks */

typedef struct fast_job {
    const conv2d_packed *P;
    nhwc in, out;
    const nhwc *res;
    int OH, OW, P_total, tiles_p, tiles_oc, panels_per_task, bf16;
    uint16_t *in_bf16; /* the input rounded to bf16 (rounds_input_once), kc_tap2 values a pixel */
    float *scratch;
    size_t scratch_floats; /* per thread */
    conv_isa isa;
} fast_job;

/* Input row (all C channels) of output pixel p shifted by tap (ky, kx), in the input or in its
 * bf16 copy; NULL in the padding. */
static const void *tap_row(const fast_job *J, int p, int ky, int kx)
{
    const conv2d_packed *P = J->P;
    const int n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
    const int iy = q / J->OW * P->p.stride - P->p.pad + ky * P->p.dilation;
    const int ix = q % J->OW * P->p.stride - P->p.pad + kx * P->p.dilation;
    if (iy < 0 || iy >= J->in.h || ix < 0 || ix >= J->in.w) return NULL;
    const size_t at = (size_t)iy * J->in.w + ix;
    if (J->in_bf16) return J->in_bf16 + ((size_t)n * J->in.h * J->in.w + at) * kc_tap2_of(P);
    return J->in.data + n * J->in.ldn + at * J->in.ldp;
}

/* The im2col row of output pixel p (every tap's C inputs, zeros in the padding; all zeros for
 * p < 0): the pixel's position is worked out once, not per tap. */
static void im2col_row(const fast_job *J, int p, float *row)
{
    const conv2d_packed *P = J->P;
    const int C = P->C;
    if (p < 0) {
        memset(row, 0, sizeof(float) * (size_t)P->K);
        return;
    }
    const int n = p / (J->OH * J->OW), q = p % (J->OH * J->OW);
    const int iy0 = q / J->OW * P->p.stride - P->p.pad, ix0 = q % J->OW * P->p.stride - P->p.pad;
    const float *img = J->in.data + n * J->in.ldn;
    for (int ky = 0; ky < P->KH; ky++) {
        const int iy = iy0 + ky * P->p.dilation;
        for (int kx = 0; kx < P->KW; kx++) {
            const int ix = ix0 + kx * P->p.dilation;
            float *r = row + (size_t)(ky * P->KW + kx) * C;
            const float *x = iy < 0 || iy >= J->in.h || ix < 0 || ix >= J->in.w
                ? NULL : img + ((size_t)iy * J->in.w + ix) * J->in.ldp;
            for (int c = 0; c < C; c++) r[c] = x ? x[c] : 0.0f; /* a few floats each: no memcpy calls */
        }
    }
}

/* Row of pixel p in an NHWC tensor, from channel c. */
static float *pixel_row(const nhwc *t, int OH, int OW, int p, int c)
{
    const int n = p / (OH * OW), q = p % (OH * OW);
    return t->data + n * t->ldn + (size_t)q * t->ldp + c;
}

/* One K block of the micro-tile of pixels [p, p + rows) and one panel of channels: (=|+=) A*B,
 * starting from the bias if first, adding the residual and applying the ReLU if last. A full
 * tile whose rows are one stride apart in the output (and in the residual) is done in place; a
 * partial one (at the end of the pixels or of the channels, or straddling two images) through a
 * padded copy. a: float rows, or bf16 rows for the bf16 micro-kernel. */
static void tile_update(const fast_job *J, int kb, const void *const *a, const void *B, int p, int rows,
                        int ocs, int first, int last, float *tile)
{
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr, ncols = ocs + NR <= P->OC ? NR : P->OC - ocs;
    const int img = J->OH * J->OW, relu = last && P->relu;
    epilogue e = {P->bias + ocs, NULL, 0, first, relu};
    float *C = tile;
    size_t ldc = NR;
    const int in_place = rows == mr && ncols == NR && p / img == (p + rows - 1) / img;
    if (in_place) {
        if (last && J->res) {
            e.res = pixel_row(J->res, J->OH, J->OW, p, ocs);
            e.ldr = J->res->ldp;
        }
        C = pixel_row(&J->out, J->OH, J->OW, p, ocs);
        ldc = J->out.ldp;
    } else {
        for (int r = 0; r < mr; r++) {
            const float *src = r < rows ? pixel_row(&J->out, J->OH, J->OW, p + r, ocs) : NULL;
            for (int j = 0; j < NR; j++) tile[r * NR + j] = src && j < ncols ? (first ? e.bias[j] : src[j]) : 0.0f;
        }
        e.first = e.relu = 0; /* the padded tile holds the starting values; the copy-out finishes */
    }
    if (J->bf16) J->isa.micro_bf16(kb, (const uint16_t *const *)a, B, C, ldc, &e);
    else J->isa.micro(kb, (const float *const *)a, B, C, ldc, &e);
    if (in_place) return;
    for (int r = 0; r < rows; r++) {
        float *o = pixel_row(&J->out, J->OH, J->OW, p + r, ocs);
        const float *res = last && J->res ? pixel_row(J->res, J->OH, J->OW, p + r, ocs) : NULL;
        for (int j = 0; j < ncols; j++) {
            const float v = tile[r * NR + j] + (res ? res[j] : 0.0f);
            o[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

static void fast_task(void *ctx, int task, int thread)
{
    const fast_job *J = ctx;
    const conv2d_packed *P = J->P;
    const int mr = J->isa.mr, C = P->C, ntaps = taps_of(P);
    const int kc_tap = kc_tap_of(P), kc_tap2 = kc_tap2_of(P);
    const int tp = task / J->tiles_oc, to = task % J->tiles_oc;
    const int p0 = tp * MC, mc = p0 + MC < J->P_total ? MC : J->P_total - p0;
    const int tiles = (mc + mr - 1) / mr, stride = tiles * mr;
    const int panel0 = to * J->panels_per_task;
    const int panel1 = panel0 + J->panels_per_task < P->panels ? panel0 + J->panels_per_task : P->panels;

    /* per thread: [im2col rows (small C)] [row pointers per tap] [first, last live tap] [tile]
     * [bf16 rows] */
    float *mem = J->scratch + (size_t)thread * J->scratch_floats;
    float *im2col = mem;
    const size_t im2col_floats = C < SMALL_C ? (size_t)(MC + MR_MAX) * P->K : 0;
    const void **rows = (const void **)(void *)(mem + im2col_floats);
    short *first_tap = (short *)(void *)(rows + (size_t)ntaps * (MC + MR_MAX)), *last_tap = first_tap + MC + MR_MAX;
    float *tile = (float *)(((uintptr_t)(last_tap + MC + MR_MAX) + 63) & ~(uintptr_t)63);
    uint16_t *rows_bf16 = (uint16_t *)(void *)(tile + MR_MAX * NR);

    /* Where every pixel's taps land (NULL: padding), and for every micro-tile the first and the
     * last tap that reads anything: its first K block starts from the bias, its last adds the
     * residual and applies the ReLU. */
    for (int t = 0; t < tiles; t++) first_tap[t] = last_tap[t] = -1;
    for (int tap = 0; tap < ntaps; tap++)
        for (int i = 0; i < stride; i++) {
            const void *src;
            if (C < SMALL_C) { /* im2col: row i holds the K values output pixel p0 + i sees */
                float *row = im2col + (size_t)i * P->K;
                im2col_row(J, i < mc ? p0 + i : -1, row);
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

    const void *a[MR_MAX];
    /* Panels are taken a chunk at a time, so that the outputs revisited by each K block stay
     * in L2; with a single K block (a 1x1 convolution with K <= kcb) each output is written
     * once, and one chunk of every panel rounds the rows to bf16 once instead of per chunk. */
    const int kcb = J->bf16 ? KC_BF16 : KC, one_block = ntaps == 1 && kc_tap <= kcb;
    const int chunk = one_block ? panel1 - panel0 : OC_CHUNK;
    for (int c0 = panel0; c0 < panel1; c0 += chunk) {
        const int c1 = c0 + chunk < panel1 ? c0 + chunk : panel1;
        for (int tap = 0; tap < ntaps; tap++)
            for (int k0 = 0; k0 < kc_tap; k0 += kcb) {
                const int kb = k0 + kcb < kc_tap ? kcb : kc_tap - k0, kb2 = (kb + 1) & ~1;
                const void *const *rtap = rows + (size_t)tap * stride;
                if (J->bf16 && !J->in_bf16) /* this block of every live row, rounded to bf16 (even length) */
                    for (int i = 0; i < mc; i++)
                        if (rtap[i] && tap >= first_tap[i / mr] && tap <= last_tap[i / mr])
                            bf16_round_row((const float *)rtap[i] + k0, kb, rows_bf16 + (size_t)i * KC_BF16);
                for (int t = 0; t < tiles; t++) {
                    if (tap < first_tap[t] || tap > last_tap[t]) continue;
                    const void *const *rt = rtap + t * mr;
                    int any = 0;
                    for (int r = 0; r < mr; r++) {
                        any |= rt[r] != NULL;
                        if (!rt[r]) a[r] = J->bf16 ? (const void *)conv2d_zeros_bf16 : (const void *)conv2d_zeros;
                        else if (J->in_bf16) a[r] = (const uint16_t *)rt[r] + k0;
                        else if (J->bf16) a[r] = rows_bf16 + (size_t)(t * mr + r) * KC_BF16;
                        else a[r] = (const float *)rt[r] + k0;
                    }
                    if (!any) continue; /* every pixel of the tile reads padding for this tap */
                    const int first = tap == first_tap[t] && k0 == 0;
                    const int last = tap == last_tap[t] && k0 + kb == kc_tap;
                    for (int panel = c0; panel < c1; panel++) {
                        const void *B = J->bf16
                            ? (const void *)(P->wb + ((size_t)panel * P->K2 + (size_t)tap * kc_tap2 + k0) * NR)
                            : (const void *)(P->w + ((size_t)panel * P->K + (size_t)tap * kc_tap + k0) * NR);
                        tile_update(J, J->bf16 ? kb2 : kb, a, B, p0 + t * mr, mc - t * mr < mr ? mc - t * mr : mr,
                                    panel * NR, first, last, tile);
                    }
                }
            }
    }
}

enum { ROUND_PIXELS = 64 }; /* input pixels per task of the rounding pass */

static void round_input_task(void *ctx, int task, int thread)
{
    (void)thread;
    const fast_job *J = ctx;
    const int hw = J->in.h * J->in.w, c2 = kc_tap2_of(J->P), total = J->in.n * hw;
    for (int g = task * ROUND_PIXELS; g < total && g < (task + 1) * ROUND_PIXELS; g++)
        bf16_round_row(J->in.data + g / hw * J->in.ldn + (size_t)(g % hw) * J->in.ldp, J->P->C,
                       J->in_bf16 + (size_t)g * c2);
}

void conv2d_fast(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                 dl_pool *pool)
{
    if (P->kernel == CONV_WINOGRAD || P->kernel == CONV_WINOGRAD_BF16) {
        conv2d_winograd(P, in, residual, out, scratch, pool);
        return;
    }
    fast_job J = {.P = P, .in = in, .out = out, .res = residual, .scratch = scratch, .isa = conv2d_current_isa(),
                  .bf16 = P->kernel == CONV_DIRECT_BF16};
    J.OH = out.h;
    J.OW = out.w;
    J.P_total = in.n * out.h * out.w;
    J.tiles_p = (J.P_total + MC - 1) / MC;
    J.scratch_floats = (direct_scratch_floats(P) + 15) & ~(size_t)15;
    if (rounds_input_once(P)) {
        J.in_bf16 = (uint16_t *)(void *)(scratch + J.scratch_floats * (size_t)dl_pool_threads(pool));
        dl_pool_run(pool, (in.n * in.h * in.w + ROUND_PIXELS - 1) / ROUND_PIXELS, round_input_task, &J);
    }
    /* Few pixel blocks (small maps, the 1x1 pooled map): split the output channels too, so
     * every thread gets work. */
    const int want = 4 * dl_pool_threads(pool);
    J.tiles_oc = J.tiles_p >= want ? 1 : (want + J.tiles_p - 1) / J.tiles_p;
    if (J.tiles_oc > P->panels) J.tiles_oc = P->panels;
    J.panels_per_task = (P->panels + J.tiles_oc - 1) / J.tiles_oc;
    J.tiles_oc = (P->panels + J.panels_per_task - 1) / J.panels_per_task;
    dl_pool_run(pool, J.tiles_p * J.tiles_oc, fast_task, &J);
}
