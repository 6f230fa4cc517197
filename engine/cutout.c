/*
 * cutout.c - dl_cutout_make: from the network's logits and the photo to the picture that is
 * written, in the order deeplab.h lists: what to keep (classes, hints, objects), the edges
 * (refinement), then the picture (format, background, crop). Each step is a library call of its
 * own (mask.c, refine.c, compose.c); this file only strings them together.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "alloc.h"
#include "compose.h"
#include "image.h"
#include "deeplab.h"
#include "status.h"

static float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

static dl_status check_options(const dl_image *photo, int C, int net_h, int net_w, const dl_cutout_options *o,
                               const dl_refiner *r)
{
    if (!photo || photo->c != 3 || photo->w < 1 || photo->h < 1 || !photo->px)
        return dl_fail(DL_EUSAGE, "cut-out: expected an RGB photo");
    if (C < 1 || C > 256 || net_h < 1 || net_w < 1)
        return dl_fail(DL_EUSAGE, "cut-out: logits of %d classes at %dx%d", C, net_w, net_h);
    if (o->refine && !r) return dl_fail(DL_EUSAGE, "cut-out: refinement needs a refiner");
    if (!(o->threshold >= 0.0f && o->threshold <= 1.0f))
        return dl_fail(DL_EUSAGE, "cut-out: threshold %g is not between 0 and 1", o->threshold);
    if (o->background == DL_BG_IMAGE && !o->bg_image) return dl_fail(DL_EUSAGE, "cut-out: no background image");
    if (o->nkeep_at < 0 || (o->nkeep_at && !o->keep_at)) return dl_fail(DL_EUSAGE, "cut-out: bad keep-at points");
    if (o->nstrokes < 0 || (o->nstrokes && !o->strokes)) return dl_fail(DL_EUSAGE, "cut-out: bad strokes");
    if (!(o->scale >= 0.0f && o->scale <= 1.0f) || !(o->position_x >= 0.0f && o->position_x <= 1.0f) ||
        !(o->position_y >= 0.0f && o->position_y <= 1.0f))
        return dl_fail(DL_EUSAGE, "cut-out: scale %g or position %g, %g is not between 0 and 1", o->scale,
                       o->position_x, o->position_y);
    if ((o->scale > 0.0f || o->position) && o->format != DL_CUTOUT_RGBA && o->format != DL_CUTOUT_MASK)
        return dl_fail(DL_EUSAGE, "cut-out: scale and position apply to the rgba and mask formats only");
    if (o->ref_w < 0 || o->ref_h < 0 || (o->ref_w > 0) != (o->ref_h > 0))
        return dl_fail(DL_EUSAGE, "cut-out: bad reference size %dx%d", o->ref_w, o->ref_h);
    for (int k = 0; k < 4; k++)
        if (!(o->roi_box[k].value >= 0.0f) || !(o->crop_margin[k].value >= 0.0f))
            return dl_fail(DL_EUSAGE, "cut-out: negative or undefined roi or crop margin");
    return DL_OK;
}

/* The photo's scale against the reference size its geometry is given in (1 without one). */
typedef struct geometry {
    double sx, sy;
    int ref_w, ref_h;
} geometry;

/* A length of the reference (percent of `of` reference pixels) in photo pixels along an axis of
 * scale s. */
static int to_pixels(dl_length l, double of, double s)
{
    const double v = (l.percent ? l.value / 100.0 * of : l.value) * s;
    return v >= 1e9 ? 1000000000 : (int)lrint(v);
}

