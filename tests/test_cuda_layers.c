/*
 * test_cuda_layers.c - every CUDA layer (layers_cuda.h) against its CPU reference, on odd shapes.
 *
 * The convolution runs the shared cases of conv_check.h; the other layers maps of 33x47, 65x65,
 * 1x1 and tall thin ones, batch > 1, channel slices. Device outputs are poisoned with NaN before
 * every run (and the channels around a slice filled with a sentinel), so an element the kernel
 * never writes, or one it writes outside its slice, fails. Tolerance as in test_layers.c:
 * |got - ref| <= 1e-5 * scale + 1e-4 * |ref|; exact where the computation is (pooling, arg-max,
 * normalisation, concatenation). Every case runs twice, the second time under another schedule
 * (testutil_cuda.h: on the emulated GPU another order of threads and blocks), and both runs must
 * give the same bytes.
 *
 * Skips (exit 77, one line) when built without CUDA or when no CUDA GPU is usable.
 * DL_TEST_QUICK=1 leaves out the largest cases (for runs under compute-sanitizer); DL_TEST_TC_ONLY=1
 * runs only the tensor-core path's checks (compute-sanitizer's racecheck on them, tools/gpu-bench.sh).
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
#include "tc.h"
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
 * and sentinels), the kernel run to completion, the output downloaded; then all of it again
 * under the second schedule, which must give the same bytes. */
static int run_cuda(void *ctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    (void)ctx;
    conv_dev d = conv_dev_upload(L, in, residual, out, wide, c0);
    float *again = malloc(d.out_n * sizeof *again);
    memcpy(again, out, d.out_n * sizeof *again); /* the poison and sentinels, for the second run */
    finish_layer(conv2d_cuda(&d.L, d.in, residual ? &d.res : NULL, d.out, NULL), "conv2d_cuda");
    conv_dev_finish(&d, out);
    gpu_schedule(1);
    d = conv_dev_upload(L, in, residual, again, wide, c0);
    finish_layer(conv2d_cuda(&d.L, d.in, residual ? &d.res : NULL, d.out, NULL), "conv2d_cuda");
    conv_dev_finish(&d, again);
    gpu_schedule(0);
    char what[96];
    snprintf(what, sizeof what, "conv N%d C%d %dx%d -> %d k%d", in.n, in.c, in.w, in.h, L->OC, L->KH);
    same_bytes(what, out, again, d.out_n * sizeof *again);
    free(again);
    return 0;
}

/* A host buffer of n floats copied to a new device buffer, and the device buffer's contents
 * back into a new host buffer. */
static float *up(const float *h, size_t n) { return dev_upload(h, n); }
static float *down(const float *d, size_t n)
{
    float *h = malloc(n * sizeof *h);
    dev_download(h, d, n);
    return h;
}

/* ------------------------------------------------------------------ tensor cores */

/* conv2d_tc_cuda as a conv_impl: the input goes up as NCHW fp32 and through nchw_to_tc_cuda (so
 * that kernel is checked too) into NHWC with the channels padded to 8, the weights are packed on
 * the host, the residual and the output are NHWC in the storage type. The output's device layout
 * is the impl's own: with the harness's slice, channels [8, 8 + OC) of OC rounded up to 8, + 16
 * (aligned: 16-byte stores), or with `odd`, [3, 3 + OC) of OC + 5 (element by element). Channels
 * outside the slice hold a sentinel that must survive; inside, a NaN pattern that must not. */
typedef struct tc_ctx {
    tc_precision prec;
    int forced;        /* 1: cfg below, else conv2d_tc_choose for 132 SMs */
    tc_config cfg;
    int odd;           /* the unaligned output slice */
    int out_f32;       /* fp32 output (the logits' kind) */
} tc_ctx;

