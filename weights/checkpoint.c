/*
 * checkpoint.c - reads the tensors of a torch.save file without PyTorch.
 *
 * Zip format (PyTorch >= 1.6): a stored zip archive with
 *     PREFIX/data.pkl        the pickled object; tensors refer to storages by persistent id
 *                            ('storage', torch.FloatStorage, KEY, location, numel)
 *     PREFIX/data/KEY        each storage's raw little-endian bytes (numel x element size)
 *     PREFIX/byteorder       "little" or "big" (newer versions), PREFIX/version, ...
 * PREFIX is usually "archive" but is whatever folder holds data.pkl.
 *
 * Legacy format (before 1.6): five pickles in a row, then the storages:
 *     magic number 0x1950a86a20f9469cfc6c, protocol version 1001, sys_info (a dict with
 *     little_endian), the object, the list of storage keys;
 *     then for each key of that list: int64 element count, raw little-endian data.
 * Persistent ids have a sixth field there: None, or (view_key, offset, numel) for a view into
 * the root storage KEY (very old files only).
 *
 * A tensor is (storage, offset, shape, stride) in elements. Several tensors may share one storage;
 * strides need not be contiguous. After checking that every element a tensor addresses lies
 * inside its storage, a contiguous tensor simply points into the mapped file (no copy: fresh
 * memory is slow to fault in, and the file is usually 245 MB); others are gathered into copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "common.h"
#include "pickle.h"
#include "status.h"
#include "weights.h"
#include "zip.h"

/* The storage bytes of a legacy file, by key. */
typedef struct legacy_storage {
    const char *key;
    dl_dtype dtype;
    int64_t numel;
    const uint8_t *data; /* NULL until found in the data section */
} legacy_storage;

/* What a dl_checkpoint keeps alive: the mapped file and the gathered copies (owned[i] is NULL
 * for a tensor that points into the mapping). */
struct dl_checkpoint_mem {
    dl_mapped map;
    void **owned;
};

typedef struct ck_reader {
    const char *path;
    dl_mapped map;
    dl_pv_arena arena;
    const char *format; /* "zip" or "legacy" */
    dl_zip zip;         /* zip: the archive and the folder holding data.pkl */
    char *prefix;
    legacy_storage *ls; /* legacy: sorted by key */
    size_t nls;
    uint64_t tensor_bytes; /* of all tensors so far, for the amplification limit */
} ck_reader;

/* Tensors may share storages, so a tiny file could describe terabytes of tensors (the same
 * storage viewed a million times, or with stride 0): together they may hold at most this many
 * times the file's size. Real checkpoints hold about 1x (tied weights 2x). */
#define MAX_TENSOR_BYTES_PER_FILE_BYTE 4

/* A string from the file, made safe for a one-line message. */
#define SHOWN(s, buf) dl_printable((s), strlen(s), (buf), sizeof(buf))

/* ------------------------------------------------------------------ zip */

/* PREFIX of the one entry named PREFIX/data.pkl (PREFIX without '/'). */
static dl_status find_prefix(ck_reader *r)
{
    const dl_zip_entry *found = NULL;
    for (size_t i = 0; i < r->zip.n; i++) {
        const dl_zip_entry *e = &r->zip.e[i];
        if (e->name_len <= 9) continue;
        size_t plen = e->name_len - 9;
        if (memcmp(e->name + plen, "/data.pkl", 9) || memchr(e->name, '/', plen)) continue;
        if (found) return dl_fail(DL_EDATA, "%s: several */data.pkl entries: not a torch.save archive", r->path);
        found = e;
    }
    if (!found) return dl_fail(DL_EDATA, "%s: zip archive without */data.pkl: not a torch.save file", r->path);
    if (!(r->prefix = strndup(found->name, found->name_len - 9))) return dl_fail(DL_ENOMEM, "out of memory");
    return DL_OK;
}

