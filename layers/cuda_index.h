/*
 * cuda_index.h - the arithmetic of the CUDA kernels, as functions a C program can run too.
 *
 * Every kernel in the layers' .cu files is a thin shell around the functions here: which
 * element a thread owns, which input pixel a row of the im2col matrix reads, how a tile is
 * loaded into shared memory, multiplied and written back. Compiled by nvcc they are
 * __host__ __device__ and inlined into the kernels; compiled by a C compiler
 * (tests/test_cuda_index.c) they let the CPU run the kernels' exact index math, thread by
 * thread and phase by phase, on machines without a GPU.
 *
 * Layout as in layers.h: float32 NCHW, element (n, c, y, x) at n * ldn + (c * H + y) * W + x.
 * Offsets are int64_t: one image of the stem's output at --size 16384 is past 2^31 floats.
 */
#ifndef DL_CUDA_INDEX_H
#define DL_CUDA_INDEX_H

#include <math.h>
#include <stdint.h>

#include "layers.h"

#if defined(__CUDACC__)
#define DL_KFN static __forceinline__ __host__ __device__
#else
#define DL_KFN static inline
#endif
#if defined(__CUDA_ARCH__) /* nvcc's device pass; the host compiler would warn */
#define DL_UNROLL _Pragma("unroll")
#else
#define DL_UNROLL
#endif

/* ------------------------------------------------------------------ element-wise grids */

/* Blocks for a grid-stride loop over total elements: enough to fill any GPU, capped so that the
 * count fits gridDim.x; each thread then takes elements e, e + blocks * threads, ... */