static int run_tc(void *vctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    const tc_ctx *ctx = vctx;
    const tc_precision p = ctx->prec;
    const size_t esz = tc_elem_bytes(p), oesz = ctx->out_f32 ? 4 : esz;
    const int N = in.n, Cp = conv_tc_cp(L->C), Kp = conv_tc_kp(L->C, L->KH, L->KW);
    int OH, OW;
    conv_out_shape(L, in, &OH, &OW);
    const size_t hw = (size_t)OH * OW, P = (size_t)N * hw;
    conv_tc T = {.C = L->C, .OC = L->OC, .KH = L->KH, .KW = L->KW, .p = L->p, .relu = L->relu, .Cp = Cp, .Kp = Kp};
    tc_config cfg = ctx->forced ? ctx->cfg : conv2d_tc_choose(&T, (int)P, 132);
    if (Cp % (64 / (int)esz) != 0 || L->KH * L->KW > 32) cfg.tile = TC_TILE_64x64; /* read as GENERIC: 64x64 only */

    void *wh = malloc(esz * L->OC * Kp);
    conv2d_tc_pack(L, 0, L->C, p, wh);
    void *d_w = dev_alloc(esz * L->OC * Kp);
    must(dl_cuda_upload(d_w, wh, esz * L->OC * Kp), "upload");
    T.weight = d_w;
    T.bias = L->bias ? dev_upload(L->bias, (size_t)L->OC) : NULL;
    float *d_x = dev_upload(in.data, (size_t)N * in.c * in.h * in.w);
    void *d_in = dev_alloc(esz * N * in.h * in.w * Cp);
    const tc_tensor tin = tc_tensor_make(d_in, N, in.h, in.w, Cp);
    finish_layer(nchw_to_tc_cuda(tensor_make(d_x, N, in.c, in.h, in.w), p, tin, NULL), "nchw_to_tc_cuda");

    void *rh = NULL, *d_r = NULL;
    tc_tensor tres;
    if (residual) {
        rh = malloc(esz * P * L->OC);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < L->OC; c++)
                for (size_t q = 0; q < hw; q++)
                    tc_store(p, rh, ((size_t)n * hw + q) * L->OC + c, residual->data[((size_t)n * L->OC + c) * hw + q]);
        d_r = dev_alloc(esz * P * L->OC);
        must(dl_cuda_upload(d_r, rh, esz * P * L->OC), "upload");
        tres = tc_tensor_make(d_r, N, OH, OW, L->OC);
    }
    const int slice = wide != L->OC || ctx->odd;
    const int dc0 = !slice ? 0 : ctx->odd ? 3 : 8, dwide = !slice ? L->OC : ctx->odd ? L->OC + 5 : (L->OC + 7) / 8 * 8 + 16;
    unsigned char *oh = malloc(oesz * P * dwide);
    const uint32_t nan_bits = 0x7fc00001u, sent_bits = ctx->out_f32 || p == TC_TF32 ? 0x4640e400u : 0x4640u;
    for (size_t q = 0; q < P * dwide; q++) {
        const int c = (int)(q % dwide);
        const uint32_t v = c >= dc0 && c < dc0 + L->OC ? nan_bits : sent_bits;
        if (oesz == 4) memcpy(oh + 4 * q, &v, 4);
        else {
            const uint16_t h = (uint16_t)(v == nan_bits ? 0x7fff : v);
            memcpy(oh + 2 * q, &h, 2);
        }
    }
    void *d_out = dev_alloc(oesz * P * dwide);
    must(dl_cuda_upload(d_out, oh, oesz * P * dwide), "upload");
    tc_tensor tout = {(unsigned char *)d_out + oesz * dc0, N, OH, OW, L->OC, (size_t)dwide, hw * dwide};
    const size_t ws_n = conv2d_tc_workspace_floats(cfg, (int)P, L->OC);
    float *d_ws = ws_n ? dev_alloc(ws_n * sizeof(float)) : NULL;
    char what[96];
    conv2d_tc_name(cfg, p, what, sizeof what);
    finish_layer(conv2d_tc_cuda(&T, p, cfg, tin, residual ? &tres : NULL, tout, ctx->out_f32, NULL, 0, d_ws, NULL), what);
    must(dl_cuda_download(oh, d_out, oesz * P * dwide), "download");

    int bad_outside = 0;
    for (int n = 0; n < N; n++)
        for (size_t q = 0; q < hw; q++)
            for (int c = 0; c < dwide; c++) {
                const size_t e = ((size_t)n * hw + q) * dwide + c;
                if (c >= dc0 && c < dc0 + L->OC) {
                    const float v = ctx->out_f32 ? ((float *)oh)[e] : tc_load(p, oh, e);
                    out[((size_t)n * wide + c0 + c - dc0) * hw + q] = v;
                } else {
                    uint32_t v = 0;
                    memcpy(&v, oh + oesz * e, oesz);
                    bad_outside += v != sent_bits;
                }
            }
    if (bad_outside) printf("FAIL %s: %d elements of the device slice's neighbours were written\n", what, bad_outside);
    dl_cuda_release(d_w), dl_cuda_release((void *)T.bias), dl_cuda_release(d_x), dl_cuda_release(d_in);
    dl_cuda_release(d_r), dl_cuda_release(d_out), dl_cuda_release(d_ws);
    free(wh), free(rh), free(oh);
    return bad_outside ? -1 : 0;
}

/* Every convolution shape of DeepLabV3-ResNet101/50 (layer by layer, strides and dilations as
 * model.c builds them) on small maps, batch 2: what the tensor-core kernels run in the network. */
