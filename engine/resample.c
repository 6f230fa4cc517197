/*
 * resample.c - Pillow's antialiased bilinear resize of 8-bit images, bit for bit, and the
 * torchvision preprocessing built on it (dl_input_size, dl_preprocess).
 *
 * The algorithm is Pillow 9.4's (libImaging/Resample.c, ImagingResample with the BILINEAR
 * filter), re-derived here:
 *   - Separable, two passes: horizontal first, rounded to an 8-bit intermediate image, then
 *     vertical. A pass whose size does not change is skipped (it would be the identity anyway).
 *   - Output sample i of a pass from n inputs to m outputs is centred on input coordinate
 *     (i + 0.5) * scale with scale = n / m. When shrinking, the triangle filter is stretched by
 *     scale (antialiasing); when growing it keeps its width of 1 input pixel each side.
 *   - The window is [trunc(center - support + 0.5), trunc(center + support + 0.5)) clipped to
 *     the image; the weights are normalised to sum to 1 in double, then rounded to fixed point
 *     with PRECISION_BITS fractional bits (half away from zero).
 *   - Each output is 2^(PRECISION_BITS-1) + sum(weight * input), shifted right and clipped to
 *     0..255.
 *   - RGBA is premultiplied by alpha before and un-premultiplied after (Image.resize converts
 *     RGBA to RGBa and back), with Pillow's integer rounding.
 * Every double operation below is written in Pillow's order so that the weights, and hence the
 * results, are identical. (-std=c11 keeps GCC from contracting a * b + c into a fused
 * multiply-add, which would round differently on machines that have one.)
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "image.h"
#include "status.h"

/* 8 bits of result and 2 of headroom in an int32 (Pillow's choice, kept for its rounding). */
#define PRECISION_BITS (32 - 8 - 2)

/* Weights of one resampling pass from in_size to out_size samples. */
struct taps {
    int ksize;      /* weights stored per output sample: the widest possible window */
    int *first;     /* output i reads inputs first[i] .. first[i] + count[i] - 1 */
    int *count;
    int32_t *w;     /* out_size x ksize, fixed point with PRECISION_BITS fractional bits */
};

static void taps_free(struct taps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
    memset(t, 0, sizeof *t);
}

static double triangle(double x)
{
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int32_t to_fixed(double k)
{
    double scaled = k * (1 << PRECISION_BITS);
    return (int32_t)(k < 0 ? -0.5 + scaled : 0.5 + scaled);
}

static dl_status taps_make(int in_size, int out_size, struct taps *t)
{
    memset(t, 0, sizeof *t);
    /* Pillow takes the sizes from a float box: (float)in_size, exact for sizes below 2^24. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the triangle reaches 1 pixel, stretched when shrinking */
    int ksize = (int)ceil(support) * 2 + 1;
    size_t nw;
    if (dl_mul_size((size_t)out_size, (size_t)ksize, &nw) || dl_mul_size(nw, sizeof(int32_t), &nw))
        return dl_fail(DL_ENOMEM, "resize: %d to %d samples needs too many weights", in_size, out_size);
    t->ksize = ksize;
    t->first = dl_alloc(sizeof(int) * (size_t)out_size, "resize windows");
    t->count = dl_alloc(sizeof(int) * (size_t)out_size, "resize windows");
    t->w = dl_alloc(nw, "resize weights");
    double *k = dl_alloc(sizeof(double) * (size_t)ksize, "resize weights");
    if (!t->first || !t->count || !t->w || !k) {
        free(k);
        taps_free(t);
        return DL_ENOMEM;
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        double ss = 1.0 / filterscale;
        /* (int) truncates toward zero, so a window starting just left of 0 starts at 0. */
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo; /* <= 2 * support + 1 <= ksize */
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            k[j] = triangle((j + lo - center + 0.5) * ss);
            sum += k[j];
        }
        int32_t *w = t->w + (size_t)i * ksize;
        for (int j = 0; j < n; j++) {
            if (sum != 0.0) k[j] /= sum;
            w[j] = to_fixed(k[j]);
        }
        for (int j = n; j < ksize; j++) w[j] = 0;
        t->first[i] = lo;
        t->count[i] = n;
    }
    free(k);
    return DL_OK;
}

static uint8_t clip8(int32_t acc)
{
    int32_t v = acc >> PRECISION_BITS; /* arithmetic shift: floor, as in Pillow */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Horizontal pass over one row of c-channel pixels: out has out_w pixels. */
static void filter_row(const uint8_t *in, uint8_t *out, int out_w, int c, const struct taps *t)
{
    for (int x = 0; x < out_w; x++) {
        const int32_t *w = t->w + (size_t)x * t->ksize;
        const uint8_t *p = in + (size_t)t->first[x] * c;
        int32_t acc[4] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),
                          1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1)};
        for (int j = 0; j < t->count[x]; j++)
            for (int ch = 0; ch < c; ch++) acc[ch] += p[j * c + ch] * w[j];
        for (int ch = 0; ch < c; ch++) out[x * c + ch] = clip8(acc[ch]);
    }
}

