/*
 * safetensors.c - reading (strictly validated) and writing safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors):
 *     u64 little-endian N | N bytes of JSON header | data section
 * The header is a JSON object mapping tensor names to
 *     {"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [BEGIN, END]}
 * with offsets relative to the start of the data section, plus an optional "__metadata__"
 * object of string values. The header may be padded at its end with spaces. Tensor data is
 * little-endian, row-major, contiguous. Together the tensors' byte ranges must cover the data
 * section exactly, and nothing else is in the file.
 *
 * Data pointers point into the read-only mapping and may be unaligned.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "common.h"
#include "json.h"
#include "outfile.h"
#include "status.h"
#include "weights.h"

#define ST_MAX_HEADER (100u * 1000 * 1000) /* the limit of the reference implementation */

static uint64_t max_header = ST_MAX_HEADER; /* for reading: dl_set_safetensors_limit */

void dl_set_safetensors_limit(uint64_t header_bytes) { max_header = header_bytes ? header_bytes : ST_MAX_HEADER; }

struct dl_st_file {
    char *path;
    dl_mapped map;
    dl_json_doc doc;    /* tensor names point into it */
    int n;
    dl_tensor_ref *t;   /* sorted by data offset */
    const dl_tensor_ref **by_name; /* the same tensors sorted by name */
};

/* A tensor being validated: its reference and data_offsets. */
typedef struct st_entry {
    dl_tensor_ref ref;
    uint64_t begin, end;
} st_entry;

static uint64_t read_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------------ validation */

static int json_is_uint(const dl_json *v) { return v->type == DL_JSON_NUMBER && v->is_int && v->i >= 0; }

/* A tensor name (or other header string) made safe for a one-line message. */
#define SHOWN(s, buf) dl_printable((s), strlen(s), (buf), sizeof(buf))

/* Checks one tensor entry {"dtype", "shape", "data_offsets"} and fills e. */
static dl_status parse_entry(const char *path, const char *tensor, const dl_json *v, st_entry *e)
{
    char name[160], b[48]; /* for messages */
    SHOWN(tensor, name);
    if (v->type != DL_JSON_OBJECT)
        return dl_fail(DL_EDATA, "%s: header entry is not an object (%s)", path, name);
    const dl_json *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (size_t i = 0; i < v->len; i++) {
        const char *k = v->keys[i];
        const dl_json **slot = !strcmp(k, "dtype") ? &dtype : !strcmp(k, "shape") ? &shape
                             : !strcmp(k, "data_offsets") ? &offsets : NULL;
        if (!slot) return dl_fail(DL_EDATA, "%s: unexpected field \"%s\" (%s)", path, SHOWN(k, b), name);
        if (*slot) return dl_fail(DL_EDATA, "%s: field \"%s\" given twice (%s)", path, k, name);
        *slot = &v->items[i];
    }
    if (!dtype || !shape || !offsets)
        return dl_fail(DL_EDATA, "%s: missing \"%s\" (%s)", path,
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets", name);
    memset(e, 0, sizeof *e);
    e->ref.name = tensor;
    if (dtype->type != DL_JSON_STRING)
        return dl_fail(DL_EDATA, "%s: dtype is not a string (%s)", path, name);
    if (dl_dtype_from_name(dtype->s, &e->ref.dtype))
        return dl_fail(DL_EDATA, "%s: unknown dtype \"%s\" (%s)", path, SHOWN(dtype->s, b), name);

    if (shape->type != DL_JSON_ARRAY)
        return dl_fail(DL_EDATA, "%s: shape is not an array (%s)", path, name);
    if (shape->len > DL_MAX_DIMS)
        return dl_fail(DL_EDATA, "%s: shape has %zu dimensions, at most %d are supported (%s)",
                       path, shape->len, DL_MAX_DIMS, name);
    e->ref.ndim = (int)shape->len;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < shape->len; i++) {
        const dl_json *d = &shape->items[i];
        if (d->type == DL_JSON_NUMBER && d->is_int && d->i < 0)
            return dl_fail(DL_EDATA, "%s: negative dimension %lld in shape (%s)", path, (long long)d->i, name);
        if (!json_is_uint(d))
            return dl_fail(DL_EDATA, "%s: shape must hold non-negative integers (%s)", path, name);
        e->ref.shape[i] = d->i;
        overflow |= __builtin_mul_overflow(numel, (uint64_t)d->i, &numel);
    }
    /* A zero dimension makes the product 0 whatever the others are; otherwise it must fit. */
    for (int i = 0; i < e->ref.ndim; i++) {
        if (e->ref.shape[i] == 0) {
            numel = 0;
            overflow = 0;
        }
    }
    if (overflow || numel > INT64_MAX)
        return dl_fail(DL_EDATA, "%s: shape product overflows 64 bits (%s)", path, name);
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)dl_dtype_size(e->ref.dtype), &nbytes) || nbytes > SIZE_MAX)
        return dl_fail(DL_EDATA, "%s: byte size overflows (%s)", path, name);
    e->ref.nbytes = (size_t)nbytes;

    if (offsets->type != DL_JSON_ARRAY || offsets->len != 2 || !json_is_uint(&offsets->items[0]) ||
        !json_is_uint(&offsets->items[1]))
        return dl_fail(DL_EDATA, "%s: data_offsets must be [BEGIN, END] with non-negative integers (%s)",
                       path, name);
    e->begin = (uint64_t)offsets->items[0].i;
    e->end = (uint64_t)offsets->items[1].i;
    if (e->begin > e->end)
        return dl_fail(DL_EDATA, "%s: data_offsets [%llu, %llu] out of order (%s)", path,
                       (unsigned long long)e->begin, (unsigned long long)e->end, name);
    if (e->end - e->begin != nbytes)
        return dl_fail(DL_EDATA, "%s: data_offsets span %llu bytes but shape x %s needs %llu (%s)", path,
                       (unsigned long long)(e->end - e->begin), dl_dtype_name(e->ref.dtype),
                       (unsigned long long)nbytes, name);
    return DL_OK;
}

