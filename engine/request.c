/*
 * request.c - dl_cutout_request: one description of a cut-out, filled field by field from text.
 * `deeplab rmbg`'s options and the HTTP API's fields both come through dl_cutout_request_set
 * (see deeplab.h for the keys and what each takes), so that the two cannot drift apart.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "deeplab.h"
#include "status.h"

enum { FLAG = 1, VALUE = 2, FLAG_OR_VALUE = 3 };

static const struct {
    const char *key;
    int kind;
} keys[] = {
    {"classes", VALUE},     {"keep-at", VALUE},      {"largest", FLAG},          {"threshold", VALUE},
    {"refine", VALUE},      {"refine-radius", VALUE}, {"refine-eps", VALUE},     {"decontaminate", FLAG},
    {"keep-mask", VALUE},   {"erase-mask", VALUE},   {"stroke", VALUE},          {"roi", VALUE},
    {"format", VALUE},      {"bg-color", VALUE},     {"bg-image", VALUE},        {"scale", VALUE},
    {"position", VALUE},    {"crop", FLAG_OR_VALUE}, {"crop-margin", VALUE},     {"jpeg-quality", VALUE},
    {"megapixels", VALUE},
};

int dl_cutout_request_key(const char *key)
{
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strcmp(keys[k].key, key)) return keys[k].kind;
    return 0;
}

void dl_cutout_request_init(dl_cutout_request *r)
{
    memset(r, 0, sizeof *r);
    r->cut.refine = 1;
    r->jpeg_quality = 90;
}

void dl_cutout_request_free(dl_cutout_request *r)
{
    free(r->strokes);
    free(r->stroke_xy);
    dl_image_free(&r->keep_mask);
    dl_image_free(&r->erase_mask);
    dl_image_free(&r->bg_image);
    dl_cutout_request_init(r);
}

/* ------------------------------------------------------------------ values */

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

static int parse_point(const char *s, dl_point *p)
{
    char tail;
    return sscanf(s, "%d,%d%c", &p->x, &p->y, &tail) == 2 && p->x >= 0 && p->y >= 0 ? 0 : -1;
}

/* "true"/"1" -> 1, "false"/"0" -> 0, else -1. */
static int parse_bool(const char *s)
{
    if (!s || !strcasecmp(s, "true") || !strcmp(s, "1")) return 1;
    if (!strcasecmp(s, "false") || !strcmp(s, "0")) return 0;
    return -1;
}

