/*
 * test_layers.c - every CPU layer against an independent reference, on odd shapes.
 *
 * References are written here, from the definitions, in double precision: the convolution by
 * its seven loops, BatchNorm unfolded, pooling by enumerating windows, bilinear resize from
 * PyTorch's documented formula. Outputs are poisoned with NaN before each run so that an element
 * never written fails, and channel slices are checked to leave their neighbours untouched.
 * Tolerances as in testutil.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "testutil.h"
#include "threadpool.h"

/* ------------------------------------------------------------------ convolution */

typedef struct conv_case {
    int N, C, H, W, OC, k, stride, dilation, relu, residual, slice;
} conv_case;

static void test_conv(const conv_case *t, dl_pool *pool)
{
    conv2d L = {.C = t->C, .OC = t->OC, .KH = t->k, .KW = t->k,
                .p = {t->stride, t->k / 2 * t->dilation, t->dilation}, .relu = t->relu};
    const int OH = conv_out_size(t->H, t->k, t->stride, L.p.pad, t->dilation);
    const int OW = conv_out_size(t->W, t->k, t->stride, L.p.pad, t->dilation);
    const size_t per_img = (size_t)t->C * t->H * t->W, out_hw = (size_t)OH * OW;
    float *x = randn(per_img * t->N);
    float *w = randn((size_t)t->OC * t->C * t->k * t->k);
    float *b = randn((size_t)t->OC);
    L.weight = w;
    L.bias = b;
    float *r = t->residual ? randn((size_t)t->N * t->OC * out_hw) : NULL;
    tensor res = tensor_make(r, t->N, t->OC, OH, OW);

    /* With slice, the output is channels [3, 3 + OC) of a tensor with OC + 5 channels. */
    const int wide = t->slice ? t->OC + 5 : t->OC, c0 = t->slice ? 3 : 0;
    float *out = poisoned((size_t)t->N * wide * out_hw);
    for (size_t i = 0; i < (size_t)t->N * wide * out_hw; i++) out[i] = 12345.0f;
    for (int n = 0; n < t->N; n++)
        for (size_t i = 0; i < (size_t)t->OC * out_hw; i++) out[(n * wide + c0) * out_hw + i] = NAN;
    tensor o = {out + c0 * out_hw, t->N, t->OC, OH, OW, wide * out_hw};
    float *scratch = malloc(sizeof(float) * conv2d_cpu_scratch_floats() * dl_pool_threads(pool));
    conv2d_cpu(&L, tensor_make(x, t->N, t->C, t->H, t->W), r ? &res : NULL, o, scratch, pool);

    /* reference: the definition, in double */
    size_t n_out = (size_t)t->N * t->OC * out_hw;
    double *ref = malloc(n_out * sizeof *ref);
    float *got = malloc(n_out * sizeof *got);
    for (int n = 0; n < t->N; n++)
        for (int oc = 0; oc < t->OC; oc++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double s = b[oc];
                    for (int c = 0; c < t->C; c++)
                        for (int ky = 0; ky < t->k; ky++)
                            for (int kx = 0; kx < t->k; kx++) {
                                int iy = oy * t->stride - L.p.pad + ky * t->dilation;
                                int ix = ox * t->stride - L.p.pad + kx * t->dilation;
                                if (iy < 0 || iy >= t->H || ix < 0 || ix >= t->W) continue;
                                s += (double)x[n * per_img + ((size_t)c * t->H + iy) * t->W + ix] *
                                     w[(((size_t)oc * t->C + c) * t->k + ky) * t->k + kx];
                            }
                    size_t i = ((size_t)n * t->OC + oc) * out_hw + (size_t)oy * OW + ox;
                    if (r) s += r[i];
                    if (t->relu && s < 0) s = 0;
                    ref[i] = s;
                    got[i] = out[(n * wide + c0 + oc) * out_hw + (size_t)oy * OW + ox];
                }
    char what[160];
    snprintf(what, sizeof what, "conv N%d %dx%dx%d -> %d k%d s%d d%d%s%s%s", t->N, t->C, t->H, t->W, t->OC, t->k,
             t->stride, t->dilation, t->relu ? " relu" : "", t->residual ? " +res" : "", t->slice ? " slice" : "");
    check(what, got, ref, n_out);

    if (t->slice) { /* neighbours of the slice untouched */
        int touched = 0;
        for (int n = 0; n < t->N; n++)
            for (int c = 0; c < wide; c++) {
                if (c >= c0 && c < c0 + t->OC) continue;
                for (size_t i = 0; i < out_hw; i++) touched += out[(n * wide + c) * out_hw + i] != 12345.0f;
            }
        if (touched) {
            printf("FAIL %s: %d elements outside the slice were written\n", what, touched);
            failures++;
        }
    }
    /* conv2d_naive (the reference the engine's other tests use) must agree with this one too */
    float *naive = poisoned(n_out);
    conv2d_naive(&L, tensor_make(x, t->N, t->C, t->H, t->W), r ? &res : NULL,
                 tensor_make(naive, t->N, t->OC, OH, OW));
    snprintf(what + strlen(what), sizeof what - strlen(what), " (naive)");
    check(what, naive, ref, n_out);

    free(x); free(w); free(b); free(r); free(out); free(scratch); free(ref); free(got); free(naive);
}

