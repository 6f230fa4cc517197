/*
 * resize.cu - bilinear resize (align_corners=False, PyTorch's F.interpolate) on the GPU: one
 * thread per output element, through resize_bilinear_at (cuda_index.h), which calls the same
 * resize_bilinear_coord as the CPU. Used for ASPP's pooled 1x1 map (a broadcast into its channel
 * slice of the concatenation), the logits back to the input size, and by callers for the
 * probability map at full resolution.
 */
#include <cuda_runtime.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "layers_cuda.h"

enum { RESIZE_THREADS = 256 };

__global__ void resize_bilinear_kernel(const float *__restrict__ d_in, int64_t in_ldn, int h, int w,
                                       float *__restrict__ d_out, int64_t out_ldn, int N, int C, int H, int W)
{
    const int64_t total = (int64_t)N * C * H * W;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int n, c, oy, ox;
        split_nchw(e, C, H, W, &n, &c, &oy, &ox);
        const float *plane = d_in + offset_nchw(in_ldn, h, w, n, c, 0, 0);
        d_out[offset_nchw(out_ldn, H, W, n, c, oy, ox)] = resize_bilinear_at(plane, h, w, H, W, oy, ox);
    }
}

extern "C" int resize_bilinear_cuda(tensor in, tensor out, dl_stream s)
{
    if (out.n != in.n || out.c != in.c || in.h < 1 || in.w < 1 || out.h < 1 || out.w < 1)
        return (int)cudaErrorInvalidValue;
    const int64_t total = (int64_t)out.n * out.c * out.h * out.w;
    if (total == 0) return (int)cudaSuccess;
    DL_LAUNCH(resize_bilinear_kernel, grid_blocks(total, RESIZE_THREADS), RESIZE_THREADS, 0, s)(
        in.data, (int64_t)in.ldn, in.h, in.w, out.data, (int64_t)out.ldn, out.n, out.c, out.h, out.w);
    return (int)cudaGetLastError();
}
