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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* o = the larger of o and x, 16 channels at a time, as the scalar loop of max_into: x wins where
 * it is greater or NaN, so a NaN, once in, stays. Returns how many channels it did. */
__attribute__((target("avx512f"))) static int max_into_avx512(float *o, const float *x, int C)
{
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        const __m512 a = _mm512_loadu_ps(o + c), b = _mm512_loadu_ps(x + c);
        const __mmask16 take = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
        _mm512_storeu_ps(o + c, _mm512_mask_blend_ps(take, a, b));
    }
    return c;
}

/* sum[c] += x[c] in double, 8 channels at a time: the scalar loop's sums in the scalar loop's order */
__attribute__((target("avx512f"))) static int add_double_avx512(double *sum, const float *x, int C)
{
    int c = 0;
    for (; c + 8 <= C; c += 8)
        _mm512_storeu_pd(sum + c, _mm512_add_pd(_mm512_loadu_pd(sum + c), _mm512_cvtps_pd(_mm256_loadu_ps(x + c))));
    return c;
}
#else /* elsewhere the scalar loops do every channel */
static int max_into_avx512(float *o, const float *x, int C) { return (void)o, (void)x, (void)C, 0; }
static int add_double_avx512(double *sum, const float *x, int C) { return (void)sum, (void)x, (void)C, 0; }
#endif

/* The vector loops run where the selected instruction set is avx512 (DEEPLAB_ISA can refuse them). */
static int use_avx512(void) { return !strcmp(conv2d_fast_isa(), "avx512"); }

static void max_into(float *o, const float *x, int C, int vec)
{
    int c = vec ? max_into_avx512(o, x, C) : 0;
    for (; c < C; c++) o[c] = x[c] > o[c] || isnan(x[c]) ? x[c] : o[c];
}

/* One output row of one image per task. */
static void maxpool_row(void *ctx, int task, int thread)
{
    (void)thread;
    const rows_job *J = ctx;
    const int n = task / J->out.h, oy = task % J->out.h, C = J->in.c, vec = use_avx512();
    for (int ox = 0; ox < J->out.w; ox++) {
        float *o = J->out.data + n * J->out.ldn + ((size_t)oy * J->out.w + ox) * J->out.ldp;
        for (int c = 0; c < C; c++) o[c] = -INFINITY; /* padding never wins */
        for (int ky = 0; ky < J->k; ky++) {
            const int iy = oy * J->stride - J->pad + ky;
            if (iy < 0 || iy >= J->in.h) continue;
            for (int kx = 0; kx < J->k; kx++) {
                const int ix = ox * J->stride - J->pad + kx;
                if (ix < 0 || ix >= J->in.w) continue;
                max_into(o, J->in.data + n * J->in.ldn + ((size_t)iy * J->in.w + ix) * J->in.ldp, C, vec);
            }
        }
    }
}

void maxpool2d_nhwc(nhwc in, int k, int stride, int pad, nhwc out, dl_pool *pool)
{
    rows_job J = {in, out, k, stride, pad};
    dl_pool_run(pool, out.n * out.h, maxpool_row, &J);
}

enum { AVG_CHUNK = 128 }; /* channels per task of the global average pool */

/* One image's chunk of AVG_CHUNK channels per task: each channel summed in double over the
 * pixels in order, as the reference does, so the result is the reference's to the bit. */
static void avgpool_chunk(void *ctx, int task, int thread)
{
    (void)thread;
    const rows_job *J = ctx;
    const int chunks = (J->in.c + AVG_CHUNK - 1) / AVG_CHUNK, n = task / chunks, c0 = task % chunks * AVG_CHUNK;
    const int cn = J->in.c - c0 < AVG_CHUNK ? J->in.c - c0 : AVG_CHUNK, vec = use_avx512();
    const size_t hw = (size_t)J->in.h * J->in.w;
    double sum[AVG_CHUNK] = {0};
    for (size_t i = 0; i < hw; i++) { /* pixel-major: contiguous reads */
        const float *x = J->in.data + n * J->in.ldn + i * J->in.ldp + c0;
        for (int c = vec ? add_double_avx512(sum, x, cn) : 0; c < cn; c++) sum[c] += x[c];
    }
    for (int c = 0; c < cn; c++) J->out.data[n * J->out.ldn + c0 + c] = (float)(sum[c] / (double)hw);
}

void global_avgpool_nhwc(nhwc in, nhwc out, dl_pool *pool)
{
    rows_job J = {in, out, 0, 0, 0};
    dl_pool_run(pool, in.n * ((in.c + AVG_CHUNK - 1) / AVG_CHUNK), avgpool_chunk, &J);
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
