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
/* 1 when the CUDA device is the emulated GPU (make EMU=1, make SANITIZE=1: the CUDA code run on
 * the CPU, emu/). It is used only when asked for by name (--device cuda): --device auto never
 * takes it, and whatever reports the device or its timings says "emulated GPU". */
int dl_cuda_emulated(void);
/* What -v and bench print for the device: "cuda", or "cuda (emulated GPU: ...)". */
const char *dl_cuda_label(void);

#ifdef __cplusplus
}
#endif
#endif
