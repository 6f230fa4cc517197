/*
 * test_cuda_index.c - the CUDA kernels' arithmetic (layers/cuda_index.h), run on the CPU.
 *
 * Needs no GPU and no CUDA: it checks the index helpers against direct computations, that the
 * convolution's tile loaders and thread tiles cover every element exactly once, and then runs
 * every kernel the way the GPU would, block by block and thread by thread, with a barrier
 * between phases (all threads load, then all threads multiply, ...), calling the very functions
 * the kernels call. Shared-memory tiles are poisoned with NaN before each load phase, outputs
 * before each run, so that an element nobody loads or writes fails. The results are compared
 * with the plain-C layers: the convolution with conv2d_naive (double), the rest bit for bit where
 * the formula is the same, and the per-pixel softmax (layers.h's, which the CPU shares) with a
 * direct computation in double.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_check.h"
#include "cuda_index.h"
#include "deeplab.h"
#include "layers.h"
#include "testutil.h"

static void expect(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

/* ------------------------------------------------------------------ index helpers */

static void test_split_nchw(void)
{
    const int N = 2, C = 3, H = 5, W = 7;
    int bad = 0;
    int64_t e = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++, e++) {
                    int n2, c2, y2, x2;
                    split_nchw(e, C, H, W, &n2, &c2, &y2, &x2);
                    bad += n2 != n || c2 != c || y2 != y || x2 != x;
                    bad += offset_nchw((int64_t)C * H * W, H, W, n, c, y, x) != e;
                    bad += offset_nchw(1000, H, W, n, c, y, x) != 1000 * n + (c * H + y) * W + x;
                }
    /* past 2^31: the stem's output of one 8192 x 8192 image has 64 x 4096 x 4096 elements */
    const int64_t big = (int64_t)3 * 64 * 4096 * 4096 + (int64_t)17 * 4096 * 4096 + 4095 * 4096 + 11;
    int n, c, y, x;
    split_nchw(big, 64, 4096, 4096, &n, &c, &y, &x);
    bad += n != 3 || c != 17 || y != 4095 || x != 11;
    bad += offset_nchw((int64_t)64 * 4096 * 4096, 4096, 4096, n, c, y, x) != big;
    expect(bad == 0, "split_nchw / offset_nchw against nested loops, and past 2^31");
}

static void test_grid_blocks(void)
{
    int bad = grid_blocks(1, 256) != 1 || grid_blocks(256, 256) != 1 || grid_blocks(257, 256) != 2;
    bad += grid_blocks(0, 256) != 1;
    bad += grid_blocks((int64_t)1 << 40, 256) != GRID_MAX_BLOCKS;
    expect(!bad, "grid_blocks: ceil(total / threads), at least 1, capped");
}

static void test_conv_split_k(void)
{
    int bad = 0;
    const int sizes[][2] = {{1, 1}, {3, 3}, {7, 7}, {1, 3}, {5, 2}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int KH = sizes[s][0], KW = sizes[s][1];
        int k = 0;
        for (int c = 0; c < 5; c++)
            for (int ky = 0; ky < KH; ky++)
                for (int kx = 0; kx < KW; kx++, k++) {
                    int c2, ky2, kx2;
                    conv_split_k(k, KH, KW, &c2, &ky2, &kx2);
                    bad += c2 != c || ky2 != ky || kx2 != kx;
                }
    }
    expect(!bad, "conv_split_k follows the OC x C x KH x KW weight order");
}

