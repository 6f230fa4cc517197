/*
 * pool.cu - max pooling (the stem's 3x3/2) and global average pooling (ASPP's image pooling) on
 * the GPU. The window and reduction arithmetic is in cuda_index.h (maxpool_at, avgpool_partial).
 */
#include <cuda_runtime.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "layers_cuda.h"

enum { POOL_THREADS = 256 };

/* One thread per output element (grid-stride). */
__global__ void maxpool2d_kernel(const float *__restrict__ d_in, int64_t in_ldn, int C, int H, int W,
                                 float *__restrict__ d_out, int64_t out_ldn, int N, int OH, int OW,
                                 int k, int stride, int pad)
{
    const int64_t total = (int64_t)N * C * OH * OW;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int n, c, oy, ox;
        split_nchw(e, C, OH, OW, &n, &c, &oy, &ox);
        const float *plane = d_in + offset_nchw(in_ldn, H, W, n, c, 0, 0);
        d_out[offset_nchw(out_ldn, OH, OW, n, c, oy, ox)] = maxpool_at(plane, H, W, k, stride, pad, oy, ox);
    }
}

extern "C" int maxpool2d_cuda(tensor in, int k, int stride, int pad, tensor out, dl_stream s)
{
    if (k < 1 || stride < 1 || pad < 0 || out.n != in.n || out.c != in.c ||
        out.h != conv_out_size(in.h, k, stride, pad, 1) || out.w != conv_out_size(in.w, k, stride, pad, 1) ||
        out.h < 1 || out.w < 1)
        return (int)cudaErrorInvalidValue;
    const int64_t total = (int64_t)out.n * out.c * out.h * out.w;
    if (total == 0) return (int)cudaSuccess;
    DL_LAUNCH(maxpool2d_kernel, grid_blocks(total, POOL_THREADS), POOL_THREADS, 0, s)(
        in.data, (int64_t)in.ldn, in.c, in.h, in.w, out.data, (int64_t)out.ldn, out.n, out.h, out.w, k, stride, pad);
    return (int)cudaGetLastError();
}

/* One block per plane (blockIdx.x = channel, blockIdx.y = image): partial sums in double, then a
 * pairwise reduction in shared memory. */
__global__ void __launch_bounds__(AVGPOOL_THREADS)
global_avgpool_kernel(const float *__restrict__ d_in, int64_t in_ldn, int H, int W, float *__restrict__ d_out,
                      int64_t out_ldn)
{
    DL_SHARED(double, partial, [AVGPOOL_THREADS]);
    const int t = threadIdx.x, c = blockIdx.x, n = blockIdx.y;
    const int64_t hw = (int64_t)H * W;
    partial[t] = avgpool_partial(d_in + offset_nchw(in_ldn, H, W, n, c, 0, 0), hw, t);
    for (int half = AVGPOOL_THREADS / 2; half > 0; half /= 2) {
        __syncthreads(); /* the partial sums of the previous step are written */
        avgpool_reduce_step(partial, half, t);
    }
    if (t == 0) d_out[(int64_t)n * out_ldn + c] = (float)(partial[0] / (double)hw);
}

extern "C" int global_avgpool_cuda(tensor in, tensor out, dl_stream s)
{
    if (out.n != in.n || out.c != in.c || out.h != 1 || out.w != 1 || in.h < 1 || in.w < 1)
        return (int)cudaErrorInvalidValue;
    if (in.n == 0 || in.c == 0) return (int)cudaSuccess;
    for (int n0 = 0; n0 < in.n; n0 += 65535) {
        const dim3 grid((unsigned)in.c, (unsigned)(in.n - n0 < 65535 ? in.n - n0 : 65535));
        DL_LAUNCH(global_avgpool_kernel, grid, AVGPOOL_THREADS, 0, s)(in.data + (size_t)n0 * in.ldn, (int64_t)in.ldn,
                                                                      in.h, in.w, out.data + (size_t)n0 * out.ldn,
                                                                      (int64_t)out.ldn);
    }
    return (int)cudaGetLastError();
}
