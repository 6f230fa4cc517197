/*
 * test_cuda_layers.c - every CUDA layer (layers_cuda.h) against its CPU reference, on odd shapes.
 *
 * Shapes: maps of 33x47, 65x65, 1x1 and tall thin ones; channel counts that are not multiples of
 * 32 or of the 64-wide tiles; K not a multiple of 16; batch > 1; outputs written into a channel
 * slice of a wider tensor; residuals. Device outputs are poisoned with NaN before every run (and
 * the channels around a slice filled with a sentinel), so an element the kernel never writes, or
 * one it writes outside its slice, fails. Tolerance as in test_layers.c:
 * |got - ref| <= 1e-5 * scale + 1e-4 * |ref|; exact where the computation is (pooling, arg-max,
 * normalisation, concatenation).
 *
 * Skips (exit 77, one line) when built without CUDA or when no CUDA GPU is usable.
 * DL_TEST_QUICK=1 leaves out the largest cases (for runs under compute-sanitizer).
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
#include "deeplab.h"
#include "layers.h"
#include "layers_cuda.h"
#include "testutil.h"
#include "testutil_cuda.h"

static int quick;

/* Runs the launcher's result to completion; a launch or kernel error fails the test. */
static void finish_layer(int err, const char *what) { must(dl_cuda_finish(err, what), what); }

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* Bitwise comparison (NaN-poisoned elements never equal). */
static void check_exact(const char *what, const void *got, const void *ref, size_t bytes)
{
    const int ok = memcmp(got, ref, bytes) == 0;
    printf("%s %-64s %s\n", ok ? "ok  " : "FAIL", what, ok ? "bit for bit" : "differs");
    if (!ok) failures++;
}

/* ------------------------------------------------------------------ convolution */

typedef struct conv_case {
    int N, C, H, W, OC, k, stride, dilation, relu, residual, slice;
} conv_case;

static void test_conv(const conv_case *t)
{
    conv2d L = {.C = t->C, .OC = t->OC, .KH = t->k, .KW = t->k,
                .p = {t->stride, t->k / 2 * t->dilation, t->dilation}, .relu = t->relu};
    const int OH = conv_out_size(t->H, t->k, t->stride, L.p.pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, L.p.pad, t->dilation);
    const double macs = (double)t->N * t->OC * OH * OW * t->C * t->k * t->k;
    if (quick && macs > 5e7) return;
    const size_t in_n = (size_t)t->N * t->C * t->H * t->W, w_n = (size_t)t->OC * t->C * t->k * t->k;
    const size_t out_hw = (size_t)OH * OW, n_out = (size_t)t->N * t->OC * out_hw;
    float *x = randn(in_n), *w = randn(w_n), *b = randn((size_t)t->OC), *r = t->residual ? randn(n_out) : NULL;
    const int wide = t->slice ? t->OC + 5 : t->OC, c0 = t->slice ? 3 : 0;
    float *out = slice_buffer(t->N, wide, c0, t->OC, out_hw);

    float *d_x = dev_upload(x, in_n), *d_w = dev_upload(w, w_n), *d_b = dev_upload(b, (size_t)t->OC);
    float *d_r = r ? dev_upload(r, n_out) : NULL, *d_out = dev_upload(out, (size_t)t->N * wide * out_hw);
    conv2d dL = L;
    dL.weight = d_w;
    dL.bias = d_b;
    tensor d_res = tensor_make(d_r, t->N, t->OC, OH, OW);
    tensor d_o = {d_out + (size_t)c0 * out_hw, t->N, t->OC, OH, OW, (size_t)wide * out_hw};
    char what[160];
    snprintf(what, sizeof what, "conv N%d %dx%dx%d -> %d k%d s%d d%d%s%s%s", t->N, t->C, t->H, t->W, t->OC, t->k,
             t->stride, t->dilation, t->relu ? " relu" : "", t->residual ? " +res" : "", t->slice ? " slice" : "");
    finish_layer(conv2d_cuda(&dL, tensor_make(d_x, t->N, t->C, t->H, t->W), r ? &d_res : NULL, d_o, NULL), what);
    dev_download(out, d_out, (size_t)t->N * wide * out_hw);

    L.weight = w;
    L.bias = b;
    tensor res = tensor_make(r, t->N, t->OC, OH, OW);
    float *ref = poisoned(n_out), *got = malloc(sizeof(float) * n_out);
    conv2d_naive(&L, tensor_make(x, t->N, t->C, t->H, t->W), r ? &res : NULL, tensor_make(ref, t->N, t->OC, OH, OW));
    for (int n = 0; n < t->N; n++)
        memcpy(got + (size_t)n * t->OC * out_hw, out + ((size_t)n * wide + c0) * out_hw,
               sizeof(float) * t->OC * out_hw);
    double *refd = to_double(ref, n_out);
    check(what, got, refd, n_out);
    const int touched = touched_outside(out, t->N, wide, c0, t->OC, out_hw);
    if (touched) {
        printf("FAIL %s: %d elements outside the slice were written\n", what, touched);
        failures++;
    }
    dl_cuda_release(d_x), dl_cuda_release(d_w), dl_cuda_release(d_b), dl_cuda_release(d_r), dl_cuda_release(d_out);
    free(x), free(w), free(b), free(r), free(out), free(ref), free(got), free(refd);
}