static const conv_case tc_model_cases[] = {
    /* N, C, H, W, OC, k, stride, dilation, relu, residual, slice, pad, no_bias */
    {2, 3, 23, 21, 64, 7, 2, 1, 1, 0, 0, 0, 0},      /* backbone.conv1 */
    {2, 64, 6, 6, 64, 1, 1, 1, 1, 0, 0, 0, 0},       /* layer1 conv1 */
    {2, 64, 6, 6, 64, 3, 1, 1, 1, 0, 0, 0, 0},       /* layer1 conv2 */
    {2, 64, 6, 6, 256, 1, 1, 1, 1, 1, 0, 0, 0},      /* layer1 conv3 (+ shortcut) and downsample */
    {2, 256, 6, 6, 64, 1, 1, 1, 1, 0, 0, 0, 0},      /* layer1.1 conv1 */
    {2, 256, 6, 6, 128, 1, 1, 1, 1, 0, 0, 0, 0},     /* layer2.0 conv1 */
    {2, 128, 6, 6, 128, 3, 2, 1, 1, 0, 0, 0, 0},     /* layer2.0 conv2, stride 2 */
    {2, 256, 6, 6, 512, 1, 2, 1, 0, 0, 0, 0, 0},     /* layer2.0 downsample, 1x1 stride 2 */
    {2, 128, 3, 3, 512, 1, 1, 1, 1, 1, 0, 0, 0},     /* layer2 conv3 */
    {2, 512, 3, 3, 128, 1, 1, 1, 1, 0, 0, 0, 0},     /* layer2.1 conv1 */
    {2, 128, 3, 3, 128, 3, 1, 1, 1, 0, 0, 0, 0},     /* layer2.1 conv2 */
    {2, 512, 3, 3, 256, 1, 1, 1, 1, 0, 0, 0, 0},     /* layer3.0 conv1 */
    {2, 256, 3, 3, 256, 3, 1, 1, 1, 0, 0, 0, 0},     /* layer3.0 conv2, dilation 1 */
    {2, 256, 3, 3, 256, 3, 1, 2, 1, 0, 0, 0, 0},     /* layer3 conv2, dilation 2 */
    {2, 512, 3, 3, 1024, 1, 1, 1, 0, 0, 0, 0, 0},    /* layer3.0 downsample */
    {2, 256, 3, 3, 1024, 1, 1, 1, 1, 1, 0, 0, 0},    /* layer3 conv3 */
    {2, 1024, 3, 3, 256, 1, 1, 1, 1, 0, 0, 0, 0},    /* layer3 conv1 */
    {2, 1024, 3, 3, 512, 1, 1, 1, 1, 0, 0, 0, 0},    /* layer4.0 conv1 */
    {2, 512, 3, 3, 512, 3, 1, 2, 1, 0, 0, 0, 0},     /* layer4.0 conv2, dilation 2 */
    {2, 512, 3, 3, 512, 3, 1, 4, 1, 0, 0, 0, 0},     /* layer4 conv2, dilation 4 */
    {2, 1024, 3, 3, 2048, 1, 1, 1, 0, 0, 0, 0, 0},   /* layer4.0 downsample */
    {2, 512, 3, 3, 2048, 1, 1, 1, 1, 1, 0, 0, 0},    /* layer4 conv3 */
    {2, 2048, 3, 3, 512, 1, 1, 1, 1, 0, 0, 0, 0},    /* layer4 conv1 */
    {1, 2048, 5, 4, 256, 1, 1, 1, 1, 0, 1, 0, 0},    /* ASPP 1x1 into its slice */
    {1, 2048, 5, 4, 256, 3, 1, 12, 1, 0, 1, 0, 0},   /* ASPP rate 12 (rates over the map: centre tap only) */
    {1, 1024, 9, 9, 256, 3, 1, 6, 1, 0, 1, 0, 0},    /* a rate that skips some taps per tile, into a slice */
    {2, 1024, 3, 3, 256, 1, 1, 1, 1, 0, 0, 0, 0},    /* project (its 1024 channels: pooling folded in) */
    {2, 256, 3, 3, 256, 3, 1, 1, 1, 0, 0, 0, 0},     /* classifier.1 */
    {2, 256, 3, 3, 21, 1, 1, 1, 0, 0, 0, 0, 0},      /* classifier.4 (21 classes) */
};

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
    float *x = randn(in_n), *init = poisoned(out_n), *ref = poisoned(out_n), *got[2];
    float *d_x = dev_upload(x, in_n);
    char what[96];
    snprintf(what, sizeof what, "maxpool 3x3/2 pad 1 N%d %dx%dx%d", N, C, H, W);
    for (int run = 0; run < 2; run++) {
        gpu_schedule(run);
        float *d_y = up(init, out_n);
        finish_layer(maxpool2d_cuda(tensor_make(d_x, N, C, H, W), 3, 2, 1, tensor_make(d_y, N, C, OH, OW), NULL),
                     what);
        got[run] = down(d_y, out_n);
        dl_cuda_release(d_y);
    }
    gpu_schedule(0);
    same_bytes(what, got[0], got[1], out_n * sizeof(float));
    maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(ref, N, C, OH, OW), NULL);
    check_exact(what, got[0], ref, out_n * sizeof(float));
    dl_cuda_release(d_x);
    free(x), free(init), free(got[0]), free(got[1]), free(ref);
}

