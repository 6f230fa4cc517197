/* cuda_device.h - CUDA availability, callable from C. Without CUDA (make CUDA=0) the probe
 * reports that the binary was built without it. */
#ifndef DL_CUDA_DEVICE_H
#define DL_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 with the reason written to why. */
int dl_cuda_probe(char *why, size_t why_len);
/* "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"; 0 on success. */
int dl_cuda_device_name(int dev, char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
