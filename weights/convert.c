/*
 * convert.c - `deeplab convert`: a PyTorch checkpoint to a safetensors file for the engine.
 *
 * Keeps torchvision's tensor names (minus DataParallel's "module." prefix), drops what inference
 * never reads (the auxiliary FCN head and BatchNorm's num_batches_tracked counters), and stores
 * floating tensors as F32 or F16. Other integer tensors are kept as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "status.h"
#include "weights.h"

static int starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int is_float(dl_dtype t) { return t == DL_F32 || t == DL_F16 || t == DL_BF16 || t == DL_F64; }

/* Points t at its elements converted to dtype (F32 or F16) in a new buffer, stored in *owned.
 * Goes through float32 a chunk at a time, which is exact for every source type but F64. */
static dl_status convert_tensor(dl_tensor_ref *t, dl_dtype dtype, void **owned)
{
    if (!is_float(t->dtype) || t->dtype == dtype) return DL_OK;
    size_t es = dl_dtype_size(t->dtype), n = t->nbytes / es, nbytes;
    if (dl_mul_size(n, dl_dtype_size(dtype), &nbytes)) return dl_fail(DL_EDATA, "%s: too large", t->name);
    uint8_t *out = dl_alloc_aligned(nbytes, t->name);
    if (!out) return DL_ENOMEM;
    float chunk[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? n - i : 4096;
        dl_tensor_ref part = *t;
        part.data = (const uint8_t *)t->data + i * es;
        part.nbytes = k * es;
        dl_tensor_to_f32(&part, chunk);
        if (dtype == DL_F32) memcpy(out + 4 * i, chunk, 4 * k);
        else
            for (size_t j = 0; j < k; j++) ((uint16_t *)out)[i + j] = dl_f32_to_f16(chunk[j]);
    }
    *owned = out;
    t->data = out;
    t->dtype = dtype;
    t->nbytes = nbytes;
    return DL_OK;
}

dl_status dl_convert_checkpoint(const char *src, const char *dst, dl_dtype dtype, void *log)
{
    if (dtype != DL_F32 && dtype != DL_F16)
        return dl_fail(DL_EUSAGE, "convert: the output dtype must be F32 or F16, not %s", dl_dtype_name(dtype));
    dl_checkpoint ck;
    dl_status s = dl_checkpoint_read(src, &ck);
    if (s) return s;
    dl_tensor_ref *keep = dl_calloc((size_t)ck.n, sizeof *keep, "tensor list");
    void **converted = dl_calloc((size_t)ck.n, sizeof *converted, "tensor list");
    if (!keep || !converted) s = DL_ENOMEM;
    int n = 0, n_aux = 0, n_nbt = 0, n_module = 0;
    double params = 0;
    for (int i = 0; i < ck.n && !s; i++) {
        dl_tensor_ref *t = &ck.t[i];
        const char *name = t->name;
        if (starts_with(name, "module.")) {
            name += 7;
            n_module++;
        }
        if (starts_with(name, "aux_classifier.")) n_aux++;
        else if (ends_with(name, ".num_batches_tracked") || !strcmp(name, "num_batches_tracked")) n_nbt++;
        else {
            keep[n] = *t;
            keep[n].name = name;
            s = convert_tensor(&keep[n], dtype, &converted[n]);
            params += (double)dl_tensor_numel(t);
            n++;
        }
    }
    if (!s && n == 0) s = dl_fail(DL_EDATA, "%s: no tensors to convert", src);
    if (!s) s = dl_st_write(dst, keep, n);
    if (!s && log) {
        fprintf(log, "converted %d tensors (%.1f M parameters, %s) from %s checkpoint %s to %s; "
                     "dropped %d (aux_classifier: %d, num_batches_tracked: %d)%s\n",
                n, params / 1e6, dtype == DL_F16 ? "f16" : "f32", ck.format, src, dst, n_aux + n_nbt, n_aux,
                n_nbt, n_module ? "; stripped the \"module.\" prefix" : "");
        fflush(log);
    }
    for (int i = 0; converted && i < n; i++) free(converted[i]);
    free(converted);
    free(keep);
    dl_checkpoint_free(&ck);
    return s;
}
