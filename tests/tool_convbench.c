/*
 * tool_convbench.c - times conv2d_fast on DeepLabV3's main layer shapes, one thread, and reports
 * GFLOP per second of the thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), so that the numbers
 * hold even on a machine busy with other work. A development tool for tuning the micro-kernel:
 *     build/tests/tool_convbench [ISA] [bf16]   (ISA: avx512, avx2, generic; default: the best)
 * THREADS=N runs each layer on a pool of N threads and reports wall-clock time instead (best of
 * five); FLUSH=1 writes 256 MB before every run, so that the layer starts from cold caches as
 * it does in the network, where the layers before it have pushed its input and scratch out.
 * Each layer runs the kernel the network picks for it (conv2d_choose_kernel; bf16: the bf16
 * kinds). The rate is nominal: Winograd and tap skipping do less work than they are credited.
 * Not a benchmark of record: `deeplab bench` is (wall clock, all threads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "layers_fast.h"

static int threads = 1; /* THREADS=N: N threads of a pool, wall-clock time */

/* the thread's CPU time, or with THREADS=N the wall clock */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(threads > 1 ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc > 1 && conv2d_fast_set_isa(argv[1]) != 0) {
        fprintf(stderr, "tool_convbench: this CPU has no %s\n", argv[1]);
        return 1;
    }
    const int bf16 = argc > 2 && !strcmp(argv[2], "bf16");
    if (getenv("THREADS")) threads = atoi(getenv("THREADS"));
    dl_pool *pool = threads > 1 ? dl_pool_create(threads) : NULL;
    char *flush = getenv("FLUSH") ? malloc((size_t)256 << 20) : NULL;
    if (getenv("WINO_BUDGET")) conv2d_winograd_set_budget((size_t)atol(getenv("WINO_BUDGET")));
    /* res: the block's residual is added in the epilogue (the conv3 of every bottleneck) */
    static const struct { int C, OC, k, d, HW, res; const char *what; } cases[] = {
        {256, 256, 3, 2, 65, 0, "layer3 conv2 (22x)"},   {256, 1024, 1, 1, 65, 1, "layer3 conv3 (23x)"},
        {1024, 256, 1, 1, 65, 0, "layer3 conv1 (22x)"},  {512, 512, 3, 4, 65, 0, "layer4 conv2 (2x)"},
        {512, 2048, 1, 1, 65, 1, "layer4 conv3 (3x)"},   {2048, 512, 1, 1, 65, 0, "layer4 conv1 (2x)"},
        {2048, 256, 3, 12, 65, 0, "ASPP rate 12"},       {2048, 256, 3, 24, 65, 0, "ASPP rate 24"},
        {2048, 256, 3, 36, 65, 0, "ASPP rate 36"},       {64, 64, 3, 1, 130, 0, "layer1 conv2 (3x)"},
        {64, 256, 1, 1, 130, 1, "layer1 conv3 (3x)"},    {3, 64, 7, 1, 520, 0, "stem (stride 2)"},
        {1024, 2048, 1, 1, 65, 0, "layer4 downsample"},
    };
    if (threads > 1) printf("isa %s, %d threads, GFLOP/s of wall-clock time (nominal FLOPs, padding taps included)\n", conv2d_fast_isa(), threads);
    else printf("isa %s, 1 thread, GFLOP/s of thread CPU time (nominal FLOPs, padding taps included)\n", conv2d_fast_isa());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int C = cases[i].C, OC = cases[i].OC, k = cases[i].k, d = cases[i].d, H = cases[i].HW;
        const int stride = k == 7 ? 2 : 1;
        conv2d L = {.C = C, .OC = OC, .KH = k, .KW = k, .p = {stride, k / 2 * d, d}, .relu = 1};
        const int OH = conv_out_size(H, k, stride, L.p.pad, d);
        float *w = malloc(sizeof(float) * OC * C * k * k), *b = calloc(OC, sizeof(float));
        for (size_t j = 0; j < (size_t)OC * C * k * k; j++) w[j] = (float)((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
        L.weight = w;
        L.bias = b;
        conv2d_packed P;
        if (conv2d_pack_kernel(&L, conv2d_choose_kernel(&L, bf16), &P) != DL_OK) {
            fprintf(stderr, "tool_convbench: %s\n", dl_last_error());
            return 1;
        }
        float *x = malloc(sizeof(float) * H * H * C), *y = malloc(sizeof(float) * OH * OH * OC);
        float *r = cases[i].res ? malloc(sizeof(float) * OH * OH * OC) : NULL;
        for (size_t j = 0; j < (size_t)H * H * C; j++) x[j] = (float)(j % 7) - 3.0f;
        for (size_t j = 0; r && j < (size_t)OH * OH * OC; j++) r[j] = (float)(j % 5) - 2.0f;
        const nhwc res = nhwc_make(r, 1, OH, OH, OC);
        float *scratch = dl_alloc_aligned(sizeof(float) * conv2d_fast_scratch_floats(&P, 1, H, H, threads), "scratch");
        const double flop = 2.0 * OH * OH * OC * (double)C * k * k;
        double best = 1e9;
        for (int rep = 0; rep < (threads > 1 ? 5 : 3); rep++) {
            if (flush) memset(flush, rep, (size_t)256 << 20); /* FLUSH=1: caches emptied before each run */
            double t0 = cpu_seconds();
            conv2d_fast(&P, nhwc_make(x, 1, H, H, C), r ? &res : NULL, nhwc_make(y, 1, OH, OH, OC), scratch, pool);
            double t = cpu_seconds() - t0;
            if (t < best) best = t;
        }
        printf("%-22s %4d->%-4d k%d d%-2d%s %3dx%-3d %-13s %7.2f GFLOP %8.1f ms %6.1f GFLOP/s\n", cases[i].what, C, OC,
               k, d, r ? " +res" : "     ", OH, OH, conv2d_kernel_name(P.kernel), flop / 1e9, 1e3 * best, flop / best / 1e9);
        conv2d_packed_free(&P);
        free(w), free(b), free(x), free(y), free(r), free(scratch);
    }
    dl_pool_free(pool);
    free(flush);
    return 0;
}
