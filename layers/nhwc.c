/*
 * nhwc.c - the non-convolution layers of the fast CPU path, in NHWC (see layers_fast.h):
 * max pooling, global average pooling, bilinear resize, and the layout changes at the edges of
 * the network. Channels are the innermost loop, so each pixel is a contiguous vector.
 */
#include <math.h>
#include <string.h>

#include "layers_fast.h"

typedef struct rows_job {
    nhwc in, out;
    int k, stride, pad;
} rows_job;

/* One output row of one image per task. */
static void maxpool_row(void *ctx, int task, int thread)
{
    (void)thread;
    const rows_job *J = ctx;
    const int n = task / J->out.h, oy = task % J->out.h, C = J->in.c;
    for (int ox = 0; ox < J->out.w; ox++) {
        float *o = J->out.data + n * J->out.ldn + ((size_t)oy * J->out.w + ox) * J->out.ldp;
        for (int c = 0; c < C; c++) o[c] = -INFINITY; /* padding never wins */
        for (int ky = 0; ky < J->k; ky++) {
            const int iy = oy * J->stride - J->pad + ky;
            if (iy < 0 || iy >= J->in.h) continue;
            for (int kx = 0; kx < J->k; kx++) {
                const int ix = ox * J->stride - J->pad + kx;
                if (ix < 0 || ix >= J->in.w) continue;
                const float *x = J->in.data + n * J->in.ldn + ((size_t)iy * J->in.w + ix) * J->in.ldp;
                for (int c = 0; c < C; c++) o[c] = x[c] > o[c] || isnan(x[c]) ? x[c] : o[c];
            }
        }
    }
}

void maxpool2d_nhwc(nhwc in, int k, int stride, int pad, nhwc out, dl_pool *pool)
{
    rows_job J = {in, out, k, stride, pad};
    dl_pool_run(pool, out.n * out.h, maxpool_row, &J);
}

void global_avgpool_nhwc(nhwc in, nhwc out)
{
    enum { CHUNK = 512 };
    const size_t hw = (size_t)in.h * in.w;
    double sum[CHUNK]; /* as the reference: each channel summed in double, pixels in order */
    for (int n = 0; n < in.n; n++)
        for (int c0 = 0; c0 < in.c; c0 += CHUNK) {
            const int cn = in.c - c0 < CHUNK ? in.c - c0 : CHUNK;
            for (int c = 0; c < cn; c++) sum[c] = 0.0;
            for (size_t i = 0; i < hw; i++) { /* pixel-major: contiguous reads */
                const float *x = in.data + n * in.ldn + i * in.ldp + c0;
                for (int c = 0; c < cn; c++) sum[c] += x[c];
            }
            for (int c = 0; c < cn; c++) out.data[n * out.ldn + c0 + c] = (float)(sum[c] / (double)hw);
        }
}

static void resize_row(void *ctx, int task, int thread)
{
    (void)thread;
    const rows_job *J = ctx;
    const int n = task / J->out.h, oy = task % J->out.h, C = J->in.c;
    int y0, y1;
    float ly;
    resize_bilinear_coord(oy, J->in.h, J->out.h, &y0, &y1, &ly);
    const float *base = J->in.data + n * J->in.ldn;
    for (int ox = 0; ox < J->out.w; ox++) {
        int x0, x1;
        float lx;
        resize_bilinear_coord(ox, J->in.w, J->out.w, &x0, &x1, &lx);
        const float *a = base + ((size_t)y0 * J->in.w + x0) * J->in.ldp, *b = base + ((size_t)y0 * J->in.w + x1) * J->in.ldp;
        const float *c = base + ((size_t)y1 * J->in.w + x0) * J->in.ldp, *d = base + ((size_t)y1 * J->in.w + x1) * J->in.ldp;
        float *o = J->out.data + n * J->out.ldn + ((size_t)oy * J->out.w + ox) * J->out.ldp;
        /* the same expression, in the same order, as resize_bilinear_cpu */
        for (int ch = 0; ch < C; ch++)
            o[ch] = (1.0f - ly) * ((1.0f - lx) * a[ch] + lx * b[ch]) + ly * ((1.0f - lx) * c[ch] + lx * d[ch]);
    }
}

void resize_bilinear_nhwc(nhwc in, nhwc out, dl_pool *pool)
{
    rows_job J = {in, out, 0, 0, 0};
    dl_pool_run(pool, out.n * out.h, resize_row, &J);
}

void nchw_to_nhwc(tensor in, nhwc out)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (size_t i = 0; i < hw; i++)
            for (int c = 0; c < in.c; c++) out.data[n * out.ldn + i * out.ldp + c] = in.data[n * in.ldn + c * hw + i];
}

void nhwc_to_nchw(nhwc in, tensor out)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (int c = 0; c < in.c; c++)
            for (size_t i = 0; i < hw; i++) out.data[n * out.ldn + c * hw + i] = in.data[n * in.ldn + i * in.ldp + c];
}
