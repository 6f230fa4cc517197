/*
 * zip.c - just enough of the zip format (PKWARE APPNOTE.TXT) to read torch.save archives.
 *
 * A zip file ends with the end-of-central-directory record (EOCD, 22 bytes + comment), which
 * gives the number of entries and the offset of the central directory. If any of those values
 * overflowed 16/32 bits the real ones are in a Zip64 EOCD record, found through a 20-byte locator
 * just before the EOCD (torch writes both even for small files). Each central directory entry
 * (46 bytes + name + extra + comment) gives the sizes, the method and the offset of the entry's
 * local header (30 bytes + name + extra); the data follows that header. The local header's extra
 * field can differ from the central one (torch pads it to align the data to 64 bytes), so the data
 * offset is computed from the local header's own lengths. Oversized values live in the Zip64
 * extra field (id 1) as u64s, only for fields whose 32-bit value is 0xFFFFFFFF.
 *
 * All integers are little-endian. Every offset and size is checked against the buffer before use.
 */
#include "zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "common.h"
#include "status.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32(const uint8_t *p) { return u16(p) | u16(p + 2) << 16; }
static uint64_t u64(const uint8_t *p) { return u32(p) | (uint64_t)u32(p + 4) << 32; }

/* Where the central directory is and how many entries it has. */
typedef struct cd_info {
    uint64_t offset, size, count;
} cd_info;

static dl_status find_eocd(const uint8_t *buf, size_t size, size_t *pos)
{
    if (size >= 22) {
        size_t lowest = size - 22 > 0xffff ? size - 22 - 0xffff : 0; /* a comment is < 64 KiB */
        for (size_t p = size - 22;; p--) {
            if (u32(buf + p) == SIG_EOCD && p + 22 + u16(buf + p + 20) == size) {
                *pos = p;
                return DL_OK;
            }
            if (p == lowest) break;
        }
    }
    return dl_fail(DL_EDATA, "zip end of central directory not found (truncated file?)");
}

static dl_status read_cd_info(const uint8_t *buf, size_t size, cd_info *cd)
{
    size_t e = 0;
    dl_status s = find_eocd(buf, size, &e);
    if (s) return s;
    uint64_t disk = u16(buf + e + 4), cd_disk = u16(buf + e + 6), n_disk = u16(buf + e + 8);
    cd->count = u16(buf + e + 10);
    cd->size = u32(buf + e + 12);
    cd->offset = u32(buf + e + 16);
    if (e >= 20 && u32(buf + e - 20) == SIG_LOCATOR64) {
        uint64_t r = u64(buf + e - 12);
        if (r > size || size - r < 56 || u32(buf + r) != SIG_EOCD64)
            return dl_fail(DL_EDATA, "zip64 end of central directory record missing or outside the file");
        disk = u32(buf + r + 16);
        cd_disk = u32(buf + r + 20);
        n_disk = u64(buf + r + 24);
        cd->count = u64(buf + r + 32);
        cd->size = u64(buf + r + 40);
        cd->offset = u64(buf + r + 48);
    } else if (cd->count == 0xffff || cd->size == 0xffffffff || cd->offset == 0xffffffff) {
        return dl_fail(DL_EDATA, "zip needs a zip64 record but has none");
    }
    if (disk != 0 || cd_disk != 0 || n_disk != cd->count)
        return dl_fail(DL_EDATA, "multi-disk zip archives are not supported");
    if (cd->offset > size || cd->size > size - cd->offset)
        return dl_fail(DL_EDATA, "zip central directory lies outside the file (truncated file?)");
    if (cd->count > cd->size / 46)
        return dl_fail(DL_EDATA, "zip central directory too small for its %llu entries",
                       (unsigned long long)cd->count);
    return DL_OK;
}

/* Refuses names that could point outside a folder if extracted: absolute, drive letters, "..". */
static int unsafe_name(const char *s, size_t len)
{
    if (len == 0 || s[0] == '/' || s[0] == '\\' || (len >= 2 && s[1] == ':') || memchr(s, 0, len)) return 1;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != '/' && s[j] != '\\') j++;
        if (j - i == 2 && s[i] == '.' && s[i + 1] == '.') return 1;
        i = j + 1;
    }
    return 0;
}

/* Replaces the 0xFFFFFFFF placeholders in *usize, *csize, *lho with the Zip64 extra field's values. */
static dl_status apply_zip64_extra(const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                                   uint64_t *lho)
{
    uint64_t *want[3] = {usize, csize, lho};
    for (size_t i = 0; i + 4 <= xlen;) {
        size_t id = u16(x + i), len = u16(x + i + 2), at = i + 4;
        if (len > xlen - at) return dl_fail(DL_EDATA, "zip extra field runs past its entry");
        if (id == 1) {
            for (int k = 0; k < 3; k++) {
                if (*want[k] != 0xffffffff) continue;
                if (at + 8 > i + 4 + len) return dl_fail(DL_EDATA, "zip64 extra field too short");
                *want[k] = u64(x + at);
                at += 8;
            }
        }
        i += 4 + len;
    }
    if (*usize == 0xffffffff || *csize == 0xffffffff || *lho == 0xffffffff)
        return dl_fail(DL_EDATA, "zip entry needs a zip64 extra field but has none");
    return DL_OK;
}

