/*
 * conv_check.h - the convolution cases every implementation is tested on, and the one check.
 *
 * Implementations: the fast CPU path with each instruction set (test_layers_fast.c), the CUDA
 * kernels (test_cuda_layers.c), their index arithmetic run on the CPU (test_cuda_index.c) and the
 * cuDNN backend in fp32 and tf32 (test_cuda_cudnn.c). Each is a conv_impl: a function that runs
 * one convolution on host buffers, however it likes (layout changes, uploads, searches). For
 * every case conv_check makes the inputs, computes the definition once (conv2d_naive, in double),
 * and for every implementation poisons the output (NaN in the channels it must write, a
 * sentinel in the channels around a channel slice), runs it and compares:
 *     |got - ref| <= abs_tol * scale + rel_tol * |ref|   (testutil.h's check by default)
 * and nothing outside the slice may change. The worst element is printed; a failure counts.
 *
 * A new shape is one line in conv_cases[]; a new backend is one conv_impl.
 */
#ifndef DL_CONV_CHECK_H
#define DL_CONV_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "testutil.h"

typedef struct conv_case {
    int N, C, H, W, OC, k, stride, dilation, relu, residual, slice;
    int pad;     /* 0: "same" padding, k / 2 * dilation */
    int no_bias; /* 1: the convolution has no bias */
} conv_case;

/* The shapes DeepLabV3 uses and awkward ones: channel counts that are not multiples of 32 or of
 * a tile, K not a multiple of 16, partial micro-tiles, batches whose tiles straddle two images,
 * ASPP rates where whole taps fall in the padding, outputs into channel slices, residuals. */
