/*
 * testutil_cuda.h - what the CUDA layer tests share (on top of testutil.h): device buffers that
 * end the test when the CUDA plumbing itself fails (the layer results mean nothing then), and
 * the "slice" buffers that check a kernel writes its channel range of a wider tensor and nothing
 * outside it. Include only where DL_HAVE_CUDA is defined.
 */
#ifndef DL_TESTUTIL_CUDA_H
#define DL_TESTUTIL_CUDA_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_util.h"
#include "deeplab.h"

static inline void must(dl_status s, const char *what)
{
    if (s != DL_OK) {
        printf("FAIL %s: %s\n", what, dl_last_error());
        exit(1);
    }
}

static inline void *dev_alloc(size_t bytes)
{
    void *d;
    must(dl_cuda_malloc(&d, bytes, "a test buffer"), "cudaMalloc");
    return d;
}

static inline float *dev_upload(const float *h, size_t n)
{
    float *d = dev_alloc(n * sizeof(float));
    must(dl_cuda_upload(d, h, n * sizeof(float)), "upload");
    return d;
}

static inline void dev_download(float *h, const float *d, size_t n)
{
    must(dl_cuda_download(h, d, n * sizeof(float)), "download");
}

#define SLICE_SENTINEL 12345.0f

/* A host buffer of N x wide x hw: the sentinel everywhere, NaN in channels [c0, c0 + c). */
static inline float *slice_buffer(int N, int wide, int c0, int c, size_t hw)
{
    float *b = malloc(sizeof(float) * N * wide * hw);
    for (size_t i = 0; i < (size_t)N * wide * hw; i++) b[i] = SLICE_SENTINEL;
    for (int n = 0; n < N; n++)
        for (size_t i = 0; i < (size_t)c * hw; i++) b[((size_t)n * wide + c0) * hw + i] = NAN;
    return b;
}

/* Counts elements outside channels [c0, c0 + c) of an N x wide x hw buffer that changed from the
 * sentinel. */
static inline int touched_outside(const float *buf, int N, int wide, int c0, int c, size_t hw)
{
    int touched = 0;
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < wide; ch++) {
            if (ch >= c0 && ch < c0 + c) continue;
            for (size_t i = 0; i < hw; i++) touched += buf[((size_t)n * wide + ch) * hw + i] != SLICE_SENTINEL;
        }
    return touched;
}

#endif
