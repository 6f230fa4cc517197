/*
 * cutout.c - dl_cutout_make: from the network's logits and the photo to the picture that is
 * written, in the order deeplab.h lists: what to keep (classes, hints, objects), the edges
 * (refinement), then the picture (format, background, crop). Each step is a library call of its
 * own (mask.c, refine.c, compose.c); this file only strings them together.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "compose.h"
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
    return DL_OK;
}

/* The picture for o->format from the photo, the final alpha (a8) and the class map. */
static dl_status make_picture(const dl_image *photo, const float *alpha, const uint8_t *a8, const uint8_t *labels,
                              const dl_cutout_options *o, dl_cutout *out)
{
    const int W = photo->w, H = photo->h;
    const size_t n = (size_t)W * H;
    dl_status s = DL_OK;
    switch (o->format) {
    case DL_CUTOUT_MASK:
        out->img = (dl_image){W, H, 1, dl_alloc(n, "the mask")};
        if (!out->img.px) return DL_ENOMEM;
        memcpy(out->img.px, a8, n);
        return DL_OK;
    case DL_CUTOUT_LABELS:
        out->img = (dl_image){W, H, 1, dl_alloc(n, "the class map")};
        if (!out->img.px) return DL_ENOMEM;
        for (size_t i = 0; i < n; i++) out->img.px[i] = a8[i] >= 128 ? labels[i] : 0;
        out->indexed = 1;
        return DL_OK;
    case DL_CUTOUT_OVERLAY:
        return dl_overlay(photo, labels, out->num_classes, out->share, &out->img);
    case DL_CUTOUT_RGBA:
        break;
    }
    dl_image colours = *photo, bg = {0};
    if (o->decontaminate) {
        colours.px = dl_alloc(n * 3, "decontaminated colours");
        if (!colours.px) return DL_ENOMEM;
        memcpy(colours.px, photo->px, n * 3);
        s = dl_decontaminate(&colours, alpha);
    }
    if (s == DL_OK && o->background == DL_BG_IMAGE) s = dl_cover_resize(o->bg_image, W, H, &bg);
    if (s == DL_OK) s = dl_composite(&colours, a8, o->background, o->bg_color, &bg, &out->img);
    if (colours.px != photo->px) free(colours.px);
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
    const int need_labels = o->stats || o->format == DL_CUTOUT_OVERLAY || o->format == DL_CUTOUT_LABELS;
    float *prob = dl_alloc(sizeof(float) * (size_t)net_h * net_w, "the class probability");
    float *alpha = dl_alloc(sizeof(float) * n, "the alpha");
    uint8_t *a8 = dl_alloc(n, "the alpha");
    uint8_t *hints = o->keep_mask || o->erase_mask ? dl_alloc(n, "the hints") : NULL;
    uint8_t *labels = need_labels ? dl_alloc(n, "the class map") : NULL;
    if (!prob || !alpha || !a8 || ((o->keep_mask || o->erase_mask) && !hints) || (need_labels && !labels)) {
        s = DL_ENOMEM;
        goto done;
    }

    /* what to keep: the chosen classes' mass, upsampled to the photo; the user's hints */
    dl_class_prob(logits, C, net_h, net_w, o->classes, prob);
    dl_resize_map(prob, net_h, net_w, alpha, H, W);
    if (hints && (s = dl_hints_from_masks(o->keep_mask, o->erase_mask, W, H, hints)) != DL_OK) goto done;

    /* the edges */
    dl_refine_params rp = o->refine_params;
    if (rp.radius <= 0) rp.radius = dl_refine_auto_radius(W, H, net_w, net_h);
    if (rp.eps <= 0) rp.eps = DL_REFINE_EPS;
    if (o->refine) {
        if ((s = dl_refine(r, photo, alpha, hints, &rp, alpha)) != DL_OK) goto done;
    } else {
        for (size_t i = 0; i < n; i++)
            alpha[i] = hints && hints[i] ? (hints[i] == DL_HINT_KEEP ? 1.0f : 0.0f) : clamp01(alpha[i]);
    }

    /* objects, then the hints again (what the user painted to keep stays), the threshold */
    if (o->nkeep_at || o->largest) {
        s = dl_keep_objects(alpha, W, H, o->keep_at, o->nkeep_at, o->largest, rp.radius, &out->missed_points);
        if (s != DL_OK) goto done;
        for (size_t i = 0; hints && i < n; i++)
            if (hints[i] == DL_HINT_KEEP) alpha[i] = 1.0f;
    }
    if (o->threshold > 0.0f)
        for (size_t i = 0; i < n; i++) alpha[i] = alpha[i] >= o->threshold ? 1.0f : 0.0f;

    /* the subject's box: every pixel that is not fully transparent */
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t i = (size_t)y * W + x;
            a8[i] = (uint8_t)lrintf(255.0f * clamp01(alpha[i]));
            if (a8[i]) {
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            }
        }
    if (x1 >= 0) out->box_x = x0, out->box_y = y0, out->box_w = x1 - x0 + 1, out->box_h = y1 - y0 + 1;

    /* the class of every pixel, and each class's share of the photo */
    out->num_classes = C;
    if (labels) {
        if ((s = dl_labels_from_logits(logits, C, net_h, net_w, labels, W, H)) != DL_OK) goto done;
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++) count[labels[i]]++;
        for (int c = 0; c < C; c++) out->share[c] = (double)count[c] / (double)n;
    }

    /* the picture, cropped */
    if ((s = make_picture(photo, alpha, a8, labels, o, out)) != DL_OK) goto done;
    if (o->crop && out->box_w > 0) {
        const int m = o->crop_margin > 0 ? o->crop_margin : 0;
        const int cx0 = x0 - m < 0 ? 0 : x0 - m, cy0 = y0 - m < 0 ? 0 : y0 - m;
        const int cx1 = x1 + m > W - 1 ? W - 1 : x1 + m, cy1 = y1 + m > H - 1 ? H - 1 : y1 + m;
        s = dl_crop(&out->img, cx0, cy0, cx1 - cx0 + 1, cy1 - cy0 + 1);
    }
done:
    free(prob);
    free(alpha);
    free(a8);
    free(hints);
    free(labels);
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