/* The CSS named colours (CSS Color Module Level 4), as remove.bg's bg_color takes them. */
static const struct {
    const char *name;
    uint32_t rgb;
} css_colors[] = {
    {"aliceblue", 0xf0f8ff}, {"antiquewhite", 0xfaebd7}, {"aqua", 0x00ffff}, {"aquamarine", 0x7fffd4},
    {"azure", 0xf0ffff}, {"beige", 0xf5f5dc}, {"bisque", 0xffe4c4}, {"black", 0x000000},
    {"blanchedalmond", 0xffebcd}, {"blue", 0x0000ff}, {"blueviolet", 0x8a2be2}, {"brown", 0xa52a2a},
    {"burlywood", 0xdeb887}, {"cadetblue", 0x5f9ea0}, {"chartreuse", 0x7fff00}, {"chocolate", 0xd2691e},
    {"coral", 0xff7f50}, {"cornflowerblue", 0x6495ed}, {"cornsilk", 0xfff8dc}, {"crimson", 0xdc143c},
    {"cyan", 0x00ffff}, {"darkblue", 0x00008b}, {"darkcyan", 0x008b8b}, {"darkgoldenrod", 0xb8860b},
    {"darkgray", 0xa9a9a9}, {"darkgreen", 0x006400}, {"darkgrey", 0xa9a9a9}, {"darkkhaki", 0xbdb76b},
    {"darkmagenta", 0x8b008b}, {"darkolivegreen", 0x556b2f}, {"darkorange", 0xff8c00}, {"darkorchid", 0x9932cc},
    {"darkred", 0x8b0000}, {"darksalmon", 0xe9967a}, {"darkseagreen", 0x8fbc8f}, {"darkslateblue", 0x483d8b},
    {"darkslategray", 0x2f4f4f}, {"darkslategrey", 0x2f4f4f}, {"darkturquoise", 0x00ced1},
    {"darkviolet", 0x9400d3}, {"deeppink", 0xff1493}, {"deepskyblue", 0x00bfff}, {"dimgray", 0x696969},
    {"dimgrey", 0x696969}, {"dodgerblue", 0x1e90ff}, {"firebrick", 0xb22222}, {"floralwhite", 0xfffaf0},
    {"forestgreen", 0x228b22}, {"fuchsia", 0xff00ff}, {"gainsboro", 0xdcdcdc}, {"ghostwhite", 0xf8f8ff},
    {"gold", 0xffd700}, {"goldenrod", 0xdaa520}, {"gray", 0x808080}, {"green", 0x008000},
    {"greenyellow", 0xadff2f}, {"grey", 0x808080}, {"honeydew", 0xf0fff0}, {"hotpink", 0xff69b4},
    {"indianred", 0xcd5c5c}, {"indigo", 0x4b0082}, {"ivory", 0xfffff0}, {"khaki", 0xf0e68c},
    {"lavender", 0xe6e6fa}, {"lavenderblush", 0xfff0f5}, {"lawngreen", 0x7cfc00}, {"lemonchiffon", 0xfffacd},
    {"lightblue", 0xadd8e6}, {"lightcoral", 0xf08080}, {"lightcyan", 0xe0ffff},
    {"lightgoldenrodyellow", 0xfafad2}, {"lightgray", 0xd3d3d3}, {"lightgreen", 0x90ee90},
    {"lightgrey", 0xd3d3d3}, {"lightpink", 0xffb6c1}, {"lightsalmon", 0xffa07a}, {"lightseagreen", 0x20b2aa},
    {"lightskyblue", 0x87cefa}, {"lightslategray", 0x778899}, {"lightslategrey", 0x778899},
    {"lightsteelblue", 0xb0c4de}, {"lightyellow", 0xffffe0}, {"lime", 0x00ff00}, {"limegreen", 0x32cd32},
    {"linen", 0xfaf0e6}, {"magenta", 0xff00ff}, {"maroon", 0x800000}, {"mediumaquamarine", 0x66cdaa},
    {"mediumblue", 0x0000cd}, {"mediumorchid", 0xba55d3}, {"mediumpurple", 0x9370db},
    {"mediumseagreen", 0x3cb371}, {"mediumslateblue", 0x7b68ee}, {"mediumspringgreen", 0x00fa9a},
    {"mediumturquoise", 0x48d1cc}, {"mediumvioletred", 0xc71585}, {"midnightblue", 0x191970},
    {"mintcream", 0xf5fffa}, {"mistyrose", 0xffe4e1}, {"moccasin", 0xffe4b5}, {"navajowhite", 0xffdead},
    {"navy", 0x000080}, {"oldlace", 0xfdf5e6}, {"olive", 0x808000}, {"olivedrab", 0x6b8e23},
    {"orange", 0xffa500}, {"orangered", 0xff4500}, {"orchid", 0xda70d6}, {"palegoldenrod", 0xeee8aa},
    {"palegreen", 0x98fb98}, {"paleturquoise", 0xafeeee}, {"palevioletred", 0xdb7093},
    {"papayawhip", 0xffefd5}, {"peachpuff", 0xffdab9}, {"peru", 0xcd853f}, {"pink", 0xffc0cb},
    {"plum", 0xdda0dd}, {"powderblue", 0xb0e0e6}, {"purple", 0x800080}, {"rebeccapurple", 0x663399},
    {"red", 0xff0000}, {"rosybrown", 0xbc8f8f}, {"royalblue", 0x4169e1}, {"saddlebrown", 0x8b4513},
    {"salmon", 0xfa8072}, {"sandybrown", 0xf4a460}, {"seagreen", 0x2e8b57}, {"seashell", 0xfff5ee},
    {"sienna", 0xa0522d}, {"silver", 0xc0c0c0}, {"skyblue", 0x87ceeb}, {"slateblue", 0x6a5acd},
    {"slategray", 0x708090}, {"slategrey", 0x708090}, {"snow", 0xfffafa}, {"springgreen", 0x00ff7f},
    {"steelblue", 0x4682b4}, {"tan", 0xd2b48c}, {"teal", 0x008080}, {"thistle", 0xd8bfd8},
    {"tomato", 0xff6347}, {"turquoise", 0x40e0d0}, {"violet", 0xee82ee}, {"wheat", 0xf5deb3},
    {"white", 0xffffff}, {"whitesmoke", 0xf5f5f5}, {"yellow", 0xffff00}, {"yellowgreen", 0x9acd32},
};

