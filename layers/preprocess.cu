/*
 * preprocess.cu - the network input on the GPU: RGB8 pixels (interleaved, as decoded) to
 * normalised float32 planes, (v / 255 - mean) / std per channel, bit for bit what dl_preprocess
 * computes on the CPU (normalise_u8 in cuda_index.h). The resize to the network size stays on the
 * CPU (engine/resample.c, Pillow's filter).
 */
#include <cuda_runtime.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "layers_cuda.h"

enum { PREPROCESS_THREADS = 256 };

/* One thread per pixel: reads its 3 bytes, writes one float to each of the 3 planes. */
__global__ void normalise_rgb8_kernel(const uint8_t *__restrict__ d_rgb, int N, int H, int W, float *__restrict__ d_out,
                                      int64_t out_ldn)
{
    const int64_t hw = (int64_t)H * W, total = N * hw;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / hw, i = e - n * hw;
        const uint8_t *px = d_rgb + 3 * e;
        float *o = d_out + n * out_ldn + i;
        for (int ch = 0; ch < 3; ch++) o[ch * hw] = normalise_u8(px[ch], ch);
    }
}

extern "C" int normalise_rgb8_cuda(const uint8_t *rgb, int n, int h, int w, tensor out, dl_stream s)
{
    if (out.n != n || out.c != 3 || out.h != h || out.w != w || n < 0 || h < 1 || w < 1)
        return (int)cudaErrorInvalidValue;
    const int64_t total = (int64_t)n * h * w;
    if (total == 0) return (int)cudaSuccess;
    DL_LAUNCH(normalise_rgb8_kernel, grid_blocks(total, PREPROCESS_THREADS), PREPROCESS_THREADS, 0, s)(
        rgb, n, h, w, out.data, (int64_t)out.ldn);
    return (int)cudaGetLastError();
}
