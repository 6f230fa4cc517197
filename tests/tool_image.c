/*
 * tool_image - drives the image functions of libdeeplab for tests/test_image.py.
 *
 *   tool_image [--max-pixels N] [--max-side N] COMMAND ARGS...
 *     decode IN.png OUT.raw                 RGB8 pixels; prints "W H C"
 *     resize IN.raw W H C OUT_W OUT_H OUT.raw
 *     preprocess IN.png SIZE OUT.npy        prints "W H" of the tensor
 *     input-size                            stdin: lines "W H SIZE"; stdout: lines "OUT_W OUT_H"
 *     write IN.raw W H C OUT.png            dl_png_write
 *     write-indexed IN.raw W H PAL.raw NCOLORS OUT.png
 *     npy IN.f32 OUT.npy DIM...             float32 data, any number of dimensions (0 too)
 *     time IN.png SIZE [REPEAT]             best milliseconds of decode and of preprocess
 *
 * .raw files are bare interleaved 8-bit samples. On failure it prints "deeplab: <error>" on
 * stderr and exits with the dl_status, as the deeplab command does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deeplab.h"
#include "file.h"
#include "status.h"

#define RAW_LIMIT ((size_t)1 << 34)

static int fail(dl_status s)
{
    fprintf(stderr, "deeplab: %s\n", dl_last_error());
    return s;
}

static int usage(void)
{
    fprintf(stderr, "usage: tool_image [--max-pixels N] [--max-side N] "
                    "decode|resize|preprocess|input-size|write|write-indexed|npy|time ARGS...\n");
    return DL_EUSAGE;
}

static int write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return DL_EIO;
    }
    return 0;
}

/* Reads a raw file that must hold exactly `expect` bytes. */
static dl_status read_raw(const char *path, size_t expect, uint8_t **data)
{
    size_t n;
    dl_status s = dl_read_file(path, RAW_LIMIT, data, &n);
    if (s != DL_OK) return s;
    if (n != expect) {
        free(*data);
        *data = NULL;
        return dl_fail(DL_EUSAGE, "%s: %zu bytes, expected %zu", path, n, expect);
    }
    return DL_OK;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmd_decode(int argc, char **argv)
{
    if (argc != 3) return usage();
    dl_image img;
    dl_status s = dl_image_read(argv[1], &img);
    if (s != DL_OK) return fail(s);
    printf("%d %d %d\n", img.w, img.h, img.c);
    int r = write_raw(argv[2], img.px, (size_t)img.w * img.h * img.c);
    dl_image_free(&img);
    return r;
}

static int cmd_resize(int argc, char **argv)
{
    if (argc != 8) return usage();
    dl_image src = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), NULL};
    dl_image dst = {atoi(argv[5]), atoi(argv[6]), src.c, NULL};
    dl_status s = read_raw(argv[1], (size_t)src.w * src.h * src.c, &src.px);
    if (s != DL_OK) return fail(s);
    dst.px = malloc((size_t)dst.w * dst.h * dst.c);
    if (!dst.px) return DL_ENOMEM;
    s = dl_resize_bilinear_u8(&src, &dst);
    int r = s != DL_OK ? fail(s) : write_raw(argv[7], dst.px, (size_t)dst.w * dst.h * dst.c);
    free(src.px);
    free(dst.px);
    return r;
}

static int cmd_preprocess(int argc, char **argv)
{
    if (argc != 4) return usage();
    dl_image img;
    dl_status s = dl_image_read(argv[1], &img);
    if (s != DL_OK) return fail(s);
    float *x;
    int w, h;
    s = dl_preprocess(&img, atoi(argv[2]), &x, &w, &h);
    dl_image_free(&img);
    if (s != DL_OK) return fail(s);
    int64_t shape[4] = {1, 3, h, w};
    s = dl_npy_write_f32(argv[3], x, 4, shape);
    free(x);
    if (s != DL_OK) return fail(s);
    printf("%d %d\n", w, h);
    return 0;
}

