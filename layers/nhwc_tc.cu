/*
 * nhwc_tc.cu - the layers of the tensor-core path other than the convolutions (tc.h): the input
 * into NHWC, max and average pooling in NHWC, the image-pooling branch's small fp32 products, the
 * outputs made from the logits on the GPU (resized logits, class mass, arg-max: only what is asked
 * for leaves the device), and the mma.sync peak.
 *
 * All are memory-bound and small next to the convolutions (under 2% of a forward pass at 520x520
 * by the byte counts in bench/RESULTS.md); they are written for coalescing, not cleverness: a
 * thread per pixel (or per 8 channels of one), neighbouring threads on neighbouring addresses.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "cuda_ptx.h"
#include "tc.h"

enum { NHWC_THREADS = 256 };

namespace {

template <int PREC>
__device__ __forceinline__ float load_st(const void *base, int64_t i)
{
    return tc_load((tc_precision)PREC, base, (size_t)i);
}

template <int PREC>
__device__ __forceinline__ void store_st(void *base, int64_t i, float v)
{
    tc_store((tc_precision)PREC, base, (size_t)i, v);
}

} // namespace

/* ------------------------------------------------------------------ input */

/* thread per (image, pixel, channel of the output): consecutive threads write consecutive
 * channels of a pixel; the reads of one channel plane by consecutive pixels are spread, but the
 * input is 3 planes and read once. */
template <int PREC>
__global__ void nchw_to_tc_kernel(const float *__restrict__ in, int C, int64_t in_ldn, int64_t hw, void *out,
                                  int OC, int64_t out_ldp, int64_t out_ldn, int N)
{
    const int64_t total = (int64_t)N * hw * OC;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % OC);
        const int64_t q = e / OC, n = q / hw, i = q - n * hw;
        const float v = c < C ? in[n * in_ldn + c * hw + i] : 0.0f;
        store_st<PREC>(out, n * out_ldn + i * out_ldp + c, v);
    }
}

extern "C" int nchw_to_tc_cuda(tensor in, tc_precision p, tc_tensor out, dl_stream s)
{
    if (out.n != in.n || out.h != in.h || out.w != in.w || out.c < in.c || (unsigned)p > TC_BF16)
        return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)in.h * in.w, total = (int64_t)in.n * hw * out.c;
    if (total == 0) return (int)cudaSuccess;
    const unsigned blocks = grid_blocks(total, NHWC_THREADS);
    if (p == TC_TF32)
        DL_LAUNCH(nchw_to_tc_kernel<TC_TF32>, blocks, NHWC_THREADS, 0, s)(in.data, in.c, (int64_t)in.ldn, hw, out.data,
                                                                          out.c, (int64_t)out.ldp, (int64_t)out.ldn, in.n);
    else if (p == TC_FP16)
        DL_LAUNCH(nchw_to_tc_kernel<TC_FP16>, blocks, NHWC_THREADS, 0, s)(in.data, in.c, (int64_t)in.ldn, hw, out.data,
                                                                          out.c, (int64_t)out.ldp, (int64_t)out.ldn, in.n);
    else
        DL_LAUNCH(nchw_to_tc_kernel<TC_BF16>, blocks, NHWC_THREADS, 0, s)(in.data, in.c, (int64_t)in.ldn, hw, out.data,
                                                                          out.c, (int64_t)out.ldp, (int64_t)out.ldn, in.n);
    return (int)cudaGetLastError();
}

/* ------------------------------------------------------------------ pooling */

/* thread per output element, channels fastest: the window's loads of neighbouring threads are
 * neighbouring channels. The maximum is one of the inputs, so storing it is exact. */
template <int PREC>
__global__ void maxpool_tc_kernel(const void *in, int H, int W, int64_t in_ldp, int64_t in_ldn, void *out, int OH,
                                  int OW, int64_t out_ldp, int64_t out_ldn, int C, int N, int k, int stride, int pad)
{
    const int64_t total = (int64_t)N * OH * OW * C;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % C);
        int64_t q = e / C;
        const int ox = (int)(q % OW);
        q /= OW;
        const int oy = (int)(q % OH), n = (int)(q / OH);
        float m = -INFINITY;
        for (int ky = 0; ky < k; ky++) {
            const int iy = oy * stride - pad + ky;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < k; kx++) {
                const int ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= W) continue;
                const float v = load_st<PREC>(in, n * in_ldn + ((int64_t)iy * W + ix) * in_ldp + c);
                if (v > m || v != v) m = v;
            }
        }
        store_st<PREC>(out, n * out_ldn + ((int64_t)oy * OW + ox) * out_ldp + c, m);
    }
}

