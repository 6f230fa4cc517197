/*
 * resize.c - bilinear resize with align_corners=False, as PyTorch's F.interpolate: output pixel
 * i samples the input at (i + 0.5) * in / out - 0.5 (pixel centres line up), clamped at 0, and
 * blends the two neighbours around it; the last row/column repeats at the edge.
 * Used twice by the network: ASPP's pooled 1x1 map back to the feature size (a broadcast), and
 * the logits from 1/8 resolution to the input size.
 *
 * Every output value is wy0 * (wx0 * r0[a] + wx1 * r0[b]) + wy1 * (wx0 * r1[a] + wx1 * r1[b]).
 * The brackets depend only on an input row and the output column, so each input row is blended
 * along x once, into a row of the output's width, and every output row is then the vertical
 * blend of two such rows (the same expression, the same bits, without four gathers per value;
 * the logits' 8x resize was 31 ms of a 1.3 s forward on one thread).
 */
#include "layers.h"

#include <stdlib.h>

typedef struct resize_job {
    tensor in, out;
    const int *xa, *xb; /* per output column: its two input columns and the second one's weight */
    const float *xw;
    float *rows;        /* per thread: two input rows blended along x (2 * out.w floats) */
} resize_job;

static void blend_x(const resize_job *J, const float *r, float *h)
{
    for (int ox = 0; ox < J->out.w; ox++) {
        const float wx1 = J->xw[ox], wx0 = 1.0f - wx1;
        h[ox] = wx0 * r[J->xa[ox]] + wx1 * r[J->xb[ox]];
    }
}

static void resize_plane(void *ctx, int task, int thread)
{
    const resize_job *J = ctx;
    const int n = task / J->in.c, c = task % J->in.c;
    const float *x = J->in.data + n * J->in.ldn + (size_t)c * J->in.h * J->in.w;
    float *y = J->out.data + n * J->out.ldn + (size_t)c * J->out.h * J->out.w;
    float *slot[2] = {J->rows + (size_t)thread * 2 * J->out.w, J->rows + ((size_t)thread * 2 + 1) * J->out.w};
    int held[2] = {-1, -1}; /* the input row whose x-blend each slot holds */
    for (int oy = 0; oy < J->out.h; oy++) {
        int y0, y1;
        float wy1;
        resize_bilinear_coord(oy, J->in.h, J->out.h, &y0, &y1, &wy1);
        const float wy0 = 1.0f - wy1;
        /* the rows only move down: the lower row of one output row is often the upper of the next */
        if (y0 == held[1]) {
            float *t = slot[0];
            slot[0] = slot[1], slot[1] = t;
            held[1] = held[0], held[0] = y0;
        }
        if (y0 != held[0]) blend_x(J, x + (size_t)y0 * J->in.w, slot[0]), held[0] = y0;
        if (y1 != y0 && y1 != held[1]) blend_x(J, x + (size_t)y1 * J->in.w, slot[1]), held[1] = y1;
        const float *h[2] = {slot[0], y1 == y0 ? slot[0] : slot[1]};
        float *o = y + (size_t)oy * J->out.w;
        for (int ox = 0; ox < J->out.w; ox++) o[ox] = wy0 * h[0][ox] + wy1 * h[1][ox];
    }
}

/* Without memory for the tables: every value from its four inputs, as above. */
static void resize_plane_direct(void *ctx, int task, int thread)
{
    (void)thread;
    const resize_job *J = ctx;
    const int n = task / J->in.c, c = task % J->in.c;
    const float *x = J->in.data + n * J->in.ldn + (size_t)c * J->in.h * J->in.w;
    float *y = J->out.data + n * J->out.ldn + (size_t)c * J->out.h * J->out.w;
    for (int oy = 0; oy < J->out.h; oy++) {
        int y0, y1, a, b;
        float wy1, wx1;
        resize_bilinear_coord(oy, J->in.h, J->out.h, &y0, &y1, &wy1);
        const float *r0 = x + (size_t)y0 * J->in.w, *r1 = x + (size_t)y1 * J->in.w;
        const float wy0 = 1.0f - wy1;
        float *o = y + (size_t)oy * J->out.w;
        for (int ox = 0; ox < J->out.w; ox++) {
            resize_bilinear_coord(ox, J->in.w, J->out.w, &a, &b, &wx1);
            const float wx0 = 1.0f - wx1;
            o[ox] = wy0 * (wx0 * r0[a] + wx1 * r0[b]) + wy1 * (wx0 * r1[a] + wx1 * r1[b]);
        }
    }
}

void resize_bilinear_cpu(tensor in, tensor out, dl_pool *pool)
{
    resize_job J = {in, out, NULL, NULL, NULL, NULL};
    const size_t w = (size_t)out.w;
    int *xab = malloc(sizeof(int) * 2 * w);
    float *xw = malloc(sizeof(float) * w);
    float *rows = malloc(sizeof(float) * 2 * w * (size_t)dl_pool_threads(pool));
    if (xab && xw && rows) {
        for (int ox = 0; ox < out.w; ox++) resize_bilinear_coord(ox, in.w, out.w, &xab[ox], &xab[w + ox], &xw[ox]);
        J.xa = xab, J.xb = xab + w, J.xw = xw, J.rows = rows;
        dl_pool_run(pool, in.n * in.c, resize_plane, &J);
    } else {
        dl_pool_run(pool, in.n * in.c, resize_plane_direct, &J);
    }
    free(xab);
    free(xw);
    free(rows);
}
