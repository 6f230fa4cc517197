/* zip.h - a reader for the stored (uncompressed) zip archives torch.save writes (internal). */
#ifndef DL_ZIP_H
#define DL_ZIP_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef struct dl_zip_entry {
    const char *name;    /* points into the archive: not NUL-terminated */
    size_t name_len;
    const uint8_t *data; /* the stored bytes, inside the archive */
    size_t size;
} dl_zip_entry;

typedef struct dl_zip {
    size_t n;
    dl_zip_entry *e; /* sorted by name */
} dl_zip;

/* Indexes the archive buf[0..size), which must stay mapped while z is used. Refuses compressed or
 * encrypted entries, multi-disk archives, names with ".." components or absolute paths, duplicate
 * names, and any offset or size outside buf. Messages carry no file name (the caller adds it). */
dl_status dl_zip_open(dl_zip *z, const uint8_t *buf, size_t size);
const dl_zip_entry *dl_zip_find(const dl_zip *z, const char *name); /* NULL if absent */
void dl_zip_close(dl_zip *z);

#endif