extern "C" int maxpool2d_tc_cuda(tc_precision p, tc_tensor in, int k, int stride, int pad, tc_tensor out, dl_stream s)
{
    if (out.n != in.n || out.c != in.c || out.h != conv_out_size(in.h, k, stride, pad, 1) ||
        out.w != conv_out_size(in.w, k, stride, pad, 1) || (unsigned)p > TC_BF16)
        return (int)cudaErrorInvalidValue;
    const int64_t total = (int64_t)out.n * out.h * out.w * out.c;
    if (total == 0) return (int)cudaSuccess;
    const unsigned blocks = grid_blocks(total, NHWC_THREADS);
#define MAXPOOL_ARGS                                                                                                \
    in.data, in.h, in.w, (int64_t)in.ldp, (int64_t)in.ldn, out.data, out.h, out.w, (int64_t)out.ldp, (int64_t)out.ldn, \
        in.c, in.n, k, stride, pad
    if (p == TC_TF32) DL_LAUNCH(maxpool_tc_kernel<TC_TF32>, blocks, NHWC_THREADS, 0, s)(MAXPOOL_ARGS);
    else if (p == TC_FP16) DL_LAUNCH(maxpool_tc_kernel<TC_FP16>, blocks, NHWC_THREADS, 0, s)(MAXPOOL_ARGS);
    else DL_LAUNCH(maxpool_tc_kernel<TC_BF16>, blocks, NHWC_THREADS, 0, s)(MAXPOOL_ARGS);
#undef MAXPOOL_ARGS
    return (int)cudaGetLastError();
}

/* Block (channel group of 32, image): thread (c, r) = (t % 32, t / 32) sums channel c over pixels
 * r, r + 8, ... (a warp reads 32 neighbouring channels of one pixel), then the 8 partial sums of
 * each channel are added in order. */
enum { AVG_CH = 32, AVG_ROWS = 8 };

/* (templates cannot take __launch_bounds__ in the emulated build: see emu/cuda_runtime.h) */
template <int PREC>
__global__ void avgpool_tc_kernel(const void *in, int64_t hw, int64_t ldp, int64_t ldn,
                                                                   int C, float *out)
{
    DL_SHARED(float, part, [AVG_ROWS][AVG_CH]);
    const int cl = threadIdx.x % AVG_CH, r = threadIdx.x / AVG_CH, n = blockIdx.y;
    const int c = blockIdx.x * AVG_CH + cl;
    float sum = 0.0f;
    if (c < C)
        for (int64_t i = r; i < hw; i += AVG_ROWS) sum += load_st<PREC>(in, n * ldn + i * ldp + c);
    part[r][cl] = sum;
    __syncthreads(); /* every partial sum written before row 0 adds them */
    if (r == 0 && c < C) {
        float t = 0.0f;
        for (int j = 0; j < AVG_ROWS; j++) t += part[j][cl];
        out[(int64_t)n * C + c] = t / (float)hw;
    }
}

extern "C" int global_avgpool_tc_cuda(tc_precision p, tc_tensor in, float *out, dl_stream s)
{
    if ((unsigned)p > TC_BF16 || in.n > 65535) return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)in.h * in.w;
    if (in.n == 0 || in.c == 0) return (int)cudaSuccess;
    const dim3 grid((unsigned)((in.c + AVG_CH - 1) / AVG_CH), (unsigned)in.n);
    if (p == TC_TF32)
        DL_LAUNCH(avgpool_tc_kernel<TC_TF32>, grid, NHWC_THREADS, 0, s)(in.data, hw, (int64_t)in.ldp, (int64_t)in.ldn, in.c, out);
    else if (p == TC_FP16)
        DL_LAUNCH(avgpool_tc_kernel<TC_FP16>, grid, NHWC_THREADS, 0, s)(in.data, hw, (int64_t)in.ldp, (int64_t)in.ldn, in.c, out);
    else
        DL_LAUNCH(avgpool_tc_kernel<TC_BF16>, grid, NHWC_THREADS, 0, s)(in.data, hw, (int64_t)in.ldp, (int64_t)in.ldn, in.c, out);
    return (int)cudaGetLastError();
}

/* ------------------------------------------------------------------ small products */

/* A warp per output (image n, row o): lanes take every 32nd input, then a butterfly of shuffles
 * adds the 32 partial sums (the same order every time). */
