/*
 * image_jpeg.c - JPEG decoding to RGB8 with the EXIF orientation applied, and JPEG encoding,
 * through libjpeg-turbo's classic libjpeg API.
 *
 * Decoding gives what Pillow gives for Image.open(f).convert("RGB") followed by
 * ImageOps.exif_transpose, bit for bit (Pillow decodes with the same library and the same
 * default settings: islow DCT, fancy upsampling):
 *   - gray, YCbCr and RGB files come out as RGB (gray replicated);
 *   - CMYK and YCCK files are taken to hold inverted CMYK (Adobe's convention, which Photoshop
 *     writes and Pillow assumes) and converted with Pillow's formula, see cmyk_to_rgb;
 *   - the EXIF orientation tag (1 to 8) is applied, so that the pixels are the right way up.
 * A file that ends before its EOI marker is an error, as in Pillow (libjpeg alone would pad it
 * with gray and warn); bytes after EOI are not read.
 *
 * libjpeg reports errors through error_exit, which must not return: ours formats the message
 * and longjmps back to the setjmp in decode_jpeg / encode_jpeg. Everything they allocate is
 * reachable from the structs they were passed, so the caller frees it whichever way they return.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "alloc.h"
#include "image.h"
#include "outfile.h"
#include "status.h"

/* ------------------------------------------------------------------ errors */

struct jpeg_errors {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    dl_status status; /* DL_EDATA unless a callback knows better */
    char msg[JMSG_LENGTH_MAX + 64];
};

static void on_error_exit(j_common_ptr cinfo)
{
    struct jpeg_errors *e = (struct jpeg_errors *)cinfo->err;
    if (e->msg[0] == 0) (*cinfo->err->format_message)(cinfo, e->msg);
    if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) e->status = DL_ENOMEM;
    longjmp(e->jump, 1);
}

/* Warnings ("corrupt JPEG data: extraneous bytes before marker") are dropped, as Pillow does;
 * the library never prints. */
static void on_message(j_common_ptr cinfo, int level)
{
    (void)cinfo;
    (void)level;
}

/* Stops the decoder with our own message. */
static void fail_with(j_common_ptr cinfo, dl_status status, const char *msg)
{
    struct jpeg_errors *e = (struct jpeg_errors *)cinfo->err;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    e->status = status;
    longjmp(e->jump, 1);
}

static void errors_init(struct jpeg_errors *e)
{
    memset(e, 0, sizeof *e);
    jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error_exit;
    e->pub.emit_message = on_message;
    e->status = DL_EDATA;
}

/* ------------------------------------------------------------------ reading */

#define JPEG_READ_BUFFER 65536

/* The stream: the first bytes were already read by dl_image_read to sniff the format. */
struct jpeg_source {
    struct jpeg_source_mgr pub; /* first: libjpeg's cinfo->src points at it */
    FILE *f;
    const uint8_t *ahead;
    size_t nahead;
    uint8_t buf[JPEG_READ_BUFFER];
};

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean src_fill(j_decompress_ptr cinfo)
{
    struct jpeg_source *s = (struct jpeg_source *)cinfo->src;
    size_t n = 0;
    if (s->nahead) {
        memcpy(s->buf, s->ahead, s->nahead);
        n = s->nahead;
        s->nahead = 0;
    }
    n += fread(s->buf + n, 1, sizeof s->buf - n, s->f);
    if (n == 0) {
        if (ferror(s->f)) {
            char msg[128];
            snprintf(msg, sizeof msg, "read error: %s", strerror(errno));
            fail_with((j_common_ptr)cinfo, DL_EIO, msg);
        }
        fail_with((j_common_ptr)cinfo, DL_EDATA, "bad JPEG: file truncated (unexpected end of file)");
    }
    s->pub.next_input_byte = s->buf;
    s->pub.bytes_in_buffer = n;
    return TRUE;
}

static void src_skip(j_decompress_ptr cinfo, long n)
{
    struct jpeg_source *s = (struct jpeg_source *)cinfo->src;
    while (n > 0 && (size_t)n > s->pub.bytes_in_buffer) {
        n -= (long)s->pub.bytes_in_buffer;
        src_fill(cinfo); /* never returns FALSE: it fails instead */
    }
    if (n > 0) {
        s->pub.next_input_byte += n;
        s->pub.bytes_in_buffer -= (size_t)n;
    }
}

