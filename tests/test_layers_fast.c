/*
 * test_layers_fast.c - the fast CPU path (NHWC, packed weights, vector micro-kernels) against
 * the plain-C references, on odd shapes, with every instruction set this CPU has.
 *
 * The convolution runs the shared cases of conv_check.h (the shapes DeepLabV3 uses and awkward
 * ones: partial micro-tiles, batches whose tiles straddle two images, ASPP dilations where whole
 * taps fall in the padding and are skipped, channel slices, residuals) against conv2d_naive,
 * with outputs poisoned and slice neighbours watched.
 *
 * Every case runs with every kernel that takes it (conv2d_kernel_fits) and every instruction
 * set: direct; Winograd F(4x4, 3x3) for stride-1 3x3 (also in passes of 96 tiles, to cover the
 * chunking), held to 5e-5 of the largest |ref| + 1e-4 relative; where the CPU has AVX512_BF16
 * the two bf16 kinds, held to 1e-2 of the largest |ref| (their inputs and weights are rounded
 * to 8 significant bits).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_check.h"
#include "layers.h"
#include "layers_fast.h"
#include "testutil.h"
#include "threadpool.h"

/* The fast path as a conv_impl: NHWC copies of the case's buffers (the output with its
 * sentinels and poison, all `wide` channels), conv2d_fast into the slice, back to NCHW. */
typedef struct fast_ctx {
    dl_pool *pool;
    const char *isa;    /* the micro-kernel (conv2d_fast_set_isa, process-wide: set for each run) */
    conv_kernel kernel; /* direct, Winograd, bf16 */
    size_t budget;      /* Winograd's transformed floats per pass (0: the default) */
} fast_ctx;

static int run_fast(void *vctx, const conv2d *L, tensor in, const tensor *residual, float *out, int wide, int c0)
{
    const fast_ctx *ctx = vctx;
    if (conv2d_fast_set_isa(ctx->isa) != 0) return printf("no %s on this CPU\n", ctx->isa), -1;
    if (!conv2d_kernel_fits(L, ctx->kernel)) return 1;
    conv2d_winograd_set_budget(ctx->budget);
    const int N = in.n;
    int OH, OW;
    conv_out_shape(L, in, &OH, &OW);
    const size_t hw = (size_t)OH * OW;
    conv2d_packed P;
    if (conv2d_pack_kernel(L, ctx->kernel, &P) != DL_OK) return printf("conv2d_pack: %s\n", dl_last_error()), -1;
    float *xh = malloc(sizeof(float) * N * in.c * in.h * in.w);
    nchw_to_nhwc(in, nhwc_make(xh, N, in.h, in.w, in.c));
    float *rh = residual ? malloc(sizeof(float) * N * L->OC * hw) : NULL;
    if (residual) nchw_to_nhwc(*residual, nhwc_make(rh, N, OH, OW, L->OC));
    const nhwc rv = nhwc_make(rh, N, OH, OW, L->OC);
    float *oh = malloc(sizeof(float) * N * wide * hw);
    nchw_to_nhwc(tensor_make(out, N, wide, OH, OW), nhwc_make(oh, N, OH, OW, wide));
    const nhwc o = {oh + c0, N, OH, OW, L->OC, (size_t)wide, (size_t)wide * hw};
    float *scratch = malloc(sizeof(float) * conv2d_fast_scratch_floats(&P, N, in.h, in.w, dl_pool_threads(ctx->pool)) + 64);
    float *aligned = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    conv2d_fast(&P, nhwc_make(xh, N, in.h, in.w, in.c), residual ? &rv : NULL, o, aligned, ctx->pool);
    nhwc_to_nchw(nhwc_make(oh, N, OH, OW, wide), tensor_make(out, N, wide, OH, OW));
    conv2d_packed_free(&P);
    free(xh), free(rh), free(oh), free(scratch);
    conv2d_winograd_set_budget(0);
    return 0;
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
    global_avgpool_nhwc(nhwc_make(xh, N, H, W, C), nhwc_make(ah, N, 1, 1, C), pool);
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
    static const char *const isas[] = {"avx512", "avx2", "generic"};
    static char names[16][48];
    fast_ctx ctx[16];
    conv_impl impls[16];
    int n = 0;
    /* every instruction set with the fp32 kernels, bf16 where the CPU has it (avx512 only) */
    for (int i = 0; i < 3; i++) {
        if (conv2d_fast_set_isa(isas[i]) != 0) {
            printf("note: this CPU has no %s; its micro-kernels are not tested here\n", isas[i]);
            continue;
        }
        const int bf16 = conv2d_bf16_available();
        if (i == 0 && !bf16) printf("note: this CPU has no AVX512_BF16; the bf16 kernels are not tested here\n");
        for (conv_kernel k = CONV_DIRECT; k <= CONV_WINOGRAD_BF16; k++) {
            if ((k == CONV_DIRECT_BF16 || k == CONV_WINOGRAD_BF16) && !bf16) continue;
            snprintf(names[n], sizeof names[n], "%-7s %-13s", isas[i], conv2d_kernel_name(k));
            ctx[n] = (fast_ctx){pool, isas[i], k, 0};
            impls[n] = (conv_impl){.name = names[n], .run = run_fast, .ctx = &ctx[n]};
            /* bf16 products: 8 significant bits per input, errors measure ~0.5% of the largest
             * output; a wrong tap or channel gives tens of percent */
            if (k == CONV_DIRECT_BF16 || k == CONV_WINOGRAD_BF16) impls[n].abs_tol = 1e-2;
            /* Winograd's rounding is relative to the transformed tile's magnitude, not to each
             * output: near-zero outputs of a K = 4680 case see 1.3e-5 of the largest */
            if (k == CONV_WINOGRAD) impls[n].abs_tol = 5e-5, impls[n].rel_tol = 1e-4;
            n++;
            /* Winograd over several passes: a budget of one block of tiles per pass */
            if (i == 0 && k == CONV_WINOGRAD) {
                snprintf(names[n], sizeof names[n], "%-7s %-13s", isas[i], "winograd/96");
                ctx[n] = (fast_ctx){pool, isas[i], k, 1};
                impls[n] = impls[n - 1];
                impls[n].name = names[n];
                impls[n].ctx = &ctx[n];
                n++;
            }
        }
    }
    conv_check_all(impls, n);
    test_others(pool);
    dl_pool_free(pool);
    return finish("fast-path");
}