static void test_avgpool(int N, int C, int H, int W)
{
    const size_t in_n = (size_t)N * C * H * W;
    if (quick && in_n > 1000000) return;
    const size_t out_n = (size_t)N * C;
    float *x = randn(in_n), *init = poisoned(out_n), *ref = poisoned(out_n), *got[2];
    float *d_x = dev_upload(x, in_n);
    char what[96];
    snprintf(what, sizeof what, "global average pool N%d %dx%dx%d", N, C, H, W);
    for (int run = 0; run < 2; run++) {
        gpu_schedule(run);
        float *d_y = up(init, out_n);
        finish_layer(global_avgpool_cuda(tensor_make(d_x, N, C, H, W), tensor_make(d_y, N, C, 1, 1), NULL), what);
        got[run] = down(d_y, out_n);
        dl_cuda_release(d_y);
    }
    gpu_schedule(0);
    same_bytes(what, got[0], got[1], out_n * sizeof(float));
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(ref, N, C, 1, 1));
    double *refd = to_double(ref, out_n);
    check(what, got[0], refd, out_n);
    dl_cuda_release(d_x);
    free(x), free(init), free(got[0]), free(got[1]), free(ref), free(refd);
}

/* ------------------------------------------------------------------ resize */

/* in (N x C x h x w) -> channels [slice, slice + C) of an N x (C + 2 slice) x H x W tensor. */
static void test_resize(int N, int C, int h, int w, int H, int W, int slice)
{
    const size_t in_n = (size_t)N * C * h * w, hw = (size_t)H * W;
    const int wide = C + 2 * slice;
    if (quick && (double)N * C * hw > 2e6) return;
    const size_t out_n = (size_t)N * wide * hw;
    float *x = randn(in_n), *init = slice_buffer(N, wide, slice, C, hw), *ref = poisoned((size_t)N * C * hw), *outs[2];
    float *d_x = dev_upload(x, in_n);
    char what[128];
    snprintf(what, sizeof what, "bilinear resize N%d C%d %dx%d -> %dx%d%s", N, C, w, h, W, H, slice ? " slice" : "");
    for (int run = 0; run < 2; run++) {
        gpu_schedule(run);
        float *d_out = up(init, out_n);
        tensor d_o = {d_out + (size_t)slice * hw, N, C, H, W, (size_t)wide * hw};
        finish_layer(resize_bilinear_cuda(tensor_make(d_x, N, C, h, w), d_o, NULL), what);
        outs[run] = down(d_out, out_n);
        dl_cuda_release(d_out);
    }
    gpu_schedule(0);
    same_bytes(what, outs[0], outs[1], out_n * sizeof(float));
    float *out = outs[0];
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
    dl_cuda_release(d_x);
    free(x), free(init), free(outs[0]), free(outs[1]), free(ref), free(got), free(refd);
}

/* ------------------------------------------------------------------ concat */

static void test_concat(void)
{
    const int N = 2, H = 7, W = 5, C1 = 3, C2 = 1;
    const size_t hw = (size_t)H * W;
    float *a = randn((size_t)N * C1 * hw), *b = randn((size_t)N * C2 * hw);
    const size_t out_n = (size_t)N * (C1 + C2) * hw;
    float *init = poisoned(out_n), *ref = poisoned(out_n), *got[2];
    float *d_a = dev_upload(a, (size_t)N * C1 * hw), *d_b = dev_upload(b, (size_t)N * C2 * hw);
    const tensor d_in[2] = {tensor_make(d_a, N, C1, H, W), tensor_make(d_b, N, C2, H, W)};
    for (int run = 0; run < 2; run++) {
        gpu_schedule(run);
        float *d_out = up(init, out_n);
        finish_layer(concat_cuda(d_in, 2, tensor_make(d_out, N, C1 + C2, H, W), NULL), "concat");
        got[run] = down(d_out, out_n);
        dl_cuda_release(d_out);
    }
    gpu_schedule(0);
    same_bytes("concat", got[0], got[1], out_n * sizeof(float));
    const tensor in[2] = {tensor_make(a, N, C1, H, W), tensor_make(b, N, C2, H, W)};
    concat_cpu(in, 2, tensor_make(ref, N, C1 + C2, H, W));
    check_exact("concat 3 + 1 channels, N2", got[0], ref, sizeof(float) * out_n);
    dl_cuda_release(d_a), dl_cuda_release(d_b);
    free(a), free(b), free(init), free(got[0]), free(got[1]), free(ref);
}

/* ------------------------------------------------------------------ classification */

