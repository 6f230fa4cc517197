/*
 * outfile.h - output files that appear only when complete.
 *
 * An output file is written to a temporary name in the target's folder and renamed into place by
 * dl_outfile_commit. dl_outfile_abort (or any failure) removes the temporary file, so a failed
 * write never leaves a partial output, and an existing file at path stays untouched until the
 * rename. Temporary files still open are removed by dl_outfile_remove_all(), which is safe to
 * call from a signal handler. An existing path that is not a regular file (/dev/null, a FIFO) is
 * written directly, and so is "-", standard output. dl_outfile_open_memory writes to memory
 * instead (open_memstream), for encoders whose bytes go somewhere else (an HTTP response).
 *
 *     dl_outfile o;
 *     if ((s = dl_outfile_open(&o, path)) != DL_OK) return s;
 *     dl_outfile_write(&o, data, n);              // failures are remembered ...
 *     return dl_outfile_commit(&o);               // ... and reported here
 */
#ifndef DL_OUTFILE_H
#define DL_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dl_outfile {
    FILE *f;
    char *path;
    char *tmp;
    int slot; /* index in the registry used by dl_outfile_remove_all */
    int failed;
    char **mem;        /* memory outputs: where dl_outfile_commit leaves the bytes ... */
    size_t *mem_size;  /* ... and their count */
} dl_outfile;

dl_status dl_outfile_open(dl_outfile *o, const char *path);
/* An output to memory: dl_outfile_commit leaves the bytes in *data (malloc'ed and NUL-terminated;
 * the caller frees it) and their count in *size; on failure or abort *data is NULL. name is
 * what messages call it. */
dl_status dl_outfile_open_memory(dl_outfile *o, const char *name, char **data, size_t *size);
/* fwrite that remembers failure; the error is reported by dl_outfile_commit. */
void dl_outfile_write(dl_outfile *o, const void *data, size_t n);
dl_status dl_outfile_commit(dl_outfile *o);
void dl_outfile_abort(dl_outfile *o);
void dl_outfile_remove_all(void);

#ifdef __cplusplus
}
#endif
#endif
