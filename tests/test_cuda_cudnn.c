/*
 * test_cuda_cudnn.c - the cudnn backend's convolutions (engine/cudnn_backend.h) against the
 * definition (conv2d_naive, in double), layer by layer, on odd shapes and on every route:
 *   cuBLAS:  1x1 stride 1 (bias only, + ReLU, + residual, into a channel slice, on a 1x1 map)
 *   cuDNN, fused (bias + ReLU [+ residual as z]):  the 7x7/2 stem, 3x3 of stride 1 and 2,
 *            dilations 2 to 36 (rates past the map), into a channel slice
 *   cuDNN + the epilogue pass:  no ReLU (the 1x1/2 downsample with and without residual), no bias
 * in fp32 (tolerance as test_cuda_layers.c: |got - ref| <= 1e-5 * scale + 1e-4 * |ref|) and in tf32
 * (inputs rounded to 10 mantissa bits, each product off by up to ~1e-3: 5e-3 * scale + 5e-3 * |ref|;
 * the worst error is printed as a fraction of the scale).
 * Each case: dl_dnn_prepare (the search writes the output), the output poisoned again with NaN
 * (and the channels around a slice with a sentinel), dl_dnn_conv, compare. Also: a shape seen
 * before reuses its choice, a re-prepared slot takes a new shape, and dl_dnn_conv refuses shapes
 * other than the prepared ones with a message naming the layer. Each case prints what cuDNN chose.
 *
 * Skips (exit 77, one line) when built without CUDA, without a usable GPU, or without cuDNN
 * (libcudnn.so.9 / libcublas.so.13 not found, or built without their headers).
 */
#include <stdio.h>

#ifndef DL_HAVE_CUDA
int main(void)
{
    printf("SKIP: built without CUDA (nvcc not found, or make CUDA=0)\n");
    return 77;
}
#else

#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "cuda_util.h"
#include "cudnn_backend.h"
#include "deeplab.h"
#include "layers.h"
#include "testutil.h"
#include "testutil_cuda.h"

static int quick;

typedef struct conv_case {
    int N, C, H, W, OC, k, stride, dilation, relu, residual, slice, bias;
} conv_case;

static void test_conv(dl_dnn *d, dl_precision precision, const conv_case *t)
{
    conv2d L = {.C = t->C, .OC = t->OC, .KH = t->k, .KW = t->k,
                .p = {t->stride, t->k / 2 * t->dilation, t->dilation}, .relu = t->relu};
    const int OH = conv_out_size(t->H, t->k, t->stride, L.p.pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, L.p.pad, t->dilation);
    const double macs = (double)t->N * t->OC * OH * OW * t->C * t->k * t->k;
    if (quick && macs > 5e7) return;
    const size_t in_n = (size_t)t->N * t->C * t->H * t->W, w_n = (size_t)t->OC * t->C * t->k * t->k;
    const size_t out_hw = (size_t)OH * OW, n_out = (size_t)t->N * t->OC * out_hw;
    float *x = randn(in_n), *w = randn(w_n), *b = t->bias ? randn((size_t)t->OC) : NULL;
    float *r = t->residual ? randn(n_out) : NULL;
    const int wide = t->slice ? t->OC + 5 : t->OC, c0 = t->slice ? 3 : 0;
    const size_t out_n = (size_t)t->N * wide * out_hw;
    float *out = slice_buffer(t->N, wide, c0, t->OC, out_hw);

    float *d_x = dev_upload(x, in_n), *d_w = dev_upload(w, w_n), *d_b = b ? dev_upload(b, (size_t)t->OC) : NULL;
    float *d_r = r ? dev_upload(r, n_out) : NULL, *d_out = dev_upload(out, out_n);
    conv2d dL = L;
    dL.weight = d_w;
    dL.bias = d_b;
    const tensor d_in = tensor_make(d_x, t->N, t->C, t->H, t->W), d_res = tensor_make(d_r, t->N, t->OC, OH, OW);
    const tensor d_o = {d_out + (size_t)c0 * out_hw, t->N, t->OC, OH, OW, (size_t)wide * out_hw};
    char what[200];
    snprintf(what, sizeof what, "%s N%d %dx%dx%d -> %d k%d s%d d%d%s%s%s%s", precision == DL_PRECISION_TF32 ? "tf32" : "fp32",
             t->N, t->C, t->H, t->W, t->OC, t->k, t->stride, t->dilation, t->relu ? " relu" : "",
             t->residual ? " +res" : "", t->slice ? " slice" : "", t->bias ? "" : " no-bias");
    must(dl_dnn_prepare(d, 0, what, &dL, d_in, r ? &d_res : NULL, d_o), what);
    must(dl_cuda_upload(d_out, out, out_n * sizeof(float)), "poison"); /* the search wrote it */
    must(dl_dnn_conv(d, 0, &dL, d_in, r ? &d_res : NULL, d_o), what);
    must(dl_cuda_finish(0, what), what);
    printf("      %s: %s\n", what, dl_dnn_slot_path(d, 0));
    must(dl_cuda_download(out, d_out, out_n * sizeof(float)), "download");

    L.weight = w;
    L.bias = b;
    tensor res = tensor_make(r, t->N, t->OC, OH, OW);
    float *ref = poisoned(n_out), *got = malloc(sizeof(float) * n_out);
    conv2d_naive(&L, tensor_make(x, t->N, t->C, t->H, t->W), r ? &res : NULL, tensor_make(ref, t->N, t->OC, OH, OW));
    for (int n = 0; n < t->N; n++)
        memcpy(got + (size_t)n * t->OC * out_hw, out + ((size_t)n * wide + c0) * out_hw, sizeof(float) * t->OC * out_hw);
    double *refd = malloc(n_out * sizeof *refd);
    for (size_t i = 0; i < n_out; i++) refd[i] = ref[i];
    if (precision == DL_PRECISION_TF32) check_tol(what, got, refd, n_out, 5e-3, 5e-3);
    else check(what, got, refd, n_out);
    const int touched = touched_outside(out, t->N, wide, c0, t->OC, out_hw);
    if (touched) {
        printf("FAIL %s: %d elements outside the slice were written\n", what, touched);
        failures++;
    }
    dl_cuda_release(d_x), dl_cuda_release(d_w), dl_cuda_release(d_b), dl_cuda_release(d_r), dl_cuda_release(d_out);
    free(x), free(w), free(b), free(r), free(out), free(ref), free(got), free(refd);
}