static void test_classify(int N, int K, int H, int W)
{
    const size_t hw = (size_t)H * W, n = (size_t)N * K * hw;
    float *x = randn(n);
    for (size_t i = 0; i < n; i++) x[i] *= 20; /* large logits: the max must be subtracted */
    float *sm = poisoned(n), *sm_ref = poisoned(n), *fg = poisoned((size_t)N * hw), *fg_ref = poisoned((size_t)N * hw);
    uint8_t *lab = malloc((size_t)N * hw), *lab_ref = malloc((size_t)N * hw);
    float *sm2 = poisoned(n), *fg2 = poisoned((size_t)N * hw);
    uint8_t *lab2 = malloc((size_t)N * hw);
    memset(lab, 0xee, (size_t)N * hw);
    memset(lab2, 0xee, (size_t)N * hw);
    float *d_x = dev_upload(x, n);
    const tensor d_in = tensor_make(d_x, N, K, H, W);
    char what[96];
    snprintf(what, sizeof what, "softmax over %d channels N%d %dx%d", K, N, W, H);
    for (int run = 0; run < 2; run++) {
        float *s = run ? sm2 : sm, *f = run ? fg2 : fg;
        uint8_t *lb = run ? lab2 : lab;
        gpu_schedule(run);
        float *d_sm = dev_upload(s, n), *d_fg = dev_upload(f, (size_t)N * hw);
        uint8_t *d_lab = dev_alloc((size_t)N * hw);
        must(dl_cuda_upload(d_lab, lb, (size_t)N * hw), "upload");
        finish_layer(softmax_channels_cuda(d_in, tensor_make(d_sm, N, K, H, W), NULL), what);
        finish_layer(argmax_channels_cuda(d_in, d_lab, NULL), "argmax");
        finish_layer(foreground_prob_cuda(d_in, tensor_make(d_fg, N, 1, H, W), NULL), "foreground probability");
        dev_download(s, d_sm, n);
        dev_download(f, d_fg, (size_t)N * hw);
        must(dl_cuda_download(lb, d_lab, (size_t)N * hw), "download");
        dl_cuda_release(d_sm), dl_cuda_release(d_fg), dl_cuda_release(d_lab);
    }
    gpu_schedule(0);
    same_bytes(what, sm, sm2, n * sizeof(float));
    same_bytes("foreground probability", fg, fg2, (size_t)N * hw * sizeof(float));
    same_bytes("argmax", lab, lab2, (size_t)N * hw);

    softmax_channels_cpu(tensor_make(x, N, K, H, W), tensor_make(sm_ref, N, K, H, W));
    argmax_channels_cpu(tensor_make(x, N, K, H, W), lab_ref);
    for (int i = 0; i < N; i++) dl_foreground_prob(x + (size_t)i * K * hw, K, H, W, fg_ref + (size_t)i * hw);
    double *smd = to_double(sm_ref, n), *fgd = to_double(fg_ref, (size_t)N * hw);
    check(what, sm, smd, n);
    snprintf(what, sizeof what, "argmax over %d channels N%d %dx%d", K, N, W, H);
    check_exact(what, lab, lab_ref, (size_t)N * hw);
    snprintf(what, sizeof what, "foreground probability over %d channels N%d %dx%d", K, N, W, H);
    check(what, fg, fgd, (size_t)N * hw);
    dl_cuda_release(d_x);
    free(x), free(sm), free(sm_ref), free(fg), free(fg_ref), free(lab), free(lab_ref), free(smd), free(fgd);
    free(sm2), free(fg2), free(lab2);
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
    float *init = poisoned(n), *got[2];
    uint8_t *d_rgb = dev_alloc((size_t)w * h * 3);
    must(dl_cuda_upload(d_rgb, img.px, (size_t)w * h * 3), "upload");
    char what[96];
    snprintf(what, sizeof what, "normalise RGB8 %dx%d (dl_preprocess, size 0)", w, h);
    for (int run = 0; run < 2; run++) {
        gpu_schedule(run);
        float *d_out = up(init, n);
        finish_layer(normalise_rgb8_cuda(d_rgb, 1, h, w, tensor_make(d_out, 1, 3, h, w), NULL), what);
        got[run] = down(d_out, n);
        dl_cuda_release(d_out);
    }
    gpu_schedule(0);
    same_bytes(what, got[0], got[1], n * sizeof(float));
    check_exact(what, got[0], ref, n * sizeof(float));
    dl_cuda_release(d_rgb);
    free(img.px), free(ref), free(init), free(got[0]), free(got[1]);
}

/* The epilogue's rounding (cvt instructions on a GPU) against tc.h's host functions: a 1x1
 * convolution of zeros whose bias is the value to round (halfway cases, fp16's subnormals and
 * overflow, bf16's carries into the exponent), compared bit for bit. */
static void test_tc_rounding(tc_precision p)
{
    enum { OC = 4096, C = 8 };
    float *b = malloc(sizeof(float) * OC);
    for (int i = 0; i < OC; i++) {
        const float base = i < 1024 ? ldexpf(1.0f + (float)i / 1024.0f, (i % 40) - 20) : frand() * ldexpf(1.0f, i % 36 - 18);
        uint32_t u;
        memcpy(&u, &base, 4);
        if (i % 3 == 0) u = (u & ~0xffffu) | 0x8000u; /* bf16 halfway */
        if (i % 3 == 1) u = (u & ~0x1fffu) | 0x1000u; /* fp16 / tf32 halfway */
        float v;
        memcpy(&v, &u, 4);
        b[i] = i % 2 ? -v : v;
    }
    b[0] = 65519.0f, b[1] = 65520.0f, b[2] = 3e-8f, b[3] = 6.1e-5f, b[4] = 1e-40f, b[5] = 3.4e38f;
    const size_t esz = tc_elem_bytes(p);
    const int Kp = conv_tc_kp(C, 1, 1);
    void *zeros = calloc((size_t)OC * Kp, esz);
    void *d_w = dev_alloc(esz * OC * Kp), *d_in = dev_alloc(esz * C), *d_out = dev_alloc(esz * OC);
    must(dl_cuda_upload(d_w, zeros, esz * OC * Kp), "upload");
    must(dl_cuda_upload(d_in, zeros, esz * C), "upload");
    float *d_b = dev_upload(b, OC);
    conv_tc T = {.C = C, .OC = OC, .KH = 1, .KW = 1, .p = {1, 0, 1}, .Cp = C, .Kp = Kp, .weight = d_w, .bias = d_b};
    const tc_config cfg = {TC_TILE_64x64, 1};
    finish_layer(conv2d_tc_cuda(&T, p, cfg, tc_tensor_make(d_in, 1, 1, 1, C), NULL, tc_tensor_make(d_out, 1, 1, 1, OC), 0,
                                NULL, 0, NULL, NULL),
                 "rounding");
    unsigned char *got = malloc(esz * OC), *want = malloc(esz * OC);
    must(dl_cuda_download(got, d_out, esz * OC), "download");
    for (int i = 0; i < OC; i++) tc_store(p, want, (size_t)i, b[i]);
    char what[96];
    snprintf(what, sizeof what, "tensor-core epilogue rounds to %s as the host does (%d values)", tc_precision_name(p), OC);
    check_exact(what, got, want, esz * OC);
    dl_cuda_release(d_w), dl_cuda_release(d_in), dl_cuda_release(d_out), dl_cuda_release(d_b);
    free(b), free(zeros), free(got), free(want);
}