static dl_status check_metadata(const char *path, const dl_json *v)
{
    if (v->type != DL_JSON_OBJECT)
        return dl_fail(DL_EDATA, "%s: __metadata__ is not an object", path);
    char b[160];
    for (size_t i = 0; i < v->len; i++)
        if (v->items[i].type != DL_JSON_STRING)
            return dl_fail(DL_EDATA, "%s: __metadata__ value is not a string (%s)", path, SHOWN(v->keys[i], b));
    return DL_OK;
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->ref.name, y->ref.name);
}

/* The sorted byte ranges must follow each other with no gap or overlap and end at data_size. */
static dl_status check_tiling(const char *path, const st_entry *e, int n, uint64_t data_size)
{
    uint64_t expected = 0;
    char b1[160], b2[160];
    for (int i = 0; i < n; i++) {
        if (e[i].begin > expected)
            return dl_fail(DL_EDATA, "%s: gap of %llu bytes in the data before this tensor (%s)", path,
                           (unsigned long long)(e[i].begin - expected), SHOWN(e[i].ref.name, b1));
        if (e[i].begin < expected)
            return dl_fail(DL_EDATA, "%s: data_offsets overlap those of %s (%s)", path,
                           SHOWN(e[i - 1].ref.name, b1), SHOWN(e[i].ref.name, b2));
        expected = e[i].end;
    }
    if (expected != data_size)
        return dl_fail(DL_EDATA, "%s: %llu trailing bytes after the last tensor's data", path,
                       (unsigned long long)(data_size - expected));
    return DL_OK;
}

/* Orders an array of tensor pointers by name. */
static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(const dl_tensor_ref *const *)a)->name, (*(const dl_tensor_ref *const *)b)->name);
}

