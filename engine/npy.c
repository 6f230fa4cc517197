/*
 * npy.c - NumPy .npy writer (format version 1.0) for float32 tensors.
 *
 * Layout: the 6 bytes "\x93NUMPY", version 1 0, a little-endian uint16 header length, then the
 * header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (...), }
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes,
 * then the data in C order, little-endian. The padding is numpy 1.24's, byte for byte.
 */
#include <inttypes.h>
#include <string.h>

#include "alloc.h"
#include "outfile.h"
#include "status.h"

#define NPY_MAX_DIMS 32 /* numpy's own limit */
#define NPY_ALIGN 64
#define NPY_GROWTH_DIGITS 21 /* numpy's GROWTH_AXIS_MAX_DIGITS */

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

dl_status dl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !shape))
        return dl_fail(DL_EUSAGE, "%s: cannot write a .npy of %d dimensions", path, ndim);

    /* At most ~60 + 32 * 22 characters of dict, 21 + 64 of padding. */
    char header[1024];
    int len = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || dl_mul_size(count, (size_t)shape[i], &count))
            return dl_fail(DL_EUSAGE, "%s: bad .npy shape: dimension %d is %" PRId64, path, i, shape[i]);
        /* A 1-tuple needs its trailing comma: (3,) */
        len += snprintf(header + len, sizeof header - (size_t)len, "%s%" PRId64 "%s", i ? ", " : "",
                        shape[i], ndim == 1 ? "," : "");
    }
    len += snprintf(header + len, sizeof header - (size_t)len, "), }");
    size_t bytes;
    if (dl_mul_size(count, sizeof(float), &bytes))
        return dl_fail(DL_EUSAGE, "%s: .npy data too large", path);
    if (count > 0 && !data) return dl_fail(DL_EUSAGE, "%s: no data to write", path);
    /* numpy 1.24 leaves room to rewrite the first dimension in place (21 digits), then pads
     * with 1 to 64 spaces so that preamble + header + '\n' is a multiple of NPY_ALIGN; doing
     * the same makes our files byte-identical to np.save's. */
    if (ndim > 0) {
        int digits = snprintf(NULL, 0, "%" PRId64, shape[0]);
        for (int i = digits; i < NPY_GROWTH_DIGITS; i++) header[len++] = ' ';
    }
    int pad = NPY_ALIGN - (10 + len + 1) % NPY_ALIGN;
    for (int i = 0; i < pad; i++) header[len++] = ' ';
    header[len++] = '\n';

    uint8_t preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    dl_outfile o;
    dl_status s = dl_outfile_open(&o, path);
    if (s != DL_OK) return s;
    dl_outfile_write(&o, preamble, sizeof preamble);
    dl_outfile_write(&o, header, (size_t)len);
    if (host_is_little_endian()) {
        dl_outfile_write(&o, data, bytes);
    } else {
        for (size_t i = 0; i < count; i++) {
            uint8_t b[4], le[4];
            memcpy(b, &data[i], 4);
            for (int k = 0; k < 4; k++) le[k] = b[3 - k];
            dl_outfile_write(&o, le, 4);
        }
    }
    return dl_outfile_commit(&o);
}
