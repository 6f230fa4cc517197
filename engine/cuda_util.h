/*
 * cuda_util.h - device memory and error helpers callable from C (tests, tools), so that C code
 * never includes the CUDA headers. Every call is checked; failures return a dl_status with
 * dl_last_error() naming the operation, e.g. "CUDA error in upload (3.1 MB): out of memory".
 * Defined by engine/cuda_util.cu, so only in builds with CUDA (DL_HAVE_CUDA).
 */
#ifndef DL_CUDA_UTIL_H
#define DL_CUDA_UTIL_H

#include <stddef.h>

#include "deeplab.h"

#ifdef __cplusplus
extern "C" {
#endif

dl_status dl_cuda_malloc(void **d_ptr, size_t bytes, const char *what); /* DL_ENOMEM when full */
void dl_cuda_release(void *d_ptr);                                       /* NULL is fine */
dl_status dl_cuda_upload(void *d_dst, const void *src, size_t bytes);
dl_status dl_cuda_download(void *dst, const void *d_src, size_t bytes);
dl_status dl_cuda_memset(void *d_dst, int byte, size_t bytes);

/* After a launcher of layers_cuda.h: err is its return value. Waits for the device (so that a
 * fault inside the kernel is caught here, not later) and names what on failure. */
dl_status dl_cuda_finish(int err, const char *what);

const char *dl_cuda_error_string(int err);

#ifdef __cplusplus
}
#endif
#endif
