/* forward_cuda.cu - placeholder: the CUDA backend is being written (issue 3). */
#include "cuda_backend.h"
#include "util.h"

extern "C" dl_status dl_cuda_init(struct dl_model *m)
{
    (void)m;
    return dl_fail(DL_EUNAVAILABLE, "the CUDA backend is not written yet");
}

extern "C" dl_status dl_forward_cuda(struct dl_model *m, const float *input, float *logits)
{
    (void)m, (void)input, (void)logits;
    return dl_fail(DL_EUNAVAILABLE, "the CUDA backend is not written yet");
}

extern "C" void dl_cuda_free(struct dl_model *m) { (void)m; }

extern "C" size_t dl_cuda_device_bytes(const struct dl_model *m)
{
    (void)m;
    return 0;
}