/* The entry PREFIX/suffix1suffix2, or NULL. */
static const dl_zip_entry *zip_entry(ck_reader *r, const char *suffix1, const char *suffix2)
{
    size_t len = strlen(r->prefix) + strlen(suffix1) + strlen(suffix2) + 1;
    char *name = malloc(len);
    if (!name) return NULL; /* read as "absent": the caller's message follows */
    snprintf(name, len, "%s%s%s", r->prefix, suffix1, suffix2);
    const dl_zip_entry *e = dl_zip_find(&r->zip, name);
    free(name);
    return e;
}

static dl_status read_zip(ck_reader *r, dl_pv **root)
{
    r->format = "zip";
    dl_status s = dl_zip_open(&r->zip, r->map.data, r->map.size);
    if (s) {
        dl_error_prefix(r->path);
        return s;
    }
    if ((s = find_prefix(r))) return s;
    const dl_zip_entry *bo = zip_entry(r, "/byteorder", "");
    char b[32];
    if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6)))
        return dl_fail(DL_EDATA, "%s: byteorder is \"%s\": only little-endian checkpoints are supported", r->path,
                       dl_printable((const char *)bo->data, bo->size, b, sizeof b));
    const dl_zip_entry *pkl = zip_entry(r, "/data.pkl", "");
    if (!pkl) return dl_fail(DL_ENOMEM, "out of memory");
    size_t used;
    if ((s = dl_pickle_load(&r->arena, pkl->data, pkl->size, &used, root))) {
        char where[256];
        snprintf(where, sizeof where, "%.200s/data.pkl", r->prefix);
        dl_error_prefix(where);
        dl_error_prefix(r->path);
    }
    return s;
}

/* ------------------------------------------------------------------ legacy */

static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static dl_status load_next(ck_reader *r, size_t *pos, const char *what, dl_pv **out)
{
    size_t used;
    dl_status s = dl_pickle_load(&r->arena, r->map.data + *pos, r->map.size - *pos, &used, out);
    *pos += used;
    if (s) {
        dl_error_prefix(what);
        dl_error_prefix(r->path);
    }
    return s;
}

static int cmp_legacy(const void *a, const void *b)
{
    return strcmp(((const legacy_storage *)a)->key, ((const legacy_storage *)b)->key);
}

static legacy_storage *legacy_find(const ck_reader *r, const char *key)
{
    legacy_storage k = {.key = key};
    return r->nls ? bsearch(&k, r->ls, r->nls, sizeof k, cmp_legacy) : NULL;
}

/* The storages the object refers to, one entry per key, from the arena's storage records. */
static dl_status legacy_table(ck_reader *r)
{
    dl_pv_arena *a = &r->arena;
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        for (size_t i = 0; i < a->count; i++) {
            const dl_pv *v = dl_pv_arena_at(a, i);
            if (v->type != DL_PV_STORAGE) continue;
            if (pass) r->ls[r->nls++] = (legacy_storage){v->storage->key, v->storage->dtype, v->storage->numel, NULL};
            else n++;
        }
        if (!pass && !(r->ls = dl_calloc(n, sizeof *r->ls, "storage table"))) return DL_ENOMEM;
    }
    qsort(r->ls, r->nls, sizeof *r->ls, cmp_legacy);
    size_t k = 0; /* merge repeated keys, which must agree */
    for (size_t i = 0; i < r->nls; i++) {
        if (k && !strcmp(r->ls[k - 1].key, r->ls[i].key)) {
            char b[96];
            if (r->ls[k - 1].dtype != r->ls[i].dtype || r->ls[k - 1].numel != r->ls[i].numel)
                return dl_fail(DL_EDATA, "%s: storage %s is described twice differently", r->path,
                               SHOWN(r->ls[i].key, b));
            continue;
        }
        r->ls[k++] = r->ls[i];
    }
    r->nls = k;
    return DL_OK;
}

/* The data section: for each key of the list, an int64 element count and the raw data. */
static dl_status legacy_data(ck_reader *r, const dl_pv *keys, size_t pos)
{
    if (keys->type != DL_PV_LIST)
        return dl_fail(DL_EDATA, "%s: storage key list is a %s", r->path, dl_pv_type_name(keys));
    for (size_t i = 0; i < keys->seq.n; i++) {
        const dl_pv *k = keys->seq.items[i];
        legacy_storage *st = k->type == DL_PV_STR ? legacy_find(r, k->s.p) : NULL;
        char b[96];
        if (!st) return dl_fail(DL_EDATA, "%s: storage key list names a storage no tensor uses", r->path);
        if (st->data) return dl_fail(DL_EDATA, "%s: storage %s listed twice", r->path, SHOWN(st->key, b));
        if (r->map.size - pos < 8)
            return dl_fail(DL_EDATA, "%s: truncated: data of storage %s missing", r->path, SHOWN(st->key, b));
        int64_t count;
        memcpy(&count, r->map.data + pos, 8);
        pos += 8;
        if (count != st->numel)
            return dl_fail(DL_EDATA, "%s: storage %s has %lld elements, its tensors say %lld", r->path,
                           SHOWN(st->key, b), (long long)count, (long long)st->numel);
        size_t bytes;
        if (dl_mul_size((size_t)count, dl_dtype_size(st->dtype), &bytes) || bytes > r->map.size - pos)
            return dl_fail(DL_EDATA, "%s: truncated: data of storage %s runs past the end of the file", r->path,
                           SHOWN(st->key, b));
        st->data = r->map.data + pos;
        pos += bytes;
    }
    return DL_OK;
}

static dl_status read_legacy(ck_reader *r, dl_pv **root)
{
    r->format = "legacy";
    size_t pos = 0;
    dl_pv *magic, *version, *sys_info, *keys;
    dl_status s = load_next(r, &pos, "magic number pickle", &magic);
    if (s) return s;
    if (magic->type != DL_PV_LONG || magic->s.len != 10 || memcmp(magic->s.p, legacy_magic, 10))
        return dl_fail(DL_EDATA, "%s: a pickle, but not a PyTorch checkpoint (no magic number)", r->path);
    if ((s = load_next(r, &pos, "protocol version pickle", &version))) return s;
    if (version->type != DL_PV_INT || version->i != 1001)
        return dl_fail(DL_EDATA, "%s: unsupported legacy protocol version (expected 1001)", r->path);
    if ((s = load_next(r, &pos, "sys_info pickle", &sys_info))) return s;
    const dl_pv *le = dl_pv_dict_get(sys_info, "little_endian");
    if (le && !(le->type == DL_PV_BOOL && le->i == 1))
        return dl_fail(DL_EDATA, "%s: saved on a big-endian machine: not supported", r->path);
    if ((s = load_next(r, &pos, "object pickle", root)) || (s = load_next(r, &pos, "storage key list pickle", &keys)))
        return s;
    if ((s = legacy_table(r))) return s;
    return legacy_data(r, keys, pos);
}

/* ------------------------------------------------------------------ tensors */

/* The bytes and element count of the storage a tensor views. */
static dl_status storage_bytes(ck_reader *r, const dl_pv_storage *st, const uint8_t **data, int64_t *numel)
{
    size_t es = dl_dtype_size(st->dtype), want;
    char b[96], p[96];
    if (!r->prefix) { /* legacy */
        legacy_storage *ls = legacy_find(r, st->key);
        if (!ls || !ls->data)
            return dl_fail(DL_EDATA, "%s: storage %s has no data in the file", r->path, SHOWN(st->key, b));
        *data = ls->data;
        *numel = ls->numel;
    } else {
        const dl_zip_entry *e = zip_entry(r, "/data/", st->key);
        if (!e)
            return dl_fail(DL_EDATA, "%s: storage %s/data/%s is missing", r->path, SHOWN(r->prefix, p),
                           SHOWN(st->key, b));
        if (dl_mul_size((size_t)st->numel, es, &want) || e->size != want)
            return dl_fail(DL_EDATA, "%s: storage %s/data/%s holds %zu bytes, %lld elements of %zu bytes expected",
                           r->path, SHOWN(r->prefix, p), SHOWN(st->key, b), e->size, (long long)st->numel, es);
        *data = e->data;
        *numel = st->numel;
    }
    if (st->is_view) { /* range checked against the root's numel by the pickle reader */
        *data += (size_t)st->view_offset * es;
        *numel = st->view_numel;
    }
    return DL_OK;
}

