/* common.c - file mappings and printable names for the weight readers. See common.h. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "status.h"

dl_status dl_map_file(const char *path, dl_mapped *m)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dl_fail(DL_ENOINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dl_fail(DL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return dl_fail(DL_ENOINPUT, "%s: is a directory, expected a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        uint8_t *buf;
        dl_status s = dl_read_file(path, SIZE_MAX / 2, &buf, &m->size);
        m->data = buf;
        return s;
    }
    if (st.st_size == 0) { /* mmap refuses length 0 */
        close(fd);
        return DL_OK;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return dl_fail(DL_EDATA, "%s: too large to map", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid */
    if (p == MAP_FAILED) return dl_fail(DL_EIO, "%s: cannot map: %s", path, strerror(e));
    m->data = p;
    m->size = (size_t)st.st_size;
    m->is_mmap = 1;
    return DL_OK;
}

void dl_unmap_file(dl_mapped *m)
{
    if (m->is_mmap) munmap((void *)m->data, m->size);
    else free((void *)m->data);
    memset(m, 0, sizeof *m);
}

const char *dl_printable(const char *s, size_t len, char *buf, size_t cap)
{
    size_t n = len < cap ? len : cap - 4;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(buf + n, len < cap ? "" : "...");
    return buf;
}