/* Fills f->t (offset order) and f->by_name from the parsed header. */
static dl_status read_entries(dl_st_file *f, const dl_json *root, const uint8_t *data, uint64_t data_size)
{
    const char *path = f->path;
    if (root->type != DL_JSON_OBJECT) return dl_fail(DL_EDATA, "%s: header is not a JSON object", path);
    st_entry *e = dl_calloc(root->len, sizeof *e, "safetensors header");
    if (!e) return DL_ENOMEM;
    dl_status s = DL_OK;
    int n = 0, nmeta = 0;
    char b[160];
    for (size_t i = 0; i < root->len && !s; i++) {
        const char *name = root->keys[i];
        if (!strcmp(name, "__metadata__")) {
            s = nmeta++ ? dl_fail(DL_EDATA, "%s: duplicate __metadata__", path)
                        : check_metadata(path, &root->items[i]);
            continue;
        }
        if (strlen(name) != root->key_lens[i])
            s = dl_fail(DL_EDATA, "%s: tensor name contains a NUL character (%s)", path, SHOWN(name, b));
        else if (!(s = parse_entry(path, name, &root->items[i], &e[n])) && e[n].end > data_size)
            s = dl_fail(DL_EDATA, "%s: data_offsets end %llu is past the data section (%llu bytes) (%s)",
                        path, (unsigned long long)e[n].end, (unsigned long long)data_size, SHOWN(name, b));
        n++;
    }
    if (!s && n > INT32_MAX - 1) s = dl_fail(DL_EDATA, "%s: too many tensors", path);
    if (!s) {
        qsort(e, (size_t)n, sizeof *e, cmp_offsets);
        s = check_tiling(path, e, n, data_size);
    }
    if (!s && ((f->t = dl_calloc((size_t)n, sizeof *f->t, "tensors")) == NULL ||
               (f->by_name = dl_calloc((size_t)n, sizeof *f->by_name, "tensors")) == NULL))
        s = DL_ENOMEM;
    if (!s) {
        f->n = n;
        for (int i = 0; i < n; i++) {
            f->t[i] = e[i].ref;
            f->t[i].data = data + e[i].begin;
            f->by_name[i] = &f->t[i];
        }
        qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_names);
        for (int i = 1; i < n && !s; i++)
            if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name))
                s = dl_fail(DL_EDATA, "%s: duplicate tensor name (%s)", path, SHOWN(f->by_name[i]->name, b));
    }
    free(e);
    return s;
}

/* What a file that is not safetensors probably is, from its first bytes, to say what to do. */
static const char *sniff(const uint8_t *p, size_t size)
{
    if (size >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return "a PNG image, not weights";
    if (size >= 3 && !memcmp(p, "\xff\xd8\xff", 3)) return "a JPEG image, not weights";
    if (size >= 4 && !memcmp(p, "PK\x03\x04", 4))
        return "a zip file, probably a PyTorch checkpoint: convert it first with `deeplab convert`";
    if (size >= 4 && !memcmp(p, "\x80\x02\x8a\x0a", 4)) /* pickle protocol 2, then the 10-byte magic */
        return "a legacy PyTorch checkpoint: convert it first with `deeplab convert`";
    return NULL;
}

static dl_status st_validate(dl_st_file *f)
{
    const char *path = f->path;
    const uint8_t *p = f->map.data;
    size_t size = f->map.size;
    /* Only a file whose header length is impossible is explained by its first bytes: a valid
     * length can start with any bytes (640 is 80 02 00 ...). */
    const uint64_t len = size >= 8 ? read_u64le(p) : 0;
    const char *what = size < 8 || len > ST_MAX_HEADER || len > size - 8 ? sniff(p, size) : NULL;
    if (what) return dl_fail(DL_EDATA, "%s: not a safetensors file: %s", path, what);
    if (size < 8)
        return dl_fail(DL_EDATA, "%s: %zu bytes, too short for a safetensors file (8-byte header length)",
                       path, size);
    uint64_t hlen = read_u64le(p);
    if (hlen > max_header)
        return dl_fail(DL_EDATA, "%s: header length %llu is over the limit of %llu bytes: not a safetensors file?",
                       path, (unsigned long long)hlen, (unsigned long long)max_header);
    if (hlen > size - 8)
        return dl_fail(DL_EDATA, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                       (unsigned long long)hlen, size);
    const char *hdr = (const char *)p + 8;
    if (!dl_utf8_valid(hdr, (size_t)hlen)) return dl_fail(DL_EDATA, "%s: header is not valid UTF-8", path);
    dl_status s = dl_json_parse(hdr, (size_t)hlen, &f->doc);
    if (s) {
        dl_error_prefix("header");
        dl_error_prefix(path);
        return s;
    }
    return read_entries(f, &f->doc.root, p + 8 + hlen, size - 8 - hlen);
}

dl_status dl_st_open(const char *path, dl_st_file **out)
{
    *out = NULL;
    dl_st_file *f = dl_calloc(1, sizeof *f, "safetensors file");
    if (!f) return DL_ENOMEM;
    if (!(f->path = strdup(path))) {
        free(f);
        return dl_fail(DL_ENOMEM, "%s: out of memory", path);
    }
    dl_status s = dl_map_file(path, &f->map);
    if (!s) s = st_validate(f);
    if (s) {
        dl_st_close(f);
        return s;
    }
    *out = f;
    return DL_OK;
}

void dl_st_close(dl_st_file *f)
{
    if (!f) return;
    dl_unmap_file(&f->map);
    dl_json_free(&f->doc);
    free(f->t);
    free(f->by_name);
    free(f->path);
    free(f);
}

int dl_st_count(const dl_st_file *f) { return f->n; }

const dl_tensor_ref *dl_st_tensor(const dl_st_file *f, int i)
{
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const dl_tensor_ref *dl_st_find(const dl_st_file *f, const char *name)
{
    int lo = 0, hi = f->n; /* binary search in by_name */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *dl_st_path(const dl_st_file *f) { return f->path; }

/* ------------------------------------------------------------------ writing */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_i64(sbuf *b, int64_t v)
{
    char tmp[32];
    sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v));
}

/* A JSON string literal; s is valid UTF-8, so only '"', '\\' and control characters need escapes. */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(b, esc, 6);
        } else sb_add(b, s, 1);
    }
    sb_add(b, "\"", 1);
}