/* Copies the strided elements in row-major order. numel > 0, every index checked by the caller. */
static void gather(uint8_t *dst, const uint8_t *src, size_t es, int ndim, const int64_t *shape, const int64_t *stride)
{
    int64_t idx[DL_MAX_DIMS] = {0};
    int64_t inner = ndim ? shape[ndim - 1] : 1, inner_stride = ndim ? stride[ndim - 1] : 0;
    for (;;) {
        int64_t off = 0;
        for (int d = 0; d < ndim - 1; d++) off += idx[d] * stride[d];
        for (int64_t i = 0; i < inner; i++, dst += es) memcpy(dst, src + (size_t)(off + i * inner_stride) * es, es);
        int d = ndim - 2; /* odometer over the outer dimensions */
        while (d >= 0 && ++idx[d] == shape[d]) idx[d--] = 0;
        if (d < 0) return;
    }
}

static int is_contiguous(const dl_pv_tensor *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0; /* a size-1 dim's stride is unused */
        expect *= t->shape[d];
    }
    return 1;
}

/* Points out at t's elements, or at a contiguous copy stored in *owned. */
static dl_status copy_tensor(ck_reader *r, const char *name, const dl_pv_tensor *t, dl_tensor_ref *out,
                             void **owned)
{
    const dl_pv_storage *st = t->storage->storage;
    size_t es = dl_dtype_size(st->dtype);
    const uint8_t *base = NULL;
    int64_t avail = 0;
    dl_status s = storage_bytes(r, st, &base, &avail);
    if (s) return s;
    /* numel, and the index of the last element addressed: offset + sum (shape - 1) * stride. */
    uint64_t numel = 1, last = (uint64_t)t->offset, step;
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) overflow |= __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel);
    for (int d = 0; d < t->ndim && numel; d++) {
        overflow |= __builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d], &step);
        overflow |= __builtin_add_overflow(last, step, &last);
    }
    size_t nbytes;
    if (overflow || dl_mul_size((size_t)numel, es, &nbytes))
        return dl_fail(DL_EDATA, "%s: tensor %s: size overflows", r->path, name);
    if (__builtin_add_overflow(r->tensor_bytes, (uint64_t)nbytes, &r->tensor_bytes) ||
        r->tensor_bytes > (uint64_t)r->map.size * MAX_TENSOR_BYTES_PER_FILE_BYTE)
        return dl_fail(DL_EDATA, "%s: tensor %s: the tensors hold more than %d times the file's %zu bytes "
                       "(storages shared over and over): refused", r->path, name,
                       MAX_TENSOR_BYTES_PER_FILE_BYTE, r->map.size);
    if (numel && last >= (uint64_t)avail)
        return dl_fail(DL_EDATA, "%s: tensor %s: addresses element %llu of a storage of %lld elements", r->path,
                       name, (unsigned long long)last, (long long)avail);
    const uint8_t *start = numel ? base + (size_t)t->offset * es : base;
    if (numel && !is_contiguous(t)) { /* (an empty tensor has nothing to gather) */
        uint8_t *copy = dl_alloc_aligned(nbytes, name);
        if (!copy) return DL_ENOMEM;
        gather(copy, start, es, t->ndim, t->shape, t->stride);
        *owned = copy;
        start = copy;
    }
    out->dtype = st->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->data = start;
    out->nbytes = nbytes;
    return DL_OK;
}

