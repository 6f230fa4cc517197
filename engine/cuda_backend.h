/*
 * cuda_backend.h - the GPU path of the engine, callable from C (engine/forward_cuda.cu).
 *
 * The model's graph (model.h) is the same for both devices. dl_cuda_init uploads the folded
 * weights once; dl_forward_cuda plans device activation memory for (n, h, w) (reusing the plan
 * while the shape stays the same), copies the input up, runs every node asynchronously on one
 * stream, copies the logits down and synchronises once. A build without CUDA links stubs
 * (cuda_stub.c) that fail with DL_EUNAVAILABLE.
 */
#ifndef DL_CUDA_BACKEND_H
#define DL_CUDA_BACKEND_H

#include <stddef.h>

#include "deeplab.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dl_model;

dl_status dl_cuda_init(struct dl_model *m);  /* sets m->cuda */
dl_status dl_forward_cuda(struct dl_model *m, const float *input, const dl_outputs *out);
void dl_cuda_free(struct dl_model *m);
size_t dl_cuda_device_bytes(const struct dl_model *m); /* peak device memory held by the model */
double dl_cuda_device_seconds(const struct dl_model *m); /* the last forward's network, on the device */
const char *dl_cuda_node_kernel(const struct dl_model *m, int i); /* what runs node i (for the profile) */

#ifdef __cplusplus
}
#endif
#endif