/* Refuses progressive files with more scans than dl_set_jpeg_scan_limit allows: each scan is a
 * pass over the whole image, and a small file can hold thousands. */
struct jpeg_progress {
    struct jpeg_progress_mgr pub;
    int max_scans;
};

static void on_progress(j_common_ptr cinfo)
{
    struct jpeg_progress *p = (struct jpeg_progress *)cinfo->progress;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->is_decompressor && d->input_scan_number > p->max_scans) {
        char msg[160];
        snprintf(msg, sizeof msg, "progressive JPEG with more than %d scans, the limit (--max-jpeg-scans)",
                 p->max_scans);
        fail_with(cinfo, DL_EDATA, msg);
    }
}

/* The EXIF orientation (1 to 8) in an APP1 "Exif" segment, or 1. The segment holds a TIFF
 * file: byte order ("II" little-endian, "MM" big-endian), 42, the offset of the first directory,
 * which lists 12-byte entries (tag, type, count, value); Orientation is tag 0x0112, a SHORT. */
static int exif_orientation(const uint8_t *p, size_t n)
{
    if (n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *t = p + 6;
    size_t tn = n - 6;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
#define U16(q) (le ? (unsigned)(q)[0] | (unsigned)(q)[1] << 8 : (unsigned)(q)[0] << 8 | (unsigned)(q)[1])
#define U32(q) (le ? (uint32_t)U16(q) | (uint32_t)U16((q) + 2) << 16 : (uint32_t)U16(q) << 16 | (uint32_t)U16((q) + 2))
    if (U16(t + 2) != 42) return 1;
    uint32_t ifd = U32(t + 4);
    if (ifd > tn || tn - ifd < 2) return 1;
    unsigned count = U16(t + ifd);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > tn) break;
        if (U16(t + e) == 0x0112 && U16(t + e + 2) == 3 /* SHORT */ && U32(t + e + 4) >= 1) {
            unsigned v = U16(t + e + 8);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
#undef U16
#undef U32
}

/* Where source pixel (x, y) of a w x h image goes in the displayed image (ow = w, or h when the
 * orientation swaps the axes). Orientations as the EXIF specification numbers them; Pillow's
 * exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. */
static void orient(int o, int x, int y, int w, int h, int *ox, int *oy)
{
    switch (o) {
    case 2: *ox = w - 1 - x, *oy = y; break;
    case 3: *ox = w - 1 - x, *oy = h - 1 - y; break;
    case 4: *ox = x, *oy = h - 1 - y; break;
    case 5: *ox = y, *oy = x; break;
    case 6: *ox = h - 1 - y, *oy = x; break;
    case 7: *ox = h - 1 - y, *oy = w - 1 - x; break;
    case 8: *ox = y, *oy = w - 1 - x; break;
    default: *ox = x, *oy = y; break;
    }
}

/* Pillow's CMYK to RGB (Convert.c, cmyk2rgb) after undoing Adobe's inversion: with
 * nk = 255 - k, r = nk - c * nk / 255, the product rounded as Pillow's MULDIV255. */
static uint8_t cmyk_channel(int c, int k)
{
    int nk = 255 - k, t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Reads the header, checks the size, decodes into img->px (already oriented). Returns DL_OK, a
 * status with the error message set (limits, allocation), or -1 after a libjpeg error (the
 * reason in the jpeg_errors). On any return img->px and *row may hold memory to free. */
static int decode_jpeg(struct jpeg_decompress_struct *cinfo, struct jpeg_errors *err, const char *path,
                       dl_image *img, uint8_t **row)
{
    if (setjmp(err->jump)) return -1;
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff); /* APP1: EXIF */
    jpeg_read_header(cinfo, TRUE);
    dl_status s = dl_image_check_size(path, cinfo->image_width, cinfo->image_height);
    if (s != DL_OK) return s;

    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && (orientation = exif_orientation(m->data, m->data_length)) != 1) break;

    int cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB: cinfo->out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        return dl_fail(DL_EDATA, "%s: JPEG with %d colour components in an unknown colour space; "
                       "convert it to RGB first", path, cinfo->num_components);
    }
    jpeg_start_decompress(cinfo);

    const int w = (int)cinfo->output_width, h = (int)cinfo->output_height, nc = cinfo->output_components;
    if (nc != (cmyk ? 4 : 3))
        return dl_fail(DL_EINTERNAL, "%s: JPEG decoder produced %d components", path, nc);
    const int swap = orientation >= 5;
    const int ow = swap ? h : w;
    size_t bytes;
    if (dl_mul_size((size_t)w * 3, (size_t)h, &bytes)) return dl_fail(DL_EDATA, "%s: image too large", path);
    img->px = dl_alloc(bytes, "image pixels");
    *row = dl_alloc((size_t)w * (size_t)nc, "a JPEG row");
    if (!img->px || !*row) {
        dl_error_prefix(path);
        return DL_ENOMEM;
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        const int y = (int)cinfo->output_scanline;
        JSAMPROW rows[1] = {*row};
        jpeg_read_scanlines(cinfo, rows, 1);
        const uint8_t *src = *row;
        for (int x = 0; x < w; x++, src += nc) {
            int ox, oy;
            orient(orientation, x, y, w, h, &ox, &oy);
            uint8_t *dst = img->px + ((size_t)oy * ow + ox) * 3;
            if (cmyk) {
                /* libjpeg returns the stored samples; Adobe files store 255 - value */
                const int k = 255 - src[3];
                dst[0] = cmyk_channel(255 - src[0], k);
                dst[1] = cmyk_channel(255 - src[1], k);
                dst[2] = cmyk_channel(255 - src[2], k);
            } else {
                dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];
            }
        }
    }
    /* No jpeg_finish_decompress: it would only read on past the image. */
    img->w = ow;
    img->h = swap ? w : h;
    img->c = 3;
    return DL_OK;
}

