/*
 * testutil_kernel.h - what the tests with kernels of their own (tests/test_cuda_*.cu, C++ built by
 * nvcc or for the emulated GPU) share besides testutil.h: a check with a detail, and the skip
 * where there is no device.
 */
#ifndef DL_TESTUTIL_KERNEL_H
#define DL_TESTUTIL_KERNEL_H

#include <cuda_runtime.h>
#include <stdio.h>

#include "testutil.h"

static void ok(int cond, const char *what, const char *detail = "")
{
    printf("%s %s%s%s\n", cond ? "ok  " : "FAIL", what, *detail ? ": " : "", detail);
    if (!cond) failures++;
}

/* 1 when there is a device to test; else prints the SKIP line (the caller exits 77). */
static int have_device(void)
{
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n > 0) return 1;
    printf("SKIP: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return 0;
}

#endif