static int cmd_input_size(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) return usage();
    int w, h, size, ow, oh;
    while (scanf("%d %d %d", &w, &h, &size) == 3) {
        dl_input_size(w, h, size, &ow, &oh);
        printf("%d %d\n", ow, oh);
    }
    return 0;
}

static int cmd_write(int argc, char **argv)
{
    if (argc != 6) return usage();
    dl_image img = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), NULL};
    dl_status s = read_raw(argv[1], (size_t)img.w * img.h * img.c, &img.px);
    if (s == DL_OK) s = dl_png_write(argv[5], &img);
    free(img.px);
    return s != DL_OK ? fail(s) : 0;
}

static int cmd_write_indexed(int argc, char **argv)
{
    if (argc != 7) return usage();
    int w = atoi(argv[2]), h = atoi(argv[3]), ncolors = atoi(argv[5]);
    uint8_t *idx = NULL, *pal = NULL;
    dl_status s = read_raw(argv[1], (size_t)w * h, &idx);
    if (s == DL_OK) s = read_raw(argv[4], (size_t)ncolors * 3, &pal);
    if (s == DL_OK) s = dl_png_write_indexed(argv[6], idx, w, h, (const uint8_t(*)[3])pal, ncolors);
    free(idx);
    free(pal);
    return s != DL_OK ? fail(s) : 0;
}

static int cmd_npy(int argc, char **argv)
{
    if (argc < 3 || argc - 3 > 32) return usage();
    int ndim = argc - 3;
    int64_t shape[32];
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = atoll(argv[3 + i]);
        count *= (size_t)shape[i];
    }
    uint8_t *data;
    dl_status s = read_raw(argv[1], count * sizeof(float), &data);
    if (s == DL_OK) s = dl_npy_write_f32(argv[2], (const float *)data, ndim, shape);
    free(data);
    return s != DL_OK ? fail(s) : 0;
}

static int cmd_time(int argc, char **argv)
{
    if (argc != 3 && argc != 4) return usage();
    int size = atoi(argv[2]), repeat = argc == 4 ? atoi(argv[3]) : 3;
    double best_decode = 1e30, best_pre = 1e30;
    int w = 0, h = 0, iw = 0, ih = 0;
    for (int i = 0; i < repeat; i++) {
        dl_image img;
        double t0 = now_ms();
        dl_status s = dl_image_read(argv[1], &img);
        if (s != DL_OK) return fail(s);
        double t1 = now_ms();
        float *x;
        s = dl_preprocess(&img, size, &x, &w, &h);
        double t2 = now_ms();
        iw = img.w;
        ih = img.h;
        dl_image_free(&img);
        if (s != DL_OK) return fail(s);
        free(x);
        if (t1 - t0 < best_decode) best_decode = t1 - t0;
        if (t2 - t1 < best_pre) best_pre = t2 - t1;
    }
    printf("%dx%d -> %dx%d: decode %.1f ms, resize+normalise %.1f ms (best of %d)\n", iw, ih, w, h,
           best_decode, best_pre, repeat);
    return 0;
}

int main(int argc, char **argv)
{
    int i = 1;
    int64_t max_pixels = 0;
    int max_side = 0;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        if (!strcmp(argv[i], "--max-pixels")) max_pixels = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-side")) max_side = atoi(argv[i + 1]);
        else return usage();
    }
    dl_set_image_limits(max_pixels, max_side);
    if (i >= argc) return usage();
    const char *cmd = argv[i];
    argc -= i;
    argv += i;
    if (!strcmp(cmd, "decode")) return cmd_decode(argc, argv);
    if (!strcmp(cmd, "resize")) return cmd_resize(argc, argv);
    if (!strcmp(cmd, "preprocess")) return cmd_preprocess(argc, argv);
    if (!strcmp(cmd, "input-size")) return cmd_input_size(argc, argv);
    if (!strcmp(cmd, "write")) return cmd_write(argc, argv);
    if (!strcmp(cmd, "write-indexed")) return cmd_write_indexed(argc, argv);
    if (!strcmp(cmd, "npy")) return cmd_npy(argc, argv);
    if (!strcmp(cmd, "time")) return cmd_time(argc, argv);
    return usage();
}