/* RRGGBB, RRGGBBAA, RGB or RGBA in hexadecimal (an optional '#'), or a CSS colour name. */
static int parse_color(const char *s, uint8_t rgba[4])
{
    for (size_t k = 0; k < sizeof css_colors / sizeof css_colors[0]; k++)
        if (!strcasecmp(s, css_colors[k].name)) {
            const uint32_t v = css_colors[k].rgb;
            rgba[0] = (uint8_t)(v >> 16), rgba[1] = (uint8_t)(v >> 8), rgba[2] = (uint8_t)v, rgba[3] = 255;
            return 0;
        }
    if (*s == '#') s++;
    const size_t n = strlen(s);
    if ((n != 3 && n != 4 && n != 6 && n != 8) || strspn(s, "0123456789abcdefABCDEF") != n) return -1;
    unsigned v[4] = {0, 0, 0, 255};
    const size_t digits = n <= 4 ? 1 : 2;
    for (size_t k = 0; k < n / digits; k++) {
        char hex[3] = {s[k * digits], s[k * digits + digits - 1], 0}; /* "f" -> "ff" */
        v[k] = (unsigned)strtoul(hex, NULL, 16);
    }
    for (int k = 0; k < 4; k++) rgba[k] = (uint8_t)v[k];
    return 0;
}

/* "12", "12px", "12.5%" (percent set), at least 0 and at most max_px / max_percent. */
static int parse_length(const char *s, double max_px, double max_percent, dl_length *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return -1;
    int percent = 0;
    if (!strcmp(end, "%")) percent = 1;
    else if (*end && strcmp(end, "px")) return -1;
    if (v > (percent ? max_percent : max_px)) return -1;
    *out = (dl_length){(float)v, percent};
    return 0;
}

/* Splits s at spaces and commas into at most max words (copied into buf); their count, or -1. */
static int split_words(const char *s, char *buf, size_t bufsize, char **words, int max)
{
    if (strlen(s) >= bufsize) return -1;
    strcpy(buf, s);
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
        if (n == max) return -1;
        words[n++] = w;
    }
    return n;
}

/* "person,dog,15": VOC names or class numbers. */
static dl_status set_classes(dl_cutout_request *r, const char *list, const char *name)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy) return dl_fail(DL_ENOMEM, "%s: out of memory", name);
    int n = 0;
    dl_status s = DL_OK;
    memset(r->classes, 0, sizeof r->classes);
    for (char *tok = strtok_r(copy, ",", &save); tok && s == DL_OK; tok = strtok_r(NULL, ",", &save), n++) {
        int c = dl_voc_class_index(tok);
        if (c < 0 && parse_int(tok, 0, 255, &c))
            s = dl_fail(DL_EUSAGE, "%s: unknown class '%s'; deeplab rmbg --list-classes lists them", name, tok);
        else r->classes[c] = 1;
    }
    free(copy);
    if (s == DL_OK && n == 0) s = dl_fail(DL_EUSAGE, "%s needs a list of classes, like person,dog", name);
    r->have_classes = 1;
    return s;
}

