/*
 * image.h - internal interface between the image front end (image.c: open the file, sniff the
 * format, enforce the size limits) and the format decoders (image_png.c, image_jpeg.c).
 */
#ifndef DL_IMAGE_H
#define DL_IMAGE_H

#include <stdio.h>
#include "deeplab.h"

/* The first bytes of the file, already read by dl_image_read to pick the decoder. A decoder
 * continues reading f right after them (the stream is not rewound, so pipes work). */
#define DL_IMAGE_MAGIC_BYTES 8
#define DL_PNG_SIGNATURE "\x89PNG\r\n\x1a\n"

/* Decodes a PNG to RGB8. f is positioned just past the 8-byte signature, which the caller has
 * checked. Sets *out only on success. */
dl_status dl_png_decode(const char *path, FILE *f, dl_image *out);

/* JPEG files start with SOI (FF D8) and the next marker's FF. */
#define DL_JPEG_SIGNATURE "\xff\xd8\xff"

/* Decodes a JPEG to RGB8 with the EXIF orientation applied (image_jpeg.c). ahead holds the
 * nahead bytes dl_image_read has already read from f (the decoder reads them first). */
dl_status dl_jpeg_decode(const char *path, FILE *f, const uint8_t *ahead, size_t nahead, dl_image *out);

/* DL_OK if a w x h image is within the limits set by dl_set_image_limits, else DL_EDATA with
 * "<path>: image is WxH, more than the limit of ...". Decoders call it on the header, before
 * allocating pixels. */
dl_status dl_image_check_size(const char *path, int64_t w, int64_t h);

/* The writers behind dl_png_write, dl_png_write_indexed and dl_jpeg_write: to the file path when
 * data is NULL, else to memory (*data malloc'ed, *size bytes, as dl_outfile_open_memory; path
 * then only names the output in messages). */
dl_status dl_png_write_to(const char *path, char **data, size_t *size, const dl_image *img);
dl_status dl_png_write_indexed_to(const char *path, char **data, size_t *size, const uint8_t *idx, int w, int h,
                                  const uint8_t (*palette)[3], int ncolors);
dl_status dl_jpeg_write_to(const char *path, char **data, size_t *size, const dl_image *img, int quality);

/* The current limits (see dl_set_image_limits, dl_set_png_chunk_limit, dl_set_jpeg_scan_limit). */
void dl_image_limits(int64_t *max_pixels, int *max_side);
int64_t dl_png_chunk_limit(void);
int dl_jpeg_scan_limit(void);

#endif