static void test_conv_input_offset(void)
{
    int bad = 0, padding = 0, inside = 0;
    const int cases[][6] = {/* C, H, W, k, stride, dilation */
                            {3, 33, 47, 7, 2, 1}, {4, 13, 17, 3, 1, 12}, {2, 5, 7, 1, 2, 1}, {3, 1, 1, 3, 1, 4}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int *q = cases[t];
        conv2d L = {.C = q[0], .OC = 1, .KH = q[3], .KW = q[3], .p = {q[4], q[3] / 2 * q[5], q[5]}};
        float dummy = 0;
        const int OH = conv_out_size(q[1], q[3], q[4], L.p.pad, q[5]);
        const int OW = conv_out_size(q[2], q[3], q[4], L.p.pad, q[5]);
        conv_geom g;
        if (conv_geom_init(&g, &L, tensor_make(&dummy, 1, q[0], q[1], q[2]), NULL, tensor_make(&dummy, 1, 1, OH, OW))) {
            bad++;
            continue;
        }
        for (int k = 0; k < g.K; k++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    const int c = k / (q[3] * q[3]), ky = k / q[3] % q[3], kx = k % q[3];
                    const int iy = oy * q[4] - L.p.pad + ky * q[5], ix = ox * q[4] - L.p.pad + kx * q[5];
                    const int in = iy >= 0 && iy < q[1] && ix >= 0 && ix < q[2];
                    const int64_t want = in ? ((int64_t)c * q[1] + iy) * q[2] + ix : -1;
                    bad += conv_input_offset(&g, k, oy, ox) != want;
                    padding += !in;
                    inside += in;
                }
    }
    char what[128];
    snprintf(what, sizeof what, "conv_input_offset against the definition (%d taps inside, %d in the padding)",
             inside, padding);
    expect(!bad && padding > 0 && inside > 0, what);
}

static void test_conv_geom_init(void)
{
    float d = 0;
    conv2d L = {.C = 4, .OC = 6, .KH = 3, .KW = 3, .p = {2, 1, 1}};
    conv_geom g;
    tensor in = tensor_make(&d, 2, 4, 9, 10), out = tensor_make(&d, 2, 6, 5, 5);
    int bad = conv_geom_init(&g, &L, in, NULL, out) != 0 || g.K != 36 || g.P != 25 || g.in_ldn != 360;
    tensor wrong = tensor_make(&d, 2, 6, 5, 4);
    bad += conv_geom_init(&g, &L, in, NULL, wrong) == 0;        /* wrong output width */
    bad += conv_geom_init(&g, &L, in, &wrong, out) == 0;        /* wrong residual */
    bad += conv_geom_init(&g, &L, tensor_make(&d, 2, 5, 9, 10), NULL, out) == 0; /* wrong channels */
    expect(!bad, "conv_geom_init: shapes accepted and mismatches refused");
}

/* Every output of a tile belongs to exactly one (thread, i, j); the loaders fill every element
 * of As and Bs exactly once. */
static void test_conv_tile_cover(void)
{
    static int owner[CONV_BM][CONV_BN], a_fill[CONV_BK][CONV_BM], b_fill[CONV_BK][CONV_BN];
    memset(owner, 0, sizeof owner);
    memset(a_fill, 0, sizeof a_fill);
    memset(b_fill, 0, sizeof b_fill);
    for (int t = 0; t < CONV_THREADS; t++) {
        for (int i = 0; i < CONV_TM; i++)
            for (int j = 0; j < CONV_TN; j++) owner[conv_thread_row(t) + i][conv_thread_col(t) + j * CONV_COL_STEP]++;
        for (int r = 0; r < CONV_BK * CONV_BM / CONV_THREADS; r++)
            a_fill[t % CONV_BK][t / CONV_BK + r * (CONV_THREADS / CONV_BK)]++;
        for (int r = 0; r < CONV_BK * CONV_BN / CONV_THREADS; r++)
            b_fill[t / CONV_BN + r * (CONV_THREADS / CONV_BN)][t % CONV_BN]++;
    }
    int bad = 0;
    for (int m = 0; m < CONV_BM; m++)
        for (int p = 0; p < CONV_BN; p++) bad += owner[m][p] != 1;
    for (int k = 0; k < CONV_BK; k++) {
        for (int m = 0; m < CONV_BM; m++) bad += a_fill[k][m] != 1;
        for (int p = 0; p < CONV_BN; p++) bad += b_fill[k][p] != 1;
    }
    expect(!bad, "conv tile: every output owned once, every As/Bs element loaded once");
}

/* ------------------------------------------------------------------ kernels, emulated */

