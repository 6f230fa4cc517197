/* cuda_util.cu - checked CUDA calls for C callers (cuda_util.h) and CUDA_CHECK's reporter. */
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "cuda_util.h"
#include "status.h"

dl_status dl_cuda_check_failed(cudaError_t e, const char *stmt, const char *file, int line)
{
    cudaGetLastError(); /* clear a non-sticky error (a failed allocation) so later calls start clean */
    return dl_fail(dl_cuda_status(e), "CUDA error: %s in %s (%s:%d)", cudaGetErrorString(e), stmt, file, line);
}

extern "C" dl_status dl_cuda_malloc(void **d_ptr, size_t bytes, const char *what)
{
    *d_ptr = NULL;
    const cudaError_t e = cudaMalloc(d_ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *d_ptr = NULL;
        return dl_fail(dl_cuda_status(e), "CUDA error allocating %.1f MB for %s: %s", (double)bytes / (1 << 20), what,
                       cudaGetErrorString(e));
    }
    return DL_OK;
}

extern "C" void dl_cuda_release(void *d_ptr)
{
    if (d_ptr) cudaFree(d_ptr);
}

extern "C" dl_status dl_cuda_upload(void *d_dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
    return DL_OK;
}

extern "C" dl_status dl_cuda_download(void *dst, const void *d_src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
    return DL_OK;
}

extern "C" dl_status dl_cuda_memset(void *d_dst, int byte, size_t bytes)
{
    CUDA_CHECK(cudaMemset(d_dst, byte, bytes));
    return DL_OK;
}

extern "C" dl_status dl_cuda_finish(int err, const char *what)
{
    cudaError_t e = (cudaError_t)err;
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        cudaGetLastError();
        return dl_fail(dl_cuda_status(e), "CUDA error in %s: %s", what, cudaGetErrorString(e));
    }
    return DL_OK;
}

extern "C" const char *dl_cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }
