/*
 * conv2d.c - 2-D convolution (any kernel, stride, padding, dilation) with the folded BatchNorm
 * bias, the residual add and the ReLU fused into it. Plain C.
 *
 * A convolution is a matrix product. With K = C * KH * KW and P = OH * OW output pixels:
 *
 *     out[OC x P] = weight[OC x K] * col[K x P]
 *     col[(c, ky, kx)][(oy, ox)] = in[c][oy * stride - pad + ky * dilation][ox * stride - pad + kx * dilation]
 *
 * (zero where the row or column falls outside the image: the padding). col is the "im2col"
 * matrix. We never build it whole: for the 3x3 ASPP convolutions on a 65x65 map it would hold
 * 2048 * 9 x 4225 floats = 311 MB. Instead the product is cut into tasks of MB output channels x
 * NB output pixels, and each task packs KB rows of col at a time into a panel of KB x NB floats
 * (128 KB) that stays in the core's L2 cache while MB rows of weights stream past it.
 * Within a panel, an MR x NR tile of outputs is accumulated in registers (the "micro-kernel").
 *
 * Atrous (dilated) convolution is nothing special here: dilation only changes which input pixel
 * a column of col reads.
 */
#include <math.h>
#include <string.h>

#include "layers.h"

enum {
    KB = 256, /* rows of col per panel: the depth of one pass of the product */
    NB = 128, /* output pixels per task (panel columns) */
    MB = 128, /* output channels per task */
    MR = 4,   /* micro-tile rows: output channels */
    NR = 16   /* micro-tile columns: output pixels (NB is a multiple of NR) */
};

size_t conv2d_cpu_scratch_floats(void) { return (size_t)KB * NB; }

/* Packs rows [k0, k0 + kb) and output pixels [p0, p0 + pb) of col into panel (kb rows of NB
 * floats); columns pb .. NB - 1 are zero so that partial micro-tiles need no special case. */