/* conv2d_kernel for every block of the grid, phase by phase. */
static void emulate_conv2d(const conv2d *L, tensor in, const tensor *residual, tensor out)
{
    conv_geom g;
    if (conv_geom_init(&g, L, in, residual, out) != 0) {
        expect(0, "emulate_conv2d: conv_geom_init refused the shapes");
        return;
    }
    static float As[CONV_BK][CONV_BM + CONV_APAD], Bs[CONV_BK][CONV_BN];
    static float acc[CONV_THREADS][CONV_TM][CONV_TN];
    static int valid[CONV_THREADS], oy[CONV_THREADS], ox[CONV_THREADS];
    for (int n = 0; n < in.n; n++)
        for (int m0 = 0; m0 < g.OC; m0 += CONV_BM)     /* blockIdx.y */
            for (int p0 = 0; p0 < g.P; p0 += CONV_BN) { /* blockIdx.x */
                const float *x = in.data + n * g.in_ldn;
                for (int t = 0; t < CONV_THREADS; t++) {
                    valid[t] = conv_b_pixel(&g, p0, t, &oy[t], &ox[t]);
                    memset(acc[t], 0, sizeof acc[t]);
                }
                for (int k0 = 0; k0 < g.K; k0 += CONV_BK) {
                    for (int k = 0; k < CONV_BK; k++) { /* stale tiles must not leak through */
                        for (int i = 0; i < CONV_BM + CONV_APAD; i++) As[k][i] = NAN;
                        for (int j = 0; j < CONV_BN; j++) Bs[k][j] = NAN;
                    }
                    for (int t = 0; t < CONV_THREADS; t++) {
                        conv_load_a(&g, L->weight, m0, k0, t, As);
                        conv_load_b(&g, x, k0, valid[t], oy[t], ox[t], t, Bs);
                    }
                    /* __syncthreads() */
                    for (int t = 0; t < CONV_THREADS; t++) conv_tile_fma(As, Bs, t, acc[t]);
                    /* __syncthreads() */
                }
                for (int t = 0; t < CONV_THREADS; t++)
                    conv_store(&g, L->bias, residual ? residual->data + n * g.res_ldn : NULL, out.data + n * g.out_ldn,
                               L->relu, m0, p0, t, acc[t]);
            }
}

/* emulate_conv2d as a conv_impl of conv_check.h (host buffers already). */
static int run_emulated(void *ctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    (void)ctx;
    int OH, OW;
    conv_out_shape(L, in, &OH, &OW);
    const size_t hw = (size_t)OH * OW;
    emulate_conv2d(L, in, residual, (tensor){out + (size_t)c0 * hw, in.n, L->OC, OH, OW, (size_t)wide * hw});
    return 0;
}

/* maxpool2d_kernel, resize_bilinear_kernel: one thread per output element. */
static void test_maxpool(int N, int C, int H, int W)
{
    const int OH = conv_out_size(H, 3, 2, 1, 1), OW = conv_out_size(W, 3, 2, 1, 1);
    const size_t total = (size_t)N * C * OH * OW;
    float *x = randn((size_t)N * C * H * W), *got = poisoned(total), *ref = poisoned(total);
    for (int64_t e = 0; e < (int64_t)total; e++) {
        int n, c, oy, ox;
        split_nchw(e, C, OH, OW, &n, &c, &oy, &ox);
        const float *plane = x + offset_nchw((int64_t)C * H * W, H, W, n, c, 0, 0);
        got[offset_nchw((int64_t)C * OH * OW, OH, OW, n, c, oy, ox)] = maxpool_at(plane, H, W, 3, 2, 1, oy, ox);
    }
    maxpool2d_cpu(tensor_make(x, N, C, H, W), 3, 2, 1, tensor_make(ref, N, C, OH, OW), NULL);
    char what[96];
    snprintf(what, sizeof what, "emulated maxpool N%d %dx%dx%d equals maxpool2d_cpu bit for bit", N, C, H, W);
    expect(memcmp(got, ref, total * sizeof(float)) == 0, what);
    free(x), free(got), free(ref);
}

