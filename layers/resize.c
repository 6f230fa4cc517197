/*
 * resize.c - bilinear resize with align_corners=False, as PyTorch's F.interpolate: output pixel
 * i samples the input at (i + 0.5) * in / out - 0.5 (pixel centres line up), clamped at 0, and
 * blends the two neighbours around it; the last row/column repeats at the edge.
 * Used twice by the network: ASPP's pooled 1x1 map back to the feature size (a broadcast), and
 * the logits from 1/8 resolution to the input size.
 */
#include "layers.h"

#include <stdlib.h>

typedef struct resize_job {
    tensor in, out;
    const int *xa, *xb;  /* per output column: its two input columns and the second one's weight, */
    const float *xw;     /* worked out once per call (NULL: for every row, if memory ran out) */
} resize_job;

static void resize_plane(void *ctx, int task, int thread)
{
    (void)thread;
    const resize_job *J = ctx;
    const int n = task / J->in.c, c = task % J->in.c;
    const float *x = J->in.data + n * J->in.ldn + (size_t)c * J->in.h * J->in.w;
    float *y = J->out.data + n * J->out.ldn + (size_t)c * J->out.h * J->out.w;
    for (int oy = 0; oy < J->out.h; oy++) {
        int y0, y1;
        float wy1;
        resize_bilinear_coord(oy, J->in.h, J->out.h, &y0, &y1, &wy1);
        const float *r0 = x + (size_t)y0 * J->in.w, *r1 = x + (size_t)y1 * J->in.w;
        const float wy0 = 1.0f - wy1;
        float *o = y + (size_t)oy * J->out.w;
        for (int ox = 0; ox < J->out.w; ox++) {
            int a, b;
            float wx1;
            if (J->xw) {
                a = J->xa[ox], b = J->xb[ox], wx1 = J->xw[ox];
            } else {
                resize_bilinear_coord(ox, J->in.w, J->out.w, &a, &b, &wx1);
            }
            const float wx0 = 1.0f - wx1;
            o[ox] = wy0 * (wx0 * r0[a] + wx1 * r0[b]) + wy1 * (wx0 * r1[a] + wx1 * r1[b]);
        }
    }
}

void resize_bilinear_cpu(tensor in, tensor out, dl_pool *pool)
{
    resize_job J = {in, out, NULL, NULL, NULL};
    int *xab = malloc(sizeof(int) * 2 * (size_t)out.w);
    float *xw = malloc(sizeof(float) * (size_t)out.w);
    if (xab && xw) {
        for (int ox = 0; ox < out.w; ox++) resize_bilinear_coord(ox, in.w, out.w, &xab[ox], &xab[out.w + ox], &xw[ox]);
        J.xa = xab, J.xb = xab + out.w, J.xw = xw;
    }
    dl_pool_run(pool, in.n * in.c, resize_plane, &J);
    free(xab);
    free(xw);
}