/* A launcher refuses shapes that do not fit together, without launching, and the error is a
 * message rather than a crash. */
static void test_conv_refuses_bad_shapes(void)
{
    float *d = dev_alloc(4096);
    conv2d L = {.C = 4, .OC = 8, .KH = 3, .KW = 3, .p = {1, 1, 1}, .weight = d, .bias = d};
    const int err = conv2d_cuda(&L, tensor_make(d, 1, 4, 5, 5), NULL, tensor_make(d, 1, 8, 5, 4), NULL);
    const dl_status s = dl_cuda_finish(err, "conv with a wrong output width");
    const int ok = err != 0 && s != DL_OK && strstr(dl_last_error(), "conv with a wrong output width");
    printf("%s conv2d_cuda refuses a wrong output shape: \"%s\"\n", ok ? "ok  " : "FAIL", dl_last_error());
    if (!ok) failures++;
    dl_cuda_release(d);
}

/* ------------------------------------------------------------------ pooling */

static void test_maxpool(int N, int C, int H, int W)
{
    const int OH = conv_out_size(H, 3, 2, 1, 1), OW = conv_out_size(W, 3, 2, 1, 1);
    const size_t in_n = (size_t)N * C * H * W, out_n = (size_t)N * C * OH * OW;
    if (quick && in_n > 1000000) return;
    float *x = randn(in_n), *got = poisoned(out_n), *ref = poisoned(out_n);
    float *d_x = dev_upload(x, in_n), *d_y = dev_upload(got, out_n);
    char what[96];
    snprintf(what, sizeof what, "maxpool 3x3/2 pad 1 N%d %dx%dx%d", N, C, H, W);
    finish_layer(maxpool2d_cuda(tensor_make(d_x, N, C, H, W), 3, 2, 1, tensor_make(d_y, N, C, OH, OW), NULL), what);
    dev_download(got, d_y, out_n);
    maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(ref, N, C, OH, OW), NULL);
    check_exact(what, got, ref, out_n * sizeof(float));
    dl_cuda_release(d_x), dl_cuda_release(d_y);
    free(x), free(got), free(ref);
}

static void test_avgpool(int N, int C, int H, int W)
{
    const size_t in_n = (size_t)N * C * H * W;
    if (quick && in_n > 1000000) return;
    float *x = randn(in_n), *got = poisoned((size_t)N * C), *ref = poisoned((size_t)N * C);
    float *d_x = dev_upload(x, in_n), *d_y = dev_upload(got, (size_t)N * C);
    char what[96];
    snprintf(what, sizeof what, "global average pool N%d %dx%dx%d", N, C, H, W);
    finish_layer(global_avgpool_cuda(tensor_make(d_x, N, C, H, W), tensor_make(d_y, N, C, 1, 1), NULL), what);
    dev_download(got, d_y, (size_t)N * C);
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(ref, N, C, 1, 1));
    double *refd = to_double(ref, (size_t)N * C);
    check(what, got, refd, (size_t)N * C);
    dl_cuda_release(d_x), dl_cuda_release(d_y);
    free(x), free(got), free(ref), free(refd);
}

