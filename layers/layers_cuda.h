/*
 * layers_cuda.h - the CUDA versions of the layers in layers.h, callable from C.
 *
 * Same tensors, same parameter structs, same results as the _cpu functions (to rounding), but
 * every pointer is device memory: tensor.data, conv2d.weight and .bias, labels, images. Each
 * function queues its kernel(s) on stream s (NULL: the default stream) and returns at once with
 * cudaGetLastError() as an int: 0 (cudaSuccess) when the launch was accepted, else the CUDA error
 * code (cudaGetErrorString names it). Faults inside a kernel surface at the next synchronisation.
 * Nothing is allocated and nothing synchronises.
 *
 * The index arithmetic of every kernel is in cuda_index.h, where a C test runs it on the CPU.
 */
#ifndef DL_LAYERS_CUDA_H
#define DL_LAYERS_CUDA_H

#include <stdint.h>

#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cudaStream_t without the CUDA headers: the runtime defines it as this same pointer type. */
typedef struct CUstream_st *dl_stream;

/* out = act(conv(in, L->weight) + L->bias [+ residual]) as conv2d_cpu; fp32 implicit GEMM,
 * 64 x 64 output tiles. out may be a channel slice (out.ldn > OC * OH * OW). */
int conv2d_cuda(const conv2d *L, tensor in, const tensor *residual, tensor out, dl_stream s);

/* As maxpool2d_cpu and global_avgpool_cpu (the mean accumulates in double). */
int maxpool2d_cuda(tensor in, int k, int stride, int pad, tensor out, dl_stream s);
int global_avgpool_cuda(tensor in, tensor out, dl_stream s);

/* As resize_bilinear_cpu: align_corners=False, to out.h x out.w; out may be a channel slice. */
int resize_bilinear_cuda(tensor in, tensor out, dl_stream s);

/* As concat_cpu: each input's channels after the previous ones (device-to-device copies). */
int concat_cuda(const tensor *inputs, int count, tensor out, dl_stream s);

/* As softmax_channels_cpu and argmax_channels_cpu (labels: N x H x W bytes). */
int softmax_channels_cuda(tensor in, tensor out, dl_stream s);
int argmax_channels_cuda(tensor in, uint8_t *labels, dl_stream s);

/* prob (N x 1 x H x W) = 1 - softmax(logits)[background], as dl_foreground_prob. */
int foreground_prob_cuda(tensor logits, tensor prob, dl_stream s);

/* rgb: n images of h rows of w x 3 bytes (interleaved, as dl_image), one after the other ->
 * out (n x 3 x h x w), normalised as dl_preprocess does (bit for bit). */
int normalise_rgb8_cuda(const uint8_t *rgb, int n, int h, int w, tensor out, dl_stream s);

#ifdef __cplusplus
}
#endif
#endif