/* Pixels outside the roi become transparent. */
static void apply_roi(float *alpha, int W, int H, const dl_cutout_options *o, const geometry *g)
{
    if (!o->roi) return;
    int b[4];
    for (int k = 0; k < 4; k++) {
        b[k] = to_pixels(o->roi_box[k], k % 2 ? g->ref_h : g->ref_w, k % 2 ? g->sy : g->sx);
        const int lim = k % 2 ? H : W;
        b[k] = b[k] < 0 ? 0 : b[k] > lim ? lim : b[k];
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (x < b[0] || y < b[1] || x >= b[2] || y >= b[3]) alpha[(size_t)y * W + x] = 0.0f;
}

/* A brush image of the reference size, sampled (nearest) at the photo's size: for previews. */
static dl_status sample_mask(const dl_image *m, int W, int H, dl_image *out)
{
    *out = (dl_image){W, H, m->c, dl_alloc((size_t)W * H * m->c, "a scaled mask")};
    if (!out->px) return DL_ENOMEM;
    for (int y = 0; y < H; y++) {
        const int my = (int)(((double)y + 0.5) * m->h / H);
        for (int x = 0; x < W; x++) {
            const int mx = (int)(((double)x + 0.5) * m->w / W);
            memcpy(out->px + ((size_t)y * W + x) * m->c, m->px + ((size_t)my * m->w + mx) * m->c, (size_t)m->c);
        }
    }
    return DL_OK;
}

/* The hints: brush images (of the photo's or the reference size), then the strokes. */
static dl_status make_hints(const dl_cutout_options *o, int W, int H, const geometry *g, uint8_t *hints)
{
    const dl_image *masks[2] = {o->keep_mask, o->erase_mask};
    dl_image sampled[2] = {{0}, {0}};
    dl_status s = DL_OK;
    for (int k = 0; k < 2 && s == DL_OK; k++)
        if (masks[k] && g->ref_w && (masks[k]->w != W || masks[k]->h != H) && masks[k]->w == g->ref_w &&
            masks[k]->h == g->ref_h && (s = sample_mask(masks[k], W, H, &sampled[k])) == DL_OK)
            masks[k] = &sampled[k];
    if (s == DL_OK) s = dl_hints_from_masks(masks[0], masks[1], W, H, hints);
    if (s == DL_OK) s = dl_paint_strokes(hints, W, H, g->ref_w, g->ref_h, o->strokes, o->nstrokes);
    free(sampled[0].px);
    free(sampled[1].px);
    return s;
}

/* The subject's box of a8 (alpha > 0) into out's box. */
static void find_box(const uint8_t *a8, int W, int H, dl_cutout *out)
{
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (a8[(size_t)y * W + x]) {
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            }
    out->box_x = out->box_y = out->box_w = out->box_h = 0;
    if (x1 >= 0) out->box_x = x0, out->box_y = y0, out->box_w = x1 - x0 + 1, out->box_h = y1 - y0 + 1;
}

/* scale and position: the subject's box of colours and a8 is scaled (Pillow's bilinear, RGBA) and
 * moved on a canvas of the same size, transparent black elsewhere. colours may be replaced. */
static dl_status place_subject(dl_image *colours, int own_colours, uint8_t *a8, const dl_cutout_options *o,
                               dl_cutout *out, int *owns)
{
    const int W = colours->w, H = colours->h, bw = out->box_w, bh = out->box_h;
    *owns = own_colours;
    if (!bw || (o->scale <= 0.0f && !o->position)) return DL_OK;
    int nw = bw, nh = bh;
    if (o->scale > 0.0f) {
        const double f = o->scale * fmin((double)W / bw, (double)H / bh);
        nw = (int)lrint(bw * f), nh = (int)lrint(bh * f);
        nw = nw < 1 ? 1 : nw > W ? W : nw, nh = nh < 1 ? 1 : nh > H ? H : nh;
    }
    const float px = o->position ? o->position_x : 0.5f, py = o->position ? o->position_y : 0.5f;
    const int left = o->position || o->scale > 0.0f ? (int)lrint(px * (W - nw)) : out->box_x;
    const int top = o->position || o->scale > 0.0f ? (int)lrint(py * (H - nh)) : out->box_y;
    if (nw == bw && nh == bh && left == out->box_x && top == out->box_y) return DL_OK;
    const size_t n = (size_t)W * H;
    dl_image sub = {bw, bh, 4, dl_alloc((size_t)bw * bh * 4, "the subject")};
    dl_image fit = {nw, nh, 4, dl_alloc((size_t)nw * nh * 4, "the scaled subject")};
    uint8_t *canvas = dl_alloc(n * 3, "the canvas");
    dl_status s = sub.px && fit.px && canvas ? DL_OK : DL_ENOMEM;
    for (int y = 0; s == DL_OK && y < bh; y++)
        for (int x = 0; x < bw; x++) {
            const size_t i = (size_t)(out->box_y + y) * W + out->box_x + x;
            uint8_t *p = sub.px + ((size_t)y * bw + x) * 4;
            memcpy(p, colours->px + 3 * i, 3);
            p[3] = a8[i];
        }
    if (s == DL_OK) s = dl_resize_bilinear_u8(&sub, &fit);
    if (s == DL_OK) {
        memset(canvas, 0, n * 3);
        memset(a8, 0, n);
        for (int y = 0; y < nh; y++)
            for (int x = 0; x < nw; x++) {
                const size_t i = (size_t)(top + y) * W + left + x;
                const uint8_t *p = fit.px + ((size_t)y * nw + x) * 4;
                memcpy(canvas + 3 * i, p, 3);
                a8[i] = p[3];
            }
        if (own_colours) free(colours->px);
        colours->px = canvas;
        canvas = NULL;
        *owns = 1;
        find_box(a8, W, H, out);
    }
    free(sub.px);
    free(fit.px);
    free(canvas);
    return s;
}

/* The picture for o->format from the photo, the final alpha (a8, which scale and position may
 * change) and the class map. */
static dl_status make_picture(const dl_image *photo, const float *alpha, uint8_t *a8, const uint8_t *labels,
                              const dl_cutout_options *o, dl_cutout *out)
{
    const int W = photo->w, H = photo->h;
    const size_t n = (size_t)W * H;
    dl_status s = DL_OK;
    switch (o->format) {
    case DL_CUTOUT_LABELS:
        out->img = (dl_image){W, H, 1, dl_alloc(n, "the class map")};
        if (!out->img.px) return DL_ENOMEM;
        for (size_t i = 0; i < n; i++) out->img.px[i] = a8[i] >= 128 ? labels[i] : 0;
        out->indexed = 1;
        return DL_OK;
    case DL_CUTOUT_OVERLAY:
        return dl_overlay(photo, labels, out->num_classes, out->share, &out->img);
    case DL_CUTOUT_MASK:
    case DL_CUTOUT_RGBA:
        break;
    }
    dl_image colours = *photo, bg = {0};
    int owns = 0;
    if (o->format == DL_CUTOUT_RGBA && o->decontaminate) {
        colours.px = dl_alloc(n * 3, "decontaminated colours");
        if (!colours.px) return DL_ENOMEM;
        memcpy(colours.px, photo->px, n * 3);
        owns = 1;
        s = dl_decontaminate(&colours, alpha);
    }
    if (s == DL_OK) s = place_subject(&colours, owns, a8, o, out, &owns);
    if (s == DL_OK && o->format == DL_CUTOUT_MASK) {
        out->img = (dl_image){W, H, 1, dl_alloc(n, "the mask")};
        if (out->img.px) memcpy(out->img.px, a8, n);
        else s = DL_ENOMEM;
    } else if (s == DL_OK) {
        if (o->background == DL_BG_IMAGE) s = dl_cover_resize(o->bg_image, W, H, &bg);
        if (s == DL_OK) s = dl_composite(&colours, a8, o->background, o->bg_color, &bg, &out->img);
    }
    if (owns) free(colours.px);
    free(bg.px);
    return s;
}

dl_status dl_cutout_make(const dl_image *photo, const float *logits, int C, int net_h, int net_w,
                         const dl_cutout_options *o, dl_refiner *r, dl_cutout *out)
{
    memset(out, 0, sizeof *out);
    dl_status s = check_options(photo, C, net_h, net_w, o, r);
    if (s != DL_OK) return s;
    const int W = photo->w, H = photo->h;
    const size_t n = (size_t)W * H;
    const geometry g = {o->ref_w ? (double)W / o->ref_w : 1.0, o->ref_h ? (double)H / o->ref_h : 1.0,
                        o->ref_w ? o->ref_w : W, o->ref_h ? o->ref_h : H};
    const int need_labels = o->stats || o->format == DL_CUTOUT_OVERLAY || o->format == DL_CUTOUT_LABELS;
    const int need_hints = o->keep_mask || o->erase_mask || o->nstrokes > 0;
    float *prob = dl_alloc(sizeof(float) * (size_t)net_h * net_w, "the class probability");
    float *alpha = dl_alloc(sizeof(float) * n, "the alpha");
    uint8_t *a8 = dl_alloc(n, "the alpha");
    uint8_t *hints = need_hints ? dl_alloc(n, "the hints") : NULL;
    uint8_t *labels = need_labels ? dl_alloc(n, "the class map") : NULL;
    dl_point *points = o->nkeep_at && o->ref_w ? dl_alloc(sizeof *points * (size_t)o->nkeep_at, "the points") : NULL;
    if (!prob || !alpha || !a8 || (need_hints && !hints) || (need_labels && !labels) ||
        (o->nkeep_at && o->ref_w && !points)) {
        s = DL_ENOMEM;
        goto done;
    }

    /* what to keep: the chosen classes' mass, upsampled to the photo; the user's hints */
    if (o->class_prob) memcpy(prob, o->class_prob, sizeof(float) * (size_t)net_h * net_w);
    else dl_class_prob(logits, C, net_h, net_w, o->classes, prob);
    dl_resize_map(prob, net_h, net_w, alpha, H, W);
    if (hints && (s = make_hints(o, W, H, &g, hints)) != DL_OK) goto done;

    /* the edges */
    dl_refine_params rp = o->refine_params;
    if (rp.radius > 0 && o->ref_w) rp.radius = (int)fmax(1.0, lrint(rp.radius * g.sx));
    if (rp.radius <= 0) rp.radius = dl_refine_auto_radius(W, H, net_w, net_h);
    if (rp.eps <= 0) rp.eps = DL_REFINE_EPS;
    if (o->refine) {
        if ((s = dl_refine(r, photo, alpha, hints, &rp, alpha)) != DL_OK) goto done;
    } else {
        for (size_t i = 0; i < n; i++)
            alpha[i] = hints && hints[i] ? (hints[i] == DL_HINT_KEEP ? 1.0f : 0.0f) : clamp01(alpha[i]);
    }
    apply_roi(alpha, W, H, o, &g);

    /* objects, then the hints again (what the user painted to keep stays), the threshold */
    if (o->nkeep_at || o->largest) {
        const dl_point *at = o->keep_at;
        if (points) { /* the points in the photo's pixels */
            for (int k = 0; k < o->nkeep_at; k++)
                points[k] = (dl_point){(int)floor((o->keep_at[k].x + 0.5) * g.sx),
                                       (int)floor((o->keep_at[k].y + 0.5) * g.sy)};
            at = points;
        }
        s = dl_keep_objects(alpha, W, H, at, o->nkeep_at, o->largest, rp.radius, &out->missed_points);
        if (s != DL_OK) goto done;
        for (size_t i = 0; hints && i < n; i++)
            if (hints[i] == DL_HINT_KEEP) alpha[i] = 1.0f;
        apply_roi(alpha, W, H, o, &g);
    }
    if (o->threshold > 0.0f)
        for (size_t i = 0; i < n; i++) alpha[i] = alpha[i] >= o->threshold ? 1.0f : 0.0f;

    /* the alpha in 8 bits and the subject's box: every pixel that is not fully transparent */
    for (size_t i = 0; i < n; i++) {
        a8[i] = (uint8_t)lrintf(255.0f * clamp01(alpha[i]));
        out->subject_pixels += a8[i] >= 128;
    }
    find_box(a8, W, H, out);

    /* the class of every pixel, and each class's share of the photo */
    out->num_classes = C;
    if (labels) {
        if ((s = dl_labels_from_logits(logits, C, net_h, net_w, labels, W, H)) != DL_OK) goto done;
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++) count[labels[i]]++;
        for (int c = 0; c < C; c++) out->share[c] = (double)count[c] / (double)n;
    }

    /* the picture (which scale and position may move the subject in), cropped */
    if ((s = make_picture(photo, alpha, a8, labels, o, out)) != DL_OK) goto done;
    if (o->crop && out->box_w > 0) {
        const dl_length *m = o->crop_margin; /* top, right, bottom, left */
        const int mt = to_pixels(m[0], out->box_h / g.sy, g.sy), mr = to_pixels(m[1], out->box_w / g.sx, g.sx);
        const int mb = to_pixels(m[2], out->box_h / g.sy, g.sy), ml = to_pixels(m[3], out->box_w / g.sx, g.sx);
        const int x1 = out->box_x + out->box_w - 1, y1 = out->box_y + out->box_h - 1;
        const int cx0 = out->box_x - ml < 0 ? 0 : out->box_x - ml, cy0 = out->box_y - mt < 0 ? 0 : out->box_y - mt;
        const int cx1 = x1 + mr > W - 1 ? W - 1 : x1 + mr, cy1 = y1 + mb > H - 1 ? H - 1 : y1 + mb;
        s = dl_crop(&out->img, cx0, cy0, cx1 - cx0 + 1, cy1 - cy0 + 1);
        out->crop_x = cx0, out->crop_y = cy0;
    }
done:
    free(prob);
    free(alpha);
    free(a8);
    free(hints);
    free(labels);
    free(points);
    if (s != DL_OK) dl_cutout_free(out);
    return s;
}