/* "keep,R,X,Y[,X,Y...]" or "erase,...". */
static dl_status add_stroke(dl_cutout_request *r, const char *v, const char *name)
{
#define BAD_STROKE dl_fail(DL_EUSAGE, "%s takes keep or erase, a radius (0.5 to 4096 pixels) and points: " \
                                      "keep,8,10,20,30,40, not '%s'", name, v)
    const char *p = v;
    uint8_t hint;
    if (!strncmp(p, "keep,", 5)) hint = DL_HINT_KEEP, p += 5;
    else if (!strncmp(p, "erase,", 6)) hint = DL_HINT_ERASE, p += 6;
    else return BAD_STROKE;
    char *end;
    errno = 0;
    const double radius = strtod(p, &end);
    if (errno || end == p || *end != ',' || !(radius >= 0.5 && radius <= 4096)) return BAD_STROKE;
    /* the points: pairs of numbers, each within a million pixels of the photo */
    int count = 0;
    for (const char *q = end; *q; q++) count += *q == ',';
    if (count < 2 || count % 2) return BAD_STROKE;
    const int npoints = count / 2;
    if (r->cut.nstrokes == DL_REQUEST_MAX_STROKES || npoints > DL_REQUEST_MAX_STROKE_POINTS - r->stroke_points)
        return dl_fail(DL_EUSAGE, "%s: more than %d strokes or %d points in all", name, DL_REQUEST_MAX_STROKES,
                       DL_REQUEST_MAX_STROKE_POINTS);
    if (r->cut.nstrokes == r->strokes_cap) {
        const int cap = r->strokes_cap ? 2 * r->strokes_cap : 16;
        dl_stroke *grown = realloc(r->strokes, sizeof *grown * (size_t)cap);
        if (!grown) return dl_fail(DL_ENOMEM, "%s: out of memory", name);
        r->strokes = grown, r->strokes_cap = cap;
    }
    const int need = 2 * (r->stroke_points + npoints);
    if (need > r->stroke_xy_cap) {
        const int cap = need > 2 * r->stroke_xy_cap ? need : 2 * r->stroke_xy_cap;
        float *grown = realloc(r->stroke_xy, sizeof *grown * (size_t)cap);
        if (!grown) return dl_fail(DL_ENOMEM, "%s: out of memory", name);
        r->stroke_xy = grown, r->stroke_xy_cap = cap;
        for (int k = 0, first = 0; k < r->cut.nstrokes; first += r->strokes[k++].npoints) /* they moved */
            r->strokes[k].xy = grown + 2 * first;
    }
    float *xy = r->stroke_xy + 2 * r->stroke_points;
    p = end;
    for (int i = 0; i < 2 * npoints; i++) {
        errno = 0;
        const double c = strtod(p + 1, &end); /* p is at the ',' before the number */
        if (errno || end == p + 1 || (*end && *end != ',') || !(c >= -1e6 && c <= 1e6)) return BAD_STROKE;
        xy[i] = (float)c;
        p = end;
    }
#undef BAD_STROKE
    r->strokes[r->cut.nstrokes++] = (dl_stroke){hint, (float)radius, npoints, xy};
    r->stroke_points += npoints;
    return DL_OK;
}

/* "x0 y0 x1 y1": lengths (px or % of the photo's width / height). */
static dl_status set_roi(dl_cutout_request *r, const char *v, const char *name)
{
    char buf[256], *w[4];
    dl_length box[4];
    int ok = split_words(v, buf, sizeof buf, w, 4) == 4;
    for (int k = 0; ok && k < 4; k++) ok = !parse_length(w[k], 1e6, 100, &box[k]);
    if (ok && box[0].percent == box[2].percent && !(box[0].value < box[2].value)) ok = 0;
    if (ok && box[1].percent == box[3].percent && !(box[1].value < box[3].value)) ok = 0;
    if (!ok)
        return dl_fail(DL_EUSAGE, "%s takes a box x0 y0 x1 y1 (pixels, or percent of the photo: "
                                  "'10%% 0%% 90%% 100%%'), x0 < x1 and y0 < y1, not '%s'", name, v);
    memcpy(r->cut.roi_box, box, sizeof box);
    r->cut.roi = 1;
    return DL_OK;
}

/* CSS's margin shorthand: 1 value (all sides), 2 (top/bottom, left/right) or 4 (top, right,
 * bottom, left); remove.bg's limits: 500 pixels or 50% of the subject's size. */
static dl_status set_crop_margin(dl_cutout_request *r, const char *v, const char *name)
{
    char buf[256], *w[4];
    dl_length m[4];
    const int n = split_words(v, buf, sizeof buf, w, 4);
    int ok = n == 1 || n == 2 || n == 4;
    for (int k = 0; ok && k < n; k++) ok = !parse_length(w[k], 500, 50, &m[k]);
    if (!ok)
        return dl_fail(DL_EUSAGE, "%s takes 1, 2 or 4 margins (top right bottom left) of up to 500px or 50%% of "
                                  "the subject, like '20px' or '10%% 5%%', not '%s'", name, v);
    if (n == 1) m[1] = m[2] = m[3] = m[0];
    if (n == 2) m[2] = m[0], m[3] = m[1];
    memcpy(r->cut.crop_margin, m, sizeof m);
    return DL_OK;
}