enum { GRID_MAX_BLOCKS = 1 << 20 };
static inline unsigned grid_blocks(int64_t total, int threads)
{
    const int64_t b = (total + threads - 1) / threads, cap = GRID_MAX_BLOCKS;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

/* Element e of an N x C x H x W grid, in NCHW order -> (n, c, y, x). */
DL_KFN void split_nchw(int64_t e, int C, int H, int W, int *n, int *c, int *y, int *x)
{
    *x = (int)(e % W);
    e /= W;
    *y = (int)(e % H);
    e /= H;
    *c = (int)(e % C);
    *n = (int)(e / C);
}

/* Offset of (n, c, y, x) in a tensor whose images are ldn floats apart. */
DL_KFN int64_t offset_nchw(int64_t ldn, int H, int W, int n, int c, int y, int x)
{
    return (int64_t)n * ldn + ((int64_t)c * H + y) * W + x;
}

/* ------------------------------------------------------------------ convolution (implicit GEMM) */

/*
 * The convolution as a matrix product, per image (see layers/conv2d.c):
 *     out[OC x P] = weight[OC x K] * col[K x P],  K = C * KH * KW,  P = OH * OW
 * A thread block computes a tile of CONV_BM output channels x CONV_BN output pixels. It walks K in
 * steps of CONV_BK: each step loads a CONV_BK x CONV_BM slice of the weights (transposed, "As")
 * and a CONV_BK x CONV_BN slice of col ("Bs", gathered from the input on the fly: im2col is never
 * built) into shared memory, and every thread accumulates its CONV_TM x CONV_TN outputs in
 * registers. Thread t owns rows (t / 16) * 4 + i and columns t % 16 + 16 * j of the tile
 * (i, j < 4): the columns are strided so that neighbouring threads write neighbouring pixels.
 * The epilogue adds the bias, the residual, applies the ReLU and writes into the output, which may
 * be a channel slice of a wider tensor (out_ldn > OC * P).
 */
enum {
    CONV_BM = 64,      /* output channels per block */
    CONV_BN = 64,      /* output pixels per block */
    CONV_BK = 16,      /* depth of one shared-memory step */
    CONV_TM = 4,       /* output channels per thread */
    CONV_TN = 4,       /* output pixels per thread */
    CONV_THREADS = 256,
    CONV_COL_STEP = CONV_BN / CONV_TN, /* distance between a thread's pixels (16) */
    CONV_APAD = 4      /* As rows padded: the transposed store is otherwise a 16-way bank
                          conflict; 4 keeps rows 16-byte aligned */
};

/* The tile shapes must cover the block exactly, and the loaders rely on THREADS being a multiple
 * of BN (a thread's Bs column is the same in every pass) and of BK (likewise its As row). */
#ifdef __cplusplus
#define DL_STATIC_ASSERT static_assert
#else
#define DL_STATIC_ASSERT _Static_assert
#endif
DL_STATIC_ASSERT((CONV_BM / CONV_TM) * (CONV_BN / CONV_TN) == CONV_THREADS, "tile / threads");
DL_STATIC_ASSERT(CONV_THREADS % CONV_BN == 0 && CONV_THREADS % CONV_BK == 0, "loader passes");
DL_STATIC_ASSERT(CONV_BK * CONV_BN % CONV_THREADS == 0 && CONV_BK * CONV_BM % CONV_THREADS == 0, "loader passes");

typedef struct conv_geom {
    int C, H, W;       /* input image */
    int OC, OH, OW;    /* output image */
    int KH, KW, stride, pad, dilation;
    int K, P;          /* C * KH * KW and OH * OW */
    int64_t in_ldn, out_ldn, res_ldn; /* floats between images */
} conv_geom;

/* The geometry of conv(L, in) -> out (+ residual), after checking that the shapes agree with
 * each other and fit the kernel's int indices (a tile may reach BN / BK past P / K). 0 on
 * success, -1 on a mismatch. Host code. */
static inline int conv_geom_init(conv_geom *g, const conv2d *L, tensor in, const tensor *residual, tensor out)
{
    const int OH = conv_out_size(in.h, L->KH, L->p.stride, L->p.pad, L->p.dilation);
    const int OW = conv_out_size(in.w, L->KW, L->p.stride, L->p.pad, L->p.dilation);
    const int64_t K = (int64_t)L->C * L->KH * L->KW, P = (int64_t)OH * OW;
    if (in.c != L->C || out.c != L->OC || out.n != in.n || out.h != OH || out.w != OW || OH < 1 || OW < 1 ||
        L->KH < 1 || L->KW < 1 || L->p.stride < 1 || L->p.dilation < 1 || K > INT32_MAX - CONV_BK ||
        P > INT32_MAX - CONV_BN ||
        (residual && (residual->c != L->OC || residual->h != OH || residual->w != OW || residual->n != in.n)))
        return -1;
    g->C = L->C;
    g->H = in.h;
    g->W = in.w;
    g->OC = L->OC;
    g->OH = OH;
    g->OW = OW;
    g->KH = L->KH;
    g->KW = L->KW;
    g->stride = L->p.stride;
    g->pad = L->p.pad;
    g->dilation = L->p.dilation;
    g->K = (int)K;
    g->P = (int)P;
    g->in_ldn = (int64_t)in.ldn;
    g->out_ldn = (int64_t)out.ldn;
    g->res_ldn = residual ? (int64_t)residual->ldn : 0;
    return 0;
}

/* First tile row (output channel within the tile) and first column of thread t. */
DL_KFN int conv_thread_row(int t) { return t / CONV_COL_STEP * CONV_TM; }
DL_KFN int conv_thread_col(int t) { return t % CONV_COL_STEP; }

/* Row k of col -> input channel c and kernel tap (ky, kx); k = (c * KH + ky) * KW + kx, the
 * order of the weights' OC x C x KH x KW layout. */
DL_KFN void conv_split_k(int k, int KH, int KW, int *c, int *ky, int *kx)
{
    const int taps = KH * KW;
    *c = k / taps;
    const int r = k - *c * taps;
    *ky = r / KW;
    *kx = r - *ky * KW;
}

/* col[k][(oy, ox)] lives at this offset of the input image, or -1 when it is padding. */
DL_KFN int64_t conv_input_offset(const conv_geom *g, int k, int oy, int ox)
{
    int c, ky, kx;
    conv_split_k(k, g->KH, g->KW, &c, &ky, &kx);
    const int iy = oy * g->stride - g->pad + ky * g->dilation;
    const int ix = ox * g->stride - g->pad + kx * g->dilation;
    if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) return -1;
    return ((int64_t)c * g->H + iy) * g->W + ix;
}

