/*
 * tool_forward.c - runs dl_forward several times in one process, for tests that compare devices.
 *
 *     tool_forward WEIGHTS cpu|cuda OUT_PREFIX N:WxH [N:WxH ...]
 *
 * For the i-th spec: a seeded pseudo-random input of N images of WxH (the same for every device
 * and every run), one dl_forward, the logits written to OUT_PREFIX<i>.npy (N, classes, H, W).
 * Changing sizes between specs re-plans the activation memory; repeating one reuses the plan.
 * Prints the device memory the model held at most (0 on the CPU). Exit status: dl_status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deeplab.h"

static float *make_input(int n, int h, int w, unsigned seed)
{
    const size_t count = (size_t)n * 3 * h * w;
    float *x = malloc(count * sizeof *x);
    uint64_t s = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; x && i < count; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0); /* normalised pixels span ~[-2, 2.6] */
    }
    return x;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tool_forward WEIGHTS cpu|cuda OUT_PREFIX N:WxH [N:WxH ...]\n");
        return DL_EUSAGE;
    }
    dl_options opt = {.device = !strcmp(argv[2], "cuda") ? DL_DEVICE_CUDA : DL_DEVICE_CPU};
    dl_model *m;
    dl_status s = dl_model_load(argv[1], &opt, &m);
    if (s != DL_OK) {
        fprintf(stderr, "tool_forward: %s\n", dl_last_error());
        return s;
    }
    const int classes = dl_model_info_of(m).num_classes;
    for (int i = 4; i < argc && s == DL_OK; i++) {
        int n, w, h;
        if (sscanf(argv[i], "%d:%dx%d", &n, &w, &h) != 3 || n < 1 || w < 1 || h < 1) {
            fprintf(stderr, "tool_forward: bad spec '%s' (expected N:WxH)\n", argv[i]);
            s = DL_EUSAGE;
            break;
        }
        float *x = make_input(n, h, w, (unsigned)(i - 4));
        float *y = malloc(sizeof(float) * (size_t)n * classes * h * w);
        if (!x || !y) {
            s = DL_ENOMEM;
        } else if ((s = dl_forward(m, x, n, h, w, y)) == DL_OK) {
            char path[4096];
            snprintf(path, sizeof path, "%s%d.npy", argv[3], i - 4);
            const int64_t shape[4] = {n, classes, h, w};
            s = dl_npy_write_f32(path, y, 4, shape);
        }
        if (s != DL_OK) fprintf(stderr, "tool_forward: %s: %s\n", argv[i], dl_last_error());
        free(x);
        free(y);
    }
    printf("device bytes: %zu\n", dl_model_device_bytes(m));
    dl_model_free(m);
    return s;
}
