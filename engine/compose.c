/*
 * compose.c - turning a photo and its alpha into what is written: an RGBA cut-out, one
 * composited over a colour or another picture, the class overlay with its legend, and crops.
 * The legend's text is drawn with the small bitmap font below (5 x 8 pixels per character,
 * scaled by whole numbers), so nothing outside this file is needed to label a picture.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "compose.h"
#include "status.h"

/* ------------------------------------------------------------------ the font */

/* Each glyph is 8 rows of 5 pixels, top to bottom, separated by '|'; '#' is ink. Lower-case
 * letters sit on row 6; g, j, p, q, y reach down into row 7. */
static const struct glyph {
    char c;
    const char *rows;
} font[] = {
    {' ', ".....|.....|.....|.....|.....|.....|.....|....."},
    {'a', ".....|.....|.###.|....#|.####|#...#|.####|....."},
    {'b', "#....|#....|####.|#...#|#...#|#...#|####.|....."},
    {'c', ".....|.....|.####|#....|#....|#....|.####|....."},
    {'d', "....#|....#|.####|#...#|#...#|#...#|.####|....."},
    {'e', ".....|.....|.###.|#...#|#####|#....|.####|....."},
    {'f', "..##.|.#...|####.|.#...|.#...|.#...|.#...|....."},
    {'g', ".....|.....|.####|#...#|#...#|.####|....#|.###."},
    {'h', "#....|#....|####.|#...#|#...#|#...#|#...#|....."},
    {'i', "..#..|.....|.##..|..#..|..#..|..#..|.###.|....."},
    {'j', "...#.|.....|..##.|...#.|...#.|...#.|#..#.|.##.."},
    {'k', "#....|#....|#..#.|#.#..|##...|#.#..|#..#.|....."},
    {'l', ".##..|..#..|..#..|..#..|..#..|..#..|.###.|....."},
    {'m', ".....|.....|##.#.|#.#.#|#.#.#|#.#.#|#.#.#|....."},
    {'n', ".....|.....|####.|#...#|#...#|#...#|#...#|....."},
    {'o', ".....|.....|.###.|#...#|#...#|#...#|.###.|....."},
    {'p', ".....|.....|####.|#...#|#...#|####.|#....|#...."},
    {'q', ".....|.....|.####|#...#|#...#|.####|....#|....#"},
    {'r', ".....|.....|#.##.|##..#|#....|#....|#....|....."},
    {'s', ".....|.....|.####|#....|.###.|....#|####.|....."},
    {'t', ".#...|.#...|####.|.#...|.#...|.#..#|..##.|....."},
    {'u', ".....|.....|#...#|#...#|#...#|#..##|.##.#|....."},
    {'v', ".....|.....|#...#|#...#|#...#|.#.#.|..#..|....."},
    {'w', ".....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.|....."},
    {'x', ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#|....."},
    {'y', ".....|.....|#...#|#...#|#...#|.####|....#|.###."},
    {'z', ".....|.....|#####|...#.|..#..|.#...|#####|....."},
    {'0', ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.|....."},
    {'1', "..#..|.##..|..#..|..#..|..#..|..#..|.###.|....."},
    {'2', ".###.|#...#|....#|...#.|..#..|.#...|#####|....."},
    {'3', "#####|...#.|..#..|...#.|....#|#...#|.###.|....."},
    {'4', "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.|....."},
    {'5', "#####|#....|####.|....#|....#|#...#|.###.|....."},
    {'6', "..##.|.#...|#....|####.|#...#|#...#|.###.|....."},
    {'7', "#####|....#|...#.|..#..|.#...|.#...|.#...|....."},
    {'8', ".###.|#...#|#...#|.###.|#...#|#...#|.###.|....."},
    {'9', ".###.|#...#|#...#|.####|....#|...#.|.##..|....."},
    {'.', ".....|.....|.....|.....|.....|.##..|.##..|....."},
    {',', ".....|.....|.....|.....|.....|.##..|..#..|.#..."},
    {':', ".....|.##..|.##..|.....|.##..|.##..|.....|....."},
    {'-', ".....|.....|.....|#####|.....|.....|.....|....."},
    {'/', ".....|....#|...#.|..#..|.#...|#....|.....|....."},
    {'%', "##...|##..#|...#.|..#..|.#...|#..##|...##|....."},
    {'<', "...#.|..#..|.#...|#....|.#...|..#..|...#.|....."},
    {'?', ".###.|#...#|....#|...#.|..#..|.....|..#..|....."},
};

/* The rows of a character's glyph ('?' for one the font lacks; upper case as lower case). */
static const char *glyph_rows(char c)
{
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return font[i].rows;
    return glyph_rows('?');
}

int dl_text_width(const char *text, int scale) { return (int)strlen(text) * DL_GLYPH_ADVANCE * scale; }

void dl_draw_text(dl_image *img, int x, int y, int scale, const char *text, const uint8_t color[3])
{
    for (; *text; text++, x += DL_GLYPH_ADVANCE * scale) {
        const char *rows = glyph_rows(*text);
        for (int gy = 0; gy < DL_GLYPH_H; gy++)
            for (int gx = 0; gx < DL_GLYPH_W; gx++) {
                if (rows[gy * (DL_GLYPH_W + 1) + gx] != '#') continue;
                for (int sy = 0; sy < scale; sy++)
                    for (int sx = 0; sx < scale; sx++) {
                        const int px = x + gx * scale + sx, py = y + gy * scale + sy;
                        if (px < 0 || py < 0 || px >= img->w || py >= img->h) continue;
                        memcpy(img->px + ((size_t)py * img->w + px) * img->c, color, 3);
                    }
            }
    }
}

/* Blends a rectangle of img towards color with weight a (0..1); clipped to the image. */
static void shade(dl_image *img, int x0, int y0, int w, int h, const uint8_t color[3], float a)
{
    for (int y = y0 < 0 ? 0 : y0; y < y0 + h && y < img->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x0 + w && x < img->w; x++) {
            uint8_t *p = img->px + ((size_t)y * img->w + x) * img->c;
            for (int k = 0; k < 3; k++) p[k] = (uint8_t)lrintf((1.0f - a) * p[k] + a * color[k]);
        }
}

/* ------------------------------------------------------------------ overlay */

void dl_class_label(int c, int num_classes, char *buf, size_t len)
{
    if (num_classes == 21 && dl_voc_class_name(c)) snprintf(buf, len, "%s", dl_voc_class_name(c));
    else snprintf(buf, len, "class %d", c);
}

int dl_classes_by_share(const double *share, int C, int *order)
{
    int count = 0;
    for (int c = 0; c < C && c < 256; c++)
        if (share[c] > 0) order[count++] = c;
    for (int i = 1; i < count; i++) /* insertion sort: largest share first, then class order */
        for (int j = i; j > 0 && share[order[j]] > share[order[j - 1]]; j--) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return count;
}

dl_status dl_overlay(const dl_image *photo, const uint8_t *labels, int num_classes, const double *share, dl_image *out)
{
    const int W = photo->w, H = photo->h;
    const size_t n = (size_t)W * H;
    *out = (dl_image){W, H, 3, dl_alloc(n * 3, "the overlay")};
    if (!out->px) return DL_ENOMEM;
    const uint8_t(*pal)[3] = dl_voc_palette();
    /* every pixel of a class (not background) half its class colour */
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            const uint8_t v = photo->px[3 * i + k];
            out->px[3 * i + k] = labels[i] ? (uint8_t)((v + pal[labels[i]][k] + 1) / 2) : v;
        }

    /* the legend: the classes present, most pixels first, on a darkened box at the top left */
    int order[256];
    const int count = dl_classes_by_share(share, num_classes, order);
    const int scale = (W < H ? W : H) / 250 > 1 ? (W < H ? W : H) / 250 : 1;
    const int line = (DL_GLYPH_H + 3) * scale, pad = 3 * scale, swatch = DL_GLYPH_H * scale;
    char text[256][48];
    int width = 0;
    for (int i = 0; i < count; i++) {
        char name[32];
        dl_class_label(order[i], num_classes, name, sizeof name);
        snprintf(text[i], sizeof text[i], "%s %.1f%%", name, 100.0 * share[order[i]]);
        const int tw = dl_text_width(text[i], scale);
        if (tw > width) width = tw;
    }
    int rows = count;
    while (rows > 0 && pad * 2 + rows * line > H) rows--; /* as many as fit */
    if (rows == 0) return DL_OK;
    const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
    shade(out, 0, 0, pad * 3 + swatch + width, pad * 2 + rows * line, black, 0.6f);
    for (int i = 0; i < rows; i++) {
        const int y = pad + i * line;
        shade(out, pad, y, swatch, swatch, pal[order[i]], 1.0f);
        dl_draw_text(out, pad * 2 + swatch, y, scale, text[i], white);
    }
    return DL_OK;
}

/* ------------------------------------------------------------------ composition */

dl_status dl_cover_resize(const dl_image *bg, int W, int H, dl_image *out)
{
    *out = (dl_image){0};
    if (bg->c != 3 || bg->w < 1 || bg->h < 1)
        return dl_fail(DL_EUSAGE, "background image: expected RGB, got %dx%dx%d", bg->w, bg->h, bg->c);
    /* the smallest scale at which bg covers W x H, then the middle W x H of it */
    const double s = fmax((double)W / bg->w, (double)H / bg->h);
    const int sw = (int)fmax(W, ceil(bg->w * s - 1e-9)), sh = (int)fmax(H, ceil(bg->h * s - 1e-9));
    dl_image scaled = {sw, sh, 3, NULL};
    size_t bytes;
    if (dl_mul_size((size_t)sw * 3, (size_t)sh, &bytes)) return dl_fail(DL_EUSAGE, "background image too large");
    scaled.px = dl_alloc(bytes, "the scaled background");
    out->px = dl_alloc((size_t)W * H * 3, "the background");
    dl_status s2 = scaled.px && out->px ? dl_resize_bilinear_u8(bg, &scaled) : DL_ENOMEM;
    if (s2 == DL_OK) {
        const int x0 = (sw - W) / 2, y0 = (sh - H) / 2;
        for (int y = 0; y < H; y++)
            memcpy(out->px + (size_t)y * W * 3, scaled.px + ((size_t)(y + y0) * sw + x0) * 3, (size_t)W * 3);
        out->w = W, out->h = H, out->c = 3;
    } else {
        free(out->px);
        out->px = NULL;
    }
    free(scaled.px);
    return s2;
}

dl_status dl_composite(const dl_image *rgb, const uint8_t *a8, dl_background bg, const uint8_t color[4],
                       const dl_image *bg_image, dl_image *out)
{
    const int W = rgb->w, H = rgb->h;
    const size_t n = (size_t)W * H;
    const int opaque = bg == DL_BG_IMAGE || (bg == DL_BG_COLOR && color[3] == 255);
    const int c = opaque ? 3 : 4;
    *out = (dl_image){W, H, c, dl_alloc(n * c, "the cut-out")};
    if (!out->px) return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *f = rgb->px + 3 * i;
        uint8_t *o = out->px + c * i;
        if (bg == DL_BG_NONE) {
            memcpy(o, f, 3);
            o[3] = a8[i];
            continue;
        }
        /* "over": the subject (alpha a) over the background (alpha ab), colours straight */
        const float a = a8[i] / 255.0f;
        const uint8_t *b = bg == DL_BG_IMAGE ? bg_image->px + 3 * i : color;
        const float ab = bg == DL_BG_IMAGE ? 1.0f : color[3] / 255.0f;
        const float ao = a + (1.0f - a) * ab;
        for (int k = 0; k < 3; k++) {
            const float v = ao > 0.0f ? (a * f[k] + (1.0f - a) * ab * b[k]) / ao : 0.0f;
            o[k] = (uint8_t)lrintf(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
        if (c == 4) o[3] = (uint8_t)lrintf(255.0f * ao);
    }
    return DL_OK;
}

dl_status dl_crop(dl_image *img, int x, int y, int w, int h)
{
    if (x < 0 || y < 0 || w < 1 || h < 1 || x + w > img->w || y + h > img->h)
        return dl_fail(DL_EINTERNAL, "crop %dx%d+%d+%d outside a %dx%d image", w, h, x, y, img->w, img->h);
    const size_t row = (size_t)w * img->c;
    /* rows move towards the start, so copying in order never overwrites a row still to read */
    for (int r = 0; r < h; r++)
        memmove(img->px + (size_t)r * row, img->px + ((size_t)(y + r) * img->w + x) * img->c, row);
    img->w = w;
    img->h = h;
    return DL_OK;
}