/* "original", or 10% to 100%. */
static dl_status set_scale(dl_cutout_request *r, const char *v, const char *name)
{
    dl_length l;
    if (!strcmp(v, "original")) {
        r->cut.scale = 0;
        return DL_OK;
    }
    if (parse_length(v, 0, 100, &l) || !l.percent || l.value < 10)
        return dl_fail(DL_EUSAGE, "%s takes original or 10%% to 100%% (of the picture), not '%s'", name, v);
    r->cut.scale = l.value / 100;
    return DL_OK;
}

/* "original", "center", "X%" (both) or "X% Y%". */
static dl_status set_position(dl_cutout_request *r, const char *v, const char *name)
{
    if (!strcmp(v, "original")) {
        r->cut.position = 0;
        return DL_OK;
    }
    if (!strcmp(v, "center")) {
        r->cut.position = 1, r->cut.position_x = r->cut.position_y = 0.5f;
        return DL_OK;
    }
    char buf[64], *w[2];
    dl_length p[2];
    const int n = split_words(v, buf, sizeof buf, w, 2);
    int ok = n == 1 || n == 2;
    for (int k = 0; ok && k < n; k++) ok = !parse_length(w[k], 0, 100, &p[k]) && p[k].percent;
    if (!ok)
        return dl_fail(DL_EUSAGE, "%s takes original, center, or 0%% to 100%% once (both axes) or twice "
                                  "(horizontal vertical), not '%s'", name, v);
    r->cut.position = 1;
    r->cut.position_x = p[0].value / 100;
    r->cut.position_y = p[n - 1].value / 100;
    return DL_OK;
}

dl_status dl_cutout_request_set(dl_cutout_request *r, const char *key, const char *value, const char *name)
{
    dl_cutout_options *c = &r->cut;
    const int kind = dl_cutout_request_key(key);
    const char *v = value ? value : "";
    if (!kind) return dl_fail(DL_EUSAGE, "%s: not a cut-out option", name);
    if (kind == FLAG) {
        const int on = parse_bool(value);
        if (on < 0) return dl_fail(DL_EUSAGE, "%s takes true or false, not '%s'", name, v);
        if (!strcmp(key, "largest")) c->largest = on;
        else c->decontaminate = on;
        return DL_OK;
    }
    if (!strcmp(key, "crop")) { /* a flag, or the margin in pixels (--crop=MARGIN) */
        int margin, on = parse_bool(value);
        if (on >= 0 && (!value || isalpha((unsigned char)*value))) {
            c->crop = on;
            return DL_OK;
        }
        if (parse_int(v, 0, 1 << 20, &margin)) return dl_fail(DL_EUSAGE, "%s=MARGIN takes a number of pixels, not '%s'", name, v);
        c->crop = 1;
        for (int k = 0; k < 4; k++) c->crop_margin[k] = (dl_length){(float)margin, 0};
        return DL_OK;
    }
    if (!strcmp(key, "classes")) return set_classes(r, v, name);
    if (!strcmp(key, "keep-at")) {
        if (c->nkeep_at == DL_REQUEST_MAX_POINTS || parse_point(v, &r->points[c->nkeep_at]))
            return dl_fail(DL_EUSAGE, "%s takes X,Y (pixels from the top-left corner, up to 64 points), not '%s'", name, v);
        c->nkeep_at++;
        return DL_OK;
    }
    if (!strcmp(key, "threshold")) {
        if (parse_float(v, 1e-6, 1, &c->threshold))
            return dl_fail(DL_EUSAGE, "%s takes a number above 0, at most 1, not '%s'", name, v);
        return DL_OK;
    }
    if (!strcmp(key, "refine")) {
        if (!strcmp(v, "guided")) c->refine = 1;
        else if (!strcmp(v, "none")) c->refine = 0;
        else return dl_fail(DL_EUSAGE, "%s takes guided or none, not '%s'", name, v);
        return DL_OK;
    }
    if (!strcmp(key, "refine-radius")) {
        if (parse_int(v, 1, 4096, &c->refine_params.radius))
            return dl_fail(DL_EUSAGE, "%s takes a number of pixels from 1 to 4096, not '%s'", name, v);
        return DL_OK;
    }
    if (!strcmp(key, "refine-eps")) {
        if (parse_float(v, 1e-8, 10, &c->refine_params.eps))
            return dl_fail(DL_EUSAGE, "%s takes a number above 0 (default 0.001), not '%s'", name, v);
        return DL_OK;
    }
    if (!strcmp(key, "keep-mask")) return r->keep_mask_path = value, DL_OK;
    if (!strcmp(key, "erase-mask")) return r->erase_mask_path = value, DL_OK;
    if (!strcmp(key, "bg-image")) {
        r->bg_image_path = value;
        c->background = DL_BG_IMAGE;
        return DL_OK;
    }
    if (!strcmp(key, "stroke")) return add_stroke(r, v, name);
    if (!strcmp(key, "roi")) return set_roi(r, v, name);
    if (!strcmp(key, "format")) {
        static const char *const names[] = {"rgba", "mask", "overlay", "labels"};
        int k = 0;
        while (k < 4 && strcmp(v, names[k])) k++;
        if (k == 4) return dl_fail(DL_EUSAGE, "%s takes rgba, mask, overlay or labels, not '%s'", name, v);
        c->format = (dl_cutout_format)k;
        return DL_OK;
    }
    if (!strcmp(key, "bg-color")) {
        if (parse_color(v, c->bg_color))
            return dl_fail(DL_EUSAGE, "%s takes RRGGBB or RRGGBBAA in hexadecimal (ffffff: white), or RGB[A], or a "
                                      "CSS colour name, not '%s'", name, v);
        c->background = DL_BG_COLOR;
        return DL_OK;
    }
    if (!strcmp(key, "scale")) return set_scale(r, v, name);
    if (!strcmp(key, "position")) return set_position(r, v, name);
    if (!strcmp(key, "crop-margin")) return set_crop_margin(r, v, name);
    if (!strcmp(key, "jpeg-quality")) {
        if (parse_int(v, 1, 100, &r->jpeg_quality)) return dl_fail(DL_EUSAGE, "%s takes 1 to 100, not '%s'", name, v);
        return DL_OK;
    }
    /* megapixels */
    float mp;
    if (parse_float(v, 1e-4, 1e4, &mp))
        return dl_fail(DL_EUSAGE, "%s takes a number of megapixels above 0 (0.25: 625x400), not '%s'", name, v);
    r->megapixels = mp;
    return DL_OK;
}