/* Reads the central directory entry at *p (advanced past it) and its local header. */
static dl_status read_entry(const uint8_t *buf, size_t size, const uint8_t **p, const uint8_t *cd_end,
                            dl_zip_entry *out)
{
    const uint8_t *c = *p;
    if (cd_end - c < 46 || u32(c) != SIG_CENTRAL) return dl_fail(DL_EDATA, "zip central directory is corrupt");
    size_t flags = u16(c + 8), method = u16(c + 10), nlen = u16(c + 28), xlen = u16(c + 30), clen = u16(c + 32);
    if ((size_t)(cd_end - c) - 46 < nlen + xlen + clen) return dl_fail(DL_EDATA, "zip central directory is corrupt");
    const char *name = (const char *)c + 46;
    char pb[200];
    const char *shown = dl_printable(name, nlen, pb, sizeof pb);
    *p = c + 46 + nlen + xlen + clen;
    if (unsafe_name(name, nlen))
        return dl_fail(DL_EDATA, "zip entry name \"%s\" is absolute or contains \"..\": refused", shown);
    if (flags & 1) return dl_fail(DL_EDATA, "zip entry %s is encrypted", shown);
    if (method != 0)
        return dl_fail(DL_EDATA, "zip entry %s is compressed; torch.save never compresses: re-save with torch.save",
                       shown);
    uint64_t csize = u32(c + 20), usize = u32(c + 24), lho = u32(c + 42);
    dl_status s = apply_zip64_extra(c + 46 + nlen, xlen, &usize, &csize, &lho);
    if (s) return s;
    if (csize != usize) return dl_fail(DL_EDATA, "zip entry %s: stored sizes disagree", shown);
    if (lho > size || size - lho < 30 || u32(buf + lho) != SIG_LOCAL)
        return dl_fail(DL_EDATA, "zip entry %s: local header missing or outside the file", shown);
    uint64_t data = lho + 30 + u16(buf + lho + 26) + u16(buf + lho + 28);
    if (u16(buf + lho + 26) != nlen || (size - lho - 30 >= nlen && memcmp(buf + lho + 30, name, nlen)))
        return dl_fail(DL_EDATA, "zip entry %s: local header names another file", shown);
    if (data > size || csize > size - data)
        return dl_fail(DL_EDATA, "zip entry %s: data runs past the end of the file (truncated file?)", shown);
    out->name = name;
    out->name_len = nlen;
    out->data = buf + data;
    out->size = (size_t)csize;
    return DL_OK;
}

static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int cmp_entries(const void *a, const void *b)
{
    const dl_zip_entry *x = a, *y = b;
    return cmp_name(x->name, x->name_len, y->name, y->name_len);
}

dl_status dl_zip_open(dl_zip *z, const uint8_t *buf, size_t size)
{
    memset(z, 0, sizeof *z);
    cd_info cd;
    dl_status s = read_cd_info(buf, size, &cd);
    if (s) return s;
    z->e = dl_calloc((size_t)cd.count, sizeof *z->e, "zip directory");
    if (!z->e) return DL_ENOMEM;
    const uint8_t *p = buf + cd.offset, *end = p + cd.size;
    for (z->n = 0; z->n < cd.count; z->n++) {
        if ((s = read_entry(buf, size, &p, end, &z->e[z->n]))) {
            dl_zip_close(z);
            return s;
        }
    }
    qsort(z->e, z->n, sizeof *z->e, cmp_entries);
    for (size_t i = 1; i < z->n; i++) {
        if (!cmp_entries(&z->e[i - 1], &z->e[i])) {
            char pb[200];
            const char *shown = dl_printable(z->e[i].name, z->e[i].name_len, pb, sizeof pb);
            s = dl_fail(DL_EDATA, "zip entry %s appears twice", shown);
            dl_zip_close(z);
            return s;
        }
    }
    return DL_OK;
}

const dl_zip_entry *dl_zip_find(const dl_zip *z, const char *name)
{
    size_t lo = 0, hi = z->n, len = strlen(name);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name(z->e[mid].name, z->e[mid].name_len, name, len);
        if (c == 0) return &z->e[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

void dl_zip_close(dl_zip *z)
{
    free(z->e);
    memset(z, 0, sizeof *z);
}
