/*
 * concat.cu - channel concatenation on the GPU. In NCHW an image's channels are contiguous
 * planes, so each input becomes one strided device-to-device copy: N rows (images) of
 * C_i x H x W floats, from a pitch of in.ldn to a pitch of out.ldn. The network itself needs no
 * copy: each ASPP branch writes straight into its channel slice (engine/model.c).
 */
#include <cuda_runtime.h>

#include "layers_cuda.h"

extern "C" int concat_cuda(const tensor *inputs, int count, tensor out, dl_stream s)
{
    const size_t hw = (size_t)out.h * out.w;
    int c0 = 0;
    for (int i = 0; i < count; i++) {
        const tensor *x = &inputs[i];
        if (x->n != out.n || x->h != out.h || x->w != out.w || c0 + x->c > out.c) return (int)cudaErrorInvalidValue;
        if (out.n > 0 && x->c > 0 && hw > 0) {
            const cudaError_t e = cudaMemcpy2DAsync(out.data + (size_t)c0 * hw, out.ldn * sizeof(float), x->data,
                                                    x->ldn * sizeof(float), (size_t)x->c * hw * sizeof(float),
                                                    (size_t)out.n, cudaMemcpyDeviceToDevice, s);
            if (e != cudaSuccess) return (int)e;
        }
        c0 += x->c;
    }
    return (int)cudaGetLastError();
}