/* The NHWC layers of the tensor-core path against the CPU's on the same (rounded) values. */
static void test_tc_layers(tc_precision p)
{
    const size_t esz = tc_elem_bytes(p);
    const char *pn = tc_precision_name(p);
    char what[128];
    /* max pooling 3x3/2 pad 1, NHWC with a channel stride over c */
    {
        const int N = 2, C = 24, H = 13, W = 11, ldp = 32, OH = conv_out_size(H, 3, 2, 1, 1), OW = conv_out_size(W, 3, 2, 1, 1);
        float *x = randn((size_t)N * C * H * W), *ref = poisoned((size_t)N * C * OH * OW);
        unsigned char *xh = malloc(esz * N * H * W * ldp), *yh = malloc(esz * N * OH * OW * C);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < H * W; i++) {
                    const size_t a = ((size_t)n * C + c) * H * W + i, e = ((size_t)n * H * W + i) * ldp + c;
                    tc_store(p, xh, e, x[a]);
                    x[a] = tc_load(p, xh, e);
                }
        maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(ref, N, C, OH, OW), NULL);
        void *d_x = dev_alloc(esz * N * H * W * ldp), *d_y = dev_alloc(esz * N * OH * OW * C);
        must(dl_cuda_upload(d_x, xh, esz * N * H * W * ldp), "upload");
        tc_tensor tx = {d_x, N, H, W, C, (size_t)ldp, (size_t)H * W * ldp};
        finish_layer(maxpool2d_tc_cuda(p, tx, 3, 2, 1, tc_tensor_make(d_y, N, OH, OW, C), NULL), "maxpool2d_tc_cuda");
        must(dl_cuda_download(yh, d_y, esz * N * OH * OW * C), "download");
        float *got = malloc(sizeof(float) * N * C * OH * OW);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < OH * OW; i++)
                    got[((size_t)n * C + c) * OH * OW + i] = tc_load(p, yh, ((size_t)n * OH * OW + i) * C + c);
        snprintf(what, sizeof what, "maxpool 3x3/2 NHWC %s N%d %dx%dx%d (channel stride %d)", pn, N, C, H, W, ldp);
        check_exact(what, got, ref, sizeof(float) * N * C * OH * OW);
        /* global average pooling of the same input */
        float *avg = poisoned((size_t)N * C), *d_avg = dev_upload(avg, (size_t)N * C);
        float *d_aws = dev_alloc(sizeof(float) * global_avgpool_tc_workspace_floats(N, H, W, C));
        finish_layer(global_avgpool_tc_cuda(p, tx, d_avg, d_aws, NULL), "global_avgpool_tc_cuda");
        dl_cuda_release(d_aws);
        dev_download(avg, d_avg, (size_t)N * C);
        float *aref = poisoned((size_t)N * C);
        global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(aref, N, C, 1, 1));
        double *arefd = to_double(aref, (size_t)N * C);
        snprintf(what, sizeof what, "global average pool NHWC %s N%d %dx%dx%d", pn, N, C, H, W);
        check(what, avg, arefd, (size_t)N * C);
        dl_cuda_release(d_x), dl_cuda_release(d_y), dl_cuda_release(d_avg);
        free(x), free(ref), free(xh), free(yh), free(got), free(avg), free(aref), free(arefd);
    }
    /* the outputs from NHWC fp32 logits: resized logits, class mass (all but 0, and chosen), arg-max */
    {
        const int N = 2, C = 5, h = 7, w = 9, H = 30, W = 23, ldp = 8;
        float *lg = randn((size_t)N * C * h * w);
        for (size_t i = 0; i < (size_t)N * C * h * w; i++) lg[i] *= 6;
        float *lh = malloc(sizeof(float) * N * h * w * ldp);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < h * w; i++) lh[((size_t)n * h * w + i) * ldp + c] = lg[((size_t)n * C + c) * h * w + i];
        float *d_lg = dev_upload(lh, (size_t)N * h * w * ldp);
        const size_t big = (size_t)N * C * H * W, px = (size_t)N * H * W;
        float *up = poisoned(big), *mass = poisoned(px), *ref = poisoned(big), *mref = poisoned(px);
        float *d_up = dev_upload(up, big), *d_mass = dev_upload(mass, px);
        uint8_t keep[5] = {0, 1, 0, 0, 1}, *lab = malloc(px), *lref = malloc(px);
        uint8_t *d_keep = dev_alloc(5), *d_lab = dev_alloc(px);
        must(dl_cuda_upload(d_keep, keep, 5), "upload");
        tc_tensor tl = {d_lg, N, h, w, C, (size_t)ldp, (size_t)h * w * ldp};
        finish_layer(tc_outputs_cuda(tl, H, W, d_up, d_mass, d_keep, d_lab, NULL), "tc_outputs_cuda");
        dev_download(up, d_up, big);
        dev_download(mass, d_mass, px);
        must(dl_cuda_download(lab, d_lab, px), "download");
        resize_bilinear_cpu(tensor_make(lg, N, C, h, w), tensor_make(ref, N, C, H, W), NULL);
        for (int n = 0; n < N; n++) {
            const float *r = ref + (size_t)n * C * H * W;
            for (int i = 0; i < H * W; i++) {
                mref[(size_t)n * H * W + i] = class_mass_pixel(r + i, C, (int64_t)H * W, keep);
                lref[(size_t)n * H * W + i] = (uint8_t)argmax_pixel(r + i, C, (int64_t)H * W);
            }
        }
        double *refd = to_double(ref, big), *mrefd = to_double(mref, px);
        snprintf(what, sizeof what, "outputs from NHWC logits: resized N%d C%d %dx%d -> %dx%d", N, C, w, h, W, H);
        check(what, up, refd, big);
        check("outputs from NHWC logits: class mass of classes 1 and 4", mass, mrefd, px);
        int differ = 0;
        for (size_t i = 0; i < px; i++) differ += lab[i] != lref[i];
        printf("%s outputs from NHWC logits: arg-max equal on %zu of %zu pixels\n", differ <= 2 ? "ok  " : "FAIL",
               px - differ, px);
        if (differ > 2) failures++; /* a tie broken by a last-bit difference of the resize may differ */
        /* and from NCHW logits at the output size (the fp32 path) */
        float *m2 = poisoned(px), *d_ref = dev_upload(ref, big), *d_m2 = dev_upload(m2, px);
        finish_layer(class_outputs_cuda(tensor_make(d_ref, N, C, H, W), d_m2, NULL, d_lab, NULL), "class_outputs_cuda");
        dev_download(m2, d_m2, px);
        must(dl_cuda_download(lab, d_lab, px), "download");
        for (int n = 0; n < N; n++) dl_foreground_prob(ref + (size_t)n * C * H * W, C, H, W, mref + (size_t)n * H * W);
        double *m2d = to_double(mref, px);
        check("outputs from NCHW logits: foreground probability", m2, m2d, px);
        check_exact("outputs from NCHW logits: arg-max", lab, lref, px);
        dl_cuda_release(d_lg), dl_cuda_release(d_up), dl_cuda_release(d_mass), dl_cuda_release(d_keep);
        dl_cuda_release(d_lab), dl_cuda_release(d_ref), dl_cuda_release(d_m2);
        free(lg), free(lh), free(up), free(mass), free(ref), free(mref), free(lab), free(lref), free(refd), free(mrefd);
        free(m2), free(m2d);
    }
}

