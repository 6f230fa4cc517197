/* relu.c - max(x, 0), in place. The network fuses it into the convolutions; this is the layer. */
#include "layers.h"

void relu_cpu(tensor t)
{
    const size_t chw = (size_t)t.c * t.h * t.w;
    for (int n = 0; n < t.n; n++) {
        float *x = t.data + n * t.ldn;
        for (size_t i = 0; i < chw; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    }
}
