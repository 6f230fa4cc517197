/*
 * conv2d.cu - 2-D convolution on the GPU in fp32: the implicit GEMM of layers/conv2d.c, with the
 * folded-BatchNorm bias, the residual add and the ReLU fused into the epilogue.
 *
 *     out[OC x P] = weight[OC x K] * col[K x P]   per image, K = C * KH * KW, P = OH * OW
 *
 * One block of 256 threads computes a 64 x 64 tile of out (64 output channels x 64 output
 * pixels), 4 x 4 outputs per thread, walking K in steps of 16: each step stages a 16 x 64 slice
 * of the weights and a 16 x 64 slice of col in shared memory. col is gathered from the input as
 * it is needed (im2col on the fly), so any kernel size, stride, padding and dilation is just a
 * different gather; taps that fall in the padding read 0. Sizes need not be multiples of a tile:
 * every load and store is bounds-checked. The arithmetic lives in cuda_index.h (conv_load_a,
 * conv_load_b, conv_tile_fma, conv_store), where tests/test_cuda_index.c runs it on the CPU.
 *
 * Grid: x = pixel tiles, y = channel tiles, z = images (in chunks of 65535, gridDim.z's limit).
 * Clear rather than fast: a later issue tunes this (larger tiles, double buffering, tensor cores).
 */
#include <cuda_runtime.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "layers_cuda.h"

__global__ void __launch_bounds__(CONV_THREADS)
conv2d_kernel(conv_geom g, const float *__restrict__ d_in, const float *__restrict__ d_weight,
              const float *__restrict__ d_bias, const float *__restrict__ d_res, float *__restrict__ d_out,
              int relu)
{
    DL_SHARED(float, As, [CONV_BK][CONV_BM + CONV_APAD]); /* weights, transposed: As[k][oc] */
    DL_SHARED(float, Bs, [CONV_BK][CONV_BN]);             /* col: Bs[k][pixel] */

    const int t = threadIdx.x, n = blockIdx.z;
    const int p0 = blockIdx.x * CONV_BN, m0 = blockIdx.y * CONV_BM;
    const float *in = d_in + n * g.in_ldn;

    int oy, ox; /* the output pixel whose column this thread gathers */
    const int valid = conv_b_pixel(&g, p0, t, &oy, &ox);

    float acc[CONV_TM][CONV_TN];
    for (int i = 0; i < CONV_TM; i++)
        for (int j = 0; j < CONV_TN; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < g.K; k0 += CONV_BK) {
        conv_load_a(&g, d_weight, m0, k0, t, As);
        conv_load_b(&g, in, k0, valid, oy, ox, t, Bs);
        __syncthreads(); /* both slices complete before anyone multiplies */
        conv_tile_fma(As, Bs, t, acc);
        __syncthreads(); /* everyone done reading before the next step overwrites them */
    }
    conv_store(&g, d_bias, d_res ? d_res + n * g.res_ldn : nullptr, d_out + n * g.out_ldn, relu, m0, p0, t, acc);
}

extern "C" int conv2d_cuda(const conv2d *L, tensor in, const tensor *residual, tensor out, dl_stream s)
{
    conv_geom g;
    if (conv_geom_init(&g, L, in, residual, out) != 0) return (int)cudaErrorInvalidValue;
    if (in.n == 0) return (int)cudaSuccess;
    dim3 grid((unsigned)(((int64_t)g.P + CONV_BN - 1) / CONV_BN), (unsigned)(((int64_t)g.OC + CONV_BM - 1) / CONV_BM),
              1);
    for (int n0 = 0; n0 < in.n; n0 += 65535) {
        grid.z = (unsigned)(in.n - n0 < 65535 ? in.n - n0 : 65535);
        const float *res = residual ? residual->data + (size_t)n0 * residual->ldn : nullptr;
        DL_LAUNCH(conv2d_kernel, grid, CONV_THREADS, 0, s)(g, in.data + (size_t)n0 * in.ldn, L->weight, L->bias, res,
                                                           out.data + (size_t)n0 * out.ldn, L->relu);
    }
    return (int)cudaGetLastError();
}