__global__ void __launch_bounds__(NHWC_THREADS) matvec_f32_kernel(const float *W, int64_t ldw, const float *b,
                                                                  const float *x, int N, int I, int O, int relu,
                                                                  float *out)
{
    const int lane = threadIdx.x & 31;
    const int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    const bool active = warp < (int64_t)N * O; /* every lane of a warp agrees: the shuffles see all 32 */
    const int n = active ? (int)(warp / O) : 0, o = active ? (int)(warp % O) : 0;
    float sum = 0.0f;
    if (active)
        for (int i = lane; i < I; i += 32) sum += W[o * ldw + i] * x[(int64_t)n * I + i];
    for (int m = 16; m >= 1; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    if (active && lane == 0) {
        float v = sum + (b ? b[o] : 0.0f);
        if (relu && v < 0.0f) v = 0.0f;
        out[(int64_t)n * O + o] = v;
    }
}

extern "C" int matvec_f32_cuda(const float *W, size_t ldw, const float *b, const float *x, int N, int I, int O, int relu,
                               float *out, dl_stream s)
{
    if (N < 0 || I < 1 || O < 0 || ldw < (size_t)I) return (int)cudaErrorInvalidValue;
    const int64_t warps = (int64_t)N * O;
    if (warps == 0) return (int)cudaSuccess;
    DL_LAUNCH(matvec_f32_kernel, grid_blocks(warps * 32, NHWC_THREADS), NHWC_THREADS, 0, s)(W, (int64_t)ldw, b, x, N, I,
                                                                                          O, relu, out);
    return (int)cudaGetLastError();
}

/* ------------------------------------------------------------------ outputs */

/* Thread per output pixel. The logits at the pixel are resize_bilinear_cpu's (resize_bilinear_coord
 * and the same weights), made again for each pass over the classes from the four neighbours
 * (L2-resident: the map is h x w x C fp32); pass 1 writes the resized logits (if wanted) and finds
 * the maximum and arg-max, pass 2 the softmax sums of class_mass_pixel. */
__global__ void tc_outputs_kernel(const float *__restrict__ lg, int h, int w, int C, int64_t ldp, int64_t ldn, int N,
                                  int H, int W, float *nchw, float *mass, const uint8_t *keep, uint8_t *labels)
{
    const int64_t HW = (int64_t)H * W, total = N * HW;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int n = (int)(e / HW), pix = (int)(e - n * HW), oy = pix / W, ox = pix - oy * W;
        int y0, y1, x0, x1;
        float ly, lx;
        resize_bilinear_coord(oy, h, H, &y0, &y1, &ly);
        resize_bilinear_coord(ox, w, W, &x0, &x1, &lx);
        const float wy0 = 1.0f - ly, wx0 = 1.0f - lx;
        const float *base = lg + n * ldn;
        const float *p00 = base + ((int64_t)y0 * w + x0) * ldp, *p01 = base + ((int64_t)y0 * w + x1) * ldp;
        const float *p10 = base + ((int64_t)y1 * w + x0) * ldp, *p11 = base + ((int64_t)y1 * w + x1) * ldp;
#define LOGIT(c) (wy0 * (wx0 * p00[c] + lx * p01[c]) + ly * (wx0 * p10[c] + lx * p11[c]))
        float m = LOGIT(0), best = m;
        int arg = 0;
        if (nchw) nchw[((int64_t)n * C) * HW + pix] = m;
        for (int c = 1; c < C; c++) {
            const float v = LOGIT(c);
            if (nchw) nchw[((int64_t)n * C + c) * HW + pix] = v;
            m = fmaxf(m, v);
            if (v > best) best = v, arg = c;
        }
        if (labels) labels[e] = (uint8_t)arg;
        if (mass) {
            float all = 0.0f, chosen = 0.0f;
            for (int c = 0; c < C; c++) {
                const float ex = expf(LOGIT(c) - m);
                all += ex;
                if (keep ? keep[c] != 0 : c != 0) chosen += ex;
            }
            mass[e] = chosen / all;
        }
#undef LOGIT
    }
}

extern "C" int tc_outputs_cuda(tc_tensor logits, int H, int W, float *nchw, float *mass, const uint8_t *keep,
                               uint8_t *labels, dl_stream s)
{
    if (H < 1 || W < 1 || logits.c < 1 || logits.c > 256 || logits.h < 1 || logits.w < 1) return (int)cudaErrorInvalidValue;
    const int64_t total = (int64_t)logits.n * H * W;
    if (total == 0 || (!nchw && !mass && !labels)) return (int)cudaSuccess;
    DL_LAUNCH(tc_outputs_kernel, grid_blocks(total, NHWC_THREADS), NHWC_THREADS, 0, s)(
        static_cast<const float *>(logits.data), logits.h, logits.w, logits.c, (int64_t)logits.ldp, (int64_t)logits.ldn,
        logits.n, H, W, nchw, mass, keep, labels);
    return (int)cudaGetLastError();
}

