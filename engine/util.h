/*
 * util.h - small helpers shared by every part of the library: errors, overflow-checked sizes,
 * reading files, and output files that appear only when complete.
 */
#ifndef DL_UTIL_H
#define DL_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include "deeplab.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DL_PRINTF(f, a)
#endif

/* Sets the calling thread's last error to the formatted message and returns code:
 *     return dl_fail(DL_EDATA, "%s: not a PNG file", path);                        */
dl_status dl_fail(dl_status code, const char *fmt, ...) DL_PRINTF(2, 3);

/* Prefixes the current last error with "prefix: " (adds context on the way up). */
void dl_error_prefix(const char *prefix);

/* Overflow-checked size arithmetic: return 0 on success, 1 if the result does not fit. */
static inline int dl_mul_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int dl_add_size(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }

/* malloc/calloc that set DL_ENOMEM's message on failure ("out of memory allocating N bytes for what"). */
void *dl_alloc(size_t n, const char *what);
void *dl_calloc(size_t n, size_t size, const char *what);
/* 64-byte aligned allocation, freed with free(). */
void *dl_alloc_aligned(size_t n, const char *what);

/* Reads a whole regular file. Fails with DL_ENOINPUT (missing, unreadable, a directory),
 * DL_EDATA (larger than limit bytes) or DL_EIO. *data is malloc'ed and NUL-terminated. */
dl_status dl_read_file(const char *path, size_t limit, uint8_t **data, size_t *size);

/* An output file written to a temporary name in the target's folder and renamed into place by
 * dl_outfile_commit. dl_outfile_abort (or any failure) removes the temporary file, so a failed
 * write never leaves a partial output, and an existing file at path stays untouched until the
 * rename. Temporary files still open are removed by dl_outfile_remove_all(), which is safe to
 * call from a signal handler. An existing path that is not a regular file (/dev/null, a FIFO) is
 * written directly, and so is "-", standard output. */
typedef struct dl_outfile {
    FILE *f;
    char *path;
    char *tmp;
    int slot; /* index in the registry used by dl_outfile_remove_all */
    int failed;
} dl_outfile;

dl_status dl_outfile_open(dl_outfile *o, const char *path);
/* fwrite that remembers failure; the error is reported by dl_outfile_commit. */
void dl_outfile_write(dl_outfile *o, const void *data, size_t n);
dl_status dl_outfile_commit(dl_outfile *o);
void dl_outfile_abort(dl_outfile *o);
void dl_outfile_remove_all(void);

#ifdef __cplusplus
}
#endif
#endif
