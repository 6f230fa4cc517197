/* cuda_device.cu - is there a usable CUDA GPU? Used by --device auto|cuda. */
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_device.h"

extern "C" int dl_cuda_probe(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (e == cudaErrorInsufficientDriver)
            snprintf(why, why_len, "no NVIDIA driver, or one older than this CUDA %d.%d build needs",
                     CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else if (e == cudaErrorNoDevice)
            snprintf(why, why_len, "no CUDA device found");
        else
            snprintf(why, why_len, "%s", cudaGetErrorString(e));
        cudaGetLastError(); /* clear the sticky error so later calls start clean */
        return 0;
    }
    if (n == 0) snprintf(why, why_len, "no CUDA device found");
    return n;
}

extern "C" int dl_cuda_device_name(int dev, char *name, size_t len)
{
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) return -1;
    snprintf(name, len, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

#ifdef DL_EMU
extern "C" int dl_cuda_emulated(void) { return 1; }
extern "C" const char *dl_cuda_label(void)
{
    return "cuda (the emulated GPU: the CUDA code run on this CPU; its times are not a GPU's)";
}
#else
extern "C" int dl_cuda_emulated(void) { return 0; }
extern "C" const char *dl_cuda_label(void) { return "cuda"; }
#endif
