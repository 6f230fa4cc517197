/* common.h - helpers shared by the weight readers (internal to weights/): read-only file
 * mappings and names made safe to print in a one-line message. */
#ifndef DL_WEIGHTS_COMMON_H
#define DL_WEIGHTS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef struct dl_mapped {
    const uint8_t *data; /* size bytes; not NUL-terminated */
    size_t size;
    int is_mmap;         /* 1: munmap; 0: free (read into memory, or empty) */
} dl_mapped;

/* Maps a regular file read-only (other files, e.g. pipes, are read into memory). Fails with
 * DL_ENOINPUT for a missing or unreadable file or a directory. */
dl_status dl_map_file(const char *path, dl_mapped *m);
void dl_unmap_file(dl_mapped *m);

/* s[0..len) for a message: control characters become '?', at most cap - 4 bytes then "...".
 * Returns buf. Names come from the file and could otherwise break the message's single line. */
const char *dl_printable(const char *s, size_t len, char *buf, size_t cap);

#endif
