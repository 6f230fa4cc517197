/*
 * test_cuda_cudnn.c - the cudnn backend's convolutions (engine/cudnn_backend.h) against the
 * definition (conv2d_naive, in double) on the shared cases of conv_check.h, which take every route:
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

#include "conv_check.h"
#include "cuda_device.h"
#include "cuda_util.h"
#include "cudnn_backend.h"
#include "deeplab.h"
#include "layers.h"
#include "testutil.h"
#include "testutil_cuda.h"

static int quick;

/* A dl_dnn of one precision as a conv_impl of conv_check.h: dl_dnn_prepare (whose search writes
 * the output), the output poisoned again, dl_dnn_conv, download. Prints cuDNN's choice. */
static int run_dnn(void *ctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    dl_dnn *dnn = ctx;
    conv_dev d = conv_dev_upload(L, in, residual, out, wide, c0);
    must(dl_dnn_prepare(dnn, 0, "conv", &d.L, d.in, residual ? &d.res : NULL, d.out), "dl_dnn_prepare");
    must(dl_cuda_upload(d.d_out, out, d.out_n * sizeof(float)), "poison"); /* the search wrote it */
    must(dl_dnn_conv(dnn, 0, &d.L, d.in, residual ? &d.res : NULL, d.out), "dl_dnn_conv");
    must(dl_cuda_finish(0, "dl_dnn_conv"), "dl_dnn_conv");
    printf("      cuDNN chose: %s\n", dl_dnn_slot_path(dnn, 0));
    conv_dev_finish(&d, out);
    return 0;
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
        const conv_impl dnn = p ? (conv_impl){.name = "tf32", .run = run_dnn, .ctx = d, .abs_tol = 5e-3,
                                              .rel_tol = 5e-3, .max_macs = quick ? 5e7 : 0}
                                : (conv_impl){.name = "fp32", .run = run_dnn, .ctx = d, .max_macs = quick ? 5e7 : 0};
        conv_check_all(&dnn, 1);
        if (!p) test_slots(d);
        dl_dnn_free(d);
    }
    return finish("cudnn backend");
}
#endif
