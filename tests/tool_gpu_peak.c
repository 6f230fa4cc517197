/*
 * tool_gpu_peak.c - the GPU's multiply-add peak per precision, as the tensor-core kernels issue
 * them (dl_cuda_peak_gflops: chained mma.sync of the precision on every SM, FFMA for fp32), the
 * rate `deeplab bench --layers` calls the peak on a GPU; tool_peak.c does the same for a CPU core.
 * A development tool, not a test:
 *     build/tests/tool_gpu_peak
 * On the emulated GPU the numbers are the emulator's and mean nothing.
 */
#include <stdio.h>

#include "cuda_device.h"
#include "deeplab.h"

int main(void)
{
    char why[256], name[256] = "";
    if (dl_cuda_probe(why, sizeof why) <= 0) {
        printf("tool_gpu_peak: no CUDA GPU (%s)\n", why);
        return 1;
    }
    dl_cuda_device_name(0, name, sizeof name);
    printf("%s%s\n", name, dl_cuda_emulated() ? " (emulated: these rates mean nothing)" : "");
    static const char *const names[] = {"fp32 (FFMA)", "tf32 (mma.sync m16n8k8)", "fp16 (mma.sync m16n8k16)",
                                        "bf16 (mma.sync m16n8k16)"};
    for (int p = 0; p < 4; p++)
        printf("%-26s %10.1f TFLOP/s\n", names[p], dl_cuda_peak_gflops((dl_precision)p) / 1e3);
    return 0;
}
