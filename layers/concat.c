/* concat.c - channel concatenation. In NCHW an image's channels are contiguous planes, so
 * concatenating is copying each input's block of planes after the previous one. (The network
 * avoids the copy by having each ASPP branch write into its slice: see engine/model.c.) */
#include <string.h>

#include "layers.h"

void concat_cpu(const tensor *inputs, int count, tensor out)
{
    const size_t hw = (size_t)out.h * out.w;
    for (int n = 0; n < out.n; n++) {
        float *dst = out.data + n * out.ldn;
        for (int i = 0; i < count; i++) {
            const size_t len = (size_t)inputs[i].c * hw;
            memcpy(dst, inputs[i].data + n * inputs[i].ldn, len * sizeof(float));
            dst += len;
        }
    }
}
