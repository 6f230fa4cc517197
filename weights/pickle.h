/* pickle.h - a safe, allow-list pickle reader for PyTorch state dicts (internal to weights/). */
#ifndef DL_PICKLE_H
#define DL_PICKLE_H

#include <stddef.h>
#include <stdint.h>
#include "weights.h"

typedef enum dl_pv_type {
    DL_PV_NONE, DL_PV_BOOL, DL_PV_INT, DL_PV_LONG, DL_PV_FLOAT, DL_PV_STR, DL_PV_BYTES,
    DL_PV_TUPLE, DL_PV_LIST, DL_PV_DICT, DL_PV_GLOBAL, DL_PV_STORAGE, DL_PV_TENSOR
} dl_pv_type;

/* The allow-listed globals. They are never called: REDUCE on one builds a value. */
typedef enum dl_pv_global {
    DL_G_ORDERED_DICT,             /* collections.OrderedDict() -> an empty dict */
    DL_G_REBUILD_TENSOR,           /* torch._utils._rebuild_tensor(storage, offset, size, stride) */
    DL_G_REBUILD_TENSOR_V2,        /* ... _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks[, meta]) */
    DL_G_REBUILD_PARAMETER,        /* ... _rebuild_parameter(tensor, grad, hooks) -> the tensor */
    DL_G_REBUILD_PARAMETER_STATE,  /* ... _rebuild_parameter_with_state(tensor, grad, hooks, state) */
    DL_G_STORAGE                   /* torch.FloatStorage ...: a type named in persistent ids */
} dl_pv_global;

/* A storage named by a persistent id, whose bytes the caller finds by key:
 *   zip:    ('storage', torch.FloatStorage, key, location, numel)
 *   legacy: ('storage', torch.FloatStorage, root_key, location, root_numel, view_metadata)
 * with view_metadata None or (view_key, view_offset, view_numel), offsets in elements. */
typedef struct dl_pv_storage {
    dl_dtype dtype;
    const char *key;
    int64_t numel;
    int is_view;
    int64_t view_offset, view_numel;
} dl_pv_storage;

typedef struct dl_pv_tensor {
    struct dl_pv *storage; /* a DL_PV_STORAGE */
    int64_t offset;        /* in elements */
    int ndim;
    int64_t shape[DL_MAX_DIMS], stride[DL_MAX_DIMS];
} dl_pv_tensor;

/* A pickled value. Containers hold pointers, shared as in Python when the memo repeats a value. */
typedef struct dl_pv {
    dl_pv_type type;
    union {
        int64_t i;                                      /* BOOL (0/1), INT */
        double f;                                       /* FLOAT */
        struct { char *p; size_t len; } s;              /* STR (UTF-8), BYTES, LONG (two's complement, LE) */
        struct { struct dl_pv **items; size_t n, cap; } seq; /* TUPLE, LIST; DICT: key, value, key, ... */
        struct { dl_pv_global kind; dl_dtype dtype; } g;     /* GLOBAL (dtype for storage types) */
        dl_pv_storage *storage;                         /* STORAGE */
        dl_pv_tensor *tensor;                           /* TENSOR */
    };
} dl_pv;

/* Every value of one or more pickles, freed together (so shared and cyclic values are no problem). */
typedef struct dl_pv_arena {
    dl_pv **blocks;
    size_t nblocks, count;
} dl_pv_arena;

void dl_pv_arena_free(dl_pv_arena *a);
dl_pv *dl_pv_arena_at(const dl_pv_arena *a, size_t i); /* the i-th value made, i < a->count */

/* Interprets the pickle at buf[0..size) up to its STOP opcode; *used is its length in bytes (a
 * legacy checkpoint is several pickles in a row). Values live in arena a. Any opcode or global
 * outside the allow-list, malformed or truncated data, or a limit exceeded is DL_EDATA with a
 * message without the file name. */
dl_status dl_pickle_load(dl_pv_arena *a, const uint8_t *buf, size_t size, size_t *used, dl_pv **out);

/* Helpers for reading the result. */
const char *dl_pv_type_name(const dl_pv *v);         /* "dict", "tensor", ... */
const dl_pv *dl_pv_dict_get(const dl_pv *dict, const char *key); /* string key; NULL if absent */
int dl_pv_is_str(const dl_pv *v, const char *s);     /* v is the string s */

#endif
