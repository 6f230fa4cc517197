/*
 * cuda_peak.cu - dl_cuda_peak_gflops: the GPU's multiply-add rate measured with the instruction
 * the kernels use (mma.sync of the precision; FFMA for fp32), as tests/tool_peak.c measures the
 * CPU's. Eight blocks of 256 threads per multiprocessor (full occupancy), eight independent
 * accumulator chains per warp, operands in registers: nothing but the issue rate of the tensor
 * cores is timed. The iterations are scaled until one launch takes about 50 ms; the best of three
 * such launches (CUDA events) is the peak. Measured once per precision and process.
 *
 * On the emulated GPU a token launch runs (2 blocks, 2 iterations): the number is the emulator's
 * and means nothing, as every time it gives (dl_cuda_label says so).
 */
#include <cuda_runtime.h>

#include "cuda_device.h"
#include "deeplab.h"
#include "tc.h"

static double peak_of(dl_precision precision)
{
    char why[256];
    if (dl_cuda_probe(why, sizeof why) <= 0) return 0;
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms < 1) return 0;
    const int fp32 = precision == DL_PRECISION_FP32, emulated = dl_cuda_emulated();
    const tc_precision p = precision == DL_PRECISION_TF32 ? TC_TF32 : precision == DL_PRECISION_FP16 ? TC_FP16 : TC_BF16;
    const int blocks = emulated ? 2 : 8 * sms;
    cudaStream_t s = NULL;
    cudaEvent_t a = NULL, b = NULL;
    float *d_out = NULL;
    double best = 0;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess &&
        cudaEventCreate(&b) == cudaSuccess && cudaMalloc((void **)&d_out, sizeof(float) * blocks) == cudaSuccess) {
        int iters = emulated ? 2 : 256;
        for (int run = 0; run < (emulated ? 1 : 8); run++) {
            cudaEventRecord(a, s);
            const double macs = mma_peak_launch(p, fp32, blocks, iters, d_out, s);
            cudaEventRecord(b, s);
            float ms = 0;
            if (cudaEventSynchronize(b) != cudaSuccess || cudaEventElapsedTime(&ms, a, b) != cudaSuccess) break;
            if (ms > 0 && 2 * macs / (1e-3 * ms) / 1e9 > best && (emulated || ms > 20)) best = 2 * macs / (1e-3 * ms) / 1e9;
            if (!emulated && ms < 40) iters = (int)(iters * (ms > 0.5 ? 50.0 / ms : 100.0)); /* towards 50 ms */
        }
    }
    cudaGetLastError();
    if (d_out) (void)cudaFree(d_out);
    if (a) (void)cudaEventDestroy(a);
    if (b) (void)cudaEventDestroy(b);
    if (s) (void)cudaStreamDestroy(s);
    return best;
}

extern "C" double dl_cuda_peak_gflops(dl_precision precision)
{
    static double cached[4];
    const int i = (int)precision;
    if (i < 0 || i > 3) return 0;
    if (cached[i] <= 0) cached[i] = peak_of(precision);
    return cached[i];
}