/* The output pixel whose column of col thread t gathers for the tile starting at pixel p0:
 * returns 0 when the column is past the image (P not a multiple of CONV_BN). */
DL_KFN int conv_b_pixel(const conv_geom *g, int p0, int t, int *oy, int *ox)
{
    const int p = p0 + t % CONV_BN;
    *oy = *ox = 0;
    if (p >= g->P) return 0;
    *oy = p / g->OW;
    *ox = p - *oy * g->OW;
    return 1;
}

/* Thread t's share of As = weight[m0 .. m0 + BM)[k0 .. k0 + BK), stored transposed (As[kk][i]).
 * Neighbouring threads read neighbouring k of one weight row. Outside the matrix: 0. */
DL_KFN void conv_load_a(const conv_geom *g, const float *weight, int m0, int k0, int t,
                        float As[CONV_BK][CONV_BM + CONV_APAD])
{
    const int kk = t % CONV_BK, k = k0 + kk;
    DL_UNROLL
    for (int r = 0; r < CONV_BK * CONV_BM / CONV_THREADS; r++) {
        const int i = t / CONV_BK + r * (CONV_THREADS / CONV_BK);
        const int m = m0 + i;
        As[kk][i] = (m < g->OC && k < g->K) ? weight[(int64_t)m * g->K + k] : 0.0f;
    }
}

/* Thread t's share of Bs = col[k0 .. k0 + BK)[p0 .. p0 + BN) for one image (in: its first
 * element). The thread's column (output pixel oy, ox; valid = conv_b_pixel's result) is fixed;
 * it fills rows t / BN + r * (THREADS / BN). Padding and positions past the matrix: 0. */
DL_KFN void conv_load_b(const conv_geom *g, const float *in, int k0, int valid, int oy, int ox, int t,
                        float Bs[CONV_BK][CONV_BN])
{
    const int j = t % CONV_BN;
    DL_UNROLL
    for (int r = 0; r < CONV_BK * CONV_BN / CONV_THREADS; r++) {
        const int kk = t / CONV_BN + r * (CONV_THREADS / CONV_BN);
        const int k = k0 + kk;
        float v = 0.0f;
        if (valid && k < g->K) {
            const int64_t off = conv_input_offset(g, k, oy, ox);
            if (off >= 0) v = in[off];
        }
        Bs[kk][j] = v;
    }
}

/* acc += As^T Bs over one step, for thread t's CONV_TM x CONV_TN outputs. */
DL_KFN void conv_tile_fma(float As[CONV_BK][CONV_BM + CONV_APAD], float Bs[CONV_BK][CONV_BN], int t,
                          float acc[CONV_TM][CONV_TN])
{
    const int row = conv_thread_row(t), col = conv_thread_col(t);
    DL_UNROLL
    for (int kk = 0; kk < CONV_BK; kk++) {
        float a[CONV_TM], b[CONV_TN];
        DL_UNROLL
        for (int i = 0; i < CONV_TM; i++) a[i] = As[kk][row + i];
        DL_UNROLL
        for (int j = 0; j < CONV_TN; j++) b[j] = Bs[kk][col + j * CONV_COL_STEP];
        DL_UNROLL
        for (int i = 0; i < CONV_TM; i++)
            DL_UNROLL
            for (int j = 0; j < CONV_TN; j++) acc[i][j] += a[i] * b[j];
    }
}

/* The epilogue of thread t: out = acc + bias (+ residual), then ReLU, for the outputs that lie
 * inside the matrix. out and res point at the image's channel 0 (out at its slice). The order
 * (sum, + bias, + residual, ReLU) is conv2d_cpu's; like it, ReLU keeps a NaN a NaN. */
