/*
 * softmax.cu - per-pixel softmax over the class channels, the arg-max class map and the
 * foreground probability (1 - p(background)) on the GPU: one thread per pixel, looping over the
 * channels (the model has 21; coalesced because neighbouring threads read neighbouring pixels of
 * one channel plane). The per-pixel formulas are layers.h's, the same as the CPU's.
 */
#include <cuda_runtime.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "layers_cuda.h"

enum { SOFTMAX_THREADS = 256 };

__global__ void softmax_channels_kernel(const float *__restrict__ d_in, int64_t in_ldn, float *__restrict__ d_out,
                                        int64_t out_ldn, int N, int C, int64_t hw)
{
    const int64_t total = N * hw;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / hw, i = e - n * hw;
        softmax_pixel(d_in + n * in_ldn + i, d_out + n * out_ldn + i, C, hw);
    }
}

__global__ void argmax_channels_kernel(const float *__restrict__ d_in, int64_t in_ldn, uint8_t *__restrict__ d_labels,
                                       int N, int C, int64_t hw)
{
    const int64_t total = N * hw;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / hw, i = e - n * hw;
        d_labels[e] = (uint8_t)argmax_pixel(d_in + n * in_ldn + i, C, hw);
    }
}

__global__ void foreground_prob_kernel(const float *__restrict__ d_in, int64_t in_ldn, float *__restrict__ d_prob,
                                       int64_t prob_ldn, int N, int C, int64_t hw)
{
    const int64_t total = N * hw;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / hw, i = e - n * hw;
        d_prob[n * prob_ldn + i] = class_mass_pixel(d_in + n * in_ldn + i, C, hw, nullptr);
    }
}

extern "C" int softmax_channels_cuda(tensor in, tensor out, dl_stream s)
{
    if (out.n != in.n || out.c != in.c || out.h != in.h || out.w != in.w || in.c < 1) return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)in.h * in.w;
    if (in.n * hw == 0) return (int)cudaSuccess;
    DL_LAUNCH(softmax_channels_kernel, grid_blocks(in.n * hw, SOFTMAX_THREADS), SOFTMAX_THREADS, 0, s)(
        in.data, (int64_t)in.ldn, out.data, (int64_t)out.ldn, in.n, in.c, hw);
    return (int)cudaGetLastError();
}

extern "C" int argmax_channels_cuda(tensor in, uint8_t *labels, dl_stream s)
{
    if (in.c < 1 || in.c > 256) return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)in.h * in.w;
    if (in.n * hw == 0) return (int)cudaSuccess;
    DL_LAUNCH(argmax_channels_kernel, grid_blocks(in.n * hw, SOFTMAX_THREADS), SOFTMAX_THREADS, 0, s)(
        in.data, (int64_t)in.ldn, labels, in.n, in.c, hw);
    return (int)cudaGetLastError();
}

extern "C" int foreground_prob_cuda(tensor logits, tensor prob, dl_stream s)
{
    if (prob.n != logits.n || prob.c != 1 || prob.h != logits.h || prob.w != logits.w || logits.c < 1)
        return (int)cudaErrorInvalidValue;
    const int64_t hw = (int64_t)logits.h * logits.w;
    if (logits.n * hw == 0) return (int)cudaSuccess;
    DL_LAUNCH(foreground_prob_kernel, grid_blocks(logits.n * hw, SOFTMAX_THREADS), SOFTMAX_THREADS, 0, s)(
        logits.data, (int64_t)logits.ldn, prob.data, (int64_t)prob.ldn, logits.n, logits.c, hw);
    return (int)cudaGetLastError();
}
