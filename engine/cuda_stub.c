/* cuda_stub.c - the CUDA entry points of a CPU-only build (make CUDA=0 or no nvcc). */
#ifndef DL_HAVE_CUDA
#include <stdio.h>

#include "cuda_backend.h"
#include "cuda_device.h"
#include "status.h"

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

int dl_cuda_emulated(void) { return 0; }

const char *dl_cuda_label(void) { return "cuda"; }

dl_status dl_cuda_init(struct dl_model *m)
{
    (void)m;
    return dl_fail(DL_EUNAVAILABLE, "this deeplab was built without CUDA");
}

dl_status dl_forward_cuda(struct dl_model *m, const float *input, const dl_outputs *out)
{
    (void)m, (void)input, (void)out;
    return dl_fail(DL_EUNAVAILABLE, "this deeplab was built without CUDA");
}

void dl_cuda_free(struct dl_model *m) { (void)m; }

size_t dl_cuda_device_bytes(const struct dl_model *m)
{
    (void)m;
    return 0;
}

double dl_cuda_device_seconds(const struct dl_model *m)
{
    (void)m;
    return 0;
}

const char *dl_cuda_node_kernel(const struct dl_model *m, int i)
{
    (void)m, (void)i;
    return "";
}

double dl_cuda_peak_gflops(dl_precision precision)
{
    (void)precision;
    return 0;
}
#endif