static const conv_case conv_cases[] = {
    /* N, C, H, W, OC, k, stride, dilation, relu, residual, slice, pad, no_bias */
    {1, 3, 33, 47, 64, 7, 2, 1, 1, 0, 0, 0, 0},     /* the stem, odd map: all taps in one block */
    {2, 3, 19, 21, 70, 7, 2, 1, 1, 0, 1, 0, 0},     /* stem, batch 2, OC past one tile, into a slice */
    {2, 3, 65, 65, 70, 7, 2, 1, 1, 0, 1, 0, 0},     /* stem, batch 2, a bigger map, into a slice */
    {1, 3, 520, 520, 64, 7, 2, 1, 1, 0, 0, 0, 0},   /* the stem at the default size */
    {1, 64, 17, 13, 256, 1, 1, 1, 0, 0, 0, 0, 0},   /* 1x1 expansion */
    {1, 64, 17, 13, 130, 1, 1, 1, 0, 0, 0, 0, 0},   /* 1x1, pixels and OC not tile multiples */
    {2, 45, 9, 11, 21, 1, 1, 1, 0, 1, 0, 0, 0},     /* K not a multiple of 16, residual, batch */
    {2, 300, 9, 11, 21, 1, 1, 1, 0, 0, 1, 0, 0},    /* K over a block, 21 classes, batch, slice */
    {1, 256, 65, 65, 256, 1, 1, 1, 1, 1, 0, 0, 0},  /* a bottleneck's conv3 at 520x520's map */
    {2, 50, 33, 47, 129, 1, 1, 1, 1, 1, 1, 0, 0},   /* residual and slice together */
    {3, 600, 1, 1, 130, 1, 1, 1, 1, 0, 0, 0, 0},    /* the image-pooling conv on a 1x1 map, N=3 */
    {3, 129, 5, 7, 131, 1, 2, 1, 0, 1, 0, 0, 0},    /* strided 1x1 (downsample), residual, N=3 */
    {3, 29, 5, 7, 67, 1, 2, 1, 0, 1, 0, 0, 0},      /* strided 1x1, small K, residual, N=3 */
    {2, 64, 33, 47, 128, 1, 2, 1, 0, 0, 0, 0, 0},   /* layer2.0.downsample: 1x1/2, no ReLU */
    {2, 64, 5, 4, 40, 1, 1, 1, 1, 1, 0, 13, 0},     /* padding beyond reach: tiles no tap reaches */
    {1, 37, 15, 16, 70, 3, 2, 1, 1, 0, 0, 0, 0},    /* small C, 3x3 stride 2 (layer2.0.conv2) */
    {1, 20, 11, 9, 12, 3, 1, 1, 1, 0, 0, 0, 1},     /* no bias (ReLU only) */
    {1, 64, 200, 3, 64, 3, 1, 1, 1, 0, 0, 0, 0},    /* more pixels than one task block */
    {1, 520, 20, 20, 100, 3, 1, 1, 1, 0, 0, 0, 0},  /* K = 4680 */
    {1, 64, 13, 17, 40, 3, 1, 2, 1, 1, 0, 0, 0},    /* per-tap blocks, dilation 2, residual */
    {2, 33, 13, 17, 40, 3, 1, 2, 1, 1, 0, 0, 0},    /* dilation 2 + residual, odd C, batch 2 */
    {1, 45, 65, 65, 33, 3, 1, 2, 1, 1, 0, 0, 0},    /* 65x65, dilation 2, residual; C, OC not multiples of 32 */
    {1, 20, 65, 65, 17, 3, 1, 2, 1, 1, 0, 0, 0},    /* 65x65: P = 4225 spans 67 tiles */
    {1, 70, 65, 65, 67, 3, 1, 4, 1, 0, 0, 0, 0},    /* dilation 4 (layer4) */
    {1, 19, 13, 17, 9, 3, 1, 12, 1, 0, 1, 0, 0},    /* ASPP rate 12 into a channel slice */
    {1, 128, 13, 17, 33, 3, 1, 12, 1, 0, 1, 0, 0},  /* ASPP rate 12: some taps skipped per block */
    {2, 19, 13, 17, 9, 3, 1, 24, 1, 1, 1, 0, 0},    /* rate 24 > map: only the centre tap; residual, slice */
    {2, 96, 25, 30, 9, 3, 1, 24, 1, 0, 1, 0, 0},    /* rate 24, batch: tiles straddle images */
    {1, 23, 65, 3, 5, 3, 1, 36, 0, 0, 0, 0, 0},     /* rate 36, a tall thin map, no ReLU */
    {1, 256, 65, 3, 5, 3, 1, 36, 0, 0, 0, 0, 0},    /* rate 36 on a tall thin map, K over a block */
    {1, 128, 65, 65, 96, 3, 1, 36, 1, 0, 1, 0, 0},  /* rate 36 on the real map size, into a slice */
    {1, 7, 1, 1, 6, 3, 1, 4, 1, 0, 0, 0, 0},        /* 3x3 on a 1x1 map: only the centre tap */
    {1, 70, 1, 1, 6, 3, 1, 4, 1, 0, 0, 0, 0},       /* the same, more channels */
    {1, 600, 9, 10, 40, 3, 1, 3, 0, 1, 0, 0, 0},    /* C over 512: two channel blocks for Winograd; residual */
    {2, 521, 7, 9, 40, 3, 2, 1, 1, 1, 0, 0, 0},     /* odd C over 512, 3x3/2, batch 2: bf16's padded rounded copy */
    {1, 48, 11, 12, 20, 3, 1, 2, 1, 0, 0, 1, 0},    /* padding 1 at dilation 2: a smaller output */
    {2, 256, 17, 16, 64, 3, 1, 2, 1, 0, 1, 0, 0},   /* the layer3 conv2 shape, small, batch 2, slice */
};
enum { CONV_CASES = sizeof conv_cases / sizeof conv_cases[0] };

#define CONV_SENTINEL 12345.0f

typedef struct conv_impl {
    const char *name; /* printed before each case: "avx512", "cuda", "cudnn tf32", ... */
    /* Runs conv(L) (host weights and bias) on host buffers: in (NCHW), residual (NULL or
     * N x OC x OH x OW) and out, N images of `wide` channels of OH x OW, poisoned; the result goes
     * into channels [c0, c0 + L->OC) of out and nothing else of out may change. Returns 0, 1 when
     * it does not take such a convolution (a Winograd kernel and a 1x1: the case is not counted),
     * or -1 after printing what went wrong (the case then fails). */
    int (*run)(void *ctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0);
    void *ctx;
    double abs_tol, rel_tol; /* both 0: check's 1e-5, 1e-4 */
    double max_macs;         /* cases with more multiply-adds are left out (slow emulations); 0: none */
} conv_impl;

/* The output map of conv(L) on in. */
static inline void conv_out_shape(const conv2d *L, tensor in, int *OH, int *OW)
{
    *OH = conv_out_size(in.h, L->KH, L->p.stride, L->p.pad, L->p.dilation);
    *OW = conv_out_size(in.w, L->KW, L->p.stride, L->p.pad, L->p.dilation);
}

