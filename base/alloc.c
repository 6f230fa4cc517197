/* alloc.c - allocation with a message on failure. See alloc.h. */
#include "alloc.h"

#include <stdlib.h>

#include "status.h"

void *dl_alloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p) dl_fail(DL_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *dl_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) dl_fail(DL_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void *dl_alloc_aligned(size_t n, const char *what)
{
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        dl_fail(DL_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
    return p;
}