/* ------------------------------------------------------------------ resize */

/* in (N x C x h x w) -> channels [slice, slice + C) of an N x (C + 2 slice) x H x W tensor. */
static void test_resize(int N, int C, int h, int w, int H, int W, int slice)
{
    const size_t in_n = (size_t)N * C * h * w, hw = (size_t)H * W;
    const int wide = C + 2 * slice;
    if (quick && (double)N * C * hw > 2e6) return;
    float *x = randn(in_n), *out = slice_buffer(N, wide, slice, C, hw), *ref = poisoned((size_t)N * C * hw);
    float *d_x = dev_upload(x, in_n), *d_out = dev_upload(out, (size_t)N * wide * hw);
    char what[128];
    snprintf(what, sizeof what, "bilinear resize N%d C%d %dx%d -> %dx%d%s", N, C, w, h, W, H, slice ? " slice" : "");
    tensor d_o = {d_out + (size_t)slice * hw, N, C, H, W, (size_t)wide * hw};
    finish_layer(resize_bilinear_cuda(tensor_make(d_x, N, C, h, w), d_o, NULL), what);
    dev_download(out, d_out, (size_t)N * wide * hw);
    resize_bilinear_cpu(tensor_make(x, N, C, h, w), tensor_make(ref, N, C, H, W), NULL);
    float *got = malloc(sizeof(float) * N * C * hw);
    for (int n = 0; n < N; n++)
        memcpy(got + (size_t)n * C * hw, out + ((size_t)n * wide + slice) * hw, sizeof(float) * C * hw);
    double *refd = to_double(ref, (size_t)N * C * hw);
    check(what, got, refd, (size_t)N * C * hw);
    const int touched = touched_outside(out, N, wide, slice, C, hw);
    if (touched) {
        printf("FAIL %s: %d elements outside the slice were written\n", what, touched);
        failures++;
    }
    dl_cuda_release(d_x), dl_cuda_release(d_out);
    free(x), free(out), free(ref), free(got), free(refd);
}

/* ------------------------------------------------------------------ concat */

static void test_concat(void)
{
    const int N = 2, H = 7, W = 5, C1 = 3, C2 = 1;
    const size_t hw = (size_t)H * W;
    float *a = randn((size_t)N * C1 * hw), *b = randn((size_t)N * C2 * hw);
    float *got = poisoned((size_t)N * (C1 + C2) * hw), *ref = poisoned((size_t)N * (C1 + C2) * hw);
    float *d_a = dev_upload(a, (size_t)N * C1 * hw), *d_b = dev_upload(b, (size_t)N * C2 * hw);
    float *d_out = dev_upload(got, (size_t)N * (C1 + C2) * hw);
    const tensor d_in[2] = {tensor_make(d_a, N, C1, H, W), tensor_make(d_b, N, C2, H, W)};
    finish_layer(concat_cuda(d_in, 2, tensor_make(d_out, N, C1 + C2, H, W), NULL), "concat");
    dev_download(got, d_out, (size_t)N * (C1 + C2) * hw);
    const tensor in[2] = {tensor_make(a, N, C1, H, W), tensor_make(b, N, C2, H, W)};
    concat_cpu(in, 2, tensor_make(ref, N, C1 + C2, H, W));
    check_exact("concat 3 + 1 channels, N2", got, ref, sizeof(float) * N * (C1 + C2) * hw);
    dl_cuda_release(d_a), dl_cuda_release(d_b), dl_cuda_release(d_out);
    free(a), free(b), free(got), free(ref);
}

/* ------------------------------------------------------------------ classification */

