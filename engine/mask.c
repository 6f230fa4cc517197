/*
 * mask.c - choosing what a cut-out keeps: the probability mass of chosen classes, objects
 * (connected regions), keeping the objects under points or the largest one, and the hints
 * painted by the user (keep / erase brush images). See deeplab.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "deeplab.h"
#include "layers.h"
#include "status.h"

int dl_voc_class_index(const char *name)
{
    for (int c = 0; dl_voc_class_name(c); c++)
        if (!strcmp(name, dl_voc_class_name(c))) return c;
    return -1;
}

void dl_class_prob(const float *logits, int C, int h, int w, const uint8_t *classes, float *prob)
{
    const int64_t hw = (int64_t)h * w;
    for (int64_t i = 0; i < hw; i++) prob[i] = class_mass_pixel(logits + i, C, hw, classes);
}

/* ------------------------------------------------------------------ objects */

dl_status dl_objects(const float *alpha, int W, int H, int32_t *labels, int *count)
{
    const size_t n = (size_t)W * H;
    /* Flood fill from each unlabelled object pixel in raster order, with an explicit queue of
     * pixel indices (every pixel enters it at most once). */
    int32_t *queue = dl_alloc(sizeof(int32_t) * (n ? n : 1), "the object queue");
    if (!queue) return DL_ENOMEM;
    memset(labels, 0, sizeof(int32_t) * n);
    int objects = 0;
    for (size_t start = 0; start < n; start++) {
        if (labels[start] || !(alpha[start] >= 0.5f)) continue;
        const int32_t id = ++objects;
        size_t head = 0, tail = 0;
        queue[tail++] = (int32_t)start;
        labels[start] = id;
        while (head < tail) {
            const int32_t p = queue[head++];
            const int x = p % W, y = p / W;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    const int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
                    const size_t q = (size_t)ny * W + nx;
                    if (labels[q] || !(alpha[q] >= 0.5f)) continue;
                    labels[q] = id;
                    queue[tail++] = (int32_t)q;
                }
        }
    }
    free(queue);
    *count = objects;
    return DL_OK;
}

/* out[i] = 1 where a pixel of set lies within r pixels in x and in y (a square dilation): a
 * running count over each row into tmp, then one running count per column (colcount: W ints). */
static void dilate(const uint8_t *set, uint8_t *tmp, uint8_t *out, int W, int H, int r, int *colcount)
{
    for (int y = 0; y < H; y++) {
        const uint8_t *s = set + (size_t)y * W;
        uint8_t *t = tmp + (size_t)y * W;
        int count = 0;
        for (int x = 0; x <= r && x < W; x++) count += s[x];
        for (int x = 0; x < W; x++) {
            t[x] = count > 0;
            if (x + r + 1 < W) count += s[x + r + 1];
            if (x - r >= 0) count -= s[x - r];
        }
    }
    memset(colcount, 0, sizeof(int) * (size_t)W);
    for (int y = 0; y <= r && y < H; y++)
        for (int x = 0; x < W; x++) colcount[x] += tmp[(size_t)y * W + x];
    for (int y = 0; y < H; y++) {
        uint8_t *o = out + (size_t)y * W;
        for (int x = 0; x < W; x++) o[x] = colcount[x] > 0;
        if (y + r + 1 < H)
            for (int x = 0; x < W; x++) colcount[x] += tmp[(size_t)(y + r + 1) * W + x];
        if (y - r >= 0)
            for (int x = 0; x < W; x++) colcount[x] -= tmp[(size_t)(y - r) * W + x];
    }
}

dl_status dl_keep_objects(float *alpha, int W, int H, const dl_point *points, int npoints, int largest,
                          int fringe, int *missed)
{
    if (missed) *missed = 0;
    for (int k = 0; k < npoints; k++)
        if (points[k].x < 0 || points[k].y < 0 || points[k].x >= W || points[k].y >= H)
            return dl_fail(DL_EUSAGE, "--keep-at %d,%d is outside the %dx%d image", points[k].x, points[k].y, W, H);
    const size_t n = (size_t)W * H;
    int32_t *labels = dl_alloc(sizeof(int32_t) * n, "object labels");
    uint8_t *kept = dl_alloc(n, "kept objects"), *tmp = dl_alloc(n, "kept objects"), *near = dl_alloc(n, "kept objects");
    int *colcount = dl_alloc(sizeof(int) * (size_t)W, "kept objects");
    dl_status s = labels && kept && tmp && near && colcount ? DL_OK : DL_ENOMEM;
    int count = 0;
    if (s == DL_OK) s = dl_objects(alpha, W, H, labels, &count);
    uint8_t *keep = s == DL_OK ? dl_calloc((size_t)count + 1, 1, "kept objects") : NULL;
    int64_t *size = s == DL_OK ? dl_calloc((size_t)count + 1, sizeof(int64_t), "object sizes") : NULL;
    if (s == DL_OK && (!keep || !size)) s = DL_ENOMEM;
    if (s == DL_OK) {
        for (int k = 0; k < npoints; k++) {
            const int32_t id = labels[(size_t)points[k].y * W + points[k].x];
            if (id) keep[id] = 1;
            else if (missed) ++*missed;
        }
        if (largest && count > 0) {
            for (size_t i = 0; i < n; i++) size[labels[i]]++;
            int best = 1;
            for (int id = 2; id <= count; id++)
                if (size[id] > size[best]) best = id;
            keep[best] = 1;
        }
        for (size_t i = 0; i < n; i++) kept[i] = labels[i] && keep[labels[i]];
        dilate(kept, tmp, near, W, H, fringe < 0 ? 0 : fringe, colcount);
        /* objects not kept go; so does the soft edge (alpha < 0.5) away from kept objects */
        for (size_t i = 0; i < n; i++)
            if (labels[i] ? !keep[labels[i]] : !near[i]) alpha[i] = 0.0f;
    }
    free(labels), free(kept), free(tmp), free(near), free(colcount), free(keep), free(size);
    return s;
}

