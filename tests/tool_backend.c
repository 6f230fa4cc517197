/*
 * tool_backend.c - dl_forward with a chosen device, backend and precision, several times in one
 * process: for the tests of the cudnn backend, which the commands do not expose.
 *
 *     tool_backend WEIGHTS cpu|cuda|cudnn fp32|tf32|fp16|bf16 OUT_PREFIX [--outputs] INPUT [INPUT ...]
 *
 * cuda is the native GPU backend, cudnn the cudnn one (both --device cuda). INPUT is N:WxH, a
 * seeded pseudo-random input of N images of WxH (the same for every device; the seed is the
 * input's position), or an image file, preprocessed at its own size as `deeplab segment --size 0`
 * does, or several of the same size joined by '+' (a batch: a.png+b.png+c.png). For the i-th input: one dl_forward, the logits written to OUT_PREFIX<i>.npy
 * (N, classes, H, W); with --outputs (dl_forward_outputs) also the foreground mass to
 * OUT_PREFIX<i>_mass.npy (N, H, W) and the arg-max to OUT_PREFIX<i>_labels.npy (N, H, W, as
 * float32), made on the device where it is a GPU. Inputs of changing sizes re-plan the memory
 * (and, with cudnn, search the new shapes' algorithms); a repeated size reuses the plan. Prints
 * the model's path and the device memory it held at most. Exit status: dl_status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deeplab.h"

static float *random_input(int n, int h, int w, unsigned seed)
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

/* The network input for argument arg: *x (malloc'ed), n, w, h. */
static dl_status make_input(const char *arg, unsigned seed, float **x, int *n, int *w, int *h)
{
    char tail;
    if (sscanf(arg, "%d:%dx%d%c", n, w, h, &tail) == 3) {
        if (*n < 1 || *w < 1 || *h < 1) {
            fprintf(stderr, "tool_backend: bad input '%s' (expected N:WxH or an image)\n", arg);
            exit(DL_EUSAGE);
        }
        if (!(*x = random_input(*n, *h, *w, seed))) {
            fprintf(stderr, "tool_backend: out of memory for the input %s\n", arg);
            exit(DL_ENOMEM);
        }
        return DL_OK;
    }
    char path[4096];
    *n = 0;
    *x = NULL;
    for (const char *p = arg; *p;) { /* the images of a batch, one after the other */
        const char *end = strchr(p, '+');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        snprintf(path, sizeof path, "%.*s", (int)len, p);
        p += len + (end ? 1 : 0);
        dl_image img;
        float *one = NULL;
        int iw = 0, ih = 0;
        dl_status s = dl_image_read(path, &img);
        if (s == DL_OK) {
            s = dl_preprocess(&img, 0, &one, &iw, &ih);
            dl_image_free(&img);
        }
        if (s != DL_OK) return s;
        if (*n && (iw != *w || ih != *h)) {
            fprintf(stderr, "tool_backend: %s is %dx%d, the batch's first image %dx%d\n", path, iw, ih, *w, *h);
            exit(DL_EUSAGE);
        }
        const size_t img_n = (size_t)3 * iw * ih;
        float *grown = realloc(*x, sizeof(float) * img_n * (size_t)(*n + 1));
        if (!grown) exit(DL_ENOMEM);
        memcpy(grown + img_n * (size_t)*n, one, sizeof(float) * img_n);
        free(one);
        *x = grown, *w = iw, *h = ih, (*n)++;
    }
    return DL_OK;
}

int main(int argc, char **argv)
{
    static const char *const precisions[] = {"fp32", "tf32", "fp16", "bf16"};
    int precision = -1;
    for (int p = 0; argc >= 4 && p < 4; p++)
        if (!strcmp(argv[3], precisions[p])) precision = p;
    if (argc < 6 || (strcmp(argv[2], "cpu") && strcmp(argv[2], "cuda") && strcmp(argv[2], "cudnn")) || precision < 0) {
        fprintf(stderr, "usage: tool_backend WEIGHTS cpu|cuda|cudnn fp32|tf32|fp16|bf16 OUT_PREFIX [--outputs] INPUT ...\n");
        return DL_EUSAGE;
    }
    const int outputs = !strcmp(argv[5], "--outputs"), first = outputs ? 6 : 5;
    const dl_options opt = {.device = strcmp(argv[2], "cpu") ? DL_DEVICE_CUDA : DL_DEVICE_CPU,
                            .backend = strcmp(argv[2], "cudnn") ? DL_BACKEND_NATIVE : DL_BACKEND_CUDNN,
                            .precision = (dl_precision)precision};
    dl_model *m;
    dl_status s = dl_model_load(argv[1], &opt, &m);
    if (s != DL_OK) {
        fprintf(stderr, "tool_backend: %s\n", dl_last_error());
        return s;
    }
    const int classes = dl_model_info_of(m).num_classes;
    for (int i = first; i < argc && s == DL_OK; i++) {
        float *x = NULL, *y = NULL, *mass = NULL, *labf = NULL;
        uint8_t *lab = NULL;
        int n = 0, w = 0, h = 0;
        s = make_input(argv[i], (unsigned)(i - first), &x, &n, &w, &h);
        const size_t px = (size_t)n * h * w;
        if (s == DL_OK && (!(y = malloc(sizeof(float) * px * classes)) ||
                           (outputs && (!(mass = malloc(sizeof(float) * px)) || !(lab = malloc(px)) ||
                                        !(labf = malloc(sizeof(float) * px)))))) {
            fprintf(stderr, "tool_backend: out of memory for the outputs of %s\n", argv[i]);
            exit(DL_ENOMEM);
        }
        const dl_outputs want = {.logits = y, .mass = mass, .labels = lab};
        if (s == DL_OK && (s = dl_forward_outputs(m, x, n, h, w, &want)) == DL_OK) {
            char path[4096];
            snprintf(path, sizeof path, "%s%d.npy", argv[4], i - first);
            const int64_t shape[4] = {n, classes, h, w}, shape3[3] = {n, h, w};
            s = dl_npy_write_f32(path, y, 4, shape);
            if (s == DL_OK && outputs) {
                snprintf(path, sizeof path, "%s%d_mass.npy", argv[4], i - first);
                s = dl_npy_write_f32(path, mass, 3, shape3);
                for (size_t q = 0; q < px; q++) labf[q] = lab[q];
                snprintf(path, sizeof path, "%s%d_labels.npy", argv[4], i - first);
                if (s == DL_OK) s = dl_npy_write_f32(path, labf, 3, shape3);
            }
        }
        if (s != DL_OK) fprintf(stderr, "tool_backend: %s: %s\n", argv[i], dl_last_error());
        free(x), free(y), free(mass), free(lab), free(labf);
    }
    if (outputs && s == DL_OK && dl_model_device_seconds(m) > 0)
        printf("device seconds (last forward): %.6f\n", dl_model_device_seconds(m));
    printf("path: %s\n", dl_model_info_of(m).path);
    printf("device bytes: %zu\n", dl_model_device_bytes(m));
    dl_model_free(m);
    return s;
}
