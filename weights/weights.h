/*
 * weights.h - weight files: safetensors (read and write), PyTorch checkpoints (read), dtypes.
 *
 * Used by the engine (dl_model_load reads safetensors by tensor name) and by `deeplab convert`.
 * Every function returns a dl_status and sets dl_last_error() with the file name and the problem.
 */
#ifndef DL_WEIGHTS_H
#define DL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DL_MAX_DIMS 8

/* Element types of safetensors ("F32" ...). Only F32, F16 and BF16 feed the network; the others
 * are parsed and validated so that any standard file opens (e.g. I64 num_batches_tracked). */
typedef enum dl_dtype {
    DL_F32, DL_F16, DL_BF16, DL_F64, DL_I64, DL_I32, DL_I16, DL_I8,
    DL_U64, DL_U32, DL_U16, DL_U8, DL_BOOL, DL_F8_E4M3, DL_F8_E5M2, DL_DTYPE_COUNT
} dl_dtype;

const char *dl_dtype_name(dl_dtype t);                 /* "F32" */
int dl_dtype_from_name(const char *name, dl_dtype *t); /* 0 on success, -1 if unknown */
size_t dl_dtype_size(dl_dtype t);                      /* bytes per element */

/* IEEE half and bfloat16 conversions (round to nearest even; NaN and Inf kept). */
float dl_f16_to_f32(uint16_t h);
uint16_t dl_f32_to_f16(float f);
float dl_bf16_to_f32(uint16_t b);

/* A tensor: name, element type, shape and contiguous little-endian row-major data. */
typedef struct dl_tensor_ref {
    const char *name;
    dl_dtype dtype;
    int ndim;
    int64_t shape[DL_MAX_DIMS];
    const void *data;
    size_t nbytes; /* = numel * dl_dtype_size(dtype) */
} dl_tensor_ref;

int64_t dl_tensor_numel(const dl_tensor_ref *t);

/* Copies t's elements (F32, F16, BF16 or F64) to dst as float32. Returns -1 for other dtypes. */
int dl_tensor_to_f32(const dl_tensor_ref *t, float *dst);

/* ------------------------------------------------------------------ safetensors */

typedef struct dl_st_file dl_st_file; /* an opened, fully validated safetensors file */

/* Maps and validates a safetensors file: 8-byte little-endian header length (at most 100 MB,
 * within the file), a JSON object header (UTF-8, strictly parsed, no duplicate names), every
 * tensor's dtype known, shape product and byte size overflow-checked, data_offsets matching
 * shape x dtype, and the tensors' byte ranges tiling the data section exactly (no gap, no
 * overlap, no trailing bytes). Optional "__metadata__" (string -> string) is accepted. */
dl_status dl_st_open(const char *path, dl_st_file **out);
/* The largest header dl_st_open accepts (default 100,000,000 bytes, as the reference
 * implementation; 0 restores it). Process-wide: set it before opening files. */
void dl_set_safetensors_limit(uint64_t header_bytes);
void dl_st_close(dl_st_file *f);
int dl_st_count(const dl_st_file *f);
const dl_tensor_ref *dl_st_tensor(const dl_st_file *f, int i); /* in file order of offsets */
const dl_tensor_ref *dl_st_find(const dl_st_file *f, const char *name); /* NULL if absent */
const char *dl_st_path(const dl_st_file *f);

/* Writes tensors to path as safetensors (atomically: temporary file + rename). Names sorted,
 * header padded with spaces to a multiple of 8 bytes, __metadata__ {"format": "pt"}. */
dl_status dl_st_write(const char *path, const dl_tensor_ref *tensors, int n);

/* ------------------------------------------------------------------ PyTorch checkpoints */

/* The tensors of a PyTorch checkpoint, each contiguous (strides and offsets applied). Contiguous
 * tensors point into the read-only mapped file, others into copies: data is valid until
 * dl_checkpoint_free and may be unaligned (read it with memcpy or dl_tensor_to_f32). */
typedef struct dl_checkpoint {
    int n;
    dl_tensor_ref *t;   /* names and data owned by the checkpoint */
    const char *format; /* "zip" or "legacy" (a static string) */
    struct dl_checkpoint_mem *mem; /* internal: the mapping and the copies */
} dl_checkpoint;

/* Reads a torch.save file without PyTorch: the zip format (>= 1.6) or the legacy stream format.
 * The state dict is the top-level dict, or the dict under "model" / "state_dict" if the top
 * level wraps one. Pickles are interpreted by an allow-list: any global outside it is refused
 * (DL_EDATA, naming it) and nothing is executed. Keys keep their names (no filtering here). */
dl_status dl_checkpoint_read(const char *path, dl_checkpoint *out);
/* Limits of the pickle reader, checked before anything is allocated: bytes of one pickle
 * (default 1 GiB), memo entries (default 16 Mi) and stack depth, values and open MARKs alike
 * (default 1 Mi). 0 restores a default. Process-wide: set them before reading files. */
void dl_set_pickle_limits(size_t max_bytes, size_t max_memo, size_t max_stack);
void dl_checkpoint_free(dl_checkpoint *ck);

/* `deeplab convert`: reads src, strips a "module." prefix, drops aux_classifier.* and
 * *.num_batches_tracked, converts floating tensors to dtype (DL_F32 or DL_F16), writes dst.
 * If log is not NULL, one summary line is printed to it. */
dl_status dl_convert_checkpoint(const char *src, const char *dst, dl_dtype dtype, void *log /* FILE* */);

#ifdef __cplusplus
}
#endif
#endif
