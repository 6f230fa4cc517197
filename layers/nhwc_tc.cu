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

/* Thread per pixel: neighbouring threads read neighbouring pixels of each input plane and write
 * neighbouring pixels' channel vectors (16 bytes for the stem's 8 channels of 16 bits). */
template <int PREC>
__global__ void nchw_to_tc_kernel(const float *__restrict__ in, int C, int64_t in_ldn, int64_t hw, void *out,
                                  int OC, int64_t out_ldp, int64_t out_ldn, int N)
{
    const int64_t total = (int64_t)N * hw;
    for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < total; q += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = q / hw, i = q - n * hw;
        for (int c = 0; c < OC; c++)
            store_st<PREC>(out, n * out_ldn + i * out_ldp + c, c < C ? in[n * in_ldn + c * hw + i] : 0.0f);
    }
}

extern "C" int nchw_to_tc_cuda(tensor in, tc_precision p, tc_tensor out, dl_stream s)
{
    if (out.n != in.n || out.h != in.h || out.w != in.w || out.c < in.c || (unsigned)p > TC_BF16)
        return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)in.h * in.w, total = (int64_t)in.n * hw;
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

/* Two passes, so that the whole GPU reads the map (a block per channel group alone would be 32
 * blocks at batch 1) and the sums come out the same every time (no atomics). Pass 1, block
 * (64 channels, chunk of AVG_PIXELS pixels, image): thread (v, r) = (t % 8, t / 8) adds channels
 * 8v .. 8v + 7 over pixels r, r + 32, ... of the chunk, the 32 rows are added in order, and the
 * block writes its 64 partial sums. Pass 2: thread per (image, channel) adds the chunks in order. */
enum { AVG_CH = 64, AVG_ROWS = 32, AVG_PIXELS = 256 };

template <int PREC>
__global__ void avgpool_partial_kernel(const void *in, int64_t hw, int64_t ldp, int64_t ldn, int C, float *partial)
{
    DL_SHARED(float, part, [AVG_ROWS][AVG_CH]);
    const int v = threadIdx.x % 8, r = threadIdx.x / 8, n = blockIdx.z, chunks = gridDim.y;
    const int c0 = blockIdx.x * AVG_CH + 8 * v;
    float sum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t p_end = (blockIdx.y + 1) * (int64_t)AVG_PIXELS < hw ? (blockIdx.y + 1) * (int64_t)AVG_PIXELS : hw;
    for (int64_t i = blockIdx.y * (int64_t)AVG_PIXELS + r; i < p_end; i += AVG_ROWS)
        for (int j = 0; j < 8; j++)
            if (c0 + j < C) sum[j] += load_st<PREC>(in, n * ldn + i * ldp + c0 + j);
    for (int j = 0; j < 8; j++) part[r][8 * v + j] = sum[j];
    __syncthreads(); /* every row's sums written before the first 64 threads add them */
    if ((int)threadIdx.x < AVG_CH && (int)(blockIdx.x * AVG_CH + threadIdx.x) < C) {
        float t = 0.0f;
        for (int k = 0; k < AVG_ROWS; k++) t += part[k][threadIdx.x];
        partial[((int64_t)n * chunks + blockIdx.y) * C + blockIdx.x * AVG_CH + threadIdx.x] = t;
    }
}

__global__ void avgpool_finish_kernel(const float *partial, int chunks, int C, int N, float inv_hw, float *out)
{
    const int64_t total = (int64_t)N * C;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / C, c = e - n * C;
        float t = 0.0f;
        for (int k = 0; k < chunks; k++) t += partial[(n * chunks + k) * C + c];
        out[e] = t * inv_hw;
    }
}

extern "C" size_t global_avgpool_tc_workspace_floats(int n, int h, int w, int c)
{
    return (size_t)n * (((size_t)h * w + AVG_PIXELS - 1) / AVG_PIXELS) * c;
}

extern "C" int global_avgpool_tc_cuda(tc_precision p, tc_tensor in, float *out, float *workspace, dl_stream s)
{
    const int64_t hw = (int64_t)in.h * in.w, chunks = (hw + AVG_PIXELS - 1) / AVG_PIXELS;
    if ((unsigned)p > TC_BF16 || in.n > 65535 || chunks > 65535) return (int)cudaErrorInvalidValue;
    if (in.n == 0 || in.c == 0) return (int)cudaSuccess;
    const dim3 grid((unsigned)((in.c + AVG_CH - 1) / AVG_CH), (unsigned)chunks, (unsigned)in.n);
#define AVG_ARGS in.data, hw, (int64_t)in.ldp, (int64_t)in.ldn, in.c, workspace
    if (p == TC_TF32) DL_LAUNCH(avgpool_partial_kernel<TC_TF32>, grid, NHWC_THREADS, 0, s)(AVG_ARGS);
    else if (p == TC_FP16) DL_LAUNCH(avgpool_partial_kernel<TC_FP16>, grid, NHWC_THREADS, 0, s)(AVG_ARGS);
    else DL_LAUNCH(avgpool_partial_kernel<TC_BF16>, grid, NHWC_THREADS, 0, s)(AVG_ARGS);
#undef AVG_ARGS
    DL_LAUNCH(avgpool_finish_kernel, grid_blocks((int64_t)in.n * in.c, NHWC_THREADS), NHWC_THREADS, 0, s)(
        workspace, (int)chunks, in.c, in.n, 1.0f / (float)hw, out);
    return (int)cudaGetLastError();
}

/* ------------------------------------------------------------------ small products */

/* A block per output row o: its 256 threads take every 256th input of the row (read once for all
 * the images), and the 256 partial sums of each image are added in a fixed tree, so the result is
 * the same every time. */
__global__ void __launch_bounds__(NHWC_THREADS) matvec_f32_kernel(const float *W, int64_t ldw, const float *b,
                                                                  const float *x, int N, int I, int O, int relu,
                                                                  float *out)
{
    DL_SHARED(float, part, [NHWC_THREADS]);
    const int t = threadIdx.x, o = blockIdx.x;
    for (int n = 0; n < N; n++) {
        float sum = 0.0f;
        for (int i = t; i < I; i += NHWC_THREADS) sum += W[o * ldw + i] * x[(int64_t)n * I + i];
        part[t] = sum;
        __syncthreads(); /* all partial sums written */
        for (int half = NHWC_THREADS / 2; half > 0; half >>= 1) {
            if (t < half) part[t] += part[t + half];
            __syncthreads(); /* this level complete before the next reads it */
        }
        if (t == 0) {
            float v = part[0] + (b ? b[o] : 0.0f);
            if (relu && v < 0.0f) v = 0.0f;
            out[(int64_t)n * O + o] = v;
        }
        __syncthreads(); /* part[0] read before the next image overwrites it */
    }
}

extern "C" int matvec_f32_cuda(const float *W, size_t ldw, const float *b, const float *x, int N, int I, int O, int relu,
                               float *out, dl_stream s)
{
    if (N < 0 || I < 1 || O < 0 || ldw < (size_t)I) return (int)cudaErrorInvalidValue;
    if (N == 0 || O == 0) return (int)cudaSuccess;
    DL_LAUNCH(matvec_f32_kernel, (unsigned)O, NHWC_THREADS, 0, s)(W, (int64_t)ldw, b, x, N, I, O, relu, out);
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
