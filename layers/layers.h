/*
 * layers.h - the operations DeepLabV3 is made of, as plain C.
 *
 * Layout: float32 NCHW. A tensor of N images, C channels, H rows and W columns stores element
 * (n, c, y, x) at data[n * ldn + (c * H + y) * W + x]. ldn, the distance between images, is
 * C * H * W for a whole tensor; it is larger when a layer writes into a channel slice of a wider
 * tensor (the ASPP branches write straight into their part of the 1280-channel concatenation).
 *
 * These are the references: clear loops that a reader can follow with a pencil. The CUDA kernels
 * (the .cu files beside them) and any fast CPU path are tested against them.
 */
#ifndef DL_LAYERS_H
#define DL_LAYERS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The inline helpers below are shared with the CUDA kernels (the .cu files): compiled by nvcc
 * they are __host__ __device__. DL_MUL_RN is a product rounded on its own: nvcc would otherwise
 * fuse "a * b - c" into one fma, and the GPU would pick other source pixels than the CPU. */
#if defined(__CUDACC__)
#define DL_HD __host__ __device__
#else
#define DL_HD
#endif
#if defined(__CUDA_ARCH__)
#define DL_MUL_RN(a, b) __fmul_rn(a, b)
#else
#define DL_MUL_RN(a, b) ((a) * (b))
#endif