dl_status dl_jpeg_decode(const char *path, FILE *f, const uint8_t *ahead, size_t nahead, dl_image *out)
{
    struct jpeg_errors err;
    errors_init(&err);
    struct jpeg_source *src = dl_alloc(sizeof *src, "the JPEG reader");
    if (!src) {
        dl_error_prefix(path);
        return DL_ENOMEM;
    }
    memset(src, 0, sizeof *src);
    src->pub.init_source = src_init;
    src->pub.fill_input_buffer = src_fill;
    src->pub.skip_input_data = src_skip;
    src->pub.resync_to_restart = jpeg_resync_to_restart;
    src->pub.term_source = src_term;
    src->f = f;
    src->ahead = ahead;
    src->nahead = nahead;

    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress progress = {.pub = {.progress_monitor = on_progress}, .max_scans = dl_jpeg_scan_limit()};
    cinfo.err = &err.pub;
    dl_image img = {0};
    uint8_t *row = NULL;
    int r;
    if (setjmp(err.jump)) {
        r = -1; /* jpeg_create_decompress ran out of memory */
    } else {
        jpeg_create_decompress(&cinfo);
        cinfo.src = &src->pub;
        cinfo.progress = &progress.pub;
        r = decode_jpeg(&cinfo, &err, path, &img, &row);
    }
    jpeg_destroy_decompress(&cinfo);
    free(src);
    free(row);
    if (r != DL_OK) {
        free(img.px);
        if (r > 0) return (dl_status)r;
        if (err.status == DL_EIO) return dl_fail(DL_EIO, "%s: %s", path, err.msg);
        if (err.status == DL_ENOMEM) return dl_fail(DL_ENOMEM, "%s: out of memory decoding JPEG", path);
        if (!strncmp(err.msg, "bad JPEG", 8) || !strncmp(err.msg, "progressive", 11))
            return dl_fail(DL_EDATA, "%s: %s", path, err.msg);
        return dl_fail(DL_EDATA, "%s: bad JPEG: %s", path, err.msg);
    }
    *out = img;
    return DL_OK;
}

/* ------------------------------------------------------------------ writing */

struct jpeg_sink {
    struct jpeg_destination_mgr pub; /* first: libjpeg's cinfo->dest points at it */
    dl_outfile out;
    uint8_t buf[JPEG_READ_BUFFER];
};

static void dst_init(j_compress_ptr cinfo)
{
    struct jpeg_sink *s = (struct jpeg_sink *)cinfo->dest;
    s->pub.next_output_byte = s->buf;
    s->pub.free_in_buffer = sizeof s->buf;
}

