/*
 * fuzz_safetensors.c - dl_st_open on any bytes: the header length, the strict JSON parser, the
 * tensor entries, offsets and their tiling. An accepted file's tensors are then read whole
 * (every byte touched, floats converted), so a wrong offset or length shows up under ASan.
 */
#include "fuzz.h"
#include "weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    dl_st_file *f = NULL;
    dl_status s = dl_st_open(path, &f);
    if (s != DL_OK) {
        fuzz_check_error(s, path);
        if (f) abort();
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < dl_st_count(f); i++) {
        const dl_tensor_ref *t = dl_st_tensor(f, i);
        if (dl_st_find(f, t->name) != t) abort(); /* names are unique */
        int64_t numel = dl_tensor_numel(t);
        if (numel < 0 || (size_t)numel * dl_dtype_size(t->dtype) != t->nbytes) abort();
        total += t->nbytes;
        if (total > size) abort(); /* the tensors tile the data section: no byte twice */
        fuzz_touch(t->data, t->nbytes);
        if ((t->dtype == DL_F32 || t->dtype == DL_F16 || t->dtype == DL_BF16 || t->dtype == DL_F64) && numel) {
            float *x = malloc(sizeof(float) * (size_t)numel);
            if (!x || dl_tensor_to_f32(t, x) != 0) abort();
            fuzz_touch(x, sizeof(float) * (size_t)numel);
            free(x);
        }
    }
    dl_st_close(f);
    return 0;
}