static void test_resize(int N, int C, int h, int w, int H, int W, int slice)
{
    const int wide = C + 2 * slice, c0 = slice;
    const size_t plane = (size_t)H * W;
    float *x = randn((size_t)N * C * h * w), *got = malloc(sizeof(float) * N * wide * plane);
    float *ref = poisoned((size_t)N * C * plane);
    for (size_t i = 0; i < (size_t)N * wide * plane; i++) got[i] = 12345.0f;
    for (int n = 0; n < N; n++)
        for (size_t i = 0; i < C * plane; i++) got[(n * wide + c0) * plane + i] = NAN;
    const int64_t out_ldn = (int64_t)wide * plane;
    for (int64_t e = 0; e < (int64_t)N * C * H * W; e++) {
        int n, c, oy, ox;
        split_nchw(e, C, H, W, &n, &c, &oy, &ox);
        const float *p = x + offset_nchw((int64_t)C * h * w, h, w, n, c, 0, 0);
        got[c0 * plane + offset_nchw(out_ldn, H, W, n, c, oy, ox)] = resize_bilinear_at(p, h, w, H, W, oy, ox);
    }
    resize_bilinear_cpu(tensor_make(x, N, C, h, w), tensor_make(ref, N, C, H, W), NULL);
    int bad = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < wide; c++)
            for (size_t i = 0; i < plane; i++) {
                const float v = got[(n * wide + c) * plane + i];
                if (c < c0 || c >= c0 + C) bad += v != 12345.0f;
                else bad += memcmp(&v, &ref[(n * C + c - c0) * plane + i], sizeof v) != 0;
            }
    char what[128];
    snprintf(what, sizeof what, "emulated resize N%d C%d %dx%d -> %dx%d%s equals resize_bilinear_cpu bit for bit", N, C,
             w, h, W, H, slice ? " (slice)" : "");
    expect(!bad, what);
    free(x), free(got), free(ref);
}

/* global_avgpool_kernel: AVGPOOL_THREADS partial sums per plane, then the pairwise steps. */
static void test_avgpool(int N, int C, int H, int W)
{
    float *x = randn((size_t)N * C * H * W), *got = poisoned((size_t)N * C), *ref = poisoned((size_t)N * C);
    static double partial[AVGPOOL_THREADS];
    const int64_t hw = (int64_t)H * W;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const float *p = x + offset_nchw((int64_t)C * hw, H, W, n, c, 0, 0);
            for (int t = 0; t < AVGPOOL_THREADS; t++) partial[t] = avgpool_partial(p, hw, t);
            for (int half = AVGPOOL_THREADS / 2; half > 0; half /= 2)
                for (int t = 0; t < AVGPOOL_THREADS; t++) avgpool_reduce_step(partial, half, t);
            got[n * C + c] = (float)(partial[0] / (double)hw);
        }
    global_avgpool_cpu(tensor_make(x, N, C, H, W), tensor_make(ref, N, C, 1, 1));
    double *refd = malloc(sizeof(double) * N * C);
    for (int i = 0; i < N * C; i++) refd[i] = ref[i];
    char what[96];
    snprintf(what, sizeof what, "emulated global average pool N%d %dx%dx%d", N, C, H, W);
    check(what, got, refd, (size_t)N * C);
    free(x), free(got), free(ref), free(refd);
}

/* softmax / argmax / foreground kernels: one thread per pixel, calling layers.h's per-pixel
 * formulas (the CPU's too), so they are checked against a direct computation in double. */
