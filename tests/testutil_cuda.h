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
#include <string.h>

#include "cuda_util.h"
#include "deeplab.h"
#include "layers.h"
#ifdef DL_EMU
#include "emu.h"
#endif

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

/* Every GPU case runs under two schedules, and the tests require the same bytes from both: on the
 * emulated GPU the second draws another order of threads and blocks (emu.h), so that a race
 * between threads shows as a difference; on a GPU it is a second run, which must be as
 * deterministic. gpu_schedule(1) switches to the second, gpu_schedule(0) back. */
static inline void gpu_schedule(int second)
{
#ifdef DL_EMU
    static unsigned long long first;
    if (second) first = dl_emu_seed();
    dl_emu_set_seed(second ? first + 1 : first);
#else
    (void)second;
#endif
}

static int schedule_cases, schedule_differ;

/* Counts a case whose two runs gave a and b; prints the ones that differ. */
static inline void same_bytes(const char *what, const void *a, const void *b, size_t bytes)
{
    schedule_cases++;
    if (memcmp(a, b, bytes) == 0) return;
    size_t i = 0;
    while (((const unsigned char *)a)[i] == ((const unsigned char *)b)[i]) i++;
    printf("FAIL %s: another schedule gives other bytes (first at byte %zu of %zu)\n", what, i, bytes);
    schedule_differ++;
}

/* The verdict on all of them (a failure if any differed). */
static inline int schedules_verdict(void)
{
    printf("%s %d GPU cases under a second schedule: %d gave other bytes\n", schedule_differ ? "FAIL" : "ok  ",
           schedule_cases, schedule_differ);
    return schedule_differ != 0;
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

/* A convolution of conv_check.h on the device: copies of the case's host buffers (the output
 * with its poison and sentinels, `wide` channels) and the views a launcher takes. */
typedef struct conv_dev {
    conv2d L;                 /* weight and bias on the device */
    tensor in, res, out;      /* out: channels [c0, c0 + OC) of the wide output */
    float *d_x, *d_w, *d_b, *d_r, *d_out;
    size_t out_n;             /* floats of the wide output */
} conv_dev;

static inline conv_dev conv_dev_upload(const conv2d *L, tensor in, const tensor *residual, const float *out, int wide,
                                       int c0)
{
    conv_dev d = {.L = *L};
    const int OH = conv_out_size(in.h, L->KH, L->p.stride, L->p.pad, L->p.dilation);
    const int OW = conv_out_size(in.w, L->KW, L->p.stride, L->p.pad, L->p.dilation);
    const size_t hw = (size_t)OH * OW;
    d.out_n = (size_t)in.n * wide * hw;
    d.d_x = dev_upload(in.data, (size_t)in.n * in.c * in.h * in.w);
    d.d_w = dev_upload(L->weight, (size_t)L->OC * L->C * L->KH * L->KW);
    d.d_b = L->bias ? dev_upload(L->bias, (size_t)L->OC) : NULL;
    d.d_r = residual ? dev_upload(residual->data, (size_t)in.n * L->OC * hw) : NULL;
    d.d_out = dev_upload(out, d.out_n);
    d.L.weight = d.d_w;
    d.L.bias = d.d_b;
    d.in = tensor_make(d.d_x, in.n, in.c, in.h, in.w);
    d.res = tensor_make(d.d_r, in.n, L->OC, OH, OW);
    d.out = (tensor){d.d_out + (size_t)c0 * hw, in.n, L->OC, OH, OW, (size_t)wide * hw};
    return d;
}

/* Downloads the wide output into out and frees the device copies. */
static inline void conv_dev_finish(conv_dev *d, float *out)
{
    dev_download(out, d->d_out, d->out_n);
    dl_cuda_release(d->d_x), dl_cuda_release(d->d_w), dl_cuda_release(d->d_b), dl_cuda_release(d->d_r);
    dl_cuda_release(d->d_out);
}

#endif