static inline double conv_case_macs(const conv_case *t)
{
    const int pad = t->pad ? t->pad : t->k / 2 * t->dilation;
    const int OH = conv_out_size(t->H, t->k, t->stride, pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, pad, t->dilation);
    return (double)t->N * t->OC * OH * OW * t->C * t->k * t->k;
}

/* One case on every implementation given. */
static void conv_check(const conv_case *t, const conv_impl *impls, int nimpls)
{
    int wanted = 0;
    const double macs = conv_case_macs(t);
    for (int i = 0; i < nimpls; i++) wanted += !impls[i].max_macs || macs <= impls[i].max_macs;
    if (!wanted) return;
    conv2d L = {.C = t->C, .OC = t->OC, .KH = t->k, .KW = t->k,
                .p = {t->stride, t->pad ? t->pad : t->k / 2 * t->dilation, t->dilation}, .relu = t->relu};
    const int OH = conv_out_size(t->H, t->k, t->stride, L.p.pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, L.p.pad, t->dilation);
    const size_t in_n = (size_t)t->N * t->C * t->H * t->W, hw = (size_t)OH * OW, n_out = (size_t)t->N * t->OC * hw;
    float *x = randn(in_n), *w = randn((size_t)t->OC * t->C * t->k * t->k);
    float *b = t->no_bias ? NULL : randn((size_t)t->OC), *r = t->residual ? randn(n_out) : NULL;
    L.weight = w;
    L.bias = b;
    const tensor in = tensor_make(x, t->N, t->C, t->H, t->W), res = tensor_make(r, t->N, t->OC, OH, OW);

    float *ref_f = poisoned(n_out);
    conv2d_naive(&L, in, r ? &res : NULL, tensor_make(ref_f, t->N, t->OC, OH, OW));
    double *ref = malloc(n_out * sizeof *ref);
    for (size_t i = 0; i < n_out; i++) ref[i] = ref_f[i];

    const int wide = t->slice ? t->OC + 5 : t->OC, c0 = t->slice ? 3 : 0;
    const size_t out_n = (size_t)t->N * wide * hw;
    float *out = malloc(out_n * sizeof *out), *got = malloc(n_out * sizeof *got);
    for (int i = 0; i < nimpls; i++) {
        const conv_impl *im = &impls[i];
        if (im->max_macs && macs > im->max_macs) continue;
        for (int n = 0; n < t->N; n++)
            for (int c = 0; c < wide; c++)
                for (size_t q = 0; q < hw; q++)
                    out[((size_t)n * wide + c) * hw + q] = c >= c0 && c < c0 + t->OC ? NAN : CONV_SENTINEL;
        char what[200];
        snprintf(what, sizeof what, "%s conv N%d %dx%dx%d -> %d k%d s%d d%d p%d%s%s%s%s", im->name, t->N, t->C, t->H,
                 t->W, t->OC, t->k, t->stride, t->dilation, L.p.pad, t->relu ? " relu" : "", t->residual ? " +res" : "",
                 t->slice ? " slice" : "", t->no_bias ? " no-bias" : "");
        const int rc = im->run(im->ctx, &L, in, r ? &res : NULL, out, wide, c0);
        if (rc > 0) continue; /* the implementation is not made for this shape */
        if (rc != 0) {
            printf("FAIL %s: did not run\n", what);
            failures++;
            continue;
        }
        int touched = 0;
        for (int n = 0; n < t->N; n++)
            for (int c = 0; c < wide; c++)
                for (size_t q = 0; q < hw; q++) {
                    const float v = out[((size_t)n * wide + c) * hw + q];
                    if (c < c0 || c >= c0 + t->OC) touched += v != CONV_SENTINEL;
                    else got[((size_t)n * t->OC + c - c0) * hw + q] = v;
                }
        if (im->abs_tol || im->rel_tol) check_tol(what, got, ref, n_out, im->abs_tol, im->rel_tol);
        else check(what, got, ref, n_out);
        if (touched) {
            printf("FAIL %s: %d elements outside the output slice were written\n", what, touched);
            failures++;
        }
    }
    free(x), free(w), free(b), free(r), free(ref_f), free(ref), free(out), free(got);
}

/* Every case of conv_cases[] on every implementation given. */
static void conv_check_all(const conv_impl *impls, int nimpls)
{
    for (int i = 0; i < CONV_CASES; i++) conv_check(&conv_cases[i], impls, nimpls);
}

#endif
