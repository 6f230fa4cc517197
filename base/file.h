/* file.h - reading a whole file, for parsers that check every length against what is there. */
#ifndef DL_FILE_H
#define DL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole regular file (or a pipe, or standard input as /dev/stdin). Fails with
 * DL_ENOINPUT (missing, unreadable, a directory), DL_EDATA (larger than limit bytes) or DL_EIO.
 * *data is malloc'ed and NUL-terminated. */
dl_status dl_read_file(const char *path, size_t limit, uint8_t **data, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