/* Global average pooling in NHWC over several pixel chunks and a partial channel group. */
static void test_tc_avgpool(tc_precision p, int N, int C, int H, int W)
{
    const size_t esz = tc_elem_bytes(p), hw = (size_t)H * W;
    float *x = randn((size_t)N * C * hw);
    unsigned char *xh = malloc(esz * N * C * hw);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (size_t i = 0; i < hw; i++) {
                const size_t a = ((size_t)n * C + c) * hw + i, e = ((size_t)n * hw + i) * C + c;
                tc_store(p, xh, e, x[a]);
                x[a] = tc_load(p, xh, e);
            }
    void *d_x = dev_alloc(esz * N * C * hw);
    must(dl_cuda_upload(d_x, xh, esz * N * C * hw), "upload");
    float *avg = poisoned((size_t)N * C), *d_avg = dev_upload(avg, (size_t)N * C);
    float *d_ws = dev_alloc(sizeof(float) * global_avgpool_tc_workspace_floats(N, H, W, C));
    finish_layer(global_avgpool_tc_cuda(p, tc_tensor_make(d_x, N, H, W, C), d_avg, d_ws, NULL), "global_avgpool_tc_cuda");
    dev_download(avg, d_avg, (size_t)N * C);
    float *ref = poisoned((size_t)N * C);
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(ref, N, C, 1, 1));
    double *refd = to_double(ref, (size_t)N * C);
    char what[96];
    snprintf(what, sizeof what, "global average pool NHWC %s N%d %dx%dx%d", tc_precision_name(p), N, C, H, W);
    check(what, avg, refd, (size_t)N * C);
    dl_cuda_release(d_x), dl_cuda_release(d_avg), dl_cuda_release(d_ws);
    free(x), free(xh), free(avg), free(ref), free(refd);
}