/* Two slots of one shape: the second takes the first's choice (same path); a conv with another
 * shape than prepared is refused, naming the layer; re-preparing a slot takes the new shape. */
static void test_slots(dl_dnn *d)
{
    const int C = 16, OC = 24, H = 21, W = 19;
    float *x = randn((size_t)2 * C * H * W), *wt = randn((size_t)OC * C * 9), *b = randn(OC);
    float *y = randn((size_t)2 * OC * H * W); /* any contents: the output */
    float *d_x = dev_upload(x, (size_t)2 * C * H * W), *d_w = dev_upload(wt, (size_t)OC * C * 9);
    float *d_b = dev_upload(b, OC), *d_y = dev_upload(y, (size_t)2 * OC * H * W);
    const conv2d L = {.C = C, .OC = OC, .KH = 3, .KW = 3, .p = {1, 1, 1}, .weight = d_w, .bias = d_b, .relu = 1};
    const tensor in = tensor_make(d_x, 1, C, H, W), out = tensor_make(d_y, 1, OC, H, W);
    must(dl_dnn_prepare(d, 0, "slot 0", &L, in, NULL, out), "slot 0");
    char first[128];
    snprintf(first, sizeof first, "%s", dl_dnn_slot_path(d, 0));
    must(dl_dnn_prepare(d, 1, "slot 1", &L, in, NULL, out), "slot 1");
    int ok = !strcmp(first, dl_dnn_slot_path(d, 1));
    printf("%s a second slot of the same shape reuses the choice: \"%s\"\n", ok ? "ok  " : "FAIL", dl_dnn_slot_path(d, 1));
    failures += !ok;

    const tensor in2 = tensor_make(d_x, 2, C, H, W), out2 = tensor_make(d_y, 2, OC, H, W);
    const dl_status s = dl_dnn_conv(d, 1, &L, in2, NULL, out2);
    ok = s == DL_EINTERNAL && strstr(dl_last_error(), "slot 1");
    printf("%s dl_dnn_conv refuses a batch it was not prepared for: \"%s\"\n", ok ? "ok  " : "FAIL", dl_last_error());
    failures += !ok;
    must(dl_dnn_prepare(d, 1, "slot 1", &L, in2, NULL, out2), "slot 1 again");
    must(dl_dnn_conv(d, 1, &L, in2, NULL, out2), "slot 1 again");
    must(dl_cuda_finish(0, "slot 1 again"), "slot 1 again");
    printf("ok   a re-prepared slot runs its new shape (batch 2)\n");
    dl_cuda_release(d_x), dl_cuda_release(d_w), dl_cuda_release(d_b), dl_cuda_release(d_y);
    free(x), free(wt), free(b), free(y);
}