static void test_classify(int N, int K, int H, int W)
{
    const size_t hw = (size_t)H * W, n = (size_t)N * K * hw;
    float *x = randn(n);
    for (size_t i = 0; i < n; i++) x[i] *= 20; /* large logits: the max must be subtracted */
    float *sm = poisoned(n), *sm_ref = poisoned(n), *fg = poisoned((size_t)N * hw), *fg_ref = poisoned((size_t)N * hw);
    uint8_t *lab = malloc((size_t)N * hw), *lab_ref = malloc((size_t)N * hw);
    memset(lab, 0xee, (size_t)N * hw);
    float *d_x = dev_upload(x, n), *d_sm = dev_upload(sm, n), *d_fg = dev_upload(fg, (size_t)N * hw);
    uint8_t *d_lab = dev_alloc((size_t)N * hw);
    must(dl_cuda_upload(d_lab, lab, (size_t)N * hw), "upload");
    const tensor d_in = tensor_make(d_x, N, K, H, W);
    char what[96];
    snprintf(what, sizeof what, "softmax over %d channels N%d %dx%d", K, N, W, H);
    finish_layer(softmax_channels_cuda(d_in, tensor_make(d_sm, N, K, H, W), NULL), what);
    finish_layer(argmax_channels_cuda(d_in, d_lab, NULL), "argmax");
    finish_layer(foreground_prob_cuda(d_in, tensor_make(d_fg, N, 1, H, W), NULL), "foreground probability");
    dev_download(sm, d_sm, n);
    dev_download(fg, d_fg, (size_t)N * hw);
    must(dl_cuda_download(lab, d_lab, (size_t)N * hw), "download");

    softmax_channels_cpu(tensor_make(x, N, K, H, W), tensor_make(sm_ref, N, K, H, W));
    argmax_channels_cpu(tensor_make(x, N, K, H, W), lab_ref);
    for (int i = 0; i < N; i++) dl_foreground_prob(x + (size_t)i * K * hw, K, H, W, fg_ref + (size_t)i * hw);
    double *smd = to_double(sm_ref, n), *fgd = to_double(fg_ref, (size_t)N * hw);
    check(what, sm, smd, n);
    snprintf(what, sizeof what, "argmax over %d channels N%d %dx%d", K, N, W, H);
    check_exact(what, lab, lab_ref, (size_t)N * hw);
    snprintf(what, sizeof what, "foreground probability over %d channels N%d %dx%d", K, N, W, H);
    check(what, fg, fgd, (size_t)N * hw);
    dl_cuda_release(d_x), dl_cuda_release(d_sm), dl_cuda_release(d_fg), dl_cuda_release(d_lab);
    free(x), free(sm), free(sm_ref), free(fg), free(fg_ref), free(lab), free(lab_ref), free(smd), free(fgd);
}

/* ------------------------------------------------------------------ input normalisation */

static void test_normalise(int w, int h)
{
    dl_image img = {w, h, 3, malloc((size_t)w * h * 3)};
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img.px[i] = (uint8_t)(frand() * 128 + 128);
    img.px[0] = 0, img.px[1] = 255; /* both ends */
    float *ref = NULL;
    int ow, oh;
    must(dl_preprocess(&img, 0, &ref, &ow, &oh), "dl_preprocess");
    const size_t n = (size_t)3 * w * h;
    float *got = poisoned(n), *d_out = dev_upload(got, n);
    uint8_t *d_rgb = dev_alloc((size_t)w * h * 3);
    must(dl_cuda_upload(d_rgb, img.px, (size_t)w * h * 3), "upload");
    char what[96];
    snprintf(what, sizeof what, "normalise RGB8 %dx%d (dl_preprocess, size 0)", w, h);
    finish_layer(normalise_rgb8_cuda(d_rgb, 1, h, w, tensor_make(d_out, 1, 3, h, w), NULL), what);
    dev_download(got, d_out, n);
    check_exact(what, got, ref, n * sizeof(float));
    dl_cuda_release(d_out), dl_cuda_release(d_rgb);
    free(img.px), free(ref), free(got);
}

