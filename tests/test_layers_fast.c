/*
 * test_layers_fast.c - the fast CPU path (NHWC, packed weights, vector micro-kernels) against
 * the plain-C references, on odd shapes, with every instruction set this CPU has.
 *
 * The convolution is compared with conv2d_naive (the definition, accumulated in double) on the
 * shapes DeepLabV3 uses and on awkward ones: channel counts that are not multiples of 32,
 * pixel counts that leave partial micro-tiles, batches whose tiles straddle two images, ASPP
 * dilations where whole taps fall in the padding (and are skipped), outputs into channel
 * slices, residuals. Outputs are poisoned with NaN; slice neighbours must stay untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "layers_fast.h"
#include "testutil.h"
#include "threadpool.h"

typedef struct conv_case {
    int N, C, H, W, OC, k, stride, dilation, relu, residual, slice;
    int pad; /* 0: "same" padding, k / 2 * dilation */
} conv_case;

static void test_conv(const conv_case *t, const char *isa, dl_pool *pool)
{
    conv2d L = {.C = t->C, .OC = t->OC, .KH = t->k, .KW = t->k,
                .p = {t->stride, t->pad ? t->pad : t->k / 2 * t->dilation, t->dilation}, .relu = t->relu};
    const int OH = conv_out_size(t->H, t->k, t->stride, L.p.pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, L.p.pad, t->dilation);
    const size_t hw = (size_t)OH * OW, n_out = (size_t)t->N * t->OC * hw;
    float *x = randn((size_t)t->N * t->C * t->H * t->W);
    float *w = randn((size_t)t->OC * t->C * t->k * t->k), *b = randn((size_t)t->OC);
    float *r = t->residual ? randn(n_out) : NULL;
    L.weight = w;
    L.bias = b;

    /* reference: conv2d_naive in NCHW */
    float *ref_f = poisoned(n_out);
    tensor res_t = tensor_make(r, t->N, t->OC, OH, OW);
    conv2d_naive(&L, tensor_make(x, t->N, t->C, t->H, t->W), r ? &res_t : NULL, tensor_make(ref_f, t->N, t->OC, OH, OW));
    double *ref = malloc(n_out * sizeof *ref);

    /* fast: NHWC input, residual and output (the output as channels [3, 3 + OC) of OC + 5) */
    conv2d_packed P;
    conv2d_pack(&L, &P);
    float *xh = malloc(sizeof(float) * t->N * t->C * t->H * t->W);
    nchw_to_nhwc(tensor_make(x, t->N, t->C, t->H, t->W), nhwc_make(xh, t->N, t->H, t->W, t->C));
    float *rh = r ? malloc(n_out * sizeof *rh) : NULL;
    if (r) nchw_to_nhwc(res_t, nhwc_make(rh, t->N, OH, OW, t->OC));
    nhwc rv = nhwc_make(rh, t->N, OH, OW, t->OC);
    const int wide = t->slice ? t->OC + 5 : t->OC, c0 = t->slice ? 3 : 0;
    float *out = malloc(sizeof(float) * t->N * hw * wide);
    for (size_t i = 0; i < t->N * hw * wide; i++) out[i] = (int)(i % wide) - c0 >= 0 && (int)(i % wide) - c0 < t->OC ? NAN : 12345.0f;
    nhwc o = {out + c0, t->N, OH, OW, t->OC, (size_t)wide, (size_t)wide * hw};
    float *scratch = malloc(sizeof(float) * conv2d_fast_scratch_floats(&P) * dl_pool_threads(pool) + 64);
    float *aligned = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    conv2d_fast(&P, nhwc_make(xh, t->N, t->H, t->W, t->C), r ? &rv : NULL, o, aligned, pool);

    float *got = malloc(n_out * sizeof *got);
    int touched = 0;
    for (int n = 0; n < t->N; n++)
        for (size_t q = 0; q < hw; q++)
            for (int c = 0; c < wide; c++) {
                const float v = out[(n * hw + q) * wide + c];
                if (c < c0 || c >= c0 + t->OC) touched += v != 12345.0f;
                else got[((size_t)n * t->OC + c - c0) * hw + q] = v;
            }
    for (size_t i = 0; i < n_out; i++) ref[i] = ref_f[i];
    char what[160];
    snprintf(what, sizeof what, "%-7s conv N%d %dx%dx%d -> %d k%d s%d d%d p%d%s%s%s", isa, t->N, t->C, t->H, t->W,
             t->OC, t->k, t->stride, t->dilation, L.p.pad, t->relu ? " relu" : "", t->residual ? " +res" : "",
             t->slice ? " slice" : "");
    check(what, got, ref, n_out);
    if (touched) {
        printf("FAIL %s: %d elements outside the output slice were written\n", what, touched);
        failures++;
    }
    conv2d_packed_free(&P);
    free(x); free(w); free(b); free(r); free(ref_f); free(ref); free(xh); free(rh); free(out);
    free(scratch); free(got);
}

