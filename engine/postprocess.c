/*
 * postprocess.c - from logits to what people look at: class maps at the photo's resolution,
 * foreground probability, the PASCAL VOC names and colours.
 */
#include <math.h>
#include <stdlib.h>

#include "alloc.h"
#include "deeplab.h"
#include "layers.h"
#include "status.h"

static const char *const voc_names[21] = {
    "background", "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",
    "car",        "cat",       "chair",   "cow",   "diningtable", "dog",    "horse",
    "motorbike",  "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};

const char *dl_voc_class_name(int c) { return c >= 0 && c < 21 ? voc_names[c] : NULL; }

/* The VOC colour map: the bits of the class index are spread over the high bits of R, G and B
 * (bit 0 -> R bit 7, bit 1 -> G bit 7, bit 2 -> B bit 7, bit 3 -> R bit 6, ...). */
const uint8_t (*dl_voc_palette(void))[3]
{
    static uint8_t pal[256][3];
    static int ready;
    if (!ready) {
        for (int i = 0; i < 256; i++) {
            int r = 0, g = 0, b = 0, c = i;
            for (int j = 0; j < 8; j++, c >>= 3) {
                r |= (c & 1) << (7 - j);
                g |= (c >> 1 & 1) << (7 - j);
                b |= (c >> 2 & 1) << (7 - j);
            }
            pal[i][0] = (uint8_t)r;
            pal[i][1] = (uint8_t)g;
            pal[i][2] = (uint8_t)b;
        }
        ready = 1;
    }
    return (const uint8_t(*)[3])pal;
}

dl_status dl_labels_from_logits(const float *logits, int C, int h, int w, uint8_t *labels, int W, int H)
{
    if (C < 1 || C > 256) return dl_fail(DL_EUSAGE, "class map of %d classes: expected 1 to 256", C);
    /* One row of the vertically interpolated logits, all classes: C x w floats. */
    float *row = dl_alloc(sizeof(float) * (size_t)C * w, "a row of logits");
    if (!row) return DL_ENOMEM;
    const size_t hw = (size_t)h * w;
    for (int Y = 0; Y < H; Y++) {
        int y0, y1;
        float ly;
        resize_bilinear_coord(Y, h, H, &y0, &y1, &ly);
        for (int c = 0; c < C; c++)
            for (int x = 0; x < w; x++) {
                const float *p = logits + c * hw + x;
                row[(size_t)c * w + x] = (1.0f - ly) * p[(size_t)y0 * w] + ly * p[(size_t)y1 * w];
            }
        for (int X = 0; X < W; X++) {
            int x0, x1;
            float lx;
            resize_bilinear_coord(X, w, W, &x0, &x1, &lx);
            int best = 0;
            float best_v = -INFINITY;
            for (int c = 0; c < C; c++) {
                const float *r = row + (size_t)c * w;
                const float v = (1.0f - lx) * r[x0] + lx * r[x1];
                if (v > best_v) {
                    best_v = v;
                    best = c;
                }
            }
            labels[(size_t)Y * W + X] = (uint8_t)best;
        }
    }
    free(row);
    return DL_OK;
}

void dl_foreground_prob(const float *logits, int C, int h, int w, float *prob)
{
    dl_class_prob(logits, C, h, w, NULL, prob);
}

void dl_resize_map(const float *src, int h, int w, float *dst, int H, int W)
{
    resize_bilinear_cpu(tensor_make((float *)src, 1, 1, h, w), tensor_make(dst, 1, 1, H, W), NULL);
}
