/* softmax.c - per-pixel softmax over the class channels, and the arg-max class map. */
#include <math.h>

#include "layers.h"

void softmax_channels_cpu(tensor in, tensor out)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++) {
        const float *x = in.data + n * in.ldn;
        float *y = out.data + n * out.ldn;
        for (size_t i = 0; i < hw; i++) {
            float m = x[i];
            for (int c = 1; c < in.c; c++) m = fmaxf(m, x[c * hw + i]);
            double sum = 0.0; /* subtracting the max keeps exp() from overflowing */
            for (int c = 0; c < in.c; c++) sum += exp((double)x[c * hw + i] - m);
            for (int c = 0; c < in.c; c++) y[c * hw + i] = (float)(exp((double)x[c * hw + i] - m) / sum);
        }
    }
}

void argmax_channels_cpu(tensor in, uint8_t *labels)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++) {
        const float *x = in.data + n * in.ldn;
        for (size_t i = 0; i < hw; i++) {
            int best = 0;
            for (int c = 1; c < in.c; c++)
                if (x[c * hw + i] > x[best * hw + i]) best = c;
            labels[n * hw + i] = (uint8_t)best;
        }
    }
}