static void test_others(dl_pool *pool)
{
    const int N = 2, C = 37, H = 13, W = 9;
    float *x = randn((size_t)N * C * H * W), *xh = malloc(sizeof(float) * N * C * H * W);
    nchw_to_nhwc(tensor_make(x, N, C, H, W), nhwc_make(xh, N, H, W, C));
    /* layout round trip is exact */
    float *back = poisoned((size_t)N * C * H * W);
    nhwc_to_nchw(nhwc_make(xh, N, H, W, C), tensor_make(back, N, C, H, W));
    double *ref = malloc(sizeof(double) * N * C * 64 * 64);
    for (int i = 0; i < N * C * H * W; i++) ref[i] = x[i];
    check("NCHW -> NHWC -> NCHW", back, ref, (size_t)N * C * H * W);

    /* max pool, 3x3/2 pad 1 */
    const int OH = conv_out_size(H, 3, 2, 1, 1), OW = conv_out_size(W, 3, 2, 1, 1);
    float *mp = poisoned((size_t)N * C * OH * OW), *mh = poisoned((size_t)N * C * OH * OW);
    maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(mp, N, C, OH, OW), pool);
    maxpool2d_nhwc(nhwc_make(xh, N, H, W, C), 3, 2, 1, nhwc_make(mh, N, OH, OW, C), pool);
    nhwc_to_nchw(nhwc_make(mh, N, OH, OW, C), tensor_make(back, N, C, OH, OW));
    for (int i = 0; i < N * C * OH * OW; i++) ref[i] = mp[i];
    check("maxpool NHWC == NCHW reference", back, ref, (size_t)N * C * OH * OW);

    /* global average pool */
    float *ap = poisoned((size_t)N * C), *ah = poisoned((size_t)N * C);
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(ap, N, C, 1, 1));
    global_avgpool_nhwc(nhwc_make(xh, N, H, W, C), nhwc_make(ah, N, 1, 1, C));
    for (int i = 0; i < N * C; i++) ref[i] = ap[i];
    check("global average pool NHWC == NCHW reference", ah, ref, (size_t)N * C);

    /* bilinear resize, up and from 1x1 (the ASPP broadcast), into a channel slice */
    const int sizes[2][2] = {{H, W}, {1, 1}};
    for (int s = 0; s < 2; s++) {
        const int h = sizes[s][0], w = sizes[s][1], RH = 31, RW = 64, wide = C + 4;
        float *src = s ? ap : x, *srch = s ? ah : xh;
        float *rs = poisoned((size_t)N * C * RH * RW), *rh = malloc(sizeof(float) * N * wide * RH * RW);
        resize_bilinear_cpu(tensor_make(src, N, C, h, w), tensor_make(rs, N, C, RH, RW), pool);
        for (size_t i = 0; i < (size_t)N * wide * RH * RW; i++) rh[i] = NAN;
        nhwc o = {rh + 4, N, RH, RW, C, (size_t)wide, (size_t)wide * RH * RW};
        resize_bilinear_nhwc(nhwc_make(srch, N, h, w, C), o, pool);
        float *g = poisoned((size_t)N * C * RH * RW);
        nhwc_to_nchw(o, tensor_make(g, N, C, RH, RW));
        for (int i = 0; i < N * C * RH * RW; i++) ref[i] = rs[i];
        check(s ? "resize 1x1 -> 31x64 NHWC slice == reference" : "resize 13x9 -> 31x64 NHWC slice == reference", g,
              ref, (size_t)N * C * RH * RW);
        free(rs); free(rh); free(g);
    }
    free(x); free(xh); free(back); free(ref); free(mp); free(mh); free(ap); free(ah);
}

int main(void)
{
    dl_pool *pool = dl_pool_create(2);
    const conv_case convs[] = {
        /* N  C    H   W   OC  k s d  relu res slice */
        {1, 3, 33, 47, 64, 7, 2, 1, 1, 0, 0, 0},      /* the stem: all taps in one block */
        {1, 64, 17, 13, 256, 1, 1, 1, 0, 0, 0, 0},    /* 1x1 expansion */
        {2, 300, 9, 11, 21, 1, 1, 1, 0, 0, 1, 0},     /* K over a block, 21 classes, batch, slice */
        {1, 37, 15, 16, 70, 3, 2, 1, 1, 0, 0, 0},     /* small C, 3x3 stride 2 */
        {1, 64, 13, 17, 40, 3, 1, 2, 1, 1, 0, 0},     /* per-tap blocks, dilation 2, residual */
        {1, 128, 13, 17, 33, 3, 1, 12, 1, 0, 1, 0},   /* ASPP rate 12: some taps skipped per block */
        {2, 96, 25, 30, 9, 3, 1, 24, 1, 0, 1, 0},     /* rate 24, batch: tiles straddle images */
        {1, 256, 65, 3, 5, 3, 1, 36, 0, 0, 0, 0},     /* rate 36 on a tall thin map */
        {1, 600, 1, 1, 130, 1, 1, 1, 1, 0, 0, 0},     /* the image-pooling conv on a 1x1 map */
        {1, 70, 1, 1, 6, 3, 1, 4, 1, 0, 0, 0},        /* 3x3 on a 1x1 map: only the centre tap */
        {3, 129, 5, 7, 131, 1, 2, 1, 0, 1, 0, 0},     /* strided 1x1 (downsample), residual, N=3 */
        {1, 64, 200, 3, 64, 3, 1, 1, 1, 0, 0, 0},     /* more pixels than one task block */
        {2, 64, 5, 4, 40, 1, 1, 1, 1, 1, 0, 13},      /* padding beyond reach: tiles no tap reaches */
    };
    const char *isas[] = {"avx512", "avx2", "generic"};
    for (int i = 0; i < 3; i++) {
        if (conv2d_fast_set_isa(isas[i]) != 0) {
            printf("note: this CPU has no %s; its micro-kernel is not tested here\n", isas[i]);
            continue;
        }
        for (size_t c = 0; c < sizeof convs / sizeof convs[0]; c++) test_conv(&convs[c], isas[i], pool);
    }
    test_others(pool);
    dl_pool_free(pool);
    return finish("fast-path");
}