int main(void)
{
    char why[256] = "";
    if (dl_cuda_probe(why, sizeof why) == 0) {
        printf("SKIP: no CUDA GPU (%s)\n", why);
        return 77;
    }
    char name[256];
    if (dl_cuda_device_name(0, name, sizeof name) == 0) printf("device: %s\n", name);
    const char *q = getenv("DL_TEST_QUICK");
    quick = q && *q && strcmp(q, "0") != 0;

    const conv_case convs[] = {
        /* N  C    H    W   OC  k s d relu res slice */
        {1, 3, 33, 47, 64, 7, 2, 1, 1, 0, 0},      /* the stem, odd map */
        {2, 3, 65, 65, 70, 7, 2, 1, 1, 0, 1},      /* stem, batch 2, OC past a tile, into a slice */
        {1, 3, 520, 520, 64, 7, 2, 1, 1, 0, 0},    /* the stem at the default size */
        {1, 64, 17, 13, 256, 1, 1, 1, 0, 0, 0},    /* 1x1 expansion */
        {2, 300, 9, 11, 21, 1, 1, 1, 0, 0, 0},     /* K past many steps, OC not a multiple of 4, batch */
        {1, 37, 15, 16, 70, 3, 2, 1, 1, 0, 0},     /* 3x3 stride 2 (layer2.0) */
        {1, 33, 13, 17, 40, 3, 1, 2, 1, 1, 0},     /* dilation 2 + residual */
        {1, 45, 65, 65, 33, 3, 1, 2, 1, 1, 0},     /* 65x65, dilation 2, residual; C, OC not multiples of 32 */
        {1, 70, 65, 65, 67, 3, 1, 4, 1, 0, 0},     /* dilation 4 (layer4) */
        {1, 19, 13, 17, 9, 3, 1, 12, 1, 0, 1},     /* ASPP rate 12 into a channel slice */
        {2, 19, 13, 17, 9, 3, 1, 24, 1, 0, 1},     /* rate 24 > map: only the centre tap */
        {1, 23, 65, 3, 5, 3, 1, 36, 0, 0, 0},      /* rate 36, a tall thin map */
        {1, 128, 65, 65, 96, 3, 1, 36, 1, 0, 1},   /* rate 36 on the real map size, into a slice */
        {1, 600, 1, 1, 130, 1, 1, 1, 1, 0, 0},     /* the 1x1 image-pooling conv on a 1x1 map */
        {1, 7, 1, 1, 6, 3, 1, 4, 1, 0, 0},         /* 3x3 on a 1x1 map */
        {3, 129, 5, 7, 131, 1, 2, 1, 0, 1, 0},     /* strided 1x1 (downsample), residual, N=3 */
        {2, 50, 33, 47, 129, 1, 1, 1, 1, 1, 1},    /* residual and slice together */
        {1, 520, 20, 20, 100, 3, 1, 1, 1, 0, 0},   /* K = 4680 */
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) test_conv(&convs[i]);
    test_conv_refuses_bad_shapes();
    test_maxpool(1, 3, 33, 47);
    test_maxpool(2, 5, 1, 1);
    test_maxpool(1, 2, 2, 9);
    test_maxpool(1, 64, 260, 260); /* the stem's pool at 520x520 */
    test_avgpool(2, 7, 13, 11);
    test_avgpool(1, 3, 1, 1);
    test_avgpool(1, 2048, 65, 65);
    test_resize(1, 3, 5, 7, 41, 33, 0);    /* up, by non-integer factors */
    test_resize(2, 2, 65, 65, 520, 519, 0);
    test_resize(1, 256, 1, 1, 65, 65, 4);  /* ASPP's pooled branch broadcast into its slice */
    test_resize(1, 21, 65, 87, 520, 693, 0); /* logits to the input size */
    test_resize(1, 1, 65, 87, 600, 800, 0);  /* a probability map to a photo's full size */
    test_resize(1, 1, 40, 30, 7, 9, 0);    /* down */
    test_resize(1, 1, 6, 8, 6, 8, 0);      /* identity */
    test_concat();
    test_classify(2, 21, 13, 11);
    test_classify(1, 2, 65, 87);
    test_classify(1, 1, 3, 5);
    test_normalise(47, 33);
    test_normalise(1, 1);
    return finish("CUDA layer");
}
#endif
