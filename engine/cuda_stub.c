/* cuda_stub.c - the CUDA probe of a CPU-only build (make CUDA=0 or no nvcc). */
#ifndef DL_HAVE_CUDA
#include <stdio.h>

#include "cuda_device.h"

int dl_cuda_probe(char *why, size_t why_len)
{
    snprintf(why, why_len, "this deeplab was built without CUDA (rebuild with nvcc installed)");
    return 0;
}

int dl_cuda_device_name(int dev, char *name, size_t len)
{
    (void)dev;
    snprintf(name, len, "none");
    return -1;
}
#endif
