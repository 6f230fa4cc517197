/* add.c - element-wise sum, the residual connection of a ResNet block. The network fuses it into
 * the block's last convolution; this is the layer on its own. */
#include "layers.h"

void add_cpu(tensor a, tensor b, tensor out)
{
    const size_t chw = (size_t)a.c * a.h * a.w;
    for (int n = 0; n < a.n; n++) {
        const float *x = a.data + n * a.ldn, *y = b.data + n * b.ldn;
        float *z = out.data + n * out.ldn;
        for (size_t i = 0; i < chw; i++) z[i] = x[i] + y[i];
    }
}