/* ------------------------------------------------------------------ batch norm folding */

static void test_batchnorm_fold(dl_pool *pool)
{
    const int N = 2, C = 5, H = 9, W = 7, OC = 6, k = 3;
    conv2d L = {.C = C, .OC = OC, .KH = k, .KW = k, .p = {1, 1, 1}};
    float *x = randn((size_t)N * C * H * W), *w = randn((size_t)OC * C * k * k);
    float gamma[6], beta[6], mean[6], var[6], bias[6];
    for (int i = 0; i < OC; i++) {
        gamma[i] = 1.5f * frand();
        beta[i] = frand();
        mean[i] = frand();
        var[i] = 0.1f + fabsf(frand());
    }
    /* unfolded: conv (no bias) then batchnorm */
    L.weight = w;
    float *y = poisoned((size_t)N * OC * H * W), *z = poisoned((size_t)N * OC * H * W);
    conv2d_naive(&L, tensor_make(x, N, C, H, W), NULL, tensor_make(y, N, OC, H, W));
    batchnorm_cpu(tensor_make(y, N, OC, H, W), gamma, beta, mean, var, 1e-5f, tensor_make(z, N, OC, H, W));
    double *ref = malloc(sizeof(double) * N * OC * H * W);
    for (int i = 0; i < N * OC * H * W; i++) ref[i] = z[i];
    /* folded */
    batchnorm_fold(w, bias, OC, (size_t)C * k * k, gamma, beta, mean, var, 1e-5f);
    L.bias = bias;
    float *f = poisoned((size_t)N * OC * H * W);
    float *scratch = malloc(sizeof(float) * conv2d_cpu_scratch_floats() * dl_pool_threads(pool));
    conv2d_cpu(&L, tensor_make(x, N, C, H, W), NULL, tensor_make(f, N, OC, H, W), scratch, pool);
    check("batchnorm folded into conv == conv then batchnorm", f, ref, (size_t)N * OC * H * W);
    free(x); free(w); free(y); free(z); free(ref); free(f); free(scratch);
}

/* ------------------------------------------------------------------ pooling, element-wise */

static void test_maxpool(int N, int C, int H, int W, dl_pool *pool)
{
    const int OH = conv_out_size(H, 3, 2, 1, 1), OW = conv_out_size(W, 3, 2, 1, 1);
    float *x = randn((size_t)N * C * H * W), *y = poisoned((size_t)N * C * OH * OW);
    maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(y, N, C, OH, OW), pool);
    double *ref = malloc(sizeof(double) * N * C * OH * OW);
    for (int p = 0; p < N * C; p++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double m = -INFINITY;
                for (int iy = 2 * oy - 1; iy <= 2 * oy + 1; iy++)
                    for (int ix = 2 * ox - 1; ix <= 2 * ox + 1; ix++)
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W) m = fmax(m, x[((size_t)p * H + iy) * W + ix]);
                ref[((size_t)p * OH + oy) * OW + ox] = m;
            }
    char what[96];
    snprintf(what, sizeof what, "maxpool 3x3/2 pad 1 N%d %dx%dx%d", N, C, H, W);
    check(what, y, ref, (size_t)N * C * OH * OW);
    free(x); free(y); free(ref);
}