int main(void)
{
    char why[256];
    if (dl_cuda_probe(why, sizeof why) == 0) {
        printf("SKIP: no CUDA GPU (%s)\n", why);
        return 77;
    }
    const char *q = getenv("DL_TEST_QUICK");
    quick = q && *q && strcmp(q, "0") != 0;
    static const conv_case convs[] = {
        /* N  C    H    W   OC  k s  d relu res slice bias */
        {1, 3, 33, 47, 64, 7, 2, 1, 1, 0, 0, 1},     /* the stem, odd map: cuDNN fused */
        {2, 3, 65, 65, 70, 7, 2, 1, 1, 0, 1, 1},     /* stem, batch 2, into a slice */
        {1, 37, 15, 16, 70, 3, 2, 1, 1, 0, 0, 1},    /* 3x3 stride 2 (layer2.0.conv2) */
        {2, 33, 13, 17, 40, 3, 1, 2, 1, 1, 0, 1},    /* dilation 2 + residual as z */
        {1, 70, 65, 65, 67, 3, 1, 4, 1, 0, 0, 1},    /* dilation 4 (layer4) */
        {1, 19, 13, 17, 9, 3, 1, 12, 1, 0, 1, 1},    /* ASPP rate 12 into a channel slice */
        {2, 19, 13, 17, 9, 3, 1, 24, 1, 0, 1, 1},    /* rate 24 > map: only the centre tap */
        {1, 128, 65, 65, 96, 3, 1, 36, 1, 0, 1, 1},  /* rate 36 on the real map size, into a slice */
        {1, 7, 1, 1, 6, 3, 1, 4, 1, 0, 0, 1},        /* 3x3 on a 1x1 map */
        {1, 23, 65, 3, 5, 3, 1, 36, 0, 0, 0, 1},     /* no ReLU: cuDNN + epilogue, tall thin map */
        {1, 20, 11, 9, 12, 3, 1, 1, 1, 0, 0, 0},     /* no bias: cuDNN + epilogue (ReLU only) */
        {3, 129, 5, 7, 131, 1, 2, 1, 0, 1, 0, 1},    /* strided 1x1 (downsample), residual, N=3 */
        {2, 64, 33, 47, 128, 1, 2, 1, 0, 0, 0, 1},   /* layer2.0.downsample: 1x1/2, no ReLU */
        {1, 64, 17, 13, 256, 1, 1, 1, 0, 0, 0, 1},   /* 1x1 expansion: cuBLAS, bias only */
        {2, 300, 9, 11, 21, 1, 1, 1, 0, 0, 0, 1},    /* the classifier's 1x1: cuBLAS, batch 2 */
        {2, 50, 33, 47, 129, 1, 1, 1, 1, 1, 1, 1},   /* cuBLAS + residual + ReLU into a slice */
        {3, 600, 1, 1, 130, 1, 1, 1, 1, 0, 0, 1},    /* the image-pooling 1x1 on a 1x1 map, N=3 */
        {1, 256, 65, 65, 256, 1, 1, 1, 1, 1, 0, 1},  /* a bottleneck's conv3 at 520x520's map */
        {1, 520, 20, 20, 100, 3, 1, 1, 1, 0, 0, 1},  /* K = 4680 */
    };
    for (int p = 0; p < 2; p++) {
        const dl_precision precision = p ? DL_PRECISION_TF32 : DL_PRECISION_FP32;
        dl_dnn *d = NULL;
        const dl_status s = dl_dnn_create(NULL, precision, 2, &d);
        if (s == DL_EUNAVAILABLE) {
            printf("SKIP: no cuDNN (%s)\n", dl_last_error());
            return 77;
        }
        must(s, "dl_dnn_create");
        if (!p) printf("libraries: %s\n", dl_dnn_versions(d));
        for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) test_conv(d, precision, &convs[i]);
        if (!p) test_slots(d);
        dl_dnn_free(d);
    }
    return finish("cudnn backend");
}
#endif
