/*
 * test_cuda_layers.c - every CUDA layer (layers_cuda.h) against its CPU reference, on odd shapes.
 *
 * The convolution runs the shared cases of conv_check.h; the other layers maps of 33x47, 65x65,
 * 1x1 and tall thin ones, batch > 1, channel slices. Device outputs are poisoned with NaN before
 * every run (and the channels around a slice filled with a sentinel), so an element the kernel
 * never writes, or one it writes outside its slice, fails. Tolerance as in test_layers.c:
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

#include "conv_check.h"
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

/* conv2d_cuda as a conv_impl of conv_check.h: everything uploaded (the output with its poison
 * and sentinels), the kernel run to completion, the output downloaded. */
static int run_cuda(void *ctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    (void)ctx;
    conv_dev d = conv_dev_upload(L, in, residual, out, wide, c0);
    finish_layer(conv2d_cuda(&d.L, d.in, residual ? &d.res : NULL, d.out, NULL), "conv2d_cuda");
    conv_dev_finish(&d, out);
    return 0;
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

    const conv_impl cuda = {.name = "cuda", .run = run_cuda, .max_macs = quick ? 5e7 : 0};
    conv_check_all(&cuda, 1);
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
