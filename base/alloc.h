/*
 * alloc.h - allocation that reports what it was for, and size arithmetic that cannot overflow
 * silently. Readers of untrusted files compute every size with dl_mul_size / dl_add_size before
 * they allocate anything.
 */
#ifndef DL_ALLOC_H
#define DL_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Overflow-checked size arithmetic: return 0 on success, 1 if the result does not fit. */
static inline int dl_mul_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int dl_add_size(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }

/* malloc/calloc that set DL_ENOMEM's message on failure ("out of memory allocating N bytes for what"). */
void *dl_alloc(size_t n, const char *what);
void *dl_calloc(size_t n, size_t size, const char *what);
/* 64-byte aligned allocation, freed with free(). */
void *dl_alloc_aligned(size_t n, const char *what);

#ifdef __cplusplus
}
#endif
#endif