void dl_cutout_free(dl_cutout *c)
{
    if (!c) return;
    dl_image_free(&c->img);
    memset(c, 0, sizeof *c);
}

dl_status dl_cutout_write(const char *path, const dl_cutout *c, dl_file_format format, int jpeg_quality)
{
    if (!c->indexed) return dl_image_write(path, &c->img, format, jpeg_quality);
    if (format == DL_FORMAT_JPEG || (format == DL_FORMAT_AUTO && dl_format_of_path(path) == DL_FORMAT_JPEG))
        return dl_fail(DL_EUSAGE, "%s: class maps are written as PNG (JPEG would blur the class indices)", path);
    return dl_png_write_indexed(path, c->img.px, c->img.w, c->img.h, dl_voc_palette(),
                                c->num_classes > 1 ? c->num_classes : 2);
}

/* ------------------------------------------------------------------ in memory */

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff), put16(p + 2, v >> 16); }

/* A zip archive of stored (uncompressed) files: PNG and JPEG are compressed already. Dates are
 * 1980-01-01, so the same files give the same bytes. */
static dl_status zip_files(const char *const *names, uint8_t *const *data, const size_t *sizes, int n,
                           uint8_t **out, size_t *out_size)
{
    size_t total = 22;
    for (int k = 0; k < n; k++) {
        if (sizes[k] > 0xffffffffu - 1024) return dl_fail(DL_EUSAGE, "zip: %s is too large (4 GB)", names[k]);
        total += 30 + 46 + 2 * strlen(names[k]) + sizes[k];
    }
    if (total > 0xffffffffu) return dl_fail(DL_EUSAGE, "zip: more than 4 GB");
    uint8_t *z = dl_alloc(total, "the zip archive"), *p = z;
    if (!z) return DL_ENOMEM;
    uint32_t offsets[8], crcs[8];
    for (int k = 0; k < n; k++) { /* local headers and data */
        const size_t len = strlen(names[k]);
        crcs[k] = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data[k], (uInt)sizes[k]);
        offsets[k] = (uint32_t)(p - z);
        memset(p, 0, 30);
        put32(p, 0x04034b50), put16(p + 4, 20), put16(p + 12, 0x21);
        put32(p + 14, crcs[k]), put32(p + 18, (uint32_t)sizes[k]), put32(p + 22, (uint32_t)sizes[k]);
        put16(p + 26, (unsigned)len);
        memcpy(p + 30, names[k], len);
        memcpy(p + 30 + len, data[k], sizes[k]);
        p += 30 + len + sizes[k];
    }
    const uint8_t *dir = p;
    for (int k = 0; k < n; k++) { /* the central directory */
        const size_t len = strlen(names[k]);
        memset(p, 0, 46);
        put32(p, 0x02014b50), put16(p + 4, 20), put16(p + 6, 20), put16(p + 14, 0x21);
        put32(p + 16, crcs[k]), put32(p + 20, (uint32_t)sizes[k]), put32(p + 24, (uint32_t)sizes[k]);
        put16(p + 28, (unsigned)len), put32(p + 42, offsets[k]);
        memcpy(p + 46, names[k], len);
        p += 46 + len;
    }
    memset(p, 0, 22);
    put32(p, 0x06054b50), put16(p + 8, (unsigned)n), put16(p + 10, (unsigned)n);
    put32(p + 12, (uint32_t)(p - dir)), put32(p + 16, (uint32_t)(dir - z));
    *out = z;
    *out_size = total;
    return DL_OK;
}

