/*
 * cuda_check.h - error checking for the CUDA sources (C++ only; C code uses cuda_util.h).
 *
 *     CUDA_CHECK(cudaMalloc(&p, bytes));   // on failure: returns a dl_status from the function
 *
 * The message names the failing statement, the file and the line:
 *     "CUDA error: out of memory in cudaMalloc(&p, bytes) (engine/forward_cuda.cu:123)"
 * cudaErrorMemoryAllocation maps to DL_ENOMEM, everything else to DL_EINTERNAL.
 */
#ifndef DL_CUDA_CHECK_H
#define DL_CUDA_CHECK_H

#include <cuda_runtime.h>

#include "deeplab.h"

dl_status dl_cuda_check_failed(cudaError_t e, const char *stmt, const char *file, int line);

#define CUDA_CHECK(call)                                                              \
    do {                                                                              \
        const cudaError_t cuda_check_e_ = (call);                                     \
        if (cuda_check_e_ != cudaSuccess)                                             \
            return dl_cuda_check_failed(cuda_check_e_, #call, __FILE__, __LINE__);    \
    } while (0)

/* The status for a CUDA error code (DL_ENOMEM for allocations, else DL_EINTERNAL). */
static inline dl_status dl_cuda_status(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? DL_ENOMEM : DL_EINTERNAL;
}

#endif