/* Vertical pass for one output row of n bytes: weights w[0..count) over the count rows
 * starting at in, stride bytes apart. acc is scratch of n int32. */
static void filter_column(const uint8_t *in, size_t stride, uint8_t *out, size_t n,
                          const int32_t *w, int count, int32_t *acc)
{
    for (size_t i = 0; i < n; i++) acc[i] = 1 << (PRECISION_BITS - 1);
    for (int j = 0; j < count; j++) {
        const uint8_t *row = in + (size_t)j * stride;
        for (size_t i = 0; i < n; i++) acc[i] += row[i] * w[j];
    }
    for (size_t i = 0; i < n; i++) out[i] = clip8(acc[i]);
}

/* Pillow's RGBA -> RGBa: colour * alpha / 255 rounded, computed as ((t >> 8) + t) >> 8 with
 * t = colour * alpha + 128 (exact for 8-bit operands). */
static void premultiply(const uint8_t *in, uint8_t *out, int w)
{
    for (int x = 0; x < w; x++, in += 4, out += 4) {
        unsigned a = in[3];
        for (int ch = 0; ch < 3; ch++) {
            unsigned t = in[ch] * a + 128;
            out[ch] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        out[3] = (uint8_t)a;
    }
}

/* Pillow's RGBa -> RGBA: colour * 255 / alpha truncated and clipped; alpha 0 and 255 as is. */
static void unpremultiply(uint8_t *px, size_t npixels)
{
    for (size_t i = 0; i < npixels; i++, px += 4) {
        unsigned a = px[3];
        if (a == 0 || a == 255) continue;
        for (int ch = 0; ch < 3; ch++) {
            unsigned v = 255u * px[ch] / a;
            px[ch] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

dl_status dl_resize_bilinear_u8(const dl_image *src, dl_image *dst)
{
    int c = src->c;
    if (!src->px || !dst->px || src->w <= 0 || src->h <= 0 || dst->w <= 0 || dst->h <= 0 ||
        (c != 1 && c != 3 && c != 4) || dst->c != c)
        return dl_fail(DL_EUSAGE, "resize: cannot resize %dx%dx%d to %dx%dx%d", src->w, src->h, c,
                       dst->w, dst->h, dst->c);
    size_t row_in = (size_t)src->w * c, row_out = (size_t)dst->w * c;
    if (dst->w == src->w && dst->h == src->h) {
        memcpy(dst->px, src->px, row_in * (size_t)src->h); /* Pillow copies, RGBA untouched */
        return DL_OK;
    }
    int need_h = dst->w != src->w, need_v = dst->h != src->h, premul = c == 4;
    struct taps th = {0}, tv = {0};
    uint8_t *mid = NULL, *row = NULL;
    int32_t *acc = NULL;
    dl_status s = DL_OK;

    /* Source rows y0 .. y1-1 are the ones the vertical pass reads (all when it is skipped). */
    int y0 = 0, y1 = src->h;
    if (need_v) {
        if ((s = taps_make(src->h, dst->h, &tv)) != DL_OK) goto done;
        y0 = tv.first[0];
        y1 = tv.first[dst->h - 1] + tv.count[dst->h - 1];
    }
    if (need_h && (s = taps_make(src->w, dst->w, &th)) != DL_OK) goto done;

    /* Pass 1: those rows, premultiplied if RGBA and filtered horizontally if the width
     * changes, into mid (y1 - y0 rows of row_out bytes), or straight into dst when the height
     * stays. Without either there is nothing to do: pass 2 reads src itself. */
    const uint8_t *vin = src->px + (size_t)y0 * row_in;
    if (need_h || premul) {
        uint8_t *target = dst->px;
        if (need_v) {
            size_t bytes;
            if (dl_mul_size(row_out, (size_t)(y1 - y0), &bytes) ||
                !(mid = dl_alloc(bytes, "resize intermediate image"))) {
                s = dl_fail(DL_ENOMEM, "resize: out of memory for a %dx%d intermediate image",
                            dst->w, y1 - y0);
                goto done;
            }
            target = mid;
        }
        if (premul && !(row = dl_alloc(row_in, "resize row"))) {
            s = DL_ENOMEM;
            goto done;
        }
        for (int y = y0; y < y1; y++) {
            const uint8_t *in = src->px + (size_t)y * row_in;
            if (premul) {
                premultiply(in, row, src->w);
                in = row;
            }
            uint8_t *o = target + (size_t)(y - y0) * row_out;
            if (need_h) filter_row(in, o, dst->w, c, &th);
            else memcpy(o, in, row_out);
        }
        vin = mid;
    }

    /* Pass 2: vertical, from vin (rows y0 .. y1-1) into dst. */
    if (need_v) {
        if (!(acc = dl_alloc(row_out * sizeof(int32_t), "resize accumulators"))) {
            s = DL_ENOMEM;
            goto done;
        }
        for (int y = 0; y < dst->h; y++)
            filter_column(vin + (size_t)(tv.first[y] - y0) * row_out, row_out,
                          dst->px + (size_t)y * row_out, row_out, tv.w + (size_t)y * tv.ksize,
                          tv.count[y], acc);
    }
    if (premul) unpremultiply(dst->px, (size_t)dst->w * (size_t)dst->h);

done:
    taps_free(&th);
    taps_free(&tv);
    free(mid);
    free(row);
    free(acc);
    return s;
}

void dl_input_size(int w, int h, int size, int *out_w, int *out_h)
{
    *out_w = w;
    *out_h = h;
    if (size <= 0 || w <= 0 || h <= 0) return;
    int64_t shorter = w <= h ? w : h, longer = w <= h ? h : w;
    /* torchvision: int(size * long / short), a Python float division truncated. Both operands
     * are exact doubles (below 2^53) and IEEE division rounds as Python's does. */
    double l = (double)((int64_t)size * longer) / (double)shorter;
    int new_long = l >= (double)INT_MAX ? INT_MAX : (int)l;
    if (w <= h) {
        *out_w = size;
        *out_h = new_long;
    } else {
        *out_w = new_long;
        *out_h = size;
    }
}

dl_status dl_preprocess(const dl_image *img, int size, float **out, int *out_w, int *out_h)
{
    /* torchvision's ImageNet statistics, as float32 (torch.as_tensor(mean, dtype=float)). */
    static const float mean[3] = {0.485f, 0.456f, 0.406f};
    static const float std[3] = {0.229f, 0.224f, 0.225f};
    *out = NULL;
    *out_w = *out_h = 0;
    if (!img->px || img->w <= 0 || img->h <= 0 || img->c != 3)
        return dl_fail(DL_EUSAGE, "preprocess: expected an RGB image, got %dx%dx%d", img->w, img->h, img->c);
    if (size < 0) return dl_fail(DL_EUSAGE, "preprocess: size must be 0 (keep) or positive, not %d", size);

    int w, h;
    dl_input_size(img->w, img->h, size, &w, &h);
    int64_t max_pixels;
    int max_side;
    dl_image_limits(&max_pixels, &max_side);
    if ((int64_t)w * h > max_pixels || w > max_side || h > max_side)
        return dl_fail(DL_EDATA, "preprocess: resizing %dx%d to a shorter side of %d gives %dx%d, "
                       "more than the image limits (%g megapixels, %d pixels per side)",
                       img->w, img->h, size, w, h, (double)max_pixels / 1e6, max_side);
    size_t hw = (size_t)w * (size_t)h;

    dl_image resized = {w, h, 3, NULL};
    const dl_image *src = img;
    if (w != img->w || h != img->h) {
        if (!(resized.px = dl_alloc(hw * 3, "resized image"))) return DL_ENOMEM;
        dl_status s = dl_resize_bilinear_u8(img, &resized);
        if (s != DL_OK) {
            free(resized.px);
            return s;
        }
        src = &resized;
    }
    float *x = dl_alloc(sizeof(float) * 3 * hw, "network input");
    if (!x) {
        free(resized.px);
        return DL_ENOMEM;
    }
    /* torchvision computes (v / 255.0f - mean) / std in float32, one rounded operation at a
     * time (the assignments keep it so even where float arithmetic has excess precision);
     * a table of the 256 possible results per channel gives the same floats. */
    float lut[3][256];
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) {
            float unit = (float)v / 255.0f;
            float centred = unit - mean[ch];
            lut[ch][v] = centred / std[ch];
        }
    for (int ch = 0; ch < 3; ch++) {
        float *plane = x + (size_t)ch * hw;
        const uint8_t *p = src->px + ch;
        for (size_t i = 0; i < hw; i++) plane[i] = lut[ch][p[3 * i]];
    }
    free(resized.px);
    *out = x;
    *out_w = w;
    *out_h = h;
    return DL_OK;
}

dl_status dl_image_fit_pixels(dl_image *img, int64_t max_pixels)
{
    if (max_pixels <= 0 || (int64_t)img->w * img->h <= max_pixels) return DL_OK;
    /* the largest w' x h' of the same aspect within max_pixels (rounding can overshoot by a row) */
    const double f = sqrt((double)max_pixels / ((double)img->w * img->h));
    int w = (int)floor(img->w * f), h = (int)floor(img->h * f);
    w = w < 1 ? 1 : w, h = h < 1 ? 1 : h;
    while ((int64_t)w * h > max_pixels && (w > 1 || h > 1)) {
        if (w >= h && w > 1) w--;
        else h--;
    }
    dl_image small = {w, h, img->c, dl_alloc((size_t)w * h * (size_t)img->c, "the scaled-down photo")};
    if (!small.px) return DL_ENOMEM;
    dl_status s = dl_resize_bilinear_u8(img, &small);
    if (s != DL_OK) {
        free(small.px);
        return s;
    }
    dl_image_free(img);
    *img = small;
    return DL_OK;
}
