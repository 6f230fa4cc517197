/*
 * fuzz_checkpoint.c - dl_checkpoint_read on any bytes: the zip container (EOCD, Zip64, central
 * directory, local headers), the legacy stream format, the allow-list pickle interpreter behind
 * both, storages, views and strided tensors. Every tensor of an accepted file is read whole.
 */
#include "fuzz.h"
#include "weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    dl_checkpoint ck;
    dl_status s = dl_checkpoint_read(path, &ck);
    if (s != DL_OK) {
        fuzz_check_error(s, path);
        if (ck.n || ck.t || ck.mem) abort(); /* freed and zeroed on failure */
        return 0;
    }
    for (int i = 0; i < ck.n; i++) {
        const dl_tensor_ref *t = &ck.t[i];
        int64_t numel = dl_tensor_numel(t);
        if (!t->name || numel < 0 || (size_t)numel * dl_dtype_size(t->dtype) != t->nbytes) abort();
        fuzz_touch(t->name, strlen(t->name));
        fuzz_touch(t->data, t->nbytes);
    }
    dl_checkpoint_free(&ck);
    return 0;
}