/* Output size of a convolution or pooling window along one axis (PyTorch's formula, floor). */
static inline DL_HD int conv_out_size(int in, int k, int stride, int pad, int dilation)
{
    return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

typedef struct tensor {
    float *data;
    int n, c, h, w;
    size_t ldn; /* floats between consecutive images */
} tensor;

/* A whole contiguous tensor. */
static inline tensor tensor_make(float *data, int n, int c, int h, int w)
{
    tensor t = {data, n, c, h, w, (size_t)c * h * w};
    return t;
}

/* ------------------------------------------------------------------ convolution */

typedef struct conv2d_params {
    int stride, pad, dilation;
} conv2d_params;

/* A convolution with its BatchNorm folded in: out = act(conv(in, weight) + bias [+ residual]). */
typedef struct conv2d {
    int C, OC, KH, KW;
    conv2d_params p;
    const float *weight; /* OC x C x KH x KW */
    const float *bias;   /* OC, or NULL */
    int relu;            /* apply ReLU after the bias and the residual */
} conv2d;

/* Scratch floats each thread needs for conv2d_cpu (the packed input panel). */
size_t conv2d_cpu_scratch_floats(void);

/* out (N x OC x OH x OW, OH/OW from conv_out_size) = conv. residual: NULL or a tensor shaped like
 * out, added before the ReLU. scratch: pool threads x conv2d_cpu_scratch_floats() floats. */
void conv2d_cpu(const conv2d *L, tensor in, const tensor *residual, tensor out,
                float *scratch, dl_pool *pool);

/* The definition, seven loops, accumulating in double: the independent reference for tests. */
void conv2d_naive(const conv2d *L, tensor in, const tensor *residual, tensor out);

/* ------------------------------------------------------------------ batch norm */

/* Folds eval-mode BatchNorm y = (x - mean) / sqrt(var + eps) * gamma + beta into the preceding
 * convolution: weight[oc] *= s, bias[oc] = beta - mean * s with s = gamma / sqrt(var + eps).
 * weight holds OC rows of per_oc floats. */
void batchnorm_fold(float *weight, float *bias, int OC, size_t per_oc, const float *gamma,
                    const float *beta, const float *mean, const float *var, float eps);

/* The unfolded layer, for tests: out = (in - mean) / sqrt(var + eps) * gamma + beta. */
void batchnorm_cpu(tensor in, const float *gamma, const float *beta, const float *mean,
                   const float *var, float eps, tensor out);

/* ------------------------------------------------------------------ element-wise */

void relu_cpu(tensor t);                         /* in place */
void add_cpu(tensor a, tensor b, tensor out);    /* out = a + b (out may alias a) */

/* Copies each input's channels after the previous ones: out has sum(inputs[i].c) channels. */
void concat_cpu(const tensor *inputs, int count, tensor out);

/* ------------------------------------------------------------------ pooling */

/* Max over k x k windows; padded positions never win (PyTorch's -inf padding). */
void maxpool2d_cpu(tensor in, int k, int stride, int pad, tensor out, dl_pool *pool);

/* out (N x C x 1 x 1) = mean over each H x W plane. */
void global_avgpool_cpu(tensor in, tensor out);

/* ------------------------------------------------------------------ resize */

/* Bilinear resize with align_corners=False (half-pixel centres), PyTorch's F.interpolate:
 * src = (dst + 0.5) * in / out - 0.5, clamped at 0; the right/bottom neighbour clamps at the
 * edge. out.h, out.w give the target size. */
void resize_bilinear_cpu(tensor in, tensor out, dl_pool *pool);

/* The weights of one output coordinate along an axis: out[i] = (1 - l) * in[i0] + l * in[i1]. */
static inline DL_HD void resize_bilinear_coord(int i, int in_size, int out_size, int *i0, int *i1, float *l)
{
    float scale = (float)in_size / (float)out_size;
    float src = DL_MUL_RN((float)i + 0.5f, scale) - 0.5f;
    if (src < 0) src = 0;
    int lo = (int)src;
    if (lo > in_size - 1) lo = in_size - 1;
    *i0 = lo;
    *i1 = lo < in_size - 1 ? lo + 1 : lo;
    float lambda = src - (float)lo;
    *l = lambda < 0.0f ? 0.0f : lambda > 1.0f ? 1.0f : lambda;
}

/* ------------------------------------------------------------------ classification */

/* The softmax of one pixel, the only one in the engine: softmax_channels_cpu, dl_class_prob,
 * dl_foreground_prob and the GPU kernels all call these. x points at the pixel's channel 0 and
 * channel c is at x[c * hw]. The largest logit is subtracted first, so that exp cannot overflow;
 * the arithmetic is float (what comes out ends in 8 bits), in channel order. */
static inline DL_HD float softmax_max(const float *x, int C, int64_t hw)
{
    float m = x[0];
    for (int c = 1; c < C; c++) m = fmaxf(m, x[c * hw]);
    return m;
}

/* y[c * hw] = softmax(x)[c]. y may be x. */
static inline DL_HD void softmax_pixel(const float *x, float *y, int C, int64_t hw)
{
    const float m = softmax_max(x, C, hw);
    float all = 0.0f;
    for (int c = 0; c < C; c++) all += expf(x[c * hw] - m);
    for (int c = 0; c < C; c++) y[c * hw] = expf(x[c * hw] - m) / all;
}

/* The softmax mass of the chosen classes: the sum of softmax(x)[c] over c with keep[c] != 0,
 * computed as (sum over the chosen) / (sum over all), so it is exact near 0. keep NULL: every
 * class but 0, the background (the foreground probability, 1 - p(background)). */
static inline DL_HD float class_mass_pixel(const float *x, int C, int64_t hw, const uint8_t *keep)
{
    const float m = softmax_max(x, C, hw);
    float all = 0.0f, chosen = 0.0f;
    for (int c = 0; c < C; c++) {
        const float e = expf(x[c * hw] - m);
        all += e;
        if (keep ? keep[c] != 0 : c != 0) chosen += e;
    }
    return chosen / all;
}

/* Index of the largest channel, the first one on ties. */
static inline DL_HD int argmax_pixel(const float *x, int C, int64_t hw)
{
    int best = 0;
    for (int c = 1; c < C; c++)
        if (x[c * hw] > x[best * hw]) best = c;
    return best;
}

/* Softmax over the channels of every pixel (softmax_pixel). out may alias in. */
void softmax_channels_cpu(tensor in, tensor out);

/* The index of the largest channel of every pixel (first one on ties): N x H x W bytes. */
void argmax_channels_cpu(tensor in, uint8_t *labels);

#ifdef __cplusplus
}
#endif
#endif
