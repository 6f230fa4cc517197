/*
 * fuzz_image.c - dl_image_read on any bytes: the format sniffing, the PNG decoder (libpng behind
 * our chunk and size limits) and, once it is there, the JPEG decoder (seeds in corpus/image).
 *
 * The limits are lowered (4 megapixels, 4096 per side) so that a small input cannot make every
 * run allocate the 300 MB of a 100-megapixel image: the checks are the same code either way.
 */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    dl_set_image_limits(4 * 1000 * 1000, 4096);
    dl_set_png_chunk_limit(1 << 20);
    dl_set_jpeg_scan_limit(100);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    dl_image img;
    memset(&img, 0xa5, sizeof img);
    dl_status s = dl_image_read(path, &img);
    if (s != DL_OK) {
        fuzz_check_error(s, path);
        if (img.px || img.w || img.h || img.c) abort(); /* *out is zeroed on failure */
        return 0;
    }
    if (img.c != 3 || img.w < 1 || img.h < 1 || (int64_t)img.w * img.h > 4 * 1000 * 1000) abort();
    fuzz_touch(img.px, (size_t)img.w * img.h * 3);
    dl_image_free(&img);
    return 0;
}