dl_status dl_cutout_encode(const dl_cutout *c, dl_file_format format, int jpeg_quality, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    if (c->indexed) {
        if (format == DL_FORMAT_JPEG || format == DL_FORMAT_ZIP)
            return dl_fail(DL_EUSAGE, "class maps are written as PNG (JPEG would blur the class indices)");
        char *bytes = NULL;
        dl_status s = dl_png_write_indexed_to("labels", &bytes, size, c->img.px, c->img.w, c->img.h, dl_voc_palette(),
                                              c->num_classes > 1 ? c->num_classes : 2);
        *data = (uint8_t *)bytes;
        return s;
    }
    if (format == DL_FORMAT_AUTO) format = c->img.c == 3 ? DL_FORMAT_JPEG : DL_FORMAT_PNG;
    if (format != DL_FORMAT_ZIP) return dl_image_encode(&c->img, format, jpeg_quality, data, size);
    if (c->img.c != 3 && c->img.c != 4) return dl_fail(DL_EUSAGE, "zip: color.jpg and alpha.png need an RGB or RGBA picture");
    /* split the picture into its colours and its alpha */
    const size_t n = (size_t)c->img.w * c->img.h;
    dl_image rgb = {c->img.w, c->img.h, 3, dl_alloc(n * 3, "the colours")};
    dl_image alpha = {c->img.w, c->img.h, 1, dl_alloc(n, "the alpha")};
    uint8_t *files[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
    dl_status s = rgb.px && alpha.px ? DL_OK : DL_ENOMEM;
    for (size_t i = 0; s == DL_OK && i < n; i++) {
        memcpy(rgb.px + 3 * i, c->img.px + (size_t)c->img.c * i, 3);
        alpha.px[i] = c->img.c == 4 ? c->img.px[4 * i + 3] : 255;
    }
    if (s == DL_OK) s = dl_image_encode(&rgb, DL_FORMAT_JPEG, jpeg_quality, &files[0], &sizes[0]);
    if (s == DL_OK) s = dl_image_encode(&alpha, DL_FORMAT_PNG, 0, &files[1], &sizes[1]);
    static const char *const names[2] = {"color.jpg", "alpha.png"};
    if (s == DL_OK) s = zip_files(names, files, sizes, 2, data, size);
    free(rgb.px), free(alpha.px), free(files[0]), free(files[1]);
    return s;
}