/* ------------------------------------------------------------------ images, options */

static dl_image *image_of(dl_cutout_request *r, const char *key)
{
    if (!strcmp(key, "keep-mask")) return &r->keep_mask;
    if (!strcmp(key, "erase-mask")) return &r->erase_mask;
    if (!strcmp(key, "bg-image")) return &r->bg_image;
    return NULL;
}

dl_status dl_cutout_request_set_image(dl_cutout_request *r, const char *key, dl_image *img)
{
    dl_image *slot = image_of(r, key);
    if (!slot) return dl_fail(DL_EUSAGE, "%s: not a picture of a cut-out", key);
    dl_image_free(slot);
    *slot = *img;
    memset(img, 0, sizeof *img);
    if (slot == &r->bg_image) r->cut.background = DL_BG_IMAGE;
    return DL_OK;
}

dl_status dl_cutout_request_read_images(dl_cutout_request *r)
{
    const char *paths[3] = {r->keep_mask_path, r->erase_mask_path, r->bg_image_path};
    dl_image *imgs[3] = {&r->keep_mask, &r->erase_mask, &r->bg_image};
    for (int k = 0; k < 3; k++)
        if (paths[k]) {
            dl_image_free(imgs[k]);
            dl_status s = dl_image_read(paths[k], imgs[k]);
            if (s != DL_OK) return s;
        }
    return DL_OK;
}

dl_cutout_options dl_cutout_request_options(const dl_cutout_request *r)
{
    dl_cutout_options o = r->cut;
    o.classes = r->have_classes ? r->classes : NULL;
    o.keep_at = r->points;
    o.keep_mask = r->keep_mask.px ? &r->keep_mask : NULL;
    o.erase_mask = r->erase_mask.px ? &r->erase_mask : NULL;
    o.bg_image = r->bg_image.px ? &r->bg_image : NULL;
    o.strokes = r->strokes;
    return o;
}

dl_status dl_cutout_request_check_classes(const dl_cutout_request *r, int num_classes, const char *name)
{
    for (int k = num_classes; r->have_classes && k < 256; k++)
        if (r->classes[k])
            return dl_fail(DL_EUSAGE, "%s: class %d, but the model has classes 0 to %d", name, k, num_classes - 1);
    return DL_OK;
}