/* Checks that t describes itself consistently before it is written. */
static dl_status check_tensor(const char *path, const dl_tensor_ref *t)
{
    if (!t->name || !dl_utf8_valid(t->name, strlen(t->name)))
        return dl_fail(DL_EDATA, "%s: tensor name is not valid UTF-8", path);
    if (!strcmp(t->name, "__metadata__"))
        return dl_fail(DL_EDATA, "%s: \"__metadata__\" cannot be a tensor name", path);
    if ((unsigned)t->dtype >= DL_DTYPE_COUNT || t->ndim < 0 || t->ndim > DL_MAX_DIMS)
        return dl_fail(DL_EINTERNAL, "%s: bad dtype or rank (%s)", path, t->name);
    size_t numel = 1, nbytes;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || dl_mul_size(numel, (size_t)t->shape[d], &numel))
            return dl_fail(DL_EINTERNAL, "%s: bad shape (%s)", path, t->name);
    if (dl_mul_size(numel, dl_dtype_size(t->dtype), &nbytes) || nbytes != t->nbytes || (nbytes && !t->data))
        return dl_fail(DL_EINTERNAL, "%s: data size does not match the shape (%s)", path, t->name);
    return DL_OK;
}

/* The header for tensors in the given order, padded with spaces to a multiple of 8 bytes. */
static dl_status build_header(const char *path, const dl_tensor_ref *const *order, int n, sbuf *b)
{
    uint64_t offset = 0;
    sb_str(b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int k = 0; k < n; k++) {
        const dl_tensor_ref *x = order[k];
        sb_add(b, ",", 1);
        sb_json_string(b, x->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, dl_dtype_name(x->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < x->ndim; d++) {
            if (d) sb_add(b, ",", 1);
            sb_i64(b, x->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_i64(b, (int64_t)offset);
        sb_add(b, ",", 1);
        offset += x->nbytes;
        sb_i64(b, (int64_t)offset);
        sb_str(b, "]}");
    }
    sb_add(b, "}", 1);
    while (b->len % 8) sb_add(b, " ", 1);
    if (b->failed) return dl_fail(DL_ENOMEM, "%s: out of memory building the header", path);
    if (b->len > ST_MAX_HEADER) return dl_fail(DL_EDATA, "%s: header over %u bytes", path, ST_MAX_HEADER);
    return DL_OK;
}

dl_status dl_st_write(const char *path, const dl_tensor_ref *tensors, int n)
{
    if (n < 0) return dl_fail(DL_EINTERNAL, "%s: negative tensor count", path);
    for (int i = 0; i < n; i++) {
        dl_status s = check_tensor(path, &tensors[i]);
        if (s) return s;
    }
    const dl_tensor_ref **order = dl_calloc((size_t)n, sizeof *order, "tensor order");
    if (!order) return DL_ENOMEM;
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_names);
    for (int i = 1; i < n; i++) {
        if (!strcmp(order[i - 1]->name, order[i]->name)) {
            char b[160];
            dl_status s = dl_fail(DL_EDATA, "%s: duplicate tensor name (%s)", path, SHOWN(order[i]->name, b));
            free((void *)order);
            return s;
        }
    }
    sbuf hdr = {0};
    dl_status s = build_header(path, order, n, &hdr);
    dl_outfile o;
    if (!s) s = dl_outfile_open(&o, path);
    if (!s) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hdr.len >> (8 * i));
        dl_outfile_write(&o, len8, 8);
        dl_outfile_write(&o, hdr.p, hdr.len);
        for (int k = 0; k < n; k++) dl_outfile_write(&o, order[k]->data, order[k]->nbytes);
        s = dl_outfile_commit(&o);
    }
    free(hdr.p);
    free((void *)order);
    return s;
}
