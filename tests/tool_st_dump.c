/*
 * tool_st_dump.c - prints a safetensors file as dl_st_open sees it (used by tests/test_convert.py).
 *
 *     tool_st_dump FILE.safetensors
 *
 * One line per tensor, in data-offset order:  NAME DTYPE d0,d1,... CRC32
 * where the last field is the CRC-32 (zlib's) of the tensor's bytes in hex; the shape of a 0-d
 * tensor is "-".
 * Exit status: 0, or the dl_status with the error on stderr (65 for an invalid file).
 */
#include <inttypes.h>
#include <stdio.h>

#include "weights.h"

/* CRC-32 as in zip and zlib: reflected polynomial 0xEDB88320, initial and final inversion. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tool_st_dump FILE.safetensors\n");
        return DL_EUSAGE;
    }
    dl_st_file *f;
    dl_status s = dl_st_open(argv[1], &f);
    if (s) {
        fprintf(stderr, "tool_st_dump: %s\n", dl_last_error());
        return s;
    }
    for (int i = 0; i < dl_st_count(f); i++) {
        const dl_tensor_ref *t = dl_st_tensor(f, i);
        printf("%s %s ", t->name, dl_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%" PRId64, d ? "," : "", t->shape[d]);
        printf("%s %08" PRIx32 "\n", t->ndim ? "" : "-", crc32_of(t->data, t->nbytes));
    }
    dl_st_close(f);
    return 0;
}
