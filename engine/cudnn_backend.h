/*
 * cudnn_backend.h - the cudnn backend (dl_options.backend = DL_BACKEND_CUDNN): the graph's
 * convolutions through NVIDIA's cuDNN and cuBLAS, the yardstick for the native kernels
 * (layers/conv2d.cu). forward_cuda.cu runs every other node as for the native backend and hands
 * each convolution to this (engine/cudnn_backend.cu says how it is done); C-callable, so that
 * tests/test_cuda_cudnn.c can hold it to the CPU reference layer by layer.
 *
 * One dl_dnn per model: the two library handles on the model's stream, and one slot per
 * convolution node. dl_dnn_prepare fixes a slot's shapes and strides and picks its algorithm
 * (searched once per distinct shape: the choices are kept for the life of the dl_dnn);
 * dl_dnn_conv then queues it as often as wanted. Pointers are device memory, as in
 * layers_cuda.h. Failures return a dl_status with dl_last_error() naming the slot's layer and
 * the failing library call.
 */
#ifndef DL_CUDNN_BACKEND_H
#define DL_CUDNN_BACKEND_H

#include <stddef.h>

#include "deeplab.h"
#include "layers_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dl_dnn dl_dnn;

/* Loads libcudnn.so.9 and libcublas.so.13 (the first time; DL_EUNAVAILABLE naming the missing
 * library and where it was looked for), makes the handles on stream s with precision's math. */
dl_status dl_dnn_create(dl_stream s, dl_precision precision, int nslots, dl_dnn **out);
void dl_dnn_free(dl_dnn *d); /* NULL is fine */

/* Fixes slot for out = act(conv(L, in) + L->bias [+ residual]) at these shapes and strides (out
 * may be a channel slice: out.ldn > OC * OH * OW), and chooses how to run it. A shape met for the
 * first time is searched: every algorithm is timed on these very buffers (out is overwritten, in
 * and residual are only read; their contents do not matter) and synchronises the stream. name
 * is the layer named in messages. */
dl_status dl_dnn_prepare(dl_dnn *d, int slot, const char *name, const conv2d *L, tensor in, const tensor *residual,
                         tensor out);

/* After a set of dl_dnn_prepare calls: the workspace shrinks to what the chosen algorithms need. */
dl_status dl_dnn_settle(dl_dnn *d);

/* Queues slot's convolution on the stream. The tensors may be other memory than at
 * dl_dnn_prepare, but must have the same shapes and strides (DL_EINTERNAL otherwise). */
dl_status dl_dnn_conv(dl_dnn *d, int slot, const conv2d *L, tensor in, const tensor *residual, tensor out);

/* Device memory the workspace holds now (peak = 0) or held at most, during the searches (1). */
size_t dl_dnn_workspace_bytes(const dl_dnn *d, int peak); /* 0 for NULL */

/* What slot runs, e.g. "cublas gemm" or "cudnn IMPLICIT_PRECOMP_GEMM fused 0.123 ms", and the
 * libraries' versions: "cuDNN 9.19.0, cuBLAS 13.1.0" (for logs and test output). */
const char *dl_dnn_slot_path(const dl_dnn *d, int slot);
const char *dl_dnn_versions(const dl_dnn *d);

#ifdef __cplusplus
}
#endif
#endif