static void test_classify(int N, int C, int H, int W)
{
    const int64_t hw = (int64_t)H * W;
    const size_t n = (size_t)N * C * hw;
    float *x = randn(n), *sm = poisoned(n), *fg = poisoned((size_t)N * hw);
    double *sm_ref = malloc(n * sizeof *sm_ref), *fg_ref = malloc((size_t)N * hw * sizeof *fg_ref);
    uint8_t *lab = malloc((size_t)N * hw);
    for (size_t i = 0; i < n; i++) x[i] *= 20; /* large logits: the max must be subtracted */
    int wrong = 0;
    for (int64_t e = 0; e < N * hw; e++) {
        const int64_t img = e / hw, i = e - img * hw;
        const float *px = x + img * C * hw + i;
        softmax_pixel(px, sm + img * C * hw + i, C, hw);
        lab[e] = (uint8_t)argmax_pixel(px, C, hw);
        fg[e] = class_mass_pixel(px, C, hw, NULL);
        double m = -INFINITY, all = 0, other = 0;
        int best = 0;
        for (int c = 0; c < C; c++)
            if (px[c * hw] > m) m = px[c * hw], best = c;
        for (int c = 0; c < C; c++) all += exp(px[c * hw] - m), other += c ? exp(px[c * hw] - m) : 0.0;
        for (int c = 0; c < C; c++) sm_ref[img * C * hw + c * hw + i] = exp(px[c * hw] - m) / all;
        fg_ref[e] = other / all;
        wrong += lab[e] != best;
    }
    char what[128];
    snprintf(what, sizeof what, "emulated softmax N%d C%d %dx%d", N, C, W, H);
    check(what, sm, sm_ref, n);
    snprintf(what, sizeof what, "emulated foreground probability N%d C%d %dx%d", N, C, W, H);
    check(what, fg, fg_ref, (size_t)N * hw);
    snprintf(what, sizeof what, "emulated argmax N%d C%d %dx%d: the first largest channel everywhere", N, C, W, H);
    expect(wrong == 0, what);
    free(x), free(sm), free(sm_ref), free(fg), free(fg_ref), free(lab);
}

/* normalise_rgb8_kernel against dl_preprocess (size 0: no resize) on all 256 values per channel. */
static void test_normalise(void)
{
    const int w = 256, h = 3;
    dl_image img = {w, h, 3, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < 3; ch++) img.px[(y * w + x) * 3 + ch] = (uint8_t)((x + 85 * (y + ch)) & 255);
    float *ref = NULL, *got = poisoned((size_t)3 * w * h);
    int ow, oh;
    if (dl_preprocess(&img, 0, &ref, &ow, &oh) != DL_OK || ow != w || oh != h) {
        expect(0, "dl_preprocess on a 256x3 image");
        free(img.px);
        free(got);
        return;
    }
    const int64_t hw = (int64_t)w * h;
    for (int64_t e = 0; e < hw; e++)
        for (int ch = 0; ch < 3; ch++) got[ch * hw + e] = normalise_u8(img.px[3 * e + ch], ch);
    expect(!memcmp(got, ref, sizeof(float) * 3 * hw),
           "normalise_u8 equals dl_preprocess bit for bit (all 256 values)");
    free(img.px), free(ref), free(got);
}

int main(void)
{
    test_split_nchw();
    test_grid_blocks();
    test_conv_split_k();
    test_conv_input_offset();
    test_conv_geom_init();
    test_conv_tile_cover();
    /* the shared cases, but for the largest (this emulation runs every thread's loop in turn) */
    const conv_impl emulated = {.name = "emulated", .run = run_emulated, .max_macs = 6e7};
    conv_check_all(&emulated, 1);
    test_maxpool(1, 3, 33, 47);
    test_maxpool(2, 5, 1, 1);
    test_maxpool(1, 2, 2, 9);
    test_avgpool(2, 7, 13, 11);
    test_avgpool(1, 3, 1, 1);
    test_avgpool(1, 2, 65, 65);
    test_resize(1, 3, 5, 7, 41, 33, 0);
    test_resize(2, 2, 65, 65, 520, 519, 0);
    test_resize(1, 2, 1, 1, 9, 13, 1);  /* the ASPP broadcast into its slice */
    test_resize(1, 1, 40, 30, 7, 9, 0);
    test_resize(1, 1, 6, 8, 6, 8, 0);
    test_classify(2, 21, 13, 11);
    test_classify(1, 2, 5, 7);
    test_classify(1, 1, 3, 3);
    test_normalise();
    return finish("CUDA index");
}