/* The fp32 products of the image-pooling branch against a loop in double. */
static void test_matvec(void)
{
    const int N = 3, I = 300, O = 37, ldw = 310;
    float *W = randn((size_t)O * ldw), *b = randn(O), *x = randn((size_t)N * I), *y = poisoned((size_t)N * O);
    double *ref = malloc(sizeof(double) * N * O);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = b[o];
            for (int i = 0; i < I; i++) s += (double)W[(size_t)o * ldw + i] * x[(size_t)n * I + i];
            ref[n * O + o] = s > 0 ? s : 0;
        }
    float *d_W = dev_upload(W, (size_t)O * ldw), *d_b = dev_upload(b, O), *d_x = dev_upload(x, (size_t)N * I);
    float *d_y = dev_upload(y, (size_t)N * O);
    finish_layer(matvec_f32_cuda(d_W, ldw, d_b, d_x, N, I, O, 1, d_y, NULL), "matvec_f32_cuda");
    dev_download(y, d_y, (size_t)N * O);
    check("matvec fp32 N3 300 -> 37 (row stride 310), ReLU", y, ref, (size_t)N * O);
    dl_cuda_release(d_W), dl_cuda_release(d_b), dl_cuda_release(d_x), dl_cuda_release(d_y);
    free(W), free(b), free(x), free(y), free(ref);
}

/* The tensor-core convolutions: the shared cases with the configuration conv2d_tc_choose picks,
 * and with every tile shape and a split of K forced; the model's shapes with fp32 output too.
 * Tolerance: abs 3u of the largest |ref| + 1.5u relative, u the storage type's unit roundoff
 * (inputs, weights and outputs are rounded to it; sums are fp32). */
static void test_tensor_cores(void)
{
    static const tc_precision precs[3] = {TC_BF16, TC_FP16, TC_TF32};
    static const double unit[3] = {1.0 / 256, 1.0 / 2048, 1.0 / 2048};
    static tc_ctx ctx[3][5];
    test_matvec();
    for (int i = 0; i < 3; i++) {
        test_tc_rounding(precs[i]);
        test_tc_layers(precs[i]);
        test_tc_avgpool(precs[i], 2, 200, 23, 25);
        conv_impl impls[5];
        const double u = unit[i], cap = quick ? 4e6 : 3e7;
        const char *pn = tc_precision_name(precs[i]);
        static char names[3][5][48];
        const tc_config forced[3] = {{TC_TILE_128x128, 1}, {TC_TILE_128x64, 3}, {TC_TILE_64x64, 2}};
        for (int k = 0; k < 5; k++) {
            ctx[i][k] = (tc_ctx){.prec = precs[i], .forced = k >= 1 && k <= 3, .cfg = k >= 1 && k <= 3 ? forced[k - 1] : forced[0],
                                 .odd = k == 4};
            if (k == 0) snprintf(names[i][k], sizeof names[i][k], "tc %s (chosen)", pn);
            else if (k <= 3) conv2d_tc_name(forced[k - 1], precs[i], names[i][k], sizeof names[i][k]);
            else snprintf(names[i][k], sizeof names[i][k], "tc %s, unaligned slice", pn);
            impls[k] = (conv_impl){.name = names[i][k], .run = run_tc, .ctx = &ctx[i][k], .abs_tol = 3 * u,
                                   .rel_tol = 1.5 * u, .max_macs = k == 0 ? 2 * cap : cap};
        }
        conv_check_all(impls, 5);
        tc_ctx f32 = {.prec = precs[i], .out_f32 = 1};
        char f32name[48];
        snprintf(f32name, sizeof f32name, "tc %s, fp32 out", pn);
        const conv_impl model[2] = {{.name = names[i][0], .run = run_tc, .ctx = &ctx[i][0], .abs_tol = 3 * u, .rel_tol = 1.5 * u},
                                    {.name = f32name, .run = run_tc, .ctx = &f32, .abs_tol = 3 * u, .rel_tol = 1.5 * u}};
        for (size_t c = 0; c < sizeof tc_model_cases / sizeof tc_model_cases[0]; c++)
            if (!quick || conv_case_macs(&tc_model_cases[c]) < 2e7) conv_check(&tc_model_cases[c], model, 2);
    }
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

    const char *tc_only = getenv("DL_TEST_TC_ONLY");
    if (tc_only && *tc_only && strcmp(tc_only, "0") != 0) {
        test_tensor_cores();
        return finish("CUDA tensor-core layer");
    }
    const conv_impl cuda = {.name = "cuda", .run = run_cuda, .max_macs = quick ? 5e7 : 0};
    conv_check_all(&cuda, 1);
    test_tensor_cores();
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
    if (schedules_verdict()) failures++;
    return finish("CUDA layer");
}
#endif
