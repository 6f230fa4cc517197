/* avgpool.c - global average pooling: the mean of each channel's plane (ASPP's image pooling). */
#include "layers.h"

void global_avgpool_cpu(tensor in, tensor out)
{
    const size_t hw = (size_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (int c = 0; c < in.c; c++) {
            const float *x = in.data + n * in.ldn + c * hw;
            double sum = 0.0; /* 4225 terms: double keeps the mean exact to float precision */
            for (size_t i = 0; i < hw; i++) sum += x[i];
            out.data[n * out.ldn + c] = (float)(sum / (double)hw);
        }
}