static void dst_flush(j_compress_ptr cinfo, size_t n)
{
    struct jpeg_sink *s = (struct jpeg_sink *)cinfo->dest;
    dl_outfile_write(&s->out, s->buf, n);
    if (s->out.failed) fail_with((j_common_ptr)cinfo, DL_EIO, "write error"); /* stop: the disk is full or gone */
}

static boolean dst_empty(j_compress_ptr cinfo)
{
    struct jpeg_sink *s = (struct jpeg_sink *)cinfo->dest;
    dst_flush(cinfo, sizeof s->buf); /* libjpeg's contract: the whole buffer, whatever free_in_buffer says */
    dst_init(cinfo);
    return TRUE;
}

static void dst_term(j_compress_ptr cinfo)
{
    struct jpeg_sink *s = (struct jpeg_sink *)cinfo->dest;
    dst_flush(cinfo, sizeof s->buf - s->pub.free_in_buffer);
}

static int encode_jpeg(struct jpeg_compress_struct *cinfo, struct jpeg_errors *err, const dl_image *img, int quality)
{
    if (setjmp(err->jump)) return -1;
    cinfo->image_width = (JDIMENSION)img->w;
    cinfo->image_height = (JDIMENSION)img->h;
    cinfo->input_components = img->c;
    cinfo->in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(cinfo); /* JFIF, 4:2:0 chroma subsampling, islow DCT, as Pillow */
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    const size_t stride = (size_t)img->w * (size_t)img->c;
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW rows[1] = {img->px + cinfo->next_scanline * stride};
        jpeg_write_scanlines(cinfo, rows, 1);
    }
    jpeg_finish_compress(cinfo);
    return 0;
}

dl_status dl_jpeg_write(const char *path, const dl_image *img, int quality)
{
    return dl_jpeg_write_to(path, NULL, NULL, img, quality);
}

dl_status dl_jpeg_write_to(const char *path, char **data, size_t *size, const dl_image *img, int quality)
{
    if (img->c != 1 && img->c != 3)
        return dl_fail(DL_EUSAGE, "%s: JPEG has no alpha channel: write a PNG, or composite over a background "
                       "colour first", path);
    if (img->w <= 0 || img->h <= 0 || img->w > JPEG_MAX_DIMENSION || img->h > JPEG_MAX_DIMENSION || !img->px)
        return dl_fail(DL_EUSAGE, "%s: cannot write a %dx%d JPEG (at most %d per side)", path, img->w, img->h,
                       (int)JPEG_MAX_DIMENSION);
    if (quality < 1 || quality > 100)
        return dl_fail(DL_EUSAGE, "%s: JPEG quality must be 1 to 100, not %d", path, quality);
    struct jpeg_sink *sink = dl_alloc(sizeof *sink, "the JPEG writer");
    if (!sink) {
        dl_error_prefix(path);
        return DL_ENOMEM;
    }
    memset(sink, 0, sizeof *sink);
    dl_status s = data ? dl_outfile_open_memory(&sink->out, path, data, size) : dl_outfile_open(&sink->out, path);
    if (s != DL_OK) {
        free(sink);
        return s;
    }
    sink->pub.init_destination = dst_init;
    sink->pub.empty_output_buffer = dst_empty;
    sink->pub.term_destination = dst_term;

    struct jpeg_errors err;
    errors_init(&err);
    struct jpeg_compress_struct cinfo;
    cinfo.err = &err.pub;
    int r;
    if (setjmp(err.jump)) {
        r = -1;
    } else {
        jpeg_create_compress(&cinfo);
        cinfo.dest = &sink->pub;
        r = encode_jpeg(&cinfo, &err, img, quality);
    }
    jpeg_destroy_compress(&cinfo);
    if (r != 0) {
        int e = sink->out.failed;
        dl_outfile_abort(&sink->out);
        free(sink);
        if (e) return dl_fail(DL_EIO, "%s: write error: %s", path, strerror(e));
        if (err.status == DL_ENOMEM) return dl_fail(DL_ENOMEM, "%s: out of memory encoding JPEG", path);
        return dl_fail(DL_EINTERNAL, "%s: JPEG encoder failed: %s", path, err.msg);
    }
    s = dl_outfile_commit(&sink->out);
    free(sink);
    return s;
}