/* The state dict: the top-level dict, or the dict under "state_dict" or "model" of a wrapper. */
static const dl_pv *find_state_dict(const dl_pv *root)
{
    static const char *wrappers[] = {"state_dict", "model"};
    for (int i = 0; i < 2; i++) {
        const dl_pv *v = dl_pv_dict_get(root, wrappers[i]);
        if (v && v->type == DL_PV_DICT) return v;
    }
    return root;
}

static dl_status collect_tensors(ck_reader *r, const dl_pv *root, dl_checkpoint *out)
{
    const dl_pv *sd = find_state_dict(root);
    if (sd->type != DL_PV_DICT)
        return dl_fail(DL_EDATA, "%s: holds a %s, expected a state dict", r->path, dl_pv_type_name(sd));
    size_t n = sd->seq.n / 2;
    if (!(out->t = dl_calloc(n, sizeof *out->t, "tensor list")) ||
        !(out->mem->owned = dl_calloc(n, sizeof *out->mem->owned, "tensor list")))
        return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const dl_pv *k = sd->seq.items[2 * i], *v = sd->seq.items[2 * i + 1];
        if (k->type != DL_PV_STR || strlen(k->s.p) != k->s.len)
            return dl_fail(DL_EDATA, "%s: state dict key %zu is not a plain string", r->path, i);
        char name[160]; /* for messages */
        SHOWN(k->s.p, name);
        if (v->type != DL_PV_TENSOR)
            return dl_fail(DL_EDATA, "%s: state dict entry \"%s\" is not a tensor (%s)", r->path, name,
                           dl_pv_type_name(v));
        dl_tensor_ref *t = &out->t[out->n];
        if (!(t->name = strdup(k->s.p))) return dl_fail(DL_ENOMEM, "out of memory");
        out->n++; /* from here dl_checkpoint_free releases it */
        dl_status s = copy_tensor(r, name, v->tensor, t, &out->mem->owned[i]);
        if (s) return s;
    }
    return DL_OK;
}

dl_status dl_checkpoint_read(const char *path, dl_checkpoint *out)
{
    memset(out, 0, sizeof *out);
    if (!(out->mem = dl_calloc(1, sizeof *out->mem, "checkpoint"))) return DL_ENOMEM;
    ck_reader r = {.path = path};
    dl_status s = dl_map_file(path, &r.map);
    if (s) {
        dl_checkpoint_free(out);
        return s;
    }
    out->mem->map = r.map; /* the tensors point into it: unmapped by dl_checkpoint_free */
    const uint8_t *p = r.map.data;
    size_t size = r.map.size;
    dl_pv *root = NULL;
    if (size >= 4 && (!memcmp(p, "PK\3\4", 4) || !memcmp(p, "PK\5\6", 4)))
        s = read_zip(&r, &root);
    else if (size >= 262 && !memcmp(p + 257, "ustar", 5))
        s = dl_fail(DL_EDATA, "%s: tar-format checkpoint (PyTorch < 0.4) is not supported: "
                              "load it with PyTorch and save it again with torch.save", path);
    else if (size >= 2 && p[0] == 0x80)
        s = read_legacy(&r, &root);
    else
        s = dl_fail(DL_EDATA, "%s: not a PyTorch checkpoint (neither a zip archive nor a pickle)", path);
    if (!s) s = collect_tensors(&r, root, out);
    if (!s) out->format = r.format;
    if (s) dl_checkpoint_free(out);
    dl_pv_arena_free(&r.arena);
    dl_zip_close(&r.zip);
    free(r.prefix);
    free(r.ls);
    return s;
}

void dl_checkpoint_free(dl_checkpoint *ck)
{
    for (int i = 0; i < ck->n; i++) free((void *)ck->t[i].name);
    free(ck->t);
    if (ck->mem) {
        for (int i = 0; ck->mem->owned && i < ck->n; i++) free(ck->mem->owned[i]);
        free(ck->mem->owned);
        dl_unmap_file(&ck->mem->map);
        free(ck->mem);
    }
    memset(ck, 0, sizeof *ck);
}
