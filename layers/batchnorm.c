/*
 * batchnorm.c - eval-mode BatchNorm, and folding it into the convolution before it.
 *
 * In eval mode BatchNorm is an affine map per channel, y = x * s + (beta - mean * s) with
 * s = gamma / sqrt(var + eps), so conv followed by BN is one conv with scaled weights and a bias.
 * The network never runs batchnorm_cpu; it exists to test the folding.
 */
#include <math.h>

#include "layers.h"

void batchnorm_fold(float *weight, float *bias, int OC, size_t per_oc, const float *gamma,
                    const float *beta, const float *mean, const float *var, float eps)
{
    for (int oc = 0; oc < OC; oc++) {
        /* double for the scale: the folded weights then differ from "conv then BN" in float by
         * one rounding, not two. */
        const double s = (double)gamma[oc] / sqrt((double)var[oc] + (double)eps);
        for (size_t i = 0; i < per_oc; i++) weight[oc * per_oc + i] = (float)(weight[oc * per_oc + i] * s);
        bias[oc] = (float)((double)beta[oc] - (double)mean[oc] * s);
    }
}

void batchnorm_cpu(tensor in, const float *gamma, const float *beta, const float *mean,
                   const float *var, float eps, tensor out)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (int c = 0; c < in.c; c++) {
            const float inv = 1.0f / sqrtf(var[c] + eps);
            const float *x = in.data + n * in.ldn + c * hw;
            float *y = out.data + n * out.ldn + c * hw;
            for (size_t i = 0; i < hw; i++) y[i] = (x[i] - mean[c]) * inv * gamma[c] + beta[c];
        }
}