/* ------------------------------------------------------------------ hints */

/* Pillow's convert("L") of one pixel: ITU-R 601 luma in 16-bit fixed point, rounded. */
static int luma(const uint8_t *px, int c)
{
    if (c < 3) return px[0];
    return (int)((px[0] * 19595u + px[1] * 38470u + px[2] * 7471u + 0x8000u) >> 16);
}

dl_status dl_hints_from_masks(const dl_image *keep, const dl_image *erase, int W, int H, uint8_t *hints)
{
    const dl_image *masks[2] = {keep, erase};
    const char *names[2] = {"--keep-mask", "--erase-mask"};
    for (int k = 0; k < 2; k++)
        if (masks[k] && (masks[k]->w != W || masks[k]->h != H))
            return dl_fail(DL_EUSAGE, "%s is %dx%d, the photo %dx%d: paint the mask on the photo as it is shown",
                           names[k], masks[k]->w, masks[k]->h, W, H);
    const size_t n = (size_t)W * H;
    for (size_t i = 0; i < n; i++) {
        uint8_t h = DL_HINT_NONE;
        if (keep && luma(keep->px + i * keep->c, keep->c) >= 128) h = DL_HINT_KEEP;
        if (erase && luma(erase->px + i * erase->c, erase->c) >= 128) h = DL_HINT_ERASE;
        hints[i] = h;
    }
    return DL_OK;
}

/* ------------------------------------------------------------------ strokes */

/* Paints the pixels of the W x H map whose centres, in photo coordinates (sx, sy map pixels per
 * photo pixel), lie within r of the segment a-b. */
static void paint_segment(uint8_t *hints, int W, int H, double sx, double sy, const float *a, const float *b,
                          double r, uint8_t hint)
{
    const double ax = a[0], ay = a[1], dx = b[0] - ax, dy = b[1] - ay, len2 = dx * dx + dy * dy;
    /* map pixels whose centre (x + 0.5) / sx can be within r of the segment */
    const double lo_x = (fmin(ax, b[0]) - r) * sx - 0.5, hi_x = (fmax(ax, b[0]) + r) * sx - 0.5;
    const double lo_y = (fmin(ay, b[1]) - r) * sy - 0.5, hi_y = (fmax(ay, b[1]) + r) * sy - 0.5;
    if (!(hi_x >= 0 && lo_x < W && hi_y >= 0 && lo_y < H)) return; /* off the map (NaN too) */
    const int x0 = lo_x < 0 ? 0 : (int)ceil(lo_x), x1 = hi_x >= W ? W - 1 : (int)floor(hi_x);
    const int y0 = lo_y < 0 ? 0 : (int)ceil(lo_y), y1 = hi_y >= H ? H - 1 : (int)floor(hi_y);
    for (int y = y0; y <= y1; y++) {
        const double py = (y + 0.5) / sy - ay;
        for (int x = x0; x <= x1; x++) {
            const double px = (x + 0.5) / sx - ax;
            double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0; /* the nearest point of the segment */
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            const double ex = px - t * dx, ey = py - t * dy;
            if (ex * ex + ey * ey <= r * r) hints[(size_t)y * W + x] = hint;
        }
    }
}

dl_status dl_paint_strokes(uint8_t *hints, int W, int H, int ref_w, int ref_h, const dl_stroke *strokes, int n)
{
    const double sx = ref_w > 0 ? (double)W / ref_w : 1.0, sy = ref_h > 0 ? (double)H / ref_h : 1.0;
    for (int k = 0; k < n; k++) {
        const dl_stroke *s = &strokes[k];
        if ((s->hint != DL_HINT_KEEP && s->hint != DL_HINT_ERASE) || !(s->radius >= 0.5f) || s->npoints < 1 || !s->xy)
            return dl_fail(DL_EUSAGE, "stroke %d: expected keep or erase, a radius of at least 0.5 and points", k + 1);
        /* on a scaled-down map a stroke covers at least the map pixel under it */
        const double r = fmax(s->radius, 0.5 / fmin(sx, sy));
        if (s->npoints == 1) paint_segment(hints, W, H, sx, sy, s->xy, s->xy, r, s->hint); /* a dot */
        for (int i = 0; i + 1 < s->npoints; i++) paint_segment(hints, W, H, sx, sy, s->xy + 2 * i, s->xy + 2 * i + 2, r, s->hint);
    }
    return DL_OK;
}