static void pack_panel(const conv2d *L, const float *in, int H, int W, int OW, int k0, int kb,
                       int p0, int pb, float *panel)
{
    const int s = L->p.stride, pad = L->p.pad, d = L->p.dilation;
    for (int kk = 0; kk < kb; kk++) {
        const int k = k0 + kk;
        const int c = k / (L->KH * L->KW), ky = k / L->KW % L->KH, kx = k % L->KW;
        const float *plane = in + (size_t)c * H * W;
        float *row = panel + (size_t)kk * NB;
        int oy = p0 / OW, ox = p0 % OW;
        for (int j = 0; j < pb; j++) {
            const int iy = oy * s - pad + ky * d, ix = ox * s - pad + kx * d;
            row[j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? plane[(size_t)iy * W + ix] : 0.0f;
            if (++ox == OW) {
                ox = 0;
                oy++;
            }
        }
        memset(row + pb, 0, sizeof(float) * (size_t)(NB - pb));
    }
}

/* acc[r][j] = sum over k < kb of A[r][k] * B[k][j], for the first mr rows (mr <= MR).
 * A: weights, rows lda apart; B: the panel, rows NB apart. Written so that a compiler turns the
 * j loop into vector instructions; with mr == MR constant it unrolls the r loop too. */
static inline void micro_tile(int mr, int kb, const float *A, size_t lda, const float *B,
                              float acc[MR][NR])
{
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
    for (int k = 0; k < kb; k++) {
        const float *b = B + (size_t)k * NB;
        for (int r = 0; r < mr; r++) {
            const float a = A[(size_t)r * lda + k];
            for (int j = 0; j < NR; j++) acc[r][j] += a * b[j];
        }
    }
}

typedef struct conv_job {
    const conv2d *L;
    tensor in, out;
    const tensor *residual;
    int OH, OW, P, K, tiles_p, tiles_m;
    float *scratch; /* per thread: KB x NB */
} conv_job;

static void conv_task(void *ctx, int task, int thread)
{
    const conv_job *J = ctx;
    const conv2d *L = J->L;
    const int n = task / (J->tiles_p * J->tiles_m);
    const int rest = task % (J->tiles_p * J->tiles_m);
    const int m0 = rest / J->tiles_p * MB, p0 = rest % J->tiles_p * NB;
    const int m1 = m0 + MB < L->OC ? m0 + MB : L->OC;
    const int pb = p0 + NB < J->P ? NB : J->P - p0;
    const float *in = J->in.data + (size_t)n * J->in.ldn;
    float *out = J->out.data + (size_t)n * J->out.ldn;
    float *panel = J->scratch + (size_t)thread * KB * NB;
    float acc[MR][NR];

    for (int k0 = 0; k0 < J->K; k0 += KB) {
        const int kb = k0 + KB < J->K ? KB : J->K - k0;
        pack_panel(L, in, J->in.h, J->in.w, J->OW, k0, kb, p0, pb, panel);
        for (int m = m0; m < m1; m += MR) {
            const int mr = m + MR <= m1 ? MR : m1 - m;
            const float *A = L->weight + (size_t)m * J->K + k0;
            for (int j0 = 0; j0 < pb; j0 += NR) {
                if (mr == MR) micro_tile(MR, kb, A, (size_t)J->K, panel + j0, acc);
                else micro_tile(mr, kb, A, (size_t)J->K, panel + j0, acc);
                const int nr = j0 + NR <= pb ? NR : pb - j0;
                for (int r = 0; r < mr; r++) {
                    float *o = out + (size_t)(m + r) * J->P + p0 + j0;
                    if (k0 == 0) memcpy(o, acc[r], sizeof(float) * (size_t)nr);
                    else
                        for (int j = 0; j < nr; j++) o[j] += acc[r][j];
                }
            }
        }
    }

    /* Epilogue, once the sums are complete: bias, then residual, then ReLU. */
    const float *res = J->residual ? J->residual->data + (size_t)n * J->residual->ldn : NULL;
    for (int m = m0; m < m1; m++) {
        float *o = out + (size_t)m * J->P + p0;
        const float b = L->bias ? L->bias[m] : 0.0f;
        const float *rr = res ? res + (size_t)m * J->P + p0 : NULL;
        for (int j = 0; j < pb; j++) {
            float v = o[j] + b;
            if (rr) v += rr[j];
            if (L->relu && v < 0.0f) v = 0.0f;
            o[j] = v;
        }
    }
}

void conv2d_cpu(const conv2d *L, tensor in, const tensor *residual, tensor out, float *scratch,
                dl_pool *pool)
{
    conv_job J = {.L = L, .in = in, .out = out, .residual = residual, .scratch = scratch};
    J.OH = out.h;
    J.OW = out.w;
    J.P = J.OH * J.OW;
    J.K = L->C * L->KH * L->KW;
    J.tiles_p = (J.P + NB - 1) / NB;
    J.tiles_m = (L->OC + MB - 1) / MB;
    dl_pool_run(pool, in.n * J.tiles_p * J.tiles_m, conv_task, &J);
}

void conv2d_naive(const conv2d *L, tensor in, const tensor *residual, tensor out)
{
    const int s = L->p.stride, pad = L->p.pad, d = L->p.dilation;
    for (int n = 0; n < in.n; n++)
        for (int oc = 0; oc < L->OC; oc++)
            for (int oy = 0; oy < out.h; oy++)
                for (int ox = 0; ox < out.w; ox++) {
                    double sum = L->bias ? L->bias[oc] : 0.0;
                    for (int c = 0; c < L->C; c++)
                        for (int ky = 0; ky < L->KH; ky++)
                            for (int kx = 0; kx < L->KW; kx++) {
                                const int iy = oy * s - pad + ky * d, ix = ox * s - pad + kx * d;
                                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                                const float x = in.data[n * in.ldn + ((size_t)c * in.h + iy) * in.w + ix];
                                const float w = L->weight[(((size_t)oc * L->C + c) * L->KH + ky) * L->KW + kx];
                                sum += (double)x * w;
                            }
                    const size_t o = ((size_t)oc * out.h + oy) * out.w + ox;
                    if (residual) sum += residual->data[n * residual->ldn + o];
                    if (L->relu && sum < 0) sum = 0;
                    out.data[n * out.ldn + o] = (float)sum;
                }
}