__global__ void class_outputs_kernel(const float *__restrict__ lg, int C, int64_t hw, int64_t ldn, int N, float *mass,
                                     const uint8_t *keep, uint8_t *labels)
{
    const int64_t total = N * hw;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / hw, i = e - n * hw;
        const float *x = lg + n * ldn + i;
        if (mass) mass[e] = class_mass_pixel(x, C, hw, keep);
        if (labels) labels[e] = (uint8_t)argmax_pixel(x, C, hw);
    }
}

extern "C" int class_outputs_cuda(tensor logits, float *mass, const uint8_t *keep, uint8_t *labels, dl_stream s)
{
    if (logits.c < 1 || logits.c > 256) return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)logits.h * logits.w, total = logits.n * hw;
    if (total == 0 || (!mass && !labels)) return (int)cudaSuccess;
    DL_LAUNCH(class_outputs_kernel, grid_blocks(total, NHWC_THREADS), NHWC_THREADS, 0, s)(
        logits.data, logits.c, hw, (int64_t)logits.ldn, logits.n, mass, keep, labels);
    return (int)cudaGetLastError();
}

/* ------------------------------------------------------------------ the peak */

/* Eight independent accumulator chains per warp (the mma latency is covered by the other chains and
 * warps), operands from registers: the tensor cores' issue rate, nothing else. */
template <int PREC>
__global__ void mma_peak_kernel(int iters, float *out)
{
    const uint32_t lane = threadIdx.x & 31;
    /* small non-zero operands (a power of two: the sums stay exact and finite) */
    const uint32_t one16 = PREC == TC_BF16 ? 0x3d80u : 0x2c00u; /* 1/16 in bf16, fp16 */
    uint32_t a[4], b[2];
    for (int i = 0; i < 4; i++) a[i] = PREC == TC_TF32 ? 0x3d800000u + (lane << 13) : (one16 | one16 << 16) + (lane & 1);
    for (int i = 0; i < 2; i++) b[i] = PREC == TC_TF32 ? 0x3d800000u : one16 | one16 << 16;
    float acc[8][4];
    for (int j = 0; j < 8; j++)
        for (int q = 0; q < 4; q++) acc[j][q] = 0.0f;
    for (int it = 0; it < iters; it++)
        for (int j = 0; j < 8; j++) {
            if (PREC == TC_TF32) dl_mma_m16n8k8_tf32(acc[j], a, b, acc[j]);
            else if (PREC == TC_FP16) dl_mma_m16n8k16_f16(acc[j], a, b, acc[j]);
            else dl_mma_m16n8k16_bf16(acc[j], a, b, acc[j]);
        }
    float t = 0.0f;
    for (int j = 0; j < 8; j++) t += acc[j][0] + acc[j][1] + acc[j][2] + acc[j][3];
    if (threadIdx.x == 0) out[blockIdx.x] = t;
}

/* The same for plain fp32: 16 independent FFMA chains per thread. */
__global__ void __launch_bounds__(256) fma_peak_kernel(int iters, float *out)
{
    float acc[16];
    const float a = 1.0f + 1e-7f * (float)threadIdx.x, b = 1e-6f;
    for (int j = 0; j < 16; j++) acc[j] = (float)j;
    for (int it = 0; it < iters; it++)
        for (int j = 0; j < 16; j++) acc[j] = fmaf(acc[j], a, b);
    float t = 0.0f;
    for (int j = 0; j < 16; j++) t += acc[j];
    if (threadIdx.x == 0) out[blockIdx.x] = t;
}

extern "C" double mma_peak_launch(tc_precision p, int fp32, int blocks, int iters, float *out, dl_stream s)
{
    if (fp32) {
        DL_LAUNCH(fma_peak_kernel, blocks, 256, 0, s)(iters, out);
        return (double)blocks * 256 * iters * 16;
    }
    const double k = p == TC_TF32 ? 8 : 16;
    if (p == TC_TF32) DL_LAUNCH(mma_peak_kernel<TC_TF32>, blocks, 256, 0, s)(iters, out);
    else if (p == TC_FP16) DL_LAUNCH(mma_peak_kernel<TC_FP16>, blocks, 256, 0, s)(iters, out);
    else DL_LAUNCH(mma_peak_kernel<TC_BF16>, blocks, 256, 0, s)(iters, out);
    return (double)blocks * 8 * iters * 8 * (16 * 8 * k);
}
