/*
 * compose.h - the pieces of a cut-out's picture (compose.c), used by cutout.c: composition over
 * a background, the class overlay and its legend, the bitmap font, crops.
 */
#ifndef DL_COMPOSE_H
#define DL_COMPOSE_H

#include <stddef.h>

#include "deeplab.h"

/* The font: glyphs of 5 x 8 pixels, 6 pixels apart, times a whole-number scale. */
enum { DL_GLYPH_W = 5, DL_GLYPH_H = 8, DL_GLYPH_ADVANCE = 6 };

/* Draws text with its top-left corner at (x, y) in color (RGB) into img (c >= 3), clipped. */
void dl_draw_text(dl_image *img, int x, int y, int scale, const char *text, const uint8_t color[3]);
int dl_text_width(const char *text, int scale);

/* out (RGB, allocated) = photo with every pixel of a class other than background blended half
 * and half with its VOC colour, and a legend at the top left: a swatch, the class name and its
 * share (share[c], fractions) for every class present, largest first, as many as fit. */
dl_status dl_overlay(const dl_image *photo, const uint8_t *labels, int num_classes, const double *share,
                     dl_image *out);

/* out (RGB W x H, allocated) = bg scaled (Pillow's bilinear) to cover W x H, its middle part. */
dl_status dl_cover_resize(const dl_image *bg, int W, int H, dl_image *out);

/* out (allocated) = rgb with alpha a8: RGBA for DL_BG_NONE; else composited "over" the colour
 * (RGBA, RGB output when its alpha is 255) or over bg_image (RGB, rgb's size): RGB. */
dl_status dl_composite(const dl_image *rgb, const uint8_t *a8, dl_background bg, const uint8_t color[4],
                       const dl_image *bg_image, dl_image *out);

/* Crops img in place to w x h at (x, y) (the memory is not shrunk). */
dl_status dl_crop(dl_image *img, int x, int y, int w, int h);

#endif
