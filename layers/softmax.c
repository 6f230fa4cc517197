/* softmax.c - per-pixel softmax over the class channels, and the arg-max class map: the
 * formulas of layers.h (softmax_pixel, argmax_pixel) over every pixel. */
#include "layers.h"

void softmax_channels_cpu(tensor in, tensor out)
{
    const int64_t hw = (int64_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (int64_t i = 0; i < hw; i++) softmax_pixel(in.data + n * in.ldn + i, out.data + n * out.ldn + i, in.c, hw);
}

void argmax_channels_cpu(tensor in, uint8_t *labels)
{
    const int64_t hw = (int64_t)in.h * in.w;
    for (int n = 0; n < in.n; n++)
        for (int64_t i = 0; i < hw; i++) labels[n * hw + i] = (uint8_t)argmax_pixel(in.data + n * in.ldn + i, in.c, hw);
}