DL_KFN void conv_store(const conv_geom *g, const float *bias, const float *res, float *out, int relu,
                       int m0, int p0, int t, float acc[CONV_TM][CONV_TN])
{
    const int row = conv_thread_row(t), col = conv_thread_col(t);
    DL_UNROLL
    for (int i = 0; i < CONV_TM; i++) {
        const int m = m0 + row + i;
        if (m >= g->OC) continue;
        const float b = bias ? bias[m] : 0.0f;
        DL_UNROLL
        for (int j = 0; j < CONV_TN; j++) {
            const int p = p0 + col + j * CONV_COL_STEP;
            if (p >= g->P) continue;
            const int64_t o = (int64_t)m * g->P + p;
            float v = acc[i][j] + b;
            if (res) v += res[o];
            if (relu && v < 0.0f) v = 0.0f;
            out[o] = v;
        }
    }
}

/* ------------------------------------------------------------------ pooling */

/* Max over the k x k window of output (oy, ox) of one plane; padding never wins, NaN wins
 * (maxpool2d_cpu, PyTorch). */
DL_KFN float maxpool_at(const float *plane, int H, int W, int k, int stride, int pad, int oy, int ox)
{
    float m = -INFINITY;
    for (int ky = 0; ky < k; ky++) {
        const int iy = oy * stride - pad + ky;
        if (iy < 0 || iy >= H) continue;
        for (int kx = 0; kx < k; kx++) {
            const int ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= W) continue;
            const float v = plane[(int64_t)iy * W + ix];
            if (v > m || v != v) m = v;
        }
    }
    return m;
}

/* Global average pooling: one block of AVGPOOL_THREADS per plane. Thread t sums elements
 * t, t + AVGPOOL_THREADS, ... in double; the block then adds the partial sums pairwise
 * (avgpool_reduce_step with half = THREADS / 2, / 4, ..., 1; a barrier between steps). */
enum { AVGPOOL_THREADS = 256 };

DL_KFN double avgpool_partial(const float *plane, int64_t hw, int t)
{
    double s = 0.0;
    for (int64_t i = t; i < hw; i += AVGPOOL_THREADS) s += plane[i];
    return s;
}

DL_KFN void avgpool_reduce_step(double *partial, int half, int t)
{
    if (t < half) partial[t] += partial[t + half];
}

/* ------------------------------------------------------------------ resize */

/* Output (oy, ox) of a bilinear resize (align_corners=False) of an h x w plane to H x W: the
 * formula of resize_bilinear_cpu, through the same resize_bilinear_coord. */
DL_KFN float resize_bilinear_at(const float *plane, int h, int w, int H, int W, int oy, int ox)
{
    int y0, y1, x0, x1;
    float ly, lx;
    resize_bilinear_coord(oy, h, H, &y0, &y1, &ly);
    resize_bilinear_coord(ox, w, W, &x0, &x1, &lx);
    const float *r0 = plane + (int64_t)y0 * w, *r1 = plane + (int64_t)y1 * w;
    const float wy0 = 1.0f - ly, wx0 = 1.0f - lx;
    return wy0 * (wx0 * r0[x0] + lx * r0[x1]) + ly * (wx0 * r1[x0] + lx * r1[x1]);
}

/* ------------------------------------------------------------------ classification */

/* The per-pixel softmax, class mass and arg-max are layers.h's (softmax_pixel, class_mass_pixel,
 * argmax_pixel): one formula for the CPU and the kernels. */

/* ------------------------------------------------------------------ input normalisation */

/* torchvision's (v / 255 - mean) / std for channel ch, in float32, one rounding per operation
 * as dl_preprocess computes it (no product is involved, so nvcc has nothing to fuse). */
DL_KFN float normalise_u8(int v, int ch)
{
    const float mean = ch == 0 ? 0.485f : ch == 1 ? 0.456f : 0.406f;
    const float std = ch == 0 ? 0.229f : ch == 1 ? 0.224f : 0.225f;
    const float unit = (float)v / 255.0f;
    const float centred = unit - mean;
    return centred / std;
}

#endif