static void test_avgpool(int N, int C, int H, int W)
{
    float *x = randn((size_t)N * C * H * W), *y = poisoned((size_t)N * C);
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(y, N, C, 1, 1));
    double *ref = calloc((size_t)N * C, sizeof(double));
    for (int p = 0; p < N * C; p++) {
        for (int i = 0; i < H * W; i++) ref[p] += x[(size_t)p * H * W + i];
        ref[p] /= H * W;
    }
    char what[96];
    snprintf(what, sizeof what, "global average pool N%d %dx%dx%d", N, C, H, W);
    check(what, y, ref, (size_t)N * C);
    free(x); free(y); free(ref);
}

/* PyTorch's bilinear, align_corners=False, from its documentation: the source coordinate of
 * output pixel i is (i + 0.5) * in / out - 0.5, negative values clamp to 0. */
static double ref_bilinear(const float *p, int h, int w, double sy, double sx)
{
    sy = sy < 0 ? 0 : sy;
    sx = sx < 0 ? 0 : sx;
    int y0 = (int)floor(sy), x0 = (int)floor(sx);
    if (y0 > h - 1) y0 = h - 1;
    if (x0 > w - 1) x0 = w - 1;
    int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
    double ly = sy - y0, lx = sx - x0;
    return (1 - ly) * ((1 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
           ly * ((1 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1]);
}

static void test_resize(int N, int C, int h, int w, int H, int W, dl_pool *pool)
{
    float *x = randn((size_t)N * C * h * w), *y = poisoned((size_t)N * C * H * W);
    resize_bilinear_cpu(tensor_make(x, N, C, h, w), tensor_make(y, N, C, H, W), pool);
    double *ref = malloc(sizeof(double) * N * C * H * W);
    for (int p = 0; p < N * C; p++)
        for (int Y = 0; Y < H; Y++)
            for (int X = 0; X < W; X++)
                ref[((size_t)p * H + Y) * W + X] = ref_bilinear(x + (size_t)p * h * w, h, w,
                                                                (Y + 0.5) * h / H - 0.5, (X + 0.5) * w / W - 0.5);
    char what[96];
    snprintf(what, sizeof what, "bilinear resize N%d C%d %dx%d -> %dx%d", N, C, w, h, W, H);
    check(what, y, ref, (size_t)N * C * H * W);
    free(x); free(y); free(ref);
}

static void test_elementwise(void)
{
    const int N = 2, C = 3, H = 5, W = 7, n = N * C * H * W;
    float *a = randn(n), *b = randn(n), *out = poisoned(n);
    double *ref = malloc(sizeof(double) * n);
    add_cpu(tensor_make(a, N, C, H, W), tensor_make(b, N, C, H, W), tensor_make(out, N, C, H, W));
    for (int i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
    check("add", out, ref, n);
    relu_cpu(tensor_make(out, N, C, H, W));
    for (int i = 0; i < n; i++) ref[i] = ref[i] > 0 ? ref[i] : 0;
    check("relu", out, ref, n);

    /* concat of a (3 channels) and b viewed as 1 channel of 2*3*7*5/... : use C=3 and C=1 inputs */
    float *c1 = randn((size_t)N * 1 * H * W), *cat = poisoned((size_t)N * 4 * H * W);
    tensor ins[2] = {tensor_make(a, N, 3, H, W), tensor_make(c1, N, 1, H, W)};
    concat_cpu(ins, 2, tensor_make(cat, N, 4, H, W));
    double *cref = malloc(sizeof(double) * N * 4 * H * W);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < H * W; p++)
                cref[((size_t)i * 4 + c) * H * W + p] =
                    c < 3 ? a[((size_t)i * 3 + c) * H * W + p] : c1[(size_t)i * H * W + p];
    check("concat 3 + 1 channels", cat, cref, (size_t)N * 4 * H * W);

    /* softmax and argmax over 21 classes */
    const int K = 21, hw = 13 * 11;
    float *lg = randn((size_t)N * K * hw), *sm = poisoned((size_t)N * K * hw);
    for (int i = 0; i < N * K * hw; i++) lg[i] *= 20; /* large logits: needs the max subtraction */
    softmax_channels_cpu(tensor_make(lg, N, K, 13, 11), tensor_make(sm, N, K, 13, 11));
    double *sref = malloc(sizeof(double) * N * K * hw);
    uint8_t *lab = malloc((size_t)N * hw);
    argmax_channels_cpu(tensor_make(lg, N, K, 13, 11), lab);
    int wrong = 0;
    for (int i = 0; i < N; i++)
        for (int p = 0; p < hw; p++) {
            double m = -INFINITY, s = 0;
            int best = 0;
            for (int c = 0; c < K; c++) {
                double v = lg[((size_t)i * K + c) * hw + p];
                if (v > m) {
                    m = v;
                    best = c;
                }
            }
            for (int c = 0; c < K; c++) s += exp(lg[((size_t)i * K + c) * hw + p] - m);
            for (int c = 0; c < K; c++)
                sref[((size_t)i * K + c) * hw + p] = exp(lg[((size_t)i * K + c) * hw + p] - m) / s;
            wrong += lab[(size_t)i * hw + p] != best;
        }
    check("softmax over 21 channels", sm, sref, (size_t)N * K * hw);
    printf("%s argmax over 21 channels: %d of %d pixels differ\n", wrong ? "FAIL" : "ok  ", wrong, N * hw);
    if (wrong) failures++;
    free(a); free(b); free(out); free(ref); free(c1); free(cat); free(cref);
    free(lg); free(sm); free(sref); free(lab);
}

int main(void)
{
    dl_pool *pool = dl_pool_create(2);
    const conv_case convs[] = {
        /* N  C   H   W   OC  k s d relu res slice */
        {1, 3, 33, 47, 64, 7, 2, 1, 1, 0, 0},      /* the stem, odd map */
        {1, 64, 17, 13, 256, 1, 1, 1, 0, 0, 0},    /* 1x1 expansion */
        {2, 300, 9, 11, 21, 1, 1, 1, 0, 0, 0},     /* K > one panel, OC not a multiple of 4, batch */
        {1, 37, 15, 16, 70, 3, 2, 1, 1, 0, 0},     /* 3x3 stride 2 (layer2.0) */
        {1, 33, 13, 17, 40, 3, 1, 2, 1, 1, 0},     /* dilation 2 + residual */
        {1, 19, 13, 17, 9, 3, 1, 12, 1, 0, 1},     /* ASPP rate 12 into a channel slice */
        {2, 19, 13, 17, 9, 3, 1, 24, 1, 0, 1},     /* rate 24 > map: only the centre tap */
        {1, 23, 65, 3, 5, 3, 1, 36, 0, 0, 0},      /* rate 36, a tall thin map */
        {1, 600, 1, 1, 130, 1, 1, 1, 1, 0, 0},     /* the 1x1 image-pooling conv on a 1x1 map */
        {1, 7, 1, 1, 6, 3, 1, 4, 1, 0, 0},         /* 3x3 on a 1x1 map */
        {3, 129, 5, 7, 131, 1, 2, 1, 0, 1, 0},     /* strided 1x1 (downsample), residual, N=3 */
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) test_conv(&convs[i], pool);
    test_batchnorm_fold(pool);
    test_maxpool(1, 3, 33, 47, pool);
    test_maxpool(2, 5, 1, 1, pool);
    test_maxpool(1, 2, 2, 9, pool);
    test_avgpool(2, 7, 13, 11);
    test_avgpool(1, 3, 1, 1);
    test_resize(1, 3, 5, 7, 41, 33, pool);    /* up, by non-integer factors */
    test_resize(2, 2, 65, 65, 520, 519, pool);
    test_resize(1, 2, 1, 1, 9, 13, pool);     /* 1x1 source: the ASPP broadcast */
    test_resize(1, 1, 40, 30, 7, 9, pool);    /* down */
    test_resize(1, 1, 6, 8, 6, 8, pool);      /* identity */
    test_elementwise();
    dl_pool_free(pool);
    return finish("layer");
}
