/* image.c - dl_image_read: opens the file, picks the decoder by its first bytes, and the size
 * limits every decoder checks before allocating pixels. See deeplab.h and image.h. */
#include "image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "status.h"

#define DEFAULT_MAX_PIXELS ((int64_t)100 * 1000 * 1000)
#define DEFAULT_MAX_SIDE 65535

#define DEFAULT_PNG_MAX_CHUNK ((int64_t)8 << 20)
#define DEFAULT_JPEG_MAX_SCANS 500

static int64_t max_pixels = DEFAULT_MAX_PIXELS;
static int max_side = DEFAULT_MAX_SIDE;
static int64_t png_max_chunk = DEFAULT_PNG_MAX_CHUNK;
static int jpeg_max_scans = DEFAULT_JPEG_MAX_SCANS;

void dl_set_png_chunk_limit(int64_t bytes) { png_max_chunk = bytes > 0 ? bytes : DEFAULT_PNG_MAX_CHUNK; }
void dl_set_jpeg_scan_limit(int scans) { jpeg_max_scans = scans > 0 ? scans : DEFAULT_JPEG_MAX_SCANS; }
int64_t dl_png_chunk_limit(void) { return png_max_chunk; }
int dl_jpeg_scan_limit(void) { return jpeg_max_scans; }

void dl_set_image_limits(int64_t pixels, int side)
{
    max_pixels = pixels > 0 ? pixels : DEFAULT_MAX_PIXELS;
    max_side = side > 0 ? side : DEFAULT_MAX_SIDE;
}

void dl_image_limits(int64_t *pixels, int *side)
{
    *pixels = max_pixels;
    *side = max_side;
}

/* Set when the last image this thread read was refused for its size (dl_image_too_large). */
static _Thread_local int too_large;

int dl_image_too_large(void) { return too_large; }

dl_status dl_image_check_size(const char *path, int64_t w, int64_t h)
{
    if (w <= 0 || h <= 0)
        return dl_fail(DL_EDATA, "%s: image is %lldx%lld, it has no pixels", path, (long long)w,
                       (long long)h);
    /* w * h > max_pixels without the product, which overflows for two 32-bit header fields. */
    too_large = 1;
    if (w > max_pixels / h)
        return dl_fail(DL_EDATA, "%s: image is %lldx%lld, more than the limit of %g megapixels",
                       path, (long long)w, (long long)h, (double)max_pixels / 1e6);
    if (w > max_side || h > max_side)
        return dl_fail(DL_EDATA, "%s: image is %lldx%lld, more than the limit of %d pixels per side",
                       path, (long long)w, (long long)h, max_side);
    too_large = 0;
    return DL_OK;
}

/* Picks the decoder by the first bytes of f and runs it; path names f in messages. */
static dl_status read_stream(const char *path, FILE *f, dl_image *out)
{
    uint8_t magic[DL_IMAGE_MAGIC_BYTES];
    size_t n = fread(magic, 1, sizeof magic, f);
    if (ferror(f)) return dl_fail(DL_EIO, "%s: read error: %s", path, strerror(errno));
    if (n == 0) return dl_fail(DL_EDATA, "%s: empty file", path);
    if (n == 8 && memcmp(magic, DL_PNG_SIGNATURE, 8) == 0) return dl_png_decode(path, f, out);
    if (memcmp(magic, DL_PNG_SIGNATURE, n) == 0)
        return dl_fail(DL_EDATA, "%s: bad PNG: file ends inside the signature", path);
    if (n >= 3 && memcmp(magic, DL_JPEG_SIGNATURE, 3) == 0) return dl_jpeg_decode(path, f, magic, n, out);
    return dl_fail(DL_EDATA, "%s: not a PNG or JPEG file", path);
}

dl_status dl_image_read(const char *path, dl_image *out)
{
    memset(out, 0, sizeof *out);
    too_large = 0;
    /* "-" is standard input (named "stdin" in messages); it is read, never closed. */
    const int is_stdin = !strcmp(path, "-");
    if (is_stdin) path = "stdin";
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return dl_fail(DL_ENOINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!is_stdin) fclose(f);
        return dl_fail(DL_ENOINPUT, "%s: is a directory, expected a file", path);
    }
    dl_status s = read_stream(path, f, out);
    if (!is_stdin) fclose(f);
    return s;
}

dl_status dl_image_decode(const char *name, const void *data, size_t size, dl_image *out)
{
    memset(out, 0, sizeof *out);
    too_large = 0;
    if (size == 0) return dl_fail(DL_EDATA, "%s: empty file", name);
    FILE *f = fmemopen((void *)data, size, "rb"); /* read only: the bytes are not changed */
    if (!f) return dl_fail(DL_ENOMEM, "%s: out of memory", name);
    dl_status s = read_stream(name, f, out);
    fclose(f);
    return s;
}

dl_file_format dl_format_of_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && strchr(dot, '/') == NULL && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")))
        return DL_FORMAT_JPEG;
    return DL_FORMAT_PNG;
}

dl_status dl_image_write(const char *path, const dl_image *img, dl_file_format format, int jpeg_quality)
{
    if (format == DL_FORMAT_AUTO) format = dl_format_of_path(path);
    if (format == DL_FORMAT_ZIP) return dl_fail(DL_EUSAGE, "%s: a zip holds a cut-out (dl_cutout_encode)", path);
    return format == DL_FORMAT_JPEG ? dl_jpeg_write(path, img, jpeg_quality) : dl_png_write(path, img);
}

dl_status dl_image_encode(const dl_image *img, dl_file_format format, int jpeg_quality, uint8_t **data, size_t *size)
{
    char *bytes = NULL;
    *data = NULL;
    *size = 0;
    if (format == DL_FORMAT_ZIP) return dl_fail(DL_EUSAGE, "image: a zip holds a cut-out (dl_cutout_encode)");
    dl_status s = format == DL_FORMAT_JPEG ? dl_jpeg_write_to("image", &bytes, size, img, jpeg_quality)
                                           : dl_png_write_to("image", &bytes, size, img);
    *data = (uint8_t *)bytes;
    return s;
}

void dl_image_free(dl_image *img)
{
    if (!img) return;
    free(img->px);
    memset(img, 0, sizeof *img);
}
